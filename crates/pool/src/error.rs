//! Errors of the pool layer: [`PoolError`] for one operation, [`CompositeError`] for a
//! group wait that collects every failure.

use std::fmt;

use cohort_cluster::{CallError, Pid};
use thiserror::Error;

/// Why a pool operation, a parallel map or a distributed loop failed.
///
/// ```
/// use cohort_pool::PoolError;
/// let e = PoolError::UndefinedGlobal { name: "bar".into(), pid: 2 };
/// assert!(e.to_string().contains("bar"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PoolError {
    /// A call failed: a remote error or panic, a worker that exited, an unknown pid.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The pool has no worker left (all were removed or died).
    #[error("the worker pool is empty")]
    EmptyPool,
    /// A pool received from another process (a proxy) names a pool its owner no
    /// longer has: the owner dropped its last handle to it, or the pool was never
    /// one of the owner's.
    #[error("worker pool {pool} is no longer on its owner, process {owner}")]
    PoolGone {
        /// The process that held the pool.
        owner: Pid,
        /// The pool's id there.
        pool: u64,
    },
    /// A reduction over an empty range has no value.
    #[error("a distributed reduction over an empty range has no value")]
    EmptyReduction,
    /// A named value (an `everywhere`-defined global) is not defined on that process.
    #[error("{name} is not defined on process {pid}")]
    UndefinedGlobal {
        /// The name.
        name: String,
        /// The process.
        pid: Pid,
    },
    /// A value could not be encoded or decoded.
    #[error("serialization failed: {0}")]
    Serialization(String),
    /// A task of a sync group panicked.
    #[error("a task panicked: {0}")]
    TaskPanicked(String),
    /// Several operations failed (a sync group, `everywhere`).
    #[error(transparent)]
    Composite(#[from] CompositeError),
}

/// Every failure of a group of operations (Julia's `CompositeException`): what a sync
/// group or [`everywhere`](crate::everywhere) reports when one or more of its members
/// failed.
///
/// ```
/// use cohort_pool::{CompositeError, PoolError};
/// let e = CompositeError { errors: vec![PoolError::EmptyPool, PoolError::EmptyReduction] };
/// assert!(e.to_string().starts_with("2 failures"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct CompositeError {
    /// The failures, in the order the members were added.
    pub errors: Vec<PoolError>,
}

impl fmt::Display for CompositeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failure", self.errors.len())?;
        if self.errors.len() != 1 {
            write!(f, "s")?;
        }
        for e in &self.errors {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

impl CompositeError {
    /// `Ok(())` if `errors` is empty, else the composite error.
    ///
    /// ```
    /// assert!(cohort_pool::CompositeError::check(vec![]).is_ok());
    /// ```
    ///
    /// # Errors
    /// The composite of `errors` when there is at least one.
    pub fn check(errors: Vec<PoolError>) -> Result<(), CompositeError> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CompositeError { errors })
        }
    }
}
