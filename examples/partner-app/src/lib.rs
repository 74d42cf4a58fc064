//! A Class partner web app on axum: what class-oauth looks like in the application it
//! was built for.
//!
//! - `GET /`: the businesses connected so far, and a form to connect another.
//! - `GET /connect?business=CODE`: starts the code flow for that business (PKCE, state,
//!   nonce; the pending record in the store, keyed by its state, and the state in a
//!   cookie that binds it to this browser), and redirects to Class's consent page.
//! - `GET /callback`: checks the cookie, takes the pending record (once), verifies the
//!   callback and redeems the code, validates the ID token, and stores the tokens for
//!   the business the user consented to; then redirects to its funds.
//! - `GET /funds/{business}`: the business's funds, fetched through the
//!   reqwest-middleware stack with [`ClassAuth`]: the tenant's token (refreshed when
//!   due), Class's `Accept` type, a 401 renewed once, a short 429 waited out.
//!
//! Tokens are stored per tenant in SQLite, encrypted. `src/main.rs` runs it offline
//! against the Class emulator unless given real credentials.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use class_oauth_core::scope::{BusinessCode, Scopes};
use class_oauth_core::{ClientId, ClientSecret, Environment, RedirectUrl};
use class_oauth_manager::middleware::ClassAuth;
use class_oauth_manager::{ManagerError, TenantKey, TokenManager};
use class_oauth_reqwest::{AuthorizeOptions, Callback, ClassClient, ReqwestTransport};
use class_oauth_store::{Encryption, GrantQuery, SqliteStore, TokenStore};
use reqwest_middleware::ClientWithMiddleware;

/// The cookie that binds a consent redirect to the browser that started it.
const STATE_COOKIE: &str = "class_oauth_state";

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
}

/// The token manager this app uses: reqwest, and SQLite for async callers.
pub type Manager = TokenManager<ReqwestTransport, SqliteStore>;

/// The app (cheap to clone; axum clones it per request).
#[derive(Clone)]
pub struct App(Arc<Inner>);

struct Inner {
    client: ClassClient,
    manager: Manager,
    api: ClientWithMiddleware,
    client_id: ClientId,
    redirect_uri: RedirectUrl,
}

/// A failure shown to the user as a page.
#[derive(Debug)]
pub struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            self.0,
            page(
                "Something went wrong",
                &format!("<p>{}</p><p><a href=\"/\">Home</a></p>", escape(&self.1)),
            ),
        )
            .into_response()
    }
}

fn failure(status: StatusCode, e: impl std::fmt::Display) -> Failure {
    Failure(status, e.to_string())
}

