//! A watchdog for tests: a test that waits on a lock, a server, a thread or a channel
//! fails instead of hanging.

use std::time::Duration;

/// Runs `f` on a thread named `what` and fails (instead of hanging) when it takes longer
/// than `limit`; a panic in `f` is resumed with its own message.
///
/// # Panics
/// When `f` panics or does not finish within `limit`.
pub fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(what.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn the bounded thread");
    match rx.recv_timeout(limit) {
        Ok(v) => {
            let _ = handle.join();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within {limit:?} (a hang is a failure)")
        }
        // The closure panicked: surface its message.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("{what}: ended without a result"),
        },
    }
}
