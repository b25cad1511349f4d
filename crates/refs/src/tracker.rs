//! One process's whole reference tracking: its [`ClientRefs`] and its [`OwnerTable`],
//! wired so that ops a process sends itself are applied at once, unbatched.

use std::time::Instant;

use cohort_wire::ids::{Pid, RefId};

use crate::{BatchPolicy, ClientRefs, ClientStats, OwnerStats, OwnerTable, RefError, RefOp};

/// Counts over both halves, for the runtime's stats call and for leak checks in tests.
///
/// ```
/// let t = cohort_refs::RefTracker::<()>::new(1, Default::default());
/// let s = t.stats();
/// assert_eq!((s.owned_values, s.pending_ops, s.ops_sent, s.batches_sent), (0, 0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefStats {
    /// Values this process stores for live references.
    pub owned_values: usize,
    /// Owner-side entries of any kind (values plus counts waiting for in-flight ops).
    pub owner_entries: usize,
    /// Values freed so far.
    pub freed: u64,
    /// References this process holds handles to.
    pub held_refs: usize,
    /// Live local handles.
    pub handles: u64,
    /// Ops queued and not yet transmitted.
    pub pending_ops: usize,
    /// Ops transmitted to other processes so far.
    pub ops_sent: u64,
    /// Batches transmitted to other processes so far.
    pub batches_sent: u64,
}

impl RefStats {
    /// Whether this process tracks nothing at all: no value, no entry, no handle, no
    /// queued op. What every process must reach once all handles are gone and all
    /// batches delivered.
    ///
    /// ```
    /// assert!(cohort_refs::RefStats::default().is_quiescent());
    /// ```
    pub fn is_quiescent(&self) -> bool {
        self.owned_values == 0
            && self.owner_entries == 0
            && self.held_refs == 0
            && self.handles == 0
            && self.pending_ops == 0
    }
}

/// Reference tracking for one process, owner and client in one. `V` is the stored value
/// (a `Future`'s slot, a `RemoteChannel`'s channel); freed values come back through
/// [`RefTracker::poll_freed`].
///
/// How a runtime drives it (all calls are cheap and never block):
///
/// | event | call |
/// | --- | --- |
/// | a reference is created here, stored on `owner` | [`RefTracker::created`] (+ the owner's [`RefTracker::insert`], carried by the creating call) |
/// | a handle is cloned | [`RefTracker::cloned`] |
/// | a handle is serialized into a message for `P` | [`RefTracker::serialized`], then [`RefTracker::flush`] the owner and send that batch *before* the message |
/// | a handle is deserialized from a message | [`RefTracker::deserialized`] |
/// | a handle is dropped | [`RefTracker::dropped`] |
/// | `finalize`, or `fetch` of a `Future` | [`RefTracker::released`] |
/// | a batch of ops arrives from a peer | [`RefTracker::handle_ops`] |
/// | a peer's connection is gone, all its messages processed | [`RefTracker::handle_peer_died`] |
/// | timer / after any of the above | drain [`RefTracker::poll_transmit`], drop what [`RefTracker::poll_freed`] yields, re-arm at [`RefTracker::poll_timeout`] |
/// | shutdown | send [`RefTracker::flush_all`] |
///
/// ```
/// use cohort_refs::RefTracker;
/// use cohort_wire::ids::RefId;
/// use std::time::Instant;
/// let now = Instant::now();
/// let r = RefId::new(1, 1);
/// let mut p1 = RefTracker::new(1, Default::default());
/// let mut p2 = RefTracker::<&str>::new(2, Default::default());
/// // pid 1 creates a channel stored on itself and sends a handle to pid 2.
/// p1.created(r, 1).unwrap();
/// p1.insert(r, "chan", 1).unwrap();
/// assert_eq!(p1.serialized(r, 2, now).unwrap(), 1); // owner is 1: applied locally
/// p2.deserialized(r, 1).unwrap();
/// p1.dropped(r, now).unwrap();
/// assert!(p1.poll_freed().is_none()); // pid 2 still holds it
/// p2.dropped(r, now).unwrap();
/// let (to, ops) = p2.flush_all().pop().unwrap();
/// assert_eq!(to, 1);
/// p1.handle_ops(ops);
/// assert_eq!(p1.poll_freed(), Some((r, "chan")));
/// assert!(p1.stats().is_quiescent() && p2.stats().is_quiescent());
/// ```
#[derive(Debug)]
pub struct RefTracker<V> {
    client: ClientRefs,
    owner: OwnerTable<V>,
}

impl<V> RefTracker<V> {
    /// Tracking for process `me`, batching ops to others with `policy`.
    ///
    /// ```
    /// let t = cohort_refs::RefTracker::<u8>::new(3, Default::default());
    /// assert_eq!(t.me(), 3);
    /// ```
    pub fn new(me: Pid, policy: BatchPolicy) -> Self {
        RefTracker {
            client: ClientRefs::new(me, policy),
            owner: OwnerTable::new(),
        }
    }

