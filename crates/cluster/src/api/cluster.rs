//! [`Cluster`]: a handle to one cluster this process belongs to — the explicit
//! instance beside the Julia-style free functions (rayon's `ThreadPool` beside its
//! global pool is the model).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tls")]
use cohort_transport::tls::ClusterTls;
use cohort_wire::cookie::Cookie;
use cohort_wire::ids::Pid;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::builtins::{stats_in, stats_of_in, Stats};
use crate::api::call::{
    remote_do_in, remotecall_fetch_in, remotecall_in, remotecall_wait_in, spawnat_in, Target,
};
use crate::api::channel::{ChannelValue, RemoteChannel};
use crate::api::future::Future;
use crate::api::procs::{
    procs_of_in, rmprocs_nowait_in, set_cookie_in, wait_removal, AddProcs, RmStatus, RmprocsTask,
};
use crate::error::{CallError, ClusterError};
use crate::registry::RemoteFn;
use crate::shell::node::{current, enter, global, Node};

/// A cluster this process belongs to: its workers, its references, its connections.
///
/// Every process has a default cluster, [`Cluster::global`]: the one a worker serves,
/// and the one the free functions ([`myid`](crate::myid),
/// [`remotecall`](crate::remotecall), [`addprocs`](crate::addprocs), …) use. A master
/// can make more with [`Cluster::new`], each with its own workers, cookie and TLS
/// setting, independent of the others (tests use one each, so they need no
/// process-wide lock). Handles — [`Future`], [`RemoteChannel`], and the pools and
/// shared arrays of the layers above — remember the cluster they belong to
/// ([`Future::cluster`]).
///
/// Inside a call a worker runs, and while a handle arrives in a message, the
/// cluster that received it is the thread's [current](Cluster::current) one;
/// [`install`](Cluster::install) makes a cluster current for a closure, so code
/// written with the free functions runs against it.
///
/// Cloning is cheap (an `Arc`); two clones are equal. The workers of a cluster stay
/// until [`rmprocs`](Cluster::rmprocs) removes them or this process exits (they exit
/// when their master goes).
///
/// ```
/// use cohort_cluster::Cluster;
/// let c = Cluster::new();
/// assert_eq!(c.myid(), 1);
/// assert_ne!(c, Cluster::global());
/// let f = c.remotecall(|a: u32| a + 1, 1, (41,));
/// assert_eq!(f.fetch_blocking().unwrap(), 42);
/// assert_eq!(f.cluster(), c);
/// ```
#[derive(Clone)]
pub struct Cluster {
    pub(crate) node: Arc<Node>,
}

impl PartialEq for Cluster {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.node, &other.node)
    }
}

impl Eq for Cluster {}

/// A handle to a [`Cluster`] that does not keep it alive ([`Cluster::downgrade`]):
/// for tasks and tables that watch a cluster but must not stop its drop (which shuts
/// its connections, so that its workers exit).
///
/// ```
/// let c = cohort_cluster::Cluster::new();
/// let w = c.downgrade();
/// assert_eq!(w.upgrade(), Some(c.clone()));
/// drop(c);
/// assert!(w.upgrade().is_none());
/// ```
#[derive(Clone, Debug)]
pub struct WeakCluster {
    node: std::sync::Weak<Node>,
}

impl WeakCluster {
    /// The cluster, if a [`Cluster`] handle to it still exists.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// assert!(c.downgrade().upgrade().is_some());
    /// ```
    pub fn upgrade(&self) -> Option<Cluster> {
        self.node.upgrade().map(|node| Cluster { node })
    }

    /// Whether this is a handle to `cluster`.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// assert!(c.downgrade().is(&c));
    /// assert!(!c.downgrade().is(&cohort_cluster::Cluster::new()));
    /// ```
    pub fn is(&self, cluster: &Cluster) -> bool {
        std::ptr::eq(self.node.as_ptr(), Arc::as_ptr(&cluster.node))
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.node.id)
            .field("myid", &self.node.myid())
            .field("procs", &self.node.procs())
            .finish()
    }
}

impl Default for Cluster {
    /// A new cluster, as [`Cluster::new`].
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Cluster::default().nprocs(), 1);
    /// ```
    fn default() -> Self {
        Cluster::new()
    }
}

impl Cluster {
    pub(crate) fn from_node(node: Arc<Node>) -> Cluster {
        Cluster { node }
    }

    /// Its node (for `observe`).
    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// A new cluster with this process as its master and no workers yet; its cookie
    /// is random.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// assert_eq!(c.procs(), vec![1]);
    /// ```
    pub fn new() -> Cluster {
        Cluster::from_node(Node::new())
    }

