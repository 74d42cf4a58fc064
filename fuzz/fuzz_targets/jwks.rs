#![no_main]
//! Key sets: parse and select without panicking.
use class_oauth_core::jose::Algorithm;
use class_oauth_core::jwks::JwkSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = JwkSet::parse(data) {
        for alg in Algorithm::ALL {
            let _ = set.select(None, alg);
            let _ = set.select(Some("k"), alg);
        }
    }
});
