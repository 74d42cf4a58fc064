//! # class-oauth-ureq
//!
//! The blocking transport for [`class_oauth_core`]: a thin driver over a `ureq::Agent`
//! that moves bytes and holds no protocol logic; no async runtime is needed. It behaves
//! exactly like `class-oauth-reqwest` (the conformance suite runs every fixture through
//! both and fails on any difference).
//!
//! - [`UreqTransport`]: whatever agent it wraps: no redirects
//!   (`max_redirects(0)`), 4xx/5xx bodies handed to the core (`http_status_as_error(false)`),
//!   connect and total timeouts, a body cap (1 MiB default) enforced while reading.
//! - [`SyncHttpClient`]: the seam for any other blocking HTTP client (closures qualify).
//! - [`ClassClient`]: one method per use case.
//!
//! TLS: the `rustls` feature (default) or `native-tls` configures the default agent.
//!
//! ```no_run
//! use class_oauth_core::{ClientId, ClientSecret, Environment, Password, Username};
//! use class_oauth_core::scope::Scopes;
//! use class_oauth_ureq::ClassClient;
//!
//! let client = ClassClient::builder(Environment::Pie, ClientId::new("your-client-id"))
//!     .secret(ClientSecret::new("your-client-secret"))
//!     .build();
//! let tokens = client.password(Username::new("you@example.com"), Password::new("..."), Scopes::parse("target:b/MYBIZ fund.read")?)?;
//! println!("expires at {:?}", tokens.tokens.expires_at);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use class_oauth_core::api::{ApiRequest, ApiResponse};
use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::discovery::{DiscoveryCache, DiscoveryInput};
use class_oauth_core::flow::{self, Flow, ValidatedTokens};
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
pub use ureq;

mod manager;
pub use class_oauth_store::procedure::{ManagerError, TokenEvent};
pub use class_oauth_store::{StoredGrant, TenantKey};
pub use manager::{EventHook, TokenManager};

/// The seam for any blocking HTTP client. Must not follow redirects and must return
/// 4xx/5xx responses as responses. Any `Fn(Request) -> Result<Response, TransportError>`
/// that is `Send + Sync` implements it.
pub trait SyncHttpClient: Send + Sync {
    /// Sends one request.
    fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError>;
}

impl<F> SyncHttpClient for F
where
    F: Fn(Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> + Send + Sync,
{
    fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        self(request)
    }
}

/// A `ureq::Agent` as a class-oauth transport.
#[derive(Clone, Debug)]
pub struct UreqTransport {
    agent: ureq::Agent,
    config: TransportConfig,
    /// The agent was built here with the right settings; a caller's agent gets them per
    /// request instead.
    configured: bool,
}

impl Default for UreqTransport {
    fn default() -> Self {
        Self::with_config(TransportConfig::default())
    }
}

impl UreqTransport {
    /// A transport with a default agent and these timeouts and limits.
    #[must_use]
    pub fn with_config(config: TransportConfig) -> Self {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_connect(Some(config.connect_timeout))
                .timeout_send_request(Some(config.timeout))
                .timeout_recv_response(Some(config.timeout))
                .timeout_recv_body(Some(config.timeout))
                .build(),
        );
        Self {
            agent,
            config,
            configured: true,
        }
    }

    /// Wraps a caller's agent; redirects, status handling and timeouts are set per
    /// request, so the agent's own settings for those do not matter.
    #[must_use]
    pub fn from_agent(agent: ureq::Agent, config: TransportConfig) -> Self {
        Self {
            agent,
            config,
            configured: false,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }
}

impl From<ureq::Agent> for UreqTransport {
    fn from(agent: ureq::Agent) -> Self {
        Self::from_agent(agent, TransportConfig::default())
    }
}

