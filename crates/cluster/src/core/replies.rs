//! The pending-reply table: which call ids wait for an answer, from whom, and who is
//! told when it comes — and the channel takes whose caller gave up, whose value must
//! go back to the channel if it comes after all.

use cohort_wire::ids::{Pid, RefId};

use super::ids::IdMap;
use super::Reply;
use crate::error::CallError;

/// One waiting request.
struct Pending<W> {
    pid: Pid,
    /// For a channel `TAKE`: the channel, so that a value that comes after the caller
    /// gave up can be put back.
    take: Option<RefId>,
    waiter: W,
}

/// A request given up by its caller while it was still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Abandoned {
    /// Whom it was sent to.
    pub(crate) pid: Pid,
    /// For a channel `TAKE`: the channel (its reply is still awaited, see
    /// [`Replies::take_abandoned`]).
    pub(crate) take: Option<RefId>,
}

/// `call_id → waiter`, generic over how the shell is told (a oneshot sender there, a
/// token in the simulation).
pub(crate) struct Replies<W> {
    /// The simulation's call ids (the shell counts its own, outside the core's lock).
    #[cfg(test)]
    next_call: u64,
    pending: IdMap<u64, Pending<W>>,
    /// Takes given up while pending: `call_id → (owner, channel)`, until their reply
    /// comes (a value is put back) or the owner is lost.
    abandoned_takes: IdMap<u64, (Pid, RefId)>,
}

impl<W> Default for Replies<W> {
    fn default() -> Self {
        Replies {
            #[cfg(test)]
            next_call: 1,
            pending: IdMap::default(),
            abandoned_takes: IdMap::default(),
        }
    }
}

impl<W> Replies<W> {
    /// A fresh call id (never 0: 0 means "no reply wanted" on the wire).
    #[cfg(test)]
    pub(crate) fn new_call_id(&mut self) -> u64 {
        let id = self.next_call;
        self.next_call += 1;
        id
    }

    /// Registers `waiter` for the answer to `call_id` from `pid`; `take` names the
    /// channel when the request is a `TAKE`.
    pub(crate) fn expect(&mut self, call_id: u64, pid: Pid, take: Option<RefId>, waiter: W) {
        self.pending.insert(call_id, Pending { pid, take, waiter });
    }

    /// Takes the waiter of `call_id` (the answer came).
    pub(crate) fn take(&mut self, call_id: u64) -> Option<(Pid, W)> {
        let p = self.remove(call_id)?;
        Some((p.pid, p.waiter))
    }

    fn remove(&mut self, call_id: u64) -> Option<Pending<W>> {
        let p = self.pending.remove(&call_id)?;
        if self.pending.capacity() > 1024 && self.pending.len() * 4 < self.pending.capacity() {
            self.pending.shrink_to_fit();
        }
        Some(p)
    }

    /// The caller of `call_id` gave up: drops its waiter, if it still waits. A take
    /// is remembered until its reply comes ([`take_abandoned`](Self::take_abandoned)),
    /// since that reply may carry a value removed from the channel.
    pub(crate) fn abandon(&mut self, call_id: u64) -> Option<Abandoned> {
        let p = self.remove(call_id)?;
        if let Some(id) = p.take {
            self.abandoned_takes.insert(call_id, (p.pid, id));
        }
        Some(Abandoned {
            pid: p.pid,
            take: p.take,
        })
    }

    /// The reply to `call_id` came, and `call_id` is a take its caller gave up: the
    /// owner and channel, to put a value back to.
    pub(crate) fn take_abandoned(&mut self, call_id: u64) -> Option<(Pid, RefId)> {
        let t = self.abandoned_takes.remove(&call_id)?;
        if self.abandoned_takes.capacity() > 1024
            && self.abandoned_takes.len() * 4 < self.abandoned_takes.capacity()
        {
            self.abandoned_takes.shrink_to_fit();
        }
        Some(t)
    }

    /// Takes every waiter of `pid`, each with the error that answers it, and forgets
    /// the takes abandoned on it (their channel went with it).
    pub(crate) fn fail_peer(&mut self, pid: Pid, reason: &str) -> Vec<(W, Reply)> {
        self.abandoned_takes.retain(|_, (owner, _)| *owner != pid);
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.pending.remove(&id))
            .map(|p| {
                (
                    p.waiter,
                    Err(CallError::WorkerExited {
                        pid,
                        reason: reason.to_string(),
                    }),
                )
            })
            .collect()
    }

    /// How many requests wait.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// How many abandoned takes still wait for their reply.
    #[cfg(test)]
    pub(crate) fn abandoned_takes(&self) -> usize {
        self.abandoned_takes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_peer_fails_only_its_own_waiters() {
        let mut r = Replies::default();
        let a = r.new_call_id();
        let b = r.new_call_id();
        assert_ne!(a, b);
        assert_ne!(a, 0);
        r.expect(a, 2, None, "a");
        r.expect(b, 3, None, "b");
        let failed = r.fail_peer(2, "gone");
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "a");
        assert!(matches!(
            &failed[0].1,
            Err(CallError::WorkerExited { pid: 2, .. })
        ));
        assert_eq!(r.take(b), Some((3, "b")));
        assert_eq!(r.take(b), None);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn an_abandoned_take_is_remembered_until_its_reply_or_its_owner_goes() {
        let mut r = Replies::default();
        let id = RefId::new(1, 7);
        let (take, call, other) = (r.new_call_id(), r.new_call_id(), r.new_call_id());
        r.expect(take, 2, Some(id), "take");
        r.expect(call, 2, None, "call");
        r.expect(other, 3, Some(RefId::new(1, 8)), "other");
        assert_eq!(
            r.abandon(take),
            Some(Abandoned {
                pid: 2,
                take: Some(id)
            })
        );
        assert_eq!(r.abandon(take), None, "abandoned once");
        assert_eq!(r.take(take), None, "no waiter any more");
        assert_eq!(r.abandon(call), Some(Abandoned { pid: 2, take: None }));
        assert_eq!(r.take_abandoned(call), None, "only takes are remembered");
        assert_eq!(r.abandoned_takes(), 1);
        assert_eq!(r.take_abandoned(take), Some((2, id)));
        assert_eq!(r.take_abandoned(take), None);

        // An owner that is lost takes its abandoned takes with it.
        r.abandon(other);
        assert_eq!(r.abandoned_takes(), 1);
        assert!(r.fail_peer(3, "gone").is_empty());
        assert_eq!(r.abandoned_takes(), 0);
        assert_eq!(r.len(), 0);
    }
}
