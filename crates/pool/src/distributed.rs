//! Distributed loops (Julia's `@distributed`), sync groups (`@sync`/`@async`) and
//! `timedwait`.

use std::future::Future as StdFuture;
use std::ops::{Range, RangeInclusive};
use std::time::{Duration, Instant};

use cohort_cluster::{Failure, Future, RemoteFn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{CompositeError, PoolError};

/// A primitive integer a distributed loop can run over: `i8` … `i128`, `u8` … `u128`,
/// `isize`, `usize`. Each maps, keeping order, onto its offset from the type's
/// minimum as a `u128`, so ranges are split without overflow up to the type's edges.
///
/// ```
/// use cohort_pool::LoopIndex;
/// assert_eq!(i8::MIN.offset(), 0);
/// assert_eq!(i8::from_offset(255), i8::MAX);
/// assert_eq!(200u8.offset(), 200);
/// ```
pub trait LoopIndex:
    Copy + Ord + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The offset from the type's minimum.
    fn offset(self) -> u128;
    /// The value at `offset` from the type's minimum (`offset` in range).
    fn from_offset(offset: u128) -> Self;
    /// Folds `f` over `lo..=hi` in order (`lo <= hi`), starting from `init`, without
    /// stepping past the type's maximum.
    fn fold<A>(lo: Self, hi: Self, init: A, f: impl FnMut(A, Self) -> A) -> A;
}

macro_rules! loop_index {
    (unsigned: $($t:ty),*; signed: $($s:ty),*) => {
        $(impl LoopIndex for $t {
            fn offset(self) -> u128 {
                self as u128
            }
            fn from_offset(offset: u128) -> Self {
                offset as $t
            }
            fn fold<A>(lo: Self, hi: Self, init: A, mut f: impl FnMut(A, Self) -> A) -> A {
                // A half-open range and then `hi`: `..=` iterates much slower in tight
                // loops, and `hi + 1` would overflow at the maximum.
                let acc = (lo..hi).fold(init, &mut f);
                f(acc, hi)
            }
        })*
        $(impl LoopIndex for $s {
            fn offset(self) -> u128 {
                // Taken modulo 2^128, so that i128 (whose span overflows i128) works
                // too: MIN → 0, MAX → 2^bits - 1.
                (self as i128).wrapping_sub(<$s>::MIN as i128) as u128
            }
            fn from_offset(offset: u128) -> Self {
                (offset as i128).wrapping_add(<$s>::MIN as i128) as $s
            }
            fn fold<A>(lo: Self, hi: Self, init: A, mut f: impl FnMut(A, Self) -> A) -> A {
                let acc = (lo..hi).fold(init, &mut f);
                f(acc, hi)
            }
        })*
    };
}

loop_index!(unsigned: u8, u16, u32, u64, u128, usize; signed: i8, i16, i32, i64, i128, isize);

/// A range a distributed loop runs over: `a..b` or `a..=b` of a [`LoopIndex`]
/// type. `0..=255u8` covers a whole type, which no half-open range can.
///
/// ```
/// use cohort_pool::LoopRange;
/// assert_eq!((3..7u8).bounds(), Some((3, 6)));
/// assert_eq!((0..=255u8).bounds(), Some((0, 255)));
/// assert_eq!((5..5i64).bounds(), None);
/// ```
pub trait LoopRange<T: LoopIndex> {
    /// The first and last index, or `None` for an empty range.
    fn bounds(&self) -> Option<(T, T)>;
}

impl<T: LoopIndex> LoopRange<T> for Range<T> {
    fn bounds(&self) -> Option<(T, T)> {
        (self.start < self.end).then(|| (self.start, T::from_offset(self.end.offset() - 1)))
    }
}

impl<T: LoopIndex> LoopRange<T> for RangeInclusive<T> {
    fn bounds(&self) -> Option<(T, T)> {
        // An exhausted `RangeInclusive` reports itself empty.
        (!self.is_empty()).then(|| (*self.start(), *self.end()))
    }
}

