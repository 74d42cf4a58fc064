//! The loopback token server, run as a child process so the client's CPU time is its own.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A Class-shaped refresh response (the body every exchange gets).
pub(crate) const BODY: &[u8] = br#"{"access_token":"CBfgN5Z5eyJhbGciOiJSUzI1NiIsImtpZCI6ImNsYXNzIn0.benchmark-access-token-of-realistic-length-0123456789abcdefghijklmnopqrstuvwxyz","token_type":"bearer","expires_in":899,"refresh_token":"9e0fccdb-ec4f-4e6a-ae60-83ad66be9547","scope":"target:b/OAUTH_TEST offline_access business.fund.create fund.read","BusinessName":"OAuth Test Business","BusinessCode":"OAUTH_TEST"}"#;

async fn handle(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = req.into_body().collect().await;
    Ok(Response::builder()
        .header("content-type", "application/json;charset=UTF-8")
        .header("cache-control", "no-cache")
        .body(Full::new(Bytes::from_static(BODY)))
        .expect("static response"))
}

/// Child-process entry: bind, print the port, serve forever on one thread.
pub(crate) fn serve() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr").port());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
}

/// The server process; killed when dropped (also on a panic).
pub(crate) struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server process; returns it and its base URL.
pub(crate) fn spawn() -> (ServerProcess, String) {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("server")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    (
        ServerProcess(child),
        format!("http://127.0.0.1:{}", line.trim()),
    )
}
