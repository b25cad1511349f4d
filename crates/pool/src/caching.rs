//! [`CachingPool`]: a pool that sends a function's captured data to each worker once
//! and reuses it (Julia's `CachingPool`).
//!
//! Every call already sends captures of [`CAPTURE_MIN`](cohort_cluster::CAPTURE_MIN)
//! bytes or more once per worker while they are unchanged (the runtime keeps them on
//! the callee); a `CachingPool` does it for captures of any size, and its cache stays
//! until [`clear`](CachingPool::clear) or the pool's drop.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use cohort_cluster::registry::{RemoteFnEntry, REMOTE_FUNCTIONS};
use cohort_cluster::{codec, CallError, ErrorKind, Failure, Future, Pid, RemoteFn};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::error::PoolError;
use crate::pool::WorkerPool;

/// Identifies one function value cached by one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct CacheKey {
    pool: u64,
    hash: u64,
}

struct Entry {
    state: Vec<u8>,
    decoded: OnceLock<Arc<dyn Any + Send + Sync>>,
}

#[derive(Default)]
struct Store {
    entries: HashMap<CacheKey, Entry>,
    puts: u64,
    bytes: u64,
}

fn store() -> &'static Mutex<Store> {
    static S: OnceLock<Mutex<Store>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// What this process's function cache holds and has received, for tests and demos.
///
/// ```
/// let s = cohort_pool::cache_stats();
/// assert_eq!(s.entries, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Function states cached now.
    pub entries: usize,
    /// Function states received so far.
    pub puts: u64,
    /// Bytes of function state received so far.
    pub bytes: u64,
}

/// This process's [`CacheStats`].
///
/// ```
/// assert_eq!(cohort_pool::cache_stats().puts, 0);
/// ```
pub fn cache_stats() -> CacheStats {
    let s = store().lock();
    CacheStats {
        entries: s.entries.len(),
        puts: s.puts,
        bytes: s.bytes,
    }
}

/// The [`CacheStats`] of process `pid` (of the current cluster).
///
/// # Errors
/// As [`remotecall_fetch`](cohort_cluster::remotecall_fetch).
///
/// # Cancel safety
/// As [`remotecall_fetch`](cohort_cluster::remotecall_fetch).
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let s = cohort_pool::cache_stats_of(1).await.unwrap();
/// assert_eq!(s.entries, 0);
/// # });
/// ```
#[cohort_macros::twin_fn(example = " let s = cohort_pool::blocking::cache_stats_of(1).unwrap();
 assert_eq!(s.entries, 0);")]
pub async fn cache_stats_of(pid: Pid) -> Result<CacheStats, PoolError> {
    Ok(cohort_cluster::remotecall_fetch(cache_stats, pid, ()).await?)
}

fn cache_put(pool: u64, hash: u64, state: Vec<u8>) {
    let mut s = store().lock();
    s.puts += 1;
    s.bytes += state.len() as u64;
    s.entries.insert(
        CacheKey { pool, hash },
        Entry {
            state,
            decoded: OnceLock::new(),
        },
    );
}

fn cache_clear(pool: u64) -> usize {
    let mut s = store().lock();
    let before = s.entries.len();
    s.entries.retain(|k, _| k.pool != pool);
    before - s.entries.len()
}

#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static CACHE_PUT: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (u64, u64, Vec<u8>)>("cohort_pool::cache_put", &cache_put);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static CACHE_CLEAR: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (u64,)>("cohort_pool::cache_clear", &cache_clear);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static CACHE_STATS: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, ()>("cohort_pool::cache_stats", &cache_stats);

/// A function whose state is cached on the workers: only its cache key travels. Made
/// by [`CachingPool`]; calling it on this process uses the value itself.
pub struct Cached<F> {
    key: CacheKey,
    f: Arc<F>,
}

/// The cache key and the function's type; not the function (a closure, its state
/// possibly large).
impl<F> std::fmt::Debug for Cached<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("key", &self.key)
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<F> Clone for Cached<F> {
    fn clone(&self) -> Self {
        Cached {
            key: self.key,
            f: self.f.clone(),
        }
    }
}

