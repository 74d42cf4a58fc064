//! The blocking token manager: SQLite shared by two instances, persist failures, a lost
//! response after rotation, and the cached hot path.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;
use class_oauth_core::{ClientId, ClientSecret, Environment, IssuerUrl};
use class_oauth_store::procedure::{ManagerError, TokenEvent};
use class_oauth_store::{
    Encryption, EncryptionKey, GrantStatus, GrantSummary, KeyRing, MemoryStore, RefreshGuard,
    SqliteStore, StoreError, StoredGrant, TenantKey, TokenStore,
};
use class_oauth_test::onetime::{OneTimeTokenServer, token_set};
use class_oauth_ureq::{ClassClient, TokenManager, TransportConfig, UreqTransport};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

struct Env {
    rt: tokio::runtime::Runtime,
    mock: MockServer,
    ots: OneTimeTokenServer,
}

fn env_with(ots: OneTimeTokenServer, first_slow: Option<OneTimeTokenServer>) -> Env {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockServer::start());
    if let Some(slow) = first_slow {
        rt.block_on(
            Mock::given(method("POST"))
                .and(path("/connect/token"))
                .respond_with(slow)
                .up_to_n_times(1)
                .mount(&mock),
        );
    }
    rt.block_on(
        Mock::given(method("POST"))
            .and(path("/connect/token"))
            .respond_with(ots.clone())
            .mount(&mock),
    );
    Env { rt, mock, ots }
}

fn client(env: &Env, timeout: Duration) -> ClassClient<UreqTransport> {
    let issuer = IssuerUrl::new(&env.mock.uri()).unwrap();
    ClassClient::builder(
        Environment::Custom(issuer),
        ClientId::new(class_oauth_test::CLIENT_ID),
    )
    .secret(ClientSecret::new(class_oauth_test::CLIENT_SECRET))
    .without_discovery()
    .http(UreqTransport::with_config(
        TransportConfig::default().timeout(timeout),
    ))
    .build()
}

fn key(tenant: &str) -> TenantKey {
    TenantKey::new(&ClientId::new(class_oauth_test::CLIENT_ID), tenant)
}

fn expired(rt: &str) -> TokenSet {
    token_set(
        "at-old",
        rt,
        899,
        SystemTime::now() - Duration::from_secs(2000),
    )
}

fn sqlite_keys() -> Encryption {
    Encryption::Keys(KeyRing::new(EncryptionKey::new("k1", [3u8; 32]).unwrap()))
}

#[test]
fn two_sqlite_instances_many_threads_one_refresh() {
    let env = env_with(OneTimeTokenServer::new(), None);
    let dir = std::env::temp_dir().join(format!("class-oauth-test-{}", std::process::id()));
    let file = dir.join("race.sqlite3");
    let _ = std::fs::remove_file(&file);
    let seed = SqliteStore::open(&file, sqlite_keys()).unwrap();
    let k = key("sqlite-race");
    seed.save(&k, &expired(&env.ots.issue()), None, None)
        .unwrap();
    let managers: Vec<_> = (0..2)
        .map(|_| {
            Arc::new(TokenManager::new(
                client(&env, Duration::from_secs(5)),
                SqliteStore::open(&file, sqlite_keys()).unwrap(),
            ))
        })
        .collect();
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (m, k) = (managers[i % 2].clone(), k.clone());
            std::thread::spawn(move || m.access_token(&k).map(|t| t.secret().to_owned()))
        })
        .collect();
    let mut tokens: Vec<String> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    tokens.dedup();
    assert_eq!(tokens.len(), 1);
    assert_eq!(env.ots.counts().refreshes, 1);
    assert_eq!(env.ots.counts().invalid_grants, 0);
}

#[test]
fn rotation_then_lost_response_ends_in_reauthorization_without_a_loop() {
    // The first refresh is answered after the client gave up: the server rotated the
    // token, the client never saw the new one.
    let ots = OneTimeTokenServer::new();
    let slow = ots.clone().with_delay(Duration::from_secs(2));
    let env = env_with(ots, Some(slow));
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let m = TokenManager::new(client(&env, Duration::from_millis(500)), MemoryStore::new())
        .with_backoff(Duration::ZERO)
        .on_event(move |e| sink.lock().unwrap().push(e.clone()));
    let k = key("lost-response");
    m.store()
        .save(&k, &expired(&env.ots.issue()), None, None)
        .unwrap();

    let first = m.access_token(&k).unwrap_err();
    assert!(
        matches!(first, ManagerError::Refresh(ref e) if e.is_transient()),
        "{first:?}"
    );
    // The next call spends the same refresh token once: reuse is detected, the store is
    // re-read (nobody else refreshed), the tenant is marked.
    let second = m.access_token(&k).unwrap_err();
    assert!(second.requires_reauthorization(), "{second:?}");
    let third = m.access_token(&k).unwrap_err();
    assert!(
        matches!(third, ManagerError::NeedsReauthorization { .. }),
        "{third:?}"
    );
    assert_eq!(
        env.ots.counts().refreshes,
        2,
        "no retry loop: {:?}",
        env.ots.counts()
    );
    assert!(matches!(
        m.store().load(&k).unwrap().unwrap().status,
        GrantStatus::NeedsReauthorization { .. }
    ));
    let events = events.lock().unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        TokenEvent::RefreshFailed {
            transient: true,
            ..
        }
    )));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TokenEvent::ReauthorizationRequired { .. }))
    );
    drop(env.rt);
}

