//! Errors: what a remote failure looks like, and why a call or a cluster operation
//! failed. One enum per failure domain: [`CallError`] for calls and references,
//! [`ClusterError`] for adding and removing processes.

use std::any::Any;
use std::fmt;

use cohort_wire::ids::Pid;
use cohort_wire::proto;
use thiserror::Error;

/// What kind of failure a [`RemoteException`] reports.
///
/// ```
/// use cohort_cluster::ErrorKind;
/// assert_ne!(ErrorKind::Panic, ErrorKind::Error);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The function reported an error.
    Error,
    /// The function panicked; the process survived.
    Panic,
    /// The process has no such function, or cannot run shipped code.
    UndefinedFunction,
    /// Arguments or a result could not be encoded or decoded.
    Serialization,
    /// A reference was unknown or misused.
    Reference,
    /// A write-once reference was written twice.
    AlreadySet,
    /// The call was cancelled by an interrupt.
    Interrupted,
    /// The channel is closed.
    ChannelClosed,
    /// The result (or a value) is larger than one message may be: the sending
    /// process's frame limit ([`Cluster::set_max_frame`](crate::Cluster::set_max_frame),
    /// `COHORT_MAX_FRAME`). The message names the size and the limit.
    PayloadTooLarge,
}

impl ErrorKind {
    pub(crate) fn to_wire(self) -> proto::ErrorKind {
        match self {
            ErrorKind::Error => proto::ErrorKind::Error,
            ErrorKind::Panic => proto::ErrorKind::Panic,
            ErrorKind::UndefinedFunction => proto::ErrorKind::UndefinedFunction,
            ErrorKind::Serialization => proto::ErrorKind::Serialization,
            ErrorKind::Reference => proto::ErrorKind::Reference,
            ErrorKind::AlreadySet => proto::ErrorKind::AlreadySet,
            ErrorKind::Interrupted => proto::ErrorKind::Interrupted,
            ErrorKind::ChannelClosed => proto::ErrorKind::ChannelClosed,
            ErrorKind::PayloadTooLarge => proto::ErrorKind::PayloadTooLarge,
        }
    }

    pub(crate) fn from_wire(k: proto::ErrorKind) -> Self {
        match k {
            proto::ErrorKind::Panic => ErrorKind::Panic,
            proto::ErrorKind::UndefinedFunction => ErrorKind::UndefinedFunction,
            proto::ErrorKind::Serialization => ErrorKind::Serialization,
            proto::ErrorKind::Reference => ErrorKind::Reference,
            proto::ErrorKind::AlreadySet => ErrorKind::AlreadySet,
            proto::ErrorKind::Interrupted => ErrorKind::Interrupted,
            proto::ErrorKind::ChannelClosed => ErrorKind::ChannelClosed,
            proto::ErrorKind::PayloadTooLarge => ErrorKind::PayloadTooLarge,
            proto::ErrorKind::Error | proto::ErrorKind::Unspecified => ErrorKind::Error,
        }
    }
}

/// A failure while running shipped code, before it is known where it will be
/// reported from. The runtime turns it into a [`RemoteException`] with the pid.
///
/// ```
/// use cohort_cluster::{ErrorKind, Failure};
/// let f = Failure::new(ErrorKind::Error, "disk full");
/// assert_eq!(f.message, "disk full");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
    /// Context: a panic's location, an error's sources.
    pub context: String,
}

