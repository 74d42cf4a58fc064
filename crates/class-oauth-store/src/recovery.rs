//! Rotated tokens that could not be written to the store, and the file that keeps them
//! when the process that holds them is about to exit.
//!
//! Class rotates the refresh token on every refresh, so the tokens of a refresh response
//! are the only valid ones. When the store cannot take them (full disk, read-only file,
//! database down), the token manager retries within a bound and then holds them in
//! memory ([`HeldWrite`]); a long-running process writes them on its next call. A
//! short-lived one (a command line) must not exit with them only in memory: it seals them
//! into a [`RecoveryFile`] beside the store (mode 0600, written atomically), and the next
//! run imports them before anything else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use class_oauth_core::RefreshToken;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::secret::ExposeSecrets;
use class_oauth_core::token::TokenSet;
use serde::{Deserialize, Serialize};

use crate::{Encryption, GrantStatus, StoreError, TenantKey};

/// Rotated tokens whose write to the store failed: the only copy of the newest refresh
/// token. Written (compare-and-swap) over the row that still holds the token they
/// replaced, or dropped when a login replaced the grant meanwhile. `Debug` shows no
/// secret.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HeldWrite {
    /// The tokens to write.
    pub tokens: TokenSet,
    /// The ID-token claims to keep with them.
    pub id_claims: Option<IdTokenClaims>,
    /// The status to write with them.
    pub status: GrantStatus,
    /// The refresh token they replaced (still in the store).
    pub replaced: Option<RefreshToken>,
    /// The lease the write releases.
    pub lease_owner: String,
}

impl HeldWrite {
    /// Tokens to write over the row that holds `replaced`.
    #[must_use]
    pub fn new(
        tokens: TokenSet,
        id_claims: Option<IdTokenClaims>,
        status: GrantStatus,
        replaced: Option<RefreshToken>,
        lease_owner: impl Into<String>,
    ) -> Self {
        Self {
            tokens,
            id_claims,
            status,
            replaced,
            lease_owner: lease_owner.into(),
        }
    }
}

/// The secret part of an entry, sealed.
#[derive(Serialize, Deserialize)]
struct Secrets {
    tokens: TokenSet,
    id_claims: Option<IdTokenClaims>,
    replaced: Option<RefreshToken>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: TenantKey,
    status: String,
    reason: String,
    lease_owner: String,
    /// [`Secrets`], sealed for this tenant's row.
    sealed: String,
}

#[derive(Serialize, Deserialize, Default)]
struct Contents {
    version: u32,
    entries: Vec<Entry>,
}

/// A file of [`HeldWrite`]s, sealed with the store's keys (AES-256-GCM, bound to each
/// tenant's row), private (0600), replaced atomically on every change (written beside,
/// synced, renamed, the directory synced).
#[derive(Clone)]
pub struct RecoveryFile {
    path: PathBuf,
    enc: Arc<Encryption>,
}

impl std::fmt::Debug for RecoveryFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::ReadOnly(format!("{}: {e}", path.display()))
}

