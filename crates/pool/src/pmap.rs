//! `pmap`: a parallel map over a pool, with batching, retries and error values.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use cohort_cluster::{CallError, ErrorKind, Failure, Pid, RemoteException, RemoteFn};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::caching::CachingPool;
use crate::error::PoolError;
use crate::pool::{default_worker_pool, local_pool, WorkerPool};
use crate::progress::ProgressBar;

/// A failed item inside a batch, as it travels back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemFailure {
    /// Whether it was a panic (else an error).
    pub panic: bool,
    /// The message.
    pub message: String,
    /// Context: a panic's location.
    pub context: String,
}

/// `F` applied to each item of a batch, catching a panic per item: one call carries a
/// whole batch. Its state is `F`'s state.
///
/// ```
/// use cohort_cluster::RemoteFn;
/// use cohort_pool::Batched;
/// let b = Batched::new(|x: u32| if x == 2 { panic!("two") } else { x * 10 });
/// let out = b.call((vec![(1,), (2,), (3,)],));
/// assert_eq!(out[0].as_ref().unwrap(), &10);
/// assert!(out[1].is_err());
/// assert_eq!(out[2].as_ref().unwrap(), &30);
/// ```
pub struct Batched<F> {
    f: Arc<F>,
}

/// The function's type; not the function (a closure).
impl<F> std::fmt::Debug for Batched<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batched")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<F> Clone for Batched<F> {
    fn clone(&self) -> Self {
        Batched { f: self.f.clone() }
    }
}

impl<F> Batched<F> {
    /// Wraps `f`.
    ///
    /// ```
    /// let _b = cohort_pool::Batched::new(|x: u8| x);
    /// ```
    pub fn new(f: F) -> Self {
        Batched { f: Arc::new(f) }
    }
}

impl<F, Args> RemoteFn<(Vec<Args>,)> for Batched<F>
where
    F: RemoteFn<Args>,
{
    type Output = Vec<Result<F::Output, ItemFailure>>;

    fn call(&self, (items,): (Vec<Args>,)) -> Self::Output {
        items
            .into_iter()
            .map(|a| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.f.call(a))).map_err(
                    |p| {
                        let f = Failure::from_panic(p);
                        ItemFailure {
                            panic: true,
                            message: f.message,
                            context: f.context,
                        }
                    },
                )
            })
            .collect()
    }

    fn encode_state(&self) -> Result<Vec<u8>, Failure> {
        self.f.encode_state()
    }

    fn decode_state(state: &[u8]) -> Result<Self, Failure> {
        Ok(Batched {
            f: Arc::new(F::decode_state(state)?),
        })
    }
}

/// How many items one call carries.
///
/// ```
/// use cohort_pool::BatchSize;
/// assert_eq!(BatchSize::default(), BatchSize::Auto);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchSize {
    /// Chosen from the number of items and workers (the default): about eight
    /// batches per worker, at most [`MAX_AUTO_BATCH`] items each, so tiny items go in
    /// large batches and a few large items still spread over every worker.
    #[default]
    Auto,
    /// This many items per call (at least 1).
    Fixed(usize),
}

/// The largest batch [`BatchSize::Auto`] chooses.
pub const MAX_AUTO_BATCH: usize = 4096;

impl BatchSize {
    /// The batch size for `n` items on `workers` workers.
    ///
    /// ```
    /// use cohort_pool::BatchSize;
    /// assert_eq!(BatchSize::Auto.resolve(10, 2), 1);          // large items: spread
    /// assert_eq!(BatchSize::Auto.resolve(100_000, 2), 4096);  // tiny items: batched
    /// assert_eq!(BatchSize::Fixed(7).resolve(100, 2), 7);
    /// ```
    pub fn resolve(self, n: usize, workers: usize) -> usize {
        match self {
            BatchSize::Fixed(b) => b.max(1),
            BatchSize::Auto => n.div_ceil(workers.max(1) * 8).clamp(1, MAX_AUTO_BATCH),
        }
    }
}

