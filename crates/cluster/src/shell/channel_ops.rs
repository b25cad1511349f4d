//! Running operations on stored channels for other processes
//! ([`Output::Channel`](crate::core::Output::Channel)): an operation may wait (for
//! room, for a value), so each is polled once where it arrives — one that can finish
//! at once is answered there — and otherwise is polled again by the thread whose
//! channel operation wakes it (`InlineTask`), and answers through the core when
//! done. Credit messages (`PUT_CREDITED`, `RETURN`) never wait and run
//! where they arrive, in order.
//!
//! A `TAKE` can be stopped: its requester gave up (`CANCEL`) or is gone. It waits
//! for a value *or* its stop, the stop first, and a stopped take has removed nothing
//! (the channel's take is cancel-safe) and is answered with an `INTERRUPTED` error. A
//! take that removed its value before its stop is answered with the value, which the
//! requester (or the core, for a requester that is gone) puts back (`PUT_FRONT`).

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Waker};

use bytes::Bytes;
use cohort_channels::Reservations;
use cohort_wire::ids::{Pid, RefId};
use cohort_wire::proto::RefRequestKind;
use futures::future::{self, BoxFuture, Either};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::inline_task::InlineTask;
use super::node::{enter, Node};
use crate::core::ChannelOp;
use crate::error::{CallError, ErrorKind, ProtocolError, RemoteException};

/// The owner's channel, seen through bytes, for requests from other processes.
///
/// A request's bytes start with the encoded key (nothing, for a plain channel's
/// unit key): `PUT` and `PUT_FRONT` carry `(key, value)`, the others the key alone. A
/// `TAKE` answers `(key, value)`, so that a value handed back goes back under its
/// key; `FETCH` answers the value. Every method decodes before it returns (on the
/// thread of the call, with its current node), then acts when polled; values that
/// go out are encoded for `to` (the requester), so handles inside travel live.
pub(crate) trait ErasedChannel: Send + Sync {
    fn put(&self, bytes: Bytes) -> BoxFuture<'_, Result<(), CallError>>;
    /// Reserves up to `max` places for a remote putter's credits (`AbstractChannel::reserve`).
    fn reserve(&self, max: u32) -> u32;
    /// Fills a reserved place (`AbstractChannel::put_reserved`), never waiting.
    fn put_reserved(&self, bytes: Bytes) -> Result<(), CallError>;
    /// Gives back `n` reserved places (`AbstractChannel::unreserve`).
    fn unreserve(&self, n: u32);
    /// Takes the next value under the key, waiting for it, and then up to `more`
    /// further values that are there at once (a take-ahead's batch): the answer is
    /// their encodings one after the other, at most [`TAKE_AHEAD_BYTES`] past the
    /// first.
    fn take(
        &self,
        key: Bytes,
        more: u32,
        to: (Arc<Node>, Pid),
    ) -> BoxFuture<'_, Result<Bytes, CallError>>;
    /// Hands back values a take removed (`AbstractChannel::put_front`): the bytes
    /// are one or more `(key, value)` encodings, as a take answers, and they go
    /// back in their order, the first at the very front.
    fn put_front(&self, bytes: Bytes) -> BoxFuture<'_, Result<(), CallError>>;
    fn fetch(&self, key: Bytes, to: (Arc<Node>, Pid)) -> BoxFuture<'_, Result<Bytes, CallError>>;
    fn wait(&self, key: Bytes) -> BoxFuture<'_, Result<(), CallError>>;
    fn isready(&self, key: Bytes) -> Result<bool, CallError>;
    fn close(&self);
    /// Whether the channel is still open (`AbstractChannel::is_open`).
    fn is_open(&self) -> bool;
    /// How many values it holds, where it can say (`AbstractChannel::len`).
    fn len(&self) -> Option<usize>;
}

