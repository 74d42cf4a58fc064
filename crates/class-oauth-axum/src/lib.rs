//! axum integration for class-oauth: connect a business to Class, and call its API from
//! a handler.
//!
//! A [`ClassConnect`] wraps the application's [`TokenManager`]. It gives:
//! - [`ClassConnect::router`]: two routes.
//!   - `GET /connect?business=CODE` (the path is yours to choose) starts the code flow
//!     for that business, or for the one the user picks at consent when `business` is
//!     absent. The pending record (PKCE verifier, nonce, state) goes to the token store,
//!     so any instance sharing the store can finish it. The state is also sealed in an
//!     encrypted cookie ([`cookie`]'s private jar, AES-256-GCM) that binds the
//!     consent to this browser. Then the browser is redirected to Class.
//!   - `GET <redirect URI's path>`, the callback, refuses a browser whose cookie does not
//!     hold this state, before anything is used up. It then takes the pending record
//!     (once), checks `state` and RFC 9207 `iss`, redeems the code, validates the ID
//!     token and stores the tokens for the business the user consented to. Last it calls
//!     your "connected" hook, or the "denied" hook when the user said no.
//! - Two extractors, for handlers on routes with a `{business}` parameter:
//!   - [`TenantApi`] is an API client for that business. Calls go through the token
//!     middleware: a refresh when due, one renewal on a 401, a bounded wait on a 429.
//!   - [`TenantToken`] is its valid access token.
//!
//!   A business with no usable grant is a [`Rejection`] of kind
//!   [`RejectionKind::NotConnected`]: a 401 page (or JSON) with a link that connects it
//!   again.
//!
//! Failures render as HTML pages or JSON ([`ErrorFormat`]), as the application chooses.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use class_oauth_axum::{ClassConnect, Key, TenantApi};
//! use class_oauth_core::{ClientId, ClientSecret, Environment, RedirectUrl};
//! use class_oauth_core::scope::Scopes;
//! use class_oauth_manager::TokenManager;
//! use class_oauth_reqwest::ClassClient;
//! use class_oauth_store::{Encryption, KeyRing, SqliteStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = ClassClient::builder(Environment::Pie, ClientId::new("partner-app"))
//!     .secret(ClientSecret::new("secret"))
//!     .build()?;
//! let keys = KeyRing::parse(&std::env::var("CLASS_OAUTH_STORE_KEY")?)?;
//! let store = SqliteStore::open("tenants.sqlite3", Encryption::Keys(keys))?;
//! let manager = TokenManager::new(client, store);
//!
//! let class = ClassConnect::builder(
//!     manager,
//!     RedirectUrl::new("https://partner.example/callback")?,
//!     Key::generate(), // several instances: Key::derive_from(a shared secret)
//! )
//! .scopes(Scopes::parse("openid profile offline_access business.fund.list")?)
//! .on_connected(|c| async move { axum::response::Redirect::to(&format!("/funds/{}", c.business)) })
//! .build()?;
//!
//! async fn funds(api: TenantApi) -> Result<String, class_oauth_axum::Rejection> {
//!     let funds: serde_json::Value = api.get_data("fund/list").await?;
//!     Ok(funds.to_string())
//! }
//!
//! let app: Router = Router::new()
//!     .route("/funds/{business}", get(funds))
//!     .merge(class.router())
//!     .with_state(class);
//! # let _ = app; Ok(()) }
//! ```
//!
//! API paths given to [`TenantApi`] are below the business (`fund/list` is
//! `<api base>/b/<CODE>/fund/list`); [`TenantApi::request_absolute`] takes a path below
//! the API base itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::RawQuery;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use class_oauth_client::{AsyncHttpClient, AuthorizeOptions};
use class_oauth_core::RedirectUrl;
use class_oauth_core::error::OAuthError;
use class_oauth_core::scope::{BusinessCode, Scopes};
use class_oauth_manager::{SharedGrant, TenantKey, TokenManager};
use class_oauth_store::TokenStore;
use http::request::Parts;
use reqwest_middleware::ClientWithMiddleware;

mod backend;
mod connect;
mod error;
mod extract;

use backend::Backend;
pub use cookie::Key;
pub use error::{BuildError, ErrorFormat, Rejection, RejectionKind};
pub use extract::{TenantApi, TenantToken};

/// A business just connected: what the "connected" hook receives.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Connected {
    /// The business the user granted (it may differ from the one asked for when the user
    /// picked at consent).
    pub business: BusinessCode,
    /// Where its tokens are stored.
    pub tenant: TenantKey,
    /// The stored grant (scope, ID-token claims: who consented).
    pub grant: SharedGrant,
    /// The callback request: its headers and extensions carry what your layers put
    /// there (the application's session, its signed-in user), to record who connected
    /// the business.
    pub request: Parts,
}

