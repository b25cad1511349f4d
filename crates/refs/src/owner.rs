//! The owner side: the values this process stores for remote references, each with a
//! signed registration count per client, and the rule that frees them.
//!
//! # The counts
//!
//! For each `(reference, client)` the table keeps `count = Σ applied deltas`, where an
//! [`RefOp::AddClient`] is `+1`, a [`RefOp::DelClient`] is `-count`, and the registration
//! passed to [`OwnerTable::insert`] is `+1` for the creator. Ops from different senders
//! interleave arbitrarily, so a count may be *negative* for a while: a client's
//! `DelClient` overtook the `AddClient` a third process sent on its behalf.
//!
//! # The rule
//!
//! A value is freed as soon as **no client has a positive count** (and a value is
//! present). Entries whose counts are not all zero stay behind without a value, so that
//! the ops still in flight cancel out; an entry is forgotten once every count is zero.
//! Ops may also arrive for a reference the table has not seen yet (the `insert` is still
//! in flight) or has already freed; they are recorded the same way.
//!
//! Why this is safe (no value freed while a handle exists) and live (nothing kept
//! forever) is argued in the crate docs and checked by the simulation in
//! `tests/simulation.rs`.
//!
//! # Dead peers
//!
//! [`OwnerTable::handle_peer_died`] forgets every count of the dead client, and ops
//! naming a dead client are ignored from then on (pids are never reused). The runtime
//! must call it only after it has applied every message it received from that peer.

use std::collections::{HashMap, HashSet, VecDeque};

use cohort_wire::ids::{Pid, RefId};

use crate::RefOp;

/// One reference the owner knows of.
#[derive(Debug)]
struct Entry<V> {
    /// `None` before `insert` and after the value was freed.
    value: Option<V>,
    /// Signed registration counts, one per client with a nonzero count. A small vector:
    /// most references have one to a handful of clients.
    counts: Vec<(Pid, i64)>,
}

impl<V> Entry<V> {
    fn has_positive(&self) -> bool {
        self.counts.iter().any(|&(_, c)| c > 0)
    }

    fn add(&mut self, client: Pid, delta: i64) {
        if let Some(i) = self.counts.iter().position(|&(p, _)| p == client) {
            self.counts[i].1 += delta;
            if self.counts[i].1 == 0 {
                self.counts.swap_remove(i);
            }
        } else if delta != 0 {
            self.counts.push((client, delta));
        }
    }
}

/// Counts the owner side can report.
///
/// ```
/// let t = cohort_refs::OwnerTable::<u8>::new();
/// let s = t.stats();
/// assert_eq!((s.values, s.entries, s.freed), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OwnerStats {
    /// Values stored now.
    pub values: usize,
    /// References with any state at all (stored values plus entries that wait for
    /// in-flight ops to cancel out). Zero when the table holds nothing.
    pub entries: usize,
    /// Values freed so far (whether or not taken with [`OwnerTable::poll_freed`]).
    pub freed: u64,
    /// Ops applied so far.
    pub ops_applied: u64,
}

/// The values this process owns, with the registration counts that decide when each is
/// freed. Generic over the stored value so that freed values come back to the runtime
/// through [`OwnerTable::poll_freed`] — the runtime drops them (or recycles them).
///
/// ```
/// use cohort_refs::{OwnerTable, RefOp};
/// use cohort_wire::ids::RefId;
/// let r = RefId::new(3, 1);
/// let mut t = OwnerTable::new();
/// t.insert(r, "value", 3).unwrap();            // the remotecall from pid 3 created it
/// t.apply(RefOp::AddClient { id: r, client: 4 }); // 3 sent the handle to 4
/// t.apply(RefOp::DelClient { id: r, client: 3, count: 1 });
/// assert!(t.poll_freed().is_none());           // 4 still holds it
/// t.apply(RefOp::DelClient { id: r, client: 4, count: 1 });
/// assert_eq!(t.poll_freed(), Some((r, "value")));
/// assert_eq!(t.stats().entries, 0);
/// ```
#[derive(Debug)]
pub struct OwnerTable<V> {
    entries: HashMap<RefId, Entry<V>>,
    dead: HashSet<Pid>,
    freed: VecDeque<(RefId, V)>,
    values: usize,
    freed_total: u64,
    ops_applied: u64,
}

