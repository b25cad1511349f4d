//! All-to-all, lazy (the default): a worker connects to another at their first call.

use cohort::prelude::*;

#[test]
fn lazy_all_to_all_connects_a_worker_pair_at_first_call() {
    let pids = blocking::addprocs(2).unwrap();
    let (a, b) = (pids[0], pids[1]);
    let before = cohort::runtime::block_on(cohort::stats_of(a)).unwrap();
    assert_eq!(
        before.connected,
        vec![1],
        "no worker-to-worker connection yet"
    );
    let seen = blocking::remotecall_fetch(
        cohort::closure!(
            [b] || blocking::remotecall_fetch(cohort::builtins::remote_myid, *b, ()).unwrap()
        ),
        a,
        (),
    )
    .unwrap();
    assert_eq!(seen, b);
    let after = cohort::runtime::block_on(cohort::stats_of(a)).unwrap();
    assert_eq!(after.connected, vec![1, b]);
    // Every process of this one-host cluster is on the worker's host too.
    let same_host = blocking::remotecall_fetch(|| cohort::procs_of(cohort::myid()), a, ()).unwrap();
    assert_eq!(same_host, vec![1, a, b]);
    blocking::rmprocs(&pids, None).unwrap();
}
