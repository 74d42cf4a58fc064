//! Section 2, cached reads through the manager (10,000 tenants), one thread and two;
//! section 3, the refresh storm: 10,000 tenants expiring at once, 8 callers each, in
//! memory with one manager, then PostgreSQL with three manager instances.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use class_oauth_core::flow::ValidatedTokens;
use class_oauth_core::{ClientId, ClientSecret, Environment, IssuerUrl};
use class_oauth_fixtures::seed::{self, ClassEmulator, token_set};
use class_oauth_store::{
    Encryption, EncryptionKey, KeyRing, MemoryStore, PostgresStore, TenantKey, TokenStore,
};

pub(crate) struct CachedResults {
    pub(crate) single_ns: f64,
    pub(crate) single_grant_ns: f64,
    pub(crate) single_strided_ns: f64,
    /// Two threads, each on its own random sequence of tenants.
    pub(crate) two_threads_ns: f64,
    pub(crate) scaling: f64,
    /// Two threads walking the same sequence 13 tenants apart (each grant's reference
    /// count bounces between the cores: the worst case for a shared handle).
    pub(crate) two_threads_same_ns: f64,
    pub(crate) scaling_same: f64,
}

pub(crate) fn cached(tenants: usize) -> CachedResults {
    let env = Environment::Custom(IssuerUrl::new("http://127.0.0.1:9").expect("issuer"));
    let client = class_oauth_ureq::ClassClient::builder(env, ClientId::new("bench"))
        .without_discovery()
        .build()
        .expect("client");
    let manager = Arc::new(class_oauth_manager::blocking::TokenManager::new(
        client,
        MemoryStore::new(),
    ));
    let keys: Vec<TenantKey> = (0..tenants)
        .map(|i| TenantKey::new(&ClientId::new("bench"), format!("tenant-{i}")))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        let t = token_set(
            &format!("at-{i}"),
            &format!("rt-{i}"),
            899,
            SystemTime::now(),
        );
        manager
            .store_tokens(k, &ValidatedTokens::new(t, None))
            .expect("store");
    }
    let n = 2_000_000;
    calls(&manager, &keys, n / 10, 1, Pattern::Random, false); // warm
    let (mut singles, mut grants, mut doubles, mut strided, mut sames) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        singles.push(calls(&manager, &keys, n, 1, Pattern::Random, false));
        grants.push(calls(&manager, &keys, n, 1, Pattern::Random, true));
        doubles.push(calls(&manager, &keys, n, 2, Pattern::Random, false));
        strided.push(calls(&manager, &keys, n, 1, Pattern::Together, false));
        sames.push(calls(&manager, &keys, n, 2, Pattern::Together, false));
    }
    let median = crate::harness::median;
    let (single, double) = (median(&singles), median(&doubles));
    let (strided, same) = (median(&strided), median(&sames));
    // Two threads each doing n calls in `double` ns per call-slot: throughput ratio.
    CachedResults {
        single_ns: single,
        single_grant_ns: median(&grants),
        single_strided_ns: strided,
        two_threads_ns: double,
        scaling: 2.0 * single / double,
        two_threads_same_ns: same,
        scaling_same: 2.0 * strided / same,
    }
}

type BlockingManager =
    class_oauth_manager::blocking::TokenManager<class_oauth_ureq::UreqTransport, MemoryStore>;

#[derive(Clone, Copy)]
enum Pattern {
    /// Each thread its own pseudo-random sequence of tenants (xorshift).
    Random,
    /// One stride through the tenants, the threads 13 calls apart.
    Together,
}

