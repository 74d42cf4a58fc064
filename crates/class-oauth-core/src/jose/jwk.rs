//! JSON Web Keys (RFC 7517): the key set document and the public keys it carries.
//!
//! Parsing keeps RSA keys and EC P-256/P-384 keys; keys whose `use` is not `sig`,
//! symmetric keys, and keys that do not decode are skipped (and counted). Selection is
//! by `kid`; without a `kid`, only when exactly one key fits the algorithm. The public
//! home of these types is [`crate::jwks`], beside the cache that fetches them.

use serde_json::Value;

use super::error::IdTokenError;
use super::jws::{Algorithm, Jws, b64, json_object};

/// An elliptic curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
}

/// A verification key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKey {
    /// RSA modulus and exponent, big-endian.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// An EC point, uncompressed (`0x04 || x || y`).
    Ec {
        /// The curve.
        curve: Curve,
        /// The point.
        point: Vec<u8>,
    },
}

/// One usable key of a key set.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Jwk {
    /// `kid`.
    pub kid: Option<String>,
    /// `alg`, when the key names one.
    pub alg: Option<String>,
    /// The key material.
    pub key: PublicKey,
}

impl Jwk {
    fn fits(&self, alg: Algorithm) -> bool {
        let kind_fits = match (&self.key, alg) {
            (PublicKey::Rsa { .. }, a) => {
                matches!(
                    a,
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512
                )
            }
            (
                PublicKey::Ec {
                    curve: Curve::P256, ..
                },
                Algorithm::ES256,
            ) => true,
            (
                PublicKey::Ec {
                    curve: Curve::P384, ..
                },
                Algorithm::ES384,
            ) => true,
            _ => false,
        };
        kind_fits && self.alg.as_deref().is_none_or(|a| a == alg.as_str())
    }

    fn parse(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        let s = |k: &str| o.get(k).and_then(Value::as_str);
        if s("use").is_some_and(|u| u != "sig") {
            return None;
        }
        if let Some(Value::Array(ops)) = o.get("key_ops") {
            if !ops.iter().any(|x| x.as_str() == Some("verify")) {
                return None;
            }
        }
        let key = match s("kty")? {
            "RSA" => {
                let n = b64(s("n")?, "modulus").ok()?;
                let e = b64(s("e")?, "exponent").ok()?;
                if n.is_empty() || e.is_empty() {
                    return None;
                }
                PublicKey::Rsa { n, e }
            }
            "EC" => {
                let (curve, len) = match s("crv")? {
                    "P-256" => (Curve::P256, 32),
                    "P-384" => (Curve::P384, 48),
                    _ => return None,
                };
                let x = b64(s("x")?, "x").ok()?;
                let y = b64(s("y")?, "y").ok()?;
                if x.len() != len || y.len() != len {
                    return None;
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicKey::Ec { curve, point }
            }
            _ => return None,
        };
        Some(Self {
            kid: s("kid").map(str::to_owned),
            alg: s("alg").map(str::to_owned),
            key,
        })
    }
}

/// A parsed key set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwkSet {
    /// The usable signing keys.
    pub keys: Vec<Jwk>,
    /// How many entries were skipped (not `sig`, symmetric, unsupported, undecodable).
    pub skipped: usize,
}

impl JwkSet {
    /// Parses a JWKS document: a JSON object with a `keys` array.
    pub fn parse(bytes: &[u8]) -> Result<Self, IdTokenError> {
        let doc = json_object(bytes, "key set")?;
        let Some(Value::Array(items)) = doc.get("keys") else {
            return Err(IdTokenError::Malformed(
                "the key set has no keys array".into(),
            ));
        };
        let mut set = Self::default();
        for item in items.iter().take(1000) {
            match Jwk::parse(item) {
                Some(k) => set.keys.push(k),
                None => set.skipped += 1,
            }
        }
        Ok(set)
    }

    /// Selects the key for a token: by `kid` when the header has one; otherwise the only
    /// key that fits the algorithm.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Jwk, IdTokenError> {
        match kid {
            Some(kid) => {
                let mut with_kid = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if with_kid.peek().is_none() {
                    return Err(IdTokenError::UnknownKid(kid.to_owned()));
                }
                with_kid
                    .find(|k| k.fits(alg))
                    .ok_or_else(|| IdTokenError::NoMatchingKey {
                        alg: alg.as_str(),
                        kid: Some(kid.to_owned()),
                    })
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Ok(k),
                    (None, _) => Err(IdTokenError::NoMatchingKey {
                        alg: alg.as_str(),
                        kid: None,
                    }),
                    (Some(_), Some(_)) => Err(IdTokenError::AmbiguousKey),
                }
            }
        }
    }
}

// Verification with a key lives beside the keys, so that the JWS parser need not know
// them.
impl Jws {
    /// Verifies the signature of `token` (the string this was parsed from) with `key`.
    /// The caller chooses `alg` from its allow-list, never from the header alone.
    pub fn verify(&self, token: &str, alg: Algorithm, key: &PublicKey) -> Result<(), IdTokenError> {
        verify(alg, key, self.signing_input(token), self.signature())
    }
}

/// Verifies `signature` over `message` with a key in the form `ring` wants.
pub(crate) fn verify(
    alg: Algorithm,
    key: &PublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), IdTokenError> {
    use ring::signature as sig;
    let bad = || IdTokenError::BadSignature;
    match (alg, key) {
        (
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
            PublicKey::Rsa { n, e },
        ) => {
            let params: &sig::RsaParameters = match alg {
                Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                _ => &sig::RSA_PSS_2048_8192_SHA512,
            };
            sig::RsaPublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .verify(params, message, signature)
            .map_err(|_| bad())
        }
        (
            Algorithm::ES256,
            PublicKey::Ec {
                curve: Curve::P256,
                point,
            },
        ) => sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
            .verify(message, signature)
            .map_err(|_| bad()),
        (
            Algorithm::ES384,
            PublicKey::Ec {
                curve: Curve::P384,
                point,
            },
        ) => sig::UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point)
            .verify(message, signature)
            .map_err(|_| bad()),
        _ => Err(IdTokenError::NoMatchingKey {
            alg: alg.as_str(),
            kid: None,
        }),
    }
}
