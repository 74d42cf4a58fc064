//! # class-oauth-store
//!
//! Per-tenant storage of Class grants, and the refresh procedure that keeps them alive.
//!
//! A Class grant covers one business, its refresh token is single-use and rotates on every
//! refresh, and a partner may run several instances. So a store keeps, per [`TenantKey`],
//! the token set (encrypted at rest), its status, a version for compare-and-swap, and a
//! refresh [`Lease`] (owner and expiry, taken and released by single conditional writes:
//! no transaction or lock is ever held while a refresh talks to Class); and it keeps the
//! code flow's pending authorization records. The token manager (`class-oauth-manager`)
//! is the one user of the lease and update calls.
//!
//! One contract, [`TokenStore`]: async, and run to completion with a `block_on` by
//! blocking callers. Backends: [`MemoryStore`] (tests, short-lived processes; answers
//! in place), [`SqliteStore`] (the embedded default, one file, `synchronous=FULL`; its
//! statements run on tokio's blocking pool when called on a tokio runtime, in place
//! elsewhere), and [`PostgresStore`] (several instances; natively async on
//! `tokio-postgres` with a `deadpool` pool; [`PostgresStore::connect_blocking`] gives
//! it a small runtime of its own for callers without one; statement, lock and
//! idle-in-transaction timeouts set on every connection; migrations applied on connect).
//!
//! Secrets at rest: access, refresh and ID tokens (and pending records) are sealed with
//! AES-256-GCM, the row's identity as associated data, under a key id (see [`crypto`]).
//! A store opened without a key refuses to write secrets ([`StoreError::NoEncryptionKey`])
//! unless opened with [`Encryption::DangerPlaintext`].
//!
//! ## Features
//! Backends are opt-in, so a crate that needs only one links only one:
//! - `sqlite`: [`SqliteStore`] (rusqlite with SQLite compiled in);
//! - `postgres`: [`PostgresStore`] (tokio-postgres, deadpool);
//! - `tokio` (default): SQLite statements called on a tokio runtime run on its blocking
//!   pool, so file I/O never blocks the executor.
//!
//! [`MemoryStore`] and the trait are always there; a backend of your own implements
//! [`TokenStore`] (see its docs).
//!
//! ## Choosing a store
//! ```no_run
//! # #[cfg(not(all(feature = "sqlite", feature = "postgres")))] fn main() {}
//! # #[cfg(all(feature = "sqlite", feature = "postgres"))]
//! # fn main() -> Result<(), class_oauth_store::StoreError> {
//! use class_oauth_store::{Encryption, KeyRing, MemoryStore, PostgresStore, SqliteStore};
//! let keys = KeyRing::parse(&std::env::var("CLASS_OAUTH_STORE_KEY").unwrap_or_default())?;
//! // One process, nothing at rest:
//! let memory = MemoryStore::new();
//! // The embedded default, a file:
//! let sqlite = SqliteStore::open("class-oauth.sqlite3", Encryption::Keys(keys.clone()))?;
//! // Several instances sharing grants (blocking callers; async callers use `connect`):
//! let pg = PostgresStore::connect_blocking("postgres://app@db/class", 8, Encryption::Keys(keys))?;
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
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

pub mod crypto;
#[cfg(feature = "sqlite")]
mod holder;
mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod recovery;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod row;
#[cfg(feature = "sqlite")]
mod sqlite;

