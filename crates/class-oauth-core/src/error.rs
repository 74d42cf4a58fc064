//! Errors: OAuth error codes as an open set, and the crate's one error enum.
//!
//! The cases are kept apart because callers act on them differently:
//! - [`Error::ServerRefused`]: the server understood the request and said no, with an
//!   RFC 6749 / OIDC error code (`invalid_grant`, `access_denied`, ...).
//! - [`Error::ApiRefused`]: a Class API call answered with its `Errors` envelope or a 429.
//! - [`Error::MalformedResponse`]: the bytes were not what the protocol promises (an HTML
//!   502 page from a proxy, truncated JSON, a wrong type). The status and a short,
//!   redacted excerpt are kept.
//! - [`Error::PolicyViolation`]: the response parsed but must not be trusted (state or
//!   issuer mismatch, discovery policy, UserInfo `sub` mismatch).
//! - [`Error::InvalidInput`]: the caller asked for something the protocol cannot express.
//!
//! Transport failures (connect, timeout, reset) never reach the core; the transport
//! crates add them in their own error types.

use std::fmt;

use http::StatusCode;

use crate::api::ApiRefusal;
use crate::headers::{RetryAfter, WwwAuthenticate};
use crate::scope::ScopeError;

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

/// Which endpoint an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointKind {
    /// The authorization endpoint (errors arrive in the redirect).
    Authorization,
    /// The token endpoint.
    Token,
    /// The UserInfo endpoint.
    UserInfo,
    /// The revocation endpoint (RFC 7009).
    Revocation,
    /// The discovery document.
    Discovery,
    /// The JWKS (key set) document.
    Jwks,
    /// A Class resource API.
    Api,
}

impl EndpointKind {
    /// A short lower-case name (`"token"`, `"userinfo"`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorization => "authorization",
            Self::Token => "token",
            Self::UserInfo => "userinfo",
            Self::Revocation => "revocation",
            Self::Discovery => "discovery",
            Self::Jwks => "jwks",
            Self::Api => "api",
        }
    }
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// A response or callback that parsed but must not be trusted, or a configuration the
/// policy forbids.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// The callback carries no `state`.
    #[error("the callback has no state parameter; it was not started by this client")]
    MissingState,
    /// The callback's `state` differs from the pending authorization's.
    #[error(
        "the callback's state does not match the pending authorization (possible CSRF or a mixed-up session)"
    )]
    StateMismatch,
    /// RFC 9207: the callback's `iss` differs from the expected issuer.
    #[error(
        "the callback's iss `{found}` is not the expected issuer `{expected}` (possible mix-up attack)"
    )]
    IssuerMismatch {
        /// The issuer the pending authorization was made for.
        expected: String,
        /// The `iss` received.
        found: String,
    },
    /// RFC 9207: the provider promises `iss` but the callback has none.
    #[error(
        "the callback has no iss parameter although the provider advertises authorization_response_iss_parameter_supported"
    )]
    MissingIssuer,
    /// The callback is syntactically unusable.
    #[error("the callback is malformed: {0}")]
    MalformedCallback(String),
    /// The pending authorization is older than its allowed lifetime.
    #[error("the pending authorization has expired; start the sign-in again")]
    PendingAuthorizationExpired,
    /// The callback belongs to another client or redirect URI.
    #[error("the callback does not belong to this pending authorization: {0}")]
    PendingAuthorizationMismatch(String),
    /// The discovery document names another issuer.
    #[error(
        "the discovery document's issuer `{found}` is not the configured issuer `{expected}`{}",
        slash_hint(expected, found)
    )]
    DiscoveryIssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The document's `issuer`.
        found: String,
    },
    /// An endpoint uses `http` on a non-loopback host.
    #[error("{field} `{url}` is not https (only loopback hosts may use http)")]
    InsecureUrl {
        /// Metadata member or configuration field.
        field: String,
        /// The URL.
        url: String,
    },
    /// An endpoint is outside the issuer's authority and the allow-list.
    #[error("{field} `{url}` is outside the issuer's authority and the allow-list")]
    EndpointOffAuthority {
        /// Metadata member.
        field: String,
        /// The URL.
        url: String,
    },
    /// The discovery document has no `jwks_uri` and the policy requires one.
    #[error("the discovery document has no jwks_uri and the policy requires a key set")]
    MissingKeySet,
    /// A UserInfo response's `sub` differs from the ID token's.
    #[error(
        "the UserInfo sub `{found}` is not the ID token's sub `{expected}`; the response must not be used"
    )]
    SubjectMismatch {
        /// The ID token's `sub`.
        expected: String,
        /// The UserInfo `sub`.
        found: String,
    },
}

