//! The fault matrix: every fault a refresh can meet, for async and blocking callers, over
//! memory, SQLite and PostgreSQL, against the emulator's one-time refresh tokens with
//! reuse detection. After each: the grant still works, or it is marked with the exact
//! reason, and no refresh token was presented twice. Every case runs under a watchdog.

mod common;

use std::time::Duration;

use class_oauth_manager::{GrantStatus, InDoubtRule, ManagerError, Settings, TokenEvent};
use class_oauth_testkit::Fault;
use common::{FACES, Options, Rig, StoreKind, bounded, matrix};

const TOKEN: &str = "/connect/token";
const JWKS: &str = "/.well-known/openid-configuration/jwks";

/// The caller goes away right after the request left (a dropped future, a timeout).
/// The detached refresh still commits; the next caller gets its tokens without a second
/// request. Blocking calls cannot be abandoned; for them, a second caller arriving while
/// the refresh is in flight shares it.
#[test]
fn caller_gone_after_the_send() {
    matrix("caller gone", &FACES, |face, kind| {
        let rig = Rig::new(face, kind, Options::default());
        let first = rig.login(true);
        rig.emulator
            .inject(TOKEN, Fault::Delay(Duration::from_millis(400)), 1);
        match (&rig.manager, face) {
            (common::Manager::Async(m), _) => {
                let gone = rig.rt.block_on(async {
                    tokio::time::timeout(Duration::from_millis(60), m.grant(&rig.key)).await
                });
                assert!(gone.is_err(), "{rig:?}: the caller was meant to give up");
                // The refresh goes on without any caller.
                std::thread::sleep(Duration::from_millis(800));
                let (n, _) = rig.refreshes();
                assert_eq!(n, 1, "{rig:?}");
                assert_eq!(
                    rig.stored().status,
                    GrantStatus::Active,
                    "{rig:?}: committed with nobody waiting"
                );
            }
            (common::Manager::Blocking(m), _) => {
                let (m1, m2, k1, k2) = (m.clone(), m.clone(), rig.key.clone(), rig.key.clone());
                let a = std::thread::spawn(move || m1.grant(&k1));
                std::thread::sleep(Duration::from_millis(60));
                let b = std::thread::spawn(move || m2.grant(&k2));
                let (a, b) = (a.join().unwrap().unwrap(), b.join().unwrap().unwrap());
                assert_eq!(a.tokens.access_token, b.tokens.access_token, "{rig:?}");
            }
        }
        let now = rig.grant().unwrap();
        assert!(now.version > first.version, "{rig:?}");
        assert_ne!(now.tokens.access_token, first.tokens.access_token);
        assert_eq!(rig.refreshes().0, 1, "{rig:?}: one refresh request in all");
        rig.assert_works();
        rig.assert_no_refresh_token_presented_twice();
    });
}

/// The ID token of a refresh response fails validation (its signature is broken). The
/// rotated refresh token is kept, the access token withheld, the grant says why, the
/// caller gets a validation error; the next call refreshes with the kept token.
#[test]
fn invalid_id_token_on_refresh() {
    matrix("invalid ID token", &FACES, |face, kind| {
        let rig = Rig::new(face, kind, Options::default());
        let first = rig.login(true);
        rig.emulator.corrupt_next_id_tokens(1);
        let err = rig.grant().unwrap_err();
        assert!(
            matches!(err, ManagerError::Validation(_)),
            "{rig:?}: {err:?}"
        );
        let stored = rig.stored();
        assert!(
            matches!(&stored.status, GrantStatus::Unverified { reason } if reason.contains("ID token")),
            "{rig:?}: {:?}",
            stored.status
        );
        assert_ne!(
            stored.tokens.refresh_token, first.tokens.refresh_token,
            "{rig:?}: the rotated refresh token was kept"
        );
        assert!(
            rig.events()
                .iter()
                .any(|e| matches!(e, TokenEvent::Withheld { .. }))
        );
        let again = rig.grant().unwrap();
        assert_eq!(again.status, GrantStatus::Active);
        assert_eq!(rig.refreshes().0, 2, "{rig:?}");
        rig.assert_works();
        rig.assert_no_refresh_token_presented_twice();
    });
}

