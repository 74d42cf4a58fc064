//! The router and the extractors against the Class emulator, driven like a browser (a
//! cookie jar; redirects followed or taken one by one).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Redirect};
use axum::routing;
use class_oauth_axum::{
    ClassConnect, Connected, Denied, ErrorFormat, Key, Rejection, TenantApi, TenantToken,
};
use class_oauth_core::scope::Scopes;
use class_oauth_core::{ClientId, ClientSecret, Environment, IssuerUrl, RedirectUrl};
use class_oauth_manager::TokenManager;
use class_oauth_reqwest::ClassClient;
use class_oauth_store::{Encryption, EncryptionKey, KeyRing, SqliteStore};
use class_oauth_testkit::{ClassEmulator, ClientRegistration, EmulatorConfig, Fault};

/// The application's signed-in user, as a layer of its own would record it.
#[derive(Clone, Copy)]
struct AppUser(&'static str);

/// Each refusal the denied hook saw: the business asked for and Class's error code.
type Refusals = Arc<Mutex<Vec<(Option<String>, String)>>>;

struct Rig {
    base: String,
    emulator: ClassEmulator,
    connected: Arc<Mutex<Vec<String>>>,
    denied: Refusals,
    _dir: tempfile::TempDir,
}

async fn funds(api: TenantApi) -> Result<String, Rejection> {
    let json: serde_json::Value = api.get_data("fund/list").await?;
    let names: Vec<&str> = json["Funds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["Name"].as_str())
        .collect();
    Ok(format!("{}: {}", api.business(), names.join(", ")))
}

async fn token(token: TenantToken) -> String {
    format!(
        "{} has a token of {} bytes",
        token.business(),
        token.secret().len()
    )
}

async fn start(format: ErrorFormat) -> Rig {
    start_with(format, EmulatorConfig::demo()).await
}

async fn start_with(format: ErrorFormat, config: EmulatorConfig) -> Rig {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let emulator = ClassEmulator::start(
        config.client(
            ClientRegistration::new("partner-app", "partner-secret")
                .redirect_uri(format!("{base}/oauth/callback")),
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = ClassClient::builder(
        Environment::Custom(IssuerUrl::new(&emulator.issuer()).unwrap()),
        ClientId::new("partner-app"),
    )
    .secret(ClientSecret::new("partner-secret"))
    .build()
    .unwrap();
    let store = SqliteStore::open(
        dir.path().join("tenants.sqlite3"),
        Encryption::Keys(KeyRing::new(EncryptionKey::generate("k1").unwrap())),
    )
    .unwrap();
    let manager = TokenManager::new(client, store);
    let connected = Arc::new(Mutex::new(Vec::new()));
    let denied = Arc::new(Mutex::new(Vec::new()));
    let (c, d) = (connected.clone(), denied.clone());
    let class = ClassConnect::builder(
        manager,
        RedirectUrl::new(&format!("{base}/oauth/callback")).unwrap(),
        Key::generate(),
    )
    .scopes(
        Scopes::parse("openid profile class_profile offline_access business.fund.list").unwrap(),
    )
    .error_format(format)
    .on_connected(move |x: Connected| {
        c.lock().unwrap().push(x.business.to_string());
        // What the app's own layers put in the request reaches the hook.
        let user = x
            .request
            .extensions
            .get::<AppUser>()
            .map_or("nobody", |u| u.0);
        async move {
            (
                [("x-connected-by", user)],
                Redirect::to(&format!("/funds/{}", x.business)),
            )
        }
    })
    .on_denied(move |x: Denied| {
        d.lock()
            .unwrap()
            .push((x.business.map(|b| b.to_string()), x.error.code.to_string()));
        async { (http::StatusCode::FORBIDDEN, "not granted: try again later").into_response() }
    })
    .build()
    .unwrap();
    let router: Router = Router::new()
        .route("/funds/{business}", routing::get(funds))
        .route("/token/{business}", routing::get(token))
        .route("/misrouted/{code}", routing::get(token))
        .merge(class.router())
        .layer(axum::Extension(AppUser("app-user-1")))
        .with_state(class);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Rig {
        base,
        emulator,
        connected,
        denied,
        _dir: dir,
    }
}

fn browser(follow: bool) -> reqwest::Client {
    // The workspace builds reqwest without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(if follow {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .build()
        .unwrap()
}

async fn get(b: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = b.get(url).send().await.unwrap();
    let (status, at) = (r.status().as_u16(), r.url().path().to_owned());
    (status, at, r.text().await.unwrap())
}

/// Follows one step of a flow by hand: the `Location` of a redirect.
async fn location(b: &reqwest::Client, url: &str) -> String {
    let r = b.get(url).send().await.unwrap();
    assert!(r.status().is_redirection(), "{url}: HTTP {}", r.status());
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn bounded<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), f).await })
        .expect("the test finished within 60 s")
}

