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

mod consent;
pub mod example;
pub mod keys;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::keys::TestKey;

/// A Class business.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Business {
    /// Business code, e.g. `OAUTH_TEST`.
    pub code: String,
    /// Name, e.g. `OAuth Test Business`.
    pub name: String,
}

/// A Class user.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct User {
    /// Username (an email at Class).
    pub username: String,
    /// Password (password grant).
    pub password: String,
    /// Stable subject id.
    pub sub: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Business codes the user may grant access to (the first is the default pick).
    pub businesses: Vec<String>,
    /// Class roles (sent as one comma-delimited `class_role`).
    pub roles: Vec<String>,
}

/// A registered client.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientRegistration {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Registered redirect URIs (exact match).
    pub redirect_uris: Vec<String>,
}

/// What the emulator does with a refresh token that was already spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RefreshTokenMode {
    /// Class: one-time. Presenting a spent refresh token again revokes the grant (reuse
    /// detection, RFC 9700 4.14.2).
    #[default]
    OneTime,
    /// A spent refresh token is still accepted for this long after it was spent (a grace
    /// window, as some servers allow for lost responses); later it revokes the grant.
    ReusableWithin(Duration),
}

/// The emulator's configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmulatorConfig {
    /// Businesses.
    pub businesses: Vec<Business>,
    /// Users.
    pub users: Vec<User>,
    /// Clients.
    pub clients: Vec<ClientRegistration>,
    /// Serve a discovery document (Class may publish none).
    pub discovery: bool,
    /// Access-token lifetime reported (`expires_in`; Class: 899).
    pub access_token_lifetime: u64,
    /// Refresh-token lifetime in seconds (Class: 30 days).
    pub refresh_token_lifetime: u64,
    /// Send `expires_in` as a string, as the portal's example does.
    pub expires_in_as_string: bool,
    /// API calls per client per minute before 429 (Class: 500).
    pub rate_limit: u32,
    /// The user logged in to Class in "the browser" (for auto-consent); `None` means not
    /// logged in (then `prompt=none` gives `login_required`).
    pub session_user: Option<String>,
    /// ID-token lifetime in seconds (`exp - iat`; default 300).
    pub id_token_lifetime: u64,
    /// Send an ID token with refreshed tokens when `openid` was granted (default true;
    /// OIDC Core 12.2 makes it optional).
    pub id_token_on_refresh: bool,
    /// One-time refresh tokens (Class) or a grace window for reuse.
    pub refresh_token_mode: RefreshTokenMode,
    /// Show a consent page (Allow / Deny, and a business to pick for `target:b`) instead
    /// of consenting at once (default false: tests need no browser).
    pub consent_page: bool,
}

impl Business {
    /// A business with its code (e.g. `OAUTH_TEST`) and name.
    #[must_use]
    pub fn new(code: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            name: name.into(),
        }
    }
}

impl User {
    /// A user who signs in with `username` / `password` and whose stable subject id is
    /// `sub`; add the businesses they may grant with [`User::business`].
    #[must_use]
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
        sub: impl Into<String>,
    ) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            sub: sub.into(),
            given_name: String::new(),
            family_name: String::new(),
            businesses: Vec::new(),
            roles: Vec::new(),
        }
    }

    /// Sets the given and family names (UserInfo `given_name`, `family_name`).
    #[must_use]
    pub fn names(mut self, given: impl Into<String>, family: impl Into<String>) -> Self {
        self.given_name = given.into();
        self.family_name = family.into();
        self
    }

    /// A business the user may grant access to (the first one added is the default
    /// pick on the consent screen).
    #[must_use]
    pub fn business(mut self, code: impl Into<String>) -> Self {
        self.businesses.push(code.into());
        self
    }

    /// A Class role (UserInfo `class_role`).
    #[must_use]
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }
}

