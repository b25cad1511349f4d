//! The library's [`UnixManager`]: a custom transport over Unix-domain sockets, for
//! master–worker and worker–worker connections alike, with the worker side built
//! only on the public interface (the seed's `clustermanager/simple`, over Unix
//! sockets instead of TCP).
//!
//! Master side: `UnixManager` starts this test binary with `COHORT_UNIX_SOCKET=<path>`,
//! which makes its `main` run `unix_worker_main` below instead of the tests, writes
//! the cookie to its stdin, waits for its ready line and connects to the socket.
//!
//! Worker side: `WorkerOptions::init_worker` with a `UnixManager` as
//! `WorkerOptions::manager` (Julia's `init_worker(cookie, manager)`: the manager's
//! `connect` is how this worker reaches the others), then a loop that accepts on the
//! Unix socket and hands each connection — the master's, then other workers' — to
//! `WorkerOptions::process_messages` (Julia's `process_messages`).
//!
//! The tests: lazy all-to-all calls between workers (and a lazy(false) launch refused
//! in the lazy cluster), checked to go over
//! the sockets (no worker holds a TCP socket), plain and under TLS; the up-front
//! refusals (`ClusterError::TransportMismatch` for TCP workers joining these in an
//! all-to-all cluster, `ClusterError::TopologyUnsupported` for a manager whose
//! workers cannot reach each other).
//!
//! The worker must be this very executable (closures travel as code offsets, valid
//! only between identical builds), so the target has its own `main` (`harness = false`
//! in Cargo.toml, with libtest-mimic for the test-harness command line and report):
//! the worker is a mode of the binary, not a `#[test]` that would count as passing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cohort::prelude::*;
use cohort::transport::{
    stream, unix, BoxFuture, ClusterManager, Connection, LaunchError, LaunchParams, WorkerConfig,
    WorkerTransport,
};
use cohort::{ClusterError, TlsMode, Topology, UnixManager, WorkerOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::UnboundedSender;

/// The worker's program, run by `main` when a `UnixManager` started this binary
/// (with `COHORT_UNIX_SOCKET=<socket>`); serves until the master removes the worker.
fn unix_worker_main(socket: PathBuf) {
    // The manager's flags (`--tls-stdin` when the cluster uses TLS).
    let flags = WorkerOptions::from_args(std::env::args().skip(1)).expect("worker flags");
    let opts = WorkerOptions {
        timeout: Duration::from_secs(20),
        // Worker-to-worker connections over the other workers' sockets.
        manager: Some(Arc::new(UnixManager::new(socket.parent().unwrap()))),
        ..flags
    };
    opts.init_worker().expect("init_worker");
    let served: std::io::Result<()> = cohort::runtime::block_on(async move {
        let listener = stream::unix_listen(&socket)?;
        unix::announce(&socket)?;
        loop {
            let conn = stream::unix_accept(&listener).await?;
            let opts = opts.clone();
            tokio::spawn(async move {
                if let Err(e) = opts.process_messages(conn).await {
                    eprintln!("{e}");
                }
            });
        }
    });
    // Only an accept or bind failure gets here (the master's exit request ends the
    // process); fail loudly so that the launch or the test sees it.
    panic!("unix worker stopped serving: {served:?}");
}

#[cohort::remote]
fn whoami() -> (u32, u32) {
    (myid(), std::process::id())
}

/// How many TCP sockets (in any state) process `pid` holds: its socket inodes
/// (`/proc/PID/fd`) matched against its network namespace's TCP tables.
fn tcp_sockets(pid: u32) -> usize {
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
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        n += text
            .lines()
            .skip(1)
            .filter(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                f.len() > 9 && inodes.contains(f[9])
            })
            .count();
    }
    n
}

/// The socket files in `dir`.
fn sockets_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sock"))
        .collect();
    v.sort();
    v
}

