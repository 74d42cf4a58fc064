//! # class-oauth-store
//!
//! Per-tenant storage of Class grants, and the refresh procedure that keeps them alive.
//!
//! A Class grant covers one business, its refresh token is single-use and rotates on every
//! refresh, and a partner may run several instances. So a store keeps, per [`TenantKey`],
//! the token set (encrypted at rest), its status, and a version for compare-and-swap; it
//! hands out a cross-instance [`RefreshGuard`] under which the row is re-read, refreshed
//! and written back; and it keeps the code flow's pending authorization records.
//!
//! Backends: [`MemoryStore`] (tests, short-lived processes), [`SqliteStore`] (the
//! embedded default; blocking callers need no runtime, async callers go through
//! [`asynch::Blocking`] so the executor never blocks), and [`PostgresStore`] (several
//! instances: advisory lock per tenant, re-read under the lock, CAS write, migrations
//! applied on connect).
//!
//! [`procedure::RefreshProcedure`] is the refresh decision logic as a sans-IO state
//! machine; the token managers of `class-oauth-reqwest` and `class-oauth-ureq` drive it.
//!
//! Secrets at rest: access, refresh and ID tokens (and pending records) are sealed with
//! AES-256-GCM, the row's identity as associated data, under a key id (see [`crypto`]).
//! A store opened without a key refuses to write secrets ([`StoreError::NoEncryptionKey`])
//! unless opened with [`Encryption::DangerPlaintext`].
//!
//! ## Choosing a store
//! ```no_run
//! use class_oauth_store::{Encryption, KeyRing, MemoryStore, PostgresStore, SqliteStore};
//! # fn main() -> Result<(), class_oauth_store::StoreError> {
//! let keys = KeyRing::parse(&std::env::var("CLASS_OAUTH_STORE_KEY").unwrap_or_default())?;
//! // One process, nothing at rest:
//! let memory = MemoryStore::new();
//! // The embedded default, a file:
//! let sqlite = SqliteStore::open("class-oauth.sqlite3", Encryption::Keys(keys.clone()))?;
//! // Several instances sharing grants:
//! let pg = PostgresStore::connect("postgres://app@db/class", 8, Encryption::Keys(keys))?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::fmt;
use std::time::SystemTime;

use class_oauth_core::ClientId;
use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::scope::Scopes;
use class_oauth_core::token::TokenSet;
use serde::{Deserialize, Serialize};

#[cfg(feature = "tokio")]
pub mod asynch;
pub mod cache;
pub mod crypto;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
pub mod procedure;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod row;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use crypto::{Encryption, EncryptionKey, KeyRing};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct KeyParts {
    client_id: String,
    tenant: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    scope: String,
    #[serde(skip)]
    storage_key: String,
    #[serde(skip)]
    hash: u64,
}

/// Identifies one stored grant: the client, the tenant (a business code, a profile name,
/// your own tenant id), the subject (user) when grants are per user, and the scope set.
///
/// Cheap to clone and to look up: the parts are shared, the row key and a hash are
/// computed once, and equality checks the pointer before the text. Keep the keys you
/// use in hot paths rather than rebuilding them per call.
#[derive(Clone)]
pub struct TenantKey(std::sync::Arc<KeyParts>);

impl TenantKey {
    /// A key for `tenant` of `client_id`.
    pub fn new(client_id: &ClientId, tenant: impl Into<String>) -> Self {
        Self::from_parts(client_id.as_str(), tenant, "", "")
    }