impl<V> Default for OwnerTable<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> OwnerTable<V> {
    /// An empty table.
    ///
    /// ```
    /// let t = cohort_refs::OwnerTable::<String>::new();
    /// assert_eq!(t.stats().values, 0);
    /// ```
    pub fn new() -> Self {
        OwnerTable {
            entries: HashMap::new(),
            dead: HashSet::new(),
            freed: VecDeque::new(),
            values: 0,
            freed_total: 0,
            ops_applied: 0,
        }
    }

    /// Stores `value` for `id` and registers `initial_client` (the process that created the
    /// reference, usually `id.whence`) once. Call it where the value comes into being: on
    /// the `remotecall` that creates a `Future`, on the creation of a `RemoteChannel`.
    /// Ops that arrived earlier for `id` are taken into account, so the value may be freed
    /// at once (watch [`OwnerTable::poll_freed`]). Gives the value back if `id` already
    /// has one.
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut t = cohort_refs::OwnerTable::new();
    /// assert!(t.insert(RefId::new(1, 1), 10, 1).is_ok());
    /// assert_eq!(t.insert(RefId::new(1, 1), 11, 1), Err(11));
    /// assert_eq!(t.get(&RefId::new(1, 1)), Some(&10));
    /// ```
    pub fn insert(&mut self, id: RefId, value: V, initial_client: Pid) -> Result<(), V> {
        let e = self.entries.entry(id).or_insert_with(|| Entry {
            value: None,
            counts: Vec::new(),
        });
        if e.value.is_some() {
            return Err(value);
        }
        e.value = Some(value);
        self.values += 1;
        if !self.dead.contains(&initial_client) {
            e.add(initial_client, 1);
        }
        self.settle(id);
        Ok(())
    }

    /// The stored value of `id`, if any.
    ///
    /// ```
    /// let t = cohort_refs::OwnerTable::<u8>::new();
    /// assert!(t.get(&cohort_wire::ids::RefId::new(1, 1)).is_none());
    /// ```
    pub fn get(&self, id: &RefId) -> Option<&V> {
        self.entries.get(id).and_then(|e| e.value.as_ref())
    }

    /// The stored value of `id`, mutably (a `RemoteChannel`'s channel, a `Future`'s slot
    /// being filled).
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut t = cohort_refs::OwnerTable::new();
    /// t.insert(RefId::new(1, 1), 1, 1).unwrap();
    /// *t.get_mut(&RefId::new(1, 1)).unwrap() += 1;
    /// assert_eq!(t.get(&RefId::new(1, 1)), Some(&2));
    /// ```
    pub fn get_mut(&mut self, id: &RefId) -> Option<&mut V> {
        self.entries.get_mut(id).and_then(|e| e.value.as_mut())
    }

    /// The current signed count of `(id, client)` (0 when unknown). For tests and
    /// diagnostics.
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut t = cohort_refs::OwnerTable::new();
    /// t.insert(RefId::new(1, 1), (), 1).unwrap();
    /// assert_eq!(t.count(&RefId::new(1, 1), 1), 1);
    /// assert_eq!(t.count(&RefId::new(1, 1), 2), 0);
    /// ```
    pub fn count(&self, id: &RefId, client: Pid) -> i64 {
        self.entries
            .get(id)
            .and_then(|e| e.counts.iter().find(|&&(p, _)| p == client))
            .map_or(0, |&(_, c)| c)
    }

