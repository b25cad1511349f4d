//! Adding and removing processes, and asking who is there: `addprocs`, `rmprocs`,
//! `myid`, `nprocs`, `nworkers`, `procs`, `workers`, the cluster cookie.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cohort_transport::{
    ClusterManager, LaunchParams, LocalManager, ManageEvent, Topology, WorkerConfig,
};
use cohort_wire::cookie::Cookie;
use cohort_wire::ids::{Pid, MASTER};
use cohort_wire::proto::{self, envelope::Kind, Envelope, Role};

use crate::error::ClusterError;
use crate::node::{node, WorkerRecord};
use crate::peer::{handshake, read_one, write_one, Peer};
use crate::tls::TlsMode;

/// How long a new worker may take to finish joining.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

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
#[derive(Clone)]
pub struct AddProcs {
    manager: Arc<dyn ClusterManager>,
    params: LaunchParams,
    tls: Option<TlsMode>,
}

impl AddProcs {
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
    /// once.
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

    /// Runs every connection of the cluster — master to worker and worker to
    /// worker — over mutually authenticated TLS 1.3, with credentials generated here
    /// or loaded from the user's files (see [`TlsMode`]). The launched workers get
    /// them over stdin, after the cookie. Once on, TLS stays on for every later
    /// launch of this process, with the same credentials.
    ///
    /// ```no_run
    /// use cohort_cluster::{AddProcs, TlsMode};
    /// let pids = AddProcs::local(2).tls(TlsMode::Generate).launch_blocking().unwrap();
    /// ```
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = Some(mode);
        self
    }

    /// Starts the workers, connects to each, and returns their pids once all have
    /// joined.
    ///
    /// # Errors
    /// [`ClusterError::NotMaster`] on a worker; [`ClusterError::Launch`] if the manager
    /// could not start them, or the TLS credentials could not be made or loaded (or
    /// TLS was asked for in a cluster that already has plaintext workers);
    /// [`ClusterError::Connect`] if one could not be reached or failed the TLS or
    /// cookie handshake. Workers that did join stay in the cluster.
    pub async fn launch(self) -> Result<Vec<Pid>, ClusterError> {
        crate::runtime::handle()
            .spawn(launch(self.manager, self.params, self.tls))
            .await
            .unwrap_or_else(|e| {
                Err(ClusterError::Connect {
                    addr: String::new(),
                    reason: e.to_string(),
                })
            })
    }

    /// Blocking form of [`launch`](Self::launch).
    ///
    /// # Errors
    /// As [`launch`](Self::launch).
    pub fn launch_blocking(self) -> Result<Vec<Pid>, ClusterError> {
        crate::runtime::block_on(launch(self.manager, self.params, self.tls))
    }
}

/// Serializes the join phase: each new worker is told a consistent membership.
static JOIN_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn launch(
    manager: Arc<dyn ClusterManager>,
    mut params: LaunchParams,
    tls: Option<TlsMode>,
) -> Result<Vec<Pid>, ClusterError> {
    let n = node();
    if n.is_worker() {
        return Err(ClusterError::NotMaster);
    }
    let has_workers = n.workers().iter().any(|&p| p != MASTER);
    params.tls = crate::tls::resolve(tls, has_workers)
        .map_err(|e| ClusterError::Launch(cohort_transport::LaunchError::Other(e)))?;
    params.cookie = n.cookie().expose().to_string();
    *n.topology.write() = (params.topology, params.lazy);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let m = manager.clone();
    let p = params.clone();
    let launcher = tokio::spawn(async move { m.launch(&p, tx).await });
    let mut joins = Vec::new();
    while let Some(config) = rx.recv().await {
        joins.push(tokio::spawn(join_worker(
            manager.clone(),
            config,
            params.clone(),
        )));
    }
    let launched = launcher
        .await
        .unwrap_or_else(|e| Err(cohort_transport::LaunchError::Other(e.to_string())));
    let mut pids = Vec::new();
    let mut first_err = None;
    for j in joins {
        match j.await {
            Ok(Ok(pid)) => pids.push(pid),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(ClusterError::Connect {
                    addr: String::new(),
                    reason: e.to_string(),
                });
            }
        }
    }
    launched?;
    if let Some(e) = first_err {
        return Err(e);
    }
    pids.sort_unstable();
    Ok(pids)
}

