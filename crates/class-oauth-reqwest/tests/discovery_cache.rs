//! The high-level client's discovery cache: single-flight, failures not cached, the
//! preset when no document is published.

use class_oauth_core::{ClientId, EndpointSource, Environment, IssuerUrl};
use class_oauth_reqwest::ClassClient;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(server: &MockServer) -> ClassClient {
    let env = Environment::Custom(IssuerUrl::new(&server.uri()).unwrap());
    ClassClient::builder(env, ClientId::new("c"))
        .discovery_policy(
            class_oauth_core::discovery::DiscoveryPolicy::default().without_key_set_requirement(),
        )
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_discovery_request() {
    let server = MockServer::start().await;
    let doc = serde_json::json!({"issuer": server.uri(), "token_endpoint": format!("{}/tok", server.uri())});
    Mock::given(path("/.well-known/openid-configuration"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(doc)
                .set_delay(std::time::Duration::from_millis(100)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.endpoints().await })
        })
        .collect();
    for call in calls {
        let e = call.await.unwrap().unwrap();
        assert_eq!(e.token_endpoint.path(), "/tok");
        assert_eq!(e.source, EndpointSource::Discovery);
    }
    // MockServer verifies `expect(1)` on drop.
}

#[tokio::test]
async fn failures_are_not_cached_and_absent_document_means_preset() {
    let server = MockServer::start().await;
    Mock::given(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let c = client(&server);
    let first = c.endpoints().await.unwrap_err();
    assert!(first.is_transient(), "{first:?}");
    let second = c.endpoints().await.unwrap();
    assert_eq!(second.source, EndpointSource::PresetNoDiscovery);
    assert_eq!(second.token_endpoint.path(), "/connect/token");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    // Cached now: no third request.
    c.endpoints().await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}
