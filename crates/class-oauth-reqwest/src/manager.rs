//! The async token manager: `access_token(tenant)` returns a valid token, refreshing
//! ahead of expiry, with one refresh per tenant at a time in this process (leader plus
//! shared outcome, failures included) and across processes (the store's lock). The
//! refresh decisions are the store crate's [`RefreshProcedure`] and the hot path is its
//! [`GrantCache`]; this file only drives them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use class_oauth_core::api::{ApiRequest, ApiResponse};
use class_oauth_core::flow::{DriveError, ValidatedTokens};
use class_oauth_core::refresh::RefreshPolicy;
use class_oauth_core::{AccessToken, Error};
use class_oauth_store::asynch::{AsyncGuard, AsyncTokenStore};
use class_oauth_store::cache::GrantCache;
use class_oauth_store::procedure::{Action, Input, ManagerError, RefreshProcedure, TokenEvent};
use class_oauth_store::{StoreError, StoredGrant, TenantKey};
use dashmap::DashMap;

use crate::{AsyncHttpClient, ClassClient};

/// Receives token events (refreshed, re-authorization needed, persist failed, ...).
pub type EventHook = Arc<dyn Fn(&TokenEvent) + Send + Sync>;

type Outcome = Result<Arc<StoredGrant>, ManagerError>;

/// Keeps the grants of many tenants valid.
pub struct TokenManager<S, H = crate::ReqwestTransport> {
    client: ClassClient<H>,
    store: S,
    cache: GrantCache,
    inflight: DashMap<TenantKey, Arc<tokio::sync::OnceCell<Outcome>>>,
    hook: Option<EventHook>,
    slots: tokio::sync::Semaphore,
}

impl<S, H> std::fmt::Debug for TokenManager<S, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncTokenStore, H: AsyncHttpClient> TokenManager<S, H> {
    /// A manager over `client` and `store` with the default refresh policy.
    pub fn new(client: ClassClient<H>, store: S) -> Self {
        Self {
            client,
            store,
            cache: GrantCache::new(RefreshPolicy::default(), Duration::from_secs(5)),
            inflight: DashMap::new(),
            hook: None,
            slots: tokio::sync::Semaphore::new(8),
        }
    }

    /// Sets the refresh policy (margin, jitter, assumed lifetime).
    #[must_use]
    pub fn with_policy(mut self, policy: RefreshPolicy) -> Self {
        self.cache.set_policy(policy);
        self
    }

