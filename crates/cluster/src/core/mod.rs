//! The sans-IO core of the runtime: everything a process decides about the cluster,
//! with no tokio, sockets, threads, globals or clock inside.
//!
//! It is quinn's `quinn-proto` applied to the runtime. Events go in —
//! [`Core::handle_envelope`] for a message from a peer, [`Core::handle_peer_lost`],
//! [`Core::handle_timeout`] and commands from user handles (send a call, register a
//! reply waiter, a handle was dropped, a call finished…) — each with `now` where time
//! matters. Outputs come back through [`Core::poll_output`] (a message to transmit, a
//! waiter to complete, a call to run, a connection to make, a membership change, a
//! freed value to drop, exit) and [`Core::poll_timeout`] (when to call
//! `handle_timeout`). The shell (`crate::shell`) owns the sockets and threads and
//! pumps the core; the simulation (`sim`, in tests) pumps N cores with seeded
//! reordering, delays and deaths.
//!
//! The core is generic over `W`, how a waiting caller is told its reply (a oneshot
//! sender in the shell, a token in the simulation), and `C`, the channel object a
//! `RemoteChannel` slot holds (its operations may wait, so the shell runs them).
//!
//! Modules: [`membership`] (who is in the cluster, topology, routes), [`replies`]
//! (the pending-reply table), [`store`] (the reference store over `cohort-refs`),
//! [`calls`] (running calls and interrupts), [`liveness`] (heartbeats, and the
//! verdict on a peer that went quiet).

pub(crate) mod calls;
pub(crate) mod credits;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod ids;
pub(crate) mod liveness;
pub(crate) mod membership;
pub(crate) mod replies;
#[cfg(test)]
mod sim;
pub(crate) mod store;
#[cfg(test)]
mod take_tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort_refs::RefStats;
use cohort_transport::Topology;
use cohort_wire::envelope::Splices;
use cohort_wire::ids::{Pid, RefId, MASTER};
use cohort_wire::proto::{
    self, call_result::Outcome, envelope::Kind, CallMode, Envelope, RefRequestKind, WorkerInfo,
};

use crate::error::{CallError, ErrorKind, ProtocolError, RemoteException};
use calls::{Calls, Running};
use liveness::{Heartbeat, Liveness};
use membership::{Membership, Route};
use replies::Replies;
use store::{Slot, Store};

/// A reply someone is waiting for: the encoded value, or why there is none.
pub(crate) type Reply = Result<Bytes, CallError>;

/// A received call the shell must run; its outcome goes back through
/// [`Core::finish_call`] with `seq`.
#[derive(Debug)]
pub(crate) struct RunCall {
    pub(crate) seq: u64,
    pub(crate) from: Pid,
    pub(crate) call: proto::Call,
}

/// An operation on a stored channel (it may wait, so the shell runs it), answered
/// with [`Core::reply`].
pub(crate) struct ChannelOp<C> {
    pub(crate) from: Pid,
    pub(crate) call_id: u64,
    /// The channel's reference.
    pub(crate) id: RefId,
    pub(crate) channel: C,
    pub(crate) kind: RefRequestKind,
    pub(crate) value: Bytes,
    /// Credits: for `PUT` and `PUT_CREDITED` how many `from` would like to hold
    /// (grant them with [`Core::grant`] once the value is in); for `RETURN` how many
    /// reserved places to give back to the channel; as the request carried them for
    /// the other kinds (unused).
    pub(crate) credits: u32,
}

/// A change of membership, for those who watch it (pools, managers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A worker joined (or was announced by the master).
    Added(Pid),
    /// A worker left: died, or was removed.
    Removed(Pid),
}

/// What the shell must do.
pub(crate) enum Output<W, C> {
    /// Send `env` to `to`, in order with every other transmit to `to`; its payload
    /// field has `splices` in their places (see
    /// [`encode_envelope_spliced`](cohort_wire::envelope::encode_envelope_spliced)).
    Transmit {
        to: Pid,
        env: Envelope,
        splices: Splices,
    },
    /// Make a connection to this worker; transmits to it that follow wait for it.
    Connect(WorkerInfo),
    /// Close the connection to `pid` now, without waiting for it to end: the core
    /// declared the peer unresponsive (and has already handled it as lost).
    Disconnect { pid: Pid, reason: String },
    /// Tell a waiting caller its reply.
    Complete { waiter: W, reply: Reply },
    /// Run a received call.
    Run(RunCall),
    /// Run an operation on a stored channel.
    Channel(ChannelOp<C>),
    /// A value nobody holds any more: drop it (outside any lock).
    Freed(#[allow(dead_code)] RefId, Box<Slot<W, C>>),
    /// Membership changed.
    Membership(Change),
    /// An interrupt arrived: raise the flag running calls poll.
    Interrupted,
    /// A `remote_do` failed; nobody waits for it, so it is reported here.
    RemoteDoFailed(RemoteException),
    /// This worker must exit (its master is gone, or asked it to).
    Exit(i32),
}

/// The queue of outputs, with the helpers the parts of the core share.
pub(crate) struct Outputs<W, C> {
    queue: VecDeque<Output<W, C>>,
}

impl<W, C> Output<W, C> {
    /// A [`Transmit`](Output::Transmit) of `env` as it is (no splices).
    pub(crate) fn transmit(to: Pid, env: Envelope) -> Self {
        Output::Transmit {
            to,
            env,
            splices: Splices::default(),
        }
    }
}

impl<W, C> Outputs<W, C> {
    pub(crate) fn push(&mut self, o: Output<W, C>) {
        self.queue.push_back(o);
    }