type OnError<O> = Arc<dyn Fn(&CallError) -> O + Send + Sync>;
type RetryCheck = Arc<dyn Fn(&CallError) -> bool + Send + Sync>;

/// The pool a map runs on.
#[derive(Clone, Debug)]
enum AnyPool {
    Workers(WorkerPool),
    Caching(CachingPool),
}

/// The options of [`pmap_with`] (Julia's `pmap` keywords).
///
/// ```
/// use std::time::Duration;
/// use cohort_pool::{BatchSize, PmapOptions};
/// let o = PmapOptions::<i32>::new()
///     .batch_size(BatchSize::Fixed(10))
///     .on_error(|_e| -1)
///     .retry_delays(vec![Duration::from_millis(1); 3]);
/// # drop(o);
/// ```
pub struct PmapOptions<O> {
    pool: Option<AnyPool>,
    distributed: bool,
    batch_size: BatchSize,
    on_error: Option<OnError<O>>,
    retry_delays: Vec<Duration>,
    retry_check: Option<RetryCheck>,
    progress: bool,
}

impl<O> Default for PmapOptions<O> {
    fn default() -> Self {
        PmapOptions {
            pool: None,
            distributed: true,
            batch_size: BatchSize::Auto,
            on_error: None,
            retry_delays: Vec::new(),
            retry_check: None,
            progress: false,
        }
    }
}

/// The options; of the `on_error` and `retry_check` functions only whether they are
/// set.
impl<O> std::fmt::Debug for PmapOptions<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so that a new field cannot be forgotten here.
        let PmapOptions {
            pool,
            distributed,
            batch_size,
            on_error,
            retry_delays,
            retry_check,
            progress,
        } = self;
        f.debug_struct("PmapOptions")
            .field("pool", pool)
            .field("distributed", distributed)
            .field("batch_size", batch_size)
            .field("on_error", &on_error.is_some())
            .field("retry_delays", retry_delays)
            .field("retry_check", &retry_check.is_some())
            .field("progress", progress)
            .finish()
    }
}

impl<O> PmapOptions<O> {
    /// The defaults: the default pool, distributed, automatic batches, no retries, the
    /// first failure stops the map.
    ///
    /// ```
    /// let _o = cohort_pool::PmapOptions::<u8>::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs on `pool` instead of the default pool.
    ///
    /// ```
    /// let _o = cohort_pool::PmapOptions::<u8>::new().pool(cohort_pool::WorkerPool::new([1]));
    /// ```
    #[must_use]
    pub fn pool(mut self, pool: WorkerPool) -> Self {
        self.pool = Some(AnyPool::Workers(pool));
        self
    }

    /// Runs on a caching pool: the function's state goes to each worker once.
    ///
    /// ```
    /// let _o = cohort_pool::PmapOptions::<u8>::new().caching_pool(cohort_pool::CachingPool::new([1]));
    /// ```
    #[must_use]
    pub fn caching_pool(mut self, pool: CachingPool) -> Self {
        self.pool = Some(AnyPool::Caching(pool));
        self
    }

    /// `false` runs the map in local tasks on this process (Julia's `asyncmap`)
    /// instead of on the pool's workers.
    ///
    /// ```
    /// let _o = cohort_pool::PmapOptions::<u8>::new().distributed(false);
    /// ```
    #[must_use]
    pub fn distributed(mut self, yes: bool) -> Self {
        self.distributed = yes;
        self
    }

    /// Items per call.
    ///
    /// ```
    /// let _o = cohort_pool::PmapOptions::<u8>::new().batch_size(cohort_pool::BatchSize::Fixed(1));
    /// ```
    #[must_use]
    pub fn batch_size(mut self, b: BatchSize) -> Self {
        self.batch_size = b;
        self
    }

