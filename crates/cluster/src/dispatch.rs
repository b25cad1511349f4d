//! What a process does with each message it receives.

use std::sync::Arc;

use bytes::Bytes;
use cohort_wire::ids::{Pid, RefId};
use cohort_wire::proto::{
    self, call_result::Outcome, envelope::Kind, function_ref::Target, Envelope,
};

use crate::codec;
use crate::error::{CallError, ErrorKind, Failure, RemoteException};
use crate::node::node;
use crate::peer::Peer;
use crate::registry::{self, Trampoline};
use crate::store::send_reply;

/// A payload decoded from a frame is a slice of the connection's read buffer. A large
/// one keeps it as is (the buffer was sized for that frame); a small one is copied
/// out, so that a value kept for long (a cached result, an item in a channel) does not
/// pin a whole read buffer full of other messages.
fn own(payload: Bytes) -> Bytes {
    if payload.len() < cohort_wire::envelope::SPLIT_PAYLOAD_MIN {
        Bytes::copy_from_slice(&payload)
    } else {
        payload
    }
}

/// Handles one message from `peer`.
pub(crate) fn handle(peer: &Arc<Peer>, env: Envelope) {
    let n = node();
    match env.kind {
        Some(Kind::Call(call)) => run_call(peer.pid, peer.same_exe(), call),
        Some(Kind::Result(r)) => {
            let reply = match r.outcome {
                Some(Outcome::Value(v)) => Ok(own(v)),
                Some(Outcome::Error(e)) => Err(CallError::Remote(RemoteException::from_wire(e))),
                None => Ok(Bytes::new()),
            };
            n.complete(r.call_id, reply);
        }
        Some(Kind::RefRequest(r)) => {
            let kind = r.kind();
            match r.ref_id {
                Some(id) => {
                    n.store
                        .request(peer.pid, r.call_id, id.into(), kind, own(r.value), None)
                }
                None => send_reply(
                    peer.pid,
                    r.call_id,
                    Err(CallError::Serialization(
                        "request without a reference".into(),
                    )),
                ),
            }
        }
        Some(Kind::RefBatch(b)) => n.store.handle_ops(b.ops),
        Some(Kind::PeerUpdate(u)) => {
            let mut workers = n.workers.write();
            for info in u.added {
                workers.insert(
                    info.pid,
                    crate::node::WorkerRecord {
                        info,
                        managed: None,
                    },
                );
            }
            drop(workers);
            for pid in u.removed {
                n.workers.write().remove(&pid);
                n.exited.write().insert(pid);
                // Its registrations go: nothing it held can be used any more.
                n.store.peer_died(pid);
            }
        }
        Some(Kind::Exit(_)) => {
            if n.is_worker() {
                tracing::debug!("asked to exit");
                std::process::exit(0);
            }
        }
        Some(Kind::Interrupt(_)) => crate::interrupt::handle_interrupt(),
        Some(Kind::Identify(_) | Kind::Join(_) | Kind::JoinComplete(_)) | None => {
            tracing::warn!(
                pid = peer.pid,
                "unexpected set-up message on an open connection; ignored"
            );
        }
    }
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
        Some(Target::CodeOffset(off)) if same_exe => Ok(registry::trampoline_at(off)),
        Some(Target::CodeOffset(_)) => Err(Failure::new(
            ErrorKind::UndefinedFunction,
            format!("cannot run {display} on worker {me}: shipped closures need the same executable on both sides"),
        )),
        None => Err(Failure::new(ErrorKind::UndefinedFunction, "call names no function")),
    };
    (display, t)
}

/// Runs shipped code off the message loop, on a call runner (see [`crate::runners`]),
/// and routes its outcome as the call's mode asks.
fn run_call(from: Pid, same_exe: bool, call: proto::Call) {
    let mode = call.mode();
    let call_id = call.call_id;
    let result_ref: Option<RefId> = call.result_ref.map(Into::into);
    let (display, trampoline) = resolve(call.function, same_exe);
    let args = own(call.args);
    let seq = crate::interrupt::start(crate::interrupt::Running {
        from,
        call_id,
        mode,
        result_ref,
        function: display.clone(),
    });
    crate::runners::submit(Box::new(move || {
        let me = node().myid();
        // On a call runner (see `runners`): a long computation stalls no connection
        // and no other call; a stream of short ones costs no wake-up per call.
        let out = match trampoline {
            Ok(t) => {
                crate::interrupt::enter_call();
                codec::with_target(from, || t(&args))
            }
            Err(f) => Err(f),
        };
        let out = out
            .map(Bytes::from)
            .map_err(|f| RemoteException::from_failure(me, &display, f));
        crate::interrupt::finish(seq, out);
    }));
}
