//! The cluster-manager interface: how workers are started, watched, connected to and
//! stopped. It mirrors Julia's `ClusterManager` (`launch`, `manage`, `kill`, `connect`).

use std::any::Any;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use thiserror::Error;
use tokio::process::Child;
use tokio::sync::mpsc::UnboundedSender;

use crate::stream::{tcp_connect, Connection};

/// How workers connect to each other (the master always connects to every worker).
///
/// ```
/// assert_eq!(cohort_transport::Topology::default(), cohort_transport::Topology::AllToAll);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Topology {
    /// Every process may talk to every other (Julia's `:all_to_all`, the default).
    #[default]
    AllToAll,
    /// Workers talk only to the master; a worker-to-worker call is an error.
    MasterWorker,
    /// The manager decides: a worker connects to the workers whose
    /// [`WorkerConfig::ident`] is in its [`WorkerConfig::connect_idents`].
    Custom,
}

/// How the workers a manager starts reach each other, which decides the topologies
/// it can serve ([`ClusterManager::worker_transport`]).
///
/// In Julia a worker opens its connections to other workers with
/// `connect(manager, pid, config)` of the manager it was started with
/// (`init_worker(cookie, manager)`; the default manager connects over TCP). cohort
/// does the same: a worker started in worker mode (`--cohort-worker`) connects to its
/// peers over TCP, and a worker of a custom transport uses the manager its program
/// handed to the runtime (cohort's `WorkerOptions::manager`), whose
/// [`connect`](ClusterManager::connect) then runs on the worker.
///
/// ```
/// use cohort_transport::WorkerTransport;
/// assert!(WorkerTransport::Tcp.connects_workers());
/// assert!(WorkerTransport::Custom("unix").connects_workers());
/// assert!(!WorkerTransport::MasterOnly.connects_workers());
/// assert_eq!(WorkerTransport::Custom("unix").to_string(), "the unix transport");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WorkerTransport {
    /// Workers connect to each other over TCP, to the address each announced
    /// ([`WorkerConfig::bind_addr`], else `host`, and `port`). What workers started in
    /// worker mode do, and the default (what [`ClusterManager::connect`]'s default
    /// does).
    #[default]
    Tcp,
    /// Workers connect to each other through the manager's own
    /// [`connect`](ClusterManager::connect), run on the worker: the worker program
    /// hands the runtime a manager of this kind (cohort's `WorkerOptions::manager`).
    /// The name tells transports apart: under [`Topology::AllToAll`] every worker must
    /// reach every other, so the runtime refuses to mix workers of different
    /// transports there.
    Custom(&'static str),
    /// Workers cannot connect to each other: the manager serves
    /// [`Topology::MasterWorker`] only, and the runtime refuses other topologies
    /// before it launches anything.
    MasterOnly,
}

impl WorkerTransport {
    /// Whether workers can open connections to each other (every variant but
    /// [`MasterOnly`](Self::MasterOnly)).
    ///
    /// ```
    /// assert!(cohort_transport::WorkerTransport::default().connects_workers());
    /// ```
    pub fn connects_workers(self) -> bool {
        !matches!(self, WorkerTransport::MasterOnly)
    }
}

impl std::fmt::Display for WorkerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerTransport::Tcp => f.write_str("TCP"),
            WorkerTransport::Custom(name) => write!(f, "the {name} transport"),
            WorkerTransport::MasterOnly => f.write_str("no worker-to-worker transport"),
        }
    }
}

