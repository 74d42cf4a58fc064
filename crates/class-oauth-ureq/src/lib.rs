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
//! - [`ClassClient`]: `class_oauth_client::blocking::ClassClient` on this transport: one
//!   method per use case, the same code as the async client (written once in
//!   `class-oauth-client`) run to completion on the calling thread. Any other blocking
//!   HTTP client (closures qualify) plugs in through [`SyncHttpClient`].
//!
//! Per-tenant grants that stay valid are the token manager's job: `class-oauth-manager`
//! (its `blocking` face needs no runtime either).
//!
//! TLS: the `rustls` feature (default) configures the default agent with rustls on
//! *ring*, trusting the bundled Mozilla roots or, with [`RootCerts::Platform`], the
//! operating system's store (`rustls-platform-verifier`). Without it, bring your own
//! agent via [`UreqTransport::from_agent`] (native-tls, for instance).
//!
//! Proxies: the default agent uses the proxy [`ProxyMode::Environment`] names
//! (`HTTPS_PROXY`, else `ALL_PROXY`; `NO_PROXY` honoured), by the same rule as the
//! reqwest transport; [`ProxyMode::Off`] connects directly. Every request names this
//! library in its `User-Agent` ([`USER_AGENT`]) unless it
//! has one.
//!
//! ```no_run
//! use class_oauth_core::{ClientId, ClientSecret, Environment, Password, Username};
//! use class_oauth_core::scope::Scopes;
//! use class_oauth_ureq::ClassClient;
//!
//! let client = ClassClient::builder(Environment::Pie, ClientId::new("your-client-id"))
//!     .secret(ClientSecret::new("your-client-secret"))
//!     .build()?;
//! let tokens = client.password(Username::new("you@example.com"), Password::new("..."), Scopes::parse("target:b/MYBIZ fund.read")?)?;
//! println!("expires at {:?}", tokens.tokens.expires_at);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::io::Read;
use std::time::Duration;

use http::{Request, Response};

pub use class_oauth_client::blocking::{block_on, drive, drive_with_clock};
pub use class_oauth_client::{
    AuthorizeOptions, Callback, ClassClientBuilder, DefaultHttp, DriveError, ExpectedSubject,
    KeySets, ProxyMode, RootCerts, SyncHttpClient, TransportConfig, TransportError,
    TransportErrorKind, USER_AGENT,
};
pub use ureq;

/// This crate's rules on a ureq configuration builder (an agent's, or one request's on a
/// caller's agent): no redirects followed, 4xx/5xx bodies handed to the core, every phase
/// bounded by `config.timeout` and each socket read and write by [`per_io`] of it. A
/// macro because ureq's agent and request builders share these methods but no nameable
/// trait.
macro_rules! our_rules {
    ($builder:expr, $config:expr) => {
        $builder
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some($config.connect_timeout))
            .timeout_send_request(Some($config.timeout))
            .timeout_recv_response(Some($config.timeout))
            .timeout_recv_body(Some($config.timeout))
            .timeout_per_read(Some(per_io($config.timeout)))
            .timeout_per_write(Some(per_io($config.timeout)))
    };
}

/// The blocking Class client on ureq (see [`class_oauth_client::blocking::ClassClient`]).
pub type ClassClient = class_oauth_client::blocking::ClassClient<UreqTransport>;

/// A `ureq::Agent` as a class-oauth transport.
#[derive(Clone, Debug)]
pub struct UreqTransport {
    agent: ureq::Agent,
    config: TransportConfig,
    /// The agent was built here with the right settings; a caller's agent gets them per
    /// request instead.
    configured: bool,
    /// With a proxy: the hosts that go direct, and the agent that takes them.
    bypass: Option<std::sync::Arc<Bypass>>,
}

#[derive(Debug)]
struct Bypass {
    settings: class_oauth_client::ProxySettings,
    direct: ureq::Agent,
}

impl From<ureq::Agent> for UreqTransport {
    fn from(agent: ureq::Agent) -> Self {
        Self::from_agent(agent, TransportConfig::default())
    }
}

impl UreqTransport {
    /// A transport with a default agent: no redirects, default timeouts, bundled roots,
    /// the environment's proxy.
    pub fn new() -> Result<Self, TransportError> {
        Self::with_config(TransportConfig::default())
    }

