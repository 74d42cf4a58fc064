//! A token endpoint with Class's refresh semantics for manager tests: one-time refresh
//! tokens rotated on every refresh, and reuse detection that revokes the whole grant (so
//! a client that spends a refresh token twice loses the tenant). Counts what it saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use class_oauth_core::scope::Scopes;
use class_oauth_core::token::{TokenRequest, TokenSet};
use class_oauth_core::{Client, ClientId, Environment, IssuerUrl, RefreshToken};
use serde_json::json;
use wiremock::{Request, Respond, ResponseTemplate};

#[derive(Default, Debug)]
struct State {
    /// refresh token -> (grant id, still current?)
    tokens: HashMap<String, (u64, bool)>,
    revoked: HashMap<u64, bool>,
    next: u64,
    refreshes: usize,
    invalid_grants: usize,
    reuse_detected: usize,
}

/// Counters of what the server saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// refresh_token grant requests.
    pub refreshes: usize,
    /// invalid_grant answers.
    pub invalid_grants: usize,
    /// Reuses of a spent refresh token (each revoked its grant).
    pub reuse_detected: usize,
}

/// The server; clone it into `respond_with` and keep a clone to seed and count.
#[derive(Clone, Debug, Default)]
pub struct OneTimeTokenServer {
    state: Arc<Mutex<State>>,
    delay: Duration,
    lifetime: u64,
}

impl OneTimeTokenServer {
    /// A server issuing 899-second access tokens, answering at once.
    #[must_use]
    pub fn new() -> Self {
        Self {
            lifetime: 899,
            ..Self::default()
        }
    }

    /// Answers every request after `delay` (past the client's timeout: the refresh is
    /// spent but the response lost).
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Issues a grant and returns its first refresh token.
    #[must_use]
    pub fn issue(&self) -> String {
        let mut s = self.state();
        s.next += 1;
        let id = s.next;
        let rt = format!("rt-{id}-0");
        s.tokens.insert(rt.clone(), (id, true));
        s.revoked.insert(id, false);
        rt
    }

    /// Starts a mock server answering `POST /connect/token` with this server (requests
    /// not recorded: storms send thousands).
    pub async fn serve(&self) -> wiremock::MockServer {
        let server = wiremock::MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path("/connect/token"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }

    /// Whether `refresh_token` is the current (unspent) refresh token of a live grant.
    #[must_use]
    pub fn is_current(&self, refresh_token: &str) -> bool {
        let s = self.state();
        s.tokens
            .get(refresh_token)
            .is_some_and(|&(id, current)| current && !s.revoked.get(&id).copied().unwrap_or(true))
    }

    /// What the server saw.
    #[must_use]
    pub fn counts(&self) -> Counts {
        let s = self.state();
        Counts {
            refreshes: s.refreshes,
            invalid_grants: s.invalid_grants,
            reuse_detected: s.reuse_detected,
        }
    }
}

fn invalid_grant(desc: &str) -> ResponseTemplate {
    ResponseTemplate::new(400)
        .set_body_json(json!({"error": "invalid_grant", "error_description": desc}))
}

impl Respond for OneTimeTokenServer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let template = {
            let mut s = self.state();
            if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
                return ResponseTemplate::new(400)
                    .set_body_json(json!({"error": "unsupported_grant_type"}));
            }
            s.refreshes += 1;
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            match s.tokens.get(&rt).copied() {
                None => {
                    s.invalid_grants += 1;
                    invalid_grant("unknown refresh token")
                }
                Some((id, _)) if s.revoked.get(&id).copied().unwrap_or(true) => {
                    s.invalid_grants += 1;
                    invalid_grant("the grant was revoked")
                }
                Some((id, false)) => {
                    // Reuse of a spent token: revoke the whole grant.
                    s.reuse_detected += 1;
                    s.invalid_grants += 1;
                    s.revoked.insert(id, true);
                    invalid_grant("refresh token reuse detected; the grant is revoked")
                }
                Some((id, true)) => {
                    s.tokens.insert(rt.clone(), (id, false));
                    s.next += 1;
                    let n = s.next;
                    let new_rt = format!("rt-{id}-{n}");
                    s.tokens.insert(new_rt.clone(), (id, true));
                    ResponseTemplate::new(200).set_body_json(json!({
                        "access_token": format!("at-{id}-{n}"),
                        "token_type": "bearer",
                        "expires_in": self.lifetime,
                        "refresh_token": new_rt,
                        "scope": "target:b/OAUTH_TEST offline_access fund.read",
                        "BusinessName": "OAuth Test Business",
                        "BusinessCode": "OAUTH_TEST"
                    }))
                }
            }
        };
        template.set_delay(self.delay)
    }
}

/// A token set as a client would have stored it: `access_token`, `refresh_token`,
/// received at `received_at` with `expires_in`.
///
/// # Panics
/// Never for valid input.
#[must_use]
pub fn token_set(
    access_token: &str,
    refresh_token: &str,
    expires_in: u64,
    received_at: SystemTime,
) -> TokenSet {
    let client = Client::new(
        ClientId::new(crate::CLIENT_ID),
        Environment::Custom(IssuerUrl::new("https://class.test").expect("issuer")).preset(),
    );
    let body = json!({"access_token": access_token, "token_type": "bearer", "expires_in": expires_in, "refresh_token": refresh_token,
                      "scope": "target:b/OAUTH_TEST offline_access fund.read"});
    let resp = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .expect("response");
    let request = TokenRequest::refresh_token(RefreshToken::new(refresh_token), Scopes::default());
    class_oauth_core::flow::drive_blocking(
        class_oauth_core::flow::TokenFlow::new(&client, request),
        || received_at,
        |_| Ok(resp.clone()),
        |_| {},
    )
    .expect("token set")
    .tokens
}