/// The attribute [`TokenStore`] is written with, for implementations outside this crate.
pub use async_trait::async_trait;
pub use crypto::{Encryption, EncryptionKey, KeyRing};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use recovery::{HeldWrite, RecoveryFile};
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
/// Cheap to clone and to look up: the parts are shared, the row key and a hash (keyed
/// per process) are computed once, `Hash` writes that one `u64`, and equality checks the
/// pointer before the text. Keep the keys you
/// use in hot paths rather than rebuilding them per call.
#[derive(Clone)]
pub struct TenantKey(std::sync::Arc<KeyParts>, u64);

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
        // Keyed per process (SipHash with random keys), so tenant names chosen by
        // outsiders cannot be crafted to collide; maps may use this value as their hash.
        static HASH_KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
        parts.hash = std::hash::BuildHasher::hash_one(
            HASH_KEYS.get_or_init(std::hash::RandomState::new),
            &parts.storage_key,
        );
        let hash = parts.hash;
        Self(std::sync::Arc::new(parts), hash)
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

    /// Adds the scope set (for several grants per tenant with different scopes). The set
    /// is keyed in its canonical (sorted) form, so the order the scopes were listed in
    /// does not make another key.
    #[must_use]
    pub fn with_scope(self, scope: &Scopes) -> Self {
        Self::from_parts(
            self.0.client_id.clone(),
            self.0.tenant.clone(),
            self.0.subject.clone(),
            scope.canonical(),
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
        std::sync::Arc::ptr_eq(&self.0, &other.0)
            || (self.1 == other.1 && self.0.storage_key == other.0.storage_key)
    }
}

impl Eq for TenantKey {}

impl std::hash::Hash for TenantKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Kept beside the pointer: hashing reads no other memory.
        state.write_u64(self.1);
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

/// Whether a grant can be used, and what its last refresh left behind.
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
    /// The stored refresh token is the newest one (it was written as soon as the token
    /// response arrived), but the access token that came with it failed a check (an ID
    /// token that did not validate, a key set that could not be fetched) or was not
    /// checked yet. That access token is never handed out; the next use refreshes.
    Unverified {
        /// Why.
        reason: String,
    },
    /// A refresh was sent and no answer came (timeout, reset, a process that died
    /// holding the lease): the stored refresh token may have been spent. What the next
    /// refresh does is the token manager's in-doubt rule (by default it presents the
    /// refresh token once more, and a refusal ends the grant); the current access token
    /// is served meanwhile while it is valid.
    InDoubt {
        /// What happened.
        reason: String,
    },
}

