//! The simulated store: each operation a step of its own, failing as the fault plan says, applied to the shared rows.

use class_oauth_manager::machine::{StoreAnswer, StoreOp};
use class_oauth_store::{GrantStatus, LeaseOutcome, StoreError, TokenStore};
use rand::Rng;

use super::*;

impl Sim {
    pub(super) fn store_op(&mut self, run: u64, op: StoreOp) {
        if matches!(op, StoreOp::Update(_)) {
            self.check_lease(run, "a store write");
        }
        let Some(r) = self.runs.get_mut(&run) else {
            return;
        };
        r.store_ops += 1;
        let tenant = r.tenant;
        let latency = if self.chance(0.01) {
            self.rng.random_range(500..2_000)
        } else {
            self.rng.random_range(1..6)
        };
        let fail = match self.rng.random_range(0..1000) {
            0..3 => StoreFault::Fail,
            3..5 if matches!(op, StoreOp::Update(_)) => StoreFault::AppliedButFailed,
            _ => StoreFault::None,
        };
        if fail != StoreFault::None {
            self.report.faults += 1;
        }
        self.at(
            latency,
            Ev::StoreDone {
                run,
                tenant,
                op,
                fail,
            },
        );
    }
    pub(super) fn store_done(&mut self, run: u64, tenant: usize, op: StoreOp, fail: StoreFault) {
        if !self.runs.contains_key(&run) {
            // The process died; a statement already sent still commits.
            if fail != StoreFault::Fail {
                let _ = self.apply(run, op, tenant);
            }
            return;
        }
        let name = op_name(&op);
        let is_write = matches!(op, StoreOp::Update(_));
        let answer = match fail {
            StoreFault::Fail => failed_answer(&op),
            StoreFault::None => self.apply(run, op, tenant),
            StoreFault::AppliedButFailed => {
                let failed = failed_answer(&op);
                let _ = self.apply(run, op, tenant);
                failed
            }
        };
        self.note(|| format!("r{run}: {name} -> {}", answer_name(&answer)));
        if is_write {
            self.after_store(tenant);
        }
        let Some((inst, epoch)) = self.runs.get(&run).map(|r| (r.inst, r.epoch)) else {
            return;
        };
        if epoch != self.instances[inst].epoch {
            return;
        }
        let now = self.time(inst);
        let lease_ttl = self.settings.effective_lease_ttl(None).as_millis() as u64;
        let t = self.now;
        let Some(r) = self.runs.get_mut(&run) else {
            return;
        };
        if let StoreAnswer::Lease(Ok(LeaseOutcome::Acquired { .. })) = &answer {
            r.lease_until = Some(t + lease_ttl);
        }
        r.machine.handle_store(now, answer);
        self.advance(run);
    }
    /// Applies a store operation to the real store, the way every driver performs it.
    pub(super) fn apply(&mut self, run: u64, op: StoreOp, tenant: usize) -> StoreAnswer {
        let key = self.keys[tenant].clone();
        let (ends, releases) = match &op {
            StoreOp::Update(u) => (
                match &u.status {
                    GrantStatus::NeedsReauthorization { reason } => Some(reason.clone()),
                    _ => None,
                },
                u.release_lease_of.is_some(),
            ),
            StoreOp::Release { .. } => {
                // No lease is released while rotated tokens wait to be written.
                if let Some(r) = self.runs.get(&run) {
                    if let Some(rt) = &r.unwritten {
                        let stored = self.stored_rt(r.tenant);
                        if stored.as_deref() != Some(rt.as_str()) {
                            let rt = rt.clone();
                            let t = r.tenant;
                            self.violate(format!(
                                "t{t}: r{run} released its lease before writing the rotated refresh token {rt}"
                            ));
                        }
                    }
                }
                (None, true)
            }
            _ => (None, false),
        };
        let answer = block_on(op.perform(&self.store, &key));
        let landed = match &answer {
            StoreAnswer::Updated(r) => r.is_ok(),
            StoreAnswer::Released(_) => true,
            _ => false,
        };
        if landed {
            if let Some(reason) = ends {
                self.grant_ended(tenant, reason);
            }
            if releases {
                if let Some(r) = self.runs.get_mut(&run) {
                    r.lease_until = None;
                }
            }
        }
        answer
    }
    /// The refresh token stored for `tenant`.
    pub(super) fn stored_rt(&self, tenant: usize) -> Option<String> {
        block_on(self.store.load(&self.keys[tenant]))
            .ok()
            .flatten()
            .and_then(|g| g.tokens.refresh_token.map(|t| t.secret().to_owned()))
    }
    /// After any store write: where the newest refresh token is, and whether it is lost.
    pub(super) fn after_store(&mut self, tenant: usize) {
        let Some(f) = self.tenant_family[tenant] else {
            return;
        };
        let stored = self.stored_rt(tenant);
        let fam = &mut self.server.families[f as usize];
        if stored.as_deref() == Some(fam.latest_rt.as_str()) {
            fam.where_ = Where::Stored;
            for r in self.runs.values_mut() {
                if r.tenant == tenant && r.unwritten.as_deref() == stored.as_deref() {
                    r.unwritten = None;
                }
            }
        }
    }
}

pub(super) fn failed_answer(op: &StoreOp) -> StoreAnswer {
    let e = StoreError::Backend("sim: the database connection dropped".into());
    match op {
        StoreOp::Load => StoreAnswer::Loaded(Err(e)),
        StoreOp::AcquireLease(_) => StoreAnswer::Lease(Err(e)),
        StoreOp::Update(_) => StoreAnswer::Updated(Err(e)),
        _ => StoreAnswer::Released(Err(e)),
    }
}

pub(super) fn op_name(op: &StoreOp) -> String {
    match op {
        StoreOp::Load => "load".into(),
        StoreOp::AcquireLease(l) => format!("acquire lease {}", l.owner),
        StoreOp::Update(u) => format!(
            "update v{} {}{}{}",
            u.expected_version,
            u.status.as_parts().0,
            if u.tokens.is_some() { " +tokens" } else { "" },
            if u.release_lease_of.is_some() {
                " +release"
            } else {
                ""
            }
        ),
        StoreOp::Release { owner, .. } => format!("release {owner}"),
        _ => "?".into(),
    }
}

pub(super) fn answer_name(a: &StoreAnswer) -> String {
    match a {
        StoreAnswer::Loaded(Ok(Some(g))) => format!("v{} {}", g.version, g.status.as_parts().0),
        StoreAnswer::Loaded(Ok(None)) => "none".into(),
        StoreAnswer::Lease(Ok(LeaseOutcome::Acquired { grant, .. })) => {
            format!("acquired v{} {}", grant.version, grant.status.as_parts().0)
        }
        StoreAnswer::Lease(Ok(LeaseOutcome::Held { remaining })) => format!("held {remaining:?}"),
        StoreAnswer::Updated(Ok(v)) => format!("v{v}"),
        StoreAnswer::Released(Ok(())) => "released".into(),
        other => format!("{other:?}").chars().take(80).collect(),
    }
}