/// What the runtime asks a manager to launch, and with what (Julia's `params`).
///
/// Its `Debug` output never shows the cookie (it prints `"<redacted>"`), so params can
/// be logged.
///
/// ```
/// let p = cohort_transport::LaunchParams {
///     count: 2,
///     cookie: "s3cret".into(),
///     ..Default::default()
/// };
/// assert!(p.restrict && p.lazy);
/// assert!(!format!("{p:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct LaunchParams {
    /// How many workers to start.
    pub count: usize,
    /// The executable to run; `None` runs the current executable in worker mode.
    pub executable: Option<PathBuf>,
    /// Extra arguments for the worker executable, after the worker flag.
    pub exeflags: Vec<String>,
    /// Extra environment variables for the workers.
    pub env: Vec<(String, String)>,
    /// The workers' working directory; `None` keeps the master's.
    pub dir: Option<PathBuf>,
    /// How workers connect to each other.
    pub topology: Topology,
    /// With all-to-all, connect worker pairs at their first call rather than at once.
    pub lazy: bool,
    /// Bind workers to 127.0.0.1 (true, the default) or to all interfaces.
    pub restrict: bool,
    /// The cluster cookie, to be written to each worker's stdin (never its argv).
    pub cookie: String,
    /// How long a worker waits for the master before it exits.
    pub worker_timeout: Option<Duration>,
    /// The cluster's TLS credentials, when connections are encrypted: a launched
    /// worker gets the [`TLS_STDIN_FLAG`](crate::tls::TLS_STDIN_FLAG) flag and the
    /// [bundle](crate::tls::ClusterTls::bundle) on stdin after the cookie line
    /// ([`stdin_payload`](crate::tls::stdin_payload)); never on a command line.
    /// (Only with the `tls` feature, on by default.)
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::ClusterTls>,
}

impl std::fmt::Debug for LaunchParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so that a new field cannot be added without deciding here
        // whether it may be printed.
        let LaunchParams {
            count,
            executable,
            exeflags,
            env,
            dir,
            topology,
            lazy,
            restrict,
            cookie: _,
            worker_timeout,
            #[cfg(feature = "tls")]
            tls,
        } = self;
        let mut d = f.debug_struct("LaunchParams");
        d.field("count", count)
            .field("executable", executable)
            .field("exeflags", exeflags)
            .field("env", env)
            .field("dir", dir)
            .field("topology", topology)
            .field("lazy", lazy)
            .field("restrict", restrict)
            .field("cookie", &format_args!("<redacted>"))
            .field("worker_timeout", worker_timeout);
        // `ClusterTls`'s own `Debug` never shows the key.
        #[cfg(feature = "tls")]
        d.field("tls", tls);
        d.finish()
    }
}

impl LaunchParams {
    /// What a launched worker reads from its stdin: the cookie line, then the TLS
    /// bundle when the cluster uses TLS. A custom manager writes it to each worker's
    /// stdin (never its argv) and closes stdin, as this crate's managers do.
    ///
    /// ```
    /// let p = cohort_transport::LaunchParams { cookie: "s3cret".into(), ..Default::default() };
    /// assert_eq!(p.stdin_payload(), "s3cret\n");
    /// ```
    pub fn stdin_payload(&self) -> String {
        #[cfg(feature = "tls")]
        return crate::tls::stdin_payload(&self.cookie, self.tls.as_ref());
        #[cfg(not(feature = "tls"))]
        return format!("{}\n", self.cookie);
    }

    /// The flag telling a launched worker that a TLS bundle follows the cookie, when
    /// the cluster uses TLS (`--tls-stdin`, which cohort's `WorkerOptions::from_args`
    /// reads): a custom manager passes it on the worker's command line.
    ///
    /// ```
    /// assert_eq!(cohort_transport::LaunchParams::default().tls_flag(), None);
    /// ```
    pub fn tls_flag(&self) -> Option<&'static str> {
        #[cfg(feature = "tls")]
        return self.tls.as_ref().map(|_| crate::tls::TLS_STDIN_FLAG);
        #[cfg(not(feature = "tls"))]
        return None;
    }
}

