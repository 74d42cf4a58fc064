//! The hot path: a concurrent map from tenant to a usable grant with its refresh time.
//! A read is one shard read lock, one clock read and an `Arc` clone; nothing else.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use class_oauth_core::refresh::RefreshPolicy;
use class_oauth_store::{GrantStatus, StoredGrant, TenantKey};
use dashmap::DashMap;
use ring::rand::SecureRandom;

#[derive(Debug)]
struct Cached {
    grant: Arc<StoredGrant>,
    refresh_at: SystemTime,
    expires_at: SystemTime,
    retry_not_before: Option<SystemTime>,
}

/// Usable grants by tenant, with when to refresh each.
#[derive(Debug)]
pub(crate) struct GrantCache {
    map: DashMap<TenantKey, Cached>,
    policy: RefreshPolicy,
    backoff: Duration,
}

impl GrantCache {
    pub(crate) fn new(policy: RefreshPolicy, backoff: Duration) -> Self {
        Self {
            map: DashMap::with_shard_amount(64),
            policy,
            backoff,
        }
    }

    pub(crate) fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    /// The cached grant when it needs no refresh at `now` (or when a refresh just failed
    /// and its token is still valid).
    #[inline]
    pub(crate) fn fresh(&self, key: &TenantKey, now: SystemTime) -> Option<Arc<StoredGrant>> {
        let c = self.map.get(key)?;
        if now < c.refresh_at || (now < c.expires_at && c.retry_not_before.is_some_and(|t| now < t))
        {
            return Some(c.grant.clone());
        }
        None
    }

    /// Caches a usable grant: active, or in doubt with a valid access token (then it is
    /// not refreshed before it expires). Anything else is forgotten.
    pub(crate) fn put(
        &self,
        key: &TenantKey,
        grant: Arc<StoredGrant>,
        refresh_failed: bool,
        now: SystemTime,
    ) {
        let expires_at = self.policy.expires_at(&grant.tokens);
        let refresh_at = match grant.status {
            GrantStatus::Active => {
                let rng = ring::rand::SystemRandom::new();
                let mut jitter = |b: &mut [u8]| {
                    let _ = rng.fill(b);
                };
                self.policy.refresh_at(&grant.tokens, Some(&mut jitter))
            }
            GrantStatus::InDoubt { .. } => expires_at,
            _ => {
                self.map.remove(key);
                return;
            }
        };
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

    pub(crate) fn remove(&self, key: &TenantKey) {
        self.map.remove(key);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
