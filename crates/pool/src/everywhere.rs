//! `everywhere`: run on every process; per-process named values (Julia's
//! `@everywhere bar = $foo`, `Main.bar`, `clear!`).

use std::collections::HashMap;
use std::sync::OnceLock;

use cohort_cluster::registry::{RemoteFnEntry, REMOTE_FUNCTIONS};
use cohort_cluster::{Pid, RemoteFn};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{CompositeError, PoolError};

/// Runs `f` on every process, this one included (Julia's `@everywhere expr`), and
/// returns each result in [`procs`](cohort_cluster::procs) order.
///
/// # Errors
/// Every process's failure, in one [`CompositeError`].
///
/// # Cancel safety
/// As [`everywhere_on`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let ids = cohort_pool::everywhere(|| cohort_cluster::myid()).await.unwrap();
/// assert_eq!(ids, cohort_cluster::procs());
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let n = cohort_pool::blocking::everywhere(|| 1u8).unwrap();
 assert_eq!(n.len(), cohort_cluster::nprocs());"
)]
pub async fn everywhere<F>(f: F) -> Result<Vec<F::Output>, CompositeError>
where
    F: RemoteFn<()> + Clone,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    everywhere_on(&cohort_cluster::procs(), f).await
}

/// Runs `f` on each of `pids` at once (Julia's `@everywhere pids expr`) and returns
/// the results in the order of `pids`.
///
/// # Errors
/// Every failure, in one [`CompositeError`].
///
/// # Cancel safety
/// Not cancel-safe: the calls are started at the first poll (on this process, on a
/// blocking thread), and a dropped `everywhere_on` does not stop them; each still runs,
/// and its result is dropped.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let v = cohort_pool::everywhere_on(&[1], || 5u8).await.unwrap();
/// assert_eq!(v, vec![5]);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " assert_eq!(cohort_pool::blocking::everywhere_on(&[1], || 2u8).unwrap(), vec![2]);"
)]
pub async fn everywhere_on<F>(pids: &[Pid], f: F) -> Result<Vec<F::Output>, CompositeError>
where
    F: RemoteFn<()> + Clone,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let calls: Vec<_> = pids
        .iter()
        .map(|&p| cohort_cluster::remotecall_fetch(f.clone(), p, ()))
        .collect();
    let mut out = Vec::with_capacity(calls.len());
    let mut errors = Vec::new();
    for r in futures::future::join_all(calls).await {
        match r {
            Ok(v) => out.push(v),
            Err(e) => errors.push(PoolError::Call(e)),
        }
    }
    CompositeError::check(errors)?;
    Ok(out)
}

fn globals() -> &'static RwLock<HashMap<String, Vec<u8>>> {
    static G: OnceLock<RwLock<HashMap<String, Vec<u8>>>> = OnceLock::new();
    G.get_or_init(Default::default)
}

fn global_set(name: String, bytes: Vec<u8>) {
    globals().write().insert(name, bytes);
}

fn global_clear(names: Vec<String>) {
    let mut g = globals().write();
    for n in names {
        g.remove(&n);
    }
}

fn global_names() -> Vec<String> {
    let mut v: Vec<String> = globals().read().keys().cloned().collect();
    v.sort_unstable();
    v
}

#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static GLOBAL_SET: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (String, Vec<u8>)>("cohort_pool::global_set", &global_set);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static GLOBAL_CLEAR: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (Vec<String>,)>("cohort_pool::global_clear", &global_clear);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static GLOBAL_NAMES: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, ()>("cohort_pool::global_names", &global_names);

/// Defines the named value `name` on this process (Julia's `global bar = …` in
/// `Main`); remote functions running here read it with [`global`].
///
/// # Errors
/// [`PoolError::Serialization`] if `value` cannot be encoded.
///
/// ```
/// cohort_pool::set_global("answer", &42u32).unwrap();
/// assert_eq!(cohort_pool::global::<u32>("answer").unwrap(), 42);
/// ```
pub fn set_global<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<(), PoolError> {
    let bytes =
        cohort_cluster::codec::encode(value).map_err(|e| PoolError::Serialization(e.message))?;
    global_set(name.to_string(), bytes);
    Ok(())
}

