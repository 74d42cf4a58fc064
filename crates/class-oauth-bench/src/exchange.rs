//! Section 1, token exchange (refresh_token grant, Basic auth, Class-shaped response):
//! this project (async, blocking) vs oauth2-rs 5 (reqwest, ureq 2) vs raw requests on
//! the same clients. Latency and client CPU per request, then requests/s at 1, 8, 64
//! tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use class_oauth_core::flow::TokenFlow;
use class_oauth_core::scope::Scopes;
use class_oauth_core::token::TokenRequest;
use class_oauth_core::{Client, ClientId, ClientSecret, Environment, IssuerUrl, RefreshToken};
use oauth2::TokenResponse as _;

use crate::harness::{Case, Measured, run_interleaved};

const ID: &str = "1eaa3979-9caf-4c6b-bab8-2cbcd549d410";
const SECRET: &str = "bench-secret";

fn our_client(base: &str) -> Client {
    Client::new(
        ClientId::new(ID),
        Environment::Custom(IssuerUrl::new(base).expect("issuer")).preset(),
    )
    .with_secret(ClientSecret::new(SECRET))
}

fn our_request() -> TokenRequest {
    TokenRequest::refresh_token(
        RefreshToken::new("9e0fccdb-ec4f-4e6a-ae60-83ad66be9547"),
        Scopes::parse("target:b/OAUTH_TEST offline_access fund.read").expect("scopes"),
    )
}

type Oauth2Client = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn oauth2_client(base: &str) -> Oauth2Client {
    oauth2::basic::BasicClient::new(oauth2::ClientId::new(ID.into()))
        .set_client_secret(oauth2::ClientSecret::new(SECRET.into()))
        .set_token_uri(oauth2::TokenUrl::new(format!("{base}/connect/token")).expect("url"))
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ID}:{SECRET}"))
    )
}

const FORM: &str = "grant_type=refresh_token&refresh_token=9e0fccdb-ec4f-4e6a-ae60-83ad66be9547";

pub(crate) struct ExchangeResults {
    pub(crate) latency: Vec<Measured>,
    pub(crate) throughput: Vec<(String, usize, f64)>,
}

