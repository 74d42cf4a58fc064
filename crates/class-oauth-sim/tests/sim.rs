//! The bounded simulation that runs with the README's test command: a few hundred
//! seeded days under each provider behaviour with every invariant checked, each
//! deliberate bug caught within a stated number of seeds, and a seed that replays
//! exactly. Every test runs under a watchdog. `cargo xtask sim` runs the long ones.

use std::time::Duration;

use class_oauth_manager::InDoubtRule;
use class_oauth_manager::machine::Mutation;
use class_oauth_sim::{Behaviour, Config, run};

use class_oauth_fixtures::bounded;

/// 100 seeds x 60 days under each behaviour (about 15 s each in a debug build).
const SEEDS: u64 = 100;
const DAYS: u64 = 60;

fn holds_every_invariant(behaviour: Behaviour) {
    bounded("bounded simulation", Duration::from_secs(600), move || {
        let mut cfg = Config::new(DAYS);
        cfg.behaviour = behaviour;
        let mut refreshes = 0;
        let mut crashes = 0;
        for seed in 0..SEEDS {
            let r = run(seed, &cfg);
            refreshes += r.refresh_requests;
            crashes += r.crashes;
            if let Some(v) = r.violation {
                panic!(
                    "seed {seed} ({behaviour}): {}\nreplay: cargo xtask sim --seed {seed} --days {DAYS} --behaviour {behaviour}",
                    v.what
                );
            }
        }
        // The workload did what it is for: refreshes and crashes in every run.
        assert!(
            refreshes > SEEDS * DAYS,
            "the workload refreshed ({refreshes})"
        );
        assert!(crashes > SEEDS, "processes crashed ({crashes})");
    });
}

#[test]
fn invalid_grant_on_reuse_holds_every_invariant() {
    holds_every_invariant(Behaviour::InvalidGrant);
}

#[test]
fn revoke_on_reuse_holds_every_invariant() {
    holds_every_invariant(Behaviour::RevokeOnReuse);
}

#[test]
fn a_grace_window_holds_every_invariant() {
    holds_every_invariant(Behaviour::Grace(Duration::from_secs(60)));
}

/// The proof that the simulator finds bugs: each deliberate mutation of the procedure
/// is caught within `within` seeds of a simulated year (measured: all four on seed 0).
#[test]
fn each_deliberate_bug_is_caught() {
    bounded("mutations", Duration::from_secs(600), || {
        let within = 3;
        let cases: [(&str, Mutation, bool); 4] = [
            (
                "no in-doubt mark before sending",
                Mutation::NoInDoubtMark,
                false,
            ),
            (
                "lease released before persisting",
                Mutation::ReleaseBeforePersist,
                false,
            ),
            (
                "persist after validation",
                Mutation::PersistAfterValidation,
                false,
            ),
            (
                "lease TTL shorter than the request timeout",
                Mutation::None,
                true,
            ),
        ];
        for (name, mutation, short_lease) in cases {
            let mut cfg = Config::new(365);
            cfg.mutation = mutation;
            cfg.short_lease = short_lease;
            let caught = (0..within).find_map(|seed| run(seed, &cfg).violation.map(|v| (seed, v)));
            let Some((seed, v)) = caught else {
                panic!("{name}: not caught within {within} seeds");
            };
            eprintln!("{name}: caught at seed {seed}: {}", v.what);
        }
    });
}

/// The same seed replays exactly: same events, same figures, same trace.
#[test]
fn a_seed_replays_exactly() {
    bounded("replay", Duration::from_secs(120), || {
        let mut cfg = Config::new(20);
        cfg.trace = true;
        cfg.rule = InDoubtRule::Retry;
        let (a, b) = (run(7, &cfg), run(7, &cfg));
        assert!(a.events > 1000, "{}", a.events);
        assert_eq!(
            (
                a.events,
                a.refresh_requests,
                a.rotations,
                a.calls,
                a.crashes,
                a.faults
            ),
            (
                b.events,
                b.refresh_requests,
                b.rotations,
                b.calls,
                b.crashes,
                b.faults
            )
        );
        assert_eq!(a.trace, b.trace);
        let c = run(8, &cfg);
        assert_ne!(a.trace, c.trace, "another seed is another run");
    });
}

/// The keeper keeps idle grants: over simulated years in which sporadic tenants pause for
/// up to eight weeks, grants lapse without it and none lapses with it (a sliding 30-day
/// lifetime), every invariant holding, at a bounded cost in refreshes.
#[test]
fn the_keeper_keeps_idle_grants_alive() {
    bounded("keeper simulation", Duration::from_secs(600), || {
        const YEARS: u64 = 20;
        let lapsed = |keeper: bool| {
            let mut cfg = Config::new(365);
            cfg.keeper = keeper;
            let mut total = class_oauth_sim::Report::default();
            for seed in 0..YEARS {
                let r = run(seed, &cfg);
                if let Some(v) = &r.violation {
                    panic!(
                        "seed {seed} (keeper {keeper}): {}\nreplay: cargo xtask sim --seed {seed} --days 365 --keeper",
                        v.what
                    );
                }
                total.merge(&r);
            }
            total
        };
        let without = lapsed(false);
        let with = lapsed(true);
        let count = |r: &class_oauth_sim::Report| {
            r.lost
                .get(&class_oauth_sim::Loss::Lapsed)
                .copied()
                .unwrap_or(0)
        };
        assert!(count(&without) > 0, "idle grants lapse without the keeper");
        assert_eq!(count(&with), 0, "no grant lapses with the keeper");
        let per_grant_month = with.keeper_refreshes as f64 / (with.tenant_days as f64 / 30.0);
        assert!(
            with.keeper_refreshes > 0 && per_grant_month <= KEEPER_REFRESHES_PER_GRANT_MONTH,
            "keeper refreshes per grant-month: {per_grant_month:.2}"
        );
    });
}

/// The bound on the keeper's cost: a grant refreshed by nobody else is refreshed about
/// every 15 to 18 days (half the idle limit plus the spread), under 2 a month; busy
/// grants, which callers refresh, cost it nothing.
const KEEPER_REFRESHES_PER_GRANT_MONTH: f64 = 2.0;

/// Under an absolute lifetime the keeper cannot keep grants, so it warns: every grant
/// that lapses was announced at each lead time (7 days and 1 day) before it lapsed (the
/// simulator checks each lapse against the announcements), and it refreshes nothing.
#[test]
fn under_an_absolute_lifetime_every_lapse_is_announced_first() {
    bounded("absolute lifetime", Duration::from_secs(600), || {
        let mut cfg = Config::new(365);
        cfg.keeper = true;
        cfg.absolute_lifetime = true;
        let mut total = class_oauth_sim::Report::default();
        for seed in 0..5 {
            let r = run(seed, &cfg);
            if let Some(v) = &r.violation {
                panic!(
                    "seed {seed}: {}\nreplay: cargo xtask sim --seed {seed} --days 365 --keeper --absolute",
                    v.what
                );
            }
            total.merge(&r);
        }
        let lapsed = total
            .lost
            .get(&class_oauth_sim::Loss::Lapsed)
            .copied()
            .unwrap_or(0);
        assert!(lapsed > 0, "grants lapse under an absolute lifetime");
        assert!(
            total.lapse_announcements >= 2 * lapsed,
            "{} announcements for {lapsed} lapses",
            total.lapse_announcements
        );
        assert_eq!(total.keeper_refreshes, 0, "refreshing cannot extend it");
    });
}
