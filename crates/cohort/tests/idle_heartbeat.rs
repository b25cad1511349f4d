//! An idle cluster keeps its workers: heartbeats flow while nothing else does. (A
//! worker whose join produced no output once never armed its timer, sent no
//! heartbeats, and was declared by its master after the timeout.)
use cohort::prelude::*;
use cohort::Heartbeat;
use std::time::Duration;

#[cohort::remote]
fn one() -> u32 {
    1
}

#[test]
fn an_idle_cluster_keeps_its_workers_for_many_heartbeat_timeouts() {
    let c = Cluster::new();
    let h = Heartbeat::new(Duration::from_millis(100), Duration::from_millis(500)).unwrap();
    c.set_heartbeat(Some(h)).unwrap();
    let ws = c.addprocs_blocking(3).unwrap();
    for _ in 0..3 {
        // Idle for many timeouts: only heartbeats cross.
        std::thread::sleep(Duration::from_secs(3));
        for &w in &ws {
            assert_eq!(
                c.remotecall_fetch_blocking(one, w, ()).unwrap(),
                1,
                "worker {w}"
            );
        }
    }
    assert_eq!(c.workers(), ws);
}
