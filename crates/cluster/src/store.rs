//! Values this process stores for others (the owner side of remote references) and
//! the bookkeeping of handles it holds (the client side), both driven through the
//! sans-IO [`RefTracker`] of `cohort-refs`. This module does the I/O around it: it
//! answers requests, sends the tracker's batches, drops freed values.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cohort_refs::{BatchPolicy, RefOp, RefStats, RefTracker};
use cohort_wire::ids::{Pid, RefId};
use cohort_wire::proto::{self, envelope::Kind, Envelope, RefRequestKind};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::channel::ChannelSlot;
use crate::error::{CallError, RemoteException};
use crate::node::{node, Reply};

/// Who waits for a stored value.
enum Waiter {
    Remote {
        pid: Pid,
        call_id: u64,
        kind: RefRequestKind,
    },
    Local {
        tx: oneshot::Sender<Reply>,
        kind: RefRequestKind,
    },
}

/// One stored value: set once; requests that came before it wait.
#[derive(Default)]
pub(crate) struct Slot {
    value: Option<Result<Bytes, RemoteException>>,
    waiters: Vec<Waiter>,
    /// Set when the reference is a `RemoteChannel` rather than a `Future`.
    channel: Option<ChannelSlot>,
}

/// What to do once the lock is released.
enum Action {
    Reply {
        pid: Pid,
        call_id: u64,
        reply: Reply,
    },
    Local {
        tx: oneshot::Sender<Reply>,
        reply: Reply,
    },
}

impl Action {
    fn run(self) {
        match self {
            Action::Reply {
                pid,
                call_id,
                reply,
            } => send_reply(pid, call_id, reply),
            Action::Local { tx, reply } => {
                let _ = tx.send(reply);
            }
        }
    }
}

/// Sends a `CallResult` for `call_id` to `pid`.
pub(crate) fn send_reply(pid: Pid, call_id: u64, reply: Reply) {
    use proto::call_result::Outcome;
    let outcome = match reply {
        // Shared, not copied: the frame writes it from where it is.
        Ok(v) => Outcome::Value(v),
        Err(CallError::Remote(e)) => Outcome::Error(e.to_wire()),
        Err(other) => Outcome::Error(
            RemoteException {
                pid: node().myid(),
                kind: match other {
                    CallError::AlreadySet => crate::error::ErrorKind::AlreadySet,
                    CallError::ChannelClosed => crate::error::ErrorKind::ChannelClosed,
                    CallError::ChannelUnsupported(_) => crate::error::ErrorKind::Error,
                    _ => crate::error::ErrorKind::Reference,
                },
                function: String::new(),
                message: other.to_string(),
                context: String::new(),
            }
            .to_wire(),
        ),
    };
    let env = Envelope {
        kind: Some(Kind::Result(proto::CallResult {
            call_id,
            outcome: Some(outcome),
        })),
    };
    if let Err(e) = node().send(pid, &env) {
        tracing::debug!(pid, error = %e, "reply not sent");
    }
}

fn answer(value: &Result<Bytes, RemoteException>, kind: RefRequestKind) -> Reply {
    match (value, kind) {
        (Err(e), RefRequestKind::Fetch | RefRequestKind::Wait) => Err(CallError::Remote(e.clone())),
        (Ok(v), RefRequestKind::Fetch) => Ok(v.clone()),
        _ => Ok(Bytes::new()),
    }
}

/// The reference store of this process.
pub(crate) struct Store {
    tracker: Mutex<RefTracker<Slot>>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            tracker: Mutex::new(RefTracker::new(cohort_wire::ids::MASTER, policy())),
        }
    }
}

fn policy() -> BatchPolicy {
    BatchPolicy::default()
}

impl Store {
    /// Starts over as process `me` (a worker learns its pid when it joins, before any
    /// reference exists).
    pub(crate) fn reset(&self, me: Pid) {
        *self.tracker.lock() = RefTracker::new(me, policy());
    }

    fn with_slot(&self, id: RefId, f: impl FnOnce(&mut Slot) -> Vec<Action>) -> Vec<Action> {
        let mut t = self.tracker.lock();
        if t.get(&id).is_none() {
            // A request can overtake the call that makes the value (it comes from a
            // third process over another connection): make the slot, creator
            // registered, and let the value fill it later.
            let _ = t.insert(id, Slot::default(), id.whence);
        }
        match t.get_mut(&id) {
            Some(slot) => f(slot),
            None => Vec::new(),
        }
    }

