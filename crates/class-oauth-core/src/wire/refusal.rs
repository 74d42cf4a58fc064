//! How an authorization server says no, or answers something else: the OAuth error
//! object ([`ErrorCode`], [`OAuthError`], [`ServerRefusal`]) and a response that does not
//! follow the protocol ([`MalformedResponse`]). Raised by the wire layer's body parsing;
//! public at [`crate::error`].

use std::fmt;

use http::StatusCode;

use crate::headers::{RetryAfter, WwwAuthenticate};
use crate::text::truncate;
use crate::types::EndpointKind;

/// An OAuth 2.0 / OpenID Connect error code (RFC 6749 4.1.2.1 and 5.2, RFC 6750 3.1,
/// RFC 7009 2.2.1, OIDC Core 3.1.2.6). Unknown codes are kept verbatim in
/// [`ErrorCode::Other`], so `ErrorCode::from(s).as_str() == s` for every string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`
    InvalidRequest,
    /// `invalid_client`
    InvalidClient,
    /// `invalid_grant`: the code or refresh token is expired, used, revoked or mismatched.
    InvalidGrant,
    /// `unauthorized_client`
    UnauthorizedClient,
    /// `unsupported_grant_type`
    UnsupportedGrantType,
    /// `invalid_scope`
    InvalidScope,
    /// `access_denied`: the user (or the server) denied the request.
    AccessDenied,
    /// `unsupported_response_type`
    UnsupportedResponseType,
    /// `server_error`
    ServerError,
    /// `temporarily_unavailable`
    TemporarilyUnavailable,
    /// `interaction_required` (OIDC)
    InteractionRequired,
    /// `login_required` (OIDC): `prompt=none` but the user is not logged in to Class.
    LoginRequired,
    /// `account_selection_required` (OIDC)
    AccountSelectionRequired,
    /// `consent_required` (OIDC): `prompt=none` but consent is missing.
    ConsentRequired,
    /// `invalid_request_uri` (OIDC)
    InvalidRequestUri,
    /// `invalid_request_object` (OIDC)
    InvalidRequestObject,
    /// `request_not_supported` (OIDC; Class does not support `request`)
    RequestNotSupported,
    /// `request_uri_not_supported` (OIDC)
    RequestUriNotSupported,
    /// `registration_not_supported` (OIDC; Class does not support `registration`)
    RegistrationNotSupported,
    /// `unsupported_token_type` (RFC 7009)
    UnsupportedTokenType,
    /// `invalid_token` (RFC 6750)
    InvalidToken,
    /// `insufficient_scope` (RFC 6750)
    InsufficientScope,
    /// Any other code, kept verbatim.
    Other(String),
}

macro_rules! codes {
    ($($variant:ident => $text:literal,)*) => {
        impl ErrorCode {
            /// The wire form of the code.
            #[must_use]
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Other(s) => s,
                }
            }
        }

        impl From<&str> for ErrorCode {
            fn from(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)*
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        /// Every registered code this crate names (for catalogues and tests).
        pub const KNOWN_ERROR_CODES: &[&str] = &[$($text,)*];
    };
}

codes! {
    InvalidRequest => "invalid_request",
    InvalidClient => "invalid_client",
    InvalidGrant => "invalid_grant",
    UnauthorizedClient => "unauthorized_client",
    UnsupportedGrantType => "unsupported_grant_type",
    InvalidScope => "invalid_scope",
    AccessDenied => "access_denied",
    UnsupportedResponseType => "unsupported_response_type",
    ServerError => "server_error",
    TemporarilyUnavailable => "temporarily_unavailable",
    InteractionRequired => "interaction_required",
    LoginRequired => "login_required",
    AccountSelectionRequired => "account_selection_required",
    ConsentRequired => "consent_required",
    InvalidRequestUri => "invalid_request_uri",
    InvalidRequestObject => "invalid_request_object",
    RequestNotSupported => "request_not_supported",
    RequestUriNotSupported => "request_uri_not_supported",
    RegistrationNotSupported => "registration_not_supported",
    UnsupportedTokenType => "unsupported_token_type",
    InvalidToken => "invalid_token",
    InsufficientScope => "insufficient_scope",
}

