//! The reference store: values this process keeps for others (the owner side of
//! remote references) and the bookkeeping of handles it holds (the client side), both
//! over the sans-IO [`RefTracker`] of `cohort-refs`.
//!
//! The store never sends anything itself: replies, reference batches, channel
//! operations to run and freed slots to drop all go out as [`Output`]s.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use cohort_refs::{BatchPolicy, RefOp, RefStats, RefTracker};
use cohort_wire::ids::{Pid, RefId};
use cohort_wire::proto::{self, envelope::Kind, Envelope, RefRequestKind};

use super::credits::{Ledger, Wallet};
use super::{credit_request, ChannelOp, Output, Outputs, Reply};
use crate::error::{CallError, ProtocolError, RemoteException};

/// Who waits for a stored value: another process (answered with a `CallResult`) or
/// this one (answered through its waiter `W`).
pub(crate) enum Waiter<W> {
    Remote {
        pid: Pid,
        call_id: u64,
        kind: RefRequestKind,
    },
    Local {
        waiter: W,
        kind: RefRequestKind,
    },
}

/// One stored value: set once; requests that came before it wait. A slot may hold a
/// channel `C` instead (a `RemoteChannel`), whose operations the shell runs.
pub(crate) struct Slot<W, C> {
    value: Option<Result<Bytes, RemoteException>>,
    pub(crate) waiters: Vec<Waiter<W>>,
    channel: Option<C>,
}

impl<W, C> Default for Slot<W, C> {
    fn default() -> Self {
        Slot {
            value: None,
            waiters: Vec::new(),
            channel: None,
        }
    }
}

fn answer(value: &Result<Bytes, RemoteException>, kind: RefRequestKind) -> Reply {
    match (value, kind) {
        (Err(e), RefRequestKind::Fetch | RefRequestKind::Wait) => Err(CallError::Remote(e.clone())),
        (Ok(v), RefRequestKind::Fetch) => Ok(v.clone()),
        _ => Ok(Bytes::new()),
    }
}

/// The reference store of one process.
pub(crate) struct Store<W, C> {
    tracker: RefTracker<Slot<W, C>>,
    /// `TAKE`s of other processes running on channels stored here, by requester and
    /// call id, until the shell answers them ([`channel_op_done`](Self::channel_op_done)):
    /// a `CANCEL` or the requester's death stops them.
    takes: HashMap<(Pid, u64), RunningTake>,
    /// Credits this process holds for channels stored elsewhere.
    wallet: Wallet,
    /// Credits other processes hold for channels stored here.
    ledger: Ledger,
}

/// A remote `TAKE` the shell runs.
struct RunningTake {
    channel: RefId,
    /// Its requester is gone (it was stopped then): a value it removed anyway goes
    /// back to the channel.
    requester_lost: bool,
}

impl<W, C: Clone> Store<W, C> {
    pub(crate) fn new(me: Pid) -> Self {
        Store {
            tracker: RefTracker::new(me, BatchPolicy::default()),
            takes: HashMap::new(),
            wallet: Wallet::default(),
            ledger: Ledger::default(),
        }
    }

    fn me(&self) -> Pid {
        self.tracker.me()
    }

    fn answer_to(&self, out: &mut Outputs<W, C>, waiter: Waiter<W>, reply: Reply) {
        match waiter {
            Waiter::Remote { pid, call_id, .. } => out.reply(self.me(), pid, call_id, reply),
            Waiter::Local { waiter, .. } => out.push(Output::Complete { waiter, reply }),
        }
    }

    /// The slot of `id`, made if need be; `None` if its creator is known dead and it
    /// has none (the call that would fill it died with the creator).
    fn slot(&mut self, id: RefId) -> Option<&mut Slot<W, C>> {
        if self.tracker.get(&id).is_none() {
            if self.tracker.owner().is_dead(id.whence) {
                return None;
            }
            // A request can overtake the call that makes the value (it comes from a
            // third process over another connection): make the slot, creator
            // registered, and let the value fill it later.
            let _ = self.tracker.insert(id, Slot::default(), id.whence);
        }
        self.tracker.get_mut(&id)
    }

    /// Stores the value of `id` (a call's result, or a `put`) and answers its waiters.
    ///
    /// # Errors
    /// [`CallError::AlreadySet`] if it already has one.
    pub(crate) fn set(
        &mut self,
        out: &mut Outputs<W, C>,
        id: RefId,
        value: Result<Bytes, RemoteException>,
        now: Instant,
    ) -> Result<(), CallError> {
        self.store_value(out, id, value, now, true)
    }

