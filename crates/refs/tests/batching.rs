//! How many messages reference tracking costs.

use std::time::{Duration, Instant};

use cohort_refs::{BatchPolicy, RefTracker};
use cohort_wire::ids::RefId;

/// Dropping K handles (to K references stored on one owner) on one process sends
/// ceil(K / max_ops) batches: fewer than one message per dropped reference.
#[test]
fn dropping_k_handles_costs_ceil_k_over_batch_size_messages() {
    for max_ops in [1usize, 3, 16, 64] {
        for k in [1u64, 2, 15, 16, 17, 100, 1000] {
            let now = Instant::now();
            let policy = BatchPolicy {
                max_ops,
                max_delay: Duration::from_millis(5),
            };
            let mut client = RefTracker::<()>::new(2, policy);
            let mut owner = RefTracker::<()>::new(3, policy);
            for i in 0..k {
                let id = RefId::new(2, i);
                client.created(id, 3).unwrap();
                owner.insert(id, (), 2).unwrap();
            }
            let mut batches = 0u64;
            let mut deliver = |ops: Vec<_>, owner: &mut RefTracker<()>| {
                assert!(ops.len() <= max_ops);
                batches += 1;
                owner.handle_ops(ops);
            };
            for i in 0..k {
                client.dropped(RefId::new(2, i), now).unwrap();
                while let Some((to, ops)) = client.poll_transmit(now) {
                    assert_eq!(to, 3);
                    deliver(ops, &mut owner);
                }
            }
            // The remainder goes when its timer fires.
            let deadline = client.poll_timeout();
            assert_eq!(deadline.is_some(), k % max_ops as u64 != 0);
            if let Some(d) = deadline {
                let (_, ops) = client.poll_transmit(d).unwrap();
                deliver(ops, &mut owner);
            }
            let expected = k.div_ceil(max_ops as u64);
            assert_eq!(batches, expected, "k={k} max_ops={max_ops}");
            let s = client.stats();
            assert_eq!(
                (s.batches_sent, s.ops_sent, s.pending_ops),
                (expected, k, 0)
            );
            assert_eq!(owner.stats().owned_values, 0);
            assert_eq!(owner.stats().freed, k);
            if max_ops > 1 && k > 1 {
                assert!(
                    expected < k,
                    "batched: fewer messages than dropped references"
                );
            }
        }
    }
}

/// An early release (`finalize`, `fetch`) does not wait for the batch to fill.
#[test]
fn release_is_sent_at_once() {
    let now = Instant::now();
    let mut c = RefTracker::<()>::new(
        2,
        BatchPolicy {
            max_ops: 100,
            max_delay: Duration::from_secs(60),
        },
    );
    c.created(RefId::new(2, 1), 3).unwrap();
    c.created(RefId::new(2, 2), 3).unwrap();
    c.dropped(RefId::new(2, 1), now).unwrap();
    assert!(c.poll_transmit(now).is_none());
    c.released(RefId::new(2, 2), now).unwrap();
    let (to, ops) = c.poll_transmit(now).unwrap();
    assert_eq!(
        (to, ops.len()),
        (3, 2),
        "the earlier drop rides along, in order"
    );
}
