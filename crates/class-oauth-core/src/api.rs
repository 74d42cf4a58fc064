//! Class resource-API helpers: the Bearer header, Class's vendor `Accept` type, the
//! `{"Errors":[{"Code","Message"}],"Data":...}` envelope, and rate limiting.
//!
//! Class allows 500 calls per minute per client id. A 429 says how long to wait in
//! `X-RateLimit-ResetAfter` (seconds); `X-RateLimit-1Min-Remaining` counts down the
//! calls left. [`ApiRefusal::wait_from`] turns those (and `Retry-After`, a delay or an HTTP date) into a capped duration.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode};
use serde_json::Value;
use url::Url;

use crate::body;
use crate::error::{EndpointKind, Error, InputError, MalformedReason};
use crate::headers::{RetryAfter, WwwAuthenticate};
use crate::secret::AccessToken;

/// Class's media type for JSON at action version 1. Without an `Accept`, Class answers
/// in XML at the oldest action version, so every call sends one.
pub const ACCEPT_V1_JSON: &str = "application/vnd.superip.action.v1+json";

/// Header with the calls left in the current one-minute window.
pub const REMAINING_HEADER: &str = "x-ratelimit-1min-remaining";
/// Header with the seconds until the window resets.
pub const RESET_AFTER_HEADER: &str = "x-ratelimit-resetafter";

/// Wait this long on a 429 that carries no hint (Class's window is one minute).
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// The longest wait any `Retry-After` or reset header can ask for; longer hints are
/// capped to it (a hostile or broken server cannot park a caller for days).
pub const MAX_RETRY_WAIT: Duration = crate::headers::MAX_RETRY_AFTER;

/// A Class API call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct ApiRequest {
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    action_version: u32,
}

impl ApiRequest {
    /// A request to `path` below the API base, e.g. `b/OAUTH_TEST/fund/list` under
    /// `https://api.class.com.au/api/1.0`.
    pub fn new(method: Method, api_base: &Url, path: &str) -> Result<Self, Error> {
        let base = api_base.as_str().trim_end_matches('/');
        let url = Url::parse(&format!("{base}/{}", path.trim_start_matches('/'))).map_err(|e| {
            InputError::InvalidUrl {
                field: "api path",
                detail: e.to_string(),
            }
        })?;
        crate::types::check_secure("api url", &url)?;
        Ok(Self {
            method,
            url,
            body: None,
            action_version: 1,
        })
    }

    /// A GET request.
    pub fn get(api_base: &Url, path: &str) -> Result<Self, Error> {
        Self::new(Method::GET, api_base, path)
    }

    /// Sets a JSON body.
    pub fn json_body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    /// Sets the action version of the `Accept` type (default 1).
    pub fn action_version(mut self, version: u32) -> Self {
        self.action_version = version;
        self
    }

    /// The URL.
    #[must_use]
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The HTTP request with `Authorization: Bearer` and the vendor `Accept`.
    pub fn to_http(&self, access_token: &AccessToken) -> Result<Request<Vec<u8>>, Error> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(self.url.as_str())
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", access_token.secret()),
            )
            .header(
                http::header::ACCEPT,
                format!(
                    "application/vnd.superip.action.v{}+json",
                    self.action_version
                ),
            );
        if self.body.is_some() {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
        }
        b.body(self.body.clone().unwrap_or_default()).map_err(|e| {
            InputError::InvalidValue {
                field: "api request",
                detail: e.to_string(),
            }
            .into()
        })
    }
}

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
                crate::error::truncate(&e.code, 60),
                crate::error::truncate(&e.message, 200)
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

/// A successful API response.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ApiResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// The envelope's `Data` (or the whole body when it is not an envelope).
    pub data: Value,
    /// The rate-limit headers.
    pub rate_limit: RateLimit,
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

pub(crate) fn refusal(resp: &Response<Vec<u8>>, errors: Vec<ApiErrorItem>) -> Error {
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
    Error::ApiRefused(Box::new(ApiRefusal {
        status: resp.status(),
        errors,
        rate_limit,
        retry_after,
        www_authenticate: WwwAuthenticate::from_headers(resp.headers()),
    }))
}

