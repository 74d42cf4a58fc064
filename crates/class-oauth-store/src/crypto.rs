//! Encryption at rest: AES-256-GCM (`ring`), the row's identity as associated data, and
//! key ids for rotation.
//!
//! A sealed value reads `v1.<key id>.<base64url(nonce || ciphertext || tag)>`. The
//! associated data is `class-oauth|<kind>|<row key>|<key id>`, so a ciphertext copied into
//! another tenant's row (or relabelled with another key id) fails to decrypt. Writes
//! always use the current key; reads accept every key in the ring, so old rows stay
//! readable after a rotation and are re-encrypted the next time they are written.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::StoreError;

/// One 256-bit key with its id.
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl EncryptionKey {
    /// A key from 32 bytes. The id names it in every row it seals (letters, digits, `-`, `_`).
    pub fn new(id: impl Into<String>, key: [u8; 32]) -> Result<Self, StoreError> {
        let id = id.into();
        if id.is_empty()
            || id.len() > 32
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(StoreError::Config(format!(
                "key id `{id}` must be 1 to 32 letters, digits, `-` or `_`"
            )));
        }
        Ok(Self {
            id,
            key: Zeroizing::new(key),
        })
    }

    /// A fresh random key (for `class-oauth` key generation and tests).
    pub fn generate(id: impl Into<String>) -> Result<Self, StoreError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| StoreError::Crypto("the system RNG failed".into()))?;
        Self::new(id, key)
    }

    /// The key id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `<id>:<base64 key>`, the form [`KeyRing::parse`] reads.
    #[must_use]
    pub fn to_spec(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}:{}", self.id, STANDARD.encode(*self.key)))
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({}, [redacted])", self.id)
    }
}

/// The current key and the older keys that may still decrypt.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<EncryptionKey>,
}

impl KeyRing {
    /// A ring with one key.
    #[must_use]
    pub fn new(current: EncryptionKey) -> Self {
        Self {
            keys: vec![current],
        }
    }

    /// Adds an older key that still decrypts.
    #[must_use]
    pub fn with_previous(mut self, key: EncryptionKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Parses `id:base64key[,id:base64key...]`; the first key is the current one. This is
    /// the form of the `CLASS_OAUTH_STORE_KEY` environment variable the CLI reads.
    pub fn parse(spec: &str) -> Result<Self, StoreError> {
        let mut keys = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, b64) = part.split_once(':').ok_or_else(|| {
                StoreError::Config("a key must read `<id>:<base64 of 32 bytes>`".into())
            })?;
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(b64.trim())
                    .or_else(|_| URL_SAFE_NO_PAD.decode(b64.trim()))
                    .map_err(|_| StoreError::Config(format!("key `{id}` is not base64")))?,
            );
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                StoreError::Config(format!(
                    "key `{id}` must be 32 bytes, it is {}",
                    bytes.len()
                ))
            })?;
            keys.push(EncryptionKey::new(id, key)?);
        }
        if keys.is_empty() {
            return Err(StoreError::Config("no key given".into()));
        }
        Ok(Self { keys })
    }

    /// The current key's id.
    #[must_use]
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    fn aead(key: &EncryptionKey) -> LessSafeKey {
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, key.key.as_ref()).expect("32-byte AES-256 key"),
        )
    }
}

/// How a store protects secrets at rest.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Encryption {
    /// AES-256-GCM with these keys.
    Keys(KeyRing),
    /// No key: the store refuses to write secrets.
    Refuse,
    /// Secrets are written in clear (base64, not encrypted). Only for throwaway test stores.
    DangerPlaintext,
}

impl Encryption {
    /// From an optional key ring: keys when given, refusal otherwise.
    #[must_use]
    pub fn from_keys(keys: Option<KeyRing>) -> Self {
        keys.map_or(Self::Refuse, Self::Keys)
    }

    fn aad(kind: &str, row: &str, key_id: &str) -> Vec<u8> {
        format!("class-oauth|{kind}|{row}|{key_id}").into_bytes()
    }