/// A store whose commits fail, as a full disk or a lost database would.
struct FailingCommits(MemoryStore);

struct FailingGuard(Option<StoredGrant>);

impl RefreshGuard for FailingGuard {
    fn current(&self) -> Option<&StoredGrant> {
        self.0.as_ref()
    }
    fn commit(self: Box<Self>, _: &TokenSet, _: Option<&IdTokenClaims>) -> Result<u64, StoreError> {
        Err(StoreError::Backend("disk full".into()))
    }
}

impl TokenStore for FailingCommits {
    fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        self.0.load(key)
    }
    fn save(
        &self,
        key: &TenantKey,
        t: &TokenSet,
        c: Option<&IdTokenClaims>,
        v: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.0.save(key, t, c, v)
    }
    fn set_status(&self, key: &TenantKey, s: &GrantStatus) -> Result<(), StoreError> {
        self.0.set_status(key, s)
    }
    fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        self.0.delete(key)
    }
    fn list(&self) -> Result<Vec<GrantSummary>, StoreError> {
        self.0.list()
    }
    fn lock(&self, key: &TenantKey) -> Result<Box<dyn RefreshGuard>, StoreError> {
        Ok(Box::new(FailingGuard(self.0.load(key)?)))
    }
    fn put_pending(
        &self,
        l: &str,
        p: &class_oauth_core::authorize::PendingAuthorization,
    ) -> Result<(), StoreError> {
        self.0.put_pending(l, p)
    }
    fn take_pending(
        &self,
        l: &str,
        now: SystemTime,
    ) -> Result<Option<class_oauth_core::authorize::PendingAuthorization>, StoreError> {
        self.0.take_pending(l, now)
    }
}

#[test]
fn a_store_failure_after_the_token_response_is_an_error_never_a_token() {
    let env = env_with(OneTimeTokenServer::new(), None);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let m = TokenManager::new(
        client(&env, Duration::from_secs(5)),
        FailingCommits(MemoryStore::new()),
    )
    .on_event(move |e| sink.lock().unwrap().push(e.clone()));
    let k = key("persist-fails");
    m.store()
        .save(&k, &expired(&env.ots.issue()), None, None)
        .unwrap();
    let err = m.access_token(&k).unwrap_err();
    assert!(matches!(err, ManagerError::PersistFailed(_)), "{err:?}");
    assert_eq!(env.ots.counts().refreshes, 1);
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, TokenEvent::PersistFailed { .. }))
    );
    assert_eq!(
        m.store()
            .load(&k)
            .unwrap()
            .unwrap()
            .tokens
            .access_token
            .secret(),
        "at-old"
    );
}

/// Counts loads, to show the hot path never reaches the store.
struct CountingStore(MemoryStore, AtomicUsize);

impl TokenStore for CountingStore {
    fn load(&self, key: &TenantKey) -> Result<Option<StoredGrant>, StoreError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.load(key)
    }
    fn save(
        &self,
        key: &TenantKey,
        t: &TokenSet,
        c: Option<&IdTokenClaims>,
        v: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.0.save(key, t, c, v)
    }
    fn set_status(&self, key: &TenantKey, s: &GrantStatus) -> Result<(), StoreError> {
        self.0.set_status(key, s)
    }
    fn delete(&self, key: &TenantKey) -> Result<bool, StoreError> {
        self.0.delete(key)
    }
    fn list(&self) -> Result<Vec<GrantSummary>, StoreError> {
        self.0.list()
    }
    fn lock(&self, key: &TenantKey) -> Result<Box<dyn RefreshGuard>, StoreError> {
        self.0.lock(key)
    }
    fn put_pending(
        &self,
        l: &str,
        p: &class_oauth_core::authorize::PendingAuthorization,
    ) -> Result<(), StoreError> {
        self.0.put_pending(l, p)
    }
    fn take_pending(
        &self,
        l: &str,
        now: SystemTime,
    ) -> Result<Option<class_oauth_core::authorize::PendingAuthorization>, StoreError> {
        self.0.take_pending(l, now)
    }
}

#[test]
fn cached_reads_do_not_touch_the_store_or_the_server() {
    let env = env_with(OneTimeTokenServer::new(), None);
    let m = TokenManager::new(
        client(&env, Duration::from_secs(5)),
        CountingStore(MemoryStore::new(), AtomicUsize::new(0)),
    );
    let k = key("hot");
    m.store()
        .save(
            &k,
            &token_set("at-fresh", "rt-unused", 899, SystemTime::now()),
            None,
            None,
        )
        .unwrap();
    assert_eq!(m.access_token(&k).unwrap().secret(), "at-fresh");
    let loads = m.store().1.load(Ordering::SeqCst);
    for _ in 0..1000 {
        assert_eq!(m.access_token(&k).unwrap().secret(), "at-fresh");
    }
    assert_eq!(m.store().1.load(Ordering::SeqCst), loads);
    assert_eq!(env.ots.counts().refreshes, 0);
    // No stored grant: the user must authorize.
    assert!(matches!(
        m.access_token(&key("nobody")).unwrap_err(),
        ManagerError::NoGrant { .. }
    ));
}
