//! Adding and removing processes, and asking who is there: `addprocs`, `rmprocs`,
//! `myid`, `nprocs`, `nworkers`, `procs`, `workers`, the cluster cookie.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cohort_transport::{ClusterManager, LaunchParams, LocalManager, ManageEvent, Topology};
use cohort_wire::cookie::Cookie;
use cohort_wire::ids::{Pid, MASTER};

use crate::error::ClusterError;
use crate::shell::launch::launch;
use crate::shell::node::{current, Node};
#[cfg(feature = "tls")]
use crate::shell::tls::TlsMode;

/// Options for adding workers (Julia's `addprocs` keyword arguments), and the launch
/// itself. [`AddProcs::local`] uses [`LocalManager`]; [`AddProcs::with_manager`] any
/// [`ClusterManager`].
///
/// ```no_run
/// use cohort_cluster::{AddProcs, Topology};
/// let pids = AddProcs::local(2)
///     .topology(Topology::MasterWorker)
///     .env("RUST_BACKTRACE", "1")
///     .launch_blocking()
///     .unwrap();
/// assert_eq!(pids.len(), 2);
/// ```
///
/// Its `Debug` shows the options (never the cookie or a TLS key):
///
/// ```
/// let a = cohort_cluster::AddProcs::local(2);
/// assert!(format!("{a:?}").contains("count: 2"));
/// ```
#[derive(Clone)]
pub struct AddProcs {
    manager: Arc<dyn ClusterManager>,
    params: LaunchParams,
    /// Whether `manager` is the [`LocalManager`] that [`local`](Self::local) made
    /// (which [`bind_cores`](Self::bind_cores) may replace).
    local: bool,
    /// [`bind_cores`](Self::bind_cores) asked of a manager that is not local: the
    /// launch fails.
    bind_elsewhere: bool,
    /// [`tls`](Self::tls)'s mode, if any.
    #[cfg(feature = "tls")]
    tls: Option<TlsMode>,
}

impl std::fmt::Debug for AddProcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so that a new field cannot be forgotten here.
        let AddProcs {
            manager,
            params,
            local,
            bind_elsewhere,
            #[cfg(feature = "tls")]
            tls,
        } = self;
        // `LaunchParams` and `ClusterTls` print neither the cookie nor the key.
        let mut d = f.debug_struct("AddProcs");
        d.field("manager", &manager.worker_transport().to_string())
            .field("params", params)
            .field("local", local)
            .field("bind_elsewhere", bind_elsewhere);
        #[cfg(feature = "tls")]
        d.field("tls", tls);
        d.finish()
    }
}

impl AddProcs {
    /// One worker per CPU thread of this host (Julia's `addprocs()` with no count,
    /// `Sys.CPU_THREADS` workers), started by [`LocalManager`].
    ///
    /// ```
    /// // As many workers as `std::thread::available_parallelism()`.
    /// let _ = cohort_cluster::AddProcs::local_per_cpu_thread();
    /// ```
    pub fn local_per_cpu_thread() -> Self {
        Self::local(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        )
    }

