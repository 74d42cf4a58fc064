//! The emulator's configuration: businesses, users, client registrations and the
//! behaviours a test can choose (lifetimes, one-time refresh tokens, the consent page).

use std::time::Duration;

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
    /// Every answer waits this long (default none): a network with latency, or a
    /// response that arrives after the client gave up.
    pub latency: Duration,
    /// Keep a record of every request ([`ClassEmulator::requests`](crate::ClassEmulator::requests);
    /// default true). Storm tests that send thousands turn it off.
    pub record_requests: bool,
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
            latency: Duration::ZERO,
            record_requests: true,
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

    /// Every answer waits `latency` ([`EmulatorConfig::latency`]).
    #[must_use]
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Keeps no record of requests ([`EmulatorConfig::record_requests`]).
    #[must_use]
    pub fn without_request_log(mut self) -> Self {
        self.record_requests = false;
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
            session_user: Some("sam@example.com".into()),
            ..Self::new()
        }
    }
}
