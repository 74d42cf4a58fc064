//! The fixture loader (not published): the conformance fixtures under `fixtures/` and
//! a runner that plays one fixture through the core with any `send` function; with it,
//! the test support the workspace's tests share (`bounded`, the seeded grants of
//! [`seed`], throwaway PostgreSQL servers). Named for what it loads, beside the
//! emulator (`class-oauth-testkit`) and the conformance matrix that replays these
//! fixtures through both transports (`class-oauth-conformance`).
//!
//! A fixture is one JSON file describing an operation (`password`, `authorization_code`,
//! `refresh`, `discovery`, `userinfo`, `revoke`, `api`), the request the library must
//! send, the canned response, and the expected outcome. The core replays it in memory
//! (`send` returns the canned response); transports mount the same response on a mock
//! server and pass a `send` that goes over the network. Both produce an outcome value
//! that [`check_outcome`] compares with the fixture's expectation, so any divergence
//! between layers shows up as a failed case. The schema is in `docs/conformance.md`.

#![forbid(unsafe_code)]

pub use class_oauth_testkit::keys as jwt;
mod bounded;
mod fixture;
pub mod pg_cluster;
pub mod pg_server;
pub mod seed;

pub use bounded::bounded;
/// The client's key-set cache, for tests that seed one.
pub use class_oauth_client::KeySets;
pub use fixture::{CannedResponse, ExpectRequest, Fixture, IdTokenSpec, fixtures_dir, load_all};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use class_oauth_core::authorize::{Prompt, ResponseMode};
use class_oauth_core::discovery::{self, DiscoveryInput, DiscoveryPolicy};
use class_oauth_core::flow::{AuthorizeOptions, Callback, ClientConfig};
use class_oauth_core::flow::{
    DriveError, Exchange, Flow, KeyCache, OnFailure, SharedKeySet, Step, TokenFlow,
    ValidatedTokens, drive_blocking,
};
use class_oauth_core::id_token::IdTokenError;
use class_oauth_core::jwks::KeySetCache;
use class_oauth_core::revocation::RevocationRequest;
use class_oauth_core::scope::Scopes;
use class_oauth_core::token::TokenRequest;
use class_oauth_core::userinfo::ExpectedSubject;
use class_oauth_core::{
    AccessToken, Client, ClientId, ClientSecret, Endpoints, Environment, Error, IdTokenTrust,
    IssuerUrl, NonceMode, Password, PkceMode, RedirectUrl, RefreshToken, Username,
};
use serde_json::{Map, Value, json};

/// The fixed `now` of every fixture: 2023-11-14T22:13:20Z.
pub const NOW_UNIX: u64 = 1_700_000_000;
/// The client id every fixture uses.
pub const CLIENT_ID: &str = "1eaa3979-9caf-4c6b-bab8-2cbcd549d410";
/// The client secret every fixture uses (confidential clients).
pub const CLIENT_SECRET: &str = "fixture-client-secret";

/// `now` as a `SystemTime`.
#[must_use]
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_UNIX)
}

