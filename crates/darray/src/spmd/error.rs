//! What can go wrong in SPMD mode: [`SpmdError`] for a primitive or a run, and
//! [`RunFailure`] for a run that failed on some of its processes.

use cohort_cluster::{CallError, Pid, Topology};
use thiserror::Error;

/// An error of an SPMD primitive, of [`spmd`](super::spmd) or of a context.
///
/// ```
/// use cohort_darray::spmd::SpmdError;
/// let e = SpmdError::PeerExited { pid: 3 };
/// assert!(e.to_string().contains("process 3"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SpmdError {
    /// An SPMD primitive was called outside an SPMD run (only code that
    /// [`spmd`](super::spmd) runs, on the thread it runs on, is in a run).
    #[error("{what} called outside an spmd run: SPMD primitives work only inside the function spmd runs")]
    NotInRun {
        /// The primitive.
        what: &'static str,
    },
    /// A pid that is not among the processes of the run (or context).
    #[error("process {pid} is not one of this SPMD run's processes {pids:?}")]
    NotAMember {
        /// The pid asked for.
        pid: Pid,
        /// The run's processes.
        pids: Vec<Pid>,
    },
    /// An empty list of processes.
    #[error("an SPMD run or context needs at least one process")]
    NoProcesses,
    /// A pid listed twice.
    #[error("process {pid} is listed twice")]
    DuplicatePid {
        /// The pid.
        pid: Pid,
    },
    /// A pid that is not in the cluster.
    #[error("process {pid} is not in the cluster (procs() is {procs:?})")]
    NoSuchProcess {
        /// The pid.
        pid: Pid,
        /// The cluster's processes.
        procs: Vec<Pid>,
    },
    /// The cluster's topology does not let workers talk to each other, which SPMD
    /// needs (launch the workers with `Topology::AllToAll`).
    #[error("SPMD needs worker-to-worker connections, but the cluster's topology is {topology:?} (use Topology::AllToAll)")]
    TopologyForbids {
        /// The cluster's topology.
        topology: Topology,
    },
    /// `pids` and `context` were both given and name different processes.
    #[error("the run's pids {pids:?} differ from its context's {context:?}")]
    ContextMismatch {
        /// The pids asked for.
        pids: Vec<Pid>,
        /// The context's pids.
        context: Vec<Pid>,
    },
    /// The context was closed.
    #[error("the SPMD context was closed")]
    ContextClosed,
    /// Another run is using the context now (one run at a time per context: their
    /// messages would mix).
    #[error("another spmd run is using this context")]
    ContextBusy,
    /// A process this one waited for (or sent to) left the cluster.
    #[error("process {pid} left the cluster during the SPMD run")]
    PeerExited {
        /// The process that left.
        pid: Pid,
    },
    /// The run was stopped because another of its processes failed (its waits wake
    /// with this error, so nothing hangs).
    #[error("the SPMD run was aborted: another of its processes failed")]
    Aborted,
    /// A message could not be sent.
    #[error("cannot send to process {pid}: {source}")]
    Send {
        /// The receiver.
        pid: Pid,
        /// Why.
        source: CallError,
    },
    /// A value could not be encoded or decoded (a receiver asked for another type
    /// than was sent, say).
    #[error("SPMD message could not be (de)serialized: {0}")]
    Serialization(String),
    /// [`bcast_into`](super::bcast_into): the root's buffer is not as long as this
    /// process's (nothing was written into it).
    #[error(
        "bcast_into: the root {root} sent {sent} bytes, but this process's buffer holds {buffer}"
    )]
    WrongLength {
        /// The root of the broadcast.
        root: Pid,
        /// Bytes the root sent.
        sent: usize,
        /// Bytes of the buffer here.
        buffer: usize,
    },
    /// `scatter` was given a number of values other than the number of processes.
    #[error("scatter needs one value per process: {expected} processes, {got} values")]
    WrongCount {
        /// The number of processes.
        expected: usize,
        /// The number of values given.
        got: usize,
    },
    /// The run failed on some of its processes: every failure, each naming its pid.
    #[error("{0}")]
    Run(RunFailure),
}

/// Every process of a run that failed, in the order of the run's pids.
///
/// ```
/// use cohort_darray::spmd::{FailureKind, ProcessFailure, RunFailure};
/// let f = RunFailure { failures: vec![ProcessFailure { pid: 2, kind: FailureKind::Exited("killed".into()) }] };
/// assert_eq!(f.pids(), vec![2]);
/// assert!(f.to_string().contains("process 2"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    /// One entry per failed process.
    pub failures: Vec<ProcessFailure>,
}

impl RunFailure {
    /// The pids that failed.
    ///
    /// ```
    /// let f = cohort_darray::spmd::RunFailure { failures: vec![] };
    /// assert!(f.pids().is_empty());
    /// ```
    pub fn pids(&self) -> Vec<Pid> {
        self.failures.iter().map(|f| f.pid).collect()
    }
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the SPMD run failed on {} process(es)",
            self.failures.len()
        )?;
        for x in &self.failures {
            write!(f, "; process {}: {}", x.pid, x.kind)?;
        }
        Ok(())
    }
}

/// How the run failed on one process.
///
/// ```
/// use cohort_darray::spmd::{FailureKind, ProcessFailure};
/// let f = ProcessFailure { pid: 3, kind: FailureKind::Panicked("boom".into()) };
/// assert!(f.to_string().contains("boom"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("process {pid}: {kind}")]
pub struct ProcessFailure {
    /// The process.
    pub pid: Pid,
    /// What happened there.
    pub kind: FailureKind,
}

/// What happened on a process whose part of the run failed.
///
/// ```
/// use cohort_darray::spmd::FailureKind;
/// assert!(FailureKind::Returned("no".into()).to_string().contains("no"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FailureKind {
    /// The function returned an error (its `Display`).
    #[error("the function returned an error: {0}")]
    Returned(String),
    /// The function panicked (the panic's message).
    #[error("the function panicked: {0}")]
    Panicked(String),
    /// The process left the cluster (died, or was removed) before it finished.
    #[error("the process left the cluster before it finished: {0}")]
    Exited(String),
    /// The function could not be started there.
    #[error("the function could not be started: {0}")]
    Start(String),
    /// Its result could not be encoded or decoded.
    #[error("its result could not be (de)serialized: {0}")]
    Result(String),
}