impl ClientRegistration {
    /// A client with its id and secret; add redirect URIs with
    /// [`ClientRegistration::redirect_uri`].
    #[must_use]
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uris: Vec::new(),
        }
    }

    /// A registered redirect URI (compared exactly, as Class does).
    #[must_use]
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uris.push(uri.into());
        self
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl EmulatorConfig {
    /// An emulator with no business, user or client yet, and Class's behaviour: a
    /// discovery document, 899 s access tokens, 30-day one-time refresh tokens, 500 API
    /// calls a minute, 300 s ID tokens sent on refresh too, no signed-in browser session.
    /// Add what your tests need:
    ///
    /// ```
    /// use class_oauth_testkit::{Business, ClassEmulator, ClientRegistration, EmulatorConfig, User};
    ///
    /// let config = EmulatorConfig::new()
    ///     .business(Business::new("ACME_SMSF", "Acme Super Fund"))
    ///     .user(User::new("pat@acme.example", "s3cret", "user-pat").business("ACME_SMSF"))
    ///     .client(ClientRegistration::new("acme-app", "acme-secret").redirect_uri("https://acme.example/cb"))
    ///     .access_token_lifetime(60);
    /// let emulator = ClassEmulator::start_blocking(config);
    ///
    /// // Any HTTP client, any language: here a password grant with ureq.
    /// use class_oauth_core::scope::Scopes;
    /// use class_oauth_core::{ClientId, ClientSecret, Environment, Password, Username};
    /// let client = class_oauth_ureq::ClassClient::builder(
    ///     Environment::parse(&emulator.issuer()).unwrap(),
    ///     ClientId::new("acme-app"),
    /// )
    /// .secret(ClientSecret::new("acme-secret"))
    /// .build()
    /// .unwrap();
    /// let granted = client
    ///     .password(
    ///         Username::new("pat@acme.example"),
    ///         Password::new("s3cret"),
    ///         Scopes::parse("target:b offline_access business.fund.list").unwrap(),
    ///     )
    ///     .unwrap();
    /// assert_eq!(granted.tokens.business_code().unwrap().as_str(), "ACME_SMSF");
    /// assert_eq!(granted.tokens.expires_in, Some(60));
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            businesses: Vec::new(),
            users: Vec::new(),
            clients: Vec::new(),
            discovery: true,
            access_token_lifetime: 899,
            refresh_token_lifetime: 30 * 24 * 3600,
            expires_in_as_string: false,
            rate_limit: 500,
            session_user: None,
            id_token_lifetime: 300,
            id_token_on_refresh: true,
            refresh_token_mode: RefreshTokenMode::OneTime,
            consent_page: false,
        }
    }

    /// Adds a business.
    #[must_use]
    pub fn business(mut self, business: Business) -> Self {
        self.businesses.push(business);
        self
    }

    /// Adds a user.
    #[must_use]
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// Adds a client registration.
    #[must_use]
    pub fn client(mut self, client: ClientRegistration) -> Self {
        self.clients.push(client);
        self
    }

    /// Serves no discovery document (Class may publish none): clients fall back to the
    /// presets.
    #[must_use]
    pub fn without_discovery(mut self) -> Self {
        self.discovery = false;
        self
    }

    /// The access-token lifetime (`expires_in`).
    #[must_use]
    pub fn access_token_lifetime(mut self, seconds: u64) -> Self {
        self.access_token_lifetime = seconds;
        self
    }

    /// The refresh-token lifetime.
    #[must_use]
    pub fn refresh_token_lifetime(mut self, seconds: u64) -> Self {
        self.refresh_token_lifetime = seconds;
        self
    }

    /// API calls per client per minute before a 429.
    #[must_use]
    pub fn rate_limit(mut self, per_minute: u32) -> Self {
        self.rate_limit = per_minute;
        self
    }

    /// What a spent refresh token does when presented again.
    #[must_use]
    pub fn refresh_token_mode(mut self, mode: RefreshTokenMode) -> Self {
        self.refresh_token_mode = mode;
        self
    }

    /// Shows a consent page that a person (or a browser test) answers, as Class does,
    /// instead of consenting at once ([`EmulatorConfig::consent_page`]).
    #[must_use]
    pub fn with_consent_page(mut self) -> Self {
        self.consent_page = true;
        self
    }

    /// The user signed in to Class in "the browser" (consent without a login page).
    #[must_use]
    pub fn session_user(mut self, username: impl Into<String>) -> Self {
        self.session_user = Some(username.into());
        self
    }

    /// A demo setup: business `OAUTH_TEST`, user `sam@example.com` / `demo-password`,
    /// client `demo-client` / `demo-secret` with redirect `http://127.0.0.1:8765/callback`
    /// and `https://partner.example/class-callback`.
    #[must_use]
    pub fn demo() -> Self {
        Self {
            businesses: vec![
                Business {
                    code: "OAUTH_TEST".into(),
                    name: "OAuth Test Business".into(),
                },
                Business {
                    code: "SECOND_BIZ".into(),
                    name: "Second Business".into(),
                },
            ],
            users: vec![User {
                username: "sam@example.com".into(),
                password: "demo-password".into(),
                sub: "4b3f7c2a-class-user-0001".into(),
                given_name: "Sam".into(),
                family_name: "Sample".into(),
                businesses: vec!["OAUTH_TEST".into(), "SECOND_BIZ".into()],
                roles: vec![
                    "Administrator".into(),
                    "Access Controller".into(),
                    "adviser".into(),
                ],
            }],
            clients: vec![ClientRegistration {
                client_id: "demo-client".into(),
                client_secret: "demo-secret".into(),
                redirect_uris: vec![
                    "http://127.0.0.1:8765/callback".into(),
                    "https://partner.example/class-callback".into(),
                ],
            }],
            discovery: true,
            access_token_lifetime: 899,
            refresh_token_lifetime: 30 * 24 * 3600,
            expires_in_as_string: false,
            rate_limit: 500,
            session_user: Some("sam@example.com".into()),
            id_token_lifetime: 300,
            id_token_on_refresh: true,
            refresh_token_mode: RefreshTokenMode::OneTime,
            consent_page: false,
        }
    }
}

