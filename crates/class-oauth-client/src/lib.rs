//! # class-oauth-client
//!
//! The high-level Class client, written once. [`ClassClient`] offers one method per use
//! case (discovery, password grant, authorization start and finish, refresh, UserInfo,
//! revocation, Class API calls); each resolves the endpoints, builds the core's flow
//! ([`class_oauth_core::flow::ClientConfig`]) and drives it over an HTTP seam. Every
//! protocol decision is the core's; this crate moves requests and responses between the
//! core and a transport, reads the clock, and sleeps when a flow says so.
//!
//! Two seams, two faces, one implementation:
//! - [`AsyncHttpClient`] (send, sleep): `class-oauth-reqwest` implements it. [`ClassClient`]
//!   is async and runtime-agnostic (its futures are `Send`; discovery is single-flight
//!   behind an async mutex that needs no runtime).
//! - [`SyncHttpClient`] (send): `class-oauth-ureq` implements it, and so does any
//!   `Fn(Request) -> Result<Response, TransportError>`. [`blocking::ClassClient`] runs the
//!   same async code to completion on the calling thread ([`BlockingHttp`] adapts the
//!   blocking client); no async runtime is started or needed.
//!
//! ```
//! use class_oauth_client::{SyncHttpClient, TransportError, TransportErrorKind};
//! use class_oauth_client::blocking::ClassClient;
//! use class_oauth_core::{ClientId, Environment};
//!
//! /// A blocking HTTP client of your own (closures qualify too).
//! struct Offline;
//!
//! impl SyncHttpClient for Offline {
//!     fn send(&self, _: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, TransportError> {
//!         Err(TransportError::new(TransportErrorKind::Connect, "offline"))
//!     }
//! }
//!
//! let client = ClassClient::<Offline>::builder(Environment::Pie, ClientId::new("your-client-id"))
//!     .http(Offline)
//!     .without_discovery()
//!     .build_with_http()
//!     .expect("an HTTP client was given");
//! // No discovery: the PIE preset, no request sent.
//! assert!(client.endpoints().unwrap().token_endpoint.as_str().starts_with("https://"));
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use class_oauth_core::api::{ApiRequest, ApiResponse};
use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::discovery::DiscoveryCache;
use class_oauth_core::flow::ClientConfig;
use class_oauth_core::flow::{Flow, KeyCache, OnFailure, Step, ValidatedTokens};
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::revocation::RevocationRequest;
use class_oauth_core::scope::Scopes;
use class_oauth_core::token::TokenSet;
use class_oauth_core::userinfo::UserInfo;
use class_oauth_core::{
    AccessToken, ClientId, ClientSecret, Endpoints, Environment, Password, PkceMode, RedirectUrl,
    Username,
};
use http::{Request, Response};

pub use class_oauth_core::flow::{
    DriveError, ProxyMode, ProxySettings, RootCerts, TransportConfig, TransportError,
    TransportErrorKind,
};

/// The `User-Agent` both transports send unless the request names one:
/// `class-oauth/<version>`.
pub const USER_AGENT: &str = concat!("class-oauth/", env!("CARGO_PKG_VERSION"));

/// Names this library in `request`'s `User-Agent`, unless the caller set one.
pub fn set_user_agent(request: &mut Request<Vec<u8>>) {
    request
        .headers_mut()
        .entry(http::header::USER_AGENT)
        .or_insert(http::HeaderValue::from_static(USER_AGENT));
}

/// The proxy a transport's default client or agent uses under `config`, read from the
/// process environment by the rule of [`ProxyMode::Environment`] (the same for both
/// transports).
#[must_use]
pub fn proxy_settings(config: &TransportConfig) -> Option<ProxySettings> {
    ProxySettings::from_env(config.proxy, |k| std::env::var(k).ok())
}
pub use class_oauth_core::flow::{AuthorizeOptions, Callback};
pub use class_oauth_core::userinfo::ExpectedSubject;

pub mod blocking;
mod keys;

pub use keys::KeySets;

/// The seam for an async HTTP client: send a request and return the whole response
/// (status, every header, the body up to a cap), and sleep. Must not follow redirects.
#[async_trait::async_trait]
pub trait AsyncHttpClient: Send + Sync + 'static {
    /// Sends one request.
    async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError>;

    /// Waits `duration` (a flow's rate-limit wait) without blocking the executor.
    async fn sleep(&self, duration: Duration);

    /// The longest one request can take before this client gives up, when it enforces
    /// such a bound (`None`: unknown). The token manager sizes its refresh lease from it:
    /// a lease must outlive the request holding it.
    fn request_bound(&self) -> Option<Duration> {
        None
    }
}

