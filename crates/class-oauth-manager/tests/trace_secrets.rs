//! A full flow under a TRACE subscriber (tracing events and the `log` records of the
//! HTTP stack): no secret used anywhere in the flow appears in the output.

use std::io::Write;
use std::sync::{Arc, Mutex};

use class_oauth_core::scope::Scopes;
use class_oauth_core::{
    ClientId, ClientSecret, Environment, IssuerUrl, Password, RedirectUrl, Username,
};
use class_oauth_manager::TenantKey;
use class_oauth_manager::blocking::TokenManager;
use class_oauth_store::MemoryStore;
use class_oauth_ureq::{AuthorizeOptions, Callback, ClassClient};
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_secret_reaches_a_trace_log() {
    class_oauth_fixtures::bounded(
        "every flow logged at TRACE",
        std::time::Duration::from_secs(120),
        every_flow_logged_at_trace,
    );
}

fn every_flow_logged_at_trace() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    use tracing_subscriber::layer::SubscriberExt as _;
    // Everything at TRACE, ours and the HTTP stack's (`log` records bridged), except
    // ureq-proto's byte dumps: it logs raw response bytes at TRACE, which no filter in
    // this library can prevent (docs/SECURITY.md says to keep `ureq_proto` at DEBUG).
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::TRACE)
        .with_target("ureq_proto", tracing::Level::DEBUG);
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        )
        .with(filter);
    tracing::subscriber::set_global_default(subscriber).unwrap();
    tracing_log::LogTracer::init().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(MockServer::start());
    let first_rt = "SECRET-RT-PASSWORD".to_owned();
    let token = |at: &str, rt: &str| json!({"access_token": at, "token_type": "bearer", "expires_in": 899, "refresh_token": rt, "scope": "target:b/OAUTH_TEST offline_access fund.read"});
    rt.block_on(async {
        Mock::given(method("POST"))
            .and(path("/connect/token"))
            .and(body_string_contains("grant_type=password"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(token("SECRET-AT-PASSWORD", &first_rt)),
            )
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/connect/token"))
            .and(body_string_contains("grant_type=authorization_code"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(token("SECRET-AT-CODE", "SECRET-RT-CODE")),
            )
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/connect/token"))
            .and(body_string_contains("grant_type=refresh_token"))
            .and(body_string_contains(&first_rt))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(token("SECRET-AT-REFRESHED", "SECRET-RT-REFRESHED")),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/1.0/b/OAUTH_TEST/fund/list"))
            .respond_with(ResponseTemplate::new(401).set_body_json(
                json!({"Errors": [{"Code": "API_NOT_AUTHORISED", "Message": "Not authorised"}]}),
            ))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/1.0/b/OAUTH_TEST/fund/list"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"Errors": [], "Data": {"Funds": []}})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/connect/userinfo"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"sub": "user-1"})))
            .mount(&server)
            .await;
    });

    let client_secret = "SECRET-CLIENT-1";
    let password = "SECRET-PASSWORD-1";
    let code = "SECRET-CODE-1";
    let issuer = IssuerUrl::new(&server.uri()).unwrap();
    let client = ClassClient::builder(Environment::Custom(issuer), ClientId::new("client-1"))
        .secret(ClientSecret::new(client_secret))
        .without_discovery()
        .build()
        .unwrap();
    let manager = TokenManager::new(client.clone(), MemoryStore::new());
    let tenant = TenantKey::new(&ClientId::new("client-1"), "OAUTH_TEST");

    let mut secrets: Vec<String> =
        vec![client_secret.into(), password.into(), code.into(), first_rt];
    let granted = client
        .password(
            Username::new("sam"),
            Password::new(password),
            Scopes::parse("target:b/OAUTH_TEST offline_access fund.read").unwrap(),
        )
        .unwrap();
    manager.store_tokens(&tenant, &granted).unwrap();
    secrets.push(manager.access_token(&tenant).unwrap().secret().to_owned());
    let response = manager.api_get(&tenant, "b/OAUTH_TEST/fund/list").unwrap();
    assert_eq!(response.data["Funds"], json!([]));
    let refreshed = manager.grant(&tenant).unwrap();
    secrets.push(refreshed.tokens.access_token.secret().to_owned());
    secrets.push(
        refreshed
            .tokens
            .refresh_token
            .as_ref()
            .unwrap()
            .secret()
            .to_owned(),
    );
    assert_ne!(
        refreshed.tokens.access_token.secret(),
        "SECRET-AT-PASSWORD",
        "the 401 forced a refresh"
    );

    let (_url, pending) = client
        .start_authorization(
            RedirectUrl::new("https://partner.example/cb").unwrap(),
            Scopes::parse("target:b fund.read").unwrap(),
            AuthorizeOptions::default(),
        )
        .unwrap();
    secrets.push(pending.state().secret().to_owned());
    secrets.push(
        pending
            .pkce_verifier()
            .as_ref()
            .unwrap()
            .secret()
            .to_owned(),
    );
    let callback = format!(
        "https://partner.example/cb?code={code}&state={}",
        pending.state().secret()
    );
    let via_code = client
        .finish_authorization(pending, Callback::Url(&callback))
        .unwrap();
    secrets.push(via_code.tokens.access_token.secret().to_owned());
    secrets.push("SECRET-RT-CODE".into());
    client
        .userinfo(
            &via_code.tokens.access_token,
            class_oauth_core::userinfo::ExpectedSubject::Sub("user-1"),
        )
        .unwrap();

    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("class_oauth.http")
            && log.contains("token refreshed")
            && log.contains("status=401"),
        "the flow was logged:\n{log}"
    );
    for secret in &secrets {
        if let Some(line) = log.lines().find(|l| l.contains(secret.as_str())) {
            panic!("secret {secret:?} leaked into the TRACE log: {line}");
        }
    }
    // The Authorization: Basic value as sent on the wire, too.
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("client-1:{client_secret}"));
    assert!(!log.contains(&basic), "the Basic credentials leaked");
}
