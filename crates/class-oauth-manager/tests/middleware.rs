//! The token middleware (reqwest-middleware and tower) against the Class emulator:
//! Bearer and `Accept` added, one renewal on a 401, a 429 waited out within its bound
//! and returned at once beyond it, the tenant taken from the request.

#![cfg(all(feature = "reqwest-middleware", feature = "tower"))]

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use class_oauth_core::api::ACCEPT_V1_JSON;
use class_oauth_manager::middleware::ClassAuth;
use class_oauth_manager::{ManagerError, TenantKey};
use class_oauth_testkit::Fault;
use common::{Face, Manager, Options, Rig, StoreKind};
use tower::{Service as _, ServiceExt as _};

const API: &str = "/api/1.0/b/OAUTH_TEST/fund/list";

fn rig() -> Rig {
    let rig = Rig::new(Face::Async, StoreKind::Memory, Options::default());
    rig.login(false);
    rig
}

fn async_manager(rig: &Rig) -> common::AsyncManager {
    match &rig.manager {
        Manager::Async(m) => m.clone(),
        Manager::Blocking(_) => unreachable!("built with Face::Async"),
    }
}

/// The transport's client: rustls on ring, as configured by class-oauth-reqwest.
fn http_client() -> reqwest::Client {
    class_oauth_reqwest::ReqwestTransport::new()
        .unwrap()
        .client()
        .clone()
}

fn url(rig: &Rig) -> String {
    format!("{}{API}", rig.emulator.issuer().trim_end_matches('/'))
}

/// The headers the emulator saw on its `n`th API call (0-based).
fn api_call(rig: &Rig, n: usize) -> (u16, Vec<(String, String)>) {
    let calls: Vec<_> = rig
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.path == API)
        .collect();
    let r = calls
        .get(n)
        .unwrap_or_else(|| panic!("no API call #{n}: {calls:?}"));
    (r.status, r.headers.clone())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn bounded<F: Future>(rig: &Rig, f: F) -> F::Output {
    rig.rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), f).await })
        .expect("the middleware test finished within 30 s")
}

#[test]
fn reqwest_middleware_authorizes_and_renews_once_on_a_401() {
    let rig = rig();
    let manager = async_manager(&rig);
    let http = reqwest_middleware::ClientBuilder::new(http_client())
        .with(ClassAuth::new(manager).tenant(rig.key.clone()))
        .build();
    let url = url(&rig);
    bounded(&rig, async {
        let ok = http.get(&url).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        let body: serde_json::Value = serde_json::from_str(&ok.text().await.unwrap()).unwrap();
        assert!(body["Data"]["Funds"].is_array(), "{body}");
    });
    let (_, headers) = api_call(&rig, 0);
    assert_eq!(header(&headers, "accept"), Some(ACCEPT_V1_JSON));
    assert_eq!(
        header(&headers, "user-agent"),
        Some(class_oauth_reqwest::USER_AGENT)
    );
    let first_token = header(&headers, "authorization").unwrap().to_owned();
    assert!(first_token.starts_with("Bearer "), "{first_token}");
    assert_eq!(rig.refreshes().0, 0);

    // Class ends the session early: a 401, one refresh, the call sent again.
    rig.emulator.expire_access_tokens();
    bounded(&rig, async {
        assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    });
    assert_eq!(rig.refreshes().0, 1, "one refresh for the 401");
    let (rejected, _) = api_call(&rig, 1);
    let (accepted, headers) = api_call(&rig, 2);
    assert_eq!((rejected, accepted), (401, 200));
    assert_ne!(header(&headers, "authorization").unwrap(), first_token);

    // A 401 that persists after the renewal is returned, not looped on.
    rig.emulator.inject(API, Fault::Status(401), 2);
    bounded(&rig, async {
        assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    });
    assert_eq!(rig.refreshes().0, 2, "exactly one more refresh");
    rig.assert_no_refresh_token_presented_twice();
}

