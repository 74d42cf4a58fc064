//! The conformance runner: every fixture under `fixtures/` through the core in memory,
//! the async transport (reqwest) and the blocking transport (ureq) against a mock server,
//! with the same flow code, the same checks, and a cross-check that async and blocking
//! produced the same outcome. `cargo xtask conformance` prints the matrix.

#![forbid(unsafe_code)]

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use class_oauth_fixtures::{
    Fixture, check_outcome, check_request, drive_error_outcome, expected_request_count, load_all,
    prepare, replay_core,
};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Timeout the transports use in the conformance run (the slow fixture sleeps longer).
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// The result of one column.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Passed, with the outcome.
    Pass(Value),
    /// Failed, with the reason.
    Fail(String),
    /// Not applicable (the core cannot show transport faults).
    Skip,
}

impl Cell {
    fn mark(&self) -> &'static str {
        match self {
            Self::Pass(_) => "ok",
            Self::Fail(_) => "FAIL",
            Self::Skip => "-",
        }
    }
}

/// One fixture's row.
#[derive(Clone, Debug)]
pub struct Row {
    /// Fixture name.
    pub name: String,
    /// Core, in memory.
    pub core: Cell,
    /// Async transport.
    pub async_: Cell,
    /// Blocking transport.
    pub blocking: Cell,
    /// Async and blocking differ.
    pub divergence: Option<String>,
}

impl Row {
    /// Did every column pass (or skip) and the transports agree?
    #[must_use]
    pub fn passed(&self) -> bool {
        !matches!(self.core, Cell::Fail(_))
            && matches!(self.async_, Cell::Pass(_))
            && matches!(self.blocking, Cell::Pass(_))
            && self.divergence.is_none()
    }
}

enum Server {
    Mock(MockServer),
    Reset(String),
}

impl Server {
    fn uri(&self) -> String {
        match self {
            Self::Mock(m) => m.uri(),
            Self::Reset(u) => u.clone(),
        }
    }
}

/// A server that accepts connections, reads the request, and closes without answering.
fn reset_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            drop(stream);
        }
    });
    format!("http://{addr}")
}

fn template(c: &class_oauth_fixtures::CannedResponse, issuer: &str) -> ResponseTemplate {
    let mut t = ResponseTemplate::new(c.status).set_body_bytes(c.body_bytes(issuer));
    for (k, v) in &c.headers {
        t = t.insert_header(k.as_str(), v.replace("{issuer}", issuer).as_str());
    }
    if let Some(ms) = c.delay_ms {
        t = t.set_delay(Duration::from_millis(ms));
    }
    t
}

async fn start(fixture: &Fixture) -> Server {
    if fixture.transport_fault.as_deref() == Some("reset") {
        return Server::Reset(reset_server());
    }
    let server = MockServer::start().await;
    let issuer = server.uri();
    if let (Some(exp), Some(resp)) = (&fixture.expect_request, &fixture.response) {
        Mock::given(method(exp.method.as_str()))
            .and(path(exp.path.as_str()))
            .respond_with(template(resp, &issuer))
            .mount(&server)
            .await;
    }
    for (p, resp) in &fixture.other_responses {
        Mock::given(path(p.as_str()))
            .respond_with(template(resp, &issuer))
            .mount(&server)
            .await;
    }
    Server::Mock(server)
}

async fn recorded(server: &Server) -> Option<Vec<http::Request<Vec<u8>>>> {
    let Server::Mock(m) = server else { return None };
    let requests = m.received_requests().await.unwrap_or_default();
    Some(
        requests
            .into_iter()
            .map(|r| {
                let mut b = http::Request::builder()
                    .method(r.method.as_str())
                    .uri(r.url.as_str());
                for (k, v) in &r.headers {
                    b = b.header(k.as_str(), v.as_bytes());
                }
                b.body(r.body).expect("recorded request")
            })
            .collect(),
    )
}

