//! Replays every conformance fixture under `fixtures/` through the core in memory:
//! the request the core builds must match the fixture, and the canned response must
//! produce the expected outcome. Transport-only cases (timeouts, resets) are skipped
//! here and run by the transports.

use class_oauth_fixtures::{load_all, replay_core};

#[test]
fn every_fixture_replays_through_the_core() {
    let fixtures = load_all();
    assert!(
        fixtures.len() >= 60,
        "expected the full corpus, found {}",
        fixtures.len()
    );
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (name, fixture) in &fixtures {
        match replay_core(fixture) {
            Ok(Some(_)) => replayed += 1,
            Ok(None) => {}
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
    assert!(
        replayed >= 55,
        "only {replayed} fixtures replayed in memory"
    );
}

#[test]
fn error_outcomes_never_contain_secrets() {
    for (name, fixture) in load_all() {
        let Ok(Some(outcome)) = replay_core(&fixture) else {
            continue;
        };
        if outcome.get("error").is_some() {
            let display = outcome["display"].as_str().unwrap_or_default();
            for secret in [
                "SECRET-PARTIAL-TOKEN",
                class_oauth_fixtures::CLIENT_SECRET,
                "Samplepwd",
                "rt-spent",
            ] {
                assert!(
                    !display.contains(secret),
                    "{name}: error text leaks {secret}: {display}"
                );
            }
        }
    }
}

/// A fixture whose expectation is wrong must fail: the harness can fail.
#[test]
fn harness_detects_a_wrong_expectation() {
    let (_, mut fixture) = load_all()
        .into_iter()
        .find(|(n, _)| n == "token/rfc6749-6-refresh-rotates")
        .expect("fixture exists");
    fixture.expect = serde_json::json!({"ok": {"refresh_token": "something-else"}});
    assert!(replay_core(&fixture).is_err());
    let (_, mut fixture) = load_all()
        .into_iter()
        .find(|(n, _)| n == "token/rfc6749-4.3-password-success")
        .expect("fixture exists");
    fixture
        .expect_request
        .as_mut()
        .unwrap()
        .form
        .insert("username".into(), "other".into());
    assert!(replay_core(&fixture).unwrap_err().starts_with("request:"));
}

/// Every negative case names its specific reason (the error variant) wherever the error
/// kind has one, so that a case cannot pass for the wrong reason: a mis-wired key set
/// would turn every ID-token case into `NoKeySet`.
#[test]
fn every_negative_fixture_names_its_reason() {
    let with_reasons = [
        "id_token_rejected",
        "policy_violation",
        "malformed_response",
        "invalid_input",
    ];
    let mut missing = Vec::new();
    for (name, fixture) in load_all() {
        let Some(error) = fixture.expect.get("error") else {
            continue;
        };
        let kind = error["kind"].as_str().unwrap_or_default();
        if with_reasons.contains(&kind) && error.get("reason").is_none() {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "negative fixtures without a `reason`:\n{}",
        missing.join("\n")
    );
}

#[test]
#[ignore = "prints every fixture's outcome (a tool for writing fixtures)"]
fn print_outcomes() {
    for (name, fixture) in load_all() {
        if let Ok(Some(outcome)) = replay_core(&fixture) {
            println!(
                "{name}\t{}",
                outcome
                    .get("error")
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            );
        }
    }
}
