//! The authorization response: parse a query-string or `form_post` callback and check
//! it against the pending authorization.
//!
//! Checks, in order: the record has not expired; `state` is present and equal
//! (constant-time); RFC 9207 `iss` equals the issuer when present (and is present when
//! the provider promised it); then an `error=` redirect becomes
//! [`Error::ServerRefused`]; otherwise the `code` is returned.

use std::time::SystemTime;

use url::Url;

use crate::authorize::PendingAuthorization;
use crate::error::{EndpointKind, Error, OAuthError, PolicyViolation, ServerRefusal};
use crate::secret::{AuthorizationCode, State, constant_time_eq};

/// Callbacks longer than this are refused unread.
pub const MAX_CALLBACK_BYTES: usize = 16 * 1024;

/// The parameters of an authorization response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallbackParams {
    /// `code`.
    pub code: Option<AuthorizationCode>,
    /// `state`.
    pub state: Option<State>,
    /// `iss` (RFC 9207).
    pub iss: Option<String>,
    /// `error`, `error_description`, `error_uri`.
    pub error: Option<OAuthError>,
    /// The callback URL without its query, when parsed from a URL.
    pub base_url: Option<String>,
}

fn malformed(detail: impl Into<String>) -> Error {
    PolicyViolation::MalformedCallback(detail.into()).into()
}

impl CallbackParams {
    /// Parses a full callback URL (query response mode).
    pub fn from_url(callback: &str) -> Result<Self, Error> {
        if callback.len() > MAX_CALLBACK_BYTES {
            return Err(malformed("the callback URL is too long"));
        }
        let url = Url::parse(callback.trim()).map_err(|e| malformed(format!("not a URL: {e}")))?;
        let mut params = Self::from_query(url.query().unwrap_or(""))?;
        let mut base = url;
        base.set_query(None);
        base.set_fragment(None);
        params.base_url = Some(base.to_string());
        Ok(params)
    }

    /// Parses a query string (without `?`).
    pub fn from_query(query: &str) -> Result<Self, Error> {
        Self::from_pairs(query.as_bytes())
    }

    /// Parses a `form_post` body (`application/x-www-form-urlencoded`).
    pub fn from_form_post(body: &[u8]) -> Result<Self, Error> {
        Self::from_pairs(body)
    }

    fn from_pairs(input: &[u8]) -> Result<Self, Error> {
        if input.len() > MAX_CALLBACK_BYTES {
            return Err(malformed("the callback is too long"));
        }
        let mut code = None;
        let mut state = None;
        let mut iss = None;
        let mut error: Option<String> = None;
        let mut description = None;
        let mut uri = None;
        for (k, v) in url::form_urlencoded::parse(input) {
            let slot: &mut Option<String> = match k.as_ref() {
                "code" => &mut code,
                "state" => &mut state,
                "iss" => &mut iss,
                "error" => &mut error,
                "error_description" => &mut description,
                "error_uri" => &mut uri,
                _ => continue,
            };
            if slot.is_some() {
                return Err(malformed(format!("parameter `{k}` appears more than once")));
            }
            *slot = Some(v.into_owned());
        }
        Ok(Self {
            code: code.map(AuthorizationCode::new),
            state: state.map(State::new),
            iss,
            error: error.map(|code| OAuthError {
                code: code.into(),
                description,
                uri,
            }),
            base_url: None,
        })
    }
}