    /// A transport with a default agent and these timeouts, limits, roots and proxy
    /// mode (see [`TransportConfig`]). Fails only on a proxy URL that does not parse.
    pub fn with_config(config: TransportConfig) -> Result<Self, TransportError> {
        let proxy = class_oauth_client::proxy_settings(&config);
        let via = match &proxy {
            Some(settings) => Some(ureq::Proxy::new(&settings.url).map_err(|e| {
                TransportError::new(TransportErrorKind::Other, "the proxy URL is not valid")
                    .with_source(e)
            })?),
            None => None,
        };
        let agent = |proxy: Option<ureq::Proxy>| {
            let builder = our_rules!(ureq::Agent::config_builder(), config)
                .user_agent(USER_AGENT)
                .proxy(proxy);
            #[cfg(feature = "rustls")]
            let builder = builder.tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .root_certs(match config.roots {
                        RootCerts::Platform => ureq::tls::RootCerts::PlatformVerifier,
                        _ => ureq::tls::RootCerts::WebPki,
                    })
                    .build(),
            );
            ureq::Agent::new_with_config(builder.build())
        };
        // Hosts the proxy settings exempt go through a direct agent: the bypass rule is
        // the core's (`ProxySettings::bypasses`), the same as the reqwest transport's.
        let bypass = proxy.map(|settings| Bypass {
            settings,
            direct: agent(None),
        });
        Ok(Self {
            agent: agent(via),
            bypass: bypass.map(std::sync::Arc::new),
            config,
            configured: true,
        })
    }

    /// Wraps a caller's agent; redirects, status handling and timeouts are set per
    /// request, so the agent's own settings for those do not matter.
    #[must_use]
    pub fn from_agent(agent: ureq::Agent, config: TransportConfig) -> Self {
        Self {
            agent,
            config,
            configured: false,
            bypass: None,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }
}

/// The cap on each socket read and write: a constant a little under the phase timeout.
/// ureq sets a socket's timeout only when the value changes, and a phase's remaining
/// time changes on every call, so without this cap every read and write cost a
/// `setsockopt` (3 per grant, measured with strace; 0 with it). A read or write still
/// ends by the phase's deadline, and at the latest after 90 % of it.
fn per_io(timeout: Duration) -> Duration {
    timeout - timeout / 10
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
        // A refused certificate or handshake reaches ureq as an I/O error around rustls's;
        // reqwest calls it a connection failure, and so does this transport.
        #[cfg(feature = "rustls")]
        ureq::Error::Io(io)
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
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

impl DefaultHttp for UreqTransport {
    fn default_http() -> Result<Self, TransportError> {
        Self::new()
    }
}

impl SyncHttpClient for UreqTransport {
    /// ureq bounds each phase: connect, then sending the request, receiving the
    /// response head and receiving the body, each within the phase timeout.
    fn request_bound(&self) -> Option<Duration> {
        Some(self.config.connect_timeout + 3 * self.config.timeout)
    }

    fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let mut request = request;
        class_oauth_client::set_user_agent(&mut request);
        let span = class_oauth_client::http_span(&request);
        if span.is_disabled() {
            // Nobody listens: no clock reads, no events.
            return self.send_inner(request);
        }
        let _entered = span.entered();
        let started = std::time::Instant::now();
        let result = self.send_inner(request);
        class_oauth_client::log_exchange(&result, started);
        result
    }
}

impl UreqTransport {
    fn send_inner(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let request = if self.configured {
            request
        } else {
            our_rules!(self.agent.configure_request(request), self.config).build()
        };
        let agent = match &self.bypass {
            Some(b)
                if b.settings
                    .bypasses(request.uri().host().unwrap_or_default()) =>
            {
                &b.direct
            }
            _ => &self.agent,
        };
        let response = agent.run(request).map_err(classify)?;
        let (parts, body) = response.into_parts();
        // Read at most one byte past the cap, so the core reports BodyTooLarge.
        let limit = self.config.max_body.saturating_add(1);
        // Sized from Content-Length (within the cap) rather than grown read by read.
        let mut bytes = Vec::with_capacity(
            body.content_length()
                .map_or(0, |l| l.min(limit as u64) as usize),
        );
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

/// The README's usage snippet, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
