//! Same-host sockets (issue 10, point 2): workers on this host are reached over an
//! abstract Unix-domain socket rather than loopback TCP, by the master and by each
//! other; `COHORT_SAME_HOST=0` keeps a process on TCP; payloads of every size class
//! cross either way intact.

use cohort::prelude::*;
use cohort::wire::envelope::SPLIT_PAYLOAD_MIN;
use cohort::{Bulk, Cluster};

/// Where this process's connection to `pid` goes (`unix:@…` or `host:port`).
fn address_of(pid: Pid) -> String {
    cohort::observe::peers(&Cluster::current())
        .into_iter()
        .find(|p| p.pid == pid)
        .map(|p| p.address)
        .unwrap_or_default()
}

/// Run on a worker: calls `other` (opening the lazy connection to it), then says
/// where that connection goes.
fn address_after_calling(other: Pid) -> String {
    let c = Cluster::global();
    let _ = c.remotecall_fetch_blocking(os_pid, other, ()).unwrap();
    address_of(other)
}

/// Bytes with a pattern that shows a lost, doubled or moved byte: a period of 4,099
/// bytes (a prime, so that no power-of-two shift lines it up again), made by copying
/// (fast in a debug build too).
fn pattern(n: usize, seed: u8) -> Bulk<u8> {
    let period: Vec<u8> = (0..4099u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect();
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let take = period.len().min(n - v.len());
        v.extend_from_slice(&period[..take]);
    }
    Bulk(v)
}

/// Run on a worker: checks the bytes it was sent, and answers with its own.
fn check_and_answer(b: Bulk<u8>, seed: u8) -> Result<Bulk<u8>, String> {
    if b != pattern(b.0.len(), seed) {
        return Err(format!("{} bytes arrived changed", b.0.len()));
    }
    Ok(pattern(b.0.len(), seed.wrapping_add(1)))
}

/// Run on a worker: sends bytes to `other` and back (worker to worker).
fn relay(other: Pid, n: usize) -> Result<usize, String> {
    let c = Cluster::global();
    let back = c
        .remotecall_fetch_blocking(check_and_answer, other, (pattern(n, 9), 9))
        .map_err(|e| e.to_string())??;
    if back != pattern(n, 10) {
        return Err(format!("{n} bytes came back changed"));
    }
    Ok(n)
}

/// Every size class: empty, small, around the size above which a payload is sent
/// beside its message rather than in it, and large.
fn sizes() -> Vec<usize> {
    let mut v = vec![0, 1, 100, 4096];
    v.extend((SPLIT_PAYLOAD_MIN - 8)..=(SPLIT_PAYLOAD_MIN + 8));
    v.extend([1 << 20, (3 << 20) + 7, 64 << 20]);
    v
}

fn is_same_host(address: &str) -> bool {
    address.starts_with(cohort::transport::same_host::PEER_PREFIX)
}

#[test]
fn local_workers_are_reached_on_same_host_sockets_by_the_master_and_by_each_other() {
    if !cohort::transport::same_host::enabled() {
        panic!("this test needs same-host sockets on: unset COHORT_SAME_HOST");
    }
    let c = Cluster::new();
    let ws = c.launch_blocking(AddProcs::local(2)).unwrap();
    let (a, b) = (ws[0], ws[1]);
    c.install(|| {
        for w in [a, b] {
            let addr = address_of(w);
            assert!(is_same_host(&addr), "master to {w}: {addr}");
        }
    });
    let there = c
        .remotecall_fetch_blocking(address_after_calling, a, (b,))
        .unwrap();
    assert!(is_same_host(&there), "worker {a} to {b}: {there}");
    for n in sizes() {
        let back = c
            .remotecall_fetch_blocking(check_and_answer, a, (pattern(n, 3), 3))
            .unwrap()
            .unwrap();
        assert!(back == pattern(n, 4), "{n} bytes came back changed");
        assert_eq!(
            c.remotecall_fetch_blocking(relay, a, (b, n)).unwrap(),
            Ok(n)
        );
    }
    // A large transfer in each direction at once, interleaved with small calls on
    // the same connections.
    let big = c.remotecall(check_and_answer, a, (pattern(256 << 20, 5), 5));
    let small: Vec<_> = (0..100)
        .map(|i| c.remotecall(check_and_answer, a, (pattern(i, 1), 1)))
        .collect();
    for (i, f) in small.into_iter().enumerate() {
        assert!(f.fetch_blocking().unwrap().unwrap() == pattern(i, 2));
    }
    assert!(big.fetch_blocking().unwrap().unwrap() == pattern(256 << 20, 6));
    c.rmprocs_blocking(&ws, None).unwrap();
}

#[test]
fn a_process_with_same_host_sockets_off_uses_tcp_either_way() {
    let c = Cluster::new();
    // `off` keeps its socket unannounced: the master reaches it over TCP.
    let off = c
        .launch_blocking(AddProcs::local(1).env("COHORT_SAME_HOST", "0"))
        .unwrap()[0];
    let on = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    c.install(|| {
        let addr = address_of(off);
        assert!(!is_same_host(&addr) && addr.contains(':'), "{addr}");
        assert!(is_same_host(&address_of(on)), "{}", address_of(on));
    });
    // `off` does not use `on`'s socket either, though `on` announced one.
    let there = c
        .remotecall_fetch_blocking(address_after_calling, off, (on,))
        .unwrap();
    assert!(!is_same_host(&there), "worker {off} to {on}: {there}");
    assert_eq!(
        c.remotecall_fetch_blocking(relay, off, (on, 1 << 20))
            .unwrap(),
        Ok(1 << 20)
    );
    c.rmprocs_blocking(&[off, on], None).unwrap();
}

