//! A `pmap` inside a `pmap`'s item, on the workers, with the default pool: a worker's
//! default pool is a proxy of the master's (Julia's semantics), and a proxy's take
//! lends its own process when the master has no free worker, so the nested map
//! cannot wait for a worker the outer map holds. Its own binary: it grows the cluster.

use cohort::Pid;
use cohort_pool::*;

mod common;
use common::within;

/// What an outer item reports: its item, where it ran, its default pool as it saw
/// it, and where its inner items ran.
type Report = (u64, Pid, bool, Vec<Pid>, Vec<Pid>);

/// An outer item: an inner map over the default pool, from inside a remote call.
fn inner_map(x: u64) -> Report {
    let pool = default_worker_pool();
    let v = blocking::pmap_with(
        |y: u64| (y, cohort::myid()),
        0..12,
        PmapOptions::new().batch_size(1),
    )
    .unwrap();
    assert!(v.iter().enumerate().all(|(i, r)| r.0 == i as u64), "{v:?}");
    (
        x,
        cohort::myid(),
        pool.is_proxy(),
        pool.workers(),
        v.into_iter().map(|r| r.1).collect(),
    )
}

/// An outer map over every worker whose items each run an inner map on the default
/// pool: it finishes, and every inner item ran on a worker.
fn nested_maps_finish(w: &[Pid]) {
    let n = 3 * w.len() as u64;
    let reports = within("the nested map", move || {
        blocking::pmap_with(inner_map, 0..n, PmapOptions::new().batch_size(1)).unwrap()
    });
    assert_eq!(reports.len() as u64, n);
    for (i, (x, outer, proxy, members, inner)) in reports.iter().enumerate() {
        assert_eq!(*x, i as u64);
        assert!(w.contains(outer), "{outer} not in {w:?}");
        assert!(*proxy, "a worker's default pool is a proxy of the master's");
        assert_eq!(members, w);
        assert_eq!(inner.len(), 12);
        assert!(
            inner.iter().all(|p| w.contains(p)),
            "{inner:?} not in {w:?}"
        );
    }
}

/// Waits until every worker of the master's default pool is free again (the gives of
/// the workers' leases travel on their own), by taking them all.
fn all_free(w: &[Pid]) {
    let n = w.len();
    let leases = within("taking every worker back", move || {
        let pool = default_worker_pool();
        (0..n)
            .map(|_| pool.take_blocking().unwrap())
            .collect::<Vec<_>>()
    });
    let mut got: Vec<Pid> = leases.iter().map(Lease::pid).collect();
    got.sort_unstable();
    assert_eq!(got, w);
}

/// One call on the default pool (holding one worker) runs an inner map and a
/// `remote()` call there: with the other workers free, they run on those.
fn inner_work_spreads(w: &[Pid]) {
    all_free(w);
    let (outer, inner, remote_ran) = within("the spreading map", || {
        remote(|| {
            let v = blocking::pmap_with(
                |_: u32| cohort::myid(),
                0..24,
                PmapOptions::new().batch_size(1),
            )
            .unwrap();
            (
                cohort::myid(),
                v,
                remote(cohort::myid).call_blocking(()).unwrap(),
            )
        })
        .call_blocking(())
        .unwrap()
    });
    assert!(w.contains(&outer));
    assert!(inner.iter().all(|p| w.contains(p)), "{inner:?}");
    assert!(
        inner.iter().any(|p| *p != outer),
        "the inner items all ran on {outer}, with other workers free: {inner:?}"
    );
    assert!(
        w.contains(&remote_ran) && remote_ran != outer,
        "{remote_ran}"
    );
}

#[test]
fn nested_pmaps_on_workers_finish_and_use_the_clusters_workers() {
    let mut w: Vec<Pid> = cohort::blocking::addprocs(2).expect("addprocs");
    nested_maps_finish(&w);
    inner_work_spreads(&w);
    w.extend(cohort::blocking::addprocs(1).expect("addprocs"));
    assert_eq!(default_worker_pool().workers(), w);
    nested_maps_finish(&w);
    inner_work_spreads(&w);
}
