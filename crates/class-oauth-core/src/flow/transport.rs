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
    /// (send, response head, body) by it, because ureq's single "global" timeout costs
    /// about 1 ms per request (measured: 0.9 to 1.8 ms against 40 µs); a ureq request so
    /// takes at most connect + 3 x this.
    pub timeout: Duration,
    /// Response body cap in bytes (default 1 MiB), enforced while reading.
    pub max_body: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_body: crate::body::DEFAULT_MAX_BODY,
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
