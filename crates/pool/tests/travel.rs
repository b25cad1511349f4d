//! Pools passed to workers: a proxy of the pool on its owner, whose leases are held
//! there and come back when dropped or when their holder's process dies; typed errors
//! for a pool its owner no longer has, or an owner that died; a worker's default pool
//! (a proxy of the master's, until replaced there). The tests share one cluster and
//! take turns (they count free workers).

use std::sync::{Mutex, MutexGuard, OnceLock};

use cohort::Pid;
use cohort_pool::*;

mod common;
use common::within;

fn cluster() -> (Vec<Pid>, MutexGuard<'static, ()>) {
    static TURN: Mutex<()> = Mutex::new(());
    static W: OnceLock<Vec<Pid>> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let w = W
        .get_or_init(|| cohort::blocking::addprocs(2).expect("addprocs"))
        .clone();
    (w, turn)
}

/// Takes a worker of `pool`, waiting (for its return) at most two minutes.
fn take_within(pool: &WorkerPool) -> Lease {
    let pool = pool.clone();
    within("a take", move || pool.take_blocking().expect("take"))
}

/// Leases and pools a worker keeps between calls.
static HELD: Mutex<Vec<Lease>> = Mutex::new(Vec::new());
static KEPT: Mutex<Vec<WorkerPool>> = Mutex::new(Vec::new());

/// Takes a worker of `pool` and keeps the lease; where it ran, and the worker.
fn hold(pool: WorkerPool) -> Result<Pid, String> {
    let lease = pool.take_blocking().map_err(|e| e.to_string())?;
    let pid = lease.pid();
    HELD.lock().unwrap().push(lease);
    Ok(pid)
}

fn release_held() -> usize {
    std::mem::take(&mut *HELD.lock().unwrap()).len()
}

fn keep(pool: WorkerPool) {
    KEPT.lock().unwrap().push(pool);
}

/// Takes from the pools kept here: whether each failed with `PoolGone` naming the
/// master, and the length each reports.
fn take_kept() -> Vec<(bool, usize)> {
    std::mem::take(&mut *KEPT.lock().unwrap())
        .iter()
        .map(|p| {
            let gone = matches!(p.take_blocking(), Err(PoolError::PoolGone { owner: 1, .. }));
            (gone, p.len())
        })
        .collect()
}

#[test]
fn a_pool_passed_to_a_worker_lends_its_owners_workers() {
    let (w, _turn) = cluster();
    let pool = WorkerPool::new([w[1]]);
    let seen = cohort::blocking::remotecall_fetch(
        |p: WorkerPool| {
            let ran = p.remotecall_fetch_blocking(cohort::myid, ()).unwrap();
            (p.is_proxy(), p.owner(), p.workers(), p.len(), ran)
        },
        w[0],
        (pool.clone(),),
    )
    .unwrap();
    assert_eq!(seen, (true, 1, vec![w[1]], 1, w[1]));

    // A lease taken there is held here, until dropped there.
    assert_eq!(
        cohort::blocking::remotecall_fetch(hold, w[0], (pool.clone(),)).unwrap(),
        Ok(w[1])
    );
    assert!(!pool.isready());
    assert_eq!(
        cohort::blocking::remotecall_fetch(release_held, w[0], ()).unwrap(),
        1
    );
    assert_eq!(take_within(&pool).pid(), w[1]);

    // With no worker free on the owner, a proxy lends its own process at once.
    let lease = pool.take_blocking().unwrap();
    let there = cohort::blocking::remotecall_fetch(
        |p: WorkerPool| {
            let took = p
                .take_blocking()
                .map(|l| l.pid())
                .map_err(|e| e.to_string());
            let ran = p.remotecall_fetch_blocking(cohort::myid, ()).unwrap();
            (p.isready(), took, ran)
        },
        w[0],
        (pool.clone(),),
    )
    .unwrap();
    assert_eq!(there, (false, Ok(w[0]), w[0]));
    drop(lease);

    // Detached there and put back there (through another proxy of the same pool).
    let pid = cohort::blocking::remotecall_fetch(
        |p: WorkerPool| {
            p.take_blocking()
                .map(Lease::detach)
                .map_err(|e| e.to_string())
        },
        w[0],
        (pool.clone(),),
    )
    .unwrap();
    assert_eq!(pid, Ok(w[1]));
    assert!(!pool.isready());
    cohort::blocking::remotecall_fetch(
        |p: WorkerPool, pid: Pid| p.put(pid),
        w[0],
        (pool.clone(), w[1]),
    )
    .unwrap();
    assert_eq!(take_within(&pool).pid(), w[1]);

    // Pushed there, a member here.
    cohort::blocking::remotecall_fetch(
        |p: WorkerPool, pid: Pid| p.push(pid),
        w[0],
        (pool.clone(), w[0]),
    )
    .unwrap();
    assert_eq!(pool.workers(), vec![w[0], w[1]]);

    // Sent back to its owner, it is the pool itself.
    let back: WorkerPool =
        cohort::blocking::remotecall_fetch(|p: WorkerPool| p, w[0], (pool.clone(),)).unwrap();
    assert!(!back.is_proxy());
    let a = back.take_blocking().unwrap();
    let b = back.take_blocking().unwrap();
    assert!(!pool.isready());
    drop((a, b));
    assert!(pool.isready());
}

