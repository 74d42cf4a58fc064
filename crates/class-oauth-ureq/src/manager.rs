//! The blocking token manager: `access_token(tenant)` returns a valid token, refreshing
//! ahead of expiry, with one refresh per tenant at a time in this process (leader plus
//! shared outcome, failures included) and across processes (the store's lock). The
//! refresh decisions are the store crate's [`RefreshProcedure`]; this driver executes its
//! actions.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use class_oauth_core::api::{ApiRequest, ApiResponse};
use class_oauth_core::flow::{DriveError, ValidatedTokens};
use class_oauth_core::refresh::RefreshPolicy;
use class_oauth_core::{AccessToken, Error};
use class_oauth_store::procedure::{Action, Input, ManagerError, RefreshProcedure, TokenEvent};
use class_oauth_store::{RefreshGuard, StoreError, StoredGrant, TenantKey, TokenStore};
use dashmap::DashMap;

use crate::{ClassClient, SyncHttpClient};

/// Receives token events (refreshed, re-authorization needed, persist failed, ...).
pub type EventHook = Arc<dyn Fn(&TokenEvent) + Send + Sync>;

#[derive(Debug)]
struct Cached {
    grant: Arc<StoredGrant>,
    refresh_at: SystemTime,
    expires_at: SystemTime,
    retry_not_before: Option<SystemTime>,
}

type Outcome = Result<Arc<StoredGrant>, ManagerError>;

/// Keeps the grants of many tenants valid.
pub struct TokenManager<S, H = crate::UreqTransport> {
    client: ClassClient<H>,
    store: S,
    policy: RefreshPolicy,
    backoff: Duration,
    cache: DashMap<TenantKey, Cached>,
    inflight: DashMap<TenantKey, Arc<OnceLock<Outcome>>>,
    hook: Option<EventHook>,
}

impl<S, H> std::fmt::Debug for TokenManager<S, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl<S: TokenStore, H: SyncHttpClient> TokenManager<S, H> {
    /// A manager over `client` and `store` with the default refresh policy.
    pub fn new(client: ClassClient<H>, store: S) -> Self {
        Self {
            client,
            store,
            policy: RefreshPolicy::default(),
            backoff: Duration::from_secs(5),
            cache: DashMap::with_shard_amount(64),
            inflight: DashMap::new(),
            hook: None,
        }
    }

