//! [`UnixManager`]: local workers reached over Unix-domain sockets instead of TCP,
//! master–worker and worker–worker alike.
//!
//! The manager side only moves bytes and starts processes, so it lives here; the
//! worker side is a program of yours that speaks the cohort protocol on the socket
//! (with `cohort`: `WorkerOptions::init_worker` with a `UnixManager` as
//! `WorkerOptions::manager`, then [`unix_listen`](crate::stream::unix_listen) on the
//! path in [`SOCKET_ENV`], [`announce`] it, and hand each
//! [`unix_accept`](crate::stream::unix_accept)ed connection to
//! `WorkerOptions::process_messages`; `crates/cohort/tests/unix_transport.rs` is such
//! a program).
//!
//! The protocol between the two:
//!
//! 1. The manager starts the worker program with the environment variable
//!    [`SOCKET_ENV`] set to the socket path it should listen on (in the manager's
//!    directory, one per worker), plus the launch's `exeflags`, `env`, `dir` and
//!    worker timeout ([`WORKER_TIMEOUT_ENV`]).
//! 2. It writes the cookie line (and the TLS bundle, when the cluster uses TLS) to
//!    the worker's stdin — never its argv — and closes stdin.
//! 3. The worker binds the socket and prints [`READY_PREFIX`] followed by the path
//!    on stdout ([`announce`]), at the end of a line. Lines before it are passed on; lines after it are
//!    forwarded labelled with the worker's pid, as [`LocalManager`](crate::LocalManager)
//!    does.
//! 4. The runtime's connection to the worker goes through
//!    [`ClusterManager::connect`], which opens the socket.
//! 5. The socket's path is the worker's address for the other workers
//!    ([`WorkerConfig::bind_addr`]). A worker whose program handed the runtime a
//!    `UnixManager` for its peers reaches another worker by calling that manager's
//!    [`connect`](ClusterManager::connect) with the peer's path as `host`, and accepts
//!    the other workers' connections on its own socket like the master's.
//!
//! **Topology.** With step 5, every topology works: all-to-all (lazy or eager),
//! master–worker and custom. [`UnixManager::worker_transport`] says
//! [`WorkerTransport::Custom`]`("unix")`, so the runtime refuses to mix these workers
//! with TCP workers in an all-to-all cluster, where they could not reach each other.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;

use crate::manager::{
    AnnounceFailure, ClusterManager, LaunchError, LaunchParams, ManageEvent, WorkerConfig,
    WorkerProcess, WorkerTransport,
};
use crate::stream::{unix_connect, Connection};
use crate::WORKER_TIMEOUT_ENV;

/// The environment variable holding the socket path a worker started by
/// [`UnixManager`] listens on.
///
/// ```
/// assert_eq!(cohort_transport::unix::SOCKET_ENV, "COHORT_UNIX_SOCKET");
/// ```
pub const SOCKET_ENV: &str = "COHORT_UNIX_SOCKET";

/// What a worker started by [`UnixManager`] prints, followed by its socket path,
/// once it listens.
///
/// ```
/// assert_eq!(cohort_transport::unix::READY_PREFIX, "cohort_unix_worker:");
/// ```
pub const READY_PREFIX: &str = "cohort_unix_worker:";

/// How long the manager waits for a worker's ready line by default.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest socket path the system takes (`sun_path` is 108 bytes on Linux,
/// NUL included).
const MAX_SOCKET_PATH: usize = 107;

/// The ready line for a worker listening at `path` ([`READY_PREFIX`] and the path).
///
/// ```
/// assert_eq!(cohort_transport::unix::ready_line("/tmp/w0.sock".as_ref()), "cohort_unix_worker:/tmp/w0.sock");
/// ```
pub fn ready_line(path: &Path) -> String {
    format!("{READY_PREFIX}{}", path.display())
}

/// Prints the ready line for `path` on stdout and flushes it (the worker side of step
/// 3 in the [module docs](self)).
///
/// # Errors
/// The I/O error of writing stdout (the manager closed the pipe).
///
/// ```no_run
/// cohort_transport::unix::announce("/tmp/w0.sock".as_ref()).unwrap();
/// ```
pub fn announce(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", ready_line(path))?;
    out.flush()
}

/// The socket path a worker was started to listen on ([`SOCKET_ENV`]), if it was
/// started by a [`UnixManager`].
///
/// ```
/// // Not set in a doctest.
/// assert!(cohort_transport::unix::socket_from_env().is_none());
/// ```
pub fn socket_from_env() -> Option<PathBuf> {
    std::env::var_os(SOCKET_ENV).map(PathBuf::from)
}