    /// What to put in place of an item that failed (after its retries): `f(error)`.
    /// Without it the first failure stops the map and is returned.
    ///
    /// ```
    /// let _o = cohort_pool::PmapOptions::<String>::new().on_error(|e| e.to_string());
    /// ```
    #[must_use]
    pub fn on_error(mut self, f: impl Fn(&CallError) -> O + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(f));
        self
    }

    /// Retry a failed item once per delay, after that delay, on another worker when
    /// the pool has one (Julia's `retry_delays`; `ExponentialBackOff` is
    /// [`exponential_backoff`]).
    ///
    /// ```
    /// let _o = cohort_pool::PmapOptions::<u8>::new().retry_delays(cohort_pool::exponential_backoff(3));
    /// ```
    #[must_use]
    pub fn retry_delays(mut self, delays: Vec<Duration>) -> Self {
        self.retry_delays = delays;
        self
    }

    /// Retry only failures for which `check` is true (default: all).
    ///
    /// ```
    /// use cohort_cluster::CallError;
    /// let _o = cohort_pool::PmapOptions::<u8>::new()
    ///     .retry_check(|e| matches!(e, CallError::WorkerExited { .. }));
    /// ```
    #[must_use]
    pub fn retry_check(
        mut self,
        check: impl Fn(&CallError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_check = Some(Arc::new(check));
        self
    }

    /// Shows a progress bar (indicatif) on stderr while the map runs. (Feature
    /// `progress`, on by default; without it this method does not exist and indicatif
    /// is not built.)
    ///
    /// ```
    /// let _o = cohort_pool::PmapOptions::<u8>::new().progress(true);
    /// ```
    #[cfg(feature = "progress")]
    #[must_use]
    pub fn progress(mut self, yes: bool) -> Self {
        self.progress = yes;
        self
    }
}

/// `n` retry delays as Julia's `ExponentialBackOff(n = n)` makes them (`first_delay =
/// 0.05`, `factor = 5.0`, `jitter = 0.1`, `max_delay = 10.0`): the first is 50 ms, and
/// each next one is the previous times `5 × r`, with `r` drawn uniformly from
/// `[0.9, 1.1]` for every step, all capped at 10 s. The jitter keeps retries of many
/// failed items from hitting the workers in lockstep.
///
/// ```
/// use std::time::Duration;
/// let d = cohort_pool::exponential_backoff(3);
/// assert_eq!(d.len(), 3);
/// assert_eq!(d[0], Duration::from_millis(50));
/// assert!(d[1] > d[0] && d[2] > d[1]);
/// assert!(d.iter().all(|x| *x <= Duration::from_secs(10)));
/// ```
pub fn exponential_backoff(n: usize) -> Vec<Duration> {
    backoff_with(n, 0.05, 10.0, 5.0, 0.1, rand::random::<f64>)
}

/// Julia's `ExponentialBackOff` iteration, with the random source (values in
/// `[0, 1)`) passed in so tests can pin it.
fn backoff_with(
    n: usize,
    first_delay: f64,
    max_delay: f64,
    factor: f64,
    jitter: f64,
    mut unit: impl FnMut() -> f64,
) -> Vec<Duration> {
    let mut v = Vec::with_capacity(n);
    let mut d = first_delay.min(max_delay);
    for _ in 0..n {
        v.push(Duration::from_secs_f64(d));
        d = (d * factor * (1.0 - jitter + unit() * 2.0 * jitter)).min(max_delay);
    }
    v
}

struct Work {
    indices: Vec<usize>,
    attempt: usize,
    avoid: Option<Pid>,
}

struct Sched<O> {
    queue: VecDeque<Work>,
    outstanding: usize,
    results: Vec<Option<O>>,
    error: Option<PoolError>,
}

struct Shared<O, Args> {
    items: Vec<Args>,
    sched: Mutex<Sched<O>>,
    notify: Notify,
    on_error: Option<OnError<O>>,
    retry_delays: Vec<Duration>,
    retry_check: Option<RetryCheck>,
    bar: Option<ProgressBar>,
    /// The same numbers for a dashboard (`cohort_cluster::observe`).
    progress: cohort_cluster::observe::Progress,
    cluster: cohort_cluster::Cluster,
}

