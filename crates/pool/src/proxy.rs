//! Pools across processes: a [`WorkerPool`] sent to another process arrives there as
//! a proxy, whose requests go to the pool's owner through the registered functions
//! below (Julia's `WorkerPool` holds a `RemoteChannel` to its owner for the same
//! purpose).
//!
//! The owner keeps the state: the pools it has sent (by id, as long as it has a
//! handle to them), and the leases proxies took, each with its holder's pid, so that
//! a holder's exit gives its workers back. A proxy's take never waits: when no
//! worker is free on the owner, the caller lends itself — it is busy anyway, running
//! the call that asked — which is what keeps a map inside a map's item from waiting
//! for a worker the outer map holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use cohort_cluster::registry::{RemoteFnEntry, REMOTE_FUNCTIONS};
use cohort_cluster::{Cluster, Pid, WeakCluster};
use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::PoolError;
use crate::pool::{default_worker_pool, Held, Inner, Kind, Lease, WorkerPool};

/// The id that names the owner's default pool (whatever it is when asked), not one
/// pool: what a worker's default pool asks the master for.
const DEFAULT_POOL: u64 = 0;

/// A pool on another process, as a handle here sees it.
pub(crate) struct Proxy {
    /// The process holding the pool's state.
    pub(crate) owner: Pid,
    /// The pool's id there.
    pub(crate) id: u64,
    /// The members last heard of from the owner (for when it cannot be asked).
    members: Mutex<Vec<Pid>>,
}

/// What travels for a pool.
#[derive(Serialize, Deserialize)]
struct PoolHandle {
    owner: Pid,
    id: u64,
    members: Vec<Pid>,
}

/// A pool travels as its owner and id; see [`WorkerPool`].
impl Serialize for WorkerPool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let handle = match &self.inner.kind {
            Kind::Local(_) => PoolHandle {
                owner: self.cluster().myid(),
                id: register(self),
                members: self.workers(),
            },
            Kind::Proxy(p) => PoolHandle {
                owner: p.owner,
                id: p.id,
                members: p.members.lock().clone(),
            },
        };
        handle.serialize(s)
    }
}

/// On its owner a pool arrives as the pool itself, elsewhere as a proxy of it (of the
/// [current](Cluster::current) cluster: the one whose call brought it).
impl<'de> Deserialize<'de> for WorkerPool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let h = PoolHandle::deserialize(d)?;
        let cluster = Cluster::current();
        if h.owner == cluster.myid() {
            if let Some(p) = resolve(h.id) {
                return Ok(p);
            }
        }
        Ok(WorkerPool::from_proxy(
            cluster,
            Proxy {
                owner: h.owner,
                id: h.id,
                members: Mutex::new(h.members),
            },
        ))
    }
}

/// A worker's default pool: a proxy of the master's.
pub(crate) fn default_of_master(cluster: &Cluster) -> WorkerPool {
    WorkerPool::from_proxy(
        cluster.clone(),
        Proxy {
            owner: 1,
            id: DEFAULT_POOL,
            members: Mutex::new(cluster.workers()),
        },
    )
}

// ---- The owner's side ----

/// The pools this process has sent, by id; weak, so a pool goes when its last handle
/// here does.
fn sent() -> &'static Mutex<HashMap<u64, Weak<Inner>>> {
    static S: OnceLock<Mutex<HashMap<u64, Weak<Inner>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// The id of a local pool, registered the first time it is sent.
fn register(pool: &WorkerPool) -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(DEFAULT_POOL + 1);
    let Kind::Local(l) = &pool.inner.kind else {
        unreachable!("only local pools are registered")
    };
    *l.id.get_or_init(|| {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut s = sent().lock();
        s.retain(|_, w| w.strong_count() > 0);
        s.insert(id, Arc::downgrade(&pool.inner));
        id
    })
}

/// The local pool an id names, if this process still has it.
fn resolve(id: u64) -> Option<WorkerPool> {
    if id == DEFAULT_POOL {
        let p = default_worker_pool();
        // A worker's default pool is itself a proxy: it answers for no one.
        return (!p.is_proxy()).then_some(p);
    }
    let inner = sent().lock().get(&id)?.upgrade()?;
    Some(WorkerPool { inner })
}

