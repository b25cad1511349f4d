//! The client side: which references this process holds handles to, how many, how many
//! times it has been registered with each owner, and the outgoing op queues.
//!
//! # Local counting
//!
//! Per reference the process keeps `handles` (live local handles: created, cloned or
//! arrived, minus dropped) and `registrations` (how many times the owner was told about
//! this process holding it since the process last let go):
//!
//! - created here: `handles = 1, registrations = 1` (the owner's `insert` registers the
//!   creator once);
//! - cloned: `handles += 1` — no message, a clone is invisible to the owner;
//! - serialized for process `P`: queue `AddClient { id, P }` to the owner — the sender
//!   registers the receiver, so the owner hears of `P` before the sender can let go;
//! - deserialized (a handle *arrives*): `handles += 1, registrations += 1` — each arrival
//!   matches exactly one `AddClient` some sender queued for it;
//! - last handle dropped: queue `DelClient { id, me, count: registrations }` and forget
//!   the reference. A later arrival starts afresh.
//!
//! So each process balances, per owner, exactly the registrations made on its behalf,
//! however many times it receives the same handle, with one `DelClient` per holding
//! period — never one per handle.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use cohort_wire::ids::{Pid, RefId};

use crate::{BatchPolicy, Outbox, RefError, RefOp};

/// What this process knows about one reference it holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    owner: Pid,
    handles: u64,
    registrations: u64,
}

/// Counts the client side can report.
///
/// ```
/// let c = cohort_refs::ClientRefs::new(2, Default::default());
/// assert_eq!(c.stats(), cohort_refs::ClientStats::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    /// References this process holds at least one handle to.
    pub held_refs: usize,
    /// Live local handles, over all references.
    pub handles: u64,
    /// Ops queued (for other processes or for this one) and not yet taken.
    pub pending_ops: usize,
    /// Ops taken for transmission to other processes.
    pub ops_sent: u64,
    /// Batches taken for transmission to other processes.
    pub batches_sent: u64,
    /// Ops thrown away because their owner died.
    pub ops_discarded: u64,
}

/// The client half of reference tracking for one process: local handle counts plus the
/// batched ops to owners.
///
/// Sans-IO: the runtime reports handle events, and takes ops out with
/// [`ClientRefs::poll_transmit`] (for other processes) and [`ClientRefs::poll_local`]
/// (for this process's own [`crate::OwnerTable`]).
///
/// ```
/// use cohort_refs::{ClientRefs, RefOp};
/// use cohort_wire::ids::RefId;
/// use std::time::Instant;
/// let now = Instant::now();
/// let r = RefId::new(2, 1);
/// let mut c = ClientRefs::new(2, Default::default());
/// c.created(r, 3).unwrap();           // pid 2 made a Future stored on pid 3
/// c.cloned(r).unwrap();
/// assert!(!c.dropped(r, now).unwrap());
/// assert!(c.dropped(r, now).unwrap()); // last handle: one DelClient queued
/// assert_eq!(c.flush(3), Some(vec![RefOp::DelClient { id: r, client: 2, count: 1 }]));
/// ```
#[derive(Debug)]
pub struct ClientRefs {
    me: Pid,
    held: HashMap<RefId, Held>,
    outbox: Outbox,
    /// Ops whose owner is this process: no batching, the runtime applies them at once.
    local: VecDeque<RefOp>,
    dead: HashSet<Pid>,
    handles: u64,
}

impl ClientRefs {
    /// An empty table for process `me`.
    ///
    /// ```
    /// let c = cohort_refs::ClientRefs::new(1, Default::default());
    /// assert_eq!(c.me(), 1);
    /// ```
    pub fn new(me: Pid, policy: BatchPolicy) -> Self {
        ClientRefs {
            me,
            held: HashMap::new(),
            outbox: Outbox::new(policy),
            local: VecDeque::new(),
            dead: HashSet::new(),
            handles: 0,
        }
    }

    /// This process's pid.
    ///
    /// ```
    /// assert_eq!(cohort_refs::ClientRefs::new(4, Default::default()).me(), 4);
    /// ```
    pub fn me(&self) -> Pid {
        self.me
    }