    /// Sends the result of a `CALL_PUSH` call to its caller (see [`PUSH_LIMIT`]).
    pub(crate) fn push_result(
        &mut self,
        me: Pid,
        to: Pid,
        call_id: u64,
        result: &Result<Bytes, RemoteException>,
    ) {
        let env = match result {
            Ok(v) if v.len() > PUSH_LIMIT => Envelope {
                kind: Some(Kind::Result(proto::CallResult {
                    call_id,
                    outcome: Some(Outcome::Stored(true)),
                })),
            },
            Ok(v) => reply_envelope(me, call_id, Ok(v.clone())),
            Err(e) => reply_envelope(me, call_id, Err(CallError::Remote(e.clone()))),
        };
        self.push(Output::transmit(to, env));
    }

    /// Queues a `CallResult` for `call_id` to `to`.
    pub(crate) fn reply(&mut self, me: Pid, to: Pid, call_id: u64, reply: Reply) {
        self.push(Output::transmit(to, reply_envelope(me, call_id, reply)));
    }
}

/// The largest result a `CALL_PUSH` call sends to its caller unasked; a larger one
/// stays with the callee until the caller (or anyone holding the handle) fetches it,
/// so that results passed on from worker to worker do not all travel to the master.
pub(crate) const PUSH_LIMIT: usize = 64 * 1024;

/// The `CallResult` that carries `reply` to a caller.
fn reply_envelope(me: Pid, call_id: u64, reply: Reply) -> Envelope {
    let outcome = match reply {
        // Shared, not copied: the frame writes it from where it is.
        Ok(v) => Outcome::Value(v),
        Err(CallError::Remote(e)) => Outcome::Error(e.to_wire()),
        Err(other) => Outcome::Error(
            RemoteException {
                pid: me,
                kind: match other {
                    CallError::AlreadySet => ErrorKind::AlreadySet,
                    CallError::ChannelClosed => ErrorKind::ChannelClosed,
                    CallError::ChannelUnsupported(_) => ErrorKind::Error,
                    _ => ErrorKind::Reference,
                },
                function: String::new(),
                message: other.to_string(),
                context: String::new(),
            }
            .to_wire(),
        ),
    };
    Envelope {
        kind: Some(Kind::Result(proto::CallResult {
            call_id,
            outcome: Some(outcome),
        })),
    }
}

/// The channel a request is a `TAKE` on, if it is one.
fn take_of(env: &Envelope) -> Option<RefId> {
    match &env.kind {
        Some(Kind::RefRequest(r)) if r.kind() == RefRequestKind::Take => r.ref_id.map(Into::into),
        _ => None,
    }
}

/// A request on channel `id` that its owner does not answer (`CANCEL`, `PUT_FRONT`).
fn channel_request(call_id: u64, id: RefId, kind: RefRequestKind, value: Bytes) -> Envelope {
    Envelope {
        kind: Some(Kind::RefRequest(proto::RefRequest {
            call_id,
            ref_id: Some(id.into()),
            kind: kind as i32,
            value,
            creator: id.whence,
            credits: 0,
        })),
    }
}

/// A credit message on channel `id` (`PUT_CREDITED`, `GRANT`, `REVOKE`, `RETURN`):
/// never answered, so its `call_id` is 0.
pub(crate) fn credit_request(
    id: RefId,
    kind: RefRequestKind,
    value: Bytes,
    credits: u32,
) -> Envelope {
    let mut env = channel_request(0, id, kind, value);
    if let Some(Kind::RefRequest(r)) = &mut env.kind {
        r.credits = credits;
    }
    env
}

/// A payload decoded from a frame is a slice of the connection's read buffer. A large
/// one keeps it as is (the buffer was sized for that frame); a small one is copied
/// out, so that a value kept for long (a cached result, an item in a channel) does not
/// pin a whole read buffer full of other messages.
pub(crate) fn own(payload: Bytes) -> Bytes {
    if payload.len() < cohort_wire::envelope::SPLIT_PAYLOAD_MIN {
        Bytes::copy_from_slice(&payload)
    } else {
        payload
    }
}

/// What a worker learns from the master's `Join`.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    pub(crate) pid: Pid,
    pub(crate) topology: Topology,
    pub(crate) lazy: bool,
    /// Workers already in the cluster.
    pub(crate) known: Vec<WorkerInfo>,
    /// Workers to connect to now (eager all-to-all, custom links).
    pub(crate) connect_now: Vec<WorkerInfo>,
    /// Under a custom topology, whether `connect_now` lists the only allowed links.
    pub(crate) custom: bool,
    /// The cluster's heartbeat settings (`None`: off), which the master decides.
    pub(crate) heartbeat: Option<Heartbeat>,
}