/// A lease a proxy took, kept here until its holder gives it back or leaves.
struct Lent {
    holder: Pid,
    cluster: Cluster,
    /// Dropped, it gives the worker back to its pool.
    _lease: Lease,
}

fn lent() -> &'static Mutex<HashMap<u64, Lent>> {
    static L: OnceLock<Mutex<HashMap<u64, Lent>>> = OnceLock::new();
    L.get_or_init(Default::default)
}

/// Gives back the leases of holders that have left `cluster`.
fn release_departed(cluster: &Cluster) {
    let procs = cluster.procs();
    let gone: Vec<Lent> = {
        let mut l = lent().lock();
        let ids: Vec<u64> = l
            .iter()
            .filter(|(_, e)| &e.cluster == cluster && !procs.contains(&e.holder))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter_map(|id| l.remove(&id)).collect()
    };
    // Dropped outside the table's lock: each gives its worker back to its pool.
    drop(gone);
}

/// Makes sure a task gives back the leases of holders that leave `cluster`; subscribed
/// before the caller records a lease, so no departure after that is missed.
fn watch_holders(cluster: &Cluster) {
    // Weak: watching a cluster must not keep it from being dropped (its drop shuts
    // its connections, so that its workers exit); the task ends with it.
    static WATCHED: Mutex<Vec<WeakCluster>> = Mutex::new(Vec::new());
    let mut w = WATCHED.lock();
    w.retain(|c| c.upgrade().is_some());
    if w.iter().any(|c| c.is(cluster)) {
        return;
    }
    w.push(cluster.downgrade());
    let mut membership = cluster.watch_membership();
    let weak = cluster.downgrade();
    cohort_cluster::runtime::handle().spawn(async move {
        while membership.changed().await.is_ok() {
            let Some(cluster) = weak.upgrade() else {
                return;
            };
            release_departed(&cluster);
        }
    });
}

/// The owner's answer to a proxy's take.
#[derive(Debug, Serialize, Deserialize)]
enum TakeReply {
    /// A worker, held here under `lease` for the holder.
    Lent {
        lease: u64,
        pid: Pid,
        members: Vec<Pid>,
    },
    /// No worker is free now.
    NoneFree { members: Vec<Pid> },
    /// The pool has no member left.
    Empty,
    /// This process no longer has the pool.
    Gone,
}

/// A proxy's take, on the owner: a free worker now, or none (never waits).
fn pool_try_take(id: u64, holder: Pid, avoid: Option<Pid>) -> TakeReply {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let Some(pool) = resolve(id) else {
        return TakeReply::Gone;
    };
    let cluster = pool.cluster().clone();
    watch_holders(&cluster);
    let lease = match pool.try_take_now(avoid) {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            return TakeReply::NoneFree {
                members: pool.workers(),
            }
        }
        Err(PoolError::EmptyPool) => return TakeReply::Empty,
        Err(_) => return TakeReply::Gone,
    };
    let pid = lease.pid();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    lent().lock().insert(
        id,
        Lent {
            holder,
            cluster: cluster.clone(),
            _lease: lease,
        },
    );
    // A holder that left before the watch began is not announced again.
    if !cluster.procs().contains(&holder) {
        release_departed(&cluster);
    }
    TakeReply::Lent {
        lease: id,
        pid,
        members: pool.workers(),
    }
}

/// A proxy's lease ends: its worker goes back to its pool.
fn pool_give(lease: u64) {
    let e = lent().lock().remove(&lease);
    drop(e);
}

/// What a proxy asks for `workers`, `len` and `isready`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Info {
    pub(crate) members: Vec<Pid>,
    pub(crate) any_free: bool,
}

/// A proxy's `workers`/`len`/`isready`, on the owner; `None` for a pool it no longer
/// has.
fn pool_info(id: u64) -> Option<Info> {
    let pool = resolve(id)?;
    let members = pool.workers();
    let any_free = pool.isready();
    Some(Info { members, any_free })
}