/// A scripted misbehaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and an OAuth `server_error` body.
    Status(u16),
    /// Answer 502 with an HTML page, as a proxy does.
    Html502,
    /// Handle the request normally (state changes happen) but answer after this delay:
    /// past the client's timeout it is a dropped connection after the work was done.
    Delay(Duration),
    /// Answer 429 with `X-RateLimit-ResetAfter`.
    TooManyRequests {
        /// Seconds to wait.
        reset_after: u64,
    },
    /// Answer 200 with JSON cut off in the middle of a token.
    TruncatedJson,
    /// Answer 200 with a JSON body of this many bytes (past a client's cap).
    Oversized(usize),
}

/// One recorded request (bodies kept: this is a test tool).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: Option<String>,
    /// Headers as sent (names lower-case; this is a test tool, so `Authorization` is
    /// kept too).
    pub headers: Vec<(String, String)>,
    /// Form or body text.
    pub body: String,
    /// Status answered.
    pub status: u16,
}

#[derive(Debug, Clone)]
struct Grant {
    client_id: String,
    user: String,
    business: String,
    scopes: Vec<String>,
    revoked: bool,
    auth_time: u64,
}

#[derive(Debug, Clone)]
struct CodeGrant {
    grant: Grant,
    redirect_uri: String,
    nonce: Option<String>,
    challenge: Option<String>,
    used: bool,
    expires: u64,
    /// The grant the code was redeemed for, revoked if the code comes back.
    issued: Option<usize>,
}

#[derive(Debug)]
struct State {
    cfg: EmulatorConfig,
    issuer: String,
    keys: Vec<TestKey>,
    current_key: usize,
    grants: Vec<Grant>,
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, (usize, u64)>,
    refresh: HashMap<String, (usize, bool, u64)>,
    denial: Option<String>,
    faults: Vec<(String, Fault, usize)>,
    rate: HashMap<String, (u64, u32)>,
    requests: Vec<RecordedRequest>,
    corrupt_id_tokens: usize,
    /// Seconds added to the real clock (`ClassEmulator::advance_clock`).
    clock_offset: u64,
    /// When each spent refresh token was spent (for a reuse grace window).
    spent_at: HashMap<String, u64>,
    /// Consent pages shown and not yet answered: ticket -> the authorization request.
    consents: HashMap<String, HashMap<String, String>>,
}

/// A response under construction that remembers its status and redirect target.
struct Reply {
    status: u16,
    location: Option<String>,
    /// The `content-type` given (wiremock's string body would otherwise say
    /// `text/plain`, and a browser would show an HTML page as text).
    content_type: Option<String>,
    body: Option<String>,
    template: ResponseTemplate,
}

