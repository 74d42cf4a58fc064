//! Behaviour every SQL store must have, run against SQLite and a real PostgreSQL
//! (CLASS_OAUTH_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test).

use std::time::{Duration, SystemTime};

use class_oauth_core::ClientId;
use class_oauth_fixtures::bounded;
use class_oauth_fixtures::seed::token_set;
use class_oauth_store::{
    Encryption, EncryptionKey, GrantQuery, GrantStatus, GrantUpdate, KeyRing, Lease, LeaseOutcome,
    MemoryStore, PostgresStore, SqliteStore, StoreError, TenantKey, TokenStore,
};
use pollster::block_on;

fn pg_url() -> String {
    std::env::var("CLASS_OAUTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn k1() -> EncryptionKey {
    EncryptionKey::new("k1", [1u8; 32]).unwrap()
}
fn k2() -> EncryptionKey {
    EncryptionKey::new("k2", [2u8; 32]).unwrap()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn key(tenant: &str) -> TenantKey {
    TenantKey::new(&ClientId::new("client-1"), tenant)
}

/// Raw access to the sealed column, to move ciphertext between rows like an attacker
/// with database access would.
trait Raw {
    fn sealed(&self, key: &TenantKey) -> (String, String);
    fn set_sealed(&self, key: &TenantKey, sealed: &str);
}

struct SqliteRaw(std::path::PathBuf);
impl Raw for SqliteRaw {
    fn sealed(&self, key: &TenantKey) -> (String, String) {
        let c = rusqlite::Connection::open(&self.0).unwrap();
        c.query_row(
            "SELECT sealed, key_id FROM class_oauth_grants WHERE storage_key = ?1",
            [key.storage_key()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }
    fn set_sealed(&self, key: &TenantKey, sealed: &str) {
        let c = rusqlite::Connection::open(&self.0).unwrap();
        c.execute(
            "UPDATE class_oauth_grants SET sealed = ?2 WHERE storage_key = ?1",
            [key.storage_key(), sealed.to_owned()],
        )
        .unwrap();
    }
}

struct PgRaw;

/// One statement on a connection of its own (a small runtime on a thread of its own).
fn pg_query(sql: &'static str, key: String, value: Option<String>) -> Option<(String, String)> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (c, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            match value {
                Some(v) => {
                    c.execute(sql, &[&key, &v]).await.unwrap();
                    None
                }
                None => {
                    let r = c.query_one(sql, &[&key]).await.unwrap();
                    Some((r.get(0), r.get(1)))
                }
            }
        })
    })
    .join()
    .unwrap()
}

impl Raw for PgRaw {
    fn sealed(&self, key: &TenantKey) -> (String, String) {
        pg_query(
            "SELECT sealed, key_id FROM class_oauth_grants WHERE storage_key = $1",
            key.storage_key(),
            None,
        )
        .unwrap()
    }
    fn set_sealed(&self, key: &TenantKey, sealed: &str) {
        pg_query(
            "UPDATE class_oauth_grants SET sealed = $2 WHERE storage_key = $1",
            key.storage_key(),
            Some(sealed.to_owned()),
        );
    }
}