/// A request the caller asked for cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// A URL did not parse or has an unusable form.
    #[error("invalid URL for {field}: {detail}")]
    InvalidUrl {
        /// What the URL is for.
        field: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A scope rule was broken.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The endpoint the request needs is not configured.
    #[error("no {0} endpoint is configured (the provider publishes none; set one explicitly)")]
    MissingEndpoint(EndpointKind),
    /// An extra parameter would repeat one the library sets.
    #[error("parameter `{0}` is set by the library and may not be repeated")]
    ReservedParameter(String),
    /// `openid` was requested from a provider that publishes no key set, so no ID token
    /// could ever be verified; refused before a code is spent.
    #[error(
        "openid was requested but the provider publishes no key set (jwks_uri), so its ID token could not be verified; configure the JWKS location, or opt in to trusting ID tokens from the token endpoint over TLS (Client::danger_trust_id_tokens_from_token_endpoint_tls, OIDC Core 3.1.3.7 (6))"
    )]
    OpenIdWithoutKeySet,
    /// `prompt=none` was combined with other prompt values.
    #[error("prompt=none must stand alone")]
    PromptNoneNotAlone,
    /// A value is not usable in the protocol.
    #[error("invalid {field}: {detail}")]
    InvalidValue {
        /// What the value is for.
        field: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// The core's error type. See the module docs for how the cases differ.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The authorization server refused with an OAuth error.
    #[error("{0}")]
    ServerRefused(Box<ServerRefusal>),
    /// A Class API refused (Errors envelope, 401, 403, 404, 429, ...).
    #[error("{0}")]
    ApiRefused(Box<ApiRefusal>),
    /// The response does not follow the protocol.
    #[error("{0}")]
    MalformedResponse(Box<MalformedResponse>),
    /// The response or callback parsed but must not be trusted.
    #[error("policy violation: {0}")]
    PolicyViolation(#[from] PolicyViolation),
    /// The request could not be built from the caller's input.
    #[error("invalid input: {0}")]
    InvalidInput(#[from] InputError),
    /// An ID token failed validation.
    #[error("ID token rejected: {0}")]
    IdTokenRejected(#[from] crate::id_token::IdTokenError),
}

impl From<ScopeError> for Error {
    fn from(e: ScopeError) -> Self {
        Self::InvalidInput(InputError::Scope(e))
    }
}

/// A coarse classification of [`Error`], stable for scripts and exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::ServerRefused`]
    ServerRefused,
    /// [`Error::ApiRefused`]
    ApiRefused,
    /// [`Error::MalformedResponse`]
    MalformedResponse,
    /// [`Error::PolicyViolation`]
    PolicyViolation,
    /// [`Error::InvalidInput`]
    InvalidInput,
    /// [`Error::IdTokenRejected`]
    IdTokenRejected,
}

impl ErrorKind {
    /// Snake-case name used in fixtures and machine output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerRefused => "server_refused",
            Self::ApiRefused => "api_refused",
            Self::MalformedResponse => "malformed_response",
            Self::PolicyViolation => "policy_violation",
            Self::InvalidInput => "invalid_input",
            Self::IdTokenRejected => "id_token_rejected",
        }
    }
}