/// The seam for a blocking HTTP client. Must not follow redirects and must return
/// 4xx/5xx responses as responses. Any `Fn(Request) -> Result<Response, TransportError>`
/// that is `Send + Sync` implements it.
pub trait SyncHttpClient: Send + Sync + 'static {
    /// Sends one request.
    fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError>;

    /// See [`AsyncHttpClient::request_bound`].
    fn request_bound(&self) -> Option<Duration> {
        None
    }
}

impl<F> SyncHttpClient for F
where
    F: Fn(Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> + Send + Sync + 'static,
{
    fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        self(request)
    }
}

/// A blocking HTTP client seen through the async seam: `send` and `sleep` block the
/// calling thread and complete at once. Only for futures run to completion on their own
/// thread (the [`blocking`] façades do that); never poll it on an async executor.
#[derive(Clone, Debug, Default)]
pub struct BlockingHttp<H>(H);

impl<H> BlockingHttp<H> {
    /// Wraps a blocking client.
    pub fn new(http: H) -> Self {
        Self(http)
    }

    /// The blocking client.
    pub fn get_ref(&self) -> &H {
        &self.0
    }
}

#[async_trait::async_trait]
impl<H: SyncHttpClient> AsyncHttpClient for BlockingHttp<H> {
    async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        self.0.send(request)
    }

    async fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn request_bound(&self) -> Option<Duration> {
        self.0.request_bound()
    }
}

/// The span of one HTTP exchange, for transports: the method and the URL as it may be
/// logged (no query, no userinfo); never a header or a body.
pub fn http_span(request: &Request<Vec<u8>>) -> tracing::Span {
    tracing::debug_span!(
        "class_oauth.http",
        method = %request.method(),
        url = %class_oauth_core::flow::loggable_uri(request.uri())
    )
}

/// Logs how one exchange ended (status, time, body size; or the failure's kind), in the
/// current span.
pub fn log_exchange(
    result: &Result<Response<Vec<u8>>, TransportError>,
    started: std::time::Instant,
) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(r) => tracing::debug!(
            status = r.status().as_u16(),
            elapsed_ms,
            body_bytes = r.body().len(),
            "response"
        ),
        Err(e) => tracing::debug!(kind = e.kind.as_str(), elapsed_ms, "transport failure"),
    }
}

/// A transport that can build itself with default settings (no redirects, default
/// timeouts, the default TLS of its features).
pub trait DefaultHttp: Sized {
    /// The default client.
    fn default_http() -> Result<Self, TransportError>;
}

/// Drives a core flow over an async HTTP client, with the system clock.
pub fn drive<F, H>(http: &H, flow: F) -> impl Future<Output = Result<F::Output, DriveError>> + Send
where
    F: Flow + Send,
    F::Output: Send,
    H: AsyncHttpClient + ?Sized,
{
    drive_with_clock(http, flow, SystemTime::now)
}

/// Drives a core flow with a caller's clock (tests on a virtual clock, replays). The
/// waits of [`Step::Wait`] are real.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep the flow twice in its future (rust-lang/rust#62958)"
)]
pub fn drive_with_clock<F, H>(
    http: &H,
    mut flow: F,
    now: impl Fn() -> SystemTime + Send,
) -> impl Future<Output = Result<F::Output, DriveError>> + Send
where
    F: Flow + Send,
    F::Output: Send,
    H: AsyncHttpClient + ?Sized,
{
    // A plain function around an `async move` block, not an `async fn`: an `async fn`
    // keeps its arguments twice in its future (rust-lang/rust#62958), and a flow is
    // several hundred bytes that every poll would then carry twice.
    async move {
        loop {
            // The step is taken apart before any await, so the future holds only the
            // flow and the boxed send or sleep, not a `Step` as well.
            let request = match flow.poll(now()) {
                Step::Done(result) => return result.map_err(DriveError::from),
                Step::Wait(d) => {
                    http.sleep(d).await;
                    continue;
                }
                Step::Send(req) => req,
            };
            match http.send(request).await {
                Ok(resp) => flow.handle_response(now(), resp),
                Err(e) => {
                    if flow.handle_transport_failure(now()) == OnFailure::Abort {
                        return Err(e.into());
                    }
                }
            }
        }
    }
}

