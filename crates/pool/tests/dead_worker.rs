//! A worker killed in the middle of a pmap: its items are retried on the others. Also:
//! the default pool follows workers as they come and go.

use std::time::Duration;

use cohort::Pid;
use cohort_pool::*;

fn slow_where(x: u64) -> (u64, Pid) {
    std::thread::sleep(Duration::from_millis(20));
    (x, cohort::myid())
}

#[test]
fn dead_worker_items_are_retried_and_default_pool_follows() {
    let w = cohort::blocking::addprocs(2).unwrap();
    assert_eq!(default_worker_pool().workers(), w);
    let victim = w[0];
    let os_pid = cohort::blocking::remotecall_fetch(cohort::builtins::getpid, victim, ()).unwrap();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::process::Command::new("kill")
            .args(["-9", &os_pid.to_string()])
            .status();
    });
    let v = blocking::pmap_with(
        slow_where,
        0..100,
        PmapOptions::new()
            .batch_size(BatchSize::Fixed(2))
            .retry_delays(vec![Duration::from_millis(10); 3]),
    )
    .unwrap();
    killer.join().unwrap();
    assert!(v.iter().enumerate().all(|(i, r)| r.0 == i as u64));
    // The dead worker leaves the default pool; a new worker joins it.
    assert_eq!(
        blocking::timedwait(
            || default_worker_pool().workers() == vec![w[1]],
            Duration::from_secs(10),
            Duration::from_millis(20)
        ),
        TimedWait::Ok
    );
    let added = cohort::blocking::addprocs(1).unwrap();
    assert_eq!(default_worker_pool().workers(), vec![w[1], added[0]]);
    let v = blocking::pmap_with(
        slow_where,
        0..20,
        PmapOptions::new().batch_size(BatchSize::Fixed(1)),
    )
    .unwrap();
    assert!(v.iter().any(|r| r.1 == added[0]));
}
