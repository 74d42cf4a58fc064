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

use http::StatusCode;

use crate::headers::RetryAfter;
use crate::jose::error::IdTokenError;
use crate::scope::ScopeError;
pub use crate::types::{EndpointKind, InputError};
pub use crate::wire::envelope::ApiRefusal;
pub use crate::wire::refusal::{
    ErrorCode, KNOWN_ERROR_CODES, MalformedReason, MalformedResponse, OAuthError, ServerRefusal,
};

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
    IdTokenRejected(#[from] IdTokenError),
}

/// [`Error::MalformedResponse`] for `resp` from `endpoint`, with a redacted excerpt.
pub(crate) fn malformed(
    endpoint: EndpointKind,
    resp: &http::Response<Vec<u8>>,
    reason: MalformedReason,
) -> Error {
    crate::body::malformed(endpoint, resp, reason).into()
}

impl From<Box<MalformedResponse>> for Error {
    fn from(e: Box<MalformedResponse>) -> Self {
        Self::MalformedResponse(e)
    }
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