#[test]
fn reqwest_middleware_waits_out_a_429_within_the_bound_only() {
    let rig = rig();
    let manager = async_manager(&rig);
    let url = url(&rig);
    let within = reqwest_middleware::ClientBuilder::new(http_client())
        .with(
            ClassAuth::new(manager.clone())
                .tenant(rig.key.clone())
                .max_wait(Duration::from_secs(3)),
        )
        .build();
    rig.emulator
        .inject(API, Fault::TooManyRequests { reset_after: 1 }, 1);
    let started = Instant::now();
    bounded(&rig, async {
        assert_eq!(within.get(&url).send().await.unwrap().status(), 200);
    });
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited the 1 s asked"
    );

    // Beyond the bound: the 429 comes back at once, for the caller to schedule.
    rig.emulator
        .inject(API, Fault::TooManyRequests { reset_after: 30 }, 1);
    let started = Instant::now();
    bounded(&rig, async {
        let r = within.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["x-ratelimit-resetafter"], "30");
    });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no wait beyond the bound"
    );
}

#[test]
fn reqwest_middleware_takes_the_tenant_from_the_request() {
    let rig = rig();
    let manager = async_manager(&rig);
    let http = reqwest_middleware::ClientBuilder::new(http_client())
        .with(ClassAuth::new(manager))
        .build();
    let url = url(&rig);
    bounded(&rig, async {
        let ok = http
            .get(&url)
            .with_extension(rig.key.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        // No tenant anywhere: a typed error that says so, and nothing sent.
        let err = http.get(&url).send().await.unwrap_err();
        let reqwest_middleware::Error::Middleware(e) = err else {
            panic!("{err:?}")
        };
        let e = e.downcast_ref::<ManagerError>().expect("a ManagerError");
        assert!(
            matches!(e, ManagerError::Config(m) if m.contains("tenant")),
            "{e}"
        );
        // A tenant with no grant: the manager's own error, kept.
        let unknown = TenantKey::new(&class_oauth_core::ClientId::new("demo-client"), "NOBODY");
        let err = http
            .get(&url)
            .with_extension(unknown)
            .send()
            .await
            .unwrap_err();
        let reqwest_middleware::Error::Middleware(e) = err else {
            panic!("{err:?}")
        };
        let e = e.downcast_ref::<ManagerError>().expect("a ManagerError");
        assert!(e.requires_reauthorization(), "{e:?}");
    });
    assert_eq!(
        rig.emulator.count(API),
        1,
        "only the call with a tenant was sent"
    );
}

/// An inner tower service that sends `http::Request<String>` with reqwest.
fn reqwest_service(
    client: reqwest::Client,
) -> impl tower::Service<
    http::Request<String>,
    Response = http::Response<String>,
    Error = reqwest::Error,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |req: http::Request<String>| {
        let client = client.clone();
        async move {
            let req = reqwest::Request::try_from(req)?;
            let resp = client.execute(req).await?;
            let mut out = http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                out = out.header(k, v);
            }
            Ok(out.body(resp.text().await?).unwrap())
        }
    })
}

#[test]
fn tower_layer_authorizes_renews_and_waits() {
    let rig = rig();
    let manager = async_manager(&rig);
    let url = url(&rig);
    let mut service = tower::ServiceBuilder::new()
        .layer(ClassAuth::new(manager).max_wait(Duration::from_secs(3)))
        .service(reqwest_service(http_client()));
    let request = |key: &TenantKey| {
        let mut r = http::Request::get(&url).body(String::new()).unwrap();
        r.extensions_mut().insert(key.clone());
        r
    };
    bounded(&rig, async {
        let r = service.clone().oneshot(request(&rig.key)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.body().contains("Funds"), "{}", r.body());
    });
    let (_, headers) = api_call(&rig, 0);
    assert_eq!(header(&headers, "accept"), Some(ACCEPT_V1_JSON));
    assert!(
        header(&headers, "authorization")
            .unwrap()
            .starts_with("Bearer ")
    );

    rig.emulator.expire_access_tokens();
    rig.emulator
        .inject(API, Fault::TooManyRequests { reset_after: 1 }, 1);
    bounded(&rig, async {
        // 429 (waited out), then 401 (renewed), then 200.
        let r = service.clone().oneshot(request(&rig.key)).await.unwrap();
        assert_eq!(r.status(), 200);
    });
    let statuses: Vec<u16> = (1..4).map(|n| api_call(&rig, n).0).collect();
    assert_eq!(statuses, [429, 401, 200]);
    assert_eq!(rig.refreshes().0, 1);

    // No tenant: the manager's error inside the BoxError.
    bounded(&rig, async {
        let bare = http::Request::get(&url).body(String::new()).unwrap();
        let err = service.ready().await.unwrap().call(bare).await.unwrap_err();
        assert!(err.downcast_ref::<ManagerError>().is_some(), "{err}");
    });
}
