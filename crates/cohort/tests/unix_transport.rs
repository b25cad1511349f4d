//! A cluster manager with a custom transport, built only on the public interface
//! (the seed's `clustermanager/simple`, over Unix-domain sockets instead of TCP).
//!
//! Master side: `launch` starts this test binary with `COHORT_UNIX_WORKER=<socket>`,
//! which makes its `main` run `unix_worker_main` below instead of the test, writes the
//! cookie to its stdin and waits for its ready line; `connect` opens the Unix socket
//! and hands the runtime the pair of byte streams.
//!
//! Worker side: `WorkerOptions::init_worker` (Julia's `init_worker`), then a loop that
//! accepts on the Unix socket and hands each connection to
//! `WorkerOptions::process_messages` (Julia's `process_messages`).
//!
//! The worker must be this very executable (closures travel as code offsets, valid
//! only between identical builds), so the target has its own `main` (`harness = false`
//! in Cargo.toml, with libtest-mimic for the test-harness command line and report):
//! the worker is a mode of the binary, not a `#[test]` that would count as passing.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cohort::prelude::*;
use cohort::transport::{
    BoxFuture, ClusterManager, Connection, LaunchError, LaunchParams, WorkerConfig, WorkerProcess,
};
use cohort::{Topology, WorkerOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;

const SOCKET_ENV: &str = "COHORT_UNIX_WORKER";
const READY: &str = "unix_worker_ready:";

/// Starts local workers reachable only through Unix-domain sockets.
struct UnixManager {
    dir: PathBuf,
    seq: AtomicUsize,
}

/// What the manager keeps per worker: its socket.
struct UnixWorker {
    socket: PathBuf,
}

impl ClusterManager for UnixManager {
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async move {
            let exe = std::env::current_exe().map_err(|source| LaunchError::Spawn {
                exe: "<test binary>".into(),
                source,
            })?;
            for _ in 0..params.count {
                let socket = self.dir.join(format!(
                    "w{}.sock",
                    self.seq.fetch_add(1, Ordering::Relaxed)
                ));
                let mut child = tokio::process::Command::new(&exe)
                    .env(SOCKET_ENV, &socket)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|source| LaunchError::Spawn {
                        exe: exe.display().to_string(),
                        source,
                    })?;
                // The cookie goes over stdin.
                let mut stdin = child.stdin.take().unwrap();
                let _ = stdin
                    .write_all(format!("{}\n", params.cookie).as_bytes())
                    .await;
                drop(stdin);
                let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
                let process = WorkerProcess::new(child);
                let ready = tokio::time::timeout(Duration::from_secs(30), async {
                    while let Ok(Some(l)) = lines.next_line().await {
                        if l.contains(READY) {
                            return true;
                        }
                    }
                    false
                })
                .await;
                if ready != Ok(true) {
                    process.kill().await;
                    return Err(LaunchError::NoAddress {
                        what: "unix worker did not get ready".into(),
                    });
                }
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                let config = WorkerConfig {
                    process: Some(process),
                    userdata: Some(std::sync::Arc::new(UnixWorker { socket })),
                    ..Default::default()
                };
                let _ = launched.send(config);
            }
            Ok(())
        })
    }

    fn connect<'a>(
        &'a self,
        _pid: u32,
        config: &'a WorkerConfig,
    ) -> BoxFuture<'a, std::io::Result<Connection>> {
        Box::pin(async move {
            let w = config
                .userdata
                .as_ref()
                .and_then(|u| u.downcast_ref::<UnixWorker>())
                .ok_or_else(|| std::io::Error::other("not a unix worker"))?;
            let s = tokio::net::UnixStream::connect(&w.socket).await?;
            let (r, wr) = s.into_split();
            Ok(Connection::new(
                Box::new(r),
                Box::new(wr),
                w.socket.display().to_string(),
            ))
        })
    }
}

/// The worker's program, run by `main` when `UnixManager` started this binary (with
/// `COHORT_UNIX_WORKER=<socket>`); serves until the master removes the worker.
fn unix_worker_main(socket: std::ffi::OsString) {
    let opts = WorkerOptions {
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    opts.init_worker().expect("init_worker");
    cohort::runtime::block_on(async move {
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind the unix socket");
        println!("{READY}{}", PathBuf::from(&socket).display());
        loop {
            let (s, _) = listener.accept().await.expect("accept");
            let (r, w) = s.into_split();
            let conn = Connection::new(Box::new(r), Box::new(w), "unix peer");
            if let Err(e) = opts.process_messages(conn).await {
                eprintln!("{e}");
            }
        }
    });
}

#[cohort::remote]
fn whoami() -> (u32, u32) {
    (myid(), std::process::id())
}

fn unix_socket_transport_runs_calls() {
    let dir = std::env::temp_dir().join(format!("cohort-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pids = AddProcs::with_manager(UnixManager {
        dir: dir.clone(),
        seq: AtomicUsize::new(0),
    })
    .count(2)
    .topology(Topology::MasterWorker)
    .launch_blocking()
    .unwrap();
    assert_eq!(pids.len(), 2);
    for &p in &pids {
        let (id, os) = remotecall_fetch_blocking(whoami, p, ()).unwrap();
        assert_eq!(id, p);
        assert_ne!(os, std::process::id());
    }
    // A futures round trip too, over the Unix sockets.
    let f = remotecall(|a: u64, b: u64| a + b, pids[0], (40, 2));
    assert_eq!(f.fetch_blocking().unwrap(), 42);
    // A connection without the cookie is refused by the worker.
    let socket = dir.join("w0.sock");
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
    rmprocs_blocking(&pids, Some(Duration::from_secs(20))).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// This target's `main` (`harness = false`): a worker when `UnixManager` started it,
/// the test otherwise.
fn main() -> std::process::ExitCode {
    if let Some(socket) = std::env::var_os(SOCKET_ENV) {
        unix_worker_main(socket);
        return std::process::ExitCode::SUCCESS;
    }
    let args = libtest_mimic::Arguments::from_args();
    let tests = vec![libtest_mimic::Trial::test(
        "unix_socket_transport_runs_calls",
        || {
            unix_socket_transport_runs_calls();
            Ok(())
        },
    )];
    libtest_mimic::run(&args, tests).exit_code()
}
