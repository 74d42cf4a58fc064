//! How the Class API says no on the wire: the `{"Errors":[{"Code","Message"}]}` envelope,
//! the rate-limit headers, and the wait a refusal asks for. Public at [`crate::api`].
//!
//! Class allows 500 calls per minute per client id. A 429 says how long to wait in
//! `X-RateLimit-ResetAfter` (seconds); `X-RateLimit-1Min-Remaining` counts down the
//! calls left. [`ApiRefusal::wait_from`] turns those (and `Retry-After`, a delay or an
//! HTTP date) into a capped duration.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::{Response, StatusCode};
use serde_json::Value;

use crate::headers::{RetryAfter, WwwAuthenticate};
use crate::text::truncate;

/// Header with the calls left in the current one-minute window.
pub const REMAINING_HEADER: &str = "x-ratelimit-1min-remaining";
/// Header with the seconds until the window resets.
pub const RESET_AFTER_HEADER: &str = "x-ratelimit-resetafter";

/// Wait this long on a 429 that carries no hint (Class's window is one minute).
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// The longest wait any `Retry-After` or reset header can ask for; longer hints are
/// capped to it (a hostile or broken server cannot park a caller for days).
pub const MAX_RETRY_WAIT: Duration = crate::headers::MAX_RETRY_AFTER;

/// The rate-limit headers of a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// `X-RateLimit-1Min-Remaining`.
    pub remaining: Option<u32>,
    /// `X-RateLimit-ResetAfter`.
    pub reset_after: Option<Duration>,
}

impl RateLimit {
    /// Reads the headers (absent or unparseable values are `None`).
    #[must_use]
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<f64>().ok())
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped first
        Self {
            remaining: num(REMAINING_HEADER)
                .filter(|n| *n >= 0.0)
                .map(|n| n.min(f64::from(u32::MAX)) as u32),
            reset_after: num(RESET_AFTER_HEADER)
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| Duration::from_secs_f64(n.min(86_400.0))),
        }
    }
}

/// One entry of Class's `Errors` array.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiErrorItem {
    /// `Code`, e.g. `API_NOT_AUTHORISED`.
    pub code: String,
    /// `Message`.
    pub message: String,
}

/// A Class API call that did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiRefusal {
    /// HTTP status.
    pub status: StatusCode,
    /// The envelope's errors (may be empty, e.g. on a bare 429).
    pub errors: Vec<ApiErrorItem>,
    /// The rate-limit headers.
    pub rate_limit: RateLimit,
    /// How long to wait: `Retry-After`, or on a 429 the reset time (at least), or a
    /// minute when the server gave no hint.
    pub retry_after: Option<RetryAfter>,
    /// A parsed `WWW-Authenticate`, when sent.
    pub www_authenticate: Option<WwwAuthenticate>,
}

impl ApiRefusal {
    /// How long to wait at `now` before retrying: the later of `Retry-After` (a delay,
    /// or an HTTP date counted from `now`) and, on a 429, Class's
    /// `X-RateLimit-ResetAfter`; a minute on a 429 that gives no hint; `None` for other
    /// refusals without `Retry-After`. Never longer than [`MAX_RETRY_WAIT`].
    #[must_use]
    pub fn wait_from(&self, now: SystemTime) -> Option<Duration> {
        wait(self.status, self.retry_after, &self.rate_limit, now)
    }

    /// A 401: the token expired or its scope does not cover the endpoint. Renew the
    /// token once and retry; never loop.
    #[must_use]
    pub fn is_unauthorized(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
    }

    /// A 404, which Class also returns when the token's target is another business.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
    }
}

impl fmt::Display for ApiRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the Class API refused the call (HTTP {})",
            self.status.as_u16()
        )?;
        for e in self.errors.iter().take(3) {
            write!(
                f,
                "; {}: {}",
                truncate(&e.code, 60),
                truncate(&e.message, 200)
            )?;
        }
        if let Some(r) = &self.retry_after {
            r.describe(f)?;
        } else if self.status == StatusCode::NOT_FOUND {
            f.write_str(
                "; check that the business in the path is the one the token was granted for",
            )?;
        }
        Ok(())
    }
}

/// How long to wait at `now` before retrying a response with this status and these
/// headers, by the rule of [`ApiRefusal::wait_from`]; for middleware that sees only a
/// response's head. `None`: not a response to wait out.
#[must_use]
pub fn retry_wait(
    status: StatusCode,
    headers: &http::HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    wait(
        status,
        RetryAfter::from_headers(headers),
        &RateLimit::from_headers(headers),
        now,
    )
}

fn wait(
    status: StatusCode,
    retry_after: Option<RetryAfter>,
    rate_limit: &RateLimit,
    now: SystemTime,
) -> Option<Duration> {
    let limited = status == StatusCode::TOO_MANY_REQUESTS;
    let header = retry_after.map(|r| r.delay_from(now));
    let reset = rate_limit.reset_after.filter(|_| limited);
    match header.into_iter().chain(reset).max() {
        Some(w) => Some(w.min(MAX_RETRY_WAIT)),
        None if limited => Some(DEFAULT_RATE_LIMIT_WAIT),
        None => None,
    }
}

pub(crate) fn errors_of(map: &serde_json::Map<String, Value>) -> Option<Vec<ApiErrorItem>> {
    let field = |o: &serde_json::Map<String, Value>, upper: &str, lower: &str| {
        o.get(upper)
            .or_else(|| o.get(lower))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if let Some(Value::Array(items)) = map.get("Errors").or_else(|| map.get("errors")) {
        return Some(
            items
                .iter()
                .filter_map(Value::as_object)
                .map(|o| ApiErrorItem {
                    code: field(o, "Code", "code"),
                    message: field(o, "Message", "message"),
                })
                .collect(),
        );
    }
    // The lower-case `ErrorResponse {code, message}` variant of one spec.
    if map.contains_key("code") && map.contains_key("message") {
        return Some(vec![ApiErrorItem {
            code: field(map, "Code", "code"),
            message: field(map, "Message", "message"),
        }]);
    }
    None
}

/// The refusal a response carries: its status, the envelope's errors, the rate-limit
/// headers and the wait they ask for.
pub(crate) fn refusal(resp: &Response<Vec<u8>>, errors: Vec<ApiErrorItem>) -> ApiRefusal {
    let rate_limit = RateLimit::from_headers(resp.headers());
    let mut retry_after = RetryAfter::from_headers(resp.headers());
    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        // A delay and the reset time combine now; an HTTP date is kept as a date and
        // combined against `now` when the caller asks (`ApiRefusal::wait_from`).
        retry_after = match retry_after {
            Some(RetryAfter::At(at)) => Some(RetryAfter::At(at)),
            Some(RetryAfter::Delay(d)) => Some(RetryAfter::Delay(
                rate_limit.reset_after.map_or(d, |r| r.max(d)),
            )),
            None => Some(RetryAfter::Delay(
                rate_limit.reset_after.unwrap_or(DEFAULT_RATE_LIMIT_WAIT),
            )),
        };
    }
    ApiRefusal {
        status: resp.status(),
        errors,
        rate_limit,
        retry_after,
        www_authenticate: WwwAuthenticate::from_headers(resp.headers()),
    }
}
