//! The `cohort-grpc` library's [`GrpcManager`], from the outside: every connection
//! to a worker — the master's and, all-to-all, the other workers' — is one
//! bidirectional-streaming RPC on the worker's single TCP port (HTTP/2 multiplexes
//! them), so all of a worker's traffic shares one port.
//!
//! The test: calls from the master and between workers (all-to-all), each worker
//! listening on its gRPC port only; then the same under TLS, which runs inside the
//! streams.
//!
//! The worker must be this very executable (closures travel as code offsets, valid
//! only between identical builds), so the target has its own `main` (`harness = false`
//! in Cargo.toml, with libtest-mimic for the test-harness command line and report):
//! started by the manager, it finds `COHORT_GRPC_WORKER` set and runs
//! `cohort_grpc::run_worker` — a mode of the binary, not a `#[test]` that would count
//! as passing.

use std::time::Duration;

use cohort::prelude::*;
use cohort::transport::{ClusterManager, WorkerTransport};
use cohort::{TlsMode, WorkerOptions};
use cohort_grpc::GrpcManager;

#[cohort::remote]
fn whoami() -> (u32, u32) {
    (myid(), std::process::id())
}

/// The TCP ports process `pid` listens on: its socket inodes (`/proc/PID/fd`) matched
/// against the LISTEN entries (state 0A) of its network namespace's tables.
fn listening_ports(pid: u32) -> Vec<u16> {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

fn grpc_transport_runs_calls_over_one_port() {
    let manager = GrpcManager::new().ready_timeout(Duration::from_secs(30));
    assert_eq!(manager.worker_transport(), WorkerTransport::Custom("grpc"));
    // All-to-all (the default topology), lazy (the default).
    let pids = AddProcs::with_manager(manager.clone())
        .count(2)
        .launch_blocking()
        .unwrap();
    assert_eq!(pids.len(), 2);
    let mut os = Vec::new();
    for &p in &pids {
        let (id, os_pid) = blocking::remotecall_fetch(whoami, p, ()).unwrap();
        assert_eq!(id, p);
        assert_ne!(os_pid, std::process::id());
        os.push(os_pid);
    }
    let (a, b) = (pids[0], pids[1]);
    // Worker a calls worker b and back: the a–b connection is a stream that a's
    // GrpcManager opened on b's port.
    let seen = blocking::remotecall_fetch(
        cohort::closure!([b] || blocking::remotecall_fetch(whoami, *b, ()).unwrap()),
        a,
        (),
    )
    .unwrap();
    assert_eq!(seen, (b, os[1]));
    let back = blocking::remotecall_fetch(
        cohort::closure!([a] || blocking::remotecall_fetch(whoami, *a, ()).unwrap()),
        b,
        (),
    )
    .unwrap();
    assert_eq!(back, (a, os[0]));
    let connected = cohort::runtime::block_on(cohort::stats_of(a))
        .unwrap()
        .connected;
    assert_eq!(connected, vec![1, b]);
    for (&p, &os_pid) in pids.iter().zip(&os) {
        // All of the worker's traffic shares one port: it listens on exactly one, its
        // gRPC port (which the master's and the other worker's streams came in
        // through).
        let grpc_port = manager.port_of(os_pid).unwrap();
        assert_eq!(listening_ports(os_pid), vec![grpc_port], "worker {p}");
    }
    // Futures round trips too, over the gRPC streams, and a larger payload (several
    // chunks each way).
    let f = remotecall(|a: u64, b: u64| a + b, pids[0], (40, 2));
    let g = remotecall(|v: Vec<u8>| v.len(), pids[1], (vec![7u8; 1 << 20],));
    assert_eq!(f.fetch_blocking().unwrap(), 42);
    assert_eq!(g.fetch_blocking().unwrap(), 1 << 20);
    let big = blocking::remotecall_fetch(|n: usize| vec![1u8; n], pids[0], (300_000,)).unwrap();
    assert_eq!(big.len(), 300_000);
    blocking::rmprocs(&pids, None).unwrap();

    // Last (TLS stays on in this process once on): TLS inside the gRPC streams,
    // worker to worker too.
    let pids = AddProcs::with_manager(manager.clone())
        .count(2)
        .tls(TlsMode::Generate)
        .launch_blocking()
        .unwrap();
    let (a, b) = (pids[0], pids[1]);
    let (tls_on, seen) = blocking::remotecall_fetch(
        cohort::closure!(
            [b] || (
                cohort::cluster_tls().is_some(),
                blocking::remotecall_fetch(whoami, *b, ()).unwrap().0
            )
        ),
        a,
        (),
    )
    .unwrap();
    assert!(tls_on, "worker {a} runs without TLS");
    assert_eq!(seen, b);
    blocking::rmprocs(&pids, None).unwrap();
}

/// This target's `main` (`harness = false`): a worker when `GrpcManager` started it,
/// the test otherwise.
fn main() -> std::process::ExitCode {
    if cohort_grpc::worker_requested() {
        let opts = WorkerOptions {
            timeout: Duration::from_secs(20),
            ..WorkerOptions::from_args(std::env::args().skip(1)).expect("worker flags")
        };
        let err = cohort_grpc::run_worker(opts).unwrap_err();
        panic!("gRPC worker failed: {err}");
    }
    let args = libtest_mimic::Arguments::from_args();
    let tests = vec![libtest_mimic::Trial::test(
        "grpc_transport_runs_calls_over_one_port",
        || {
            grpc_transport_runs_calls_over_one_port();
            Ok(())
        },
    )];
    libtest_mimic::run(&args, tests).exit_code()
}
