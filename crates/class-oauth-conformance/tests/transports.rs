//! The two transports behave alike where they meet the network's set-up: the proxy the
//! environment names (and loopback going direct), the platform's certificate store as
//! an option (a private CA in `SSL_CERT_FILE` trusted only with `RootCerts::Platform`),
//! the `User-Agent`, and a closed port (a `Connect` error).
//!
//! Proxy and certificate settings come from the process environment, which a test must
//! not change for its siblings; so each case runs this test binary again as a child
//! process with the variables set (the `child_*` tests, ignored in a normal run), and
//! the parent checks what the child's requests did.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use class_oauth_core::flow::{RootCerts, TransportConfig, TransportErrorKind};
use class_oauth_reqwest::{AsyncHttpClient as _, ReqwestTransport};
use class_oauth_ureq::{SyncHttpClient as _, UreqTransport};

const CHILD: &str = "CLASS_OAUTH_TRANSPORT_CHILD";

/// Runs `test` of this binary in a child process with `env`; its output, or a panic
/// with it when the child failed or ran past 60 s.
fn run_child(test: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child {test} ran past 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "child {test} failed:\n{out}");
    assert!(out.contains("1 passed"), "child {test} ran no test:\n{out}");
    out
}

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Reads one request head; returns its first line and its headers (lower-case names).
fn read_head(reader: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    if first.is_empty() {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    Some((first.trim_end().to_owned(), headers))
}

fn respond(stream: &mut impl Write, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// One proxied request as the proxy saw it: the request line the client sent to the
/// proxy (CONNECT or absolute form) and the inner request's User-Agent.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP proxy on loopback that answers every request itself, for CONNECT tunnels
/// (ureq) and absolute-form requests (reqwest) alike, and records what it saw.
fn recording_proxy() -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let Some((line, headers)) = read_head(&mut reader) else {
                    return;
                };
                let ua = |h: &[(String, String)]| {
                    h.iter()
                        .find(|(k, _)| k == "user-agent")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                if line.starts_with("CONNECT ") {
                    let _ = writer.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                    let Some((_, inner)) = read_head(&mut reader) else {
                        return;
                    };
                    log.lock().unwrap().push((line, ua(&inner)));
                } else {
                    log.lock().unwrap().push((line, ua(&headers)));
                }
                respond(&mut writer, "via proxy");
            });
        }
    });
    (port, seen)
}

/// A plain HTTP server on loopback: `answer` gets each request line and the stream.
/// Reads are bounded (10 s), so a client that stalls cannot hold the thread forever.
fn loopback_server(answer: impl Fn(&str, &mut TcpStream) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if let Some((line, _)) = read_head(&mut reader) {
                answer(&line, &mut stream);
            }
        }
    });
    port
}

/// A plain HTTP server on loopback answering `direct`.
fn direct_server() -> u16 {
    loopback_server(|_, stream| respond(stream, "direct"))
}

fn get(uri: &str) -> http::Request<Vec<u8>> {
    http::Request::get(uri).body(Vec::new()).unwrap()
}

/// The body of GET `uri` through each transport (blocking, then async).
fn through_both(config: TransportConfig, uri: &str) -> [Result<String, TransportErrorKind>; 2] {
    let blocking = UreqTransport::with_config(config)
        .unwrap()
        .send(get(uri))
        .map(|r| String::from_utf8(r.into_body()).unwrap())
        .map_err(|e| e.kind);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let asynchronous = runtime.block_on(async {
        ReqwestTransport::with_config(config)
            .unwrap()
            .send(get(uri))
            .await
            .map(|r| String::from_utf8(r.into_body()).unwrap())
            .map_err(|e| e.kind)
    });
    [blocking, asynchronous]
}

#[test]
fn both_transports_take_the_environments_proxy_by_one_rule() {
    let (proxy, seen) = recording_proxy();
    let proxy_url = format!("http://127.0.0.1:{proxy}");
    let out = run_child(
        "child_proxy",
        &[
            ("HTTPS_PROXY", &proxy_url),
            ("HTTP_PROXY", "http://127.0.0.1:9"),
        ],
    );
    let seen = seen.lock().unwrap().clone();
    // One proxied request per transport, to the name only the proxy could reach, each
    // naming this library; the loopback server was reached directly by both.
    assert_eq!(seen.len(), 2, "{seen:?}\n{out}");
    for (line, ua) in &seen {
        assert!(line.contains("class.test"), "{line}");
        assert_eq!(ua, class_oauth_reqwest::USER_AGENT);
    }
    assert!(
        seen.iter().any(|(l, _)| l.starts_with("CONNECT")),
        "ureq tunnels: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(l, _)| l.starts_with("GET http://class.test")),
        "reqwest: {seen:?}"
    );
    assert!(
        !seen.iter().any(|(l, _)| l.contains("127.0.0.1")),
        "{seen:?}"
    );
}

