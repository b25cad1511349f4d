//! Silent peers (issue 13, point 1): a worker that stops (SIGSTOP — a hung host looks
//! the same) is declared unresponsive by the heartbeats, its calls fail naming it, it
//! leaves the cluster and its pools, `pmap` retries its items elsewhere, and the
//! master kills it; a worker that is merely busy is never declared. Bounded waits
//! give up with `TimedOut` and leave the cluster working.
//!
//! Every test makes a `Cluster` of its own with short heartbeats (100 ms, 1 s), so
//! that the default cluster of the other test binaries keeps the defaults.

mod common;
use common::{exited, poll, signal};

use std::time::Duration;

use cohort::pool::{PmapOptions, WorkerPool};
use cohort::prelude::*;
use cohort::{blocking, CallError, Heartbeat, RemoteChannel};

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

#[cohort::remote]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// A cluster of `n` workers with heartbeats every 100 ms and a 1 s timeout.
fn cluster(n: usize) -> (Cluster, Vec<Pid>) {
    let c = Cluster::new();
    let h = Heartbeat::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
    c.set_heartbeat(Some(h)).unwrap();
    let ws = c.addprocs_blocking(n).unwrap();
    (c, ws)
}

fn unresponsive(e: &CallError, pid: Pid) -> bool {
    matches!(e, CallError::WorkerExited { pid: p, reason } if *p == pid && reason.contains("unresponsive"))
}

#[test]
fn a_stopped_worker_is_declared_unresponsive_and_leaves_the_cluster() {
    let (c, ws) = cluster(2);
    let (stopped, other) = (ws[0], ws[1]);
    let os = c.remotecall_fetch_blocking(os_pid, stopped, ()).unwrap();
    // A call in flight when it stops, and one made after.
    let running = c.remotecall(nap, stopped, (60_000,));
    signal("-STOP", os);
    let e = c
        .remotecall_fetch_blocking(os_pid, stopped, ())
        .unwrap_err();
    assert!(unresponsive(&e, stopped), "{e}");
    assert!(
        e.to_string().contains(&format!("worker {stopped}")),
        "the error names the worker: {e}"
    );
    let e = running.fetch_blocking().unwrap_err();
    assert!(unresponsive(&e, stopped), "{e}");
    // Out of the cluster, so `Target::Any` and pools no longer pick it…
    assert_eq!(c.workers(), vec![other]);
    for _ in 0..10 {
        let f = c.spawnat(Target::Any, os_pid);
        assert_ne!(f.fetch_blocking().unwrap(), os);
    }
    // … and its manager kills it (SIGKILL works on a stopped process).
    poll("the stopped worker to be killed", 30, || {
        exited(os).then_some(())
    });
    // Calls to it fail at once now, naming it.
    let e = c
        .remotecall_fetch_blocking(os_pid, stopped, ())
        .unwrap_err();
    assert!(
        matches!(e, CallError::WorkerExited { pid, .. } if pid == stopped),
        "{e}"
    );
    c.rmprocs_blocking(&[other], None).unwrap();
}

#[test]
fn a_busy_worker_is_not_declared_though_its_call_outlasts_the_timeout() {
    let (c, ws) = cluster(1);
    // Its runner is busy for 2.5 s; its connection still carries heartbeats.
    assert_eq!(
        c.remotecall_fetch_blocking(nap, ws[0], (2_500,)).unwrap(),
        2_500
    );
    assert_eq!(c.workers(), ws);
    c.rmprocs_blocking(&ws, None).unwrap();
}

/// The first attempt of item 0 reports where it runs and waits for `release`; every
/// other item (and a retry of item 0, which reports again) answers at once.
fn stall_first(started: RemoteChannel<u32>, release: RemoteChannel<()>, i: u64) -> u64 {
    if i == 0 {
        started.put_blocking(std::process::id()).unwrap();
        release.take_blocking().unwrap();
    }
    i * 2
}

#[test]
fn pmap_retries_the_items_of_a_worker_that_stops_elsewhere() {
    let (c, ws) = cluster(3);
    let started = c.channel_blocking::<u32>(1, 4).unwrap();
    let release = c.channel_blocking::<()>(1, 4).unwrap();
    let pool = WorkerPool::new_in(&c, ws.clone());
    let (s2, r2) = (started.clone(), release.clone());
    let driver = std::thread::spawn(move || {
        // The worker running item 0 stops while it runs it.
        let first = s2.take_blocking().unwrap();
        signal("-STOP", first);
        // Item 0's retry, on another worker, may finish.
        let second = s2.take_blocking().unwrap();
        assert_ne!(second, first);
        r2.put_blocking(()).unwrap();
        first
    });
    let f = cohort::closure!([started, release] |i: u64| stall_first(started.clone(), release.clone(), i));
    let items: Vec<u64> = (0..200).collect();
    let opts = PmapOptions::new()
        .pool(pool.clone())
        .batch_size(cohort::pool::BatchSize::Fixed(1))
        .retry_delays(vec![Duration::ZERO; 3])
        .retry_check(|e| matches!(e, CallError::WorkerExited { .. }));
    let out = c
        .install(|| blocking::pmap_with(f, items.clone(), opts))
        .unwrap();
    assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
    let stopped_os = driver.join().unwrap();
    poll("the stopped worker to be killed", 30, || {
        exited(stopped_os).then_some(())
    });
    assert_eq!(c.nworkers(), 2);
    assert_eq!(pool.workers().len(), 2, "the pool dropped it too");
    c.rmprocs_blocking(&c.workers(), None).unwrap();
}

#[test]
fn bounded_waits_give_up_and_leave_the_worker_serving() {
    let (c, ws) = cluster(1);
    let w = ws[0];
    // A remote call that takes longer than its limit.
    let r = blocking::with_timeout(
        Duration::from_millis(100),
        c.remotecall_fetch(nap, w, (2_000,)),
    );
    assert_eq!(
        r,
        Err(CallError::TimedOut {
            after: Duration::from_millis(100)
        })
    );
    // A fetch of a future not ready in time, then ready.
    let f = c.remotecall(nap, w, (300,));
    assert!(matches!(
        f.fetch_timeout_blocking(Duration::from_millis(10)),
        Err(CallError::TimedOut { .. })
    ));
    assert_eq!(
        f.fetch_timeout_blocking(Duration::from_secs(60)).unwrap(),
        300
    );
    // A take from an empty remote channel gives up; the channel is intact.
    let ch = c.channel_blocking::<u32>(w, 2).unwrap();
    assert!(matches!(
        ch.take_timeout_blocking(Duration::from_millis(50)),
        Err(CallError::TimedOut { .. })
    ));
    ch.put_blocking(9).unwrap();
    assert_eq!(
        ch.take_timeout_blocking(Duration::from_secs(60)).unwrap(),
        9
    );
    assert_eq!(c.remotecall_fetch_blocking(nap, w, (1,)).unwrap(), 1);
    c.rmprocs_blocking(&ws, None).unwrap();
}

#[test]
fn heartbeat_settings_are_fixed_once_workers_join() {
    let (c, ws) = cluster(1);
    assert!(matches!(
        c.set_heartbeat(None),
        Err(cohort::ClusterError::HeartbeatInUse)
    ));
    c.rmprocs_blocking(&ws, None).unwrap();
}
