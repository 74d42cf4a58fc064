//! Tenants and instances: logins, callers asking for tokens, refresh procedures and keepers started and advanced, crashes, and the checks at a grant's end and the run's.

use class_oauth_core::scope::Scopes;
use class_oauth_core::{Password, Username};
use class_oauth_manager::keeper::{Keeper, KeeperAction};
use class_oauth_manager::machine::{Action, Finished, RefreshMachine};
use class_oauth_manager::{KeeperSettings, ManagerError, Settings, TokenEvent};
use class_oauth_store::{GrantStatus, Lease, StoreError, StoredGrant, TokenStore};
use rand::Rng;

use super::*;

impl Sim {
    pub(super) fn login(&mut self, tenant: usize) {
        let (family, rt, at) = self.server.new_family(tenant, self.now);
        self.tenant_family[tenant] = Some(family);
        self.report.grants += 1;
        // The tokens as a password grant's response parses them, through the core.
        let inst = 0;
        let now = self.time(inst);
        let config = &self.instances[inst].config;
        let flow = config.password_flow(
            &self.endpoints,
            None,
            Username::new("sim"),
            Password::new("sim"),
            Scopes::parse("openid offline_access target:b fund.read").unwrap_or_default(),
        );
        let body = Server::token_json(&at, &rt, None);
        let tokens = flow.map_err(|e| e.to_string()).and_then(|flow| {
            class_oauth_core::flow::drive_blocking(
                flow,
                || now,
                |_| Ok(json_response(200, body.clone())),
                |_| {},
            )
            .map_err(|e| e.to_string())
        });
        let validated = match tokens {
            Ok(v) => v,
            Err(e) => return self.violate(format!("the simulator's login did not parse: {e}")),
        };
        let key = self.keys[tenant].clone();
        match block_on(self.store.save(&key, &validated.tokens, None, None)) {
            Ok(_) => {}
            Err(e) => self.violate(format!("the login's store write failed: {e}")),
        }
        // A login supersedes what instances hold in memory for the tenant.
        for i in &mut self.instances {
            i.held.remove(&tenant);
            i.cache.remove(&tenant);
        }
        self.note(|| format!("t{tenant}: login, grant f{family}"));
    }

    pub(super) fn call(&mut self, tenant: usize) {
        // A caller reaches an instance that is up (a load balancer).
        let up: Vec<usize> = (0..self.cfg.instances)
            .filter(|i| self.instances[*i].up)
            .collect();
        if up.is_empty() {
            return;
        }
        let inst = up[self.rng.random_range(0..up.len())];
        let caller = self.id();
        self.callers.insert(
            caller,
            Caller {
                tenant,
                inst,
                epoch: self.instances[inst].epoch,
                arrived: self.now,
                cancelled: false,
            },
        );
        if self.chance(0.05) {
            let d = self.rng.random_range(0..2 * SEC);
            self.at(d, Ev::GiveUp { caller });
        }
        let now = self.time(inst);
        if let Some(e) = self.instances[inst].cache.get(&tenant) {
            if e.until.serves(now) {
                let grant = e.grant.clone();
                return self.respond(caller, Ok(grant));
            }
        }
        // Single flight: join the run in flight, or start one.
        if let Some(run) = self.instances[inst].inflight.get(&tenant).copied() {
            if let Some(r) = self.runs.get_mut(&run) {
                r.waiters.push(caller);
                return;
            }
        }
        self.start_run(inst, tenant, caller);
    }

    pub(super) fn start_run(&mut self, inst: usize, tenant: usize, caller: u64) {
        self.start_procedure(inst, tenant, vec![caller], None, false);
    }

