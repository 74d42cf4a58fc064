//! The manager's everyday behaviour: one refresh for many callers (in a process and
//! across instances), cached reads that touch nothing, a crashed instance's lease that
//! expires, and errors that keep their cause.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use class_oauth_client::blocking::block_on;
use class_oauth_core::token::TokenSet;
use class_oauth_core::{ClientId, ClientSecret, Environment, IssuerUrl};
use class_oauth_fixtures::seed::{self, token_set};
use class_oauth_manager::blocking::TokenManager as BlockingManager;
use class_oauth_manager::{GrantStatus, ManagerError, TenantKey, TokenManager};
use class_oauth_store::{
    Encryption, EncryptionKey, KeyRing, Lease, LeaseOutcome, MemoryStore, SqliteStore, StoreError,
    TokenStore,
};
use class_oauth_testkit::ClassEmulator;
use common::{Face, Options, Rig, StoreKind, bounded, keys, unique};

struct Server {
    rt: tokio::runtime::Runtime,
    emulator: ClassEmulator,
}

fn server(latency: Duration) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let emulator = rt.block_on(ClassEmulator::start(seed::emulator_config(latency, &[])));
    Server { rt, emulator }
}

impl Server {
    fn env(&self) -> Environment {
        Environment::Custom(IssuerUrl::new(&self.emulator.issuer()).unwrap())
    }

    fn blocking_client(&self) -> class_oauth_ureq::ClassClient {
        class_oauth_ureq::ClassClient::builder(
            self.env(),
            ClientId::new(class_oauth_fixtures::CLIENT_ID),
        )
        .secret(ClientSecret::new(class_oauth_fixtures::CLIENT_SECRET))
        .without_discovery()
        .build()
        .unwrap()
    }

    fn async_client(&self) -> class_oauth_reqwest::ClassClient {
        class_oauth_reqwest::ClassClient::builder(
            self.env(),
            ClientId::new(class_oauth_fixtures::CLIENT_ID),
        )
        .secret(ClientSecret::new(class_oauth_fixtures::CLIENT_SECRET))
        .without_discovery()
        .build()
        .unwrap()
    }

    /// A new grant's first refresh token.
    fn seed(&self) -> String {
        seed::grant(&self.emulator, class_oauth_fixtures::CLIENT_ID)
    }

    fn expired(&self) -> TokenSet {
        token_set(
            "at-old",
            &self.seed(),
            899,
            SystemTime::now() - Duration::from_secs(2000),
        )
    }
}

fn key() -> TenantKey {
    TenantKey::new(&ClientId::new(class_oauth_fixtures::CLIENT_ID), unique("t"))
}

#[test]
fn fifty_async_callers_one_request() {
    bounded("50 async callers", Duration::from_secs(30), || {
        let s = server(Duration::from_millis(50));
        let store = MemoryStore::new();
        let k = key();
        s.rt.block_on(async {
            store.save(&k, &s.expired(), None, None).await.unwrap();
            let m = TokenManager::new(s.async_client(), store);
            let tasks: Vec<_> = (0..50)
                .map(|_| {
                    let (m, k) = (m.clone(), k.clone());
                    tokio::spawn(
                        async move { m.access_token(&k).await.unwrap().secret().to_owned() },
                    )
                })
                .collect();
            let mut tokens = Vec::new();
            for t in tasks {
                tokens.push(t.await.unwrap());
            }
            tokens.dedup();
            assert_eq!(tokens.len(), 1, "{tokens:?}");
        });
        assert_eq!(s.emulator.refresh_counts().refreshes, 1);
    });
}

