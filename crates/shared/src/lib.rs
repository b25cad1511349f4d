//! # cohort-shared — `SharedArray`: one array in shared memory, used by every process on the host
//!
//! Julia's `SharedArrays` for cohort. A [`SharedArray<T, D>`](SharedArray) is an
//! `ndarray`-shaped array of plain-old-data elements ([`bytemuck::Pod`]) in one OS
//! shared-memory segment that every *participating* process on a host maps: a write
//! by any of them is seen by all, and passing the array to a remote function on a
//! participant sends a small descriptor, never the data.
//!
//! **Where it sits.** Above `cohort-cluster` (it uses `remotecall`, `myid`,
//! `procs_of` and the function registry, and registers three built-ins by name:
//! `cohort_shared::attach`, `cohort_shared::release`,
//! `cohort_shared::mapped_segments`), below the `cohort` facade, which re-exports it.
//!
//! ```
//! use cohort_shared::SharedArray;
//! use ndarray::Ix2;
//!
//! // Julia: S = SharedArray{Int,2}((3,4), init = S -> S[localindices(S)] = myid())
//! let s = SharedArray::<i64, Ix2>::builder((3, 4))
//!     .init(|s: SharedArray<i64, Ix2>| {
//!         let mine = s.localindices();
//!         s.view_mut().as_linear_mut()[mine].fill(cohort_cluster::myid() as i64);
//!     })
//!     .build()
//!     .unwrap();
//! s.set([2, 1], 7); // S[3,2] = 7
//! assert_eq!(s.view()[[2, 1]], 7);
//! ```
//!
//! ## Semantics, as in Julia
//!
//! - Created on the caller with `pids` (default: the workers on this host, or the
//!   caller alone when there are none) and an optional `init` run on every
//!   participant in parallel. A process of another host is refused
//!   ([`SharedError::NotOnThisHost`]). The creator maps the array too, even when it is
//!   not a participant (then [`indexpids`](SharedArray::indexpids) is 0 there).
//! - Memory order is column-major and linear indices are Julia's (0-based):
//!   [`localindices`](SharedArray::localindices) is Julia's split
//!   ([`split_range`]) — the last participant takes the remainder.
//! - File-backed arrays ([`SharedArray::from_file`], [`FileMode`]) map a file so that
//!   the data outlives the processes.
//!
//! ## Processes sharing the memory: the data-race rule
//!
//! Nothing locks the array across processes, and a view is a Rust `&`/`&mut` of the
//! elements: **two processes accessing the same element at the same time, at least
//! one of them writing, through views, is a data race and undefined behaviour**.
//! Give each process its own elements ([`localindices`](SharedArray::localindices)),
//! read another's writes only after a call, a channel message or a barrier that
//! follows them, and use the atomic element access
//! ([`SharedArray::atomic_view`], [`SharedArray::atomic`]) for flags and counters
//! that several processes touch at once. [`SharedArray`]'s docs state the rule in
//! full.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use cohort_shared::SharedArray;
//! // A counter every participant may bump at the same time.
//! let hits = SharedArray::<u64, ndarray::Ix1>::new(1).unwrap();
//! hits.atomic::<AtomicU64>(0).unwrap().fetch_add(1, Ordering::Relaxed);
//! assert_eq!(hits.get(0), Some(1));
//! ```
//!
//! ## Why plain `mmap` of a `/dev/shm` file, not the `shared_memory` crate
//!
//! `shm_open` on Linux *is* `open` under `/dev/shm`; doing it ourselves with `std`,
//! `memmap2` (already in the workspace) and `libc::posix_fallocate` gives what the
//! `shared_memory` crate does not: blocks reserved at creation, so an array over the
//! shared-memory limit fails with [`SharedError::TooLarge`] instead of a `SIGBUS` on
//! first touch; our own naming, which lets a creator unlink early and sweep leftovers
//! of killed processes; and one code path for the file-backed form. It also keeps the
//! dependency tree small (the crate is unmaintained since 2021).
//!
//! ## Release, also when processes die
//!
//! Each process maps a segment once; handles arriving there find that mapping in a
//! per-process table. The creator **unlinks the segment's name as soon as every
//! participant has mapped it** (one round trip after creation), so from then on
//! nothing is in `/dev/shm`: Linux keeps the memory while a mapping exists and frees
//! it when the last mapping process unmaps or exits — whoever is SIGKILLed, the
//! driver included (its workers exit with it). When the creator's last handle goes,
//! participants are told to drop the mapping they hold for it; each unmaps when its
//! own last handle goes. A creator killed inside the creation window leaves a file
//! named `cohort-shm.<os pid>.…`; the next creation on the host removes files whose
//! process is gone ([`sweep_stale_segments`]).
//!
//! ## Performance
//!
//! Views are plain `ndarray` views of the mapped memory: a hot loop over
//! [`view_mut`](SharedArray::view_mut) runs as fast as over a `Vec`. The per-element
//! [`get`](SharedArray::get)/[`set`](SharedArray::set) take the process-local borrow
//! flag each time (two atomic operations); use views in loops.

