//! `rmprocs` that has to kill a worker which ignored the exit request says so (issue
//! 12, point 8), as Julia does: a `tracing` warning naming the worker. The worker is
//! stopped with SIGSTOP, so it cannot act on the request.
//!
//! Its own test binary: it installs the process's global `tracing` subscriber.

mod common;
use common::{exited, poll, signal};

use std::sync::{Arc, Mutex};

use cohort::prelude::*;

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn rmprocs_warns_when_it_kills_a_worker_that_did_not_exit() {
    let log = Capture::default();
    let writer = log.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(2)).unwrap();
    let os: Vec<u32> = w
        .iter()
        .map(|&p| {
            c.remotecall_fetch_blocking(cohort::builtins::getpid, p, ())
                .unwrap()
        })
        .collect();
    signal("-STOP", os[0]);
    c.rmprocs_blocking(&w, None).unwrap();
    for &o in &os {
        poll("the removed workers to be gone", 60, || {
            exited(o).then_some(())
        });
    }
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let warned = |p: Pid| text.contains(&format!("worker {p} did not exit"));
    assert!(
        warned(w[0]),
        "no warning for the stopped worker {}: {text}",
        w[0]
    );
    assert!(
        !warned(w[1]),
        "a warning for the worker that exited: {text}"
    );
}
