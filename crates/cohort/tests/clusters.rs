//! Several clusters in one master process (`Cluster::new`), each with its own real
//! worker processes: they do not see each other's workers, references or counts, and
//! handles remember the cluster they belong to. This test binary is its own worker
//! executable.

use cohort::prelude::*;
use cohort::CallError;
use cohort::Future;

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

#[cohort::remote]
fn fetch_on_worker(f: Future<u64>) -> u64 {
    f.fetch_blocking().unwrap() + 1
}

#[cohort::remote]
fn count_procs() -> usize {
    nprocs()
}

#[test]
fn two_clusters_have_their_own_workers() {
    let a = Cluster::new();
    let b = Cluster::new();
    let wa = a.addprocs_blocking(2).unwrap();
    let wb = b.addprocs_blocking(1).unwrap();
    // Pids are per cluster: both start at 2.
    assert_eq!(wa, vec![2, 3]);
    assert_eq!(wb, vec![2]);
    assert_eq!(a.nworkers(), 2);
    assert_eq!(b.nworkers(), 1);
    // The default cluster of this process has no workers.
    assert_eq!(Cluster::global().nprocs(), 1);
    // Pid 2 is another OS process in each.
    let pa = a.remotecall_fetch_blocking(os_pid, 2, ()).unwrap();
    let pb = b.remotecall_fetch_blocking(os_pid, 2, ()).unwrap();
    assert_ne!(pa, pb);
    assert_ne!(pa, std::process::id());
    // Each worker sees its own cluster's membership.
    assert_eq!(a.remotecall_fetch_blocking(count_procs, 2, ()).unwrap(), 3);
    assert_eq!(b.remotecall_fetch_blocking(count_procs, 2, ()).unwrap(), 2);
    // Removing a's workers leaves b's alone.
    a.rmprocs_blocking(&wa, None).unwrap();
    assert_eq!(a.nprocs(), 1);
    assert_eq!(b.remotecall_fetch_blocking(os_pid, 2, ()).unwrap(), pb);
    b.rmprocs_blocking(&wb, None).unwrap();
}

#[test]
fn handles_travel_within_their_cluster_only() {
    let a = Cluster::new();
    let b = Cluster::new();
    let wa = a.addprocs_blocking(1).unwrap();
    let wb = b.addprocs_blocking(1).unwrap();
    let f = a.remotecall(|| 41u64, wa[0], ());
    assert_eq!(f.cluster(), a);
    // Within its cluster, a future travels as a working handle.
    assert_eq!(
        a.remotecall_fetch_blocking(fetch_on_worker, wa[0], (f.clone(),))
            .unwrap(),
        42
    );
    // Sent into another cluster, it is refused with a clear error, not misrouted.
    let g = a.remotecall(|| 1u64, wa[0], ());
    match b.remotecall_fetch_blocking(fetch_on_worker, wb[0], (g,)) {
        Err(CallError::Serialization(m)) => assert!(m.contains("another cluster"), "{m}"),
        other => panic!("expected a serialization error, got {other:?}"),
    }
    assert_eq!(f.fetch_blocking().unwrap(), 41);
    drop(f);
    a.rmprocs_blocking(&wa, None).unwrap();
    b.rmprocs_blocking(&wb, None).unwrap();
}

#[test]
fn install_points_the_free_functions_at_a_cluster() {
    let c = Cluster::new();
    let w = c.addprocs_blocking(1).unwrap();
    let (n, f) = c.install(|| (nworkers(), remotecall(count_procs, w[0], ())));
    assert_eq!(n, 1);
    assert_eq!(f.cluster(), c);
    assert_eq!(f.fetch_blocking().unwrap(), 2);
    // A local call of the cluster runs with that cluster current.
    assert_eq!(c.remotecall_fetch_blocking(count_procs, 1, ()).unwrap(), 2);
    // Outside, the default cluster again.
    assert_eq!(nprocs(), 1);
    // A pool made inside follows that cluster.
    let pool = c.install(cohort::default_worker_pool);
    assert_eq!(pool.cluster(), &c);
    assert_eq!(pool.workers(), w);
    c.rmprocs_blocking(&w, None).unwrap();
}

#[test]
fn clusters_count_their_references_apart() {
    let a = Cluster::new();
    let w = a.addprocs_blocking(1).unwrap();
    let held: Vec<Future<u64>> = (0..10)
        .map(|i| a.remotecall(|x: u64| x, w[0], (i,)))
        .collect();
    for f in &held {
        f.wait_blocking().unwrap();
    }
    assert_eq!(a.stats().held_refs, 10);
    // Another cluster of this process holds none of them.
    assert_eq!(Cluster::new().stats().held_refs, 0);
    drop(held);
    a.rmprocs_blocking(&w, None).unwrap();
}

#[test]
fn async_functions_run_on_another_executor() {
    // `futures`' executor is not tokio: cohort hands what needs tokio (timers,
    // blocking calls, spawned tasks) to its own runtime.
    let c = Cluster::new();
    let w = c.addprocs_blocking(1).unwrap();
    let p = w[0];
    futures::executor::block_on(async {
        assert_eq!(c.remotecall_fetch(|| 3u8, p, ()).await.unwrap(), 3);
        assert_eq!(c.remotecall_fetch(|| 4u8, 1, ()).await.unwrap(), 4);
        let f = c.remotecall_wait(|| 5u8, p, ()).await.unwrap();
        assert_eq!(f.fetch().await.unwrap(), 5);
        let ch = c.channel::<u8>(p, 2).await.unwrap();
        ch.put(6).await.unwrap();
        assert_eq!(ch.take().await.unwrap(), 6);
        let pool = cohort::WorkerPool::new_in(&c, w.clone());
        assert_eq!(pool.remotecall_fetch(|| 7u8, ()).await.unwrap(), 7);
        let squares = cohort::pmap_with(
            |x: u64| x * x,
            0..10u64,
            cohort::PmapOptions::new().pool(pool.clone()),
        );
        assert_eq!(
            squares.await.unwrap(),
            (0..10u64).map(|x| x * x).collect::<Vec<_>>()
        );
        let r = cohort::pool::timedwait(
            || false,
            std::time::Duration::from_millis(5),
            std::time::Duration::from_millis(1),
        )
        .await;
        assert_eq!(r, cohort::pool::TimedWait::TimedOut);
        c.rmprocs(&w, Some(std::time::Duration::from_secs(30)))
            .await
            .unwrap();
    });
}

#[test]
fn dropping_the_last_handle_ends_its_workers() {
    let c = Cluster::new();
    let w = c.addprocs_blocking(1).unwrap();
    let os = c.remotecall_fetch_blocking(os_pid, w[0], ()).unwrap();
    drop(c);
    // The worker sees its master's connection close and exits (waited for, with a
    // generous limit: nothing here depends on how long it takes).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let gone = || {
        std::fs::read_to_string(format!("/proc/{os}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    };
    while !gone() {
        assert!(
            std::time::Instant::now() < deadline,
            "worker {os} of a dropped cluster still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