/// The state of one process of the cluster.
pub(crate) struct Core<W, C> {
    membership: Membership,
    replies: Replies<W>,
    calls: Calls,
    store: Store<W, C>,
    liveness: Liveness,
    /// The deadline last handed to the shell's timer (see [`Core::new_deadline`]).
    last_deadline: Option<Instant>,
    #[cfg(test)]
    next_ref: u64,
    out: Outputs<W, C>,
    /// Messages for workers this process has not heard of yet, in order: a handle can
    /// arrive before the news of the worker that owns it, and its reference messages
    /// (the registration of where it goes next, its release) must not be lost. Sent
    /// when the worker is added, dropped when it is known gone.
    parked: BTreeMap<Pid, Vec<(Envelope, Splices)>>,
}

impl<W, C: Clone> Default for Core<W, C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W, C: Clone> Core<W, C> {
    /// A master (pid 1) with no workers.
    pub(crate) fn new() -> Self {
        Core {
            membership: Membership::new(),
            replies: Replies::default(),
            calls: Calls::default(),
            store: Store::new(MASTER),
            liveness: Liveness::default(),
            last_deadline: None,
            #[cfg(test)]
            next_ref: 1,
            out: Outputs {
                queue: VecDeque::new(),
            },
            parked: BTreeMap::new(),
        }
    }

    // ----- outputs -----

    /// The next thing the shell must do, in order. A transmit to a worker with no
    /// connection yet (a reference batch to an owner never talked to, say) comes
    /// after the [`Output::Connect`] that makes it; one to a worker not heard of yet
    /// waits until it is added; one to a process that cannot be reached is dropped.
    pub(crate) fn poll_output(&mut self) -> Option<Output<W, C>> {
        loop {
            let Some(o) = self.out.queue.pop_front() else {
                // After a burst (thousands of replies handed over in one step), give
                // the queue's memory back: a quiet worker returns to its baseline.
                if self.out.queue.capacity() > 1024 {
                    self.out.queue.shrink_to_fit();
                }
                return None;
            };
            let Output::Transmit { to, env, splices } = o else {
                return Some(o);
            };
            match self.membership.route(to) {
                Ok(Route::Connected) => return Some(Output::Transmit { to, env, splices }),
                Ok(Route::ConnectFirst(info)) => {
                    self.membership.set_connected(info.pid);
                    self.out
                        .queue
                        .push_front(Output::Transmit { to, env, splices });
                    return Some(Output::Connect(info));
                }
                // Not heard of yet: the news of it is on its way from the master.
                Err(CallError::NoSuchProcess { .. }) => {
                    self.parked.entry(to).or_default().push((env, splices))
                }
                Err(e) => tracing::debug!(error = %e, "message not sent"),
            }
        }
    }

