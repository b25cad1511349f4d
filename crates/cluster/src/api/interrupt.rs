//! Interrupting running calls (Julia's `interrupt`).
//!
//! Rust cannot stop a thread from outside, so an interrupt works in two halves: the
//! worker at once answers every call running on it with an `Interrupted` error (the
//! callers stop waiting, and a late result is discarded), and it raises a flag that
//! long-running functions can poll with [`interrupted`](crate::interrupted) to stop
//! early. The running-call table is the core's (`core::calls`); the flag is the
//! shell's (`shell::execute`).

use std::time::Instant;

use cohort_transport::ManageEvent;
use cohort_wire::ids::Pid;
use cohort_wire::proto::{self, envelope::Kind, Envelope};

use crate::error::CallError;
use crate::shell::node::{current, Node};

/// Interrupts the calls running on `pids` (Julia's `interrupt`): each worker answers
/// its running calls with a [`CallError::Remote`] of kind
/// [`ErrorKind::Interrupted`](crate::ErrorKind::Interrupted) and raises the flag
/// [`interrupted`](crate::interrupted) reads. On the master, the cluster manager's
/// `manage` is told ([`ManageEvent::Interrupt`]). Returns at once.
///
/// Only the master interrupts, as in Julia; [`interrupt_all`] is Julia's
/// `interrupt()` with no pids.
///
/// # Errors
/// [`CallError::MasterOnly`] on a worker (nothing is interrupted); else the first pid
/// that cannot be reached ([`CallError::NoSuchProcess`],
/// [`CallError::WorkerExited`]), the others being still interrupted.
///
/// ```
/// cohort_cluster::interrupt(&[]).unwrap();
/// ```
pub fn interrupt(pids: &[Pid]) -> Result<(), CallError> {
    interrupt_in(&current(), pids)
}

/// Interrupts the calls running on every worker (Julia's `interrupt()`).
///
/// # Errors
/// As [`interrupt`].
///
/// ```
/// cohort_cluster::interrupt_all().unwrap(); // no workers: nothing to do
/// ```
pub fn interrupt_all() -> Result<(), CallError> {
    interrupt_all_in(&current())
}

/// [`interrupt_all`] in `n`'s cluster.
pub(crate) fn interrupt_all_in(n: &Node) -> Result<(), CallError> {
    let workers: Vec<Pid> = n
        .workers()
        .into_iter()
        .filter(|&p| p != cohort_wire::ids::MASTER)
        .collect();
    interrupt_in(n, &workers)
}

/// [`interrupt`] in `n`'s cluster.
pub(crate) fn interrupt_in(n: &Node, pids: &[Pid]) -> Result<(), CallError> {
    if n.is_worker() {
        return Err(CallError::MasterOnly { what: "interrupt" });
    }
    let mut first_err = None;
    for &pid in pids {
        if pid == n.myid() {
            n.with_core(|c| c.interrupt_local(Instant::now()));
            continue;
        }
        let env = Envelope {
            kind: Some(Kind::Interrupt(proto::Interrupt {})),
        };
        if let Err(e) = n.send(pid, env) {
            first_err.get_or_insert(e);
            continue;
        }
        if let Some((manager, config)) = n.managed.read().get(&pid) {
            manager.manage(pid, config, ManageEvent::Interrupt);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