/// A proxy's `push`, on the owner; false for a pool it no longer has.
fn pool_push(id: u64, pid: Pid) -> bool {
    resolve(id).map(|p| p.push(pid)).is_some()
}

#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static POOL_TRY_TAKE: fn() -> RemoteFnEntry = || {
    RemoteFnEntry::of::<_, (u64, Pid, Option<Pid>)>("cohort_pool::pool_try_take", &pool_try_take)
};
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static POOL_GIVE: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (u64,)>("cohort_pool::pool_give", &pool_give);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static POOL_INFO: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (u64,)>("cohort_pool::pool_info", &pool_info);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static POOL_PUSH: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (u64, Pid)>("cohort_pool::pool_push", &pool_push);

// ---- The proxy's side ----

/// Runs `fut` to its end on this thread, if this thread may block: not on a
/// single-threaded async runtime's thread (which would stall); on a multi-threaded
/// runtime's worker it blocks in place.
fn block_for<T>(fut: impl std::future::Future<Output = T>) -> Option<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread) {
        return None;
    }
    Some(tokio::task::block_in_place(|| {
        cohort_cluster::runtime::block_here("a WorkerPool proxy's request to its owner", fut)
    }))
}

fn gone(p: &Proxy) -> PoolError {
    PoolError::PoolGone {
        owner: p.owner,
        pool: p.id,
    }
}

/// Takes a free worker on the owner, else lends this process itself.
pub(crate) async fn take(
    pool: &WorkerPool,
    p: &Proxy,
    avoid: Option<Pid>,
) -> Result<Lease, PoolError> {
    let cluster = pool.cluster().clone();
    let me = cluster.myid();
    let (owner, id) = (p.owner, p.id);
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The request runs on even if this take is dropped, so a worker lent meanwhile
    // is not left held on the owner.
    cohort_cluster::runtime::handle().spawn(async move {
        gives().settled(&cluster, owner).await;
        let reply = cluster
            .remotecall_fetch(pool_try_take, owner, (id, me, avoid))
            .await;
        if let Err(Ok(TakeReply::Lent { lease, .. })) = tx.send(reply) {
            give(&cluster, owner, lease);
        }
    });
    let reply = rx.await.map_err(|_| {
        PoolError::TaskPanicked("a proxy's request to its owner was dropped".into())
    })??;
    match reply {
        TakeReply::Lent {
            lease,
            pid,
            members,
        } => {
            *p.members.lock() = members;
            Ok(Lease::new(pool.clone(), pid, Held::Owner(lease)))
        }
        TakeReply::NoneFree { members } => {
            *p.members.lock() = members;
            Ok(Lease::new(pool.clone(), me, Held::Itself))
        }
        TakeReply::Empty => Err(PoolError::EmptyPool),
        TakeReply::Gone => Err(gone(p)),
    }
}

/// Tells the owner that a lease ended (an owner that is gone holds nothing).
fn give(cluster: &Cluster, owner: Pid, lease: u64) {
    gives().start(cluster, owner);
    let cluster = cluster.clone();
    cohort_cluster::runtime::handle().spawn(async move {
        // An owner that cannot be reached holds nothing for this process any more.
        let _ = cluster.remotecall_fetch(pool_give, owner, (lease,)).await;
        gives().end(&cluster, owner);
    });
}

/// The gives this process has sent and its owners have not yet answered, per owner:
/// a take waits for them, so that a worker given back just before is free for it
/// (calls run concurrently on the owner, so a take sent after a give could
/// otherwise find the worker still lent).
#[derive(Default)]
struct Gives {
    pending: Mutex<Vec<(Cluster, Pid, usize)>>,
    answered: tokio::sync::Notify,
}

fn gives() -> &'static Gives {
    static G: OnceLock<Gives> = OnceLock::new();
    G.get_or_init(Default::default)
}