fn behaves(open: &dyn Fn(Encryption) -> Box<dyn TokenStore>, raw: &dyn Raw, run: &str) {
    let store = open(Encryption::Keys(KeyRing::new(k1())));
    let a = key(&format!("{run}-a"));
    let b = key(&format!("{run}-b"));
    // Records keep whole seconds.
    let now = class_oauth_core::time::from_unix(class_oauth_core::time::to_unix(SystemTime::now()));

    // Round trip, versions and CAS.
    let v1 = block_on(store.save(
        &a,
        &token_set("AT-SECRET-A", "RT-SECRET-A", 899, now),
        None,
        None,
    ))
    .unwrap();
    assert_eq!(
        block_on(store.load(&a))
            .unwrap()
            .unwrap()
            .tokens
            .refresh_token
            .unwrap()
            .secret(),
        "RT-SECRET-A"
    );
    assert_eq!(
        block_on(store.save(&a, &token_set("x", "y", 899, now), None, Some(v1 + 7))).unwrap_err(),
        StoreError::Conflict { expected: v1 + 7 }
    );
    let v2 = block_on(store.save(
        &a,
        &token_set("AT-SECRET-A2", "RT-SECRET-A2", 899, now),
        None,
        Some(v1),
    ))
    .unwrap();
    assert_eq!(v2, v1 + 1);

    // The lease, the CAS update that releases it.
    leases(&*store, &a, v2, now);

    // Secrets are not in the row; the listing shows none.
    let (sealed_a, kid) = raw.sealed(&a);
    assert_eq!(kid, "k1");
    assert!(!sealed_a.contains("SECRET"), "{sealed_a}");
    let listing = format!("{:?}", block_on(store.list(&GrantQuery::all())).unwrap());
    assert!(
        listing.contains("OAUTH_TEST") && !listing.contains("SECRET"),
        "{listing}"
    );

    // A ciphertext moved to another tenant's row fails to decrypt.
    block_on(store.save(&b, &token_set("AT-B", "RT-B", 899, now), None, None)).unwrap();
    raw.set_sealed(&b, &sealed_a);
    assert!(matches!(
        block_on(store.load(&b)).unwrap_err(),
        StoreError::Crypto(_)
    ));

    // Key rotation: the old row still reads under [k2, k1]; a write re-encrypts with k2;
    // then [k2] alone reads it.
    let rotated = open(Encryption::Keys(KeyRing::new(k2()).with_previous(k1())));
    assert_eq!(
        block_on(rotated.load(&a))
            .unwrap()
            .unwrap()
            .tokens
            .access_token
            .secret(),
        "AT-SECRET-A3"
    );
    block_on(rotated.save(
        &a,
        &token_set("AT-SECRET-A4", "RT-SECRET-A4", 899, now),
        None,
        None,
    ))
    .unwrap();
    assert_eq!(raw.sealed(&a).1, "k2");
    let only_new = open(Encryption::Keys(KeyRing::new(k2())));
    assert_eq!(
        block_on(only_new.load(&a))
            .unwrap()
            .unwrap()
            .tokens
            .access_token
            .secret(),
        "AT-SECRET-A4"
    );

    // Without a key: no secret is written.
    let keyless = open(Encryption::Refuse);
    assert_eq!(
        block_on(keyless.save(
            &key(&format!("{run}-c")),
            &token_set("a", "b", 1, now),
            None,
            None
        ))
        .unwrap_err(),
        StoreError::NoEncryptionKey
    );

    // Status: conditional on the version (a stale writer cannot mark a newer login).
    let dead = GrantStatus::NeedsReauthorization {
        reason: "revoked".into(),
    };
    let plain_b = open(Encryption::Keys(KeyRing::new(k1())));
    let vb =
        block_on(plain_b.save(&b, &token_set("AT-B2", "RT-B2", 899, now), None, None)).unwrap();
    assert_eq!(
        block_on(store.update(&b, &GrantUpdate::status(vb - 1, &dead))).unwrap_err(),
        StoreError::Conflict { expected: vb - 1 }
    );
    assert_eq!(
        block_on(store.load(&b)).unwrap().unwrap().status,
        GrantStatus::Active
    );
    assert_eq!(
        block_on(store.update(&b, &GrantUpdate::status(vb, &dead))).unwrap(),
        vb + 1
    );
    assert!(
        block_on(store.list(&GrantQuery::all()))
            .unwrap()
            .iter()
            .any(|s| s.key == b && s.status == dead)
    );
    // Grant health: a page after a cursor, a status filter, the tokens' and the login's
    // times.
    let page = block_on(store.list(&GrantQuery::page(1).after(&a))).unwrap();
    assert_eq!(page.len(), 1, "{page:?}");
    assert_eq!(page[0].key, b, "the row after `a` is `b`");
    let now_unix = class_oauth_core::time::to_unix(now);
    assert_eq!(page[0].tokens_received_at, Some(now_unix));
    assert_eq!(page[0].granted_at, Some(now_unix));
    assert_eq!(page[0].refreshed_at, None, "not refreshed since its login");
    let dead_ones = block_on(store.list(&GrantQuery::all().with_status(&dead))).unwrap();
    assert!(dead_ones.iter().any(|s| s.key == b));
    assert!(
        dead_ones
            .iter()
            .all(|s| s.status.as_parts().0 == "needs_reauthorization")
    );
    assert!(!dead_ones.iter().any(|s| s.key == a), "`a` is active");

    // A plaintext row is refused by a store opened with a key.
    let c = key(&format!("{run}-plain"));
    block_on(open(Encryption::DangerPlaintext).save(
        &c,
        &token_set("AT-P", "RT-P", 899, now),
        None,
        None,
    ))
    .unwrap();
    assert!(
        matches!(block_on(store.load(&c)).unwrap_err(), StoreError::Crypto(ref m) if m.contains("plaintext"))
    );

    // Pending records redeem once, never after expiry.
    let client = class_oauth_core::Client::new(
        ClientId::new("client-1"),
        class_oauth_core::Environment::Pie.preset(),
    );
    let mut entropy = |buf: &mut [u8]| buf.fill(9);
    let (_, pending) = class_oauth_core::authorize::AuthorizationRequest::new(
        &client,
        class_oauth_core::RedirectUrl::new("https://p.example/cb").unwrap(),
        class_oauth_core::scope::Scopes::parse(&format!("target:b/{run} offline_access")).unwrap(),
    )
    .build(&mut entropy, now)
    .unwrap();
    let state = pending.state().secret().to_owned();
    let expires_at = pending.expires_at();
    let exposed = |p: &class_oauth_core::authorize::PendingAuthorization| {
        serde_json::to_value(class_oauth_core::secret::ExposeSecrets(p)).unwrap()
    };
    let expected = exposed(&pending);
    block_on(store.put_pending(&state, pending)).unwrap();
    let taken = block_on(store.take_pending(&state, now)).unwrap().unwrap();
    assert_eq!(exposed(&taken), expected);
    assert!(
        block_on(store.take_pending(&state, now)).unwrap().is_none(),
        "single use"
    );
    block_on(store.put_pending(&state, taken)).unwrap();
    assert!(
        block_on(store.take_pending(&state, expires_at + Duration::from_secs(1)))
            .unwrap()
            .is_none(),
        "expired"
    );
}

