#![no_main]
//! Class API responses (the Errors envelope, rate-limit headers): never a panic.
mod common;
use class_oauth_core::api;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut resp = common::response(data);
    if let Some(b) = data.first() {
        resp.headers_mut().insert(api::RESET_AFTER_HEADER, http::HeaderValue::from_str(&format!("{}", b)).unwrap());
    }
    if let Err(e) = api::parse_response(&resp, 1 << 20) {
        let _ = (e.to_string(), e.retry_after());
    }
});
