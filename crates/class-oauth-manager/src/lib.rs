//! # class-oauth-manager
//!
//! Keeps per-tenant Class grants valid: `access_token(tenant)` returns a valid token,
//! refreshing ahead of expiry, across any number of instances sharing a store, without
//! ever spending a one-time refresh token twice or losing a rotated one.
//!
//! Written once: [`TokenManager`] is async over two seams, an HTTP client
//! ([`class_oauth_client::AsyncHttpClient`]: reqwest, or any other) and a store
//! ([`TokenStore`]: memory, SQLite, PostgreSQL, or one of your own).
//! [`blocking::TokenManager`] runs the same code, over the same store contract, for
//! blocking callers on a ureq client, with no async runtime.
//!
//! ## What it guarantees (each has a test in `tests/`)
//! - **One refresh per tenant at a time.** In process: the first caller starts the
//!   refresh, every later caller awaits the same outcome (failures included). Across
//!   instances: a per-tenant lease in the store (owner, expiry; taken and released by
//!   single conditional writes), and the row re-read under it: an instance that finds the
//!   grant already refreshed uses it.
//! - **Nothing is held across network I/O.** No database transaction or lock is open
//!   while Class answers; waiters for another instance's lease sleep and re-read (async
//!   sleeps for async callers), so they never occupy a thread or connection the holder
//!   needs; a crashed holder's lease expires.
//! - **Detached refreshes.** Once a refresh starts, it runs to its end in a task of its
//!   own (a tokio task; a thread for blocking callers) and commits, even if every caller
//!   has gone (a dropped future, a timeout): the response that consumed the one-time
//!   refresh token is never abandoned.
//! - **Persist first.** The refresh token of a token response is written (compare-and-swap
//!   on the version read) before anything else that can fail: before a key-set fetch, and
//!   before a failed ID-token check is reported. A response whose ID token fails
//!   validation keeps its rotated refresh token, never hands out its access token, and
//!   records why ([`GrantStatus::Unverified`]); the caller gets
//!   [`ManagerError::Validation`]. A new access token is handed out only after the store
//!   confirmed the write of its refresh token.
//! - **Failed writes are retried, never dropped.** A write that fails is retried with
//!   backoff; after the last retry the tokens are held in this process's memory and
//!   written before anything else on the next call for the tenant
//!   ([`TokenEvent::PersistFailed`]). A process about to exit takes them
//!   ([`TokenManager::held`]) into a sealed [`class_oauth_store::RecoveryFile`] beside the
//!   store, and the next one writes them first ([`TokenManager::write_held`]), as the
//!   `class-oauth` CLI does; a process that dies holding them loses the grant: Class has
//!   rotated the refresh token and only this process knew the new one.
//! - **In doubt.** The grant is marked [`GrantStatus::InDoubt`] just before a refresh
//!   request leaves; the write of the answer clears the mark. So a refresh that got no
//!   usable answer (timeout, reset, an HTML error page) or whose process died is visible
//!   to every instance. The rule for the next attempt is [`Settings::in_doubt`]: by
//!   default ([`InDoubtRule::Retry`]) the refresh token is presented once more at the
//!   next refresh, under the lease, and a refusal ends the grant with a reason naming the
//!   earlier unknown outcome; [`InDoubtRule::GiveUp`] never presents it again. The
//!   simulator (`cargo xtask sim`) measured the rules: retrying loses fewer grants under
//!   every provider behaviour (docs/ARCHITECTURE.md). A connection that was never made
//!   (nothing sent) and a well-formed refusal clear the mark.
//! - **The lease outlives the request holding it.** Its length follows the HTTP client's
//!   own bound on a request ([`Settings::lease_floor`]), so a retry never races a request
//!   still in flight; on SQLite a lease whose holding process is gone is taken over at
//!   once.
//! - **Sans-IO.** The procedure is a state machine ([`machine::RefreshMachine`]) that
//!   reads no clock and does no I/O; the manager drives it, and so does the simulator.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use class_oauth_core::{ClientId, ClientSecret, Environment};
//! use class_oauth_manager::{TenantKey, TokenManager};
//! use class_oauth_store::{Encryption, KeyRing, PostgresStore};
//!
//! let client = class_oauth_reqwest::ClassClient::builder(Environment::Pie, ClientId::new("your-client-id"))
//!     .secret(ClientSecret::new("your-client-secret"))
//!     .build()?;
//! let keys = Encryption::Keys(KeyRing::parse(&std::env::var("CLASS_OAUTH_STORE_KEY")?)?);
//! let store = PostgresStore::connect("postgres://app@db/class", 8, keys).await?;
//! let manager = TokenManager::new(client, store);
//! let tenant = TenantKey::new(&ClientId::new("your-client-id"), "MYBIZ");
//! let token = manager.access_token(&tenant).await?; // valid; refreshed when due
//! # let _ = token; Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::exhaustive_enums, clippy::exhaustive_structs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use class_oauth_client::{AsyncHttpClient, ClassClient, DriveError};
use class_oauth_core::Error;
use class_oauth_core::api::{ApiRequest, ApiResponse};
use class_oauth_core::flow::ValidatedTokens;
use class_oauth_core::refresh::RefreshPolicy;
use dashmap::DashMap;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};