impl Failure {
    /// A failure of `kind` with `message` and no context.
    ///
    /// ```
    /// let f = cohort_cluster::Failure::new(cohort_cluster::ErrorKind::Reference, "gone");
    /// assert!(f.context.is_empty());
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            context: String::new(),
        }
    }

    /// The failure for a caught panic payload, with the location recorded by the
    /// panic hook when there is one.
    ///
    /// ```
    /// let payload = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
    /// let f = cohort_cluster::Failure::from_panic(payload);
    /// assert_eq!(f.message, "boom");
    /// ```
    pub fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_string()
        };
        Failure {
            kind: ErrorKind::Panic,
            message,
            context: crate::panics::take_last_location().unwrap_or_default(),
        }
    }

    /// The failure for an error value: its message, and its `source()` chain as context.
    ///
    /// ```
    /// let e = std::io::Error::new(std::io::ErrorKind::Other, "nope");
    /// let f = cohort_cluster::Failure::from_error(&e);
    /// assert_eq!(f.message, "nope");
    /// ```
    pub fn from_error(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut context = Vec::new();
        let mut src = e.source();
        while let Some(s) = src {
            context.push(format!("caused by: {s}"));
            src = s.source();
        }
        Failure {
            kind: ErrorKind::Error,
            message: e.to_string(),
            context: context.join("\n"),
        }
    }
}

/// An error or panic on another process, as seen by the caller (Julia's
/// `RemoteException`): where it happened, in which function, and what it was.
///
/// ```
/// use cohort_cluster::{ErrorKind, RemoteException};
/// let e = RemoteException { pid: 2, kind: ErrorKind::Panic, function: "f".into(),
///                           message: "boom".into(), context: String::new() };
/// assert_eq!(e.to_string(), "on worker 2: panic in f: boom");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct RemoteException {
    /// The process where it happened.
    pub pid: Pid,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The function that failed (empty if none).
    pub function: String,
    /// The error's message.
    pub message: String,
    /// Context: a panic's location, an error's sources.
    pub context: String,
}

impl fmt::Display for RemoteException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Error => "error",
            ErrorKind::Panic => "panic",
            ErrorKind::UndefinedFunction => "undefined function",
            ErrorKind::Serialization => "serialization error",
            ErrorKind::Reference => "reference error",
            ErrorKind::AlreadySet => "already set",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::ChannelClosed => "channel closed",
            ErrorKind::PayloadTooLarge => "payload too large",
        };
        write!(f, "on worker {}: {what}", self.pid)?;
        if !self.function.is_empty() {
            write!(f, " in {}", self.function)?;
        }
        write!(f, ": {}", self.message)?;
        match self.context.split_once('\n') {
            _ if self.context.is_empty() => {}
            // One line (a location, one cause) in parentheses; several (a cause
            // chain, a remote backtrace) below, indented.
            None => write!(f, " ({})", self.context)?,
            Some(_) => {
                for line in self.context.lines() {
                    write!(f, "\n    {line}")?;
                }
            }
        }
        Ok(())
    }
}

impl RemoteException {
    pub(crate) fn from_failure(pid: Pid, function: &str, f: Failure) -> Self {
        RemoteException {
            pid,
            kind: f.kind,
            function: function.to_string(),
            message: f.message,
            context: f.context,
        }
    }

    pub(crate) fn to_wire(&self) -> proto::RemoteError {
        proto::RemoteError {
            pid: self.pid,
            kind: self.kind.to_wire() as i32,
            function: self.function.clone(),
            message: self.message.clone(),
            context: self.context.clone(),
        }
    }

    pub(crate) fn from_wire(e: proto::RemoteError) -> Self {
        RemoteException {
            pid: e.pid,
            kind: ErrorKind::from_wire(e.kind()),
            function: e.function,
            message: e.message,
            context: e.context,
        }
    }
}