/// Whether OS process `os` is stopped (state `T`) or gone.
fn stopped_or_gone(os: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{os}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| matches!(r.trim_start().chars().next(), Some('T' | 't' | 'Z'))),
    }
}

fn signal(sig: &str, os: u32) {
    let st = std::process::Command::new("kill")
        .args([sig, &os.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {os}");
}

/// Waits for `cond`, polling (a condition, not a guess at a duration).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn os_pid() -> u32 {
    std::process::id()
}

/// Run on a worker: sends `n` bytes to `other` (which is stopped, so the transfer
/// stays half done) and, once its writing has begun, tells `started`.
fn send_to_stopped(other: Pid, n: usize, started: RemoteChannel<u8>) -> usize {
    let c = Cluster::global();
    let f = c.remotecall(check_and_answer, other, (pattern(n, 1), 1));
    let sent = |pid| {
        cohort::observe::peers(&c)
            .into_iter()
            .find(|p| p.pid == pid)
            .map_or(0, |p| p.bytes_out)
    };
    wait_for("the transfer to start", || sent(other) > 0);
    started.put_blocking(1).unwrap();
    f.fetch_blocking().map(|b| b.unwrap().0.len()).unwrap_or(0)
}

#[test]
fn a_peer_dying_in_the_middle_of_a_transfer_fails_its_calls_and_nothing_else() {
    let c = Cluster::new();
    let ws = c.launch_blocking(AddProcs::local(3)).unwrap();
    let (a, b, bystander) = (ws[0], ws[1], ws[2]);
    let os: Vec<u32> = ws
        .iter()
        .map(|&w| c.remotecall_fetch_blocking(os_pid, w, ()).unwrap())
        .collect();
    // Open a's connection to b while b can answer.
    assert!(is_same_host(
        &c.remotecall_fetch_blocking(address_after_calling, a, (b,))
            .unwrap()
    ));

    // 1. The master sends 256 MiB to a stopped worker b: the message waits half
    //    written.
    signal("-STOP", os[1]);
    wait_for("b to stop", || stopped_or_gone(os[1]));
    let to_b = c.remotecall(check_and_answer, b, (pattern(256 << 20, 7), 7));
    wait_for("the master to start writing to b", || {
        cohort::observe::peers(&c)
            .into_iter()
            .any(|p| p.pid == b && p.bytes_out > 1 << 20)
    });
    // 2. Meanwhile a sends 64 MiB to b, and is killed half way: b's reader is left
    //    with half a message from a.
    let started = c.channel_blocking::<u8>(1, 1).unwrap();
    let from_a = c.remotecall(send_to_stopped, a, (b, 64 << 20, started.clone()));
    assert_eq!(started.take_blocking().unwrap(), 1);
    signal("-KILL", os[0]);
    match from_a.fetch_blocking() {
        Err(cohort::CallError::WorkerExited { pid, .. }) => assert_eq!(pid, a),
        other => panic!("a call on a killed worker: {other:?}"),
    }
    // b, resumed, reads half a message and then the end of a's connection: it
    // loses a, and goes on.
    signal("-CONT", os[1]);
    assert!(to_b.fetch_blocking().unwrap().unwrap() == pattern(256 << 20, 8));
    assert_eq!(c.remotecall_fetch_blocking(os_pid, b, ()).unwrap(), os[1]);
    // 3. b dies with the master's next large message half sent: the call fails
    //    naming it; nothing here hangs.
    signal("-STOP", os[1]);
    wait_for("b to stop again", || stopped_or_gone(os[1]));
    let before = cohort::observe::peers(&c)
        .into_iter()
        .find(|p| p.pid == b)
        .map_or(0, |p| p.bytes_out);
    let to_b = c.remotecall(check_and_answer, b, (pattern(256 << 20, 7), 7));
    wait_for("the master to start writing to b again", || {
        cohort::observe::peers(&c)
            .into_iter()
            .any(|p| p.pid == b && p.bytes_out > before)
    });
    signal("-KILL", os[1]);
    match to_b.fetch_blocking() {
        Err(cohort::CallError::WorkerExited { pid, .. }) => assert_eq!(pid, b),
        other => panic!("a call on a killed worker: {:?}", other.map(|_| ())),
    }
    // The bystander never noticed; the cluster takes new work and new workers.
    assert!(
        c.remotecall_fetch_blocking(check_and_answer, bystander, (pattern(3 << 20, 2), 2))
            .unwrap()
            .unwrap()
            == pattern(3 << 20, 3)
    );
    let fresh = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    assert_eq!(
        c.remotecall_fetch_blocking(relay, fresh, (bystander, 1 << 20))
            .unwrap(),
        Ok(1 << 20)
    );
    assert_eq!(c.workers(), vec![bystander, fresh]);
    c.rmprocs_blocking(&[bystander, fresh], None).unwrap();
}
