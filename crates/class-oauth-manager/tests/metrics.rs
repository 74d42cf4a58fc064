//! The metrics (feature `metrics`), read back through the facade's debugging recorder: a
//! refresh counted by outcome with its durations and the caller's wait, and a keeper's
//! sweep with the grants by status.

mod common;

use std::time::{Duration, Instant};

use common::{Face, Options, Rig, StoreKind, bounded};
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// One snapshot (the debugging recorder drains histograms as it takes one).
fn snapshot(s: &Snapshotter) -> Snapshot {
    s.snapshot().into_vec()
}

fn value<'a>(s: &'a Snapshot, name: &str, label: Option<(&str, &str)>) -> Option<&'a DebugValue> {
    s.iter()
        .find(|(k, _, _, _)| {
            let key = k.key();
            key.name() == name
                && label
                    .is_none_or(|(lk, lv)| key.labels().any(|l| l.key() == lk && l.value() == lv))
        })
        .map(|(_, _, _, v)| v)
}

#[test]
fn a_refresh_and_a_sweep_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");
    bounded("metrics", Duration::from_secs(60), move || {
        let rig = Rig::new(Face::Blocking, StoreKind::Memory, Options::default());
        rig.login(true);
        rig.grant().expect("refreshed");
        let snap = snapshot(&snapshotter);
        assert!(matches!(
            value(
                &snap,
                "class_oauth_refreshes_total",
                Some(("outcome", "refreshed"))
            ),
            Some(DebugValue::Counter(1))
        ));
        for h in [
            "class_oauth_refresh_duration_seconds",
            "class_oauth_durable_after_seconds",
            "class_oauth_caller_wait_seconds",
        ] {
            assert!(
                matches!(value(&snap, h, None), Some(DebugValue::Histogram(v)) if !v.is_empty()),
                "{h}"
            );
        }
        let common::Manager::Blocking(m) = &rig.manager else {
            unreachable!("built blocking")
        };
        let _keeper = m
            .start_keeper(class_oauth_manager::KeeperSettings::default())
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        let snap = loop {
            let snap = snapshot(&snapshotter);
            let swept = value(&snap, "class_oauth_keeper_sweeps_total", None);
            if matches!(swept, Some(DebugValue::Counter(n)) if *n >= 1) {
                break snap;
            }
            assert!(Instant::now() < until, "the keeper swept");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(matches!(
            value(&snap, "class_oauth_grants", Some(("status", "active"))),
            Some(DebugValue::Gauge(g)) if g.into_inner() >= 1.0
        ));
    });
}