/// Fills `buf` from the operating system's CSPRNG (states, nonces, PKCE verifiers).
fn os_entropy(buf: &mut [u8]) {
    // The OS CSPRNG does not fail on supported platforms after boot; if it does, no
    // secure state or verifier can be made, and stopping is the only safe answer.
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf)
        .expect("the operating system's random number generator failed");
}

/// Builder modes: which face [`ClassClientBuilder::build`] returns.
#[allow(
    clippy::exhaustive_enums,
    reason = "uninhabited type-level markers, never matched"
)]
pub mod mode {
    /// Builds a [`crate::ClassClient`] (async).
    #[derive(Debug)]
    pub enum Async {}
    /// Builds a [`crate::blocking::ClassClient`].
    #[derive(Debug)]
    pub enum Blocking {}
}

/// Builds a [`ClassClient`] (mode [`mode::Async`]) or a [`blocking::ClassClient`]
/// (mode [`mode::Blocking`]): the same settings for both.
#[derive(Debug)]
#[must_use]
pub struct ClassClientBuilder<H, M = mode::Async> {
    env: Environment,
    config: ClientConfig,
    discovery: DiscoveryCache,
    http: Option<H>,
    mode: PhantomData<M>,
}

impl<H, M> ClassClientBuilder<H, M> {
    pub(crate) fn new(env: Environment, client_id: ClientId) -> Self {
        Self {
            discovery: DiscoveryCache::new(env.clone()),
            env,
            config: ClientConfig::new(client_id, None),
            http: None,
            mode: PhantomData,
        }
    }

    /// Sets the client secret (confidential client, HTTP Basic).
    pub fn secret(mut self, secret: ClientSecret) -> Self {
        self.config.set_secret(secret);
        self
    }

    /// Sets the PKCE mode (S256 by default).
    pub fn pkce(mut self, mode: PkceMode) -> Self {
        self.config.pkce = mode;
        self
    }

    /// Never fetches a discovery document; uses the environment's preset.
    pub fn without_discovery(mut self) -> Self {
        self.discovery = self.discovery.without_discovery();
        self
    }

    /// Uses these endpoints and fetches no discovery document.
    pub fn endpoints(mut self, endpoints: Endpoints) -> Self {
        self.discovery = self.discovery.with_fixed_endpoints(endpoints);
        self
    }

    /// Replaces the discovery policy.
    pub fn discovery_policy(
        mut self,
        policy: class_oauth_core::discovery::DiscoveryPolicy,
    ) -> Self {
        self.discovery = self.discovery.with_policy(policy);
        self
    }

