//! # cohort-darray — `DArray`, `ddata` and SPMD: arrays split across processes
//!
//! DistributedArrays.jl for cohort (seed 004). **Where it sits:** above
//! `cohort-cluster` and `cohort-pool`, below the `cohort` facade, which re-exports it
//! as `cohort::darray`.
//!
//! - [`DArray<T, D>`](DArray): an `ndarray`-shaped array of any [`Element`] type
//!   cut into rectangular chunks, each held by one process. Constructors
//!   ([`DArray::builder`] with `init`, [`dzeros`], [`dones`], [`dfill`], [`drand`],
//!   [`drandn`], [`distribute`], [`DArray::from_fn`], [`DArray::from_futures`]),
//!   access ([`DArray::localpart`], [`DArray::localindices`], [`DArray::get`],
//!   [`DArray::fetch`], [`DArray::fetch_into`], [`DArray::fetch_each_into`],
//!   [`DArray::gather`]) and operations
//!   that run where the data lives ([`DArray::map`], [`DArray::mapreduce`],
//!   [`DArray::sum`], [`DArray::norm`], [`DArray::dot`], [`DArray::matvec`], the
//!   operators of [`Expr`], …).
//! - [`DData<T>`](DData): one value per process ([`ddata`]).
//!
//! ```
//! use cohort_darray::blocking::{distribute, dzeros};
//! let a = distribute(&ndarray::Array::from_iter(0..100).into_shape_with_order((10, 10)).unwrap()).unwrap();
//! assert_eq!(a.sum_blocking().unwrap(), 4950);
//! let z = dzeros::<f64, _>((100, 100, 10)).unwrap();
//! assert_eq!(z.shape(), &[100, 100, 10]);
//! ```
//!
//! ## Layout: what lives where (Julia's rules, 0-based)
//!
//! - The chunks form a grid of [`dist`](DArray::dist) chunks per dimension
//!   (Julia's `dist`); its product is the number of processes, and a `dist` that
//!   does not match the processes given is refused
//!   ([`DArrayError::DistMismatch`]). By default the processes are the workers
//!   (this process alone when there are none), at most as many as the longest
//!   dimension, and `dist` is Julia's [`defaultdist`]: the prime factors of the
//!   number of processes, largest first, each cut the currently longest dimension
//!   (the last one on a tie).
//! - Along each dimension, `len` elements in `n` chunks give each `len / n` and the
//!   **first** `len % n` one more ([`cuts`], Julia's `defaultdist(sz, nc)`).
//! - Chunks are numbered **column-major** over the grid (the first dimension's chunk
//!   index varies fastest), and chunk `k` lives on [`procs()[k]`](DArray::procs):
//!   Julia's `reshape(procs, dist)`.
//! - Indices are 0-based and ranges half-open: Julia's `localindices(d) == (1:50,
//!   1:100)` is our `[0..50, 0..100]`. Element `[i, j]` is the same element as
//!   Julia's `d[i+1, j+1]`.
//! - Each chunk is an `ndarray::Array` in **row-major** (standard) memory order —
//!   ndarray's default, what `Array::zeros` makes — whatever order `init` returned.
//!   Memory order only matters for speed: rows of a chunk are contiguous, so a
//!   fetch of whole rows is one block copy on the owner.
//!
//! ## Memory and release
//!
//! - The handle a constructor returns belongs to the **creator**; it and its clones
//!   keep the chunks. When the last of them is dropped, every owner is told to free
//!   its chunk — at once (Rust's `Drop`), not when a garbage collector gets to it as
//!   in Julia. [`DArray::close`] frees them earlier, [`d_closeall`] frees every array
//!   this process created in the current cluster (temporaries included).
//! - Handles sent to other processes are **views**: they do not keep the chunks
//!   alive (seed 004: "DArrays are not tracked by the reference GC"). Keep the
//!   creator's handle while others compute on the array.
//! - A chunk is also freed when its array's **creator leaves the cluster** (dies or
//!   is removed): each process watches the membership while it holds chunks of
//!   arrays created by others.
//! - After a release, any operation through any handle fails with
//!   [`ChunkFailure::Released`] — a late user gets a clear error, never stale data.
//! - [`local_chunks`] and [`chunks_of`] count the chunks a process holds, so tests
//!   can check that nothing is left.
//! - Results of operations ([`DArray::map`], [`Expr::eval`], [`DArray::matvec_d`])
//!   are new arrays created by the caller, released by the same rules.
//!
//! ## Performance rules
//!
//! Every whole-array operation is **one call per owner**, all sent at once; a range
//! fetch is one request per touched chunk, and several ranges fetched together
//! ([`DArray::fetch_each_into`], a halo exchange's borders) are one request per
//! owner. Numeric elements cross the wire as raw bytes ([`Element`]), and
//! [`DArray::fetch_into`] decodes each reply straight into the caller's buffer. Element access ([`DArray::get`]) is a round trip per
//! element: fine for a few, slow in a loop. The functions that run on the owners
//! (`init`, `map`'s `f`, …) travel as code offsets or `closure!`s, so all processes
//! must run the same executable (as for any closure in cohort).
//!
//! ## Floating-point results
//!
//! Reductions add each chunk's partial result, then the partials in chunk order, so
//! a distributed floating-point sum may differ from the serial one in the last bits
//! (seed 004: `sum(A) == sum(DA)` is `false` for `fill(1.1, (100, 100))` on 8
//! processes); the difference depends on the layout.
//!
//! ## SPMD
//!
//! - [`spmd`]: single program, multiple data — `spmd` runs one function on every
//!   process at once; inside it `sendto`/`recvfrom`/`recvfrom_any`, `barrier`,
//!   `bcast`, `scatter`, `gather`, `reduce`, `allreduce` go straight from worker to
//!   worker, in order per sender; contexts keep context-local storage between runs.
//!   Its module docs give the message rules, contexts and what a failure does.