impl<F, Args> RemoteFn<Args> for Cached<F>
where
    F: RemoteFn<Args>,
{
    type Output = F::Output;

    fn call(&self, args: Args) -> F::Output {
        self.f.call(args)
    }

    fn encode_state(&self) -> Result<Vec<u8>, Failure> {
        codec::encode(&self.key)
    }

    fn decode_state(state: &[u8]) -> Result<Self, Failure> {
        let key: CacheKey = codec::decode(state)?;
        let s = store().lock();
        let Some(e) = s.entries.get(&key) else {
            return Err(Failure::new(
                ErrorKind::Reference,
                "the cached function is not on this worker (was the CachingPool cleared?)",
            ));
        };
        if let Some(d) = e.decoded.get() {
            let f = d.clone().downcast::<F>().map_err(|_| {
                Failure::new(ErrorKind::Reference, "cached function of another type")
            })?;
            return Ok(Cached { key, f });
        }
        let f = Arc::new(F::decode_state(&e.state)?);
        let _ = e.decoded.set(f.clone());
        Ok(Cached { key, f })
    }
}

/// Per (worker, function hash): set once the state is on that worker.
type SentMap = HashMap<(Pid, u64), Arc<OnceCell<()>>>;

struct CacheState {
    /// The cluster of the workers holding the cached state.
    cluster: cohort_cluster::Cluster,
    id: u64,
    /// Per (worker, function): set once the state is on that worker.
    sent: Mutex<SentMap>,
}

impl Drop for CacheState {
    fn drop(&mut self) {
        let pids: Vec<Pid> = {
            let mut v: Vec<Pid> = self.sent.lock().keys().map(|k| k.0).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        for pid in pids {
            let _ = self.cluster.remote_do(cache_clear, pid, (self.id,));
        }
    }
}

/// A [`WorkerPool`] that sends a function's state — a closure's captured data — to
/// each worker once and reuses it for later calls (Julia's `CachingPool`). The cache
/// lives as long as the pool; [`clear`](Self::clear) (or dropping the last handle)
/// removes it from every worker.
///
/// ```
/// use cohort_pool::CachingPool;
/// let pool = CachingPool::new([cohort_cluster::myid()]);
/// let table = vec![10u64; 1000];
/// let f = cohort_cluster::closure!([table] |i: usize| table[i] + 1);
/// let v = pool.remotecall_fetch_blocking(f, (3,)).unwrap();
/// assert_eq!(v, 11);
/// ```
#[derive(Clone)]
pub struct CachingPool {
    pool: WorkerPool,
    cache: Arc<CacheState>,
}

impl std::fmt::Debug for CachingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CachingPool({:?})", self.pool)
    }
}

impl CachingPool {
    /// A caching pool of the given processes (Julia's `CachingPool(pids)`).
    ///
    /// ```
    /// assert_eq!(cohort_pool::CachingPool::new([1]).pool().len(), 1);
    /// ```
    pub fn new(pids: impl IntoIterator<Item = Pid>) -> Self {
        Self::from_pool(WorkerPool::new(pids))
    }