fn unix_sockets_carry_all_to_all() {
    let dir = std::env::temp_dir().join(format!("cohort-unix-{}", std::process::id()));
    let manager = UnixManager::new(&dir).ready_timeout(Duration::from_secs(30));
    assert_eq!(manager.worker_transport(), WorkerTransport::Custom("unix"));
    // All-to-all (the default topology), lazy (the default).
    let pids = AddProcs::with_manager(manager)
        .count(2)
        .launch_blocking()
        .unwrap();
    assert_eq!(pids.len(), 2);
    let (a, b) = (pids[0], pids[1]);
    let mut os = Vec::new();
    for &p in &pids {
        let (id, os_pid) = blocking::remotecall_fetch(whoami, p, ()).unwrap();
        assert_eq!(id, p);
        assert_ne!(os_pid, std::process::id());
        os.push(os_pid);
    }
    // A futures round trip too, over the Unix sockets.
    let f = remotecall(|a: u64, b: u64| a + b, a, (40, 2));
    assert_eq!(f.fetch_blocking().unwrap(), 42);

    // Worker a calls worker b: the first call makes the a–b connection, through a's
    // UnixManager, over b's socket.
    let before = cohort::runtime::block_on(cohort::stats_of(a)).unwrap();
    assert_eq!(
        before.connected,
        vec![1],
        "no worker-to-worker connection yet"
    );
    let seen = blocking::remotecall_fetch(
        cohort::closure!([b] || blocking::remotecall_fetch(whoami, *b, ()).unwrap()),
        a,
        (),
    )
    .unwrap();
    assert_eq!(seen, (b, os[1]));
    // And back, on the connection that call made.
    let back = blocking::remotecall_fetch(
        cohort::closure!([a] || blocking::remotecall_fetch(whoami, *a, ()).unwrap()),
        b,
        (),
    )
    .unwrap();
    assert_eq!(back, (a, os[0]));
    let after = cohort::runtime::block_on(cohort::stats_of(a)).unwrap();
    assert_eq!(after.connected, vec![1, b]);
    let after_b = cohort::runtime::block_on(cohort::stats_of(b)).unwrap();
    assert_eq!(after_b.connected, vec![1, a]);
    // Nothing went over TCP: neither worker holds a TCP socket of any kind.
    for &os_pid in &os {
        assert_eq!(tcp_sockets(os_pid), 0, "worker process {os_pid}");
    }

    // TCP workers cannot reach these in an all-to-all cluster: refused up front.
    let mixed = AddProcs::local(1).launch_blocking().unwrap_err();
    assert!(
        matches!(
            mixed,
            ClusterError::TransportMismatch {
                transport: WorkerTransport::Tcp,
                other: WorkerTransport::Custom("unix"),
                ..
            }
        ),
        "{mixed:?}"
    );
    assert_eq!(workers(), pids, "the refused launch started nobody");

    // The cluster is lazy: a worker asked for with lazy(false) is refused up front,
    // as in Julia, rather than changing the setting under the running workers.
    let eager = AddProcs::with_manager(UnixManager::new(&dir))
        .count(1)
        .lazy(false)
        .launch_blocking()
        .unwrap_err();
    assert!(
        matches!(
            eager,
            ClusterError::LazyMismatch {
                running: true,
                asked: false
            }
        ),
        "{eager:?}"
    );
    assert_eq!(workers(), pids, "the refused launch started nobody");
    // A third worker, from another manager on the same directory, reaches both over
    // their sockets at its first calls.
    let c = AddProcs::with_manager(UnixManager::new(&dir))
        .count(1)
        .launch_blocking()
        .unwrap()[0];
    let (_, os_c) = blocking::remotecall_fetch(whoami, c, ()).unwrap();
    let seen = blocking::remotecall_fetch(
        cohort::closure!(
            [a, b]
                || (
                    blocking::remotecall_fetch(whoami, *a, ()).unwrap(),
                    blocking::remotecall_fetch(whoami, *b, ()).unwrap()
                )
        ),
        c,
        (),
    )
    .unwrap();
    assert_eq!(seen, ((a, os[0]), (b, os[1])));
    let joined = cohort::runtime::block_on(cohort::stats_of(c)).unwrap();
    assert_eq!(joined.connected, vec![1, a, b]);
    for (w, expected) in [(a, vec![1, b, c]), (b, vec![1, a, c])] {
        let s = cohort::runtime::block_on(cohort::stats_of(w)).unwrap();
        assert_eq!(s.connected, expected, "worker {w}");
    }
    assert_eq!(tcp_sockets(os_c), 0);
    let pids = vec![a, b, c];

    // A connection without the cookie is refused by the worker.
    let socket = sockets_in(&dir)[0].clone();
    let refused = cohort::runtime::block_on(async move {
        use tokio::io::AsyncReadExt;
        let mut s = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let _ = s.write_all(b"\x05\x00\x00\x00hello").await;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf))
            .await
            .is_ok()
    });
    assert!(refused, "worker kept a connection that sent garbage");
    // Waits for the manager's kill, which removes each worker's socket.
    blocking::rmprocs(&pids, None).unwrap();
    assert!(sockets_in(&dir).is_empty(), "{:?}", sockets_in(&dir));

    // Last (TLS stays on in this process once on): every connection under TLS,
    // worker to worker too, still over the sockets.
    let pids = AddProcs::with_manager(UnixManager::new(&dir))
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
    let (_, os_a) = blocking::remotecall_fetch(whoami, a, ()).unwrap();
    assert_eq!(tcp_sockets(os_a), 0);
    blocking::rmprocs(&pids, None).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// A custom manager whose workers cannot reach each other; it counts its launches.
