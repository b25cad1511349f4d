//! interrupt: cancels the call running on a worker (its own binary: an interrupt
//! fails every call running on that worker, which would disturb other tests).

use std::time::{Duration, Instant};

use cohort::{CallError, ErrorKind};
use cohort_pool::*;

fn spin_until_interrupted() -> u64 {
    let t = Instant::now();
    while !cohort_pool::interrupted() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    1
}

#[test]
fn interrupt_cancels_the_running_call() {
    let w = cohort::blocking::addprocs(2).unwrap();
    let pool = WorkerPool::new([w[1]]);
    let f = pool
        .remotecall_blocking(spin_until_interrupted, ())
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    pool.interrupt().unwrap();
    let err = f.fetch_blocking().unwrap_err();
    match err {
        CallError::Remote(r) => assert_eq!(r.kind, ErrorKind::Interrupted),
        e => panic!("unexpected {e}"),
    }
    // The worker goes on.
    assert_eq!(
        pool.remotecall_fetch_blocking(cohort::myid, ()).unwrap(),
        w[1]
    );
}