/// Refresh responses without an ID token, twice, after the first ID token expired: the
/// original ID token and claims are kept, nothing is re-validated against the new access
/// token or the clock.
#[test]
fn refreshes_without_id_token_after_it_expired() {
    matrix("no ID token on refresh", &FACES, |face, kind| {
        let rig = Rig::new(
            face,
            kind,
            Options {
                leeway: Some(Duration::ZERO),
                config: |c| {
                    c.id_token_lifetime = 1;
                    c.id_token_on_refresh = false;
                },
                ..Options::default()
            },
        );
        let first = rig.login(true);
        let sub = first.id_claims.as_ref().unwrap().sub.clone();
        std::thread::sleep(Duration::from_millis(2100)); // the ID token's exp has passed
        let one = rig.grant().unwrap();
        let two = rig.force_refresh(one.version).unwrap();
        assert!(
            two.version > one.version && one.version > first.version,
            "{rig:?}"
        );
        assert_eq!(
            two.id_claims.as_ref().unwrap().sub,
            sub,
            "{rig:?}: original claims kept"
        );
        assert_eq!(two.tokens.id_token, first.tokens.id_token, "{rig:?}");
        assert_eq!(rig.refreshes().0, 2);
        rig.assert_works();
        rig.assert_no_refresh_token_presented_twice();
    });
}

/// The refreshed ID token is signed with a key the cache does not have, and the key set
/// cannot be fetched. The rotated refresh token is written before the fetch; the caller
/// gets a validation error; once the key set is back, the next call refreshes with it.
#[test]
fn key_set_unreachable_during_a_refresh() {
    matrix("key set unreachable", &FACES, |face, kind| {
        let rig = Rig::new(
            face,
            kind,
            Options {
                no_key_cooldown: true,
                ..Options::default()
            },
        );
        let first = rig.login(true);
        rig.emulator.rotate_keys();
        rig.emulator.rotate_keys(); // now signing with a key the cached set lacks
        rig.emulator.inject(JWKS, Fault::Status(503), 1);
        let err = rig.grant().unwrap_err();
        assert!(
            matches!(err, ManagerError::Validation(_)),
            "{rig:?}: {err:?}"
        );
        let stored = rig.stored();
        assert!(
            matches!(stored.status, GrantStatus::Unverified { .. }),
            "{rig:?}: {:?}",
            stored.status
        );
        assert_ne!(
            stored.tokens.refresh_token, first.tokens.refresh_token,
            "{rig:?}"
        );
        let again = rig.grant().unwrap();
        assert_eq!(again.status, GrantStatus::Active, "{rig:?}");
        rig.assert_works();
        rig.assert_no_refresh_token_presented_twice();
    });
}

/// The write of the rotated tokens fails once: it is retried, and the grant works.
#[test]
fn a_write_that_fails_once() {
    matrix("write fails once", &FACES, |face, kind| {
        let rig = Rig::new(face, kind, Options::default());
        rig.login(true);
        rig.faults.store(1, std::sync::atomic::Ordering::SeqCst);
        let g = rig.grant().unwrap();
        assert_eq!(g.status, GrantStatus::Active);
        assert_eq!(
            rig.stored().tokens.refresh_token,
            g.tokens.refresh_token,
            "{rig:?}"
        );
        assert!(
            rig.events()
                .iter()
                .any(|e| matches!(e, TokenEvent::PersistRetry { attempt: 1, .. })),
            "{rig:?}: {:?}",
            rig.events()
        );
        rig.assert_works();
        rig.assert_no_refresh_token_presented_twice();
    });
}

