//! The manager's tunables: refresh timing, leases, concurrency, the in-doubt rule, and
//! what a grant is served until.

use std::time::{Duration, SystemTime};

use class_oauth_core::refresh::RefreshPolicy;

use crate::{GrantStatus, StoredGrant};

/// The tunables, with their defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settings {
    /// When to refresh (default: 60 s ahead of expiry, clamped to half the lifetime).
    pub policy: RefreshPolicy,
    /// After a failed refresh while the old token is still valid, serve it this long
    /// before trying again (default 5 s).
    pub backoff: Duration,
    /// At most this many refreshes at once per manager (default 32): bounds the load a
    /// storm of expiries puts on Class and on the store.
    pub max_concurrent_refreshes: usize,
    /// How long a refresh lease lasts. It must outlast the longest refresh holding it
    /// (the token request, a key-set fetch, the write retries), or a second refresh
    /// could race the first: `None` (the default) derives it from the HTTP client's own
    /// bound on one request ([`Settings::lease_floor`]; 120 s when the client reports
    /// none), and a value below that floor is raised to it when the manager is built.
    /// A crashed holder's lease frees the grant after this long (on SQLite, at once when
    /// the holder's process is gone).
    pub lease_ttl: Option<Duration>,
    /// How long a caller whose access token has expired waits for another instance's
    /// refresh before [`ManagerError::Contended`](crate::ManagerError::Contended) (default 30 s).
    pub lease_wait: Duration,
    /// Retries of a failed write of rotated tokens, with doubling waits from
    /// `persist_backoff` (default 6 retries from 50 ms: about 3 s in all).
    pub persist_retries: u32,
    /// The first wait between write retries (default 50 ms).
    pub persist_backoff: Duration,
    /// What the next refresh does with a grant left in doubt (a refresh sent and never
    /// answered): see [`InDoubtRule`].
    pub in_doubt: InDoubtRule,
    /// How long a refresh token lives unused (default 30 days, Class's documented
    /// lifetime; whether it slides with each refresh is not documented). An estimate for
    /// planning, never a reason to skip a refresh: grant health
    /// ([`GrantHealth::lapses_at`](crate::GrantHealth::lapses_at)) estimates each grant's lapse from it, the keeper
    /// refreshes ahead of it, and a refusal past it reads as a lapse rather than a
    /// revocation. (The core's `RefreshPolicy::refresh_token_lifetime`, off by default, is
    /// the other thing: a cut-off past which the refresh token is not even presented.)
    pub refresh_token_idle_limit: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            policy: RefreshPolicy::default(),
            backoff: Duration::from_secs(5),
            max_concurrent_refreshes: 32,
            lease_ttl: None,
            lease_wait: Duration::from_secs(30),
            persist_retries: 6,
            persist_backoff: Duration::from_millis(50),
            in_doubt: InDoubtRule::default(),
            refresh_token_idle_limit: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Until when a cached grant is served without asking the refresh procedure
/// ([`Settings::serve_until`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeUntil {
    /// When the refresh procedure is asked again.
    pub refresh_at: SystemTime,
    /// When the access token expires.
    pub expires_at: SystemTime,
    /// After a failed refresh: served (while valid) until then without asking again.
    pub retry_not_before: Option<SystemTime>,
}

impl ServeUntil {
    /// Is the grant served from the cache at `now`?
    #[must_use]
    pub fn serves(&self, now: SystemTime) -> bool {
        now < self.refresh_at
            || (now < self.expires_at && self.retry_not_before.is_some_and(|r| now < r))
    }
}

/// The lease when the HTTP client reports no bound on a request.
const LEASE_WITHOUT_BOUND: Duration = Duration::from_secs(120);

impl Settings {
    /// The shortest lease that outlives a refresh whose requests each take at most
    /// `request_bound`: two requests (the token request and a key-set fetch), every
    /// write retry's wait, and a 10 s margin for the store's own round trips.
    #[must_use]
    pub fn lease_floor(&self, request_bound: Duration) -> Duration {
        let mut retries = Duration::ZERO;
        let mut pause = self.persist_backoff;
        for _ in 0..self.persist_retries {
            retries += pause;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        request_bound * 2 + retries + Duration::from_secs(10)
    }

    /// The lease this manager takes, for an HTTP client with this bound (see
    /// [`Settings::lease_ttl`]).
    #[must_use]
    pub fn effective_lease_ttl(&self, request_bound: Option<Duration>) -> Duration {
        match (self.lease_ttl, request_bound) {
            (Some(ttl), Some(b)) => ttl.max(self.lease_floor(b)),
            (None, Some(b)) => self.lease_floor(b),
            (Some(ttl), None) => ttl,
            (None, None) => LEASE_WITHOUT_BOUND,
        }
    }

    /// The deadlines of a grant the refresh procedure returned at `now`: its refresh time
    /// (with the policy's jitter, drawn from `entropy`; a grant in doubt is due at once
    /// under [`InDoubtRule::Retry`], else at its expiry), and after a failed refresh, the
    /// backoff. The manager's cache keeps these on the monotonic clock.
    pub fn serve_until(
        &self,
        grant: &StoredGrant,
        now: SystemTime,
        refresh_failed: bool,
        entropy: &mut dyn class_oauth_core::client::EntropySource,
    ) -> ServeUntil {
        let expires_at = self.policy.expires_at(&grant.tokens);
        let refresh_at = match grant.status {
            GrantStatus::Active => self.policy.refresh_at(&grant.tokens, Some(entropy)),
            GrantStatus::InDoubt { .. } if self.in_doubt == InDoubtRule::Retry => now,
            _ => expires_at,
        };
        ServeUntil {
            refresh_at,
            expires_at,
            retry_not_before: refresh_failed
                .then(|| class_oauth_core::time::add(now, self.backoff)),
        }
    }

    /// Whether a grant the procedure returned is cached and served: active, or in doubt
    /// (its access token is still the newest one issued).
    #[must_use]
    pub fn caches(grant: &StoredGrant) -> bool {
        matches!(
            grant.status,
            GrantStatus::Active | GrantStatus::InDoubt { .. }
        )
    }
}

/// What a refresh does with a grant left in doubt: a refresh was sent and no answer was
/// recorded (a timeout, a reset, an unreadable answer, a process that died), so its
/// one-time refresh token may or may not have been spent.
///
/// Presenting it again cannot lose anything against a server that answers reuse with
/// `invalid_grant` (Class's documented behaviour): if the first request rotated it, that
/// answer is lost and so is the grant either way; if the first request never arrived,
/// or a grace window applies, the retry keeps the grant. Against a server that revokes
/// the whole grant on reuse, a retry of a token that was spent also revokes the access
/// token still held. The lease outlives the request holding it
/// ([`Settings::lease_ttl`]), so a retry never races the first request.
/// `cargo xtask sim` measures the rules under each provider behaviour
/// (docs/ARCHITECTURE.md quotes the figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum InDoubtRule {
    /// Present the refresh token again at the next refresh, which is due at once (after
    /// the backoff), while the access token is still valid; a refusal then ends the grant
    /// with a reason naming the earlier unknown outcome. The default: it loses the fewest
    /// grants under Class's documented behaviour (docs/ARCHITECTURE.md has the figures).
    #[default]
    Retry,
    /// Use the access token until it expires, then present the refresh token once more.
    RetryAtExpiry,
    /// Never present it again: use the access token until it expires, then the grant
    /// needs re-authorization.
    GiveUp,
}
