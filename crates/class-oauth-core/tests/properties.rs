//! Property tests: scope round-trips, authorization-URL shape, secret hygiene of every
//! Debug/Display, and parsers that return errors (never panic) on arbitrary input.

use std::time::{Duration, SystemTime};

use class_oauth_core::authorize::AuthorizationRequest;
use class_oauth_core::callback::CallbackParams;
use class_oauth_core::headers::{RetryAfter, WwwAuthenticate};
use class_oauth_core::scope::{Scope, Scopes};
use class_oauth_core::token::TokenRequest;
use class_oauth_core::{
    AccessToken, Client, ClientId, ClientSecret, Environment, Password, RedirectUrl, RefreshToken,
    Username, api, discovery, redacted_excerpt, userinfo,
};
use proptest::prelude::*;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn client() -> Client {
    // With a key set, as discovery gives it: `openid` needs one.
    let mut endpoints = Environment::Production.preset();
    endpoints.jwks_uri = Some("https://app.class.com.au/.well-known/jwks".parse().unwrap());
    Client::new(ClientId::new("cid"), endpoints).with_secret(ClientSecret::new("client-secret"))
}

/// RFC 6749 NQCHAR tokens, biased towards the Class grammar.
fn scope_token() -> impl Strategy<Value = String> {
    prop_oneof![
        "[!#-\\[\\]-~]{1,24}",
        Just("openid".to_owned()),
        Just("offline_access".to_owned()),
        Just("fund.read".to_owned()),
        "target:[bf]?(/[A-Za-z0-9_-]{0,8}){0,3}",
    ]
}

/// Parses a token response through the public path (a `TokenFlow` without ID-token
/// validation, so any ID token is dropped).
fn parse(
    request: &TokenRequest,
    client: &Client,
    response: &http::Response<Vec<u8>>,
    now: SystemTime,
) -> Result<class_oauth_core::TokenSet, class_oauth_core::Error> {
    class_oauth_core::flow::drive_blocking(
        class_oauth_core::flow::TokenFlow::new(client, request.clone()),
        || now,
        |_| Ok(response.clone()),
        |_| {},
    )
    .map(|v| v.tokens)
    .map_err(|e| e.protocol().cloned().expect("no transport in memory"))
}