    /// After a failed refresh while the old token is still valid, serve the old token
    /// this long before trying again (default 5 s).
    #[must_use]
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.cache.set_backoff(backoff);
        self
    }

    /// At most `n` refresh procedures at once (default 8). Each holds a store connection
    /// while it refreshes, so keep this at or below the store's pool size: otherwise, under
    /// a storm, procedures wait for connections that the lock holders need to commit.
    #[must_use]
    pub fn with_max_concurrent_refreshes(mut self, n: usize) -> Self {
        self.slots = tokio::sync::Semaphore::new(n.max(1));
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

    /// Stores the tokens of a finished login (or password grant) for `key`.
    pub async fn store_tokens(
        &self,
        key: &TenantKey,
        validated: &ValidatedTokens,
    ) -> Result<Arc<StoredGrant>, ManagerError> {
        let version = self
            .store
            .save(key, &validated.tokens, validated.id_claims.as_ref(), None)
            .await
            .map_err(ManagerError::Store)?;
        let stored = TokenEvent::Stored {
            key: key.clone(),
            version,
        };
        stored.log();
        self.emit(&stored);
        let grant = Arc::new(
            self.store
                .load(key)
                .await
                .map_err(ManagerError::Store)?
                .ok_or_else(|| ManagerError::NoGrant { key: key.clone() })?,
        );
        self.cache.put(key, grant.clone(), false, SystemTime::now());
        Ok(grant)
    }

    /// A valid access token for `key`, refreshing first when due. The hot path (a cached,
    /// valid token) takes no lock beyond the concurrent map's.
    pub async fn access_token(&self, key: &TenantKey) -> Result<AccessToken, ManagerError> {
        self.grant(key).await.map(|g| g.tokens.access_token.clone())
    }

    /// The valid grant for `key` (tokens, business, scope), refreshing first when due.
    pub async fn grant(&self, key: &TenantKey) -> Result<Arc<StoredGrant>, ManagerError> {
        match self.cache.fresh(key, SystemTime::now()) {
            Some(g) => Ok(g),
            None => self.single_flight(key, None).await,
        }
    }

    /// Refreshes now unless someone already replaced the grant whose token was refused
    /// (`version`). For a 401 from an API.
    pub async fn force_refresh(
        &self,
        key: &TenantKey,
        version: u64,
    ) -> Result<Arc<StoredGrant>, ManagerError> {
        self.single_flight(key, Some(version)).await
    }

    /// Deletes the grant (after a logout, or before a new authorization).
    pub async fn forget(&self, key: &TenantKey) -> Result<bool, StoreError> {
        self.cache.remove(key);
        self.store.delete(key).await
    }

    async fn single_flight(&self, key: &TenantKey, force: Option<u64>) -> Outcome {
        let cell = self
            .inflight
            .entry(key.clone())
            .or_insert_with(|| Arc::new(tokio::sync::OnceCell::new()))
            .clone();
        let outcome = cell.get_or_init(|| self.refresh(key, force)).await.clone();
        self.inflight.remove_if(key, |_, v| Arc::ptr_eq(v, &cell));
        outcome
    }

    async fn refresh(&self, key: &TenantKey, force: Option<u64>) -> Outcome {
        let _slot = self.slots.acquire().await.ok();
        let endpoints = self
            .client
            .endpoints()
            .await
            .map_err(ManagerError::Refresh)?;
        let mut procedure = RefreshProcedure::new(
            key.clone(),
            self.client.config().clone(),
            endpoints,
            self.cache.policy().clone(),
        );
        if let Some(v) = force {
            procedure = procedure.force_if_version(v);
        }
        let span =
            tracing::debug_span!("class_oauth.refresh", tenant = %key, forced = force.is_some());
        let started = std::time::Instant::now();
        let mut guard: Option<AsyncGuard> = None;
        let outcome = loop {
            let now = SystemTime::now();
            let action = procedure.poll(now);
            span.in_scope(|| tracing::trace!(action = action.name(), "refresh step"));
            match action {
                Action::Load => {
                    let input = self
                        .store
                        .load(key)
                        .await
                        .map_or_else(Input::StoreFailed, Input::Loaded);
                    procedure.feed(now, input);
                }
                Action::Lock => match self.store.lock(key).await {
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
                        .await
                        .map_or_else(Input::TransportFailed, Input::Response);
                    procedure.feed(SystemTime::now(), input);
                }
                Action::Wait(d) => tokio::time::sleep(d).await,
                Action::Commit { tokens, id_claims } => {
                    let result = match guard.take() {
                        Some(g) => g.commit(&tokens, id_claims.as_ref()).await,
                        None => Err(StoreError::Backend("no refresh lock held".into())),
                    };
                    procedure.feed(
                        SystemTime::now(),
                        result.map_or_else(Input::StoreFailed, Input::Committed),
                    );
                }
                Action::Unlock => guard = None,
                Action::SetStatus(status) => drop(self.store.set_status(key, &status).await),
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
        span.in_scope(|| {
            self.cache.record(key, &outcome, &events, SystemTime::now());
            tracing::debug!(
                ok = outcome.is_ok(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "refresh finished"
            );
        });
        for e in &events {
            self.emit(e);
        }
        outcome
    }

    /// A Class API call for `key`: the Bearer token, one 429 waited out, and on a 401 one
    /// forced refresh and one retry (never a loop).
    pub async fn api(
        &self,
        key: &TenantKey,
        request: ApiRequest,
    ) -> Result<ApiResponse, ManagerError> {
        let grant = self.grant(key).await?;
        match self
            .client
            .api(&grant.tokens.access_token, request.clone())
            .await
        {
            Err(DriveError::Protocol(Error::ApiRefused(r))) if r.is_unauthorized() => {
                let renewed = self.force_refresh(key, grant.version).await?;
                self.client
                    .api(&renewed.tokens.access_token, request)
                    .await
                    .map_err(ManagerError::Refresh)
            }
            other => other.map_err(ManagerError::Refresh),
        }
    }

    /// `GET` a path below the API base for `key` (see [`TokenManager::api`]).
    pub async fn api_get(&self, key: &TenantKey, path: &str) -> Result<ApiResponse, ManagerError> {
        let endpoints = self
            .client
            .endpoints()
            .await
            .map_err(ManagerError::Refresh)?;
        let base = endpoints.api_base.ok_or_else(|| {
            ManagerError::Refresh(DriveError::Protocol(
                class_oauth_core::error::InputError::MissingEndpoint(
                    class_oauth_core::error::EndpointKind::Api,
                )
                .into(),
            ))
        })?;
        let request = ApiRequest::get(&base, path).map_err(|e| ManagerError::Refresh(e.into()))?;
        self.api(key, request).await
    }
}

fn unknown_action() -> Error {
    class_oauth_core::error::InputError::InvalidValue {
        field: "refresh procedure",
        detail: "unknown action".into(),
    }
    .into()
}
