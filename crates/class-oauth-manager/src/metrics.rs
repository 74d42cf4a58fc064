//! Metrics through the `metrics` facade (feature `metrics`): what the manager and the
//! keeper do, recorded into whatever recorder the application installed (Prometheus,
//! OpenTelemetry, StatsD exporters all plug in there); without one, or without the
//! feature, nothing is recorded and nothing is paid.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `class_oauth_refreshes_total` | counter | `outcome` | refresh procedures by outcome: `refreshed`, `elsewhere` (another instance had), `failed`, `in_doubt`, `withheld`, `reauthorization_required`, `revoked` (by the customer, most likely), `superseded` |
//! | `class_oauth_refresh_duration_seconds` | histogram | | one refresh procedure, start to end |
//! | `class_oauth_durable_after_seconds` | histogram | | from the token response to the store's confirmation of its refresh token (the crash window) |
//! | `class_oauth_caller_wait_seconds` | histogram | | a caller's wait for a refresh (cache misses only) |
//! | `class_oauth_lease_contended_total` | counter | | callers that gave up waiting for another instance's refresh |
//! | `class_oauth_persist_retries_total` | counter | | retried writes of rotated tokens |
//! | `class_oauth_persist_failures_total` | counter | | rotated tokens held in memory after every retry failed |
//! | `class_oauth_keeper_sweeps_total` | counter | | completed sweeps of the store by a keeper |
//! | `class_oauth_keeper_refreshes_total` | counter | | refreshes a keeper asked for |
//! | `class_oauth_lapses_announced_total` | counter | | lapses announced ahead (one per lead time) |
//! | `class_oauth_grants` | gauge | `status` | grants by status, as of a keeper's last sweep |

use std::time::Duration;

use crate::TokenEvent;

/// Records what an event says.
#[cfg(feature = "metrics")]
pub(crate) fn event(e: &TokenEvent) {
    let outcome = match e {
        TokenEvent::Refreshed { durable_after, .. } => {
            metrics::histogram!("class_oauth_durable_after_seconds")
                .record(durable_after.as_secs_f64());
            "refreshed"
        }
        TokenEvent::RefreshedElsewhere { .. } => "elsewhere",
        TokenEvent::RefreshFailed { .. } => "failed",
        TokenEvent::InDoubt { .. } => "in_doubt",
        TokenEvent::Withheld { .. } => "withheld",
        TokenEvent::ReauthorizationRequired { .. } => "reauthorization_required",
        TokenEvent::Revoked { .. } => "revoked",
        TokenEvent::Superseded { .. } => "superseded",
        TokenEvent::PersistRetry { .. } => {
            metrics::counter!("class_oauth_persist_retries_total").increment(1);
            return;
        }
        TokenEvent::PersistFailed { .. } => {
            metrics::counter!("class_oauth_persist_failures_total").increment(1);
            return;
        }
        TokenEvent::LapseAhead { .. } => {
            metrics::counter!("class_oauth_lapses_announced_total").increment(1);
            return;
        }
        TokenEvent::Stored { .. } => return,
    };
    metrics::counter!("class_oauth_refreshes_total", "outcome" => outcome).increment(1);
}

/// One refresh procedure took `d`; `contended` when it ended waiting for another holder.
#[cfg(feature = "metrics")]
pub(crate) fn refresh(d: Duration, contended: bool) {
    metrics::histogram!("class_oauth_refresh_duration_seconds").record(d.as_secs_f64());
    if contended {
        metrics::counter!("class_oauth_lease_contended_total").increment(1);
    }
}

/// A caller waited `d` for a refresh.
#[cfg(feature = "metrics")]
pub(crate) fn caller_waited(d: Duration) {
    metrics::histogram!("class_oauth_caller_wait_seconds").record(d.as_secs_f64());
}

/// A keeper asked for a refresh.
#[cfg(feature = "metrics")]
pub(crate) fn keeper_refresh() {
    metrics::counter!("class_oauth_keeper_refreshes_total").increment(1);
}

/// A keeper finished a sweep that counted these grants by status.
#[cfg(feature = "metrics")]
pub(crate) fn sweep(counts: &[(&'static str, u64)]) {
    metrics::counter!("class_oauth_keeper_sweeps_total").increment(1);
    for (status, n) in counts {
        metrics::gauge!("class_oauth_grants", "status" => *status).set(*n as f64);
    }
}

#[cfg(not(feature = "metrics"))]
pub(crate) fn event(_: &TokenEvent) {}
#[cfg(not(feature = "metrics"))]
pub(crate) fn refresh(_: Duration, _: bool) {}
#[cfg(not(feature = "metrics"))]
pub(crate) fn caller_waited(_: Duration) {}
#[cfg(not(feature = "metrics"))]
pub(crate) fn keeper_refresh() {}
#[cfg(not(feature = "metrics"))]
pub(crate) fn sweep(_: &[(&'static str, u64)]) {}