/// A connect the user (or Class) refused: what the "denied" hook receives.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Denied {
    /// The business the connect asked for, when it named one.
    pub business: Option<BusinessCode>,
    /// Class's answer (`access_denied`, `login_required`, ...), with its description.
    pub error: OAuthError,
    /// The callback request (see [`Connected::request`]).
    pub request: Parts,
}

type Hook<T> = Arc<dyn Fn(T) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

fn hook<T, F, Fut, R>(f: F) -> Hook<T>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    Arc::new(move |t| {
        let fut = f(t);
        Box::pin(async move { fut.await.into_response() })
    })
}

/// Connects businesses to Class and hands handlers their tokens (see the crate docs).
/// Cheap to clone; use it as (part of) the router's state.
#[derive(Clone)]
pub struct ClassConnect(Arc<Shared>);

struct Shared {
    backend: Arc<dyn Backend>,
    redirect_uri: RedirectUrl,
    callback_path: String,
    connect_path: String,
    scopes: Scopes,
    options: AuthorizeOptions,
    key: Key,
    secure_cookie: bool,
    format: ErrorFormat,
    business_param: String,
    api: ClientWithMiddleware,
    on_connected: Hook<Connected>,
    on_denied: Hook<Denied>,
}

impl std::fmt::Debug for ClassConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassConnect")
            .field("client_id", self.0.backend.client_id())
            .field("redirect_uri", &self.0.redirect_uri.as_str())
            .field("connect_path", &self.0.connect_path)
            .field("scopes", &self.0.scopes.canonical())
            .field("format", &self.0.format)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ClassConnect`].
#[must_use]
pub struct ClassConnectBuilder {
    backend: Arc<dyn Backend>,
    redirect_uri: RedirectUrl,
    key: Key,
    connect_path: String,
    scopes: Option<Scopes>,
    options: AuthorizeOptions,
    format: ErrorFormat,
    business_param: String,
    http: Option<reqwest::Client>,
    max_wait: Option<Duration>,
    on_connected: Option<Hook<Connected>>,
    on_denied: Option<Hook<Denied>>,
}

impl std::fmt::Debug for ClassConnectBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassConnectBuilder")
            .field("redirect_uri", &self.redirect_uri.as_str())
            .field("connect_path", &self.connect_path)
            .finish_non_exhaustive()
    }
}

impl ClassConnect {
    /// A builder over `manager`.
    ///
    /// `redirect_uri` is this application's callback as registered with Class; its path
    /// is the callback route. `key` encrypts the cookie that binds a connect to its
    /// browser: every instance behind one address needs the same key
    /// ([`Key::derive_from`] a secret of at least 32 bytes), or a callback landing on
    /// another instance is refused as [`RejectionKind::NotStartedHere`].
    pub fn builder<H, S>(
        manager: TokenManager<H, S>,
        redirect_uri: RedirectUrl,
        key: Key,
    ) -> ClassConnectBuilder
    where
        H: AsyncHttpClient,
        S: TokenStore + ?Sized + 'static,
    {
        ClassConnectBuilder {
            backend: Arc::new(manager),
            redirect_uri,
            key,
            connect_path: "/connect".to_owned(),
            scopes: None,
            options: AuthorizeOptions::default(),
            format: ErrorFormat::Html,
            business_param: "business".to_owned(),
            http: None,
            max_wait: None,
            on_connected: None,
            on_denied: None,
        }
    }

    /// The connect and callback routes, for any router state (merge them into yours).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let (connect, callback) = (self.clone(), self.clone());
        axum::Router::new()
            .route(
                &self.0.connect_path,
                get(move |RawQuery(query): RawQuery| async move {
                    connect::start(&connect, query.as_deref()).await
                }),
            )
            .route(
                &self.0.callback_path,
                get(move |request: Parts| async move { connect::finish(&callback, request).await }),
            )
    }

    /// The link that connects `business` (`/connect?business=CODE`).
    #[must_use]
    pub fn connect_link(&self, business: &BusinessCode) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("business", business.as_str())
            .finish();
        format!("{}?{query}", self.0.connect_path)
    }

    /// The store key of `business`'s grant.
    #[must_use]
    pub fn tenant(&self, business: &BusinessCode) -> TenantKey {
        TenantKey::new(self.0.backend.client_id(), business.as_str())
    }

    /// An API client for `business` (what the [`TenantApi`] extractor gives), for code
    /// that knows the business another way than from the path.
    pub async fn api(&self, business: BusinessCode) -> Result<TenantApi, Rejection> {
        TenantApi::new(self, business).await
    }

    /// `business`'s valid access token (what the [`TenantToken`] extractor gives).
    pub async fn token(&self, business: BusinessCode) -> Result<TenantToken, Rejection> {
        TenantToken::new(self, business).await
    }

    /// How failures are rendered.
    #[must_use]
    pub fn error_format(&self) -> ErrorFormat {
        self.0.format
    }

    /// A rejection in this instance's format, naming `business` and its connect link.
    fn reject_for(&self, rejection: Rejection, business: &BusinessCode) -> Rejection {
        rejection
            .format(self.0.format)
            .business(business.clone(), self.connect_link(business))
    }
}

impl ClassConnectBuilder {
    /// The connect route's path (default `/connect`).
    pub fn connect_path(mut self, path: impl Into<String>) -> Self {
        self.connect_path = path.into();
        self
    }

    /// The scopes asked for, besides the business's `target` (which the connect route
    /// adds). They must include `offline_access`, or the grant could not be kept.
    /// Default: `openid profile class_profile offline_access`.
    pub fn scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = Some(scopes);
        self
    }

    /// `prompt`, `login_hint`, `max_age` or `response_mode` for every connect.
    pub fn authorize_options(mut self, options: AuthorizeOptions) -> Self {
        self.options = options;
        self
    }

    /// Renders failures as pages (default) or JSON.
    pub fn error_format(mut self, format: ErrorFormat) -> Self {
        self.format = format;
        self
    }

    /// The path parameter the extractors read the business code from (default
    /// `business`, as in `/funds/{business}`).
    pub fn business_param(mut self, name: impl Into<String>) -> Self {
        self.business_param = name.into();
        self
    }

    /// The HTTP client for API calls (default: class-oauth-reqwest's client, rustls with
    /// bundled roots and timeouts).
    pub fn http(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The longest rate-limit wait taken inside an API call (the middleware's default,
    /// 10 s, unless set).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = Some(wait);
        self
    }

    /// What the callback answers once a business is connected (default: a redirect to
    /// `/`).
    pub fn on_connected<F, Fut, R>(mut self, f: F) -> Self
    where
        F: Fn(Connected) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.on_connected = Some(hook(f));
        self
    }

    /// What the callback answers when access was not granted (default: a
    /// [`RejectionKind::Denied`] rejection, 403).
    pub fn on_denied<F, Fut, R>(mut self, f: F) -> Self
    where
        F: Fn(Denied) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.on_denied = Some(hook(f));
        self
    }

    /// Checks the configuration and builds.
    pub fn build(self) -> Result<ClassConnect, BuildError> {
        let scopes = match self.scopes {
            Some(s) => s,
            None => Scopes::parse("openid profile class_profile offline_access")
                .map_err(|e| BuildError::Scopes(e.to_string()))?,
        };
        scopes
            .require_offline_access()
            .map_err(|e| BuildError::Scopes(e.to_string()))?;
        if scopes.targets().next().is_some() {
            return Err(BuildError::Scopes(
                "they name a target; the connect route adds the business's".into(),
            ));
        }
        if !self.connect_path.starts_with('/') {
            return Err(BuildError::Path(self.connect_path));
        }
        let http = match self.http {
            Some(c) => c,
            None => class_oauth_reqwest::ReqwestTransport::new()
                .map_err(BuildError::Http)?
                .client()
                .clone(),
        };
        let api = reqwest_middleware::ClientBuilder::new(http)
            .with_arc(self.backend.middleware(self.max_wait))
            .build();
        let format = self.format;
        let on_denied = self.on_denied.unwrap_or_else(|| {
            hook(move |d: Denied| async move {
                let message = match &d.error.description {
                    Some(text) => format!("Class did not grant access ({}): {text}", d.error.code),
                    None => format!("Class did not grant access ({}).", d.error.code),
                };
                Rejection::new(RejectionKind::Denied, message).format(format)
            })
        });
        let url = self.redirect_uri.url();
        Ok(ClassConnect(Arc::new(Shared {
            callback_path: url.path().to_owned(),
            secure_cookie: url.scheme() == "https",
            backend: self.backend,
            redirect_uri: self.redirect_uri,
            connect_path: self.connect_path,
            scopes,
            options: self.options,
            key: self.key,
            format,
            business_param: self.business_param,
            api,
            on_connected: self
                .on_connected
                .unwrap_or_else(|| hook(|_: Connected| async { Redirect::to("/") })),
            on_denied,
        })))
    }
}

/// The README's usage snippet, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
