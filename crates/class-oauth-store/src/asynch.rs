//! The async face of the stores. [`PostgresStore`](crate::PostgresStore) implements
//! [`AsyncTokenStore`] natively; [`Blocking`] adapts any blocking [`TokenStore`]: on a
//! tokio runtime (feature `tokio`) each call runs on the blocking pool, so SQLite I/O
//! never blocks the executor; elsewhere (a thread running a blocking façade) it runs in
//! place. Every call is one short statement: nothing waits on another holder.

use std::sync::Arc;
use std::time::SystemTime;

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;

use crate::{
    GrantStatus, GrantSummary, GrantUpdate, Lease, LeaseOutcome, StoreError, StoredGrant,
    TenantKey, TokenStore,
};

/// A token store for async callers: the methods of [`TokenStore`], as futures.
///
/// This is the seam for async-native backends (sqlx, tokio-postgres of your own, a
/// key-value service): implement it in your crate and hand the store to
/// `class_oauth_manager::TokenManager`. Each method is one short operation; `update`
/// and `acquire_lease` are conditional writes (compare the version, or the lease's
/// owner and expiry, and then the version for the lease's in-doubt mark) that must be
/// atomic in the backend, as the SQL stores do them. The
/// shape, here delegating to [`MemoryStore`](crate::MemoryStore):
///
/// ```
/// use std::time::SystemTime;
/// use class_oauth_core::{authorize::PendingAuthorization, id_token::IdTokenClaims, token::TokenSet};
/// use class_oauth_store::asynch::AsyncTokenStore;
/// use class_oauth_store::*;
///
/// struct MyStore(MemoryStore); // your connection pool here
///
/// #[async_trait::async_trait]
/// impl AsyncTokenStore for MyStore {
///     async fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
///         self.0.load(key) // e.g. SELECT ... WHERE key = $1
///     }
///     async fn save(&self, key: &TenantKey, tokens: &TokenSet, id: Option<&IdTokenClaims>,
///                   expected: Option<u64>) -> Result<u64, StoreError> {
///         self.0.save(key, tokens, id, expected)
///     }
///     async fn update(&self, key: &TenantKey, u: &GrantUpdate<'_>) -> Result<u64, StoreError> {
///         self.0.update(key, u) // UPDATE ... WHERE key = $1 AND version = $2
///     }
///     async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> { self.0.delete(key) }
///     async fn list(&self) -> Result<Vec<GrantSummary>, StoreError> { self.0.list() }
///     async fn acquire_lease(&self, key: &TenantKey, lease: &Lease)
///         -> Result<LeaseOutcome, StoreError> {
///         self.0.acquire_lease(key, lease)
///     }
///     async fn release_lease(&self, key: &TenantKey, owner: &str) -> Result<(), StoreError> {
///         self.0.release_lease(key, owner)
///     }
///     async fn put_pending(&self, lookup: &str, p: PendingAuthorization) -> Result<(), StoreError> {
///         self.0.put_pending(lookup, p)
///     }
///     async fn take_pending(&self, lookup: &str, now: SystemTime)
///         -> Result<Option<PendingAuthorization>, StoreError> {
///         self.0.take_pending(lookup, now)
///     }
/// }
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let store = MyStore(MemoryStore::new());
/// let key = TenantKey::new(&class_oauth_core::ClientId::new("app"), "MYBIZ");
/// assert!(store.load(&key).await?.is_none());
/// # Ok::<(), StoreError>(()) }).unwrap();
/// ```
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
    /// See [`TokenStore::update`].
    async fn update(&self, key: &TenantKey, update: &GrantUpdate<'_>) -> Result<u64, StoreError>;
    /// See [`TokenStore::set_status`].
    async fn set_status(
        &self,
        key: &TenantKey,
        status: &GrantStatus,
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        self.update(key, &GrantUpdate::status(expected_version, status))
            .await
    }
    /// See [`TokenStore::delete`].
    async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError>;
    /// See [`TokenStore::list`].
    async fn list(&self) -> Result<Vec<GrantSummary>, StoreError>;
    /// See [`TokenStore::acquire_lease`].
    async fn acquire_lease(
        &self,
        key: &TenantKey,
        lease: &Lease,
    ) -> Result<LeaseOutcome, StoreError>;
    /// See [`TokenStore::release_lease`].
    async fn release_lease(&self, key: &TenantKey, owner: &str) -> Result<(), StoreError>;
    /// See [`TokenStore::put_pending`].
    async fn put_pending(
        &self,
        lookup: &str,
        pending: PendingAuthorization,
    ) -> Result<(), StoreError>;
    /// See [`TokenStore::take_pending`].
    async fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError>;
}

