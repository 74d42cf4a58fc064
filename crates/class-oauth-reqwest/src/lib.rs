//! # class-oauth-reqwest
//!
//! The async transport for [`class_oauth_core`]: a thin driver over a `reqwest::Client`
//! that moves bytes and holds no protocol logic. Every decision (what to send, how to
//! parse it, when to refetch keys or wait out a 429) is made by the core's
//! flows ([`class_oauth_core::flow::Flow`]); this crate sends, reads the clock, and sleeps.
//!
//! - [`ReqwestTransport`]: never follows redirects, connect and total timeouts, a
//!   response body cap (1 MiB default) enforced while reading, every header copied,
//!   4xx/5xx bodies handed to the core, transport failures kept apart from server
//!   refusals ([`DriveError::Transport`] vs [`DriveError::Protocol`]).
//! - [`ClassClient`]: `class_oauth_client::ClassClient` on this transport: one method per
//!   use case (discover, password grant, authorization start and finish, refresh,
//!   UserInfo, revoke, Class API calls), written once in `class-oauth-client` for both
//!   transports. Its futures are `Send`. Any other async HTTP client plugs in through
//!   [`AsyncHttpClient`].
//!
//! Per-tenant grants that stay valid (refresh ahead of expiry, one-time refresh tokens,
//! several instances) are the token manager's job: `class-oauth-manager`.
//!
//! TLS: the `rustls` feature (default) configures the default client with rustls on
//! *ring*, trusting the bundled Mozilla roots or, with [`RootCerts::Platform`], the
//! operating system's store (`rustls-platform-verifier`). Without it, bring your own
//! `reqwest::Client` via [`ReqwestTransport::from_client`] (native-tls, for instance).
//!
//! Proxies: the default client uses the proxy [`ProxyMode::Environment`] names
//! (`HTTPS_PROXY`, else `ALL_PROXY`; `NO_PROXY` honoured), by the same rule as the ureq
//! transport; [`ProxyMode::Off`] connects directly. Every request names this library in
//! its `User-Agent` ([`USER_AGENT`]) unless it has one.
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

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::time::Duration;

use http::{Request, Response};

pub use class_oauth_client::{
    AsyncHttpClient, AuthorizeOptions, Callback, ClassClientBuilder, DefaultHttp, DriveError,
    ExpectedSubject, KeySets, ProxyMode, RootCerts, TransportConfig, TransportError,
    TransportErrorKind, USER_AGENT, drive, drive_with_clock,
};
pub use reqwest;

#[cfg(feature = "rustls")]
mod tls;

/// The async Class client on reqwest (see [`class_oauth_client::ClassClient`]).
pub type ClassClient = class_oauth_client::ClassClient<ReqwestTransport>;

/// A `reqwest::Client` as a class-oauth transport.
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    client: reqwest::Client,
    config: TransportConfig,
    /// The client was built here: it never follows a redirect and its own total timeout
    /// is `config.timeout`, so neither needs enforcing again per request.
    configured: bool,
}

impl ReqwestTransport {
    /// A transport with a default client: no redirects, default timeouts.
    pub fn new() -> Result<Self, TransportError> {
        Self::with_config(TransportConfig::default())
    }

    /// A transport with a default client and these timeouts, limits, roots and proxy
    /// mode (see [`TransportConfig`]).
    pub fn with_config(config: TransportConfig) -> Result<Self, TransportError> {
        let failed = |e: reqwest::Error| {
            TransportError::new(TransportErrorKind::Other, "could not build the HTTP client")
                .with_source(e)
        };
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .user_agent(USER_AGENT)
            // The proxy comes from the rule both transports share, never reqwest's own.
            .no_proxy();
        if let Some(settings) = class_oauth_client::proxy_settings(&config) {
            // Checked once here, so a bad URL fails the build rather than each request.
            let via = reqwest::Url::parse(&settings.url).map_err(|e| {
                TransportError::new(TransportErrorKind::Other, "the proxy URL is not valid")
                    .with_source(e)
            })?;
            // The bypass rule is the core's (`ProxySettings::bypasses`), the same as the
            // ureq transport's.
            builder = builder.proxy(reqwest::Proxy::custom(move |url| {
                (!settings.bypasses(url.host_str().unwrap_or_default())).then(|| via.clone())
            }));
        }
        #[cfg(feature = "rustls")]
        {
            builder = builder.tls_backend_preconfigured(tls::client_config(config.roots)?);
        }
        let client = builder.build().map_err(failed)?;
        Ok(Self {
            client,
            config,
            configured: true,
        })
    }

