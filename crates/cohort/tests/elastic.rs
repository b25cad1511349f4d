//! Elastic workers (issue 14, point 3; Julia's `ElasticManager`): workers started by
//! hand with `--cohort-worker --join HOST:PORT` join a running cluster through its
//! join listener, get the next pids, serve calls (also from the other workers), take
//! work from a `pmap` already running, and leave as any worker does. Wrong cookies and
//! plaintext joiners of a TLS cluster are refused without disturbing it; a flood of
//! joins all succeed.

mod common;
use common::{exited, poll};

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cohort::pool::{blocking as pool_blocking, BatchSize, PmapOptions, WorkerPool};
use cohort::prelude::*;
use cohort::{CallError, ElasticListener, RemoteChannel};

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

#[cohort::remote]
fn ask_os_pid_of(other: Pid) -> u32 {
    cohort::blocking::remotecall_fetch(os_pid, other, ()).unwrap()
}

/// Starts this test binary as a worker joining `addr`, the cookie on its stdin, with
/// `extra` worker arguments.
fn join(addr: SocketAddr, cookie: &str, extra: &[&str]) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--cohort-worker", "--join", &addr.to_string()])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{cookie}").unwrap();
    child
}

fn listen(c: &Cluster) -> ElasticListener {
    c.listen_for_workers(None).unwrap()
}

/// Waits until `c` has `n` workers, and returns them.
fn wait_for_workers(c: &Cluster, n: usize) -> Vec<Pid> {
    poll(&format!("{n} workers"), 120, || {
        let w = c.workers();
        (w.len() == n && w != [1]).then_some(w)
    })
}

/// Waits for `child` to exit, and returns its status and stderr.
fn wait_exit(mut child: Child) -> (std::process::ExitStatus, String) {
    let status = poll("a worker process to exit", 60, || child.try_wait().unwrap());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status, err)
}

#[test]
fn a_worker_that_joins_gets_the_next_pid_and_serves_calls() {
    let c = Cluster::new();
    let launched = c.launch_blocking(AddProcs::local(1)).unwrap();
    let joins = listen(&c);
    let child = join(joins.addr(), c.cookie().expose(), &[]);
    let all = wait_for_workers(&c, 2);
    let joined = *all.iter().find(|p| !launched.contains(p)).unwrap();
    assert!(joined > launched[0], "the next pid");
    assert_eq!(
        c.remotecall_fetch_blocking(os_pid, joined, ()).unwrap(),
        child.id()
    );
    // The launched worker reaches it at the address it reported when it joined.
    assert_eq!(
        c.remotecall_fetch_blocking(ask_os_pid_of, launched[0], (joined,))
            .unwrap(),
        child.id()
    );
    c.rmprocs_blocking(&[joined], Some(Duration::from_secs(20)))
        .unwrap();
    let (status, err) = wait_exit(child);
    assert!(status.success(), "{status}: {err}");
    assert_eq!(c.workers(), launched);
    c.rmprocs_blocking(&launched, None).unwrap();
}

/// Items run on the first worker wait until an item has run on another one, which
/// can only be a worker that joined while the map was running.
/// (`started` hears from the first worker's first item.)
#[cohort::remote]
fn item(i: u32, first: Pid, started: RemoteChannel<u32>, gate: RemoteChannel<Pid>) -> Pid {
    let me = cohort::myid();
    if me == first {
        let _ = started.put_blocking(i);
        gate.fetch_timeout_blocking(Duration::from_secs(120))
            .expect("a joined worker took an item");
    } else if gate.isready_blocking() == Ok(false) {
        let _ = gate.put_blocking(me);
    }
    me
}

#[test]
fn a_running_pmap_hands_work_to_a_worker_that_joins() {
    let c = Cluster::new();
    let first = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    let gate: RemoteChannel<Pid> = c.channel_blocking(1, 16).unwrap();
    let started: RemoteChannel<u32> = c.channel_blocking(1, 32).unwrap();
    let joins = listen(&c);
    let opts = PmapOptions::new()
        .pool(WorkerPool::following(&c))
        .batch_size(BatchSize::Fixed(1));
    let items: Vec<_> = (0..20)
        .map(|i| (i, first, started.clone(), gate.clone()))
        .collect();
    let c2 = c.clone();
    let map = std::thread::spawn(move || {
        c2.install(|| pool_blocking::pmap_args(item, items, opts))
            .unwrap()
    });
    // The map is under way (the first worker holds an item) before anyone joins.
    started.take_blocking().unwrap();
    let child = join(joins.addr(), c.cookie().expose(), &[]);
    let ran_on = map.join().unwrap();
    let joined = *c.workers().iter().find(|&&p| p != first).unwrap();
    assert!(ran_on.contains(&joined), "{ran_on:?}");
    assert!(ran_on.iter().all(|p| *p == first || *p == joined));
    c.rmprocs_blocking(&c.workers(), Some(Duration::from_secs(20)))
        .unwrap();
    let (status, err) = wait_exit(child);
    assert!(status.success(), "{status}: {err}");
}

