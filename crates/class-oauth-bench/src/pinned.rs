//! Section 1, one refresh_token grant per call, measured so that the library's own cost
//! shows:
//! - an in-process hyper server on a runtime thread of its own, with the client and the
//!   server pinned to one CPU (the default; `--split` pins them to two), so no
//!   cross-CPU wake-up hides or inflates anything;
//! - every variant built once, connections kept alive (new connections counted and
//!   reported);
//! - rounds interleaved with the order rotated each round, and each variant's time
//!   divided by its raw floor's *in the same round* (the floor is the same HTTP client
//!   doing the same request by hand, parsed into a struct with serde): medians and the
//!   spread of those paired ratios;
//! - client CPU = this process's CPU clock (`CLOCK_PROCESS_CPUTIME_ID`, ns) minus the
//!   server thread's (`/proc/self/task/<tid>/schedstat`; on one CPU it is never running
//!   when read, so its count is exact);
//! - a digest of every parsed response (access-token length, `expires_in`, scope count),
//!   checked, so a variant that parses less cannot look faster;
//! - the same Class-shaped body everywhere (an 800-character access token, `expires_in`
//!   899, four scopes).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use class_oauth_core::flow::{OnFailure, Step, TokenFlow};
use class_oauth_core::scope::Scopes;
use class_oauth_core::token::TokenRequest;
use class_oauth_core::{Client, ClientId, ClientSecret, Environment, IssuerUrl, RefreshToken};
use http_body_util::{BodyExt, Full};
use oauth2::TokenResponse as _;

use crate::harness::{fmt_ns, median};

use concurrent::concurrent;
pub(crate) use server::{Server, start_server};
use server::{pin, process_cpu_ns};

const ID: &str = "1eaa3979-9caf-4c6b-bab8-2cbcd549d410";
const SECRET: &str = "bench-secret";
const RT: &str = "9e0fccdb-ec4f-4e6a-ae60-83ad66be9547";
const FORM: &str = "grant_type=refresh_token&refresh_token=9e0fccdb-ec4f-4e6a-ae60-83ad66be9547";
const SCOPE: &str = "target:b/OAUTH_TEST offline_access business.fund.create fund.read";

/// The Class-shaped token response.
pub(crate) fn body() -> Vec<u8> {
    let token: String = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImNsYXNzIn0."
        .chars()
        .chain(std::iter::repeat('x'))
        .take(800)
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": 899,
        "refresh_token": RT,
        "scope": SCOPE,
        "BusinessName": "OAuth Test Business",
        "BusinessCode": "OAUTH_TEST",
    }))
    .expect("json")
}

/// What every variant must have parsed from one response.
const DIGEST: u64 = 800 + 899 + 4 * 1000;

fn digest(token_len: usize, expires_in: u64, scopes: usize) -> u64 {
    token_len as u64 + expires_in + scopes as u64 * 1000
}

/// The floor's parse: serde into a struct.
#[derive(serde::Deserialize)]
struct Raw {
    access_token: String,
    expires_in: u64,
    scope: String,
    #[allow(dead_code, reason = "parsed as the library parses it")]
    refresh_token: String,
}

fn raw_digest(body: &[u8]) -> u64 {
    let r: Raw = serde_json::from_slice(body).expect("json");
    digest(
        r.access_token.len(),
        r.expires_in,
        r.scope.split(' ').count(),
    )
}

fn ours_digest(t: &class_oauth_core::flow::ValidatedTokens) -> u64 {
    digest(
        t.tokens.access_token.secret().len(),
        t.tokens.expires_in.unwrap_or(0),
        t.tokens.scopes.iter().count(),
    )
}

fn oauth2_digest(t: &oauth2::basic::BasicTokenResponse) -> u64 {
    digest(
        t.access_token().secret().len(),
        t.expires_in().map_or(0, |d| d.as_secs()),
        t.scopes().map_or(0, Vec::len),
    )
}

/// The raw floor's grant on a reqwest client (0.13 or 0.12: two types, one text): the
/// request by hand, the body parsed into a struct; its digest.
macro_rules! raw_reqwest_grant {
    ($client:expr, $url:expr, $auth:expr) => {
        raw_digest(
            &$client
                .post($url)
                .header("authorization", $auth)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .body(FORM)
                .send()
                .await
                .expect("send")
                .bytes()
                .await
                .expect("body"),
        )
    };
}