impl<O, Args> Shared<O, Args> {
    fn done(&self, s: &mut Sched<O>, k: usize) {
        s.outstanding -= k;
        if let Some(b) = &self.bar {
            b.inc(k as u64);
        }
        self.progress.done(k as u64);
        if s.outstanding == 0 {
            self.notify.notify_waiters();
        }
    }

    /// Handles a failed item: retry, replace, or stop.
    fn failed(self: &Arc<Self>, i: usize, attempt: usize, pid: Pid, err: CallError)
    where
        O: Send + 'static,
        Args: Send + Sync + 'static,
    {
        let retry =
            attempt < self.retry_delays.len() && self.retry_check.as_ref().is_none_or(|c| c(&err));
        self.progress.error();
        if let CallError::Remote(e) = &err {
            cohort_cluster::observe::record_error(&self.cluster, "pmap", e);
        }
        let mut s = self.sched.lock();
        if s.error.is_some() {
            return;
        }
        if retry {
            self.progress.retry();
            let delay = self.retry_delays[attempt];
            let work = Work {
                indices: vec![i],
                attempt: attempt + 1,
                avoid: Some(pid),
            };
            if delay.is_zero() {
                s.queue.push_back(work);
                drop(s);
                self.notify.notify_waiters();
            } else {
                drop(s);
                let me = self.clone();
                cohort_cluster::runtime::handle().spawn(async move {
                    tokio::time::sleep(delay).await;
                    me.sched.lock().queue.push_back(work);
                    me.notify.notify_waiters();
                });
            }
            return;
        }
        if let Some(h) = &self.on_error {
            s.results[i] = Some(h(&err));
            self.done(&mut s, 1);
        } else {
            s.error = Some(PoolError::Call(err));
            drop(s);
            self.notify.notify_waiters();
        }
    }
}

fn item_error(pid: Pid, function: &str, e: ItemFailure) -> CallError {
    CallError::Remote(RemoteException {
        pid,
        kind: if e.panic {
            ErrorKind::Panic
        } else {
            ErrorKind::Error
        },
        function: function.to_string(),
        message: e.message,
        context: e.context,
    })
}

/// Calls `f` on each item of `items` on the default pool's workers, and returns the
/// results in input order (Julia's `pmap(f, c)`). Items travel in batches chosen
/// automatically; the first failure is returned.
///
/// # Errors
/// The first item's failure ([`PoolError::Call`]), or [`PoolError::EmptyPool`].
///
/// # Cancel safety
/// Not cancel-safe: the map runs as a task of cohort's runtime, which dropping the
/// future does not stop. It goes on taking workers and running batches until every item
/// has run (or one has failed), and then drops the results.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let v = cohort_pool::pmap(|x: u64| x * x, (1..=4).collect()).await.unwrap();
/// assert_eq!(v, vec![1, 4, 9, 16]);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let v = cohort_pool::blocking::pmap(|s: String| s.len(), vec![\"ab\".into(), \"c\".into()]).unwrap();
 assert_eq!(v, vec![2, 1]);"
)]
pub async fn pmap<F, T>(f: F, items: Vec<T>) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<(T,)>,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pmap_with(f, items, PmapOptions::new()).await
}

/// [`pmap`] with options.
///
/// # Errors
/// As [`pmap`]; with [`PmapOptions::on_error`], failed items hold its value instead.
///
/// # Cancel safety
/// As [`pmap`]: the map goes on after the future is dropped.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// use cohort_pool::{pmap_with, PmapOptions};
/// let f = |x: i32| if x == 2 { panic!("no twos") } else { x };
/// let v = pmap_with(f, vec![1, 2, 3], PmapOptions::new().on_error(|_| -1)).await.unwrap();
/// assert_eq!(v, vec![1, -1, 3]);
/// # });
/// ```
#[cohort_macros::twin_fn(example = " use cohort_pool::{blocking, PmapOptions};
 let v = blocking::pmap_with(|x: u8| x + 1, vec![1, 2], PmapOptions::new().distributed(false)).unwrap();
 assert_eq!(v, vec![2, 3]);")]
