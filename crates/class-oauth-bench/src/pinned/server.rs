//! The in-process token server on its own pinned runtime thread, CPU pinning, and the
//! CPU clocks the table reads.

use super::*;

/// CPU time of thread `tid` of this process, ns.
pub(super) fn task_cpu_ns(tid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// CPU time of every thread of this process, ns: `CLOCK_PROCESS_CPUTIME_ID`, which
/// counts the running thread up to now. (Summing `/proc/self/task/*/schedstat` counts
/// the running thread only up to its last tick or switch: a 5 ms batch without I/O
/// read 0, 4 or 8 ms.)
pub(super) fn process_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

pub(super) fn pin(cpu: usize) {
    let ok = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    assert!(ok, "could not pin to CPU {cpu}");
}

/// The in-process token server.
pub(crate) struct Server {
    pub(crate) base: String,
    pub(super) tid: String,
    pub(super) connections: Arc<AtomicU64>,
}

impl Server {
    pub(super) fn cpu_ns(&self) -> u64 {
        task_cpu_ns(&self.tid)
    }
}

/// Starts the server on a thread of its own, pinned to `cpu`.
pub(crate) fn start_server(cpu: usize) -> Server {
    let (tx, rx) = std::sync::mpsc::channel();
    let connections = Arc::new(AtomicU64::new(0));
    let counted = connections.clone();
    let response = Bytes::from(body());
    std::thread::Builder::new()
        .name("token-server".into())
        .spawn(move || {
            pin(cpu);
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .expect("own thread id");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let port = listener.local_addr().expect("addr").port();
                tx.send((port, tid)).expect("report");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    counted.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_nodelay(true);
                    let response = response.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |req: hyper::Request<hyper::body::Incoming>| {
                                let response = response.clone();
                                async move {
                                    let _ = req.into_body().collect().await;
                                    Ok::<_, Infallible>(
                                        hyper::Response::builder()
                                            .header(
                                                "content-type",
                                                "application/json;charset=UTF-8",
                                            )
                                            .header("cache-control", "no-store")
                                            .body(Full::new(response))
                                            .expect("response"),
                                    )
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })
        .expect("server thread");
    let (port, tid) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server started");
    Server {
        base: format!("http://127.0.0.1:{port}"),
        tid,
        connections,
    }
}
