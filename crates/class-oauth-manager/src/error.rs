//! What goes wrong, and what the manager reports.

use std::time::Duration;

use class_oauth_core::Error;
use class_oauth_core::flow::{DriveError, TransportError};
use class_oauth_store::{StoreError, TenantKey};

/// Why a manager could not produce a token. Every variant keeps its cause. `Clone`: one
/// refresh outcome is shared by every caller waiting on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// Nothing is stored for the tenant: run the authorization flow.
    #[error("no grant is stored for {key}; the user must authorize first")]
    NoGrant {
        /// The tenant.
        key: TenantKey,
    },
    /// The grant is dead: the user must authorize again.
    #[error("the grant for {key} needs re-authorization: {reason}")]
    NeedsReauthorization {
        /// The tenant.
        key: TenantKey,
        /// Why.
        reason: String,
    },
    /// The authorization server refused the refresh with an OAuth error that does not
    /// end the grant (`invalid_client`, `invalid_scope`, `temporarily_unavailable`, ...).
    #[error("the authorization server refused the refresh: {0}")]
    Refused(Error),
    /// A response failed a check: an ID token that does not validate, a policy
    /// violation. On a refresh, the rotated refresh token was kept and the new access
    /// token withheld ([`class_oauth_store::GrantStatus::Unverified`]).
    #[error("validation failed: {0}")]
    Validation(Error),
    /// A response did not follow the protocol (an HTML error page, a truncated or
    /// oversized body).
    #[error("malformed response: {0}")]
    Malformed(Error),
    /// A Class API refused the call (after the one forced refresh a 401 gets).
    #[error("the Class API refused: {0}")]
    Api(Error),
    /// The transport failed (connect, timeout, reset).
    #[error(transparent)]
    Transport(TransportError),
    /// The token store failed. See [`StoreError::is_transient`]: a wrong key is not.
    #[error(transparent)]
    Store(StoreError),
    /// Another instance has been refreshing this grant for longer than the manager
    /// waits, and the current access token has expired.
    #[error("another instance is refreshing the grant for {key} (waited {waited:?})")]
    Contended {
        /// The tenant.
        key: TenantKey,
        /// How long this caller waited.
        waited: Duration,
    },
    /// The manager or the request is misconfigured (no async runtime, no such endpoint,
    /// bad input).
    #[error("configuration: {0}")]
    Config(String),
}

impl From<DriveError> for ManagerError {
    fn from(e: DriveError) -> Self {
        match e {
            DriveError::Transport(t) => Self::Transport(t),
            DriveError::Protocol(p) => Self::from(p),
            other => Self::Config(other.to_string()),
        }
    }
}

impl From<Error> for ManagerError {
    fn from(e: Error) -> Self {
        match e {
            Error::ServerRefused(_) => Self::Refused(e),
            Error::ApiRefused(_) => Self::Api(e),
            Error::MalformedResponse(_) => Self::Malformed(e),
            Error::PolicyViolation(_) | Error::IdTokenRejected(_) => Self::Validation(e),
            Error::InvalidInput(_) => Self::Config(e.to_string()),
            _ => Self::Config(e.to_string()),
        }
    }
}

impl From<StoreError> for ManagerError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl ManagerError {
    /// True when the user must authorize (again).
    #[must_use]
    pub fn requires_reauthorization(&self) -> bool {
        matches!(
            self,
            Self::NoGrant { .. } | Self::NeedsReauthorization { .. }
        )
    }

    /// True when trying later may help: transport failures, transient refusals and
    /// store failures, contention. A wrong store key, a validation failure and
    /// configuration are not.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Refused(e) | Self::Malformed(e) | Self::Api(e) => e.is_transient(),
            Self::Transport(_) | Self::Contended { .. } => true,
            Self::Store(s) => s.is_transient(),
            _ => false,
        }
    }

    /// The core's error, for the variants that carry one.
    #[must_use]
    pub fn protocol(&self) -> Option<&Error> {
        match self {
            Self::Refused(e) | Self::Validation(e) | Self::Malformed(e) | Self::Api(e) => Some(e),
            _ => None,
        }
    }
}