    /// This process's pid.
    ///
    /// ```
    /// assert_eq!(cohort_refs::RefTracker::<u8>::new(3, Default::default()).me(), 3);
    /// ```
    pub fn me(&self) -> Pid {
        self.client.me()
    }

    /// Applies the ops this process addressed to itself.
    fn apply_local(&mut self) {
        while let Some(op) = self.client.poll_local() {
            self.owner.apply(op);
        }
    }

    /// See [`ClientRefs::created`].
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut t = cohort_refs::RefTracker::<u8>::new(1, Default::default());
    /// t.created(RefId::new(1, 1), 2).unwrap();
    /// assert_eq!(t.stats().held_refs, 1);
    /// ```
    pub fn created(&mut self, id: RefId, owner: Pid) -> Result<(), RefError> {
        self.client.created(id, owner)
    }

    /// See [`OwnerTable::insert`]: this process stores the value of `id`.
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut t = cohort_refs::RefTracker::new(1, Default::default());
    /// t.insert(RefId::new(2, 1), 5u8, 2).unwrap();
    /// assert_eq!(t.get(&RefId::new(2, 1)), Some(&5));
    /// ```
    pub fn insert(&mut self, id: RefId, value: V, initial_client: Pid) -> Result<(), V> {
        self.owner.insert(id, value, initial_client)
    }

    /// See [`OwnerTable::get`].
    ///
    /// ```
    /// let t = cohort_refs::RefTracker::<u8>::new(1, Default::default());
    /// assert!(t.get(&cohort_wire::ids::RefId::new(1, 1)).is_none());
    /// ```
    pub fn get(&self, id: &RefId) -> Option<&V> {
        self.owner.get(id)
    }

    /// See [`OwnerTable::get_mut`].
    ///
    /// ```
    /// let mut t = cohort_refs::RefTracker::<u8>::new(1, Default::default());
    /// assert!(t.get_mut(&cohort_wire::ids::RefId::new(1, 1)).is_none());
    /// ```
    pub fn get_mut(&mut self, id: &RefId) -> Option<&mut V> {
        self.owner.get_mut(id)
    }

    /// See [`ClientRefs::cloned`].
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut t = cohort_refs::RefTracker::<u8>::new(1, Default::default());
    /// t.created(RefId::new(1, 1), 1).unwrap();
    /// t.cloned(RefId::new(1, 1)).unwrap();
    /// assert_eq!(t.stats().handles, 2);
    /// ```
    pub fn cloned(&mut self, id: RefId) -> Result<(), RefError> {
        self.client.cloned(id)
    }

    /// See [`ClientRefs::serialized`]; when this process is the owner the registration is
    /// applied at once. Returns the owner: [`RefTracker::flush`] it and send that batch
    /// before the message that carries the handle.
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let now = std::time::Instant::now();
    /// let mut t = cohort_refs::RefTracker::<u8>::new(1, Default::default());
    /// t.created(RefId::new(1, 1), 2).unwrap();
    /// let owner = t.serialized(RefId::new(1, 1), 3, now).unwrap();
    /// assert_eq!(t.flush(owner).map(|b| b.len()), Some(1));
    /// ```
    pub fn serialized(&mut self, id: RefId, dest: Pid, now: Instant) -> Result<Pid, RefError> {
        let owner = self.client.serialized(id, dest, now)?;
        self.apply_local();
        Ok(owner)
    }

    /// See [`ClientRefs::deserialized`].
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut t = cohort_refs::RefTracker::<u8>::new(3, Default::default());
    /// t.deserialized(RefId::new(1, 1), 2).unwrap();
    /// assert_eq!(t.stats().handles, 1);
    /// ```
    pub fn deserialized(&mut self, id: RefId, owner: Pid) -> Result<(), RefError> {
        self.client.deserialized(id, owner)
    }

    /// See [`ClientRefs::dropped`]; a deletion for a value stored here is applied at once
    /// (and may free it: check [`RefTracker::poll_freed`]).
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let now = std::time::Instant::now();
    /// let mut t = cohort_refs::RefTracker::new(1, Default::default());
    /// t.created(RefId::new(1, 1), 1).unwrap();
    /// t.insert(RefId::new(1, 1), 'v', 1).unwrap();
    /// assert!(t.dropped(RefId::new(1, 1), now).unwrap());
    /// assert_eq!(t.poll_freed(), Some((RefId::new(1, 1), 'v')));
    /// ```
    pub fn dropped(&mut self, id: RefId, now: Instant) -> Result<bool, RefError> {
        let last = self.client.dropped(id, now)?;
        self.apply_local();
        Ok(last)
    }

