#![no_main]
//! Token responses: any bytes, any status and content type: a typed result, never a panic;
//! a success has a bearer token type and a non-empty access token.
mod common;
use class_oauth_core::scope::Scopes;
use class_oauth_core::token::TokenRequest;
use class_oauth_core::{Password, RefreshToken, Username};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let resp = common::response(data);
    let client = common::client();
    let pw = TokenRequest::password(Username::new("u"), Password::new("p"), Scopes::default()).unwrap();
    if let Some(t) = common::parse_token(&client, pw, &resp) {
        assert!(t.token_type.eq_ignore_ascii_case("bearer"));
        assert!(!t.access_token.secret().is_empty());
    }
    let refresh = TokenRequest::refresh_token(RefreshToken::new("rt"), Scopes::default());
    if let Some(t) = common::parse_token(&client, refresh, &resp) {
        assert!(t.refresh_token.is_some(), "a refresh never loses the refresh token");
    }
});
