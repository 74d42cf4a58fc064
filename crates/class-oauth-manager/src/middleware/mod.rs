//! Token middleware: Class API calls through the HTTP stack you already use, with the
//! manager's tokens.
//!
//! [`ClassAuth`] holds a [`TokenManager`] and, optionally, a fixed tenant. Every request
//! through it:
//! - gets `Authorization: Bearer <token>` for its tenant (the request's [`TenantKey`]
//!   extension, else the fixed one), the token refreshed first when due;
//! - gets Class's `Accept` type ([`ACCEPT_V1_JSON`]) unless it names one;
//! - on a **401**: the token is renewed once ([`TokenManager::force_refresh`] against the
//!   version that was sent, so concurrent 401s cause one refresh) and the request sent
//!   again, once; a second 401 is returned as it is;
//! - on a **429** (or a 503 with `Retry-After`): the wait Class asks for
//!   ([`class_oauth_core::api::retry_wait`]) is waited out once, when it is within
//!   [`ClassAuth::max_wait`] (default 10 s); a longer wait returns the response at once,
//!   for the caller to schedule.
//!
//! A request whose body cannot be replayed (a stream) is sent once, with its token.
//! Failures to get a token are [`ManagerError`]s (a refused grant says
//! [`ManagerError::requires_reauthorization`]), inside the stack's error type.
//!
//! Two stacks share this one policy: `reqwest-middleware` ([`reqwest`], feature
//! `reqwest-middleware`) and `tower` ([`tower`], feature `tower`).

use std::time::{Duration, SystemTime};

use class_oauth_client::AsyncHttpClient;
use class_oauth_core::api::{ACCEPT_V1_JSON, retry_wait};
use class_oauth_store::TokenStore;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::{ManagerError, TenantKey, TokenManager};

#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub mod reqwest;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

/// The default bound on a rate-limit wait inside a request.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);

/// Bearer tokens and Class's retry rules for an HTTP middleware stack (see the module
/// docs). Cheap to clone.
pub struct ClassAuth<H, S: ?Sized> {
    manager: TokenManager<H, S>,
    tenant: Option<TenantKey>,
    max_wait: Duration,
}

impl<H, S: ?Sized> Clone for ClassAuth<H, S> {
    fn clone(&self) -> Self {
        Self {
            manager: self.manager.clone(),
            tenant: self.tenant.clone(),
            max_wait: self.max_wait,
        }
    }
}

impl<H, S: ?Sized> std::fmt::Debug for ClassAuth<H, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassAuth")
            .field("tenant", &self.tenant)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

/// The token a request was sent with: its header and the grant version it came from.
struct Bearer {
    header: HeaderValue,
    version: u64,
}

/// What to do with a response.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Hand it to the caller.
    Done,
    /// Renew the token and send again.
    Renew,
    /// Wait this long and send again.
    Wait(Duration),
}

/// The retries a request has used (each at most once).
#[derive(Debug, Default)]
struct Tries {
    renewed: bool,
    waited: bool,
}

impl<H, S: ?Sized> ClassAuth<H, S> {
    /// Middleware over `manager`; each request names its tenant with a [`TenantKey`]
    /// extension (a request without one fails with [`ManagerError::Config`]).
    #[must_use]
    pub fn new(manager: TokenManager<H, S>) -> Self {
        Self {
            manager,
            tenant: None,
            max_wait: DEFAULT_MAX_WAIT,
        }
    }

    /// Uses `tenant` for requests that name none.
    #[must_use]
    pub fn tenant(mut self, tenant: TenantKey) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// The longest rate-limit wait taken inside a request (default
    /// [`DEFAULT_MAX_WAIT`]); `Duration::ZERO` never waits.
    #[must_use]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The manager.
    pub fn manager(&self) -> &TokenManager<H, S> {
        &self.manager
    }

    fn tenant_of<'a>(
        &'a self,
        extensions: &'a http::Extensions,
    ) -> Result<&'a TenantKey, ManagerError> {
        extensions
            .get::<TenantKey>()
            .or(self.tenant.as_ref())
            .ok_or_else(|| {
                ManagerError::Config(
                    "the request names no tenant: add a TenantKey extension, or build the \
                     middleware with ClassAuth::tenant"
                        .into(),
                )
            })
    }
}

/// Puts the token and the `Accept` type on a request's headers.
fn authorize(headers: &mut HeaderMap, bearer: &Bearer) {
    headers.insert(header::AUTHORIZATION, bearer.header.clone());
    headers
        .entry(header::ACCEPT)
        .or_insert(HeaderValue::from_static(ACCEPT_V1_JSON));
}