    /// `count` workers on this host, started by [`LocalManager`].
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(4);
    /// ```
    pub fn local(count: usize) -> Self {
        AddProcs {
            manager: Arc::new(LocalManager::new(count)),
            params: LaunchParams {
                count,
                ..Default::default()
            },
            local: true,
            bind_elsewhere: false,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Workers started by `manager` (the count is the manager's business unless set
    /// with [`count`](Self::count)).
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::with_manager(cohort_transport::LocalManager::new(1));
    /// ```
    pub fn with_manager(manager: impl ClusterManager) -> Self {
        AddProcs {
            manager: Arc::new(manager),
            params: LaunchParams::default(),
            local: false,
            bind_elsewhere: false,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// How many workers to start.
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(1).count(3);
    /// ```
    pub fn count(mut self, n: usize) -> Self {
        self.params.count = n;
        self
    }

    /// Binds each local worker, and every thread in it, to one CPU of those this
    /// process may run on, in turn (as `mpirun --bind-to core`; see
    /// [`LocalManager::bind_cores`]). For workers started by [`local`](Self::local);
    /// a manager of one's own binds (or not) itself. Off by default, as in Julia.
    ///
    /// ```no_run
    /// let pids = cohort_cluster::AddProcs::local(2).bind_cores(true).launch_blocking().unwrap();
    /// ```
    ///
    /// With [`with_manager`](Self::with_manager) the launch fails with
    /// [`ClusterError::BindUnsupported`] rather than start unbound workers.
    pub fn bind_cores(mut self, on: bool) -> Self {
        if self.local {
            self.manager = Arc::new(LocalManager::new(self.params.count).bind_cores(on));
        } else {
            self.bind_elsewhere = on;
        }
        self
    }

    /// The worker executable (default: this program, in worker mode).
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(1).executable("target/release/cohort-worker");
    /// ```
    pub fn executable(mut self, exe: impl Into<PathBuf>) -> Self {
        self.params.executable = Some(exe.into());
        self
    }

    /// Extra arguments for the workers (Julia's `exeflags`).
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(1).args(["--verbose"]);
    /// ```
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.params
            .exeflags
            .extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable for the workers.
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(1).env("RUST_LOG", "debug");
    /// ```
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.env.push((key.into(), value.into()));
        self
    }

    /// The workers' working directory.
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(1).dir("/tmp");
    /// ```
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.params.dir = Some(dir.into());
        self
    }

    /// How workers connect to each other (default all-to-all).
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(1).topology(cohort_cluster::Topology::MasterWorker);
    /// ```
    pub fn topology(mut self, t: Topology) -> Self {
        self.params.topology = t;
        self
    }

    /// With all-to-all, connect worker pairs at first use (true, the default) or at
    /// once. The setting is the cluster's: adding workers with the other setting while
    /// all-to-all workers run fails with [`ClusterError::LazyMismatch`], as in Julia.
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(1).lazy(false);
    /// ```
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.params.lazy = lazy;
        self
    }

    /// Bind workers to 127.0.0.1 (true, the default) or to every interface.
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(1).restrict(false);
    /// ```
    pub fn restrict(mut self, restrict: bool) -> Self {
        self.params.restrict = restrict;
        self
    }

    /// How long a started worker waits for this process to connect before it gives
    /// up (sets `COHORT_WORKER_TIMEOUT` for it).
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(1).worker_timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn worker_timeout(mut self, t: Duration) -> Self {
        self.params.worker_timeout = Some(t);
        self
    }

    /// How long each started worker lets a connection take to authenticate (TLS
    /// and the cookie handshake) before dropping it (default 10 s; sets
    /// [`HANDSHAKE_TIMEOUT_ENV`](crate::HANDSHAKE_TIMEOUT_ENV) for it). A shorter one
    /// frees the slot of a connection that never speaks sooner; it must still cover a
    /// real peer's handshake over the slowest link.
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(1).handshake_timeout(std::time::Duration::from_secs(2));
    /// ```
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.params.env.push((
            crate::HANDSHAKE_TIMEOUT_ENV.to_string(),
            t.as_secs_f64().to_string(),
        ));
        self
    }

    /// At most `n` connections in their set-up phase at once on each started worker
    /// (default [`DEFAULT_MAX_HANDSHAKES`](crate::DEFAULT_MAX_HANDSHAKES); sets
    /// [`MAX_HANDSHAKES_ENV`](crate::MAX_HANDSHAKES_ENV) for it); more wait in its
    /// listener's backlog.
    ///
    /// ```
    /// let _ = cohort_cluster::AddProcs::local(1).max_handshakes(16);
    /// ```
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.params
            .env
            .push((crate::MAX_HANDSHAKES_ENV.to_string(), n.to_string()));
        self
    }