impl From<String> for ErrorCode {
    fn from(s: String) -> Self {
        Self::from(s.as_str())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 6749 error object: `error`, `error_description`, `error_uri`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthError {
    /// The `error` code.
    pub code: ErrorCode,
    /// `error_description`, human-readable text from the server.
    pub description: Option<String>,
    /// `error_uri`.
    pub uri: Option<String>,
}

impl OAuthError {
    /// An error with only a code.
    #[must_use]
    pub fn new(code: impl Into<ErrorCode>) -> Self {
        Self {
            code: code.into(),
            description: None,
            uri: None,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.as_str())?;
        if let Some(d) = &self.description {
            write!(f, ": {}", truncate(d, 300))?;
        }
        Ok(())
    }
}

/// The server understood the request and refused it with an OAuth error.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerRefusal {
    /// Where the refusal came from.
    pub endpoint: EndpointKind,
    /// HTTP status; `None` for errors delivered in the authorization redirect.
    pub status: Option<StatusCode>,
    /// The error object.
    pub error: OAuthError,
    /// A parsed `WWW-Authenticate` challenge, when sent.
    pub www_authenticate: Option<WwwAuthenticate>,
    /// A parsed `Retry-After`, when sent.
    pub retry_after: Option<RetryAfter>,
}

impl fmt::Display for ServerRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} endpoint refused the request", self.endpoint)?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {})", s.as_u16())?;
        }
        write!(f, ": {}", self.error)
    }
}

/// Why a response could not be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MalformedReason {
    /// The body was empty.
    EmptyBody,
    /// The body was larger than the configured cap.
    BodyTooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The content type is not one the endpoint may answer with (an HTML error page, say).
    UnexpectedContentType,
    /// The body is not valid JSON (or not a JSON object).
    InvalidJson {
        /// The parser's message (never contains the body).
        detail: String,
    },
    /// A required member is absent.
    MissingField(&'static str),
    /// A member has the wrong JSON type or an unusable value.
    InvalidField {
        /// Member name.
        field: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The status is neither success nor a parseable error.
    UnexpectedStatus,
    /// A 3xx: redirects are never followed (they would leak credentials or enable SSRF).
    Redirect {
        /// Where it pointed (scheme, host and path only; the query is dropped).
        location: Option<String>,
    },
    /// `token_type` is not `bearer`; RFC 6749 7.1 forbids using such a token.
    UnsupportedTokenType(String),
}

impl fmt::Display for MalformedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyBody => f.write_str("the body is empty"),
            Self::BodyTooLarge { limit } => write!(f, "the body exceeds the {limit}-byte limit"),
            Self::UnexpectedContentType => f.write_str("the content type is not JSON"),
            Self::InvalidJson { detail } => write!(f, "the body is not a JSON object ({detail})"),
            Self::MissingField(name) => write!(f, "required member `{name}` is missing"),
            Self::InvalidField { field, detail } => {
                write!(f, "member `{field}` is invalid: {detail}")
            }
            Self::UnexpectedStatus => {
                f.write_str("the status is not a success and the body is no OAuth error")
            }
            Self::Redirect { location } => write!(
                f,
                "the server redirected{}; redirects are never followed, so check the configured endpoint URL",
                location
                    .as_deref()
                    .map(|l| format!(" to {l}"))
                    .unwrap_or_default()
            ),
            Self::UnsupportedTokenType(t) => {
                write!(f, "token_type `{}` is not bearer", truncate(t, 40))
            }
        }
    }
}

/// A response that does not follow the protocol. The excerpt is at most 200
/// characters with token-like values replaced by `[redacted]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MalformedResponse {
    /// Which endpoint answered.
    pub endpoint: EndpointKind,
    /// HTTP status of the response.
    pub status: StatusCode,
    /// What was wrong.
    pub reason: MalformedReason,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// A short redacted excerpt of the body.
    pub excerpt: String,
    /// A parsed `Retry-After`, when sent (a 503 page may carry one).
    pub retry_after: Option<RetryAfter>,
}

impl fmt::Display for MalformedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed response from the {} endpoint (HTTP {}): {}",
            self.endpoint,
            self.status.as_u16(),
            self.reason
        )?;
        if let Some(ct) = &self.content_type {
            write!(f, "; content-type {}", truncate(ct, 80))?;
        }
        if !self.excerpt.is_empty() {
            write!(f, "; body starts {:?}", self.excerpt)?;
        }
        Ok(())
    }
}
