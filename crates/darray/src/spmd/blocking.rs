//! Blocking forms of the driver's async functions ([`spmd`](super::spmd),
//! [`spmd_with`](super::spmd_with), [`close`](super::close)), for a plain `fn main`
//! or any thread that does not run async tasks. The primitives used inside a run
//! (`sendto`, `barrier`, …) block already.

use std::fmt::Display;

use cohort_cluster::RemoteFn;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Context, SpmdError, SpmdOptions};

/// Blocking [`spmd`](super::spmd).
///
/// # Errors
/// As [`spmd_with`](super::spmd_with).
///
/// # Panics
/// On a thread that runs async tasks (`.await` the async form there).
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// let r = spmd::blocking::spmd(|| -> Result<u32, SpmdError> { Ok(cohort_cluster::myid()) }, ()).unwrap();
/// assert_eq!(r, cohort_cluster::procs());
/// ```
pub fn spmd<F, Args, T, E>(f: F, args: Args) -> Result<Vec<T>, SpmdError>
where
    F: RemoteFn<Args, Output = Result<T, E>> + Clone,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Display + 'static,
{
    spmd_with(f, args, SpmdOptions::new())
}

/// Blocking [`spmd_with`](super::spmd_with).
///
/// # Errors
/// As [`spmd_with`](super::spmd_with).
///
/// # Panics
/// On a thread that runs async tasks.
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError, SpmdOptions};
/// let ctx = spmd::context(&[1]).unwrap();
/// let count = || -> Result<u32, SpmdError> {
///     let s = spmd::context_local_storage()?;
///     let n = s.get::<u32>("runs").unwrap_or(0) + 1;
///     s.insert("runs", n);
///     Ok(n)
/// };
/// spmd::blocking::spmd_with(count, (), SpmdOptions::new().context(&ctx)).unwrap();
/// let r = spmd::blocking::spmd_with(count, (), SpmdOptions::new().context(&ctx)).unwrap();
/// assert_eq!(r, vec![2]);
/// ```
pub fn spmd_with<F, Args, T, E>(f: F, args: Args, options: SpmdOptions) -> Result<Vec<T>, SpmdError>
where
    F: RemoteFn<Args, Output = Result<T, E>> + Clone,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Display + 'static,
{
    cohort_cluster::runtime::block_here(
        "spmd::blocking::spmd_with",
        super::spmd_with(f, args, options),
    )
}

/// Blocking [`close`](super::close).
///
/// # Errors
/// As [`close`](super::close).
///
/// # Panics
/// On a thread that runs async tasks.
///
/// ```
/// let ctx = cohort_darray::spmd::context(&[1]).unwrap();
/// cohort_darray::spmd::blocking::close(&ctx).unwrap();
/// ```
pub fn close(ctx: &Context) -> Result<(), SpmdError> {
    cohort_cluster::runtime::block_here("spmd::blocking::close", super::close(ctx))
}