impl GrantStatus {
    /// Every status name as stored ([`GrantStatus::as_parts`]), in a fixed order.
    pub const NAMES: [&'static str; 4] =
        ["active", "needs_reauthorization", "unverified", "in_doubt"];

    /// The status and its reason as stored (`active`, `needs_reauthorization`,
    /// `unverified`, `in_doubt`).
    #[must_use]
    pub fn as_parts(&self) -> (&'static str, &str) {
        match self {
            Self::Active => ("active", ""),
            Self::NeedsReauthorization { reason } => ("needs_reauthorization", reason),
            Self::Unverified { reason } => ("unverified", reason),
            Self::InDoubt { reason } => ("in_doubt", reason),
        }
    }

    /// The status from its stored parts; an unknown name reads as needing
    /// re-authorization (never as active).
    #[must_use]
    pub fn from_parts(status: &str, reason: &str) -> Self {
        let reason = reason.to_owned();
        match status {
            "active" => Self::Active,
            "unverified" => Self::Unverified { reason },
            "in_doubt" => Self::InDoubt { reason },
            "needs_reauthorization" => Self::NeedsReauthorization { reason },
            other => Self::NeedsReauthorization {
                reason: format!("unknown stored status `{other}`: {reason}"),
            },
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
    /// The CAS version (incremented on every write of tokens or status; taking and
    /// releasing a lease do not change it).
    pub version: u64,
}

impl StoredGrant {
    /// A grant value (for stores written outside this crate).
    #[must_use]
    pub fn new(
        tokens: TokenSet,
        id_claims: Option<IdTokenClaims>,
        status: GrantStatus,
        version: u64,
    ) -> Self {
        Self {
            tokens,
            id_claims,
            status,
            version,
        }
    }
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
    /// When the stored tokens were received (Unix seconds): at the login or the last
    /// refresh. The refresh token's age counts from here. `None` for a row written before
    /// the store kept it, until its next refresh.
    pub tokens_received_at: Option<u64>,
    /// When the grant was made: its last login (Unix seconds; `None` as above).
    pub granted_at: Option<u64>,
    /// The last refresh (Unix seconds; `None` when not refreshed since the login).
    pub refreshed_at: Option<u64>,
    /// Why the last refresh failed without ending the grant (a network error, Class
    /// unavailable), as the manager reported it (at most 500 bytes, never a secret);
    /// `None` once tokens are written again. A refusal that ends the grant is its
    /// [`GrantStatus`] reason instead.
    pub last_error: Option<String>,
    /// When that refresh failed (Unix seconds).
    pub last_error_at: Option<u64>,
}

impl GrantSummary {
    /// A summary of `key` with `status` at `version`, nothing else known (for stores
    /// written outside this crate, and tests; set the other fields after).
    #[must_use]
    pub fn new(key: TenantKey, status: GrantStatus, version: u64) -> Self {
        Self {
            key,
            business_code: None,
            scope: String::new(),
            expires_at: None,
            status,
            version,
            updated_at: 0,
            tokens_received_at: None,
            granted_at: None,
            refreshed_at: None,
            last_error: None,
            last_error_at: None,
        }
    }
}

/// Which grants [`TokenStore::list`] returns: a page in row-key order, after a cursor,
/// optionally of one status only.
///
/// ```
/// use class_oauth_store::{GrantQuery, GrantStatus};
/// // The first 100 grants whose customer must connect again:
/// let first = GrantQuery::page(100).with_status(&GrantStatus::NeedsReauthorization { reason: String::new() });
/// // ... and the next page, after the last key of this one:
/// # let last_key = class_oauth_store::TenantKey::new(&class_oauth_core::ClientId::new("app"), "B");
/// let next = first.clone().after(&last_key);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrantQuery {
    /// Only grants whose row key ([`TenantKey::storage_key`]) sorts after this one.
    pub after: Option<String>,
    /// At most this many grants (`None`: all).
    pub limit: Option<u32>,
    /// Only grants with this status name ([`GrantStatus::as_parts`]).
    pub status: Option<String>,
}

impl GrantQuery {
    /// Every grant.
    #[must_use]
    pub fn all() -> Self {
        Self::default()
    }

    /// At most `limit` grants.
    #[must_use]
    pub fn page(limit: u32) -> Self {
        Self {
            limit: Some(limit),
            ..Self::default()
        }
    }

    /// Only grants with `status` (its reason is not compared).
    #[must_use]
    pub fn with_status(mut self, status: &GrantStatus) -> Self {
        self.status = Some(status.as_parts().0.to_owned());
        self
    }

    /// Only grants after `key` (the last key of the previous page).
    #[must_use]
    pub fn after(mut self, key: &TenantKey) -> Self {
        self.after = Some(key.storage_key());
        self
    }

    /// Whether `summary` is in the query, ignoring its limit (for stores that filter in
    /// memory).
    #[must_use]
    pub fn matches(&self, summary: &GrantSummary) -> bool {
        self.after
            .as_deref()
            .is_none_or(|a| summary.key.storage_key().as_str() > a)
            && self
                .status
                .as_deref()
                .is_none_or(|s| summary.status.as_parts().0 == s)
    }

    /// The page size as SQL's `LIMIT` takes it.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn sql_limit(&self) -> i64 {
        self.limit.map_or(i64::MAX, i64::from)
    }
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
    /// Encryption or decryption failed (a wrong key, a row moved between tenants, a
    /// plaintext row in an encrypted store).
    #[error("token store encryption: {0}")]
    Crypto(String),
    /// A compare-and-swap lost: another writer changed the row.
    #[error("the stored grant changed under us (version {expected} expected)")]
    Conflict {
        /// The version the write expected.
        expected: u64,
    },
    /// The backend failed (I/O, SQL, pool, timeout).
    #[error("token store backend: {0}")]
    Backend(String),
    /// Bad configuration.
    #[error("token store configuration: {0}")]
    Config(String),
    /// The store (or one of its files) cannot be written: no rotated refresh token could
    /// be kept. Names the file at fault and why.
    #[error("the token store cannot be written: {0}")]
    ReadOnly(String),
}

impl StoreError {
    /// True when trying again later may help (a backend failure or a lost race); false
    /// for a wrong or missing key and bad configuration, which no retry fixes.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Backend(_) | Self::Conflict { .. })
    }
}

