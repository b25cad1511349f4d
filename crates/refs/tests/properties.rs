//! Property tests of the owner table and the batching queues.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cohort_refs::{BatchPolicy, Outbox, OwnerTable, RefOp};
use cohort_wire::ids::{Pid, RefId};
use proptest::prelude::*;

const R: RefId = RefId::new(1, 1);

/// Per client, a list of holding periods, each with its number of arrivals.
fn clients() -> impl Strategy<Value = Vec<Vec<u64>>> {
    prop::collection::vec(prop::collection::vec(1u64..4, 0..4), 1..6)
}

/// Every op each client's holding periods imply: `k` adds and one `DelClient{count: k}`
/// per period; client pid 1 is the creator, whose first period counts the insert too.
/// Returns the ops and the pid whose insert goes with them.
fn balanced_ops(periods: &[Vec<u64>]) -> Vec<RefOp> {
    let mut ops = Vec::new();
    for (i, ps) in periods.iter().enumerate() {
        let client = i as Pid + 1;
        for (j, &k) in ps.iter().enumerate() {
            let creator_share = u64::from(client == 1 && j == 0);
            for _ in 0..k {
                ops.push(RefOp::AddClient { id: R, client });
            }
            ops.push(RefOp::DelClient {
                id: R,
                client,
                count: k + creator_share,
            });
        }
        if client == 1 && ps.is_empty() {
            // The creator still has to let go of its own registration.
            ops.push(RefOp::DelClient {
                id: R,
                client,
                count: 1,
            });
        }
    }
    ops
}

proptest! {
    /// Whatever the interleaving — even ones the network cannot produce — balanced adds
    /// and deletes leave the table empty with the value freed exactly once.
    #[test]
    fn any_interleaving_of_balanced_ops_ends_empty(
        periods in clients(),
        order in prop::collection::vec(any::<u64>(), 64),
        insert_at in any::<prop::sample::Index>(),
    ) {
        let mut ops = balanced_ops(&periods);
        // A deterministic shuffle driven by `order`.
        for i in (1..ops.len()).rev() {
            let j = (order[i % order.len()] % (i as u64 + 1)) as usize;
            ops.swap(i, j);
        }
        let at = insert_at.index(ops.len() + 1);
        let mut t = OwnerTable::new();
        let mut freed = 0;
        for (i, op) in ops.iter().enumerate() {
            if i == at {
                t.insert(R, "v", 1).unwrap();
            }
            t.apply(*op);
            while t.poll_freed().is_some() { freed += 1; }
        }
        if at == ops.len() {
            t.insert(R, "v", 1).unwrap();
        }
        while t.poll_freed().is_some() { freed += 1; }
        prop_assert_eq!(freed, 1);
        let s = t.stats();
        prop_assert_eq!((s.values, s.entries), (0, 0));
    }

    /// A value is never freed while its creator, which has not let go, is counted.
    #[test]
    fn the_creator_keeps_the_value_until_it_lets_go(periods in clients()) {
        let ops: Vec<RefOp> = balanced_ops(&periods)
            .into_iter()
            .filter(|op| op.client() != 1)
            .collect();
        let mut t = OwnerTable::new();
        t.insert(R, (), 1).unwrap();
        t.apply_batch(ops);
        prop_assert!(t.poll_freed().is_none());
        prop_assert_eq!(t.stats().values, 1);
    }

    /// Batches keep per-destination FIFO order, never exceed `max_ops`, and lose nothing.
    #[test]
    fn outbox_is_fifo_bounded_and_lossless(
        max_ops in 1usize..6,
        delay_us in 0u64..50,
        script in prop::collection::vec((0u8..3, 1u32..4, 0u64..20), 0..200),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut out = Outbox::new(BatchPolicy { max_ops, max_delay: Duration::from_micros(delay_us) });
        let mut pushed: BTreeMap<Pid, Vec<RefOp>> = BTreeMap::new();
        let mut got: BTreeMap<Pid, Vec<RefOp>> = BTreeMap::new();
        for (n, (kind, dest, dt)) in script.into_iter().enumerate() {
            now += Duration::from_micros(dt);
            match kind {
                0 | 1 => {
                    let op = RefOp::AddClient { id: RefId::new(1, n as u64), client: 7 };
                    out.push(dest, op, now);
                    pushed.entry(dest).or_default().push(op);
                }
                _ => {
                    while let Some((d, b)) = out.poll_transmit(now) {
                        prop_assert!(!b.is_empty() && b.len() <= max_ops);
                        got.entry(d).or_default().extend(b);
                    }
                    if let Some(deadline) = out.poll_timeout() {
                        prop_assert!(deadline > now, "a due queue was left behind");
                    }
                }
            }
        }
        for (d, b) in out.flush_all() {
            got.entry(d).or_default().extend(b);
        }
        prop_assert_eq!(out.pending(), 0);
        prop_assert_eq!(got, pushed);
    }
}
