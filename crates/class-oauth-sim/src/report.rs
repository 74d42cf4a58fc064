//! What a run found: violations, lost grants, waits and the figures.

use std::collections::HashMap;
use std::fmt;

/// An invariant that did not hold.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Violation {
    /// Virtual time, ms from the start.
    pub at: u64,
    /// Which invariant, and what happened.
    pub what: String,
}

/// Why a grant ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Loss {
    /// The customer revoked the application's access in Class.
    CustomerRevoked,
    /// The refresh token went unused for its 30-day lifetime.
    Lapsed,
    /// A process died between the server's commit of a rotation and ours.
    CrashInWindow,
    /// The answer carrying the rotated token was lost in the network.
    AnswerLost,
    /// The in-doubt rule gave the grant up while the server still honoured its token.
    InDoubtRule,
    /// The provider revoked the grant after a token was presented again.
    RevokedOnReuse,
    /// None of the above (a bug, unless a violation explains it).
    Unexplained,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CustomerRevoked => "customer revoked",
            Self::Lapsed => "lapsed (30 days idle)",
            Self::CrashInWindow => "crash between the server's commit and ours",
            Self::AnswerLost => "answer lost after the server committed",
            Self::InDoubtRule => "in-doubt rule gave it up",
            Self::RevokedOnReuse => "provider revoked it on reuse",
            Self::Unexplained => "unexplained",
        })
    }
}

/// What one seed did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Grants issued (logins, first and again).
    pub grants: u64,
    /// Grants that ended, by cause.
    pub lost: HashMap<Loss, u64>,
    /// Refresh requests sent to the server (any answer).
    pub refresh_requests: u64,
    /// Rotations the server committed.
    pub rotations: u64,
    /// Tenant-days simulated.
    pub tenant_days: u64,
    /// Caller waits, for the percentiles.
    pub waits: Waits,
    /// Callers answered, and how many got a token.
    pub calls: u64,
    /// Callers that got a token.
    pub served: u64,
    /// Access tokens served after the provider had revoked them.
    pub revoked_served: u64,
    /// Process crashes.
    pub crashes: u64,
    /// Faults injected (network, server, store).
    pub faults: u64,
    /// Refresh tokens presented a second time, by the in-doubt rule.
    pub reuses: u64,
    /// Store operations performed by refresh procedures, and procedures that refreshed.
    pub store_ops: u64,
    /// Events processed.
    pub events: u64,
    /// Refresh procedures the keepers started (forced, no caller).
    pub keeper_refreshes: u64,
    /// Lapses the keepers announced ahead (one per lead time).
    pub lapse_announcements: u64,
    /// Invariant violations (the run stops at the first).
    pub violation: Option<Violation>,
    /// The last events before the violation (with `Config::trace`).
    pub trace: Vec<String>,
}

impl Report {
    /// Adds another seed's figures.
    pub fn merge(&mut self, o: &Self) {
        self.grants += o.grants;
        for (k, v) in &o.lost {
            *self.lost.entry(*k).or_default() += v;
        }
        self.refresh_requests += o.refresh_requests;
        self.rotations += o.rotations;
        self.tenant_days += o.tenant_days;
        self.waits.merge(&o.waits);
        self.calls += o.calls;
        self.served += o.served;
        self.revoked_served += o.revoked_served;
        self.crashes += o.crashes;
        self.faults += o.faults;
        self.reuses += o.reuses;
        self.store_ops += o.store_ops;
        self.events += o.events;
        self.keeper_refreshes += o.keeper_refreshes;
        self.lapse_announcements += o.lapse_announcements;
    }

    /// Grants lost to causes the library controls (everything but customers and lapse).
    #[must_use]
    pub fn lost_to_us(&self) -> u64 {
        self.lost
            .iter()
            .filter(|(k, _)| !matches!(k, Loss::CustomerRevoked | Loss::Lapsed))
            .map(|(_, v)| v)
            .sum()
    }

    /// The `p`th percentile caller wait in ms (see [`Waits`] for the resolution).
    #[must_use]
    pub fn wait_percentile(&self, p: f64) -> u64 {
        self.waits.percentile(p)
    }
}

/// Caller waits as a histogram of fixed size, so that a run of any length merges in
/// constant memory: 1 ms buckets below 1 s, 10 ms below 10 s, 100 ms below 200 s.
#[derive(Clone, Debug)]
pub struct Waits(Vec<u64>);

impl Default for Waits {
    fn default() -> Self {
        Self(vec![0; 1_000 + 900 + 1_900 + 1])
    }
}

impl Waits {
    fn bucket(ms: u64) -> usize {
        match ms {
            0..1_000 => ms as usize,
            1_000..10_000 => 1_000 + (ms as usize - 1_000) / 10,
            10_000..200_000 => 1_900 + (ms as usize - 10_000) / 100,
            _ => 3_800,
        }
    }

    /// The lowest wait a bucket holds.
    fn floor(bucket: usize) -> u64 {
        match bucket {
            0..1_000 => bucket as u64,
            1_000..1_900 => 1_000 + (bucket as u64 - 1_000) * 10,
            1_900..3_800 => 10_000 + (bucket as u64 - 1_900) * 100,
            _ => 200_000,
        }
    }

    /// Counts one wait of `ms`.
    pub fn add(&mut self, ms: u64) {
        self.0[Self::bucket(ms)] += 1;
    }

    fn merge(&mut self, o: &Self) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a += b;
        }
    }

    /// The `p`th percentile (the floor of its bucket), 0 when empty.
    #[must_use]
    pub fn percentile(&self, p: f64) -> u64 {
        let total: u64 = self.0.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total - 1) as f64 * p).round() as u64;
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen > rank {
                return Self::floor(i);
            }
        }
        Self::floor(self.0.len() - 1)
    }
}

// ---------------------------------------------------------------------------------
// The Class model.
