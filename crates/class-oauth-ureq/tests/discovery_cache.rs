//! The blocking client's discovery cache: one request for many threads, and a transport
//! failure with no earlier document is an error (not cached).

use class_oauth_core::{ClientId, EndpointSource, Environment, IssuerUrl};
use class_oauth_ureq::ClassClient;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[test]
fn threads_share_one_discovery_request() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(MockServer::start());
    let doc = serde_json::json!({"issuer": server.uri(), "token_endpoint": format!("{}/tok", server.uri())});
    rt.block_on(
        Mock::given(path("/.well-known/openid-configuration"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(doc)
                    .set_delay(std::time::Duration::from_millis(100)),
            )
            .expect(1)
            .mount(&server),
    );
    let env = Environment::Custom(IssuerUrl::new(&server.uri()).unwrap());
    let c = ClassClient::builder(env, ClientId::new("c"))
        .discovery_policy(
            class_oauth_core::discovery::DiscoveryPolicy::default().without_key_set_requirement(),
        )
        .build()
        .unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || c.endpoints())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap().source, EndpointSource::Discovery);
    }
    assert_eq!(rt.block_on(server.received_requests()).unwrap().len(), 1);
}

#[test]
fn connection_refused_is_a_transport_error() {
    let env = Environment::Custom(IssuerUrl::new("http://127.0.0.1:9").unwrap());
    let c = ClassClient::builder(env, ClientId::new("c"))
        .build()
        .unwrap();
    let err = c.endpoints().unwrap_err();
    assert!(
        matches!(err, class_oauth_ureq::DriveError::Transport(ref t) if t.kind == class_oauth_ureq::TransportErrorKind::Connect),
        "{err:?}"
    );
}