    pub(crate) fn from_parts(
        client_id: impl Into<String>,
        tenant: impl Into<String>,
        subject: impl Into<String>,
        scope: impl Into<String>,
    ) -> Self {
        let mut parts = KeyParts {
            client_id: client_id.into(),
            tenant: tenant.into(),
            subject: subject.into(),
            scope: scope.into(),
            storage_key: String::new(),
            hash: 0,
        };
        let enc = |s: &str| {
            class_oauth_core::url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
        };
        parts.storage_key = format!(
            "{}|{}|{}|{}",
            enc(&parts.client_id),
            enc(&parts.tenant),
            enc(&parts.subject),
            enc(&parts.scope)
        );
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&parts.storage_key, &mut h);
        parts.hash = std::hash::Hasher::finish(&h);
        Self(std::sync::Arc::new(parts))
    }

    /// Adds the subject (for grants per user).
    #[must_use]
    pub fn with_subject(self, subject: impl Into<String>) -> Self {
        Self::from_parts(
            self.0.client_id.clone(),
            self.0.tenant.clone(),
            subject,
            self.0.scope.clone(),
        )
    }

    /// Adds the scope set (for several grants per tenant with different scopes).
    #[must_use]
    pub fn with_scope(self, scope: &Scopes) -> Self {
        Self::from_parts(
            self.0.client_id.clone(),
            self.0.tenant.clone(),
            self.0.subject.clone(),
            scope.to_string(),
        )
    }

    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.0.client_id
    }

    /// The tenant.
    #[must_use]
    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    /// The subject (empty when not used).
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The scope set (empty when not used).
    #[must_use]
    pub fn scope(&self) -> &str {
        &self.0.scope
    }

    /// The row key: the four parts percent-encoded and joined by `|`.
    #[must_use]
    pub fn storage_key(&self) -> String {
        self.0.storage_key.clone()
    }
}

impl PartialEq for TenantKey {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.0.storage_key == other.0.storage_key
    }
}

impl Eq for TenantKey {}

impl std::hash::Hash for TenantKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl PartialOrd for TenantKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TenantKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.storage_key.cmp(&other.0.storage_key)
    }
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantKey({self})")
    }
}

impl Serialize for TenantKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TenantKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = KeyParts::deserialize(d)?;
        Ok(Self::from_parts(p.client_id, p.tenant, p.subject, p.scope))
    }
}

impl fmt::Display for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.client_id, self.0.tenant)?;
        if !self.0.subject.is_empty() {
            write!(f, "/{}", self.0.subject)?;
        }
        Ok(())
    }
}

/// Whether a grant can still be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GrantStatus {
    /// Usable.
    Active,
    /// The user must authorize again (refresh token expired, rotated away or revoked).
    NeedsReauthorization {
        /// Why.
        reason: String,
    },
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl GrantStatus {
    pub(crate) fn as_parts(&self) -> (&'static str, &str) {
        match self {
            Self::Active => ("active", ""),
            Self::NeedsReauthorization { reason } => ("needs_reauthorization", reason),
        }
    }

    pub(crate) fn from_parts(status: &str, reason: &str) -> Self {
        if status == "active" {
            Self::Active
        } else {
            Self::NeedsReauthorization {
                reason: reason.to_owned(),
            }
        }
    }
}

/// A stored grant.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredGrant {
    /// The tokens.
    pub tokens: TokenSet,
    /// The validated claims of the first ID token (kept for the refresh checks).
    pub id_claims: Option<IdTokenClaims>,
    /// Usable or not.
    pub status: GrantStatus,
    /// The CAS version (incremented on every write).
    pub version: u64,
}

/// What a listing shows of a grant: never a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GrantSummary {
    /// The key.
    pub key: TenantKey,
    /// The business the grant covers.
    pub business_code: Option<String>,
    /// The granted scope.
    pub scope: String,
    /// Access-token expiry (Unix seconds).
    pub expires_at: Option<u64>,
    /// Status.
    pub status: GrantStatus,
    /// Version.
    pub version: u64,
    /// Last write (Unix seconds).
    pub updated_at: u64,
}