async fn join_worker(
    manager: Arc<dyn ClusterManager>,
    config: WorkerConfig,
    params: LaunchParams,
) -> Result<Pid, ClusterError> {
    let n = node();
    let addr = format!(
        "{}:{}",
        config.host.as_deref().unwrap_or("?"),
        config.port.unwrap_or(0)
    );
    let fail = |reason: String| ClusterError::Connect {
        addr: addr.clone(),
        reason,
    };
    let pid = n
        .next_pid
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let conn = match manager.connect(pid, &config).await {
        Ok(c) => c,
        Err(e) => {
            manager.kill(pid, &config).await;
            return Err(fail(e.to_string()));
        }
    };
    // TLS (when on) goes under the cookie handshake.
    let conn = match crate::tls::client(conn).await {
        Ok(c) => c,
        Err(e) => {
            manager.kill(pid, &config).await;
            return Err(fail(e));
        }
    };
    let mut est = match handshake(conn, Role::Connector).await {
        Ok(e) => e,
        Err(e) => {
            manager.kill(pid, &config).await;
            return Err(fail(e));
        }
    };
    let _serial = JOIN_LOCK.lock().await;
    let (known, custom_links): (Vec<proto::WorkerInfo>, Vec<proto::WorkerInfo>) = {
        let workers = n.workers.read();
        let known = workers.values().map(|r| r.info.clone()).collect();
        // Custom topology: the new worker connects to every existing worker it names in
        // its connect_idents, and to every existing worker that names it in theirs, so
        // each wanted link is made exactly once, by whichever end joins later.
        let me = config.ident.as_deref().unwrap_or("");
        let links = workers
            .values()
            .filter(|r| {
                let wants_it = config.connect_idents.contains(&r.info.ident);
                let wanted_by = !me.is_empty()
                    && r.managed
                        .as_ref()
                        .is_some_and(|(_, c)| c.connect_idents.iter().any(|i| i == me));
                !r.info.ident.is_empty() && (wants_it || wanted_by)
            })
            .map(|r| r.info.clone())
            .collect();
        (known, links)
    };
    let connect_now = match params.topology {
        Topology::AllToAll if !params.lazy => known.clone(),
        Topology::Custom => custom_links,
        _ => Vec::new(),
    };
    let join = proto::Join {
        pid,
        topology: wire_topology(params.topology) as i32,
        lazy: params.lazy,
        connect_now,
        known: if params.topology == Topology::MasterWorker {
            Vec::new()
        } else {
            known
        },
        master_hostname: n.master_hostname.read().clone(),
        connect_idents: config.connect_idents.clone(),
    };
    let joined = async {
        write_one(
            &mut est,
            &Envelope {
                kind: Some(Kind::Join(join)),
            },
        )
        .await?;
        match read_one(&mut est, JOIN_TIMEOUT).await?.kind {
            Some(Kind::JoinComplete(jc)) => Ok(jc),
            _ => Err("expected JoinComplete".to_string()),
        }
    }
    .await;
    let jc = match joined {
        Ok(jc) => jc,
        Err(e) => {
            manager.kill(pid, &config).await;
            return Err(fail(e));
        }
    };
    let info = proto::WorkerInfo {
        pid,
        host: config
            .bind_addr
            .clone()
            .or_else(|| config.host.clone())
            .unwrap_or_default(),
        port: u32::from(config.port.unwrap_or(0)),
        hostname: jc.hostname,
        ident: config.ident.clone().unwrap_or_default(),
    };
    n.workers.write().insert(
        pid,
        WorkerRecord {
            info: info.clone(),
            managed: Some((manager.clone(), config.clone())),
        },
    );
    Peer::register(pid, est);
    manager.manage(pid, &config, ManageEvent::Register);
    if params.topology != Topology::MasterWorker {
        broadcast(
            pid,
            Envelope {
                kind: Some(Kind::PeerUpdate(proto::PeerUpdate {
                    added: vec![info],
                    removed: vec![],
                })),
            },
        );
    }
    Ok(pid)
}

