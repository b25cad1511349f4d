//! The liveness settings of a cluster: heartbeats on every connection, and how long
//! a peer may stay silent (see `core::liveness` for the mechanism).
//!
//! The master decides them — from [`HEARTBEAT_INTERVAL_ENV`] and
//! [`HEARTBEAT_TIMEOUT_ENV`] when the cluster is made, or
//! [`Cluster::set_heartbeat`] before workers join — and hands them to every worker in
//! its `Join`, so that all the cluster's processes use the same ones on all their
//! connections.

use std::time::Duration;

use crate::api::cluster::Cluster;
use crate::core::liveness::Heartbeat;
use crate::error::ClusterError;

/// The environment variable that sets the heartbeat interval, in seconds (a decimal
/// number; default 1). Read by the master when a cluster is made.
///
/// ```
/// assert_eq!(cohort_cluster::HEARTBEAT_INTERVAL_ENV, "COHORT_HEARTBEAT_INTERVAL");
/// ```
pub const HEARTBEAT_INTERVAL_ENV: &str = "COHORT_HEARTBEAT_INTERVAL";

/// The environment variable that sets the heartbeat timeout, in seconds (a decimal
/// number; default 10): a peer nothing came from for this long is declared
/// unresponsive. `0` turns heartbeats off. Read by the master when a cluster is
/// made; a setting that [`Heartbeat::new`] refuses is ignored with a warning.
///
/// ```
/// assert_eq!(cohort_cluster::HEARTBEAT_TIMEOUT_ENV, "COHORT_HEARTBEAT_TIMEOUT");
/// ```
pub const HEARTBEAT_TIMEOUT_ENV: &str = "COHORT_HEARTBEAT_TIMEOUT";

fn seconds(var: &str) -> Option<Duration> {
    let v = std::env::var(var).ok()?;
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s)),
        _ => {
            tracing::warn!(var, value = %v, "not a number of seconds; ignored");
            None
        }
    }
}

/// The settings the environment names, or the default.
pub(crate) fn heartbeat_from_env() -> Option<Heartbeat> {
    let interval = seconds(HEARTBEAT_INTERVAL_ENV);
    let timeout = seconds(HEARTBEAT_TIMEOUT_ENV);
    if timeout == Some(Duration::ZERO) {
        return None;
    }
    let d = Heartbeat::default();
    let interval = interval.unwrap_or(d.interval());
    // A short interval alone brings the timeout down with it (ten intervals), so
    // that `COHORT_HEARTBEAT_INTERVAL=0.1` by itself means "detect within a second".
    let timeout = timeout.unwrap_or_else(|| (interval * 10).min(d.timeout()));
    match Heartbeat::new(interval, timeout) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "heartbeat settings ignored; using the defaults");
            Some(d)
        }
    }
}

impl Cluster {
    /// The heartbeat settings of this cluster's connections (`None`: heartbeats off).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// assert!(c.heartbeat().is_some()); // on by default
    /// ```
    pub fn heartbeat(&self) -> Option<Heartbeat> {
        self.node.peek(|c| c.heartbeat())
    }

    /// Sets the heartbeat settings (`None`: off), before any worker is added; every
    /// worker that joins uses them too. With heartbeats on, each process sends a
    /// heartbeat on each of its connections every [`Heartbeat::interval`], and a
    /// peer nothing has come from for [`Heartbeat::timeout`] is declared
    /// unresponsive: the calls and requests waiting on it fail with
    /// [`CallError::WorkerExited`](crate::CallError::WorkerExited) whose reason says
    /// so, the master removes it from the cluster (it leaves `workers()` and the
    /// pools) and has its manager kill it, and a worker whose master went silent
    /// exits.
    ///
    /// # Errors
    /// [`ClusterError::HeartbeatInUse`] once workers have joined (they use the
    /// settings they joined with).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cohort_cluster::{Cluster, Heartbeat};
    /// let c = Cluster::new();
    /// let h = Heartbeat::new(Duration::from_millis(200), Duration::from_secs(2)).unwrap();
    /// c.set_heartbeat(Some(h)).unwrap();
    /// assert_eq!(c.heartbeat(), Some(h));
    /// c.set_heartbeat(None).unwrap();
    /// assert_eq!(c.heartbeat(), None);
    /// ```
    pub fn set_heartbeat(&self, heartbeat: Option<Heartbeat>) -> Result<(), ClusterError> {
        if self
            .node
            .peek(|c| c.membership().worker_infos().next().is_some())
        {
            return Err(ClusterError::HeartbeatInUse);
        }
        self.node
            .with_core(|c| c.set_heartbeat(heartbeat, std::time::Instant::now()));
        Ok(())
    }
}