pub(crate) fn run(base: &str, rounds: usize) -> ExchangeResults {
    // All client work on this thread: a current-thread runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let peer_client = reqwest012::Client::builder()
        .redirect(reqwest012::redirect::Policy::none())
        .build()
        .expect("reqwest 0.12");
    let reqwest_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest");
    let ours_async = class_oauth_reqwest::ReqwestTransport::from_client(
        reqwest_client.clone(),
        class_oauth_reqwest::TransportConfig::default(),
    );
    let ours_blocking =
        class_oauth_ureq::UreqTransport::with_config(class_oauth_ureq::TransportConfig::default())
            .unwrap();
    let ureq3 = ureq::Agent::new_with_defaults();
    let ureq2 = oauth2::ureq::AgentBuilder::new().redirects(0).build();
    let client = our_client(base);
    let peer = oauth2_client(base);
    let url = format!("{base}/connect/token");
    let auth = basic();

    let mut cases = vec![
        Case::new("ours, async (reqwest)", || {
            let flow = TokenFlow::new(&client, our_request());
            let t = rt
                .block_on(class_oauth_reqwest::drive(&ours_async, flow))
                .expect("exchange");
            assert_eq!(t.tokens.expires_in, Some(899));
        }),
        Case::new("oauth2-rs 5, async (reqwest)", || {
            let t = rt
                .block_on(
                    peer.exchange_refresh_token(&oauth2::RefreshToken::new(
                        "9e0fccdb-ec4f-4e6a-ae60-83ad66be9547".into(),
                    ))
                    .request_async(&peer_client),
                )
                .expect("exchange");
            assert!(t.expires_in().is_some());
        }),
        Case::new("raw reqwest (floor)", || {
            let body = rt.block_on(async {
                let r = reqwest_client
                    .post(&url)
                    .header("authorization", &auth)
                    .header(
                        "content-type",
                        "application/x-www-form-urlencoded;charset=UTF-8",
                    )
                    .header("accept", "application/json")
                    .body(FORM)
                    .send()
                    .await
                    .expect("send");
                r.bytes().await.expect("body")
            });
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert!(v["access_token"].is_string());
        }),
        Case::new("ours, blocking (ureq 3)", || {
            let flow = TokenFlow::new(&client, our_request());
            let t = class_oauth_ureq::drive(&ours_blocking, flow).expect("exchange");
            assert_eq!(t.tokens.expires_in, Some(899));
        }),
        Case::new("oauth2-rs 5, blocking (ureq 2)", || {
            let t = peer
                .exchange_refresh_token(&oauth2::RefreshToken::new(
                    "9e0fccdb-ec4f-4e6a-ae60-83ad66be9547".into(),
                ))
                .request(&ureq2)
                .expect("exchange");
            assert!(t.expires_in().is_some());
        }),
        Case::new("raw ureq 3 (floor)", || {
            let mut r = ureq3
                .post(&url)
                .header("authorization", &auth)
                .header(
                    "content-type",
                    "application/x-www-form-urlencoded;charset=UTF-8",
                )
                .header("accept", "application/json")
                .send(FORM)
                .expect("send");
            let body = r.body_mut().read_to_vec().expect("body");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert!(v["access_token"].is_string());
        }),
    ];
    let latency = run_interleaved(&mut cases, rounds, Duration::from_millis(20));
    drop(cases);

    // Throughput: N tasks on a 2-worker runtime for a fixed time. Fresh clients: pooled
    // connections belong to the runtime that opened them.
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = mt.enter();
    let peer_client = reqwest012::Client::builder()
        .redirect(reqwest012::redirect::Policy::none())
        .build()
        .expect("reqwest 0.12");
    let reqwest_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest");
    let ours_async = class_oauth_reqwest::ReqwestTransport::from_client(
        reqwest_client.clone(),
        class_oauth_reqwest::TransportConfig::default(),
    );
    let mut throughput = Vec::new();
    for tasks in [1usize, 8, 64] {
        for variant in [
            "ours, async (reqwest)",
            "oauth2-rs 5, async (reqwest)",
            "raw reqwest (floor)",
        ] {
            let done = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_millis(1500);
            mt.block_on(async {
                let mut handles = Vec::new();
                for _ in 0..tasks {
                    let (done, c, http, peer, url, auth) = (
                        done.clone(),
                        our_client(base),
                        ours_async.clone(),
                        oauth2_client(base),
                        url.clone(),
                        auth.clone(),
                    );
                    let rc = reqwest_client.clone();
                    let pc = peer_client.clone();
                    handles.push(tokio::spawn(async move {
                        while Instant::now() < deadline {
                            match variant {
                                "ours, async (reqwest)" => {
                                    class_oauth_reqwest::drive(
                                        &http,
                                        TokenFlow::new(&c, our_request()),
                                    )
                                    .await
                                    .expect("exchange");
                                }
                                "oauth2-rs 5, async (reqwest)" => {
                                    peer.exchange_refresh_token(&oauth2::RefreshToken::new(
                                        "rt".into(),
                                    ))
                                    .request_async(&pc)
                                    .await
                                    .expect("exchange");
                                }
                                _ => {
                                    let r = rc
                                        .post(&url)
                                        .header("authorization", &auth)
                                        .body(FORM)
                                        .send()
                                        .await
                                        .expect("send");
                                    let b = r.bytes().await.expect("body");
                                    let _: serde_json::Value =
                                        serde_json::from_slice(&b).expect("json");
                                }
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
                for h in handles {
                    h.await.expect("task");
                }
            });
            throughput.push((
                variant.to_owned(),
                tasks,
                done.load(Ordering::Relaxed) as f64 / 1.5,
            ));
        }
    }
    ExchangeResults {
        latency,
        throughput,
    }
}