pub use class_oauth_store::GrantQuery;
pub use class_oauth_store::{GrantStatus, StoreError, StoredGrant, TenantKey, TokenStore};
pub use error::{ManagerError, TokenEvent};
pub use health::GrantHealth;
pub use keeper::{KeeperHandle, KeeperSettings};

pub mod blocking;
mod cache;
mod error;
mod health;
pub mod keeper;
pub mod machine;
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
mod metrics;
#[cfg(any(feature = "reqwest-middleware", feature = "tower"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "reqwest-middleware", feature = "tower")))
)]
pub mod middleware;
mod refresh;
mod settings;

use cache::GrantCache;
pub use cache::{SharedAccessToken, SharedGrant};
pub use settings::{InDoubtRule, ServeUntil, Settings};

/// Receives token events (refreshed, in doubt, re-authorization needed, ...).
pub type EventHook = Arc<dyn Fn(&TokenEvent) + Send + Sync>;

/// Where detached refreshes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exec {
    /// A tokio task on the caller's runtime.
    #[cfg(feature = "tokio")]
    Tokio,
    /// A thread of its own (blocking callers).
    Thread,
}

impl Exec {
    fn spawn(self, task: BoxFuture<'static, ()>) -> Result<(), ManagerError> {
        match self {
            #[cfg(feature = "tokio")]
            Self::Tokio => {
                let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                    ManagerError::Config(
                        "the async token manager needs a tokio runtime (use class_oauth_manager::blocking for blocking callers)".into(),
                    )
                })?;
                drop(handle.spawn(task));
                Ok(())
            }
            Self::Thread => std::thread::Builder::new()
                .name("class-oauth-refresh".into())
                .spawn(move || pollster::block_on(task))
                .map(drop)
                .map_err(|e| {
                    ManagerError::Config(format!("could not start a refresh thread: {e}"))
                }),
        }
    }
}

/// The outcome of one refresh procedure, shared by every caller that awaited it.
#[derive(Clone, Debug)]
struct Flown {
    grant: Option<SharedGrant>,
    error: Option<ManagerError>,
}

impl Flown {
    fn err(error: ManagerError) -> Self {
        Self {
            grant: None,
            error: Some(error),
        }
    }

    /// For a caller that wants a usable token: the old one served while valid.
    fn soft(self) -> Result<SharedGrant, ManagerError> {
        match (self.grant, self.error) {
            (Some(g), _) => Ok(g),
            (None, Some(e)) => Err(e),
            (None, None) => Err(ManagerError::Config(
                "a refresh ended with no outcome".into(),
            )),
        }
    }

