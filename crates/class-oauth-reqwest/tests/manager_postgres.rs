//! The async token manager against a real PostgreSQL (CLASS_OAUTH_TEST_POSTGRES_URL,
//! default postgres://postgres@127.0.0.1:5432/test) and a token server with one-time
//! refresh tokens and reuse detection.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use class_oauth_core::{ClientId, ClientSecret, Environment, IssuerUrl};
use class_oauth_reqwest::{ClassClient, TenantKey, TokenManager};
use class_oauth_store::asynch::{AsyncTokenStore, Blocking};
use class_oauth_store::{Encryption, EncryptionKey, KeyRing, PostgresStore};
use class_oauth_test::onetime::{OneTimeTokenServer, token_set};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

fn pg_url() -> String {
    std::env::var("CLASS_OAUTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn keys() -> Encryption {
    // A fixed test key, so separate "instances" share it.
    Encryption::Keys(KeyRing::new(
        EncryptionKey::new("test-1", [7u8; 32]).unwrap(),
    ))
}

async fn pg_store() -> Blocking<PostgresStore> {
    let url = pg_url();
    tokio::task::spawn_blocking(move || PostgresStore::connect(&url, 8, keys()))
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is needed for this test (set CLASS_OAUTH_TEST_POSTGRES_URL): {e}")
        })
        .pipe(Blocking::new)
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

async fn token_server(server: OneTimeTokenServer) -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(server)
        .mount(&mock)
        .await;
    mock
}

fn client(mock: &MockServer) -> ClassClient {
    let env = Environment::Custom(IssuerUrl::new(&mock.uri()).unwrap());
    ClassClient::builder(env, ClientId::new(class_oauth_test::CLIENT_ID))
        .secret(ClientSecret::new(class_oauth_test::CLIENT_SECRET))
        .without_discovery()
        .build()
        .unwrap()
}

fn expired(rt: &str) -> class_oauth_core::TokenSet {
    token_set(
        "at-old",
        rt,
        899,
        SystemTime::now() - Duration::from_secs(2000),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_fifty_tasks_one_refresh() {
    let ots = OneTimeTokenServer::new();
    let mock = token_server(ots.clone()).await;
    let key = TenantKey::new(
        &ClientId::new(class_oauth_test::CLIENT_ID),
        unique("pg-race"),
    );
    let seed = pg_store().await;
    seed.save(&key, &expired(&ots.issue()), None, None)
        .await
        .unwrap();

    let mut managers = Vec::new();
    for _ in 0..3 {
        managers.push(Arc::new(TokenManager::new(client(&mock), pg_store().await)));
    }
    let mut tasks = Vec::new();
    for m in &managers {
        for _ in 0..50 {
            let (m, key) = (m.clone(), key.clone());
            tasks.push(tokio::spawn(async move { m.access_token(&key).await }));
        }
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(
            t.await
                .unwrap()
                .expect("every task gets a token")
                .secret()
                .to_owned(),
        );
    }
    tokens.dedup();
    assert_eq!(
        tokens.len(),
        1,
        "every task gets the same new token: {tokens:?}"
    );
    assert_ne!(tokens[0], "at-old");
    let counts = ots.counts();
    assert_eq!(
        counts.refreshes, 1,
        "exactly one refresh request: {counts:?}"
    );
    assert_eq!(counts.invalid_grants, 0);
    let stored = seed.load(&key).await.unwrap().unwrap();
    assert_eq!(
        stored.tokens.access_token.secret(),
        tokens[0],
        "the new token was persisted"
    );
}

/// 200 tenants at once on a runtime with few blocking threads: the managers' cap on
/// concurrent refreshes keeps lock waiters from starving the lock holders' commits.
#[test]
fn two_hundred_tenants_expiring_together_refresh_once_each() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ots = OneTimeTokenServer::new();
        let mock = token_server(ots.clone()).await;
        let seed = pg_store().await;
        let run = unique("pg-storm");
        let mut keys = Vec::new();
        for i in 0..200 {
            let key = TenantKey::new(
                &ClientId::new(class_oauth_test::CLIENT_ID),
                format!("{run}-{i}"),
            );
            seed.save(&key, &expired(&ots.issue()), None, None)
                .await
                .unwrap();
            keys.push(key);
        }
        let managers: Vec<_> = vec![
            Arc::new(TokenManager::new(client(&mock), pg_store().await)),
            Arc::new(TokenManager::new(client(&mock), pg_store().await)),
            Arc::new(TokenManager::new(client(&mock), pg_store().await)),
        ];
        let mut tasks = Vec::new();
        for key in &keys {
            for caller in 0..8 {
                let (m, key) = (managers[caller % 3].clone(), key.clone());
                tasks.push(tokio::spawn(async move { m.access_token(&key).await }));
            }
        }
        for t in tasks {
            t.await.unwrap().expect("token");
        }
        let counts = ots.counts();
        assert_eq!(counts.refreshes, 200, "{counts:?}");
        assert_eq!(counts.invalid_grants, 0);
    });
    rt.shutdown_timeout(Duration::from_secs(5));
}