fn our_client(base: &str) -> Client {
    Client::new(
        ClientId::new(ID),
        Environment::Custom(IssuerUrl::new(base).expect("issuer")).preset(),
    )
    .with_secret(ClientSecret::new(SECRET))
}

/// The reqwest transport as `ClassClient::builder(..).build()` makes it.
fn our_reqwest() -> class_oauth_reqwest::ReqwestTransport {
    class_oauth_reqwest::ReqwestTransport::with_config(
        class_oauth_reqwest::TransportConfig::default().proxy(class_oauth_reqwest::ProxyMode::Off),
    )
    .expect("reqwest transport")
}

/// The token set a previous grant stored (parsed once from the same body).
static STORED: std::sync::LazyLock<class_oauth_core::token::TokenSet> =
    std::sync::LazyLock::new(|| {
        let first = TokenRequest::refresh_token(
            RefreshToken::new(RT),
            Scopes::parse(SCOPE).expect("scopes"),
        );
        class_oauth_core::flow::drive_blocking(
            TokenFlow::new(&our_client("http://127.0.0.1"), first),
            SystemTime::now,
            |_| Ok(http::Response::new(body())),
            |_| {},
        )
        .expect("the stored grant")
        .tokens
    });

/// The request a refresh makes: from the stored token set, as the token manager builds
/// it (`TokenRequest::refresh`).
fn our_request() -> TokenRequest {
    TokenRequest::refresh(&STORED).expect("a refresh token")
}

type Oauth2Client = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn oauth2_client(base: &str) -> Oauth2Client {
    oauth2::basic::BasicClient::new(oauth2::ClientId::new(ID.into()))
        .set_client_secret(oauth2::ClientSecret::new(SECRET.into()))
        .set_token_uri(oauth2::TokenUrl::new(format!("{base}/connect/token")).expect("url"))
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ID}:{SECRET}"))
    )
}

/// A flow that sends a request built beforehand and parses the answer as the floor does:
/// a transport and its driver with the core's own work taken out.
struct Prebuilt {
    request: Option<http::Request<Vec<u8>>>,
    digest: Option<u64>,
}

impl Prebuilt {
    fn new(request: &http::Request<Vec<u8>>) -> Self {
        Self {
            request: Some(request.clone()),
            digest: None,
        }
    }
}

impl class_oauth_core::flow::Flow for Prebuilt {
    type Output = u64;

    fn poll(&mut self, _: SystemTime) -> Step<u64> {
        match (self.request.take(), self.digest) {
            (Some(request), _) => Step::Send(request),
            (None, Some(digest)) => Step::Done(Ok(digest)),
            (None, None) => Step::Done(Err(class_oauth_core::error::InputError::InvalidValue {
                field: "flow",
                detail: "no response".into(),
            }
            .into())),
        }
    }

    fn handle_response(&mut self, _: SystemTime, response: http::Response<Vec<u8>>) {
        self.digest = Some(raw_digest(response.body()));
    }

    fn handle_transport_failure(&mut self, _: SystemTime) -> OnFailure {
        OnFailure::Abort
    }
}

/// One variant: a name, the floor it is paired with, and one call returning its digest.
struct Variant<'a> {
    name: &'static str,
    floor: &'static str,
    call: Box<dyn FnMut() -> u64 + 'a>,
    iters: u64,
    wall: Vec<f64>,
    cpu: Vec<f64>,
    connections: u64,
}

/// One row of the result.
pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) floor: &'static str,
    pub(crate) wall_ns: f64,
    pub(crate) cpu_ns: f64,
    /// Median and quartiles of the paired per-sample ratios to the floor.
    pub(crate) wall_ratio: (f64, f64, f64),
    pub(crate) cpu_ratio: (f64, f64, f64),
    pub(crate) connections: u64,
}

/// Short samples, many of them: this machine's slow spells (a neighbour on the host)
/// last tens of milliseconds, and a ratio of two 5 ms batches taken side by side sees
/// the same spell on both sides far more often than one of two 40 ms batches taken half
/// a second apart (the method before, whose per-round ratios ranged 0.5x to 3x here).
const SAMPLES_PER_ROUND: usize = 8;