/// A per-tenant refresh lease: who holds it and for how long. Taken and released with
/// single conditional writes; no transaction or lock is held while the holder talks to
/// Class, and a crashed holder's lease simply expires.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The holder (unique per attempt).
    pub owner: String,
    /// How long the lease lasts from the moment it is taken (by the store's clock; for
    /// PostgreSQL, the database's).
    pub ttl: std::time::Duration,
    /// Also set this status (a new version) in the same conditional write, if the row's
    /// version is still this one: the refresh's in-doubt mark, taken with the lease.
    pub mark: Option<(u64, GrantStatus)>,
}

impl Lease {
    /// A lease for `owner` lasting `ttl`.
    #[must_use]
    pub fn new(owner: impl Into<String>, ttl: std::time::Duration) -> Self {
        Self {
            owner: owner.into(),
            ttl,
            mark: None,
        }
    }

    /// Also marks the row with `status` when it is taken, if its version is still
    /// `version` ([`LeaseOutcome::Acquired::marked`] says whether it was).
    #[must_use]
    pub fn marking(mut self, version: u64, status: GrantStatus) -> Self {
        self.mark = Some((version, status));
        self
    }
}

/// The answer to [`TokenStore::acquire_lease`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived; boxing buys nothing"
)]
pub enum LeaseOutcome {
    /// The lease is ours; the row as it was when we took it.
    Acquired {
        /// The row, as the statement that took the lease left it.
        grant: StoredGrant,
        /// A previous holder's lease had expired without being released: its refresh may
        /// have been sent and its outcome is unknown.
        took_over_expired: bool,
        /// The lease's [`Lease::mark`] was written (the row had the version it named).
        marked: bool,
    },
    /// Another holder has it for about this long still.
    Held {
        /// Time left on the other holder's lease.
        remaining: std::time::Duration,
    },
    /// No grant is stored.
    Missing,
}

/// A conditional write by a refresh: compare-and-swap on the version read, new tokens
/// and/or a new status, and optionally the release of the writer's lease, in one
/// statement.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct GrantUpdate<'a> {
    /// The version the write expects (else [`StoreError::Conflict`]).
    pub expected_version: u64,
    /// New tokens (and the ID-token claims to keep), or `None` to keep the tokens.
    pub tokens: Option<(&'a TokenSet, Option<&'a IdTokenClaims>)>,
    /// The new status.
    pub status: &'a GrantStatus,
    /// Release the lease held by this owner (a lease held by someone else is left).
    pub release_lease_of: Option<&'a str>,
}

impl<'a> GrantUpdate<'a> {
    /// A status change at `expected_version`.
    #[must_use]
    pub fn status(expected_version: u64, status: &'a GrantStatus) -> Self {
        Self {
            expected_version,
            tokens: None,
            status,
            release_lease_of: None,
        }
    }

    /// New tokens with `status` at `expected_version`.
    #[must_use]
    pub fn tokens(
        expected_version: u64,
        tokens: &'a TokenSet,
        id_claims: Option<&'a IdTokenClaims>,
        status: &'a GrantStatus,
    ) -> Self {
        Self {
            expected_version,
            tokens: Some((tokens, id_claims)),
            status,
            release_lease_of: None,
        }
    }

    /// Also releases `owner`'s lease.
    #[must_use]
    pub fn releasing(mut self, owner: &'a str) -> Self {
        self.release_lease_of = Some(owner);
        self
    }
}