fn classify(e: ureq::Error) -> TransportError {
    let kind = match &e {
        ureq::Error::Timeout(_) => TransportErrorKind::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::Tls(_) => {
            TransportErrorKind::Connect
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            TransportErrorKind::Timeout
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            TransportErrorKind::Connect
        }
        ureq::Error::Io(_) | ureq::Error::Protocol(_) | ureq::Error::BodyStalled => {
            TransportErrorKind::Io
        }
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => TransportErrorKind::Redirect,
        _ => TransportErrorKind::Other,
    };
    TransportError::new(kind, format!("the HTTP request failed ({})", kind.as_str())).with_source(e)
}

impl SyncHttpClient for UreqTransport {
    fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let span = tracing::debug_span!("class_oauth.http", method = %request.method(), url = %flow::loggable_uri(request.uri()));
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let result = self.send_inner(request);
        let elapsed_ms = started.elapsed().as_millis() as u64;
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

impl UreqTransport {
    fn send_inner(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let request = if self.configured {
            request
        } else {
            self.agent
                .configure_request(request)
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_connect(Some(self.config.connect_timeout))
                .timeout_send_request(Some(self.config.timeout))
                .timeout_recv_response(Some(self.config.timeout))
                .timeout_recv_body(Some(self.config.timeout))
                .build()
        };
        let response = self.agent.run(request).map_err(classify)?;
        let (parts, body) = response.into_parts();
        // Read at most one byte past the cap, so the core reports BodyTooLarge.
        let limit = self.config.max_body.saturating_add(1);
        let mut bytes = Vec::new();
        body.into_reader()
            .take(limit as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::TimedOut {
                    TransportErrorKind::Timeout
                } else {
                    TransportErrorKind::Io
                };
                TransportError::new(
                    kind,
                    format!("reading the response body failed ({})", kind.as_str()),
                )
                .with_source(e)
            })?;
        Ok(Response::from_parts(parts, bytes))
    }
}

/// Drives a core flow over a blocking HTTP client, with the system clock.
pub fn drive<F: Flow, H: SyncHttpClient + ?Sized>(
    http: &H,
    flow: F,
) -> Result<F::Output, DriveError> {
    drive_with_clock(http, flow, SystemTime::now)
}

/// Drives a core flow with a caller's clock (tests on a virtual clock, replays). The
/// sleeps of [`Step::Wait`](class_oauth_core::flow::Step::Wait) are real.
pub fn drive_with_clock<F: Flow, H: SyncHttpClient + ?Sized>(
    http: &H,
    flow: F,
    now: impl FnMut() -> SystemTime,
) -> Result<F::Output, DriveError> {
    // The clock and the sleeps are the driver's; the core reads neither.
    flow::drive_blocking(flow, now, |req| http.send(req), std::thread::sleep)
}

fn os_entropy(buf: &mut [u8]) {
    // The OS CSPRNG does not fail on supported platforms after boot; if it does, no
    // secure state or verifier can be made, and stopping is the only safe answer.
    getrandom::getrandom(buf).expect("the operating system's random number generator failed");
}

/// Builds a [`ClassClient`].
#[derive(Debug)]
#[must_use]
pub struct ClassClientBuilder<H = UreqTransport> {
    env: Environment,
    config: ClientConfig,
    discovery: DiscoveryCache,
    http: H,
}

impl<H: SyncHttpClient> ClassClientBuilder<H> {
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
    pub fn http<H2: SyncHttpClient>(self, http: H2) -> ClassClientBuilder<H2> {
        ClassClientBuilder {
            env: self.env,
            config: self.config,
            discovery: self.discovery,
            http,
        }
    }

    /// Builds the client.
    pub fn build(self) -> ClassClient<H> {
        ClassClient {
            http: Arc::new(self.http),
            env: self.env,
            config: self.config,
            discovery: Arc::new(Mutex::new(self.discovery)),
        }
    }
}