    /// Sets the refresh policy (margin, jitter, assumed lifetime).
    #[must_use]
    pub fn with_policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// After a failed refresh while the old token is still valid, wait this long before
    /// trying again (default 5 s).
    #[must_use]
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Reports token events to `hook`.
    #[must_use]
    pub fn on_event(mut self, hook: impl Fn(&TokenEvent) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// The client.
    pub fn client(&self) -> &ClassClient<H> {
        &self.client
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn emit(&self, event: &TokenEvent) {
        if let Some(h) = &self.hook {
            h(event);
        }
    }

    fn cache_grant(&self, key: &TenantKey, grant: Arc<StoredGrant>, failed: bool) {
        let now = SystemTime::now();
        let mut jitter = |b: &mut [u8]| {
            let _ = getrandom::getrandom(b);
        };
        let refresh_at = self.policy.refresh_at(&grant.tokens, Some(&mut jitter));
        let expires_at = self.policy.expires_at(&grant.tokens);
        let retry_not_before = failed.then(|| now + self.backoff);
        self.cache.insert(
            key.clone(),
            Cached {
                grant,
                refresh_at,
                expires_at,
                retry_not_before,
            },
        );
    }

    /// Stores the tokens of a finished login (or password grant) for `key`.
    pub fn store_tokens(
        &self,
        key: &TenantKey,
        validated: &ValidatedTokens,
    ) -> Result<Arc<StoredGrant>, ManagerError> {
        let version = self
            .store
            .save(key, &validated.tokens, validated.id_claims.as_ref(), None)
            .map_err(ManagerError::Store)?;
        self.emit(&TokenEvent::Stored {
            key: key.clone(),
            version,
        });
        let grant = Arc::new(
            self.store
                .load(key)
                .map_err(ManagerError::Store)?
                .ok_or_else(|| ManagerError::NoGrant { key: key.clone() })?,
        );
        self.cache_grant(key, grant.clone(), false);
        Ok(grant)
    }

    /// A valid access token for `key`, refreshing first when due. The hot path (a cached,
    /// valid token) takes no lock beyond the concurrent map's.
    pub fn access_token(&self, key: &TenantKey) -> Result<AccessToken, ManagerError> {
        self.grant(key).map(|g| g.tokens.access_token.clone())
    }

    /// The valid grant for `key` (tokens, business, scope), refreshing first when due.
    pub fn grant(&self, key: &TenantKey) -> Result<Arc<StoredGrant>, ManagerError> {
        let now = SystemTime::now();
        if let Some(c) = self.cache.get(key) {
            let backing_off = c.retry_not_before.is_some_and(|t| now < t) && now < c.expires_at;
            if now < c.refresh_at || backing_off {
                tracing::trace!(tenant = %key, backing_off, "cached token");
                return Ok(c.grant.clone());
            }
        }
        self.single_flight(key, None)
    }

    /// Refreshes now unless someone already replaced the grant whose token was refused
    /// (`version`). For a 401 from an API.
    pub fn force_refresh(
        &self,
        key: &TenantKey,
        version: u64,
    ) -> Result<Arc<StoredGrant>, ManagerError> {
        self.single_flight(key, Some(version))
    }

    /// Deletes the grant (after a logout, or before a new authorization).
    pub fn forget(&self, key: &TenantKey) -> Result<bool, StoreError> {
        self.cache.remove(key);
        self.store.delete(key)
    }

    fn single_flight(&self, key: &TenantKey, force: Option<u64>) -> Outcome {
        let cell = self
            .inflight
            .entry(key.clone())
            .or_insert_with(|| Arc::new(OnceLock::new()))
            .clone();
        let outcome = cell.get_or_init(|| self.refresh(key, force)).clone();
        self.inflight.remove_if(key, |_, v| Arc::ptr_eq(v, &cell));
        outcome
    }

    fn refresh(&self, key: &TenantKey, force: Option<u64>) -> Outcome {
        let endpoints = self.client.endpoints().map_err(ManagerError::Refresh)?;
        let mut procedure = RefreshProcedure::new(
            key.clone(),
            self.client.config().clone(),
            endpoints,
            self.policy.clone(),
        );
        if let Some(v) = force {
            procedure = procedure.force_if_version(v);
        }
        let span =
            tracing::debug_span!("class_oauth.refresh", tenant = %key, forced = force.is_some());
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let mut guard: Option<Box<dyn RefreshGuard>> = None;
        let outcome = loop {
            let now = SystemTime::now();
            let action = procedure.poll(now);
            tracing::trace!(action = action_name(&action), "refresh step");
            match action {
                Action::Load => {
                    let input = self
                        .store
                        .load(key)
                        .map_or_else(Input::StoreFailed, Input::Loaded);
                    procedure.feed(now, input);
                }
                Action::Lock => match self.store.lock(key) {
                    Ok(g) => {
                        let current = g.current().cloned();
                        guard = Some(g);
                        procedure.feed(SystemTime::now(), Input::Locked(current));
                    }
                    Err(e) => procedure.feed(now, Input::StoreFailed(e)),
                },
                Action::Send(req) => {
                    let input = self
                        .client
                        .http()
                        .send(req)
                        .map_or_else(Input::TransportFailed, Input::Response);
                    procedure.feed(SystemTime::now(), input);
                }
                Action::Wait(d) => std::thread::sleep(d),
                Action::Commit { tokens, id_claims } => {
                    let result = match guard.take() {
                        Some(g) => g.commit(&tokens, id_claims.as_ref()),
                        None => Err(StoreError::Backend("no refresh lock held".into())),
                    };
                    procedure.feed(
                        SystemTime::now(),
                        result.map_or_else(Input::StoreFailed, Input::Committed),
                    );
                }
                Action::Unlock => guard = None,
                Action::SetStatus(status) => drop(self.store.set_status(key, &status)),
                Action::Done(outcome) => break outcome,
                _ => {
                    break Err(ManagerError::Refresh(
                        DriveError::Protocol(unknown_action()),
                    ));
                }
            }
        };
        drop(guard);
        let events = procedure.take_events();
        let failed = events
            .iter()
            .any(|e| matches!(e, TokenEvent::RefreshFailed { .. }));
        for e in &events {
            log_event(e);
            self.emit(e);
        }
        tracing::debug!(
            ok = outcome.is_ok(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "refresh finished"
        );
        match &outcome {
            Ok(g) => self.cache_grant(key, g.clone(), failed),
            Err(_) => drop(self.cache.remove(key)),
        }
        outcome
    }

    /// A Class API call for `key`: the Bearer token, one 429 waited out, and on a 401 one
    /// forced refresh and one retry (never a loop).
    pub fn api(&self, key: &TenantKey, request: ApiRequest) -> Result<ApiResponse, ManagerError> {
        let grant = self.grant(key)?;
        match self.client.api(&grant.tokens.access_token, request.clone()) {
            Err(DriveError::Protocol(Error::ApiRefused(r))) if r.is_unauthorized() => {
                let renewed = self.force_refresh(key, grant.version)?;
                self.client
                    .api(&renewed.tokens.access_token, request)
                    .map_err(ManagerError::Refresh)
            }
            other => other.map_err(ManagerError::Refresh),
        }
    }

    /// `GET` a path below the API base for `key` (see [`TokenManager::api`]).
    pub fn api_get(&self, key: &TenantKey, path: &str) -> Result<ApiResponse, ManagerError> {
        let endpoints = self.client.endpoints().map_err(ManagerError::Refresh)?;
        let base = endpoints.api_base.ok_or_else(|| {
            ManagerError::Refresh(DriveError::Protocol(
                class_oauth_core::error::InputError::MissingEndpoint(
                    class_oauth_core::error::EndpointKind::Api,
                )
                .into(),
            ))
        })?;
        let request = ApiRequest::get(&base, path).map_err(|e| ManagerError::Refresh(e.into()))?;
        self.api(key, request)
    }
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Load => "load",
        Action::Lock => "lock",
        Action::Send(_) => "send",
        Action::Wait(_) => "wait",
        Action::Commit { .. } => "commit",
        Action::Unlock => "unlock",
        Action::SetStatus(_) => "set_status",
        Action::Done(_) => "done",
        _ => "other",
    }
}

fn log_event(e: &TokenEvent) {
    match e {
        TokenEvent::Refreshed {
            key,
            version,
            expires_at,
        } => tracing::info!(tenant = %key, version, expires_at, "token refreshed"),
        TokenEvent::RefreshedElsewhere { key } => {
            tracing::debug!(tenant = %key, "another instance refreshed first")
        }
        TokenEvent::RefreshFailed {
            key,
            error,
            transient,
        } => tracing::warn!(tenant = %key, transient, error = %error, "refresh failed"),
        TokenEvent::ReauthorizationRequired { key, reason } => {
            tracing::warn!(tenant = %key, reason = %reason, "re-authorization required")
        }
        TokenEvent::PersistFailed { key, error } => {
            tracing::error!(tenant = %key, error = %error, "refreshed tokens could not be stored")
        }
        TokenEvent::Stored { key, version } => {
            tracing::info!(tenant = %key, version, "grant stored")
        }
        _ => tracing::debug!("token event"),
    }
}

fn unknown_action() -> Error {
    class_oauth_core::error::InputError::InvalidValue {
        field: "refresh procedure",
        detail: "unknown action".into(),
    }
    .into()
}