/// Reads the named value `name` on this process (`Main.bar` inside a remote function).
///
/// # Errors
/// [`PoolError::UndefinedGlobal`] if it is not defined here;
/// [`PoolError::Serialization`] if it is not a `T`.
///
/// ```
/// assert!(cohort_pool::global::<u8>("never defined").is_err());
/// ```
pub fn global<T: DeserializeOwned>(name: &str) -> Result<T, PoolError> {
    let g = globals().read();
    let Some(bytes) = g.get(name) else {
        return Err(PoolError::UndefinedGlobal {
            name: name.to_string(),
            pid: cohort_cluster::myid(),
        });
    };
    cohort_cluster::codec::decode(bytes).map_err(|e| PoolError::Serialization(e.message))
}

/// The names defined on this process, sorted.
///
/// ```
/// cohort_pool::set_global("listed", &1u8).unwrap();
/// assert!(cohort_pool::global_names_here().contains(&"listed".to_string()));
/// ```
pub fn global_names_here() -> Vec<String> {
    global_names()
}

/// Defines `name` = `value` on each of `pids` (Julia's `@everywhere pids bar = $foo`):
/// the value is encoded once here and sent to every process.
///
/// # Errors
/// Every process's failure, in one [`CompositeError`].
///
/// # Cancel safety
/// Not cancel-safe: the value is sent to every process at the first poll, and a
/// dropped call does not stop it; some or all of `pids` may have the name defined, and
/// which is not reported.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// cohort_pool::set_global_everywhere("bar", &vec![1, 2, 3], &cohort_cluster::procs()).await.unwrap();
/// assert_eq!(cohort_pool::global::<Vec<i32>>("bar").unwrap(), vec![1, 2, 3]);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " cohort_pool::blocking::set_global_everywhere(\"n\", &3u8, &[1]).unwrap();
 assert_eq!(cohort_pool::global::<u8>(\"n\").unwrap(), 3);"
)]
pub async fn set_global_everywhere<T: Serialize + ?Sized>(
    name: &str,
    value: &T,
    pids: &[Pid],
) -> Result<(), CompositeError> {
    let bytes = cohort_cluster::codec::encode(value).map_err(|e| CompositeError {
        errors: vec![PoolError::Serialization(e.message)],
    })?;
    let futs: Vec<_> = pids
        .iter()
        .map(|&p| {
            cohort_cluster::remotecall_fetch(global_set, p, (name.to_string(), bytes.clone()))
        })
        .collect();
    let errors = futures::future::join_all(futs)
        .await
        .into_iter()
        .filter_map(|r| r.err().map(PoolError::Call))
        .collect();
    CompositeError::check(errors)
}

/// Removes the named values `names` on each of `pids` (Julia's `clear!(syms, pids)`).
///
/// # Errors
/// Every process's failure, in one [`CompositeError`].
///
/// # Cancel safety
/// The requests are sent when this is called; a dropped future stops only the
/// waiting.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// cohort_pool::set_global("tmp2", &1u8).unwrap();
/// cohort_pool::clear(&["tmp2"], &[1]).await.unwrap();
/// assert!(cohort_pool::global::<u8>("tmp2").is_err());
/// # });
/// ```
#[cohort_macros::twin_fn(example = " cohort_pool::set_global(\"tmp\", &1u8).unwrap();
 cohort_pool::blocking::clear(&[\"tmp\"], &[1]).unwrap();
 assert!(cohort_pool::global::<u8>(\"tmp\").is_err());")]
pub fn clear(
    names: &[&str],
    pids: &[Pid],
) -> impl std::future::Future<Output = Result<(), CompositeError>> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let futs: Vec<_> = pids
        .iter()
        .map(|&p| cohort_cluster::remotecall_fetch(global_clear, p, (names.clone(),)))
        .collect();
    async move {
        let errors = futures::future::join_all(futs)
            .await
            .into_iter()
            .filter_map(|r| r.err().map(PoolError::Call))
            .collect();
        CompositeError::check(errors)
    }
}

/// The names defined on process `pid`, sorted.
///
/// # Errors
/// As [`remotecall_fetch`](cohort_cluster::remotecall_fetch).
///
/// # Cancel safety
/// As [`remotecall_fetch`](cohort_cluster::remotecall_fetch).
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let _names = cohort_pool::global_names_of(1).await.unwrap();
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let _names = cohort_pool::blocking::global_names_of(1).unwrap();"
)]
pub async fn global_names_of(pid: Pid) -> Result<Vec<String>, PoolError> {
    Ok(cohort_cluster::remotecall_fetch(global_names, pid, ()).await?)
}
