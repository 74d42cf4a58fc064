#![no_main]
//! WWW-Authenticate and Retry-After parsing: never a panic.
use class_oauth_core::headers::{RetryAfter, WwwAuthenticate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let w = WwwAuthenticate::parse(&text);
    let _ = (w.error(), w.param("scope"));
    let _ = RetryAfter::parse(&text).map(|r| r.delay_from(std::time::SystemTime::UNIX_EPOCH));
});
