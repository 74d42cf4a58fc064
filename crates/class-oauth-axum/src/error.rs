//! What goes wrong in a connect, a callback or an extractor, rendered as a page or as
//! JSON.

use axum::response::{IntoResponse, Response};
use class_oauth_core::scope::BusinessCode;
use class_oauth_manager::ManagerError;
use http::{StatusCode, header};

/// How [`Rejection`]s are rendered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorFormat {
    /// A small HTML page: what happened, a "Connect to Class" link where connecting
    /// again helps, and a link home.
    #[default]
    Html,
    /// `{"error": "<kind>", "message": "...", "business": "...", "connect": "..."}`
    /// (the last two when known).
    Json,
}

/// What kind of failure a [`Rejection`] is; each has its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// The request itself is wrong: a malformed business code or callback (400).
    BadRequest,
    /// The callback did not come back to the browser that started the connect (no state
    /// cookie, or another state's): refused before anything is used up (400).
    NotStartedHere,
    /// The connect was already finished, or it expired: start again (400).
    Expired,
    /// The user (or Class) did not grant access (403).
    Denied,
    /// The business has no usable grant (never connected, revoked, or lapsed): connect
    /// it again (401).
    NotConnected,
    /// Class failed or answered something unusable (502).
    Upstream,
    /// The token store failed (500).
    Store,
    /// The application is wired wrongly, for example a route without the business
    /// parameter an extractor reads (500).
    Config,
}

impl RejectionKind {
    /// The HTTP status.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest | Self::NotStartedHere | Self::Expired => StatusCode::BAD_REQUEST,
            Self::Denied => StatusCode::FORBIDDEN,
            Self::NotConnected => StatusCode::UNAUTHORIZED,
            Self::Upstream => StatusCode::BAD_GATEWAY,
            Self::Store | Self::Config => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short snake_case name (the JSON `error` member).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::NotStartedHere => "not_started_here",
            Self::Expired => "expired",
            Self::Denied => "denied",
            Self::NotConnected => "not_connected",
            Self::Upstream => "upstream",
            Self::Store => "store",
            Self::Config => "config",
        }
    }
}

/// A connect, callback or extractor failure: its kind, a message for the user, the
/// business when known, and the cause. It renders itself ([`IntoResponse`]) in the
/// [`ErrorFormat`] the [`ClassConnect`](crate::ClassConnect) was built with; take
/// `Result<TenantApi, Rejection>` in a handler to render it your own way.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    kind: RejectionKind,
    message: String,
    business: Option<BusinessCode>,
    connect: Option<String>,
    format: ErrorFormat,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Rejection {
    /// A rejection of `kind` with a message for the user (HTML format until
    /// [`Rejection::format`]).
    #[must_use]
    pub fn new(kind: RejectionKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            business: None,
            connect: None,
            format: ErrorFormat::Html,
            source: None,
        }
    }

    pub(crate) fn caused_by(
        kind: RejectionKind,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        let mut r = Self::new(kind, source.to_string());
        r.source = Some(Box::new(source));
        r
    }

    pub(crate) fn set_source(&mut self, source: Box<dyn std::error::Error + Send + Sync>) {
        self.source = Some(source);
    }

    /// A manager failure: no usable grant becomes [`RejectionKind::NotConnected`], a store
    /// failure [`RejectionKind::Store`], the rest [`RejectionKind::Upstream`].
    pub(crate) fn from_manager(e: ManagerError) -> Self {
        let kind = if e.requires_reauthorization() {
            RejectionKind::NotConnected
        } else if matches!(e, ManagerError::Store(_)) {
            RejectionKind::Store
        } else {
            RejectionKind::Upstream
        };
        Self::caused_by(kind, e)
    }

    /// Renders in `format`.
    #[must_use]
    pub fn format(mut self, format: ErrorFormat) -> Self {
        self.format = format;
        self
    }

    pub(crate) fn business(mut self, business: BusinessCode, connect: String) -> Self {
        self.business = Some(business);
        self.connect = Some(connect);
        self
    }

    /// The kind.
    #[must_use]
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The message shown to the user.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The business concerned, when known.
    #[must_use]
    pub fn business_code(&self) -> Option<&BusinessCode> {
        self.business.as_ref()
    }

    /// The link that connects the business again (for [`RejectionKind::NotConnected`]).
    #[must_use]
    pub fn connect_link(&self) -> Option<&str> {
        self.connect
            .as_deref()
            .filter(|_| self.kind == RejectionKind::NotConnected)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        if status.is_server_error() {
            tracing::warn!(kind = self.kind.as_str(), error = %self, "class-oauth-axum: request failed");
        }
        match self.format {
            ErrorFormat::Json => {
                let mut body = serde_json::json!({
                    "error": self.kind.as_str(),
                    "message": self.message,
                });
                if let Some(b) = &self.business {
                    body["business"] = b.as_str().into();
                }
                if let Some(link) = self.connect_link() {
                    body["connect"] = link.into();
                }
                (
                    status,
                    [(header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response()
            }
            ErrorFormat::Html => {
                let title = match self.kind {
                    RejectionKind::NotConnected => "Connect to Class",
                    RejectionKind::Denied => "Access not granted",
                    _ => "Something went wrong",
                };
                let mut body = format!("<p>{}</p>", html_escape::encode_text(&self.message));
                if let Some(link) = self.connect_link() {
                    body.push_str(&format!(
                        "<p><a href=\"{}\">Connect to Class</a></p>",
                        html_escape::encode_double_quoted_attribute(link)
                    ));
                }
                body.push_str("<p><a href=\"/\">Home</a></p>");
                (status, page(title, &body)).into_response()
            }
        }
    }
}

/// A minimal HTML page; `body` is already escaped.
fn page(title: &str, body: &str) -> axum::response::Html<String> {
    axum::response::Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = html_escape::encode_text(title)
    ))
}

/// Why [`ClassConnectBuilder::build`](crate::ClassConnectBuilder::build) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The scopes cannot make a grant that is kept: `offline_access` is missing, or they
    /// name a target (the connect route adds the business's).
    #[error("the scopes cannot be used for connecting businesses: {0}")]
    Scopes(String),
    /// A route path is not a path (`/connect`).
    #[error("`{0}` is not a route path (it must start with `/`)")]
    Path(String),
    /// The HTTP client for API calls could not be built.
    #[error("could not build the HTTP client for API calls")]
    Http(#[source] class_oauth_client::TransportError),
}
