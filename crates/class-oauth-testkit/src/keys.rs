//! Signing keys and a JWS signer for the emulator and for tests. Never for production:
//! the RSA keys are published with this crate, so anyone can mint tokens with them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

enum Kind {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A signing key with an optional `kid`.
pub struct TestKey {
    kid: Option<String>,
    kind: Kind,
}

const RSA_A: &[u8] = include_bytes!("../keys/rsa-2048-a.der");
const RSA_B: &[u8] = include_bytes!("../keys/rsa-2048-b.der");
const RSA_C: &[u8] = include_bytes!("../keys/rsa-2048-c.der");

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    /// The first committed RSA-2048 key, `kid` "key-a".
    #[must_use]
    pub fn rsa_a() -> Self {
        Self {
            kid: Some("key-a".into()),
            kind: Kind::Rsa(RsaKeyPair::from_der(RSA_A).expect("valid test key")),
        }
    }

    /// The second committed RSA-2048 key, `kid` "key-b" (for rotation tests).
    #[must_use]
    pub fn rsa_b() -> Self {
        Self {
            kid: Some("key-b".into()),
            kind: Kind::Rsa(RsaKeyPair::from_der(RSA_B).expect("valid test key")),
        }
    }

    /// The third published RSA-2048 key, `kid` "key-c".
    #[must_use]
    pub fn rsa_c() -> Self {
        Self {
            kid: Some("key-c".into()),
            kind: Kind::Rsa(RsaKeyPair::from_der(RSA_C).expect("valid test key")),
        }
    }

    /// A fresh P-256 key, `kid` "key-ec".
    #[must_use]
    pub fn ec_p256() -> Self {
        let rng = SystemRandom::new();
        let pk8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("keygen");
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pk8.as_ref(),
            &rng,
        )
        .expect("key");
        Self {
            kid: Some("key-ec".into()),
            kind: Kind::Ec(pair),
        }
    }

    /// Sets or clears the `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: Option<&str>) -> Self {
        self.kid = kid.map(str::to_owned);
        self
    }

    /// The `kid`.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The public JWK.
    #[must_use]
    pub fn jwk(&self) -> Value {
        let mut v = match &self.kind {
            Kind::Rsa(k) => {
                let c: signature::RsaPublicKeyComponents<Vec<u8>> = k.public().into();
                json!({"kty": "RSA", "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Kind::Ec(k) => {
                let point = k.public_key().as_ref();
                json!({"kty": "EC", "use": "sig", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
        };
        if let Some(kid) = &self.kid {
            v["kid"] = json!(kid);
        }
        v
    }

    /// Signs `claims` with `alg` (`RS256`, `PS256` or `ES256`); the header gets `alg`,
    /// `typ` and the `kid`, plus `extra_header` members.
    ///
    /// # Panics
    /// On an algorithm the key cannot sign.
    #[must_use]
    pub fn sign(&self, alg: &str, claims: &Value, extra_header: &Value) -> String {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = &self.kid {
            header["kid"] = json!(kid);
        }
        if let Some(extra) = extra_header.as_object() {
            for (k, v) in extra {
                header[k] = v.clone();
            }
        }
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match (&self.kind, alg) {
            (Kind::Rsa(k), "RS256" | "PS256") => {
                let padding: &dyn signature::RsaEncoding = if alg == "RS256" {
                    &signature::RSA_PKCS1_SHA256
                } else {
                    &signature::RSA_PSS_SHA256
                };
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(padding, &rng, input.as_bytes(), &mut out)
                    .expect("sign");
                out
            }
            (Kind::Ec(k), "ES256") => k
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            _ => panic!("{alg} cannot be signed with this key"),
        };
        format!("{input}.{}", b64(&sig))
    }
}

/// A JWKS document holding the public halves of `keys`.
#[must_use]
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// Signs with HMAC (the client-secret case).
#[must_use]
pub fn sign_hs256(secret: &[u8], claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        input.as_bytes(),
    );
    format!("{input}.{}", b64(tag.as_ref()))
}

/// An unsigned token (`alg: none`).
#[must_use]
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims.to_string().as_bytes())
    )
}

impl TestKey {
    /// A fresh P-256 key in PKCS#8, to rebuild the same key with [`TestKey::ec_from_pkcs8`].
    #[must_use]
    pub fn ec_pkcs8() -> Vec<u8> {
        EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .expect("keygen")
        .as_ref()
        .to_vec()
    }

    /// A P-256 key from PKCS#8, `kid` "key-ec".
    #[must_use]
    pub fn ec_from_pkcs8(pk8: &[u8]) -> Self {
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pk8,
            &SystemRandom::new(),
        )
        .expect("key");
        Self {
            kid: Some("key-ec".into()),
            kind: Kind::Ec(pair),
        }
    }
}

/// XOR every signature byte with 0x5A, as the OpenID conformance suite does.
#[must_use]
pub fn corrupt_signature(token: &str) -> String {
    let Some((input, sig)) = token.rsplit_once('.') else {
        return token.to_owned();
    };
    let bytes: Vec<u8> = URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap_or_default()
        .iter()
        .map(|b| b ^ 0x5A)
        .collect();
    format!("{input}.{}", b64(&bytes))
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({:?}, [private key])", self.kid)
    }
}
