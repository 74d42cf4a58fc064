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
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use class_oauth_core::flow::{TransportError, TransportErrorKind};
use class_oauth_core::scope::Scopes;
use class_oauth_core::session::ClientConfig;
use class_oauth_core::{ClientId, ClientSecret, Endpoints, Environment, Password, Username};
use class_oauth_manager::keeper::{Keeper, KeeperAction};
use class_oauth_manager::machine::{
    Action, Finished, Mutation, RefreshMachine, StoreAnswer, StoreOp,
};
use class_oauth_manager::{
    InDoubtRule, KeeperSettings, ManagerError, ServeUntil, Settings, TokenEvent,
};
use class_oauth_store::{
    GrantStatus, HeldWrite, Lease, LeaseOutcome, MemoryStore, StoreError, StoredGrant, TenantKey,
    TokenStore,
};
use class_oauth_testkit::keys::{TestKey, corrupt_signature, jwks};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// Class's refresh-token lifetime (sliding in this model).
const RT_LIFETIME: u64 = 30 * DAY;
const ACCESS_LIFETIME_S: u64 = 899;
const ISSUER: &str = "https://class.sim.invalid";
const CLIENT: &str = "sim-client";

/// How the provider answers a refresh token presented a second time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behaviour {
    /// `400 invalid_grant` (Class's documented behaviour).
    InvalidGrant,
    /// `400 invalid_grant`, and the whole grant is revoked (its access tokens too).
    RevokeOnReuse,
    /// Within this window after its first use, the old token still works (a new pair
    /// is issued and the previous successor invalidated); after it, `invalid_grant`.
    Grace(Duration),
}

impl Behaviour {
    /// The three behaviours the figures are given for.
    pub const ALL: [Self; 3] = [
        Self::InvalidGrant,
        Self::RevokeOnReuse,
        Self::Grace(Duration::from_secs(60)),
    ];

    /// Parses `invalid-grant`, `revoke` or `grace`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "invalid-grant" => Some(Self::InvalidGrant),
            "revoke" => Some(Self::RevokeOnReuse),
            "grace" => Some(Self::Grace(Duration::from_secs(60))),
            _ => None,
        }
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidGrant => f.write_str("invalid-grant"),
            Self::RevokeOnReuse => f.write_str("revoke"),
            Self::Grace(_) => f.write_str("grace"),
        }
    }
}

/// One simulation's set-up.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Simulated days.
    pub days: u64,
    /// Tenants (businesses), each with its own grant.
    pub tenants: usize,
    /// Manager instances sharing the store.
    pub instances: usize,
    /// The provider's answer to reuse.
    pub behaviour: Behaviour,
    /// The in-doubt rule under test.
    pub rule: InDoubtRule,
    /// A deliberate bug (the proof that the simulator finds bugs).
    pub mutation: Mutation,
    /// A lease shorter than the transport's timeout (the fourth deliberate bug).
    pub short_lease: bool,
    /// Keep a trace of the last events (for a failing seed).
    pub trace: bool,
    /// Every instance runs the keeper ([`class_oauth_manager::keeper`]) with its default
    /// settings: idle grants are refreshed before their refresh token lapses.
    pub keeper: bool,
    /// Refresh tokens lapse 30 days after the login, whatever the refreshes (an absolute
    /// lifetime; the keeper, told so, announces each lapse instead of refreshing).
    pub absolute_lifetime: bool,
}

impl Config {
    /// Ten tenants on three instances for `days`, Class's documented behaviour, the
    /// manager's default in-doubt rule, no mutation.
    #[must_use]
    pub fn new(days: u64) -> Self {
        Self {
            days,
            tenants: 10,
            instances: 3,
            behaviour: Behaviour::InvalidGrant,
            rule: InDoubtRule::default(),
            mutation: Mutation::None,
            short_lease: false,
            trace: false,
            keeper: false,
            absolute_lifetime: false,
        }
    }
}

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

#[derive(Debug)]
enum RtState {
    Valid,
    Used { at: u64 },
    Dead,
}

#[derive(Debug)]
struct ServerRt {
    family: u64,
    state: RtState,
    issued_at: u64,
}

