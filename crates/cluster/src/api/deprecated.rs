//! The blocking free functions under their old names, kept for one release: each
//! calls its replacement in [`crate::blocking`].
#![allow(deprecated)]

use std::time::Duration;

use cohort_wire::ids::Pid;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::future::Future;
use crate::api::procs::RmStatus;
use crate::error::{CallError, ClusterError};
use crate::registry::RemoteFn;

/// Renamed: [`blocking::remotecall_fetch`](crate::blocking::remotecall_fetch).
///
/// # Errors
/// As [`remotecall_fetch`](crate::remotecall_fetch).
///
/// ```
/// #![allow(deprecated)]
/// assert_eq!(cohort_cluster::remotecall_fetch_blocking(|| 2, 1, ()).unwrap(), 2);
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::remotecall_fetch`")]
pub fn remotecall_fetch_blocking<F, Args>(
    f: F,
    pid: Pid,
    args: Args,
) -> Result<F::Output, CallError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
{
    crate::blocking::remotecall_fetch(f, pid, args)
}

/// Renamed: [`blocking::remotecall_wait`](crate::blocking::remotecall_wait).
///
/// # Errors
/// As [`remotecall_wait`](crate::remotecall_wait).
///
/// ```
/// #![allow(deprecated)]
/// let f = cohort_cluster::remotecall_wait_blocking(|| 2, 1, ()).unwrap();
/// assert_eq!(f.fetch_blocking().unwrap(), 2);
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::remotecall_wait`")]
pub fn remotecall_wait_blocking<F, Args>(
    f: F,
    pid: Pid,
    args: Args,
) -> Result<Future<F::Output>, CallError>
where
    F: RemoteFn<Args>,
    Args: Serialize + DeserializeOwned + Send + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    crate::blocking::remotecall_wait(f, pid, args)
}

/// Renamed: [`blocking::fetchfrom`](crate::blocking::fetchfrom).
///
/// # Errors
/// As [`remotecall_fetch`](crate::remotecall_fetch).
///
/// ```
/// #![allow(deprecated)]
/// assert_eq!(cohort_cluster::fetchfrom_blocking(1, || 5).unwrap(), 5);
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::fetchfrom`")]
pub fn fetchfrom_blocking<F>(pid: Pid, f: F) -> Result<F::Output, CallError>
where
    F: RemoteFn<()>,
    F::Output: Serialize + DeserializeOwned + Send + 'static,
{
    crate::blocking::fetchfrom(pid, f)
}

/// Renamed: [`blocking::addprocs`](crate::blocking::addprocs).
///
/// # Errors
/// As [`AddProcs::launch`](crate::AddProcs::launch).
///
/// ```no_run
/// #![allow(deprecated)]
/// let pids = cohort_cluster::addprocs_blocking(2).unwrap();
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::addprocs`")]
pub fn addprocs_blocking(n: usize) -> Result<Vec<Pid>, ClusterError> {
    crate::blocking::addprocs(n)
}

/// Renamed: [`blocking::rmprocs`](crate::blocking::rmprocs).
///
/// # Errors
/// As [`rmprocs`](crate::rmprocs).
///
/// ```
/// #![allow(deprecated)]
/// assert!(cohort_cluster::rmprocs_blocking(&[9], None).is_err());
/// ```
#[deprecated(since = "0.2.0", note = "use `cohort::blocking::rmprocs`")]
pub fn rmprocs_blocking(pids: &[Pid], waitfor: Option<Duration>) -> Result<RmStatus, ClusterError> {
    crate::blocking::rmprocs(pids, waitfor)
}
