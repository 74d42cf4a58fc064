//! The compact JWS: parsing with bounded work and verification with `ring`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::error::IdTokenError;

/// Compact tokens longer than this are refused before any work.
pub const MAX_JWS_BYTES: usize = 64 * 1024;

/// A JWS algorithm (RFC 7518 3.1) this library can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the OIDC default).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// HMAC SHA-256 keyed with the client secret (only when configured on purpose).
    HS256,
    /// HMAC SHA-384 keyed with the client secret.
    HS384,
    /// HMAC SHA-512 keyed with the client secret.
    HS512,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Self; 11] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::HS256,
        Self::HS384,
        Self::HS512,
    ];

    /// The `alg` name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
        }
    }

    /// Parses an `alg` name (case-sensitive, as RFC 7515 requires).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Is this an HMAC algorithm (keyed with a shared secret)?
    #[must_use]
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }

    pub(crate) fn digest(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::RS256 | Self::PS256 | Self::ES256 | Self::HS256 => &ring::digest::SHA256,
            Self::RS384 | Self::PS384 | Self::ES384 | Self::HS384 => &ring::digest::SHA384,
            Self::RS512 | Self::PS512 | Self::HS512 => &ring::digest::SHA512,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JOSE header members this library reads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwsHeader {
    /// `alg` as sent.
    pub alg: String,
    /// `kid`, when sent.
    pub kid: Option<String>,
    /// `typ`, when sent.
    pub typ: Option<String>,
}

/// A parsed, not yet verified, compact JWS.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Jws {
    /// The header.
    pub header: JwsHeader,
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    signing_input_len: usize,
    signature: Vec<u8>,
}

pub(crate) fn b64(segment: &str, what: &'static str) -> Result<Vec<u8>, IdTokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| IdTokenError::Malformed(format!("the {what} is not strict base64url")))
}

pub(crate) fn json_object(
    bytes: &[u8],
    what: &'static str,
) -> Result<Map<String, Value>, IdTokenError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(IdTokenError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
        Err(e) => Err(IdTokenError::Malformed(format!(
            "the {what} is not JSON ({})",
            crate::body::json_error_detail(&e)
        ))),
    }
}

impl Jws {
    /// Parses a compact JWS. Bounded work: the size and the number of separators are
    /// checked before any split or decode.
    pub fn parse(token: &str) -> Result<Self, IdTokenError> {
        if token.len() > MAX_JWS_BYTES {
            return Err(IdTokenError::TooLarge {
                limit: MAX_JWS_BYTES,
            });
        }
        let dots = token.bytes().filter(|b| *b == b'.').count();
        if dots != 2 {
            return Err(IdTokenError::Malformed(format!(
                "a signed JWT has 3 dot-separated parts, this has {}{}",
                dots.saturating_add(1).min(1000),
                if dots == 4 {
                    " (an encrypted JWE is not supported)"
                } else {
                    ""
                }
            )));
        }
        let mut parts = token.splitn(3, '.');
        let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(IdTokenError::Malformed("missing parts".into()));
        };
        let header = json_object(&b64(h, "header")?, "header")?;
        let alg = match header.get("alg") {
            Some(Value::String(a)) => a.clone(),
            Some(_) => {
                return Err(IdTokenError::InvalidClaim {
                    claim: "alg",
                    detail: "not a string".into(),
                });
            }
            None => return Err(IdTokenError::MissingClaim("alg")),
        };
        if header.contains_key("crit") {
            return Err(IdTokenError::Malformed(
                "the header lists critical extensions (crit), which are not supported".into(),
            ));
        }
        let opt_string = |name: &'static str| match header.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(IdTokenError::InvalidClaim {
                claim: name,
                detail: "not a string".into(),
            }),
        };
        let header = JwsHeader {
            alg,
            kid: opt_string("kid")?,
            typ: opt_string("typ")?,
        };
        let payload = b64(p, "payload")?;
        let signature = b64(s, "signature")?;
        Ok(Self {
            header,
            payload,
            signing_input_len: h.len() + 1 + p.len(),
            signature,
        })
    }

    /// The signed bytes (`header.payload`) of the token this was parsed from.
    #[must_use]
    pub fn signing_input<'t>(&self, token: &'t str) -> &'t [u8] {
        &token.as_bytes()[..self.signing_input_len.min(token.len())]
    }

    /// The decoded signature.
    #[must_use]
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Verifies an HMAC signature keyed with a shared secret.
    pub fn verify_hmac(
        &self,
        token: &str,
        alg: Algorithm,
        secret: &[u8],
    ) -> Result<(), IdTokenError> {
        verify_hmac(alg, secret, self.signing_input(token), &self.signature)
    }
}

/// Verifies an HMAC signature keyed with the client secret.
pub(crate) fn verify_hmac(
    alg: Algorithm,
    secret: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), IdTokenError> {
    let a = match alg {
        Algorithm::HS256 => ring::hmac::HMAC_SHA256,
        Algorithm::HS384 => ring::hmac::HMAC_SHA384,
        Algorithm::HS512 => ring::hmac::HMAC_SHA512,
        _ => return Err(IdTokenError::AlgorithmNotAllowed(alg.as_str().to_owned())),
    };
    ring::hmac::verify(&ring::hmac::Key::new(a, secret), message, signature)
        .map_err(|_| IdTokenError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_parsing() {
        let dots = ".".repeat(10_000);
        assert!(matches!(Jws::parse(&dots), Err(IdTokenError::Malformed(_))));
        let big = "a".repeat(MAX_JWS_BYTES + 1);
        assert_eq!(
            Jws::parse(&big).unwrap_err(),
            IdTokenError::TooLarge {
                limit: MAX_JWS_BYTES
            }
        );
        assert!(
            Jws::parse("eyJhbGciOiJSUzI1NiJ9.e30=.AA").is_err(),
            "padding is not base64url"
        );
        // A JWS payload is any bytes; the claims parser requires the object.
        assert_eq!(
            Jws::parse("eyJhbGciOiJSUzI1NiJ9.W10.AA").unwrap().payload,
            b"[]"
        );
        let ok = Jws::parse("eyJhbGciOiJSUzI1NiJ9.e30.AA").unwrap();
        assert_eq!(ok.header.alg, "RS256");
        assert_eq!(
            ok.signing_input("eyJhbGciOiJSUzI1NiJ9.e30.AA"),
            b"eyJhbGciOiJSUzI1NiJ9.e30"
        );
        // {"alg":"RS256","crit":["b64"]}
        assert!(Jws::parse("eyJhbGciOiJSUzI1NiIsImNyaXQiOlsiYjY0Il19.e30.AA").is_err());
    }
}