/// Splits `first..=last` into at most `n` contiguous chunks as Julia's `splitrange`
/// does: equal lengths, the remainder going one item each to the first chunks, and
/// never an empty chunk (fewer chunks than `n` when the range is shorter). Any
/// [`LoopIndex`] type, up to its edges.
///
/// ```
/// use cohort_pool::splitrange;
/// assert_eq!(splitrange(1, 10, 3), vec![1..=4, 5..=7, 8..=10]);
/// assert_eq!(splitrange(1, 2, 4), vec![1..=1, 2..=2]);
/// assert!(splitrange(1, 0, 4).is_empty());
/// assert_eq!(splitrange(0u8, 255, 2), vec![0..=127, 128..=255]);
/// ```
pub fn splitrange<T: LoopIndex>(first: T, last: T, n: usize) -> Vec<RangeInclusive<T>> {
    if last < first {
        return Vec::new();
    }
    let (lo, span) = (first.offset(), last.offset() - first.offset());
    let n = n.max(1) as u128;
    // len = span + 1, which is 2^128 for a whole u128/i128 range: divided without
    // forming it.
    let (each, extras) = {
        let r = span % n + 1;
        (span / n + r / n, r % n)
    };
    let nchunks = if each > 0 { n } else { extras };
    let mut out = Vec::with_capacity(nchunks as usize);
    let mut start = 0u128; // offset from `lo`
    for k in 0..nchunks {
        let len = each + u128::from(k < extras);
        let end = start + (len - 1);
        out.push(T::from_offset(lo + start)..=T::from_offset(lo + end));
        // Past the last chunk `end + 1` may be 2^128: not formed.
        start = end.wrapping_add(1);
    }
    out
}

/// The number of indices in `lo..=hi` as a dashboard counts them (saturated).
fn span_len<T: LoopIndex>(lo: T, hi: T) -> u64 {
    u64::try_from(hi.offset() - lo.offset())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// A loop body reduced over one chunk on a worker: `body(i)` for each `i` of the
/// chunk, folded with `reducer`. Its state is the two functions' states.
pub(crate) struct ChunkReduce<B, R> {
    body: B,
    reducer: R,
}

impl<B, R, I, T> RemoteFn<(I, I)> for ChunkReduce<B, R>
where
    I: LoopIndex,
    B: RemoteFn<(I,), Output = T>,
    R: RemoteFn<(T, T), Output = T>,
{
    type Output = T;

    fn call(&self, (lo, hi): (I, I)) -> T {
        let first = self.body.call((lo,));
        if lo == hi {
            return first;
        }
        let next = I::from_offset(lo.offset() + 1);
        I::fold(next, hi, first, |acc, i| {
            self.reducer.call((acc, self.body.call((i,))))
        })
    }

    fn encode_state(&self) -> Result<Vec<u8>, Failure> {
        cohort_cluster::codec::encode(&(self.body.encode_state()?, self.reducer.encode_state()?))
    }

    fn decode_state(state: &[u8]) -> Result<Self, Failure> {
        let (b, r): (Vec<u8>, Vec<u8>) = cohort_cluster::codec::decode(state)?;
        Ok(ChunkReduce {
            body: B::decode_state(&b)?,
            reducer: R::decode_state(&r)?,
        })
    }
}

/// A loop body run over one chunk on a worker, for its effect.
pub(crate) struct ChunkFor<B> {
    body: B,
}

impl<B, I> RemoteFn<(I, I)> for ChunkFor<B>
where
    I: LoopIndex,
    B: RemoteFn<(I,)>,
{
    type Output = ();

    fn call(&self, (lo, hi): (I, I)) {
        I::fold(lo, hi, (), |(), i| {
            self.body.call((i,));
        });
    }

    fn encode_state(&self) -> Result<Vec<u8>, Failure> {
        self.body.encode_state()
    }

    fn decode_state(state: &[u8]) -> Result<Self, Failure> {
        Ok(ChunkFor {
            body: B::decode_state(state)?,
        })
    }
}

/// The reducer form of a distributed loop (Julia's `@distributed (reducer) for i in
/// range body end`): `range` — `a..b` or `a..=b` of any primitive integer type (a
/// [`LoopRange`]) — is split over the workers with [`splitrange`], each worker reduces
/// `body(i)` over its chunk with `reducer`, and this process reduces the partial
/// results in chunk order.
///
/// # Errors
/// [`PoolError::EmptyReduction`] for an empty range; a chunk's failure.
///
/// # Cancel safety
/// Not cancel-safe: the chunks are sent at the first poll, and a dropped reduction
/// does not stop them; each still runs on its worker and its partial result is dropped.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let sum = cohort_pool::distributed_reduce(1..101, |i: i64| i, |a: i64, b: i64| a + b)
///     .await
///     .unwrap();
/// assert_eq!(sum, 5050);
/// let bytes = cohort_pool::distributed_reduce(0..=255, |i: u8| u32::from(i), |a: u32, b: u32| a + b);
/// assert_eq!(bytes.await.unwrap(), 32640);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let n = cohort_pool::blocking::distributed_reduce(0..10, |_i: i64| 1u64, |a: u64, b: u64| a + b);
 assert_eq!(n.unwrap(), 10);"
)]
pub async fn distributed_reduce<I, B, R, T>(
    range: impl LoopRange<I>,
    body: B,
    reducer: R,
) -> Result<T, PoolError>
where
    I: LoopIndex,
    B: RemoteFn<(I,), Output = T> + Clone,
    R: RemoteFn<(T, T), Output = T> + Clone,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let Some((first, last)) = range.bounds() else {
        return Err(PoolError::EmptyReduction);
    };
    let workers = cohort_cluster::workers();
    let chunks = splitrange(first, last, workers.len());
    // The loop's items as a dashboard counts them: a chunk's, when it returns.
    let cluster = cohort_cluster::Cluster::current();
    let progress = cohort_cluster::observe::Progress::start(
        &cluster,
        "distributed_reduce",
        span_len(first, last),
    );
    let calls: Vec<_> = chunks
        .iter()
        .zip(&workers)
        .map(|(c, &pid)| {
            let f = ChunkReduce {
                body: body.clone(),
                reducer: reducer.clone(),
            };
            let len = span_len(*c.start(), *c.end());
            let call = cohort_cluster::remotecall_fetch(f, pid, (*c.start(), *c.end()));
            let (progress, cluster) = (&progress, &cluster);
            async move {
                let r = call.await;
                match &r {
                    Ok(_) => progress.done(len),
                    Err(e) => {
                        progress.error();
                        if let cohort_cluster::CallError::Remote(e) = e {
                            cohort_cluster::observe::record_error(cluster, "distributed_reduce", e);
                        }
                    }
                }
                r
            }
        })
        .collect();
    let mut acc: Option<T> = None;
    let results = futures::future::join_all(calls).await;
    progress.finish();
    for r in results {
        let v = r?;
        acc = Some(match acc {
            None => v,
            Some(a) => reducer.call((a, v)),
        });
    }
    acc.ok_or(PoolError::EmptyReduction)
}

