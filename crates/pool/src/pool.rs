//! [`WorkerPool`]: a set of workers handed out one call at a time, and the remotecall
//! family on a pool.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use cohort_cluster::{Cluster, Future, Pid, RemoteFn, Topology};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;

use crate::caching::CachingPool;
use crate::error::PoolError;
use crate::proxy::{self, Proxy};

pub(crate) struct State {
    /// The members (a multiset: a local pool may list this process several times).
    pub(crate) members: Vec<Pid>,
    /// The members not lent out, in the order they came back.
    pub(crate) free: VecDeque<Pid>,
    /// Workers taken and then [detached](Lease::detach) from their lease: lent out
    /// until [`WorkerPool::put`] gives them back (a multiset). A worker held by a live
    /// [`Lease`] is not here, so `put` cannot free it while its holder still uses it.
    detached: Vec<Pid>,
}

/// A pool whose state lives on this process.
pub(crate) struct Local {
    pub(crate) state: Mutex<State>,
    notify: Notify,
    /// The default pool follows the cluster's workers as they come and go.
    follows_cluster: bool,
    /// The id other processes reach it by, given the first time it is sent to one.
    pub(crate) id: OnceLock<u64>,
}

/// Where a pool's state lives.
pub(crate) enum Kind {
    /// On this process.
    Local(Local),
    /// On another process, its owner: this handle forwards to it.
    Proxy(Proxy),
}

pub(crate) struct Inner {
    /// The cluster the members belong to.
    pub(crate) cluster: Cluster,
    pub(crate) kind: Kind,
}

/// A set of workers lent out one call at a time (Julia's `WorkerPool`): a call on the
/// pool takes a free worker, holds it until the call has finished, and gives it back.
/// Workers that have left the cluster are dropped from the pool when met.
///
/// Cloning gives another handle to the same pool.
///
/// A pool travels: passed to another process as (part of) a remote call's argument
/// or value, it arrives there as a *proxy* of the pool on its owner (the process that
/// made it), as in Julia. A proxy's [`take`](Self::take), [`put`](Self::put),
/// [`push`](Self::push), [`workers`](Self::workers) and [`len`](Self::len) ask the
/// owner; the workers it takes are held on the owner, which gets them back when the
/// lease is dropped or when the holder's process leaves the cluster. A proxy's take
/// never waits for a worker to free up: when the owner has none free it lends the
/// calling process itself, which is busy anyway (it runs the call that asked), so a
/// map started inside a map's item always makes progress and picks up the pool's
/// workers as they free up. A worker this process gave back is free for its next
/// take (that take waits for the owner to have it back). The owner keeps the pool only while it holds a handle to it: once the
/// last one there is dropped, a proxy's requests fail with [`PoolError::PoolGone`].
/// Sent back to its owner, a pool arrives as the pool itself.
///
/// ```
/// use cohort_pool::WorkerPool;
/// let pool = WorkerPool::new([cohort_cluster::myid()]);
/// assert_eq!(pool.len(), 1);
/// let v = pool.remotecall_fetch_blocking(|x: u32| x + 1, (41,)).unwrap();
/// assert_eq!(v, 42);
/// // Encoded and decoded on its owner, a pool is the pool itself.
/// let bytes = cohort_cluster::codec::encode(&pool).unwrap();
/// let back: WorkerPool = cohort_cluster::codec::decode(&bytes).unwrap();
/// assert!(!back.is_proxy());
/// let lease = back.take_blocking().unwrap();
/// assert!(!pool.isready());
/// # drop(lease);
/// ```
///
/// Passed to a worker, it lends the owner's workers there:
///
/// ```no_run
/// use cohort_pool::WorkerPool;
/// let w = cohort_cluster::blocking::addprocs(2).unwrap();
/// let pool = WorkerPool::new([w[1]]);
/// let ran = cohort_cluster::blocking::remotecall_fetch(
///     |p: WorkerPool| p.remotecall_fetch_blocking(cohort_cluster::myid, ()).unwrap(),
///     w[0],
///     (pool.clone(),),
/// )
/// .unwrap();
/// assert_eq!(ran, w[1]);
/// ```
#[derive(Clone)]
pub struct WorkerPool {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner.kind {
            Kind::Local(l) => {
                let s = l.state.lock();
                write!(f, "WorkerPool({:?}, {} free)", s.members, s.free.len())
            }
            Kind::Proxy(p) => write!(f, "WorkerPool(proxy of {} on {})", p.id, p.owner),
        }
    }
}

