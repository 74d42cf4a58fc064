//! The partner app in a real browser: headless Chromium, driven through ChromeDriver's
//! W3C WebDriver protocol (plain HTTP and JSON), against the Class emulator with its
//! consent page. A person's path: type a business code on the home page, "Connect to
//! Class", "Allow" on Class's consent page, the funds page; then "Deny" for another
//! business.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them where
//! missing). Without them the test says so and passes, unless
//! `CLASS_OAUTH_REQUIRE_BROWSER` is set (as in CI), when it fails.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use class_oauth_testkit::EmulatorConfig;
use serde_json::{Value, json};

mod common;
use common::start;

/// The flags the browser runs with: headless, as root (no sandbox), and nothing that
/// reaches the internet on its own.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
];

/// The WebDriver element reference key (W3C WebDriver 12.1).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One Chromium session through ChromeDriver.
struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: KillOnDrop,
    _profile: tempfile::TempDir,
}

fn find_program(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            std::path::PathBuf::from("/usr/bin"),
            "/usr/lib/chromium".into(),
        ])
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session, or `None` when they are not
    /// installed (a failure instead when `CLASS_OAUTH_REQUIRE_BROWSER` is set).
    async fn start() -> Option<Self> {
        // Debian's chromium; Chrome where it is the browser at hand (GitHub's runners).
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
        let driver = find_program(&["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let hint = "headless Chromium test: needs Debian's chromium and chromium-driver \
                        (apt-get install chromium chromium-driver)";
            assert!(
                std::env::var_os("CLASS_OAUTH_REQUIRE_BROWSER").is_none(),
                "{hint}; CLASS_OAUTH_REQUIRE_BROWSER is set"
            );
            eprintln!("SKIPPED {hint}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = KillOnDrop(
            Command::new(driver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        // The workspace builds reqwest without a default crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["value"]["ready"].as_bool()),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let session: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": args},
            }}}))
            .send()
            .await
            .expect("a WebDriver session")
            .json()
            .await
            .unwrap();
        let id = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_owned();
        Some(Self {
            http,
            session: format!("{base}/session/{id}"),
            _driver: process,
            _profile: profile,
        })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(answer["value"]["error"].is_null(), "{path}: {answer}");
        answer["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Waits (at most 20 s) until the page's path is `path`; returns the page's text.
    async fn wait_for(&self, path: &str) -> String {
        let started = Instant::now();
        loop {
            let url = self.command(reqwest::Method::GET, "/url", None).await;
            let at = url::Url::parse(url.as_str().unwrap()).unwrap();
            if at.path() == path {
                let body = self.element("body").await;
                let text = self
                    .command(reqwest::Method::GET, &format!("/element/{body}/text"), None)
                    .await;
                return text.as_str().unwrap().to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the browser reached {path} within 20 s (it is at {at})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

#[test]
fn a_person_connects_a_business_in_chromium_and_sees_its_funds() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(180), async {
                let Some(browser) = Browser::start().await else {
                    return;
                };
                let rig = start(EmulatorConfig::demo().with_consent_page()).await;
                let (here, emulator) = (&rig.base, &rig.emulator);

                // Home, a business code typed in, "Connect to Class".
                browser.goto(&format!("{here}/")).await;
                browser
                    .type_into("input[name=business]", "OAUTH_TEST")
                    .await;
                browser.click("form[action='/connect'] button").await;
                // Class's consent page: "Allow".
                let consent = browser.wait_for("/connect/authorize").await;
                assert!(consent.contains("Allow partner-app to access"), "{consent}");
                assert!(
                    consent.contains("Business: OAuth Test Business (OAUTH_TEST)"),
                    "{consent}"
                );
                browser.click("#allow").await;
                let funds = browser.wait_for("/funds/OAUTH_TEST").await;
                assert!(funds.contains("Funds of OAUTH_TEST"), "{funds}");
                assert!(
                    funds.contains("Sample Family Super Fund (SMSF01)"),
                    "{funds}"
                );
                assert_eq!(emulator.count("/connect/token"), 1);

                // Back home: the business is listed. Another one, refused at consent.
                browser.goto(&format!("{here}/")).await;
                let home = browser.wait_for("/").await;
                assert!(home.contains("OAUTH_TEST (active)"), "{home}");
                browser
                    .type_into("input[name=business]", "SECOND_BIZ")
                    .await;
                browser.click("form[action='/connect'] button").await;
                browser.wait_for("/connect/authorize").await;
                browser.click("#deny").await;
                let denied = browser.wait_for("/callback").await;
                assert!(denied.contains("Access not granted"), "{denied}");
                assert!(denied.contains("access_denied"), "{denied}");
                assert_eq!(emulator.count("/connect/token"), 1, "nothing redeemed");
                browser.quit().await;
            })
            .await
        })
        .expect("the browser test finished within 180 s");
}