/// The form without a reducer (Julia's `@distributed for i in range body end`): splits
/// `range` (a [`LoopRange`], as for [`distributed_reduce`]) over the workers, starts
/// `body` on each chunk, and returns the futures at once; wait for them (or add them to
/// a [`SyncGroup`]) to know the loop has finished. An empty range gives no futures.
///
/// ```
/// let futs = cohort_pool::distributed_for(0..8, |i: i64| assert!(i < 8));
/// for f in futs { f.wait_blocking().unwrap(); }
/// let futs = cohort_pool::distributed_for(i8::MIN..=i8::MAX, |_i: i8| ());
/// for f in futs { f.wait_blocking().unwrap(); }
/// ```
pub fn distributed_for<I, B>(range: impl LoopRange<I>, body: B) -> Vec<Future<()>>
where
    I: LoopIndex,
    B: RemoteFn<(I,), Output = ()> + Clone,
{
    let Some((first, last)) = range.bounds() else {
        return Vec::new();
    };
    let workers = cohort_cluster::workers();
    splitrange(first, last, workers.len())
        .iter()
        .zip(&workers)
        .map(|(c, &pid)| {
            let f = ChunkFor { body: body.clone() };
            cohort_cluster::remotecall(f, pid, (*c.start(), *c.end()))
        })
        .collect()
}

/// A group of tasks waited for together (Julia's `@sync` block with `@async` tasks
/// inside): [`spawn`](Self::spawn) starts a task, [`add`](Self::add) adds a
/// [`Future`]; [`wait`](Self::wait) waits for all of them and reports every failure in
/// one [`CompositeError`].
///
/// ```
/// use cohort_pool::SyncGroup;
/// let mut g = SyncGroup::new();
/// g.add(cohort_cluster::spawnat(1, || 1));
/// g.spawn(async { Ok(()) });
/// g.wait_blocking().unwrap();
/// ```
#[derive(Default)]
pub struct SyncGroup {
    tasks: Vec<tokio::task::JoinHandle<Result<(), PoolError>>>,
}

impl std::fmt::Debug for SyncGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SyncGroup({} tasks)", self.tasks.len())
    }
}