    /// Starts a refresh procedure on `inst` for `tenant`: for callers, or forced at
    /// `force` by the keeper.
    pub(super) fn start_procedure(
        &mut self,
        inst: usize,
        tenant: usize,
        waiters: Vec<u64>,
        force: Option<u64>,
        keeper: bool,
    ) -> u64 {
        let run = self.id();
        let i = &mut self.instances[inst];
        i.counter += 1;
        let lease = Lease::new(
            format!("i{inst}-{}-{}", i.epoch, i.counter),
            self.settings.effective_lease_ttl(None),
        );
        let held = i.held.remove(&tenant);
        let machine = RefreshMachine::new(
            self.keys[tenant].clone(),
            lease,
            force,
            self.settings.clone(),
            i.config.clone(),
            Some(i.keys.clone()),
            held,
        )
        .with_mutation(self.cfg.mutation);
        i.inflight.insert(tenant, run);
        let epoch = i.epoch;
        self.runs.insert(
            run,
            Run {
                inst,
                epoch,
                tenant,
                machine,
                waiters,
                awaiting: None,
                lease_until: None,
                unwritten: None,
                store_ops: 0,
                keeper,
            },
        );
        self.note(|| format!("i{inst} t{tenant}: refresh procedure r{run} starts"));
        self.advance(run);
        run
    }

    // --- the keeper -----------------------------------------------------------------

    pub(super) fn start_keeper(&mut self, inst: usize) {
        if !self.cfg.keeper {
            return;
        }
        let i = &mut self.instances[inst];
        let mut settings = KeeperSettings::default();
        settings.absolute_lifetime = self.cfg.absolute_lifetime;
        i.keeper = Some(Keeper::new(&self.settings, settings));
        i.keeper_run = None;
        let epoch = i.epoch;
        // Instances start their keepers at different moments.
        let d = self.rng.random_range(0..HOUR);
        self.at(d, Ev::Keep { inst, epoch });
    }

    /// Runs `inst`'s keeper until it waits or starts a refresh.
    pub(super) fn keep(&mut self, inst: usize) {
        let Some(mut keeper) = self.instances[inst].keeper.take() else {
            return;
        };
        let epoch = self.instances[inst].epoch;
        for _ in 0..10_000 {
            let now = self.time(inst);
            match keeper.poll(now) {
                KeeperAction::List(query) => {
                    let page = if self.chance(0.003) {
                        self.report.faults += 1;
                        Err(StoreError::Backend(
                            "sim: the database connection dropped".into(),
                        ))
                    } else {
                        block_on(self.store.list(&query))
                    };
                    keeper.handle_page(now, page);
                }
                KeeperAction::Refresh { key, version } => {
                    let Some(tenant) = self.keys.iter().position(|k| *k == key) else {
                        keeper.handle_refreshed(now);
                        continue;
                    };
                    if self.instances[inst].inflight.contains_key(&tenant) {
                        // A caller's procedure is refreshing it already.
                        keeper.handle_refreshed(now);
                        continue;
                    }
                    self.report.keeper_refreshes += 1;
                    self.note(|| format!("i{inst} t{tenant}: the keeper refreshes it"));
                    self.instances[inst].keeper = Some(keeper);
                    let run = self.start_procedure(inst, tenant, Vec::new(), Some(version), true);
                    if self.runs.contains_key(&run) {
                        self.instances[inst].keeper_run = Some(run);
                    } else {
                        // Done at once.
                        self.at(0, Ev::Keep { inst, epoch });
                    }
                    return;
                }
                KeeperAction::Announce(e) => {
                    // As the manager's driver: reported only by the instance that claims
                    // the notice in the store.
                    if !block_on(class_oauth_manager::keeper::announce(&self.store, &e)) {
                        self.note(|| format!("i{inst}: keeper: another instance announced: {e}"));
                        continue;
                    }
                    self.note(|| format!("i{inst}: keeper: {e}"));
                    if let TokenEvent::LapseAhead { key, lead, .. } = &e {
                        self.report.lapse_announcements += 1;
                        let tenant = self.keys.iter().position(|k| k == key);
                        if let Some(f) = tenant.and_then(|t| self.tenant_family[t]) {
                            let fam = &mut self.server.families[f as usize];
                            // The keeper announces only before the lapse it estimates,
                            // and each lead once across instances and restarts.
                            if fam.announced.contains(lead) {
                                let what = format!(
                                    "t{}: grant f{f}'s lapse announced {lead:?} ahead twice",
                                    tenant.unwrap_or(0)
                                );
                                self.violate(what);
                            } else {
                                fam.announced.push(*lead);
                            }
                        }
                    }
                }
                KeeperAction::Wait(d) => {
                    let ms = (d.as_millis() as u64).max(1);
                    self.at(ms, Ev::Keep { inst, epoch });
                    break;
                }
                _ => break,
            }
        }
        self.instances[inst].keeper = Some(keeper);
    }