    /// For a caller that asked for a refresh: its failure is the answer.
    fn strict(self) -> Result<SharedGrant, ManagerError> {
        match self.error {
            Some(e) => Err(e),
            None => self.soft(),
        }
    }
}

type Flight = (u64, Shared<BoxFuture<'static, Flown>>);

struct Inner<H, S: ?Sized> {
    client: ClassClient<H>,
    store: Arc<S>,
    cache: GrantCache,
    inflight: DashMap<TenantKey, Flight>,
    held: DashMap<TenantKey, class_oauth_store::HeldWrite>,
    hook: Option<EventHook>,
    slots: tokio::sync::Semaphore,
    settings: Arc<Settings>,
    exec: Exec,
    /// Names this manager in lease owners.
    instance: String,
    counter: AtomicU64,
}

/// Keeps the grants of many tenants valid (see the crate docs). Cheap to clone: clones
/// share the cache, the in-flight refreshes and the settings.
pub struct TokenManager<H, S: ?Sized> {
    inner: Arc<Inner<H, S>>,
}

impl<H, S: ?Sized> Clone for TokenManager<H, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<H, S: ?Sized> std::fmt::Debug for TokenManager<H, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("cached", &self.inner.cache.len())
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TokenManager`] (or, through [`blocking::TokenManager::builder`], its
/// blocking face).
#[must_use]
pub struct TokenManagerBuilder<H, S: ?Sized> {
    client: ClassClient<H>,
    store: Arc<S>,
    settings: Settings,
    hook: Option<EventHook>,
    exec: Exec,
}

impl<H, S: ?Sized> std::fmt::Debug for TokenManagerBuilder<H, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManagerBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<H: AsyncHttpClient, S: TokenStore + ?Sized> TokenManagerBuilder<H, S> {
    /// Replaces every setting.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Sets the refresh policy (margin, jitter, assumed lifetime).
    pub fn policy(mut self, policy: RefreshPolicy) -> Self {
        self.settings.policy = policy;
        self
    }

    /// See [`Settings::backoff`].
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.settings.backoff = backoff;
        self
    }

    /// See [`Settings::max_concurrent_refreshes`].
    pub fn max_concurrent_refreshes(mut self, n: usize) -> Self {
        self.settings.max_concurrent_refreshes = n.max(1);
        self
    }

    /// See [`Settings::lease_ttl`] (raised to the floor the HTTP client's bound
    /// requires) and [`Settings::lease_wait`].
    pub fn lease(mut self, ttl: Duration, wait: Duration) -> Self {
        self.settings.lease_ttl = Some(ttl);
        self.settings.lease_wait = wait;
        self
    }

    /// See [`Settings::in_doubt`].
    pub fn in_doubt(mut self, rule: InDoubtRule) -> Self {
        self.settings.in_doubt = rule;
        self
    }

    /// Reports token events to `hook` (after they are logged).
    pub fn on_event(mut self, hook: impl Fn(&TokenEvent) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Builds the manager.
    pub fn build(self) -> TokenManager<H, S> {
        let mut id = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id);
        let mut settings = self.settings;
        let bound = self.client.http().request_bound();
        let ttl = settings.effective_lease_ttl(bound);
        if settings.lease_ttl.is_some_and(|asked| asked < ttl) {
            tracing::warn!(
                asked_ms = settings.lease_ttl.map_or(0, |d| d.as_millis() as u64),
                lease_ms = ttl.as_millis() as u64,
                "the refresh lease was raised: it must outlive the request holding it"
            );
        }
        settings.lease_ttl = Some(ttl);
        let settings = Arc::new(settings);
        TokenManager {
            inner: Arc::new(Inner {
                client: self.client,
                store: self.store,
                cache: GrantCache::new(settings.clone()),
                inflight: DashMap::new(),
                held: DashMap::new(),
                hook: self.hook,
                slots: tokio::sync::Semaphore::new(settings.max_concurrent_refreshes.max(1)),
                settings,
                exec: self.exec,
                instance: id.iter().map(|b| format!("{b:02x}")).collect(),
                counter: AtomicU64::new(0),
            }),
        }
    }
}

impl<H: AsyncHttpClient, S: TokenStore> TokenManager<H, S> {
    /// A manager over `client` and `store` with the default [`Settings`]. Refreshes run as
    /// tokio tasks, so call it from a tokio runtime.
    #[cfg(feature = "tokio")]
    pub fn new(client: ClassClient<H>, store: S) -> Self {
        Self::builder(client, store).build()
    }

    /// A builder (tokio tasks for the refreshes).
    #[cfg(feature = "tokio")]
    pub fn builder(client: ClassClient<H>, store: S) -> TokenManagerBuilder<H, S> {
        Self::builder_shared(client, Arc::new(store))
    }
}

impl<H: AsyncHttpClient, S: TokenStore + ?Sized> TokenManager<H, S> {
    /// A builder over a store shared with other code (`Arc<dyn TokenStore>` included;
    /// tokio tasks for the refreshes).
    #[cfg(feature = "tokio")]
    pub fn builder_shared(client: ClassClient<H>, store: Arc<S>) -> TokenManagerBuilder<H, S> {
        TokenManagerBuilder {
            client,
            store,
            settings: Settings::default(),
            hook: None,
            exec: Exec::Tokio,
        }
    }

    fn threaded(client: ClassClient<H>, store: Arc<S>) -> TokenManagerBuilder<H, S> {
        TokenManagerBuilder {
            client,
            store,
            settings: Settings::default(),
            hook: None,
            exec: Exec::Thread,
        }
    }

    /// The client.
    pub fn client(&self) -> &ClassClient<H> {
        &self.inner.client
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Stores the tokens of a finished login (or password grant) for `key`, replacing
    /// whatever was stored.
    pub async fn store_tokens(
        &self,
        key: &TenantKey,
        validated: &ValidatedTokens,
    ) -> Result<SharedGrant, ManagerError> {
        let version = self
            .inner
            .store
            .save(key, &validated.tokens, validated.id_claims.as_ref(), None)
            .await?;
        // A login supersedes tokens waiting in memory for a write.
        self.inner.held.remove(key);
        self.inner.emit(&TokenEvent::Stored {
            key: key.clone(),
            version,
        });
        let grant = self.inner.cache.share(
            StoredGrant::new(
                validated.tokens.clone(),
                validated.id_claims.clone(),
                GrantStatus::Active,
                version,
            ),
            false,
        );
        self.inner.cache.put(key, &grant);
        Ok(grant)
    }

    /// The cached grant when it needs nothing done (the hot path: no lock but the
    /// cache's shard, no allocation, no hashing).
    #[inline]
    pub fn cached(&self, key: &TenantKey) -> Option<SharedGrant> {
        self.inner.cache.fresh(key)
    }

    /// A valid access token for `key`, refreshing first when due. While a refresh fails
    /// transiently and the current token is still valid, the current token is returned
    /// (and the failure reported to the event hook).
    pub async fn access_token(&self, key: &TenantKey) -> Result<SharedAccessToken, ManagerError> {
        self.grant(key).await.map(SharedAccessToken)
    }

    /// The valid grant for `key` (tokens, business, scope), refreshing first when due.
    pub async fn grant(&self, key: &TenantKey) -> Result<SharedGrant, ManagerError> {
        if let Some(g) = self.cached(key) {
            return Ok(g);
        }
        let started = std::time::Instant::now();
        let outcome = self.single_flight(key, None).await.soft();
        metrics::caller_waited(started.elapsed());
        outcome
    }

    /// Refreshes now, unless the grant has changed since `version` (someone refreshed
    /// already; for a 401 from an API). A failed refresh is an error, whatever the
    /// current token's expiry.
    pub async fn force_refresh(
        &self,
        key: &TenantKey,
        version: u64,
    ) -> Result<SharedGrant, ManagerError> {
        let mut outcome = self.single_flight(key, Some(version)).await;
        // Joined a refresh that was not forced and left the version as it was: once more.
        if outcome.error.is_none() && outcome.grant.as_ref().is_some_and(|g| g.version == version) {
            outcome = self.single_flight(key, Some(version)).await;
        }
        outcome.strict()
    }

    /// The rotated tokens this manager holds in memory because the store could not take
    /// them (each the only copy of a tenant's newest refresh token). A process about to
    /// exit keeps them in a [`class_oauth_store::RecoveryFile`] instead of losing them.
    #[must_use]
    pub fn held(&self) -> Vec<(TenantKey, class_oauth_store::HeldWrite)> {
        self.inner
            .held
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Writes rotated tokens an earlier process could not write (from a
    /// [`class_oauth_store::RecoveryFile`]) over the row that still holds the token they
    /// replaced; a grant a login replaced meanwhile is left alone. Call it before serving
    /// the tenant. On failure the tokens stay held by this manager ([`Self::held`]).
    pub async fn write_held(
        &self,
        key: &TenantKey,
        held: class_oauth_store::HeldWrite,
    ) -> Result<(), ManagerError> {
        let machine = machine::RefreshMachine::writing_held(
            key.clone(),
            held,
            self.inner.settings.clone(),
            self.inner.client.config().clone(),
        );
        let finished = self.inner.run(machine).await;
        for e in &finished.events {
            self.inner.emit(e);
        }
        if let Some(h) = finished.held {
            self.inner.held.insert(key.clone(), h);
        }
        self.inner.cache.remove(key);
        finished.error.map_or(Ok(()), Err)
    }

    /// The health of the grants `query` names (a page of the store's listing): status,
    /// refresh-token age and estimated lapse, last refresh, and what to do about it.
    /// Page through a large store with [`GrantQuery::after`] and the last key returned.
    pub async fn grants(&self, query: &GrantQuery) -> Result<Vec<GrantHealth>, StoreError> {
        let rows = self.inner.store.list(query).await?;
        #[allow(
            clippy::disallowed_methods,
            reason = "ages are measured against the wall clock"
        )]
        let now = SystemTime::now();
        Ok(rows
            .iter()
            .map(|r| GrantHealth::new(r, &self.inner.settings, now))
            .collect())
    }

    /// Starts the keeper ([`keeper`]): it sweeps the store and refreshes each grant
    /// before its refresh token's idle limit, or announces lapses it cannot prevent.
    /// It runs until the returned handle is dropped or [`KeeperHandle::stop`]ped (a
    /// tokio task here; a thread on the blocking face). Every instance may run one.
    pub fn start_keeper(&self, settings: KeeperSettings) -> Result<KeeperHandle, ManagerError> {
        let handle = KeeperHandle::new();
        let stop = handle.flag();
        let manager = self.clone();
        let mut keeper = keeper::Keeper::new(&self.inner.settings, settings);
        let task = async move {
            #[allow(
                clippy::disallowed_methods,
                reason = "the keeper's driver reads the clock; the keeper does not"
            )]
            let now = SystemTime::now;
            while !stop.load(Ordering::Relaxed) {
                match keeper.poll(now()) {
                    keeper::KeeperAction::List(query) => {
                        let page = manager.inner.store.list(&query).await;
                        keeper.handle_page(now(), page);
                        if let Some(counts) = keeper.take_sweep_counts() {
                            metrics::sweep(&counts);
                        }
                    }
                    keeper::KeeperAction::Refresh { key, version } => {
                        metrics::keeper_refresh();
                        // Its outcome is reported by the refresh's own events.
                        let _ = manager.force_refresh(&key, version).await;
                        keeper.handle_refreshed(now());
                    }
                    keeper::KeeperAction::Announce(e) => {
                        if keeper::announce(&*manager.inner.store, &e).await {
                            manager.inner.emit(&e);
                        }
                    }
                    // In steps of at most a second, so a stop is seen soon.
                    keeper::KeeperAction::Wait(d) => {
                        manager
                            .inner
                            .client
                            .http()
                            .sleep(d.min(Duration::from_secs(1)))
                            .await;
                    }
                }
            }
        };
        self.inner.exec.spawn(task.boxed())?;
        Ok(handle)
    }

    /// Deletes the grant (after a logout, or before a new authorization).
    pub async fn forget(&self, key: &TenantKey) -> Result<bool, StoreError> {
        self.inner.cache.remove(key);
        self.inner.held.remove(key);
        self.inner.store.delete(key).await
    }

    /// Joins the refresh in flight for `key`, or starts one, detached: it runs to its end
    /// even if every caller goes away.
    async fn single_flight(&self, key: &TenantKey, force: Option<u64>) -> Flown {
        let shared = match self.inner.inflight.entry(key.clone()) {
            dashmap::Entry::Occupied(e) => e.get().1.clone(),
            dashmap::Entry::Vacant(v) => {
                let id = self.inner.counter.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = tokio::sync::oneshot::channel::<Flown>();
                let shared = rx
                    .map(|r| {
                        r.unwrap_or_else(|_| {
                            Flown::err(ManagerError::Config(
                                "the refresh task ended without an outcome (it panicked)".into(),
                            ))
                        })
                    })
                    .boxed()
                    .shared();
                v.insert((id, shared.clone()));
                let inner = self.inner.clone();
                let task_key = key.clone();
                let task = async move {
                    let key = task_key;
                    // Removes the entry even if the refresh panics.
                    let _done = FlightDone {
                        inflight: &inner.inflight,
                        key: &key,
                        id,
                    };
                    let outcome = inner.refresh(&key, force).await;
                    drop(_done);
                    let _ = tx.send(outcome);
                };
                if let Err(e) = self.inner.exec.spawn(task.boxed()) {
                    self.inner.inflight.remove_if(key, |_, (i, _)| *i == id);
                    return Flown::err(e);
                }
                shared
            }
        };
        shared.await
    }

    /// A Class API call for `key`: the Bearer token, one 429 waited out, and on a 401 one
    /// forced refresh and one retry (never a loop). API refusals are
    /// [`ManagerError::Api`].
    pub async fn api(
        &self,
        key: &TenantKey,
        request: ApiRequest,
    ) -> Result<ApiResponse, ManagerError> {
        let grant = self.grant(key).await?;
        match self
            .inner
            .client
            .api(&grant.tokens.access_token, request.clone())
            .await
        {
            Err(DriveError::Protocol(Error::ApiRefused(r))) if r.is_unauthorized() => {
                let renewed = self.force_refresh(key, grant.version).await?;
                Ok(self
                    .inner
                    .client
                    .api(&renewed.tokens.access_token, request)
                    .await?)
            }
            other => Ok(other?),
        }
    }

    /// `GET` a path below the API base for `key` (see [`TokenManager::api`]).
    pub async fn api_get(&self, key: &TenantKey, path: &str) -> Result<ApiResponse, ManagerError> {
        let endpoints = self.inner.client.endpoints().await?;
        let base = endpoints.api_base.clone().ok_or_else(|| {
            ManagerError::Config("the environment has no Class API base URL".into())
        })?;
        let request = ApiRequest::get(&base, path).map_err(ManagerError::from)?;
        self.api(key, request).await
    }
}

struct FlightDone<'a> {
    inflight: &'a DashMap<TenantKey, Flight>,
    key: &'a TenantKey,
    id: u64,
}

impl Drop for FlightDone<'_> {
    fn drop(&mut self) {
        self.inflight
            .remove_if(self.key, |_, (id, _)| *id == self.id);
    }
}

impl<H, S: ?Sized> Inner<H, S> {
    fn emit(&self, event: &TokenEvent) {
        event.log();
        metrics::event(event);
        if let Some(h) = &self.hook {
            h(event);
        }
    }
}

/// The README's usage snippet, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
