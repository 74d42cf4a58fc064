//! # class-oauth-sim
//!
//! A deterministic simulation of the token manager's refresh procedure
//! ([`class_oauth_manager::machine::RefreshMachine`]) over virtual time, in the manner of
//! FoundationDB's and TigerBeetle's simulators: one seeded PRNG drives everything, and a
//! seed replays exactly.
//!
//! What runs: several manager instances (each with its own cache, single flight, held
//! tokens and key-set cache, and a clock skewed from the others) over one store (the
//! real [`MemoryStore`] on the virtual clock: its CAS and leases), with write failures,
//! writes that commit but report failure, and slow commits; callers per tenant at random
//! (busy days, bursts, idle weeks, callers that give up); a Class model with one-time
//! rotating refresh tokens under three provider behaviours ([`Behaviour`]); random
//! latency, 5xx, 429, HTML proxy pages, answers lost after the server committed,
//! connections refused before sending; process crashes at any step and restarts (memory
//! gone, store kept); lease expiries; signing-key rotations and ID tokens that fail
//! validation; customers who revoke access and connect again; refresh tokens that lapse
//! after 30 idle days.
//!
//! Invariants checked at every step ([`Violation`]): no refresh token presented twice
//! except by the in-doubt rule; a rotated refresh token never lost while its process
//! lives; no access token handed out that the server did not issue or that failed
//! validation; every caller answered within its bound; no lease holder acting past its
//! lease's expiry; no lease released before the rotated tokens were written; every
//! grant that ends has a stored reason.

