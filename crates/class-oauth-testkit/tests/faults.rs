//! Fault injection through both transports against the emulator: the same fault gives
//! the same classification from the async and the blocking client, and the library's
//! retry behaviour is the documented one (docs/SECURITY.md, "Faults"):
//! token requests are never retried (a one-time refresh token may already be spent);
//! an API call waits out one 429 and retries once; nothing else is retried.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use class_oauth_core::scope::Scopes;
use class_oauth_core::{ClientId, ClientSecret, Environment, IssuerUrl, Password, Username};
use class_oauth_testkit::{ClassEmulator, EmulatorConfig, Fault};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    transport: Option<&'static str>,
    kind: Option<&'static str>,
    status: Option<u16>,
    transient: bool,
}

fn outcome<T>(r: Result<T, class_oauth_core::flow::DriveError>) -> Outcome {
    match r {
        Ok(_) => Outcome {
            transport: None,
            kind: Some("ok"),
            status: None,
            transient: false,
        },
        Err(e) => Outcome {
            transport: match &e {
                class_oauth_core::flow::DriveError::Transport(t) => Some(t.kind.as_str()),
                _ => None,
            },
            kind: e.protocol().map(|p| p.kind().as_str()),
            status: e
                .protocol()
                .and_then(class_oauth_core::Error::status)
                .map(|s| s.as_u16()),
            transient: e.is_transient(),
        },
    }
}

struct Clients {
    rt: tokio::runtime::Runtime,
    r#async: class_oauth_reqwest::ClassClient,
    blocking: class_oauth_ureq::ClassClient,
}

fn clients(issuer: &str) -> Clients {
    let env = Environment::Custom(IssuerUrl::new(issuer).unwrap());
    let id = ClientId::new("demo-client");
    let t = Duration::from_millis(600);
    Clients {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        r#async: class_oauth_reqwest::ClassClient::builder(env.clone(), id.clone())
            .secret(ClientSecret::new("demo-secret"))
            .without_discovery()
            .http(
                class_oauth_reqwest::ReqwestTransport::with_config(
                    class_oauth_reqwest::TransportConfig::default().timeout(t),
                )
                .unwrap(),
            )
            .build_with_http()
            .unwrap(),
        blocking: class_oauth_ureq::ClassClient::builder(env, id)
            .secret(ClientSecret::new("demo-secret"))
            .without_discovery()
            .http(
                class_oauth_ureq::UreqTransport::with_config(
                    class_oauth_ureq::TransportConfig::default().timeout(t),
                )
                .unwrap(),
            )
            .build()
            .unwrap(),
    }
}

fn scopes() -> Scopes {
    Scopes::parse("target:b/OAUTH_TEST offline_access fund.read").unwrap()
}

/// Runs the password grant through both clients, with `fault` injected once before each.
fn password_both(
    emulator: &ClassEmulator,
    c: &Clients,
    fault: Option<(Fault, usize)>,
) -> (Outcome, Outcome, usize) {
    let before = emulator.count("/connect/token");
    if let Some((f, n)) = &fault {
        emulator.inject("/connect/token", f.clone(), *n);
    }
    let a = outcome(c.rt.block_on(c.r#async.password(
        Username::new("sam@example.com"),
        Password::new("demo-password"),
        scopes(),
    )));
    if let Some((f, n)) = &fault {
        emulator.inject("/connect/token", f.clone(), *n);
    }
    let b = outcome(c.blocking.password(
        Username::new("sam@example.com"),
        Password::new("demo-password"),
        scopes(),
    ));
    (a, b, emulator.count("/connect/token") - before)
}

#[test]
fn every_fault_is_classified_alike_and_never_blindly_retried() {
    let emulator = ClassEmulator::start_blocking(EmulatorConfig::demo());
    let c = clients(&emulator.issuer());

    // Timeout: the server did the work but answered too late. Not retried.
    let (a, b, n) = password_both(
        &emulator,
        &c,
        Some((Fault::Delay(Duration::from_secs(2)), 1)),
    );
    assert_eq!(a, b);
    assert_eq!(a.transport, Some("timeout"));
    assert!(a.transient);
    assert_eq!(n, 2, "one request per client: no retry");

    // A 5xx burst: the first attempt fails, is not retried; the caller decides.
    let (a, b, n) = password_both(&emulator, &c, Some((Fault::Status(503), 3)));
    assert_eq!(a, b);
    assert_eq!(
        (a.kind, a.status, a.transient),
        (Some("server_refused"), Some(503), true)
    );
    assert_eq!(n, 2);
    // Clear the rest of the burst.
    for _ in 0..4 {
        let _ = c.blocking.password(
            Username::new("sam@example.com"),
            Password::new("demo-password"),
            scopes(),
        );
    }

    // An HTML 502 page from a proxy: malformed and transient, never invalid_grant.
    let (a, b, _) = password_both(&emulator, &c, Some((Fault::Html502, 1)));
    assert_eq!(a, b);
    assert_eq!(
        (a.kind, a.status, a.transient),
        (Some("malformed_response"), Some(502), true)
    );

    // Truncated JSON: malformed, not transient (the server said 200).
    let (a, b, _) = password_both(&emulator, &c, Some((Fault::TruncatedJson, 1)));
    assert_eq!(a, b);
    assert_eq!(
        (a.kind, a.status, a.transient),
        (Some("malformed_response"), Some(200), false)
    );

    // Oversized: the transports stop reading at the cap; the core says BodyTooLarge.
    let (a, b, _) = password_both(&emulator, &c, Some((Fault::Oversized(3 << 20), 1)));
    assert_eq!(a, b);
    assert_eq!(a.kind, Some("malformed_response"));

    // A slow but timely answer is fine.
    let (a, b, _) = password_both(
        &emulator,
        &c,
        Some((Fault::Delay(Duration::from_millis(200)), 1)),
    );
    assert_eq!((a.kind, b.kind), (Some("ok"), Some("ok")));

    // A 429 storm on the API: one wait (ResetAfter), one retry, then the 429 is returned.
    let tokens = c
        .blocking
        .password(
            Username::new("sam@example.com"),
            Password::new("demo-password"),
            scopes(),
        )
        .unwrap()
        .tokens;
    let before = emulator.count("/api/1.0/b/OAUTH_TEST/fund/list");
    emulator.inject("/api/", Fault::TooManyRequests { reset_after: 1 }, 10);
    let a = outcome(
        c.rt.block_on(
            c.r#async
                .api_get(&tokens.access_token, "b/OAUTH_TEST/fund/list"),
        ),
    );
    let b = outcome(
        c.blocking
            .api_get(&tokens.access_token, "b/OAUTH_TEST/fund/list"),
    );
    assert_eq!(a, b);
    assert_eq!(
        (a.kind, a.status, a.transient),
        (Some("api_refused"), Some(429), true)
    );
    assert_eq!(
        emulator.count("/api/1.0/b/OAUTH_TEST/fund/list") - before,
        4,
        "two attempts per client"
    );
}

#[test]
fn a_connection_reset_is_a_transport_failure_in_both() {
    // A server that accepts, reads the request, and closes without answering.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
        }
    });
    let c = clients(&issuer);
    let a = outcome(c.rt.block_on(c.r#async.password(
        Username::new("u"),
        Password::new("p"),
        scopes(),
    )));
    let b = outcome(
        c.blocking
            .password(Username::new("u"), Password::new("p"), scopes()),
    );
    assert!(a.transport.is_some() && a.transient, "{a:?}");
    assert_eq!(a, b);
}