    /// Runs every connection of the cluster — master to worker and worker to
    /// worker — over mutually authenticated TLS 1.3, with credentials generated here
    /// or loaded from the user's files (see [`TlsMode`]). The launched workers get
    /// them over stdin, after the cookie. Once on, TLS stays on for every later
    /// launch of this process, with the same credentials. (Feature `tls`, on by
    /// default.)
    ///
    /// ```no_run
    /// use cohort_cluster::{AddProcs, TlsMode};
    /// let pids = AddProcs::local(2).tls(TlsMode::Generate).launch_blocking().unwrap();
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = Some(mode);
        self
    }

    /// Starts the workers, connects to each, and returns their pids once all have
    /// joined.
    ///
    /// # Errors
    /// [`ClusterError::NotMaster`] on a worker; [`ClusterError::BindUnsupported`] for
    /// [`bind_cores`](Self::bind_cores) with a manager of one's own;
    /// [`ClusterError::Launch`] if the manager
    /// could not start them, or the TLS credentials could not be made or loaded (or
    /// TLS was asked for in a cluster that already has plaintext workers);
    /// [`ClusterError::Connect`] if one could not be reached or failed the TLS or
    /// cookie handshake. Workers that did join stay in the cluster.
    ///
    /// The workers join the [current](crate::Cluster::current) cluster (as of this
    /// call); [`Cluster::launch`](crate::Cluster::launch) adds them to a given one.
    /// # Cancel safety
    /// Not cancel-safe in effect: the launch runs as a task of cohort's runtime and
    /// goes on if this future is dropped; the workers it starts still join.
    ///
    #[cohort_macros::twin(
        no_run,
        example = " let pids = cohort_cluster::AddProcs::local(2).launch_blocking().unwrap();"
    )]
    pub fn launch(self) -> impl std::future::Future<Output = Result<Vec<Pid>, ClusterError>> {
        self.launch_in(current())
    }

    /// [`launch`](Self::launch) into `n`'s cluster.
    pub(crate) async fn launch_in(self, n: Arc<Node>) -> Result<Vec<Pid>, ClusterError> {
        if self.bind_elsewhere {
            return Err(ClusterError::BindUnsupported);
        }
        #[cfg(feature = "tls")]
        let launching = launch(n, self.manager, self.params, self.tls);
        #[cfg(not(feature = "tls"))]
        let launching = launch(n, self.manager, self.params);
        crate::runtime::handle()
            .spawn(launching)
            .await
            .unwrap_or_else(|_| {
                Err(ClusterError::Connect {
                    addr: String::new(),
                    source: crate::ConnectError::TaskLost,
                })
            })
    }
}

/// Adds `n` workers on this host with default options (Julia's `addprocs(n)`).
///
/// # Errors
/// As [`AddProcs::launch`].
///
/// # Cancel safety
/// As [`AddProcs::launch`].
///
/// ```no_run
/// # async fn demo() {
/// let pids = cohort_cluster::addprocs(2).await.unwrap();
/// # }
/// ```
#[cohort_macros::twin_fn(
    no_run,
    example = " let pids = cohort_cluster::blocking::addprocs(2).unwrap();"
)]
pub fn addprocs(n: usize) -> impl std::future::Future<Output = Result<Vec<Pid>, ClusterError>> {
    AddProcs::local(n).launch()
}

/// How [`rmprocs`] ended.
///
/// ```
/// assert_ne!(cohort_cluster::RmStatus::Ok, cohort_cluster::RmStatus::TimedOut);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RmStatus {
    /// Every worker has exited.
    Ok,
    /// Some had not exited when `waitfor` ran out (they are killed in the background).
    TimedOut,
}

/// Removes workers (Julia's `rmprocs(pids; waitfor)`): they leave the cluster at once,
/// are asked to exit, and are killed if they have not exited after a grace period.
/// Waits up to `waitfor` (forever with `None`) for them to be gone.
///
/// # Errors
/// [`ClusterError::NotMaster`] on a worker; [`ClusterError::NotAWorker`] for a pid
/// that is not a worker (nothing is removed then).
///
/// # Cancel safety
/// Cancel-safe: the workers are out of the cluster when this is called, and their
/// removal finishes in the background if the future is dropped.
///
/// ```no_run
/// # async fn demo() {
/// let pids = cohort_cluster::addprocs(2).await.unwrap();
/// cohort_cluster::rmprocs(&pids, None).await.unwrap();
/// # }
/// ```
#[cohort_macros::twin_fn(
    no_run,
    example = " let pids = cohort_cluster::blocking::addprocs(1).unwrap();
 cohort_cluster::blocking::rmprocs(&pids, None).unwrap();"
)]
pub fn rmprocs(
    pids: &[Pid],
    waitfor: Option<Duration>,
) -> impl std::future::Future<Output = Result<RmStatus, ClusterError>> {
    let task = rmprocs_nowait(pids);
    wait_removal(task, waitfor)
}