/// What the manager reports to its hook (and logs with `tracing`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenEvent {
    /// A grant was stored after a login.
    Stored {
        /// The tenant.
        key: TenantKey,
        /// The new version.
        version: u64,
    },
    /// A refresh succeeded and was stored.
    Refreshed {
        /// The tenant.
        key: TenantKey,
        /// The new version.
        version: u64,
        /// The new access token's expiry (Unix seconds).
        expires_at: Option<u64>,
        /// From the token response's arrival to the store's confirmation of the write of
        /// its refresh token: the window in which a crash loses the grant.
        durable_after: Duration,
    },
    /// Another instance had refreshed already; its tokens were used.
    RefreshedElsewhere {
        /// The tenant.
        key: TenantKey,
    },
    /// A refresh failed; the grant is unchanged and the old token served while valid.
    RefreshFailed {
        /// The tenant.
        key: TenantKey,
        /// The error, without secrets.
        error: String,
        /// Whether trying later may help.
        transient: bool,
    },
    /// A refresh was sent and no usable answer came: the stored refresh token may have
    /// been spent. Recorded on the grant ([`class_oauth_store::GrantStatus::InDoubt`]).
    InDoubt {
        /// The tenant.
        key: TenantKey,
        /// What happened.
        reason: String,
    },
    /// The refresh rotated the refresh token (kept) but the new access token failed a
    /// check and was withheld.
    Withheld {
        /// The tenant.
        key: TenantKey,
        /// Why.
        reason: String,
    },
    /// The grant needs the user again.
    ReauthorizationRequired {
        /// The tenant.
        key: TenantKey,
        /// Why.
        reason: String,
    },
    /// Writing a rotated refresh token failed; the write is retried with backoff.
    PersistRetry {
        /// The tenant.
        key: TenantKey,
        /// Attempts so far.
        attempt: u32,
        /// The store error.
        error: String,
    },
    /// Writing a rotated refresh token failed after every retry: the tokens are held in
    /// this process's memory and written before anything else on the next call for the
    /// tenant. If the process exits first, the grant is lost.
    PersistFailed {
        /// The tenant.
        key: TenantKey,
        /// The store error.
        error: String,
    },
    /// A login replaced the grant while a refresh was running; the refresh's tokens were
    /// dropped in favour of the newer login.
    Superseded {
        /// The tenant.
        key: TenantKey,
    },
    /// The grant ended because Class refused a refresh token that was within its lifetime
    /// and not in doubt: the customer has most likely revoked this application's access
    /// in Class (Business > Partner Application Access), and must connect again. (Class
    /// answers `invalid_grant` for revocation, lapse and reuse alike; this is the
    /// manager's reading of the grant's history. Other ends are
    /// [`TokenEvent::ReauthorizationRequired`].)
    Revoked {
        /// The tenant.
        key: TenantKey,
        /// Why, worded for the partner.
        reason: String,
    },
    /// The keeper's warning: the grant's refresh token lapses soon and refreshing cannot
    /// extend it (an absolute lifetime), so the customer must connect again before then.
    LapseAhead {
        /// The tenant.
        key: TenantKey,
        /// When it lapses (Unix seconds).
        lapses_at: u64,
        /// The lead time this warning was given at (one event per configured lead).
        lead: Duration,
    },
}

