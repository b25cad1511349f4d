//! What can go wrong making or using a [`SharedArray`](crate::SharedArray).

use std::path::PathBuf;

use cohort_cluster::{CallError, Pid};

/// Why a [`SharedArray`](crate::SharedArray) could not be made or used.
///
/// ```
/// use cohort_shared::SharedError;
/// let e = SharedError::NotOnThisHost { pid: 7 };
/// assert!(e.to_string().contains("process 7"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    /// A requested process runs on another host (or does not exist): shared memory
    /// only spans one machine.
    #[error("process {pid} is not on this host: a SharedArray spans the processes of one machine (see procs_of(myid()))")]
    NotOnThisHost {
        /// The offending process.
        pid: Pid,
    },
    /// The array's size in bytes does not fit in `usize`.
    #[error(
        "a SharedArray of shape {shape:?} with {elem_size}-byte elements is too large to address"
    )]
    Overflow {
        /// The requested shape.
        shape: Vec<usize>,
        /// The size of one element.
        elem_size: usize,
    },
    /// The shared-memory file system (or the backing file's) has no room for the
    /// segment. Reported at creation, before anything touches the memory.
    #[error("cannot reserve {bytes} bytes for a SharedArray in {}: only {available} bytes are free there (the shared-memory limit; see `df {}`)", dir.display(), dir.display())]
    TooLarge {
        /// The bytes asked for.
        bytes: usize,
        /// Where the segment was to live.
        dir: PathBuf,
        /// The free bytes there when it failed.
        available: u64,
    },
    /// A system call on the segment or the file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A backing file exists but is smaller than the array (`FileMode::ReadWrite`).
    #[error("{} holds {len} bytes from offset {offset}; the array needs {needed}", path.display())]
    FileTooSmall {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The offset the array starts at.
        offset: u64,
        /// The bytes the array needs.
        needed: u64,
    },
    /// A participating process could not map the segment.
    #[error("process {pid} could not map the SharedArray: {cause}")]
    Attach {
        /// The process.
        pid: Pid,
        /// Why: the call failed, or the system refused there.
        #[source]
        cause: AttachCause,
    },
    /// The `init` function failed on some participating processes (every failure is
    /// listed; the array was released).
    #[error("init failed on {} process(es): {}", failures.len(), failures.iter().map(|(p, e)| format!("{p}: {e}")).collect::<Vec<_>>().join("; "))]
    Init {
        /// Each failing process and its error.
        failures: Vec<(Pid, CallError)>,
    },
    /// This process does not map the array: it is not one of its participants (Julia
    /// gives such a process no local data either), or the creator released it.
    #[error("process {pid} does not map this SharedArray (its participants are {pids:?})")]
    NotMapped {
        /// This process.
        pid: Pid,
        /// The participants.
        pids: Vec<Pid>,
    },
    /// A view was asked for while a conflicting one is alive in this process (one
    /// mutable view, or any number of shared ones, or any number of atomic ones, per
    /// process at a time). The text says how it is borrowed: `"mutably"`,
    /// `"immutably"` or `"atomically"`.
    #[error("the SharedArray is already {0} borrowed in this process")]
    Borrowed(&'static str),
    /// An atomic view was asked for with an atomic type whose size differs from the
    /// element type's ([`SharedArray::try_atomic_view`](crate::SharedArray::try_atomic_view)).
    #[error("{atomic} ({atomic_size} bytes) cannot view elements of {elem} ({elem_size} bytes): the sizes must be equal")]
    AtomicSize {
        /// The element type.
        elem: &'static str,
        /// Its size.
        elem_size: usize,
        /// The atomic type asked for.
        atomic: &'static str,
        /// Its size.
        atomic_size: usize,
    },
    /// The elements are not aligned for the atomic type asked for (possible with a
    /// file-backed array at an offset that is a multiple of the element's alignment
    /// but not of the atomic's, or with an element type of smaller alignment).
    #[error("the SharedArray's elements (at {addr:#x}) are not aligned to {align} bytes, as {atomic} needs")]
    AtomicAlign {
        /// The atomic type asked for.
        atomic: &'static str,
        /// Its alignment.
        align: usize,
        /// The address of the first element in this process.
        addr: usize,
    },
    /// An element index past the end ([`SharedArray::atomic`](crate::SharedArray::atomic)).
    #[error("index {index} is out of bounds for a SharedArray of {len} elements")]
    OutOfBounds {
        /// The index asked for (linear, column-major, 0-based).
        index: usize,
        /// The number of elements.
        len: usize,
    },
    /// [`SharedArray::reshape`](crate::SharedArray::reshape) to a shape of another
    /// number of elements.
    #[error("cannot reshape a SharedArray of shape {from:?} ({} elements) to {to:?} ({} elements)", from.iter().product::<usize>(), to.iter().product::<usize>())]
    ShapeMismatch {
        /// The array's shape.
        from: Vec<usize>,
        /// The shape asked for.
        to: Vec<usize>,
    },
    /// This handle was [`finalize`](crate::SharedArray::finalize)d (here, or before
    /// it was sent here): it no longer maps the array.
    #[error("the SharedArray handle was finalized: it no longer maps the array")]
    Finalized,
    /// The handle was decoded from bytes encoded outside a cluster message (with
    /// `serde_json` into a file, by hand): such bytes name no live array, so the
    /// handle is inert and maps nothing. Send a `SharedArray` inside call
    /// arguments instead.
    #[error("the SharedArray handle is an inert copy: it was encoded outside a cluster message (into a file, by hand), which carries no live array")]
    Inert,
}

/// Why a participant could not map a [`SharedArray`](crate::SharedArray)'s segment
/// ([`SharedError::Attach`]).
///
/// ```
/// use cohort_shared::{AttachCause, AttachStep};
/// let c = AttachCause::Os {
///     step: AttachStep::Open,
///     path: "/dev/shm/cohort-shm.1.0.0".into(),
///     source: std::io::Error::from_raw_os_error(2),
/// };
/// assert!(c.to_string().starts_with("opening /dev/shm/cohort-shm.1.0.0"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachCause {
    /// The built-in call that maps the segment there failed (the process died, the
    /// connection broke…).
    #[error("the attach call failed: {0}")]
    Call(#[source] CallError),
    /// The process ran the call, and the system refused to open or map the segment
    /// there.
    #[error("{step} {}: {source}", path.display())]
    Os {
        /// What it was doing.
        step: AttachStep,
        /// The segment's file.
        path: PathBuf,
        /// The OS error there (rebuilt from its error code, or its text when it had
        /// none).
        #[source]
        source: std::io::Error,
    },
}

/// The step of mapping a segment that failed on a participant ([`AttachCause::Os`]).
///
/// ```
/// assert_eq!(cohort_shared::AttachStep::Map.to_string(), "mapping");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum AttachStep {
    /// Opening the segment's file.
    Open,
    /// Mapping it.
    Map,
}

impl std::fmt::Display for AttachStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachStep::Open => "opening",
            AttachStep::Map => "mapping",
        })
    }
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SharedError {
    let context = context.into();
    move |source| SharedError::Io { context, source }
}