/// Writes fail for longer than the retries last: the tokens are held in memory, the
/// caller gets the store error, and the next call writes them before anything else (no
/// second refresh request).
#[test]
fn writes_that_keep_failing_are_held_in_memory() {
    matrix("writes keep failing", &FACES, |face, kind| {
        let mut settings = Settings::default();
        settings.persist_retries = 2;
        settings.persist_backoff = Duration::from_millis(5);
        let rig = Rig::new(
            face,
            kind,
            Options {
                settings,
                ..Options::default()
            },
        );
        let first = rig.login(true);
        rig.faults.store(100, std::sync::atomic::Ordering::SeqCst);
        let err = rig.grant().unwrap_err();
        assert!(matches!(err, ManagerError::Store(_)), "{rig:?}: {err:?}");
        assert!(
            rig.events()
                .iter()
                .any(|e| matches!(e, TokenEvent::PersistFailed { .. }))
        );
        assert_eq!(
            rig.stored().tokens.refresh_token,
            first.tokens.refresh_token,
            "{rig:?}: nothing written yet"
        );
        rig.faults.store(0, std::sync::atomic::Ordering::SeqCst);
        let g = rig.grant().unwrap();
        assert_ne!(
            g.tokens.refresh_token, first.tokens.refresh_token,
            "{rig:?}"
        );
        assert_eq!(rig.stored().tokens.refresh_token, g.tokens.refresh_token);
        assert_eq!(
            rig.refreshes().0,
            1,
            "{rig:?}: the held tokens were written, not refreshed again"
        );
        rig.assert_works();
        rig.assert_no_refresh_token_presented_twice();
    });
}

/// A rig whose client gives up after 300 ms.
fn impatient(face: common::Face, kind: StoreKind) -> Rig {
    Rig::new(
        face,
        kind,
        Options {
            timeout: Duration::from_millis(300),
            ..Options::default()
        },
    )
}

/// The next token request is answered after the client gave up (900 ms); the emulator
/// rotates the refresh token all the same.
fn lose_next_answer(rig: &Rig) {
    rig.emulator
        .inject(TOKEN, Fault::Delay(Duration::from_millis(900)), 1);
}

/// The refresh request leaves and no answer comes (the server did rotate). The grant is
/// marked in doubt; by the default rule ([`InDoubtRule::Retry`]) the next call presents
/// the refresh token once more; the emulator (which did rotate it, and detects reuse)
/// refuses, and the grant needs re-authorization with a reason naming the earlier
/// unknown outcome. The token was presented twice, by the rule and only by it.
#[test]
fn a_transport_failure_after_the_send() {
    matrix("transport failure after send", &FACES, |face, kind| {
        let rig = impatient(face, kind);
        rig.login(true);
        lose_next_answer(&rig);
        let err = rig.grant().unwrap_err();
        assert!(
            matches!(err, ManagerError::Transport(_)),
            "{rig:?}: {err:?}"
        );
        assert!(
            matches!(rig.stored().status, GrantStatus::InDoubt { .. }),
            "{rig:?}"
        );
        // The late answer lands at the emulator before the retry.
        std::thread::sleep(Duration::from_millis(800));
        let err = rig.grant().unwrap_err();
        match &err {
            ManagerError::NeedsReauthorization { reason, .. } => {
                assert!(reason.contains("outcome was unknown"), "{rig:?}: {reason}");
            }
            other => panic!("{rig:?}: {other:?}"),
        }
        assert!(matches!(
            rig.stored().status,
            GrantStatus::NeedsReauthorization { .. }
        ));
        let (n, twice) = rig.refreshes();
        assert_eq!(
            (n, twice.len()),
            (2, 1),
            "{rig:?}: one retry with the same token"
        );
    });
}

/// A blocking manager with `rule` whose grant (access token expired) was just left in
/// doubt: its refresh got no answer, and the emulator did rotate the token.
fn left_in_doubt(rule: InDoubtRule) -> Rig {
    let mut settings = Settings::default();
    settings.in_doubt = rule;
    let rig = Rig::new(
        common::Face::Blocking,
        StoreKind::Memory,
        Options {
            timeout: Duration::from_millis(300),
            settings,
            ..Options::default()
        },
    );
    rig.login(true);
    lose_next_answer(&rig);
    let err = rig.grant().unwrap_err();
    assert!(matches!(err, ManagerError::Transport(_)), "{err:?}");
    rig
}

