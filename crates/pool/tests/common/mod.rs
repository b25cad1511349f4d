//! Helpers shared by the pool's integration tests.

use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::Duration;

/// Runs `f` on a thread and waits for it at most two minutes: a deadlock, or a
/// worker never given back, fails the test instead of hanging it.
pub(crate) fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what} did not finish in 120 s"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}