/// A worker taken from a pool; it goes back when dropped. While a lease lives its
/// worker is lent to its holder alone: [`WorkerPool::put`] does not free it.
///
/// ```
/// let pool = cohort_pool::WorkerPool::new([1]);
/// let lease = pool.take_blocking().unwrap();
/// assert_eq!(lease.pid(), 1);
/// assert!(!pool.isready());
/// drop(lease);
/// assert!(pool.isready());
/// ```
#[derive(Debug)]
pub struct Lease {
    pool: WorkerPool,
    pid: Pid,
    /// Set by [`detach`](Self::detach): the worker stays lent after the drop.
    detached: bool,
    held: Held,
}

/// Who holds the lent worker for a lease.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Held {
    /// This process's pool.
    Here,
    /// The owner of a proxy's pool, under this lease id there.
    Owner(u64),
    /// Nobody: a proxy lent this process itself (its owner had no free worker).
    Itself,
}

impl Lease {
    pub(crate) fn new(pool: WorkerPool, pid: Pid, held: Held) -> Self {
        Lease {
            pool,
            pid,
            detached: false,
            held,
        }
    }

    /// The worker.
    ///
    /// ```
    /// let pool = cohort_pool::WorkerPool::new([1]);
    /// assert_eq!(pool.take_blocking().unwrap().pid(), 1);
    /// ```
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Ends the lease without giving the worker back: it stays lent until
    /// [`WorkerPool::put`]`(pid)` returns it — Julia's `take!(pool)` … `put!(pool, pid)`
    /// pair, for code that hands the pid on. A worker taken through a proxy is put
    /// back through a proxy of the same pool on the same process (or goes back when
    /// this process leaves the cluster).
    ///
    /// ```
    /// let pool = cohort_pool::WorkerPool::new([1]);
    /// let pid = pool.take_blocking().unwrap().detach();
    /// assert!(!pool.isready());
    /// pool.put(pid);
    /// assert!(pool.isready());
    /// ```
    pub fn detach(mut self) -> Pid {
        self.detached = true;
        self.pid
    }
}

/// The remotecall family on a leased worker, shared by [`WorkerPool`] and
/// [`CachingPool`](crate::CachingPool) (which first sends the function's state): each
/// holds the lease until the call has finished, then gives the worker back.
impl Lease {
    pub(crate) async fn fetch<F, Args>(self, f: F, args: Args) -> Result<F::Output, PoolError>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(self
            .pool
            .inner
            .cluster
            .remotecall_fetch(f, self.pid, args)
            .await?)
    }

    pub(crate) async fn wait<F, Args>(
        self,
        f: F,
        args: Args,
    ) -> Result<Future<F::Output>, PoolError>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        Ok(self
            .pool
            .inner
            .cluster
            .remotecall_wait(f, self.pid, args)
            .await?)
    }

    /// Starts the call and returns its future at once; the lease goes back when the
    /// call has finished.
    pub(crate) fn call<F, Args>(self, f: F, args: Args) -> Future<F::Output>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let fut = self.pool.inner.cluster.remotecall(f, self.pid, args);
        let watch = fut.clone();
        cohort_cluster::runtime::handle().spawn(async move {
            let _ = watch.wait().await;
            drop(self);
        });
        fut
    }

    /// Runs the call in the background; a failure is printed, as Julia's `remote_do`
    /// does.
    pub(crate) fn remote_do<F, Args>(self, f: F, args: Args)
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        let call = self.pool.inner.cluster.remotecall_fetch(f, self.pid, args);
        cohort_cluster::runtime::handle().spawn(async move {
            if let Err(e) = call.await {
                eprintln!("error in remote_do on worker {}: {e}", self.pid);
            }
            drop(self);
        });
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        match (&self.pool.inner.kind, self.held) {
            (Kind::Local(l), Held::Here) => {
                if self.detached {
                    l.state.lock().detached.push(self.pid);
                } else {
                    self.pool.give_back(self.pid);
                }
            }
            (Kind::Proxy(p), Held::Owner(lease)) => {
                proxy::end_lease(&self.pool.inner.cluster, p, lease, self.pid, self.detached);
            }
            // A process lent to itself holds nothing anywhere.
            _ => {}
        }
    }
}