    /// Makes the slot for the result of a call as the call arrives (before anything
    /// its creator sends after it, such as the release of its handle).
    pub(crate) fn expect_result(&mut self, id: RefId) {
        let _ = self.slot(id);
    }

    /// Stores a call's result: its slot was made when the call arrived, so a missing
    /// slot means every holder let go meanwhile, and the value is dropped.
    pub(crate) fn set_result(
        &mut self,
        out: &mut Outputs<W, C>,
        id: RefId,
        value: Result<Bytes, RemoteException>,
        now: Instant,
    ) -> Result<(), CallError> {
        self.store_value(out, id, value, now, false)
    }

    fn store_value(
        &mut self,
        out: &mut Outputs<W, C>,
        id: RefId,
        value: Result<Bytes, RemoteException>,
        now: Instant,
        create: bool,
    ) -> Result<(), CallError> {
        let me = self.me();
        let slot = if create {
            self.slot(id)
        } else {
            self.tracker.get_mut(&id)
        };
        let Some(slot) = slot else {
            return Ok(());
        };
        if slot.value.is_some() {
            return Err(CallError::AlreadySet);
        }
        for w in std::mem::take(&mut slot.waiters) {
            match w {
                Waiter::Remote { pid, call_id, kind } => {
                    out.reply(me, pid, call_id, answer(&value, kind))
                }
                Waiter::Local { waiter, kind } => out.push(Output::Complete {
                    waiter,
                    reply: answer(&value, kind),
                }),
            }
        }
        slot.value = Some(value);
        // Storing can free at once (every client let go before the value arrived).
        self.drive(out, now);
        Ok(())
    }

    /// Stores a channel made on this process (its creator, `id.whence`, holds the
    /// first handle).
    pub(crate) fn install_channel(&mut self, id: RefId, channel: C) {
        let slot = Slot {
            channel: Some(channel),
            ..Default::default()
        };
        if let Err(slot) = self.tracker.insert(id, slot, id.whence) {
            if let Some(existing) = self.tracker.get_mut(&id) {
                existing.channel = slot.channel;
            }
        }
    }

    /// The channel stored under `id`, if any.
    pub(crate) fn channel(&self, id: RefId) -> Option<C> {
        self.tracker.get(&id).and_then(|s| s.channel.clone())
    }

