#![no_main]
//! Error bodies (RFC 6749 5.2, RFC 7009): every error formats without panicking and its
//! text never echoes a token-like member value.
mod common;
use class_oauth_core::revocation::RevocationRequest;
use class_oauth_core::RefreshToken;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut resp = common::response(data);
    *resp.status_mut() = http::StatusCode::BAD_REQUEST;
    let mut endpoints = class_oauth_core::Environment::Pie.preset();
    endpoints.revocation_endpoint = Some("https://app.class-pie.com.au/connect/revocation".parse().unwrap());
    let client = common::client().with_endpoints(endpoints);
    if let Err(e) = RevocationRequest::RefreshToken(RefreshToken::new("rt")).parse_response(&client, &resp) {
        let _ = (e.to_string(), format!("{e:?}"), e.is_transient(), e.requires_reauthorization());
    }
    let excerpt = class_oauth_core::redacted_excerpt(data);
    assert!(excerpt.chars().count() <= 200);
});
