//! Transport failures and limits: plain data both transports report identically.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

/// Timeouts and limits every transport applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Total time for a request after connecting, body included (default 30 s). The
    /// reqwest transport applies it as one timeout. The ureq transport bounds each phase
    /// (send, response head, body) by it, and each socket read or write by 90 % of it,
    /// because ureq's single "global" timeout costs about 1 ms per request (it resolves
    /// the host on a new thread each time: one `clone3` per request under strace); a ureq
    /// request so takes at most connect + 3 x this.
    pub timeout: Duration,
    /// Response body cap in bytes (default 1 MiB), enforced while reading.
    pub max_body: usize,
    /// Which certificates the default TLS set-up trusts (default: the bundled Mozilla
    /// roots). A client or agent of the caller's own keeps its own TLS set-up.
    pub roots: RootCerts,
    /// Whether the default client or agent goes through a proxy (default: the one the
    /// environment names, see [`ProxyMode::Environment`]).
    pub proxy: ProxyMode,
}

/// The certificates a transport's default TLS set-up (rustls) trusts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootCerts {
    /// The Mozilla root program, compiled in (`webpki-roots`): the same on every
    /// machine, no system files read. The default.
    #[default]
    Bundled,
    /// The operating system's certificate store and verifier
    /// (`rustls-platform-verifier`): for corporate TLS-inspecting proxies and private
    /// CAs installed on the machine. On Linux it reads the system bundle, or the file
    /// and directory named by `SSL_CERT_FILE` and `SSL_CERT_DIR`.
    Platform,
}

/// How a transport's default client or agent chooses a proxy. Both transports resolve
/// it with the same rule ([`ProxySettings::from_env`]), so they behave alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyMode {
    /// `HTTPS_PROXY` (or `https_proxy`), else `ALL_PROXY` (or `all_proxy`), for every
    /// request; hosts listed in `NO_PROXY` (or `no_proxy`) go direct. `HTTP_PROXY` is
    /// not read: Class is HTTPS only, and a plain-HTTP proxy variable is not trusted for
    /// HTTPS (as curl does). `localhost`, `127.0.0.1` and `::1` always go direct. The
    /// default.
    #[default]
    Environment,
    /// Always connect directly.
    Off,
}

/// A proxy to use: its URL and the hosts that bypass it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxySettings {
    /// The proxy's URL (`http://host:port`, credentials allowed).
    pub url: String,
    /// Host names that go direct: exact names, or domain suffixes written `.example.com`
    /// or `*.example.com`; `*` bypasses the proxy for every host.
    pub no_proxy: Vec<String>,
}

impl ProxySettings {
    /// The proxy `mode` selects, reading variables through `var` (pass
    /// `|k| std::env::var(k).ok()` for the process environment).
    #[must_use]
    pub fn from_env(mode: ProxyMode, var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        if mode == ProxyMode::Off {
            return None;
        }
        let first = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| var(n))
                .map(|v| v.trim().to_owned())
                .find(|v| !v.is_empty())
        };
        let url = first(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])?;
        // Loopback always goes direct: no proxy can reach this machine's loopback.
        let mut no_proxy: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(str::to_owned).into();
        if let Some(list) = first(&["NO_PROXY", "no_proxy"]) {
            no_proxy.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_owned),
            );
        }
        Some(Self { url, no_proxy })
    }

    /// Whether requests to `host` bypass the proxy.
    #[must_use]
    pub fn bypasses(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.no_proxy.iter().any(|entry| {
            let entry = entry.trim_start_matches('*');
            if entry.is_empty() {
                return true;
            }
            match entry.strip_prefix('.') {
                Some(suffix) => host
                    .to_ascii_lowercase()
                    .strip_suffix(&suffix.to_ascii_lowercase())
                    .is_some_and(|rest| rest.ends_with('.')),
                None => host.eq_ignore_ascii_case(entry),
            }
        })
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_body: crate::body::DEFAULT_MAX_BODY,
            roots: RootCerts::default(),
            proxy: ProxyMode::default(),
        }
    }
}

impl TransportConfig {
    /// Sets the total timeout.
    #[must_use]
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Sets the body cap.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sets the trusted roots (see [`RootCerts`]).
    #[must_use]
    pub fn roots(mut self, roots: RootCerts) -> Self {
        self.roots = roots;
        self
    }

    /// Sets the proxy mode (see [`ProxyMode`]).
    #[must_use]
    pub fn proxy(mut self, proxy: ProxyMode) -> Self {
        self.proxy = proxy;
        self
    }
}

