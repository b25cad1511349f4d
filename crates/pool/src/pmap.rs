//! `pmap`: a parallel map over a pool, with batching, retries and error values; its
//! input is any iterator, pulled as batches are handed out, and its results come
//! back all at once ([`pmap`]) or one by one in input order ([`pmap_stream`]).

use std::any::Any;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cohort_cluster::{CallError, ErrorKind, Failure, Pid, RemoteException, RemoteFn};
use futures::task::AtomicWaker;
use futures::{FutureExt, Stream};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::caching::CachingPool;
use crate::error::PoolError;
use crate::pool::{default_pool, local_pool, AnyPool};
use crate::progress::MapBar;

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

/// How many items one call carries. A plain number is a fixed size:
/// [`PmapOptions::batch_size`] takes `7` as well as `BatchSize::Fixed(7)`.
///
/// ```
/// use cohort_pool::BatchSize;
/// assert_eq!(BatchSize::default(), BatchSize::Auto);
/// assert_eq!(BatchSize::from(7), BatchSize::Fixed(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchSize {
    /// Chosen from the number of items and workers (the default): about eight
    /// batches per worker, at most [`MAX_AUTO_BATCH`] items each, so tiny items go in
    /// large batches and a few large items still spread over every worker. The number
    /// of items is the input's exact [`size_hint`](Iterator::size_hint); an input that
    /// does not know its length counts as its lower bound (so batches of 1 for one
    /// that promises nothing — give a fixed size there).
    #[default]
    Auto,
    /// This many items per call (at least 1).
    Fixed(usize),
}

/// A plain number is a fixed batch size.
impl From<usize> for BatchSize {
    fn from(n: usize) -> Self {
        BatchSize::Fixed(n)
    }
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

/// The options of [`pmap_with`] (Julia's `pmap` keywords).
///
/// Retries and `on_error` compose in this order: a failed item is retried while
/// delays remain and [`retry_check`](Self::retry_check) allows it; only the failure
/// left after that reaches [`on_error`](Self::on_error) (or stops the map). Julia calls
/// `on_error` first, and retries only what it rethrows; cohort's `on_error` returns a
/// value and cannot rethrow, so in Julia's order a map with both would never retry.
///
/// ```
/// use std::time::Duration;
/// use cohort_pool::PmapOptions;
/// let o = PmapOptions::<i32>::new()
///     .batch_size(10)
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
    #[cfg(feature = "progress")]
    progress_bar: Option<indicatif::ProgressBar>,
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
            #[cfg(feature = "progress")]
            progress_bar: None,
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
            #[cfg(feature = "progress")]
            progress_bar,
        } = self;
        let mut d = f.debug_struct("PmapOptions");
        d.field("pool", pool)
            .field("distributed", distributed)
            .field("batch_size", batch_size)
            .field("on_error", &on_error.is_some())
            .field("retry_delays", retry_delays)
            .field("retry_check", &retry_check.is_some())
            .field("progress", progress);
        #[cfg(feature = "progress")]
        d.field("progress_bar", &progress_bar.is_some());
        d.finish()
    }
}

