//! The hot path: a concurrent map from tenant to a usable grant with its refresh time.
//! A read is one coarse monotonic clock read (`CLOCK_MONOTONIC_COARSE`, a few
//! nanoseconds, millisecond resolution), one shard read lock, a lookup by the tenant
//! key's precomputed hash (no hashing on the hot path), and an `Arc` clone.
//!
//! Deadlines are kept on the monotonic clock, computed from the wall clock when a grant
//! is cached. Like every monotonic clock on Linux it does not advance while the machine
//! is suspended: after a resume, a grant may be served until a refresh or a 401 (which
//! forces one) shows it expired.

use std::sync::Arc;
use std::time::SystemTime;

use class_oauth_core::AccessToken;
use class_oauth_store::{StoredGrant, TenantKey};

use crate::Settings;
use coarsetime::Instant;
use dashmap::DashMap;
use ring::rand::SecureRandom;

/// A grant handed out by the manager, shared with its cache: cloning it is one atomic
/// increment, and the secrets are zeroized when the last holder drops it. Dereferences to
/// [`StoredGrant`].
#[derive(Clone)]
pub struct SharedGrant(Arc<Entry>);

/// The deadlines first, so that a cached read touches one line of the allocation: the
/// reference counts and the three deadlines.
#[repr(C)]
struct Entry {
    refresh_at: Instant,
    expires_at: Instant,
    /// After a failed refresh, serve until then (zero: no backoff).
    retry_not_before: Instant,
    grant: StoredGrant,
}

impl std::ops::Deref for SharedGrant {
    type Target = StoredGrant;
    fn deref(&self) -> &StoredGrant {
        &self.0.grant
    }
}

impl std::fmt::Debug for SharedGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0.grant, f)
    }
}

impl PartialEq for SharedGrant {
    fn eq(&self, other: &Self) -> bool {
        self.0.grant == other.0.grant
    }
}

impl SharedGrant {
    /// The grant, as stored.
    #[must_use]
    pub fn stored(&self) -> &StoredGrant {
        &self.0.grant
    }
}

/// `TenantKey` hashes itself once, with a per-process random key; the map uses that
/// value as it is.
type KeyHash = nohash_hasher::BuildNoHashHasher<u64>;

/// The monotonic deadline for a wall-clock `at`, seen from `now`.
fn deadline(mono_now: Instant, now: SystemTime, at: SystemTime) -> Instant {
    match at.duration_since(now) {
        Ok(ahead) => mono_now.saturating_add(coarsetime::Duration::from(ahead)),
        Err(behind) => mono_now.saturating_sub(coarsetime::Duration::from(behind.duration())),
    }
}

/// Usable grants by tenant, with when to refresh each.
#[derive(Debug)]
pub(crate) struct GrantCache {
    map: DashMap<TenantKey, SharedGrant, KeyHash>,
    settings: Arc<Settings>,
}

impl GrantCache {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        Self {
            map: DashMap::with_hasher_and_shard_amount(KeyHash::default(), 64),
            settings,
        }
    }

    /// The cached grant when it needs no refresh now (or when a refresh just failed and
    /// its token is still valid).
    #[inline]
    pub(crate) fn fresh(&self, key: &TenantKey) -> Option<SharedGrant> {
        let now = Instant::now_without_cache_update();
        let c = self.map.get(key)?;
        let e = &*c.0;
        if now < e.refresh_at || (now < e.expires_at && now < e.retry_not_before) {
            return Some(c.clone());
        }
        None
    }

    /// The shared form of `grant`, with its deadlines ([`Settings::serve_until`], on
    /// the monotonic clock).
    pub(crate) fn share(&self, grant: StoredGrant, refresh_failed: bool) -> SharedGrant {
        #[allow(
            clippy::disallowed_methods,
            reason = "the manager reads the clock; the core does not"
        )]
        let now = SystemTime::now();
        let mono = Instant::now_without_cache_update();
        let rng = ring::rand::SystemRandom::new();
        let mut jitter = |b: &mut [u8]| {
            let _ = rng.fill(b);
        };
        let until = self
            .settings
            .serve_until(&grant, now, refresh_failed, &mut jitter);
        let retry_not_before = until
            .retry_not_before
            .map_or(Instant::from_u64(0), |at| deadline(mono, now, at));
        let (refresh_at, expires_at) = (until.refresh_at, until.expires_at);
        SharedGrant(Arc::new(Entry {
            refresh_at: deadline(mono, now, refresh_at),
            expires_at: deadline(mono, now, expires_at),
            retry_not_before,
            grant,
        }))
    }

    /// Caches a usable grant ([`Settings::caches`]); forgets the tenant otherwise.
    pub(crate) fn put(&self, key: &TenantKey, grant: &SharedGrant) {
        if Settings::caches(grant) {
            self.map.insert(key.clone(), grant.clone());
        } else {
            self.remove(key);
        }
    }

    pub(crate) fn remove(&self, key: &TenantKey) {
        self.map.remove(key);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// A valid access token, shared with the manager's cache rather than copied: cloning it
/// is an atomic increment, and the secret is zeroized once the last holder drops it.
/// Dereferences to [`AccessToken`].
#[derive(Clone)]
pub struct SharedAccessToken(pub(crate) SharedGrant);

impl SharedAccessToken {
    /// The grant the token belongs to (version, scope, business, ID-token claims).
    #[must_use]
    pub fn grant(&self) -> &SharedGrant {
        &self.0
    }
}

impl std::ops::Deref for SharedAccessToken {
    type Target = AccessToken;
    fn deref(&self) -> &AccessToken {
        &self.0.tokens.access_token
    }
}

impl std::fmt::Debug for SharedAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0.tokens.access_token, f)
    }
}