impl WorkerPool {
    /// A pool of the given processes (Julia's `WorkerPool(pids)`). A pid may appear
    /// more than once: it is then lent out that many times at once.
    ///
    /// ```
    /// let pool = cohort_pool::WorkerPool::new(vec![1, 1]);
    /// assert_eq!(pool.len(), 2);
    /// ```
    pub fn new(pids: impl IntoIterator<Item = Pid>) -> Self {
        Self::new_in(&Cluster::current(), pids)
    }

    /// A pool of the given workers of `cluster`.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// let pool = cohort_pool::WorkerPool::new_in(&c, [1]);
    /// assert_eq!(pool.cluster(), &c);
    /// ```
    pub fn new_in(cluster: &Cluster, pids: impl IntoIterator<Item = Pid>) -> Self {
        Self::make(cluster.clone(), pids.into_iter().collect(), false)
    }

    /// A pool of every worker of `cluster`, following it as workers join and leave
    /// (what [`default_worker_pool`] is for the current cluster on its master).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// let pool = cohort_pool::WorkerPool::following(&c);
    /// assert_eq!(pool.workers(), c.workers());
    /// ```
    pub fn following(cluster: &Cluster) -> Self {
        Self::make(cluster.clone(), cluster.workers(), true)
    }

    /// The cluster this pool's workers belong to.
    ///
    /// ```
    /// let pool = cohort_pool::WorkerPool::new([1]);
    /// assert_eq!(pool.cluster(), &cohort_cluster::Cluster::current());
    /// ```
    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// The process that holds this pool's state: this process for a pool made here,
    /// the owner for a pool received from another process (a proxy).
    ///
    /// ```
    /// let pool = cohort_pool::WorkerPool::new([1]);
    /// assert_eq!(pool.owner(), cohort_cluster::myid());
    /// ```
    pub fn owner(&self) -> Pid {
        match &self.inner.kind {
            Kind::Local(_) => self.inner.cluster.myid(),
            Kind::Proxy(p) => p.owner,
        }
    }

    /// Whether this handle is a proxy of a pool on another process (see the
    /// [type's docs](Self)).
    ///
    /// ```
    /// assert!(!cohort_pool::WorkerPool::new([1]).is_proxy());
    /// ```
    pub fn is_proxy(&self) -> bool {
        matches!(self.inner.kind, Kind::Proxy(_))
    }

    fn is_alive(&self, pid: Pid) -> bool {
        self.inner.cluster.procs().contains(&pid)
    }

    fn make(cluster: Cluster, members: Vec<Pid>, follows_cluster: bool) -> Self {
        WorkerPool {
            inner: Arc::new(Inner {
                cluster,
                kind: Kind::Local(Local {
                    state: Mutex::new(State {
                        free: members.iter().copied().collect(),
                        members,
                        detached: Vec::new(),
                    }),
                    notify: Notify::new(),
                    follows_cluster,
                    id: OnceLock::new(),
                }),
            }),
        }
    }

    pub(crate) fn from_proxy(cluster: Cluster, proxy: Proxy) -> Self {
        WorkerPool {
            inner: Arc::new(Inner {
                cluster,
                kind: Kind::Proxy(proxy),
            }),
        }
    }

    /// Adds a worker (Julia's `push!(pool, pid)`); on a proxy, to the pool on its
    /// owner (a failure to reach the owner is printed on stderr).
    ///
    /// ```
    /// let pool = cohort_pool::WorkerPool::new([]);
    /// pool.push(1);
    /// assert_eq!(pool.workers(), vec![1]);
    /// ```
    pub fn push(&self, pid: Pid) {
        let l = match &self.inner.kind {
            Kind::Local(l) => l,
            Kind::Proxy(p) => return proxy::push(&self.inner.cluster, p, pid),
        };
        let mut s = l.state.lock();
        s.members.push(pid);
        s.free.push_back(pid);
        drop(s);
        l.notify.notify_one();
    }

    /// The members, sorted (Julia's `workers(pool)`). A proxy asks its owner; when the
    /// owner cannot be reached (or this thread may not block: a single-threaded async
    /// runtime's thread), it gives the members last heard of, and none for a pool
    /// its owner no longer has.
    ///
    /// ```
    /// assert_eq!(cohort_pool::WorkerPool::new([1]).workers(), vec![1]);
    /// ```
    pub fn workers(&self) -> Vec<Pid> {
        match &self.inner.kind {
            Kind::Local(l) => {
                self.refresh(l);
                let mut v = l.state.lock().members.clone();
                v.sort_unstable();
                v
            }
            Kind::Proxy(p) => proxy::info(&self.inner.cluster, p).members,
        }
    }