    /// This process's default cluster (the one a worker serves).
    ///
    /// ```
    /// use cohort_cluster::Cluster;
    /// assert_eq!(Cluster::global(), Cluster::global());
    /// ```
    pub fn global() -> Cluster {
        Cluster::from_node(global().clone())
    }

    /// The cluster code on this thread works for: the one [`install`](Self::install)ed
    /// (or the one whose call is running here), else the [global](Self::global) one.
    ///
    /// ```
    /// use cohort_cluster::Cluster;
    /// assert_eq!(Cluster::current(), Cluster::global());
    /// let c = Cluster::new();
    /// c.install(|| assert_eq!(Cluster::current(), c));
    /// ```
    pub fn current() -> Cluster {
        Cluster::from_node(current())
    }

    /// Runs `f` on this thread with this cluster [current](Self::current): the free
    /// functions called inside it use this cluster. Tasks `f` spawns do not inherit
    /// it (call the methods of a `Cluster` there).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// let f = c.install(|| cohort_cluster::remotecall(|| 7, 1, ()));
    /// assert_eq!(f.cluster(), c);
    /// ```
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        enter(&self.node, f)
    }

    /// Whether this process is this cluster's master or one of its workers (Julia's
    /// `myrole()`).
    ///
    /// ```
    /// use cohort_cluster::{Cluster, ProcessRole};
    /// assert_eq!(Cluster::new().myrole(), ProcessRole::Master);
    /// ```
    pub fn myrole(&self) -> crate::api::procs::ProcessRole {
        crate::api::procs::role_of(&self.node)
    }

    /// This process's id in this cluster (Julia's `myid`).
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Cluster::new().myid(), 1);
    /// ```
    pub fn myid(&self) -> Pid {
        self.node.myid()
    }

    /// Every process id, the master's included (Julia's `procs()`).
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Cluster::new().procs(), vec![1]);
    /// ```
    pub fn procs(&self) -> Vec<Pid> {
        self.node.procs()
    }

    /// The processes on the same host as `pid` (Julia's `procs(pid)`).
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Cluster::new().procs_of(1), vec![1]);
    /// ```
    pub fn procs_of(&self, pid: Pid) -> Vec<Pid> {
        procs_of_in(&self.node, pid)
    }

    /// The number of processes, the master's included.
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Cluster::new().nprocs(), 1);
    /// ```
    pub fn nprocs(&self) -> usize {
        self.node.procs().len()
    }

    /// The worker pids; with no workers, `[1]` (the master counts as the worker then).
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Cluster::new().workers(), vec![1]);
    /// ```
    pub fn workers(&self) -> Vec<Pid> {
        self.node.workers()
    }

    /// The number of workers (`nprocs() - 1`, or 1 when there are none).
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Cluster::new().nworkers(), 1);
    /// ```
    pub fn nworkers(&self) -> usize {
        self.node.workers().len()
    }

    /// This cluster's cookie.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// assert_ne!(c.cookie().expose(), cohort_cluster::Cluster::new().cookie().expose());
    /// ```
    pub fn cookie(&self) -> Cookie {
        self.node.cookie()
    }

    /// Sets this cluster's cookie, before any worker is added.
    ///
    /// # Errors
    /// [`ClusterError::Cookie`] for an invalid cookie; [`ClusterError::CookieInUse`]
    /// once workers have joined.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// c.set_cookie("secret-of-c").unwrap();
    /// assert_eq!(c.cookie().expose(), "secret-of-c");
    /// ```
    pub fn set_cookie(&self, cookie: &str) -> Result<(), ClusterError> {
        set_cookie_in(&self.node, cookie)
    }

    /// A handle that does not keep this cluster alive.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// assert!(c.downgrade().is(&c));
    /// ```
    pub fn downgrade(&self) -> WeakCluster {
        WeakCluster {
            node: Arc::downgrade(&self.node),
        }
    }

    /// How many bytes of function state (a closure's captured values) each process
    /// this one calls may keep for it: [`DEFAULT_CAPTURE_BUDGET`](crate::DEFAULT_CAPTURE_BUDGET)
    /// (1 GiB) unless [set](Self::set_capture_budget).
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Cluster::new().capture_budget(), 1 << 30);
    /// ```
    pub fn capture_budget(&self) -> usize {
        self.node.capture_budget()
    }

    /// Sets [`capture_budget`](Self::capture_budget) for this process's later calls.
    /// A call whose function state is at least [`CAPTURE_MIN`](crate::CAPTURE_MIN)
    /// bytes, holds no remote reference and fits the budget sends that state to a
    /// process once while it is unchanged; later calls send a 16-byte key, and the
    /// callee runs them on the state it kept (decoded once). When the states kept for
    /// one process would exceed the budget, the least recently used go; a closure's
    /// code keeps its newest two states. `0` turns this off: every call carries its
    /// state, as a plain message.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// c.set_capture_budget(0);
    /// assert_eq!(c.capture_budget(), 0);
    /// ```
    pub fn set_capture_budget(&self, bytes: usize) {
        self.node.set_capture_budget(bytes);
    }

    /// The largest message (frame) this process sends or accepts in this cluster
    /// after the handshake, in bytes: `COHORT_MAX_FRAME` when the cluster was made,
    /// or 1 GiB.
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Cluster::new().max_frame(), 1 << 30);
    /// ```
    pub fn max_frame(&self) -> usize {
        self.node.max_frame()
    }

    /// Sets [`max_frame`](Self::max_frame), before any worker is added; workers this
    /// cluster launches get the same limit (as `COHORT_MAX_FRAME`). The value is
    /// clamped to [`MIN_MAX_FRAME`](crate::MIN_MAX_FRAME)`..=4 GiB − 1`; the clamped
    /// value is returned. A payload — call arguments, a result, a value put into a
    /// remote channel — may be the limit less [`PAYLOAD_ROOM`](crate::PAYLOAD_ROOM);
    /// a larger one fails its call with [`CallError::PayloadTooLarge`] (arguments,
    /// values) or a remote error of kind
    /// [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge) (results),
    /// and the connection and both processes go on.
    ///
    /// # Errors
    /// [`ClusterError::MaxFrameInUse`] once workers have joined (they check against
    /// the limit they were started with).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// assert_eq!(c.set_max_frame(1 << 20).unwrap(), 1 << 20);
    /// assert_eq!(c.max_frame(), 1 << 20);
    /// ```
    pub fn set_max_frame(&self, bytes: usize) -> Result<usize, ClusterError> {
        if self
            .node
            .peek(|c| c.membership().worker_infos().next().is_some())
        {
            return Err(ClusterError::MaxFrameInUse);
        }
        self.node.set_max_frame(bytes);
        Ok(self.node.max_frame())
    }

    /// The TLS credentials of this cluster's connections, if TLS is on. (Feature
    /// `tls`, on by default.)
    ///
    /// ```
    /// assert!(cohort_cluster::Cluster::new().tls().is_none());
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<ClusterTls> {
        self.node.tls.read().clone()
    }

    /// Starts the workers `spec` describes and adds them to this cluster.
    ///
    /// # Errors
    /// As [`AddProcs::launch`].
    ///
    /// # Cancel safety
    /// Not cancel-safe in effect: the launch runs as a task of cohort's runtime and
    /// goes on if this future is dropped; the workers it starts still join.
    ///
    /// ```no_run
    /// # cohort_cluster::runtime::block_on(async {
    /// let c = cohort_cluster::Cluster::new();
    /// let pids = c.launch(cohort_cluster::AddProcs::local(2)).await.unwrap();
    /// assert_eq!(c.workers(), pids);
    /// # });
    /// ```
    #[cohort_macros::twin(
        no_run,
        example = " let c = cohort_cluster::Cluster::new();
 let pids = c.launch_blocking(cohort_cluster::AddProcs::local(1)).unwrap();"
    )]
    pub fn launch(
        &self,
        spec: AddProcs,
    ) -> impl std::future::Future<Output = Result<Vec<Pid>, ClusterError>> {
        spec.launch_in(self.node.clone())
    }

    /// Adds `n` workers on this host with default options (Julia's `addprocs(n)`).
    ///
    /// # Errors
    /// As [`AddProcs::launch`].
    ///
    /// # Cancel safety
    /// As [`launch`](Self::launch).
    ///
    /// ```no_run
    /// # cohort_cluster::runtime::block_on(async {
    /// let c = cohort_cluster::Cluster::new();
    /// c.addprocs(2).await.unwrap();
    /// assert_eq!(c.nworkers(), 2);
    /// # });
    /// ```
    #[cohort_macros::twin(
        no_run,
        example = " let c = cohort_cluster::Cluster::new();
 c.addprocs_blocking(2).unwrap();"
    )]
    pub fn addprocs(
        &self,
        n: usize,
    ) -> impl std::future::Future<Output = Result<Vec<Pid>, ClusterError>> {
        self.launch(AddProcs::local(n))
    }

    /// Removes workers of this cluster (as [`rmprocs`](crate::rmprocs)).
    ///
    /// # Errors
    /// [`ClusterError::NotMaster`]; [`ClusterError::NotAWorker`] for a pid that is
    /// not a worker of this cluster (nothing is removed then).
    ///
    /// # Cancel safety
    /// Cancel-safe: the workers are out of the cluster when this is first polled,
    /// and their removal finishes in the background if the future is dropped.
    ///
    /// ```no_run
    /// # cohort_cluster::runtime::block_on(async {
    /// let c = cohort_cluster::Cluster::new();
    /// let pids = c.addprocs(1).await.unwrap();
    /// c.rmprocs(&pids, None).await.unwrap();
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let c = cohort_cluster::Cluster::new();
 assert!(c.rmprocs_blocking(&[7], None).is_err()); // not a worker")]
    pub fn rmprocs(
        &self,
        pids: &[Pid],
        waitfor: Option<Duration>,
    ) -> impl std::future::Future<Output = Result<RmStatus, ClusterError>> {
        wait_removal(rmprocs_nowait_in(&self.node, pids), waitfor)
    }

    /// Starts removing workers of this cluster and returns at once (as
    /// [`rmprocs_nowait`](crate::rmprocs_nowait)).
    ///
    /// # Errors
    /// As [`rmprocs`](Self::rmprocs).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// assert!(c.rmprocs_nowait(&[2]).is_err());
    /// ```
    pub fn rmprocs_nowait(&self, pids: &[Pid]) -> Result<RmprocsTask, ClusterError> {
        rmprocs_nowait_in(&self.node, pids)
    }

    /// Calls `f(args…)` on `pid` of this cluster and returns a [`Future`] at once (as
    /// [`remotecall`](crate::remotecall)).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// assert_eq!(c.remotecall(|x: i32| x * 2, 1, (4,)).fetch_blocking().unwrap(), 8);
    /// ```
    pub fn remotecall<F, Args>(&self, f: F, pid: Pid, args: Args) -> Future<F::Output>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        remotecall_in(&self.node, f, pid, args)
    }

    /// Calls `f(args…)` on `pid` of this cluster and waits for the result (as
    /// [`remotecall_fetch`](crate::remotecall_fetch)).
    ///
    /// # Errors
    /// As [`remotecall_fetch`](crate::remotecall_fetch).
    ///
    /// # Cancel safety
    /// Dropping the future abandons the wait: the reply is dropped when it comes;
    /// the call itself still runs on `pid`.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let c = cohort_cluster::Cluster::new();
    /// assert_eq!(c.remotecall_fetch(|| 5, 1, ()).await.unwrap(), 5);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let c = cohort_cluster::Cluster::new();
 assert_eq!(c.remotecall_fetch_blocking(|| 5, 1, ()).unwrap(), 5);")]
    pub fn remotecall_fetch<F, Args>(
        &self,
        f: F,
        pid: Pid,
        args: Args,
    ) -> impl std::future::Future<Output = Result<F::Output, CallError>>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        remotecall_fetch_in(self.node.clone(), f, pid, args)
    }

    /// Calls `f(args…)` on `pid` of this cluster and waits until it has finished (as
    /// [`remotecall_wait`](crate::remotecall_wait)).
    ///
    /// # Errors
    /// As [`remotecall_wait`](crate::remotecall_wait).
    ///
    /// # Cancel safety
    /// As [`remotecall_fetch`](Self::remotecall_fetch); the result stays stored on
    /// `pid` until no handle to it is left.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let c = cohort_cluster::Cluster::new();
    /// let f = c.remotecall_wait(|| 5, 1, ()).await.unwrap();
    /// assert!(f.isready().await.unwrap());
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let c = cohort_cluster::Cluster::new();
 assert!(c.remotecall_wait_blocking(|| 5, 1, ()).unwrap().isready_blocking().unwrap());")]
    pub fn remotecall_wait<F, Args>(
        &self,
        f: F,
        pid: Pid,
        args: Args,
    ) -> impl std::future::Future<Output = Result<Future<F::Output>, CallError>>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        remotecall_wait_in(self.node.clone(), f, pid, args)
    }

    /// Runs `f(args…)` on `pid` of this cluster for its effect (as
    /// [`remote_do`](crate::remote_do)).
    ///
    /// # Errors
    /// As [`remote_do`](crate::remote_do).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// c.remote_do(|| (), 1, ()).unwrap();
    /// ```
    pub fn remote_do<F, Args>(&self, f: F, pid: Pid, args: Args) -> Result<(), CallError>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        remote_do_in(&self.node, f, pid, args)
    }

    /// Runs `f` on `target` of this cluster (as [`spawnat`](crate::spawnat)).
    ///
    /// ```
    /// use cohort_cluster::{Cluster, Target};
    /// let c = Cluster::new();
    /// assert_eq!(c.spawnat(Target::Any, || 3).fetch_blocking().unwrap(), 3);
    /// ```
    pub fn spawnat<F>(&self, target: impl Into<Target>, f: F) -> Future<F::Output>
    where
        F: RemoteFn<()>,
        F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        spawnat_in(&self.node, target.into(), f)
    }

    /// An unset [`Future`] of this cluster stored on `pid` (as
    /// [`Future::new`]).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// let f = c.future::<u8>(1);
    /// f.put_blocking(1).unwrap();
    /// assert_eq!(f.fetch_blocking().unwrap(), 1);
    /// ```
    pub fn future<T: Send + Sync + 'static>(&self, pid: Pid) -> Future<T> {
        Future::new_in(self.node.clone(), pid)
    }

    /// A [`RemoteChannel`] of this cluster on `pid`, of capacity `cap` (as
    /// [`RemoteChannel::with_capacity`]).
    ///
    /// # Errors
    /// As [`RemoteChannel::with_factory`].
    ///
    /// # Cancel safety
    /// Dropping the future before it is ready may leave the channel made on `pid`;
    /// it is freed there once no handle claims it.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let c = cohort_cluster::Cluster::new();
    /// let ch = c.channel::<u8>(1, 4).await.unwrap();
    /// ch.put(1).await.unwrap();
    /// assert_eq!(ch.cluster(), c);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let c = cohort_cluster::Cluster::new();
 let ch = c.channel_blocking::<u8>(1, 4).unwrap();
 ch.put_blocking(1).unwrap();")]
    pub fn channel<T: ChannelValue>(
        &self,
        pid: Pid,
        cap: usize,
    ) -> impl std::future::Future<Output = Result<RemoteChannel<T>, CallError>> {
        RemoteChannel::with_capacity_in(self.node.clone(), pid, cap)
    }

    /// Interrupts the calls running on `pids` of this cluster (as
    /// [`interrupt`](crate::interrupt)).
    ///
    /// # Errors
    /// As [`interrupt`](crate::interrupt).
    ///
    /// ```
    /// cohort_cluster::Cluster::new().interrupt(&[]).unwrap();
    /// ```
    pub fn interrupt(&self, pids: &[Pid]) -> Result<(), CallError> {
        crate::api::interrupt::interrupt_in(&self.node, pids)
    }

    /// Interrupts the calls running on every worker of this cluster (as
    /// [`interrupt_all`](crate::interrupt_all), Julia's `interrupt()`).
    ///
    /// # Errors
    /// As [`interrupt`](crate::interrupt).
    ///
    /// ```
    /// cohort_cluster::Cluster::new().interrupt_all().unwrap();
    /// ```
    pub fn interrupt_all(&self) -> Result<(), CallError> {
        crate::api::interrupt::interrupt_all_in(&self.node)
    }

    /// A watch on this cluster's membership: its value counts the changes so far (a
    /// worker joined or left), and [`changed`](tokio::sync::watch::Receiver::changed)
    /// waits for the next one. Take it *before* looking at
    /// [`workers`](Self::workers), so no change between the two is missed.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// let w = c.watch_membership();
    /// assert_eq!(*w.borrow(), 0);
    /// ```
    pub fn watch_membership(&self) -> tokio::sync::watch::Receiver<u64> {
        self.node.membership.subscribe()
    }

    /// This process's [`Stats`] in this cluster.
    ///
    /// ```
    /// assert_eq!(cohort_cluster::Cluster::new().stats().held_refs, 0);
    /// ```
    pub fn stats(&self) -> Stats {
        stats_in(&self.node)
    }

    /// The [`Stats`] of process `pid` of this cluster.
    ///
    /// # Errors
    /// As [`remotecall_fetch`](crate::remotecall_fetch).
    ///
    /// # Cancel safety
    /// As [`remotecall_fetch`](Self::remotecall_fetch).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let c = cohort_cluster::Cluster::new();
    /// assert_eq!(c.stats_of(1).await.unwrap().pid, 1);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let c = cohort_cluster::Cluster::new();
 assert_eq!(c.stats_of_blocking(1).unwrap().pid, 1);")]
    pub fn stats_of(
        &self,
        pid: Pid,
    ) -> impl std::future::Future<Output = Result<Stats, CallError>> {
        stats_of_in(self.node.clone(), pid)
    }
}
