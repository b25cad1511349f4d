//! The errors of distributed arrays.

use std::ops::Range;

use cohort_cluster::{CallError, Pid};
use serde::{Deserialize, Serialize};

use crate::store::DArrayId;

/// What went wrong with a [`DArray`](crate::DArray) or [`DData`](crate::DData).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DArrayError {
    /// No processes to put the array on (an empty `procs`).
    #[error("no processes given for the distributed array")]
    NoProcs,
    /// A process is listed twice in `procs` (each holds at most one chunk).
    #[error("process {pid} is listed twice in procs (each process holds one chunk)")]
    DuplicateProc {
        /// The process listed twice.
        pid: Pid,
    },
    /// The product of `dist` is not the number of processes (Julia: "the product of
    /// the distribution array must equal the number of processes").
    #[error("dist {dist:?} makes {} chunks, but {nprocs} processes were given", dist.iter().product::<usize>())]
    DistMismatch {
        /// The chunks per dimension asked for.
        dist: Vec<usize>,
        /// The number of processes given.
        nprocs: usize,
    },
    /// `dist` does not have one entry per dimension.
    #[error("dist {dist:?} has {} entries, but the array has {ndims} dimensions", dist.len())]
    DistRank {
        /// The chunks per dimension asked for.
        dist: Vec<usize>,
        /// The number of dimensions of the array.
        ndims: usize,
    },
    /// The chunks of a grid of futures do not fit together, or are not one per process.
    #[error("the chunks do not form an array: {reason}")]
    BadGrid {
        /// Why.
        reason: String,
    },
    /// An index outside the array.
    #[error("index {index:?} is out of bounds for shape {shape:?}")]
    OutOfBounds {
        /// The index.
        index: Vec<usize>,
        /// The shape of the array.
        shape: Vec<usize>,
    },
    /// A range outside the array, or one with the wrong number of dimensions.
    #[error("ranges {ranges:?} do not lie inside shape {shape:?}")]
    RangeOutOfBounds {
        /// The ranges asked for.
        ranges: Vec<Range<usize>>,
        /// The shape of the array.
        shape: Vec<usize>,
    },
    /// A buffer or an array whose shape is not the one needed.
    #[error("shape {got:?} given where {expected:?} is needed")]
    ShapeMismatch {
        /// The shape needed.
        expected: Vec<usize>,
        /// The shape given.
        got: Vec<usize>,
    },
    /// Two arrays of an element-wise operation are not laid out alike (same shape,
    /// same cuts, same processes). Redistribute one with
    /// [`DArray::redistribute_like`](crate::DArray::redistribute_like) first.
    #[error("the arrays are not distributed alike (shapes {left:?} and {right:?}); redistribute one like the other first")]
    LayoutMismatch {
        /// The shape of the left operand.
        left: Vec<usize>,
        /// The shape of the right operand.
        right: Vec<usize>,
    },
    /// This process holds no chunk of the array (`localpart` on a non-owner).
    #[error("process {pid} holds no chunk of {id}")]
    NotAnOwner {
        /// This process.
        pid: Pid,
        /// The array.
        id: DArrayId,
    },
    /// A chunk operation failed on its owner.
    #[error("on process {pid}: {failure}")]
    Chunk {
        /// The owner.
        pid: Pid,
        /// What went wrong there.
        failure: ChunkFailure,
    },
    /// A call to a process failed (it died, the function panicked, …).
    #[error("call to process {pid} failed: {source}")]
    Call {
        /// The process called.
        pid: Pid,
        /// The failure.
        #[source]
        source: CallError,
    },
}

/// What went wrong with a chunk on the process that holds it (travels back to the
/// caller inside [`DArrayError::Chunk`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkFailure {
    /// The array has been released there: its creator dropped its last handle, called
    /// `close` or `d_closeall`, or died. A handle that outlives its creator's gets
    /// this, never stale data.
    #[error("{id} has been released (closed, dropped by its creator, or its creator has died)")]
    Released {
        /// The array.
        id: DArrayId,
    },
    /// The chunk there has another element type or dimension than the handle says.
    #[error("{id} holds {stored}, not {asked}")]
    TypeMismatch {
        /// The array.
        id: DArrayId,
        /// The type of the stored chunk.
        stored: String,
        /// The type asked for.
        asked: String,
    },
    /// An `init` function made a chunk of the wrong shape.
    #[error("init made a chunk of shape {got:?} for indices of shape {expected:?}")]
    InitShape {
        /// The shape of the chunk's indices.
        expected: Vec<usize>,
        /// The shape `init` returned.
        got: Vec<usize>,
    },
    /// An `init` function returned an error.
    #[error("init failed: {0}")]
    Init(String),
    /// The creator of the array is no longer in the cluster; nothing was stored.
    #[error("the creator of {id}, process {creator}, has left the cluster")]
    CreatorGone {
        /// The array.
        id: DArrayId,
        /// Its creator.
        creator: Pid,
    },
    /// A chunk with this id is already stored there.
    #[error("{id} already has a chunk there")]
    Exists {
        /// The array.
        id: DArrayId,
    },
    /// A fetch from another process failed while the chunk was being computed (a halo
    /// exchange, a distributed vector's part).
    #[error("{0}")]
    Nested(String),
}

impl DArrayError {
    pub(crate) fn call(pid: Pid, source: CallError) -> Self {
        DArrayError::Call { pid, source }
    }
}