    /// The number of members (Julia's `length(pool)`); for a proxy as
    /// [`workers`](Self::workers) says.
    ///
    /// ```
    /// assert_eq!(cohort_pool::WorkerPool::new([1]).len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        match &self.inner.kind {
            Kind::Local(l) => {
                self.refresh(l);
                l.state.lock().members.len()
            }
            Kind::Proxy(p) => proxy::info(&self.inner.cluster, p).members.len(),
        }
    }

    /// The number of members, or why a proxy's owner cannot tell.
    pub(crate) fn try_len(&self) -> Result<usize, PoolError> {
        match &self.inner.kind {
            Kind::Local(_) => Ok(self.len()),
            Kind::Proxy(p) => proxy::try_info(&self.inner.cluster, p).map(|i| i.members.len()),
        }
    }

    /// Whether the pool has no members.
    ///
    /// ```
    /// assert!(cohort_pool::WorkerPool::new([]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a worker is free now (Julia's `isready(pool)`); for a proxy, whether
    /// one is free on its owner (a proxy's [`take`](Self::take) does not wait for one
    /// either way).
    ///
    /// ```
    /// assert!(cohort_pool::WorkerPool::new([1]).isready());
    /// ```
    pub fn isready(&self) -> bool {
        match &self.inner.kind {
            Kind::Local(l) => {
                self.refresh(l);
                !l.state.lock().free.is_empty()
            }
            Kind::Proxy(p) => proxy::info(&self.inner.cluster, p).any_free,
        }
    }

    /// The default pool follows the cluster: adds new workers, drops those gone.
    fn refresh(&self, l: &Local) {
        if !l.follows_cluster {
            return;
        }
        let now = self.inner.cluster.workers();
        let mut s = l.state.lock();
        if s.members == now {
            return;
        }
        let added: Vec<Pid> = now
            .iter()
            .copied()
            .filter(|p| !s.members.contains(p))
            .collect();
        s.free.retain(|p| now.contains(p));
        s.free.extend(added.iter().copied());
        s.members = now;
        drop(s);
        if !added.is_empty() {
            l.notify.notify_waiters();
        }
    }

    /// Takes a free worker, waiting until one is free (Julia's `take!(pool)`); it goes
    /// back when the [`Lease`] is dropped. A proxy does not wait for one: it takes a
    /// free worker on its owner, else lends this process itself.
    ///
    /// # Errors
    /// [`PoolError::EmptyPool`] if the pool has no member left; for a proxy,
    /// [`PoolError::PoolGone`] or the failure to reach the owner
    /// ([`PoolError::Call`]).
    ///
    /// # Cancel safety
    /// Cancel-safe: a worker is taken only by the poll that returns its [`Lease`], so a
    /// dropped `take` takes none, and a wake-up it had received passes to the next
    /// waiter. A proxy's request to its owner runs on: a worker lent after the `take`
    /// was dropped goes straight back.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let pool = cohort_pool::WorkerPool::new([1]);
    /// assert_eq!(pool.take().await.unwrap().pid(), 1);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let pool = cohort_pool::WorkerPool::new([1]);
 assert_eq!(pool.take_blocking().unwrap().pid(), 1);")]
    pub async fn take(&self) -> Result<Lease, PoolError> {
        self.take_avoiding(None).await
    }

    /// Takes a free worker other than `avoid` when the pool has another live member
    /// (retries go elsewhere).
    pub(crate) async fn take_avoiding(&self, avoid: Option<Pid>) -> Result<Lease, PoolError> {
        let l = match &self.inner.kind {
            Kind::Local(l) => l,
            Kind::Proxy(p) => return proxy::take(self, p, avoid).await,
        };
        loop {
            // Watched before the members are looked at, so no join is missed.
            let mut membership = self.inner.cluster.watch_membership();
            let notified = l.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(lease) = self.try_take_local(l, avoid)? {
                return Ok(lease);
            }
            if l.follows_cluster {
                // New workers join without a notification of the pool's own.
                tokio::select! {
                    _ = notified => {}
                    _ = membership.changed() => {}
                }
            } else {
                notified.await;
            }
        }
    }

    /// Takes a free worker of a local pool now, if one is free (other than `avoid`
    /// when the pool has another member); what a proxy's owner does for it.
    pub(crate) fn try_take_now(&self, avoid: Option<Pid>) -> Result<Option<Lease>, PoolError> {
        match &self.inner.kind {
            Kind::Local(l) => self.try_take_local(l, avoid),
            // An owner resolves ids to its own pools only.
            Kind::Proxy(p) => Err(PoolError::PoolGone {
                owner: p.owner,
                pool: p.id,
            }),
        }
    }

    fn try_take_local(&self, l: &Local, avoid: Option<Pid>) -> Result<Option<Lease>, PoolError> {
        self.refresh(l);
        let mut s = l.state.lock();
        // Drop members that have left the cluster.
        if s.free.iter().any(|p| !self.is_alive(*p)) {
            let dead: Vec<Pid> = s
                .free
                .iter()
                .copied()
                .filter(|p| !self.is_alive(*p))
                .collect();
            s.free.retain(|p| !dead.contains(p));
            s.members.retain(|p| !dead.contains(p));
        }
        if s.members.is_empty() {
            return Err(PoolError::EmptyPool);
        }
        let only_avoided = avoid.is_some_and(|a| s.members.iter().all(|p| *p == a));
        let pick = s
            .free
            .iter()
            .position(|p| only_avoided || Some(*p) != avoid);
        Ok(pick.map(|i| {
            let pid = s.free.remove(i).expect("index in range");
            Lease::new(self.clone(), pid, Held::Here)
        }))
    }

    /// Gives back a worker that was taken and [detached](Lease::detach) from its lease
    /// (Julia's `put!(pool, pid)`); one that has left the cluster is dropped from the
    /// pool. A worker held by a live [`Lease`] is not given back — it goes back when
    /// the lease is dropped — so one worker is never lent to two holders at once; a
    /// `put` of a worker that is not lent, or not a member, does nothing. On a proxy it
    /// gives back a worker this process took through a proxy of the same pool and
    /// detached.
    ///
    /// ```
    /// let pool = cohort_pool::WorkerPool::new([1]);
    /// let lease = pool.take_blocking().unwrap();
    /// pool.put(1); // the lease still holds worker 1: nothing happens
    /// assert!(!pool.isready());
    /// let pid = lease.detach();
    /// pool.put(pid);
    /// assert!(pool.isready());
    /// ```
    pub fn put(&self, pid: Pid) {
        let l = match &self.inner.kind {
            Kind::Local(l) => l,
            Kind::Proxy(p) => return proxy::put(&self.inner.cluster, p, pid),
        };
        let mut s = l.state.lock();
        let Some(i) = s.detached.iter().position(|p| *p == pid) else {
            return;
        };
        s.detached.swap_remove(i);
        drop(s);
        self.give_back(pid);
    }

    /// Returns a lent worker to the free list (a lease's drop, or `put` of a detached
    /// one); one that has left the cluster, or the pool, is dropped.
    fn give_back(&self, pid: Pid) {
        let Kind::Local(l) = &self.inner.kind else {
            return;
        };
        let mut s = l.state.lock();
        let lent = s.members.iter().filter(|p| **p == pid).count()
            > s.free.iter().filter(|p| **p == pid).count();
        if !lent {
            return;
        }
        if self.is_alive(pid) {
            s.free.push_back(pid);
        } else if let Some(i) = s.members.iter().position(|p| *p == pid) {
            s.members.remove(i);
            drop(s);
            l.notify.notify_waiters();
            return;
        }
        drop(s);
        l.notify.notify_one();
    }

    /// Calls `f(args…)` on a free worker and returns its [`Future`] at once the worker
    /// is taken (Julia's `remotecall(f, pool, args...)`); the worker goes back to the
    /// pool when the call has finished.
    ///
    /// # Errors
    /// As [`take`](Self::take) (for a proxy, [`PoolError::PoolGone`] too); the call's
    /// own failures are in the future.
    ///
    /// # Cancel safety
    /// Cancel-safe: it waits only to take a worker (as [`take`](Self::take)) and then
    /// starts the call and returns in the same poll, so a dropped `remotecall` took no
    /// worker and started nothing; `f` and `args` are dropped with it.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let pool = cohort_pool::WorkerPool::new([1]);
    /// let f = pool.remotecall(|a: i32, b: i32| a * b, (6, 7)).await.unwrap();
    /// assert_eq!(f.fetch().await.unwrap(), 42);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let pool = cohort_pool::WorkerPool::new([1]);
 let f = pool.remotecall_blocking(|| 5u8, ()).unwrap();
 assert_eq!(f.fetch_blocking().unwrap(), 5);")]
    pub async fn remotecall<F, Args>(
        &self,
        f: F,
        args: Args,
    ) -> Result<Future<F::Output>, PoolError>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        Ok(self.take().await?.call(f, args))
    }

    /// Calls `f(args…)` on a free worker and waits for the value (Julia's
    /// `remotecall_fetch(f, pool, args...)`).
    ///
    /// # Errors
    /// As [`take`](Self::take) (for a proxy, [`PoolError::PoolGone`] too), or the
    /// call's failure as [`PoolError::Call`].
    ///
    /// # Cancel safety
    /// Not cancel-safe once a worker is taken. Dropped while it waits for a worker, nothing
    /// was started. Dropped after, the call (sent at once) still runs on the worker — or,
    /// for this process, on a blocking thread — its value is dropped, and the worker goes
    /// back to the pool at once, so it may be lent out again while that call still runs.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let pool = cohort_pool::WorkerPool::new([1]);
    /// assert_eq!(pool.remotecall_fetch(|| String::from("hi"), ()).await.unwrap(), "hi");
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let pool = cohort_pool::WorkerPool::new([1]);
 assert_eq!(pool.remotecall_fetch_blocking(|x: u8| x, (3,)).unwrap(), 3);")]
    pub async fn remotecall_fetch<F, Args>(&self, f: F, args: Args) -> Result<F::Output, PoolError>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.take().await?.fetch(f, args).await
    }

    /// Calls `f(args…)` on a free worker, waits until it has finished, and returns the
    /// [`Future`] holding its result (Julia's `remotecall_wait(f, pool, args...)`).
    ///
    /// # Errors
    /// As [`take`](Self::take) (for a proxy, [`PoolError::PoolGone`] too), or the
    /// call's failure.
    ///
    /// # Cancel safety
    /// As [`remotecall_fetch`](Self::remotecall_fetch): dropped after a worker was taken,
    /// the call still runs there, its [`Future`] is dropped (so its result is freed), and
    /// the worker goes back to the pool at once.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let pool = cohort_pool::WorkerPool::new([1]);
    /// let f = pool.remotecall_wait(|| 1u8, ()).await.unwrap();
    /// assert!(f.isready().await.unwrap());
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let pool = cohort_pool::WorkerPool::new([1]);
 let f = pool.remotecall_wait_blocking(|| 1u8, ()).unwrap();
 assert_eq!(f.fetch_blocking().unwrap(), 1);")]
    pub async fn remotecall_wait<F, Args>(
        &self,
        f: F,
        args: Args,
    ) -> Result<Future<F::Output>, PoolError>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.take().await?.wait(f, args).await
    }

    /// Runs `f(args…)` on a free worker for its effect (Julia's `remote_do(f, pool,
    /// args...)`): returns once a worker is taken; the worker is held until the call
    /// has finished, and a failure is printed on this process's stderr.
    ///
    /// # Errors
    /// As [`take`](Self::take) (for a proxy, [`PoolError::PoolGone`] too).
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`remotecall`](Self::remotecall): once a worker is taken the call
    /// runs in the background and this returns in the same poll.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let pool = cohort_pool::WorkerPool::new([1]);
    /// pool.remote_do(|| (), ()).await.unwrap();
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let pool = cohort_pool::WorkerPool::new([1]);
 pool.remote_do_blocking(|| (), ()).unwrap();")]
    pub async fn remote_do<F, Args>(&self, f: F, args: Args) -> Result<(), PoolError>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.take().await?.remote_do(f, args);
        Ok(())
    }

    /// `f` bound to this pool (Julia's `remote(pool, f)`): a callable that runs `f` on
    /// a free worker and returns its value.
    ///
    /// ```
    /// let pool = cohort_pool::WorkerPool::new([1]);
    /// let double = pool.remote(|x: u64| 2 * x);
    /// assert_eq!(double.call_blocking((21,)).unwrap(), 42);
    /// ```
    pub fn remote<F>(&self, f: F) -> Remote<F> {
        Remote {
            pool: AnyPool::Workers(self.clone()),
            f,
        }
    }

    /// Interrupts the calls running on every member (Julia's `interrupt(workers(pool))`):
    /// their callers see a [`CallError::Remote`](cohort_cluster::CallError::Remote) of kind
    /// [`Interrupted`](cohort_cluster::ErrorKind::Interrupted).
    ///
    /// # Errors
    /// The first member that could not be reached.
    ///
    /// ```
    /// cohort_pool::WorkerPool::new([]).interrupt().unwrap();
    /// ```
    pub fn interrupt(&self) -> Result<(), PoolError> {
        Ok(self.inner.cluster.interrupt(&self.workers())?)
    }
}

