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
    class_oauth_core::Client::new(class_oauth_core::ClientId::new("c"), class_oauth_core::Environment::Pie.preset())
        .with_secret(class_oauth_core::ClientSecret::new("s"))
}