/// ns per call per thread: `threads` threads making `n` cached reads each.
fn calls(
    manager: &Arc<BlockingManager>,
    keys: &[TenantKey],
    n: usize,
    threads: usize,
    pattern: Pattern,
    grant: bool,
) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let m = manager.clone();
            s.spawn(move || {
                let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1);
                for i in 0..n {
                    let k = match pattern {
                        Pattern::Random => {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            &keys[(x % keys.len() as u64) as usize]
                        }
                        Pattern::Together => &keys[(i * 7919 + t * 13) % keys.len()],
                    };
                    if grant {
                        std::hint::black_box(m.grant(k).expect("cached"));
                    } else {
                        std::hint::black_box(m.access_token(k).expect("cached"));
                    }
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / n as f64
}

pub(crate) struct StormResult {
    pub(crate) label: String,
    pub(crate) tenants: usize,
    pub(crate) refreshes: usize,
    pub(crate) invalid_grants: usize,
    pub(crate) seconds: f64,
}

async fn storm_with<S: TokenStore + Clone>(
    label: &str,
    stores: Vec<S>,
    tenants: usize,
    callers: usize,
) -> StormResult {
    let client_id = ClientId::new(format!(
        "storm-{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let emulator = ClassEmulator::start(seed::emulator_config(
        Duration::ZERO,
        &[(client_id.as_str(), "s")],
    ))
    .await;
    let env = Environment::Custom(IssuerUrl::new(&emulator.issuer()).expect("issuer"));
    let keys: Vec<TenantKey> = (0..tenants)
        .map(|i| TenantKey::new(&client_id, format!("t{i}")))
        .collect();
    let expired = SystemTime::now() - Duration::from_secs(3600);
    for k in &keys {
        stores[0]
            .save(
                k,
                &token_set(
                    "at-old",
                    &seed::grant(&emulator, client_id.as_str()),
                    899,
                    expired,
                ),
                None,
                None,
            )
            .await
            .expect("seed");
    }
    let managers: Vec<_> = stores
        .into_iter()
        .map(|s| {
            let c = class_oauth_reqwest::ClassClient::builder(env.clone(), client_id.clone())
                .secret(ClientSecret::new("s"))
                .without_discovery()
                .build()
                .expect("client");
            Arc::new(class_oauth_manager::TokenManager::new(c, s))
        })
        .collect();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tenants * callers);
    for (i, k) in keys.iter().enumerate() {
        for c in 0..callers {
            let (m, k) = (managers[(i + c) % managers.len()].clone(), k.clone());
            handles.push(tokio::spawn(
                async move { m.access_token(&k).await.is_ok() },
            ));
        }
    }
    let mut ok = 0;
    for h in handles {
        ok += usize::from(h.await.unwrap_or(false));
    }
    let seconds = start.elapsed().as_secs_f64();
    let counts = emulator.refresh_counts();
    if ok != tenants * callers {
        eprintln!(
            "storm {label}: {} of {} callers failed",
            tenants * callers - ok,
            tenants * callers
        );
    }
    for k in &keys {
        let _ = managers[0].forget(k).await;
    }
    StormResult {
        label: label.into(),
        tenants,
        refreshes: counts.refreshes,
        invalid_grants: counts.invalid_grants,
        seconds,
    }
}

pub(crate) fn storms(tenants: usize, pg_url: Option<&str>) -> Vec<StormResult> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .expect("runtime");
    let mut out = Vec::new();
    let memory = MemoryStore::new();
    out.push(rt.block_on(storm_with(
        "memory store, 1 manager",
        vec![memory],
        tenants,
        8,
    )));
    if let Some(url) = pg_url {
        let keys = || {
            Encryption::Keys(KeyRing::new(
                EncryptionKey::new("bench", [9u8; 32]).expect("key"),
            ))
        };
        let stores: Result<Vec<_>, _> = (0..3)
            .map(|_| rt.block_on(PostgresStore::connect(url, 8, keys())))
            .collect();
        match stores {
            Ok(stores) => out.push(rt.block_on(storm_with(
                "PostgreSQL, 3 manager instances",
                stores,
                tenants,
                8,
            ))),
            Err(e) => eprintln!("PostgreSQL storm skipped: {e}"),
        }
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    out
}
