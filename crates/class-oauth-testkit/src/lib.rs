//! # class-oauth-testkit
//!
//! A stateful emulator of the Class (Class Super) identity provider, on wiremock, for
//! tests of Class integrations that must run offline. Start it from an async test
//! ([`ClassEmulator::start`]) or a blocking one ([`ClassEmulator::start_blocking`]); it
//! returns an issuer URL to point any client at.
//!
//! It serves what Class serves, the way Class answers (lower-case `bearer`, `expires_in`
//! 899, `BusinessName`/`BusinessCode`, `target:b/<CODE>` in the granted scope):
//! - `/.well-known/openid-configuration` (optional: Class may publish none) and a key set
//!   with rotation ([`ClassEmulator::rotate_keys`]);
//! - `/connect/authorize`: auto-consent as the "logged-in" user, or a scripted denial
//!   ([`ClassEmulator::deny_next_authorization`]); honours `prompt=none`, `target:b`
//!   (the user's first business) and `target:b/<CODE>`; exact redirect-URI match;
//! - `/connect/token`: `authorization_code` (single use, bound to the redirect URI and
//!   PKCE), `password`, and `refresh_token` (one-time, rotated, reuse revokes the grant);
//!   HTTP Basic client authentication;
//! - `/connect/userinfo` (also `/api/1.0/u/connect/userinfo`): standard and
//!   `class_profile` claims;
//! - `/connect/revocation` (RFC 7009);
//! - `/api/1.0/b/<CODE>/fund/list`: a Class API with the `Errors` envelope and the
//!   `X-RateLimit-*` headers (429 past the per-client limit);
//! - fault injection ([`ClassEmulator::inject`]): 5xx, an HTML 502, delays (a delay past
//!   the client's timeout after a rotation is a "dropped connection"), 429;
//! - revoking a grant as a user would in "Partner Application Access"
//!   ([`ClassEmulator::revoke_partner_access`]).
//!
//! Every request is recorded ([`ClassEmulator::requests`]).
//!
//! ```no_run
//! use class_oauth_testkit::{ClassEmulator, EmulatorConfig};
//! let emulator = ClassEmulator::start_blocking(EmulatorConfig::demo());
//! println!("issuer: {}", emulator.issuer());
//! ```
//!
//! The signing keys ship with this crate: never trust a token the emulator signed.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::exhaustive_enums, clippy::exhaustive_structs)]

mod config;
mod consent;
mod endpoints;
pub mod example;
pub mod keys;
mod recording;
mod reply;
mod state;
mod tokens;

pub use config::{Business, ClientRegistration, EmulatorConfig, RefreshTokenMode, User};
pub use recording::{Fault, RecordedRequest};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use crate::keys::TestKey;
use crate::recording::Router;
use crate::state::State;

/// What the token endpoint did with refresh grants ([`ClassEmulator::refresh_counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshCounts {
    /// `refresh_token` grant requests.
    pub refreshes: usize,
    /// `invalid_grant` answers to them.
    pub invalid_grants: usize,
    /// Spent refresh tokens presented again (each revoked its grant).
    pub reuse_detected: usize,
}

/// A running emulator. Drop it to stop it.
pub struct ClassEmulator {
    server: Option<MockServer>,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for ClassEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassEmulator")
            .field("issuer", &self.issuer())
            .finish_non_exhaustive()
    }
}

impl ClassEmulator {
    /// Starts an emulator (from async code).
    pub async fn start(config: EmulatorConfig) -> Self {
        Self::serve(MockServer::start().await, config).await
    }

    /// Starts an emulator on `listener` (a chosen port, for a standalone server other
    /// programs can reach: `class-oauth emulator --port 8790`).
    pub async fn start_on(listener: std::net::TcpListener, config: EmulatorConfig) -> Self {
        let server = MockServer::builder().listener(listener).start().await;
        Self::serve(server, config).await
    }

    /// Starts an emulator on `listener` from blocking code (its own threads).
    ///
    /// # Panics
    /// As [`ClassEmulator::start_blocking`].
    #[must_use]
    pub fn start_blocking_on(listener: std::net::TcpListener, config: EmulatorConfig) -> Self {
        Self::on_own_runtime(Self::start_on(listener, config))
    }

    /// Runs `start` on a runtime of its own, which the emulator then keeps.
    fn on_own_runtime(start: impl Future<Output = Self>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the emulator");
        let mut emulator = runtime.block_on(start);
        emulator.runtime = Some(runtime);
        emulator
    }

    async fn serve(server: MockServer, config: EmulatorConfig) -> Self {
        let state = Arc::new(Mutex::new(State {
            issuer: server.uri(),
            cfg: config,
            keys: vec![TestKey::rsa_a(), TestKey::rsa_b()],
            current_key: 0,
            grants: Vec::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            denial: None,
            faults: Vec::new(),
            rate: HashMap::new(),
            requests: Vec::new(),
            corrupt_id_tokens: 0,
            clock_offset: 0,
            spent_at: HashMap::new(),
            consents: HashMap::new(),
            refresh_counts: RefreshCounts::default(),
        }));
        Mock::given(any())
            .respond_with(Router(state.clone()))
            .mount(&server)
            .await;
        Self {
            server: Some(server),
            state,
            runtime: None,
        }
    }

