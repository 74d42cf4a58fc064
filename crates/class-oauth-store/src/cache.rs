//! The token managers' hot-path cache, shared by the async and the blocking manager: a
//! concurrent map from tenant to grant with its refresh time. A read takes only the
//! map's shard lock; nothing else.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use class_oauth_core::refresh::RefreshPolicy;
use dashmap::DashMap;
use ring::rand::SecureRandom;

use crate::procedure::{ManagerError, TokenEvent};
use crate::{StoredGrant, TenantKey};

#[derive(Debug)]
struct Cached {
    grant: Arc<StoredGrant>,
    refresh_at: SystemTime,
    expires_at: SystemTime,
    retry_not_before: Option<SystemTime>,
}

/// Grants by tenant, with when to refresh each.
#[derive(Debug)]
pub struct GrantCache {
    map: DashMap<TenantKey, Cached>,
    policy: RefreshPolicy,
    backoff: Duration,
}

impl GrantCache {
    /// A cache deciding with `policy`; after a failed refresh while the old token is still
    /// valid, the old token is served for `backoff` before the next attempt.
    #[must_use]
    pub fn new(policy: RefreshPolicy, backoff: Duration) -> Self {
        Self {
            map: DashMap::with_shard_amount(64),
            policy,
            backoff,
        }
    }

    /// The refresh policy.
    #[must_use]
    pub fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    /// Sets the policy.
    pub fn set_policy(&mut self, policy: RefreshPolicy) {
        self.policy = policy;
    }

    /// Sets the backoff.
    pub fn set_backoff(&mut self, backoff: Duration) {
        self.backoff = backoff;
    }

    /// The hot path: the cached grant when it needs no refresh at `now` (or when a refresh
    /// just failed and the token is still valid).
    #[must_use]
    pub fn fresh(&self, key: &TenantKey, now: SystemTime) -> Option<Arc<StoredGrant>> {
        let c = self.map.get(key)?;
        let backing_off = c.retry_not_before.is_some_and(|t| now < t) && now < c.expires_at;
        if now < c.refresh_at || backing_off {
            tracing::trace!(tenant = %key, backing_off, "cached token");
            return Some(c.grant.clone());
        }
        None
    }

    /// Caches a grant, computing its refresh time (with the policy's jitter).
    pub fn put(
        &self,
        key: &TenantKey,
        grant: Arc<StoredGrant>,
        refresh_failed: bool,
        now: SystemTime,
    ) {
        let rng = ring::rand::SystemRandom::new();
        let mut jitter = |b: &mut [u8]| {
            let _ = rng.fill(b);
        };
        let refresh_at = self.policy.refresh_at(&grant.tokens, Some(&mut jitter));
        let expires_at = self.policy.expires_at(&grant.tokens);
        let retry_not_before = refresh_failed.then(|| now + self.backoff);
        self.map.insert(
            key.clone(),
            Cached {
                grant,
                refresh_at,
                expires_at,
                retry_not_before,
            },
        );
    }

    /// Forgets a tenant.
    pub fn remove(&self, key: &TenantKey) {
        self.map.remove(key);
    }

    /// How many tenants are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Is the cache empty?
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records a refresh outcome: logs its events, caches a grant (with backoff when the
    /// refresh failed but the old token is still served), forgets the tenant on an error.
    pub fn record(
        &self,
        key: &TenantKey,
        outcome: &Result<Arc<StoredGrant>, ManagerError>,
        events: &[TokenEvent],
        now: SystemTime,
    ) {
        for e in events {
            e.log();
        }
        match outcome {
            Ok(g) => self.put(
                key,
                g.clone(),
                events
                    .iter()
                    .any(|e| matches!(e, TokenEvent::RefreshFailed { .. })),
                now,
            ),
            Err(_) => self.remove(key),
        }
    }
}

/// A counting semaphore for the blocking manager: at most `n` refresh procedures at once,
/// so a manager never holds more pooled connections than it was given.
#[derive(Debug)]
pub struct RefreshSlots {
    free: std::sync::Mutex<usize>,
    cv: std::sync::Condvar,
}

/// A held slot; released on drop.
#[derive(Debug)]
pub struct RefreshSlot<'a>(&'a RefreshSlots);

impl RefreshSlots {
    /// `n` slots (at least one).
    #[must_use]
    pub fn new(n: usize) -> Self {
        Self {
            free: std::sync::Mutex::new(n.max(1)),
            cv: std::sync::Condvar::new(),
        }
    }

    /// Waits for a slot.
    pub fn acquire(&self) -> RefreshSlot<'_> {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *free == 0 {
            free = self
                .cv
                .wait(free)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *free -= 1;
        RefreshSlot(self)
    }
}

impl Drop for RefreshSlot<'_> {
    fn drop(&mut self) {
        *self
            .0
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        self.0.cv.notify_one();
    }
}