impl Default for LaunchParams {
    fn default() -> Self {
        LaunchParams {
            count: 0,
            executable: None,
            exeflags: Vec::new(),
            env: Vec::new(),
            dir: None,
            topology: Topology::AllToAll,
            lazy: true,
            restrict: true,
            cookie: String::new(),
            worker_timeout: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// The OS process of a launched worker, for managers that start processes.
///
/// ```
/// # async fn demo() -> std::io::Result<()> {
/// let child = tokio::process::Command::new("true").spawn()?;
/// let p = cohort_transport::WorkerProcess::new(child);
/// assert!(p.os_pid().is_some());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct WorkerProcess {
    child: Arc<tokio::sync::Mutex<Child>>,
    os_pid: Option<u32>,
}

impl WorkerProcess {
    /// Wraps a spawned child process.
    ///
    /// ```
    /// # async fn demo() -> std::io::Result<()> {
    /// let p = cohort_transport::WorkerProcess::new(tokio::process::Command::new("true").spawn()?);
    /// # Ok(()) }
    /// ```
    pub fn new(child: Child) -> Self {
        let os_pid = child.id();
        WorkerProcess {
            child: Arc::new(tokio::sync::Mutex::new(child)),
            os_pid,
        }
    }

    /// The OS process id, if the process was still running when wrapped.
    ///
    /// ```
    /// # async fn demo() -> std::io::Result<()> {
    /// let p = cohort_transport::WorkerProcess::new(tokio::process::Command::new("true").spawn()?);
    /// assert!(p.os_pid().unwrap() > 0);
    /// # Ok(()) }
    /// ```
    pub fn os_pid(&self) -> Option<u32> {
        self.os_pid
    }

    /// Waits up to `grace` for the process to exit on its own, then kills it; reaps it
    /// either way so no zombie is left.
    ///
    /// # Cancel safety
    /// Nothing is lost, but a dropped stop may leave its work half done: dropped
    /// while it waits (for another stop or kill of this process, or for the process
    /// to exit), the process is left running; dropped after the kill was sent, the
    /// process is killed but maybe not reaped yet. Calling `stop` or
    /// [`kill`](Self::kill) again finishes the job.
    ///
    /// ```
    /// # async fn demo() -> std::io::Result<()> {
    /// let p = cohort_transport::WorkerProcess::new(tokio::process::Command::new("sleep").arg("10").spawn()?);
    /// p.stop(std::time::Duration::from_millis(10)).await;
    /// # Ok(()) }
    /// ```
    pub async fn stop(&self, grace: Duration) {
        self.stop_with_status(grace).await;
    }

    /// As [`stop`](Self::stop), and says how the process ended.
    ///
    /// # Cancel safety
    /// As [`stop`](Self::stop).
    ///
    /// ```
    /// # async fn demo() -> std::io::Result<()> {
    /// let p = cohort_transport::WorkerProcess::new(tokio::process::Command::new("false").spawn()?);
    /// let end = p.stop_with_status(std::time::Duration::from_secs(5)).await;
    /// assert_eq!(end.status.unwrap().code(), Some(1));
    /// assert!(!end.killed);
    /// # Ok(()) }
    /// ```
    pub async fn stop_with_status(&self, grace: Duration) -> Stopped {
        let mut child = self.child.lock().await;
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(status) => Stopped {
                status: status.ok(),
                killed: false,
            },
            Err(_) => {
                let _ = child.start_kill();
                Stopped {
                    status: child.wait().await.ok(),
                    killed: true,
                }
            }
        }
    }

    /// Sends SIGKILL at once and reaps the process.
    ///
    /// # Cancel safety
    /// As [`stop`](Self::stop): dropped before its first poll gets the process's lock,
    /// nothing is sent; dropped after, the process is killed but maybe not reaped
    /// yet. Calling it again finishes the job.
    ///
    /// ```
    /// # async fn demo() -> std::io::Result<()> {
    /// let p = cohort_transport::WorkerProcess::new(tokio::process::Command::new("sleep").arg("10").spawn()?);
    /// p.kill().await;
    /// # Ok(()) }
    /// ```
    pub async fn kill(&self) {
        let mut child = self.child.lock().await;
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// How [`WorkerProcess::stop_with_status`] ended a process.
///
/// ```
/// let s = cohort_transport::manager::Stopped { status: None, killed: true };
/// assert!(s.killed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Its exit status (`None` if it could not be reaped).
    pub status: Option<std::process::ExitStatus>,
    /// Whether it had to be killed (it had not exited within the grace period).
    pub killed: bool,
}

/// How long the default [`ClusterManager::kill`] lets a worker asked to exit take
/// before it kills it.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// What a manager knows about one worker it launched (Julia's `WorkerConfig`).
///
/// ```
/// let c = cohort_transport::WorkerConfig::at("127.0.0.1", 9000);
/// assert_eq!(c.port, Some(9000));
/// ```
#[derive(Clone, Default)]
pub struct WorkerConfig {
    /// The host the master connects to.
    pub host: Option<String>,
    /// The port the master connects to.
    pub port: Option<u16>,
    /// The address other workers use to reach this one, if not `host`. It travels to
    /// the other workers as this worker's address (with `port`), and becomes the
    /// `host` of the config their [`ClusterManager::connect`] gets; for a custom
    /// transport it is whatever its `connect` understands (for
    /// [`UnixManager`](crate::UnixManager), the socket's path).
    pub bind_addr: Option<String>,
    /// The name of the host the worker runs on, as its manager knows it, for host
    /// grouping (`procs(pid)`: the processes on the same host). `None` (the default)
    /// takes the name the worker reports of itself (its `gethostname`); a scheduler's
    /// manager sets the node name the scheduler reports (the Slurm manager of
    /// `cohort-slurm` sets `SLURMD_NODENAME`).
    pub hostname: Option<String>,
    /// The worker's same-host socket, when it announced one
    /// ([`crate::same_host`]; [`LocalManager`](crate::LocalManager) fills it in). The
    /// default [`ClusterManager::connect`] on a process of the worker's host (the
    /// master; other workers, which learn it from the master) connects there instead
    /// of to `host:port`, unless same-host sockets are turned off, and falls back to
    /// `host:port` if that fails. `None` (the default): TCP only.
    pub local: Option<crate::same_host::LocalEndpoint>,
    /// The worker's identity for [`Topology::Custom`].
    pub ident: Option<String>,
    /// With [`Topology::Custom`], the identities this worker connects to.
    pub connect_idents: Vec<String>,
    /// The worker's OS process, when the manager started one.
    pub process: Option<WorkerProcess>,
    /// Anything else the manager wants to keep with the worker.
    pub userdata: Option<Arc<dyn Any + Send + Sync>>,
}

impl WorkerConfig {
    /// A config for a worker listening at `host:port`.
    ///
    /// ```
    /// let c = cohort_transport::WorkerConfig::at("10.0.0.2", 9009);
    /// assert_eq!(c.host.as_deref(), Some("10.0.0.2"));
    /// ```
    pub fn at(host: impl Into<String>, port: u16) -> Self {
        WorkerConfig {
            host: Some(host.into()),
            port: Some(port),
            ..Default::default()
        }
    }
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("bind_addr", &self.bind_addr)
            .field("hostname", &self.hostname)
            .field("local", &self.local)
            .field("ident", &self.ident)
            .field("connect_idents", &self.connect_idents)
            .field("os_pid", &self.process.as_ref().and_then(|p| p.os_pid()))
            .finish()
    }
}

/// What [`ClusterManager::manage`] is told about a worker.
///
/// ```
/// let e = cohort_transport::ManageEvent::Register;
/// assert_ne!(e, cohort_transport::ManageEvent::Deregister);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManageEvent {
    /// The worker has joined the cluster under its pid.
    Register,
    /// The worker is being removed (rmprocs, or it died).
    Deregister,
    /// The user asked to interrupt the worker's running calls.
    Interrupt,
    /// The worker's last resources are being released.
    Finalize,
}