pub mod spmd;

mod build;
mod darray;
mod ddata;
mod element;
mod error;
mod expr;
mod layout;
mod ops;
mod store;
mod transfer;

pub use build::{
    dfill, distribute, distribute_like, dones, drand, drandn, dzeros, DArrayBuilder, InitOutput,
    Ranges,
};
pub use darray::{DArray, LocalPart, LocalPartMut, Region};
pub use ddata::{ddata, ddata_from, ddata_on, DData};
pub use element::Element;
pub use error::{ChunkFailure, DArrayError};
pub use expr::{Expr, IntoExpr};
pub use layout::{cuts, defaultdist};
pub use store::{chunks_of, d_closeall, local_chunks, ChunkStats, DArrayId};

/// The blocking forms of this crate's async free functions, under the same names
/// (see `cohort_cluster::blocking`); methods have theirs beside them
/// (`sum_blocking`, …).
///
/// ```
/// let d = cohort_darray::blocking::dones::<f64, _>(3).unwrap();
/// assert_eq!(d.sum_blocking().unwrap(), 3.0);
/// ```
pub mod blocking {
    #[doc(inline)]
    pub use crate::build::__twin_dfill::dfill;
    #[doc(inline)]
    pub use crate::build::__twin_distribute::distribute;
    #[doc(inline)]
    pub use crate::build::__twin_distribute_like::distribute_like;
    #[doc(inline)]
    pub use crate::build::__twin_dones::dones;
    #[doc(inline)]
    pub use crate::build::__twin_drand::drand;
    #[doc(inline)]
    pub use crate::build::__twin_drandn::drandn;
    #[doc(inline)]
    pub use crate::build::__twin_dzeros::dzeros;
    #[doc(inline)]
    pub use crate::ddata::__twin_ddata::ddata;
    #[doc(inline)]
    pub use crate::ddata::__twin_ddata_from::ddata_from;
    #[doc(inline)]
    pub use crate::ddata::__twin_ddata_on::ddata_on;
    #[doc(inline)]
    pub use crate::store::__twin_chunks_of::chunks_of;
}
