//! Class resource-API helpers: the Bearer header, Class's vendor `Accept` type, the
//! `{"Errors":[{"Code","Message"}],"Data":...}` envelope, and rate limiting.
//!
//! Class allows 500 calls per minute per client id. A 429 says how long to wait in
//! `X-RateLimit-ResetAfter` (seconds); `X-RateLimit-1Min-Remaining` counts down the
//! calls left. [`ApiRefusal::wait_from`] turns those (and `Retry-After`, a delay or an HTTP date) into a capped duration.

use http::{Method, Request, Response, StatusCode};
use serde_json::Value;
use url::Url;

use crate::body;
use crate::error::{EndpointKind, Error, InputError, MalformedReason};
use crate::secret::AccessToken;
pub(crate) use crate::wire::envelope::errors_of;
pub use crate::wire::envelope::{
    ApiErrorItem, ApiRefusal, DEFAULT_RATE_LIMIT_WAIT, MAX_RETRY_WAIT, REMAINING_HEADER,
    RESET_AFTER_HEADER, RateLimit, retry_wait,
};

/// Class's media type for JSON at action version 1. Without an `Accept`, Class answers
/// in XML at the oldest action version, so every call sends one.
pub const ACCEPT_V1_JSON: &str = "application/vnd.superip.action.v1+json";

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

/// [`Error::ApiRefused`] with the refusal `resp` carries.
pub(crate) fn refusal(resp: &Response<Vec<u8>>, errors: Vec<ApiErrorItem>) -> Error {
    Error::ApiRefused(Box::new(crate::wire::envelope::refusal(resp, errors)))
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
            Err(e) => Err(e.into()),
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
        return Err(crate::error::malformed(
            EndpointKind::Api,
            resp,
            MalformedReason::BodyTooLarge { limit: max_body },
        ));
    }
    let value: Value = match body::format_of(resp) {
        body::BodyFormat::Json => serde_json::from_slice(resp.body()).map_err(|e| {
            crate::error::malformed(
                EndpointKind::Api,
                resp,
                MalformedReason::InvalidJson {
                    detail: body::json_error_detail(&e),
                },
            )
        })?,
        _ => {
            return Err(crate::error::malformed(
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
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::headers::RetryAfter;

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