/// The policy: one renewal on a 401, one bounded wait on a 429 (or a 503 that
/// names a wait).
fn next(status: StatusCode, headers: &HeaderMap, max_wait: Duration, tries: &mut Tries) -> Next {
    if status == StatusCode::UNAUTHORIZED && !tries.renewed {
        tries.renewed = true;
        return Next::Renew;
    }
    let waitable =
        status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
    if waitable && !tries.waited {
        #[allow(
            clippy::disallowed_methods,
            reason = "an HTTP-date Retry-After is counted from the wall clock"
        )]
        let now = SystemTime::now();
        if let Some(wait) = retry_wait(status, headers, now).filter(|w| *w <= max_wait) {
            tries.waited = true;
            return Next::Wait(wait);
        }
    }
    Next::Done
}

impl<H: AsyncHttpClient, S: TokenStore + ?Sized> ClassAuth<H, S> {
    async fn bearer(&self, tenant: &TenantKey) -> Result<Bearer, ManagerError> {
        let grant = self.manager.grant(tenant).await?;
        Self::bearer_of(&grant)
    }

    async fn renew(&self, tenant: &TenantKey, sent: &Bearer) -> Result<Bearer, ManagerError> {
        let grant = self.manager.force_refresh(tenant, sent.version).await?;
        Self::bearer_of(&grant)
    }

    fn bearer_of(grant: &crate::SharedGrant) -> Result<Bearer, ManagerError> {
        let mut header =
            HeaderValue::try_from(format!("Bearer {}", grant.tokens.access_token.secret()))
                .map_err(|_| {
                    ManagerError::Config("the access token is not a valid header value".into())
                })?;
        header.set_sensitive(true);
        Ok(Bearer {
            header,
            version: grant.version,
        })
    }

    async fn sleep(&self, wait: Duration) {
        self.manager.client().http().sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn a_401_renews_once_and_a_429_waits_once_within_the_bound() {
        const BOUND: Duration = Duration::from_secs(5);
        let mut tries = Tries::default();
        assert_eq!(
            next(StatusCode::UNAUTHORIZED, &head(&[]), BOUND, &mut tries),
            Next::Renew
        );
        assert_eq!(
            next(StatusCode::UNAUTHORIZED, &head(&[]), BOUND, &mut tries),
            Next::Done
        );

        let mut tries = Tries::default();
        let limited = head(&[("x-ratelimit-resetafter", "2")]);
        assert_eq!(
            next(StatusCode::TOO_MANY_REQUESTS, &limited, BOUND, &mut tries),
            Next::Wait(Duration::from_secs(2))
        );
        assert_eq!(
            next(StatusCode::TOO_MANY_REQUESTS, &limited, BOUND, &mut tries),
            Next::Done
        );

        let mut tries = Tries::default();
        let long = head(&[("retry-after", "30")]);
        assert_eq!(
            next(StatusCode::TOO_MANY_REQUESTS, &long, BOUND, &mut tries),
            Next::Done
        );
        let bare_503 = head(&[]);
        assert_eq!(
            next(
                StatusCode::SERVICE_UNAVAILABLE,
                &bare_503,
                BOUND,
                &mut tries
            ),
            Next::Done
        );
        let named_503 = head(&[("retry-after", "1")]);
        assert_eq!(
            next(
                StatusCode::SERVICE_UNAVAILABLE,
                &named_503,
                BOUND,
                &mut tries
            ),
            Next::Wait(Duration::from_secs(1))
        );
        for ok in [StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::FORBIDDEN] {
            assert_eq!(
                next(ok, &head(&[]), BOUND, &mut Tries::default()),
                Next::Done
            );
        }
    }

    #[test]
    fn accept_is_added_only_when_missing_and_the_token_is_sensitive() {
        let bearer = Bearer {
            header: {
                let mut h = HeaderValue::from_static("Bearer t");
                h.set_sensitive(true);
                h
            },
            version: 1,
        };
        let mut headers = HeaderMap::new();
        authorize(&mut headers, &bearer);
        assert_eq!(headers[header::ACCEPT], ACCEPT_V1_JSON);
        assert!(headers[header::AUTHORIZATION].is_sensitive());
        let mut own = head(&[("accept", "application/vnd.superip.action.v2+json")]);
        authorize(&mut own, &bearer);
        assert_eq!(
            own[header::ACCEPT],
            "application/vnd.superip.action.v2+json"
        );
    }
}
