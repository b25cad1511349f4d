//! Interrupting running calls (Julia's `interrupt`).
//!
//! Rust cannot stop a thread from outside, so an interrupt works in two halves: the
//! worker at once answers every call running on it with an `Interrupted` error (the
//! callers stop waiting, and a late result is discarded), and it raises a flag that
//! long-running functions can poll with [`interrupted`] to stop early.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use cohort_transport::ManageEvent;
use cohort_wire::ids::{Pid, RefId};
use cohort_wire::proto::{self, envelope::Kind, CallMode, Envelope};
use parking_lot::Mutex;

use crate::error::{CallError, ErrorKind, RemoteException};
use crate::node::node;
use crate::store::send_reply;

/// Counts interrupts received by this process.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The interrupt generation when the call running on this thread started.
    static STARTED_AT: Cell<u64> = const { Cell::new(0) };
}

/// A call that is running on this process.
pub(crate) struct Running {
    pub from: Pid,
    pub call_id: u64,
    pub mode: CallMode,
    pub result_ref: Option<RefId>,
    pub function: String,
}

fn running() -> &'static Mutex<HashMap<u64, Running>> {
    static R: std::sync::OnceLock<Mutex<HashMap<u64, Running>>> = std::sync::OnceLock::new();
    R.get_or_init(Default::default)
}

/// Records a call as running; returns its key for [`finish`].
pub(crate) fn start(r: Running) -> u64 {
    let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
    running().lock().insert(seq, r);
    seq
}

/// Marks the current thread as running a call from now (for [`interrupted`]).
pub(crate) fn enter_call() {
    STARTED_AT.with(|s| s.set(GENERATION.load(Ordering::Acquire)));
}

/// Delivers a call's outcome as its mode asks — unless an interrupt already answered
/// it, in which case the late outcome is dropped.
pub(crate) fn finish(seq: u64, out: Result<Bytes, RemoteException>) {
    let r = {
        let mut running = running().lock();
        let r = running.remove(&seq);
        if running.capacity() > 1024 && running.len() * 4 < running.capacity() {
            running.shrink_to_fit();
        }
        r
    };
    let Some(r) = r else {
        return;
    };
    deliver(r, out);
}

fn deliver(r: Running, out: Result<Bytes, RemoteException>) {
    match r.mode {
        CallMode::Fetch => send_reply(r.from, r.call_id, out.map_err(CallError::Remote)),
        CallMode::Call | CallMode::Wait => {
            let Some(id) = r.result_ref else {
                tracing::warn!(from = r.from, "call without a result reference");
                return;
            };
            let _ = node().store.set(id, out.clone());
            if r.mode == CallMode::Wait {
                send_reply(
                    r.from,
                    r.call_id,
                    out.map(|_| Bytes::new()).map_err(CallError::Remote),
                );
            }
        }
        CallMode::RemoteDo | CallMode::Unspecified => {
            if let Err(e) = out {
                eprintln!("error in remote_do {e}");
            }
        }
    }
}

/// Handles an `Interrupt` message: fails every running call with `Interrupted`.
pub(crate) fn handle_interrupt() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    let all: Vec<Running> = running().lock().drain().map(|(_, r)| r).collect();
    let me = node().myid();
    for r in all {
        let e = RemoteException {
            pid: me,
            kind: ErrorKind::Interrupted,
            function: r.function.clone(),
            message: "interrupted".into(),
            context: String::new(),
        };
        deliver(r, Err(e));
    }
}

/// Whether this process was interrupted since the call running on this thread
/// started. Long computations may poll it and return early; their result is discarded
/// anyway, as the caller has already been answered with `Interrupted`.
///
/// ```
/// assert!(!cohort_cluster::interrupted());
/// ```
pub fn interrupted() -> bool {
    GENERATION.load(Ordering::Acquire) > STARTED_AT.with(Cell::get)
}

/// Interrupts the calls running on `pids` (Julia's `interrupt`): each worker answers
/// its running calls with a [`CallError::Remote`] of kind [`ErrorKind::Interrupted`]
/// and raises the flag [`interrupted`] reads. On the master, the cluster manager's
/// `manage` is told ([`ManageEvent::Interrupt`]). Returns at once.
///
/// # Errors
/// The first pid that cannot be reached ([`CallError::NoSuchProcess`],
/// [`CallError::WorkerExited`]); the others are still interrupted.
///
/// ```
/// cohort_cluster::interrupt(&[]).unwrap();
/// ```
pub fn interrupt(pids: &[Pid]) -> Result<(), CallError> {
    let n = node();
    let mut first_err = None;
    for &pid in pids {
        if pid == n.myid() {
            handle_interrupt();
            continue;
        }
        let env = Envelope {
            kind: Some(Kind::Interrupt(proto::Interrupt {})),
        };
        if let Err(e) = n.send(pid, &env) {
            first_err.get_or_insert(e);
            continue;
        }
        if let Some(rec) = n.workers.read().get(&pid) {
            if let Some((manager, config)) = &rec.managed {
                manager.manage(pid, config, ManageEvent::Interrupt);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
