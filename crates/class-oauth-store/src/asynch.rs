//! The async face of the stores, for the async token manager: every call runs on tokio's
//! blocking pool ([`Blocking`]), so SQLite and PostgreSQL I/O, and waiting for a refresh
//! lock, never block the executor. Dropping a guard releases the lock on the blocking
//! pool too.

use std::sync::Arc;
use std::time::SystemTime;

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;

use crate::{
    GrantStatus, GrantSummary, RefreshGuard, StoreError, StoredGrant, TenantKey, TokenStore,
};

/// A token store for async callers.
#[async_trait::async_trait]
pub trait AsyncTokenStore: Send + Sync + 'static {
    /// See [`TokenStore::load`].
    async fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError>;
    /// See [`TokenStore::save`].
    async fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError>;
    /// See [`TokenStore::set_status`].
    async fn set_status(&self, key: &TenantKey, status: &GrantStatus) -> Result<(), StoreError>;
    /// See [`TokenStore::delete`].
    async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError>;
    /// See [`TokenStore::list`].
    async fn list(&self) -> Result<Vec<GrantSummary>, StoreError>;
    /// See [`TokenStore::lock`].
    async fn lock(&self, key: &TenantKey) -> Result<AsyncGuard, StoreError>;
    /// See [`TokenStore::put_pending`].
    async fn put_pending(
        &self,
        lookup: &str,
        pending: &PendingAuthorization,
    ) -> Result<(), StoreError>;
    /// See [`TokenStore::take_pending`].
    async fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError>;
}

/// A refresh lock held by an async caller.
pub struct AsyncGuard {
    inner: Option<Box<dyn RefreshGuard>>,
    current: Option<StoredGrant>,
}

impl std::fmt::Debug for AsyncGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncGuard").finish_non_exhaustive()
    }
}

impl AsyncGuard {
    /// The row read under the lock.
    #[must_use]
    pub fn current(&self) -> Option<&StoredGrant> {
        self.current.as_ref()
    }

    /// Commits (CAS) and releases the lock.
    pub async fn commit(
        mut self,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
    ) -> Result<u64, StoreError> {
        let guard = self
            .inner
            .take()
            .ok_or_else(|| StoreError::Backend("guard already used".into()))?;
        let (tokens, id_claims) = (tokens.clone(), id_claims.cloned());
        run(move || guard.commit(&tokens, id_claims.as_ref())).await
    }
}

impl Drop for AsyncGuard {
    fn drop(&mut self) {
        if let Some(guard) = self.inner.take() {
            // Releasing may do I/O (ROLLBACK): do it on the blocking pool when there is one.
            match tokio::runtime::Handle::try_current() {
                Ok(h) => drop(h.spawn_blocking(move || drop(guard))),
                Err(_) => drop(guard),
            }
        }
    }
}

async fn run<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

/// Any blocking store, used from async code through tokio's blocking pool.
#[derive(Debug)]
pub struct Blocking<S>(Arc<S>);

impl<S> Clone for Blocking<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S: TokenStore> Blocking<S> {
    /// Wraps a store.
    pub fn new(store: S) -> Self {
        Self(Arc::new(store))
    }

    /// The wrapped store (for blocking callers sharing it).
    #[must_use]
    pub fn inner(&self) -> &Arc<S> {
        &self.0
    }
}

#[async_trait::async_trait]
impl<S: TokenStore> AsyncTokenStore for Blocking<S> {
    async fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        let (s, key) = (self.0.clone(), key.clone());
        run(move || s.load(&key)).await
    }
    async fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        let (s, key, tokens, id_claims) = (
            self.0.clone(),
            key.clone(),
            tokens.clone(),
            id_claims.cloned(),
        );
        run(move || s.save(&key, &tokens, id_claims.as_ref(), expected_version)).await
    }
    async fn set_status(&self, key: &TenantKey, status: &GrantStatus) -> Result<(), StoreError> {
        let (s, key, status) = (self.0.clone(), key.clone(), status.clone());
        run(move || s.set_status(&key, &status)).await
    }
    async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        let (s, key) = (self.0.clone(), key.clone());
        run(move || s.delete(&key)).await
    }
    async fn list(&self) -> Result<Vec<GrantSummary>, StoreError> {
        let s = self.0.clone();
        run(move || s.list()).await
    }
    async fn lock(&self, key: &TenantKey) -> Result<AsyncGuard, StoreError> {
        let (s, key) = (self.0.clone(), key.clone());
        let guard = run(move || s.lock(&key)).await?;
        let current = guard.current().cloned();
        Ok(AsyncGuard {
            inner: Some(guard),
            current,
        })
    }
    async fn put_pending(
        &self,
        lookup: &str,
        pending: &PendingAuthorization,
    ) -> Result<(), StoreError> {
        let (s, lookup, pending) = (self.0.clone(), lookup.to_owned(), pending.clone());
        run(move || s.put_pending(&lookup, &pending)).await
    }
    async fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        let (s, lookup) = (self.0.clone(), lookup.to_owned());
        run(move || s.take_pending(&lookup, now)).await
    }
}