    /// Seals `plaintext` for the row `row` of `kind`. Returns the sealed text and the id of
    /// the key used.
    pub fn seal(
        &self,
        kind: &str,
        row: &str,
        plaintext: &[u8],
    ) -> Result<(String, String), StoreError> {
        match self {
            Self::Refuse => Err(StoreError::NoEncryptionKey),
            Self::DangerPlaintext => Ok((
                format!("plain.{}", URL_SAFE_NO_PAD.encode(plaintext)),
                "plain".into(),
            )),
            Self::Keys(ring) => {
                let key = &ring.keys[0];
                let mut nonce = [0u8; NONCE_LEN];
                SystemRandom::new()
                    .fill(&mut nonce)
                    .map_err(|_| StoreError::Crypto("the system RNG failed".into()))?;
                let mut buf = plaintext.to_vec();
                KeyRing::aead(key)
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(Self::aad(kind, row, &key.id)),
                        &mut buf,
                    )
                    .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
                let mut out = nonce.to_vec();
                out.extend_from_slice(&buf);
                zeroize::Zeroize::zeroize(&mut buf);
                Ok((
                    format!("v1.{}.{}", key.id, URL_SAFE_NO_PAD.encode(out)),
                    key.id.clone(),
                ))
            }
        }
    }

    /// Opens a sealed value of the row `row` of `kind`.
    pub fn open(
        &self,
        kind: &str,
        row: &str,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        if let Some(b64) = sealed.strip_prefix("plain.") {
            // A plaintext row in a store that was opened with a key (or with none) is
            // refused: it was written by a store without encryption, or planted.
            if !matches!(self, Self::DangerPlaintext) {
                return Err(StoreError::Crypto(
                    "the row is stored in plaintext, but this store was opened with encryption; refusing it (re-authorize, or open the store with DangerPlaintext to read it)".into(),
                ));
            }
            return URL_SAFE_NO_PAD
                .decode(b64)
                .map(Zeroizing::new)
                .map_err(|_| StoreError::Crypto("corrupt plaintext row".into()));
        }
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(kid), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(StoreError::Crypto("unknown sealed format".into()));
        };
        let Self::Keys(ring) = self else {
            return Err(StoreError::NoEncryptionKey);
        };
        let key = ring.keys.iter().find(|k| k.id == kid).ok_or_else(|| {
            StoreError::Crypto(format!(
                "the row was sealed with key `{kid}`, which is not in the key ring"
            ))
        })?;
        let bytes = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| StoreError::Crypto("corrupt sealed row".into()))?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(StoreError::Crypto("corrupt sealed row".into()));
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| StoreError::Crypto("corrupt nonce".into()))?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let plain_len = KeyRing::aead(key)
            .open_in_place(nonce, Aad::from(Self::aad(kind, row, kid)), &mut buf)
            .map_err(|_| {
                StoreError::Crypto(
                    "decryption failed: wrong key, or the row was moved from another tenant".into(),
                )
            })?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_rows_are_refused_unless_the_store_is_plaintext() {
        let (sealed, _) = Encryption::DangerPlaintext
            .seal("grant", "tenant-a", b"tokens")
            .unwrap();
        assert_eq!(
            &*Encryption::DangerPlaintext
                .open("grant", "tenant-a", &sealed)
                .unwrap(),
            b"tokens"
        );
        let keyed = Encryption::Keys(KeyRing::new(EncryptionKey::generate("k1").unwrap()));
        for store in [keyed, Encryption::Refuse] {
            let e = store.open("grant", "tenant-a", &sealed).unwrap_err();
            assert!(
                matches!(e, StoreError::Crypto(ref m) if m.contains("plaintext")),
                "{e:?}"
            );
        }
    }

    #[test]
    fn round_trip_rotation_and_binding() {
        let old = EncryptionKey::generate("k1").unwrap();
        let new = EncryptionKey::generate("k2").unwrap();
        let e_old = Encryption::Keys(KeyRing::new(old.clone()));
        let (sealed, kid) = e_old.seal("grant", "tenant-a", b"secret tokens").unwrap();
        assert_eq!(kid, "k1");
        assert!(!sealed.contains("secret"));
        assert_eq!(
            &*e_old.open("grant", "tenant-a", &sealed).unwrap(),
            b"secret tokens"
        );
        // Moved to another tenant's row: refused.
        assert!(e_old.open("grant", "tenant-b", &sealed).is_err());
        // Rotation: new current key, old still decrypts; new writes use k2.
        let rotated = Encryption::Keys(KeyRing::new(new).with_previous(old));
        assert_eq!(
            &*rotated.open("grant", "tenant-a", &sealed).unwrap(),
            b"secret tokens"
        );
        assert!(
            rotated
                .seal("grant", "tenant-a", b"x")
                .unwrap()
                .0
                .starts_with("v1.k2.")
        );
        // Relabelled key id: refused.
        let relabelled = sealed.replacen("v1.k1.", "v1.k2.", 1);
        assert!(rotated.open("grant", "tenant-a", &relabelled).is_err());
        // No key: refuses to write, cannot read.
        assert!(matches!(
            Encryption::Refuse.seal("grant", "t", b"x"),
            Err(StoreError::NoEncryptionKey)
        ));
        assert!(
            Encryption::Refuse
                .open("grant", "tenant-a", &sealed)
                .is_err()
        );
        let spec = EncryptionKey::generate("prod-2026").unwrap().to_spec();
        assert_eq!(KeyRing::parse(&spec).unwrap().current_id(), "prod-2026");
        assert!(KeyRing::parse("k:AAAA").is_err());
        assert!(
            !format!("{:?}", KeyRing::parse(&spec).unwrap())
                .contains(spec.split(':').nth(1).unwrap())
        );
    }
}