/// A callback that passed every check, with the pending record it answers: the only
/// way to redeem an authorization code ([`crate::token::TokenRequest::authorization_code`],
/// [`crate::flow::TokenFlow::authorization_code`]).
///
/// The misuse it prevents does not compile. A code cannot be made from a string:
/// ```compile_fail
/// let code = class_oauth_core::AuthorizationCode::new("from-an-attacker");
/// ```
/// A pending record answers one callback (verifying uses it up), and its fields cannot
/// be edited:
/// ```compile_fail
/// # use class_oauth_core::authorize::PendingAuthorization;
/// fn twice(pending: PendingAuthorization, a: &str, b: &str, now: std::time::SystemTime) {
///     let _ = pending.verify_callback_url(a, now);
///     let _ = pending.verify_callback_url(b, now);
/// }
/// ```
/// ```compile_fail
/// # use class_oauth_core::authorize::PendingAuthorization;
/// fn relax(pending: &mut PendingAuthorization) {
///     pending.iss_required = false;
/// }
/// ```
/// ID-token expectations have no default that leaves the nonce unchecked:
/// ```compile_fail
/// let e = class_oauth_core::id_token::Expectations::default();
/// ```
#[derive(Debug)]
pub struct VerifiedCallback {
    code: AuthorizationCode,
    pending: PendingAuthorization,
}

impl VerifiedCallback {
    /// Pairs a code with its pending record without the callback checks (`state`,
    /// RFC 9207 `iss`, expiry). Only for callers that made those checks themselves;
    /// otherwise use [`PendingAuthorization::verify_callback`].
    #[must_use]
    pub fn danger_from_parts(pending: PendingAuthorization, code: AuthorizationCode) -> Self {
        Self { code, pending }
    }

    /// The authorization code.
    #[must_use]
    pub fn code(&self) -> &AuthorizationCode {
        &self.code
    }

    /// The pending record the callback answered.
    #[must_use]
    pub fn pending(&self) -> &PendingAuthorization {
        &self.pending
    }

    pub(crate) fn into_parts(self) -> (PendingAuthorization, AuthorizationCode) {
        (self.pending, self.code)
    }
}

impl PendingAuthorization {
    /// Checks a callback URL against this record (also that it arrived at the redirect
    /// URI's path). The record is used up either way: a callback is answered once.
    pub fn verify_callback_url(
        self,
        callback: &str,
        now: SystemTime,
    ) -> Result<VerifiedCallback, Error> {
        let params = CallbackParams::from_url(callback)?;
        if let Some(base) = &params.base_url {
            let mut expected = self.redirect_uri.url().clone();
            expected.set_query(None);
            if *base != expected.as_str() {
                return Err(PolicyViolation::PendingAuthorizationMismatch(format!(
                    "it arrived at `{}`, not at the redirect URI",
                    crate::text::truncate(base, 200)
                ))
                .into());
            }
        }
        self.verify_callback(&params, now)
    }

    /// Checks callback parameters against this record and returns the code with the
    /// record. The record is used up either way: a callback is answered once.
    pub fn verify_callback(
        self,
        params: &CallbackParams,
        now: SystemTime,
    ) -> Result<VerifiedCallback, Error> {
        let code = self.check_callback(params, now)?;
        Ok(VerifiedCallback {
            code,
            pending: self,
        })
    }

