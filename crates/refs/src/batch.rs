//! The batching policy: per-destination FIFO queues of [`RefOp`]s and when they fall due.
//!
//! Why batch: a program that drops a million handles should not send a million messages.
//! An owner only needs to learn of a release *eventually* (late frees cost memory, not
//! correctness), so ops wait in a queue per owner until either enough have gathered
//! ([`BatchPolicy::max_ops`]) or the oldest has waited [`BatchPolicy::max_delay`].
//!
//! Why FIFO: the GC protocol's safety rests on a sender's `AddClient` reaching the owner
//! before that sender's own later `DelClient` (see the crate docs), so a queue is never
//! reordered and batches to one destination leave in the order they are taken.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cohort_wire::ids::Pid;

use crate::RefOp;

/// When a queue of ops to one destination is due for transmission.
///
/// ```
/// use cohort_refs::BatchPolicy;
/// use std::time::Duration;
/// let p = BatchPolicy { max_ops: 4, max_delay: Duration::from_millis(1) };
/// assert!(p.max_ops > 0);
/// assert_eq!(BatchPolicy::default().max_ops, 256);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// A queue is due as soon as it holds this many ops, and no batch is larger.
    /// Values below 1 are treated as 1.
    pub max_ops: usize,
    /// A queue is due once its oldest op has waited this long.
    pub max_delay: Duration,
}

impl Default for BatchPolicy {
    /// 256 ops or 5 ms: a batch of 256 ops is about 4 KiB on the wire — large enough that
    /// release traffic is negligible, small enough not to delay a frame — and 5 ms
    /// bounds how long an owner keeps a value nobody holds any more.
    ///
    /// ```
    /// use cohort_refs::BatchPolicy;
    /// let p = BatchPolicy::default();
    /// assert_eq!(p.max_delay, std::time::Duration::from_millis(5));
    /// ```
    fn default() -> Self {
        BatchPolicy {
            max_ops: 256,
            max_delay: Duration::from_millis(5),
        }
    }
}

/// One destination's queue.
#[derive(Debug)]
struct Queue {
    ops: Vec<RefOp>,
    /// When the oldest op still queued was pushed; drives the delay deadline.
    first_at: Instant,
    /// Set by an explicit request to send soon (an early release); cleared when empty.
    urgent: bool,
}

/// Per-destination FIFO queues of ops with the [`BatchPolicy`] applied.
///
/// Sans-IO: time comes in as `now`, batches go out through [`Outbox::poll_transmit`].
///
/// ```
/// use cohort_refs::{BatchPolicy, Outbox, RefOp};
/// use cohort_wire::ids::RefId;
/// use std::time::{Duration, Instant};
/// let t0 = Instant::now();
/// let mut out = Outbox::new(BatchPolicy { max_ops: 2, max_delay: Duration::from_millis(1) });
/// out.push(5, RefOp::AddClient { id: RefId::new(1, 1), client: 3 }, t0);
/// assert!(out.poll_transmit(t0).is_none()); // neither full nor old enough
/// assert_eq!(out.poll_timeout(), Some(t0 + Duration::from_millis(1)));
/// let (to, ops) = out.poll_transmit(t0 + Duration::from_millis(1)).unwrap();
/// assert_eq!((to, ops.len()), (5, 1));
/// ```
#[derive(Debug)]
pub struct Outbox {
    policy: BatchPolicy,
    /// BTreeMap, not HashMap: the order in which due batches come out is deterministic,
    /// which keeps simulations reproducible from their seed.
    queues: BTreeMap<Pid, Queue>,
    pending: usize,
    ops_sent: u64,
    batches_sent: u64,
    ops_discarded: u64,
}

impl Outbox {
    /// An empty outbox with the given policy.
    ///
    /// ```
    /// let out = cohort_refs::Outbox::new(Default::default());
    /// assert_eq!(out.pending(), 0);
    /// ```
    pub fn new(policy: BatchPolicy) -> Self {
        Outbox {
            policy: BatchPolicy {
                max_ops: policy.max_ops.max(1),
                ..policy
            },
            queues: BTreeMap::new(),
            pending: 0,
            ops_sent: 0,
            batches_sent: 0,
            ops_discarded: 0,
        }
    }

    /// The policy in force.
    ///
    /// ```
    /// let out = cohort_refs::Outbox::new(Default::default());
    /// assert_eq!(out.policy().max_ops, 256);
    /// ```
    pub fn policy(&self) -> BatchPolicy {
        self.policy
    }