/// The token store contract: one short operation per method, as a future. Every
/// caller reaches it this way: async callers await it, and blocking callers (the token
/// manager's blocking face, the CLI) run it to completion on their thread with a
/// `block_on` (`class_oauth_client::blocking::block_on`), as the client's blocking face
/// runs its async code. [`MemoryStore`] answers in place; [`SqliteStore`] runs each
/// statement on tokio's blocking pool when called on a tokio runtime (feature `tokio`)
/// and in place elsewhere; [`PostgresStore`] is natively async.
///
/// This is also the seam for backends of your own (sqlx, a key-value service):
/// implement it and hand the store to `class_oauth_manager::TokenManager`. `update` and
/// `acquire_lease` are conditional writes (compare the version, or the lease's owner and
/// expiry, and then the version for the lease's in-doubt mark) that must be atomic in
/// the backend, as the SQL stores do them; nothing is held between calls. The shape,
/// here delegating to [`MemoryStore`]:
///
/// ```
/// use std::time::SystemTime;
/// use class_oauth_core::{authorize::PendingAuthorization, id_token::IdTokenClaims, token::TokenSet};
/// use class_oauth_store::*;
///
/// struct MyStore(MemoryStore); // your connection pool here
///
/// #[async_trait]
/// impl TokenStore for MyStore {
///     async fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
///         self.0.load(key).await // e.g. SELECT ... WHERE key = $1
///     }
///     async fn save(&self, key: &TenantKey, tokens: &TokenSet, id: Option<&IdTokenClaims>,
///                   expected: Option<u64>) -> Result<u64, StoreError> {
///         self.0.save(key, tokens, id, expected).await
///     }
///     async fn update(&self, key: &TenantKey, u: &GrantUpdate<'_>) -> Result<u64, StoreError> {
///         self.0.update(key, u).await // UPDATE ... WHERE key = $1 AND version = $2
///     }
///     async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
///         self.0.delete(key).await
///     }
///     async fn list(&self, q: &GrantQuery) -> Result<Vec<GrantSummary>, StoreError> {
///         self.0.list(q).await // SELECT ... WHERE key > $1 ORDER BY key LIMIT $2
///     }
///     async fn acquire_lease(&self, key: &TenantKey, lease: &Lease)
///         -> Result<LeaseOutcome, StoreError> {
///         self.0.acquire_lease(key, lease).await
///     }
///     async fn release_lease(&self, key: &TenantKey, owner: &str, failure: Option<&str>) -> Result<(), StoreError> {
///         self.0.release_lease(key, owner, failure).await
///     }
///     async fn put_pending(&self, lookup: &str, p: PendingAuthorization) -> Result<(), StoreError> {
///         self.0.put_pending(lookup, p).await
///     }
///     async fn take_pending(&self, lookup: &str, now: SystemTime)
///         -> Result<Option<PendingAuthorization>, StoreError> {
///         self.0.take_pending(lookup, now).await
///     }
/// }
///
/// // A blocking caller: the same future, run to completion on this thread.
/// let store = MyStore(MemoryStore::new());
/// let key = TenantKey::new(&class_oauth_core::ClientId::new("app"), "MYBIZ");
/// assert!(pollster::block_on(store.load(&key))?.is_none());
/// # Ok::<(), StoreError>(())
/// ```
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Reads a grant.
    async fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError>;

    /// Writes a grant after a login (status becomes active, any lease is cleared). With
    /// `expected_version`, only if the stored version is that one; without, it replaces
    /// any row.
    async fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError>;

    /// A refresh's conditional write (see [`GrantUpdate`]). Returns the new version.
    async fn update(&self, key: &TenantKey, update: &GrantUpdate<'_>) -> Result<u64, StoreError>;

    /// Deletes a grant; true when one existed.
    async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError>;

    /// Lists grants (no secrets): the page `query` names, in row-key order.
    async fn list(&self, query: &GrantQuery) -> Result<Vec<GrantSummary>, StoreError>;

    /// Takes the refresh lease of `key` when it is free or expired (and writes its
    /// [`Lease::mark`] in the same statement when the row has the version it names), and
    /// returns the row as that statement left it.
    async fn acquire_lease(
        &self,
        key: &TenantKey,
        lease: &Lease,
    ) -> Result<LeaseOutcome, StoreError>;

    /// Releases `owner`'s lease (a lease held by someone else is left alone). With
    /// `failure`, the refresh that held it failed without ending the grant: the store
    /// keeps it as the grant's [`GrantSummary::last_error`] (with the time) until tokens
    /// are written again.
    async fn release_lease(
        &self,
        key: &TenantKey,
        owner: &str,
        failure: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Claims the announcement of `key`'s lapse at `lapses_at` (Unix seconds) `lead`
    /// ahead: true for the one caller that should announce it, false when this lapse was
    /// already announced at this lead or a shorter one (by any instance). The keeper
    /// announces only what it claims, so several instances announce each lead once.
    ///
    /// The default answers true (a store of your own that does not keep notices: each
    /// instance's keeper then announces once per process).
    async fn claim_lapse_notice(
        &self,
        key: &TenantKey,
        lapses_at: u64,
        lead: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let _ = (key, lapses_at, lead);
        Ok(true)
    }

    /// Stores a pending authorization under `lookup` (its `state`); it expires with the
    /// record.
    async fn put_pending(
        &self,
        lookup: &str,
        pending: PendingAuthorization,
    ) -> Result<(), StoreError>;

    /// Takes (reads and deletes) a pending authorization: a record redeems once. Expired
    /// records are not returned.
    async fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError>;
}

/// A [`GrantUpdate`] that owns its parts, so it can move to another thread or task (the
/// SQL stores run their statements there; the token manager's refresh machine hands
/// its writes to a driver as this).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OwnedUpdate {
    /// The version the write expects.
    pub expected_version: u64,
    /// New tokens and the ID-token claims to keep, or `None` to keep the tokens.
    pub tokens: Option<(TokenSet, Option<IdTokenClaims>)>,
    /// The new status.
    pub status: GrantStatus,
    /// Release the lease held by this owner in the same write.
    pub release_lease_of: Option<String>,
}