/// Why launching workers failed.
///
/// ```
/// use cohort_transport::{AnnounceFailure, LaunchError};
/// let e = LaunchError::Announce { exe: "worker".into(), cause: AnnounceFailure::Exited };
/// assert!(e.to_string().contains("exited before printing its address"));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The worker executable could not be started.
    #[error("could not start worker executable {exe}: {source}")]
    Spawn {
        /// The executable.
        exe: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A worker this crate's managers started did not announce its address.
    #[error("worker {exe} {cause}")]
    Announce {
        /// The executable.
        exe: String,
        /// What happened instead.
        #[source]
        cause: AnnounceFailure,
    },
    /// A worker started by a custom manager did not announce its address; the text
    /// is the manager's (this crate's managers report [`LaunchError::Announce`]).
    #[error("worker {what}")]
    NoAddress {
        /// What went wrong (exited, timed out, printed garbage).
        what: String,
    },
    /// A remote machine could not be reached or could not start a worker (ssh failed:
    /// unreachable host, authentication refused, executable missing…).
    #[error("cannot start a worker on {host}: {reason}")]
    Remote {
        /// The machine, as `user@host`.
        host: String,
        /// What went wrong, with the remote side's own message where there is one.
        reason: String,
    },
    /// A manager outside this crate failed with an error of its own type: the
    /// source is that error (a scheduler's manager reports the scheduler's refusal
    /// there), and can be downcast to it.
    ///
    /// ```
    /// use cohort_transport::LaunchError;
    /// let e = LaunchError::Manager {
    ///     manager: "slurm",
    ///     source: "srun: error: invalid partition specified: nope".into(),
    /// };
    /// assert_eq!(e.to_string(), "slurm: srun: error: invalid partition specified: nope");
    /// ```
    #[error("{manager}: {source}")]
    Manager {
        /// The manager's short name (`"slurm"`).
        manager: &'static str,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The manager was shut down while workers were still being launched.
    #[error("the cluster manager was shut down during the launch")]
    ManagerClosed,
    /// The escape hatch for custom managers: anything else they report, as text.
    /// This crate's own managers never use it.
    #[error("{0}")]
    Other(String),
}

/// Why a started worker gave no address ([`LaunchError::Announce`]).
///
/// ```
/// let c = cohort_transport::AnnounceFailure::TimedOut { after: std::time::Duration::from_secs(60) };
/// assert_eq!(c.to_string(), "did not print its address within 60s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AnnounceFailure {
    /// Its output ended (it exited) before the address line.
    #[error(
        "exited before printing its address (is it a cohort program that calls cohort::init?)"
    )]
    Exited,
    /// No address line came in time.
    #[error("did not print its address within {after:?}")]
    TimedOut {
        /// How long the manager waited.
        after: Duration,
    },
    /// It exited before the address line: how, and the last lines it printed (this
    /// crate's [`LocalManager`](crate::LocalManager) reports this rather than
    /// [`Exited`](Self::Exited)).
    ///
    /// ```
    /// let c = cohort_transport::AnnounceFailure::ExitedWith {
    ///     status: "exit status: 3".into(),
    ///     output: vec!["error: no such file".into()],
    /// };
    /// assert_eq!(
    ///     c.to_string(),
    ///     "exited before printing its address (exit status: 3); it printed:\n  error: no such file"
    /// );
    /// ```
    #[error("exited before printing its address ({status}){}", printed(output))]
    ExitedWith {
        /// The exit status as the OS says it (`exit status: 3`, `signal: 9 (SIGKILL)`).
        status: String,
        /// The last lines it wrote to stdout or stderr, oldest first.
        output: Vec<String>,
    },
    /// It printed this many lines without the address line, and was given up on
    /// (and killed).
    ///
    /// ```
    /// let c = cohort_transport::AnnounceFailure::TooMuchOutput { lines: 1000 };
    /// assert!(c.to_string().contains("1000 lines"));
    /// ```
    #[error("printed {lines} lines without its address line; given up on")]
    TooMuchOutput {
        /// The lines read.
        lines: usize,
    },
}

