//! # class-oauth-reqwest
//!
//! The async transport for [`class_oauth_core`]: a thin driver over a `reqwest::Client`
//! that moves bytes and holds no protocol logic. Every decision (what to send, how to
//! parse it, when to refetch keys or wait out a 429) is made by the core's
//! flows ([`Flow`]); this crate sends, reads the clock, and sleeps.
//!
//! - [`ReqwestTransport`]: never follows redirects, connect and total timeouts, a
//!   response body cap (1 MiB default) enforced while reading, every header copied,
//!   4xx/5xx bodies handed to the core, transport failures kept apart from server
//!   refusals ([`DriveError::Transport`] vs [`DriveError::Protocol`]).
//! - [`AsyncHttpClient`]: the seam for any other async HTTP client.
//! - [`ClassClient`]: one method per use case (discover, password grant, authorization
//!   start and finish, refresh, UserInfo, revoke, Class API calls). Its futures are `Send`.
//!
//! TLS: the `rustls` feature (default) or `native-tls` configures the default client; with
//! neither, bring your own `reqwest::Client` via [`ReqwestTransport::from_client`].
//!
//! ```no_run
//! use class_oauth_core::{ClientId, ClientSecret, Environment, Password, Username};
//! use class_oauth_core::scope::Scopes;
//! use class_oauth_reqwest::ClassClient;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ClassClient::builder(Environment::Pie, ClientId::new("your-client-id"))
//!     .secret(ClientSecret::new("your-client-secret"))
//!     .build()?;
//! let tokens = client
//!     .password(Username::new("you@example.com"), Password::new("..."), Scopes::parse("target:b/MYBIZ fund.read")?)
//!     .await?;
//! println!("expires at {:?}", tokens.tokens.expires_at);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::sync::Arc;
use std::time::SystemTime;

use class_oauth_core::api::{ApiRequest, ApiResponse};
use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::discovery::{DiscoveryCache, DiscoveryInput};
use class_oauth_core::flow::{Flow, OnFailure, Step, ValidatedTokens};
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::revocation::RevocationRequest;
use class_oauth_core::scope::Scopes;
use class_oauth_core::session::ClientConfig;
use class_oauth_core::token::TokenSet;
use class_oauth_core::userinfo::UserInfo;
use class_oauth_core::{
    AccessToken, ClientId, ClientSecret, Endpoints, Environment, Password, PkceMode, RedirectUrl,
    Username,
};
use http::{Request, Response};

pub use class_oauth_core::flow::{DriveError, TransportConfig, TransportError, TransportErrorKind};
pub use class_oauth_core::session::{AuthorizeOptions, Callback};
pub use reqwest;

mod manager;
pub use class_oauth_store::procedure::{ManagerError, TokenEvent};
pub use class_oauth_store::{StoredGrant, TenantKey};
pub use manager::{EventHook, TokenManager};

/// The seam for any async HTTP client: send a request, return the whole response
/// (status, every header, body up to a cap). Must not follow redirects.
#[async_trait::async_trait]
pub trait AsyncHttpClient: Send + Sync {
    /// Sends one request.
    async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError>;
}

/// A `reqwest::Client` as a class-oauth transport.
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    client: reqwest::Client,
    config: TransportConfig,
}

impl ReqwestTransport {
    /// A transport with a default client: no redirects, default timeouts.
    pub fn new() -> Result<Self, TransportError> {
        Self::with_config(TransportConfig::default())
    }

    /// A transport with a default client and these timeouts and limits.
    pub fn with_config(config: TransportConfig) -> Result<Self, TransportError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .build()
            .map_err(|e| {
                TransportError::new(TransportErrorKind::Other, "could not build the HTTP client")
                    .with_source(e)
            })?;
        Ok(Self { client, config })
    }

    /// Wraps a caller's client. Build it with `redirect(Policy::none())`: a response that
    /// was redirected anyway is refused with [`TransportErrorKind::Redirect`]. The total
    /// timeout and body cap of `config` still apply per request.
    #[must_use]
    pub fn from_client(client: reqwest::Client, config: TransportConfig) -> Self {
        Self { client, config }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }
}

impl From<reqwest::Client> for ReqwestTransport {
    fn from(client: reqwest::Client) -> Self {
        Self::from_client(client, TransportConfig::default())
    }
}

fn classify(e: reqwest::Error) -> TransportError {
    let kind = if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else if e.is_redirect() {
        TransportErrorKind::Redirect
    } else if e.is_body() || e.is_decode() || e.is_request() {
        TransportErrorKind::Io
    } else {
        TransportErrorKind::Other
    };
    // reqwest's Display includes the URL (and so any query); keep only the kind here and
    // the original as source().
    TransportError::new(kind, format!("the HTTP request failed ({})", kind.as_str()))
        .with_source(e.without_url())
}

#[async_trait::async_trait]
impl AsyncHttpClient for ReqwestTransport {
    async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let span = tracing::debug_span!("class_oauth.http", method = %request.method(), url = %class_oauth_core::flow::loggable_uri(request.uri()));
        let started = std::time::Instant::now();
        let result = self.send_inner(request).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let _entered = span.enter();
        match &result {
            Ok(r) => tracing::debug!(
                status = r.status().as_u16(),
                elapsed_ms,
                body_bytes = r.body().len(),
                "response"
            ),
            Err(e) => tracing::debug!(kind = e.kind.as_str(), elapsed_ms, "transport failure"),
        }
        result
    }
}