mod array;
mod atomic;
mod error;
mod segment;

use std::path::PathBuf;

pub use array::{
    split_range, InitSpec, NoInit, SharedArray, SharedArrayBuilder, SharedView, SharedViewMut,
    WithInit,
};
pub use atomic::{AtomicRef, AtomicView, SharedAtomic};
pub use error::{AttachCause, AttachStep, SharedError};
pub use segment::FileMode;

/// The number of shared-array segments this process maps now (for leak checks).
///
/// ```
/// let before = cohort_shared::mapped_segments();
/// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(8).unwrap();
/// assert_eq!(cohort_shared::mapped_segments(), before + 1);
/// drop(s);
/// assert_eq!(cohort_shared::mapped_segments(), before);
/// ```
pub fn mapped_segments() -> usize {
    segment::mapped_count()
}

/// The number of shared-array segments process `pid` maps now.
///
/// # Errors
/// As `remotecall_fetch`.
///
/// # Cancel safety
/// As `remotecall_fetch`.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let n = cohort_shared::mapped_segments_on(cohort_cluster::myid()).await.unwrap();
/// assert_eq!(n, cohort_shared::mapped_segments());
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let n = cohort_shared::blocking::mapped_segments_on(1).unwrap();
 assert_eq!(n, cohort_shared::mapped_segments());"
)]
pub async fn mapped_segments_on(
    pid: cohort_cluster::Pid,
) -> Result<usize, cohort_cluster::CallError> {
    cohort_cluster::remotecall_fetch(segment::remote_mapped_count, pid, ()).await
}

/// The blocking forms of this crate's async functions, under the same names (see
/// `cohort_cluster::blocking`).
///
/// ```
/// assert_eq!(cohort_shared::blocking::mapped_segments_on(1).unwrap(), cohort_shared::mapped_segments());
/// ```
pub mod blocking {
    #[doc(inline)]
    pub use crate::__twin_mapped_segments_on::mapped_segments_on;
}

/// The directory anonymous segments are made in: `$COHORT_SHM_DIR` if set, else
/// `/dev/shm`, else the temporary directory.
///
/// ```
/// assert!(cohort_shared::segment_dir().is_dir());
/// ```
pub fn segment_dir() -> PathBuf {
    segment::shm_dir()
}

/// The names of anonymous segments in [`segment_dir`] start with this.
///
/// ```
/// assert_eq!(cohort_shared::SEGMENT_PREFIX, "cohort-shm.");
/// ```
pub const SEGMENT_PREFIX: &str = segment::PREFIX;

/// Removes segment files left in [`segment_dir`] by processes that died while
/// creating an array (every creation does this first); returns how many it removed.
///
/// ```
/// let _removed = cohort_shared::sweep_stale_segments();
/// ```
pub fn sweep_stale_segments() -> usize {
    segment::sweep_stale(&segment::shm_dir())
}