/// How a transport failed. Plain data, so both transports report identical values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The connect or total timeout elapsed.
    Timeout,
    /// The connection could not be made (refused, DNS, TLS handshake).
    Connect,
    /// The connection broke while sending or receiving (reset, truncated body).
    Io,
    /// The server redirected; redirects are never followed.
    Redirect,
    /// Anything else the HTTP client reported.
    Other,
}

impl TransportErrorKind {
    /// Snake-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Io => "io",
            Self::Redirect => "redirect",
            Self::Other => "other",
        }
    }
}

/// A transport failure, with the HTTP client's error as `source()`.
#[derive(Clone)]
#[non_exhaustive]
pub struct TransportError {
    /// What happened.
    pub kind: TransportErrorKind,
    /// A message without secrets (no URL query, no body).
    pub message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl TransportError {
    /// A transport error.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the HTTP client's error.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "transport failure ({}): {}",
            self.kind.as_str(),
            self.message
        )
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for TransportError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for TransportError {}

/// The error a driver returns: the protocol said no, or the transport failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DriveError {
    /// A protocol error from the core (refusal, malformed response, policy, ID token).
    #[error(transparent)]
    Protocol(#[from] Error),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

macro_rules! drive_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for DriveError {
            fn from(e: $t) -> Self {
                Self::Protocol(e.into())
            }
        }
    )*};
}

drive_error_from!(
    crate::error::InputError,
    crate::error::PolicyViolation,
    crate::scope::ScopeError,
    crate::id_token::IdTokenError
);

impl DriveError {
    /// The protocol error, if that is what it is.
    #[must_use]
    pub fn protocol(&self) -> Option<&Error> {
        match self {
            Self::Protocol(e) => Some(e),
            Self::Transport(_) => None,
        }
    }

    /// True when the same call may succeed later: every transport failure, and
    /// transient protocol errors. For a refresh, see the token manager: a refresh whose
    /// response was lost may already have spent the one-time refresh token.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Protocol(e) => e.is_transient(),
            Self::Transport(_) => true,
        }
    }

    /// True when the user must authorize again.
    #[must_use]
    pub fn requires_reauthorization(&self) -> bool {
        self.protocol().is_some_and(Error::requires_reauthorization)
    }
}

/// A URI as it may appear in logs: scheme, host, port and path; never the query (which
/// could carry a code or a token) or userinfo.
#[must_use]
pub fn loggable_uri(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority()
            .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or("")),
        uri.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_proxy_rule_is_https_then_all_and_never_http() {
        let p = ProxySettings::from_env(
            ProxyMode::Environment,
            env(&[("ALL_PROXY", "http://all:1"), ("https_proxy", "http://s:2")]),
        );
        assert_eq!(p.unwrap().url, "http://s:2");
        let p = ProxySettings::from_env(
            ProxyMode::Environment,
            env(&[("ALL_PROXY", "http://all:1")]),
        );
        assert_eq!(p.unwrap().url, "http://all:1");
        assert_eq!(
            ProxySettings::from_env(ProxyMode::Environment, env(&[("HTTP_PROXY", "http://h:3")])),
            None
        );
        assert_eq!(
            ProxySettings::from_env(ProxyMode::Off, env(&[("HTTPS_PROXY", "http://s:2")])),
            None
        );
        assert_eq!(
            ProxySettings::from_env(ProxyMode::Environment, env(&[("HTTPS_PROXY", " ")])),
            None
        );
    }

    #[test]
    fn no_proxy_matches_names_and_suffixes() {
        let p = ProxySettings::from_env(
            ProxyMode::Environment,
            env(&[
                ("HTTPS_PROXY", "http://p:1"),
                ("NO_PROXY", "localhost, .internal.example,*.corp"),
            ]),
        )
        .unwrap();
        assert!(p.bypasses("localhost"));
        assert!(p.bypasses("LOCALHOST"));
        assert!(p.bypasses("api.internal.example"));
        assert!(!p.bypasses("internal.example"));
        assert!(p.bypasses("a.b.corp"));
        assert!(!p.bypasses("corp"));
        assert!(!p.bypasses("api.class.com.au"));
        assert!(p.bypasses("127.0.0.1") && p.bypasses("[::1]"));
        let all = ProxySettings::from_env(
            ProxyMode::Environment,
            env(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")]),
        )
        .unwrap();
        assert!(all.bypasses("api.class.com.au"));
    }
}