/// Median and quartiles.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        v.get(((v.len() - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.25), at(0.75))
}

fn measure(server: Option<&Server>, variants: &mut [Variant<'_>], rounds: usize) -> Vec<Row> {
    // `BENCH_PROFILE=<variant name>`: run that variant alone for 5 s (for perf record).
    if let Ok(which) = std::env::var("BENCH_PROFILE") {
        if let Some(v) = variants.iter_mut().find(|v| v.name == which) {
            let t = Instant::now();
            let mut calls = 0u64;
            while t.elapsed() < Duration::from_secs(5) {
                (v.call)();
                calls += 1;
            }
            // The count turns event totals (perf stat) into per-call figures.
            eprintln!("profiled {which}: {calls} calls");
            std::process::exit(0);
        }
        return Vec::new();
    }
    const BATCH: Duration = Duration::from_millis(5);
    // Calibrate (and warm up: connections opened, caches filled).
    for v in variants.iter_mut() {
        let mut iters = 1u64;
        loop {
            let t = Instant::now();
            for _ in 0..iters {
                assert_eq!((v.call)(), DIGEST, "{}: wrong parse", v.name);
            }
            if t.elapsed() >= BATCH || iters >= 1 << 22 {
                break;
            }
            iters *= 2;
        }
        v.iters = iters;
    }
    // Each variant next to its floor: groups (a floor and the variants measured against
    // it) in an order rotated every sample, and inside a group forward then backward
    // (A B B A), so a slow spell of the machine falls on both sides of a ratio.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        match groups.iter_mut().find(|g| variants[g[0]].floor == v.floor) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    for sample in 0..rounds * SAMPLES_PER_ROUND {
        for g in 0..groups.len() {
            let group = &groups[(sample + g) % groups.len()];
            for k in 0..group.len() {
                let at = if sample % 2 == 0 {
                    k
                } else {
                    group.len() - 1 - k
                };
                let v = &mut variants[group[at]];
                let conns = server.map(|s| s.connections.load(Ordering::Relaxed));
                let (cpu0, srv0) = (process_cpu_ns(), server.map_or(0, Server::cpu_ns));
                let t = Instant::now();
                let mut sum = 0;
                for _ in 0..v.iters {
                    sum += (v.call)();
                }
                let wall = t.elapsed().as_nanos() as f64;
                let client_cpu = (process_cpu_ns() - cpu0)
                    .saturating_sub(server.map_or(0, Server::cpu_ns) - srv0)
                    as f64;
                assert_eq!(sum, DIGEST * v.iters, "{}: wrong parse", v.name);
                v.wall.push(wall / v.iters as f64);
                v.cpu.push(client_cpu / v.iters as f64);
                if let (Some(before), Some(s)) = (conns, server) {
                    v.connections += s.connections.load(Ordering::Relaxed) - before;
                }
            }
        }
    }
    let index = |name: &str| variants.iter().position(|v| v.name == name);
    variants
        .iter()
        .map(|v| {
            let floor = &variants[index(v.floor).expect("floor variant")];
            let ratios = |a: &[f64], b: &[f64]| -> Vec<f64> {
                a.iter().zip(b).map(|(x, y)| x / y).collect()
            };
            Row {
                name: v.name,
                floor: v.floor,
                wall_ns: median(&v.wall),
                cpu_ns: median(&v.cpu),
                wall_ratio: spread(&ratios(&v.wall, &floor.wall)),
                cpu_ratio: spread(&ratios(&v.cpu, &floor.cpu)),
                connections: v.connections,
            }
        })
        .collect()
}

/// Section results.
pub(crate) struct Results {
    pub(crate) grants: Vec<Row>,
    pub(crate) no_io: Vec<Row>,
    /// (variant, floor, median requests/s, median ratio to the floor's).
    pub(crate) concurrent: Vec<(&'static str, f64, (f64, f64, f64))>,
    pub(crate) split: bool,
}

/// Runs the section on a thread of its own (pinned), so the later sections run
/// unpinned on the main thread.
pub(crate) fn run(rounds: usize, split: bool) -> Results {
    std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || run_pinned(rounds, split))
        .expect("client thread")
        .join()
        .expect("the section ran")
}

