//! `cargo xtask sim`: runs seeds of the simulation and prints the figures per provider
//! behaviour (see the library docs).
//!
//! ```text
//! class-oauth-sim [--seeds N] [--days D] [--seed S] [--behaviour invalid-grant|revoke|grace]
//!                 [--rule retry|retry-at-expiry|give-up] [--compare] [--mutation NAME] [--jobs J]
//!                 [--keeper] [--absolute]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use class_oauth_manager::InDoubtRule;
use class_oauth_manager::machine::Mutation;
use class_oauth_sim::{Behaviour, Config, Loss, Report, run};

struct Args {
    seeds: u64,
    first: u64,
    days: u64,
    one: Option<u64>,
    behaviours: Vec<Behaviour>,
    rules: Vec<InDoubtRule>,
    mutation: Mutation,
    short_lease: bool,
    keeper: bool,
    absolute: bool,
    jobs: usize,
}

fn rule_name(r: InDoubtRule) -> &'static str {
    match r {
        InDoubtRule::Retry => "retry",
        InDoubtRule::RetryAtExpiry => "retry-at-expiry",
        InDoubtRule::GiveUp => "give-up",
        _ => "?",
    }
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seeds: 100,
        first: 0,
        days: 365,
        one: None,
        behaviours: Behaviour::ALL.to_vec(),
        rules: vec![InDoubtRule::default()],
        mutation: Mutation::None,
        short_lease: false,
        keeper: false,
        absolute: false,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--seeds" => a.seeds = num(value()?)?,
            "--first-seed" => a.first = num(value()?)?,
            "--days" => a.days = num(value()?)?,
            "--seed" => a.one = Some(num(value()?)?),
            "--jobs" => a.jobs = num(value()?)?.max(1) as usize,
            "--keeper" => a.keeper = true,
            "--absolute" => a.absolute = true,
            "--behaviour" => {
                let v = value()?;
                a.behaviours =
                    vec![Behaviour::parse(&v).ok_or_else(|| format!("unknown behaviour {v}"))?];
            }
            "--rule" => {
                a.rules = vec![match value()?.as_str() {
                    "retry" => InDoubtRule::Retry,
                    "retry-at-expiry" => InDoubtRule::RetryAtExpiry,
                    "give-up" => InDoubtRule::GiveUp,
                    v => return Err(format!("unknown rule {v}")),
                }];
            }
            "--compare" => {
                a.rules = vec![
                    InDoubtRule::Retry,
                    InDoubtRule::RetryAtExpiry,
                    InDoubtRule::GiveUp,
                ];
            }
            "--mutation" => match value()?.as_str() {
                "no-in-doubt-mark" => a.mutation = Mutation::NoInDoubtMark,
                "release-before-persist" => a.mutation = Mutation::ReleaseBeforePersist,
                "persist-after-validation" => a.mutation = Mutation::PersistAfterValidation,
                "short-lease" => a.short_lease = true,
                v => return Err(format!("unknown mutation {v}")),
            },
            "--help" | "-h" => {
                return Err("usage: class-oauth-sim [--seeds N] [--first-seed F] [--days D] [--seed S] [--behaviour invalid-grant|revoke|grace] [--rule retry|retry-at-expiry|give-up] [--compare] [--mutation no-in-doubt-mark|release-before-persist|persist-after-validation|short-lease] [--jobs J] [--keeper] [--absolute]".into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for &rule in &args.rules {
        for &behaviour in &args.behaviours {
            let mut cfg = Config::new(args.days);
            cfg.behaviour = behaviour;
            cfg.rule = rule;
            cfg.mutation = args.mutation;
            cfg.short_lease = args.short_lease;
            cfg.keeper = args.keeper;
            cfg.absolute_lifetime = args.absolute;
            if let Some(seed) = args.one {
                cfg.trace = true;
                let r = run(seed, &cfg);
                if let Some(v) = &r.violation {
                    for line in &r.trace {
                        println!("{line}");
                    }
                    println!("seed {seed} ({behaviour}, {}): {}", rule_name(rule), v.what);
                    failed = true;
                } else {
                    println!(
                        "seed {seed} ({behaviour}, {}): no violation",
                        rule_name(rule)
                    );
                }
                continue;
            }
            let started = Instant::now();
            let (total, first_bad) = run_many(&args, &cfg);
            print_figures(&args, behaviour, rule, total, first_bad.as_ref(), started);
            failed |= first_bad.is_some();
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs the seeds on `jobs` threads; the first violating seed (lowest number) is kept.
fn run_many(args: &Args, cfg: &Config) -> (Report, Option<(u64, String)>) {
    let next = std::sync::atomic::AtomicU64::new(args.first);
    let end = args.first + args.seeds;
    let results = std::sync::Mutex::new((Report::default(), None::<(u64, String)>));
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let r = run(seed, cfg);
                    let mut g = results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    g.0.merge(&r);
                    if let Some(v) = r.violation {
                        if g.1.as_ref().is_none_or(|(s, _)| seed < *s) {
                            g.1 = Some((seed, v.what));
                        }
                        // Stop early: no more seeds are started.
                        next.store(end, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn print_figures(
    args: &Args,
    behaviour: Behaviour,
    rule: InDoubtRule,
    r: Report,
    bad: Option<&(u64, String)>,
    started: Instant,
) {
    let kept = r.grants.saturating_sub(r.lost.values().sum());
    println!(
        "== {behaviour} / in-doubt rule {}{} / {} seeds x {} days, {} tenants on {} instances ({:.1} s)",
        rule_name(rule),
        match (args.keeper, args.absolute) {
            (true, true) => " / keeper on / absolute lifetime",
            (true, false) => " / keeper on",
            (false, true) => " / absolute lifetime",
            (false, false) => "",
        },
        args.seeds,
        args.days,
        Config::new(1).tenants,
        Config::new(1).instances,
        started.elapsed().as_secs_f64()
    );
    println!(
        "   grants {}  kept {}  lost {} (to causes we control: {})",
        r.grants,
        kept,
        r.lost.values().sum::<u64>(),
        r.lost_to_us()
    );
    let mut causes: Vec<(Loss, u64)> = r.lost.iter().map(|(k, v)| (*k, *v)).collect();
    causes.sort();
    for (cause, n) in causes {
        println!("     {n:>8}  {cause}");
    }
    let td = r.tenant_days.max(1) as f64;
    println!(
        "   refresh requests {} ({:.2} per tenant-day), rotations {}, second presentations {}",
        r.refresh_requests,
        r.refresh_requests as f64 / td,
        r.rotations,
        r.reuses
    );
    if args.keeper {
        // A grant-month: one tenant's grant for 30 days.
        println!(
            "   keeper refreshes {} ({:.2} per grant-month), lapses announced ahead {}",
            r.keeper_refreshes,
            r.keeper_refreshes as f64 / (td / 30.0),
            r.lapse_announcements
        );
    }
    let p50 = r.wait_percentile(0.50);
    let p99 = r.wait_percentile(0.99);
    let p999 = r.wait_percentile(0.999);
    println!(
        "   callers {} (served {}, revoked tokens served {}), wait p50 {p50} ms, p99 {p99} ms, p99.9 {p999} ms",
        r.calls, r.served, r.revoked_served
    );
    println!(
        "   crashes {}, faults injected {}, store ops in refreshes {}, events {}",
        r.crashes, r.faults, r.store_ops, r.events
    );
    match bad {
        Some((seed, what)) => println!(
            "   VIOLATION at seed {seed}: {what}\n   replay: cargo xtask sim --seed {seed} --days {} --behaviour {behaviour} --rule {}",
            args.days,
            rule_name(rule)
        ),
        None => println!("   invariant violations: 0"),
    }
}
