//! Timing for the sections other than the grant benchmark: batches of about 5 ms,
//! rounds of all cases interleaved, medians of wall time.

use std::time::{Duration, Instant};

pub(crate) struct Case<'a> {
    pub(crate) name: String,
    pub(crate) run: Box<dyn FnMut() + 'a>,
    iters: u64,
    wall: Vec<f64>,
}

impl<'a> Case<'a> {
    pub(crate) fn new(name: impl Into<String>, run: impl FnMut() + 'a) -> Self {
        Self {
            name: name.into(),
            run: Box::new(run),
            iters: 0,
            wall: Vec::new(),
        }
    }
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Results: (name, median wall ns/iter, min, max of wall).
pub(crate) struct Measured {
    pub(crate) name: String,
    pub(crate) wall_ns: f64,
    pub(crate) spread: (f64, f64),
}

pub(crate) fn run_interleaved(
    cases: &mut [Case<'_>],
    rounds: usize,
    batch: Duration,
) -> Vec<Measured> {
    for c in cases.iter_mut() {
        let mut iters = 1u64;
        loop {
            let t = Instant::now();
            for _ in 0..iters {
                (c.run)();
            }
            if t.elapsed() >= batch || iters >= 1 << 24 {
                break;
            }
            iters *= 2;
        }
        c.iters = iters;
    }
    for _ in 0..rounds {
        for c in cases.iter_mut() {
            let t = Instant::now();
            for _ in 0..c.iters {
                (c.run)();
            }
            let wall = t.elapsed().as_nanos() as f64 / c.iters as f64;
            c.wall.push(wall);
        }
    }
    cases
        .iter()
        .map(|c| {
            let mut w = c.wall.clone();
            w.sort_by(f64::total_cmp);
            Measured {
                name: c.name.clone(),
                wall_ns: median(&c.wall),
                spread: (w[0], w[w.len() - 1]),
            }
        })
        .collect()
}

pub(crate) fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "n/a".into()
    } else if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.1} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}