#[test]
fn sqlite_store() {
    let file = std::env::temp_dir().join(format!("class-oauth-store-{}.sqlite3", unique("t")));
    let f = file.clone();
    behaves(
        &move |enc| Box::new(SqliteStore::open(&f, enc).unwrap()),
        &SqliteRaw(file.clone()),
        "sqlite",
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn postgres_store() {
    let url = pg_url();
    let run = unique("pg");
    behaves(
        &move |enc| {
            Box::new(
                PostgresStore::connect_blocking(&url, 2, enc).unwrap_or_else(|e| {
                    panic!("PostgreSQL is needed (CLASS_OAUTH_TEST_POSTGRES_URL): {e}")
                }),
            )
        },
        &PgRaw,
        &run,
    );
}

/// The lease every store must implement: one holder; a release only by its owner; an
/// expired lease taken over and reported as such; the CAS update that releases it; a
/// login that clears it.
fn leases(store: &dyn TokenStore, a: &TenantKey, version: u64, now: SystemTime) {
    let long = Duration::from_secs(60);
    let LeaseOutcome::Acquired {
        grant,
        took_over_expired,
        marked: false,
    } = block_on(store.acquire_lease(a, &Lease::new("one", long))).unwrap()
    else {
        panic!("a free lease is taken")
    };
    assert_eq!((grant.version, took_over_expired), (version, false));
    let LeaseOutcome::Held { remaining } =
        block_on(store.acquire_lease(a, &Lease::new("two", long))).unwrap()
    else {
        panic!("a held lease is not taken")
    };
    assert!(
        remaining > Duration::from_secs(50) && remaining <= long,
        "{remaining:?}"
    );
    block_on(store.release_lease(a, "two", None)).unwrap(); // not the owner: no effect
    assert!(matches!(
        block_on(store.acquire_lease(a, &Lease::new("two", long))).unwrap(),
        LeaseOutcome::Held { .. }
    ));
    // The holder's write: CAS on the version, releases its lease.
    let active = GrantStatus::Active;
    let t3 = token_set("AT-SECRET-A3", "RT-SECRET-A3", 899, now);
    assert_eq!(
        block_on(store.update(
            a,
            &GrantUpdate::tokens(version + 5, &t3, None, &active).releasing("one")
        ))
        .unwrap_err(),
        StoreError::Conflict {
            expected: version + 5
        }
    );
    assert!(
        matches!(
            block_on(store.acquire_lease(a, &Lease::new("two", long))).unwrap(),
            LeaseOutcome::Held { .. }
        ),
        "a failed write keeps the lease"
    );
    let v3 = block_on(store.update(
        a,
        &GrantUpdate::tokens(version, &t3, None, &active).releasing("one"),
    ))
    .unwrap();
    assert_eq!(v3, version + 1);
    // A refresh moves the tokens' time and the last refresh, not the login's.
    let row = block_on(store.list(&GrantQuery::all()))
        .unwrap()
        .into_iter()
        .find(|s| s.key == *a)
        .unwrap();
    let t3_at = class_oauth_core::time::to_unix(t3.received_at);
    assert_eq!(
        (row.tokens_received_at, row.refreshed_at),
        (Some(t3_at), Some(t3_at))
    );
    assert!(row.granted_at.is_some_and(|g| g <= t3_at), "{row:?}");
    assert_eq!(
        block_on(store.load(a))
            .unwrap()
            .unwrap()
            .tokens
            .access_token
            .secret(),
        "AT-SECRET-A3"
    );
    // Released: taken again, this time with a lease that expires at once.
    assert!(matches!(
        block_on(store.acquire_lease(a, &Lease::new("short", Duration::from_millis(1)))).unwrap(),
        LeaseOutcome::Acquired {
            took_over_expired: false,
            ..
        }
    ));
    std::thread::sleep(Duration::from_millis(30));
    let LeaseOutcome::Acquired {
        took_over_expired, ..
    } = block_on(store.acquire_lease(a, &Lease::new("after-crash", long))).unwrap()
    else {
        panic!("an expired lease is taken over")
    };
    assert!(
        took_over_expired,
        "the take-over of an expired lease is reported"
    );
    // A status update that does not release leaves the lease; a login clears it.
    let doubt = GrantStatus::InDoubt {
        reason: "test".into(),
    };
    let v4 = block_on(store.update(a, &GrantUpdate::status(v3, &doubt))).unwrap();
    assert_eq!(block_on(store.load(a)).unwrap().unwrap().status, doubt);
    assert!(matches!(
        block_on(store.acquire_lease(a, &Lease::new("two", long))).unwrap(),
        LeaseOutcome::Held { .. }
    ));
    let v5 = block_on(store.save(a, &t3, None, Some(v4))).unwrap();
    assert_eq!(v5, v4 + 1);
    assert!(matches!(
        block_on(store.acquire_lease(a, &Lease::new("two", long))).unwrap(),
        LeaseOutcome::Acquired {
            took_over_expired: false,
            ..
        }
    ));
    block_on(store.release_lease(a, "two", None)).unwrap();
    assert!(matches!(
        block_on(store.acquire_lease(&key("never-stored"), &Lease::new("x", long))).unwrap(),
        LeaseOutcome::Missing
    ));
    // The in-doubt mark taken with the lease, in the same conditional write: written only
    // when the row still has the version it names.
    let stale =
        block_on(store.acquire_lease(a, &Lease::new("m1", long).marking(v5 + 7, doubt.clone())))
            .unwrap();
    let LeaseOutcome::Acquired {
        grant,
        marked: false,
        ..
    } = stale
    else {
        panic!("a lease is taken, unmarked, on a row that moved on: {stale:?}")
    };
    assert_eq!((grant.version, &grant.status), (v5, &GrantStatus::Active));
    block_on(store.release_lease(a, "m1", None)).unwrap();
    let fresh =
        block_on(store.acquire_lease(a, &Lease::new("m2", long).marking(v5, doubt.clone())))
            .unwrap();
    let LeaseOutcome::Acquired {
        grant,
        marked: true,
        ..
    } = fresh
    else {
        panic!("a lease is taken and marked: {fresh:?}")
    };
    assert_eq!((grant.version, &grant.status), (v5 + 1, &doubt));
    assert_eq!(block_on(store.load(a)).unwrap().unwrap().status, doubt);
    assert!(matches!(
        block_on(store.acquire_lease(a, &Lease::new("two", long))).unwrap(),
        LeaseOutcome::Held { .. }
    ));
    let v7 =
        block_on(store.update(a, &GrantUpdate::status(v5 + 1, &active).releasing("m2"))).unwrap();
    // A refresh that failed without ending the grant: its error is the grant's last
    // error, recorded by the lease holder's release only, cut to 500 bytes at a
    // character boundary, and cleared by the next write of tokens.
    let last = |store: &dyn TokenStore| {
        let row = block_on(store.list(&GrantQuery::all()))
            .unwrap()
            .into_iter()
            .find(|s| s.key == *a)
            .unwrap();
        (row.last_error, row.last_error_at)
    };
    assert_eq!(last(store), (None, None));
    assert!(matches!(
        block_on(store.acquire_lease(a, &Lease::new("f", long))).unwrap(),
        LeaseOutcome::Acquired { .. }
    ));
    block_on(store.release_lease(a, "not-the-holder", Some("not mine"))).unwrap();
    assert_eq!(last(store), (None, None), "only the holder records");
    let before = class_oauth_core::time::to_unix(SystemTime::now());
    let long_error = format!("Class is unavailable (HTTP 503): {}", "\u{e9}".repeat(400));
    block_on(store.release_lease(a, "f", Some(&long_error))).unwrap();
    let (error, at) = last(store);
    let error = error.expect("the failure is recorded");
    assert!(
        error.starts_with("Class is unavailable (HTTP 503): "),
        "{error}"
    );
    assert!(
        error.len() <= 503 && error.ends_with("..."),
        "{}",
        error.len()
    );
    assert!(
        at.is_some_and(|t| t >= before && t <= before + 60),
        "{at:?}"
    );
    // A release without a failure leaves it; a write of tokens clears it.
    assert!(matches!(
        block_on(store.acquire_lease(a, &Lease::new("g", long))).unwrap(),
        LeaseOutcome::Acquired { .. }
    ));
    block_on(store.release_lease(a, "g", None)).unwrap();
    assert!(last(store).0.is_some());
    assert!(matches!(
        block_on(store.acquire_lease(a, &Lease::new("h", long))).unwrap(),
        LeaseOutcome::Acquired { .. }
    ));
    block_on(store.update(
        a,
        &GrantUpdate::tokens(v7, &t3, None, &active).releasing("h"),
    ))
    .unwrap();
    assert_eq!(last(store), (None, None), "a refresh clears the last error");

    // Lapse notices: each lead of one lapse is claimed once, a longer lead after a
    // shorter one not at all; another lapse (a new login) starts again.
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let claim = |at: u64, lead: Duration| block_on(store.claim_lapse_notice(a, at, lead)).unwrap();
    assert!(claim(1_000_000, 7 * DAY), "the first claim wins");
    assert!(
        !claim(1_000_000, 7 * DAY),
        "a second claim of the same lead loses"
    );
    assert!(claim(1_000_000, DAY), "a shorter lead is claimed");
    assert!(!claim(1_000_000, 7 * DAY) && !claim(1_000_000, DAY));
    assert!(claim(2_000_000, 7 * DAY), "another lapse is announced anew");
    assert!(!block_on(store.claim_lapse_notice(&key("never-stored"), 1, DAY)).unwrap());
}

#[test]
fn memory_store_leases() {
    let store = MemoryStore::new();
    let a = key("memory-a");
    let now = SystemTime::now();
    let v = block_on(store.save(&a, &token_set("AT", "RT", 899, now), None, None)).unwrap();
    leases(&store, &a, v, now);
}

#[cfg(unix)]
#[test]
fn sqlite_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested").join("grants.sqlite3");
    let _store = SqliteStore::open(&file, Encryption::Refuse).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

/// The scope set is part of the key as a set: listing the same scopes in another order
/// finds the same grant.
#[test]
fn tenant_key_scope_is_a_set() {
    let scopes = |s: &str| class_oauth_core::scope::Scopes::parse(s).unwrap();
    let a = key("t").with_scope(&scopes("openid target:b/X fund.read"));
    let b = key("t").with_scope(&scopes("fund.read openid target:b/X"));
    assert_eq!(a, b);
    assert_eq!(a.storage_key(), b.storage_key());
    assert_ne!(a, key("t").with_scope(&scopes("openid target:b/X")));
}

/// One contract for every caller: a PostgreSQL store connected on an application's
/// runtime is also usable by a blocking caller on a thread with no runtime (its calls
/// are spawned onto the runtime the pool lives on), and an async caller reaches a store
/// opened for blocking callers.
#[test]
fn postgres_serves_blocking_and_async_callers_through_one_contract() {
    bounded("PostgreSQL store", Duration::from_secs(60), || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = rt
            .block_on(PostgresStore::connect(
                &pg_url(),
                2,
                Encryption::DangerPlaintext,
            ))
            .unwrap();
        let k = key(&unique("pg-one-contract"));
        let now = SystemTime::now();
        // This thread has no runtime.
        assert!(tokio::runtime::Handle::try_current().is_err());
        let v = block_on(store.save(&k, &token_set("AT-1", "RT-1", 899, now), None, None)).unwrap();
        assert_eq!(block_on(store.load(&k)).unwrap().unwrap().version, v);
        // A store opened for blocking callers, awaited on another runtime.
        let own =
            PostgresStore::connect_blocking(&pg_url(), 2, Encryption::DangerPlaintext).unwrap();
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let loaded = other
            .block_on(async { own.load(&k).await })
            .unwrap()
            .unwrap();
        assert_eq!(loaded.version, v);
        assert!(block_on(own.delete(&k)).unwrap());
    });
}

/// SQLite on a tokio runtime never blocks the executor: while another process holds the
/// file's write lock (the store's call waits on SQLite's busy timeout), other tasks on
/// the same one-thread runtime keep running. (Run in place, the call would stop them.)
#[test]
fn sqlite_on_a_runtime_waits_off_the_executor() {
    bounded("PostgreSQL store", Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("busy.sqlite3");
        let store = SqliteStore::open(&file, Encryption::DangerPlaintext).unwrap();
        let k = key("busy");
        block_on(store.save(
            &k,
            &token_set("AT", "RT", 899, SystemTime::now()),
            None,
            None,
        ))
        .unwrap();
        // Another "process" takes the write lock for 400 ms.
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&file).unwrap();
            c.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(400));
            c.execute_batch("COMMIT").unwrap();
        });
        locked_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = rt.block_on(async {
            let t = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    t.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
            tokio::task::yield_now().await;
            let started = std::time::Instant::now();
            let outcome = store
                .acquire_lease(&k, &Lease::new("waiter", Duration::from_secs(60)))
                .await
                .unwrap();
            assert!(matches!(outcome, LeaseOutcome::Acquired { .. }));
            assert!(
                started.elapsed() >= Duration::from_millis(200),
                "it did wait"
            );
            let counted = ticks.load(std::sync::atomic::Ordering::SeqCst);
            ticker.abort();
            counted
        });
        assert!(
            counted >= 5,
            "the runtime's other tasks ran while SQLite waited: {counted} ticks"
        );
        holder.join().unwrap();
    });
}
