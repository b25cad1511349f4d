//! The blocking forms of this crate's free functions, under the same names, beside
//! those of `cohort_cluster::blocking` (re-exported here); each is generated from
//! its async definition.
//!
//! ```
//! let v = cohort_pool::blocking::pmap(|x: u64| x + 1, vec![1, 2]).unwrap();
//! assert_eq!(v, vec![2, 3]);
//! ```

pub use cohort_cluster::blocking::*;

#[doc(inline)]
pub use crate::caching::__twin_cache_stats_of::cache_stats_of;
#[doc(inline)]
pub use crate::distributed::__twin_distributed_reduce::distributed_reduce;
#[doc(inline)]
pub use crate::distributed::__twin_timedwait::timedwait;
#[doc(inline)]
pub use crate::everywhere::__twin_clear::clear;
#[doc(inline)]
pub use crate::everywhere::__twin_everywhere::everywhere;
#[doc(inline)]
pub use crate::everywhere::__twin_everywhere_on::everywhere_on;
#[doc(inline)]
pub use crate::everywhere::__twin_global_names_of::global_names_of;
#[doc(inline)]
pub use crate::everywhere::__twin_set_global_everywhere::set_global_everywhere;
#[doc(inline)]
pub use crate::pmap::__twin_asyncmap::asyncmap;
#[doc(inline)]
pub use crate::pmap::__twin_pmap::pmap;
#[doc(inline)]
pub use crate::pmap::__twin_pmap_args::pmap_args;
#[doc(inline)]
pub use crate::pmap::__twin_pmap_with::pmap_with;
