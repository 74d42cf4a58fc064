#![no_main]
//! Scope strings: parsing never panics and round-trips exactly.
use class_oauth_core::scope::{Scope, Scopes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(scopes) = Scopes::parse(&text) {
        let printed = scopes.to_string();
        assert_eq!(Scopes::parse(&printed).unwrap(), scopes);
        let _ = scopes.validate();
        let _ = scopes.business_code();
    }
    for token in text.split(' ') {
        if let Ok(s) = Scope::parse(token) {
            assert_eq!(s.to_string(), token);
        }
    }
});
