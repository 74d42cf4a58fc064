//! The blocking face: the same manager, run to completion on the calling thread, over a
//! blocking HTTP client (ureq, any closure) and the one store contract
//! ([`TokenStore`]), whose futures run to completion on the calling thread. No async
//! runtime is started or needed: refreshes run detached on threads of their own, and a
//! caller waiting for one parks its thread.

use std::sync::Arc;
use std::time::Duration;

use class_oauth_client::blocking::{ClassClient, block_on};
use class_oauth_client::{BlockingHttp, SyncHttpClient};
use class_oauth_core::api::{ApiRequest, ApiResponse};
use class_oauth_core::flow::ValidatedTokens;
use class_oauth_core::refresh::RefreshPolicy;
use class_oauth_store::{StoreError, TenantKey, TokenStore};

use crate::{ManagerError, Settings, SharedAccessToken, SharedGrant, TokenEvent};

/// The async manager this face runs, over the client's blocking HTTP seam.
type AsyncFace<H, S> = crate::TokenManager<BlockingHttp<H>, S>;

/// The token manager for blocking callers (see the crate docs). Cheap to clone.
pub struct TokenManager<H, S: ?Sized> {
    client: ClassClient<H>,
    inner: AsyncFace<H, S>,
}

impl<H, S: ?Sized> Clone for TokenManager<H, S> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<H, S: ?Sized> std::fmt::Debug for TokenManager<H, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.inner, f)
    }
}

/// Builds a blocking [`TokenManager`].
#[must_use]
pub struct TokenManagerBuilder<H, S: ?Sized> {
    client: ClassClient<H>,
    inner: crate::TokenManagerBuilder<BlockingHttp<H>, S>,
}

impl<H, S: ?Sized> std::fmt::Debug for TokenManagerBuilder<H, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.inner, f)
    }
}

impl<H: SyncHttpClient, S: TokenStore + ?Sized> TokenManagerBuilder<H, S> {
    /// See [`crate::TokenManagerBuilder::settings`].
    pub fn settings(self, settings: Settings) -> Self {
        Self {
            client: self.client,
            inner: self.inner.settings(settings),
        }
    }

    /// See [`crate::TokenManagerBuilder::policy`].
    pub fn policy(self, policy: RefreshPolicy) -> Self {
        Self {
            client: self.client,
            inner: self.inner.policy(policy),
        }
    }

    /// See [`crate::TokenManagerBuilder::backoff`].
    pub fn backoff(self, backoff: Duration) -> Self {
        Self {
            client: self.client,
            inner: self.inner.backoff(backoff),
        }
    }

    /// See [`crate::TokenManagerBuilder::max_concurrent_refreshes`].
    pub fn max_concurrent_refreshes(self, n: usize) -> Self {
        Self {
            client: self.client,
            inner: self.inner.max_concurrent_refreshes(n),
        }
    }

    /// See [`crate::TokenManagerBuilder::lease`].
    pub fn lease(self, ttl: Duration, wait: Duration) -> Self {
        Self {
            client: self.client,
            inner: self.inner.lease(ttl, wait),
        }
    }

    /// See [`crate::TokenManagerBuilder::on_event`].
    pub fn on_event(self, hook: impl Fn(&TokenEvent) + Send + Sync + 'static) -> Self {
        Self {
            client: self.client,
            inner: self.inner.on_event(hook),
        }
    }

    /// Builds the manager.
    pub fn build(self) -> TokenManager<H, S> {
        TokenManager {
            client: self.client,
            inner: self.inner.build(),
        }
    }
}

impl<H: SyncHttpClient, S: TokenStore> TokenManager<H, S> {
    /// A manager over `client` and `store` with the default [`Settings`].
    pub fn new(client: ClassClient<H>, store: S) -> Self {
        Self::builder(client, store).build()
    }

    /// A builder.
    pub fn builder(client: ClassClient<H>, store: S) -> TokenManagerBuilder<H, S> {
        Self::builder_shared(client, Arc::new(store))
    }
}

impl<H: SyncHttpClient, S: TokenStore + ?Sized> TokenManager<H, S> {
    /// A builder over a store shared with other code (`Arc<dyn TokenStore>` included).
    pub fn builder_shared(client: ClassClient<H>, store: Arc<S>) -> TokenManagerBuilder<H, S> {
        TokenManagerBuilder {
            inner: crate::TokenManager::threaded(client.as_async().clone(), store),
            client,
        }
    }

    /// The client.
    #[must_use]
    pub fn client(&self) -> &ClassClient<H> {
        &self.client
    }

    /// The async manager this one runs.
    #[must_use]
    pub fn as_async(&self) -> &AsyncFace<H, S> {
        &self.inner
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &S {
        self.inner.store()
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        self.inner.settings()
    }

    /// See [`crate::TokenManager::store_tokens`].
    pub fn store_tokens(
        &self,
        key: &TenantKey,
        validated: &ValidatedTokens,
    ) -> Result<SharedGrant, ManagerError> {
        block_on(self.inner.store_tokens(key, validated))
    }

    /// See [`crate::TokenManager::cached`].
    #[inline]
    pub fn cached(&self, key: &TenantKey) -> Option<SharedGrant> {
        self.inner.cached(key)
    }

    /// See [`crate::TokenManager::access_token`].
    pub fn access_token(&self, key: &TenantKey) -> Result<SharedAccessToken, ManagerError> {
        self.grant(key).map(SharedAccessToken)
    }

    /// See [`crate::TokenManager::grant`].
    pub fn grant(&self, key: &TenantKey) -> Result<SharedGrant, ManagerError> {
        match self.inner.cached(key) {
            Some(g) => Ok(g),
            None => block_on(self.inner.grant(key)),
        }
    }

    /// See [`crate::TokenManager::force_refresh`].
    pub fn force_refresh(
        &self,
        key: &TenantKey,
        version: u64,
    ) -> Result<SharedGrant, ManagerError> {
        block_on(self.inner.force_refresh(key, version))
    }

    /// See [`crate::TokenManager::held`].
    #[must_use]
    pub fn held(&self) -> Vec<(TenantKey, class_oauth_store::HeldWrite)> {
        self.inner.held()
    }

    /// See [`crate::TokenManager::write_held`].
    pub fn write_held(
        &self,
        key: &TenantKey,
        held: class_oauth_store::HeldWrite,
    ) -> Result<(), ManagerError> {
        block_on(self.inner.write_held(key, held))
    }

    /// See [`crate::TokenManager::grants`].
    pub fn grants(
        &self,
        query: &class_oauth_store::GrantQuery,
    ) -> Result<Vec<crate::GrantHealth>, StoreError> {
        block_on(self.inner.grants(query))
    }

    /// See [`crate::TokenManager::start_keeper`] (a thread of its own here).
    pub fn start_keeper(
        &self,
        settings: crate::KeeperSettings,
    ) -> Result<crate::KeeperHandle, ManagerError> {
        self.inner.start_keeper(settings)
    }

    /// See [`crate::TokenManager::forget`].
    pub fn forget(&self, key: &TenantKey) -> Result<bool, StoreError> {
        block_on(self.inner.forget(key))
    }

    /// See [`crate::TokenManager::api`].
    pub fn api(&self, key: &TenantKey, request: ApiRequest) -> Result<ApiResponse, ManagerError> {
        block_on(self.inner.api(key, request))
    }

    /// See [`crate::TokenManager::api_get`].
    pub fn api_get(&self, key: &TenantKey, path: &str) -> Result<ApiResponse, ManagerError> {
        block_on(self.inner.api_get(key, path))
    }
}