fn wire_topology(t: Topology) -> proto::Topology {
    match t {
        Topology::AllToAll => proto::Topology::AllToAll,
        Topology::MasterWorker => proto::Topology::MasterWorker,
        Topology::Custom => proto::Topology::Custom,
    }
}

pub(crate) fn topology_from_wire(t: proto::Topology) -> Topology {
    match t {
        proto::Topology::MasterWorker => Topology::MasterWorker,
        proto::Topology::Custom => Topology::Custom,
        _ => Topology::AllToAll,
    }
}

/// Sends `env` to every connected worker except `except`.
pub(crate) fn broadcast(except: Pid, env: Envelope) {
    let peers: Vec<_> = node()
        .peers
        .read()
        .iter()
        .filter(|(p, _)| **p != except && **p != MASTER)
        .map(|(_, peer)| peer.clone())
        .collect();
    for p in peers {
        let _ = p.send(&env);
    }
}

/// Adds `n` workers on this host with default options (Julia's `addprocs(n)`).
///
/// # Errors
/// As [`AddProcs::launch`].
///
/// ```no_run
/// # async fn demo() {
/// let pids = cohort_cluster::addprocs(2).await.unwrap();
/// # }
/// ```
pub async fn addprocs(n: usize) -> Result<Vec<Pid>, ClusterError> {
    AddProcs::local(n).launch().await
}