impl Reply {
    fn new(status: u16) -> Self {
        Self {
            status,
            location: None,
            content_type: None,
            body: None,
            template: ResponseTemplate::new(status),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        if name == "location" {
            self.location = Some(value.to_owned());
        }
        if name == "content-type" {
            self.content_type = Some(value.to_owned());
        }
        self.template = self.template.insert_header(name, value);
        self
    }

    fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The response, its body typed as the `content-type` header says.
    fn into_template(self) -> ResponseTemplate {
        match self.body {
            Some(body) => self.template.set_body_raw(
                body.into_bytes(),
                self.content_type.as_deref().unwrap_or("text/plain"),
            ),
            None => self.template,
        }
    }

    fn delay(mut self, d: Duration) -> Self {
        self.template = self.template.set_delay(d);
        self
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random() -> String {
    let mut b = [0u8; 24];
    SystemRandom::new().fill(&mut b).expect("system RNG");
    URL_SAFE_NO_PAD.encode(b)
}

fn oauth_error(status: u16, code: &str, description: &str) -> Reply {
    Reply::new(status)
        .header("content-type", "application/json;charset=UTF-8")
        .body(json!({"error": code, "error_description": description}).to_string())
}

fn json_response(status: u16, body: &Value) -> Reply {
    Reply::new(status)
        .header("content-type", "application/json;charset=UTF-8")
        .header("cache-control", "no-cache")
        .header("pragma", "no-cache")
        .body(body.to_string())
}

fn redirect(location: &str) -> Reply {
    Reply::new(302).header("location", location)
}

fn append_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    format!(
        "{uri}{}{}",
        if uri.contains('?') { "&" } else { "?" },
        s.finish()
    )
}

fn scope_list(scope: Option<&String>) -> Vec<String> {
    scope
        .map(|s| {
            s.split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The business a consent covers: `target:b` picks the user's first business,
/// `target:b/<CODE>` must be one of theirs; no target means their first.
fn pick_business(user: &User, scopes: &[String]) -> Option<String> {
    match scopes.iter().find(|s| s.starts_with("target:")) {
        Some(t) if t == "target:b" => user.businesses.first().cloned(),
        Some(t) => t
            .strip_prefix("target:b/")
            .filter(|c| user.businesses.iter().any(|b| b == c))
            .map(str::to_owned),
        None => user.businesses.first().cloned(),
    }
}

impl State {
    /// The emulator's clock: the real one plus the offset tests advance.
    fn now(&self) -> u64 {
        now() + self.clock_offset
    }

    fn user(&self, username: &str) -> Option<&User> {
        self.cfg.users.iter().find(|u| u.username == username)
    }

    fn business(&self, code: &str) -> Option<&Business> {
        self.cfg.businesses.iter().find(|b| b.code == code)
    }

    fn client_from_basic(&self, req: &Request) -> Option<ClientRegistration> {
        let header = req.headers.get("authorization")?.to_str().ok()?;
        let b64 = header.strip_prefix("Basic ")?;
        let decoded = String::from_utf8(STANDARD.decode(b64).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let (id, secret) = (dec(id), dec(secret));
        self.cfg
            .clients
            .iter()
            .find(|c| c.client_id == id && c.client_secret == secret)
            .cloned()
    }

    fn endpoints(&self) -> Value {
        let i = &self.issuer;
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/connect/authorize"),
            "token_endpoint": format!("{i}/connect/token"),
            "userinfo_endpoint": format!("{i}/connect/userinfo"),
            "revocation_endpoint": format!("{i}/connect/revocation"),
            "jwks_uri": format!("{i}/.well-known/openid-configuration/jwks"),
            "scopes_supported": ["openid", "profile", "email", "address", "phone", "class_profile", "offline_access"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": ["authorization_code", "password", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }

    fn id_token(&mut self, grant: &Grant, nonce: Option<&str>, access_token: &str) -> String {
        let user = self.user(&grant.user).expect("grant user exists");
        let digest = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
        let mut claims = json!({
            "iss": self.issuer, "sub": user.sub, "aud": grant.client_id, "iat": self.now(), "exp": self.now() + self.cfg.id_token_lifetime,
            "auth_time": grant.auth_time, "at_hash": URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]), "amr": ["pwd", "mfa"],
        });
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        if grant.scopes.iter().any(|s| s == "email") {
            claims["email"] = json!(user.username);
            claims["email_verified"] = json!(true);
        }
        let token = self.keys[self.current_key].sign("RS256", &claims, &json!({}));
        if self.corrupt_id_tokens > 0 {
            self.corrupt_id_tokens -= 1;
            // Flip the signature's bytes, as the OpenID conformance suite does.
            let (input, sig) = token.rsplit_once('.').expect("a compact JWS");
            let bytes: Vec<u8> = URL_SAFE_NO_PAD
                .decode(sig)
                .expect("base64url")
                .iter()
                .map(|b| b ^ 0x5A)
                .collect();
            return format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes));
        }
        token
    }

    /// Issues tokens for `grant_index`; the refresh token only with offline_access.
    fn issue(&mut self, grant_index: usize, nonce: Option<&str>) -> Value {
        self.issue_with(grant_index, nonce, true)
    }

    /// Issues tokens; `with_id_token` false leaves the ID token out even with `openid`.
    fn issue_with(
        &mut self,
        grant_index: usize,
        nonce: Option<&str>,
        with_id_token: bool,
    ) -> Value {
        let grant = self.grants[grant_index].clone();
        let at = random();
        self.access.insert(
            at.clone(),
            (grant_index, self.now() + self.cfg.access_token_lifetime + 1),
        );
        let business = self.business(&grant.business).cloned();
        let scope: Vec<String> = grant
            .scopes
            .iter()
            .map(|s| {
                if s == "target:b" || s.starts_with("target:b/") {
                    format!("target:b/{}", grant.business)
                } else {
                    s.clone()
                }
            })
            .collect();
        let mut body = json!({
            "access_token": at,
            "token_type": "bearer",
            "expires_in": if self.cfg.expires_in_as_string { json!(self.cfg.access_token_lifetime.to_string()) } else { json!(self.cfg.access_token_lifetime) },
            "scope": scope.join(" "),
        });
        if let Some(b) = business {
            body["BusinessName"] = json!(b.name);
            body["BusinessCode"] = json!(b.code);
        }
        if grant.scopes.iter().any(|s| s == "offline_access") {
            let rt = random();
            self.refresh.insert(
                rt.clone(),
                (
                    grant_index,
                    true,
                    self.now() + self.cfg.refresh_token_lifetime,
                ),
            );
            body["refresh_token"] = json!(rt);
        }
        if with_id_token && grant.scopes.iter().any(|s| s == "openid") {
            body["id_token"] = json!(self.id_token(
                &grant,
                nonce,
                body["access_token"].as_str().unwrap_or_default()
            ));
        }
        body
    }

    /// `/connect/authorize`; `answer` is the consent page's (`None`: not shown yet).
    fn authorize(&mut self, q: &HashMap<String, String>, answer: Option<consent::Answer>) -> Reply {
        let Some(client) = q
            .get("client_id")
            .and_then(|id| self.cfg.clients.iter().find(|c| &c.client_id == id))
            .cloned()
        else {
            return Reply::new(400)
                .header("content-type", "text/html")
                .body("<html><body>Unknown client</body></html>");
        };
        let Some(redirect_uri) = q
            .get("redirect_uri")
            .filter(|r| client.redirect_uris.contains(r))
            .cloned()
        else {
            // RFC 6749 4.1.2.1: never redirect to an unregistered URI.
            return Reply::new(400).header("content-type", "text/html").body(
                "<html><body>The redirect_uri is not registered for this client</body></html>",
            );
        };
        let state = q.get("state").cloned().unwrap_or_default();
        let iss = self.issuer.clone();
        let fail = |code: &str| {
            redirect(&append_query(
                &redirect_uri,
                &[
                    ("error", code),
                    ("error_description", "Class emulator"),
                    ("state", &state),
                    ("iss", &iss),
                ],
            ))
        };
        if q.get("response_type").map(String::as_str) != Some("code") {
            return fail("unsupported_response_type");
        }
        for unsupported in ["request", "request_uri", "registration"] {
            if q.contains_key(unsupported) {
                return fail(&format!("{unsupported}_not_supported"));
            }
        }
        if let Some(code) = self.denial.take() {
            return fail(&code);
        }
        let prompt = q.get("prompt").cloned().unwrap_or_default();
        let Some(user) = self
            .cfg
            .session_user
            .clone()
            .and_then(|u| self.user(&u).cloned())
        else {
            return fail(if prompt == "none" {
                "login_required"
            } else {
                "access_denied"
            });
        };
        let scopes = scope_list(q.get("scope"));
        let Some(mut business) = pick_business(&user, &scopes) else {
            return fail("access_denied");
        };
        if scopes.iter().any(|s| s == "class_profile") && !scopes.iter().any(|s| s == "openid") {
            return fail("invalid_scope");
        }
        match answer {
            None if self.cfg.consent_page => {
                return self.consent_page(q, &user, &client.client_id, &scopes, &business);
            }
            None => {}
            Some(consent::Answer::Deny) => return fail("access_denied"),
            Some(consent::Answer::Allow { picked: None }) => {}
            // The user picks among their own businesses, for `target:b` only.
            Some(consent::Answer::Allow {
                picked: Some(picked),
            }) => {
                if !scopes.iter().any(|s| s == "target:b") || !user.businesses.contains(&picked) {
                    return fail("access_denied");
                }
                business = picked;
            }
        }
        let grant = Grant {
            client_id: client.client_id,
            user: user.username,
            business,
            scopes,
            revoked: false,
            auth_time: self.now(),
        };
        let code = random();
        let challenge = match (
            q.get("code_challenge"),
            q.get("code_challenge_method").map(String::as_str),
        ) {
            (Some(c), Some("S256")) => Some(c.clone()),
            (Some(_), _) => return fail("invalid_request"),
            _ => None,
        };
        self.codes.insert(
            code.clone(),
            CodeGrant {
                grant,
                redirect_uri: redirect_uri.clone(),
                nonce: q.get("nonce").cloned(),
                challenge,
                used: false,
                expires: self.now() + 300,
                issued: None,
            },
        );
        if q.get("response_mode").map(String::as_str) == Some("form_post") {
            let html = format!(
                "<html><body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{redirect_uri}\"><input type=\"hidden\" name=\"code\" value=\"{code}\"/><input type=\"hidden\" name=\"state\" value=\"{state}\"/><input type=\"hidden\" name=\"iss\" value=\"{iss}\"/></form></body></html>"
            );
            return Reply::new(200)
                .header("content-type", "text/html")
                .body(html);
        }
        redirect(&append_query(
            &redirect_uri,
            &[("code", &code), ("state", &state), ("iss", &iss)],
        ))
    }

    fn token(&mut self, req: &Request) -> Reply {
        let Some(client) = self.client_from_basic(req) else {
            return oauth_error(400, "invalid_client", "Client authentication failed");
        };
        let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let code = form.get("code").cloned().unwrap_or_default();
                let now = self.now();
                let Some(c) = self.codes.get_mut(&code) else {
                    return oauth_error(400, "invalid_grant", "unknown code");
                };
                if c.used || c.expires < now {
                    // A reused code revokes what it issued (RFC 6749 4.1.2, RFC 9700
                    // 4.5): someone else holds the code, so the tokens are suspect.
                    c.used = true;
                    if let Some(gi) = c.issued {
                        self.grants[gi].revoked = true;
                    }
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "the code was already used or expired",
                    );
                }
                c.used = true;
                let c = c.clone();
                if c.grant.client_id != client.client_id
                    || form.get("redirect_uri") != Some(&c.redirect_uri)
                {
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "redirect_uri or client does not match the authorization request",
                    );
                }
                if let Some(challenge) = &c.challenge {
                    let ok = form.get("code_verifier").is_some_and(|v| {
                        URL_SAFE_NO_PAD
                            .encode(ring::digest::digest(&ring::digest::SHA256, v.as_bytes()))
                            == *challenge
                    });
                    if !ok {
                        return oauth_error(400, "invalid_grant", "PKCE verification failed");
                    }
                }
                self.grants.push(c.grant);
                let gi = self.grants.len() - 1;
                if let Some(record) = self.codes.get_mut(&code) {
                    record.issued = Some(gi);
                }
                let body = self.issue(gi, c.nonce.as_deref());
                json_response(200, &body)
            }
            Some("password") => {
                let (u, p) = (
                    form.get("username").cloned().unwrap_or_default(),
                    form.get("password").cloned().unwrap_or_default(),
                );
                let Some(user) = self.user(&u).filter(|x| x.password == p).cloned() else {
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "The user name or password is incorrect.",
                    );
                };
                let scopes = scope_list(form.get("scope"));
                let Some(business) = pick_business(&user, &scopes) else {
                    return oauth_error(
                        400,
                        "invalid_scope",
                        "the user has no access to that business",
                    );
                };
                self.grants.push(Grant {
                    client_id: client.client_id,
                    user: user.username,
                    business,
                    scopes,
                    revoked: false,
                    auth_time: self.now(),
                });
                let body = self.issue(self.grants.len() - 1, None);
                json_response(200, &body)
            }
            Some("refresh_token") => {
                let rt = form.get("refresh_token").cloned().unwrap_or_default();
                let Some(&(gi, current, expires)) = self.refresh.get(&rt) else {
                    return oauth_error(400, "invalid_grant", "Invalid Grant");
                };
                if self.grants[gi].revoked
                    || expires < self.now()
                    || self.grants[gi].client_id != client.client_id
                {
                    return oauth_error(400, "invalid_grant", "Invalid Grant");
                }
                if !current {
                    let within_grace = match self.cfg.refresh_token_mode {
                        RefreshTokenMode::ReusableWithin(window) => self
                            .spent_at
                            .get(&rt)
                            .is_some_and(|&at| self.now() <= at + window.as_secs()),
                        _ => false,
                    };
                    if !within_grace {
                        // Reuse of a spent refresh token: revoke the grant.
                        self.grants[gi].revoked = true;
                        return oauth_error(400, "invalid_grant", "Invalid Grant");
                    }
                }
                if let Some(narrow) = form.get("scope") {
                    let granted = &self.grants[gi].scopes;
                    let business = self.grants[gi].business.clone();
                    let ok = narrow.split(' ').all(|s| {
                        granted.iter().any(|g| g == s) || s == format!("target:b/{business}")
                    });
                    if !ok {
                        return oauth_error(
                            400,
                            "invalid_scope",
                            "the scope must be the same as or a subset of the granted scope",
                        );
                    }
                }
                if current {
                    let now = self.now();
                    self.spent_at.insert(rt.clone(), now);
                }
                self.refresh.insert(rt, (gi, false, expires));
                let body = self.issue_with(gi, None, self.cfg.id_token_on_refresh);
                json_response(200, &body)
            }
            _ => oauth_error(400, "unsupported_grant_type", "unsupported grant_type"),
        }
    }

    fn bearer(&self, req: &Request) -> Option<usize> {
        let header = req.headers.get("authorization")?.to_str().ok()?;
        let token = header.strip_prefix("Bearer ")?;
        let (gi, expires) = *self.access.get(token)?;
        (expires >= self.now() && !self.grants[gi].revoked).then_some(gi)
    }

    fn userinfo(&self, req: &Request) -> Reply {
        let Some(gi) = self.bearer(req) else {
            return Reply::new(401).header("www-authenticate", "Bearer error=\"invalid_token\", error_description=\"The access token is invalid or expired\"");
        };
        let g = &self.grants[gi];
        if !g.scopes.iter().any(|s| s == "openid") {
            return Reply::new(403).header(
                "www-authenticate",
                "Bearer error=\"insufficient_scope\", scope=\"openid\"",
            );
        }
        let user = self.user(&g.user).expect("user");
        let mut claims = json!({"sub": user.sub});
        let has = |s: &str| g.scopes.iter().any(|x| x == s);
        if has("profile") {
            claims["name"] = json!(format!("{} {}", user.given_name, user.family_name));
            claims["given_name"] = json!(user.given_name);
            claims["family_name"] = json!(user.family_name);
        }
        if has("email") {
            claims["email"] = json!(user.username);
        }
        if has("class_profile") {
            let b = self.business(&g.business);
            claims["business_code"] = json!(g.business);
            claims["business_name"] = json!(b.map(|b| b.name.clone()));
            claims["class_role"] = json!(user.roles.join(", "));
        }
        json_response(200, &claims)
    }

    fn api(&mut self, req: &Request, business: &str) -> Reply {
        let envelope = |status: u16, code: &str, message: &str| {
            json_response(
                status,
                &json!({"Errors": [{"Code": code, "Message": message}], "Data": null}),
            )
        };
        let Some(gi) = self.bearer(req) else {
            return envelope(401, "API_NOT_AUTHORISED", "Not authorised");
        };
        let client_id = self.grants[gi].client_id.clone();
        let now = self.now();
        let minute = now / 60;
        let entry = self.rate.entry(client_id).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        let remaining = self.cfg.rate_limit.saturating_sub(entry.1);
        let reset = 60 - now % 60;
        if entry.1 > self.cfg.rate_limit {
            return Reply::new(429)
                .header("x-ratelimit-1min-remaining", "0")
                .header("x-ratelimit-resetafter", &reset.to_string());
        }
        let g = &self.grants[gi];
        let allowed = g
            .scopes
            .iter()
            .any(|s| s == "business.fund.list" || s == "fund.read" || s == "fund.maintain");
        let response = if !allowed {
            envelope(401, "API_NOT_AUTHORISED", "Not authorised")
        } else if g.business != business {
            envelope(
                404,
                "API_NOT_FOUND",
                "Resource not available or user does not have access to the fund.",
            )
        } else {
            json_response(
                200,
                &json!({"Errors": [], "Data": {"Funds": [
                    {"Code": "SMSF01", "Name": "Sample Family Super Fund", "Status": "Active", "Abn": "12345678901"},
                    {"Code": "SMSF02", "Name": "Retirement Pension Fund", "Status": "Active", "Abn": "98765432109"}
                ]}}),
            )
        };
        response
            .header("x-ratelimit-1min-remaining", &remaining.to_string())
            .header("x-ratelimit-resetafter", &reset.to_string())
    }

    fn route(&mut self, req: &Request) -> Reply {
        let path = req.url.path().to_owned();
        let method = req.method.as_str().to_owned();
        let query: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        match (method.as_str(), path.as_str()) {
            ("GET", "/.well-known/openid-configuration") if self.cfg.discovery => {
                json_response(200, &self.endpoints())
            }
            ("GET", "/.well-known/openid-configuration/jwks") => {
                let public: Vec<Value> = self.keys.iter().map(TestKey::jwk).collect();
                json_response(200, &json!({"keys": public}))
            }
            ("GET", "/connect/authorize") => self.authorize(&query, None),
            ("POST", consent::PATH) => self.consent(req),
            ("POST", "/connect/token") => self.token(req),
            ("GET" | "POST", "/connect/userinfo" | "/api/1.0/u/connect/userinfo") => {
                self.userinfo(req)
            }
            ("POST", "/connect/revocation") => {
                if self.client_from_basic(req).is_none() {
                    return oauth_error(401, "invalid_client", "Client authentication failed");
                }
                let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body)
                    .into_owned()
                    .collect();
                let token = form.get("token").cloned().unwrap_or_default();
                if let Some(&(gi, _, _)) = self.refresh.get(&token) {
                    self.grants[gi].revoked = true;
                }
                if let Some(&(gi, _)) = self.access.get(&token) {
                    self.access.remove(&token);
                    let _ = gi;
                }
                Reply::new(200)
            }
            ("GET", p) if p.starts_with("/api/1.0/b/") && p.ends_with("/fund/list") => {
                let business = p
                    .trim_start_matches("/api/1.0/b/")
                    .trim_end_matches("/fund/list")
                    .to_owned();
                self.api(req, &business)
            }
            _ => Reply::new(404)
                .header("content-type", "text/html")
                .body("<html><body>Not Found</body></html>"),
        }
    }
}