/// Deterministic bytes for state, nonce and PKCE (the fixtures never depend on them).
pub fn entropy() -> impl FnMut(&mut [u8]) {
    let mut n: u8 = 0;
    move |buf: &mut [u8]| {
        for b in buf.iter_mut() {
            n = n.wrapping_mul(31).wrapping_add(17);
            *b = n;
        }
    }
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

/// Builds the client a fixture asks for, against `issuer` (the mock server's base URL).
///
/// # Panics
/// On an invalid fixture.
#[must_use]
pub fn client_for(fixture: &Fixture, issuer: &str) -> Client {
    let issuer_url = IssuerUrl::new(issuer).expect("valid issuer");
    let env = Environment::Custom(issuer_url.clone());
    let mut endpoints: Endpoints = env.preset();
    if let Some(p) = str_of(&fixture.client, "revocation_path") {
        endpoints.revocation_endpoint = Some(issuer_url.join(p));
    }
    if fixture.client.get("iss_parameter_supported") == Some(&Value::Bool(true)) {
        endpoints.authorization_response_iss_parameter_supported = true;
    }
    let mut client = Client::new(ClientId::new(CLIENT_ID), endpoints);
    if fixture.client.get("public") != Some(&Value::Bool(true)) {
        client = client.with_secret(ClientSecret::new(CLIENT_SECRET));
    }
    if fixture.client.get("pkce") == Some(&Value::Bool(false)) {
        client = client.with_pkce(PkceMode::Disabled);
    }
    client
}

/// The outcome of an error, normalised for comparison across layers.
#[must_use]
pub fn error_outcome(e: &Error) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), json!(e.kind().as_str()));
    if let Some(c) = e.code() {
        m.insert("code".into(), json!(c.as_str()));
    }
    if let Some(s) = e.status() {
        m.insert("status".into(), json!(s.as_u16()));
    }
    m.insert("transient".into(), json!(e.is_transient()));
    m.insert("reauth".into(), json!(e.requires_reauthorization()));
    if let Some(r) = e.retry_after() {
        m.insert(
            "retry_after_secs".into(),
            json!(r.delay_from(now()).as_secs()),
        );
    }
    // The specific reason: the variant name of the detailed error, so that a negative
    // case cannot pass for the wrong reason (a mis-wired key set, say).
    let reason = match e {
        Error::MalformedResponse(mr) => Some(variant_name(&mr.reason)),
        Error::PolicyViolation(p) => Some(variant_name(p)),
        Error::IdTokenRejected(i) => Some(variant_name(i)),
        Error::InvalidInput(i) => Some(variant_name(i)),
        _ => None,
    };
    if let Some(r) = reason {
        m.insert("reason".into(), json!(r));
    }
    if let Error::IdTokenRejected(
        IdTokenError::MissingClaim(claim) | IdTokenError::InvalidClaim { claim, .. },
    ) = e
    {
        m.insert("claim".into(), json!(claim));
    }
    json!({ "error": m, "display": e.to_string() })
}

/// The name of an enum variant, from its `Debug` form (`Expired { .. }` gives `Expired`).
fn variant_name(v: &impl std::fmt::Debug) -> String {
    let text = format!("{v:?}");
    text.split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn token_outcome(v: &ValidatedTokens) -> Value {
    let t = &v.tokens;
    json!({"ok": {
        "access_token": t.access_token.secret(),
        "refresh_token": t.refresh_token.as_ref().map(RefreshToken::secret),
        "token_type": t.token_type,
        "expires_in": t.expires_in,
        "expires_at": t.expires_at.map(class_oauth_core::time::to_unix),
        "scope": t.scopes.to_string(),
        "scope_in_response": t.scope_in_response,
        "business_code": t.business_code().map(|c| c.as_str().to_owned()),
        "business_name": t.business_name(),
        "id_token_present": t.id_token.is_some(),
        "id_token_sub": v.id_claims.as_ref().map(|c| c.sub.clone()),
    }})
}

fn scopes(input: &Map<String, Value>, key: &str) -> Scopes {
    Scopes::parse(str_of(input, key).unwrap_or("")).expect("fixture scopes parse")
}

/// The nonce the harness's deterministic entropy produces for the authorization request
/// (state is drawn first, then the nonce).
#[must_use]
pub fn harness_nonce() -> String {
    let mut e = entropy();
    let _state = class_oauth_core::State::generate(&mut e);
    class_oauth_core::Nonce::generate(&mut e)
        .secret()
        .to_owned()
}

/// A flow whose output is the normalised outcome value.
pub type OutcomeFlow = Box<dyn Flow<Output = Value> + Send>;

struct MapFlow<F, G> {
    inner: F,
    map: Option<G>,
}

impl<F: Flow, G: FnOnce(F::Output) -> Value> Flow for MapFlow<F, G> {
    type Output = Value;
    fn poll(&mut self, now: SystemTime) -> Step<Value> {
        match self.inner.poll(now) {
            Step::Done(Ok(v)) => match self.map.take() {
                Some(m) => Step::Done(Ok(m(v))),
                None => Step::Done(Ok(Value::Null)),
            },
            Step::Done(Err(e)) => Step::Done(Err(e)),
            Step::Send(r) => Step::Send(r),
            Step::Wait(d) => Step::Wait(d),
        }
    }
    fn handle_response(&mut self, now: SystemTime, response: http::Response<Vec<u8>>) {
        self.inner.handle_response(now, response);
    }
    fn handle_transport_failure(&mut self, now: SystemTime) -> OnFailure {
        self.inner.handle_transport_failure(now)
    }
}

fn boxed<F, G>(inner: F, map: G) -> OutcomeFlow
where
    F: Flow + Send + 'static,
    G: FnOnce(F::Output) -> Value + Send + 'static,
{
    Box::new(MapFlow {
        inner,
        map: Some(map),
    })
}

/// Builds the client configuration and endpoints a fixture asks for, against `issuer`.
///
/// # Panics
/// On an invalid fixture.
#[must_use]
pub fn config_for(fixture: &Fixture, issuer: &str) -> (ClientConfig, Endpoints, Arc<dyn KeyCache>) {
    let client = client_for(fixture, issuer);
    let mut endpoints = client.endpoints().clone();
    let issuer_url = IssuerUrl::new(issuer).expect("valid issuer");
    if let Some(p) = str_of(&fixture.client, "jwks_path") {
        endpoints.jwks_uri = Some(issuer_url.join(p));
    }
    if let Some(Value::Array(algs)) = fixture.client.get("id_token_algorithms") {
        endpoints.id_token_signing_alg_values_supported = Some(
            algs.iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
        );
    }
    let secret = (fixture.client.get("public") != Some(&Value::Bool(true)))
        .then(|| ClientSecret::new(CLIENT_SECRET));
    let mut config = ClientConfig::new(ClientId::new(CLIENT_ID), secret);
    let keys = Arc::new(KeySets::new(config.max_body));
    config.pkce = client.pkce();
    if fixture.client.get("nonce") == Some(&Value::Bool(false)) {
        config.nonce = NonceMode::Disabled;
    }
    if str_of(&fixture.client, "id_token_trust") == Some("danger_token_endpoint_tls") {
        config.id_token_trust = IdTokenTrust::DangerTokenEndpointTls;
    }
    if let Some(Value::Array(auds)) = fixture.client.get("trusted_audiences") {
        config.trusted_audiences = auds
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
    }
    if let (Some(uri), Some(Value::Array(seed))) =
        (&endpoints.jwks_uri, fixture.client.get("jwks_seed"))
    {
        let names: Vec<String> = seed
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let age = fixture
            .client
            .get("jwks_seed_age_secs")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let body = CannedResponse {
            status: 200,
            jwks: Some(names),
            ..CannedResponse::default()
        };
        let mut cache = KeySetCache::new(uri.clone());
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body.body_bytes(issuer))
            .expect("response");
        let seeded_at = now() - Duration::from_secs(age);
        cache
            .handle_response(seeded_at, &resp)
            .expect("seed key set");
        keys.set(cache);
    }
    (config, endpoints, keys)
}