fn run_pinned(rounds: usize, split: bool) -> Results {
    pin(0);
    let server = start_server(if split { 1 } else { 0 });
    let base = server.base.clone();
    let url = format!("{base}/connect/token");
    let auth = basic();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reqwest13 = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest 0.13");
    let reqwest12 = reqwest012::Client::builder()
        .redirect(reqwest012::redirect::Policy::none())
        .build()
        .expect("reqwest 0.12");
    // Our transports as `ClassClient::builder(..).build()` makes them (timeouts, no
    // redirects, a body cap), the proxy off as no environment names one here.
    let ours_async = our_reqwest();
    let ours_blocking = class_oauth_ureq::UreqTransport::with_config(
        class_oauth_reqwest::TransportConfig::default().proxy(class_oauth_reqwest::ProxyMode::Off),
    )
    .expect("ureq transport");
    let ureq3 = ureq::Agent::new_with_defaults();
    let ureq2 = oauth2::ureq::AgentBuilder::new().redirects(0).build();
    let client = our_client(&base);
    let peer = oauth2_client(&base);

    // Where the time goes: our transport and driver with the core's work taken out (the
    // request built once, the response parsed as the floor parses it), and the floor
    // with the total timeout our default client has.
    let prebuilt = TokenRequest::to_http(&our_request(), &client).expect("the request");
    let timed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(class_oauth_reqwest::TransportConfig::default().timeout)
        .build()
        .expect("reqwest 0.13 with a timeout");
    let raw13 = || rt.block_on(async { raw_reqwest_grant!(reqwest13, &url, &auth) });
    let mut grants = vec![
        Variant::new(
            "raw reqwest 0.13 (floor)",
            "raw reqwest 0.13 (floor)",
            raw13,
        ),
        Variant::new("class-oauth-reqwest", "raw reqwest 0.13 (floor)", || {
            let t = rt
                .block_on(class_oauth_reqwest::drive(
                    &ours_async,
                    TokenFlow::new(&client, our_request()),
                ))
                .expect("grant");
            ours_digest(&t)
        }),
        Variant::new(
            "raw reqwest 0.12 (floor)",
            "raw reqwest 0.12 (floor)",
            || rt.block_on(async { raw_reqwest_grant!(reqwest12, &url, &auth) }),
        ),
        Variant::new(
            "oauth2-rs 5 on reqwest 0.12",
            "raw reqwest 0.12 (floor)",
            || {
                let t = rt
                    .block_on(
                        peer.exchange_refresh_token(&oauth2::RefreshToken::new(RT.into()))
                            .request_async(&reqwest12),
                    )
                    .expect("grant");
                oauth2_digest(&t)
            },
        ),
        Variant::new("raw ureq 3 (floor)", "raw ureq 3 (floor)", || {
            let mut r = ureq3
                .post(&url)
                .header("authorization", &auth)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .send(FORM)
                .expect("send");
            raw_digest(&r.body_mut().read_to_vec().expect("body"))
        }),
        Variant::new("class-oauth-ureq", "raw ureq 3 (floor)", || {
            let t = class_oauth_ureq::drive(&ours_blocking, TokenFlow::new(&client, our_request()))
                .expect("grant");
            ours_digest(&t)
        }),
        Variant::new("raw ureq 2 (floor)", "raw ureq 2 (floor)", || {
            let r = ureq2
                .post(&url)
                .set("authorization", &auth)
                .set("content-type", "application/x-www-form-urlencoded")
                .set("accept", "application/json")
                .send_string(FORM)
                .expect("send");
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut r.into_reader(), &mut body).expect("body");
            raw_digest(&body)
        }),
        Variant::new("oauth2-rs 5 on ureq 2", "raw ureq 2 (floor)", || {
            let t = peer
                .exchange_refresh_token(&oauth2::RefreshToken::new(RT.into()))
                .request(&ureq2)
                .expect("grant");
            oauth2_digest(&t)
        }),
    ];
    grants.extend([
        Variant::new(
            "  reqwest: transport + driver",
            "raw reqwest 0.13 (floor)",
            || {
                rt.block_on(class_oauth_reqwest::drive(
                    &ours_async,
                    Prebuilt::new(&prebuilt),
                ))
                .expect("grant")
            },
        ),
        Variant::new(
            "  raw reqwest 0.13 + timeout",
            "raw reqwest 0.13 (floor)",
            || rt.block_on(async { raw_reqwest_grant!(timed, &url, &auth) }),
        ),
        Variant::new("  ureq: transport + driver", "raw ureq 3 (floor)", || {
            class_oauth_ureq::drive(&ours_blocking, Prebuilt::new(&prebuilt)).expect("grant")
        }),
    ]);
    let grants = measure(Some(&server), &mut grants, rounds);

    // Without sockets: building the request and parsing the canned response.
    let canned = {
        let mut r = http::Response::new(body());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json;charset=UTF-8"),
        );
        r
    };
    let now = SystemTime::now();
    let mut no_io = vec![
        Variant::new(
            "hand-rolled http::Request + serde (floor)",
            "hand-rolled http::Request + serde (floor)",
            || {
                let req = http::Request::post(&url)
                    .header(http::header::AUTHORIZATION, &auth)
                    .header(
                        http::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .header(http::header::ACCEPT, "application/json")
                    .body(FORM.as_bytes().to_vec())
                    .expect("request");
                std::hint::black_box(&req);
                raw_digest(std::hint::black_box(canned.clone()).body())
            },
        ),
        Variant::new(
            "class-oauth-core TokenFlow",
            "hand-rolled http::Request + serde (floor)",
            || {
                let t = class_oauth_core::flow::drive_blocking(
                    TokenFlow::new(&client, our_request()),
                    || now,
                    |req| {
                        std::hint::black_box(&req);
                        Ok(canned.clone())
                    },
                    |_| {},
                )
                .expect("grant");
                ours_digest(&t)
            },
        ),
        Variant::new(
            "oauth2-rs 5 (no I/O)",
            "hand-rolled http::Request + serde (floor)",
            || {
                let t = peer
                    .exchange_refresh_token(&oauth2::RefreshToken::new(RT.into()))
                    .request(&|req: oauth2::HttpRequest| {
                        std::hint::black_box(&req);
                        Ok::<_, Infallible>(canned.clone())
                    })
                    .expect("grant");
                oauth2_digest(&t)
            },
        ),
    ];
    let no_io = measure(None, &mut no_io, rounds);

    let concurrent = concurrent(&rt, &base, &reqwest13, &reqwest12, rounds);
    Results {
        grants,
        no_io,
        concurrent,
        split,
    }
}