    fn check_callback(
        &self,
        params: &CallbackParams,
        now: SystemTime,
    ) -> Result<AuthorizationCode, Error> {
        if now > self.expires_at {
            return Err(PolicyViolation::PendingAuthorizationExpired.into());
        }
        let Some(state) = &params.state else {
            return Err(PolicyViolation::MissingState.into());
        };
        if !constant_time_eq(state.secret().as_bytes(), self.state.secret().as_bytes()) {
            return Err(PolicyViolation::StateMismatch.into());
        }
        match &params.iss {
            Some(iss) if iss != self.issuer.as_str() => {
                return Err(PolicyViolation::IssuerMismatch {
                    expected: self.issuer.as_str().to_owned(),
                    found: crate::text::truncate(iss, 200).to_owned(),
                }
                .into());
            }
            None if self.iss_required => return Err(PolicyViolation::MissingIssuer.into()),
            _ => {}
        }
        if let Some(error) = &params.error {
            return Err(Error::ServerRefused(Box::new(ServerRefusal {
                endpoint: EndpointKind::Authorization,
                status: None,
                error: error.clone(),
                www_authenticate: None,
                retry_after: None,
            })));
        }
        match &params.code {
            Some(code) if !code.secret().is_empty() => Ok(code.clone()),
            _ => Err(malformed("no code and no error in the callback")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::authorize::AuthorizationRequest;
    use crate::client::Client;
    use crate::environment::Environment;
    use crate::error::ErrorCode;
    use crate::scope::Scopes;
    use crate::types::{ClientId, RedirectUrl};

    fn pending() -> PendingAuthorization {
        let client = Client::new(ClientId::new("cid"), Environment::Production.preset());
        let mut e = |b: &mut [u8]| b.fill(3);
        AuthorizationRequest::new(
            &client,
            RedirectUrl::new("https://p.example/cb?t=1").unwrap(),
            Scopes::default(),
        )
        .build(&mut e, SystemTime::UNIX_EPOCH)
        .unwrap()
        .1
    }

    #[test]
    fn good_callback_yields_code() {
        let p = pending();
        let url = format!(
            "https://p.example/cb?t=1&code=abc&state={}",
            p.state().secret()
        );
        let verified = p.verify_callback_url(&url, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(verified.code().secret(), "abc");
        let p = pending();
        let form = format!(
            "code=abc&state={}&iss=https%3A%2F%2Fapp.class.com.au",
            p.state().secret()
        );
        let params = CallbackParams::from_form_post(form.as_bytes()).unwrap();
        assert!(p.verify_callback(&params, SystemTime::UNIX_EPOCH).is_ok());
    }

    #[test]
    fn every_rejection() {
        let now = SystemTime::UNIX_EPOCH;
        let check = |q: String| {
            pending()
                .verify_callback(&CallbackParams::from_query(&q).unwrap(), now)
                .unwrap_err()
        };
        assert_eq!(
            check("code=a".into()),
            Error::PolicyViolation(PolicyViolation::MissingState)
        );
        assert_eq!(
            check("code=a&state=nope".into()),
            Error::PolicyViolation(PolicyViolation::StateMismatch)
        );
        let p = pending();
        let s = p.state().secret().to_owned();
        assert!(matches!(
            check(format!("code=a&state={s}&iss=https%3A%2F%2Fevil.example")),
            Error::PolicyViolation(PolicyViolation::IssuerMismatch { .. })
        ));
        let denied = check(format!(
            "error=access_denied&error_description=User+said+no&state={s}"
        ));
        assert_eq!(denied.code(), Some(&ErrorCode::AccessDenied));
        let login = check(format!("error=login_required&state={s}"));
        assert!(login.requires_reauthorization());
        assert!(matches!(
            check(format!("state={s}")),
            Error::PolicyViolation(PolicyViolation::MalformedCallback(_))
        ));
        assert!(CallbackParams::from_query("code=a&code=b").is_err());
        let late = p.expires_at() + Duration::from_secs(1);
        let ok = CallbackParams::from_query(&format!("code=a&state={s}")).unwrap();
        assert_eq!(
            pending().verify_callback(&ok, late).unwrap_err(),
            Error::PolicyViolation(PolicyViolation::PendingAuthorizationExpired)
        );
        let wrong_path = format!("https://p.example/other?code=a&state={s}");
        assert!(matches!(
            pending().verify_callback_url(&wrong_path, now).unwrap_err(),
            Error::PolicyViolation(PolicyViolation::PendingAuthorizationMismatch(_))
        ));
        // A provider that promised `iss` (RFC 9207) must send it.
        let client = Client::new(ClientId::new("cid"), {
            let mut e = Environment::Production.preset();
            e.authorization_response_iss_parameter_supported = true;
            e
        });
        let mut e = |b: &mut [u8]| b.fill(3);
        let strict = AuthorizationRequest::new(
            &client,
            RedirectUrl::new("https://p.example/cb?t=1").unwrap(),
            Scopes::default(),
        )
        .build(&mut e, SystemTime::UNIX_EPOCH)
        .unwrap()
        .1;
        assert!(strict.iss_required());
        assert_eq!(
            strict.verify_callback(&ok, now).unwrap_err(),
            Error::PolicyViolation(PolicyViolation::MissingIssuer)
        );
    }
}