/// A function bound to a pool, made by [`WorkerPool::remote`] or [`remote`]: calling
/// it runs the function on a free worker of the pool.
///
/// ```
/// let r = cohort_pool::remote(|a: i32, b: i32| a - b);
/// assert_eq!(r.call_blocking((5, 3)).unwrap(), 2);
/// ```
#[derive(Clone)]
pub struct Remote<F> {
    pool: AnyPool,
    f: F,
}

/// The pool and the function's type; not the function (a closure).
impl<F> std::fmt::Debug for Remote<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("pool", &self.pool)
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<F> Remote<F> {
    /// Calls the function on a free worker and waits for the value (through the
    /// function cache when the pool is a [`CachingPool`]).
    ///
    /// # Errors
    /// As [`WorkerPool::remotecall_fetch`].
    ///
    /// # Cancel safety
    /// As [`WorkerPool::remotecall_fetch`]: dropped after a worker was taken, the call
    /// still runs and its value is dropped.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let r = cohort_pool::remote(|x: u8| x + 1);
    /// assert_eq!(r.call((1,)).await.unwrap(), 2);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let r = cohort_pool::remote(|| 7u8);
 assert_eq!(r.call_blocking(()).unwrap(), 7);")]
    pub async fn call<Args>(&self, args: Args) -> Result<F::Output, PoolError>
    where
        F: RemoteFn<Args> + Clone,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        match &self.pool {
            AnyPool::Workers(p) => p.remotecall_fetch(self.f.clone(), args).await,
            AnyPool::Caching(c) => c.remotecall_fetch(self.f.clone(), args).await,
        }
    }
}