/// With [`InDoubtRule::GiveUp`], a grant left in doubt whose access token has expired
/// is not refreshed again: it needs re-authorization, and the reason says why; the
/// refresh token was presented once.
#[test]
fn give_up_never_presents_an_in_doubt_token_again() {
    bounded("give up in doubt", Duration::from_secs(60), || {
        let rig = left_in_doubt(InDoubtRule::GiveUp);
        let err = rig.grant().unwrap_err();
        match &err {
            ManagerError::NeedsReauthorization { reason, .. } => {
                assert!(reason.contains("may have been spent"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rig.refreshes().0, 1);
        rig.assert_no_refresh_token_presented_twice();
    });
}

/// The same, while the access token is still valid (a forced refresh): the current token
/// is served (during the backoff, with no new request; [`InDoubtRule::GiveUp`] and
/// [`InDoubtRule::RetryAtExpiry`] serve it until it expires).
#[test]
fn in_doubt_with_a_valid_access_token_serves_it() {
    matrix("in doubt, token valid", &FACES, |face, kind| {
        let rig = impatient(face, kind);
        let first = rig.login(false);
        lose_next_answer(&rig);
        let err = rig.force_refresh(first.version).unwrap_err();
        assert!(
            matches!(err, ManagerError::Transport(_)),
            "{rig:?}: {err:?}"
        );
        let served = rig.grant().unwrap();
        assert_eq!(
            served.tokens.access_token, first.tokens.access_token,
            "{rig:?}"
        );
        assert!(matches!(served.status, GrantStatus::InDoubt { .. }));
        assert_eq!(rig.refreshes().0, 1);
        rig.assert_no_refresh_token_presented_twice();
    });
}

/// A well-formed refusal that does not end the grant (a 503 with an OAuth error body) and
/// an HTML 502 page: the first clears the in-doubt mark (nothing rotated), the second
/// leaves the grant in doubt (a proxy page says nothing about what the server did).
#[test]
fn refusals_and_proxy_pages() {
    for face in FACES {
        bounded("refusals", Duration::from_secs(60), move || {
            let rig = Rig::new(face, StoreKind::Memory, Options::default());
            let first = rig.login(false);
            rig.emulator.inject(TOKEN, Fault::Status(503), 1);
            let err = rig.force_refresh(first.version).unwrap_err();
            assert!(matches!(err, ManagerError::Refused(_)), "{rig:?}: {err:?}");
            assert!(err.is_transient());
            assert_eq!(rig.stored().status, GrantStatus::Active, "{rig:?}");
            // Grant health shows why the last refresh failed, until one succeeds.
            let (error, _) = rig
                .health()
                .last_error
                .expect("the failure is the last error");
            assert!(error.contains("503"), "{rig:?}: {error}");
            let ok = rig.force_refresh(first.version).unwrap();
            assert!(ok.version > first.version);
            // (That returned the row the failure left, newer than `first`; a refresh
            // that succeeds clears the last error.)
            assert!(rig.health().last_error.is_some());
            let ok = rig.force_refresh(ok.version).unwrap();
            assert_eq!(rig.health().last_error, None, "{rig:?}");
            rig.emulator.inject(TOKEN, Fault::Html502, 1);
            let err = rig.force_refresh(ok.version).unwrap_err();
            assert!(
                matches!(err, ManagerError::Malformed(_)),
                "{rig:?}: {err:?}"
            );
            assert!(
                matches!(rig.stored().status, GrantStatus::InDoubt { .. }),
                "{rig:?}"
            );
            // The 503 was refused before any rotation, so presenting that refresh token
            // again was right; the emulator saw no reuse and the grant works.
            rig.assert_works();
        });
    }
}

/// With `InDoubtRule::RetryAtExpiry`, a grant left in doubt gets one more refresh once its
/// access token has expired. Against the emulator (which did rotate the token and
/// detects reuse) that retry is refused, and the grant ends with a reason naming the
/// earlier unknown outcome; the refresh token was presented twice, by choice.
#[test]
fn retry_in_doubt_tries_once_more_and_says_why_it_failed() {
    bounded("retry in doubt", Duration::from_secs(60), || {
        let rig = left_in_doubt(InDoubtRule::RetryAtExpiry);
        // Wait for the late answer to land at the emulator before retrying.
        std::thread::sleep(Duration::from_millis(800));
        let err = rig.grant().unwrap_err();
        match &err {
            ManagerError::NeedsReauthorization { reason, .. } => {
                assert!(reason.contains("outcome was unknown"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let (n, twice) = rig.refreshes();
        assert_eq!((n, twice.len()), (2, 1), "one retry with the same token");
    });
}