impl RecoveryFile {
    /// The recovery file at `path`, sealed with `encryption` (the store's keys).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, encryption: Encryption) -> Self {
        Self::shared(path.into(), Arc::new(encryption))
    }

    pub(crate) fn shared(path: PathBuf, enc: Arc<Encryption>) -> Self {
        Self { path, enc }
    }

    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Contents, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Backend(format!(
                    "the recovery file {} does not parse: {e}",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contents::default()),
            Err(e) => Err(io(&self.path, e)),
        }
    }

    fn write(&self, contents: &Contents) -> Result<(), StoreError> {
        if contents.entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&self.path, e)),
                _ => Ok(()),
            };
        }
        let bytes = serde_json::to_vec(contents).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(|e| io(&tmp, e))?;
        std::io::Write::write_all(&mut file, &bytes).map_err(|e| io(&tmp, e))?;
        file.sync_all().map_err(|e| io(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, e))?;
        #[cfg(unix)]
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Keeps `held` for `key` (replacing what was kept for it).
    pub fn keep(&self, key: &TenantKey, held: &HeldWrite) -> Result<(), StoreError> {
        let secrets = zeroize::Zeroizing::new(
            // Sealed right below: the one place these secrets are written in clear.
            serde_json::to_vec(&ExposeSecrets(&Secrets {
                tokens: held.tokens.clone(),
                id_claims: held.id_claims.clone(),
                replaced: held.replaced.clone(),
            }))
            .map_err(|e| StoreError::Backend(e.to_string()))?,
        );
        let (sealed, _) = self.enc.seal("recovery", &key.storage_key(), &secrets)?;
        let (status, reason) = held.status.as_parts();
        let mut contents = self.read()?;
        contents.version = 1;
        contents.entries.retain(|e| &e.key != key);
        contents.entries.push(Entry {
            key: key.clone(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            lease_owner: held.lease_owner.clone(),
            sealed,
        });
        self.write(&contents)
    }

    /// What is kept, by tenant (nothing when there is no file).
    pub fn entries(&self) -> Result<Vec<(TenantKey, HeldWrite)>, StoreError> {
        self.read()?
            .entries
            .into_iter()
            .map(|e| {
                let plain = self.enc.open("recovery", &e.key.storage_key(), &e.sealed)?;
                let s: Secrets = serde_json::from_slice(&plain).map_err(|err| {
                    StoreError::Backend(format!("a recovered grant does not parse: {err}"))
                })?;
                let held = HeldWrite::new(
                    s.tokens,
                    s.id_claims,
                    GrantStatus::from_parts(&e.status, &e.reason),
                    s.replaced,
                    e.lease_owner,
                );
                Ok((e.key, held))
            })
            .collect()
    }

    /// Drops what is kept for `key` (the file goes when nothing is left).
    pub fn forget(&self, key: &TenantKey) -> Result<(), StoreError> {
        let mut contents = self.read()?;
        let before = contents.entries.len();
        contents.entries.retain(|e| &e.key != key);
        if contents.entries.len() == before {
            return Ok(());
        }
        self.write(&contents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EncryptionKey, KeyRing};
    use class_oauth_core::ClientId;

    fn tokens(rt: &str) -> TokenSet {
        class_oauth_fixtures::seed::token_set("at", rt, 899, std::time::SystemTime::now())
    }

    #[test]
    fn kept_tokens_come_back_sealed_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.sqlite3.recovery");
        let ring = KeyRing::new(EncryptionKey::new("k1", [9u8; 32]).unwrap());
        let file = RecoveryFile::new(&path, Encryption::Keys(ring.clone()));
        let a = TenantKey::new(&ClientId::new("c"), "A");
        let b = TenantKey::new(&ClientId::new("c"), "B");
        assert!(file.entries().unwrap().is_empty());
        let held = HeldWrite::new(
            tokens("rt-new"),
            None,
            GrantStatus::Active,
            Some(RefreshToken::new("rt-old")),
            "owner-1",
        );
        file.keep(&a, &held).unwrap();
        file.keep(&b, &held).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("rt-new") && !text.contains("rt-old"),
            "sealed: {text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = RecoveryFile::new(&path, Encryption::Keys(ring))
            .entries()
            .unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, a);
        assert_eq!(
            back[0].1.tokens.refresh_token.as_ref().unwrap().secret(),
            "rt-new"
        );
        assert_eq!(back[0].1.replaced.as_ref().unwrap().secret(), "rt-old");
        assert_eq!(back[0].1.lease_owner, "owner-1");
        // Sealed for its row: another key ring cannot open it.
        let other = KeyRing::new(EncryptionKey::new("k2", [1u8; 32]).unwrap());
        assert!(
            RecoveryFile::new(&path, Encryption::Keys(other))
                .entries()
                .is_err()
        );
        file.forget(&a).unwrap();
        assert_eq!(file.entries().unwrap().len(), 1);
        file.forget(&b).unwrap();
        assert!(!path.exists(), "the file goes when nothing is left");
    }
}