#[test]
#[ignore = "run as a child process by both_transports_take_the_environments_proxy_by_one_rule"]
fn child_proxy() {
    if !in_child() {
        return;
    }
    let direct = direct_server();
    let config = TransportConfig::default().timeout(Duration::from_secs(10));
    for body in through_both(config, "http://class.test/ping") {
        assert_eq!(body.as_deref(), Ok("via proxy"));
    }
    for body in through_both(config, &format!("http://127.0.0.1:{direct}/ping")) {
        assert_eq!(body.as_deref(), Ok("direct"), "loopback goes direct");
    }
    // Proxies off: the proxy-only name does not resolve, on both.
    let off = config.proxy(class_oauth_core::flow::ProxyMode::Off);
    for body in through_both(off, "http://class.test/ping") {
        assert!(body.is_err(), "{body:?}");
    }
}

/// A TLS server on loopback for `localhost`, its certificate issued by a fresh private
/// CA; returns its port and the CA certificate in PEM.
fn tls_server_with_private_ca() -> (u16, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "class-oauth test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let tls = rustls::StreamOwned::new(conn, stream);
                let mut reader = BufReader::new(tls);
                if read_head(&mut reader).is_some() {
                    respond(reader.get_mut(), "tls ok");
                }
            });
        }
    });
    (port, ca.pem())
}

#[test]
fn the_platform_store_is_an_option_on_both_transports() {
    let (port, ca_pem) = tls_server_with_private_ca();
    let dir = tempfile_dir();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    run_child(
        "child_platform_roots",
        &[
            ("SSL_CERT_FILE", ca_file.to_str().unwrap()),
            ("CLASS_OAUTH_TEST_TLS_PORT", &port.to_string()),
        ],
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "class-oauth-transports-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
#[ignore = "run as a child process by the_platform_store_is_an_option_on_both_transports"]
fn child_platform_roots() {
    if !in_child() {
        return;
    }
    let port = std::env::var("CLASS_OAUTH_TEST_TLS_PORT").unwrap();
    let uri = format!("https://localhost:{port}/");
    let config = TransportConfig::default().timeout(Duration::from_secs(10));
    // The bundled Mozilla roots do not know the private CA: refused, as a connection
    // failure, on both.
    for result in through_both(config, &uri) {
        assert_eq!(result, Err(TransportErrorKind::Connect));
    }
    // The platform's store (here the file SSL_CERT_FILE names) does.
    for result in through_both(config.roots(RootCerts::Platform), &uri) {
        assert_eq!(result.as_deref(), Ok("tls ok"));
    }
}

/// A caller's reqwest client that follows redirects: the transport refuses the
/// redirected answer (the redirect check compares the response's URL part by part).
#[test]
fn a_callers_client_that_followed_a_redirect_is_refused() {
    let port = loopback_server(|line, stream| {
        if line.starts_with("GET /moved") {
            let _ = stream.write_all(
                b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        } else {
            respond(stream, "elsewhere");
        }
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let follows = class_oauth_reqwest::reqwest::Client::builder()
        .redirect(class_oauth_reqwest::reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap();
    let transport = ReqwestTransport::from_client(follows, TransportConfig::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let refused = transport
            .send(get(&format!("http://127.0.0.1:{port}/moved")))
            .await
            .unwrap_err();
        assert_eq!(refused.kind, TransportErrorKind::Redirect);
        // The same client, no redirect: answered.
        let ok = transport
            .send(get(&format!("http://127.0.0.1:{port}/elsewhere")))
            .await
            .unwrap();
        assert_eq!(ok.body(), b"elsewhere");
    });
}

#[test]
fn a_closed_port_is_a_connect_error_on_both_transports() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let [blocking, asynchronous] = through_both(
        TransportConfig::default(),
        &format!("http://127.0.0.1:{port}/"),
    );
    assert_eq!(blocking, Err(TransportErrorKind::Connect));
    assert_eq!(asynchronous, Err(TransportErrorKind::Connect));
}