/// Prepares a fixture: the flow to drive, or (for failures before any request, such as a
/// rejected callback) the outcome at once.
///
/// # Panics
/// On an invalid fixture.
pub fn prepare(fixture: &Fixture, issuer: &str) -> Result<OutcomeFlow, Value> {
    let (config, endpoints, keys) = config_for(fixture, issuer);
    let input = &fixture.input;
    let fail = |e: Error| error_outcome(&e);
    Ok(match fixture.operation.as_str() {
        "password" => {
            let flow = config
                .password_flow(
                    &endpoints,
                    Some(&keys),
                    Username::new(str_of(input, "username").unwrap_or("user")),
                    Password::new(str_of(input, "password").unwrap_or("pass")),
                    scopes(input, "scope"),
                )
                .map_err(fail)?;
            boxed(flow, |v| token_outcome(&v))
        }
        "refresh" => {
            let client = config.client(&endpoints);
            let rt = RefreshToken::new(str_of(input, "refresh_token").unwrap_or("rt-old"));
            let mut req = TokenRequest::refresh_token(rt, scopes(input, "granted_scope"));
            if let Some(n) = str_of(input, "narrow_scope") {
                req = req
                    .with_narrower_scope(Scopes::parse(n).expect("scope"))
                    .map_err(fail)?;
            }
            let flow = TokenFlow::new(&client, req).with_id_token_validation(
                config.validator(&endpoints),
                endpoints
                    .jwks_uri
                    .clone()
                    .map(|uri| SharedKeySet::new(keys.clone(), uri)),
                None,
            );
            boxed(flow, |v| token_outcome(&v))
        }
        "authorization_code" => {
            let redirect = RedirectUrl::new(
                str_of(input, "redirect_uri").unwrap_or("https://partner.example/cb"),
            )
            .expect("redirect");
            let mut options = AuthorizeOptions::default();
            options.prompt = str_of(input, "prompt").map(|p| Prompt::parse(p).expect("prompt"));
            if str_of(input, "response_mode") == Some("form_post") {
                options.response_mode = Some(ResponseMode::FormPost);
            }
            options.max_age = input
                .get("max_age")
                .and_then(Value::as_u64)
                .map(Duration::from_secs);
            let (_url, pending) = config
                .authorization(
                    &endpoints,
                    redirect,
                    scopes(input, "scope"),
                    options,
                    &mut entropy(),
                    now(),
                )
                .map_err(fail)?;
            let query = str_of(input, "callback")
                .unwrap_or("code=fixture-code&state={state}")
                .replace("{state}", pending.state().secret())
                .replace("{issuer_encoded}", &encode(issuer));
            let url = format!(
                "{}{}{query}",
                pending.redirect_uri(),
                if pending.redirect_uri().as_str().contains('?') {
                    "&"
                } else {
                    "?"
                }
            );
            let flow = config
                .callback_flow(&endpoints, Some(&keys), pending, Callback::Url(&url), now())
                .map_err(fail)?;
            boxed(flow, |v| token_outcome(&v))
        }
        "discovery" => {
            let issuer_url = IssuerUrl::new(issuer).expect("issuer");
            let env = Environment::Custom(issuer_url.clone());
            let mut policy = DiscoveryPolicy::default();
            if input.get("require_key_set") == Some(&Value::Bool(false)) {
                policy = policy.without_key_set_requirement();
            }
            let flow = Exchange::new(Ok(discovery::request(&issuer_url)), move |resp, _| {
                discovery::resolve(&env, DiscoveryInput::Response(resp), &policy)
            });
            boxed(flow, |e| {
                let path = |u: &url::Url| u.path().to_owned();
                json!({"ok": {
                    "source": serde_json::to_value(e.source).expect("serialisable"),
                    "authorization_path": path(&e.authorization_endpoint),
                    "token_path": path(&e.token_endpoint),
                    "userinfo_path": e.userinfo_endpoint.as_ref().map(path),
                    "jwks_path": e.jwks_uri.as_ref().map(path),
                    "revocation_path": e.revocation_endpoint.as_ref().map(path),
                }})
            })
        }
        "userinfo" => {
            let at = AccessToken::new(str_of(input, "access_token").unwrap_or("at"));
            boxed(
                config.userinfo_flow(
                    &endpoints,
                    &at,
                    str_of(input, "expected_sub")
                        .map_or(ExpectedSubject::NoIdToken, ExpectedSubject::Sub),
                ),
                |u| json!({"ok": {"sub": u.sub, "email": u.email, "business_code": u.business_code, "class_role": u.class_role, "name": u.name}}),
            )
        }
        "revoke" => {
            let token = str_of(input, "token").unwrap_or("rt");
            let req = if str_of(input, "hint") == Some("access_token") {
                RevocationRequest::AccessToken(AccessToken::new(token))
            } else {
                RevocationRequest::RefreshToken(RefreshToken::new(token))
            };
            boxed(config.revoke_flow(&endpoints, req), |()| json!({"ok": {}}))
        }
        "api" => {
            let at = AccessToken::new(str_of(input, "access_token").unwrap_or("at"));
            let mut config = config;
            if let Some(w) = input.get("max_wait_secs").and_then(Value::as_u64) {
                config.max_rate_limit_wait = Duration::from_secs(w);
            }
            let flow = config
                .api_get_flow(&endpoints, &at, str_of(input, "path").unwrap_or(""))
                .map_err(fail)?;
            boxed(
                flow,
                |r| json!({"ok": {"status": r.status.as_u16(), "data": r.data, "remaining": r.rate_limit.remaining}}),
            )
        }
        other => panic!("unknown fixture operation `{other}`"),
    })
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The outcome value of a driver error.
#[must_use]
pub fn drive_error_outcome(e: &DriveError) -> Value {
    match e {
        DriveError::Protocol(p) => error_outcome(p),
        DriveError::Transport(t) => {
            json!({"error": {"kind": "transport", "transport_kind": t.kind.as_str()}, "display": t.to_string()})
        }
        _ => json!({"error": {"kind": "unknown"}}),
    }
}

/// The canned response for a request path: the main response for the expected path,
/// else one of `other_responses`, else a 404.
#[must_use]
pub fn route(fixture: &Fixture, path: &str, issuer: &str) -> http::Response<Vec<u8>> {
    let main = fixture.expect_request.as_ref().map(|e| e.path.as_str());
    let canned = if main == Some(path) {
        fixture.response.as_ref()
    } else {
        fixture.other_responses.get(path)
    };
    match canned {
        Some(c) => c.to_http(issuer),
        None => http::Response::builder()
            .status(404)
            .body(Vec::new())
            .expect("response"),
    }
}

/// The number of requests the library must send.
#[must_use]
pub fn expected_request_count(fixture: &Fixture) -> usize {
    fixture
        .expect_request_count
        .unwrap_or_else(|| usize::from(fixture.expect_request.is_some()))
}

/// Checks that `outcome` matches `expect`: the same top-level key (`ok` / `error`) and
/// every field named in the expectation equal. Fields not named are not compared.
pub fn check_outcome(expect: &Value, outcome: &Value) -> Result<(), String> {
    let (Some(exp), Some(out)) = (expect.as_object(), outcome.as_object()) else {
        return Err("expectation and outcome must be objects".into());
    };
    for (key, want) in exp {
        let Some(got) = out.get(key) else {
            return Err(format!("expected `{key}`, got {}", short(outcome)));
        };
        let (Some(want), Some(got)) = (want.as_object(), got.as_object()) else {
            return Err(format!("`{key}` must be an object"));
        };
        for (field, w) in want {
            let g = got.get(field).unwrap_or(&Value::Null);
            if g != w {
                return Err(format!(
                    "{key}.{field}: expected {w}, got {g} ({})",
                    short(outcome)
                ));
            }
        }
    }
    Ok(())
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 400 {
        format!("{}...", &s[..400])
    } else {
        s
    }
}

/// Checks a request against the fixture's expectation. `base_path` is the issuer's
/// path (empty for a bare host).
pub fn check_request(expect: &ExpectRequest, req: &http::Request<Vec<u8>>) -> Result<(), String> {
    if req.method().as_str() != expect.method {
        return Err(format!(
            "method: expected {}, got {}",
            expect.method,
            req.method()
        ));
    }
    if req.uri().path() != expect.path {
        return Err(format!(
            "path: expected {}, got {}",
            expect.path,
            req.uri().path()
        ));
    }
    for (name, value) in &expect.headers {
        let got = req
            .headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok());
        if got != Some(value.as_str()) {
            return Err(format!("header {name}: expected {value:?}, got {got:?}"));
        }
    }
    for name in &expect.headers_absent {
        if req.headers().contains_key(name.as_str()) {
            return Err(format!("header {name} must be absent"));
        }
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(req.body())
        .into_owned()
        .collect();
    for (name, value) in &expect.form {
        let got: Vec<_> = form.iter().filter(|(k, _)| k == name).collect();
        if got.len() != 1 || got[0].1 != *value {
            return Err(format!("form {name}: expected {value:?} once, got {got:?}"));
        }
    }
    for name in &expect.form_absent {
        if form.iter().any(|(k, _)| k == name) {
            return Err(format!("form field {name} must be absent"));
        }
    }
    let mut names: Vec<_> = form.iter().map(|(k, _)| k).collect();
    let total = names.len();
    names.sort();
    names.dedup();
    if names.len() != total {
        return Err("a form field is repeated".into());
    }
    Ok(())
}

/// Replays a fixture in memory through the core: checks the request (or that none was
/// sent), the number of requests, and the outcome. Returns `Ok(None)` for
/// transport-only cases.
pub fn replay_core(fixture: &Fixture) -> Result<Option<Value>, String> {
    if fixture.transport_fault.is_some() {
        return Ok(None);
    }
    let issuer = "https://class.test";
    let mut request_error = None;
    let mut sent = 0usize;
    let outcome = match prepare(fixture, issuer) {
        Err(outcome) => outcome,
        Ok(flow) => {
            let result = drive_blocking(
                flow,
                now,
                |req| {
                    sent += 1;
                    if let Some(exp) = &fixture.expect_request {
                        if req.uri().path() == exp.path {
                            if let Err(e) = check_request(exp, &req) {
                                request_error.get_or_insert(e);
                            }
                        }
                    }
                    Ok(route(fixture, req.uri().path(), issuer))
                },
                |_| {},
            );
            match result {
                Ok(v) => v,
                Err(e) => drive_error_outcome(&e),
            }
        }
    };
    if let Some(e) = request_error {
        return Err(format!("request: {e}"));
    }
    let expected = expected_request_count(fixture);
    if sent != expected {
        return Err(format!(
            "expected {expected} request(s), the core sent {sent} (outcome {})",
            short(&outcome)
        ));
    }
    check_outcome(&fixture.expect, &outcome)?;
    Ok(Some(outcome))
}