#[derive(Clone)]
struct Router(Arc<Mutex<State>>);

impl Respond for Router {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let path = req.url.path().to_owned();
        let fault = state
            .faults
            .iter_mut()
            .find(|(prefix, _, n)| *n > 0 && path.starts_with(prefix.as_str()))
            .map(|(_, f, n)| {
                *n -= 1;
                f.clone()
            });
        let reply = match fault {
            Some(Fault::Status(s)) => oauth_error(s, "server_error", "injected failure"),
            Some(Fault::Html502) => Reply::new(502)
                .header("content-type", "text/html")
                .body("<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"),
            Some(Fault::TooManyRequests { reset_after }) => {
                Reply::new(429).header("x-ratelimit-1min-remaining", "0").header("x-ratelimit-resetafter", &reset_after.to_string())
            }
            Some(Fault::Delay(d)) => state.route(req).delay(d),
            Some(Fault::TruncatedJson) => Reply::new(200)
                .header("content-type", "application/json")
                .body("{\"access_token\":\"eyJhbGciOiJSUzI1NiJ9.trunc"),
            Some(Fault::Oversized(n)) => Reply::new(200)
                .header("content-type", "application/json")
                .body(format!("{{\"padding\":\"{}\"}}", "x".repeat(n))),
            None => state.route(req),
        };
        let status = reply.status;
        state.requests.push(RecordedRequest {
            method: req.method.as_str().to_owned(),
            path,
            query: req.url.query().map(str::to_owned),
            headers: req
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            status,
        });
        reply.into_template()
    }
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