/// How many bytes of further values a take with a take-ahead (`TAKE` with
/// `credits` > 0) adds to its answer, at most: the batch stays one modest message,
/// and values that would not fit stay in the channel for the next take.
pub(crate) const TAKE_AHEAD_BYTES: usize = 1 << 20;

/// The store's record of a channel: the byte face for remote requests and the typed
/// one for this process.
#[derive(Clone)]
pub(crate) struct ChannelSlot {
    pub(crate) erased: Arc<dyn ErasedChannel>,
    pub(crate) typed: Arc<dyn Any + Send + Sync>,
    /// The remote takes running on it.
    takes: Arc<Mutex<RunningTakes>>,
    /// Counts it among its node's channels (`crate::observe`) while it is stored.
    _live: Option<Arc<super::observe::LiveChannel>>,
}

/// Remote takes running on a channel, by requester and call id: dropping the sender
/// stops the take.
type RunningTakes = HashMap<(Pid, u64), oneshot::Sender<()>>;

impl ChannelSlot {
    pub(crate) fn new(erased: Arc<dyn ErasedChannel>, typed: Arc<dyn Any + Send + Sync>) -> Self {
        ChannelSlot {
            erased,
            typed,
            takes: Arc::default(),
            _live: None,
        }
    }

    /// Counted among `node`'s channels while any clone of it lives.
    pub(crate) fn counted(mut self, node: &Node) -> Self {
        self._live = Some(Arc::new(super::observe::LiveChannel::new(
            &node.observe.channels,
        )));
        self
    }
}

/// The answer of `node` to a take stopped before it removed anything.
fn stopped(node: &Node) -> CallError {
    CallError::Remote(RemoteException {
        pid: node.myid(),
        kind: ErrorKind::Interrupted,
        function: String::new(),
        message: "take cancelled by its requester".into(),
        context: String::new(),
    })
}