/// `"; it printed:\n  line…"` for a failed worker's last lines, or nothing.
fn printed(output: &[String]) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("; it printed:\n  {}", output.join("\n  "))
    }
}

/// Starts `count` workers at once with `launch_one` (process start-up dominates a
/// launch, and it overlaps), sends each one's config on `launched` as soon as it is
/// up, and returns the first failure once all have finished — the body of most
/// [`ClusterManager::launch`]es.
///
/// # Errors
/// The first [`LaunchError`] of `launch_one`; the workers that did start were sent.
///
/// ```
/// # futures::executor::block_on(async {
/// use cohort_transport::{manager::launch_all, WorkerConfig};
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// launch_all(2, &tx, || async { Ok(WorkerConfig::default()) }).await.unwrap();
/// assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok());
/// # });
/// ```
pub async fn launch_all<F, Fut>(
    count: usize,
    launched: &UnboundedSender<WorkerConfig>,
    launch_one: F,
) -> Result<(), LaunchError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<WorkerConfig, LaunchError>>,
{
    let results = futures::future::join_all((0..count).map(|_| async {
        let r = launch_one().await;
        if let Ok(c) = &r {
            let _ = launched.send(c.clone());
        }
        r
    }))
    .await;
    match results.into_iter().find_map(Result::err) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Starts, watches, connects to and stops workers. Implement it to run workers under
/// a scheduler, over another transport, or anywhere else; `cohort-cluster`'s
/// `AddProcs::with_manager(manager)` (then `.launch()` or `.launch_blocking()`) takes
/// any implementation.
///
/// The runtime calls [`launch`](Self::launch) once per `addprocs`, connects to each
/// config sent on `launched` (through [`connect`](Self::connect)), then calls
/// [`manage`](Self::manage) as the worker's life goes on and [`kill`](Self::kill)
/// when it is removed (after it asked the worker to exit).
///
/// ```
/// use cohort_transport::*;
/// use futures::future::BoxFuture;
/// use tokio::sync::mpsc::UnboundedSender;
///
/// /// Workers someone started by hand, listening at known addresses.
/// struct Fixed(Vec<(String, u16)>);
///
/// impl ClusterManager for Fixed {
///     fn launch<'a>(&'a self, _p: &'a LaunchParams, launched: UnboundedSender<WorkerConfig>)
///         -> BoxFuture<'a, Result<(), LaunchError>> {
///         Box::pin(async move {
///             for (h, p) in &self.0 { let _ = launched.send(WorkerConfig::at(h.clone(), *p)); }
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait ClusterManager: Send + Sync + 'static {
    /// Starts `params.count` workers and sends a [`WorkerConfig`] on `launched` for each
    /// as soon as it can be connected to. Returns when every worker has been sent.
    ///
    /// # Errors
    /// A [`LaunchError`] if workers could not be started; configs already sent are
    /// still connected.
    ///
    /// # Cancel safety
    /// Up to the implementation. This crate's managers ([`LocalManager`](crate::LocalManager),
    /// [`SshManager`](crate::SshManager), [`UnixManager`](crate::UnixManager)) are not
    /// cancel-safe: if the future is dropped, the configs already sent on `launched`
    /// stay there, and workers started but not yet sent are neither sent nor killed —
    /// each exits by itself when no master connects to it in time (the worker's wait
    /// for its first message, `worker_timeout`).
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>>;

    /// Told of events in a worker's life. The default does nothing.
    fn manage(&self, pid: u32, config: &WorkerConfig, event: ManageEvent) {
        let _ = (pid, config, event);
    }

    /// Opens a connection to a worker. The default connects to the worker's
    /// same-host socket when the config names one on this host
    /// ([`WorkerConfig::local`], [`same_host::connect_if_local`](crate::same_host::connect_if_local)),
    /// and otherwise (or if that is refused) over TCP to the config's `host:port`
    /// with `TCP_NODELAY`.
    ///
    /// On the master, `config` is the one [`launch`](Self::launch) sent. On a worker
    /// that was handed this manager for its peers (Julia's
    /// `init_worker(cookie, manager)`; cohort's `WorkerOptions::manager`), the
    /// runtime calls it to reach worker `pid`, with a config made from what the master
    /// announced of that worker: `host` is its [`bind_addr`](WorkerConfig::bind_addr)
    /// (or else `host`), with its `port`, `ident` and `local`; no `process` or
    /// `userdata`. A
    /// manager that overrides this for a transport its workers can use for each other
    /// too returns [`WorkerTransport::Custom`] from
    /// [`worker_transport`](Self::worker_transport), one whose workers cannot returns
    /// [`WorkerTransport::MasterOnly`].
    ///
    /// # Errors
    /// The I/O error of the connect, or `InvalidInput` if the config has no address.
    ///
    /// # Cancel safety
    /// Up to the implementation. The default and this crate's managers' are
    /// cancel-safe: a connection made but not returned is closed (for an ssh tunnel,
    /// its ssh process is killed).
    fn connect<'a>(
        &'a self,
        pid: u32,
        config: &'a WorkerConfig,
    ) -> BoxFuture<'a, io::Result<Connection>> {
        let _ = pid;
        Box::pin(async move {
            if let Some(conn) = crate::same_host::connect_if_local(config.local.as_ref()).await {
                return Ok(conn);
            }
            match (&config.host, config.port) {
                (Some(h), Some(p)) => tcp_connect(h, p).await,
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "worker config has no host and port to connect to",
                )),
            }
        })
    }

    /// How the workers this manager starts reach each other. The runtime asks before
    /// it launches anything, and refuses a topology the answer cannot serve.
    ///
    /// The default, [`WorkerTransport::Tcp`], matches the default
    /// [`connect`](Self::connect): workers in worker mode listen on TCP and connect to
    /// each other there. A manager that overrides `connect` says what its workers
    /// use: [`WorkerTransport::Custom`] when their program hands the runtime this
    /// manager for its peers, [`WorkerTransport::MasterOnly`] when they cannot reach
    /// each other (only [`Topology::MasterWorker`] then).
    ///
    /// ```
    /// use cohort_transport::{ClusterManager, LocalManager, UnixManager, WorkerTransport};
    /// assert_eq!(LocalManager::new(1).worker_transport(), WorkerTransport::Tcp);
    /// assert_eq!(UnixManager::new("/tmp/s").worker_transport(), WorkerTransport::Custom("unix"));
    /// ```
    fn worker_transport(&self) -> WorkerTransport {
        WorkerTransport::Tcp
    }

    /// Stops a worker the runtime has already asked to exit. The default waits 2 s for
    /// its process to exit, then kills it — and says so in a `tracing` warning naming
    /// the worker, as Julia's `rmprocs` does.
    ///
    /// # Cancel safety
    /// Up to the implementation. The default is as [`WorkerProcess::stop`]: dropped
    /// early, the process may be left running or unreaped.
    fn kill<'a>(&'a self, pid: u32, config: &'a WorkerConfig) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(p) = &config.process {
                if p.stop_with_status(KILL_GRACE).await.killed {
                    tracing::warn!(
                        pid,
                        "worker {pid} did not exit within {KILL_GRACE:?} of being asked to; killed it"
                    );
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::LaunchParams;

    #[test]
    fn debug_never_prints_the_cookie() {
        let p = LaunchParams {
            cookie: "very-secret-cookie-4711".into(),
            count: 3,
            ..Default::default()
        };
        let shown = format!("{p:?}");
        assert!(!shown.contains("very-secret-cookie-4711"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("count: 3"),
            "{shown}"
        );
        let pretty = format!("{p:#?}");
        assert!(!pretty.contains("4711"), "{pretty}");
    }
}