    fn emit(&mut self, owner: Pid, op: RefOp, now: Instant) {
        if owner == self.me {
            self.local.push_back(op);
        } else if !self.dead.contains(&owner) {
            self.outbox.push(owner, op, now);
        }
        // An op for a dead owner is moot: the value died with it.
    }

    /// A handle to a new reference `id`, stored on `owner`, was created here. The runtime
    /// must make sure the owner's [`crate::OwnerTable::insert`] names this process as the
    /// initial client (the creating `remotecall` carries it).
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut c = cohort_refs::ClientRefs::new(1, Default::default());
    /// c.created(RefId::new(1, 1), 2).unwrap();
    /// assert!(c.created(RefId::new(1, 1), 2).is_err());
    /// assert_eq!(c.handles(&RefId::new(1, 1)), 1);
    /// ```
    pub fn created(&mut self, id: RefId, owner: Pid) -> Result<(), RefError> {
        if self.held.contains_key(&id) {
            return Err(RefError::AlreadyHeld(id));
        }
        self.held.insert(
            id,
            Held {
                owner,
                handles: 1,
                registrations: 1,
            },
        );
        self.handles += 1;
        Ok(())
    }

    /// A local handle to `id` was cloned. No message: the owner tracks processes, not
    /// handles.
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut c = cohort_refs::ClientRefs::new(1, Default::default());
    /// assert!(c.cloned(RefId::new(1, 1)).is_err());
    /// ```
    pub fn cloned(&mut self, id: RefId) -> Result<(), RefError> {
        let h = self.held.get_mut(&id).ok_or(RefError::NotHeld(id))?;
        h.handles += 1;
        self.handles += 1;
        Ok(())
    }

    /// A handle to `id` is being serialized into a message for process `dest` (the local
    /// handle itself stays; drop it separately if the send moved it). Queues
    /// `AddClient { id, dest }` to the owner and returns the owner's pid.
    ///
    /// The runtime must transmit that op before it sends the message carrying the handle
    /// — call [`ClientRefs::flush`] for the owner and send what it returns first — so the
    /// registration cannot be lost if this process dies in between.
    ///
    /// ```
    /// use cohort_refs::RefOp;
    /// use cohort_wire::ids::RefId;
    /// let r = RefId::new(1, 1);
    /// let mut c = cohort_refs::ClientRefs::new(1, Default::default());
    /// c.created(r, 2).unwrap();
    /// let owner = c.serialized(r, 3, std::time::Instant::now()).unwrap();
    /// assert_eq!(c.flush(owner), Some(vec![RefOp::AddClient { id: r, client: 3 }]));
    /// ```
    pub fn serialized(&mut self, id: RefId, dest: Pid, now: Instant) -> Result<Pid, RefError> {
        let owner = self.held.get(&id).ok_or(RefError::NotHeld(id))?.owner;
        self.emit(owner, RefOp::AddClient { id, client: dest }, now);
        Ok(owner)
    }

    /// A handle to `id`, stored on `owner`, was deserialized here (it arrived in a
    /// message). Counts one more handle and one more registration.
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut c = cohort_refs::ClientRefs::new(3, Default::default());
    /// c.deserialized(RefId::new(1, 1), 2).unwrap();
    /// c.deserialized(RefId::new(1, 1), 2).unwrap();
    /// assert_eq!(c.handles(&RefId::new(1, 1)), 2);
    /// ```
    pub fn deserialized(&mut self, id: RefId, owner: Pid) -> Result<(), RefError> {
        let h = self.held.entry(id).or_insert(Held {
            owner,
            handles: 0,
            registrations: 0,
        });
        if h.owner != owner {
            return Err(RefError::OwnerMismatch {
                id,
                known: h.owner,
                got: owner,
            });
        }
        h.handles += 1;
        h.registrations += 1;
        self.handles += 1;
        Ok(())
    }