/// Two instances on one SQLite file (separate pools, as two processes would have), 16
/// threads: one refresh; the other instance finds it done under its lease.
#[test]
fn two_sqlite_instances_sixteen_threads_one_refresh() {
    bounded("two SQLite instances", Duration::from_secs(30), || {
        let s = server(Duration::from_millis(30));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grants.sqlite3");
        let k = key();
        block_on(
            SqliteStore::open(&file, keys())
                .unwrap()
                .save(&k, &s.expired(), None, None),
        )
        .unwrap();
        let managers: Vec<_> = (0..2)
            .map(|_| {
                BlockingManager::new(
                    s.blocking_client(),
                    SqliteStore::open(&file, keys()).unwrap(),
                )
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
        assert_eq!(s.emulator.refresh_counts().refreshes, 1);
        assert_eq!(s.emulator.refresh_counts().invalid_grants, 0);
    });
}

#[test]
fn cached_reads_touch_neither_the_store_nor_the_server() {
    bounded("cached reads", Duration::from_secs(30), || {
        let s = server(Duration::ZERO);
        // Counts the store's reads, to show the hot path never reaches the store.
        let m = BlockingManager::new(
            s.blocking_client(),
            common::Faulty::new(Arc::new(MemoryStore::new())),
        );
        let k = key();
        block_on(m.store().save(
            &k,
            &token_set("at-fresh", "rt-unused", 899, SystemTime::now()),
            None,
            None,
        ))
        .unwrap();
        assert_eq!(m.access_token(&k).unwrap().secret(), "at-fresh");
        let loads = m.store().loads.load(Ordering::SeqCst);
        for _ in 0..1000 {
            assert_eq!(m.access_token(&k).unwrap().secret(), "at-fresh");
        }
        assert_eq!(m.store().loads.load(Ordering::SeqCst), loads);
        assert_eq!(s.emulator.refresh_counts().refreshes, 0);
        let none = m.access_token(&key()).unwrap_err();
        assert!(matches!(none, ManagerError::NoGrant { .. }) && none.requires_reauthorization());
    });
}

/// An instance died holding the lease (before it sent anything): the others serve
/// nothing stale, wait for the lease to expire, then refresh once.
#[test]
fn a_dead_instances_lease_expires() {
    bounded("dead instance's lease", Duration::from_secs(30), || {
        let s = server(Duration::ZERO);
        let store = Arc::new(MemoryStore::new());
        let k = key();
        block_on(store.save(&k, &s.expired(), None, None)).unwrap();
        let taken = block_on(store.acquire_lease(
            &k,
            &Lease::new("crashed-instance", Duration::from_millis(400)),
        ))
        .unwrap();
        assert!(matches!(taken, LeaseOutcome::Acquired { .. }));
        let m = BlockingManager::builder_shared(s.blocking_client(), store).build();
        let started = Instant::now();
        let g = m.grant(&k).unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "waited for the lease: {:?}",
            started.elapsed()
        );
        assert_eq!(g.status, GrantStatus::Active);
        assert_eq!(s.emulator.refresh_counts().refreshes, 1);
    });
}

/// A caller whose token has expired waits for another instance's refresh only so long.
#[test]
fn a_lease_held_too_long_is_contention_not_a_hang() {
    bounded("contention", Duration::from_secs(30), || {
        let s = server(Duration::ZERO);
        let store = Arc::new(MemoryStore::new());
        let k = key();
        block_on(store.save(&k, &s.expired(), None, None)).unwrap();
        block_on(store.acquire_lease(&k, &Lease::new("slow-instance", Duration::from_secs(60))))
            .unwrap();
        let m = BlockingManager::builder_shared(s.blocking_client(), store)
            .lease(Duration::from_secs(60), Duration::from_millis(300))
            .build();
        let err = m.grant(&k).unwrap_err();
        assert!(
            matches!(err, ManagerError::Contended { .. }) && err.is_transient(),
            "{err:?}"
        );
        assert_eq!(s.emulator.refresh_counts().refreshes, 0);
    });
}

/// A wrong store key is a configuration problem, not a transient one; an API refusal is
/// an API error, not a refresh failure.
#[test]
fn errors_keep_their_cause() {
    bounded("a wrong store key", Duration::from_secs(30), || {
        let s = server(Duration::ZERO);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.sqlite3");
        let k = key();
        block_on(
            SqliteStore::open(&file, keys())
                .unwrap()
                .save(&k, &s.expired(), None, None),
        )
        .unwrap();
        let other = Encryption::Keys(KeyRing::new(
            EncryptionKey::new("test-1", [8u8; 32]).unwrap(),
        ));
        let m = BlockingManager::new(
            s.blocking_client(),
            SqliteStore::open(&file, other).unwrap(),
        );
        let err = m.grant(&k).unwrap_err();
        assert!(
            matches!(err, ManagerError::Store(StoreError::Crypto(_))),
            "{err:?}"
        );
        assert!(!err.is_transient(), "a wrong key does not fix itself");
    });

    bounded("API refusal", Duration::from_secs(30), || {
        let rig = Rig::new(Face::Blocking, StoreKind::Memory, Options::default());
        rig.login(false);
        let common::Manager::Blocking(m) = &rig.manager else {
            unreachable!()
        };
        let err = m.api_get(&rig.key, "b/SECOND_BIZ/fund/list").unwrap_err();
        assert!(matches!(err, ManagerError::Api(_)), "{err:?}");
        assert_eq!(
            err.protocol().and_then(|e| e.status()).map(|s| s.as_u16()),
            Some(404)
        );
    });
}

/// A forced refresh of a grant without a refresh token cannot happen: the caller is told
/// re-authorization is needed, but the grant is not marked while its access token is
/// valid (it keeps working until it expires).
#[test]
fn a_forced_refresh_without_a_refresh_token_leaves_the_grant_alone() {
    bounded(
        "forced refresh without a refresh token",
        Duration::from_secs(30),
        || {
            let s = server(Duration::ZERO);
            let m = BlockingManager::new(s.blocking_client(), MemoryStore::new());
            let k = key();
            let mut tokens = token_set("at-valid", "unused", 899, SystemTime::now());
            tokens.refresh_token = None;
            let v = block_on(m.store().save(&k, &tokens, None, None)).unwrap();
            let err = m.force_refresh(&k, v).unwrap_err();
            assert!(
                matches!(err, ManagerError::NeedsReauthorization { .. }),
                "{err:?}"
            );
            assert_eq!(
                block_on(m.store().load(&k)).unwrap().unwrap().status,
                GrantStatus::Active
            );
            assert_eq!(m.access_token(&k).unwrap().secret(), "at-valid");
            assert_eq!(s.emulator.refresh_counts().refreshes, 0);
        },
    );
}

/// The lease outlives the request holding it: derived from the transport's own bound
/// (reqwest: its total timeout; ureq: connect plus three phases), and a shorter one asked
/// for is raised to that floor where the manager is built.
#[test]
fn the_lease_outlives_the_request_holding_it() {
    bounded("lease floor", Duration::from_secs(30), || {
        let id = ClientId::new("c");
        // ureq's defaults: 10 s to connect, then 30 s per phase (send, head, body).
        let ureq = class_oauth_ureq::ClassClient::builder(Environment::Pie, id.clone())
            .build()
            .unwrap();
        let m = BlockingManager::builder(ureq, MemoryStore::new())
            .lease(Duration::from_secs(5), Duration::from_secs(1))
            .build();
        let ttl = m.settings().lease_ttl.unwrap();
        assert!(ttl > Duration::from_secs(2 * 100), "ureq: {ttl:?}");
        assert_eq!(ttl, m.settings().lease_floor(Duration::from_secs(100)));
        // reqwest's default: 30 s in all; the default lease follows it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let reqwest = class_oauth_reqwest::ClassClient::builder(Environment::Pie, id)
                .build()
                .unwrap();
            let m = TokenManager::new(reqwest.clone(), MemoryStore::new());
            let ttl = m.settings().lease_ttl.unwrap();
            assert!(ttl > Duration::from_secs(2 * 30), "reqwest: {ttl:?}");
            assert!(
                ttl < Duration::from_secs(120),
                "follows the bound, not a fixed 120 s: {ttl:?}"
            );
            // A longer lease asked for is kept.
            let m = TokenManager::builder(reqwest, MemoryStore::new())
                .lease(Duration::from_secs(600), Duration::from_secs(1))
                .build();
            assert_eq!(m.settings().lease_ttl, Some(Duration::from_secs(600)));
        });
    });
}

