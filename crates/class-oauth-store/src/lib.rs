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

use std::time::SystemTime;

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;

pub mod crypto;
mod grant;
#[cfg(feature = "sqlite")]
mod holder;
mod key;
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
pub use grant::{GrantQuery, GrantStatus, GrantSummary, StoredGrant};
pub use key::TenantKey;
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use recovery::{HeldWrite, RecoveryFile};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

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
