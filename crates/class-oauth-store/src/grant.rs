//! What a store holds per tenant: the grant with its status, the summary a listing
//! shows, and the query that pages through them.

use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;
use serde::{Deserialize, Serialize};

use crate::TenantKey;

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

/// Which grants [`TokenStore::list`](crate::TokenStore::list) returns: a page in row-key order, after a cursor,
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