    /// Starts an emulator from blocking code (it runs on its own threads).
    ///
    /// # Panics
    /// When called from inside an async runtime (use [`ClassEmulator::start`] there) or
    /// when no runtime can be built.
    #[must_use]
    pub fn start_blocking(config: EmulatorConfig) -> Self {
        Self::on_own_runtime(Self::start(config))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The issuer URL (`http://127.0.0.1:<port>`).
    #[must_use]
    pub fn issuer(&self) -> String {
        self.state().issuer.clone()
    }

    /// Moves the emulator's clock forward: codes, access and refresh tokens expire as if
    /// this much time had passed, and new ID tokens carry the later `iat`/`exp` (a client
    /// whose clock stays behind then sees a clock skew).
    pub fn advance_clock(&self, by: Duration) {
        self.state().clock_offset += by.as_secs();
    }

    /// The signing-key rotation: the next key signs; both stay in the key set. Calling
    /// again moves to a key the set did not have (so a cached set misses it).
    pub fn rotate_keys(&self) {
        let mut s = self.state();
        s.current_key += 1;
        if s.current_key >= s.keys.len() {
            s.keys.push(TestKey::rsa_c());
            if s.keys.len() > 3 {
                s.keys.remove(0);
                s.current_key = s.keys.len() - 1;
            }
        }
    }

    /// The next authorization request ends in `error=<code>` (`access_denied`,
    /// `login_required`, `consent_required`, ...).
    pub fn deny_next_authorization(&self, code: &str) {
        self.state().denial = Some(code.to_owned());
    }

    /// Logs "the browser" in as `username`, or out with `None`.
    pub fn set_session_user(&self, username: Option<&str>) {
        self.state().cfg.session_user = username.map(str::to_owned);
    }

    /// The next `n` ID tokens issued carry a broken signature (the tokens are otherwise
    /// issued normally: a refresh still rotates its refresh token).
    pub fn corrupt_next_id_tokens(&self, n: usize) {
        self.state().corrupt_id_tokens = n;
    }

    /// Issues ID tokens valid for `seconds` from now on.
    pub fn set_id_token_lifetime(&self, seconds: u64) {
        self.state().cfg.id_token_lifetime = seconds;
    }

    /// Whether refreshes return an ID token from now on.
    pub fn set_id_token_on_refresh(&self, send: bool) {
        self.state().cfg.id_token_on_refresh = send;
    }

    /// The next `times` requests whose path starts with `path_prefix` get `fault`.
    pub fn inject(&self, path_prefix: &str, fault: Fault, times: usize) {
        self.state()
            .faults
            .push((path_prefix.to_owned(), fault, times));
    }

    /// Revokes every grant for `business_code`, as a user would under Business > Partner
    /// Application Access > Revoke Access: refresh tokens stop working.
    pub fn revoke_partner_access(&self, business_code: &str) {
        for g in &mut self.state().grants {
            if g.business == business_code {
                g.revoked = true;
            }
        }
    }

    /// Invalidates every access token issued so far (refresh tokens keep working), as
    /// when Class ends sessions early: the next API call with one gets a 401.
    pub fn expire_access_tokens(&self) {
        self.state().access.clear();
    }

    /// Issues a grant without a sign-in, as if `client_id` had been granted `scope`
    /// (space-separated; `offline_access` for a refresh token) for `business_code` by
    /// its first user, and returns its refresh token. For tests that start from stored
    /// tokens (the token manager's): the refresh token is one-time like any other.
    pub fn seed_grant(&self, client_id: &str, business_code: &str, scope: &str) -> String {
        let mut s = self.state();
        let user = s
            .cfg
            .users
            .iter()
            .find(|u| u.businesses.iter().any(|b| b == business_code))
            .map_or_else(String::new, |u| u.username.clone());
        let now = s.now();
        s.grants.push(state::Grant {
            client_id: client_id.to_owned(),
            user,
            business: business_code.to_owned(),
            scopes: scope.split(' ').map(str::to_owned).collect(),
            revoked: false,
            auth_time: now,
        });
        let grant = s.grants.len() - 1;
        let refresh_token = state::random();
        let expires = now + s.cfg.refresh_token_lifetime;
        s.refresh
            .insert(refresh_token.clone(), (grant, true, expires));
        refresh_token
    }

    /// What the token endpoint did with refresh grants so far.
    #[must_use]
    pub fn refresh_counts(&self) -> RefreshCounts {
        self.state().refresh_counts
    }

    /// Whether `refresh_token` is the unspent refresh token of a live grant.
    #[must_use]
    pub fn is_current_refresh_token(&self, refresh_token: &str) -> bool {
        let s = self.state();
        s.refresh
            .get(refresh_token)
            .is_some_and(|&(grant, current, _)| current && !s.grants[grant].revoked)
    }

    /// Every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Requests to `path` so far.
    #[must_use]
    pub fn count(&self, path: &str) -> usize {
        self.state()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Simulates the browser at the authorization URL: returns where Class redirects it
    /// (the callback URL with `code`/`error`, `state` and `iss`), or the page it shows.
    pub fn browse(&self, authorization_url: &str) -> Result<String, String> {
        // Over HTTP, as a browser would: faults injected on `/connect/authorize` apply and
        // the request is recorded. Redirects are not followed; the Location is the answer.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let response = agent
            .get(authorization_url)
            .call()
            .map_err(|e| format!("the authorization request failed: {e}"))?;
        let status = response.status();
        if !status.is_redirection() {
            return Err(format!(
                "the emulator did not redirect (HTTP {})",
                status.as_u16()
            ));
        }
        response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| "a redirect without a Location".to_owned())
    }
}

impl Drop for ClassEmulator {
    fn drop(&mut self) {
        let server = self.server.take();
        if let Some(rt) = self.runtime.take() {
            drop(server);
            rt.shutdown_background();
        }
    }
}

/// The README's usage snippet, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