#[test]
fn a_connected_business_is_reached_through_both_extractors() {
    bounded(async {
        let rig = start(ErrorFormat::Html).await;
        let b = browser(true);
        let (status, at, page) =
            get(&b, &format!("{}/connect?business=OAUTH_TEST", rig.base)).await;
        assert_eq!((status, at.as_str()), (200, "/funds/OAUTH_TEST"), "{page}");
        assert!(
            page.contains("OAUTH_TEST: Sample Family Super Fund"),
            "{page}"
        );
        assert_eq!(*rig.connected.lock().unwrap(), ["OAUTH_TEST"]);

        let (status, _, page) = get(&b, &format!("{}/token/OAUTH_TEST", rig.base)).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.starts_with("OAUTH_TEST has a token of"), "{page}");

        // Class ends the sessions early: one refresh behind the page.
        rig.emulator.expire_access_tokens();
        let (status, _, page) = get(&b, &format!("{}/funds/OAUTH_TEST", rig.base)).await;
        assert_eq!(status, 200, "{page}");
        let refreshes = rig
            .emulator
            .requests()
            .iter()
            .filter(|r| r.path == "/connect/token" && r.body.contains("grant_type=refresh_token"))
            .count();
        assert_eq!(refreshes, 1);

        // What Class (or a proxy in front of it) may answer instead: a typed failure
        // page, never a panic; a short 429 is waited out behind the page.
        for (fault, expect) in [
            (Fault::Html502, "HTTP 502"),
            (Fault::TruncatedJson, "JSON"),
            (Fault::Oversized(2 << 20), "exceeds the 1048576-byte limit"),
        ] {
            rig.emulator.inject("/api/", fault, 1);
            let (status, _, page) = get(&b, &format!("{}/funds/OAUTH_TEST", rig.base)).await;
            assert_eq!(status, 502, "{page}");
            assert!(page.contains(expect), "{expect}: {page}");
        }
        rig.emulator
            .inject("/api/", Fault::TooManyRequests { reset_after: 1 }, 1);
        let (status, _, page) = get(&b, &format!("{}/funds/OAUTH_TEST", rig.base)).await;
        assert_eq!(status, 200, "{page}");

        // Revoked in Class: both extractors send the user to connect again.
        rig.emulator.revoke_partner_access("OAUTH_TEST");
        rig.emulator.expire_access_tokens();
        for path in ["funds", "token"] {
            let (status, _, page) = get(&b, &format!("{}/{path}/OAUTH_TEST", rig.base)).await;
            assert_eq!(status, 401, "{path}: {page}");
            assert!(
                page.contains("href=\"/connect?business=OAUTH_TEST\""),
                "{path}: {page}"
            );
        }
        // Never connected, a malformed code, a route without the parameter.
        let (status, _, page) = get(&b, &format!("{}/funds/NOBODY", rig.base)).await;
        assert_eq!(status, 401, "{page}");
        let (status, _, page) = get(&b, &format!("{}/funds/no%20such", rig.base)).await;
        assert_eq!(status, 400, "{page}");
        let (status, _, page) = get(&b, &format!("{}/misrouted/OAUTH_TEST", rig.base)).await;
        assert_eq!(status, 500, "{page}");
        assert!(page.contains("no `{business}` parameter"), "{page}");
    });
}

#[test]
fn another_browser_a_forged_cookie_and_a_replay_are_refused() {
    bounded(async {
        let rig = start(ErrorFormat::Html).await;
        let me = browser(false);
        let consent = location(&me, &format!("{}/connect?business=OAUTH_TEST", rig.base)).await;
        let callback = location(&me, &consent).await;
        assert!(
            callback.starts_with(&format!("{}/oauth/callback?", rig.base)),
            "{callback}"
        );
        let state = url::Url::parse(&callback)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();

        // Another browser, without the cookie: refused, and nothing used up.
        let (status, _, page) = get(&browser(false), &callback).await;
        assert_eq!(status, 400, "{page}");
        assert!(page.contains("not started in this browser"), "{page}");

        // A cookie of the right name holding the state in clear (what a sibling domain
        // could plant): refused, it is not sealed under the app's key.
        let forged = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(&callback)
            .header("cookie", format!("class_oauth_{}={state}", &state[..16]))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 400);

        // The browser that started it: connected, and the cookie removed.
        let r = me.get(&callback).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/funds/OAUTH_TEST");
        let cleared = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().contains("Max-Age=0"));
        assert!(cleared, "{:?}", r.headers());
        assert_eq!(r.headers()["x-connected-by"], "app-user-1");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        assert_eq!(r.headers()["cache-control"], "no-store");

        // A replay (cookie set again by hand, as an attacker holding both would): the
        // pending record is gone.
        assert_eq!(
            rig.emulator.count("/connect/token"),
            1,
            "the code was redeemed once"
        );
        let r = me.get(&callback).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(rig.emulator.count("/connect/token"), 1);
    });
}

