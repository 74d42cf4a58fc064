#![no_main]
//! ID tokens (JWS compact and claims): bounded work, never a panic, never accepted
//! without a key that verifies.
mod common;
use class_oauth_core::id_token::{Expectations, IdTokenValidator};
use class_oauth_core::jose::Jws;
use class_oauth_core::jwks::JwkSet;
use class_oauth_core::{ClientId, IdToken, IssuerUrl};
use libfuzzer_sys::fuzz_target;

const JWKS: &[u8] = br#"{"keys":[{"kty":"RSA","kid":"a","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ","e":"AQAB"}]}"#;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Jws::parse(&text);
    let keys = JwkSet::parse(JWKS).unwrap();
    let v = IdTokenValidator::new(IssuerUrl::new("https://app.class.com.au").unwrap(), ClientId::new("c"));
    // Nobody without the RFC 7515 A.2 private key can produce a token that validates.
    assert!(v.validate(&IdToken::new(text.as_ref()), Some(&keys), common::now(), &Expectations::without_nonce()).is_err());
});
