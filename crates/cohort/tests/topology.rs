//! Master-worker topology: workers may not call each other.

use cohort::prelude::*;
use cohort::{CallError, Topology};

#[cohort::remote]
fn call_peer(peer: u32) -> String {
    match blocking::remotecall_fetch(cohort::builtins::remote_myid, peer, ()) {
        Ok(p) => format!("reached {p}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn master_worker_topology_forbids_worker_to_worker_calls() {
    let pids = AddProcs::local(2)
        .topology(Topology::MasterWorker)
        .launch_blocking()
        .unwrap();
    let msg = blocking::remotecall_fetch(call_peer, pids[0], (pids[1],)).unwrap();
    let expected = CallError::TopologyForbids {
        from: pids[0],
        to: pids[1],
    }
    .to_string();
    assert_eq!(msg, expected);
    // Master to worker is fine.
    assert_eq!(
        blocking::remotecall_fetch(cohort::builtins::remote_myid, pids[1], ()).unwrap(),
        pids[1]
    );
}
