//! A cut link (issue 13, point 1): workers on a network-namespace host
//! (`scripts/netns-hosts.sh`) whose link to the master is taken down are declared
//! unresponsive by the master's heartbeats — calls to them fail naming them, and they
//! leave the cluster — while on their side the master's silence makes them exit. With
//! the link back up, the cluster takes new workers on that host and works again.
//!
//! Its own test binary: it takes the host's link down, which no other test may see.
//! Skips ("skipped: …") where the hosts cannot be made, except under CI.

mod common;
use common::{exited, poll};

use std::process::Command;
use std::time::Duration;

use cohort::prelude::*;
use cohort::{CallError, Heartbeat};

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

/// Takes the root-namespace end of host a's veth pair down or up.
fn link(up: bool) {
    let st = Command::new("ip")
        .args(["link", "set", "cohort-va", if up { "up" } else { "down" }])
        .status()
        .unwrap();
    assert!(st.success(), "ip link set cohort-va");
}

/// Puts host a's link back up when the test ends, however it ends.
struct Restore;
impl Drop for Restore {
    fn drop(&mut self) {
        link(true);
    }
}

#[test]
fn workers_behind_a_cut_link_are_declared_and_the_cluster_recovers() {
    let Some(hosts) = common::NetnsHosts::get() else {
        return;
    };
    let host_a = &hosts.addrs[0];
    let c = Cluster::new();
    let h = Heartbeat::new(Duration::from_millis(200), Duration::from_secs(2)).unwrap();
    c.set_heartbeat(Some(h)).unwrap();
    let ws = c
        .launch_blocking(
            AddProcs::with_manager(hosts.manager(&[format!("2*root@{host_a}")]))
                .worker_timeout(Duration::from_secs(20)),
        )
        .unwrap();
    let os: Vec<u32> = ws
        .iter()
        .map(|&w| c.remotecall_fetch_blocking(os_pid, w, ()).unwrap())
        .collect();

    let restore = Restore;
    link(false);
    // Calls made now wait for an answer that cannot come, until the heartbeats fail.
    let calls: Vec<_> = ws
        .iter()
        .map(|&w| (w, c.remotecall(os_pid, w, ())))
        .collect();
    for (w, f) in calls {
        let e = f.fetch_blocking().unwrap_err();
        assert!(
            matches!(&e, CallError::WorkerExited { pid, reason } if *pid == w && reason.contains("unresponsive")),
            "{e}"
        );
    }
    assert_eq!(c.procs(), vec![1], "both left the cluster");
    // The workers, which no longer hear their master, exit by themselves (the
    // network namespace shares this machine's process table).
    for &o in &os {
        poll("a worker cut off from its master to exit", 60, || {
            exited(o).then_some(())
        });
    }

    drop(restore);
    // The first connections after a link comes up can be reset (seen under CI): wait
    // for the host's sshd to take a login before launching there.
    poll("host a's sshd to answer once its link is back", 60, || {
        hosts.answers(host_a).then_some(())
    });
    let ws2 = c
        .launch_blocking(
            AddProcs::with_manager(hosts.manager(&[format!("1*root@{host_a}")]))
                .worker_timeout(Duration::from_secs(20)),
        )
        .unwrap();
    assert_eq!(ws2.len(), 1);
    assert!(ws2[0] > ws[1], "pids are not reused");
    let o = c.remotecall_fetch_blocking(os_pid, ws2[0], ()).unwrap();
    assert!(!os.contains(&o));
    c.rmprocs_blocking(&ws2, Some(Duration::from_secs(20)))
        .unwrap();
}