#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use class_oauth_core::flow::ClientConfig;
use class_oauth_core::flow::{KeyCache, TransportError};
use class_oauth_core::{ClientId, ClientSecret, Endpoints, Environment};
use class_oauth_manager::keeper::Keeper;
use class_oauth_manager::machine::{RefreshMachine, StoreOp};
use class_oauth_manager::{ServeUntil, Settings};
use class_oauth_store::{HeldWrite, MemoryStore, StoredGrant, TenantKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod config;
mod report;
mod server;
mod store;
mod tenants;

pub use config::{Behaviour, Config};
pub use report::{Loss, Report, Violation, Waits};
use server::*;

const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// Class's refresh-token lifetime (sliding in this model).
const RT_LIFETIME: u64 = 30 * DAY;
const ACCESS_LIFETIME_S: u64 = 899;
const ISSUER: &str = "https://class.sim.invalid";
const CLIENT: &str = "sim-client";

struct CacheEntry {
    grant: StoredGrant,
    until: ServeUntil,
}

struct Instance {
    up: bool,
    epoch: u32,
    skew_ms: i64,
    config: ClientConfig,
    /// This process's key-set cache (a client's; lost with the process).
    keys: Arc<dyn KeyCache>,
    inflight: HashMap<usize, u64>,
    held: HashMap<usize, HeldWrite>,
    cache: HashMap<usize, CacheEntry>,
    counter: u64,
    /// This process's keeper (with `Config::keeper`), and the run it waits for.
    keeper: Option<Keeper>,
    keeper_run: Option<u64>,
}

struct Run {
    inst: usize,
    epoch: u32,
    tenant: usize,
    machine: RefreshMachine,
    waiters: Vec<u64>,
    /// Which send this run waits for (one answer per send).
    awaiting: Option<u64>,
    /// The lease, as this run holds it: until when (store clock).
    lease_until: Option<u64>,
    /// The rotated refresh token this run received and has not yet seen written.
    unwritten: Option<String>,
    /// The refresh token this run presented while the row was in doubt.
    store_ops: u64,
    /// Started by the instance's keeper.
    keeper: bool,
}

struct Caller {
    tenant: usize,
    inst: usize,
    epoch: u32,
    arrived: u64,
    cancelled: bool,
}

#[derive(Debug)]
enum Ev {
    Day,
    Call {
        tenant: usize,
    },
    GiveUp {
        caller: u64,
    },
    Resume {
        run: u64,
    },
    StoreDone {
        run: u64,
        tenant: usize,
        op: StoreOp,
        fail: StoreFault,
    },
    Arrive {
        run: u64,
        send: u64,
        body: Vec<u8>,
        path: ReqKind,
        fate: Fate,
    },
    Answer {
        run: u64,
        send: u64,
        answer: Result<http::Response<Vec<u8>>, TransportError>,
    },
    Crash {
        inst: usize,
        periodic: bool,
    },
    Restart {
        inst: usize,
    },
    Revoke {
        tenant: usize,
    },
    Relogin {
        tenant: usize,
    },
    RotateKey,
    Keep {
        inst: usize,
        epoch: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StoreFault {
    None,
    /// Fails without being applied.
    Fail,
    /// Applied, but the caller hears a failure.
    AppliedButFailed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReqKind {
    Token,
    Keys,
}

/// What the network does with a request, decided when it leaves.
#[derive(Clone, Copy, Debug)]
struct Fate {
    /// Delay to the server (None: never arrives).
    to_server: Option<u64>,
    /// Delay back (None: the answer is lost after the server committed).
    back: Option<u64>,
    /// A proxy answers instead of the server.
    proxy: Option<Proxy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proxy {
    /// 503 with an OAuth error, before the server.
    Unavailable,
    /// 429, before the server.
    RateLimited,
    /// An HTML 502 page; the server processed the request when `after` is set.
    Html { after: bool },
}

/// The transport's total timeout in the simulation.
const TIMEOUT: u64 = 30 * SEC;

/// One seed.
pub struct Sim {
    cfg: Config,
    rng: ChaCha8Rng,
    now: u64,
    clock: Arc<AtomicU64>,
    base: SystemTime,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Ev>,
    seq: u64,
    store: MemoryStore,
    server: Server,
    instances: Vec<Instance>,
    runs: HashMap<u64, Run>,
    callers: HashMap<u64, Caller>,
    keys: Vec<TenantKey>,
    /// Current family per tenant (None: waiting for the customer to connect again).
    tenant_family: Vec<Option<u64>>,
    relogin_due: Vec<bool>,
    profiles: Vec<Profile>,
    settings: Arc<Settings>,
    endpoints: Arc<Endpoints>,
    report: Report,
    trace: VecDeque<String>,
    next_id: u64,
}

#[derive(Clone, Copy, Debug)]
enum Profile {
    /// Most working days, several bursts.
    Busy,
    /// About one day in three.
    Regular,
    /// Weeks of silence between spells.
    Sporadic { idle_until_day: u64 },
}

impl Sim {
    /// A simulation of `seed` under `cfg`.
    #[must_use]
    pub fn new(seed: u64, cfg: Config) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let clock = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let c = clock.clone();
        let store = MemoryStore::with_clock(move || {
            start + Duration::from_millis(c.load(Ordering::Relaxed))
        });
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        let mut endpoints = Environment::parse(ISSUER)
            .map(|e| e.preset())
            .unwrap_or_else(|_| Environment::Pie.preset());
        endpoints.jwks_uri = url::Url::parse(&format!("{ISSUER}/jwks")).ok();
        let mut settings = Settings::default();
        settings.in_doubt = cfg.rule;
        // The lease as the manager derives it from the transport's bound; the fourth
        // mutation takes a fixed one shorter than a request.
        settings.lease_ttl = Some(if cfg.short_lease {
            Duration::from_secs(10)
        } else {
            settings.effective_lease_ttl(Some(Duration::from_millis(TIMEOUT)))
        });
        let instances = (0..cfg.instances)
            .map(|_| Instance {
                up: true,
                epoch: 0,
                skew_ms: rng.random_range(-2_000..=2_000),
                config: client_config(),
                keys: key_cache(),
                inflight: HashMap::new(),
                held: HashMap::new(),
                cache: HashMap::new(),
                counter: 0,
                keeper: None,
                keeper_run: None,
            })
            .collect();
        let profiles = (0..cfg.tenants)
            .map(|_| match rng.random_range(0..10) {
                0..4 => Profile::Busy,
                4..8 => Profile::Regular,
                _ => Profile::Sporadic { idle_until_day: 0 },
            })
            .collect();
        let client_id = ClientId::new(CLIENT);
        let keys = (0..cfg.tenants)
            .map(|i| TenantKey::new(&client_id, format!("T{i}")))
            .collect();
        let mut server = Server {
            behaviour: cfg.behaviour,
            rts: HashMap::new(),
            ats: HashMap::new(),
            families: Vec::new(),
            counter: 0,
            keys: Vec::new(),
            key_counter: 0,
            withheld: HashSet::new(),
        };
        server.rotate_key();
        let tenants = cfg.tenants;
        let mut sim = Self {
            cfg,
            rng,
            now: 0,
            clock,
            base,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            store,
            server,
            instances,
            runs: HashMap::new(),
            callers: HashMap::new(),
            keys,
            tenant_family: vec![None; tenants],
            relogin_due: vec![false; tenants],
            profiles,
            settings: Arc::new(settings),
            endpoints: Arc::new(endpoints),
            report: Report::default(),
            trace: VecDeque::new(),
            next_id: 0,
        };
        for t in 0..tenants {
            sim.login(t);
        }
        sim.at(0, Ev::Day);
        for i in 0..sim.cfg.instances {
            let d = sim.exp(7 * DAY);
            sim.at(
                d,
                Ev::Crash {
                    inst: i,
                    periodic: true,
                },
            );
        }
        let d = sim.exp(30 * DAY);
        sim.at(d, Ev::RotateKey);
        for i in 0..sim.cfg.instances {
            sim.start_keeper(i);
        }
        sim
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        let when = self.now + delay;
        self.queue.push(Reverse((when, self.seq)));
        self.events.insert(self.seq, ev);
    }

    /// An exponentially distributed delay with this mean.
    fn exp(&mut self, mean: u64) -> u64 {
        let u: f64 = self.rng.random_range(1e-9..1.0);
        (-(u.ln()) * mean as f64) as u64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn time(&self, inst: usize) -> SystemTime {
        let skew = self.instances[inst].skew_ms;
        let t = self.base + Duration::from_millis(self.now);
        if skew >= 0 {
            t + Duration::from_millis(skew as u64)
        } else {
            t - Duration::from_millis(skew.unsigned_abs())
        }
    }

    fn note(&mut self, f: impl FnOnce() -> String) {
        if self.cfg.trace {
            if self.trace.len() >= 80 {
                self.trace.pop_front();
            }
            let line = format!("{:>12} {}", fmt_time(self.now), f());
            self.trace.push_back(line);
        }
    }

    fn violate(&mut self, what: String) {
        if self.report.violation.is_none() {
            self.note(|| format!("VIOLATION: {what}"));
            self.report.violation = Some(Violation { at: self.now, what });
        }
    }

    /// Runs the seed to its end (or its first violation).
    #[must_use]
    pub fn run(mut self) -> Report {
        let end = self.cfg.days * DAY;
        while let Some(Reverse((when, seq))) = self.queue.pop() {
            if when > end || self.report.violation.is_some() {
                break;
            }
            self.now = when;
            self.clock.store(when, Ordering::Relaxed);
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            self.report.events += 1;
            self.step(ev);
        }
        self.report.tenant_days = self.cfg.days * self.cfg.tenants as u64;
        self.finish_checks();
        if self.cfg.trace {
            self.report.trace = self.trace.drain(..).collect();
        }
        self.report
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Day => self.plan_day(),
            Ev::Call { tenant } => self.call(tenant),
            Ev::GiveUp { caller } => {
                if let Some(c) = self.callers.get_mut(&caller) {
                    c.cancelled = true;
                }
            }
            Ev::Resume { run } => self.advance(run),
            Ev::StoreDone {
                run,
                tenant,
                op,
                fail,
            } => self.store_done(run, tenant, op, fail),
            Ev::Arrive {
                run,
                send,
                body,
                path,
                fate,
            } => self.arrive(run, send, &body, path, fate),
            Ev::Answer { run, send, answer } => self.answer(run, send, answer),
            Ev::Crash { inst, periodic } => {
                if periodic {
                    let next = self.exp(7 * DAY);
                    self.at(
                        next,
                        Ev::Crash {
                            inst,
                            periodic: true,
                        },
                    );
                }
                self.crash(inst);
            }
            Ev::Restart { inst } => {
                self.instances[inst].up = true;
                self.note(|| format!("i{inst} restarts"));
                self.start_keeper(inst);
            }
            Ev::Revoke { tenant } => {
                if let Some(f) = self.tenant_family[tenant] {
                    let fam = &mut self.server.families[f as usize];
                    if fam.ended.is_none() {
                        fam.ended = Some(Ending::Customer);
                        fam.revoked_by_customer = true;
                        self.server.revoke_family(f);
                        self.note(|| format!("t{tenant}: the customer revokes access"));
                    }
                }
            }
            Ev::Relogin { tenant } => {
                self.relogin_due[tenant] = false;
                self.login(tenant);
            }
            Ev::Keep { inst, epoch } => {
                if self.instances[inst].up && self.instances[inst].epoch == epoch {
                    self.keep(inst);
                }
            }
            Ev::RotateKey => {
                self.server.rotate_key();
                self.note(|| "the server rotates its signing key".into());
                let d = self.exp(30 * DAY);
                self.at(d, Ev::RotateKey);
            }
        }
    }

    // --- workload -------------------------------------------------------------------

    fn plan_day(&mut self) {
        let day = self.now / DAY;
        for t in 0..self.cfg.tenants {
            let weekday = day % 7 < 5;
            let bursts = match self.profiles[t] {
                Profile::Busy => {
                    let p = if weekday { 0.9 } else { 0.3 };
                    if self.chance(p) {
                        self.rng.random_range(2..9)
                    } else {
                        0
                    }
                }
                Profile::Regular => {
                    if self.chance(0.3) {
                        self.rng.random_range(1..4)
                    } else {
                        0
                    }
                }
                Profile::Sporadic { idle_until_day } => {
                    if day < idle_until_day {
                        0
                    } else if self.chance(0.1) {
                        // A pause of one to eight weeks.
                        let weeks = self.rng.random_range(1..9);
                        self.profiles[t] = Profile::Sporadic {
                            idle_until_day: day + 7 * weeks,
                        };
                        0
                    } else {
                        self.rng.random_range(1..3)
                    }
                }
            };
            for _ in 0..bursts {
                let start = self.rng.random_range(7 * HOUR..19 * HOUR);
                let calls = self.rng.random_range(1..8);
                for _ in 0..calls {
                    let spread = self.rng.random_range(0..30 * SEC);
                    self.at(start + spread, Ev::Call { tenant: t });
                }
            }
            if self.chance(1.0 / 365.0) {
                let d = self.rng.random_range(0..DAY);
                self.at(d, Ev::Revoke { tenant: t });
            }
        }
        self.at(DAY, Ev::Day);
    }
}

/// Runs a store call on the memory store, which answers in place: one poll, no
/// executor (the simulation's time is virtual; a store that waited would be a bug here).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("the memory store answers in place"),
    }
}

/// A fresh key-set cache, as a client starts with.
fn key_cache() -> Arc<dyn KeyCache> {
    Arc::new(class_oauth_client::KeySets::new(
        class_oauth_core::DEFAULT_MAX_BODY,
    ))
}

fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new(ClientId::new(CLIENT), Some(ClientSecret::new("sim-secret")));
    c.id_token_algorithms = Some(vec![class_oauth_core::jose::Algorithm::ES256]);
    c
}

fn fmt_time(ms: u64) -> String {
    let d = ms / DAY;
    let h = (ms % DAY) / HOUR;
    let m = (ms % HOUR) / MIN;
    let s = (ms % MIN) as f64 / 1000.0;
    format!("{d}d{h:02}:{m:02}:{s:06.3}")
}

/// Runs `seed` under `cfg`.
#[must_use]
pub fn run(seed: u64, cfg: &Config) -> Report {
    Sim::new(seed, cfg.clone()).run()
}
