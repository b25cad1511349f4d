//! Running the calls the core hands out ([`Output::Run`](crate::core::Output::Run)):
//! finding the code a call names and running it on a call runner, then handing the
//! outcome back to the core. Also the flag [`interrupted`] that running calls poll.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use cohort_wire::proto::{self, function_ref::Target};

use super::node::{current, enter, Node};
use crate::captures;
use crate::codec;
use crate::core::{own, RunCall};
use crate::error::{ErrorKind, Failure, RemoteException};
use crate::registry::{self, Trampoline};

thread_local! {
    /// The interrupt generation when the call running on this thread started.
    static STARTED_AT: Cell<u64> = const { Cell::new(0) };
}

/// Whether this process was interrupted since the call running on this thread
/// started (on the [current](crate::Cluster::current) cluster). Long computations may poll it and return early; their result is discarded
/// anyway, as the caller has already been answered with `Interrupted`.
///
/// ```
/// assert!(!cohort_cluster::interrupted());
/// ```
pub fn interrupted() -> bool {
    current().interrupts.load(Ordering::Acquire) > STARTED_AT.with(Cell::get)
}

/// Marks the current thread as running a call for `node` from now (for
/// [`interrupted`]).
fn enter_call(node: &Node) {
    STARTED_AT.with(|s| s.set(node.interrupts.load(Ordering::Acquire)));
}

/// Finds the code a call names.
fn resolve(
    me: cohort_wire::ids::Pid,
    function: Option<proto::FunctionRef>,
    same_exe: bool,
) -> (String, Result<Trampoline, Failure>) {
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

/// The largest arguments an inline function (`RemoteFnEntry::inline`) runs with
/// where it arrives: a larger call goes to a runner, so that decoding and copying
/// it does not hold up the reader (the next fragment of a large message, say).
const INLINE_ARGS_MAX: usize = 64 << 10;

/// Runs shipped code off the message loop, on a call runner (see
/// [`super::runners`]), and gives the outcome to `node`'s core. The call runs with
/// `node` [current](super::node::current): handles in its arguments, and the
/// cluster functions it calls, are that node's.
pub(crate) fn run_call(node: &Arc<Node>, run: RunCall) {
    let RunCall { seq, from, call } = run;
    let me = node.myid();
    // The connection in the table, or — when two connections crossed and the
    // table's went away — the read-only one the call came on.
    let same_exe = node.peers.read().get(&from).is_some_and(|p| p.same_exe())
        || node
            .read_only
            .lock()
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .any(|p| p.pid == from && p.same_exe());
    let (display, mut trampoline) = resolve(me, call.function, same_exe);
    // Kept states are taken in the order calls came (this runs in that order for
    // each caller), so a state is here before any call that only names it.
    let slot = match &call.capture {
        Some(capture) => match node.kept.take_in(from, capture, own(call.capture_state)) {
            Ok(slot) => Some(slot),
            Err(f) => {
                trampoline = Err(f);
                None
            }
        },
        None => None,
    };
    let args = own(call.args);
    let node = node.clone();
    let inline = slot.is_none()
        && args.len() <= INLINE_ARGS_MAX
        && trampoline.as_ref().is_ok_and(|t| registry::is_inline(*t));
    let job: super::runners::Job = Box::new(move || {
        // On a call runner: a long computation stalls no connection and no other
        // call; a stream of short ones costs no wake-up per call.
        let token = node.observe.call_started(&display);
        let out = match trampoline {
            Ok(t) => {
                enter_call(&node);
                enter(&node, || {
                    codec::with_target(&node, from, || captures::with_slot(slot, || t(args)))
                })
            }
            Err(f) => Err(f),
        };
        // A result too large for one message fails the call instead of the
        // connection (the receiver would drop it; over 4 GiB it cannot be framed).
        let out = out.and_then(|v| {
            crate::api::limits::check_result(&node, v.len())?;
            Ok(v)
        });
        let out = out
            .map(Bytes::from)
            .map_err(|f| RemoteException::from_failure(me, &display, f));
        node.observe
            .call_finished(token, from, &display, out.as_ref().err());
        node.finish_call(seq, out);
    });
    if inline {
        // A function that returns at once (`RemoteFnEntry::inline`): here, without a
        // hand-off, and whether or not the runners are busy.
        job();
    } else {
        super::runners::submit(job);
    }
}