#[test]
fn a_flood_of_joins_all_succeed() {
    const N: usize = 64;
    let c = Cluster::new();
    let joins = listen(&c);
    let children: Vec<Child> = (0..N)
        .map(|_| join(joins.addr(), c.cookie().expose(), &[]))
        .collect();
    let pids = wait_for_workers(&c, N);
    // (The listener counts a join just after the worker is in the cluster.)
    poll("every join to be counted", 60, || {
        (joins.joined() == N as u64).then_some(())
    });
    assert_eq!(joins.refused(), 0);
    let mut os: Vec<u32> = pids
        .iter()
        .map(|&p| c.remotecall_fetch_blocking(os_pid, p, ()).unwrap())
        .collect();
    os.sort_unstable();
    let mut started: Vec<u32> = children.iter().map(Child::id).collect();
    started.sort_unstable();
    assert_eq!(os, started, "every process joined once");
    c.rmprocs_blocking(&pids, Some(Duration::from_secs(60)))
        .unwrap();
    for child in children {
        let (status, err) = wait_exit(child);
        assert!(status.success(), "{status}: {err}");
    }
}

#[test]
fn a_join_with_a_wrong_cookie_is_refused_and_the_cluster_goes_on() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap();
    let joins = listen(&c);
    let (status, err) = wait_exit(join(joins.addr(), "not-the-cookie", &[]));
    assert!(!status.success());
    assert!(err.contains("cannot join the master"), "{err}");
    assert!(err.contains("handshake"), "{err}");
    poll("the refusal to be counted", 60, || {
        (joins.refused() == 1).then_some(())
    });
    assert_eq!(c.workers(), w, "nothing joined");
    assert!(c.remotecall_fetch_blocking(os_pid, w[0], ()).is_ok());
    // The listener goes on taking joins with the right cookie.
    let child = join(joins.addr(), c.cookie().expose(), &[]);
    let all = wait_for_workers(&c, 2);
    c.rmprocs_blocking(&all, Some(Duration::from_secs(20)))
        .unwrap();
    assert!(wait_exit(child).0.success());
}

#[test]
fn a_joined_worker_that_dies_leaves_the_cluster_and_fails_its_calls() {
    let c = Cluster::new();
    let joins = listen(&c);
    let child = join(joins.addr(), c.cookie().expose(), &[]);
    let w = wait_for_workers(&c, 1)[0];
    let os = child.id();
    common::signal("-KILL", os);
    poll("the killed worker to exit", 60, || exited(os).then_some(()));
    let e = poll("a call to the dead worker to fail", 60, || {
        c.remotecall_fetch_blocking(os_pid, w, ()).err()
    });
    assert!(
        matches!(&e, CallError::WorkerExited { pid, .. } | CallError::NoSuchProcess { pid } if *pid == w),
        "{e}"
    );
    poll("the dead worker to leave", 60, || {
        (c.workers() == [1]).then_some(())
    });
    drop(wait_exit(child));
}

#[test]
fn a_tls_cluster_takes_joiners_with_its_bundle_and_refuses_plaintext_ones() {
    let c = Cluster::new();
    let w = c
        .launch_blocking(AddProcs::local(1).tls(cohort::TlsMode::Generate))
        .unwrap();
    let joins = listen(&c);
    let (status, err) = wait_exit(join(joins.addr(), c.cookie().expose(), &[]));
    assert!(!status.success(), "a plaintext joiner: {err}");
    poll("the plaintext joiner to be refused", 60, || {
        (joins.refused() == 1).then_some(())
    });
    let bundle = std::env::temp_dir().join(format!("cohort-elastic-bundle-{}", std::process::id()));
    std::fs::write(&bundle, c.tls().unwrap().bundle()).unwrap();
    let child = join(
        joins.addr(),
        c.cookie().expose(),
        &["--tls-bundle", bundle.to_str().unwrap()],
    );
    let all = wait_for_workers(&c, 2);
    let joined = *all.iter().find(|p| !w.contains(p)).unwrap();
    assert_eq!(
        c.remotecall_fetch_blocking(os_pid, joined, ()).unwrap(),
        child.id()
    );
    c.rmprocs_blocking(&all, Some(Duration::from_secs(20)))
        .unwrap();
    assert!(wait_exit(child).0.success());
    std::fs::remove_file(bundle).unwrap();
}