#[async_trait::async_trait]
impl<S: AsyncTokenStore + ?Sized> AsyncTokenStore for Arc<S> {
    async fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        (**self).load(key).await
    }
    async fn save(
        &self,
        key: &TenantKey,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        (**self)
            .save(key, tokens, id_claims, expected_version)
            .await
    }
    async fn update(&self, key: &TenantKey, update: &GrantUpdate<'_>) -> Result<u64, StoreError> {
        (**self).update(key, update).await
    }
    async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        (**self).delete(key).await
    }
    async fn list(&self) -> Result<Vec<GrantSummary>, StoreError> {
        (**self).list().await
    }
    async fn acquire_lease(
        &self,
        key: &TenantKey,
        lease: &Lease,
    ) -> Result<LeaseOutcome, StoreError> {
        (**self).acquire_lease(key, lease).await
    }
    async fn release_lease(&self, key: &TenantKey, owner: &str) -> Result<(), StoreError> {
        (**self).release_lease(key, owner).await
    }
    async fn put_pending(
        &self,
        lookup: &str,
        pending: PendingAuthorization,
    ) -> Result<(), StoreError> {
        (**self).put_pending(lookup, pending).await
    }
    async fn take_pending(
        &self,
        lookup: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        (**self).take_pending(lookup, now).await
    }
}

/// Runs a blocking store call: on tokio's blocking pool when called on a tokio runtime
/// (feature `tokio`), in place otherwise.
async fn run<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    #[cfg(feature = "tokio")]
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        return handle
            .spawn_blocking(f)
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?;
    }
    f()
}

/// Any blocking store, for async callers (see the module docs).
#[derive(Debug)]
pub struct Blocking<S: ?Sized>(Arc<S>);

impl<S: ?Sized> Clone for Blocking<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S: TokenStore> Blocking<S> {
    /// Wraps a store.
    pub fn new(store: S) -> Self {
        Self(Arc::new(store))
    }
}

impl<S: TokenStore + ?Sized> Blocking<S> {
    /// Wraps a shared store.
    pub fn from_arc(store: Arc<S>) -> Self {
        Self(store)
    }

    /// The wrapped store (for blocking callers sharing it).
    #[must_use]
    pub fn inner(&self) -> &Arc<S> {
        &self.0
    }
}

#[async_trait::async_trait]
impl<S: TokenStore + ?Sized> AsyncTokenStore for Blocking<S> {
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
    async fn update(&self, key: &TenantKey, update: &GrantUpdate<'_>) -> Result<u64, StoreError> {
        let (s, key) = (self.0.clone(), key.clone());
        let tokens = update.tokens.map(|(t, c)| (t.clone(), c.cloned()));
        let status = update.status.clone();
        let release = update.release_lease_of.map(str::to_owned);
        let expected = update.expected_version;
        run(move || {
            s.update(
                &key,
                &GrantUpdate {
                    expected_version: expected,
                    tokens: tokens.as_ref().map(|(t, c)| (t, c.as_ref())),
                    status: &status,
                    release_lease_of: release.as_deref(),
                },
            )
        })
        .await
    }
    async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        let (s, key) = (self.0.clone(), key.clone());
        run(move || s.delete(&key)).await
    }
    async fn list(&self) -> Result<Vec<GrantSummary>, StoreError> {
        let s = self.0.clone();
        run(move || s.list()).await
    }
    async fn acquire_lease(
        &self,
        key: &TenantKey,
        lease: &Lease,
    ) -> Result<LeaseOutcome, StoreError> {
        let (s, key, lease) = (self.0.clone(), key.clone(), lease.clone());
        run(move || s.acquire_lease(&key, &lease)).await
    }
    async fn release_lease(&self, key: &TenantKey, owner: &str) -> Result<(), StoreError> {
        let (s, key, owner) = (self.0.clone(), key.clone(), owner.to_owned());
        run(move || s.release_lease(&key, &owner)).await
    }
    async fn put_pending(
        &self,
        lookup: &str,
        pending: PendingAuthorization,
    ) -> Result<(), StoreError> {
        let (s, lookup, pending) = (self.0.clone(), lookup.to_owned(), pending);
        run(move || s.put_pending(&lookup, pending)).await
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
