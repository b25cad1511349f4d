//! [`SlurmError`]: why a Slurm launch failed.

use std::io;
use std::time::Duration;

use thiserror::Error;

/// Why [`SlurmManager`](crate::SlurmManager) could not start workers. A launch
/// reports it inside
/// [`LaunchError::Manager`](cohort_transport::LaunchError::Manager) (manager
/// `"slurm"`), from which it can be downcast.
///
/// The variants that come from Slurm carry srun's own words (`said`: its last error
/// lines, joined with `; `).
///
/// ```
/// let e = cohort_slurm::SlurmError::NotInAllocation { var: "SLURM_JOB_ID" };
/// assert!(e.to_string().contains("SLURM_JOB_ID is not set"));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SlurmError {
    /// [`SlurmManager::from_allocation`](crate::SlurmManager::from_allocation) was
    /// called outside a Slurm job.
    #[error(
        "not inside a Slurm allocation: {var} is not set (run the driver under sbatch or \
         salloc, or request an allocation with SlurmManager::request)"
    )]
    NotInAllocation {
        /// The variable that is missing.
        var: &'static str,
    },
    /// A `SLURM_*` variable holds something the manager cannot use.
    #[error("{var}={value:?} in the environment is not {expected}")]
    BadEnvironment {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// An option of the manager is unusable (zero tasks, an empty partition name…).
    #[error("invalid Slurm option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// srun (or scancel, squeue) could not be run at all.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Slurm refused the request: srun exited before any task started.
    #[error("Slurm refused the request (srun exited with {status}): {said}")]
    Refused {
        /// srun's exit status.
        status: String,
        /// srun's error lines.
        said: String,
    },
    /// The job was still waiting in the queue at the deadline; it was cancelled.
    #[error(
        "job {job} was still pending after {after:?} (Slurm's reason: {reason}); it was \
         cancelled{}",
        said_suffix(said)
    )]
    Pending {
        /// The job id.
        job: String,
        /// Slurm's pending reason (`squeue -o %r`: `Resources`, `PartitionNodeLimit`…).
        reason: String,
        /// How long the manager waited.
        after: Duration,
        /// srun's messages.
        said: String,
    },
    /// A task ended before it printed its address; the step was cancelled.
    #[error(
        "task {task} on node {node} exited with status {status} before it reported its \
         address; the step was cancelled{}",
        said_suffix(said)
    )]
    TaskExited {
        /// The task number (`SLURM_PROCID`).
        task: usize,
        /// The node it ran on.
        node: String,
        /// Its exit status.
        status: i32,
        /// Its last lines of stderr, and srun's error lines.
        said: String,
    },
    /// srun exited after tasks had started but before every one reported.
    #[error(
        "srun exited ({status}) when {reported} of {expected} workers had reported their \
         addresses{}",
        said_suffix(said)
    )]
    SrunExited {
        /// srun's exit status.
        status: String,
        /// Workers that had reported.
        reported: usize,
        /// Workers asked for.
        expected: usize,
        /// srun's error lines.
        said: String,
    },
    /// Not every worker reported within the timeout (the job was running); the step
    /// or job was cancelled.
    #[error(
        "{reported} of {expected} workers reported their addresses within {after:?}; the \
         step was cancelled{}",
        said_suffix(said)
    )]
    TimedOut {
        /// Workers that had reported.
        reported: usize,
        /// Workers asked for.
        expected: usize,
        /// How long the manager waited.
        after: Duration,
        /// srun's messages.
        said: String,
    },
}

fn said_suffix(said: &str) -> String {
    if said.is_empty() {
        String::new()
    } else {
        format!("; srun said: {said}")
    }
}

impl From<SlurmError> for cohort_transport::LaunchError {
    fn from(e: SlurmError) -> Self {
        cohort_transport::LaunchError::Manager {
            manager: "slurm",
            source: Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_slurms_words() {
        let e = SlurmError::Pending {
            job: "4".into(),
            reason: "PartitionNodeLimit".into(),
            after: Duration::from_secs(5),
            said: "srun: Requested partition configuration not available now".into(),
        };
        let s = e.to_string();
        assert!(s.contains("job 4 was still pending after 5s"), "{s}");
        assert!(
            s.contains("PartitionNodeLimit") && s.contains("not available now"),
            "{s}"
        );
        let l: cohort_transport::LaunchError = e.into();
        assert!(l.to_string().starts_with("slurm: job 4"), "{l}");
        let back = std::error::Error::source(&l)
            .and_then(|s| s.downcast_ref::<SlurmError>())
            .expect("the source is the SlurmError");
        assert!(matches!(back, SlurmError::Pending { .. }));
        let t = SlurmError::TimedOut {
            reported: 1,
            expected: 2,
            after: Duration::from_secs(1),
            said: String::new(),
        };
        assert!(!t.to_string().contains("srun said"));
    }
}
