//! The Class API flow: one call, one 429 waited out.

use std::time::{Duration, SystemTime};

use http::Response;

use super::{Flow, OnFailure, Step};
use crate::api::{self, ApiRequest};
use crate::client::Client;
use crate::error::Error;
use crate::secret::AccessToken;

/// A Class API call that waits out one 429 (from `X-RateLimit-ResetAfter` /
/// `Retry-After`, capped) and retries once; a second 429 is returned to the caller.
#[derive(Debug)]
pub struct ApiFlow {
    request: ApiRequest,
    access_token: AccessToken,
    max_body: usize,
    max_wait: Duration,
    attempts: u8,
    waiting: Option<Duration>,
    result: Option<Result<api::ApiResponse, Error>>,
}

impl ApiFlow {
    /// A call with `access_token`; waits at most `max_wait` for one retry after a 429.
    #[must_use]
    pub fn new(
        client: &Client,
        request: ApiRequest,
        access_token: AccessToken,
        max_wait: Duration,
    ) -> Self {
        Self {
            request,
            access_token,
            max_body: client.max_body(),
            max_wait,
            attempts: 0,
            waiting: None,
            result: None,
        }
    }
}

impl Flow for ApiFlow {
    type Output = api::ApiResponse;

    fn poll(&mut self, _now: SystemTime) -> Step<api::ApiResponse> {
        if let Some(d) = self.waiting.take() {
            return Step::Wait(d);
        }
        if let Some(r) = self.result.take() {
            return Step::Done(r);
        }
        self.attempts += 1;
        match self.request.to_http(&self.access_token) {
            Ok(req) => Step::Send(req),
            Err(e) => Step::Done(Err(e)),
        }
    }

    fn handle_response(&mut self, now: SystemTime, response: Response<Vec<u8>>) {
        let r = api::parse_response(&response, self.max_body);
        if let Err(Error::ApiRefused(refusal)) = &r {
            if refusal.status == http::StatusCode::TOO_MANY_REQUESTS && self.attempts < 2 {
                let wait = refusal
                    .wait_from(now)
                    .unwrap_or(api::DEFAULT_RATE_LIMIT_WAIT);
                if wait <= self.max_wait {
                    self.waiting = Some(wait);
                    return;
                }
            }
        }
        self.result = Some(r);
    }

    fn handle_transport_failure(&mut self, _now: SystemTime) -> OnFailure {
        OnFailure::Abort
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;
    use crate::flow::drive_blocking;
    use crate::types::ClientId;

    use crate::body::json_response as json;

    /// Drives one API call at `now` whose first answer is `first` and whose later
    /// answers are a success; returns the outcome and the waits asked for.
    fn call(
        now: SystemTime,
        first: Response<Vec<u8>>,
        then: Option<&str>,
    ) -> (
        Result<api::ApiResponse, crate::flow::DriveError>,
        Vec<Duration>,
    ) {
        let client = Client::new(ClientId::new("c"), Environment::Pie.preset());
        let base = client.endpoints().api_base.clone().unwrap();
        let flow = ApiFlow::new(
            &client,
            ApiRequest::get(&base, "x").unwrap(),
            AccessToken::new("t"),
            Duration::from_secs(60),
        );
        let mut first = Some(first);
        let mut waits = Vec::new();
        let r = drive_blocking(
            flow,
            || now,
            |_| {
                Ok(match (first.take(), then) {
                    (Some(r), _) => r,
                    (None, Some(body)) => json(200, body),
                    (None, None) => Response::builder().status(429).body(Vec::new()).unwrap(),
                })
            },
            |d| waits.push(d),
        );
        (r, waits)
    }

    fn too_many(headers: &[(&str, &str)]) -> Response<Vec<u8>> {
        let mut b = Response::builder().status(429);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Vec::new()).unwrap()
    }

    #[test]
    fn api_flow_waits_once_on_429() {
        let epoch = SystemTime::UNIX_EPOCH;
        let ok = Some(r#"{"Errors":[],"Data":1}"#);
        let (r, waits) = call(epoch, too_many(&[(api::RESET_AFTER_HEADER, "7")]), ok);
        assert_eq!(r.unwrap().data, 1);
        assert_eq!(waits, [Duration::from_secs(7)]);
        // A Retry-After HTTP date is a wait counted from `now`, not zero (and the later
        // of it and the reset header).
        let now = epoch + Duration::from_secs(784_111_767);
        let dated = too_many(&[
            ("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT"),
            (api::RESET_AFTER_HEADER, "3"),
        ]);
        let (r, waits) = call(now, dated, ok);
        assert_eq!(r.unwrap().data, 1);
        assert_eq!(waits, [Duration::from_secs(10)]);
        // Two 429s in a row: the second is returned.
        let (r, waits) = call(epoch, too_many(&[]), None);
        assert!(r.unwrap_err().is_transient());
        assert_eq!(waits, [api::DEFAULT_RATE_LIMIT_WAIT]);
    }
}