impl<'a> Variant<'a> {
    fn new(name: &'static str, floor: &'static str, call: impl FnMut() -> u64 + 'a) -> Self {
        Self {
            name,
            floor,
            call: Box::new(call),
            iters: 0,
            wall: Vec::new(),
            cpu: Vec::new(),
            connections: 0,
        }
    }
}

/// Prints the section.
pub(crate) fn print(r: &Results) {
    println!(
        "1. One refresh_token grant per call (in-process hyper server, Class-shaped 1 KB body; client and server pinned to {}; paired ratios to the raw floor on the same HTTP client, each of 5 ms batches side by side: median [quartiles])",
        if r.split {
            "CPUs 0 and 1 (--split)"
        } else {
            "CPU 0"
        }
    );
    println!(
        "   {:<30} {:>10} {:>10} {:>24} {:>24} {:>6}",
        "variant", "wall", "client CPU", "wall vs floor", "CPU vs floor", "conns"
    );
    for row in r.grants.iter().chain(&r.no_io) {
        let fmt = |(m, lo, hi): (f64, f64, f64)| format!("{m:.3}x [{lo:.2}..{hi:.2}]");
        println!(
            "   {:<30} {:>10} {:>10} {:>24} {:>24} {:>6}",
            row.name,
            fmt_ns(row.wall_ns),
            fmt_ns(row.cpu_ns),
            if row.name == row.floor {
                "floor".into()
            } else {
                fmt(row.wall_ratio)
            },
            if row.name == row.floor {
                "floor".into()
            } else {
                fmt(row.cpu_ratio)
            },
            row.connections
        );
    }
    println!(
        "   64 concurrent tasks on one client (pinned client thread, 250 ms windows side by side; median [quartiles]):"
    );
    for (name, rps, (m, lo, hi)) in &r.concurrent {
        println!("   {name:<30} {rps:>10.0} req/s   {m:.3}x of its floor [{lo:.2}..{hi:.2}]");
    }
    println!();
}

// After the macros above, which they use.
mod concurrent;
mod server;
