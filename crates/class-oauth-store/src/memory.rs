//! The in-memory store: nothing at rest, so nothing is encrypted. Several managers that
//! share one `Arc<MemoryStore>` behave like instances sharing a database: the refresh
//! lock is per tenant and blocks across them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::SystemTime;

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;

use crate::{
    GrantStatus, GrantSummary, RefreshGuard, StoreError, StoredGrant, TenantKey, TokenStore,
    unix_now,
};

#[derive(Default)]
struct Inner {
    grants: HashMap<TenantKey, (StoredGrant, u64)>,
    pending: HashMap<String, PendingAuthorization>,
}

/// A store in process memory.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    locks: Arc<(Mutex<HashSet<TenantKey>>, Condvar)>,
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

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut inner = self.inner();
        let current = inner.grants.get(key).map_or(0, |(g, _)| g.version);
        if let Some(e) = expected {
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
        inner.grants.insert(key.clone(), (grant, unix_now()));
        Ok(version)
    }
}

struct MemoryGuard {
    store: MemoryStore,
    key: TenantKey,
    current: Option<StoredGrant>,
}

impl RefreshGuard for MemoryGuard {
    fn current(&self) -> Option<&StoredGrant> {
        self.current.as_ref()
    }

    fn commit(
        self: Box<Self>,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
    ) -> Result<u64, StoreError> {
        let expected = self.current.as_ref().map_or(0, |g| g.version);
        self.store
            .write(&self.key, tokens, id_claims, Some(expected))
    }
}

impl Drop for MemoryGuard {
    fn drop(&mut self) {
        let (set, cv) = &*self.store.locks;
        set.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        cv.notify_all();
    }
}

impl TokenStore for MemoryStore {
    fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        Ok(self.inner().grants.get(key).map(|(g, _)| g.clone()))
    }

    fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.write(key, tokens, id_claims, expected_version)
    }

    fn set_status(&self, key: &TenantKey, status: &GrantStatus) -> Result<(), StoreError> {
        if let Some((g, at)) = self.inner().grants.get_mut(key) {
            g.status = status.clone();
            g.version += 1;
            *at = unix_now();
        }
        Ok(())
    }

    fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        Ok(self.inner().grants.remove(key).is_some())
    }

    fn list(&self) -> Result<Vec<GrantSummary>, StoreError> {
        let mut v: Vec<GrantSummary> = self
            .inner()
            .grants
            .iter()
            .map(|(k, (g, at))| GrantSummary {
                key: k.clone(),
                business_code: g.tokens.business_code().map(|c| c.as_str().to_owned()),
                scope: g.tokens.scopes.to_string(),
                expires_at: g.tokens.expires_at.map(class_oauth_core::time::to_unix),
                status: g.status.clone(),
                version: g.version,
                updated_at: *at,
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }

    fn try_lock(&self, key: &TenantKey) -> Result<Option<Box<dyn RefreshGuard>>, StoreError> {
        let (set, _) = &*self.locks;
        if !set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone())
        {
            return Ok(None);
        }
        let current = self.load(key)?;
        Ok(Some(Box::new(MemoryGuard {
            store: self.clone(),
            key: key.clone(),
            current,
        })))
    }

    fn lock(&self, key: &TenantKey) -> Result<Box<dyn RefreshGuard>, StoreError> {
        let (set, cv) = &*self.locks;
        let mut held = set.lock().unwrap_or_else(PoisonError::into_inner);
        while held.contains(key) {
            held = cv.wait(held).unwrap_or_else(PoisonError::into_inner);
        }
        held.insert(key.clone());
        drop(held);
        let current = self.load(key)?;
        Ok(Box::new(MemoryGuard {
            store: self.clone(),
            key: key.clone(),
            current,
        }))
    }

    fn put_pending(&self, lookup: &str, pending: &PendingAuthorization) -> Result<(), StoreError> {
        self.inner()
            .pending
            .insert(lookup.to_owned(), pending.clone());
        Ok(())
    }

    fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        Ok(self
            .inner()
            .pending
            .remove(lookup)
            .filter(|p| now <= p.expires_at))
    }
}