impl ReqwestTransport {
    async fn send_inner(
        &self,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, TransportError> {
        let url = request.uri().to_string();
        let mut req = reqwest::Request::try_from(request).map_err(|e| {
            TransportError::new(TransportErrorKind::Other, "invalid request").with_source(e)
        })?;
        // reqwest's per-request timeout covers the body too.
        *req.timeout_mut() = Some(self.config.timeout);
        let mut resp = self.client.execute(req).await.map_err(classify)?;
        if resp.url().as_str() != url
            && resp.url().as_str().trim_end_matches('/') != url.trim_end_matches('/')
        {
            return Err(TransportError::new(
                TransportErrorKind::Redirect,
                "the response came from a redirect, which is never followed",
            ));
        }
        let (status, version) = (resp.status(), resp.version());
        // Every header, moved rather than re-validated one by one.
        let headers = std::mem::take(resp.headers_mut());
        // Read at most one byte past the cap, so the core reports BodyTooLarge.
        let limit = self.config.max_body.saturating_add(1);
        let mut body = Vec::with_capacity(
            resp.content_length()
                .map_or(1024, |l| l.min(limit as u64) as usize),
        );
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            let room = limit - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= limit {
                break;
            }
        }
        let mut out = Response::new(body);
        *out.status_mut() = status;
        *out.version_mut() = version;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

/// Drives a core flow over an async HTTP client, with the system clock.
pub async fn drive<F, H>(http: &H, flow: F) -> Result<F::Output, DriveError>
where
    F: Flow + Send,
    F::Output: Send,
    H: AsyncHttpClient + ?Sized,
{
    drive_with_clock(http, flow, SystemTime::now).await
}

/// Drives a core flow with a caller's clock (tests on a virtual clock, replays). The
/// sleeps of [`Step::Wait`] are real.
pub async fn drive_with_clock<F, H>(
    http: &H,
    mut flow: F,
    now: impl Fn() -> SystemTime + Send,
) -> Result<F::Output, DriveError>
where
    F: Flow + Send,
    F::Output: Send,
    H: AsyncHttpClient + ?Sized,
{
    loop {
        match flow.poll(now()) {
            Step::Done(result) => return result.map_err(DriveError::from),
            Step::Wait(d) => tokio::time::sleep(d).await,
            Step::Send(req) => match http.send(req).await {
                Ok(resp) => flow.handle_response(now(), resp),
                Err(e) => {
                    if flow.handle_transport_failure(now()) == OnFailure::Abort {
                        return Err(e.into());
                    }
                }
            },
            _ => return Err(DriveError::Protocol(unknown_step())),
        }
    }
}

fn unknown_step() -> class_oauth_core::Error {
    class_oauth_core::error::InputError::InvalidValue {
        field: "flow",
        detail: "unknown step".into(),
    }
    .into()
}

fn os_entropy(buf: &mut [u8]) {
    // The OS CSPRNG does not fail on supported platforms after boot; if it does, no
    // secure state or verifier can be made, and stopping is the only safe answer.
    getrandom::getrandom(buf).expect("the operating system's random number generator failed");
}

/// Builds a [`ClassClient`].
#[derive(Debug)]
#[must_use]
pub struct ClassClientBuilder<H = ReqwestTransport> {
    env: Environment,
    config: ClientConfig,
    discovery: DiscoveryCache,
    http: Option<H>,
}

impl<H: AsyncHttpClient> ClassClientBuilder<H> {
    /// Sets the client secret (confidential client, HTTP Basic).
    pub fn secret(mut self, secret: ClientSecret) -> Self {
        self.config.client_secret = Some(secret);
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
    pub fn http<H2: AsyncHttpClient>(self, http: H2) -> ClassClientBuilder<H2> {
        ClassClientBuilder {
            env: self.env,
            config: self.config,
            discovery: self.discovery,
            http: Some(http),
        }
    }
}

impl ClassClientBuilder<ReqwestTransport> {
    /// Builds the client (with a default [`ReqwestTransport`] unless one was given).
    pub fn build(self) -> Result<ClassClient<ReqwestTransport>, TransportError> {
        let http = match self.http {
            Some(h) => h,
            None => ReqwestTransport::new()?,
        };
        Ok(ClassClient::from_parts(
            self.env,
            self.config,
            self.discovery,
            http,
        ))
    }
}

impl<H: AsyncHttpClient> ClassClientBuilder<H> {
    /// Builds the client with the HTTP client given to [`ClassClientBuilder::http`].
    pub fn build_with_http(self) -> Option<ClassClient<H>> {
        let http = self.http?;
        Some(ClassClient::from_parts(
            self.env,
            self.config,
            self.discovery,
            http,
        ))
    }
}

/// The async high-level Class client. Cheap to clone (shared state behind `Arc`).
#[derive(Debug)]
pub struct ClassClient<H = ReqwestTransport> {
    http: Arc<H>,
    env: Environment,
    config: ClientConfig,
    discovery: Arc<tokio::sync::Mutex<DiscoveryCache>>,
}

impl<H> Clone for ClassClient<H> {
    fn clone(&self) -> Self {
        Self {
            http: self.http.clone(),
            env: self.env.clone(),
            config: self.config.clone(),
            discovery: self.discovery.clone(),
        }
    }
}

impl ClassClient<ReqwestTransport> {
    /// Starts a builder.
    pub fn builder(env: Environment, client_id: ClientId) -> ClassClientBuilder<ReqwestTransport> {
        ClassClientBuilder {
            discovery: DiscoveryCache::new(env.clone()),
            env,
            config: ClientConfig::new(client_id, None),
            http: None,
        }
    }
}

impl<H: AsyncHttpClient> ClassClient<H> {
    fn from_parts(
        env: Environment,
        config: ClientConfig,
        discovery: DiscoveryCache,
        http: H,
    ) -> Self {
        Self {
            http: Arc::new(http),
            env,
            config,
            discovery: Arc::new(tokio::sync::Mutex::new(discovery)),
        }
    }

    /// The environment.
    #[must_use]
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// The shared configuration (seed the key cache with [`ClientConfig::set_keys`]).
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The HTTP client.
    #[must_use]
    pub fn http(&self) -> &H {
        &self.http
    }

    /// Drives any core flow.
    pub async fn drive<F>(&self, flow: F) -> Result<F::Output, DriveError>
    where
        F: Flow + Send,
        F::Output: Send,
    {
        drive(&*self.http, flow).await
    }

    /// The endpoints: cached for 24 h, fetched single-flight, failures not cached, the
    /// last good set served when a refresh fails, the preset when Class publishes no
    /// discovery document.
    pub async fn endpoints(&self) -> Result<Endpoints, DriveError> {
        let mut cache = self.discovery.lock().await;
        let now = SystemTime::now();
        if let Some(e) = cache.fresh(now) {
            return Ok(e.clone());
        }
        let Some(req) = cache.request() else {
            return Ok(cache.handle(now, DiscoveryInput::NotFetched)?);
        };
        match self.http.send(req).await {
            Ok(resp) => Ok(cache.handle(SystemTime::now(), DiscoveryInput::Response(&resp))?),
            Err(e) => cache
                .handle_transport_failure()
                .ok_or(DriveError::Transport(e)),
        }
    }

    /// The core client for the current endpoints.
    pub async fn core_client(&self) -> Result<class_oauth_core::Client, DriveError> {
        Ok(self.config.client(&self.endpoints().await?))
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
        self.drive(self.config.password_flow(&e, username, password, scopes)?)
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
        pending: &PendingAuthorization,
        callback: Callback<'_>,
    ) -> Result<ValidatedTokens, DriveError> {
        let e = self.endpoints().await?;
        self.drive(
            self.config
                .callback_flow(&e, pending, callback, SystemTime::now())?,
        )
        .await
    }

    /// Spends the refresh token of `tokens`. A new ID token is validated against the
    /// original's claims (same iss and sub) when given.
    pub async fn refresh(
        &self,
        tokens: &TokenSet,
        original: Option<&IdTokenClaims>,
    ) -> Result<ValidatedTokens, DriveError> {
        let e = self.endpoints().await?;
        self.drive(self.config.refresh_flow(&e, tokens, original)?)
            .await
    }

    /// Calls UserInfo; with `expected_sub` (the ID token's `sub`) a different `sub` is
    /// rejected.
    pub async fn userinfo(
        &self,
        access_token: &AccessToken,
        expected_sub: Option<&str>,
    ) -> Result<UserInfo, DriveError> {
        let e = self.endpoints().await?;
        self.drive(self.config.userinfo_flow(&e, access_token, expected_sub))
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

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_are_send() {
        let client = ClassClient::builder(Environment::Pie, ClientId::new("c"))
            .build()
            .unwrap();
        let cc = client.config().client(&Environment::Pie.preset());
        let response = Response::builder()
            .status(200)
            .body(br#"{"access_token":"a","refresh_token":"r"}"#.to_vec())
            .unwrap();
        let tokens = class_oauth_core::token::TokenRequest::refresh_token(
            class_oauth_core::RefreshToken::new("r"),
            Scopes::default(),
        )
        .parse_response(&cc, &response, SystemTime::UNIX_EPOCH)
        .unwrap();
        assert_send(&client.endpoints());
        assert_send(&client.password(Username::new("u"), Password::new("p"), Scopes::default()));
        assert_send(&client.refresh(&tokens, None));
        assert_send(&client.userinfo(&AccessToken::new("a"), None));
        assert_send(&client.api_get(&AccessToken::new("a"), "x"));
        let manager = TokenManager::new(
            client,
            class_oauth_store::asynch::Blocking::new(class_oauth_store::MemoryStore::new()),
        );
        let key = TenantKey::new(&ClientId::new("c"), "t");
        assert_send(&manager.access_token(&key));
        assert_send(&manager.api_get(&key, "x"));
    }
}