    pub(super) fn respond(&mut self, caller: u64, result: Result<StoredGrant, ManagerError>) {
        let Some(c) = self.callers.remove(&caller) else {
            return;
        };
        if c.epoch != self.instances[c.inst].epoch {
            return; // its process died
        }
        let waited = self.now - c.arrived;
        let bound = self.settings.lease_wait.as_millis() as u64
            + self.settings.effective_lease_ttl(None).as_millis() as u64
            + 10 * SEC;
        if waited > bound {
            self.violate(format!(
                "caller for t{} answered after {} (bound {})",
                c.tenant,
                fmt_time(waited),
                fmt_time(bound)
            ));
        }
        self.report.calls += 1;
        if !c.cancelled {
            self.report.waits.add(waited);
        }
        match result {
            Ok(grant) => {
                self.report.served += 1;
                let at = grant.tokens.access_token.secret().to_owned();
                if self.server.withheld.contains(&at) {
                    self.violate(format!(
                        "t{}: served access token {at} whose ID token failed validation",
                        c.tenant
                    ));
                }
                let issued = at.starts_with("at-")
                    && at
                        .split('-')
                        .nth(1)
                        .and_then(|f| f.parse::<u64>().ok())
                        .is_some_and(|f| (f as usize) < self.server.families.len());
                if !issued {
                    self.violate(format!(
                        "t{}: served a token the server never issued",
                        c.tenant
                    ));
                } else if !self.server.ats.contains_key(&at) {
                    self.report.revoked_served += 1;
                }
            }
            Err(e) => {
                if e.requires_reauthorization() {
                    self.grant_reported_dead(c.tenant, &e);
                }
            }
        }
    }

    pub(super) fn grant_reported_dead(&mut self, tenant: usize, e: &ManagerError) {
        // Every grant that ends has a stored reason.
        match block_on(self.store.load(&self.keys[tenant])) {
            // Ended with its reason, or (when that write failed) still carrying the
            // reason the next procedure will end it for.
            Ok(Some(g)) => match &g.status {
                GrantStatus::NeedsReauthorization { reason }
                | GrantStatus::InDoubt { reason }
                | GrantStatus::Unverified { reason }
                    if !reason.is_empty() => {}
                other => {
                    self.violate(format!(
                        "t{tenant}: a caller was told to re-authorize ({e}) but the store says {other:?}"
                    ));
                }
            },
            Ok(None) => {}
            Err(err) => self.violate(format!("t{tenant}: store unreadable: {err}")),
        }
        if !self.relogin_due[tenant] {
            self.relogin_due[tenant] = true;
            let d = self.rng.random_range(HOUR..7 * DAY);
            self.at(d, Ev::Relogin { tenant });
        }
    }

    // --- the refresh procedure --------------------------------------------------------

    pub(super) fn advance(&mut self, run: u64) {
        loop {
            let Some((inst, epoch)) = self.runs.get(&run).map(|r| (r.inst, r.epoch)) else {
                return;
            };
            if epoch != self.instances[inst].epoch {
                self.runs.remove(&run);
                return;
            }
            let now = self.time(inst);
            let Some(r) = self.runs.get_mut(&run) else {
                return;
            };
            let action = r.machine.poll(now);
            // A crash can strike at any step.
            if self.chance(0.0005) {
                self.note(|| format!("i{inst}: crash at a step of r{run}"));
                self.crash(inst);
                return;
            }
            match action {
                Action::Done(f) => return self.finished(run, *f),
                Action::Wait(d) => {
                    let ms = d.as_millis() as u64;
                    return self.at(ms.max(1), Ev::Resume { run });
                }
                Action::Endpoints => {
                    let e = Ok(self.endpoints.clone());
                    if let Some(r) = self.runs.get_mut(&run) {
                        r.machine.handle_endpoints(now, e);
                    }
                }
                Action::Store(op) => return self.store_op(run, op),
                Action::Send(req) => return self.send(run, req),
                other => {
                    return self.violate(format!("r{run}: unknown action {other:?}"));
                }
            }
        }
    }