#[test]
fn a_lease_held_by_a_killed_process_goes_back_to_its_pool() {
    let (w, _turn) = cluster();
    let pool = WorkerPool::new([w[1]]);
    let victim = cohort::blocking::addprocs(1).expect("addprocs")[0];
    // A pool the victim owns, seen here as a proxy.
    let theirs: WorkerPool = cohort::blocking::remotecall_fetch(
        || {
            let p = WorkerPool::new([cohort::myid()]);
            keep(p.clone());
            p
        },
        victim,
        (),
    )
    .unwrap();
    assert!(theirs.is_proxy());
    assert_eq!(theirs.owner(), victim);
    assert_eq!(theirs.take_blocking().unwrap().pid(), victim);

    assert_eq!(
        cohort::blocking::remotecall_fetch(hold, victim, (pool.clone(),)).unwrap(),
        Ok(w[1])
    );
    assert!(!pool.isready());
    let os_pid = cohort::blocking::remotecall_fetch(cohort::builtins::getpid, victim, ()).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &os_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The holder's exit gives the worker back: this take waits for just that.
    assert_eq!(take_within(&pool).pid(), w[1]);
    // A proxy of a pool whose owner died fails, typed, at once.
    let r = within("a take from a dead owner's pool", move || {
        theirs.take_blocking()
    });
    assert!(matches!(r, Err(PoolError::Call(_))), "{r:?}");
}

#[test]
fn a_pool_its_owner_dropped_is_gone_for_its_proxies() {
    let (w, _turn) = cluster();
    let pool = WorkerPool::new([w[1]]);
    cohort::blocking::remotecall_fetch(keep, w[0], (pool.clone(),)).unwrap();
    drop(pool);
    assert_eq!(
        cohort::blocking::remotecall_fetch(take_kept, w[0], ()).unwrap(),
        vec![(true, 0)]
    );
}

#[test]
fn a_workers_default_pool_is_the_masters_until_replaced_there() {
    let (w, _turn) = cluster();
    let seen = cohort::blocking::remotecall_fetch(
        || {
            let p = default_worker_pool();
            (p.is_proxy(), p.owner(), p.workers())
        },
        w[0],
        (),
    )
    .unwrap();
    assert_eq!(seen, (true, 1, default_worker_pool().workers()));

    // Replaced on the worker: its maps and remote() use that pool.
    let (ran, remote_ran, proxy_again) = cohort::blocking::remotecall_fetch(
        || {
            assert!(set_default_worker_pool(WorkerPool::new([cohort::myid()])).is_none());
            let ran = blocking::pmap(|_: u8| cohort::myid(), 0..16).unwrap();
            let r = remote(cohort::myid).call_blocking(()).unwrap();
            assert!(reset_default_worker_pool().is_some());
            (ran, r, default_worker_pool().is_proxy())
        },
        w[0],
        (),
    )
    .unwrap();
    assert!(ran.iter().all(|p| *p == w[0]), "{ran:?}");
    assert_eq!(remote_ran, w[0]);
    assert!(proxy_again);
}