/// Waits for a removal started by [`rmprocs_nowait`] (up to `waitfor`).
pub(crate) async fn wait_removal(
    task: Result<RmprocsTask, ClusterError>,
    waitfor: Option<Duration>,
) -> Result<RmStatus, ClusterError> {
    let task = task?;
    match waitfor {
        None => {
            task.wait().await;
            Ok(RmStatus::Ok)
        }
        // The timer runs on cohort's runtime, so this works from any executor.
        Some(d) => Ok(crate::runtime::handle()
            .spawn(async move {
                match tokio::time::timeout(d, task.wait()).await {
                    Ok(()) => RmStatus::Ok,
                    Err(_) => RmStatus::TimedOut,
                }
            })
            .await
            .unwrap_or(RmStatus::TimedOut)),
    }
}

/// The removal started by [`rmprocs_nowait`] (Julia's `rmprocs(...; waitfor=0)`
/// returning a task).
#[derive(Debug)]
pub struct RmprocsTask {
    handle: tokio::task::JoinHandle<()>,
}

impl RmprocsTask {
    /// Waits until every removed worker has exited.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future stops only the waiting; the removal goes on.
    ///
    /// ```no_run
    /// # async fn demo() {
    /// let pids = cohort_cluster::addprocs(1).await.unwrap();
    /// cohort_cluster::rmprocs_nowait(&pids).unwrap().wait().await;
    /// # }
    /// ```
    #[cohort_macros::twin(
        no_run,
        example = " let pids = cohort_cluster::blocking::addprocs(1).unwrap();
 cohort_cluster::rmprocs_nowait(&pids).unwrap().wait_blocking();"
    )]
    pub async fn wait(self) {
        let _ = self.handle.await;
    }

    /// Whether the removal has finished.
    ///
    /// ```no_run
    /// let pids = cohort_cluster::blocking::addprocs(1).unwrap();
    /// let t = cohort_cluster::rmprocs_nowait(&pids).unwrap();
    /// let _ = t.is_finished();
    /// ```
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Starts removing workers and returns at once; the workers are out of `workers()`
/// already.
///
/// # Errors
/// As [`rmprocs`].
///
/// ```no_run
/// let pids = cohort_cluster::blocking::addprocs(1).unwrap();
/// let task = cohort_cluster::rmprocs_nowait(&pids).unwrap();
/// task.wait_blocking();
/// ```
pub fn rmprocs_nowait(pids: &[Pid]) -> Result<RmprocsTask, ClusterError> {
    rmprocs_nowait_in(&current(), pids)
}

/// [`rmprocs_nowait`] in `n`'s cluster.
pub(crate) fn rmprocs_nowait_in(n: &Node, pids: &[Pid]) -> Result<RmprocsTask, ClusterError> {
    if n.is_worker() {
        return Err(ClusterError::NotMaster);
    }
    if let Some(bad) = n.peek(|c| {
        pids.iter()
            .copied()
            .find(|p| c.membership().worker(*p).is_none())
    }) {
        return Err(ClusterError::NotAWorker(bad));
    }
    // This task stops them (with `Finalize`), not the core's removal path.
    let removed: Vec<_> = {
        let mut managed = n.managed.write();
        pids.iter()
            .filter_map(|p| managed.remove(p).map(|m| (*p, m)))
            .collect()
    };
    n.observe.exiting(pids);
    n.with_core(|c| c.remove_workers(pids))
        .map_err(ClusterError::NotAWorker)?;
    let handle = crate::runtime::handle().spawn(async move {
        let kills = removed
            .into_iter()
            .map(|(pid, (manager, config))| async move {
                manager.manage(pid, &config, ManageEvent::Deregister);
                manager.kill(pid, &config).await;
                manager.manage(pid, &config, ManageEvent::Finalize);
            });
        futures::future::join_all(kills).await;
    });
    Ok(RmprocsTask { handle })
}

