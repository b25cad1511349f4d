//! The blocking API: the free functions of cohort under the same names as their async
//! forms, waiting on the calling thread (reqwest's `blocking` module is the model).
//! Methods of handles have their blocking form beside the async one, with the
//! `_blocking` suffix (`Future::fetch_blocking`). Every blocking form is generated
//! from its async definition, so the two cannot drift, and panics with a clear
//! message when called from async code on a runtime thread.
//!
//! ```
//! use cohort_cluster::blocking;
//! fn double(x: u64) -> u64 { x * 2 }
//! assert_eq!(blocking::remotecall_fetch(double, 1, (21,)).unwrap(), 42);
//! ```

#[doc(inline)]
pub use crate::api::builtins::__twin_stats_of::stats_of;
#[doc(inline)]
pub use crate::api::call::__twin_fetchfrom::fetchfrom;
#[doc(inline)]
pub use crate::api::call::__twin_remotecall_fetch::remotecall_fetch;
#[doc(inline)]
pub use crate::api::call::__twin_remotecall_wait::remotecall_wait;
#[doc(inline)]
pub use crate::api::deadline::__twin_with_timeout::with_timeout;
#[doc(inline)]
pub use crate::api::procs::__twin_addprocs::addprocs;
#[doc(inline)]
pub use crate::api::procs::__twin_rmprocs::rmprocs;
