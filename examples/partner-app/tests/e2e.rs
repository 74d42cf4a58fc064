//! The partner app driven like a browser (a cookie jar, redirects followed) against the
//! Class emulator: connect two businesses, list their funds through the middleware, a
//! 401 renewed behind the page, a forged or replayed callback refused, a revoked
//! business sent back to "Connect to Class".

use std::future::Future;
use std::time::Duration;

use class_oauth_testkit::EmulatorConfig;

mod common;
use common::start;

/// A browser: cookies kept, redirects followed.
fn browser() -> reqwest::Client {
    // The workspace builds reqwest without a default crypto provider; a browser of our
    // own needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::limited(10))
        .build()
        .unwrap()
}

async fn get(browser: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = browser.get(url).send().await.unwrap();
    let (status, at) = (r.status().as_u16(), r.url().path().to_owned());
    (status, at, r.text().await.unwrap())
}

fn bounded<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), f).await })
        .expect("the end-to-end test finished within 60 s")
}

#[test]
fn connect_two_businesses_and_list_their_funds() {
    bounded(async {
        let rig = start(EmulatorConfig::demo()).await;
        let b = browser();
        let (status, _, home) = get(&b, &format!("{}/", rig.base)).await;
        assert_eq!(status, 200);
        assert!(home.contains("Connect to Class"), "{home}");

        // Connect: consent redirect, callback, tokens stored, the funds page.
        let (status, at, page) =
            get(&b, &format!("{}/connect?business=OAUTH_TEST", rig.base)).await;
        assert_eq!((status, at.as_str()), (200, "/funds/OAUTH_TEST"), "{page}");
        assert!(page.contains("Sample Family Super Fund"), "{page}");
        assert_eq!(rig.emulator.count("/connect/authorize"), 1);

        let (status, at, page) =
            get(&b, &format!("{}/connect?business=SECOND_BIZ", rig.base)).await;
        assert_eq!((status, at.as_str()), (200, "/funds/SECOND_BIZ"), "{page}");

        let (_, _, home) = get(&b, &format!("{}/", rig.base)).await;
        assert!(
            home.contains("/funds/OAUTH_TEST") && home.contains("/funds/SECOND_BIZ"),
            "{home}"
        );

        // Class ends the sessions early: the page still loads (one refresh, behind it).
        let refreshes = || {
            rig.emulator
                .requests()
                .iter()
                .filter(|r| {
                    r.path == "/connect/token" && r.body.contains("grant_type=refresh_token")
                })
                .count()
        };
        rig.emulator.expire_access_tokens();
        let (status, _, page) = get(&b, &format!("{}/funds/OAUTH_TEST", rig.base)).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Retirement Pension Fund"), "{page}");
        assert_eq!(refreshes(), 1);

        // Access revoked in Class: the page asks to connect again.
        rig.emulator.revoke_partner_access("SECOND_BIZ");
        rig.emulator.expire_access_tokens();
        let (status, _, page) = get(&b, &format!("{}/funds/SECOND_BIZ", rig.base)).await;
        assert_eq!(status, 401, "{page}");
        assert!(page.contains("/connect?business=SECOND_BIZ"), "{page}");

        // A business never connected: the same.
        let (status, _, _) = get(&b, &format!("{}/funds/NOBODY", rig.base)).await;
        assert_eq!(status, 401);
    });
}

#[test]
fn a_callback_from_another_browser_or_a_replay_is_refused() {
    bounded(async {
        let rig = start(EmulatorConfig::demo()).await;
        // Step by step: no redirects followed, so the callback URL can be replayed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let manual = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = manual
            .get(format!("{}/connect?business=OAUTH_TEST", rig.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let consent = r.headers()["location"].to_str().unwrap().to_owned();
        let r = manual.get(&consent).send().await.unwrap();
        let callback = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            callback.starts_with(&format!("{}/callback?", rig.base)),
            "{callback}"
        );

        // Another browser (no state cookie) presenting this callback: refused, and the
        // sign-in is not used up.
        let other = browser();
        let (status, _, page) = get(&other, &callback).await;
        assert_eq!(status, 400, "{page}");
        assert!(page.contains("not started in this browser"), "{page}");

        // The browser that started it: connected.
        let r = manual.get(&callback).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/funds/OAUTH_TEST");

        // The same callback again: the pending record is gone.
        let r = manual.get(&callback).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            rig.emulator.count("/connect/token"),
            1,
            "the code was redeemed once"
        );
    });
}