/// What a process is in its cluster (Julia's `myrole()`: `:master` or `:worker`).
///
/// ```
/// assert_eq!(cohort_cluster::myrole(), cohort_cluster::ProcessRole::Master);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ProcessRole {
    /// The master (pid 1): adds and removes workers.
    Master,
    /// A worker (pid 2, 3, …).
    Worker,
}

pub(crate) fn role_of(n: &crate::shell::node::Node) -> ProcessRole {
    if n.is_worker() {
        ProcessRole::Worker
    } else {
        ProcessRole::Master
    }
}

/// Whether this process is the master or a worker of the current cluster (Julia's
/// `myrole()`).
///
/// ```
/// assert_eq!(cohort_cluster::myrole(), cohort_cluster::ProcessRole::Master);
/// ```
pub fn myrole() -> ProcessRole {
    role_of(&current())
}

/// This process's id: 1 on the master, 2, 3, … on workers.
///
/// ```
/// assert_eq!(cohort_cluster::myid(), 1);
/// ```
pub fn myid() -> Pid {
    current().myid()
}

/// Every process id, the master's included (Julia's `procs()`).
///
/// ```
/// assert_eq!(cohort_cluster::procs(), vec![1]);
/// ```
pub fn procs() -> Vec<Pid> {
    current().procs()
}

/// The processes on the same host as `pid` (Julia's `procs(pid)`), by host name.
///
/// ```
/// assert_eq!(cohort_cluster::procs_of(1), vec![1]);
/// ```
pub fn procs_of(pid: Pid) -> Vec<Pid> {
    procs_of_in(&current(), pid)
}

/// [`procs_of`] in `n`'s cluster.
pub(crate) fn procs_of_in(n: &Node, pid: Pid) -> Vec<Pid> {
    let host_of = |p: Pid| -> Option<String> {
        if p == n.myid() && n.is_worker() {
            // A worker is not in its own table of the others.
            Some(cohort_transport::listen::group_hostname())
        } else if p == MASTER {
            Some(n.master_hostname.read().clone())
        } else {
            n.peek(|c| c.membership().worker(p).map(|i| i.hostname.clone()))
        }
    };
    let Some(h) = host_of(pid) else {
        return Vec::new();
    };
    n.procs()
        .into_iter()
        .filter(|p| host_of(*p).as_deref() == Some(h.as_str()))
        .collect()
}

/// The number of processes, the master's included.
///
/// ```
/// assert_eq!(cohort_cluster::nprocs(), 1);
/// ```
pub fn nprocs() -> usize {
    current().procs().len()
}

/// The worker pids; with no workers, `[1]` (the master counts as the worker then).
///
/// ```
/// assert_eq!(cohort_cluster::workers(), vec![1]);
/// ```
pub fn workers() -> Vec<Pid> {
    current().workers()
}

/// The number of workers (`nprocs() - 1`, or 1 when there are none).
///
/// ```
/// assert_eq!(cohort_cluster::nworkers(), 1);
/// ```
pub fn nworkers() -> usize {
    current().workers().len()
}

/// The cluster cookie (random unless set).
///
/// ```
/// assert!(!cohort_cluster::cluster_cookie().expose().is_empty());
/// ```
pub fn cluster_cookie() -> Cookie {
    current().cookie()
}

/// Sets the cluster cookie, before any worker is added.
///
/// # Errors
/// [`ClusterError::Cookie`] for an invalid cookie; [`ClusterError::CookieInUse`] once
/// workers have joined.
///
/// ```
/// cohort_cluster::set_cluster_cookie("my-cluster-secret").unwrap();
/// assert_eq!(cohort_cluster::cluster_cookie().expose(), "my-cluster-secret");
/// ```
pub fn set_cluster_cookie(cookie: &str) -> Result<(), ClusterError> {
    set_cookie_in(&current(), cookie)
}

/// [`set_cluster_cookie`] in `n`'s cluster.
pub(crate) fn set_cookie_in(n: &Node, cookie: &str) -> Result<(), ClusterError> {
    let c = Cookie::new(cookie)?;
    if n.peek(|c| c.membership().worker_infos().next().is_some()) || n.is_worker() {
        return Err(ClusterError::CookieInUse);
    }
    n.set_cookie(c);
    Ok(())
}