/// Storage errors. `Clone` so one refresh outcome can be shared by every waiting caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store has no encryption key and was not opened with `DangerPlaintext`.
    #[error(
        "the token store has no encryption key; set CLASS_OAUTH_STORE_KEY (or pass a key ring) so secrets are encrypted at rest"
    )]
    NoEncryptionKey,
    /// Encryption or decryption failed.
    #[error("token store encryption: {0}")]
    Crypto(String),
    /// A compare-and-swap lost: another writer changed the row.
    #[error("the stored grant changed under us (version {expected} expected)")]
    Conflict {
        /// The version the write expected.
        expected: u64,
    },
    /// The backend failed (I/O, SQL, pool).
    #[error("token store backend: {0}")]
    Backend(String),
    /// Bad configuration.
    #[error("token store configuration: {0}")]
    Config(String),
}

/// A cross-instance lock on one tenant's row, with the row as read under the lock.
/// Dropping it releases the lock without writing.
pub trait RefreshGuard: Send {
    /// The grant as read after the lock was taken.
    fn current(&self) -> Option<&StoredGrant>;

    /// Writes the refreshed grant (CAS on the version read under the lock) and releases
    /// the lock. Returns the new version.
    fn commit(
        self: Box<Self>,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
    ) -> Result<u64, StoreError>;
}

/// A blocking token store. Implementations are cheap to share (`Arc`) between managers.
pub trait TokenStore: Send + Sync + 'static {
    /// Reads a grant.
    fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError>;

    /// Writes a grant after a login (status becomes active). With `expected_version`, only
    /// if the stored version is that one; without, it replaces any row.
    fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError>;

    /// Sets the status (keeping the tokens).
    fn set_status(&self, key: &TenantKey, status: &GrantStatus) -> Result<(), StoreError>;

    /// Deletes a grant; true when one existed.
    fn delete(&self, key: &TenantKey) -> Result<bool, StoreError>;

    /// Lists grants (no secrets).
    fn list(&self) -> Result<Vec<GrantSummary>, StoreError>;

    /// Takes the cross-instance refresh lock for `key` and re-reads the row under it.
    fn lock(&self, key: &TenantKey) -> Result<Box<dyn RefreshGuard>, StoreError>;

    /// Like [`TokenStore::lock`], but returns `Ok(None)` at once when another holder has
    /// the lock, instead of waiting. Async callers poll this with async sleeps, so that
    /// waiting for a lock never parks a thread the lock holder needs to commit.
    fn try_lock(&self, key: &TenantKey) -> Result<Option<Box<dyn RefreshGuard>>, StoreError> {
        self.lock(key).map(Some)
    }

    /// Stores a pending authorization under `lookup` (its `state`); it expires with the
    /// record.
    fn put_pending(&self, lookup: &str, pending: &PendingAuthorization) -> Result<(), StoreError>;

    /// Takes (reads and deletes) a pending authorization: a record redeems once. Expired
    /// records are not returned.
    fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError>;
}

impl<S: TokenStore + ?Sized> TokenStore for std::sync::Arc<S> {
    fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        (**self).load(key)
    }
    fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        (**self).save(key, tokens, id_claims, expected_version)
    }
    fn set_status(&self, key: &TenantKey, status: &GrantStatus) -> Result<(), StoreError> {
        (**self).set_status(key, status)
    }
    fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        (**self).delete(key)
    }
    fn list(&self) -> Result<Vec<GrantSummary>, StoreError> {
        (**self).list()
    }
    fn lock(&self, key: &TenantKey) -> Result<Box<dyn RefreshGuard>, StoreError> {
        (**self).lock(key)
    }
    fn try_lock(&self, key: &TenantKey) -> Result<Option<Box<dyn RefreshGuard>>, StoreError> {
        (**self).try_lock(key)
    }
    fn put_pending(&self, lookup: &str, pending: &PendingAuthorization) -> Result<(), StoreError> {
        (**self).put_pending(lookup, pending)
    }
    fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        (**self).take_pending(lookup, now)
    }
}

pub(crate) fn unix_now() -> u64 {
    #[allow(
        clippy::disallowed_methods,
        reason = "row timestamps are metadata, not protocol decisions"
    )]
    class_oauth_core::time::to_unix(SystemTime::now())
}