impl App {
    /// Builds the app: the Class client, the store, the manager and the middleware
    /// stack. Call it on a tokio runtime (the manager refreshes in tokio tasks).
    pub fn new(config: Config) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let transport = ReqwestTransport::new()?;
        // The same client (TLS, proxy, User-Agent) for Class API calls of our own.
        let http = transport.client().clone();
        let client = ClassClient::builder(config.environment, config.client_id.clone())
            .secret(config.client_secret)
            .http(transport)
            .build()?;
        let store = SqliteStore::open(&config.database, config.encryption)?;
        let manager = TokenManager::new(client.clone(), store);
        let api = reqwest_middleware::ClientBuilder::new(http)
            .with(ClassAuth::new(manager.clone()))
            .build();
        Ok(Self(Arc::new(Inner {
            client,
            manager,
            api,
            client_id: config.client_id,
            redirect_uri: config.redirect_uri,
        })))
    }

    /// The token manager.
    pub fn manager(&self) -> &Manager {
        &self.0.manager
    }

    /// The routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(home))
            .route("/connect", get(connect))
            .route("/callback", get(callback))
            .route("/funds/{business}", get(funds))
            .with_state(self.clone())
    }

    fn tenant(&self, business: &str) -> TenantKey {
        TenantKey::new(&self.0.client_id, business)
    }
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn home(State(app): State<App>) -> Result<Html<String>, Failure> {
    let grants = app
        .0
        .manager
        .store()
        .list(&GrantQuery::all())
        .await
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let mut body = String::from("<h2>Connected businesses</h2><ul>");
    for g in grants
        .iter()
        .filter(|g| g.key.client_id() == app.0.client_id.as_str())
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

#[derive(serde::Deserialize)]
struct ConnectQuery {
    business: String,
}

async fn connect(
    State(app): State<App>,
    Query(q): Query<ConnectQuery>,
) -> Result<Response, Failure> {
    let business =
        BusinessCode::new(q.business.trim()).map_err(|e| failure(StatusCode::BAD_REQUEST, e))?;
    let scopes = Scopes::parse(&format!(
        "openid profile class_profile target:b/{business} offline_access business.fund.list"
    ))
    .map_err(|e| failure(StatusCode::BAD_REQUEST, e))?;
    let (url, pending) = app
        .0
        .client
        .start_authorization(
            app.0.redirect_uri.clone(),
            scopes,
            AuthorizeOptions::default(),
        )
        .await
        .map_err(|e| failure(StatusCode::BAD_GATEWAY, e))?;
    let state = pending.state().secret().to_owned();
    app.0
        .manager
        .store()
        .put_pending(&state, pending)
        .await
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let cookie =
        format!("{STATE_COOKIE}={state}; Path=/callback; HttpOnly; SameSite=Lax; Max-Age=600");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(url.as_str())).into_response())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Failure> {
    let query = query.unwrap_or_default();
    let state = url_state(&query)
        .ok_or_else(|| failure(StatusCode::BAD_REQUEST, "the callback has no state"))?;
    // The state must be the one this browser was sent off with (login CSRF).
    if cookie(&headers, STATE_COOKIE) != Some(state.as_str()) {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            "this sign-in was not started in this browser; start again from the home page",
        ));
    }
    let pending = app
        .0
        .manager
        .store()
        .take_pending(&state, SystemTime::now())
        .await
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .ok_or_else(|| {
            failure(
                StatusCode::BAD_REQUEST,
                "this sign-in has already been used or has expired; start again",
            )
        })?;
    let callback_url = format!("{}?{query}", app.0.redirect_uri.as_str());
    let granted = app
        .0
        .client
        .finish_authorization(pending, Callback::Url(&callback_url))
        .await
        .map_err(|e| failure(StatusCode::BAD_REQUEST, e))?;
    let business = granted
        .tokens
        .business_code()
        .ok_or_else(|| failure(StatusCode::BAD_GATEWAY, "Class granted no business"))?;
    app.0
        .manager
        .store_tokens(&app.tenant(business.as_str()), &granted)
        .await
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let clear = format!("{STATE_COOKIE}=; Path=/callback; HttpOnly; SameSite=Lax; Max-Age=0");
    Ok((
        [(header::SET_COOKIE, clear)],
        Redirect::to(&format!("/funds/{business}")),
    )
        .into_response())
}

fn url_state(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "state")
        .map(|(_, v)| v.to_owned())
}

async fn funds(State(app): State<App>, Path(business): Path<String>) -> Result<Response, Failure> {
    let business = BusinessCode::new(business).map_err(|e| failure(StatusCode::BAD_REQUEST, e))?;
    let endpoints = app
        .0
        .client
        .endpoints()
        .await
        .map_err(|e| failure(StatusCode::BAD_GATEWAY, e))?;
    let base = endpoints
        .api_base
        .clone()
        .ok_or_else(|| failure(StatusCode::BAD_GATEWAY, "no Class API base URL"))?;
    // The core joins API paths the way Class's base URLs need.
    let url = class_oauth_core::api::ApiRequest::get(&base, &format!("b/{business}/fund/list"))
        .map_err(|e| failure(StatusCode::BAD_REQUEST, e))?
        .url()
        .clone();
    let sent = app
        .0
        .api
        .get(url.as_str())
        .with_extension(app.tenant(business.as_str()))
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(reqwest_middleware::Error::Middleware(e))
            if e.downcast_ref::<ManagerError>()
                .is_some_and(ManagerError::requires_reauthorization) =>
        {
            let body = format!(
                "<p>{} is not connected (or its access was revoked).</p>\
                 <p><a href=\"/connect?business={b}\">Connect to Class</a></p>",
                escape(business.as_str()),
                b = escape(business.as_str()),
            );
            return Ok((StatusCode::UNAUTHORIZED, page("Connect to Class", &body)).into_response());
        }
        Err(e) => return Err(failure(StatusCode::BAD_GATEWAY, e)),
    };
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| failure(StatusCode::BAD_GATEWAY, e))?;
    if !status.is_success() {
        return Err(failure(
            StatusCode::BAD_GATEWAY,
            format!("Class answered HTTP {}", status.as_u16()),
        ));
    }
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| failure(StatusCode::BAD_GATEWAY, e))?;
    let mut body = String::from("<ul>");
    for fund in json["Data"]["Funds"].as_array().into_iter().flatten() {
        body.push_str(&format!(
            "<li>{} ({})</li>",
            escape(fund["Name"].as_str().unwrap_or("?")),
            escape(fund["Code"].as_str().unwrap_or("?"))
        ));
    }
    body.push_str("</ul><p><a href=\"/\">Home</a></p>");
    Ok(page(&format!("Funds of {business}"), &body).into_response())
}