    /// Applies one op received from a client (or produced on this process for itself).
    ///
    /// ```
    /// use cohort_refs::{OwnerTable, RefOp};
    /// use cohort_wire::ids::RefId;
    /// let r = RefId::new(1, 1);
    /// let mut t = OwnerTable::<()>::new();
    /// // A deletion that overtook its add: recorded, not lost.
    /// t.apply(RefOp::DelClient { id: r, client: 5, count: 1 });
    /// assert_eq!(t.count(&r, 5), -1);
    /// t.apply(RefOp::AddClient { id: r, client: 5 });
    /// assert_eq!(t.stats().entries, 0);
    /// ```
    pub fn apply(&mut self, op: RefOp) {
        self.ops_applied += 1;
        let client = op.client();
        if self.dead.contains(&client) {
            // Its counts were dropped when it died; late ops about it must not revive them.
            return;
        }
        let id = op.id();
        self.entries
            .entry(id)
            .or_insert_with(|| Entry {
                value: None,
                counts: Vec::new(),
            })
            .add(client, op.delta());
        self.settle(id);
    }

    /// Applies a batch, in order.
    ///
    /// ```
    /// use cohort_refs::{OwnerTable, RefOp};
    /// use cohort_wire::ids::RefId;
    /// let r = RefId::new(1, 1);
    /// let mut t = OwnerTable::new();
    /// t.insert(r, 'v', 1).unwrap();
    /// t.apply_batch([RefOp::AddClient { id: r, client: 2 }, RefOp::DelClient { id: r, client: 1, count: 1 }]);
    /// assert_eq!(t.stats().values, 1);
    /// ```
    pub fn apply_batch(&mut self, ops: impl IntoIterator<Item = RefOp>) {
        for op in ops {
            self.apply(op);
        }
    }

    /// Forgets every count of `pid`, ignores ops naming it from now on, and frees the
    /// values that leaves with no positive count. Call it once the connection to `pid` is
    /// gone *and* every message received from it has been applied.
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut t = cohort_refs::OwnerTable::new();
    /// t.insert(RefId::new(2, 1), "x", 2).unwrap();
    /// t.handle_peer_died(2);
    /// assert_eq!(t.poll_freed(), Some((RefId::new(2, 1), "x")));
    /// ```
    pub fn handle_peer_died(&mut self, pid: Pid) {
        if !self.dead.insert(pid) {
            return;
        }
        let touched: Vec<RefId> = self
            .entries
            .iter_mut()
            .filter_map(|(id, e)| {
                let before = e.counts.len();
                e.counts.retain(|&(p, _)| p != pid);
                (e.counts.len() != before).then_some(*id)
            })
            .collect();
        for id in touched {
            self.settle(id);
        }
    }