/// Parses a Class API response: the envelope's `Data` on success; [`Error::ApiRefused`]
/// for error statuses (with the envelope's errors when there is one) and for a success
/// whose envelope carries errors; [`Error::MalformedResponse`] for a body that is
/// neither.
pub fn parse_response(resp: &Response<Vec<u8>>, max_body: usize) -> Result<ApiResponse, Error> {
    body::reject_redirect(EndpointKind::Api, resp)?;
    let status = resp.status();
    if !status.is_success() {
        if resp.body().iter().all(u8::is_ascii_whitespace) {
            return Err(refusal(resp, Vec::new()));
        }
        return match body::object(EndpointKind::Api, resp, max_body) {
            Ok(map) => Err(refusal(resp, errors_of(&map).unwrap_or_default())),
            // A 429 or 401 with an unexpected body is still a refusal with its headers.
            Err(_)
                if status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::UNAUTHORIZED =>
            {
                Err(refusal(resp, Vec::new()))
            }
            Err(e) => Err(e),
        };
    }
    let rate_limit = RateLimit::from_headers(resp.headers());
    if resp.body().iter().all(u8::is_ascii_whitespace) {
        return Ok(ApiResponse {
            status,
            data: Value::Null,
            rate_limit,
        });
    }
    if resp.body().len() > max_body {
        return Err(body::malformed(
            EndpointKind::Api,
            resp,
            MalformedReason::BodyTooLarge { limit: max_body },
        ));
    }
    let value: Value = match body::format_of(resp) {
        body::BodyFormat::Json => serde_json::from_slice(resp.body()).map_err(|e| {
            body::malformed(
                EndpointKind::Api,
                resp,
                MalformedReason::InvalidJson {
                    detail: body::json_error_detail(&e),
                },
            )
        })?,
        _ => {
            return Err(body::malformed(
                EndpointKind::Api,
                resp,
                MalformedReason::UnexpectedContentType,
            ));
        }
    };
    if let Value::Object(map) = &value {
        if let Some(errors) = errors_of(map) {
            if !errors.is_empty() {
                return Err(refusal(resp, errors));
            }
            if map.contains_key("Data") || map.contains_key("Errors") {
                return Ok(ApiResponse {
                    status,
                    data: map.get("Data").cloned().unwrap_or(Value::Null),
                    rate_limit,
                });
            }
        }
    }
    Ok(ApiResponse {
        status,
        data: value,
        rate_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Vec<u8>> {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(body.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn request_headers() {
        let base = Url::parse("https://api.class.com.au/api/1.0").unwrap();
        let r = ApiRequest::get(&base, "/b/OAUTH_TEST/fund/list")
            .unwrap()
            .to_http(&AccessToken::new("at"))
            .unwrap();
        assert_eq!(
            r.uri(),
            "https://api.class.com.au/api/1.0/b/OAUTH_TEST/fund/list"
        );
        assert_eq!(r.headers()["accept"], ACCEPT_V1_JSON);
        assert_eq!(r.headers()["authorization"], "Bearer at");
    }

    #[test]
    fn envelope_and_rate_limit() {
        let ok = parse_response(
            &resp(
                200,
                &[
                    ("content-type", "application/json"),
                    (REMAINING_HEADER, "499"),
                ],
                r#"{"Errors":[],"Data":{"Funds":[]}}"#,
            ),
            1 << 20,
        )
        .unwrap();
        assert_eq!(ok.data["Funds"], serde_json::json!([]));
        assert_eq!(ok.rate_limit.remaining, Some(499));
        let limited = parse_response(
            &resp(
                429,
                &[(RESET_AFTER_HEADER, "42"), (REMAINING_HEADER, "0")],
                "",
            ),
            1 << 20,
        )
        .unwrap_err();
        assert_eq!(
            limited.retry_after(),
            Some(&RetryAfter::Delay(Duration::from_secs(42)))
        );
        assert!(limited.is_transient());
        let Error::ApiRefused(r) = limited else {
            panic!()
        };
        assert_eq!(
            r.wait_from(SystemTime::UNIX_EPOCH),
            Some(Duration::from_secs(42))
        );
        // The head alone gives the same wait (for middleware).
        for (status, headers, want) in [
            (429, vec![(RESET_AFTER_HEADER, "42")], Some(42)),
            (
                429,
                vec![(RESET_AFTER_HEADER, "5"), ("retry-after", "30")],
                Some(30),
            ),
            (429, vec![], Some(DEFAULT_RATE_LIMIT_WAIT.as_secs())),
            (503, vec![("retry-after", "3")], Some(3)),
            (
                429,
                vec![("retry-after", "999999")],
                Some(MAX_RETRY_WAIT.as_secs()),
            ),
            (401, vec![], None),
        ] {
            let r = resp(status, &headers, "");
            assert_eq!(
                retry_wait(r.status(), r.headers(), SystemTime::UNIX_EPOCH),
                want.map(Duration::from_secs),
                "{status} {headers:?}"
            );
        }
        let both = parse_response(
            &resp(429, &[(RESET_AFTER_HEADER, "5"), ("retry-after", "30")], ""),
            1 << 20,
        )
        .unwrap_err();
        assert_eq!(
            both.retry_after(),
            Some(&RetryAfter::Delay(Duration::from_secs(30)))
        );
        let bare = parse_response(&resp(429, &[], "<html>slow down</html>"), 1 << 20).unwrap_err();
        assert_eq!(
            bare.retry_after(),
            Some(&RetryAfter::Delay(DEFAULT_RATE_LIMIT_WAIT))
        );
        let nf = parse_response(
            &resp(
                404,
                &[("content-type", "application/json")],
                r#"{"Errors":[{"Code":"API_NOT_FOUND","Message":"Resource not available"}]}"#,
            ),
            1 << 20,
        )
        .unwrap_err();
        assert!(nf.to_string().contains("API_NOT_FOUND"));
        let html = parse_response(
            &resp(
                502,
                &[("content-type", "text/html")],
                "<html>bad gateway</html>",
            ),
            1 << 20,
        )
        .unwrap_err();
        assert!(matches!(html, Error::MalformedResponse(_)));
    }
}
