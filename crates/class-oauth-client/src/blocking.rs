//! The blocking face: the same [`crate::ClassClient`] code, run to completion on the
//! calling thread. No async runtime is started or needed; the HTTP client is a
//! [`SyncHttpClient`] (ureq, or any closure).

use std::future::Future;
use std::time::SystemTime;

use class_oauth_core::api::{ApiRequest, ApiResponse};
use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::flow::ClientConfig;
use class_oauth_core::flow::{self, Flow, KeyCache, ValidatedTokens};
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::revocation::RevocationRequest;
use class_oauth_core::scope::Scopes;
use class_oauth_core::token::TokenSet;
use class_oauth_core::userinfo::{ExpectedSubject, UserInfo};
use class_oauth_core::{
    AccessToken, ClientId, Endpoints, Environment, Password, RedirectUrl, Username,
};

use crate::{
    AuthorizeOptions, BlockingHttp, Callback, ClassClientBuilder, DriveError, SyncHttpClient, mode,
};

/// Drives a core flow over a blocking HTTP client, with the system clock.
pub fn drive<F: Flow, H: SyncHttpClient + ?Sized>(
    http: &H,
    flow: F,
) -> Result<F::Output, DriveError> {
    drive_with_clock(http, flow, SystemTime::now)
}

/// Drives a core flow with a caller's clock (tests on a virtual clock, replays). The
/// waits are real sleeps.
pub fn drive_with_clock<F: Flow, H: SyncHttpClient + ?Sized>(
    http: &H,
    flow: F,
    now: impl FnMut() -> SystemTime,
) -> Result<F::Output, DriveError> {
    flow::drive_blocking(flow, now, |req| http.send(req), std::thread::sleep)
}

/// Runs a future to completion on this thread (no runtime; the thread parks while the
/// future waits).
pub fn block_on<F: Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

/// The blocking high-level Class client: the methods of [`crate::ClassClient`], each run
/// to completion on the calling thread. Cheap to clone.
#[derive(Debug)]
pub struct ClassClient<H> {
    inner: crate::ClassClient<BlockingHttp<H>>,
}

impl<H> Clone for ClassClient<H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<H: SyncHttpClient> ClassClient<H> {
    pub(crate) fn from_async(inner: crate::ClassClient<BlockingHttp<H>>) -> Self {
        Self { inner }
    }

    /// Starts a builder for `client_id` in `env`.
    pub fn builder(env: Environment, client_id: ClientId) -> ClassClientBuilder<H, mode::Blocking> {
        ClassClientBuilder::new(env, client_id)
    }

    /// The async client this one runs (for layers written once over the async seam,
    /// such as the token manager's blocking face).
    #[must_use]
    pub fn as_async(&self) -> &crate::ClassClient<BlockingHttp<H>> {
        &self.inner
    }

    /// The environment.
    #[must_use]
    pub fn environment(&self) -> &Environment {
        self.inner.environment()
    }

    /// The shared configuration.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        self.inner.config()
    }

    /// See [`crate::ClassClient::key_sets`].
    #[must_use]
    pub fn key_sets(&self) -> &std::sync::Arc<crate::KeySets> {
        self.inner.key_sets()
    }

    /// See [`crate::ClassClient::key_cache`].
    #[must_use]
    pub fn key_cache(&self) -> std::sync::Arc<dyn KeyCache> {
        self.inner.key_cache()
    }

    /// The HTTP client.
    #[must_use]
    pub fn http(&self) -> &H {
        self.inner.http().get_ref()
    }

    /// Drives any core flow.
    pub fn drive<F: Flow>(&self, flow: F) -> Result<F::Output, DriveError> {
        drive(self.http(), flow)
    }

    /// See [`crate::ClassClient::endpoints`].
    pub fn endpoints(&self) -> Result<std::sync::Arc<Endpoints>, DriveError> {
        block_on(self.inner.endpoints())
    }

    /// See [`crate::ClassClient::password`].
    pub fn password(
        &self,
        username: Username,
        password: Password,
        scopes: Scopes,
    ) -> Result<ValidatedTokens, DriveError> {
        block_on(self.inner.password(username, password, scopes))
    }

    /// See [`crate::ClassClient::start_authorization`].
    pub fn start_authorization(
        &self,
        redirect_uri: RedirectUrl,
        scopes: Scopes,
        options: AuthorizeOptions,
    ) -> Result<(url::Url, PendingAuthorization), DriveError> {
        block_on(
            self.inner
                .start_authorization(redirect_uri, scopes, options),
        )
    }

    /// See [`crate::ClassClient::finish_authorization`].
    pub fn finish_authorization(
        &self,
        pending: PendingAuthorization,
        callback: Callback<'_>,
    ) -> Result<ValidatedTokens, DriveError> {
        block_on(self.inner.finish_authorization(pending, callback))
    }

    /// See [`crate::ClassClient::refresh`].
    pub fn refresh(
        &self,
        tokens: &TokenSet,
        original: Option<&IdTokenClaims>,
    ) -> Result<ValidatedTokens, DriveError> {
        block_on(self.inner.refresh(tokens, original))
    }

    /// See [`crate::ClassClient::userinfo`].
    pub fn userinfo(
        &self,
        access_token: &AccessToken,
        expected: ExpectedSubject<'_>,
    ) -> Result<UserInfo, DriveError> {
        block_on(self.inner.userinfo(access_token, expected))
    }

    /// See [`crate::ClassClient::revoke`].
    pub fn revoke(&self, request: RevocationRequest) -> Result<(), DriveError> {
        block_on(self.inner.revoke(request))
    }

    /// See [`crate::ClassClient::api`].
    pub fn api(
        &self,
        access_token: &AccessToken,
        request: ApiRequest,
    ) -> Result<ApiResponse, DriveError> {
        block_on(self.inner.api(access_token, request))
    }

    /// See [`crate::ClassClient::api_get`].
    pub fn api_get(
        &self,
        access_token: &AccessToken,
        path: &str,
    ) -> Result<ApiResponse, DriveError> {
        block_on(self.inner.api_get(access_token, path))
    }
}