pub async fn pmap_with<F, T>(
    f: F,
    items: Vec<T>,
    opts: PmapOptions<F::Output>,
) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<(T,)>,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let args: Vec<(T,)> = items.into_iter().map(|x| (x,)).collect();
    pmap_args(f, args, opts).await
}

/// Maps `f` over several collections element-wise (Julia's `pmap(f, c1, c2)`): each
/// item is the tuple of arguments of one call; [`zip2`] and [`zip3`] build them
/// (stopping at the shortest collection).
///
/// # Errors
/// As [`pmap_with`].
///
/// # Cancel safety
/// As [`pmap`]: the map goes on after the future is dropped.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// use cohort_pool::{pmap_args, zip2, PmapOptions};
/// let v = pmap_args(|a: i32, b: i32| a + b, zip2(vec![1, 2], vec![10, 20]), PmapOptions::new())
///     .await
///     .unwrap();
/// assert_eq!(v, vec![11, 22]);
/// # });
/// ```
#[cohort_macros::twin_fn(example = " use cohort_pool::{blocking, zip3, PmapOptions};
 let v = blocking::pmap_args(|a: u8, b: u8, c: u8| a + b + c,
     zip3(vec![1], vec![2], vec![3]), PmapOptions::new()).unwrap();
 assert_eq!(v, vec![6]);")]
pub async fn pmap_args<F, Args>(
    f: F,
    items: Vec<Args>,
    opts: PmapOptions<F::Output>,
) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let h = cohort_cluster::runtime::handle();
    // Run the engine on cohort's runtime, whatever executor awaits us.
    match h.spawn(run(f, items, opts)).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(PoolError::TaskPanicked(e.to_string())),
    }
}

/// Pairs two collections element-wise, stopping at the shorter.
///
/// ```
/// assert_eq!(cohort_pool::zip2(vec![1, 2, 3], vec!['a', 'b']), vec![(1, 'a'), (2, 'b')]);
/// ```
pub fn zip2<A, B>(a: Vec<A>, b: Vec<B>) -> Vec<(A, B)> {
    a.into_iter().zip(b).collect()
}

/// Joins three collections element-wise, stopping at the shortest.
///
/// ```
/// assert_eq!(cohort_pool::zip3(vec![1], vec![2], vec![3]), vec![(1, 2, 3)]);
/// ```
pub fn zip3<A, B, C>(a: Vec<A>, b: Vec<B>, c: Vec<C>) -> Vec<(A, B, C)> {
    a.into_iter()
        .zip(b)
        .zip(c)
        .map(|((a, b), c)| (a, b, c))
        .collect()
}

/// Asynchronous map in local tasks (Julia's `asyncmap`): [`pmap_with`] with
/// `distributed(false)`.
///
/// # Errors
/// As [`pmap`].
///
/// # Cancel safety
/// As [`pmap`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let v = cohort_pool::asyncmap(|x: u32| x + 1, vec![1, 2, 3]).await.unwrap();
/// assert_eq!(v, vec![2, 3, 4]);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let v = cohort_pool::blocking::asyncmap(|x: u32| x + 1, vec![1, 2, 3]).unwrap();
 assert_eq!(v, vec![2, 3, 4]);"
)]
pub async fn asyncmap<F, T>(f: F, items: Vec<T>) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<(T,)>,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pmap_with(f, items, PmapOptions::new().distributed(false)).await
}

