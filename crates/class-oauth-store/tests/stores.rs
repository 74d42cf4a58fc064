//! Behaviour every SQL store must have, run against SQLite and a real PostgreSQL
//! (CLASS_OAUTH_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test).

use std::time::{Duration, SystemTime};

use class_oauth_core::ClientId;
use class_oauth_store::{
    Encryption, EncryptionKey, GrantStatus, KeyRing, PostgresStore, SqliteStore, StoreError,
    TenantKey, TokenStore,
};
use class_oauth_test::onetime::token_set;

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
impl Raw for PgRaw {
    fn sealed(&self, key: &TenantKey) -> (String, String) {
        let key = key.storage_key();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&pg_url(), postgres::NoTls).unwrap();
            let r = c
                .query_one(
                    "SELECT sealed, key_id FROM class_oauth_grants WHERE storage_key = $1",
                    &[&key],
                )
                .unwrap();
            (r.get(0), r.get(1))
        })
        .join()
        .unwrap()
    }
    fn set_sealed(&self, key: &TenantKey, sealed: &str) {
        let (key, sealed) = (key.storage_key(), sealed.to_owned());
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&pg_url(), postgres::NoTls).unwrap();
            c.execute(
                "UPDATE class_oauth_grants SET sealed = $2 WHERE storage_key = $1",
                &[&key, &sealed],
            )
            .unwrap();
        })
        .join()
        .unwrap();
    }
}

fn behaves(open: &dyn Fn(Encryption) -> Box<dyn TokenStore>, raw: &dyn Raw, run: &str) {
    let store = open(Encryption::Keys(KeyRing::new(k1())));
    let a = key(&format!("{run}-a"));
    let b = key(&format!("{run}-b"));
    // Records keep whole seconds.
    let now = class_oauth_core::time::from_unix(class_oauth_core::time::to_unix(SystemTime::now()));

    // Round trip, versions and CAS.
    let v1 = store
        .save(
            &a,
            &token_set("AT-SECRET-A", "RT-SECRET-A", 899, now),
            None,
            None,
        )
        .unwrap();
    assert_eq!(
        store
            .load(&a)
            .unwrap()
            .unwrap()
            .tokens
            .refresh_token
            .unwrap()
            .secret(),
        "RT-SECRET-A"
    );
    assert_eq!(
        store
            .save(&a, &token_set("x", "y", 899, now), None, Some(v1 + 7))
            .unwrap_err(),
        StoreError::Conflict { expected: v1 + 7 }
    );
    let v2 = store
        .save(
            &a,
            &token_set("AT-SECRET-A2", "RT-SECRET-A2", 899, now),
            None,
            Some(v1),
        )
        .unwrap();
    assert_eq!(v2, v1 + 1);

    // The lock re-reads; commit is a CAS and releases.
    let guard = store.lock(&a).unwrap();
    assert_eq!(guard.current().unwrap().version, v2);
    let v3 = guard
        .commit(&token_set("AT-SECRET-A3", "RT-SECRET-A3", 899, now), None)
        .unwrap();
    assert_eq!(v3, v2 + 1);
    drop(store.lock(&a).unwrap()); // released: can be taken again

    // Secrets are not in the row; the listing shows none.
    let (sealed_a, kid) = raw.sealed(&a);
    assert_eq!(kid, "k1");
    assert!(!sealed_a.contains("SECRET"), "{sealed_a}");
    let listing = format!("{:?}", store.list().unwrap());
    assert!(
        listing.contains("OAUTH_TEST") && !listing.contains("SECRET"),
        "{listing}"
    );

    // A ciphertext moved to another tenant's row fails to decrypt.
    store
        .save(&b, &token_set("AT-B", "RT-B", 899, now), None, None)
        .unwrap();
    raw.set_sealed(&b, &sealed_a);
    assert!(matches!(store.load(&b).unwrap_err(), StoreError::Crypto(_)));

    // Key rotation: the old row still reads under [k2, k1]; a write re-encrypts with k2;
    // then [k2] alone reads it.
    let rotated = open(Encryption::Keys(KeyRing::new(k2()).with_previous(k1())));
    assert_eq!(
        rotated
            .load(&a)
            .unwrap()
            .unwrap()
            .tokens
            .access_token
            .secret(),
        "AT-SECRET-A3"
    );
    rotated
        .save(
            &a,
            &token_set("AT-SECRET-A4", "RT-SECRET-A4", 899, now),
            None,
            None,
        )
        .unwrap();
    assert_eq!(raw.sealed(&a).1, "k2");
    let only_new = open(Encryption::Keys(KeyRing::new(k2())));
    assert_eq!(
        only_new
            .load(&a)
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
        keyless
            .save(
                &key(&format!("{run}-c")),
                &token_set("a", "b", 1, now),
                None,
                None
            )
            .unwrap_err(),
        StoreError::NoEncryptionKey
    );

    // Status.
    store
        .set_status(
            &b,
            &GrantStatus::NeedsReauthorization {
                reason: "revoked".into(),
            },
        )
        .unwrap();
    assert!(
        store
            .list()
            .unwrap()
            .iter()
            .any(|s| s.key == b && s.status != GrantStatus::Active)
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
        class_oauth_core::scope::Scopes::parse(&format!("openid target:b/{run}")).unwrap(),
    )
    .build(&mut entropy, now)
    .unwrap();
    store.put_pending(pending.state.secret(), &pending).unwrap();
    let taken = store
        .take_pending(pending.state.secret(), now)
        .unwrap()
        .unwrap();
    assert_eq!(taken, pending);
    assert!(
        store
            .take_pending(pending.state.secret(), now)
            .unwrap()
            .is_none(),
        "single use"
    );
    store.put_pending(pending.state.secret(), &pending).unwrap();
    assert!(
        store
            .take_pending(
                pending.state.secret(),
                pending.expires_at + Duration::from_secs(1)
            )
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
            Box::new(PostgresStore::connect(&url, 2, enc).unwrap_or_else(|e| {
                panic!("PostgreSQL is needed (CLASS_OAUTH_TEST_POSTGRES_URL): {e}")
            }))
        },
        &PgRaw,
        &run,
    );
}
