#![no_main]
//! Callbacks (query and form_post): parse and check against a pending record; a code
//! comes out only when the state matches.
mod common;
use class_oauth_core::authorize::AuthorizationRequest;
use class_oauth_core::callback::CallbackParams;
use class_oauth_core::scope::Scopes;
use class_oauth_core::RedirectUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let client = common::client();
    let pending = || {
        let mut entropy = |b: &mut [u8]| b.fill(7);
        AuthorizationRequest::new(&client, RedirectUrl::new("https://p.example/cb").unwrap(), Scopes::parse("openid").unwrap())
            .build(&mut entropy, common::now())
            .unwrap()
            .1
    };
    if let Ok(params) = CallbackParams::from_form_post(data) {
        let record = pending();
        let state = record.state().secret().to_owned();
        if record.verify_callback(&params, common::now()).is_ok() {
            assert_eq!(params.state.as_ref().map(|s| s.secret().to_owned()), Some(state));
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = CallbackParams::from_url(&text);
    let _ = pending().verify_callback_url(&format!("https://p.example/cb?{text}"), common::now());
});
