//! The token response's fast path (the shape Class sends) agrees with the general
//! parser on every value (proptest), and a Class response takes it.

use super::*;
use proptest::prelude::*;

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(Value::from("")),
        Just(Value::from("bearer")),
        Just(Value::from("Bearer")),
        Just(Value::from("mac")),
        Just(Value::from("tok\u{e9}n \"q\"")),
        Just(Value::from("openid fund.read target:b/OAUTH_TEST")),
        Just(Value::from("899")),
        Just(Value::from(899)),
        Just(Value::from(-1)),
        Just(Value::from(1.5)),
        Just(Value::from(true)),
        Just(serde_json::json!([])),
        Just(serde_json::json!({"a": 1})),
    ]
}

fn member() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("access_token"),
        Just("token_type"),
        Just("refresh_token"),
        Just("id_token"),
        Just("scope"),
        Just("expires_in"),
        Just("error"),
        Just("BusinessCode"),
        Just("acc\\u0065ss_token"),
    ]
}

fn general(resp: &Response<Vec<u8>>) -> Result<TokenSet, Error> {
    let map = parse_oauth_body(EndpointKind::Token, resp, 1 << 20)?;
    TokenSet::from_fields(
        resp,
        Fields::from_map(resp, map)?,
        &Scopes::default(),
        SystemTime::UNIX_EPOCH,
    )
}

proptest! {
    /// Whatever the body, the fast path gives exactly what the general path gives
    /// whenever it takes the body at all.
    #[test]
    fn the_fast_path_agrees_with_the_general_path(
        members in proptest::collection::vec((member(), value()), 0..9),
        status in prop_oneof![Just(200u16), Just(201), Just(400)],
    ) {
        // Written by hand so that duplicate and escaped member names reach the parser.
        let body = format!(
            "{{{}}}",
            members
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let resp = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.into_bytes())
            .unwrap();
        if let Some(fields) = Fields::fast(&resp, 1 << 20) {
            let fast = TokenSet::from_fields(&resp, fields, &Scopes::default(), SystemTime::UNIX_EPOCH);
            prop_assert_eq!(fast, general(&resp));
        }
    }
}

#[test]
fn a_class_response_takes_the_fast_path() {
    let resp = Response::builder()
        .status(200)
        .header("content-type", "application/json;charset=UTF-8")
        .body(br#"{"access_token":"a","token_type":"bearer","expires_in":899,"refresh_token":"r","scope":"fund.read","BusinessCode":"OAUTH_TEST"}"#.to_vec())
        .unwrap();
    let fields = Fields::fast(&resp, 1 << 20).expect("the fast path");
    assert_eq!(fields.extra["BusinessCode"], "OAUTH_TEST");
    assert_eq!(
        TokenSet::from_fields(&resp, fields, &Scopes::default(), SystemTime::UNIX_EPOCH),
        general(&resp)
    );
}