impl Error {
    /// The coarse kind.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::ServerRefused(_) => ErrorKind::ServerRefused,
            Self::ApiRefused(_) => ErrorKind::ApiRefused,
            Self::MalformedResponse(_) => ErrorKind::MalformedResponse,
            Self::PolicyViolation(_) => ErrorKind::PolicyViolation,
            Self::InvalidInput(_) => ErrorKind::InvalidInput,
            Self::IdTokenRejected(_) => ErrorKind::IdTokenRejected,
        }
    }

    /// The OAuth error, for server refusals.
    #[must_use]
    pub fn oauth_error(&self) -> Option<&OAuthError> {
        match self {
            Self::ServerRefused(r) => Some(&r.error),
            _ => None,
        }
    }

    /// The OAuth error code, for server refusals.
    #[must_use]
    pub fn code(&self) -> Option<&ErrorCode> {
        self.oauth_error().map(|e| &e.code)
    }

    /// The HTTP status of the response that caused the error, when there was one.
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::ServerRefused(r) => r.status,
            Self::ApiRefused(r) => Some(r.status),
            Self::MalformedResponse(m) => Some(m.status),
            Self::PolicyViolation(_) | Self::InvalidInput(_) | Self::IdTokenRejected(_) => None,
        }
    }

    /// The server's `Retry-After` (or, for Class APIs, the rate-limit reset) when sent.
    #[must_use]
    pub fn retry_after(&self) -> Option<&RetryAfter> {
        match self {
            Self::ServerRefused(r) => r.retry_after.as_ref(),
            Self::ApiRefused(r) => r.retry_after.as_ref(),
            Self::MalformedResponse(m) => m.retry_after.as_ref(),
            Self::PolicyViolation(_) | Self::InvalidInput(_) | Self::IdTokenRejected(_) => None,
        }
    }

    /// True when the grant is gone and the user must authorize again: `invalid_grant`
    /// from the token endpoint (expired, rotated or revoked refresh token; used code),
    /// or an interaction-required code from the authorization endpoint.
    #[must_use]
    pub fn requires_reauthorization(&self) -> bool {
        matches!(
            self.code(),
            Some(
                ErrorCode::InvalidGrant
                    | ErrorCode::LoginRequired
                    | ErrorCode::ConsentRequired
                    | ErrorCode::InteractionRequired
                    | ErrorCode::AccountSelectionRequired,
            )
        )
    }

    /// True when the same request may succeed later: 5xx, 429, `server_error`,
    /// `temporarily_unavailable`, or a non-protocol body on a 5xx/429 (a proxy page).
    ///
    /// Transient does not mean "retry blindly": a one-time refresh token may already
    /// have been spent by a request whose response was lost.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        let status_transient =
            |s: StatusCode| s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS;
        match self {
            Self::ServerRefused(r) => {
                matches!(
                    r.error.code,
                    ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable
                ) || r.status.is_some_and(status_transient)
            }
            Self::ApiRefused(r) => status_transient(r.status),
            Self::MalformedResponse(m) => status_transient(m.status),
            Self::PolicyViolation(_) | Self::InvalidInput(_) | Self::IdTokenRejected(_) => false,
        }
    }
}

pub(crate) fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Issuers are compared exactly (OIDC Discovery 4.3); when two differ only by a trailing
/// slash, say so, because that is the usual typo.
fn slash_hint(expected: &str, found: &str) -> &'static str {
    if expected.trim_end_matches('/') == found.trim_end_matches('/') {
        "; they differ only by a trailing slash: configure the issuer exactly as the provider publishes it"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip() {
        for code in KNOWN_ERROR_CODES {
            let parsed = ErrorCode::from(*code);
            assert!(
                !matches!(parsed, ErrorCode::Other(_)),
                "{code} should be named"
            );
            assert_eq!(parsed.as_str(), *code);
        }
        let unknown = ErrorCode::from("class_specific_thing");
        assert_eq!(unknown, ErrorCode::Other("class_specific_thing".into()));
        assert_eq!(unknown.as_str(), "class_specific_thing");
    }

    #[test]
    fn classifiers() {
        let refusal = |code: &str, status: u16| {
            Error::ServerRefused(Box::new(ServerRefusal {
                endpoint: EndpointKind::Token,
                status: Some(StatusCode::from_u16(status).unwrap()),
                error: OAuthError::new(code),
                www_authenticate: None,
                retry_after: None,
            }))
        };
        assert!(refusal("invalid_grant", 400).requires_reauthorization());
        assert!(!refusal("invalid_grant", 400).is_transient());
        assert!(!refusal("invalid_client", 401).requires_reauthorization());
        assert!(refusal("temporarily_unavailable", 400).is_transient());
        assert!(refusal("invalid_request", 503).is_transient());
        assert_eq!(
            refusal("invalid_client", 401).kind().as_str(),
            "server_refused"
        );
    }
}