    /// `pid` was added: what was parked for it goes out first, in order.
    fn unpark(&mut self, pid: Pid) {
        for (env, splices) in self
            .parked
            .remove(&pid)
            .unwrap_or_default()
            .into_iter()
            .rev()
        {
            self.out.queue.push_front(Output::Transmit {
                to: pid,
                env,
                splices,
            });
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due (reference batches,
    /// the next liveness check).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match (self.store.poll_timeout(), self.liveness.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// [`poll_timeout`](Self::poll_timeout) if it changed since the last call: the
    /// deadline the shell's timer must hear of. A step that produced no output still
    /// moves it (joining the cluster starts the heartbeats), so the shell asks after
    /// every step — a comparison, not a system call.
    pub(crate) fn new_deadline(&mut self) -> Option<Instant> {
        let d = self.poll_timeout();
        if d == self.last_deadline {
            return None;
        }
        self.last_deadline = d;
        d
    }

    /// Time passed: sends the reference batches that are due; at each liveness check,
    /// a heartbeat to every connected peer, and peers silent for the timeout are
    /// declared unresponsive.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.store.drive(&mut self.out, now);
        let check = self.liveness.check(now, self.membership.connected());
        for to in check.beat {
            self.out.push(Output::transmit(
                to,
                Envelope {
                    kind: Some(Kind::Heartbeat(proto::Heartbeat {})),
                },
            ));
        }
        for (pid, quiet) in check.silent {
            self.declare_unresponsive(pid, quiet, now);
        }
    }

    /// Turns heartbeats on (or off, `None`) for every connection of this process.
    pub(crate) fn set_heartbeat(&mut self, heartbeat: Option<Heartbeat>, now: Instant) {
        self.liveness.configure(heartbeat, now);
    }

    /// The heartbeat settings in force (`None`: off).
    pub(crate) fn heartbeat(&self) -> Option<Heartbeat> {
        self.liveness.config()
    }

    /// Bytes of a message still arriving came from `pid` (a large frame takes a while;
    /// it counts as hearing from the peer). Every whole message counts by itself.
    pub(crate) fn handle_heard(&mut self, pid: Pid, now: Instant) {
        self.liveness.heard(pid, now);
    }

    /// Nothing came from `pid` for `quiet`: it is handled as lost — what waits on it
    /// fails naming it and the reason; the master drops it from the cluster, tells
    /// the others and (through the membership change) has its manager kill it — and
    /// its connection is closed. A worker whose master is silent exits.
    fn declare_unresponsive(&mut self, pid: Pid, quiet: Duration, now: Instant) {
        let timeout = self.liveness.config().map_or(quiet, |h| h.timeout());
        let reason = format!(
            "unresponsive: nothing heard from it for {:.1} s (heartbeat timeout {:.1} s)",
            quiet.as_secs_f64(),
            timeout.as_secs_f64()
        );
        tracing::warn!(pid, %reason, "declaring peer lost");
        self.out.push(Output::Disconnect {
            pid,
            reason: reason.clone(),
        });
        self.handle_peer_lost(pid, &reason, now);
    }

    // ----- identity and membership -----

    pub(crate) fn me(&self) -> Pid {
        self.membership.me()
    }

    pub(crate) fn is_worker(&self) -> bool {
        self.membership.is_worker()
    }

    pub(crate) fn membership(&self) -> &Membership {
        &self.membership
    }

    /// A fresh reference id, created by this process. (The shell counts its own, outside
    /// the lock; the simulation uses these.)
    #[cfg(test)]
    pub(crate) fn new_ref(&mut self) -> RefId {
        let id = self.next_ref;
        self.next_ref += 1;
        RefId::new(self.me(), id)
    }

    /// A fresh request id (as [`new_ref`](Self::new_ref): for the simulation).
    #[cfg(test)]
    pub(crate) fn new_call_id(&mut self) -> u64 {
        self.replies.new_call_id()
    }

    pub(crate) fn next_worker(&mut self) -> Pid {
        self.membership.next_worker()
    }

    pub(crate) fn set_topology(&mut self, topology: Topology, lazy: bool) {
        self.membership.set_topology(topology, lazy);
    }

    /// The pid for a worker about to join (master).
    pub(crate) fn allocate_pid(&mut self) -> Pid {
        self.membership.allocate_pid()
    }

    /// This worker joined the cluster (the master's `Join`): it takes its pid, learns
    /// the others and connects to those it must connect to now.
    pub(crate) fn handle_joined(&mut self, j: Joined, now: Instant) {
        self.membership.become_worker(j.pid);
        self.store = Store::new(j.pid);
        self.liveness.configure(j.heartbeat, now);
        self.membership.set_topology(j.topology, j.lazy);
        self.membership.set_connected(MASTER);
        for info in j.known {
            let pid = info.pid;
            self.membership.add_worker(info);
            self.unpark(pid);
        }
        for info in j.connect_now {
            if j.custom {
                self.membership.allow_link(info.pid);
            }
            self.membership.add_worker(info.clone());
            self.connect(info);
        }
    }

    fn connect(&mut self, info: WorkerInfo) {
        if self.membership.is_member(info.pid)
            && !self.membership.connected().any(|p| p == info.pid)
        {
            self.membership.set_connected(info.pid);
            self.out.push(Output::Connect(info));
        }
    }

    /// A connection to `pid` is up (accepted, or made by a join). `announce` (master)
    /// adds `info` to the cluster and tells the other workers.
    pub(crate) fn handle_connected(&mut self, pid: Pid, info: Option<WorkerInfo>, announce: bool) {
        self.membership.set_connected(pid);
        if let Some(info) = info {
            self.membership.add_worker(info.clone());
            self.unpark(pid);
            self.out.push(Output::Membership(Change::Added(pid)));
            if announce {
                self.broadcast(
                    pid,
                    Envelope {
                        kind: Some(Kind::PeerUpdate(proto::PeerUpdate {
                            added: vec![info],
                            removed: vec![],
                        })),
                    },
                );
            }
        }
    }

    /// Transmits `env` to every connected worker except `except`.
    fn broadcast(&mut self, except: Pid, env: Envelope) {
        let mut to: Vec<Pid> = self
            .membership
            .connected()
            .filter(|p| *p != except && *p != MASTER)
            .collect();
        to.sort_unstable();
        for pid in to {
            self.out.push(Output::transmit(pid, env.clone()));
        }
    }

    /// The master removes `pids` (rmprocs): asks each to exit, tells the others.
    ///
    /// # Errors
    /// [`crate::ClusterError`]-worthy misuse is checked by the caller; this returns the
    /// first pid that is not a worker.
    pub(crate) fn remove_workers(&mut self, pids: &[Pid]) -> Result<(), Pid> {
        if let Some(bad) = pids.iter().find(|p| self.membership.worker(**p).is_none()) {
            return Err(*bad);
        }
        for &p in pids {
            // Ask them to exit first, while they still count as connected.
            self.out.push(Output::transmit(
                p,
                Envelope {
                    kind: Some(Kind::Exit(proto::Exit {})),
                },
            ));
        }
        for &p in pids {
            self.membership.remove_worker(p);
            self.out.push(Output::Membership(Change::Removed(p)));
        }
        self.broadcast(
            0,
            Envelope {
                kind: Some(Kind::PeerUpdate(proto::PeerUpdate {
                    added: vec![],
                    removed: pids.to_vec(),
                })),
            },
        );
        Ok(())
    }

    /// The connection to `pid` is gone: fail what waited on it and forget its
    /// references. The master drops a lost worker from the cluster (as Julia does) and
    /// tells the others; a worker that lost its master exits.
    pub(crate) fn handle_peer_lost(&mut self, pid: Pid, reason: &str, now: Instant) {
        let was_connected = self.membership.set_disconnected(pid);
        self.liveness.forget(pid);
        self.parked.remove(&pid);
        // Messages still queued for it went down with its connection.
        self.out
            .queue
            .retain(|o| !matches!(o, Output::Transmit { to, .. } if *to == pid));
        for (waiter, reply) in self.replies.fail_peer(pid, reason) {
            self.out.push(Output::Complete { waiter, reply });
        }
        // Calls it sent go on running: a stored result may be wanted by others who
        // hold its handle; a reply to it is dropped for want of a connection.
        self.store.peer_died(&mut self.out, pid, now);
        if !self.is_worker() {
            if self.membership.remove_worker(pid) || was_connected {
                self.out.push(Output::Membership(Change::Removed(pid)));
            }
            // Tell the others, so owners drop the dead worker from their client sets
            // even when they never talked to it.
            self.broadcast(
                pid,
                Envelope {
                    kind: Some(Kind::PeerUpdate(proto::PeerUpdate {
                        added: vec![],
                        removed: vec![pid],
                    })),
                },
            );
        } else if pid == MASTER {
            self.out.push(Output::Exit(0));
        }
    }

    // ----- sending -----

    /// Queues `env` for `pid` (a connection is made first where the topology allows a
    /// lazy one). The shell sends through [`send_spliced`](Self::send_spliced).
    ///
    /// # Errors
    /// As [`Membership::route`].
    #[cfg(test)]
    pub(crate) fn send(&mut self, pid: Pid, env: Envelope) -> Result<(), CallError> {
        self.send_spliced(pid, env, Splices::default())
    }

    /// Queues `env` for `pid` with `splices` in its payload (see
    /// [`Output::Transmit`]).
    ///
    /// # Errors
    /// As [`Membership::route`].
    pub(crate) fn send_spliced(
        &mut self,
        pid: Pid,
        env: Envelope,
        splices: Splices,
    ) -> Result<(), CallError> {
        self.check_route(pid)?;
        self.out.push(Output::Transmit {
            to: pid,
            env,
            splices,
        });
        Ok(())
    }

    /// Checks that `pid` can be reached, queuing its connection if it must be made.
    ///
    /// # Errors
    /// As [`Membership::route`].
    pub(crate) fn check_route(&mut self, pid: Pid) -> Result<(), CallError> {
        match self.membership.route(pid)? {
            Route::Connected => Ok(()),
            Route::ConnectFirst(info) => {
                self.connect(info);
                Ok(())
            }
        }
    }

    /// Sends the request `env` (carrying `call_id`) to `pid`; its reply goes to
    /// `waiter`.
    ///
    /// # Errors
    /// As [`send`](Self::send); the waiter is dropped then.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn request(
        &mut self,
        pid: Pid,
        call_id: u64,
        env: Envelope,
        waiter: W,
    ) -> Result<(), CallError> {
        self.request_spliced(pid, call_id, env, Splices::default(), waiter)
    }

    /// [`request`](Self::request) with `splices` in the payload of `env`.
    ///
    /// # Errors
    /// As [`send`](Self::send); the waiter is dropped then.
    pub(crate) fn request_spliced(
        &mut self,
        pid: Pid,
        call_id: u64,
        env: Envelope,
        splices: Splices,
        waiter: W,
    ) -> Result<(), CallError> {
        let take = take_of(&env);
        self.send_spliced(pid, env, splices)?;
        self.replies.expect(call_id, pid, take, waiter);
        Ok(())
    }

    /// Gives up waiting for `call_id` (the caller went away); returns whether it was
    /// still pending. A later reply is dropped — except for a channel `TAKE`: its
    /// owner is told to stop the take (`CANCEL`), and a value that comes anyway (it
    /// was removed before the owner heard) is put back at the front of the channel
    /// (`PUT_FRONT`), so that a cancelled take loses nothing.
    pub(crate) fn abandon(&mut self, call_id: u64) -> bool {
        let Some(a) = self.replies.abandon(call_id) else {
            return false;
        };
        if let Some(id) = a.take {
            self.out.push(Output::transmit(
                a.pid,
                channel_request(call_id, id, RefRequestKind::Cancel, Bytes::new()),
            ));
        }
        true
    }

    /// Puts `value`, removed from channel `id` on `owner` by a take of this process
    /// whose caller gave up, back at the front of that channel. For a value that
    /// reached the caller's waiter but not the caller; one that comes after
    /// [`abandon`](Self::abandon) is put back by the core itself.
    pub(crate) fn put_back(&mut self, owner: Pid, id: RefId, value: Bytes) {
        self.out.push(Output::transmit(
            owner,
            channel_request(0, id, RefRequestKind::PutFront, value),
        ));
    }

    /// Answers request `call_id` of `to` (a channel operation finished). A value
    /// taken for a requester that is gone is put back at the front of the channel.
    pub(crate) fn reply(&mut self, to: Pid, call_id: u64, reply: Reply) {
        let me = self.me();
        let take = self.store.channel_op_done(to, call_id);
        if to == me || call_id == 0 {
            return;
        }
        if let Some((id, requester_lost)) = take {
            if requester_lost || self.membership.has_left(to) || self.membership.route(to).is_err()
            {
                // Nobody to answer (a lost connection failed the requester's waiter).
                if let (Ok(value), Some(channel)) = (reply, self.store.channel(id)) {
                    tracing::debug!(pid = to, %id, "taken for a lost requester; put back");
                    self.out.push(Output::Channel(ChannelOp {
                        from: me,
                        call_id: 0,
                        id,
                        channel,
                        kind: RefRequestKind::PutFront,
                        value,
                        credits: 0,
                    }));
                }
                return;
            }
        }
        self.out.reply(me, to, call_id, reply);
    }

    // ----- messages from peers -----

    /// Handles one message from `from`.
    pub(crate) fn handle_envelope(&mut self, from: Pid, env: Envelope, now: Instant) {
        // Any message shows the peer is alive (a heartbeat only says that).
        self.liveness.heard(from, now);
        match env.kind {
            Some(Kind::Heartbeat(_)) => {}
            Some(Kind::Call(call)) => self.start_call(from, call),
            Some(Kind::Result(r)) => {
                let reply = match r.outcome {
                    Some(Outcome::Value(v)) => Ok(own(v)),
                    Some(Outcome::Error(e)) => {
                        Err(CallError::Remote(RemoteException::from_wire(e)))
                    }
                    // A result kept by the callee: its waiter goes without a reply,
                    // which tells the caller to fetch it.
                    Some(Outcome::Stored(_)) => {
                        self.replies.take(r.call_id);
                        return;
                    }
                    None => Ok(Bytes::new()),
                };
                // A reply nobody waits for (the caller gave up) is dropped, unless it
                // carries a value a given-up take removed: that goes back.
                if let Some((_, waiter)) = self.replies.take(r.call_id) {
                    self.out.push(Output::Complete { waiter, reply });
                } else if let Some((owner, id)) = self.replies.take_abandoned(r.call_id) {
                    if let Ok(value) = reply {
                        self.put_back(owner, id, value);
                    }
                }
            }
            Some(Kind::RefRequest(r)) => {
                let kind = r.kind();
                match r.ref_id {
                    Some(id) => self.store.request(
                        &mut self.out,
                        from,
                        r.call_id,
                        id.into(),
                        kind,
                        own(r.value),
                        r.credits,
                        None,
                        now,
                    ),
                    None => {
                        let me = self.me();
                        self.out.reply(
                            me,
                            from,
                            r.call_id,
                            Err(CallError::Protocol(ProtocolError::RequestWithoutReference)),
                        )
                    }
                }
            }
            Some(Kind::RefBatch(b)) => self.store.handle_ops(&mut self.out, b.ops, now),
            Some(Kind::PeerUpdate(u)) => {
                for info in u.added {
                    let pid = info.pid;
                    self.membership.add_worker(info);
                    self.unpark(pid);
                    self.out.push(Output::Membership(Change::Added(pid)));
                }
                for pid in u.removed {
                    self.parked.remove(&pid);
                    let connected = self.membership.connected().any(|p| p == pid);
                    self.membership.remove_worker(pid);
                    // Its registrations go: nothing it held can be used any more. If
                    // this process has a connection to it, what it sent before it died
                    // may still be on that connection (a registration for a handle it
                    // passed on, say): its end, which comes after, does this instead.
                    // Its takes stop now either way, so that they remove nothing more.
                    if connected {
                        self.store.stop_takes_of(&mut self.out, pid);
                    } else {
                        self.store.peer_died(&mut self.out, pid, now);
                    }
                    self.out.push(Output::Membership(Change::Removed(pid)));
                }
            }
            Some(Kind::Exit(_)) => {
                if self.is_worker() {
                    self.out.push(Output::Exit(0));
                }
            }
            Some(Kind::Interrupt(_)) => self.interrupt_local(now),
            Some(
                Kind::Identify(_) | Kind::Join(_) | Kind::JoinComplete(_) | Kind::JoinRequest(_),
            )
            | None => {
                tracing::warn!(
                    pid = from,
                    "unexpected set-up message on an open connection; ignored"
                );
            }
        }
    }

    // ----- calls run here -----

    fn start_call(&mut self, from: Pid, call: proto::Call) {
        let running = Running {
            from,
            call_id: call.call_id,
            mode: call.mode(),
            result_ref: call.result_ref.map(Into::into),
            function: call
                .function
                .as_ref()
                .map(|f| f.display.clone())
                .unwrap_or_default(),
        };
        if let (CallMode::Call | CallMode::CallPush | CallMode::Wait, Some(id)) =
            (running.mode, running.result_ref)
        {
            self.store.expect_result(id);
        }
        let seq = self.calls.start(running);
        self.out.push(Output::Run(RunCall { seq, from, call }));
    }

    /// A call started by [`Output::Run`] finished: delivers its outcome as its mode
    /// asks, unless an interrupt answered it already.
    pub(crate) fn finish_call(
        &mut self,
        seq: u64,
        outcome: Result<Bytes, RemoteException>,
        now: Instant,
    ) {
        if let Some(r) = self.calls.finish(seq) {
            self.deliver(r, outcome, now);
        }
    }

    fn deliver(&mut self, r: Running, out: Result<Bytes, RemoteException>, now: Instant) {
        let me = self.me();
        match r.mode {
            CallMode::Fetch => {
                self.out
                    .reply(me, r.from, r.call_id, out.map_err(CallError::Remote))
            }
            CallMode::Call | CallMode::CallPush | CallMode::Wait => {
                let Some(id) = r.result_ref else {
                    tracing::warn!(from = r.from, "call without a result reference");
                    if matches!(r.mode, CallMode::Wait | CallMode::CallPush) {
                        self.out.reply(
                            me,
                            r.from,
                            r.call_id,
                            Err(CallError::Protocol(ProtocolError::CallWithoutResultRef)),
                        );
                    }
                    return;
                };
                if r.mode == CallMode::CallPush {
                    // Ahead of any reference message the store sends about it.
                    self.out.push_result(me, r.from, r.call_id, &out);
                }
                let stored = self.store.set_result(&mut self.out, id, out.clone(), now);
                if let Err(e) = stored {
                    tracing::debug!(%id, error = %e, "call result not stored");
                }
                if r.mode == CallMode::Wait {
                    self.out.reply(
                        me,
                        r.from,
                        r.call_id,
                        out.map(|_| Bytes::new()).map_err(CallError::Remote),
                    );
                }
            }
            CallMode::RemoteDo | CallMode::Unspecified => {
                if let Err(e) = out {
                    self.out.push(Output::RemoteDoFailed(e));
                }
            }
        }
    }

    /// Interrupts every call running here: each is answered `Interrupted` now.
    pub(crate) fn interrupt_local(&mut self, now: Instant) {
        let me = self.me();
        let all = self.calls.interrupt();
        self.out.push(Output::Interrupted);
        for r in all {
            let e = RemoteException {
                pid: me,
                kind: ErrorKind::Interrupted,
                function: r.function.clone(),
                message: "interrupted".into(),
                context: String::new(),
            };
            self.deliver_interrupted(r, e, now);
        }
    }

    /// Answers an interrupted call; its result reference gets the error too.
    fn deliver_interrupted(&mut self, r: Running, e: RemoteException, now: Instant) {
        let me = self.me();
        match r.mode {
            CallMode::Fetch => self
                .out
                .reply(me, r.from, r.call_id, Err(CallError::Remote(e))),
            CallMode::Call | CallMode::CallPush | CallMode::Wait => {
                if r.mode == CallMode::CallPush {
                    self.out.push_result(me, r.from, r.call_id, &Err(e.clone()));
                }
                if let Some(id) = r.result_ref {
                    let _ = self
                        .store
                        .set_result(&mut self.out, id, Err(e.clone()), now);
                }
                if r.mode == CallMode::Wait {
                    self.out
                        .reply(me, r.from, r.call_id, Err(CallError::Remote(e)));
                }
            }
            CallMode::RemoteDo | CallMode::Unspecified => {}
        }
    }

    /// Interrupts received so far.
    pub(crate) fn interrupt_generation(&self) -> u64 {
        self.calls.generation()
    }

    // ----- the reference store -----

    /// A request by this process on a value it owns; `waiter` gets the reply.
    pub(crate) fn local_request(
        &mut self,
        id: RefId,
        kind: RefRequestKind,
        value: Bytes,
        waiter: W,
        now: Instant,
    ) {
        let me = self.me();
        self.store
            .request(&mut self.out, me, 0, id, kind, value, 0, Some(waiter), now);
    }

    // ----- channel credits (`credits`) -----

    /// A put of this process to channel `id` on `owner`, within a credit if one is
    /// held: then it is queued as `PUT_CREDITED` and this returns `Ok`. Without a
    /// credit, `Err` gives the value back with the number of credits to ask for
    /// with a plain `PUT` (the request's `credits`).
    ///
    /// # Errors
    /// `(value, want)` when no credit is held.
    pub(crate) fn put_credited(
        &mut self,
        owner: Pid,
        id: RefId,
        value: Bytes,
    ) -> Result<(), (Bytes, u32)> {
        self.store.put_credited(&mut self.out, owner, id, value)
    }

    /// Credits held now, credits lent now, and puts sent within a credit so far.
    pub(crate) fn credit_totals(&self) -> (u64, u64, u64) {
        self.store.credit_totals()
    }

    /// This process is done with channel `id`: the credits it holds go back.
    pub(crate) fn forget_credits(&mut self, id: RefId) {
        self.store.forget_credits(&mut self.out, id);
    }

    /// Grants `holder` up to `want` credits for channel `id` stored here, reserving
    /// places with `reserve` (see `Store::grant`). Call it before the answer to the
    /// put that asked, so that the `GRANT` arrives first.
    pub(crate) fn grant(
        &mut self,
        id: RefId,
        holder: Pid,
        want: u32,
        reserve: impl FnOnce(u32) -> u32,
    ) {
        self.store.grant(&mut self.out, id, holder, want, reserve);
    }

    /// A place of channel `id` was freed: holders that would like more credits get
    /// what `reserve` gives.
    pub(crate) fn grant_wanting(&mut self, id: RefId, reserve: impl FnMut(u32) -> u32) {
        self.store.grant_wanting(&mut self.out, id, reserve);
    }

    /// Reserved places of channel `id` are wanted back (a put waits for one, or the
    /// channel closed): their holders are asked to return them.
    pub(crate) fn revoke_credits(&mut self, id: RefId) {
        self.store.revoke_credits(&mut self.out, id);
    }

    /// Stores the value of `id` here.
    ///
    /// # Errors
    /// [`CallError::AlreadySet`].
    pub(crate) fn set_value(
        &mut self,
        id: RefId,
        value: Result<Bytes, RemoteException>,
        now: Instant,
    ) -> Result<(), CallError> {
        self.store.set(&mut self.out, id, value, now)
    }

    pub(crate) fn install_channel(&mut self, id: RefId, channel: C) {
        self.store.install_channel(id, channel);
    }

    pub(crate) fn channel(&self, id: RefId) -> Option<C> {
        self.store.channel(id)
    }

    /// This process made a handle to `id`, stored on `owner`.
    pub(crate) fn ref_created(&mut self, id: RefId, owner: Pid) {
        self.store.created(id, owner);
    }

    /// A handle to `id` arrived in a message.
    pub(crate) fn ref_deserialized(
        &mut self,
        id: RefId,
        owner: Pid,
        fresh_handle: bool,
        now: Instant,
    ) {
        self.store
            .deserialized(&mut self.out, id, owner, fresh_handle, now);
    }

    /// A handle to `id` is about to travel to `dest`.
    pub(crate) fn ref_serialized(&mut self, id: RefId, dest: Pid, now: Instant) {
        self.store.serialized(&mut self.out, id, dest, now);
    }

    /// The last local handle to `id` was dropped.
    pub(crate) fn ref_dropped(&mut self, id: RefId, now: Instant) {
        self.store.dropped(&mut self.out, id, now);
    }

    /// This process gave up its claim on `id` early (fetch, finalize).
    pub(crate) fn ref_released(&mut self, id: RefId, now: Instant) {
        self.store.released(&mut self.out, id, now);
    }

    /// Queues every pending reference message now.
    pub(crate) fn flush_refs(&mut self, now: Instant) {
        self.store.flush_all(&mut self.out, now);
    }

    pub(crate) fn ref_stats(&self) -> RefStats {
        self.store.stats()
    }

    /// Whether outputs are waiting.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.queue.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn owner_counts(&self, id: &RefId, pids: &[Pid]) -> Option<Vec<(Pid, i64)>> {
        self.store.owner_counts(id, pids)
    }