    /// Handles a request on `id` from `from` (`local` holds the waiter when `from` is
    /// this process).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn request(
        &mut self,
        out: &mut Outputs<W, C>,
        from: Pid,
        call_id: u64,
        id: RefId,
        kind: RefRequestKind,
        put_value: Bytes,
        credits: u32,
        local: Option<W>,
        now: Instant,
    ) {
        let me = self.me();
        if local.is_none()
            && matches!(
                kind,
                RefRequestKind::PutCredited
                    | RefRequestKind::Grant
                    | RefRequestKind::Revoke
                    | RefRequestKind::Return
            )
        {
            self.credit_message(out, from, id, kind, put_value, credits);
            return;
        }
        if local.is_none() {
            if let Some(channel) = self.channel(id) {
                match kind {
                    // A take that was answered already has nothing to stop.
                    RefRequestKind::Cancel if !self.takes.contains_key(&(from, call_id)) => return,
                    RefRequestKind::Take => {
                        let run = RunningTake {
                            channel: id,
                            requester_lost: false,
                        };
                        self.takes.insert((from, call_id), run);
                    }
                    _ => {}
                }
                // A channel operation may wait (for room, for a value): the shell
                // runs it and answers with `Core::reply` (`CANCEL` and `PUT_FRONT`
                // are not answered).
                out.push(Output::Channel(ChannelOp {
                    from,
                    call_id,
                    id,
                    channel,
                    kind,
                    value: put_value,
                    credits,
                }));
                return;
            }
        }
        let waiter = |pid, call_id, local: Option<W>| match local {
            Some(waiter) => Waiter::Local { waiter, kind },
            None => Waiter::Remote { pid, call_id, kind },
        };
        if local.is_none() && matches!(kind, RefRequestKind::Cancel | RefRequestKind::PutFront) {
            // No channel (any more): nothing to stop, nowhere to put back; neither
            // is answered.
            tracing::debug!(%id, ?kind, "request for a channel that is not here; ignored");
            return;
        }
        if matches!(
            kind,
            RefRequestKind::Take
                | RefRequestKind::Close
                | RefRequestKind::Cancel
                | RefRequestKind::PutFront
        ) {
            let reply = Err(CallError::NotAChannel { id, pid: me });
            self.answer_to(out, waiter(from, call_id, local), reply);
            return;
        }
        if kind == RefRequestKind::Unspecified {
            let reply = Err(CallError::Protocol(ProtocolError::RequestWithoutKind));
            self.answer_to(out, waiter(from, call_id, local), reply);
            return;
        }
        if kind == RefRequestKind::Put {
            let reply = self.set(out, id, Ok(put_value), now).map(|()| Bytes::new());
            self.answer_to(out, waiter(from, call_id, local), reply);
            return;
        }
        let Some(slot) = self.slot(id) else {
            // Its creator died before its call got here (a lazy connection that was
            // never made, say): the value never comes, so say so rather than never.
            let reply = Err(CallError::Remote(orphan_error(me, id)));
            self.answer_to(out, waiter(from, call_id, local), reply);
            return;
        };
        let reply = match (&slot.value, kind) {
            (v, RefRequestKind::IsReady) => {
                Ok(Bytes::from_static(if v.is_some() { &[1] } else { &[0] }))
            }
            (Some(v), _) => answer(v, kind),
            (None, _) => {
                slot.waiters.push(waiter(from, call_id, local));
                return;
            }
        };
        self.answer_to(out, waiter(from, call_id, local), reply);
    }

    /// Applies a batch of client-set changes from a peer.
    pub(crate) fn handle_ops(
        &mut self,
        out: &mut Outputs<W, C>,
        ops: Vec<proto::RefOp>,
        now: Instant,
    ) {
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
        self.tracker.handle_ops(ops);
        self.drive(out, now);
    }

    /// A channel operation of `from` run by the shell is done (it is being answered):
    /// if it was a `TAKE`, its channel, and whether its requester is gone.
    pub(crate) fn channel_op_done(&mut self, from: Pid, call_id: u64) -> Option<(RefId, bool)> {
        let run = self.takes.remove(&(from, call_id))?;
        if self.takes.capacity() > 1024 && self.takes.len() * 4 < self.takes.capacity() {
            self.takes.shrink_to_fit();
        }
        Some((run.channel, run.requester_lost))
    }

    /// `pid` is gone: stops the takes it waits on, so that they remove nothing for it
    /// (each is still answered by the shell, to nobody, which ends its entry).
    pub(crate) fn stop_takes_of(&mut self, out: &mut Outputs<W, C>, pid: Pid) {
        let mut stop: Vec<(u64, RefId)> = self
            .takes
            .iter_mut()
            .filter(|((p, _), run)| *p == pid && !run.requester_lost)
            .map(|((_, call_id), run)| {
                run.requester_lost = true;
                (*call_id, run.channel)
            })
            .collect();
        stop.sort_unstable_by_key(|(call_id, _)| *call_id);
        for (call_id, id) in stop {
            if let Some(channel) = self.channel(id) {
                out.push(Output::Channel(ChannelOp {
                    from: pid,
                    call_id,
                    id,
                    channel,
                    kind: RefRequestKind::Cancel,
                    value: Bytes::new(),
                    credits: 0,
                }));
            }
        }
    }

    /// A peer is gone: stop the takes it waits on, forget its registrations and the
    /// requests it waits on, free what it alone held.
    pub(crate) fn peer_died(&mut self, out: &mut Outputs<W, C>, pid: Pid, now: Instant) {
        // Before the tracker frees a channel only it held.
        self.stop_takes_of(out, pid);
        // Everything it sent has been handled: the places still reserved for it
        // are free again; the credits it lent this process are gone.
        self.wallet.owner_gone(pid);
        for (id, n) in self.ledger.holder_gone(pid) {
            self.give_back(out, pid, id, n);
        }
        self.tracker.handle_peer_died(pid);
        self.drive(out, now);
    }

    // ----- channel credits (`super::credits`) -----

    /// A credit message from `from` on channel `id`.
    fn credit_message(
        &mut self,
        out: &mut Outputs<W, C>,
        from: Pid,
        id: RefId,
        kind: RefRequestKind,
        value: Bytes,
        credits: u32,
    ) {
        match kind {
            RefRequestKind::PutCredited => {
                let Some(channel) = self.channel(id) else {
                    // Freed meanwhile: nobody could take the value.
                    tracing::debug!(%id, "credited put for a channel that is not here; dropped");
                    return;
                };
                if !self.ledger.spent(id, from) {
                    tracing::warn!(pid = from, %id, "a put came with a credit it did not hold");
                }
                out.push(Output::Channel(ChannelOp {
                    from,
                    call_id: 0,
                    id,
                    channel,
                    kind,
                    value,
                    credits,
                }));
            }
            RefRequestKind::Grant => {
                if !self.wallet.granted(from, id, credits) {
                    // Not wanted any more (the handle went): straight back.
                    send_return(out, from, id, credits);
                }
            }
            RefRequestKind::Revoke => {
                send_return(out, from, id, self.wallet.revoke(id));
            }
            RefRequestKind::Return => {
                let n = self.ledger.returned(id, from, credits);
                self.give_back(out, from, id, n);
            }
            _ => unreachable!("only credit kinds come here"),
        }
    }

    /// Gives `n` places of channel `id`, reserved for `holder`, back to the channel.
    fn give_back(&mut self, out: &mut Outputs<W, C>, holder: Pid, id: RefId, n: u32) {
        if n == 0 {
            return;
        }
        if let Some(channel) = self.channel(id) {
            out.push(Output::Channel(ChannelOp {
                from: holder,
                call_id: 0,
                id,
                channel,
                kind: RefRequestKind::Return,
                value: Bytes::new(),
                credits: n,
            }));
        }
    }

    /// A put of this process to channel `id` on `owner`: sent at once as
    /// `PUT_CREDITED` if a credit is held (`Ok(None)`); otherwise the value back and
    /// the number of credits to ask for with a plain `PUT`.
    pub(crate) fn put_credited(
        &mut self,
        out: &mut Outputs<W, C>,
        owner: Pid,
        id: RefId,
        value: Bytes,
    ) -> Result<(), (Bytes, u32)> {
        match self.wallet.spend(id) {
            Some(topup) => {
                out.push(Output::transmit(
                    owner,
                    credit_request(id, RefRequestKind::PutCredited, value, topup),
                ));
                Ok(())
            }
            None => Err((value, self.wallet.asking(owner, id))),
        }
    }

    /// This process is done with channel `id` (its handle went, or it closes it):
    /// the credits it holds go back to the owner.
    pub(crate) fn forget_credits(&mut self, out: &mut Outputs<W, C>, id: RefId) {
        if let Some((owner, n)) = self.wallet.forget(id) {
            send_return(out, owner, id, n);
        }
    }

    /// `holder` would like `want` credits for channel `id` stored here: reserves
    /// what `reserve` gives of those it may have (`reserve(max)` reserves up to
    /// `max` places and says how many) and sends a `GRANT` for them.
    pub(crate) fn grant(
        &mut self,
        out: &mut Outputs<W, C>,
        id: RefId,
        holder: Pid,
        want: u32,
        reserve: impl FnOnce(u32) -> u32,
    ) {
        let room = self.ledger.room(id, holder, want);
        if room > 0 {
            let n = reserve(room).min(room);
            self.lend(out, id, holder, n);
        }
    }

    /// A place of channel `id` was freed: the holders that would like more credits
    /// get what `reserve` gives.
    pub(crate) fn grant_wanting(
        &mut self,
        out: &mut Outputs<W, C>,
        id: RefId,
        mut reserve: impl FnMut(u32) -> u32,
    ) {
        for (holder, more) in self.ledger.wanting(id) {
            let n = reserve(more).min(more);
            self.lend(out, id, holder, n);
        }
    }

    fn lend(&mut self, out: &mut Outputs<W, C>, id: RefId, holder: Pid, n: u32) {
        if n > 0 {
            self.ledger.granted(id, holder, n);
            out.push(Output::transmit(
                holder,
                credit_request(id, RefRequestKind::Grant, Bytes::new(), n),
            ));
        }
    }

    /// Credits held now, credits lent now, and puts sent within a credit so far.
    pub(crate) fn credit_totals(&self) -> (u64, u64, u64) {
        let (held, spent) = self.wallet.totals();
        (held, self.ledger.total(), spent)
    }

    /// Reserved places of channel `id` are wanted back: `REVOKE` to their holders.
    pub(crate) fn revoke_credits(&mut self, out: &mut Outputs<W, C>, id: RefId) {
        for holder in self.ledger.revoke_all(id) {
            out.push(Output::transmit(
                holder,
                credit_request(id, RefRequestKind::Revoke, Bytes::new(), 0),
            ));
        }
    }

    // ----- the client side: handles held by this process -----

    pub(crate) fn created(&mut self, id: RefId, owner: Pid) {
        let _ = self.tracker.created(id, owner);
    }

    pub(crate) fn deserialized(
        &mut self,
        out: &mut Outputs<W, C>,
        id: RefId,
        owner: Pid,
        fresh_handle: bool,
        now: Instant,
    ) {
        let _ = self.tracker.deserialized(id, owner);
        if !fresh_handle {
            // The process already had a handle and shares it: keep the registration
            // the sender made for us, but not a second local handle.
            let _ = self.tracker.dropped(id, now);
        }
        self.drive(out, now);
    }

    /// A handle is about to travel to `dest`: registers `dest` with the owner; the
    /// registration goes out ahead of anything queued after it.
    pub(crate) fn serialized(
        &mut self,
        out: &mut Outputs<W, C>,
        id: RefId,
        dest: Pid,
        now: Instant,
    ) {
        if let Ok(owner) = self.tracker.serialized(id, dest, now) {
            if let Some(ops) = self.tracker.flush(owner) {
                out.push(batch(owner, ops));
            }
        }
        self.drive(out, now);
    }

    pub(crate) fn dropped(&mut self, out: &mut Outputs<W, C>, id: RefId, now: Instant) {
        let _ = self.tracker.dropped(id, now);
        self.drive(out, now);
    }

    pub(crate) fn released(&mut self, out: &mut Outputs<W, C>, id: RefId, now: Instant) {
        let _ = self.tracker.released(id, now);
        self.drive(out, now);
    }

    pub(crate) fn stats(&self) -> RefStats {
        self.tracker.stats()
    }

    /// Who holds `id` as its owner counts them (simulation diagnostics).
    #[cfg(test)]
    pub(crate) fn owner_counts(&self, id: &RefId, pids: &[Pid]) -> Option<Vec<(Pid, i64)>> {
        self.tracker.get(id)?;
        Some(
            pids.iter()
                .map(|p| (*p, self.tracker.owner().count(id, *p)))
                .collect(),
        )
    }

    /// Queues what is due and the freed slots.
    pub(crate) fn drive(&mut self, out: &mut Outputs<W, C>, now: Instant) {
        while let Some((owner, ops)) = self.tracker.poll_transmit(now) {
            out.push(batch(owner, ops));
        }
        let mut freed = false;
        while let Some((id, mut slot)) = self.tracker.poll_freed() {
            freed = true;
            // Requests still waiting (their requester let go of its handle meanwhile)
            // are answered: the value will never come.
            let me = self.me();
            for w in std::mem::take(&mut slot.waiters) {
                let reply = Err(CallError::Remote(freed_error(me, id)));
                match w {
                    Waiter::Remote { pid, call_id, .. } => out.reply(me, pid, call_id, reply),
                    Waiter::Local { waiter, .. } => out.push(Output::Complete { waiter, reply }),
                }
            }
            self.ledger.channel_gone(id);
            // Dropped by the shell outside its lock.
            out.push(Output::Freed(id, Box::new(slot)));
        }
        if freed {
            self.tracker.shrink_if_sparse();
        }
    }

    /// Queues everything pending now, due or not (shutdown, stats).
    pub(crate) fn flush_all(&mut self, out: &mut Outputs<W, C>, now: Instant) {
        for (owner, ops) in self.tracker.flush_all() {
            out.push(batch(owner, ops));
        }
        self.drive(out, now);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.tracker.poll_timeout()
    }
}