/// Rotated tokens the store would not take, kept by a process about to exit: sealed into
/// a recovery file beside the store, and written by the next process before anything
/// else; the grant goes on with no second refresh and no token presented twice.
#[test]
fn tokens_the_store_refused_survive_the_process_in_a_recovery_file() {
    bounded("recovery file", Duration::from_secs(60), || {
        let s = server(Duration::ZERO);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grants.sqlite3");
        let k = key();
        let first = s.expired();
        block_on(
            SqliteStore::open(&file, keys())
                .unwrap()
                .save(&k, &first, None, None),
        )
        .unwrap();
        let recovery = class_oauth_store::RecoveryFile::new(
            dir.path().join("grants.sqlite3.recovery"),
            keys(),
        );
        {
            // The first process: its store refuses every token write.
            let faulty = common::Faulty::new(Arc::new(SqliteStore::open(&file, keys()).unwrap()));
            faulty.fail_token_writes.store(100, Ordering::SeqCst);
            let mut settings = class_oauth_manager::Settings::default();
            settings.persist_retries = 1;
            settings.persist_backoff = Duration::from_millis(5);
            let m = BlockingManager::builder_shared(s.blocking_client(), Arc::new(faulty))
                .settings(settings)
                .build();
            let err = m.grant(&k).unwrap_err();
            assert!(matches!(err, ManagerError::Store(_)), "{err:?}");
            let held = m.held();
            assert_eq!(held.len(), 1, "the rotated tokens are held");
            for (key, h) in &held {
                recovery.keep(key, h).unwrap();
            }
        } // the process exits
        assert_eq!(s.emulator.refresh_counts().refreshes, 1);
        let stored = block_on(SqliteStore::open(&file, keys()).unwrap().load(&k))
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.tokens.refresh_token, first.refresh_token,
            "not written yet"
        );
        // The next process imports the file before anything else.
        let m = BlockingManager::builder(
            s.blocking_client(),
            SqliteStore::open(&file, keys()).unwrap(),
        )
        .build();
        for (key, h) in recovery.entries().unwrap() {
            m.write_held(&key, h).unwrap();
            recovery.forget(&key).unwrap();
        }
        assert!(!recovery.path().exists());
        let now = block_on(m.store().load(&k)).unwrap().unwrap();
        let rt = now
            .tokens
            .refresh_token
            .as_ref()
            .unwrap()
            .secret()
            .to_owned();
        assert!(
            s.emulator.is_current_refresh_token(&rt),
            "the recovered refresh token is the server's current one"
        );
        m.grant(&k).unwrap();
        let counts = s.emulator.refresh_counts();
        assert_eq!(
            counts.refreshes, 1,
            "no second refresh: the recovered tokens serve"
        );
        assert_eq!(counts.reuse_detected, 0, "no refresh token presented twice");
    });
}