/// `f` bound to the [default pool](default_pool) (Julia's `remote(f)`): the one
/// [`set_default_worker_pool`] installed, a [`CachingPool`] included, else the workers.
///
/// ```
/// let r = cohort_pool::remote(|| cohort_cluster::myid());
/// assert_eq!(r.call_blocking(()).unwrap(), 1);
/// ```
pub fn remote<F>(f: F) -> Remote<F> {
    Remote {
        pool: default_pool(),
        f,
    }
}

/// Either kind of pool (Julia's `AbstractWorkerPool`): what [`default_pool`] returns,
/// what [`set_default_worker_pool`] and [`PmapOptions::pool`](crate::PmapOptions::pool)
/// take. Made from either pool with `into()`.
///
/// ```
/// use cohort_pool::{AnyPool, CachingPool, WorkerPool};
/// let a: AnyPool = WorkerPool::new([1]).into();
/// let b: AnyPool = CachingPool::new([1]).into();
/// assert_eq!(a.worker_pool().workers(), b.worker_pool().workers());
/// ```
#[derive(Clone, Debug)]
pub enum AnyPool {
    /// A plain pool: each call carries its function.
    Workers(WorkerPool),
    /// A caching pool: a function's state goes to each worker once.
    Caching(CachingPool),
}

impl AnyPool {
    /// The workers it lends (a caching pool's own [`WorkerPool`]).
    ///
    /// ```
    /// let p: cohort_pool::AnyPool = cohort_pool::WorkerPool::new([1]).into();
    /// assert_eq!(p.worker_pool().len(), 1);
    /// ```
    pub fn worker_pool(&self) -> &WorkerPool {
        match self {
            AnyPool::Workers(p) => p,
            AnyPool::Caching(c) => c.pool(),
        }
    }
}

