//! The client's discovery cache, once for both faces and any transport: one request for
//! many concurrent callers (single-flight), failures not cached, and the preset when the
//! provider publishes no document. The HTTP seam is a counting stand-in; what the real
//! transports do at the socket (a closed port is a `Connect` error) is the conformance
//! matrix's (`class-oauth-conformance/tests/transports.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use class_oauth_client::{AsyncHttpClient, ClassClient, SyncHttpClient, TransportError, blocking};
use class_oauth_core::discovery::DiscoveryPolicy;
use class_oauth_core::{ClientId, EndpointSource, Environment, IssuerUrl};
use http::{Request, Response};

const ISSUER: &str = "https://issuer.test";

/// Answers the discovery document's path with `statuses` in turn (the last one for
/// ever), the document on a 200; counts requests; takes `delay` per answer.
struct Provider {
    statuses: Vec<u16>,
    delay: Duration,
    requests: AtomicUsize,
}

impl Provider {
    fn new(statuses: &[u16], delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            statuses: statuses.to_vec(),
            delay,
            requests: AtomicUsize::new(0),
        })
    }

    fn answer(&self, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
        assert_eq!(
            request.uri(),
            "https://issuer.test/.well-known/openid-configuration"
        );
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let status = self.statuses[n.min(self.statuses.len() - 1)];
        let body = if status == 200 {
            serde_json::json!({"issuer": ISSUER, "token_endpoint": format!("{ISSUER}/tok")})
                .to_string()
        } else {
            String::new()
        };
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.into_bytes())
            .unwrap()
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The async face's seam over a [`Provider`].
struct AsyncProvider(Arc<Provider>);

#[async_trait::async_trait]
impl AsyncHttpClient for AsyncProvider {
    async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        tokio::time::sleep(self.0.delay).await;
        Ok(self.0.answer(&request))
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// The blocking face's seam over a [`Provider`].
struct BlockingProvider(Arc<Provider>);

impl SyncHttpClient for BlockingProvider {
    fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        std::thread::sleep(self.0.delay);
        Ok(self.0.answer(&request))
    }
}

fn async_client(provider: &Arc<Provider>) -> ClassClient<AsyncProvider> {
    ClassClient::<AsyncProvider>::builder(
        Environment::Custom(IssuerUrl::new(ISSUER).unwrap()),
        ClientId::new("c"),
    )
    .http(AsyncProvider(provider.clone()))
    .discovery_policy(DiscoveryPolicy::default().without_key_set_requirement())
    .build_with_http()
    .expect("an HTTP client was given")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_discovery_request() {
    let provider = Provider::new(&[200], Duration::from_millis(100));
    let client = async_client(&provider);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.endpoints().await })
        })
        .collect();
    for call in calls {
        let endpoints = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("bounded")
            .unwrap()
            .unwrap();
        assert_eq!(endpoints.token_endpoint.path(), "/tok");
        assert_eq!(endpoints.source, EndpointSource::Discovery);
    }
    assert_eq!(provider.requests(), 1);
}

#[tokio::test]
async fn failures_are_not_cached_and_an_absent_document_means_the_preset() {
    let provider = Provider::new(&[503, 404], Duration::ZERO);
    let client = async_client(&provider);
    let lookup = || async {
        tokio::time::timeout(Duration::from_secs(10), client.endpoints())
            .await
            .expect("bounded")
    };
    let first = lookup().await.unwrap_err();
    assert!(first.is_transient(), "{first:?}");
    let second = lookup().await.unwrap();
    assert_eq!(second.source, EndpointSource::PresetNoDiscovery);
    assert_eq!(second.token_endpoint.path(), "/connect/token");
    assert_eq!(provider.requests(), 2);
    // Cached now: no third request.
    lookup().await.unwrap();
    assert_eq!(provider.requests(), 2);
}

#[test]
fn blocking_threads_share_one_discovery_request() {
    let provider = Provider::new(&[200], Duration::from_millis(100));
    let client = blocking::ClassClient::<BlockingProvider>::builder(
        Environment::Custom(IssuerUrl::new(ISSUER).unwrap()),
        ClientId::new("c"),
    )
    .http(BlockingProvider(provider.clone()))
    .discovery_policy(DiscoveryPolicy::default().without_key_set_requirement())
    .build_with_http()
    .expect("an HTTP client was given");
    let (done, results) = std::sync::mpsc::channel();
    for _ in 0..8 {
        let client = client.clone();
        let done = done.clone();
        std::thread::spawn(move || done.send(client.endpoints().map(|e| e.source)));
    }
    for _ in 0..8 {
        let source = results
            .recv_timeout(Duration::from_secs(10))
            .expect("bounded")
            .unwrap();
        assert_eq!(source, EndpointSource::Discovery);
    }
    assert_eq!(provider.requests(), 1);
}
