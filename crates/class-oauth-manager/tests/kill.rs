//! A process killed with SIGKILL at random points of its refreshes, 100 times: a child
//! refreshes one grant in a loop (blocking manager, SQLite file, a token server with
//! one-time refresh tokens in this process); the parent kills it after a random delay,
//! then inspects the grant. Every outcome must be detected: the stored refresh token is
//! the server's current one, or the grant is marked in doubt. A rotated refresh token
//! lost without a trace (stored, active, and already spent) fails the test.
//!
//! After each kill the next process (a new manager over the same file, the default
//! in-doubt rule) asks for a token: it must not wait for the dead child's lease (taken
//! over at once: its holder is gone), a grant in doubt whose token never reached the
//! server is kept by the in-doubt retry, and one that was rotated ends with its reason.
//!
//! Reported (stderr): how many kills left the grant in doubt, how many of those had
//! really been rotated by the server (a lost grant) and how many had not (the request
//! never arrived, kept by the retry), and the window between a token response and its
//! durable commit.

#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use class_oauth_client::blocking::block_on;
use class_oauth_core::{ClientId, ClientSecret, Environment, IssuerUrl};
use class_oauth_fixtures::seed::{self, token_set};
use class_oauth_manager::blocking::TokenManager;
use class_oauth_manager::{GrantStatus, ManagerError, TenantKey, TokenEvent};
use class_oauth_store::{SqliteStore, TokenStore};
use class_oauth_testkit::ClassEmulator;
use common::{bounded, keys};

const KILLS: usize = 100;

fn tenant() -> TenantKey {
    TenantKey::new(&ClientId::new(class_oauth_fixtures::CLIENT_ID), "kill-test")
}

fn client(issuer: &str) -> class_oauth_ureq::ClassClient {
    class_oauth_ureq::ClassClient::builder(
        Environment::Custom(IssuerUrl::new(issuer).unwrap()),
        ClientId::new(class_oauth_fixtures::CLIENT_ID),
    )
    .secret(ClientSecret::new(class_oauth_fixtures::CLIENT_SECRET))
    .without_discovery()
    .build()
    .unwrap()
}

/// The child: refresh for ever, printing the persist window of each refresh.
#[test]
#[ignore = "run by kill_the_refreshing_process_100_times as its child"]
fn kill_child() {
    let (Ok(file), Ok(issuer)) = (
        std::env::var("KILL_CHILD_STORE"),
        std::env::var("KILL_CHILD_ISSUER"),
    ) else {
        return;
    };
    let m = TokenManager::builder(client(&issuer), SqliteStore::open(&file, keys()).unwrap())
        .on_event(|e| {
            if let TokenEvent::Refreshed { durable_after, .. } = e {
                println!("durable_us={}", durable_after.as_micros());
            }
        })
        .build();
    let k = tenant();
    let mut version = block_on(m.store().load(&k)).unwrap().unwrap().version;
    println!("ready");
    loop {
        match m.force_refresh(&k, version) {
            Ok(g) => version = g.version,
            Err(e) => {
                println!("error={e}");
                return;
            }
        }
    }
}

#[test]
fn kill_the_refreshing_process_100_times() {
    bounded("SIGKILL test", Duration::from_secs(240), run);
}

/// Waits (at most 5 s) until the token server's refresh count stays the same for 200 ms.
fn settle(emulator: &ClassEmulator) {
    let started = std::time::Instant::now();
    let (mut last, mut quiet) = (emulator.refresh_counts().refreshes, 0);
    while quiet < 4 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        let now = emulator.refresh_counts().refreshes;
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
}

