#![no_main]
//! Discovery documents: parse and validate against the policy without panicking.
mod common;
use class_oauth_core::discovery::{self, DiscoveryInput};
use class_oauth_core::Environment;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let resp = common::response(data);
    let env = Environment::Pie;
    if let Ok(e) = discovery::resolve(&env, DiscoveryInput::Response(&resp), &env.discovery_policy()) {
        assert_eq!(e.issuer, env.issuer());
    }
    let _ = discovery::parse_metadata(&resp, 1 << 20);
});