/// A [`ClusterManager`] that starts workers on this host and reaches each over its
/// own Unix-domain socket; the workers reach each other over those sockets too (see
/// the [module docs](self) for the protocol the worker program follows).
///
/// The same type serves on both sides: the master launches with it, and each worker
/// program hands one to the runtime (cohort's `WorkerOptions::manager`) to connect
/// to its peers. On a worker only [`connect`](ClusterManager::connect) is used, so
/// any directory will do there.
///
/// ```no_run
/// use cohort_transport::UnixManager;
/// // A program that serves as its own worker when it finds `COHORT_UNIX_SOCKET` set.
/// let manager = UnixManager::new(std::env::temp_dir().join("my-cluster"))
///     .executable(std::env::current_exe().unwrap());
/// // cohort: AddProcs::with_manager(manager).count(2).launch_blocking()
/// # drop(manager);
/// ```
#[derive(Debug)]
pub struct UnixManager {
    dir: PathBuf,
    executable: Option<PathBuf>,
    args: Vec<String>,
    ready_timeout: Duration,
}

/// Numbers the sockets of this process's launches: one sequence for every
/// `UnixManager`, so that two on the same directory never pick the same path (a
/// launch removes a stale file at its path before the worker binds it).
static SOCKET_SEQ: AtomicUsize = AtomicUsize::new(0);

/// What the manager keeps per worker.
struct UnixWorker {
    socket: PathBuf,
    pid: AtomicU32,
}

impl UnixManager {
    /// A manager whose workers' sockets go in `dir` (created at launch if missing,
    /// mode 0700 when it creates it; the path of each socket must stay under about
    /// 108 bytes). It runs the launch's executable, or else the current one.
    ///
    /// ```
    /// let m = cohort_transport::UnixManager::new("/tmp/cohort-sockets");
    /// # drop(m);
    /// ```
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        UnixManager {
            dir: dir.into(),
            executable: None,
            args: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// The worker program (instead of the launch's `executable`, or the current
    /// executable).
    ///
    /// ```
    /// let m = cohort_transport::UnixManager::new("/tmp/s").executable("/usr/local/bin/my-worker");
    /// # drop(m);
    /// ```
    pub fn executable(mut self, exe: impl Into<PathBuf>) -> Self {
        self.executable = Some(exe.into());
        self
    }

    /// Arguments for the worker program, before the launch's `exeflags`.
    ///
    /// ```
    /// let m = cohort_transport::UnixManager::new("/tmp/s").args(["--unix-worker"]);
    /// # drop(m);
    /// ```
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// How long to wait for each worker's ready line (60 s by default).
    ///
    /// ```
    /// let m = cohort_transport::UnixManager::new("/tmp/s").ready_timeout(std::time::Duration::from_secs(5));
    /// # drop(m);
    /// ```
    pub fn ready_timeout(mut self, t: Duration) -> Self {
        self.ready_timeout = t;
        self
    }

    /// The directory the sockets go in.
    ///
    /// ```
    /// let m = cohort_transport::UnixManager::new("/tmp/s");
    /// assert_eq!(m.dir(), std::path::Path::new("/tmp/s"));
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn next_socket(&self) -> PathBuf {
        self.dir.join(format!(
            "w{}.{}.sock",
            std::process::id(),
            SOCKET_SEQ.fetch_add(1, Ordering::Relaxed)
        ))
    }

    async fn launch_one(
        &self,
        params: &LaunchParams,
        exe: &Path,
    ) -> Result<WorkerConfig, LaunchError> {
        let socket = self.next_socket();
        let spawn_err = |source| LaunchError::Spawn {
            exe: exe.display().to_string(),
            source,
        };
        if socket.to_str().is_none() {
            // It travels to the other workers as a string.
            return Err(spawn_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the socket path {} is not UTF-8", socket.display()),
            )));
        }
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(spawn_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the socket path {} is longer than {MAX_SOCKET_PATH} bytes",
                    socket.display()
                ),
            )));
        }
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new(exe);
        cmd.args(&self.args)
            .args(params.tls_flag())
            .args(&params.exeflags)
            .envs(params.env.iter().map(|(k, v)| (k, v)))
            .env(SOCKET_ENV, &socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(t) = params.worker_timeout {
            cmd.env(WORKER_TIMEOUT_ENV, t.as_secs_f64().to_string());
        }
        if let Some(dir) = &params.dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let stdout = child.stdout.take().expect("stdout was piped");
        let process = WorkerProcess::new(child);
        // The cookie (and the TLS bundle) go over stdin, never argv.
        if let Err(e) = stdin.write_all(params.stdin_payload().as_bytes()).await {
            process.kill().await;
            return Err(spawn_err(e));
        }
        drop(stdin);
        let mut lines = BufReader::new(stdout).lines();
        let want = ready_line(&socket);
        let ready = tokio::time::timeout(self.ready_timeout, async {
            while let Ok(Some(line)) = lines.next_line().await {
                // Ends with: a test harness may print its own text before it.
                if line.trim_end().ends_with(&want) {
                    return true;
                }
                println!("{line}");
            }
            false
        })
        .await;
        let cause = match ready {
            Ok(true) => None,
            Ok(false) => Some(AnnounceFailure::Exited),
            Err(_) => Some(AnnounceFailure::TimedOut {
                after: self.ready_timeout,
            }),
        };
        if let Some(cause) = cause {
            process.kill().await;
            let _ = std::fs::remove_file(&socket);
            return Err(LaunchError::Announce {
                exe: exe.display().to_string(),
                cause,
            });
        }
        let worker = Arc::new(UnixWorker {
            socket,
            pid: AtomicU32::new(0),
        });
        let forward = worker.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let pid = forward.pid.load(Ordering::Relaxed);
                println!("      From worker {pid}:\t{line}");
            }
        });
        Ok(WorkerConfig {
            // The other workers' address for this one (step 5).
            bind_addr: Some(worker.socket.to_string_lossy().into_owned()),
            process: Some(process),
            userdata: Some(worker),
            ..Default::default()
        })
    }
}

