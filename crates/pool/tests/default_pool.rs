//! Replacing the default pool (Julia's `default_worker_pool!`): its own binary, since
//! the default pool is process-wide and the other tests use it.

use cohort::Pid;
use cohort_pool::*;

#[test]
fn a_replaced_default_pool_serves_pmap_and_remote() {
    let w: Vec<Pid> = cohort::blocking::addprocs(2).expect("addprocs");
    assert_eq!(default_worker_pool().workers(), w);

    // A plain pool of the second worker only.
    assert!(set_default_worker_pool(WorkerPool::new([w[1]])).is_none());
    assert_eq!(default_worker_pool().workers(), vec![w[1]]);
    let ran = blocking::pmap(|_x: u32| cohort::myid(), 0..20).unwrap();
    assert!(ran.iter().all(|p| *p == w[1]), "{ran:?}");
    assert_eq!(remote(cohort::myid).call_blocking(()).unwrap(), w[1]);

    // A caching pool of the first worker: the map and remote() go through its cache.
    let caching = CachingPool::new([w[0]]);
    let replaced = set_default_worker_pool(caching.clone());
    assert!(matches!(replaced, Some(AnyPool::Workers(p)) if p.workers() == vec![w[1]]));
    assert!(matches!(default_pool(), AnyPool::Caching(_)));
    let before = [0, 1].map(|k| blocking::cache_stats_of(w[k]).unwrap().puts);
    let table: Vec<u64> = (0..10_000).collect();
    let f = cohort::closure!([table] |i: usize| (table[i] + 1, cohort::myid()));
    let v = blocking::pmap_with(f.clone(), 0..50, PmapOptions::new().batch_size(1)).unwrap();
    assert!(v
        .iter()
        .enumerate()
        .all(|(i, (x, p))| *x == i as u64 + 1 && *p == w[0]));
    let r = remote(f);
    for i in 0..5 {
        assert_eq!(r.call_blocking((i,)).unwrap(), (i as u64 + 1, w[0]));
    }
    // Sent once for the map's wrapper and once for the plain function, to w[0] only.
    let after = [0, 1].map(|k| blocking::cache_stats_of(w[k]).unwrap().puts);
    assert_eq!(after[0] - before[0], 2, "{before:?} {after:?}");
    assert_eq!(after[1], before[1]);
    assert_eq!(caching.cached(), vec![(w[0], 2)]);

    // Back to the pool following the cluster.
    assert!(matches!(
        reset_default_worker_pool(),
        Some(AnyPool::Caching(_))
    ));
    assert!(reset_default_worker_pool().is_none());
    assert_eq!(default_worker_pool().workers(), w);
    let mut ran = blocking::pmap(|_x: u32| cohort::myid(), 0..64).unwrap();
    ran.sort_unstable();
    ran.dedup();
    assert!(ran.iter().all(|p| w.contains(p)));
}