    /// A local handle to `id` was dropped. Returns `true` when it was the last one: then
    /// `DelClient { id, me, count: registrations }` is queued to the owner (batched).
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut c = cohort_refs::ClientRefs::new(1, Default::default());
    /// c.created(RefId::new(1, 1), 2).unwrap();
    /// assert!(c.dropped(RefId::new(1, 1), std::time::Instant::now()).unwrap());
    /// assert_eq!(c.stats().pending_ops, 1);
    /// ```
    pub fn dropped(&mut self, id: RefId, now: Instant) -> Result<bool, RefError> {
        let h = self.held.get_mut(&id).ok_or(RefError::NotHeld(id))?;
        h.handles -= 1;
        self.handles -= 1;
        if h.handles > 0 {
            return Ok(false);
        }
        self.let_go(id, now);
        Ok(true)
    }

    fn let_go(&mut self, id: RefId, now: Instant) -> Option<Pid> {
        let h = self.held.remove(&id)?;
        self.handles -= h.handles;
        let op = RefOp::DelClient {
            id,
            client: self.me,
            count: h.registrations,
        };
        self.emit(h.owner, op, now);
        Some(h.owner)
    }

    /// Lets go of `id` at once, whatever the number of local handles: Julia's `finalize`,
    /// and what a `fetch` of a `Future` does (the value is cached locally). The
    /// `DelClient` is queued as urgent, so the next [`ClientRefs::poll_transmit`] returns
    /// it. The runtime must treat every local handle to `id` that existed as released:
    /// it must not report their drops (a later arrival of `id` starts a new count).
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let now = std::time::Instant::now();
    /// let mut c = cohort_refs::ClientRefs::new(1, Default::default());
    /// c.created(RefId::new(1, 1), 2).unwrap();
    /// c.cloned(RefId::new(1, 1)).unwrap();
    /// c.released(RefId::new(1, 1), now).unwrap();
    /// assert_eq!(c.poll_transmit(now).map(|(to, ops)| (to, ops.len())), Some((2, 1)));
    /// ```
    pub fn released(&mut self, id: RefId, now: Instant) -> Result<(), RefError> {
        let owner = self.let_go(id, now).ok_or(RefError::NotHeld(id))?;
        self.outbox.mark_urgent(owner);
        Ok(())
    }

    /// `pid` died: ops queued for it are thrown away and none will be queued from now on.
    /// Handles to references it owned stay counted until dropped (their drops send
    /// nothing).
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let now = std::time::Instant::now();
    /// let mut c = cohort_refs::ClientRefs::new(1, Default::default());
    /// c.created(RefId::new(1, 1), 2).unwrap();
    /// c.dropped(RefId::new(1, 1), now).unwrap();
    /// c.handle_peer_died(2);
    /// assert_eq!(c.stats().pending_ops, 0);
    /// ```
    pub fn handle_peer_died(&mut self, pid: Pid) {
        if pid == self.me {
            return;
        }
        self.dead.insert(pid);
        self.outbox.discard(pid);
    }

    /// The next op whose owner is this very process; apply it to the local
    /// [`crate::OwnerTable`] at once.
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut c = cohort_refs::ClientRefs::new(1, Default::default());
    /// c.created(RefId::new(1, 1), 1).unwrap();
    /// c.dropped(RefId::new(1, 1), std::time::Instant::now()).unwrap();
    /// assert!(c.poll_local().is_some());
    /// ```
    pub fn poll_local(&mut self) -> Option<RefOp> {
        self.local.pop_front()
    }

    /// The next due batch for another process: send `ops` to `pid` as one message, in
    /// order after earlier batches. See [`Outbox::poll_transmit`].
    ///
    /// ```
    /// let mut c = cohort_refs::ClientRefs::new(1, Default::default());
    /// assert!(c.poll_transmit(std::time::Instant::now()).is_none());
    /// ```
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(Pid, Vec<RefOp>)> {
        self.outbox.poll_transmit(now)
    }