struct MasterOnly {
    launches: Arc<AtomicUsize>,
}

impl ClusterManager for MasterOnly {
    fn launch<'a>(
        &'a self,
        _params: &'a LaunchParams,
        _launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        self.launches.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(LaunchError::Other("this test launches nothing".into())) })
    }

    fn connect<'a>(
        &'a self,
        _pid: u32,
        _config: &'a WorkerConfig,
    ) -> BoxFuture<'a, std::io::Result<Connection>> {
        Box::pin(async { Err(std::io::Error::other("never connected")) })
    }

    fn worker_transport(&self) -> WorkerTransport {
        WorkerTransport::MasterOnly
    }
}

fn master_only_manager_refuses_worker_to_worker_topologies() {
    let launches = Arc::new(AtomicUsize::new(0));
    for topology in [Topology::AllToAll, Topology::Custom] {
        let e = AddProcs::with_manager(MasterOnly {
            launches: launches.clone(),
        })
        .count(2)
        .topology(topology)
        .launch_blocking()
        .unwrap_err();
        assert!(
            matches!(
                e,
                ClusterError::TopologyUnsupported {
                    topology: t,
                    transport: WorkerTransport::MasterOnly,
                } if t == topology
            ),
            "{e:?}"
        );
    }
    assert_eq!(launches.load(Ordering::SeqCst), 0, "refused before launch");
    // Master–worker is what it serves: that launch is tried (and fails its own way).
    let e = AddProcs::with_manager(MasterOnly {
        launches: launches.clone(),
    })
    .count(2)
    .topology(Topology::MasterWorker)
    .launch_blocking()
    .unwrap_err();
    assert!(
        matches!(e, ClusterError::Launch(LaunchError::Other(_))),
        "{e:?}"
    );
    assert_eq!(launches.load(Ordering::SeqCst), 1);
}

/// This target's `main` (`harness = false`): a worker when a `UnixManager` started
/// it, the tests otherwise.
fn main() -> std::process::ExitCode {
    if let Some(socket) = unix::socket_from_env() {
        unix_worker_main(socket);
    }
    let mut args = libtest_mimic::Arguments::from_args();
    // The trials share one cluster, whose master this process is (and a launch sets
    // the cluster's topology): one at a time.
    args.test_threads = Some(1);
    let tests = vec![
        libtest_mimic::Trial::test("unix_sockets_carry_all_to_all", || {
            unix_sockets_carry_all_to_all();
            Ok(())
        }),
        libtest_mimic::Trial::test(
            "master_only_manager_refuses_worker_to_worker_topologies",
            || {
                master_only_manager_refuses_worker_to_worker_topologies();
                Ok(())
            },
        ),
    ];
    libtest_mimic::run(&args, tests).exit_code()
}