/// Blocking form of [`addprocs`].
///
/// # Errors
/// As [`AddProcs::launch`].
///
/// ```no_run
/// let pids = cohort_cluster::addprocs_blocking(2).unwrap();
/// ```
pub fn addprocs_blocking(n: usize) -> Result<Vec<Pid>, ClusterError> {
    AddProcs::local(n).launch_blocking()
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
/// ```no_run
/// # async fn demo() {
/// let pids = cohort_cluster::addprocs(2).await.unwrap();
/// cohort_cluster::rmprocs(&pids, None).await.unwrap();
/// # }
/// ```
pub async fn rmprocs(pids: &[Pid], waitfor: Option<Duration>) -> Result<RmStatus, ClusterError> {
    let task = rmprocs_nowait(pids)?;
    match waitfor {
        None => {
            task.wait().await;
            Ok(RmStatus::Ok)
        }
        Some(d) => match tokio::time::timeout(d, task.wait()).await {
            Ok(()) => Ok(RmStatus::Ok),
            Err(_) => Ok(RmStatus::TimedOut),
        },
    }
}

/// Blocking form of [`rmprocs`].
///
/// # Errors
/// As [`rmprocs`].
///
/// ```no_run
/// let pids = cohort_cluster::addprocs_blocking(1).unwrap();
/// cohort_cluster::rmprocs_blocking(&pids, None).unwrap();
/// ```
pub fn rmprocs_blocking(pids: &[Pid], waitfor: Option<Duration>) -> Result<RmStatus, ClusterError> {
    let pids = pids.to_vec();
    crate::runtime::block_on(async move { rmprocs(&pids, waitfor).await })
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
    /// ```no_run
    /// # async fn demo() {
    /// let pids = cohort_cluster::addprocs(1).await.unwrap();
    /// cohort_cluster::rmprocs_nowait(&pids).unwrap().wait().await;
    /// # }
    /// ```
    pub async fn wait(self) {
        let _ = self.handle.await;
    }

    /// Whether the removal has finished.
    ///
    /// ```no_run
    /// let pids = cohort_cluster::addprocs_blocking(1).unwrap();
    /// let t = cohort_cluster::rmprocs_nowait(&pids).unwrap();
    /// let _ = t.is_finished();
    /// ```
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Blocking form of [`wait`](Self::wait).
    ///
    /// ```no_run
    /// let pids = cohort_cluster::addprocs_blocking(1).unwrap();
    /// cohort_cluster::rmprocs_nowait(&pids).unwrap().wait_blocking();
    /// ```
    pub fn wait_blocking(self) {
        let _ = futures::executor::block_on(self.handle);
    }
}

/// Starts removing workers and returns at once; the workers are out of `workers()`
/// already.
///
/// # Errors
/// As [`rmprocs`].
///
/// ```no_run
/// let pids = cohort_cluster::addprocs_blocking(1).unwrap();
/// let task = cohort_cluster::rmprocs_nowait(&pids).unwrap();
/// task.wait_blocking();
/// ```
pub fn rmprocs_nowait(pids: &[Pid]) -> Result<RmprocsTask, ClusterError> {
    let n = node();
    if n.is_worker() {
        return Err(ClusterError::NotMaster);
    }
    {
        let workers = n.workers.read();
        if let Some(bad) = pids.iter().find(|p| !workers.contains_key(p)) {
            return Err(ClusterError::NotAWorker(*bad));
        }
    }
    // Ask them to exit first, while they still count as connected.
    for p in pids {
        let _ = n.send(
            *p,
            &Envelope {
                kind: Some(Kind::Exit(proto::Exit {})),
            },
        );
    }
    let mut removed = Vec::new();
    {
        let mut workers = n.workers.write();
        for p in pids {
            if let Some(r) = workers.remove(p) {
                removed.push((*p, r));
            }
            n.exited.write().insert(*p);
        }
    }
    let update = Envelope {
        kind: Some(Kind::PeerUpdate(proto::PeerUpdate {
            added: vec![],
            removed: pids.to_vec(),
        })),
    };
    broadcast(0, update);
    let handle = crate::runtime::handle().spawn(async move {
        let kills = removed.into_iter().map(|(pid, rec)| async move {
            if let Some((manager, config)) = rec.managed {
                manager.manage(pid, &config, ManageEvent::Deregister);
                manager.kill(pid, &config).await;
                manager.manage(pid, &config, ManageEvent::Finalize);
            }
        });
        futures::future::join_all(kills).await;
    });
    Ok(RmprocsTask { handle })
}

/// This process's id: 1 on the master, 2, 3, … on workers.
///
/// ```
/// assert_eq!(cohort_cluster::myid(), 1);
/// ```
pub fn myid() -> Pid {
    node().myid()
}

/// Every process id, the master's included (Julia's `procs()`).
///
/// ```
/// assert_eq!(cohort_cluster::procs(), vec![1]);
/// ```
pub fn procs() -> Vec<Pid> {
    node().procs()
}

/// The processes on the same host as `pid` (Julia's `procs(pid)`), by host name.
///
/// ```
/// assert_eq!(cohort_cluster::procs_of(1), vec![1]);
/// ```
pub fn procs_of(pid: Pid) -> Vec<Pid> {
    let n = node();
    let host_of = |p: Pid| -> Option<String> {
        if p == n.myid() && n.is_worker() {
            // A worker is not in its own table of the others.
            Some(cohort_transport::listen::hostname())
        } else if p == MASTER {
            Some(n.master_hostname.read().clone())
        } else {
            n.workers.read().get(&p).map(|r| r.info.hostname.clone())
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
    node().procs().len()
}

/// The worker pids; with no workers, `[1]` (the master counts as the worker then).
///
/// ```
/// assert_eq!(cohort_cluster::workers(), vec![1]);
/// ```
pub fn workers() -> Vec<Pid> {
    node().workers()
}

/// The number of workers (`nprocs() - 1`, or 1 when there are none).
///
/// ```
/// assert_eq!(cohort_cluster::nworkers(), 1);
/// ```
pub fn nworkers() -> usize {
    node().workers().len()
}

/// The cluster cookie (random unless set).
///
/// ```
/// assert!(!cohort_cluster::cluster_cookie().expose().is_empty());
/// ```
pub fn cluster_cookie() -> Cookie {
    node().cookie()
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
    let c = Cookie::new(cookie)?;
    let n = node();
    if !n.workers.read().is_empty() || n.is_worker() {
        return Err(ClusterError::CookieInUse);
    }
    n.set_cookie(c);
    Ok(())
}