impl Gives {
    fn start(&self, cluster: &Cluster, owner: Pid) {
        let mut p = self.pending.lock();
        match p.iter_mut().find(|(c, o, _)| c == cluster && *o == owner) {
            Some(e) => e.2 += 1,
            None => p.push((cluster.clone(), owner, 1)),
        }
    }

    fn end(&self, cluster: &Cluster, owner: Pid) {
        let mut p = self.pending.lock();
        if let Some(i) = p.iter().position(|(c, o, _)| c == cluster && *o == owner) {
            p[i].2 -= 1;
            if p[i].2 == 0 {
                p.swap_remove(i);
            }
        }
        drop(p);
        self.answered.notify_waiters();
    }

    /// Waits until the owner has answered every give sent to it so far.
    async fn settled(&self, cluster: &Cluster, owner: Pid) {
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            let busy = self
                .pending
                .lock()
                .iter()
                .any(|(c, o, _)| c == cluster && *o == owner);
            if !busy {
                return;
            }
            answered.await;
        }
    }
}

/// Leases taken through a proxy and detached, until a `put` through a proxy of the
/// same pool on this process: (cluster, owner, pool id, worker, lease id).
type DetachedLease = (Cluster, Pid, u64, Pid, u64);
static DETACHED: Mutex<Vec<DetachedLease>> = Mutex::new(Vec::new());

/// A lease taken through proxy `p` is dropped: its worker goes back, or stays lent
/// for a later `put` if the lease was detached.
pub(crate) fn end_lease(cluster: &Cluster, p: &Proxy, lease: u64, pid: Pid, detached: bool) {
    if detached {
        DETACHED
            .lock()
            .push((cluster.clone(), p.owner, p.id, pid, lease));
    } else {
        give(cluster, p.owner, lease);
    }
}

/// A proxy's `put`: gives back a worker taken here through a proxy of the same pool
/// and detached.
pub(crate) fn put(cluster: &Cluster, p: &Proxy, pid: Pid) {
    let lease = {
        let mut d = DETACHED.lock();
        let i = d
            .iter()
            .position(|(c, o, id, w, _)| c == cluster && *o == p.owner && *id == p.id && *w == pid);
        i.map(|i| d.swap_remove(i).4)
    };
    if let Some(lease) = lease {
        give(cluster, p.owner, lease);
    }
}

/// A proxy's `push`.
pub(crate) fn push(cluster: &Cluster, p: &Proxy, pid: Pid) {
    let (owner, id) = (p.owner, p.id);
    match block_for(cluster.remotecall_fetch(pool_push, owner, (id, pid))) {
        Some(Ok(true)) => p.members.lock().push(pid),
        Some(Ok(false)) => eprintln!("push to a WorkerPool: {}", gone(p)),
        Some(Err(e)) => eprintln!("push to a WorkerPool on process {owner}: {e}"),
        // This thread may not wait: the owner adds it when the request arrives.
        None => {
            if let Err(e) = cluster.remote_do(pool_push, owner, (id, pid)) {
                eprintln!("push to a WorkerPool on process {owner}: {e}");
            }
        }
    }
}

/// The members and free count on the owner, or why they cannot be had; the members
/// last heard of when this thread may not wait.
pub(crate) fn try_info(cluster: &Cluster, p: &Proxy) -> Result<Info, PoolError> {
    let Some(reply) = block_for(cluster.remotecall_fetch(pool_info, p.owner, (p.id,))) else {
        return Ok(Info {
            members: p.members.lock().clone(),
            any_free: false,
        });
    };
    match reply? {
        Some(info) => {
            *p.members.lock() = info.members.clone();
            Ok(info)
        }
        None => Err(gone(p)),
    }
}

/// As [`try_info`], for the calls that cannot fail: a pool its owner no longer has
/// has no members; an owner that cannot be reached, the members last heard of.
pub(crate) fn info(cluster: &Cluster, p: &Proxy) -> Info {
    match try_info(cluster, p) {
        Ok(i) => i,
        Err(PoolError::PoolGone { .. }) => Info::default(),
        Err(_) => Info {
            members: p.members.lock().clone(),
            any_free: false,
        },
    }
}
