//! Workers on two "hosts" — network namespaces with their own addresses and host names,
//! joined by veth pairs and a bridge (`scripts/netns-hosts.sh`, run by `.ci/run` as
//! root) — launched through the sshd of each. The worker-to-worker mesh crosses the
//! bridge; `procs(pid)` groups by host. Skips ("skipped: ...") where namespaces cannot
//! be made, except under CI (`CI` set, as `.ci/run` does): there that is a failure.

mod common;

use std::time::Duration;

use cohort::prelude::*;

#[cohort::remote]
fn call_peer(peer: u32) -> (u32, String) {
    let id = blocking::remotecall_fetch(cohort::builtins::remote_myid, peer, ()).unwrap();
    let host = blocking::remotecall_fetch(cohort::builtins::gethostname, peer, ()).unwrap();
    (id, host)
}

#[test]
fn workers_on_two_network_namespace_hosts() {
    let Some(hosts) = common::NetnsHosts::get() else {
        return;
    };
    let m = hosts.manager(
        &hosts
            .addrs
            .iter()
            .map(|h| format!("2*root@{h}"))
            .collect::<Vec<_>>(),
    );
    let pids = AddProcs::with_manager(m)
        .worker_timeout(Duration::from_secs(20))
        .launch_blocking()
        .unwrap();
    assert_eq!(pids.len(), 4);
    let mut by_host = std::collections::BTreeMap::<String, Vec<Pid>>::new();
    for &p in &pids {
        let h = blocking::remotecall_fetch(cohort::builtins::gethostname, p, ()).unwrap();
        by_host.entry(h).or_default().push(p);
    }
    assert_eq!(by_host.len(), 2, "two hosts: {by_host:?}");
    let master_host = blocking::remotecall_fetch(cohort::builtins::gethostname, 1, ()).unwrap();
    assert!(!by_host.contains_key(&master_host));
    for group in by_host.values() {
        for &p in group {
            assert_eq!(&cohort::procs_of(p), group, "procs({p}) groups by host");
        }
    }
    // Every worker calls every other: half of these cross the bridge.
    for &a in &pids {
        for &b in &pids {
            if a != b {
                let (id, host) = blocking::remotecall_fetch(call_peer, a, (b,)).unwrap();
                assert_eq!(id, b);
                assert!(by_host[&host].contains(&b));
            }
        }
    }
    blocking::rmprocs(&pids, Some(Duration::from_secs(20))).unwrap();
}
