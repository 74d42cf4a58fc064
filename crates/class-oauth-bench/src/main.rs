//! `cargo xtask bench`: one table, every figure from one run on this machine.
//!
//! `--split` pins the token server to CPU 1 instead of the client's CPU 0 (section 1).
//! Knobs (environment): `BENCH_ROUNDS` (interleaved rounds, default 9),
//! `BENCH_TENANTS` (default 10000), `CLASS_OAUTH_TEST_POSTGRES_URL` (the PostgreSQL storm;
//! skipped when unreachable), `BENCH_SKIP_BUILD=1` (skip the clean core build),
//! `BENCH_ONLY=exchange,cached,storm,idtoken,weight` (a subset).

mod harness;
mod manager;
mod pinned;
mod weight;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use class_oauth_core::id_token::{Expectations, IdTokenValidator};
use class_oauth_core::jose::Jws;
use class_oauth_core::jwks::JwkSet;
use class_oauth_core::{ClientId, IdToken, IssuerUrl, Nonce};
use class_oauth_fixtures::jwt::{TestKey, jwks};
use harness::{Case, fmt_ns, run_interleaved};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn wanted(section: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |v| v.split(',').any(|s| s.trim() == section))
}

fn main() {
    // reqwest 0.13 is built here without a default crypto provider (the transports bring
    // their own); the raw reqwest clients of the floor rows need one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rounds = env_usize("BENCH_ROUNDS", 9);
    let tenants = env_usize("BENCH_TENANTS", 10_000);
    println!(
        "class-oauth benchmarks: medians of {rounds} interleaved rounds unless noted; one run, one machine ({} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    if wanted("exchange") {
        let split = std::env::args().any(|a| a == "--split");
        pinned::print(&pinned::run(rounds, split));
    }

    if wanted("cached") {
        let c = manager::cached(tenants);
        println!("2. Cached access-token read through the manager ({tenants} tenants loaded)");
        println!(
            "   access_token() one thread, random tenants: {} per call; grant() (Arc, no copy): {} per call; one stride through the tenants: {} per call",
            fmt_ns(c.single_ns),
            fmt_ns(c.single_grant_ns),
            fmt_ns(c.single_strided_ns)
        );
        println!(
            "   access_token() on 2 threads, independent random tenants: {} per call per thread; throughput {:.2}x of one thread",
            fmt_ns(c.two_threads_ns),
            c.scaling
        );
        println!(
            "   access_token() on 2 threads, the same tenants 13 calls apart (shared reference counts): {} per call per thread; {:.2}x\n",
            fmt_ns(c.two_threads_same_ns),
            c.scaling_same
        );
    }

    if wanted("storm") {
        let pg = std::env::var("CLASS_OAUTH_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        println!(
            "3. Refresh storm: {tenants} tenants expiring at once, 8 callers each (one-time refresh tokens with reuse detection)"
        );
        for s in manager::storms(tenants, Some(&pg)) {
            println!(
                "   {:<34} refreshes sent {:>6} (tenants {}), invalid_grant {}, total {:.2} s ({:.0} refreshes/s)",
                s.label,
                s.refreshes,
                s.tenants,
                s.invalid_grants,
                s.seconds,
                s.refreshes as f64 / s.seconds
            );
        }
        println!();
    }

    if wanted("idtoken") {
        let issuer = "https://app.class.com.au";
        let client_id = "1eaa3979-9caf-4c6b-bab8-2cbcd549d410";
        let key = TestKey::rsa_a();
        let keys = JwkSet::parse(jwks(&[&key]).to_string().as_bytes()).expect("jwks");
        let token = IdToken::new(key.sign(
            "RS256",
            &json!({"iss": issuer, "sub": "user-123", "aud": client_id, "exp": 1_700_000_300u64, "iat": 1_699_999_990u64, "nonce": "n-1"}),
            &json!({}),
        ));
        let validator = IdTokenValidator::new(
            IssuerUrl::new(issuer).expect("issuer"),
            ClientId::new(client_id),
        );
        let nonce = Nonce::new("n-1");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let compact = token.secret().to_owned();
        // The same verification by ring alone: what the validation cannot go below.
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.as_str().expect("base64url member"))
                .expect("base64url")
        };
        let jwk = jwks(&[&key]);
        let (rsa_n, rsa_e) = (b64(&jwk["keys"][0]["n"]), b64(&jwk["keys"][0]["e"]));
        let (signing_input, signature) = compact.rsplit_once('.').expect("compact JWS");
        let signature = b64(&serde_json::Value::from(signature));
        // Cache hits on the paths every call takes.
        let mut key_cache = class_oauth_core::jwks::KeySetCache::new(
            "https://app.class.com.au/.well-known/openid-configuration/jwks"
                .parse()
                .expect("url"),
        );
        let jwks_response = http::Response::builder()
            .header("content-type", "application/json")
            .header("cache-control", "max-age=3600")
            .body(jwks(&[&key]).to_string().into_bytes())
            .expect("response");
        key_cache
            .handle_response(now, &jwks_response)
            .expect("key set");
        let classic = class_oauth_ureq::ClassClient::builder(
            class_oauth_core::Environment::Production,
            ClientId::new(client_id),
        )
        .endpoints(class_oauth_core::Environment::Production.preset())
        .build()
        .expect("client");
        let mut cases = vec![
            Case::new("validate RS256 ID token, warm key set", || {
                assert!(
                    validator
                        .validate(
                            &token,
                            Some(&keys),
                            now,
                            &Expectations::without_nonce().with_nonce(&nonce)
                        )
                        .is_ok()
                );
            }),
            Case::new("parse compact JWS only", || {
                std::hint::black_box(Jws::parse(std::hint::black_box(&compact)).is_ok());
            }),
            Case::new("ring RSA verify alone (the floor)", || {
                assert!(
                    ring::signature::RsaPublicKeyComponents {
                        n: rsa_n.as_slice(),
                        e: rsa_e.as_slice()
                    }
                    .verify(
                        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                        std::hint::black_box(signing_input.as_bytes()),
                        &signature,
                    )
                    .is_ok()
                );
            }),
        ];
        cases.push(Case::new("KeySetCache::usable_keys, warm", || {
            assert!(std::hint::black_box(&key_cache).usable_keys(now).is_some());
        }));
        cases.push(Case::new("ClassClient::endpoints(), cached", || {
            assert!(classic.endpoints().is_ok());
        }));
        let m = run_interleaved(&mut cases, rounds, Duration::from_millis(5));
        println!("4. ID-token validation, and the cache hits every call takes");
        for x in m {
            println!(
                "   {:<40} {:>10} (spread {}..{})",
                x.name,
                fmt_ns(x.wall_ns),
                fmt_ns(x.spread.0),
                fmt_ns(x.spread.1)
            );
        }
        println!();
    }

    if wanted("weight") {
        let w = weight::measure(std::env::var("BENCH_SKIP_BUILD").is_err());
        println!("5. Weight: crates in the normal dependency tree (root included)");
        for (name, n) in &w.rows {
            println!(
                "   {:<34} {}",
                name,
                n.map_or("n/a".into(), |n| n.to_string())
            );
        }
        if let Some(s) = w.core_build_secs {
            println!("   clean release build of class-oauth-core: {s:.1} s");
        }
    }
}