impl SyncGroup {
    /// An empty group.
    ///
    /// ```
    /// cohort_pool::SyncGroup::new().wait_blocking().unwrap();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `task` on cohort's runtime (`@async`).
    ///
    /// ```
    /// let mut g = cohort_pool::SyncGroup::new();
    /// g.spawn(async { Err(cohort_pool::PoolError::EmptyPool) });
    /// assert_eq!(g.wait_blocking().unwrap_err().errors.len(), 1);
    /// ```
    pub fn spawn<Fut>(&mut self, task: Fut)
    where
        Fut: StdFuture<Output = Result<(), PoolError>> + Send + 'static,
    {
        self.tasks
            .push(cohort_cluster::runtime::handle().spawn(task));
    }

    /// Adds a future: the group waits until it is ready, and reports its failure.
    ///
    /// ```
    /// let mut g = cohort_pool::SyncGroup::new();
    /// g.add(cohort_cluster::remotecall(|| -> u8 { panic!("x") }, 1, ()));
    /// assert!(g.wait_blocking().is_err());
    /// ```
    pub fn add<T: Send + Sync + 'static>(&mut self, f: Future<T>) {
        self.spawn(async move { Ok(f.wait().await?) });
    }

    /// The number of tasks in the group.
    ///
    /// ```
    /// assert_eq!(cohort_pool::SyncGroup::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the group is empty.
    ///
    /// ```
    /// assert!(cohort_pool::SyncGroup::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits for every task; all failures, in the order the tasks were added.
    ///
    /// # Errors
    /// A [`CompositeError`] holding each failure (a panicked task as
    /// [`PoolError::TaskPanicked`]).
    ///
    /// # Cancel safety
    /// Not cancel-safe: the group is moved in, so dropping the future drops it. Its
    /// tasks are not stopped — each goes on waiting for its call — but their failures are
    /// no longer reported to anyone.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// cohort_pool::SyncGroup::new().wait().await.unwrap();
    /// # });
    /// ```
    #[cohort_macros::twin(example = " cohort_pool::SyncGroup::new().wait_blocking().unwrap();")]
    pub async fn wait(self) -> Result<(), CompositeError> {
        let mut errors = Vec::new();
        for t in self.tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(PoolError::TaskPanicked(e.to_string())),
            }
        }
        CompositeError::check(errors)
    }
}

/// Runs `body` with a fresh [`SyncGroup`] and waits for everything it started
/// (Julia's `@sync begin … end`).
///
/// # Errors
/// Every failure of the tasks started inside, as one [`CompositeError`].
///
/// ```
/// use cohort_pool::sync;
/// let r = sync(|g| {
///     for p in cohort_cluster::workers() {
///         g.add(cohort_cluster::spawnat(p, || ()));
///     }
///     7
/// });
/// assert_eq!(r.unwrap(), 7);
/// ```
pub fn sync<R>(body: impl FnOnce(&mut SyncGroup) -> R) -> Result<R, CompositeError> {
    let mut g = SyncGroup::new();
    let r = body(&mut g);
    g.wait_blocking()?;
    Ok(r)
}

/// What [`timedwait`] saw.
///
/// ```
/// assert_ne!(cohort_pool::TimedWait::Ok, cohort_pool::TimedWait::TimedOut);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedWait {
    /// The condition became true.
    Ok,
    /// The time ran out first.
    TimedOut,
}

/// Calls `test` every `pollint` until it returns true or `timeout` has passed
/// (Julia's `timedwait`).
///
/// # Cancel safety
/// Cancel-safe: it only calls `test` and sleeps; a dropped wait stops calling `test`.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// use std::time::Duration;
/// let r = cohort_pool::timedwait(|| true, Duration::from_secs(1), Duration::from_millis(1)).await;
/// assert_eq!(r, cohort_pool::TimedWait::Ok);
/// # });
/// ```
#[cohort_macros::twin_fn(example = " use std::time::Duration;
 let r = cohort_pool::blocking::timedwait(|| false, Duration::from_millis(5), Duration::from_millis(1));
 assert_eq!(r, cohort_pool::TimedWait::TimedOut);")]
pub async fn timedwait(
    mut test: impl FnMut() -> bool,
    timeout: Duration,
    pollint: Duration,
) -> TimedWait {
    let deadline = Instant::now() + timeout;
    loop {
        if test() {
            return TimedWait::Ok;
        }
        let now = Instant::now();
        if now >= deadline {
            return TimedWait::TimedOut;
        }
        // The timer runs on cohort's runtime, so this works from any executor.
        let nap = pollint.min(deadline - now);
        let _ = cohort_cluster::runtime::handle()
            .spawn(async move { tokio::time::sleep(nap).await })
            .await;
    }
}
