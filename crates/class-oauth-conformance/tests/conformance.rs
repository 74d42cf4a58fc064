//! The conformance matrix as a test: every fixture passes in all three columns and the
//! async and blocking transports agree.

#[test]
fn every_fixture_passes_through_core_async_and_blocking() {
    let rows = class_oauth_conformance::run_all();
    let text = class_oauth_conformance::render(&rows);
    assert!(
        rows.len() >= 60,
        "at least 60 fixtures, found {}",
        rows.len()
    );
    assert!(
        rows.iter().all(class_oauth_conformance::Row::passed),
        "{text}"
    );
}
