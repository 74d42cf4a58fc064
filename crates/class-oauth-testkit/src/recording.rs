//! Faults a test injects and the record of every request: the wiremock responder that
//! applies the first and writes the second around each answer.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wiremock::{Request, Respond, ResponseTemplate};

use crate::reply::{Reply, oauth_error};
use crate::state::State;

/// A scripted misbehaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and an OAuth `server_error` body.
    Status(u16),
    /// Answer 502 with an HTML page, as a proxy does.
    Html502,
    /// Handle the request normally (state changes happen) but answer after this delay:
    /// past the client's timeout it is a dropped connection after the work was done.
    Delay(Duration),
    /// Answer 429 with `X-RateLimit-ResetAfter`.
    TooManyRequests {
        /// Seconds to wait.
        reset_after: u64,
    },
    /// Answer 200 with JSON cut off in the middle of a token.
    TruncatedJson,
    /// Answer 200 with a JSON body of this many bytes (past a client's cap).
    Oversized(usize),
}

/// One recorded request (bodies kept: this is a test tool).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: Option<String>,
    /// Headers as sent (names lower-case; this is a test tool, so `Authorization` is
    /// kept too).
    pub headers: Vec<(String, String)>,
    /// Form or body text.
    pub body: String,
    /// Status answered.
    pub status: u16,
}

#[derive(Clone)]
pub(crate) struct Router(pub(crate) Arc<Mutex<State>>);

impl Respond for Router {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let path = req.url.path().to_owned();
        let fault = state
            .faults
            .iter_mut()
            .find(|(prefix, _, n)| *n > 0 && path.starts_with(prefix.as_str()))
            .map(|(_, f, n)| {
                *n -= 1;
                f.clone()
            });
        let reply = match fault {
            Some(Fault::Status(s)) => oauth_error(s, "server_error", "injected failure"),
            Some(Fault::Html502) => Reply::new(502)
                .header("content-type", "text/html")
                .body("<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"),
            Some(Fault::TooManyRequests { reset_after }) => {
                Reply::new(429).header("x-ratelimit-1min-remaining", "0").header("x-ratelimit-resetafter", &reset_after.to_string())
            }
            Some(Fault::Delay(d)) => state.route(req).delay(d),
            Some(Fault::TruncatedJson) => Reply::new(200)
                .header("content-type", "application/json")
                .body("{\"access_token\":\"eyJhbGciOiJSUzI1NiJ9.trunc"),
            Some(Fault::Oversized(n)) => Reply::new(200)
                .header("content-type", "application/json")
                .body(format!("{{\"padding\":\"{}\"}}", "x".repeat(n))),
            None => state.route(req),
        };
        let reply = if state.cfg.latency.is_zero() {
            reply
        } else {
            reply.delay(state.cfg.latency)
        };
        let status = reply.status;
        if !state.cfg.record_requests {
            return reply.into_template();
        }
        state.requests.push(RecordedRequest {
            method: req.method.as_str().to_owned(),
            path,
            query: req.url.query().map(str::to_owned),
            headers: req
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            status,
        });
        reply.into_template()
    }
}