/// Where the newest refresh token of a grant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    /// In the store (or at login).
    Stored,
    /// In an answer on its way to a run.
    InFlight { run: u64 },
    /// Delivered to a run that has not finished.
    Delivered { run: u64 },
    /// Its answer was lost.
    AnswerLost,
    /// Its holder crashed.
    Crashed,
}

#[derive(Debug)]
struct Family {
    tenant: usize,
    latest_rt: String,
    latest_at: String,
    where_: Where,
    ended: Option<Ending>,
    revoked_by_customer: bool,
    revoked_on_reuse: bool,
    /// The grant ended in the store (the loss is counted once).
    counted: bool,
    /// The login (ms).
    started: u64,
    /// The lead times a keeper announced this grant's lapse at.
    announced: Vec<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Customer,
    Reuse,
}

struct Server {
    behaviour: Behaviour,
    rts: HashMap<String, ServerRt>,
    /// Access tokens issued: family, expiry (ms), withheld (failed validation).
    ats: HashMap<String, (u64, u64)>,
    families: Vec<Family>,
    counter: u64,
    keys: Vec<TestKey>,
    key_counter: u64,
    /// ID tokens that were sent corrupted: their access tokens must never be served.
    withheld: HashSet<String>,
}

impl Server {
    fn jwks_body(&self) -> Vec<u8> {
        let refs: Vec<&TestKey> = self.keys.iter().collect();
        serde_json::to_vec(&jwks(&refs)).unwrap_or_default()
    }

    fn rotate_key(&mut self) {
        self.key_counter += 1;
        let kid = format!("key-{}", self.key_counter);
        self.keys
            .push(TestKey::ec_p256().with_kid(Some(kid.as_str())));
        if self.keys.len() > 2 {
            self.keys.remove(0);
        }
    }

    fn new_family(&mut self, tenant: usize, now: u64) -> (u64, String, String) {
        let family = self.families.len() as u64;
        self.counter += 1;
        let rt = format!("rt-{family}-{}", self.counter);
        let at = format!("at-{family}-{}", self.counter);
        self.rts.insert(
            rt.clone(),
            ServerRt {
                family,
                state: RtState::Valid,
                issued_at: now,
            },
        );
        self.ats
            .insert(at.clone(), (family, now + ACCESS_LIFETIME_S * SEC));
        self.families.push(Family {
            tenant,
            latest_rt: rt.clone(),
            latest_at: at.clone(),
            where_: Where::Stored,
            ended: None,
            revoked_by_customer: false,
            revoked_on_reuse: false,
            counted: false,
            started: now,
            announced: Vec::new(),
        });
        (family, rt, at)
    }

    fn revoke_family(&mut self, family: u64) {
        for rt in self.rts.values_mut() {
            if rt.family == family {
                rt.state = RtState::Dead;
            }
        }
        self.ats.retain(|_, (f, _)| *f != family);
    }