fn response(status: u16, content_type: &str, body: Vec<u8>) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn scope_token_round_trips_exactly(token in scope_token()) {
        let scope = Scope::parse(&token).unwrap();
        prop_assert_eq!(scope.to_string(), token);
    }

    #[test]
    fn scopes_round_trip(tokens in proptest::collection::vec(scope_token(), 0..8)) {
        let scopes = Scopes::new(tokens.iter().map(|t| Scope::parse(t).unwrap()));
        let text = scopes.to_string();
        let back = Scopes::parse(&text).unwrap();
        prop_assert_eq!(&back, &scopes);
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn authorization_url_never_repeats_a_parameter_and_keeps_redirect_query(
        redirect_query in proptest::collection::vec(("[a-z]{1,6}", "[ -~]{0,12}"), 0..4),
        extras in proptest::collection::vec(("x_[a-z]{1,6}", "[ -~]{0,12}"), 0..4),
        openid in any::<bool>(),
    ) {
        let mut redirect = url::Url::parse("https://partner.example/cb").unwrap();
        for (k, v) in &redirect_query {
            redirect.query_pairs_mut().append_pair(k, v);
        }
        let redirect_text = redirect.to_string();
        let mut scopes = Scopes::parse("target:b fund.read offline_access").unwrap();
        if openid {
            scopes.insert(Scope::OpenId);
        }
        let c = client();
        let mut req = AuthorizationRequest::new(&c, RedirectUrl::new(&redirect_text).unwrap(), scopes);
        let mut names: Vec<&str> = Vec::new();
        let mut unique_extras = true;
        for (k, v) in &extras {
            unique_extras &= !names.contains(&k.as_str());
            names.push(k);
            req = req.extra_param(k.clone(), v.clone());
        }
        let mut bytes = |b: &mut [u8]| b.fill(9);
        match req.build(&mut bytes, now()) {
            Ok((url, pending)) => {
                prop_assert!(unique_extras);
                let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
                let mut keys: Vec<_> = pairs.iter().map(|(k, _)| k.clone()).collect();
                keys.sort();
                let n = keys.len();
                keys.dedup();
                prop_assert_eq!(keys.len(), n, "repeated parameter in {}", url);
                let got = pairs.iter().find(|(k, _)| k == "redirect_uri").map(|(_, v)| v.clone());
                prop_assert_eq!(got.as_deref(), Some(redirect_text.as_str()));
                prop_assert_eq!(pending.redirect_uri().as_str(), redirect_text.as_str());
                prop_assert_eq!(pairs.iter().any(|(k, _)| k == "nonce"), openid);
            }
            Err(_) => prop_assert!(!unique_extras),
        }
    }

    #[test]
    fn no_debug_or_display_contains_a_secret(secret in "SECRET[A-Za-z0-9]{8,24}") {
        let check = |text: String| {
            assert!(!text.contains(&secret), "leaked: {text}");
        };
        check(format!("{:?}", ClientSecret::new(&secret)));
        check(format!("{:?}", AccessToken::new(&secret)));
        check(format!("{:?}", RefreshToken::new(&secret)));
        check(format!("{:?}", Password::new(&secret)));
        let c = Client::new(ClientId::new("cid"), client().endpoints().clone()).with_secret(ClientSecret::new(&secret));
        check(format!("{c:?}"));
        let pw = TokenRequest::password(Username::new("u"), Password::new(&secret), Scopes::default()).unwrap();
        check(format!("{pw:?}"));
        let refresh = TokenRequest::refresh_token(RefreshToken::new(&secret), Scopes::default());
        check(format!("{refresh:?}"));
        // A token set built from a response that carries the secret everywhere.
        let body = format!(r#"{{"access_token":"{secret}","refresh_token":"{secret}","id_token":"{secret}","token_type":"bearer"}}"#);
        let set = parse(&pw, &c, &response(200, "application/json", body.into_bytes()), now()).unwrap();
        check(format!("{set:?}"));
        // Errors built from bodies that carry the secret: truncated, HTML, error JSON.
        for body in [
            format!(r#"{{"access_token":"{secret}"#),
            format!(r#"{{"refresh_token": "{secret}", "token_type": 5}}"#),
            format!("access_token={secret}&token_type=mac"),
            format!(r#"{{"access_token":"{secret}","token_type":"mac"}}"#),
            format!(r#"<html>{{"code":"{secret}"}}</html>"#),
        ] {
            for (status, ct) in [(200, "application/json"), (502, "text/html"), (400, "application/x-www-form-urlencoded")] {
                if let Err(e) = parse(&pw, &c, &response(status, ct, body.clone().into_bytes()), now()) {
                    check(format!("{e:?}"));
                    check(e.to_string());
                }
            }
        }
        check(redacted_excerpt(format!(r#"{{"id_token" : "{secret}"}}"#).as_bytes()));
        let mut bytes = |b: &mut [u8]| b.fill(1);
        let (_, pending) = AuthorizationRequest::new(&c, RedirectUrl::new("https://p.example/cb").unwrap(), Scopes::parse("openid").unwrap())
            .build(&mut bytes, now())
            .unwrap();
        let pending_debug = format!("{pending:?}");
        assert!(!pending_debug.contains(pending.state().secret()));
        assert!(!pending_debug.contains(pending.pkce_verifier().as_ref().unwrap().secret()));
        let cb = CallbackParams::from_query(&format!("code={secret}&state={secret}")).unwrap();
        check(format!("{cb:?}"));
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        status in 100u16..600,
        ct in prop_oneof![Just("application/json"), Just("text/html"), Just("application/x-www-form-urlencoded"), Just("text/plain"), Just("")],
    ) {
        let c = client();
        let resp = response(status, ct, body.clone());
        let pw = TokenRequest::password(Username::new("u"), Password::new("p"), Scopes::default()).unwrap();
        let _ = parse(&pw, &c, &resp, now());
        let _ = discovery::parse_metadata(&resp, 1 << 20);
        let _ = userinfo::parse_response(&c, &resp, userinfo::ExpectedSubject::Sub("sub"));
        let _ = api::parse_response(&resp, 1 << 20);
        let _ = CallbackParams::from_form_post(&body);
        let text = String::from_utf8_lossy(&body);
        let _ = CallbackParams::from_url(&text);
        let _ = WwwAuthenticate::parse(&text);
        let _ = RetryAfter::parse(&text);
        let _ = Scopes::parse(&text);
        let _ = redacted_excerpt(&body);
    }

    #[test]
    fn json_shaped_token_bodies_never_panic(
        access in prop_oneof![Just(serde_json::json!("at")), any::<i64>().prop_map(serde_json::Value::from), Just(serde_json::Value::Null)],
        expires in prop_oneof![any::<f64>().prop_map(|f| serde_json::json!(f)), "[0-9a-z.-]{0,12}".prop_map(serde_json::Value::from), any::<i64>().prop_map(serde_json::Value::from)],
        token_type in prop_oneof![Just(serde_json::json!("BeArEr")), "[a-z]{0,6}".prop_map(serde_json::Value::from), Just(serde_json::json!([]))],
    ) {
        let body = serde_json::json!({"access_token": access, "expires_in": expires, "token_type": token_type});
        let resp = response(200, "application/json", serde_json::to_vec(&body).unwrap());
        let pw = TokenRequest::password(Username::new("u"), Password::new("p"), Scopes::default()).unwrap();
        if let Ok(t) = parse(&pw, &client(), &resp, now()) {
            prop_assert!(t.expires_in.unwrap_or(0) <= i32::MAX as u64);
            prop_assert!(t.token_type.eq_ignore_ascii_case("bearer"));
        }
    }
}
