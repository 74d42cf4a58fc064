//! `cargo xtask bench`: one table, all figures from one run.
//!
//! Each case is timed in batches sized to about 5 ms; the rounds of all cases are
//! interleaved (case A, case B, ..., then again) so that drift on a shared machine hits
//! every case alike, and the table reports the median per-iteration time over the
//! rounds together with the spread (min..max of the round medians).

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use class_oauth_core::id_token::{Expectations, IdTokenValidator};
use class_oauth_core::jose::Jws;
use class_oauth_core::jwks::JwkSet;
use class_oauth_core::scope::Scopes;
use class_oauth_core::token::TokenRequest;
use class_oauth_core::{
    Client, ClientId, ClientSecret, Environment, IdToken, IssuerUrl, Nonce, RefreshToken,
};
use class_oauth_test::jwt::{TestKey, jwks};
use serde_json::json;

struct Case {
    name: &'static str,
    run: Box<dyn FnMut()>,
    iters: u64,
    samples: Vec<f64>,
}

fn calibrate(run: &mut dyn FnMut()) -> u64 {
    let mut iters = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            run();
        }
        if t.elapsed() >= Duration::from_millis(5) || iters >= 1 << 24 {
            return iters;
        }
        iters *= 2;
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(31);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);

    // ID token, RS256, warm key cache.
    let issuer = "https://app.class.com.au";
    let client_id = "1eaa3979-9caf-4c6b-bab8-2cbcd549d410";
    let key = TestKey::rsa_a();
    let keys = JwkSet::parse(jwks(&[&key]).to_string().as_bytes()).expect("jwks");
    let token = IdToken::new(key.sign(
        "RS256",
        &json!({"iss": issuer, "sub": "user-123", "aud": client_id, "exp": 1_700_000_300u64, "iat": 1_699_999_990u64, "nonce": "n-1", "email": "sam@example.com"}),
        &json!({}),
    ));
    let validator = IdTokenValidator::new(
        IssuerUrl::new(issuer).expect("issuer"),
        ClientId::new(client_id),
    );
    let nonce = Nonce::new("n-1");
    validator
        .validate(
            &token,
            Some(&keys),
            now,
            &Expectations::default().with_nonce(&nonce),
        )
        .expect("the benchmark token validates");

    // Token response parse (Class-shaped refresh response).
    let client = Client::new(ClientId::new(client_id), Environment::Production.preset())
        .with_secret(ClientSecret::new("s"));
    let refresh = TokenRequest::refresh_token(
        RefreshToken::new("rt"),
        Scopes::parse("target:b/OAUTH_TEST offline_access fund.read").expect("scopes"),
    );
    let body = br#"{"access_token":"CBfgN5Z5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","token_type":"bearer","expires_in":899,"refresh_token":"9e0fccdb-ec4f-4e6a-ae60-83ad66be9547","scope":"target:b/OAUTH_TEST offline_access fund.read","BusinessName":"OAuth Test Business","BusinessCode":"OAUTH_TEST"}"#;
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .expect("response");

    let mut cases = vec![
        Case {
            name: "id_token: validate RS256, warm key set (µs/token)",
            run: Box::new(move || {
                black_box(
                    validator
                        .validate(
                            &token,
                            Some(&keys),
                            now,
                            &Expectations::default().with_nonce(&nonce),
                        )
                        .is_ok(),
                );
            }),
            iters: 0,
            samples: Vec::new(),
        },
        Case {
            name: "jws: parse compact RS256 (no verify)",
            run: {
                let t = key.sign("RS256", &json!({"iss": issuer, "sub": "u"}), &json!({}));
                Box::new(move || {
                    black_box(Jws::parse(black_box(&t)).is_ok());
                })
            },
            iters: 0,
            samples: Vec::new(),
        },
        Case {
            name: "token: build refresh request + parse Class response",
            run: Box::new(move || {
                black_box(refresh.to_http(&client).is_ok());
                black_box(refresh.parse_response(&client, &response, now).is_ok());
            }),
            iters: 0,
            samples: Vec::new(),
        },
    ];

    for c in &mut cases {
        c.iters = calibrate(&mut *c.run);
    }
    for _ in 0..rounds {
        for c in &mut cases {
            let t = Instant::now();
            for _ in 0..c.iters {
                (c.run)();
            }
            c.samples
                .push(t.elapsed().as_nanos() as f64 / c.iters as f64);
        }
    }
    println!("class-oauth benchmarks ({rounds} interleaved rounds, median per iteration)");
    println!("{:<58} {:>12} {:>24}", "case", "median", "round spread");
    for c in &mut cases {
        let mut s = c.samples.clone();
        let m = median(&mut s);
        let (lo, hi) = (s[0], s[s.len() - 1]);
        println!(
            "{:<58} {:>12} {:>24}",
            c.name,
            fmt_ns(m),
            format!("{}..{}", fmt_ns(lo), fmt_ns(hi))
        );
    }
}