    /// A caching pool lending the workers of `pool`.
    ///
    /// ```
    /// let p = cohort_pool::CachingPool::from_pool(cohort_pool::default_worker_pool());
    /// assert!(!p.pool().is_empty());
    /// ```
    pub fn from_pool(pool: WorkerPool) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = (u64::from(std::process::id()) << 32) | NEXT.fetch_add(1, Ordering::Relaxed);
        let cluster = pool.cluster().clone();
        CachingPool {
            pool,
            cache: Arc::new(CacheState {
                cluster,
                id,
                sent: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The pool of workers it lends.
    ///
    /// ```
    /// assert_eq!(cohort_pool::CachingPool::new([1]).pool().workers(), vec![1]);
    /// ```
    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }

    /// Wraps `f` so that only its cache key travels (its state is keyed by its type
    /// and its encoded state).
    pub(crate) fn wrap<F, Args>(&self, f: F) -> Result<(Cached<F>, Vec<u8>), PoolError>
    where
        F: RemoteFn<Args>,
    {
        let state = f
            .encode_state()
            .map_err(|e| PoolError::Serialization(e.message))?;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(std::any::type_name::<F>().as_bytes());
        h.update(&state);
        let key = CacheKey {
            pool: self.cache.id,
            hash: h.digest(),
        };
        Ok((
            Cached {
                key,
                f: Arc::new(f),
            },
            state,
        ))
    }

    /// Makes sure the state of `c` is on `pid` (sent once; concurrent callers wait for
    /// the one sending).
    pub(crate) async fn ensure<F>(
        &self,
        c: &Cached<F>,
        state: &[u8],
        pid: Pid,
    ) -> Result<(), CallError> {
        let cluster = self.pool.cluster();
        if pid == cluster.myid() {
            return Ok(());
        }
        let cell = self
            .cache
            .sent
            .lock()
            .entry((pid, c.key.hash))
            .or_default()
            .clone();
        let key = c.key;
        cell.get_or_try_init(|| async move {
            cluster
                .remotecall_fetch(cache_put, pid, (key.pool, key.hash, state.to_vec()))
                .await
        })
        .await?;
        Ok(())
    }

    /// Calls `f(args…)` on a free worker and waits for the value; `f`'s state goes to
    /// that worker only the first time.
    ///
    /// # Errors
    /// As [`WorkerPool::remotecall_fetch`].
    ///
    /// # Cancel safety
    /// Not cancel-safe once a worker is taken. Dropped while it waits for a worker,
    /// nothing was started. Dropped while the function's state is on its way to the
    /// worker, the worker goes back to the pool; the state may still be stored there,
    /// and the next call to that worker sends it again (another caller waiting for the
    /// same send then sends it itself).
    /// Dropped after the call was sent, as [`WorkerPool::remotecall_fetch`]: the call
    /// still runs, its value is dropped, and the worker goes back at once.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let pool = cohort_pool::CachingPool::new([1]);
    /// assert_eq!(pool.remotecall_fetch(|x: u8| x * 2, (4,)).await.unwrap(), 8);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let pool = cohort_pool::CachingPool::new([1]);
 assert_eq!(pool.remotecall_fetch_blocking(|| 3u8, ()).unwrap(), 3);")]
    pub async fn remotecall_fetch<F, Args>(&self, f: F, args: Args) -> Result<F::Output, PoolError>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        let (c, state) = self.wrap(f)?;
        let lease = self.pool.take().await?;
        self.ensure(&c, &state, lease.pid()).await?;
        lease.fetch(c, args).await
    }

    /// Calls `f(args…)` on a free worker and returns its [`Future`] once the worker is
    /// taken; the worker goes back when the call has finished.
    ///
    /// # Errors
    /// As [`WorkerPool::remotecall`].
    ///
    /// # Cancel safety
    /// Dropped while it waits for a worker, nothing was started. Dropped while the
    /// function's state is on its way to the worker, the worker goes back to the pool;
    /// the state may still be stored there, and the next call to that worker sends it
    /// again (another caller waiting for the same send then sends it itself).
    /// Once the state is there the call starts and this returns in the same poll, so a
    /// dropped `remotecall` started no call.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let pool = cohort_pool::CachingPool::new([1]);
    /// let f = pool.remotecall(|| 9u8, ()).await.unwrap();
    /// assert_eq!(f.fetch().await.unwrap(), 9);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let pool = cohort_pool::CachingPool::new([1]);
 let f = pool.remotecall_blocking(|| 9u8, ()).unwrap();
 assert_eq!(f.fetch_blocking().unwrap(), 9);")]
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
        let (c, state) = self.wrap(f)?;
        let lease = self.pool.take().await?;
        self.ensure(&c, &state, lease.pid()).await?;
        Ok(lease.call(c, args))
    }

