//! Running the calls the core hands out ([`Output::Run`](crate::core::Output::Run)):
//! finding the code a call names and running it on a call runner, then handing the
//! outcome back to the core. Also the flag [`interrupted`] that running calls poll.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use cohort_wire::proto::{self, function_ref::Target};

use super::node::node;
use crate::codec;
use crate::core::{own, RunCall};
use crate::error::{ErrorKind, Failure, RemoteException};
use crate::registry::{self, Trampoline};

thread_local! {
    /// The interrupt generation when the call running on this thread started.
    static STARTED_AT: Cell<u64> = const { Cell::new(0) };
}

/// Whether this process was interrupted since the call running on this thread
/// started. Long computations may poll it and return early; their result is discarded
/// anyway, as the caller has already been answered with `Interrupted`.
///
/// ```
/// assert!(!cohort_cluster::interrupted());
/// ```
pub fn interrupted() -> bool {
    node().interrupts.load(Ordering::Acquire) > STARTED_AT.with(Cell::get)
}

/// Marks the current thread as running a call from now (for [`interrupted`]).
fn enter_call() {
    STARTED_AT.with(|s| s.set(node().interrupts.load(Ordering::Acquire)));
}

/// Finds the code a call names.
fn resolve(
    function: Option<proto::FunctionRef>,
    same_exe: bool,
) -> (String, Result<Trampoline, Failure>) {
    let me = node().myid();
    let f = function.unwrap_or_default();
    let display = f.display;
    let t = match f.target {
        Some(Target::Name(name)) => registry::lookup(&name).ok_or_else(|| {
            Failure::new(
                ErrorKind::UndefinedFunction,
                format!("function {name} is not defined on worker {me} (is it marked #[cohort::remote] and linked into the worker?)"),
            )
        }),
        // SAFETY: the peer's build fingerprint equals ours (checked in the
        // handshake), so the offset was computed by this very executable from one of
        // its trampolines (see `registry::trampoline_at`).
        Some(Target::CodeOffset(off)) if same_exe => Ok(unsafe { registry::trampoline_at(off) }),
        Some(Target::CodeOffset(_)) => Err(Failure::new(
            ErrorKind::UndefinedFunction,
            format!("cannot run {display} on worker {me}: shipped closures need the same executable on both sides"),
        )),
        None => Err(Failure::new(ErrorKind::UndefinedFunction, "call names no function")),
    };
    (display, t)
}

/// Runs shipped code off the message loop, on a call runner (see
/// [`super::runners`]), and gives the outcome to the core.
pub(crate) fn run_call(run: RunCall) {
    let RunCall { seq, from, call } = run;
    let same_exe = node().peers.read().get(&from).is_some_and(|p| p.same_exe());
    let (display, trampoline) = resolve(call.function, same_exe);
    let args = own(call.args);
    super::runners::submit(Box::new(move || {
        let me = node().myid();
        // On a call runner: a long computation stalls no connection and no other
        // call; a stream of short ones costs no wake-up per call.
        let out = match trampoline {
            Ok(t) => {
                enter_call();
                codec::with_target(from, || t(&args))
            }
            Err(f) => Err(f),
        };
        let out = out
            .map(Bytes::from)
            .map_err(|f| RemoteException::from_failure(me, &display, f));
        node().with_core(|c| c.finish_call(seq, out, Instant::now()));
    }));
}