#[test]
fn two_tabs_connect_two_businesses_at_once() {
    bounded(async {
        let rig = start(ErrorFormat::Html).await;
        let me = browser(false);
        // Both consents start before either callback comes back.
        let first = location(&me, &format!("{}/connect?business=OAUTH_TEST", rig.base)).await;
        let second = location(&me, &format!("{}/connect?business=SECOND_BIZ", rig.base)).await;
        let first = location(&me, &first).await;
        let second = location(&me, &second).await;
        for (callback, business) in [(second, "SECOND_BIZ"), (first, "OAUTH_TEST")] {
            let r = me.get(&callback).send().await.unwrap();
            assert_eq!(r.status(), 303, "{business}");
            assert_eq!(
                r.headers()["location"],
                format!("/funds/{business}").as_str()
            );
        }
        assert_eq!(*rig.connected.lock().unwrap(), ["SECOND_BIZ", "OAUTH_TEST"]);
    });
}

#[test]
fn the_business_picked_at_consent_is_the_one_stored() {
    bounded(async {
        let rig = start(ErrorFormat::Html).await;
        let b = browser(true);
        // No business named: `target:b`, the user picks (the emulator: their first).
        let (status, at, page) = get(&b, &format!("{}/connect", rig.base)).await;
        assert_eq!((status, at.as_str()), (200, "/funds/OAUTH_TEST"), "{page}");
        let asked = rig.emulator.requests();
        let authorize = asked
            .iter()
            .find(|r| r.path == "/connect/authorize")
            .unwrap();
        let query = authorize.query.clone().unwrap_or_default();
        let scope = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        assert!(scope.split(' ').any(|s| s == "target:b"), "{scope}");
    });
}

#[test]
fn the_user_picks_the_business_on_the_consent_page() {
    bounded(async {
        let rig = start_with(
            ErrorFormat::Html,
            EmulatorConfig::demo().with_consent_page(),
        )
        .await;
        let b = browser(false);
        let consent = location(&b, &format!("{}/connect", rig.base)).await;
        let page = b.get(&consent).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("<option value=\"SECOND_BIZ\">"), "{page}");
        let ticket = page
            .split("name=\"ticket\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        let answer = [
            ("ticket", ticket.as_str()),
            ("decision", "allow"),
            ("business", "SECOND_BIZ"),
        ];
        let consent_url = format!("{}/connect/authorize/consent", rig.emulator.issuer());
        let r = b.post(&consent_url).form(&answer).send().await.unwrap();
        assert_eq!(r.status(), 302);
        let callback = r.headers()["location"].to_str().unwrap().to_owned();
        let r = b.get(&callback).send().await.unwrap();
        assert_eq!(r.headers()["location"], "/funds/SECOND_BIZ");
        assert_eq!(*rig.connected.lock().unwrap(), ["SECOND_BIZ"]);
        // A consent answers once.
        let r = b.post(&consent_url).form(&answer).send().await.unwrap();
        assert_eq!(r.status(), 400);
    });
}

#[test]
fn a_refusal_reaches_the_denied_hook_and_errors_can_be_json() {
    bounded(async {
        let rig = start(ErrorFormat::Json).await;
        let b = browser(true);
        rig.emulator.deny_next_authorization("access_denied");
        let (status, at, page) =
            get(&b, &format!("{}/connect?business=SECOND_BIZ", rig.base)).await;
        assert_eq!((status, at.as_str()), (403, "/oauth/callback"), "{page}");
        assert_eq!(page, "not granted: try again later");
        assert_eq!(
            *rig.denied.lock().unwrap(),
            [(Some("SECOND_BIZ".to_owned()), "access_denied".to_owned())]
        );
        assert!(rig.connected.lock().unwrap().is_empty());
        assert_eq!(rig.emulator.count("/connect/token"), 0);

        let r = b
            .get(format!("{}/funds/NOBODY", rig.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["content-type"], "application/json");
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["error"], "not_connected");
        assert_eq!(json["business"], "NOBODY");
        assert_eq!(json["connect"], "/connect?business=NOBODY");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );

        // A callback with no state at all.
        let r = b
            .get(format!("{}/oauth/callback?code=x", rig.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["error"], "bad_request");
    });
}

#[test]
fn scopes_that_cannot_keep_a_grant_are_refused_at_build() {
    bounded(async {
        let client = ClassClient::builder(Environment::Pie, ClientId::new("x"))
            .build()
            .unwrap();
        let manager = TokenManager::new(client, class_oauth_store::MemoryStore::new());
        let redirect = RedirectUrl::new("https://app.example/callback").unwrap();
        for scopes in [
            "openid business.fund.list",
            "openid offline_access target:b/OAUTH_TEST",
        ] {
            let e = ClassConnect::builder(manager.clone(), redirect.clone(), Key::generate())
                .scopes(Scopes::parse(scopes).unwrap())
                .build()
                .unwrap_err();
            assert!(
                matches!(e, class_oauth_axum::BuildError::Scopes(_)),
                "{scopes}: {e}"
            );
        }
        let e = ClassConnect::builder(manager, redirect, Key::generate())
            .connect_path("connect")
            .build()
            .unwrap_err();
        assert!(matches!(e, class_oauth_axum::BuildError::Path(_)), "{e}");
    });
}
