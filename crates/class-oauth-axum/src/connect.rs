//! The connect and callback routes.

use std::time::Duration;

use axum::response::{IntoResponse, Redirect, Response};
use class_oauth_client::DriveError;
use class_oauth_core::Error;
use class_oauth_core::error::EndpointKind;
use class_oauth_core::scope::{BusinessCode, Scope, Target};
use class_oauth_core::secret::constant_time_eq;
use cookie::{Cookie, CookieJar, SameSite};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, header};

use crate::{ClassConnect, Connected, Denied, Rejection, RejectionKind};

/// How long the state cookie lives when the pending record does not say.
const DEFAULT_COOKIE_TTL: Duration = Duration::from_secs(600);

/// The cookie holding one connect's state: one per connect, so two tabs connecting two
/// businesses at once do not overwrite each other. The name carries the state's first
/// 16 characters (the state is in the callback URL anyway); the value is the whole
/// state, encrypted and authenticated under the application's key.
fn cookie_name(state: &str) -> String {
    let prefix = state.get(..16).unwrap_or(state);
    format!("class_oauth_{prefix}")
}

/// `GET /connect?business=CODE`.
pub(crate) async fn start(class: &ClassConnect, query: Option<&str>) -> Response {
    match try_start(class, query.unwrap_or("")).await {
        Ok(r) => r,
        Err(e) => e.format(class.0.format).into_response(),
    }
}

async fn try_start(class: &ClassConnect, query: &str) -> Result<Response, Rejection> {
    let shared = &class.0;
    let business = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "business")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let target = match business {
        Some(code) => Target::Business(
            BusinessCode::new(code)
                .map_err(|e| Rejection::caused_by(RejectionKind::BadRequest, e))?,
        ),
        None => Target::AnyBusiness,
    };
    let mut scopes = shared.scopes.clone();
    scopes.insert(Scope::Target(target));
    let (url, pending) = shared
        .backend
        .start_authorization(shared.redirect_uri.clone(), scopes, shared.options.clone())
        .await
        .map_err(|e| Rejection::caused_by(RejectionKind::Upstream, e))?;
    let state = pending.state().secret().to_owned();
    let ttl = pending
        .expires_at()
        .duration_since(pending.created_at())
        .unwrap_or(DEFAULT_COOKIE_TTL);
    shared
        .backend
        .put_pending(&state, pending)
        .await
        .map_err(|e| Rejection::caused_by(RejectionKind::Store, e))?;
    let cookie = state_cookie(class, cookie_name(&state), state, ttl);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(url.as_str())).into_response())
}

/// The `Set-Cookie` value sealing `state` (or, with an empty state and no TTL, removing
/// the cookie).
fn state_cookie(class: &ClassConnect, name: String, state: String, ttl: Duration) -> HeaderValue {
    let shared = &class.0;
    let cookie = Cookie::build((name, state))
        .path(shared.callback_path.clone())
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(shared.secure_cookie)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    let mut jar = CookieJar::new();
    jar.private_mut(&shared.key).add(cookie);
    let sealed = jar
        .delta()
        .next()
        .map(|c| c.encoded().to_string())
        .unwrap_or_default();
    // The sealed value is base64 and the attributes are ours: always a valid header.
    HeaderValue::from_str(&sealed).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that removes the state cookie.
fn clear_cookie(class: &ClassConnect, name: String) -> HeaderValue {
    let cookie = Cookie::build((name, ""))
        .path(class.0.callback_path.clone())
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(class.0.secure_cookie)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    HeaderValue::from_str(&cookie.encoded().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether this browser's cookies hold a sealed cookie for `state`.
fn started_here(class: &ClassConnect, headers: &HeaderMap, name: &str, state: &str) -> bool {
    let mut jar = CookieJar::new();
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for c in Cookie::split_parse_encoded(value.to_owned()).flatten() {
            if c.name() == name {
                jar.add_original(c.into_owned());
            }
        }
    }
    jar.private(&class.0.key)
        .get(name)
        .is_some_and(|c| constant_time_eq(c.value().as_bytes(), state.as_bytes()))
}

/// `GET <callback path>?code=...&state=...&iss=...` (or `error=...`). Whatever it
/// answers is neither cached nor followed by a `Referer` carrying the code.
pub(crate) async fn finish(class: &ClassConnect, request: Parts) -> Response {
    let mut response = answer_callback(class, request).await;
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn answer_callback(class: &ClassConnect, request: Parts) -> Response {
    let query = request.uri.query().unwrap_or("").to_owned();
    let query = query.as_str();
    let state = match class_oauth_core::callback::CallbackParams::from_query(query) {
        Ok(p) => p.state,
        Err(e) => {
            return Rejection::caused_by(RejectionKind::BadRequest, e)
                .format(class.0.format)
                .into_response();
        }
    };
    let Some(state) = state else {
        return Rejection::new(RejectionKind::BadRequest, "the callback carries no state")
            .format(class.0.format)
            .into_response();
    };
    let state = state.secret();
    let name = cookie_name(state);
    // The state must be the one this browser was sent off with (login CSRF); checked
    // before the pending record is used up, so another browser cannot spend it.
    if !started_here(class, &request.headers, &name, state) {
        return Rejection::new(
            RejectionKind::NotStartedHere,
            "this connection was not started in this browser; start again",
        )
        .format(class.0.format)
        .into_response();
    }
    let mut response = match redeem(class, state, query, request).await {
        Ok(r) => r,
        Err(e) => e.format(class.0.format).into_response(),
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_cookie(class, name));
    response
}

async fn redeem(
    class: &ClassConnect,
    state: &str,
    query: &str,
    request: Parts,
) -> Result<Response, Rejection> {
    let shared = &class.0;
    let pending = shared
        .backend
        .take_pending(state)
        .await
        .map_err(|e| Rejection::caused_by(RejectionKind::Store, e))?
        .ok_or_else(|| {
            Rejection::new(
                RejectionKind::Expired,
                "this connection was already finished, or it expired; start again",
            )
        })?;
    let asked = pending.scopes().business_code().cloned();
    // The callback as Class sent it: the registered URI (whose own query, if any, is in
    // `query` too) and the parameters.
    let base = shared.redirect_uri.as_str();
    let base = base.split_once('?').map_or(base, |(b, _)| b);
    let callback_url = format!("{base}?{query}");
    let validated = match shared
        .backend
        .finish_authorization(pending, &callback_url)
        .await
    {
        Ok(v) => v,
        Err(DriveError::Protocol(Error::ServerRefused(r)))
            if r.endpoint == EndpointKind::Authorization =>
        {
            let denied = Denied {
                business: asked,
                error: r.error,
                request,
            };
            return Ok((shared.on_denied)(denied).await);
        }
        Err(e) => {
            let kind = match &e {
                DriveError::Protocol(Error::PolicyViolation(_) | Error::InvalidInput(_)) => {
                    RejectionKind::BadRequest
                }
                _ => RejectionKind::Upstream,
            };
            return Err(Rejection::caused_by(kind, e));
        }
    };
    let business = validated.tokens.business_code().ok_or_else(|| {
        Rejection::new(
            RejectionKind::Upstream,
            "Class granted access to no business",
        )
    })?;
    let tenant = class.tenant(&business);
    let grant = shared
        .backend
        .store_tokens(&tenant, &validated)
        .await
        .map_err(Rejection::from_manager)?;
    Ok((shared.on_connected)(Connected {
        business,
        tenant,
        grant,
        request,
    })
    .await)
}