/// One line for people: what happened to which tenant (never a token).
impl std::fmt::Display for TokenEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stored { key, version } => {
                write!(f, "{}: grant stored (version {version})", key.tenant())
            }
            Self::Refreshed {
                key,
                version,
                durable_after,
                ..
            } => write!(
                f,
                "{}: refreshed (version {version}; the rotated refresh token was durable {} ms after the answer)",
                key.tenant(),
                durable_after.as_millis()
            ),
            Self::RefreshedElsewhere { key } => {
                write!(
                    f,
                    "{}: another instance had refreshed; its tokens are used",
                    key.tenant()
                )
            }
            Self::RefreshFailed {
                key,
                error,
                transient,
            } => write!(
                f,
                "{}: refresh failed ({}): {error}",
                key.tenant(),
                if *transient {
                    "may pass later"
                } else {
                    "will not pass by retrying"
                }
            ),
            Self::InDoubt { key, reason } => {
                write!(f, "{}: refresh outcome unknown: {reason}", key.tenant())
            }
            Self::Withheld { key, reason } => write!(
                f,
                "{}: rotated refresh token kept, new access token withheld: {reason}",
                key.tenant()
            ),
            Self::ReauthorizationRequired { key, reason } => {
                write!(f, "{}: the user must sign in again: {reason}", key.tenant())
            }
            Self::PersistRetry {
                key,
                attempt,
                error,
            } => write!(
                f,
                "{}: writing the rotated refresh token failed (attempt {attempt}), retrying: {error}",
                key.tenant()
            ),
            Self::PersistFailed { key, error } => write!(
                f,
                "{}: writing the rotated refresh token failed; held in memory: {error}",
                key.tenant()
            ),
            Self::Superseded { key } => write!(
                f,
                "{}: a newer sign-in replaced the grant during a refresh",
                key.tenant()
            ),
            Self::Revoked { key, .. } => write!(
                f,
                "{}: the customer has probably revoked this application's access in Class: ask them to connect again",
                key.tenant()
            ),
            Self::LapseAhead { key, lead, .. } => write!(
                f,
                "{}: the grant lapses in about {} h and cannot be extended: ask the customer to connect again",
                key.tenant(),
                lead.as_secs() / 3600
            ),
        }
    }
}

impl TokenEvent {
    /// Logs the event with `tracing` (tenant keys and reasons only, never a token).
    pub fn log(&self) {
        match self {
            Self::Refreshed {
                key,
                version,
                expires_at,
                durable_after,
            } => tracing::info!(
                tenant = %key,
                version,
                expires_at,
                durable_after_us = durable_after.as_micros() as u64,
                "token refreshed"
            ),
            Self::RefreshedElsewhere { key } => {
                tracing::debug!(tenant = %key, "another instance refreshed first");
            }
            Self::RefreshFailed {
                key,
                error,
                transient,
            } => tracing::warn!(tenant = %key, transient, error = %error, "refresh failed"),
            Self::InDoubt { key, reason } => {
                tracing::warn!(tenant = %key, reason = %reason, "refresh outcome unknown");
            }
            Self::Withheld { key, reason } => tracing::warn!(
                tenant = %key,
                reason = %reason,
                "refreshed access token withheld (refresh token kept)"
            ),
            Self::ReauthorizationRequired { key, reason } => {
                tracing::warn!(tenant = %key, reason = %reason, "re-authorization required");
            }
            Self::PersistRetry {
                key,
                attempt,
                error,
            } => {
                tracing::warn!(tenant = %key, attempt, error = %error, "writing the rotated refresh token failed; retrying")
            }
            Self::PersistFailed { key, error } => tracing::error!(
                tenant = %key,
                error = %error,
                "the rotated refresh token could not be written; held in memory until the next call"
            ),
            Self::Superseded { key } => {
                tracing::info!(tenant = %key, "a login replaced the grant during a refresh");
            }
            Self::Stored { key, version } => tracing::info!(tenant = %key, version, "grant stored"),
            Self::Revoked { key, reason } => {
                tracing::warn!(tenant = %key, reason = %reason, "the customer probably revoked the grant");
            }
            Self::LapseAhead {
                key,
                lapses_at,
                lead,
            } => tracing::warn!(
                tenant = %key,
                lapses_at,
                lead_s = lead.as_secs(),
                "the grant lapses soon and cannot be extended"
            ),
        }
    }
}