    pub(super) fn check_lease(&mut self, run: u64, what: &str) {
        let Some(r) = self.runs.get(&run) else { return };
        if let Some(until) = r.lease_until {
            if self.now >= until {
                let t = r.tenant;
                self.violate(format!(
                    "t{t}: r{run} still acts as lease holder ({what}) {} after its lease expired",
                    fmt_time(self.now - until)
                ));
            }
        }
    }

    pub(super) fn finished(&mut self, run: u64, f: Finished) {
        let Some(r) = self.runs.remove(&run) else {
            return;
        };
        let inst = r.inst;
        let tenant = r.tenant;
        self.report.store_ops += r.store_ops;
        let i = &mut self.instances[inst];
        if i.inflight.get(&tenant) == Some(&run) {
            i.inflight.remove(&tenant);
        }
        if let Some(h) = f.held {
            i.held.insert(tenant, h);
        }
        let now = self.time(inst);
        let failed = f.error.is_some() || f.backoff;
        match &f.grant {
            Some(g) if Settings::caches(g) => {
                let mut jitter = |b: &mut [u8]| self.rng.fill(b);
                let until = self.settings.serve_until(g, now, failed, &mut jitter);
                self.instances[inst].cache.insert(
                    tenant,
                    CacheEntry {
                        grant: g.clone(),
                        until,
                    },
                );
            }
            _ => {
                self.instances[inst].cache.remove(&tenant);
            }
        }
        let err = f.error.as_ref().map(ToString::to_string);
        self.note(|| format!("r{run}: done ({})", err.as_deref().unwrap_or("ok")));
        // A rotated token this run received must now be in the store or held.
        if let Some(rt) = &r.unwritten {
            let stored = self.stored_rt(tenant);
            let held = self.instances[inst].held.get(&tenant).and_then(|h| {
                h.tokens
                    .refresh_token
                    .as_ref()
                    .map(|t| t.secret().to_owned())
            });
            let superseded = self.tenant_family[tenant].is_none_or(|fam| {
                let latest = &self.server.families[fam as usize].latest_rt;
                latest != rt
            });
            if stored.as_deref() != Some(rt) && held.as_deref() != Some(rt) && !superseded {
                self.violate(format!(
                    "t{tenant}: r{run} ended while the rotated refresh token {rt} is neither stored nor held"
                ));
            }
            if held.as_deref() == Some(rt.as_str()) {
                if let Some(fam) = self.tenant_family[tenant] {
                    // Alive in this process's memory.
                    let fam = &mut self.server.families[fam as usize];
                    if fam.latest_rt == *rt {
                        fam.where_ = Where::Stored;
                    }
                }
            }
        }
        if r.keeper && self.instances[inst].keeper_run == Some(run) {
            self.instances[inst].keeper_run = None;
            let now = self.time(inst);
            let epoch = self.instances[inst].epoch;
            if let Some(k) = self.instances[inst].keeper.as_mut() {
                k.handle_refreshed(now);
            }
            self.at(0, Ev::Keep { inst, epoch });
        }
        for caller in r.waiters {
            let result = match (&f.grant, &f.error) {
                (Some(g), _) => Ok(g.clone()),
                (None, Some(e)) => Err(e.clone()),
                (None, None) => Err(ManagerError::Config("no outcome".into())),
            };
            self.respond(caller, result);
        }
    }

