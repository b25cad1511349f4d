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
#[cfg(feature = "ndarray")]
#[doc(inline)]
pub use crate::pmap::__twin_pmap_array::pmap_array;
#[doc(inline)]
pub use crate::pmap::__twin_pmap_with::pmap_with;

use cohort_cluster::RemoteFn;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{PmapOptions, PoolError};

/// The blocking form of [`pmap_stream`](crate::pmap_stream) (Julia's `pgenerate`): an
/// [`Iterator`] of the results in input order, each `next` waiting for the next
/// result; the input is pulled as the async form pulls it.
///
/// # Panics
/// `next` panics when called on a thread that runs async tasks (iterate the async
/// stream there).
///
/// ```
/// let mut it = cohort_pool::blocking::pmap_stream(|x: u32| x + 1, 0.., cohort_pool::PmapOptions::new());
/// assert_eq!(it.next().unwrap().unwrap(), 1);
/// assert_eq!(it.next().unwrap().unwrap(), 2);
/// ```
pub fn pmap_stream<F, T>(
    f: F,
    items: impl IntoIterator<Item = T>,
    opts: PmapOptions<F::Output>,
) -> impl Iterator<Item = Result<F::Output, PoolError>>
where
    F: RemoteFn<(T,)>,
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    F::Output: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    use futures::StreamExt;
    let mut s = crate::pmap_stream(f, items, opts);
    std::iter::from_fn(move || {
        cohort_cluster::runtime::block_here("blocking::pmap_stream", s.next())
    })
}