impl From<WorkerPool> for AnyPool {
    fn from(p: WorkerPool) -> Self {
        AnyPool::Workers(p)
    }
}

impl From<CachingPool> for AnyPool {
    fn from(p: CachingPool) -> Self {
        AnyPool::Caching(p)
    }
}

/// The pools installed by [`set_default_worker_pool`], one per cluster (the pool's).
static REPLACED: Mutex<Vec<AnyPool>> = Mutex::new(Vec::new());

/// Replaces the default pool of the pool's cluster on this process (Julia's
/// `default_worker_pool!(pool)`): [`pmap`](crate::pmap), [`remote`] and the other
/// calls without an explicit pool use it from now on — a [`CachingPool`] too, whose
/// function cache they then share. Returns the pool it replaced, if one had been
/// installed; [`reset_default_worker_pool`] goes back to the pool that follows the
/// cluster. The installed pool (and with it its cluster) is kept until then.
///
/// ```
/// use cohort_pool::{default_worker_pool, reset_default_worker_pool, set_default_worker_pool, WorkerPool};
/// set_default_worker_pool(WorkerPool::new([1, 1]));
/// assert_eq!(default_worker_pool().len(), 2);
/// reset_default_worker_pool();
/// assert_eq!(default_worker_pool().len(), 1);
/// ```
pub fn set_default_worker_pool(pool: impl Into<AnyPool>) -> Option<AnyPool> {
    let pool = pool.into();
    let mut r = REPLACED.lock();
    let old = r
        .iter()
        .position(|p| p.worker_pool().cluster() == pool.worker_pool().cluster())
        .map(|i| r.swap_remove(i));
    r.push(pool);
    old
}