/// Why a call, a fetch or another operation on a reference failed.
///
/// ```
/// use cohort_cluster::CallError;
/// let e = CallError::WorkerExited { pid: 3, reason: "connection closed".into() };
/// assert!(e.to_string().contains("worker 3"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CallError {
    /// The function failed or panicked on the remote process.
    #[error(transparent)]
    Remote(#[from] RemoteException),
    /// The process running the call exited or its connection broke before it answered
    /// (Julia's `ProcessExitedException`).
    #[error("worker {pid} exited before answering: {reason}")]
    WorkerExited {
        /// The process.
        pid: Pid,
        /// What was observed.
        reason: String,
    },
    /// No process with that pid is in the cluster.
    #[error("no process with id {pid} exists")]
    NoSuchProcess {
        /// The pid asked for.
        pid: Pid,
    },
    /// The cluster's topology does not connect the two processes.
    #[error(
        "worker {from} may not connect to worker {to}: the cluster's topology does not link them"
    )]
    TopologyForbids {
        /// The calling process.
        from: Pid,
        /// The process it tried to reach.
        to: Pid,
    },
    /// A write-once reference (a `Future`) was written a second time.
    #[error("the future is already set: a Future can be written only once")]
    AlreadySet,
    /// A value could not be encoded or decoded on this process.
    #[error("serialization failed: {0}")]
    Serialization(String),
    /// Shipped code cannot run on a process that runs a different executable.
    #[error("cannot ship {function} to worker {pid}: it runs a different executable (register the function with #[cohort::remote])")]
    CannotShipCode {
        /// The target process.
        pid: Pid,
        /// The function.
        function: String,
    },
    /// This handle was finalized: its claim on the owner's value was given up early.
    #[error("the reference was finalized: its value is no longer available through this handle")]
    Finalized,
    /// The value could not go into the caller's buffer
    /// ([`Future::fetch_into`](crate::Future::fetch_into)): another length, or bytes
    /// that are not such a value.
    #[error(transparent)]
    Buffer(#[from] crate::codec::BufferError),
    /// The handle was decoded from bytes encoded outside a cluster message (with
    /// `serde_json` into a file, with [`codec::encode`](crate::codec::encode) by
    /// hand): such bytes carry no live reference, so the handle made from them is
    /// inert and every use of it fails with this error. Send handles inside call
    /// arguments, results and channel values instead.
    #[error(
        "reference {id} is an inert copy: it was encoded outside a cluster message \
         (into a file, by hand), which carries no live reference; send handles inside \
         calls and channel values"
    )]
    Inert {
        /// The reference the bytes named.
        id: cohort_wire::ids::RefId,
    },
    /// A bounded wait ([`with_timeout`](crate::with_timeout), or a handle's
    /// `*_timeout` method) ran out of time; what it waited for was given up as its
    /// cancel-safety rules say.
    #[error("gave up waiting after {after:?}")]
    TimedOut {
        /// The time limit.
        after: std::time::Duration,
    },
    /// An operation only the master may do was called on a worker (Julia's
    /// `interrupt`: "only possible on the master").
    #[error("{what} is possible only on the master (pid 1)")]
    MasterOnly {
        /// The operation.
        what: &'static str,
    },
    /// The channel is closed (and, for `take`, drained).
    #[error("the channel is closed")]
    ChannelClosed,
    /// The channel does not support the operation (`fetch` on an unbuffered
    /// channel, or on a store without `fetch`).
    #[error("the channel does not support this: {0}")]
    ChannelUnsupported(String),
    /// A channel operation (`take`, `close`) named a reference that is not a channel.
    #[error("reference {id} is not a channel on process {pid}")]
    NotAChannel {
        /// The reference.
        id: cohort_wire::ids::RefId,
        /// The process that stores it.
        pid: Pid,
    },
    /// A peer sent a message that breaks the protocol.
    #[error("protocol violation: {0}")]
    Protocol(ProtocolError),
    /// The local task that ran the call ended without a result (the runtime is
    /// shutting down).
    #[error("the local task running the call ended without a result")]
    TaskLost,
    /// The arguments (or the value to put) are larger than one message may be: this
    /// process's frame limit, less [`PAYLOAD_ROOM`](crate::PAYLOAD_ROOM) for the rest
    /// of the message. Nothing was sent. The limit is
    /// [`Cluster::set_max_frame`](crate::Cluster::set_max_frame) (or
    /// `COHORT_MAX_FRAME`), and must be raised on every process of the cluster.
    #[error(
        "the {what} are {size} bytes, over the limit of {limit} bytes per message \
         (raise it on every process with Cluster::set_max_frame or COHORT_MAX_FRAME)"
    )]
    PayloadTooLarge {
        /// What was too large: "call arguments", "channel value", ….
        what: &'static str,
        /// Its encoded size in bytes.
        size: usize,
        /// The largest payload allowed, in bytes.
        limit: usize,
    },
}