    /// Queues `op` for `dest`, behind everything already queued for it.
    ///
    /// ```
    /// use cohort_refs::{Outbox, RefOp};
    /// use cohort_wire::ids::RefId;
    /// let mut out = Outbox::new(Default::default());
    /// out.push(2, RefOp::DelClient { id: RefId::new(1, 1), client: 1, count: 1 }, std::time::Instant::now());
    /// assert_eq!(out.pending(), 1);
    /// ```
    pub fn push(&mut self, dest: Pid, op: RefOp, now: Instant) {
        let q = self.queues.entry(dest).or_insert_with(|| Queue {
            ops: Vec::new(),
            first_at: now,
            urgent: false,
        });
        if q.ops.is_empty() {
            q.first_at = now;
        }
        q.ops.push(op);
        self.pending += 1;
    }

    /// Makes `dest`'s queue due at once (if it holds anything), without taking it.
    ///
    /// ```
    /// use cohort_refs::{Outbox, RefOp};
    /// use cohort_wire::ids::RefId;
    /// let now = std::time::Instant::now();
    /// let mut out = Outbox::new(Default::default());
    /// out.push(2, RefOp::AddClient { id: RefId::new(1, 1), client: 3 }, now);
    /// out.mark_urgent(2);
    /// assert!(out.poll_transmit(now).is_some());
    /// ```
    pub fn mark_urgent(&mut self, dest: Pid) {
        if let Some(q) = self.queues.get_mut(&dest) {
            if !q.ops.is_empty() {
                q.urgent = true;
            }
        }
    }

    fn is_due(&self, q: &Queue, now: Instant) -> bool {
        !q.ops.is_empty()
            && (q.urgent
                || q.ops.len() >= self.policy.max_ops
                || now >= q.first_at + self.policy.max_delay)
    }

    /// Takes the next due batch, at most [`BatchPolicy::max_ops`] ops long, in FIFO order.
    /// Call it until it returns `None`, whenever `now` reaches [`Outbox::poll_timeout`]
    /// and after every call that queues ops. Batches for one destination must be sent in
    /// the order they come out of here.
    ///
    /// ```
    /// use cohort_refs::{BatchPolicy, Outbox, RefOp};
    /// use cohort_wire::ids::RefId;
    /// use std::time::{Duration, Instant};
    /// let now = Instant::now();
    /// let mut out = Outbox::new(BatchPolicy { max_ops: 2, max_delay: Duration::from_secs(1) });
    /// for i in 0..5 {
    ///     out.push(2, RefOp::AddClient { id: RefId::new(1, i), client: 3 }, now);
    /// }
    /// assert_eq!(out.poll_transmit(now).unwrap().1.len(), 2);
    /// assert_eq!(out.poll_transmit(now).unwrap().1.len(), 2);
    /// assert!(out.poll_transmit(now).is_none()); // one op left, not due yet
    /// ```
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(Pid, Vec<RefOp>)> {
        let dest = *self
            .queues
            .iter()
            .find(|(_, q)| self.is_due(q, now))
            .map(|(p, _)| p)?;
        let max = self.policy.max_ops;
        let q = self.queues.get_mut(&dest)?;
        let batch: Vec<RefOp> = if q.ops.len() <= max {
            std::mem::take(&mut q.ops)
        } else {
            // Keep `first_at`: what stays behind is at least that old.
            q.ops.drain(..max).collect()
        };
        if q.ops.is_empty() {
            self.queues.remove(&dest);
        }
        Some((dest, self.account(batch)))
    }

    fn account(&mut self, batch: Vec<RefOp>) -> Vec<RefOp> {
        self.pending -= batch.len();
        self.ops_sent += batch.len() as u64;
        self.batches_sent += 1;
        batch
    }

