//! All-to-all with `lazy(false)`: workers connect to each other when they join, not at
//! their first call.

use std::time::{Duration, Instant};

use cohort::prelude::*;

#[test]
fn eager_all_to_all_connects_every_worker_pair_at_join() {
    let pids = AddProcs::local(3).lazy(false).launch_blocking().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for &w in &pids {
        let mut expected: Vec<Pid> = vec![1];
        expected.extend(pids.iter().copied().filter(|p| *p != w));
        loop {
            let s = cohort::runtime::block_on(cohort::stats_of(w)).unwrap();
            if s.connected == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "worker {w} is connected to {:?}, expected {expected:?}",
                s.connected
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    blocking::rmprocs(&pids, None).unwrap();
}

/// `lazy(false)` returns only once every worker-to-worker connection is up at both
/// ends: right after the launch, with no waiting, each of 64 workers is connected to
/// all the others (it used to miss a few).
#[test]
fn an_eager_launch_returns_with_every_connection_up() {
    const N: usize = 64;
    let c = Cluster::new();
    let pids = c.launch_blocking(AddProcs::local(N).lazy(false)).unwrap();
    assert_eq!(pids.len(), N);
    for &w in &pids {
        let mut expected: Vec<Pid> = vec![1];
        expected.extend(pids.iter().copied().filter(|p| *p != w));
        let s = cohort::runtime::block_on(c.stats_of(w)).unwrap();
        assert_eq!(s.connected, expected, "worker {w}");
    }
    c.rmprocs_blocking(&pids, None).unwrap();
}
