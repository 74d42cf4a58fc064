use super::*;
use crate::environment::Environment;
use crate::error::ErrorCode;
use crate::secret::ClientSecret;

fn client() -> Client {
    Client::new(ClientId::new("cid"), Environment::Production.preset())
        .with_secret(ClientSecret::new("sec"))
}

fn json(status: u16, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json;charset=UTF-8")
        .body(body.as_bytes().to_vec())
        .unwrap()
}

fn password_request() -> TokenRequest {
    TokenRequest::password(
        Username::new("u"),
        Password::new("p@ss word"),
        Scopes::parse("target:b/X fund.read").unwrap(),
    )
    .unwrap()
}

#[test]
fn password_request_shape() {
    let req = password_request().to_http(&client()).unwrap();
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(req.uri(), "https://app.class.com.au/connect/token");
    assert!(
        req.headers()["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    let body = String::from_utf8(req.body().clone()).unwrap();
    assert_eq!(
        body,
        "grant_type=password&username=u&password=p%40ss+word&scope=target%3Ab%2FX+fund.read"
    );
    assert!(!format!("{:?}", password_request()).contains("p@ss"));
}

#[test]
fn class_quirks() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let r = json(
        200,
        r#"{"access_token":"at","token_type":"bearer","expires_in":"899","BusinessName":"OAuth Test Business","BusinessCode":"OAUTH_TEST"}"#,
    );
    let t = password_request()
        .parse_response(&client(), &r, now)
        .unwrap();
    assert_eq!(t.expires_at, Some(now + Duration::from_secs(899)));
    assert!(!t.scope_in_response);
    assert_eq!(t.scopes.to_string(), "target:b/X fund.read");
    assert_eq!(t.business_name(), Some("OAuth Test Business"));
    assert_eq!(t.business_code().unwrap().as_str(), "X");
    let r = json(
        200,
        r#"{"access_token":"at","token_type":"Bearer","expires_in":899.7,"scope":"target:b/OAUTH_TEST fund.read"}"#,
    );
    let t = password_request()
        .parse_response(&client(), &r, now)
        .unwrap();
    assert_eq!(t.expires_in, Some(899));
    assert_eq!(t.business_code().unwrap().as_str(), "OAUTH_TEST");
}

#[test]
fn errors() {
    let now = SystemTime::UNIX_EPOCH;
    let parse = |r: Response<Vec<u8>>| {
        password_request()
            .parse_response(&client(), &r, now)
            .unwrap_err()
    };
    let e = parse(json(
        200,
        r#"{"error":"invalid_grant","error_description":"used"}"#,
    ));
    assert_eq!(e.code(), Some(&ErrorCode::InvalidGrant));
    assert_eq!(e.status(), Some(StatusCode::OK));
    let e = parse(json(200, r#"{"access_token":"at","expires_in":"soon"}"#));
    assert!(
        matches!(e, Error::MalformedResponse(ref m) if matches!(m.reason, MalformedReason::InvalidField { field: "expires_in", .. }))
    );
    let e = parse(json(200, r#"{"access_token":"at","token_type":"mac"}"#));
    assert!(
        matches!(e, Error::MalformedResponse(ref m) if matches!(m.reason, MalformedReason::UnsupportedTokenType(_)))
    );
    let e = parse(json(200, r#"{"access_token":42}"#));
    assert!(matches!(e, Error::MalformedResponse(_)));
    let html = Response::builder()
        .status(502)
        .header("content-type", "text/html")
        .body(b"<html>502</html>".to_vec())
        .unwrap();
    let e = parse(html);
    assert!(e.is_transient());
    assert!(!e.requires_reauthorization());
    let unauth = Response::builder()
        .status(401)
        .header("www-authenticate", "Basic realm=\"class\"")
        .body(Vec::new())
        .unwrap();
    assert_eq!(parse(unauth).code(), Some(&ErrorCode::InvalidClient));
}

#[test]
fn refresh_keeps_previous_refresh_token_and_narrows_scope() {
    let now = SystemTime::UNIX_EPOCH;
    let first = password_request()
        .parse_response(
            &client(),
            &json(
                200,
                r#"{"access_token":"a1","refresh_token":"r1","expires_in":899}"#,
            ),
            now,
        )
        .unwrap();
    let req = TokenRequest::refresh(&first).unwrap();
    let body = String::from_utf8(req.to_http(&client()).unwrap().into_body()).unwrap();
    assert_eq!(body, "grant_type=refresh_token&refresh_token=r1");
    let second = req
        .parse_response(
            &client(),
            &json(200, r#"{"access_token":"a2","expires_in":899}"#),
            now,
        )
        .unwrap();
    assert_eq!(second.refresh_token.unwrap().secret(), "r1");
    let narrow = TokenRequest::refresh(&first)
        .unwrap()
        .with_narrower_scope(Scopes::parse("target:b/X").unwrap())
        .unwrap();
    assert!(
        String::from_utf8(narrow.to_http(&client()).unwrap().into_body())
            .unwrap()
            .ends_with("&scope=target%3Ab%2FX")
    );
    // A subset that breaks the Class rules (an access specifier without its target)
    // is refused before any request.
    assert!(matches!(
        TokenRequest::refresh(&first)
            .unwrap()
            .with_narrower_scope(Scopes::parse("fund.read").unwrap()),
        Err(Error::InvalidInput(InputError::Scope(_)))
    ));
    assert!(
        TokenRequest::refresh(&first)
            .unwrap()
            .with_narrower_scope(Scopes::parse("fund.maintain").unwrap())
            .is_err()
    );
}