/// How a peer broke the protocol (see `docs/protocol.md`).
///
/// ```
/// use cohort_cluster::{CallError, ProtocolError};
/// let e = CallError::Protocol(ProtocolError::RequestWithoutReference);
/// assert!(e.to_string().contains("reference"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A `RefRequest` named no reference.
    #[error("a reference request named no reference")]
    RequestWithoutReference,
    /// A `RefRequest` named no operation.
    #[error("a reference request named no operation")]
    RequestWithoutKind,
    /// A `Call` whose result is to be stored named no result reference.
    #[error("a call to be stored named no result reference")]
    CallWithoutResultRef,
    /// A batch of results had fewer entries than the batch of calls it answers.
    #[error("a batch of {expected} calls was answered with {got} results")]
    ShortBatch {
        /// Calls sent.
        expected: usize,
        /// Results received.
        got: usize,
    },
}

/// Why adding, removing or connecting processes failed.
///
/// ```
/// use cohort_cluster::ClusterError;
/// let e = ClusterError::NotMaster;
/// assert!(e.to_string().contains("master"));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The cluster manager could not start workers.
    #[error(transparent)]
    Launch(#[from] cohort_transport::LaunchError),
    /// A worker was started but could not be connected to or refused the handshake.
    #[error("could not connect to worker at {addr}: {source}")]
    Connect {
        /// Where it was.
        addr: String,
        /// What went wrong.
        #[source]
        source: crate::ConnectError,
    },
    /// The TLS credentials could not be made or loaded. (Feature `tls`.)
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(#[from] cohort_transport::TlsError),
    /// TLS was asked for with other credentials than the ones the cluster's workers
    /// already use. (Feature `tls`.)
    #[cfg(feature = "tls")]
    #[error("the cluster's TLS credentials cannot change once workers use them")]
    TlsCredentialsInUse,
    /// TLS was asked for in a cluster that already has plaintext workers. (Feature
    /// `tls`.)
    #[cfg(feature = "tls")]
    #[error("cannot turn TLS on in a cluster that already has plaintext workers")]
    TlsAfterPlaintext,
    /// Only the master (pid 1) may add or remove workers.
    #[error("only the master process (pid 1) can add or remove workers")]
    NotMaster,
    /// The cookie is not valid.
    #[error(transparent)]
    Cookie(#[from] cohort_wire::cookie::CookieError),
    /// The cookie cannot change once workers have joined.
    #[error("the cluster cookie cannot change after workers have been added")]
    CookieInUse,
    /// The message size limit cannot change once workers have joined.
    #[error("the cluster's message size limit cannot change after workers have been added")]
    MaxFrameInUse,
    /// The heartbeat settings cannot change once workers have joined.
    #[error("the cluster's heartbeat settings cannot change after workers have been added")]
    HeartbeatInUse,
    /// A pid that is not a worker was given to `rmprocs`.
    #[error("process {0} is not a worker of this cluster")]
    NotAWorker(Pid),
    /// The manager's workers cannot connect to each other
    /// ([`WorkerTransport::MasterOnly`](cohort_transport::WorkerTransport::MasterOnly)),
    /// and the topology asked for needs them to: only
    /// [`Topology::MasterWorker`](cohort_transport::Topology::MasterWorker) works with
    /// it. Returned before anything is launched.
    ///
    /// ```
    /// use cohort_cluster::{ClusterError, Topology, WorkerTransport};
    /// let e = ClusterError::TopologyUnsupported {
    ///     topology: Topology::AllToAll,
    ///     transport: WorkerTransport::MasterOnly,
    /// };
    /// assert!(e.to_string().contains("MasterWorker"));
    /// ```
    #[error(
        "topology {topology:?} needs workers that connect to each other, but this \
         cluster manager's have {transport}; use Topology::MasterWorker"
    )]
    TopologyUnsupported {
        /// The topology asked for.
        topology: cohort_transport::Topology,
        /// What the manager's workers use to reach each other.
        transport: cohort_transport::WorkerTransport,
    },
    /// [`AddProcs::bind_cores`](crate::AddProcs::bind_cores) was asked of a launch
    /// whose workers a manager of one's own starts: only local workers are bound
    /// that way (a manager binds its own, as `LocalManager::bind_cores` does).
    ///
    /// ```
    /// let e = cohort_cluster::ClusterError::BindUnsupported;
    /// assert!(e.to_string().contains("LocalManager::bind_cores"));
    /// ```
    #[error(
        "AddProcs::bind_cores binds local workers only (AddProcs::local); a manager of \
         your own binds its workers itself, as LocalManager::bind_cores does"
    )]
    BindUnsupported,
    /// All-to-all was asked for with a manager whose workers reach each other over
    /// another transport than a worker already in the cluster, so the two could not
    /// connect. Returned before anything is launched.
    ///
    /// ```
    /// use cohort_cluster::{ClusterError, WorkerTransport};
    /// let e = ClusterError::TransportMismatch {
    ///     transport: WorkerTransport::Tcp,
    ///     pid: 2,
    ///     other: WorkerTransport::Custom("unix"),
    /// };
    /// assert!(e.to_string().contains("worker 2"));
    /// ```
    #[error(
        "all-to-all needs one worker-to-worker transport, but the new workers use \
         {transport} and worker {pid} uses {other}"
    )]
    TransportMismatch {
        /// What the new workers would use.
        transport: cohort_transport::WorkerTransport,
        /// A worker already in the cluster.
        pid: Pid,
        /// What that worker uses.
        other: cohort_transport::WorkerTransport,
    },
    /// Workers were asked for with another `lazy` setting than the all-to-all workers
    /// already running ([`AddProcs::lazy`](crate::AddProcs::lazy)): the setting is
    /// the cluster's, as in Julia.
    #[error("active workers run with lazy={running}; cannot add workers with lazy={asked}")]
    LazyMismatch {
        /// The running workers' setting.
        running: bool,
        /// The one asked for.
        asked: bool,
    },
    /// The join listener for elastic workers
    /// ([`Cluster::listen_for_workers`](crate::Cluster::listen_for_workers)) could not
    /// listen at the address given.
    #[error("cannot listen for joining workers at {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A [`RemoteException`] as serde data: how the runtime's own calls (a
/// `fetch_with` run on a value's owner) carry the owner's failure back intact.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct WireException {
    pid: Pid,
    kind: i32,
    function: String,
    message: String,
    context: String,
}

impl From<RemoteException> for WireException {
    fn from(e: RemoteException) -> Self {
        let w = e.to_wire();
        WireException {
            pid: w.pid,
            kind: w.kind,
            function: w.function,
            message: w.message,
            context: w.context,
        }
    }
}

impl From<WireException> for RemoteException {
    fn from(w: WireException) -> Self {
        RemoteException::from_wire(proto::RemoteError {
            pid: w.pid,
            kind: w.kind,
            function: w.function,
            message: w.message,
            context: w.context,
        })
    }
}

impl WireException {
    /// `e`, seen on process `pid`, as the failure it reports to a remote caller.
    pub(crate) fn of(pid: Pid, e: CallError) -> Self {
        match e {
            CallError::Remote(r) => r.into(),
            other => RemoteException {
                pid,
                kind: ErrorKind::Reference,
                function: String::new(),
                message: other.to_string(),
                context: String::new(),
            }
            .into(),
        }
    }
}
