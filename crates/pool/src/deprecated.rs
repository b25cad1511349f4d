//! The blocking free functions under their old names, kept for one release: each
//! calls its replacement in [`crate::blocking`].
#![allow(deprecated)]

use std::ops::Range;
use std::time::Duration;

use cohort_cluster::{Pid, RemoteFn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{CacheStats, CompositeError, PmapOptions, PoolError, TimedWait};

/// Renamed: [`blocking::pmap`](crate::blocking::pmap).
///
/// # Errors
/// As [`pmap`](crate::pmap).
///
/// ```
/// #![allow(deprecated)]
/// assert_eq!(cohort_pool::pmap_blocking(|x: u8| x, vec![1]).unwrap(), vec![1]);
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::pmap`")]
pub fn pmap_blocking<F, T>(f: F, items: Vec<T>) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<(T,)>,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    crate::blocking::pmap(f, items)
}

/// Renamed: [`blocking::pmap_with`](crate::blocking::pmap_with).
///
/// # Errors
/// As [`pmap`](crate::pmap).
///
/// ```
/// #![allow(deprecated)]
/// let v = cohort_pool::pmap_with_blocking(|x: u8| x, vec![1], cohort_pool::PmapOptions::new());
/// assert_eq!(v.unwrap(), vec![1]);
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::pmap_with`")]
pub fn pmap_with_blocking<F, T>(
    f: F,
    items: Vec<T>,
    opts: PmapOptions<F::Output>,
) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<(T,)>,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    crate::blocking::pmap_with(f, items, opts)
}

/// Renamed: [`blocking::pmap_args`](crate::blocking::pmap_args).
///
/// # Errors
/// As [`pmap`](crate::pmap).
///
/// ```
/// #![allow(deprecated)]
/// let v = cohort_pool::pmap_args_blocking(|a: u8, b: u8| a + b, vec![(1, 2)], cohort_pool::PmapOptions::new());
/// assert_eq!(v.unwrap(), vec![3]);
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::pmap_args`")]
pub fn pmap_args_blocking<F, Args>(
    f: F,
    items: Vec<Args>,
    opts: PmapOptions<F::Output>,
) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    crate::blocking::pmap_args(f, items, opts)
}

/// Renamed: [`blocking::asyncmap`](crate::blocking::asyncmap).
///
/// # Errors
/// As [`pmap`](crate::pmap).
///
/// ```
/// #![allow(deprecated)]
/// assert_eq!(cohort_pool::asyncmap_blocking(|x: u8| x, vec![1]).unwrap(), vec![1]);
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::asyncmap`")]
pub fn asyncmap_blocking<F, T>(f: F, items: Vec<T>) -> Result<Vec<F::Output>, PoolError>
where
    F: RemoteFn<(T,)>,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    crate::blocking::asyncmap(f, items)
}

/// Renamed: [`blocking::distributed_reduce`](crate::blocking::distributed_reduce).
///
/// # Errors
/// As [`distributed_reduce`](crate::distributed_reduce).
///
/// ```
/// #![allow(deprecated)]
/// let n = cohort_pool::distributed_reduce_blocking(0..4, |i: i64| i, |a: i64, b: i64| a + b);
/// assert_eq!(n.unwrap(), 6);
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::distributed_reduce`")]
pub fn distributed_reduce_blocking<B, R, T>(
    range: Range<i64>,
    body: B,
    reducer: R,
) -> Result<T, PoolError>
where
    B: RemoteFn<(i64,), Output = T> + Clone,
    R: RemoteFn<(T, T), Output = T> + Clone,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    crate::blocking::distributed_reduce(range, body, reducer)
}

/// Renamed: [`blocking::everywhere`](crate::blocking::everywhere).
///
/// # Errors
/// As [`everywhere`](crate::everywhere).
///
/// ```
/// #![allow(deprecated)]
/// assert_eq!(cohort_pool::everywhere_blocking(|| 1u8).unwrap(), vec![1]);
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::everywhere`")]
pub fn everywhere_blocking<F>(f: F) -> Result<Vec<F::Output>, CompositeError>
where
    F: RemoteFn<()> + Clone,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    crate::blocking::everywhere(f)
}

/// Renamed: [`blocking::everywhere_on`](crate::blocking::everywhere_on).
///
/// # Errors
/// As [`everywhere`](crate::everywhere).
///
/// ```
/// #![allow(deprecated)]
/// assert_eq!(cohort_pool::everywhere_on_blocking(&[1], || 1u8).unwrap(), vec![1]);
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::everywhere_on`")]
pub fn everywhere_on_blocking<F>(pids: &[Pid], f: F) -> Result<Vec<F::Output>, CompositeError>
where
    F: RemoteFn<()> + Clone,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    crate::blocking::everywhere_on(pids, f)
}

/// Renamed: [`blocking::set_global_everywhere`](crate::blocking::set_global_everywhere).
///
/// # Errors
/// As [`set_global_everywhere`](crate::set_global_everywhere).
///
/// ```
/// #![allow(deprecated)]
/// cohort_pool::set_global_everywhere_blocking("old", &1u8, &[1]).unwrap();
/// ```
#[deprecated(
    since = "0.2.0",
    note = "use `cohort::blocking::set_global_everywhere`"
)]
pub fn set_global_everywhere_blocking<T: Serialize + ?Sized>(
    name: &str,
    value: &T,
    pids: &[Pid],
) -> Result<(), CompositeError> {
    crate::blocking::set_global_everywhere(name, value, pids)
}

/// Renamed: [`blocking::clear`](crate::blocking::clear).
///
/// # Errors
/// As [`clear`](crate::clear).
///
/// ```
/// #![allow(deprecated)]
/// cohort_pool::clear_blocking(&["nothing"], &[1]).unwrap();
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::clear`")]
pub fn clear_blocking(names: &[&str], pids: &[Pid]) -> Result<(), CompositeError> {
    crate::blocking::clear(names, pids)
}

/// Renamed: [`blocking::cache_stats_of`](crate::blocking::cache_stats_of).
///
/// # Errors
/// As [`cache_stats_of`](crate::cache_stats_of).
///
/// ```
/// #![allow(deprecated)]
/// assert_eq!(cohort_pool::cache_stats_of_blocking(1).unwrap().entries, 0);
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::cache_stats_of`")]
pub fn cache_stats_of_blocking(pid: Pid) -> Result<CacheStats, PoolError> {
    crate::blocking::cache_stats_of(pid)
}

/// Renamed: [`blocking::global_names_of`](crate::blocking::global_names_of).
///
/// # Errors
/// As [`global_names_of`](crate::global_names_of).
///
/// ```
/// #![allow(deprecated)]
/// let _ = cohort_pool::global_names_of_blocking(1).unwrap();
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::global_names_of`")]
pub fn global_names_of_blocking(pid: Pid) -> Result<Vec<String>, PoolError> {
    crate::blocking::global_names_of(pid)
}

/// Renamed: [`timedwait`](crate::timedwait) (async; its blocking form is
/// [`blocking::timedwait`](crate::blocking::timedwait)).
///
/// ```
/// #![allow(deprecated)]
/// # cohort_cluster::runtime::block_on(async {
/// use std::time::Duration;
/// let r = cohort_pool::timedwait_async(|| true, Duration::ZERO, Duration::from_millis(1)).await;
/// assert_eq!(r, cohort_pool::TimedWait::Ok);
/// # });
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::pool::timedwait`")]
pub async fn timedwait_async(
    test: impl FnMut() -> bool,
    timeout: Duration,
    pollint: Duration,
) -> TimedWait {
    crate::timedwait(test, timeout, pollint).await
}