    /// When the next batch falls due; see [`Outbox::poll_timeout`].
    ///
    /// ```
    /// assert!(cohort_refs::ClientRefs::new(1, Default::default()).poll_timeout().is_none());
    /// ```
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.outbox.poll_timeout()
    }

    /// Everything queued for `pid`, as one batch, now.
    ///
    /// ```
    /// assert!(cohort_refs::ClientRefs::new(1, Default::default()).flush(2).is_none());
    /// ```
    pub fn flush(&mut self, pid: Pid) -> Option<Vec<RefOp>> {
        self.outbox.flush(pid)
    }

    /// Everything queued, one batch per destination (shutdown).
    ///
    /// ```
    /// assert!(cohort_refs::ClientRefs::new(1, Default::default()).flush_all().is_empty());
    /// ```
    pub fn flush_all(&mut self) -> Vec<(Pid, Vec<RefOp>)> {
        self.outbox.flush_all()
    }

    /// Live local handles to `id` (0 when not held).
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// assert_eq!(cohort_refs::ClientRefs::new(1, Default::default()).handles(&RefId::new(1, 1)), 0);
    /// ```
    pub fn handles(&self, id: &RefId) -> u64 {
        self.held.get(id).map_or(0, |h| h.handles)
    }

    /// The owner recorded for `id`, if held.
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut c = cohort_refs::ClientRefs::new(1, Default::default());
    /// c.created(RefId::new(1, 1), 5).unwrap();
    /// assert_eq!(c.owner_of(&RefId::new(1, 1)), Some(5));
    /// ```
    pub fn owner_of(&self, id: &RefId) -> Option<Pid> {
        self.held.get(id).map(|h| h.owner)
    }

    /// Gives back the memory of tables that have become sparse.
    ///
    /// ```
    /// let mut c = cohort_refs::ClientRefs::new(1, cohort_refs::BatchPolicy::default());
    /// c.shrink_if_sparse();
    /// ```
    pub fn shrink_if_sparse(&mut self) {
        if self.held.capacity() > 1024 && self.held.len() * 4 < self.held.capacity() {
            self.held.shrink_to_fit();
        }
        if self.local.capacity() > 1024 && self.local.len() * 4 < self.local.capacity() {
            self.local.shrink_to_fit();
        }
    }

    /// Counts for tests and the runtime's stats call.
    ///
    /// ```
    /// let c = cohort_refs::ClientRefs::new(1, Default::default());
    /// assert_eq!(c.stats().held_refs, 0);
    /// ```
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            held_refs: self.held.len(),
            handles: self.handles,
            pending_ops: self.outbox.pending() + self.local.len(),
            ops_sent: self.outbox.ops_sent(),
            batches_sent: self.outbox.batches_sent(),
            ops_discarded: self.outbox.ops_discarded(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: RefId = RefId::new(1, 1);

    #[test]
    fn repeated_arrivals_are_balanced_by_one_delete() {
        let now = Instant::now();
        let mut c = ClientRefs::new(3, BatchPolicy::default());
        for _ in 0..3 {
            c.deserialized(R, 2).unwrap();
        }
        c.cloned(R).unwrap();
        for _ in 0..3 {
            assert!(!c.dropped(R, now).unwrap());
        }
        assert!(c.dropped(R, now).unwrap());
        assert_eq!(
            c.flush_all(),
            vec![(
                2,
                vec![RefOp::DelClient {
                    id: R,
                    client: 3,
                    count: 3
                }]
            )]
        );
        assert_eq!(c.dropped(R, now), Err(RefError::NotHeld(R)));
    }

    #[test]
    fn own_values_go_to_poll_local_and_dead_owners_get_nothing() {
        let now = Instant::now();
        let mut c = ClientRefs::new(1, BatchPolicy::default());
        c.created(R, 1).unwrap();
        c.serialized(R, 4, now).unwrap();
        assert_eq!(c.poll_local(), Some(RefOp::AddClient { id: R, client: 4 }));
        let r2 = RefId::new(1, 2);
        c.created(r2, 5).unwrap();
        c.handle_peer_died(5);
        c.dropped(r2, now).unwrap();
        assert_eq!(c.stats().pending_ops, 0);
        assert!(c.flush_all().is_empty());
    }

    #[test]
    fn owner_mismatch_is_reported() {
        let mut c = ClientRefs::new(1, BatchPolicy::default());
        c.deserialized(R, 2).unwrap();
        assert_eq!(
            c.deserialized(R, 3),
            Err(RefError::OwnerMismatch {
                id: R,
                known: 2,
                got: 3
            })
        );
    }
}
