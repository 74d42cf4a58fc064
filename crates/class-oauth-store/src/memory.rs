//! The in-memory store: nothing at rest, so nothing is encrypted. Several managers that
//! share one `MemoryStore` (it is a shared handle) behave like instances sharing a
//! database: the refresh lease is per tenant and visible to all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;

use crate::{
    GrantQuery, GrantStatus, GrantSummary, GrantUpdate, Lease, LeaseOutcome, StoreError,
    StoredGrant, TenantKey, TokenStore, last_error, unix_now,
};

struct Entry {
    grant: StoredGrant,
    updated_at: u64,
    /// The last login (Unix seconds).
    granted_at: u64,
    /// The last refresh (Unix seconds).
    refreshed_at: Option<u64>,
    /// The last failed refresh's error and its time (Unix seconds).
    last_error: Option<(String, u64)>,
    /// The lapse announced and the shortest lead it was announced at (seconds).
    notice: Option<(u64, u64)>,
    lease: Option<(String, Instant)>,
}

#[derive(Default)]
struct Inner {
    grants: HashMap<TenantKey, Entry>,
    pending: HashMap<String, PendingAuthorization>,
}

/// The clock leases are timed by.
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A store in process memory.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    clock: Option<Clock>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose leases run on `clock` instead of the monotonic clock (a
    /// simulation's virtual time).
    #[must_use]
    pub fn with_clock(clock: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::default(),
            clock: Some(Arc::new(clock)),
        }
    }

    fn now(&self) -> Instant {
        self.clock.as_ref().map_or_else(Instant::now, |c| c())
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        Ok(self.inner().grants.get(key).map(|e| e.grant.clone()))
    }

    async fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut inner = self.inner();
        let current = inner.grants.get(key).map_or(0, |e| e.grant.version);
        if let Some(e) = expected_version {
            if e != current {
                return Err(StoreError::Conflict { expected: e });
            }
        }
        let version = current + 1;
        let grant = StoredGrant {
            tokens: tokens.clone(),
            id_claims: id_claims.cloned(),
            status: GrantStatus::Active,
            version,
        };
        inner.grants.insert(
            key.clone(),
            Entry {
                granted_at: class_oauth_core::time::to_unix(grant.tokens.received_at),
                refreshed_at: None,
                last_error: None,
                notice: None,
                grant,
                updated_at: unix_now(),
                lease: None,
            },
        );
        Ok(version)
    }

    async fn update(&self, key: &TenantKey, update: &GrantUpdate<'_>) -> Result<u64, StoreError> {
        let mut inner = self.inner();
        let conflict = StoreError::Conflict {
            expected: update.expected_version,
        };
        let Some(entry) = inner.grants.get_mut(key) else {
            return Err(conflict);
        };
        if entry.grant.version != update.expected_version {
            return Err(conflict);
        }
        if let Some((tokens, id_claims)) = update.tokens {
            entry.grant.tokens = tokens.clone();
            entry.grant.id_claims = id_claims.cloned();
            entry.refreshed_at = Some(class_oauth_core::time::to_unix(tokens.received_at));
            entry.last_error = None;
        }
        entry.grant.status = update.status.clone();
        entry.grant.version += 1;
        entry.updated_at = unix_now();
        if let Some(owner) = update.release_lease_of {
            if entry.lease.as_ref().is_some_and(|(o, _)| o == owner) {
                entry.lease = None;
            }
        }
        Ok(entry.grant.version)
    }

    async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        Ok(self.inner().grants.remove(key).is_some())
    }

    async fn list(&self, query: &GrantQuery) -> Result<Vec<GrantSummary>, StoreError> {
        let mut v: Vec<GrantSummary> = self
            .inner()
            .grants
            .iter()
            .map(|(k, e)| GrantSummary {
                key: k.clone(),
                business_code: e
                    .grant
                    .tokens
                    .business_code()
                    .map(|c| c.as_str().to_owned()),
                scope: e.grant.tokens.scopes.to_string(),
                expires_at: e
                    .grant
                    .tokens
                    .expires_at
                    .map(class_oauth_core::time::to_unix),
                status: e.grant.status.clone(),
                version: e.grant.version,
                updated_at: e.updated_at,
                tokens_received_at: Some(class_oauth_core::time::to_unix(
                    e.grant.tokens.received_at,
                )),
                granted_at: Some(e.granted_at),
                refreshed_at: e.refreshed_at,
                last_error: e.last_error.as_ref().map(|(m, _)| m.clone()),
                last_error_at: e.last_error.as_ref().map(|(_, at)| *at),
            })
            .filter(|s| query.matches(s))
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v.truncate(query.limit.map_or(usize::MAX, |l| l as usize));
        Ok(v)
    }

    async fn acquire_lease(
        &self,
        key: &TenantKey,
        lease: &Lease,
    ) -> Result<LeaseOutcome, StoreError> {
        let now = self.now();
        let mut inner = self.inner();
        let Some(entry) = inner.grants.get_mut(key) else {
            return Ok(LeaseOutcome::Missing);
        };
        let took_over_expired = match &entry.lease {
            Some((_, until)) if *until > now => {
                return Ok(LeaseOutcome::Held {
                    remaining: *until - now,
                });
            }
            Some(_) => true,
            None => false,
        };
        entry.lease = Some((lease.owner.clone(), now + lease.ttl));
        let marked = match &lease.mark {
            Some((version, status)) if *version == entry.grant.version => {
                entry.grant.status = status.clone();
                entry.grant.version += 1;
                entry.updated_at = unix_now();
                true
            }
            _ => false,
        };
        Ok(LeaseOutcome::Acquired {
            grant: entry.grant.clone(),
            took_over_expired,
            marked,
        })
    }

    async fn release_lease(
        &self,
        key: &TenantKey,
        owner: &str,
        failure: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(entry) = self.inner().grants.get_mut(key) {
            if entry.lease.as_ref().is_some_and(|(o, _)| o == owner) {
                entry.lease = None;
                if let Some(failure) = failure {
                    entry.last_error = Some((last_error(failure), unix_now()));
                }
            }
        }
        Ok(())
    }

    async fn claim_lapse_notice(
        &self,
        key: &TenantKey,
        lapses_at: u64,
        lead: Duration,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner();
        let Some(entry) = inner.grants.get_mut(key) else {
            return Ok(false);
        };
        let lead = lead.as_secs();
        match entry.notice {
            Some((at, shortest)) if at == lapses_at && shortest <= lead => Ok(false),
            _ => {
                entry.notice = Some((lapses_at, lead));
                Ok(true)
            }
        }
    }

    async fn put_pending(
        &self,
        lookup: &str,
        pending: PendingAuthorization,
    ) -> Result<(), StoreError> {
        self.inner().pending.insert(lookup.to_owned(), pending);
        Ok(())
    }

    async fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        Ok(self
            .inner()
            .pending
            .remove(lookup)
            .filter(|p| now <= p.expires_at()))
    }
}