/// The blocking high-level Class client. Cheap to clone; usable from many threads.
#[derive(Debug)]
pub struct ClassClient<H = UreqTransport> {
    http: Arc<H>,
    env: Environment,
    config: ClientConfig,
    discovery: Arc<Mutex<DiscoveryCache>>,
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

impl ClassClient<UreqTransport> {
    /// Starts a builder with a default [`UreqTransport`].
    pub fn builder(env: Environment, client_id: ClientId) -> ClassClientBuilder<UreqTransport> {
        ClassClientBuilder {
            discovery: DiscoveryCache::new(env.clone()),
            env,
            config: ClientConfig::new(client_id, None),
            http: UreqTransport::default(),
        }
    }
}

impl<H: SyncHttpClient> ClassClient<H> {
    /// The environment.
    #[must_use]
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// The shared configuration.
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
    pub fn drive<F: Flow>(&self, flow: F) -> Result<F::Output, DriveError> {
        drive(&*self.http, flow)
    }

    /// The endpoints: cached for 24 h, fetched single-flight, failures not cached, the
    /// last good set served when a refresh fails, the preset when Class publishes no
    /// discovery document.
    pub fn endpoints(&self) -> Result<Endpoints, DriveError> {
        let mut cache = self
            .discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now();
        if let Some(e) = cache.fresh(now) {
            return Ok(e.clone());
        }
        let Some(req) = cache.request() else {
            return Ok(cache.handle(now, DiscoveryInput::NotFetched)?);
        };
        match self.http.send(req) {
            Ok(resp) => Ok(cache.handle(SystemTime::now(), DiscoveryInput::Response(&resp))?),
            Err(e) => cache
                .handle_transport_failure()
                .ok_or(DriveError::Transport(e)),
        }
    }

    /// The legacy password grant (Class customers' private clients accessing their own
    /// data). Any ID token is validated.
    pub fn password(
        &self,
        username: Username,
        password: Password,
        scopes: Scopes,
    ) -> Result<ValidatedTokens, DriveError> {
        let e = self.endpoints()?;
        self.drive(self.config.password_flow(&e, username, password, scopes)?)
    }

    /// Builds the authorization URL and the pending record (keep it bound to the
    /// user's session, or in the store keyed by its state).
    pub fn start_authorization(
        &self,
        redirect_uri: RedirectUrl,
        scopes: Scopes,
        options: AuthorizeOptions,
    ) -> Result<(url::Url, PendingAuthorization), DriveError> {
        let e = self.endpoints()?;
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
    pub fn finish_authorization(
        &self,
        pending: &PendingAuthorization,
        callback: Callback<'_>,
    ) -> Result<ValidatedTokens, DriveError> {
        let e = self.endpoints()?;
        self.drive(
            self.config
                .callback_flow(&e, pending, callback, SystemTime::now())?,
        )
    }

    /// Spends the refresh token of `tokens`. A new ID token is validated against the
    /// original's claims when given.
    pub fn refresh(
        &self,
        tokens: &TokenSet,
        original: Option<&IdTokenClaims>,
    ) -> Result<ValidatedTokens, DriveError> {
        let e = self.endpoints()?;
        self.drive(self.config.refresh_flow(&e, tokens, original)?)
    }

    /// Calls UserInfo; with `expected_sub` a different `sub` is rejected.
    pub fn userinfo(
        &self,
        access_token: &AccessToken,
        expected_sub: Option<&str>,
    ) -> Result<UserInfo, DriveError> {
        let e = self.endpoints()?;
        self.drive(self.config.userinfo_flow(&e, access_token, expected_sub))
    }

    /// Revokes a token (when the provider advertises a revocation endpoint).
    pub fn revoke(&self, request: RevocationRequest) -> Result<(), DriveError> {
        let e = self.endpoints()?;
        self.drive(self.config.revoke_flow(&e, request))
    }

    /// Calls a Class API; waits out one 429 and retries once.
    pub fn api(
        &self,
        access_token: &AccessToken,
        request: ApiRequest,
    ) -> Result<ApiResponse, DriveError> {
        let e = self.endpoints()?;
        self.drive(self.config.api_flow(&e, access_token, request))
    }

    /// `GET` a path below the API base.
    pub fn api_get(
        &self,
        access_token: &AccessToken,
        path: &str,
    ) -> Result<ApiResponse, DriveError> {
        let e = self.endpoints()?;
        self.drive(self.config.api_get_flow(&e, access_token, path)?)
    }
}