/// The keeper refreshes a grant whose refresh token is past its share of the idle limit
/// (20 days old of 30) without any caller, on both faces, once; a fresh grant is left
/// alone; and a dropped handle stops it.
#[test]
fn the_keeper_refreshes_idle_grants_and_stops_when_dropped() {
    bounded("keeper", Duration::from_secs(60), || {
        let s = server(Duration::ZERO);
        let old = SystemTime::now() - Duration::from_secs(20 * 24 * 3600);
        let mut fast = class_oauth_manager::KeeperSettings::default();
        fast.max_refreshes_per_second = 100.0;
        let wait_for = |what: &str, f: &dyn Fn() -> bool| {
            let until = Instant::now() + Duration::from_secs(20);
            while !f() {
                assert!(Instant::now() < until, "{what}");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        // Blocking face: a thread of its own.
        let m = BlockingManager::new(s.blocking_client(), MemoryStore::new());
        let (idle, fresh) = (key(), key());
        block_on(
            m.store()
                .save(&idle, &token_set("at-1", &s.seed(), 899, old), None, None),
        )
        .unwrap();
        block_on(m.store().save(
            &fresh,
            &token_set("at-2", &s.seed(), 899, SystemTime::now()),
            None,
            None,
        ))
        .unwrap();
        let keeper = m.start_keeper(fast.clone()).unwrap();
        wait_for("the idle grant is refreshed", &|| {
            s.emulator.refresh_counts().refreshes == 1
        });
        let health = m.grants(&class_oauth_manager::GrantQuery::all()).unwrap();
        let idle_health = health.iter().find(|h| h.key == idle).unwrap();
        assert!(
            idle_health.refresh_token_age.unwrap() < Duration::from_secs(600),
            "{idle_health:?}"
        );
        drop(keeper);
        std::thread::sleep(Duration::from_millis(1500));
        // Stopped: a grant gone idle now is not touched.
        let later = key();
        block_on(
            m.store()
                .save(&later, &token_set("at-3", &s.seed(), 899, old), None, None),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            s.emulator.refresh_counts().refreshes,
            1,
            "the fresh grant and a stopped keeper"
        );
        // Async face: a tokio task.
        s.rt.block_on(async {
            let m = TokenManager::new(s.async_client(), MemoryStore::new());
            let k = key();
            m.store()
                .save(&k, &token_set("at-4", &s.seed(), 899, old), None, None)
                .await
                .unwrap();
            let _keeper = m.start_keeper(fast).unwrap();
            let until = Instant::now() + Duration::from_secs(20);
            while s.emulator.refresh_counts().refreshes < 2 {
                assert!(Instant::now() < until, "the async keeper refreshed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert_eq!(s.emulator.refresh_counts().invalid_grants, 0);
    });
}

/// Class answers `invalid_grant` to a revoked grant and a lapsed token alike; the
/// manager tells them apart by the token's age: a refusal within the lifetime (not in
/// doubt) is the customer's revocation, its own event and reason; one past it, a lapse.
/// Under an absolute lifetime, three instances' keepers on one store announce a coming
/// lapse once per lead between them (the notice is claimed in the store), not once per
/// instance; a restarted keeper does not announce it again.
#[test]
fn lapse_notices_are_announced_once_across_instances() {
    bounded("lapse notices", Duration::from_secs(60), || {
        let s = server(Duration::ZERO);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.sqlite3");
        let k = key();
        // Granted 29.5 days ago: the lapse is 12 hours away, so both leads (7 days and
        // 1 day) are due at once.
        let granted = SystemTime::now() - Duration::from_secs(59 * 12 * 3600);
        block_on(SqliteStore::open(&path, keys()).unwrap().save(
            &k,
            &token_set("at", &s.seed(), 899, granted),
            None,
            None,
        ))
        .unwrap();
        let mut settings = class_oauth_manager::KeeperSettings::default();
        settings.absolute_lifetime = true;
        let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
        let instance = || {
            let seen = notices.clone();
            BlockingManager::builder(
                s.blocking_client(),
                SqliteStore::open(&path, keys()).unwrap(),
            )
            .on_event(move |e| {
                if let class_oauth_manager::TokenEvent::LapseAhead { lead, .. } = e {
                    seen.lock().unwrap().push(*lead);
                }
            })
            .build()
        };
        let managers: Vec<_> = (0..3).map(|_| instance()).collect();
        let keepers: Vec<_> = managers
            .iter()
            .map(|m| m.start_keeper(settings.clone()).unwrap())
            .collect();
        let until = Instant::now() + Duration::from_secs(20);
        while notices.lock().unwrap().len() < 2 {
            assert!(Instant::now() < until, "the lapse was announced");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Every keeper has swept by now; a restarted one sweeps again.
        std::thread::sleep(Duration::from_millis(1500));
        drop(keepers);
        let again = managers[0].start_keeper(settings).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        drop(again);
        let mut leads = notices.lock().unwrap().clone();
        leads.sort();
        assert_eq!(
            leads,
            [
                Duration::from_secs(24 * 3600),
                Duration::from_secs(7 * 24 * 3600)
            ],
            "one notice per lead across three instances and a restart"
        );
        assert_eq!(
            s.emulator.refresh_counts().refreshes,
            0,
            "an absolute lifetime is not refreshed"
        );
    });
}

#[test]
fn a_revocation_in_class_is_told_apart_from_a_lapse() {
    bounded("revoked or lapsed", Duration::from_secs(60), || {
        let rig = Rig::new(Face::Blocking, StoreKind::Memory, Options::default());
        let g = rig.login(false);
        rig.emulator.revoke_partner_access("OAUTH_TEST");
        let err = rig.force_refresh(g.version).unwrap_err();
        assert!(err.requires_reauthorization(), "{err:?}");
        let revoked: Vec<_> = rig
            .events()
            .into_iter()
            .filter(|e| matches!(e, class_oauth_manager::TokenEvent::Revoked { .. }))
            .collect();
        assert_eq!(revoked.len(), 1, "{:?}", rig.events());
        assert!(
            matches!(rig.stored().status, GrantStatus::NeedsReauthorization { ref reason } if reason.contains("probably revoked")),
            "{:?}",
            rig.stored().status
        );

        // A refresh token 31 days old that Class refuses has lapsed: not a revocation.
        let s = server(Duration::ZERO);
        let m = BlockingManager::new(s.blocking_client(), MemoryStore::new());
        let k = key();
        let old = SystemTime::now() - Duration::from_secs(31 * 24 * 3600);
        block_on(m.store().save(
            &k,
            &token_set("at", "rt-unknown-to-the-server", 899, old),
            None,
            None,
        ))
        .unwrap();
        let err = m.grant(&k).unwrap_err();
        assert!(err.requires_reauthorization(), "{err:?}");
        let stored = block_on(m.store().load(&k)).unwrap().unwrap();
        assert!(
            matches!(&stored.status, GrantStatus::NeedsReauthorization { reason } if reason.contains("31 days unused: it lapsed")),
            "{:?}",
            stored.status
        );
    });
}
