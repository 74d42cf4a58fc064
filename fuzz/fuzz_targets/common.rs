// Shared by the targets: a response from fuzz bytes (status, content type, body).
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub fn response(data: &[u8]) -> http::Response<Vec<u8>> {
    let (status, ct, body) = match data {
        [s, c, rest @ ..] => (*s, *c, rest),
        _ => (0, 0, data),
    };
    let status = [200u16, 201, 302, 400, 401, 403, 404, 429, 500, 502, 503][usize::from(status) % 11];
    let ct = ["application/json", "application/json;charset=UTF-8", "text/html", "application/x-www-form-urlencoded", "text/plain", ""][usize::from(ct) % 6];
    let mut b = http::Response::builder().status(status);
    if !ct.is_empty() {
        b = b.header("content-type", ct);
    }
    b.header("retry-after", "3").header("www-authenticate", "Bearer error=\"invalid_token\"").body(body.to_vec()).unwrap()
}

pub fn client() -> class_oauth_core::Client {
    // With a key set, as discovery gives it: `openid` needs one.
    let mut endpoints = class_oauth_core::Environment::Pie.preset();
    endpoints.jwks_uri = Some("https://app.class-pie.com.au/.well-known/jwks".parse().unwrap());
    class_oauth_core::Client::new(class_oauth_core::ClientId::new("c"), endpoints)
        .with_secret(class_oauth_core::ClientSecret::new("s"))
}

/// Parses a token response the public way: a flow without a validator (any ID token is
/// dropped), driven in memory.
pub fn parse_token(
    client: &class_oauth_core::Client,
    request: class_oauth_core::token::TokenRequest,
    resp: &http::Response<Vec<u8>>,
) -> Option<class_oauth_core::TokenSet> {
    class_oauth_core::flow::drive_blocking(
        class_oauth_core::flow::TokenFlow::new(client, request),
        now,
        |_| Ok(resp.clone()),
        |_| {},
    )
    .ok()
    .map(|v| v.tokens)
}