async fn run<F, Args>(
    f: F,
    items: Vec<Args>,
    opts: PmapOptions<F::Output>,
) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let n = items.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let pool = if !opts.distributed {
        AnyPool::Workers(local_pool(&cohort_cluster::Cluster::current()))
    } else {
        opts.pool
            .clone()
            .unwrap_or_else(|| AnyPool::Workers(default_worker_pool()))
    };
    let workers = match &pool {
        AnyPool::Workers(p) => p.clone(),
        AnyPool::Caching(c) => c.pool().clone(),
    };
    let slots = workers.len();
    if slots == 0 {
        return Err(PoolError::EmptyPool);
    }
    let bs = opts.batch_size.resolve(n, slots);
    let mut queue = VecDeque::new();
    let mut start = 0;
    while start < n {
        let end = (start + bs).min(n);
        queue.push_back(Work {
            indices: (start..end).collect(),
            attempt: 0,
            avoid: None,
        });
        start = end;
    }
    let bar = opts.progress.then(|| ProgressBar::new(n as u64));
    let cluster = workers.cluster().clone();
    let label = if opts.distributed { "pmap" } else { "asyncmap" };
    let progress = cohort_cluster::observe::Progress::start(&cluster, label, n as u64);
    let shared = Arc::new(Shared {
        items,
        sched: Mutex::new(Sched {
            queue,
            outstanding: n,
            results: (0..n).map(|_| None).collect(),
            error: None,
        }),
        notify: Notify::new(),
        on_error: opts.on_error,
        retry_delays: opts.retry_delays,
        retry_check: opts.retry_check,
        bar,
        progress,
        cluster,
    });
    let batched = Batched::new(f);
    let (call_f, state) = match &pool {
        AnyPool::Caching(c) => {
            let (cached, state) = c.wrap::<Batched<F>, (Vec<Args>,)>(batched)?;
            (Callable::Cached(c.clone(), cached), state)
        }
        AnyPool::Workers(_) => (Callable::Plain(batched), Vec::new()),
    };
    let call_f = Arc::new(call_f);
    let state = Arc::new(state);
    // One slot per worker of the pool; a worker that joins the pool while the map
    // runs (an elastic worker, a new `addprocs`) gets a slot of its own, so new work
    // goes to it too.
    let spawn_slot = || {
        let shared = shared.clone();
        let workers = workers.clone();
        let call_f = call_f.clone();
        let state = state.clone();
        // On cohort's runtime, so `pmap` works from any executor.
        cohort_cluster::runtime::handle().spawn(async move {
            slot(shared, workers, call_f, state).await;
        })
    };
    let mut membership = workers.cluster().watch_membership();
    let mut tasks: futures::stream::FuturesUnordered<_> =
        (0..slots).map(|_| spawn_slot()).collect();
    let mut running = slots;
    loop {
        tokio::select! {
            t = futures::StreamExt::next(&mut tasks) => match t {
                None => break,
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(_) => {}
            },
            Ok(()) = membership.changed() => {
                let open = {
                    let s = shared.sched.lock();
                    s.error.is_none() && s.outstanding > 0
                };
                while open && workers.len() > running {
                    tasks.push(spawn_slot());
                    running += 1;
                }
            }
        }
    }
    let mut s = shared.sched.lock();
    if let Some(b) = &shared.bar {
        b.finish_and_clear();
    }
    shared.progress.finish();
    if let Some(e) = s.error.take() {
        return Err(e);
    }
    let results = std::mem::take(&mut s.results);
    Ok(results
        .into_iter()
        .map(|r| r.expect("every item has a result"))
        .collect())
}

enum Callable<F> {
    Plain(Batched<F>),
    Cached(CachingPool, crate::caching::Cached<Batched<F>>),
}

async fn call_batch<F, Args>(
    cluster: &cohort_cluster::Cluster,
    c: &Callable<F>,
    state: &[u8],
    pid: Pid,
    batch: Vec<Args>,
) -> Result<Vec<Result<F::Output, ItemFailure>>, CallError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
{
    match c {
        Callable::Plain(b) => cluster.remotecall_fetch(b.clone(), pid, (batch,)).await,
        Callable::Cached(pool, cached) => {
            pool.ensure(cached, state, pid).await?;
            cluster
                .remotecall_fetch(cached.clone(), pid, (batch,))
                .await
        }
    }
}

