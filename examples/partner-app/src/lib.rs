//! A Class partner web app on axum: what class-oauth looks like in the application it
//! was built for.
//!
//! - `GET /`: the businesses connected so far, and a form to connect another.
//! - `GET /connect?business=CODE` and `GET /callback`: [`ClassConnect`]'s routes. They
//!   send the user to Class's consent page for that business and store its tokens when
//!   the user comes back (PKCE, state bound to this browser by an encrypted cookie,
//!   `iss` checked, the pending record in the store). Then they redirect to its funds.
//! - `GET /funds/{business}`: the business's funds, fetched through [`TenantApi`]: the
//!   tenant's token (refreshed when due), Class's `Accept` type, a 401 renewed once, a
//!   short 429 waited out. A business that is not connected gets a "Connect to Class"
//!   page.
//!
//! Tokens are stored per tenant in SQLite, encrypted. `src/main.rs` runs it offline
//! against the Class emulator unless given real credentials.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::response::{Html, Redirect};
use axum::routing::get;
use class_oauth_axum::{ClassConnect, Key, Rejection, RejectionKind, TenantApi};
use class_oauth_core::scope::Scopes;
use class_oauth_core::{ClientId, ClientSecret, Environment, RedirectUrl};
use class_oauth_manager::TokenManager;
use class_oauth_reqwest::{ClassClient, ReqwestTransport};
use class_oauth_store::{Encryption, GrantQuery, SqliteStore, TokenStore};
use html_escape::encode_text as escape;

/// What the app needs to run.
#[derive(Debug)]
pub struct Config {
    /// The Class environment (or the emulator's issuer).
    pub environment: Environment,
    /// The partner application's client id.
    pub client_id: ClientId,
    /// Its secret.
    pub client_secret: ClientSecret,
    /// This app's `/callback`, as registered with Class.
    pub redirect_uri: RedirectUrl,
    /// The SQLite file for the tenants' tokens.
    pub database: std::path::PathBuf,
    /// The key the tokens are sealed with.
    pub encryption: Encryption,
    /// The key of the cookie that binds a consent to its browser (the same on every
    /// instance).
    pub cookie_key: Key,
}

/// The token manager this app uses: reqwest, and SQLite for async callers.
pub type Manager = TokenManager<ReqwestTransport, SqliteStore>;

/// The app (cheap to clone; axum clones it per request).
#[derive(Clone, Debug)]
pub struct App {
    class: ClassConnect,
    manager: Manager,
    client_id: ClientId,
}

impl FromRef<App> for ClassConnect {
    fn from_ref(app: &App) -> Self {
        app.class.clone()
    }
}

impl App {
    /// Builds the app: the Class client, the store, the manager and the connect routes.
    /// Call it on a tokio runtime (the manager refreshes in tokio tasks).
    pub fn new(config: Config) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let client = ClassClient::builder(config.environment, config.client_id.clone())
            .secret(config.client_secret)
            .build()?;
        let store = SqliteStore::open(&config.database, config.encryption)?;
        let manager = TokenManager::new(client, store);
        let class = ClassConnect::builder(manager.clone(), config.redirect_uri, config.cookie_key)
            .scopes(Scopes::parse(
                "openid profile class_profile offline_access business.fund.list",
            )?)
            .on_connected(|c| async move { Redirect::to(&format!("/funds/{}", c.business)) })
            .build()?;
        Ok(Self {
            class,
            manager,
            client_id: config.client_id,
        })
    }

    /// The token manager.
    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// The routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(home))
            .route("/funds/{business}", get(funds))
            .merge(self.class.router())
            .with_state(self.clone())
    }
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    ))
}

async fn home(State(app): State<App>) -> Result<Html<String>, Rejection> {
    let grants = app
        .manager
        .store()
        .list(&GrantQuery::all())
        .await
        .map_err(|e| Rejection::new(RejectionKind::Store, e.to_string()))?;
    let mut body = String::from("<h2>Connected businesses</h2><ul>");
    for g in grants
        .iter()
        .filter(|g| g.key.client_id() == app.client_id.as_str())
    {
        let code = escape(g.key.tenant());
        body.push_str(&format!(
            "<li><a href=\"/funds/{code}\">{code}</a> ({})</li>",
            escape(g.status.as_parts().0)
        ));
    }
    body.push_str(
        "</ul><h2>Connect a business</h2><form action=\"/connect\">\
         <input name=\"business\" placeholder=\"Business code\" required>\
         <button>Connect to Class</button></form>",
    );
    Ok(page("Class partner app", &body))
}

async fn funds(api: TenantApi) -> Result<Html<String>, Rejection> {
    let json: serde_json::Value = api.get_data("fund/list").await?;
    let mut body = String::from("<ul>");
    for fund in json["Funds"].as_array().into_iter().flatten() {
        body.push_str(&format!(
            "<li>{} ({})</li>",
            escape(fund["Name"].as_str().unwrap_or("?")),
            escape(fund["Code"].as_str().unwrap_or("?"))
        ));
    }
    body.push_str("</ul><p><a href=\"/\">Home</a></p>");
    Ok(page(&format!("Funds of {}", api.business()), &body))
}