fn run() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emulator = rt.block_on(ClassEmulator::start(seed::emulator_config(
        Duration::from_millis(2),
        &[],
    )));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grants.sqlite3");
    let store = SqliteStore::open(&file, keys()).unwrap();
    let k = tenant();
    let seed = |store: &SqliteStore| {
        block_on(store.save(
            &k,
            &token_set(
                "at",
                &seed::grant(&emulator, class_oauth_fixtures::CLIENT_ID),
                899,
                SystemTime::now(),
            ),
            None,
            None,
        ))
        .unwrap();
    };
    seed(&store);
    let exe = std::env::current_exe().unwrap();
    let mut seed_rand = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut random_ms = move |max: u64| {
        // xorshift: a random point in time, not a security value
        seed_rand ^= seed_rand << 13;
        seed_rand ^= seed_rand >> 7;
        seed_rand ^= seed_rand << 17;
        seed_rand % max
    };
    let (mut in_doubt_rotated, mut in_doubt_unsent, mut consistent, mut windows) =
        (0usize, 0usize, 0usize, Vec::new());
    let (mut kept_by_retry, mut max_wait) = (0usize, Duration::ZERO);
    for _ in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KILL_CHILD_STORE", &file)
            .env("KILL_CHILD_ISSUER", emulator.issuer())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child refreshes, then kill it at a random point.
        // (The test harness prints a few lines of its own first.)
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.ends_with("ready") => break,
                Ok(_) => {}
                Err(e) => panic!("the child did not start: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(5 + random_ms(40)));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let _ = reader.join();
        for line in rx.try_iter() {
            if let Some(us) = line.strip_prefix("durable_us=") {
                windows.push(us.parse::<u64>().unwrap());
            }
            assert!(
                !line.starts_with("error="),
                "the child's refresh failed: {line}"
            );
        }
        // A request the child sent just before it died may still be on its way through
        // the server: wait until the server has seen no new refresh for 200 ms, or the
        // check below would call a token "never spent" that the server spends a moment
        // later (seen once under load: "refresh token reuse detected" for a grant the
        // test had classed as unsent).
        settle(&emulator);
        let row = block_on(store.load(&k)).unwrap().unwrap();
        let rt_now = row
            .tokens
            .refresh_token
            .as_ref()
            .unwrap()
            .secret()
            .to_owned();
        let current = emulator.is_current_refresh_token(&rt_now);
        // The next process: the default rule, over the same file. The dead child's lease
        // is taken over at once (its holder is gone), never waited out.
        let next = TokenManager::builder(
            client(&emulator.issuer()),
            SqliteStore::open(&file, keys()).unwrap(),
        )
        .lease(Duration::from_secs(120), Duration::from_secs(30))
        .build();
        let asked = std::time::Instant::now();
        let outcome = next.grant(&k);
        let waited = asked.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "the next process waited {waited:?} for a dead holder's lease ({outcome:?})"
        );
        max_wait = max_wait.max(waited);
        match row.status {
            GrantStatus::Active | GrantStatus::Unverified { .. } => {
                assert!(
                    current,
                    "a rotated refresh token was lost without a trace: the stored one is spent and the grant says active"
                );
                assert!(outcome.is_ok(), "a consistent grant works: {outcome:?}");
                consistent += 1;
            }
            GrantStatus::InDoubt { .. } => {
                if current {
                    // The request never arrived: the retry of the in-doubt rule keeps it.
                    in_doubt_unsent += 1;
                    let g = outcome.expect("an in-doubt grant whose token was never spent is kept");
                    assert_eq!(g.status, GrantStatus::Active);
                    kept_by_retry += 1;
                } else {
                    // Rotated at the server and the answer died with the child: lost, and
                    // the reason says why.
                    in_doubt_rotated += 1;
                    match outcome {
                        Err(ManagerError::NeedsReauthorization { reason, .. }) => {
                            assert!(reason.contains("outcome was unknown"), "{reason}");
                        }
                        other => {
                            panic!("a rotated, lost grant must end with its reason: {other:?}")
                        }
                    }
                    // Start again from a fresh login.
                    block_on(store.delete(&k)).unwrap();
                    seed(&store);
                }
            }
            other => panic!("unexpected status after a kill: {other:?}"),
        }
    }
    windows.sort_unstable();
    let pct = |p: usize| windows.get(windows.len() * p / 100).copied().unwrap_or(0);
    eprintln!(
        "SIGKILL x{KILLS}: {consistent} left the grant consistent and usable; {} left it in doubt ({in_doubt_rotated} rotated at the server: lost; {in_doubt_unsent} not rotated: the request never arrived, {kept_by_retry} kept by the in-doubt retry (InDoubtRule::GiveUp would have lost all {})); 0 lost without a trace; the next process waited at most {max_wait:?} (the dead child's lease taken over at once). Response-to-durable-commit window over {} refreshes: median {} us, p90 {} us, max {} us",
        in_doubt_rotated + in_doubt_unsent,
        in_doubt_rotated + in_doubt_unsent,
        windows.len(),
        pct(50),
        pct(90),
        windows.last().copied().unwrap_or(0)
    );
    assert!(!windows.is_empty(), "the children refreshed");
    assert_eq!(consistent + in_doubt_rotated + in_doubt_unsent, KILLS);
}