/// Queues a `RETURN` of `n` credits for channel `id` to its owner `to`.
fn send_return<W, C>(out: &mut Outputs<W, C>, to: Pid, id: RefId, n: u32) {
    out.push(Output::transmit(
        to,
        credit_request(id, RefRequestKind::Return, Bytes::new(), n),
    ));
}

/// The error a request on a freed value gets.
pub(crate) fn freed_error(owner: Pid, id: RefId) -> RemoteException {
    RemoteException {
        pid: owner,
        kind: crate::error::ErrorKind::Reference,
        function: String::new(),
        message: format!("reference {id} was freed"),
        context: String::new(),
    }
}

/// The error a request gets on a value that never comes: no slot, and its creator,
/// whose call would have filled it, is dead.
pub(crate) fn orphan_error(owner: Pid, id: RefId) -> RemoteException {
    RemoteException {
        pid: owner,
        kind: crate::error::ErrorKind::Reference,
        function: String::new(),
        message: format!(
            "reference {id} has no value: process {} made it and died before its call arrived",
            id.whence
        ),
        context: String::new(),
    }
}

fn batch<W, C>(owner: Pid, ops: Vec<RefOp>) -> Output<W, C> {
    let ops = ops
        .into_iter()
        .map(|op| proto::RefOp {
            ref_id: Some(op.id().into()),
            client: op.client(),
            delta: op.delta(),
        })
        .collect();
    Output::transmit(
        owner,
        Envelope {
            kind: Some(Kind::RefBatch(proto::RefBatch { ops })),
        },
    )
}