/// Runs `op` as a task and answers its requester through `node` when it is done
/// (`CANCEL` and `PUT_FRONT` are not answered).
pub(crate) fn run(node: Arc<Node>, op: ChannelOp<ChannelSlot>) {
    let ChannelOp {
        from,
        call_id,
        id,
        channel,
        kind,
        value,
        credits,
    } = op;
    match kind {
        RefRequestKind::PutCredited => {
            // Here, in the order the puts came: its place was reserved, so this
            // never waits. Decoded here: handles inside are this node's.
            if let Err(e) = enter(&node, || channel.erased.put_reserved(value)) {
                tracing::warn!(error = %e, pid = from, "a credited put was lost");
            }
            if credits > 0 {
                let ch = &channel.erased;
                node.with_core(|c| c.grant(id, from, credits, |max| ch.reserve(max)));
            }
            return;
        }
        RefRequestKind::Return => {
            channel.erased.unreserve(credits);
            return;
        }
        RefRequestKind::Cancel => {
            // Stops the take if it still runs; it answers itself — perhaps on this
            // thread, as the stop wakes it (`InlineTask`): the lock goes first.
            let stop = channel.takes.lock().remove(&(from, call_id));
            drop(stop);
            return;
        }
        RefRequestKind::PutFront => {
            run_now_or_spawn(Box::pin(async move {
                // `put_front` decodes at once, here: handles inside are this node's.
                let put = enter(&node, || channel.erased.put_front(value));
                if let Err(e) = put.await {
                    tracing::warn!(error = %e, "a value handed back to a channel was lost");
                }
            }));
            return;
        }
        _ => {}
    }
    // Registered before the task starts, so a stop handled after this finds it.
    let stop = (kind == RefRequestKind::Take).then(|| {
        let (tx, rx) = oneshot::channel::<()>();
        channel.takes.lock().insert((from, call_id), tx);
        rx
    });
    let op = async move {
        let e = &channel.erased;
        let to = (node.clone(), from);
        // Every operation decodes at once, here: handles inside the value (and the
        // key) are this node's.
        let reply = match kind {
            RefRequestKind::Put => enter(&node, || e.put(value)).await.map(|()| Bytes::new()),
            RefRequestKind::Take => {
                let take = enter(&node, || e.take(value, credits, to));
                match stop {
                    Some(stop) => {
                        // The stop first: once stopped, the take is not polled again.
                        let r = match future::select(stop, take).await {
                            Either::Left(_) => Err(stopped(&node)),
                            Either::Right((r, _)) => r,
                        };
                        let stop = channel.takes.lock().remove(&(from, call_id));
                        drop(stop);
                        r
                    }
                    None => take.await,
                }
            }
            RefRequestKind::Fetch => enter(&node, || e.fetch(value, to)).await,
            RefRequestKind::Wait => enter(&node, || e.wait(value)).await.map(|()| Bytes::new()),
            RefRequestKind::IsReady => enter(&node, || e.isready(value))
                .map(|ready| Bytes::from_static(if ready { &[1] } else { &[0] })),
            RefRequestKind::Close => {
                e.close();
                Ok(Bytes::new())
            }
            RefRequestKind::Unspecified => {
                Err(CallError::Protocol(ProtocolError::RequestWithoutKind))
            }
            RefRequestKind::Cancel
            | RefRequestKind::PutFront
            | RefRequestKind::PutCredited
            | RefRequestKind::Return => {
                unreachable!("handled above")
            }
            RefRequestKind::Grant | RefRequestKind::Revoke => {
                unreachable!("the core handles these (`Store::credit_message`)")
            }
        };
        // A value put here by this process itself was never checked against the
        // message limit: refuse to send one over it (the requester would drop the
        // connection), and give a taken one back to the channel, at its front.
        let reply = match reply {
            Ok(bytes) => match crate::api::limits::check_result(&node, bytes.len()) {
                Ok(()) => Ok(bytes),
                Err(f) => {
                    if kind == RefRequestKind::Take {
                        let back = enter(&node, || e.put_front(bytes));
                        if let Err(e) = back.await {
                            tracing::warn!(error = %e, "a value too large to send was lost");
                        }
                    }
                    Err(CallError::Remote(RemoteException::from_failure(
                        node.myid(),
                        "",
                        f,
                    )))
                }
            },
            Err(e) => Err(e),
        };
        // A put that asked for credits gets them before its answer, on the same
        // connection: its next put may use them.
        // (A take's `credits` asked for a take-ahead, not for credits.)
        let grant = credits > 0 && kind == RefRequestKind::Put && reply.is_ok();
        node.with_core(|c| {
            if grant {
                c.grant(id, from, credits, |max| e.reserve(max));
            }
            c.reply(from, call_id, reply)
        });
    };
    // Polled here; if it must wait (a take from an empty channel, a put into a
    // full one), polled again by the thread whose put or take wakes it, which then
    // writes the answer: no hand-off to a runtime thread on the way.
    InlineTask::start(Box::pin(op));
}

/// Polls `op` once here, and spawns it only if it must wait: an operation that can
/// finish at once (a take from a channel holding values, a put into one with room)
/// is answered without a task and the wake-up of a runtime thread.
pub(crate) fn run_now_or_spawn(mut op: BoxFuture<'static, ()>) {
    let mut cx = Context::from_waker(Waker::noop());
    if op.as_mut().poll(&mut cx).is_pending() {
        // Polled again by the task, which registers its own waker: a value that
        // came meanwhile is seen then.
        super::runtime::handle().spawn(op);
    }
}

/// What a channel stored here tells of its reservations (`Channel::on_reservations`):
/// reserved places wanted back are revoked from their holders; a freed place goes
/// to holders that would like more credits.
pub(crate) fn reservations(node: &Node, id: RefId, event: Reservations) {
    node.with_core(|c| match event {
        Reservations::Wanted => c.revoke_credits(id),
        Reservations::Freed => {
            if let Some(slot) = c.channel(id) {
                c.grant_wanting(id, |max| slot.erased.reserve(max));
            }
        }
    });
}