    /// Applies the rule to one entry: free the value when no count is positive, forget
    /// the entry when it holds neither a value nor a nonzero count.
    fn settle(&mut self, id: RefId) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.value.is_some() && !e.has_positive() {
            if let Some(v) = e.value.take() {
                self.values -= 1;
                self.freed_total += 1;
                self.freed.push_back((id, v));
            }
        }
        if e.value.is_none() && e.counts.is_empty() {
            self.entries.remove(&id);
        }
    }

    /// The next freed value, with its reference. The runtime drops it (waking whoever
    /// waits on a freed channel with an error, if it likes).
    ///
    /// ```
    /// assert!(cohort_refs::OwnerTable::<u8>::new().poll_freed().is_none());
    /// ```
    pub fn poll_freed(&mut self) -> Option<(RefId, V)> {
        self.freed.pop_front()
    }

    /// Whether `pid` was reported dead.
    ///
    /// ```
    /// let mut t = cohort_refs::OwnerTable::<u8>::new();
    /// t.handle_peer_died(4);
    /// assert!(t.is_dead(4));
    /// ```
    pub fn is_dead(&self, pid: Pid) -> bool {
        self.dead.contains(&pid)
    }

    /// Gives back the memory of tables that have become sparse (after a burst of
    /// references was freed), so a quiet process returns to its baseline.
    ///
    /// ```
    /// let mut t = cohort_refs::OwnerTable::<u8>::new();
    /// t.shrink_if_sparse();
    /// ```
    pub fn shrink_if_sparse(&mut self) {
        if self.entries.capacity() > 1024 && self.entries.len() * 4 < self.entries.capacity() {
            self.entries.shrink_to_fit();
        }
        if self.freed.capacity() > 1024 && self.freed.len() * 4 < self.freed.capacity() {
            self.freed.shrink_to_fit();
        }
    }

    /// Counts for tests and the runtime's stats call.
    ///
    /// ```
    /// use cohort_wire::ids::RefId;
    /// let mut t = cohort_refs::OwnerTable::new();
    /// t.insert(RefId::new(1, 1), (), 1).unwrap();
    /// assert_eq!(t.stats().values, 1);
    /// ```
    pub fn stats(&self) -> OwnerStats {
        OwnerStats {
            values: self.values,
            entries: self.entries.len(),
            freed: self.freed_total,
            ops_applied: self.ops_applied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: RefId = RefId::new(1, 1);

    fn add(client: Pid) -> RefOp {
        RefOp::AddClient { id: R, client }
    }
    fn del(client: Pid, count: u64) -> RefOp {
        RefOp::DelClient {
            id: R,
            client,
            count,
        }
    }

    #[test]
    fn del_overtaking_add_neither_frees_early_nor_leaks() {
        // A (1) creates, sends to C (3): AddClient{C} is slow; C drops at once.
        let mut t = OwnerTable::new();
        t.insert(R, 'v', 1).unwrap();
        t.apply(del(3, 1));
        assert_eq!(t.count(&R, 3), -1);
        assert!(t.get(&R).is_some(), "A still holds it");
        t.apply(add(3));
        t.apply(del(1, 1));
        assert_eq!(t.poll_freed(), Some((R, 'v')));
        assert_eq!(t.stats().entries, 0);
    }

    #[test]
    fn freed_when_no_count_is_positive_then_late_ops_cancel() {
        let mut t = OwnerTable::new();
        t.insert(R, 'v', 1).unwrap();
        t.apply(del(3, 1)); // C's delete overtook A's add
        t.apply(del(1, 1)); // hypothetically: nobody positive any more
        assert_eq!(t.poll_freed(), Some((R, 'v')));
        assert_eq!(
            t.stats(),
            OwnerStats {
                values: 0,
                entries: 1,
                freed: 1,
                ops_applied: 2
            }
        );
        t.apply(add(3));
        assert_eq!(t.stats().entries, 0);
    }

    #[test]
    fn ops_before_insert_are_kept() {
        let mut t = OwnerTable::new();
        t.apply(add(4));
        t.apply(del(4, 1));
        assert_eq!(t.stats().entries, 0);
        t.apply(add(4));
        t.insert(R, 'v', 2).unwrap();
        t.apply(del(2, 1));
        assert!(t.poll_freed().is_none());
        t.apply(del(4, 1));
        assert_eq!(t.poll_freed(), Some((R, 'v')));
    }

    #[test]
    fn dead_clients_are_forgotten_and_ignored() {
        let mut t = OwnerTable::new();
        t.insert(R, 'v', 1).unwrap();
        t.apply(add(2));
        t.apply(del(1, 1));
        assert!(t.poll_freed().is_none());
        t.handle_peer_died(2);
        assert_eq!(t.poll_freed(), Some((R, 'v')));
        t.apply(add(2)); // a late add for the dead client
        assert_eq!(t.stats().entries, 0);
        let r2 = RefId::new(1, 2);
        t.insert(r2, 'w', 2).unwrap(); // created by a process now dead
        assert_eq!(t.poll_freed(), Some((r2, 'w')));
    }
}
