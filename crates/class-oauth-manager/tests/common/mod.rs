//! Shared rig for the manager tests: the Class emulator (one-time refresh tokens with
//! reuse detection), both faces of the manager, the three stores, a store that fails on
//! demand, and a watchdog so that no test can hang.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::flow::ValidatedTokens;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::jwks::KeySetCache;
use class_oauth_core::scope::Scopes;
use class_oauth_core::token::TokenSet;
use class_oauth_core::{ClientId, ClientSecret, Environment, IssuerUrl, Password, Username};
use class_oauth_manager::{
    ManagerError, Settings, SharedGrant, StoredGrant, TenantKey, TokenEvent,
};
use class_oauth_store::{
    Encryption, EncryptionKey, GrantQuery, GrantSummary, GrantUpdate, KeyRing, Lease, LeaseOutcome,
    MemoryStore, PostgresStore, SqliteStore, StoreError, TokenStore,
};
use class_oauth_testkit::{ClassEmulator, EmulatorConfig};

pub const CLIENT: &str = "demo-client";

pub fn pg_url() -> String {
    std::env::var("CLASS_OAUTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn keys() -> Encryption {
    Encryption::Keys(KeyRing::new(
        EncryptionKey::new("test-1", [7u8; 32]).unwrap(),
    ))
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub use class_oauth_fixtures::bounded;

/// A store wrapper that fails on demand (writes of tokens, `update` with tokens, fail
/// while `fail_token_writes` is above zero) and counts the reads (`loads`).
#[derive(Clone)]
pub struct Faulty<S: ?Sized> {
    pub fail_token_writes: Arc<AtomicUsize>,
    pub loads: Arc<AtomicUsize>,
    inner: Arc<S>,
}

impl<S: ?Sized> Faulty<S> {
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            fail_token_writes: Arc::default(),
            loads: Arc::default(),
            inner,
        }
    }

    fn should_fail(&self, update: &GrantUpdate<'_>) -> bool {
        update.tokens.is_some()
            && self
                .fail_token_writes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
    }
}

fn disk_full() -> StoreError {
    StoreError::Backend("injected: disk full".into())
}

#[class_oauth_store::async_trait]
impl<S: TokenStore + ?Sized> TokenStore for Faulty<S> {
    async fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key).await
    }
    async fn save(
        &self,
        key: &TenantKey,
        t: &TokenSet,
        c: Option<&IdTokenClaims>,
        v: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.inner.save(key, t, c, v).await
    }
    async fn update(&self, key: &TenantKey, update: &GrantUpdate<'_>) -> Result<u64, StoreError> {
        if self.should_fail(update) {
            return Err(disk_full());
        }
        self.inner.update(key, update).await
    }
    async fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        self.inner.delete(key).await
    }
    async fn list(&self, q: &GrantQuery) -> Result<Vec<GrantSummary>, StoreError> {
        self.inner.list(q).await
    }
    async fn acquire_lease(
        &self,
        key: &TenantKey,
        lease: &Lease,
    ) -> Result<LeaseOutcome, StoreError> {
        self.inner.acquire_lease(key, lease).await
    }
    async fn release_lease(
        &self,
        key: &TenantKey,
        owner: &str,
        failure: Option<&str>,
    ) -> Result<(), StoreError> {
        self.inner.release_lease(key, owner, failure).await
    }

    async fn claim_lapse_notice(
        &self,
        key: &TenantKey,
        lapses_at: u64,
        lead: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.claim_lapse_notice(key, lapses_at, lead).await
    }
    async fn put_pending(&self, l: &str, p: PendingAuthorization) -> Result<(), StoreError> {
        self.inner.put_pending(l, p).await
    }
    async fn take_pending(
        &self,
        l: &str,
        now: SystemTime,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        self.inner.take_pending(l, now).await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    Async,
    Blocking,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Sqlite,
    Postgres,
}

pub const FACES: [Face; 2] = [Face::Async, Face::Blocking];
pub const STORES: [StoreKind; 3] = [StoreKind::Memory, StoreKind::Sqlite, StoreKind::Postgres];

pub type AsyncManager = class_oauth_manager::TokenManager<
    class_oauth_reqwest::ReqwestTransport,
    Faulty<dyn TokenStore>,
>;
type BlockingManager = class_oauth_manager::blocking::TokenManager<
    class_oauth_ureq::UreqTransport,
    Faulty<dyn TokenStore>,
>;

#[allow(clippy::large_enum_variant, reason = "one per test")]
pub enum Manager {
    Async(AsyncManager),
    Blocking(BlockingManager),
}

