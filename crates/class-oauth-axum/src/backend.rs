//! The manager behind [`ClassConnect`](crate::ClassConnect), its transport and store
//! types erased so that the router, the extractors and the error type are not generic.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use class_oauth_client::{AsyncHttpClient, AuthorizeOptions, Callback, DriveError};
use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::flow::ValidatedTokens;
use class_oauth_core::scope::Scopes;
use class_oauth_core::{ClientId, RedirectUrl};
use class_oauth_manager::middleware::ClassAuth;
use class_oauth_manager::{ManagerError, SharedAccessToken, SharedGrant, TenantKey, TokenManager};
use class_oauth_store::{StoreError, TokenStore};
use url::Url;

/// What the router and the extractors ask of the token manager.
#[async_trait::async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    fn client_id(&self) -> &ClientId;

    /// The largest response body read (the client's configuration).
    fn max_body(&self) -> usize;

    async fn start_authorization(
        &self,
        redirect_uri: RedirectUrl,
        scopes: Scopes,
        options: AuthorizeOptions,
    ) -> Result<(Url, PendingAuthorization), DriveError>;

    async fn put_pending(
        &self,
        lookup: &str,
        pending: PendingAuthorization,
    ) -> Result<(), StoreError>;

    async fn take_pending(&self, lookup: &str) -> Result<Option<PendingAuthorization>, StoreError>;

    async fn finish_authorization(
        &self,
        pending: PendingAuthorization,
        callback_url: &str,
    ) -> Result<ValidatedTokens, DriveError>;

    async fn store_tokens(
        &self,
        key: &TenantKey,
        tokens: &ValidatedTokens,
    ) -> Result<SharedGrant, ManagerError>;

    async fn access_token(&self, key: &TenantKey) -> Result<SharedAccessToken, ManagerError>;

    /// The Class API base URL (from the endpoints, discovered once and cached).
    async fn api_base(&self) -> Result<Option<Url>, DriveError>;

    /// The token middleware over this manager.
    fn middleware(&self, max_wait: Option<Duration>) -> Arc<dyn reqwest_middleware::Middleware>;
}

#[async_trait::async_trait]
impl<H: AsyncHttpClient, S: TokenStore + ?Sized + 'static> Backend for TokenManager<H, S> {
    fn client_id(&self) -> &ClientId {
        self.client().config().client_id()
    }

    fn max_body(&self) -> usize {
        self.client().config().max_body
    }

    async fn start_authorization(
        &self,
        redirect_uri: RedirectUrl,
        scopes: Scopes,
        options: AuthorizeOptions,
    ) -> Result<(Url, PendingAuthorization), DriveError> {
        self.client()
            .start_authorization(redirect_uri, scopes, options)
            .await
    }

    async fn put_pending(
        &self,
        lookup: &str,
        pending: PendingAuthorization,
    ) -> Result<(), StoreError> {
        self.store().put_pending(lookup, pending).await
    }

    async fn take_pending(&self, lookup: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        self.store().take_pending(lookup, SystemTime::now()).await
    }

    async fn finish_authorization(
        &self,
        pending: PendingAuthorization,
        callback_url: &str,
    ) -> Result<ValidatedTokens, DriveError> {
        self.client()
            .finish_authorization(pending, Callback::Url(callback_url))
            .await
    }

    async fn store_tokens(
        &self,
        key: &TenantKey,
        tokens: &ValidatedTokens,
    ) -> Result<SharedGrant, ManagerError> {
        Self::store_tokens(self, key, tokens).await
    }

    async fn access_token(&self, key: &TenantKey) -> Result<SharedAccessToken, ManagerError> {
        Self::access_token(self, key).await
    }

    async fn api_base(&self) -> Result<Option<Url>, DriveError> {
        Ok(self.client().endpoints().await?.api_base.clone())
    }

    fn middleware(&self, max_wait: Option<Duration>) -> Arc<dyn reqwest_middleware::Middleware> {
        let auth = ClassAuth::new(self.clone());
        Arc::new(match max_wait {
            Some(wait) => auth.max_wait(wait),
            None => auth,
        })
    }
}