    /// The earliest instant at which some queue falls due (possibly already past), or
    /// `None` when nothing is queued. Arm a timer for it.
    ///
    /// ```
    /// let out = cohort_refs::Outbox::new(Default::default());
    /// assert_eq!(out.poll_timeout(), None);
    /// ```
    pub fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.queues
            .values()
            .filter(|q| !q.ops.is_empty())
            .map(|q| {
                if q.urgent || q.ops.len() >= self.policy.max_ops {
                    q.first_at
                } else {
                    q.first_at + self.policy.max_delay
                }
            })
            .min()
    }

    /// Takes everything queued for `dest` as one batch, whatever its size or age.
    ///
    /// ```
    /// use cohort_refs::{Outbox, RefOp};
    /// use cohort_wire::ids::RefId;
    /// let mut out = Outbox::new(Default::default());
    /// assert!(out.flush(2).is_none());
    /// out.push(2, RefOp::AddClient { id: RefId::new(1, 1), client: 3 }, std::time::Instant::now());
    /// assert_eq!(out.flush(2).unwrap().len(), 1);
    /// ```
    pub fn flush(&mut self, dest: Pid) -> Option<Vec<RefOp>> {
        let q = self.queues.remove(&dest)?;
        if q.ops.is_empty() {
            return None;
        }
        Some(self.account(q.ops))
    }

    /// Takes every queue, each as one batch, in ascending pid order.
    ///
    /// ```
    /// let mut out = cohort_refs::Outbox::new(Default::default());
    /// assert!(out.flush_all().is_empty());
    /// ```
    pub fn flush_all(&mut self) -> Vec<(Pid, Vec<RefOp>)> {
        let dests: Vec<Pid> = self.queues.keys().copied().collect();
        dests
            .into_iter()
            .filter_map(|d| self.flush(d).map(|ops| (d, ops)))
            .collect()
    }

    /// Throws away everything queued for `dest` (it died); returns how many ops went.
    ///
    /// ```
    /// use cohort_refs::{Outbox, RefOp};
    /// use cohort_wire::ids::RefId;
    /// let mut out = Outbox::new(Default::default());
    /// out.push(2, RefOp::AddClient { id: RefId::new(1, 1), client: 3 }, std::time::Instant::now());
    /// assert_eq!(out.discard(2), 1);
    /// assert_eq!(out.pending(), 0);
    /// ```
    pub fn discard(&mut self, dest: Pid) -> usize {
        let n = self.queues.remove(&dest).map_or(0, |q| q.ops.len());
        self.pending -= n;
        self.ops_discarded += n as u64;
        n
    }

    /// Ops queued and not yet taken.
    ///
    /// ```
    /// assert_eq!(cohort_refs::Outbox::new(Default::default()).pending(), 0);
    /// ```
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Ops taken for transmission so far.
    ///
    /// ```
    /// assert_eq!(cohort_refs::Outbox::new(Default::default()).ops_sent(), 0);
    /// ```
    pub fn ops_sent(&self) -> u64 {
        self.ops_sent
    }

    /// Batches taken for transmission so far.
    ///
    /// ```
    /// assert_eq!(cohort_refs::Outbox::new(Default::default()).batches_sent(), 0);
    /// ```
    pub fn batches_sent(&self) -> u64 {
        self.batches_sent
    }

    /// Ops thrown away because their destination died.
    ///
    /// ```
    /// assert_eq!(cohort_refs::Outbox::new(Default::default()).ops_discarded(), 0);
    /// ```
    pub fn ops_discarded(&self) -> u64 {
        self.ops_discarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_wire::ids::RefId;

    fn add(i: u64) -> RefOp {
        RefOp::AddClient {
            id: RefId::new(1, i),
            client: 9,
        }
    }

    #[test]
    fn due_by_size_by_time_and_by_urgency() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut out = Outbox::new(BatchPolicy {
            max_ops: 3,
            max_delay: 10 * ms,
        });
        out.push(2, add(0), t0);
        out.push(2, add(1), t0 + ms);
        assert!(out.poll_transmit(t0 + 9 * ms).is_none());
        assert_eq!(out.poll_timeout(), Some(t0 + 10 * ms));
        out.push(2, add(2), t0 + 2 * ms);
        assert_eq!(out.poll_timeout(), Some(t0));
        let (d, b) = out.poll_transmit(t0 + 2 * ms).unwrap();
        assert_eq!((d, b), (2, vec![add(0), add(1), add(2)]));
        out.push(3, add(3), t0 + 3 * ms);
        assert!(out.poll_transmit(t0 + 3 * ms).is_none());
        out.mark_urgent(3);
        assert_eq!(out.poll_transmit(t0 + 3 * ms), Some((3, vec![add(3)])));
        // The urgent flag does not outlive the queue.
        out.push(3, add(4), t0 + 4 * ms);
        assert!(out.poll_transmit(t0 + 4 * ms).is_none());
        assert_eq!(out.poll_transmit(t0 + 14 * ms), Some((3, vec![add(4)])));
        assert_eq!(
            (out.ops_sent(), out.batches_sent(), out.pending()),
            (5, 3, 0)
        );
    }

    #[test]
    fn a_first_op_after_a_drain_restarts_the_clock() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut out = Outbox::new(BatchPolicy {
            max_ops: 100,
            max_delay: 10 * ms,
        });
        out.push(2, add(0), t0);
        assert!(out.flush(2).is_some());
        out.push(2, add(1), t0 + 50 * ms);
        assert!(out.poll_transmit(t0 + 55 * ms).is_none());
        assert!(out.poll_transmit(t0 + 60 * ms).is_some());
    }

    #[test]
    fn zero_max_ops_means_one() {
        let t0 = Instant::now();
        let mut out = Outbox::new(BatchPolicy {
            max_ops: 0,
            max_delay: Duration::from_secs(1),
        });
        out.push(2, add(0), t0);
        out.push(2, add(1), t0);
        assert_eq!(out.poll_transmit(t0).unwrap().1, vec![add(0)]);
        assert_eq!(out.poll_transmit(t0).unwrap().1, vec![add(1)]);
    }
}