    /// Stores the value of `id` (a call's result, or a `put`).
    ///
    /// # Errors
    /// [`CallError::AlreadySet`] if it already has one.
    pub(crate) fn set(
        &self,
        id: RefId,
        value: Result<Bytes, RemoteException>,
    ) -> Result<(), CallError> {
        let mut already = false;
        let actions = self.with_slot(id, |slot| {
            if slot.value.is_some() {
                already = true;
                return Vec::new();
            }
            let actions = slot
                .waiters
                .drain(..)
                .map(|w| match w {
                    Waiter::Remote { pid, call_id, kind } => Action::Reply {
                        pid,
                        call_id,
                        reply: answer(&value, kind),
                    },
                    Waiter::Local { tx, kind } => Action::Local {
                        tx,
                        reply: answer(&value, kind),
                    },
                })
                .collect();
            slot.value = Some(value);
            actions
        });
        actions.into_iter().for_each(Action::run);
        // Storing can free at once (every client let go before the value arrived).
        self.drive();
        if already {
            Err(CallError::AlreadySet)
        } else {
            Ok(())
        }
    }

    /// Stores a channel made by a factory on this process (its creator, `id.whence`,
    /// holds the first handle).
    pub(crate) fn install_channel(&self, id: RefId, slot: ChannelSlot) {
        let mut t = self.tracker.lock();
        let slot = Slot {
            channel: Some(slot),
            ..Default::default()
        };
        if let Err(slot) = t.insert(id, slot, id.whence) {
            if let Some(existing) = t.get_mut(&id) {
                existing.channel = slot.channel;
            }
        }
    }

    /// The channel stored under `id`, if any.
    pub(crate) fn channel(&self, id: RefId) -> Option<ChannelSlot> {
        self.tracker.lock().get(&id).and_then(|s| s.channel.clone())
    }

    /// Handles a request on a channel: the operation may wait (for room, for a
    /// value), so it runs as a task and replies when done.
    fn channel_request(
        from: Pid,
        call_id: u64,
        ch: ChannelSlot,
        kind: RefRequestKind,
        value: Bytes,
    ) {
        crate::runtime::handle().spawn(async move {
            let e = &ch.erased;
            let reply = match kind {
                RefRequestKind::Put => e.put(value).await.map(|()| Bytes::new()),
                RefRequestKind::Take => e.take().await,
                RefRequestKind::Fetch => e.fetch().await,
                RefRequestKind::Wait => e.wait().await.map(|()| Bytes::new()),
                RefRequestKind::IsReady => {
                    Ok(Bytes::from_static(if e.isready() { &[1] } else { &[0] }))
                }
                RefRequestKind::Close => {
                    e.close();
                    Ok(Bytes::new())
                }
                RefRequestKind::Unspecified => {
                    Err(CallError::Serialization("request of no kind".into()))
                }
            };
            send_reply(from, call_id, reply);
        });
    }

    /// Handles a request from `from` (or from this process, with `local`).
    pub(crate) fn request(
        &self,
        from: Pid,
        call_id: u64,
        id: RefId,
        kind: RefRequestKind,
        put_value: Bytes,
        local: Option<oneshot::Sender<Reply>>,
    ) {
        if local.is_none() {
            if let Some(ch) = self.channel(id) {
                Self::channel_request(from, call_id, ch, kind, put_value);
                return;
            }
        }
        if matches!(kind, RefRequestKind::Take | RefRequestKind::Close) {
            let reply = Err(CallError::Serialization(format!(
                "reference {id} is not a channel on worker {}",
                node().myid()
            )));
            match local {
                Some(tx) => {
                    let _ = tx.send(reply);
                }
                None => send_reply(from, call_id, reply),
            }
            return;
        }
        if kind == RefRequestKind::Put {
            let r = self.set(id, Ok(put_value));
            let reply = r.map(|()| Bytes::new());
            match local {
                Some(tx) => {
                    let _ = tx.send(reply);
                }
                None => send_reply(from, call_id, reply),
            }
            return;
        }
        let actions = self.with_slot(id, |slot| {
            let reply = match (&slot.value, kind) {
                (v, RefRequestKind::IsReady) => {
                    Ok(Bytes::from_static(if v.is_some() { &[1] } else { &[0] }))
                }
                (Some(v), _) => answer(v, kind),
                (None, _) => {
                    return match local {
                        Some(tx) => {
                            slot.waiters.push(Waiter::Local { tx, kind });
                            Vec::new()
                        }
                        None => {
                            slot.waiters.push(Waiter::Remote {
                                pid: from,
                                call_id,
                                kind,
                            });
                            Vec::new()
                        }
                    };
                }
            };
            vec![match local {
                Some(tx) => Action::Local { tx, reply },
                None => Action::Reply {
                    pid: from,
                    call_id,
                    reply,
                },
            }]
        });
        actions.into_iter().for_each(Action::run);
    }