fn worker_of(config: &WorkerConfig) -> Option<&UnixWorker> {
    config
        .userdata
        .as_ref()
        .and_then(|u| u.downcast_ref::<UnixWorker>())
}

impl ClusterManager for UnixManager {
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async move {
            let exe = match (&self.executable, &params.executable) {
                (Some(e), _) | (None, Some(e)) => e.clone(),
                (None, None) => std::env::current_exe().map_err(|source| LaunchError::Spawn {
                    exe: "<current executable>".into(),
                    source,
                })?,
            };
            if !self.dir.is_dir() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.dir)
                    .map_err(|source| LaunchError::Spawn {
                        exe: exe.display().to_string(),
                        source,
                    })?;
            }
            crate::manager::launch_all(params.count, &launched, || self.launch_one(params, &exe))
                .await
        })
    }

    fn manage(&self, pid: u32, config: &WorkerConfig, event: ManageEvent) {
        if event == ManageEvent::Register {
            if let Some(w) = worker_of(config) {
                w.pid.store(pid, Ordering::Relaxed);
            }
        }
    }

    /// Opens the worker's Unix socket: the one this manager launched it on (master),
    /// or the path in `config.host` (on a worker, reaching a peer whose address the
    /// master announced; see [`ClusterManager::connect`]).
    ///
    /// # Errors
    /// `InvalidInput` for a config this manager did not make that names no absolute
    /// socket path; the I/O error of the connect (`NotFound`, `ConnectionRefused`).
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`unix_connect`].
    fn connect<'a>(
        &'a self,
        _pid: u32,
        config: &'a WorkerConfig,
    ) -> BoxFuture<'a, std::io::Result<Connection>> {
        Box::pin(async move {
            if let Some(w) = worker_of(config) {
                return unix_connect(&w.socket).await;
            }
            match config.host.as_deref().or(config.bind_addr.as_deref()) {
                Some(path) if Path::new(path).is_absolute() => unix_connect(path).await,
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "this worker was not launched by a UnixManager (no socket path)",
                )),
            }
        })
    }

    /// [`WorkerTransport::Custom`]`("unix")`: the workers connect to each other over
    /// their sockets (step 5 of the [module docs](self)).
    fn worker_transport(&self) -> WorkerTransport {
        WorkerTransport::Custom("unix")
    }

    /// Waits a moment for the worker's process to exit, kills it otherwise, and
    /// removes its socket file.
    ///
    /// # Cancel safety
    /// As [`WorkerProcess::stop`](crate::WorkerProcess::stop); dropped before it
    /// finishes, the socket file is left too.
    fn kill<'a>(&'a self, _pid: u32, config: &'a WorkerConfig) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(p) = &config.process {
                p.stop(Duration::from_secs(2)).await;
            }
            if let Some(w) = worker_of(config) {
                let _ = std::fs::remove_file(&w.socket);
            }
        })
    }
}