    /// Calls `f(args…)` on a free worker, waits until it finished, and returns the
    /// [`Future`] holding the result.
    ///
    /// # Errors
    /// As [`WorkerPool::remotecall_wait`].
    ///
    /// # Cancel safety
    /// Not cancel-safe once a worker is taken. Dropped while it waits for a worker,
    /// nothing was started. Dropped while the function's state is on its way to the
    /// worker, the worker goes back to the pool; the state may still be stored there,
    /// and the next call to that worker sends it again (another caller waiting for the
    /// same send then sends it itself).
    /// Dropped after the call was sent, as [`WorkerPool::remotecall_wait`].
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let pool = cohort_pool::CachingPool::new([1]);
    /// let f = pool.remotecall_wait(|| 9u8, ()).await.unwrap();
    /// assert!(f.isready().await.unwrap());
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let pool = cohort_pool::CachingPool::new([1]);
 let f = pool.remotecall_wait_blocking(|| 9u8, ()).unwrap();
 assert!(f.isready_blocking().unwrap());")]
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
        let (c, state) = self.wrap(f)?;
        let lease = self.pool.take().await?;
        self.ensure(&c, &state, lease.pid()).await?;
        lease.wait(c, args).await
    }

    /// Runs `f(args…)` on a free worker for its effect, holding the worker until the
    /// call has finished; a failure is printed on this process's stderr.
    ///
    /// # Errors
    /// [`PoolError::EmptyPool`], or a failure to send the function's state.
    ///
    /// # Cancel safety
    /// Dropped while it waits for a worker, nothing was started. Dropped while the
    /// function's state is on its way to the worker, the worker goes back to the pool;
    /// the state may still be stored there, and the next call to that worker sends it
    /// again (another caller waiting for the same send then sends it itself).
    /// Once the state is there the call runs in the background and this returns in the
    /// same poll.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let pool = cohort_pool::CachingPool::new([1]);
    /// pool.remote_do(|| (), ()).await.unwrap();
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let pool = cohort_pool::CachingPool::new([1]);
 pool.remote_do_blocking(|| (), ()).unwrap();")]
    pub async fn remote_do<F, Args>(&self, f: F, args: Args) -> Result<(), PoolError>
    where
        F: RemoteFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        let (c, state) = self.wrap(f)?;
        let lease = self.pool.take().await?;
        self.ensure(&c, &state, lease.pid()).await?;
        lease.remote_do(c, args);
        Ok(())
    }

    /// `f` bound to this pool: a callable running `f` on a free worker, its state sent
    /// once per worker.
    ///
    /// ```
    /// let pool = cohort_pool::CachingPool::new([1]);
    /// let r = pool.remote(|x: i8| -x);
    /// assert_eq!(r.call_blocking((3,)).unwrap(), -3);
    /// ```
    pub fn remote<F>(&self, f: F) -> CachingRemote<F> {
        CachingRemote {
            pool: self.clone(),
            f,
        }
    }

    /// Removes this pool's cached functions from every worker (Julia's
    /// `clear!(pool)`); later calls send them again.
    ///
    /// # Cancel safety
    /// The pool forgets at once what it sent; a dropped future may leave some
    /// workers' copies in place (they are freed when the pool goes).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let pool = cohort_pool::CachingPool::new([1]);
    /// pool.clear().await;
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let pool = cohort_pool::CachingPool::new([1]);
 pool.clear_blocking();")]
    pub async fn clear(&self) {
        let pids: Vec<Pid> = {
            let mut sent = self.cache.sent.lock();
            let mut v: Vec<Pid> = sent.keys().map(|k| k.0).collect();
            sent.clear();
            v.sort_unstable();
            v.dedup();
            v
        };
        for pid in pids {
            let _ = self
                .cache
                .cluster
                .remotecall_fetch(cache_clear, pid, (self.cache.id,))
                .await;
        }
    }

    /// The workers that hold this pool's cached functions, with how many each.
    ///
    /// ```
    /// assert!(cohort_pool::CachingPool::new([1]).cached().is_empty());
    /// ```
    pub fn cached(&self) -> Vec<(Pid, usize)> {
        let mut m: HashMap<Pid, usize> = HashMap::new();
        for ((pid, _), cell) in self.cache.sent.lock().iter() {
            if cell.initialized() {
                *m.entry(*pid).or_default() += 1;
            }
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_unstable();
        v
    }
}

/// A function bound to a [`CachingPool`], made by [`CachingPool::remote`].
///
/// ```
/// let r = cohort_pool::CachingPool::new([1]).remote(|| 1u8);
/// assert_eq!(r.call_blocking(()).unwrap(), 1);
/// ```
#[derive(Clone)]
pub struct CachingRemote<F> {
    pool: CachingPool,
    f: F,
}

/// The pool and the function's type; not the function (a closure).
impl<F> std::fmt::Debug for CachingRemote<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingRemote")
            .field("pool", &self.pool)
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<F> CachingRemote<F> {
    /// Calls the function on a free worker and waits for the value.
    ///
    /// # Errors
    /// As [`CachingPool::remotecall_fetch`].
    ///
    /// # Cancel safety
    /// As [`CachingPool::remotecall_fetch`].
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let r = cohort_pool::CachingPool::new([1]).remote(|x: u8| x);
    /// assert_eq!(r.call((2,)).await.unwrap(), 2);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let r = cohort_pool::CachingPool::new([1]).remote(|x: u8| x);
 assert_eq!(r.call_blocking((2,)).unwrap(), 2);"
    )]
    pub async fn call<Args>(&self, args: Args) -> Result<F::Output, PoolError>
    where
        F: RemoteFn<Args> + Clone,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.pool.remotecall_fetch(self.f.clone(), args).await
    }
}