    fn token_json(at: &str, rt: &str, id_token: Option<String>) -> Vec<u8> {
        let mut body = json!({
            "access_token": at,
            "token_type": "bearer",
            "expires_in": ACCESS_LIFETIME_S,
            "refresh_token": rt,
            "scope": "openid offline_access target:b/SIMBIZ fund.read",
        });
        if let Some(t) = id_token {
            body["id_token"] = json!(t);
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

fn json_response(status: u16, body: Vec<u8>) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json;charset=UTF-8")
        .body(body)
        .unwrap_or_default()
}

fn oauth_error(status: u16, code: &str) -> http::Response<Vec<u8>> {
    json_response(
        status,
        serde_json::to_vec(&json!({"error": code, "error_description": "sim"})).unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------------
// The manager instances.

struct CacheEntry {
    grant: StoredGrant,
    until: ServeUntil,
}

struct Instance {
    up: bool,
    epoch: u32,
    skew_ms: i64,
    config: ClientConfig,
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

    fn login(&mut self, tenant: usize) {
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

    fn call(&mut self, tenant: usize) {
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

    fn start_run(&mut self, inst: usize, tenant: usize, caller: u64) {
        self.start_procedure(inst, tenant, vec![caller], None, false);
    }

    /// Starts a refresh procedure on `inst` for `tenant`: for callers, or forced at
    /// `force` by the keeper.
    fn start_procedure(
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
            // The simulated provider issues no ID tokens: no key set.
            None,
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

    fn start_keeper(&mut self, inst: usize) {
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
    fn keep(&mut self, inst: usize) {
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

    fn respond(&mut self, caller: u64, result: Result<StoredGrant, ManagerError>) {
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

    fn grant_reported_dead(&mut self, tenant: usize, e: &ManagerError) {
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

    fn advance(&mut self, run: u64) {
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

    fn check_lease(&mut self, run: u64, what: &str) {
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

    fn store_op(&mut self, run: u64, op: StoreOp) {
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

    fn store_done(&mut self, run: u64, tenant: usize, op: StoreOp, fail: StoreFault) {
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
    fn apply(&mut self, run: u64, op: StoreOp, tenant: usize) -> StoreAnswer {
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
    fn stored_rt(&self, tenant: usize) -> Option<String> {
        block_on(self.store.load(&self.keys[tenant]))
            .ok()
            .flatten()
            .and_then(|g| g.tokens.refresh_token.map(|t| t.secret().to_owned()))
    }

    /// After any store write: where the newest refresh token is, and whether it is lost.
    fn after_store(&mut self, tenant: usize) {
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

    fn send(&mut self, run: u64, req: http::Request<Vec<u8>>) {
        self.check_lease(run, "sending a request");
        let send = self.id();
        let path = if req.uri().path().ends_with("jwks") {
            ReqKind::Keys
        } else {
            ReqKind::Token
        };
        if let Some(r) = self.runs.get_mut(&run) {
            r.awaiting = Some(send);
        }
        let lat = |rng: &mut ChaCha8Rng| {
            if rng.random_bool(0.002) {
                rng.random_range(1_000..40_000)
            } else {
                rng.random_range(5..150)
            }
        };
        let mut fate = Fate {
            to_server: Some(lat(&mut self.rng)),
            back: Some(lat(&mut self.rng)),
            proxy: None,
        };
        match self.rng.random_range(0..10_000) {
            0..20 => {
                // Refused before anything was sent.
                self.report.faults += 1;
                self.note(|| format!("r{run}: connection refused"));
                let e = TransportError::new(TransportErrorKind::Connect, "sim: connection refused");
                return self.at(
                    1,
                    Ev::Answer {
                        run,
                        send,
                        answer: Err(e),
                    },
                );
            }
            20..30 => fate.to_server = None,
            30..40 => fate.back = None,
            40..60 => fate.proxy = Some(Proxy::Unavailable),
            60..70 => fate.proxy = Some(Proxy::RateLimited),
            70..80 => {
                let after = self.chance(0.5);
                fate.proxy = Some(Proxy::Html { after });
            }
            _ => {}
        }
        if fate.to_server.is_none() || fate.back.is_none() || fate.proxy.is_some() {
            self.report.faults += 1;
        }
        // The client gives up at its timeout.
        let total = fate.to_server.unwrap_or(u64::MAX / 4) + fate.back.unwrap_or(u64::MAX / 4);
        if total >= TIMEOUT {
            let e = TransportError::new(TransportErrorKind::Timeout, "sim: timed out");
            self.at(
                TIMEOUT,
                Ev::Answer {
                    run,
                    send,
                    answer: Err(e),
                },
            );
        }
        if let Some(d) = fate.to_server {
            if d < TIMEOUT {
                let body = req.into_body();
                self.at(
                    d,
                    Ev::Arrive {
                        run,
                        send,
                        body,
                        path,
                        fate,
                    },
                );
            }
        }
    }

    fn arrive(&mut self, run: u64, send: u64, body: &[u8], path: ReqKind, fate: Fate) {
        let back = fate.back;
        let reply = |sim: &mut Self, resp: http::Response<Vec<u8>>| {
            if let Some(b) = back {
                if let Some(to) = fate.to_server {
                    if to + b < TIMEOUT {
                        sim.at(
                            b,
                            Ev::Answer {
                                run,
                                send,
                                answer: Ok(resp),
                            },
                        );
                    }
                }
            }
        };
        if path == ReqKind::Keys {
            if self.chance(0.02) {
                self.report.faults += 1;
                return reply(self, oauth_error(503, "temporarily_unavailable"));
            }
            let body = self.server.jwks_body();
            return reply(self, json_response(200, body));
        }
        match fate.proxy {
            Some(Proxy::Unavailable) => {
                return reply(self, oauth_error(503, "temporarily_unavailable"));
            }
            Some(Proxy::RateLimited) => {
                let resp = http::Response::builder()
                    .status(429)
                    .header("retry-after", "1")
                    .body(Vec::new())
                    .unwrap_or_default();
                return reply(self, resp);
            }
            _ => {}
        }
        self.report.refresh_requests += 1;
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let presented = form.get("refresh_token").cloned().unwrap_or_default();
        let delivered = fate.proxy.is_none()
            && matches!((fate.to_server, back), (Some(to), Some(b)) if to + b < TIMEOUT);
        let resp = self.refresh_at_server(run, &presented, delivered);
        if let Some(Proxy::Html { after: true }) = fate.proxy {
            // The server committed; a proxy page goes back instead.
            if let Some(f) = self.server.rts.get(&presented).map(|r| r.family) {
                let fam = &mut self.server.families[f as usize];
                if matches!(fam.where_, Where::InFlight { run: r } if r == run) {
                    fam.where_ = Where::AnswerLost;
                }
            }
        }
        match fate.proxy {
            Some(Proxy::Html { .. }) => {
                let page = http::Response::builder()
                    .status(502)
                    .header("content-type", "text/html")
                    .body(b"<html><body>502 Bad Gateway</body></html>".to_vec())
                    .unwrap_or_default();
                reply(self, page);
            }
            _ => reply(self, resp),
        }
    }

    /// The server's refresh grant.
    fn refresh_at_server(
        &mut self,
        run: u64,
        presented: &str,
        delivered: bool,
    ) -> http::Response<Vec<u8>> {
        let now = self.now;
        let Some(rt) = self.server.rts.get(presented) else {
            return oauth_error(400, "invalid_grant");
        };
        let family = rt.family;
        let issued_at = if self.cfg.absolute_lifetime {
            self.server.families[family as usize].started
        } else {
            rt.issued_at
        };
        let reuse_at = match rt.state {
            RtState::Valid => None,
            RtState::Used { at } => Some(at),
            RtState::Dead => return oauth_error(400, "invalid_grant"),
        };
        if now.saturating_sub(issued_at) > RT_LIFETIME {
            return oauth_error(400, "invalid_grant");
        }
        if let Some(first) = reuse_at {
            // Presented twice: only the in-doubt rule may do that.
            let by_rule = self
                .runs
                .get(&run)
                .is_some_and(|r| r.machine.presents_in_doubt());
            if !by_rule {
                let t = self.server.families[family as usize].tenant;
                self.violate(format!(
                    "t{t}: r{run} presented refresh token {presented} a second time, not by the in-doubt rule"
                ));
            }
            self.report.reuses += 1;
            match self.server.behaviour {
                Behaviour::InvalidGrant => return oauth_error(400, "invalid_grant"),
                Behaviour::RevokeOnReuse => {
                    let fam = &mut self.server.families[family as usize];
                    if fam.ended.is_none() {
                        fam.ended = Some(Ending::Reuse);
                        fam.revoked_on_reuse = true;
                    }
                    self.server.revoke_family(family);
                    return oauth_error(400, "invalid_grant");
                }
                Behaviour::Grace(window) => {
                    if now - first > window.as_millis() as u64 {
                        return oauth_error(400, "invalid_grant");
                    }
                    // The previous successor stops working.
                    let prev = self.server.families[family as usize].latest_rt.clone();
                    if let Some(p) = self.server.rts.get_mut(&prev) {
                        if matches!(p.state, RtState::Valid) {
                            p.state = RtState::Used { at: now };
                        }
                    }
                }
            }
        }
        if let Some(r) = self.server.rts.get_mut(presented) {
            if reuse_at.is_none() {
                r.state = RtState::Used { at: now };
            }
        }
        // Rotate.
        self.server.counter += 1;
        let n = self.server.counter;
        let new_rt = format!("rt-{family}-{n}");
        let new_at = format!("at-{family}-{n}");
        self.server.rts.insert(
            new_rt.clone(),
            ServerRt {
                family,
                state: RtState::Valid,
                issued_at: now,
            },
        );
        self.server
            .ats
            .insert(new_at.clone(), (family, now + ACCESS_LIFETIME_S * SEC));
        self.report.rotations += 1;
        let fam = &mut self.server.families[family as usize];
        fam.latest_rt = new_rt.clone();
        fam.latest_at = new_at.clone();
        fam.where_ = if delivered {
            Where::InFlight { run }
        } else {
            Where::AnswerLost
        };
        let tenant = fam.tenant;
        self.note(|| format!("server t{tenant}: {presented} -> {new_rt}"));
        // Now and then an ID token (signed with the newest key; now and then broken).
        let id_token = if self.chance(0.03) {
            let claims = json!({
                "iss": ISSUER,
                "aud": CLIENT,
                "sub": format!("user-{tenant}"),
                "iat": self.base_secs() + now / SEC,
                "exp": self.base_secs() + now / SEC + 300,
            });
            let key = self.server.keys.last().unwrap_or_else(|| unreachable!());
            let token = key.sign("ES256", &claims, &json!({}));
            if self.chance(0.05) {
                self.server.withheld.insert(new_at.clone());
                Some(corrupt_signature(&token))
            } else {
                Some(token)
            }
        } else {
            None
        };
        json_response(200, Server::token_json(&new_at, &new_rt, id_token))
    }

    fn base_secs(&self) -> u64 {
        self.base
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn answer(
        &mut self,
        run: u64,
        send: u64,
        answer: Result<http::Response<Vec<u8>>, TransportError>,
    ) {
        let Some((inst, epoch, awaiting)) =
            self.runs.get(&run).map(|r| (r.inst, r.epoch, r.awaiting))
        else {
            return self.lost_answer(run, &answer);
        };
        if awaiting != Some(send) || epoch != self.instances[inst].epoch {
            return;
        }
        let now = self.time(inst);
        let Some(r) = self.runs.get_mut(&run) else {
            return;
        };
        r.awaiting = None;
        let tenant = r.tenant;
        // A rotated token reaches its run.
        if let Ok(resp) = &answer {
            if resp.status() == 200 {
                if let Some(rt) = serde_json::from_slice::<serde_json::Value>(resp.body())
                    .ok()
                    .and_then(|v| v["refresh_token"].as_str().map(str::to_owned))
                {
                    r.unwritten = Some(rt.clone());
                    if let Some(f) = self.tenant_family[tenant] {
                        let fam = &mut self.server.families[f as usize];
                        if fam.latest_rt == rt {
                            fam.where_ = Where::Delivered { run };
                        }
                    }
                }
            }
        }
        self.check_lease(run, "handling the answer");
        let status = match &answer {
            Ok(resp) => resp.status().as_u16().to_string(),
            Err(e) => e.kind.as_str().to_owned(),
        };
        self.note(|| format!("r{run}: answer {status}"));
        let Some(r) = self.runs.get_mut(&run) else {
            return;
        };
        match answer {
            Ok(resp) => r.machine.handle_response(now, resp),
            Err(e) => r.machine.handle_transport_failure(now, e),
        }
        self.advance(run);
    }

    /// An answer for a run that no longer exists (its process died): the rotated
    /// token in it is lost.
    fn lost_answer(&mut self, run: u64, answer: &Result<http::Response<Vec<u8>>, TransportError>) {
        if answer.is_ok() {
            for fam in &mut self.server.families {
                if fam.where_ == (Where::InFlight { run }) {
                    fam.where_ = Where::Crashed;
                }
            }
        }
    }

    fn finished(&mut self, run: u64, f: Finished) {
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

    fn crash(&mut self, inst: usize) {
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
    fn grant_ended(&mut self, tenant: usize, reason: String) {
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

    fn finish_checks(&mut self) {
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

fn failed_answer(op: &StoreOp) -> StoreAnswer {
    let e = StoreError::Backend("sim: the database connection dropped".into());
    match op {
        StoreOp::Load => StoreAnswer::Loaded(Err(e)),
        StoreOp::AcquireLease(_) => StoreAnswer::Lease(Err(e)),
        StoreOp::Update(_) => StoreAnswer::Updated(Err(e)),
        _ => StoreAnswer::Released(Err(e)),
    }
}

fn op_name(op: &StoreOp) -> String {
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

fn answer_name(a: &StoreAnswer) -> String {
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