async fn verify(fixture: &Fixture, server: &Server, outcome: Value) -> Cell {
    if let Some(requests) = recorded(server).await {
        let expected = expected_request_count(fixture);
        if requests.len() != expected {
            return Cell::Fail(format!(
                "expected {expected} request(s), the server saw {}",
                requests.len()
            ));
        }
        if let Some(exp) = &fixture.expect_request {
            if let Some(req) = requests.iter().find(|r| r.uri().path() == exp.path) {
                if let Err(e) = check_request(exp, req) {
                    return Cell::Fail(format!("request: {e}"));
                }
            }
        }
    }
    match check_outcome(&fixture.expect, &outcome) {
        Ok(()) => Cell::Pass(outcome),
        Err(e) => Cell::Fail(e),
    }
}

fn config() -> (
    class_oauth_reqwest::TransportConfig,
    class_oauth_ureq::TransportConfig,
) {
    (
        class_oauth_reqwest::TransportConfig::default()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT),
        class_oauth_ureq::TransportConfig::default()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT),
    )
}

fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("display");
    }
    v
}

/// Runs every fixture through the three columns.
///
/// # Panics
/// When the runtime cannot start or a fixture is invalid.
#[must_use]
pub fn run_all() -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (async_cfg, blocking_cfg) = config();
    let async_http =
        class_oauth_reqwest::ReqwestTransport::with_config(async_cfg).expect("reqwest client");
    let blocking_http =
        class_oauth_ureq::UreqTransport::with_config(blocking_cfg).expect("the blocking transport");
    let mut rows = Vec::new();
    for (name, fixture) in load_all() {
        let core = match replay_core(&fixture) {
            Ok(Some(v)) => Cell::Pass(v),
            Ok(None) => Cell::Skip,
            Err(e) => Cell::Fail(e),
        };

        let server = rt.block_on(start(&fixture));
        let issuer = server.uri();
        let outcome = match prepare(&fixture, &issuer) {
            Err(v) => v,
            Ok(flow) => rt.block_on(async {
                match class_oauth_reqwest::drive_with_clock(
                    &async_http,
                    flow,
                    class_oauth_fixtures::now,
                )
                .await
                {
                    Ok(v) => v,
                    Err(e) => drive_error_outcome(&e),
                }
            }),
        };
        let async_ = rt.block_on(verify(&fixture, &server, outcome));
        drop(server);

        let server = rt.block_on(start(&fixture));
        let issuer = server.uri();
        let outcome = match prepare(&fixture, &issuer) {
            Err(v) => v,
            // Blocking call from this (non-async) thread; the mock server runs on its own.
            Ok(flow) => match class_oauth_ureq::drive_with_clock(
                &blocking_http,
                flow,
                class_oauth_fixtures::now,
            ) {
                Ok(v) => v,
                Err(e) => drive_error_outcome(&e),
            },
        };
        let blocking = rt.block_on(verify(&fixture, &server, outcome));
        drop(server);

        let divergence = match (&async_, &blocking) {
            (Cell::Pass(a), Cell::Pass(b)) if comparable(a) != comparable(b) => Some(format!(
                "async {} vs blocking {}",
                comparable(a),
                comparable(b)
            )),
            _ => None,
        };
        rows.push(Row {
            name,
            core,
            async_,
            blocking,
            divergence,
        });
    }
    rows
}

/// The matrix as text, ending in `N passed, M failed`.
#[must_use]
pub fn render(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(10)
        .max(10);
    let mut out = format!(
        "{:<width$}  {:>5}  {:>5}  {:>8}\n",
        "fixture", "core", "async", "blocking"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<width$}  {:>5}  {:>5}  {:>8}\n",
            r.name,
            r.core.mark(),
            r.async_.mark(),
            r.blocking.mark()
        ));
        for (col, cell) in [
            ("core", &r.core),
            ("async", &r.async_),
            ("blocking", &r.blocking),
        ] {
            if let Cell::Fail(why) = cell {
                out.push_str(&format!("    {col}: {why}\n"));
            }
        }
        if let Some(d) = &r.divergence {
            out.push_str(&format!("    divergence: {d}\n"));
        }
    }
    let passed = rows.iter().filter(|r| r.passed()).count();
    out.push_str(&format!(
        "{passed} passed, {} failed\n",
        rows.len() - passed
    ));
    out
}