    /// See [`ClientRefs::released`].
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let now = std::time::Instant::now();
    /// let mut t = cohort_refs::RefTracker::<u8>::new(1, Default::default());
    /// t.created(RefId::new(1, 1), 2).unwrap();
    /// t.released(RefId::new(1, 1), now).unwrap();
    /// assert!(t.poll_transmit(now).is_some());
    /// ```
    pub fn released(&mut self, id: RefId, now: Instant) -> Result<(), RefError> {
        self.client.released(id, now)?;
        self.apply_local();
        Ok(())
    }

    /// A batch of ops arrived from a peer: apply it, in order. Ops from one peer must be
    /// applied in the order that peer sent them.
    ///
    /// ```
    /// use cohort_refs::RefOp;
    /// use cohort_wire::ids::RefId;
    /// let mut t = cohort_refs::RefTracker::new(1, Default::default());
    /// t.insert(RefId::new(2, 1), (), 2).unwrap();
    /// t.handle_ops(vec![RefOp::DelClient { id: RefId::new(2, 1), client: 2, count: 1 }]);
    /// assert!(t.poll_freed().is_some());
    /// ```
    pub fn handle_ops(&mut self, ops: impl IntoIterator<Item = RefOp>) {
        self.owner.apply_batch(ops);
    }

    /// A peer is gone and all its messages were processed: see
    /// [`OwnerTable::handle_peer_died`] and [`ClientRefs::handle_peer_died`].
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut t = cohort_refs::RefTracker::new(1, Default::default());
    /// t.insert(RefId::new(2, 1), (), 2).unwrap();
    /// t.handle_peer_died(2);
    /// assert!(t.poll_freed().is_some());
    /// ```
    pub fn handle_peer_died(&mut self, pid: Pid) {
        if pid == self.me() {
            return;
        }
        self.client.handle_peer_died(pid);
        self.owner.handle_peer_died(pid);
    }

    /// See [`ClientRefs::poll_transmit`].
    ///
    /// ```
    /// let mut t = cohort_refs::RefTracker::<u8>::new(1, Default::default());
    /// assert!(t.poll_transmit(std::time::Instant::now()).is_none());
    /// ```
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(Pid, Vec<RefOp>)> {
        self.client.poll_transmit(now)
    }

    /// See [`ClientRefs::poll_timeout`].
    ///
    /// ```
    /// assert!(cohort_refs::RefTracker::<u8>::new(1, Default::default()).poll_timeout().is_none());
    /// ```
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.client.poll_timeout()
    }

    /// See [`ClientRefs::flush`].
    ///
    /// ```
    /// assert!(cohort_refs::RefTracker::<u8>::new(1, Default::default()).flush(2).is_none());
    /// ```
    pub fn flush(&mut self, pid: Pid) -> Option<Vec<RefOp>> {
        self.client.flush(pid)
    }

    /// See [`ClientRefs::flush_all`].
    ///
    /// ```
    /// assert!(cohort_refs::RefTracker::<u8>::new(1, Default::default()).flush_all().is_empty());
    /// ```
    pub fn flush_all(&mut self) -> Vec<(Pid, Vec<RefOp>)> {
        self.client.flush_all()
    }

    /// See [`OwnerTable::poll_freed`].
    ///
    /// ```
    /// assert!(cohort_refs::RefTracker::<u8>::new(1, Default::default()).poll_freed().is_none());
    /// ```
    pub fn poll_freed(&mut self) -> Option<(RefId, V)> {
        self.owner.poll_freed()
    }

    /// The client half (read-only), for finer queries.
    ///
    /// ```
    /// let t = cohort_refs::RefTracker::<u8>::new(1, Default::default());
    /// assert_eq!(t.client().me(), 1);
    /// ```
    pub fn client(&self) -> &ClientRefs {
        &self.client
    }

    /// The owner half (read-only), for finer queries.
    ///
    /// ```
    /// let t = cohort_refs::RefTracker::<u8>::new(1, Default::default());
    /// assert_eq!(t.owner().stats().values, 0);
    /// ```
    pub fn owner(&self) -> &OwnerTable<V> {
        &self.owner
    }

    /// Gives back the memory of tables that have become sparse.
    ///
    /// ```
    /// let mut t = cohort_refs::RefTracker::<u8>::new(1, cohort_refs::BatchPolicy::default());
    /// t.shrink_if_sparse();
    /// ```
    pub fn shrink_if_sparse(&mut self) {
        self.owner.shrink_if_sparse();
        self.client.shrink_if_sparse();
    }

    /// Counts over both halves.
    ///
    /// ```
    /// assert!(cohort_refs::RefTracker::<u8>::new(1, Default::default()).stats().is_quiescent());
    /// ```
    pub fn stats(&self) -> RefStats {
        let ClientStats {
            held_refs,
            handles,
            pending_ops,
            ops_sent,
            batches_sent,
            ..
        } = self.client.stats();
        let OwnerStats {
            values,
            entries,
            freed,
            ..
        } = self.owner.stats();
        RefStats {
            owned_values: values,
            owner_entries: entries,
            freed,
            held_refs,
            handles,
            pending_ops,
            ops_sent,
            batches_sent,
        }
    }
}