/// What a scenario needs set up before the manager is built.
#[derive(Clone, Debug)]
pub struct Options {
    pub timeout: Duration,
    pub leeway: Option<Duration>,
    /// Seed the key cache with no refetch cooldown (so a failed fetch can be retried).
    pub no_key_cooldown: bool,
    pub settings: Settings,
    pub config: fn(&mut EmulatorConfig),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            leeway: None,
            no_key_cooldown: false,
            settings: Settings::default(),
            config: |_| {},
        }
    }
}

pub struct Rig {
    pub face: Face,
    pub kind: StoreKind,
    pub emulator: ClassEmulator,
    pub rt: tokio::runtime::Runtime,
    pub manager: Manager,
    pub key: TenantKey,
    pub faults: Arc<AtomicUsize>,
    pub events: Arc<Mutex<Vec<TokenEvent>>>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Rig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} face, {:?} store", self.face, self.kind)
    }
}

impl Rig {
    pub fn new(face: Face, kind: StoreKind, options: Options) -> Self {
        let mut config = EmulatorConfig::demo();
        (options.config)(&mut config);
        let emulator = ClassEmulator::start_blocking(config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::Custom(IssuerUrl::new(&emulator.issuer()).unwrap());
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let hook = move |e: &TokenEvent| sink.lock().unwrap().push(e.clone());
        let seed_keys = |keys: &class_oauth_client::KeySets| {
            if options.no_key_cooldown {
                let uri = format!(
                    "{}/.well-known/openid-configuration/jwks",
                    emulator.issuer()
                );
                let mut cache = KeySetCache::new(uri.parse().unwrap());
                cache.cooldown = Duration::ZERO;
                keys.set(cache);
            }
        };
        let faults: Arc<AtomicUsize>;
        let manager = match face {
            Face::Async => {
                let client = class_oauth_reqwest::ClassClient::builder(env, ClientId::new(CLIENT))
                    .secret(ClientSecret::new("demo-secret"))
                    .configure(|c| {
                        if let Some(l) = options.leeway {
                            c.leeway = l;
                        }
                    })
                    .http(
                        class_oauth_reqwest::ReqwestTransport::with_config(
                            class_oauth_reqwest::TransportConfig::default()
                                .timeout(options.timeout),
                        )
                        .unwrap(),
                    )
                    .build()
                    .unwrap();
                seed_keys(client.key_sets());
                let store: Arc<dyn TokenStore> = match kind {
                    StoreKind::Memory => Arc::new(MemoryStore::new()),
                    StoreKind::Sqlite => Arc::new(
                        SqliteStore::open(dir.path().join("grants.sqlite3"), keys()).unwrap(),
                    ),
                    StoreKind::Postgres => Arc::new(
                        rt.block_on(PostgresStore::connect(&pg_url(), 4, keys()))
                            .expect("PostgreSQL (CLASS_OAUTH_TEST_POSTGRES_URL)"),
                    ),
                };
                let store = Faulty::new(store);
                faults = store.fail_token_writes.clone();
                let _guard = rt.enter();
                Manager::Async(
                    class_oauth_manager::TokenManager::builder(client, store)
                        .settings(options.settings.clone())
                        .on_event(hook)
                        .build(),
                )
            }
            Face::Blocking => {
                let client = class_oauth_ureq::ClassClient::builder(env, ClientId::new(CLIENT))
                    .secret(ClientSecret::new("demo-secret"))
                    .configure(|c| {
                        if let Some(l) = options.leeway {
                            c.leeway = l;
                        }
                    })
                    .http(
                        class_oauth_ureq::UreqTransport::with_config(
                            class_oauth_ureq::TransportConfig::default().timeout(options.timeout),
                        )
                        .unwrap(),
                    )
                    .build()
                    .unwrap();
                seed_keys(client.key_sets());
                let store: Arc<dyn TokenStore> = match kind {
                    StoreKind::Memory => Arc::new(MemoryStore::new()),
                    StoreKind::Sqlite => Arc::new(
                        SqliteStore::open(dir.path().join("grants.sqlite3"), keys()).unwrap(),
                    ),
                    StoreKind::Postgres => Arc::new(
                        PostgresStore::connect_blocking(&pg_url(), 4, keys())
                            .expect("PostgreSQL (CLASS_OAUTH_TEST_POSTGRES_URL)"),
                    ),
                };
                let store = Arc::new(Faulty::new(store));
                faults = store.fail_token_writes.clone();
                Manager::Blocking(
                    class_oauth_manager::blocking::TokenManager::builder_shared(client, store)
                        .settings(options.settings.clone())
                        .on_event(hook)
                        .build(),
                )
            }
        };
        Self {
            face,
            kind,
            emulator,
            rt,
            manager,
            key: TenantKey::new(&ClientId::new(CLIENT), unique("tenant")),
            faults,
            events,
            _dir: dir,
        }
    }

    /// A password-grant login, stored; with `expired`, the access token is stored as
    /// already expired so that the next use refreshes.
    pub fn login(&self, expired: bool) -> SharedGrant {
        let scopes = Scopes::parse(
            "openid profile email class_profile target:b/OAUTH_TEST offline_access business.fund.list",
        )
        .unwrap();
        let (user, pass) = (
            Username::new("sam@example.com"),
            Password::new("demo-password"),
        );
        let mut granted: ValidatedTokens = match &self.manager {
            Manager::Async(m) => self
                .rt
                .block_on(m.client().password(user, pass, scopes))
                .unwrap(),
            Manager::Blocking(m) => m.client().password(user, pass, scopes).unwrap(),
        };
        if expired {
            granted.tokens.expires_at = Some(SystemTime::now() - Duration::from_secs(5));
        }
        match &self.manager {
            Manager::Async(m) => self.rt.block_on(m.store_tokens(&self.key, &granted)),
            Manager::Blocking(m) => m.store_tokens(&self.key, &granted),
        }
        .unwrap()
    }

    pub fn grant(&self) -> Result<SharedGrant, ManagerError> {
        match &self.manager {
            Manager::Async(m) => self.rt.block_on(m.grant(&self.key)),
            Manager::Blocking(m) => m.grant(&self.key),
        }
    }

    pub fn force_refresh(&self, version: u64) -> Result<SharedGrant, ManagerError> {
        match &self.manager {
            Manager::Async(m) => self.rt.block_on(m.force_refresh(&self.key, version)),
            Manager::Blocking(m) => m.force_refresh(&self.key, version),
        }
    }

    pub fn api(&self) -> Result<serde_json::Value, ManagerError> {
        let path = "b/OAUTH_TEST/fund/list";
        match &self.manager {
            Manager::Async(m) => self.rt.block_on(m.api_get(&self.key, path)),
            Manager::Blocking(m) => m.api_get(&self.key, path),
        }
        .map(|r| r.data)
    }

    /// The stored row.
    pub fn stored(&self) -> StoredGrant {
        match &self.manager {
            Manager::Async(m) => self.rt.block_on(m.store().load(&self.key)),
            Manager::Blocking(m) => {
                class_oauth_client::blocking::block_on(m.store().load(&self.key))
            }
        }
        .unwrap()
        .expect("a stored grant")
    }

    /// The grant's health as the manager lists it (`TokenManager::grants`).
    pub fn health(&self) -> class_oauth_manager::GrantHealth {
        let all = GrantQuery::all();
        match &self.manager {
            Manager::Async(m) => self.rt.block_on(m.grants(&all)),
            Manager::Blocking(m) => m.grants(&all),
        }
        .unwrap()
        .into_iter()
        .find(|h| h.key == self.key)
        .expect("the grant is listed")
    }

    /// refresh_token grant requests the emulator saw, and the refresh tokens presented
    /// more than once (must stay empty: Class's refresh tokens are one-time).
    pub fn refreshes(&self) -> (usize, Vec<String>) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut n = 0;
        for r in self.emulator.requests() {
            if r.path != "/connect/token" {
                continue;
            }
            let form: HashMap<String, String> = url::form_urlencoded::parse(r.body.as_bytes())
                .into_owned()
                .collect();
            if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
                n += 1;
                *seen.entry(form["refresh_token"].clone()).or_default() += 1;
            }
        }
        (
            n,
            seen.into_iter()
                .filter(|(_, c)| *c > 1)
                .map(|(t, _)| t)
                .collect(),
        )
    }

    pub fn assert_no_refresh_token_presented_twice(&self) {
        let (_, twice) = self.refreshes();
        assert!(
            twice.is_empty(),
            "{self:?}: refresh tokens presented twice: {twice:?}"
        );
    }

    pub fn events(&self) -> Vec<TokenEvent> {
        self.events.lock().unwrap().clone()
    }

    /// The grant works end to end: a valid token that the Class API accepts.
    pub fn assert_works(&self) {
        let data = self
            .api()
            .unwrap_or_else(|e| panic!("{self:?}: the grant does not work: {e}"));
        assert!(data["Funds"].is_array(), "{self:?}: {data}");
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Leave nothing behind in the shared PostgreSQL database.
        let _ = match &self.manager {
            Manager::Async(m) => self.rt.block_on(m.forget(&self.key)),
            Manager::Blocking(m) => m.forget(&self.key),
        };
    }
}

/// Runs `scenario` for every face and store, each bounded in time.
pub fn matrix(name: &'static str, faces: &[Face], scenario: fn(Face, StoreKind)) {
    for &face in faces {
        for kind in STORES {
            bounded(
                &format!("{name} ({face:?} face, {kind:?} store)"),
                Duration::from_secs(90),
                move || scenario(face, kind),
            );
        }
    }
}
