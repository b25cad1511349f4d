//! # cohort-pool — parallel map and loops
//!
//! Julia's `pmap`, `WorkerPool`, `CachingPool`, `@distributed`, `@sync`/`@async` and
//! `@everywhere`, for cohort. This crate sits above the runtime, `cohort-cluster`
//! (whose remotecall family and [`Future`](cohort_cluster::Future) it uses), and below
//! the `cohort` facade, which re-exports it.
//!
//! - [`WorkerPool`] lends workers one call at a time; [`default_worker_pool`] follows
//!   the cluster; [`CachingPool`] sends a closure's captured data to each worker once.
//!   A pool passed to another process arrives there as a proxy of the pool on its
//!   owner, and a worker's default pool is a proxy of the master's, so maps and
//!   [`remote`] calls inside remote calls use the cluster's workers — and lend their
//!   own process while none is free, so a map nested in a map's item cannot deadlock.
//! - [`pmap`] / [`pmap_with`] map a function over any iterable in batches (pulled as
//!   they are handed out), keep input order, retry failed items elsewhere
//!   ([`PmapOptions::retry_delays`]) or put a value in their place
//!   ([`PmapOptions::on_error`]); [`pmap_args`] maps over several collections
//!   element-wise; [`pmap_stream`] hands the results out one by one in input order
//!   (Julia's `pgenerate`); `pmap_array` keeps an n-dimensional array's shape.
//! - [`set_default_worker_pool`] replaces the pool that calls without one use
//!   (Julia's `default_worker_pool!`), a [`CachingPool`] too.
//! - [`distributed_reduce`] and [`distributed_for`] are `@distributed` with and
//!   without a reducer, split like Julia's [`splitrange`]; [`SyncGroup`] and [`sync`]
//!   are `@sync`.
//! - [`everywhere`] runs on every process; [`set_global_everywhere`], [`global`] and
//!   [`clear`] are per-process named values (`@everywhere bar = $foo`).
//! - [`interrupt`] cancels the calls running on workers; [`timedwait`] polls.
//! - [`blocking`] has the blocking forms of the free functions under the same names;
//!   methods have theirs beside them (`WorkerPool::remotecall_fetch_blocking`).
//!
//! Functions travel as in `cohort-cluster`: the wrappers this crate builds (a batch of
//! items, a loop chunk, a cached function) ship by code offset, so the workers must run
//! the same executable — the default for local clusters, where any program linking
//! cohort is its own worker. Its own built-ins (the function cache and the named
//! values) are registered by name.
//!
//! ```
//! use cohort_pool::{pmap_with, BatchSize, PmapOptions};
//! let squares = cohort_pool::blocking::pmap(|x: u64| x * x, 0..10).unwrap();
//! assert_eq!(squares[3], 9);
//! let total = cohort_pool::blocking::distributed_reduce(0..100, |i: i64| i, |a: i64, b: i64| a + b);
//! assert_eq!(total.unwrap(), 4950);
//! ```

pub mod blocking;
mod caching;
mod deprecated;
mod distributed;
mod error;
mod everywhere;
mod pmap;
mod pool;
mod progress;
mod proxy;

pub use caching::{cache_stats, cache_stats_of, CacheStats, Cached, CachingPool, CachingRemote};
#[allow(deprecated)]
pub use deprecated::{
    asyncmap_blocking, cache_stats_of_blocking, clear_blocking, distributed_reduce_blocking,
    everywhere_blocking, everywhere_on_blocking, global_names_of_blocking, pmap_args_blocking,
    pmap_blocking, pmap_with_blocking, set_global_everywhere_blocking, timedwait_async,
};
pub use distributed::{
    distributed_for, distributed_reduce, splitrange, sync, timedwait, LoopIndex, LoopRange,
    SyncGroup, TimedWait,
};
pub use error::{CompositeError, PoolError};
pub use everywhere::{
    clear, everywhere, everywhere_on, global, global_names_here, global_names_of, set_global,
    set_global_everywhere,
};
#[cfg(feature = "ndarray")]
pub use pmap::pmap_array;
pub use pmap::{
    asyncmap, exponential_backoff, pmap, pmap_args, pmap_stream, pmap_with, zip2, zip3, BatchSize,
    Batched, ItemFailure, PmapOptions, MAX_AUTO_BATCH, STREAM_BATCHES_AHEAD,
};

/// The progress-bar crate [`PmapOptions::progress_bar`] takes a bar of (feature
/// `progress`), re-exported so that its version matches.
///
/// ```
/// let _bar = cohort_pool::indicatif::ProgressBar::hidden();
/// ```
#[cfg(feature = "progress")]
pub use indicatif;
pub use pool::{
    default_pool, default_worker_pool, remote, reset_default_worker_pool, set_default_worker_pool,
    AnyPool, Lease, Remote, WorkerPool,
};

/// Interrupts the calls running on `pids` (Julia's `interrupt(pids)`): their callers
/// see a [`CallError::Remote`](cohort_cluster::CallError::Remote) of kind
/// [`Interrupted`](cohort_cluster::ErrorKind::Interrupted), and long-running functions
/// there may poll [`interrupted`] to stop early. On the master the cluster manager's
/// `manage` hears of it.
///
/// ```
/// cohort_pool::interrupt(&[]).unwrap();
/// ```
pub use cohort_cluster::interrupt;
/// Whether the process was interrupted since the call running on this thread started.
///
/// ```
/// assert!(!cohort_pool::interrupted());
/// ```
pub use cohort_cluster::interrupted;