async fn slot<F, Args>(
    shared: Arc<Shared<F::Output, Args>>,
    workers: WorkerPool,
    call_f: Arc<Callable<F>>,
    state: Arc<Vec<u8>>,
) where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let fname = std::any::type_name::<F>();
    loop {
        let work = loop {
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = shared.sched.lock();
                if s.error.is_some() || s.outstanding == 0 {
                    return;
                }
                if let Some(w) = s.queue.pop_front() {
                    break w;
                }
            }
            notified.await;
        };
        let lease = match workers.take_avoiding(work.avoid).await {
            Ok(l) => l,
            Err(e) => {
                let mut s = shared.sched.lock();
                s.error.get_or_insert(e);
                drop(s);
                shared.notify.notify_waiters();
                return;
            }
        };
        let pid = lease.pid();
        let batch: Vec<Args> = work
            .indices
            .iter()
            .map(|&i| shared.items[i].clone())
            .collect();
        let out = call_batch(workers.cluster(), &call_f, &state, pid, batch).await;
        drop(lease);
        match out {
            Ok(results) if results.len() == work.indices.len() => {
                let mut failed = Vec::new();
                {
                    let mut s = shared.sched.lock();
                    let mut ok = 0;
                    for (&i, r) in work.indices.iter().zip(results) {
                        match r {
                            Ok(v) => {
                                s.results[i] = Some(v);
                                ok += 1;
                            }
                            Err(e) => failed.push((i, e)),
                        }
                    }
                    shared.done(&mut s, ok);
                }
                for (i, e) in failed {
                    shared.failed(i, work.attempt, pid, item_error(pid, fname, e));
                }
            }
            Ok(results) => {
                // The worker broke the protocol: its reply does not cover the batch.
                let e = CallError::Protocol(cohort_cluster::ProtocolError::ShortBatch {
                    expected: work.indices.len(),
                    got: results.len(),
                });
                for &i in &work.indices {
                    shared.failed(i, work.attempt, pid, e.clone());
                }
            }
            Err(e) => {
                for &i in &work.indices {
                    shared.failed(i, work.attempt, pid, e.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_jitter_bounds_and_grows() {
        let cap = Duration::from_secs(10);
        for _ in 0..500 {
            let d = exponential_backoff(8);
            assert_eq!(d.len(), 8);
            assert_eq!(d[0], Duration::from_millis(50));
            for i in 1..d.len() {
                let prev = d[i - 1].as_secs_f64();
                let lo = (prev * 5.0 * 0.9).min(10.0);
                let hi = (prev * 5.0 * 1.1).min(10.0);
                let x = d[i].as_secs_f64();
                assert!(
                    x >= lo - 1e-9 && x <= hi + 1e-9,
                    "{i}: {x} not in [{lo}, {hi}]"
                );
                assert!(d[i] <= cap);
                // Strictly growing until the cap is reached, then stays at it.
                if d[i - 1] < cap {
                    assert!(d[i] > d[i - 1], "{d:?}");
                } else {
                    assert_eq!(d[i], cap);
                }
            }
            // 0.05 s × 4.5⁴ > 10 s: the cap is reached by the fifth delay at the latest.
            assert_eq!(d[7], cap);
        }
    }

    #[test]
    fn backoff_extremes_of_the_jitter() {
        let low = backoff_with(3, 0.05, 10.0, 5.0, 0.1, || 0.0);
        let high = backoff_with(3, 0.05, 10.0, 5.0, 0.1, || 1.0);
        let secs = |v: &[Duration]| v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
        for (got, want) in secs(&low).iter().zip([0.05, 0.225, 1.0125]) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        for (got, want) in secs(&high).iter().zip([0.05, 0.275, 1.5125]) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        assert!(backoff_with(0, 0.05, 10.0, 5.0, 0.1, || 0.5).is_empty());
    }
}