    pub(super) fn crash(&mut self, inst: usize) {
        let i = &mut self.instances[inst];
        if !i.up {
            return;
        }
        self.report.crashes += 1;
        i.up = false;
        i.epoch += 1;
        i.inflight.clear();
        i.cache.clear();
        let held: Vec<usize> = i.held.drain().map(|(t, _)| t).collect();
        i.config = client_config();
        i.keys = key_cache();
        let dead: Vec<u64> = self
            .runs
            .iter()
            .filter(|(_, r)| r.inst == inst)
            .map(|(id, _)| *id)
            .collect();
        for run in &dead {
            self.runs.remove(run);
        }
        // Rotated tokens only this process knew are gone.
        for f in 0..self.server.families.len() {
            let fam = &self.server.families[f];
            let mine = match fam.where_ {
                Where::InFlight { run } | Where::Delivered { run } => dead.contains(&run),
                Where::Stored if held.contains(&fam.tenant) && fam.ended.is_none() => {
                    let stored = self.stored_rt(fam.tenant);
                    stored.as_deref() != Some(fam.latest_rt.as_str())
                }
                _ => false,
            };
            if mine {
                self.server.families[f].where_ = Where::Crashed;
            }
        }
        self.note(|| format!("i{inst} crashes ({} procedures die)", dead.len()));
        let down = self.rng.random_range(SEC..300 * SEC);
        self.at(down, Ev::Restart { inst });
    }

    /// A grant was marked dead in the store: why did it end?
    pub(super) fn grant_ended(&mut self, tenant: usize, reason: String) {
        if reason.is_empty() {
            self.violate(format!("t{tenant}: a grant ended with no stored reason"));
        }
        let Some(f) = self.tenant_family[tenant] else {
            return;
        };
        let stored = self.stored_rt(tenant);
        let fam = &self.server.families[f as usize];
        if fam.counted {
            return;
        }
        let rt_state = stored.as_ref().and_then(|s| self.server.rts.get(s));
        let lapsed = if self.cfg.absolute_lifetime {
            self.now.saturating_sub(fam.started) > RT_LIFETIME
        } else {
            rt_state.is_some_and(|r| self.now.saturating_sub(r.issued_at) > RT_LIFETIME)
        };
        // Every lapse the keeper could not prevent was announced at each lead.
        let unannounced = if lapsed && self.cfg.absolute_lifetime && self.cfg.keeper {
            let leads = KeeperSettings::default().announce_leads;
            let missing: Vec<_> = leads
                .iter()
                .filter(|l| !fam.announced.contains(l))
                .collect();
            (!missing.is_empty()).then(|| {
                format!("t{tenant}: grant f{f} lapsed without the keeper announcing it {missing:?} ahead")
            })
        } else {
            None
        };
        let cause = if fam.revoked_by_customer {
            Loss::CustomerRevoked
        } else if fam.revoked_on_reuse {
            Loss::RevokedOnReuse
        } else if lapsed {
            Loss::Lapsed
        } else if stored.as_deref() == Some(fam.latest_rt.as_str())
            && rt_state.is_some_and(|r| matches!(r.state, RtState::Valid))
        {
            Loss::InDoubtRule
        } else {
            match fam.where_ {
                Where::AnswerLost => Loss::AnswerLost,
                Where::Crashed => Loss::CrashInWindow,
                _ => {
                    // A grace-window reuse that was refused (too late) after a lost
                    // answer reads as that lost answer.
                    Loss::Unexplained
                }
            }
        };
        let fam = &mut self.server.families[f as usize];
        fam.counted = true;
        *self.report.lost.entry(cause).or_default() += 1;
        if let Some(what) = unannounced {
            self.violate(what);
        }
        self.note(|| format!("t{tenant}: grant f{f} ends: {cause} ({reason})"));
        if cause == Loss::Unexplained {
            self.violate(format!(
                "t{tenant}: grant f{f} ended with no explanation ({reason}); newest token {:?}",
                self.server.families[f as usize].where_
            ));
        }
    }

    pub(super) fn finish_checks(&mut self) {
        // Grants whose newest token is neither stored nor explained, at the end.
        for t in 0..self.cfg.tenants {
            let Some(f) = self.tenant_family[t] else {
                continue;
            };
            let fam = &self.server.families[f as usize];
            if fam.ended.is_some() || fam.counted {
                continue;
            }
            if let Where::Delivered { run } = fam.where_ {
                if !self.runs.contains_key(&run) {
                    let rt = fam.latest_rt.clone();
                    self.violate(format!(
                        "t{t}: rotated refresh token {rt} was lost by a live process"
                    ));
                }
            }
        }
    }
}