impl<O> PmapOptions<O> {
    /// The defaults: the [default pool](crate::default_pool), distributed, automatic
    /// batches, no retries, the first failure stops the map.
    ///
    /// ```
    /// let _o = cohort_pool::PmapOptions::<u8>::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs on `pool` instead of the default pool: a [`WorkerPool`](crate::WorkerPool)
    /// or a [`CachingPool`].
    ///
    /// ```
    /// let _o = cohort_pool::PmapOptions::<u8>::new().pool(cohort_pool::WorkerPool::new([1]));
    /// ```
    #[must_use]
    pub fn pool(mut self, pool: impl Into<AnyPool>) -> Self {
        self.pool = Some(pool.into());
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

    /// Items per call: a number (Julia's `batch_size = 10`), or [`BatchSize::Auto`]
    /// (Julia's `batch_size = :auto`, and the default).
    ///
    /// ```
    /// use cohort_pool::{BatchSize, PmapOptions};
    /// let _o = PmapOptions::<u8>::new().batch_size(1);
    /// let _o = PmapOptions::<u8>::new().batch_size(BatchSize::Auto);
    /// ```
    #[must_use]
    pub fn batch_size(mut self, b: impl Into<BatchSize>) -> Self {
        self.batch_size = b.into();
        self
    }

    /// What to put in place of an item that failed (after its retries): `f(error)`,
    /// called on this process once per such item, with the last attempt's error.
    /// Without it the first failure stops the map and is returned. (Julia calls its
    /// `on_error` before retrying; see the [type's docs](Self) for why cohort retries
    /// first.)
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

    /// Shows a progress bar (indicatif) on stderr while the map runs: the elapsed
    /// time, items done of the total (of those pulled so far when the input does not
    /// know its length), the rate, the time left, and how many attempts failed and how
    /// many were retried — `[00:00:03] ████░░ 191/300 (63.2/s, eta 2s) 1 failed, 1
    /// retried`. It is cleared when the map ends. (Feature `progress`, on by default;
    /// without it this method does not exist and indicatif is not built.)
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

    /// Shows the progress on `bar`, the caller's own indicatif bar (one of a
    /// `MultiProgress`, or one drawn elsewhere): the map sets its style, length,
    /// position and message as [`progress`](Self::progress) describes, and leaves it
    /// finished (or, after a failure, abandoned) instead of clearing it. (Feature
    /// `progress`; [`cohort_pool::indicatif`](crate::indicatif) is the matching crate.)
    ///
    /// ```
    /// use cohort_pool::{blocking, indicatif::ProgressBar, PmapOptions};
    /// let bar = ProgressBar::hidden();
    /// let v = blocking::pmap_with(|x: u8| x, vec![1, 2], PmapOptions::new().progress_bar(bar.clone()));
    /// assert_eq!(v.unwrap(), vec![1, 2]);
    /// assert_eq!(bar.position(), 2);
    /// assert_eq!(bar.message(), "0 failed, 0 retried");
    /// ```
    #[cfg(feature = "progress")]
    #[must_use]
    pub fn progress_bar(mut self, bar: indicatif::ProgressBar) -> Self {
        self.progress_bar = Some(bar);
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

/// Items handed out together: one call, or one retried item.
struct Work {
    indices: Vec<usize>,
    attempt: usize,
    avoid: Option<Pid>,
}

/// The map's state, shared by the engine (the caller's side, which owns the input)
/// and the slots (one task per pool member, each running one batch at a time).
struct Sched<O, Args> {
    /// Batches ready to run: fresh ones, and retries.
    queue: VecDeque<Work>,
    /// The items pulled and not yet handed to the caller: item `base + k` at `k`.
    entries: VecDeque<Entry<O, Args>>,
    base: usize,
    /// Items pulled from the input so far.
    pulled: usize,
    /// Items pulled whose value is not final.
    outstanding: usize,
    /// The input has no more items.
    exhausted: bool,
    /// The caller is gone, or has had the map's failure: hand out nothing more.
    stopped: bool,
    error: Option<PoolError>,
    /// A slot panicked (an `on_error` or `retry_check` that panicked): re-raised to
    /// the caller.
    panic: Option<Box<dyn Any + Send>>,
}

/// One item of the map: its argument while it may still be sent (again), then its
/// result until the caller takes it.
struct Entry<O, Args> {
    item: Option<Args>,
    result: Option<O>,
}

impl<O, Args> Sched<O, Args> {
    /// Item `i` has its final value `v` (the caller counts it with
    /// [`Shared::count_done`]).
    fn done(&mut self, i: usize, v: O) {
        let e = &mut self.entries[i - self.base];
        e.result = Some(v);
        e.item = None;
        self.outstanding -= 1;
    }

    fn halted(&self) -> bool {
        self.stopped || self.error.is_some() || self.panic.is_some()
    }
}

struct Shared<O, Args> {
    sched: Mutex<Sched<O, Args>>,
    /// Wakes the slots (new work, or the end).
    notify: Notify,
    /// Wakes the engine (a result, a failure, a batch taken from the queue).
    waker: AtomicWaker,
    on_error: Option<OnError<O>>,
    retry_delays: Vec<Duration>,
    retry_check: Option<RetryCheck>,
    bar: Option<MapBar>,
    /// The same numbers for a dashboard (`cohort_cluster::observe`).
    progress: cohort_cluster::observe::Progress,
    cluster: cohort_cluster::Cluster,
    /// How many slots run (more when the pool grows during the map).
    slots: AtomicUsize,
}

impl<O, Args> Shared<O, Args> {
    /// `k` more items have their final value: the bar and the dashboard count them.
    fn count_done(&self, k: usize) {
        if k == 0 {
            return;
        }
        if let Some(b) = &self.bar {
            b.inc(k as u64);
        }
        self.progress.done(k as u64);
    }

    /// Stops the map with `e` (the first failure wins).
    fn fail(&self, e: PoolError) {
        let mut s = self.sched.lock();
        if !s.halted() {
            s.error = Some(e);
        }
        drop(s);
        self.waker.wake();
        self.notify.notify_waiters();
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
        if s.halted() {
            return;
        }
        if let Some(b) = &self.bar {
            b.failure(retry);
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
            let v = h(&err);
            s.done(i, v);
            drop(s);
            self.count_done(1);
            self.waker.wake();
        } else {
            drop(s);
            self.fail(PoolError::Call(err));
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

/// How many items the streaming form pulls ahead of its consumer, per pool member and
/// batch: enough to keep every worker busy while the consumer catches up, bounded so
/// that a slow consumer (or a slow first item) does not pull the whole input.
pub const STREAM_BATCHES_AHEAD: usize = 2;

/// What the engine needs before it starts (at its first poll).
struct Setup<F, O> {
    f: F,
    opts: PmapOptions<O>,
    /// Whether the caller consumes results one by one (then the input is pulled at
    /// most [`STREAM_BATCHES_AHEAD`] batches per member ahead of it).
    streaming: bool,
}

/// The caller's side of a map: pulls the input one batch at a time, keeping one batch
/// per pool member queued, and hands the results out in input order. Dropping it stops the map: no more batches are handed
/// out (those running finish on their workers, and their results are dropped).
struct Engine<F, Args, I>
where
    F: RemoteFn<Args>,
{
    input: I,
    /// An item pulled before the map started (to tell an empty input).
    first: Option<Args>,
    setup: Option<Setup<F, F::Output>>,
    shared: Option<Arc<Shared<F::Output, Args>>>,
    batch: usize,
    /// Items pulled ahead of the consumer at most (streaming form).
    window: Option<usize>,
    /// The bar's length grows as items are pulled (the input's length is unknown).
    grow_bar: bool,
    finished: bool,
}

// The engine is never pinned in place: it holds no self-references (the input is
// moved only with the engine), so it may be moved between polls.
impl<F: RemoteFn<Args>, Args, I> Unpin for Engine<F, Args, I> {}

impl<F, Args, I> Engine<F, Args, I>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    I: Iterator<Item = Args>,
{
    fn new(f: F, input: I, opts: PmapOptions<F::Output>, streaming: bool) -> Self {
        Engine {
            input,
            first: None,
            setup: Some(Setup { f, opts, streaming }),
            shared: None,
            batch: 1,
            window: None,
            grow_bar: false,
            finished: false,
        }
    }

    /// Starts the map: `Ok(false)` for an empty input (which needs no worker).
    fn start(&mut self, setup: Setup<F, F::Output>) -> Result<bool, PoolError> {
        let Setup { f, opts, streaming } = setup;
        let Some(first) = self.input.next() else {
            return Ok(false);
        };
        self.first = Some(first);
        let (lo, hi) = self.input.size_hint();
        let exact = (hi == Some(lo)).then(|| lo.saturating_add(1));
        let known = lo.saturating_add(1);
        let cluster = cohort_cluster::Cluster::current();
        let pool = if !opts.distributed {
            AnyPool::Workers(local_pool(&cluster))
        } else {
            opts.pool.clone().unwrap_or_else(default_pool)
        };
        let workers = pool.worker_pool().clone();
        let slots = workers.try_len()?;
        if slots == 0 {
            return Err(PoolError::EmptyPool);
        }
        self.batch = opts.batch_size.resolve(known, slots);
        self.window = streaming.then(|| {
            STREAM_BATCHES_AHEAD
                .saturating_mul(slots)
                .saturating_mul(self.batch)
        });
        self.grow_bar = exact.is_none();
        let len = exact.map(|n| n as u64);
        #[cfg(feature = "progress")]
        let bar = match opts.progress_bar {
            Some(b) => Some(MapBar::from_caller(b, len)),
            None => opts.progress.then(|| MapBar::new(len)),
        };
        #[cfg(not(feature = "progress"))]
        let bar: Option<MapBar> = None;
        let cluster = workers.cluster().clone();
        let label = if opts.distributed { "pmap" } else { "asyncmap" };
        let progress =
            cohort_cluster::observe::Progress::start(&cluster, label, len.unwrap_or(known as u64));
        let batched = Batched::new(f);
        let (call_f, state) = match &pool {
            AnyPool::Caching(c) => {
                let (cached, state) = c.wrap::<Batched<F>, (Vec<Args>,)>(batched)?;
                (Callable::Cached(c.clone(), cached), state)
            }
            AnyPool::Workers(_) => (
                Callable::Plain(cohort_cluster::Prepared::new(batched)),
                Vec::new(),
            ),
        };
        let shared = Arc::new(Shared {
            sched: Mutex::new(Sched {
                queue: VecDeque::new(),
                entries: VecDeque::new(),
                base: 0,
                pulled: 0,
                outstanding: 0,
                exhausted: false,
                stopped: false,
                error: None,
                panic: None,
            }),
            notify: Notify::new(),
            waker: AtomicWaker::new(),
            on_error: opts.on_error,
            retry_delays: opts.retry_delays,
            retry_check: opts.retry_check,
            bar,
            progress,
            cluster,
            slots: AtomicUsize::new(slots),
        });
        let call_f = Arc::new(call_f);
        let state = Arc::new(state);
        for _ in 0..slots {
            spawn_slot(&shared, &workers, &call_f, &state);
        }
        // A proxy's take lends this process when its owner has no free worker, so its
        // slots never wait for a member to join.
        if !workers.is_proxy() {
            spawn_slot_grower(&shared, &workers, &call_f, &state, slots);
        }
        self.shared = Some(shared);
        Ok(true)
    }

    /// Pulls one batch from the input and queues it.
    fn feed(&mut self, shared: &Shared<F::Output, Args>) {
        let mut batch = Vec::with_capacity(self.batch);
        let mut exhausted = false;
        while batch.len() < self.batch {
            match self.first.take().or_else(|| self.input.next()) {
                Some(x) => batch.push(x),
                None => {
                    exhausted = true;
                    break;
                }
            }
        }
        let n = batch.len();
        let mut s = shared.sched.lock();
        let start = s.pulled;
        for (k, x) in batch.into_iter().enumerate() {
            debug_assert_eq!(s.base + s.entries.len(), start + k);
            s.entries.push_back(Entry {
                item: Some(x),
                result: None,
            });
        }
        s.pulled += n;
        s.outstanding += n;
        if n > 0 {
            s.queue.push_back(Work {
                indices: (start..start + n).collect(),
                attempt: 0,
                avoid: None,
            });
        }
        s.exhausted |= exhausted;
        drop(s);
        if self.grow_bar {
            if let Some(b) = &shared.bar {
                b.pulled(n as u64);
            }
        }
        shared.notify.notify_waiters();
    }

    fn end(&mut self, shared: &Shared<F::Output, Args>, ok: bool) {
        self.finished = true;
        shared.sched.lock().stopped = true;
        shared.notify.notify_waiters();
        if let Some(b) = &shared.bar {
            b.finish(ok);
        }
        shared.progress.finish();
    }
}

/// What one [`Engine::poll_fill`] did.
enum Filled {
    /// Moved one or more results out.
    Some,
    /// The map has ended: every result was handed out.
    Ended,
}

impl<F, Args, I> Engine<F, Args, I>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    I: Iterator<Item = Args>,
{
    /// Moves up to `max` ready results, in input order, into `out` (one lock for all
    /// of them), feeding the queue meanwhile; pending while none is ready. A failure
    /// comes after the results before it were handed out.
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut impl Extend<F::Output>,
        max: usize,
    ) -> Poll<Result<Filled, PoolError>> {
        if self.finished {
            return Poll::Ready(Ok(Filled::Ended));
        }
        if let Some(setup) = self.setup.take() {
            match self.start(setup) {
                Ok(true) => {}
                Ok(false) => {
                    self.finished = true;
                    return Poll::Ready(Ok(Filled::Ended));
                }
                Err(e) => {
                    self.finished = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
        let Some(shared) = self.shared.clone() else {
            self.finished = true;
            return Poll::Ready(Ok(Filled::Ended));
        };
        loop {
            // Registered before the state is looked at, so no wake-up is missed.
            shared.waker.register(cx.waker());
            let mut s = shared.sched.lock();
            if let Some(p) = s.panic.take() {
                drop(s);
                self.end(&shared, false);
                std::panic::resume_unwind(p);
            }
            let mut moved = 0;
            while moved < max && s.entries.front().is_some_and(|e| e.result.is_some()) {
                let e = s.entries.pop_front().expect("checked above");
                out.extend(e.result);
                s.base += 1;
                moved += 1;
            }
            if moved > 0 {
                return Poll::Ready(Ok(Filled::Some));
            }
            if let Some(e) = s.error.take() {
                drop(s);
                self.end(&shared, false);
                return Poll::Ready(Err(e));
            }
            if s.exhausted && s.outstanding == 0 {
                drop(s);
                self.end(&shared, true);
                return Poll::Ready(Ok(Filled::Ended));
            }
            // One batch ready per member, so that a worker finishing its batch finds
            // the next without waiting for this side.
            let room = self.window.is_none_or(|w| s.pulled - s.base < w);
            // A batch kept ready per slot (one per pool member, more as members join).
            let slots = shared.slots.load(Ordering::Relaxed);
            let wanted = !s.exhausted && room && s.queue.len() < slots;
            drop(s);
            if !wanted {
                return Poll::Pending;
            }
            self.feed(&shared);
        }
    }

    /// Runs the map to its end, collecting the results in input order.
    async fn collect(mut self, hint: usize) -> Result<Vec<F::Output>, PoolError> {
        let mut out = Vec::with_capacity(hint);
        futures::future::poll_fn(|cx| loop {
            match self.poll_fill(cx, &mut out, usize::MAX) {
                Poll::Ready(Ok(Filled::Some)) => {}
                Poll::Ready(Ok(Filled::Ended)) => return Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await?;
        Ok(out)
    }
}

impl<F, Args, I> Stream for Engine<F, Args, I>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    I: Iterator<Item = Args>,
{
    type Item = Result<F::Output, PoolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // One at a time, so that the window counts only what the consumer has taken.
        let mut one = Vec::with_capacity(1);
        match this.poll_fill(cx, &mut one, 1) {
            Poll::Ready(Ok(Filled::Some)) => Poll::Ready(one.pop().map(Ok)),
            Poll::Ready(Ok(Filled::Ended)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F: RemoteFn<Args>, Args, I> Drop for Engine<F, Args, I> {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.sched.lock().stopped = true;
            shared.notify.notify_waiters();
            if !self.finished {
                if let Some(b) = &shared.bar {
                    b.finish(false);
                }
                shared.progress.finish();
            }
        }
    }
}

/// Calls `f` on each item of `items` on the default pool's workers, and returns the
/// results in input order (Julia's `pmap(f, c)`). `items` is any iterable — a `Vec`,
/// a range, a lazy iterator — pulled one batch at a time as batches are handed out,
/// keeping one batch per pool member ready, never collected first; batches are chosen
/// automatically; the first failure is returned.
/// [`pmap_array`] keeps an n-dimensional input's shape; [`pmap_stream`] hands the
/// results out one by one.
///
/// # Errors
/// The first item's failure ([`PoolError::Call`]), or [`PoolError::EmptyPool`].
///
/// # Cancel safety
/// Not cancel-safe: dropped, the map stops handing out batches, but those already
/// sent still run on their workers, and the results so far are dropped.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let v = cohort_pool::pmap(|x: u64| x * x, 1..=4).await.unwrap();
/// assert_eq!(v, vec![1, 4, 9, 16]);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let v = cohort_pool::blocking::pmap(|s: String| s.len(), vec![\"ab\".into(), \"c\".into()]).unwrap();
 assert_eq!(v, vec![2, 1]);"
)]
pub async fn pmap<F, T>(
    f: F,
    items: impl IntoIterator<Item = T>,
) -> Result<Vec<F::Output>, PoolError>
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
/// As [`pmap`].
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
    items: impl IntoIterator<Item = T>,
    opts: PmapOptions<F::Output>,
) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<(T,)>,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pmap_args(f, items.into_iter().map(|x| (x,)), opts).await
}

/// Maps `f` over several collections element-wise (Julia's `pmap(f, c1, c2)`): each
/// item is the tuple of arguments of one call; [`zip2`] and [`zip3`] build them
/// (stopping at the shortest collection), as does [`Iterator::zip`].
///
/// # Errors
/// As [`pmap_with`].
///
/// # Cancel safety
/// As [`pmap`].
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
    items: impl IntoIterator<Item = Args>,
    opts: PmapOptions<F::Output>,
) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let items = items.into_iter();
    let hint = items.size_hint().0;
    Engine::new(f, items, opts, false).collect(hint).await
}

/// The streaming form of [`pmap_with`] (Julia's `pgenerate`): a [`Stream`] of the
/// results in input order, each handed out as soon as it and those before it have
/// completed. The input is pulled as batches are handed out, at most
/// [`STREAM_BATCHES_AHEAD`] batches per pool member ahead of the consumer, so an
/// endless iterator works and a slow consumer holds the map back instead of
/// buffering it. After a failure (without [`PmapOptions::on_error`]) the stream
/// yields that error and ends. The blocking form,
/// [`blocking::pmap_stream`](crate::blocking::pmap_stream), is an [`Iterator`].
///
/// Nothing runs until the stream is first polled; dropping it stops the map (the
/// batches already sent still run on their workers).
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// use futures::StreamExt;
/// use cohort_pool::{pmap_stream, PmapOptions};
/// let firsts: Vec<u64> = pmap_stream(|x: u64| x * 10, 0.., PmapOptions::new())
///     .take(3)
///     .map(Result::unwrap)
///     .collect()
///     .await;
/// assert_eq!(firsts, vec![0, 10, 20]);
/// # });
/// ```
pub fn pmap_stream<F, T>(
    f: F,
    items: impl IntoIterator<Item = T>,
    opts: PmapOptions<F::Output>,
) -> impl Stream<Item = Result<F::Output, PoolError>> + Unpin
where
    F: RemoteFn<(T,)>,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    Engine::new(f, items.into_iter().map(|x| (x,)), opts, true)
}

/// [`pmap_with`] over an n-dimensional array (Julia's `pmap(f, A)` for an `A` of any
/// shape): the result has `a`'s shape, element `[i, j, …]` being `f(a[[i, j, …]])`.
/// The elements are pulled in logical (row-major) order and cloned as batches are
/// handed out. (Feature `ndarray`, on by default.)
///
/// # Errors
/// As [`pmap_with`].
///
/// # Cancel safety
/// As [`pmap`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// use cohort_pool::{pmap_array, PmapOptions};
/// let a = ndarray::arr2(&[[1, 2, 3], [4, 5, 6]]);
/// let b = pmap_array(|x: i32| x * 10, &a, PmapOptions::new()).await.unwrap();
/// assert_eq!(b, ndarray::arr2(&[[10, 20, 30], [40, 50, 60]]));
/// # });
/// ```
#[cfg(feature = "ndarray")]
#[cohort_macros::twin_fn(example = " use cohort_pool::{blocking, PmapOptions};
 let a = ndarray::Array3::<u8>::zeros((2, 3, 4));
 let b = blocking::pmap_array(|x: u8| u16::from(x) + 1, &a, PmapOptions::new()).unwrap();
 assert_eq!(b.shape(), &[2, 3, 4]);")]
pub async fn pmap_array<F, T, S, D>(
    f: F,
    a: &ndarray::ArrayBase<S, D>,
    opts: PmapOptions<F::Output>,
) -> Result<ndarray::Array<F::Output, D>, PoolError>
where
    F: RemoteFn<(T,)>,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: ndarray::Data<Elem = T>,
    D: ndarray::Dimension,
{
    let v = pmap_with(f, a.iter().cloned(), opts).await?;
    Ok(ndarray::Array::from_shape_vec(a.raw_dim(), v)
        .expect("a map gives one result per element, in logical order"))
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
pub async fn asyncmap<F, T>(
    f: F,
    items: impl IntoIterator<Item = T>,
) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<(T,)>,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pmap_with(f, items, PmapOptions::new().distributed(false)).await
}

enum Callable<F> {
    /// Encoded once for the whole map; its state crosses to each worker once (see
    /// [`cohort_cluster::Prepared`]).
    Plain(cohort_cluster::Prepared<Batched<F>>),
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

/// One pool member's share of a map: takes the next batch, runs it on a free worker,
/// records its results; waits when nothing is queued. Each take wakes the engine, which
/// keeps one batch per member queued.
/// Starts one slot: a task of cohort's runtime (so `pmap` works from any executor)
/// that runs one batch at a time until the map ends.
fn spawn_slot<F, Args>(
    shared: &Arc<Shared<F::Output, Args>>,
    workers: &crate::WorkerPool,
    call_f: &Arc<Callable<F>>,
    state: &Arc<Vec<u8>>,
) where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let (shared, workers) = (shared.clone(), workers.clone());
    let (call_f, state) = (call_f.clone(), state.clone());
    cohort_cluster::runtime::handle().spawn(async move {
        let run = std::panic::AssertUnwindSafe(slot(shared.clone(), workers, call_f, state));
        if let Err(p) = run.catch_unwind().await {
            shared.sched.lock().panic.get_or_insert(p);
            shared.waker.wake();
            shared.notify.notify_waiters();
        }
    });
}

/// Gives a worker that joins the pool while the map runs (an elastic worker, a new
/// `addprocs`) a slot of its own, so that new work goes to it too: watches the
/// cluster's membership until the map halts or runs out of work.
fn spawn_slot_grower<F, Args>(
    shared: &Arc<Shared<F::Output, Args>>,
    workers: &crate::WorkerPool,
    call_f: &Arc<Callable<F>>,
    state: &Arc<Vec<u8>>,
    slots: usize,
) where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let (shared, workers) = (shared.clone(), workers.clone());
    let (call_f, state) = (call_f.clone(), state.clone());
    cohort_cluster::runtime::handle().spawn(async move {
        let mut membership = workers.cluster().watch_membership();
        let mut running = slots;
        loop {
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = shared.sched.lock();
                if s.halted() || (s.exhausted && s.outstanding == 0) {
                    return;
                }
            }
            while workers.len() > running {
                spawn_slot(&shared, &workers, &call_f, &state);
                running += 1;
                shared.slots.store(running, Ordering::Relaxed);
                // The engine keeps a batch ready for each slot.
                shared.waker.wake();
            }
            tokio::select! {
                changed = membership.changed() => if changed.is_err() { return },
                _ = notified => {}
            }
        }
    });
}

async fn slot<F, Args>(
    shared: Arc<Shared<F::Output, Args>>,
    workers: crate::WorkerPool,
    call_f: Arc<Callable<F>>,
    state: Arc<Vec<u8>>,
) where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let fname = std::any::type_name::<F>();
    loop {
        let (work, batch) = loop {
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = shared.sched.lock();
                if s.halted() {
                    return;
                }
                if let Some(w) = s.queue.pop_front() {
                    // The last attempt moves the items out; earlier ones keep them
                    // for a retry.
                    let keep = w.attempt < shared.retry_delays.len();
                    let base = s.base;
                    let batch: Vec<Args> = w
                        .indices
                        .iter()
                        .map(|&i| {
                            let e = &mut s.entries[i - base];
                            let item = if keep { e.item.clone() } else { e.item.take() };
                            item.expect("a queued item is kept until it is final")
                        })
                        .collect();
                    break (w, batch);
                }
                if s.exhausted && s.outstanding == 0 {
                    return;
                }
            }
            shared.waker.wake();
            notified.await;
        };
        // The engine refills the queue while this batch runs.
        shared.waker.wake();
        let lease = match workers.take_avoiding(work.avoid).await {
            Ok(l) => l,
            Err(e) => {
                shared.fail(e);
                return;
            }
        };
        let pid = lease.pid();
        let out = call_batch(workers.cluster(), &call_f, &state, pid, batch).await;
        drop(lease);
        match out {
            Ok(results) if results.len() == work.indices.len() => {
                let mut failed = Vec::new();
                {
                    let mut s = shared.sched.lock();
                    if s.halted() {
                        return;
                    }
                    for (&i, r) in work.indices.iter().zip(results) {
                        match r {
                            Ok(v) => s.done(i, v),
                            Err(e) => failed.push((i, e)),
                        }
                    }
                }
                shared.count_done(work.indices.len() - failed.len());
                shared.waker.wake();
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