    /// Applies a batch of client-set changes from a peer.
    pub(crate) fn handle_ops(&self, ops: Vec<proto::RefOp>) {
        let ops = ops.into_iter().filter_map(|op| {
            let id: RefId = op.ref_id?.into();
            Some(if op.delta >= 0 {
                RefOp::AddClient {
                    id,
                    client: op.client,
                }
            } else {
                RefOp::DelClient {
                    id,
                    client: op.client,
                    count: op.delta.unsigned_abs(),
                }
            })
        });
        self.tracker.lock().handle_ops(ops);
        self.drive();
    }

    /// A peer is gone: forget its registrations and waiters, free what it alone held.
    pub(crate) fn peer_died(&self, pid: Pid) {
        self.tracker.lock().handle_peer_died(pid);
        self.drive();
    }

    // ----- the client side: handles held by this process -----

    pub(crate) fn created(&self, id: RefId, owner: Pid) {
        let _ = self.tracker.lock().created(id, owner);
    }

    pub(crate) fn deserialized(&self, id: RefId, owner: Pid, fresh_handle: bool) {
        let mut t = self.tracker.lock();
        let _ = t.deserialized(id, owner);
        if !fresh_handle {
            // The process already had a handle and shares it: keep the registration
            // the sender made for us, but not a second local handle.
            let _ = t.dropped(id, Instant::now());
        }
        drop(t);
        self.drive();
    }

    /// A handle is about to travel to `dest`: registers `dest` with the owner and sends
    /// that registration ahead of the message that carries the handle.
    pub(crate) fn serialized(&self, id: RefId, dest: Pid) {
        let batch = {
            let mut t = self.tracker.lock();
            match t.serialized(id, dest, Instant::now()) {
                Ok(owner) => t.flush(owner).map(|ops| (owner, ops)),
                Err(_) => None,
            }
        };
        if let Some((owner, ops)) = batch {
            send_batch(owner, ops);
        }
        self.drive();
    }

    pub(crate) fn dropped(&self, id: RefId) {
        let _ = self.tracker.lock().dropped(id, Instant::now());
        self.drive();
    }

    pub(crate) fn released(&self, id: RefId) {
        let _ = self.tracker.lock().released(id, Instant::now());
        self.drive();
    }

    pub(crate) fn stats(&self) -> RefStats {
        self.tracker.lock().stats()
    }

    /// Sends what is due and drops what was freed; arms the batch timer.
    pub(crate) fn drive(&self) {
        let now = Instant::now();
        let mut batches = Vec::new();
        let mut freed = Vec::new();
        let deadline = {
            let mut t = self.tracker.lock();
            while let Some(b) = t.poll_transmit(now) {
                batches.push(b);
            }
            while let Some(f) = t.poll_freed() {
                freed.push(f);
            }
            if !freed.is_empty() {
                t.shrink_if_sparse();
            }
            t.poll_timeout()
        };
        for (owner, ops) in batches {
            send_batch(owner, ops);
        }
        // Freed slots drop here, outside the lock; a waiter still in one sees its
        // channel close and reports the reference as gone.
        drop(freed);
        if let Some(at) = deadline {
            arm_timer(at);
        }
    }

    /// Sends everything queued now and drops what was freed (shutdown, stats).
    pub(crate) fn flush_all(&self) {
        let batches = self.tracker.lock().flush_all();
        for (owner, ops) in batches {
            send_batch(owner, ops);
        }
        self.drive();
    }
}

fn send_batch(owner: Pid, ops: Vec<RefOp>) {
    let ops = ops
        .into_iter()
        .map(|op| proto::RefOp {
            ref_id: Some(op.id().into()),
            client: op.client(),
            delta: op.delta(),
        })
        .collect();
    let env = Envelope {
        kind: Some(Kind::RefBatch(proto::RefBatch { ops })),
    };
    if let Err(e) = node().send(owner, &env) {
        tracing::debug!(owner, error = %e, "reference batch not sent");
    }
}

/// One timer task for the batch deadline; re-armed to the earliest deadline asked for.
fn arm_timer(at: Instant) {
    static TIMER: std::sync::OnceLock<Arc<tokio::sync::watch::Sender<Option<Instant>>>> =
        std::sync::OnceLock::new();
    let tx = TIMER.get_or_init(|| {
        let (tx, mut rx) = tokio::sync::watch::channel(None::<Instant>);
        crate::runtime::handle().spawn(async move {
            loop {
                let next = *rx.borrow_and_update();
                match next {
                    Some(at) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at.into()) => node().store.drive(),
                            r = rx.changed() => if r.is_err() { break },
                        }
                    }
                    None => {
                        if rx.changed().await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Arc::new(tx)
    });
    tx.send_if_modified(|cur| {
        if cur.is_none_or(|c| at < c || c <= Instant::now()) {
            *cur = Some(at);
            true
        } else {
            false
        }
    });
}