    /// Replies this process waits for.
    pub(crate) fn pending_replies(&self) -> usize {
        self.replies.len()
    }

    #[cfg(test)]
    pub(crate) fn abandoned_takes(&self) -> usize {
        self.replies.abandoned_takes()
    }

    #[cfg(test)]
    pub(crate) fn running_calls(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worker 2 of a cluster it knows nothing of yet.
    fn worker() -> Core<u32, ()> {
        let mut c = Core::new();
        c.handle_joined(
            Joined {
                pid: 2,
                topology: Topology::AllToAll,
                lazy: true,
                known: Vec::new(),
                connect_now: Vec::new(),
                custom: false,
                heartbeat: None,
            },
            Instant::now(),
        );
        while c.poll_output().is_some() {}
        c
    }

    fn update(added: Vec<WorkerInfo>, removed: Vec<Pid>) -> Envelope {
        Envelope {
            kind: Some(Kind::PeerUpdate(proto::PeerUpdate { added, removed })),
        }
    }

    /// Worker 2 got a handle to a value stored on worker 3 before the news of worker 3,
    /// and let go of it: the release must wait for that news, not be lost.
    fn release_for_unknown_owner(c: &mut Core<u32, ()>, now: Instant) {
        let id = RefId::new(3, 1);
        c.ref_deserialized(id, 3, true, now);
        c.ref_dropped(id, now);
        c.flush_refs(now);
        assert!(
            !std::iter::from_fn(|| c.poll_output())
                .any(|o| matches!(o, Output::Transmit { to: 3, .. })),
            "sent to a worker not heard of"
        );
    }

    #[test]
    fn a_message_to_a_worker_not_heard_of_yet_waits_for_its_news() {
        let now = Instant::now();
        let mut c = worker();
        release_for_unknown_owner(&mut c, now);
        let info = WorkerInfo {
            pid: 3,
            host: "h".into(),
            port: 3,
            ..Default::default()
        };
        c.handle_envelope(MASTER, update(vec![info], vec![]), now);
        let out: Vec<_> = std::iter::from_fn(|| c.poll_output()).collect();
        assert!(matches!(out[0], Output::Connect(ref i) if i.pid == 3));
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Transmit {
                to: 3,
                env: Envelope {
                    kind: Some(Kind::RefBatch(_))
                },
                ..
            }
        )));
    }

    #[test]
    fn a_message_to_a_worker_that_left_before_its_news_is_dropped() {
        let now = Instant::now();
        let mut c = worker();
        release_for_unknown_owner(&mut c, now);
        c.handle_envelope(MASTER, update(vec![], vec![3]), now);
        assert!(c.parked.is_empty());
        assert!(!std::iter::from_fn(|| c.poll_output())
            .any(|o| matches!(o, Output::Transmit { .. } | Output::Connect(_))));
    }
}