    /// Wraps a caller's client. Build it with `redirect(Policy::none())`: a response that
    /// was redirected anyway is refused with [`TransportErrorKind::Redirect`]. The total
    /// timeout and body cap of `config` still apply per request.
    #[must_use]
    pub fn from_client(client: reqwest::Client, config: TransportConfig) -> Self {
        Self {
            client,
            config,
            configured: false,
        }
    }

    /// The `reqwest::Client`: for calls of your own with the same TLS and proxy set-up
    /// (a reqwest-middleware stack with the manager's `ClassAuth`, for instance). A
    /// client built with `reqwest::Client::new()` needs a rustls crypto provider of its
    /// own when reqwest's default features are off; this one has one.
    #[must_use]
    pub fn client(&self) -> &reqwest::Client {
        &self.client
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

impl DefaultHttp for ReqwestTransport {
    fn default_http() -> Result<Self, TransportError> {
        Self::new()
    }
}

#[async_trait::async_trait]
impl AsyncHttpClient for ReqwestTransport {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    /// reqwest's total timeout (connect included), set on the client built here and on
    /// every request through a caller's client.
    fn request_bound(&self) -> Option<Duration> {
        Some(self.config.timeout)
    }

    async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let mut request = request;
        class_oauth_client::set_user_agent(&mut request);
        let span = class_oauth_client::http_span(&request);
        if span.is_disabled() {
            // Nobody listens: no clock reads, no events.
            return self.send_inner(request).await;
        }
        let started = std::time::Instant::now();
        let result = self.send_inner(request).await;
        span.in_scope(|| class_oauth_client::log_exchange(&result, started));
        result
    }
}

impl ReqwestTransport {
    async fn send_inner(
        &self,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, TransportError> {
        // A caller's client may follow redirects: what the response must come from
        // (compared part by part, not formatted). A client built here never does.
        let expected = (!self.configured).then(|| request.uri().clone());
        let mut req = reqwest::Request::try_from(request).map_err(|e| {
            TransportError::new(TransportErrorKind::Other, "invalid request").with_source(e)
        })?;
        if !self.configured {
            // reqwest's per-request timeout covers the body too. A client built here
            // has the same as its own total timeout.
            *req.timeout_mut() = Some(self.config.timeout);
        }
        let mut resp = self.client.execute(req).await.map_err(classify)?;
        if let Some(expected) = expected {
            if !same_origin_and_path(resp.url(), &expected) {
                return Err(TransportError::new(
                    TransportErrorKind::Redirect,
                    "the response came from a redirect, which is never followed",
                ));
            }
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

/// Did the response come from the URL requested (host, port, path up to a trailing
/// slash, query)?
fn same_origin_and_path(from: &reqwest::Url, expected: &http::Uri) -> bool {
    let path = expected.path();
    let same_path =
        from.path() == path || from.path().trim_end_matches('/') == path.trim_end_matches('/');
    from.host_str() == expected.host()
        && from.port_or_known_default()
            == expected.port_u16().or_else(|| from.port_or_known_default())
        && same_path
        && from.query() == expected.query()
}

#[cfg(test)]
mod tests {
    use super::*;
    use class_oauth_core::scope::Scopes;
    use class_oauth_core::{AccessToken, ClientId, Environment, Password, Username};
    use std::time::SystemTime;

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
        let request = class_oauth_core::token::TokenRequest::refresh_token(
            class_oauth_core::RefreshToken::new("r"),
            Scopes::default(),
        );
        let tokens = class_oauth_core::flow::drive_blocking(
            class_oauth_core::flow::TokenFlow::new(&cc, request),
            || SystemTime::UNIX_EPOCH,
            |_| Ok(response.clone()),
            |_| {},
        )
        .unwrap()
        .tokens;
        assert_send(&client.endpoints());
        assert_send(&client.password(Username::new("u"), Password::new("p"), Scopes::default()));
        assert_send(&client.refresh(&tokens, None));
        assert_send(&client.userinfo(&AccessToken::new("a"), ExpectedSubject::NoIdToken));
        assert_send(&client.api_get(&AccessToken::new("a"), "x"));
    }
}

/// The README's usage snippet, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