impl OwnedUpdate {
    /// A write at `expected_version` of `status`, with new `tokens` when given, releasing
    /// `release_lease_of`'s lease when given.
    #[must_use]
    pub fn new(
        expected_version: u64,
        tokens: Option<(TokenSet, Option<IdTokenClaims>)>,
        status: GrantStatus,
        release_lease_of: Option<String>,
    ) -> Self {
        Self {
            expected_version,
            tokens,
            status,
            release_lease_of,
        }
    }

    /// The borrowed form [`TokenStore::update`] takes.
    #[must_use]
    pub fn as_grant_update(&self) -> GrantUpdate<'_> {
        GrantUpdate {
            expected_version: self.expected_version,
            tokens: self.tokens.as_ref().map(|(t, c)| (t, c.as_ref())),
            status: &self.status,
            release_lease_of: self.release_lease_of.as_deref(),
        }
    }
}

impl From<&GrantUpdate<'_>> for OwnedUpdate {
    fn from(u: &GrantUpdate<'_>) -> Self {
        Self::new(
            u.expected_version,
            u.tokens.map(|(t, c)| (t.clone(), c.cloned())),
            u.status.clone(),
            u.release_lease_of.map(str::to_owned),
        )
    }
}

pub(crate) fn unix_now() -> u64 {
    #[allow(
        clippy::disallowed_methods,
        reason = "row timestamps are metadata, not protocol decisions"
    )]
    class_oauth_core::time::to_unix(SystemTime::now())
}

/// A refresh's error as a grant's last error: at most [`LAST_ERROR_MAX`] bytes, cut at a
/// character boundary.
pub(crate) fn last_error(error: &str) -> String {
    if error.len() <= LAST_ERROR_MAX {
        return error.to_owned();
    }
    let mut end = LAST_ERROR_MAX;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &error[..end])
}

/// How much of an error a grant keeps.
pub(crate) const LAST_ERROR_MAX: usize = 500;

/// The README's usage snippet, compiled and run as a doc test.
#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