/// Undoes [`set_default_worker_pool`] for the current cluster: the default pool is
/// again the one following the cluster's workers. Returns the pool that had been
/// installed, if any.
///
/// ```
/// assert!(cohort_pool::reset_default_worker_pool().is_none());
/// ```
pub fn reset_default_worker_pool() -> Option<AnyPool> {
    let cluster = Cluster::current();
    let mut r = REPLACED.lock();
    r.iter()
        .position(|p| p.worker_pool().cluster() == &cluster)
        .map(|i| r.swap_remove(i))
}

/// The default pool as calls without an explicit pool use it: the one
/// [`set_default_worker_pool`] installed for the current cluster, else the
/// [workers](default_worker_pool).
///
/// ```
/// let p = cohort_pool::default_pool();
/// assert_eq!(p.worker_pool().workers(), vec![1]);
/// ```
pub fn default_pool() -> AnyPool {
    let cluster = Cluster::current();
    if let Some(p) = REPLACED
        .lock()
        .iter()
        .find(|p| p.worker_pool().cluster() == &cluster)
    {
        return p.clone();
    }
    AnyPool::Workers(following_pool(&cluster))
}

/// The default pool's workers (Julia's `default_worker_pool()`): the pool
/// [`set_default_worker_pool`] installed (a caching pool's own [`WorkerPool`]), else
/// the pool that follows the cluster. On the master that one holds the workers and
/// follows the cluster as workers are added and removed (the master itself when there
/// are none, as [`workers`](cohort_cluster::workers) says). On a worker it is, as in
/// Julia, a proxy of the master's default pool (see [`WorkerPool`]): a parallel map or
/// [`remote`] call made inside a remote call spreads over the cluster's workers, and
/// cannot deadlock on a map that holds them, since a proxy lends its own process
/// when the master has no free worker. On a worker of a cluster whose workers do not
/// all reach each other ([`Topology`] other than `AllToAll`) it lends that worker
/// itself, once per core.
///
/// ```
/// assert_eq!(cohort_pool::default_worker_pool().workers(), vec![1]);
/// ```
pub fn default_worker_pool() -> WorkerPool {
    default_pool().worker_pool().clone()
}

/// The pool following the cluster: on its master the workers, on a worker a proxy of
/// the master's default pool (or, where workers cannot reach each other, the worker
/// itself).
fn following_pool(cluster: &Cluster) -> WorkerPool {
    static MASTER: OnceLock<WorkerPool> = OnceLock::new();
    static WORKER: OnceLock<WorkerPool> = OnceLock::new();
    let cluster = cluster.clone();
    let me = cluster.myid();
    let on_worker = || {
        if cluster.topology() == Topology::AllToAll {
            proxy::default_of_master(&cluster)
        } else {
            local_pool(&cluster)
        }
    };
    if cluster != Cluster::global() {
        // Another cluster of this process: a pool following it (cheap to make).
        return if me == 1 {
            WorkerPool::following(&cluster)
        } else {
            on_worker()
        };
    }
    if me == 1 {
        MASTER
            .get_or_init(|| WorkerPool::following(&cluster))
            .clone()
    } else {
        WORKER.get_or_init(on_worker).clone()
    }
}

/// A pool lending this process once per core (for `distributed = false`).
pub(crate) fn local_pool(cluster: &Cluster) -> WorkerPool {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    WorkerPool::new_in(cluster, std::iter::repeat_n(cluster.myid(), n))
}