    /// Adjusts the shared configuration (algorithms, leeway, limits).
    pub fn configure(mut self, f: impl FnOnce(&mut ClientConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Uses another HTTP client.
    pub fn http<H2>(self, http: H2) -> ClassClientBuilder<H2, M> {
        ClassClientBuilder {
            env: self.env,
            config: self.config,
            discovery: self.discovery,
            http: Some(http),
            mode: PhantomData,
        }
    }

    fn parts(self, http: H) -> ClassClient<H> {
        ClassClient {
            http: Arc::new(http),
            env: self.env,
            keys: Arc::new(KeySets::new(self.config.max_body)),
            config: self.config,
            discovery: Arc::new(futures_util::lock::Mutex::new(self.discovery)),
        }
    }

    fn http_or_default(&mut self) -> Result<H, TransportError>
    where
        H: DefaultHttp,
    {
        match self.http.take() {
            Some(h) => Ok(h),
            None => H::default_http(),
        }
    }
}

impl<H: AsyncHttpClient + DefaultHttp> ClassClientBuilder<H, mode::Async> {
    /// Builds the client (with the transport's default client unless one was given).
    pub fn build(mut self) -> Result<ClassClient<H>, TransportError> {
        let http = self.http_or_default()?;
        Ok(self.parts(http))
    }
}

impl<H: AsyncHttpClient> ClassClientBuilder<H, mode::Async> {
    /// Builds the client with the HTTP client given to [`ClassClientBuilder::http`]
    /// (`None` when none was given).
    pub fn build_with_http(mut self) -> Option<ClassClient<H>> {
        let http = self.http.take()?;
        Some(self.parts(http))
    }
}

impl<H: SyncHttpClient + DefaultHttp> ClassClientBuilder<H, mode::Blocking> {
    /// Builds the blocking client (with the transport's default client unless one was
    /// given).
    pub fn build(mut self) -> Result<blocking::ClassClient<H>, TransportError> {
        let http = self.http_or_default()?;
        Ok(self.blocking_parts(http))
    }
}

impl<H: SyncHttpClient> ClassClientBuilder<H, mode::Blocking> {
    /// Builds the blocking client with the HTTP client given to
    /// [`ClassClientBuilder::http`] (`None` when none was given).
    pub fn build_with_http(mut self) -> Option<blocking::ClassClient<H>> {
        let http = self.http.take()?;
        Some(self.blocking_parts(http))
    }

    fn blocking_parts(self, http: H) -> blocking::ClassClient<H> {
        blocking::ClassClient::from_async(ClassClient {
            http: Arc::new(BlockingHttp(http)),
            env: self.env,
            keys: Arc::new(KeySets::new(self.config.max_body)),
            config: self.config,
            discovery: Arc::new(futures_util::lock::Mutex::new(self.discovery)),
        })
    }
}

/// The high-level Class client: one method per use case. Cheap to clone (shared state
/// behind `Arc`); its futures are `Send` and need no particular runtime beyond what the
/// HTTP client needs.
#[derive(Debug)]
pub struct ClassClient<H> {
    http: Arc<H>,
    env: Environment,
    config: ClientConfig,
    discovery: Arc<futures_util::lock::Mutex<DiscoveryCache>>,
    keys: Arc<KeySets>,
}

impl<H> Clone for ClassClient<H> {
    fn clone(&self) -> Self {
        Self {
            http: self.http.clone(),
            env: self.env.clone(),
            config: self.config.clone(),
            discovery: self.discovery.clone(),
            keys: self.keys.clone(),
        }
    }
}

impl<H: AsyncHttpClient> ClassClient<H> {
    /// Starts a builder for `client_id` in `env`.
    pub fn builder(env: Environment, client_id: ClientId) -> ClassClientBuilder<H> {
        ClassClientBuilder::new(env, client_id)
    }

    /// The environment.
    #[must_use]
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The key-set cache every flow of this client (and its clones) validates ID tokens
    /// against (seed it with [`KeySets::set`]).
    #[must_use]
    pub fn key_sets(&self) -> &Arc<KeySets> {
        &self.keys
    }

    /// The key-set cache as the core's flows borrow it.
    #[must_use]
    pub fn key_cache(&self) -> Arc<dyn KeyCache> {
        self.keys.clone()
    }

    /// The HTTP client.
    #[must_use]
    pub fn http(&self) -> &H {
        &self.http
    }

    /// Drives any core flow.
    pub fn drive<F>(&self, flow: F) -> impl Future<Output = Result<F::Output, DriveError>> + Send
    where
        F: Flow + Send,
        F::Output: Send,
    {
        // Not an `async fn`, which would keep the flow twice (see [`drive_with_clock`]).
        drive(&*self.http, flow)
    }

    /// The endpoints: cached for 24 h, fetched single-flight, failures not cached, the
    /// last good set served when a refresh fails, the preset when Class publishes no
    /// discovery document.
    ///
    /// Shared, not copied: a cache hit is a reference-count increment.
    pub async fn endpoints(&self) -> Result<Arc<Endpoints>, DriveError> {
        // The cache is a flow; driven under its lock, one lookup is one drive.
        let mut cache = self.discovery.lock().await;
        self.drive(&mut *cache).await
    }

    /// The legacy password grant (Class customers' private clients accessing their own
    /// data). Any ID token is validated.
    pub async fn password(
        &self,
        username: Username,
        password: Password,
        scopes: Scopes,
    ) -> Result<ValidatedTokens, DriveError> {
        let e = self.endpoints().await?;
        self.drive(self.config.password_flow(
            &e,
            Some(&self.key_cache()),
            username,
            password,
            scopes,
        )?)
        .await
    }

    /// Builds the authorization URL and the pending record (keep it bound to the
    /// user's session, or in the store keyed by its state).
    pub async fn start_authorization(
        &self,
        redirect_uri: RedirectUrl,
        scopes: Scopes,
        options: AuthorizeOptions,
    ) -> Result<(url::Url, PendingAuthorization), DriveError> {
        let e = self.endpoints().await?;
        Ok(self.config.authorization(
            &e,
            redirect_uri,
            scopes,
            options,
            &mut os_entropy,
            SystemTime::now(),
        )?)
    }

    /// Finishes an authorization: checks state and iss, redeems the code, validates the
    /// ID token.
    pub async fn finish_authorization(
        &self,
        pending: PendingAuthorization,
        callback: Callback<'_>,
    ) -> Result<ValidatedTokens, DriveError> {
        let e = self.endpoints().await?;
        self.drive(self.config.callback_flow(
            &e,
            Some(&self.key_cache()),
            pending,
            callback,
            SystemTime::now(),
        )?)
        .await
    }

    /// Spends the refresh token of `tokens`. A new ID token is validated against the
    /// original's claims (same iss and sub) when given. (Keeping grants alive across
    /// instances is the token manager's job, `class-oauth-manager`.)
    pub async fn refresh(
        &self,
        tokens: &TokenSet,
        original: Option<&IdTokenClaims>,
    ) -> Result<ValidatedTokens, DriveError> {
        let e = self.endpoints().await?;
        self.drive(
            self.config
                .refresh_flow(&e, Some(&self.key_cache()), tokens, original)?,
        )
        .await
    }

    /// Calls UserInfo; a `sub` other than the ID token's is rejected (OIDC Core 5.3.2).
    pub async fn userinfo(
        &self,
        access_token: &AccessToken,
        expected: ExpectedSubject<'_>,
    ) -> Result<UserInfo, DriveError> {
        let e = self.endpoints().await?;
        self.drive(self.config.userinfo_flow(&e, access_token, expected))
            .await
    }

    /// Revokes a token at the revocation endpoint (when the provider advertises one).
    pub async fn revoke(&self, request: RevocationRequest) -> Result<(), DriveError> {
        let e = self.endpoints().await?;
        self.drive(self.config.revoke_flow(&e, request)).await
    }

    /// Calls a Class API with the access token; waits out one 429 and retries once.
    pub async fn api(
        &self,
        access_token: &AccessToken,
        request: ApiRequest,
    ) -> Result<ApiResponse, DriveError> {
        let e = self.endpoints().await?;
        self.drive(self.config.api_flow(&e, access_token, request))
            .await
    }

    /// `GET` a path below the API base.
    pub async fn api_get(
        &self,
        access_token: &AccessToken,
        path: &str,
    ) -> Result<ApiResponse, DriveError> {
        let e = self.endpoints().await?;
        self.drive(self.config.api_get_flow(&e, access_token, path)?)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flow as big as a page, done at once.
    struct Big([u8; 4096]);

    impl Flow for Big {
        type Output = u8;
        fn poll(&mut self, _: SystemTime) -> Step<u8> {
            Step::Done(Ok(self.0[4095]))
        }
        fn handle_response(&mut self, _: SystemTime, _: Response<Vec<u8>>) {}
        fn handle_transport_failure(&mut self, _: SystemTime) -> OnFailure {
            OnFailure::Abort
        }
    }

    #[test]
    fn a_driven_flow_is_held_once() {
        let http = BlockingHttp::new(
            |_: Request<Vec<u8>>| -> Result<Response<Vec<u8>>, TransportError> {
                Err(TransportError::new(TransportErrorKind::Other, "unused"))
            },
        );
        let client =
            ClassClientBuilder::<(), mode::Async>::new(Environment::Pie, ClientId::new("c"))
                .http(http.clone())
                .without_discovery()
                .build_with_http()
                .expect("an HTTP client was given");
        // Each driver's future holds the flow once, plus a few hundred bytes. As `async
        // fn`s they held it two to four times: 12592, 8480 and 16704 bytes for these.
        let sizes = [
            size_of_val(&drive(&http, Big([7; 4096]))),
            size_of_val(&drive_with_clock(&http, Big([7; 4096]), SystemTime::now)),
            size_of_val(&client.drive(Big([7; 4096]))),
        ];
        for size in sizes {
            assert!(size < 2 * 4096, "{sizes:?}");
        }
        assert_eq!(blocking::block_on(client.drive(Big([7; 4096]))).unwrap(), 7);
    }
}

/// The README's usage snippet, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
