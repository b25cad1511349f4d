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
    #[error("process {pid} could not map the SharedArray: {reason}")]
    Attach {
        /// The process.
        pid: Pid,
        /// Why (the call's error, or the system error there).
        reason: String,
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
    /// mutable view, or any number of shared ones, per process at a time).
    #[error("the SharedArray is already {0} borrowed in this process")]
    Borrowed(&'static str),
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SharedError {
    let context = context.into();
    move |source| SharedError::Io { context, source }
}
