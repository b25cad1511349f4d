//! Bounded waits: any wait of cohort's, given a time limit.
//!
//! Every operation that waits for another process — the remotecall family, a
//! `Future`'s `fetch`/`wait`, a `RemoteChannel`'s `take`/`fetch`/`wait` — is an async
//! function that is cancel-safe (or says what a cancel leaves behind), so one
//! function bounds them all: [`with_timeout`], with its blocking form
//! [`blocking::with_timeout`](crate::blocking::with_timeout). The handles also have
//! `*_timeout` methods for the common cases.

use std::future::Future as StdFuture;
use std::pin::pin;
use std::time::Duration;

use futures::future::{select, Either};

use crate::error::CallError;

/// Waits for `fut` for at most `limit`: its own result if it ends in time, else
/// [`CallError::TimedOut`] — and `fut` is dropped, which cancels it as its
/// `# Cancel safety` section says (a call still runs on its worker; a channel take
/// puts back what it removed). The timer runs on cohort's runtime, so this works
/// from any executor.
///
/// # Errors
/// `fut`'s own error, or [`CallError::TimedOut`] naming `limit`.
///
/// # Cancel safety
/// As cancel-safe as `fut`: dropping this drops `fut`.
///
/// ```
/// use std::time::Duration;
/// use cohort_cluster::{with_timeout, CallError, Future};
/// # cohort_cluster::runtime::block_on(async {
/// // Nothing is ever put into this future: the wait is given up.
/// let f = Future::<u8>::new(cohort_cluster::myid());
/// let r = with_timeout(Duration::from_millis(20), f.fetch()).await;
/// assert_eq!(r, Err(CallError::TimedOut { after: Duration::from_millis(20) }));
/// // One that ends in time gives its own result.
/// f.put(7).await.unwrap();
/// assert_eq!(with_timeout(Duration::from_secs(5), f.fetch()).await, Ok(7));
/// # });
/// ```
#[cohort_macros::twin_fn(example = " use std::time::Duration;
 let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 let r = cohort_cluster::blocking::with_timeout(Duration::from_millis(20), rc.take());
 assert!(matches!(r, Err(cohort_cluster::CallError::TimedOut { .. })));")]
pub async fn with_timeout<T>(
    limit: Duration,
    fut: impl StdFuture<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    let timer = crate::shell::runtime::handle().spawn(tokio::time::sleep(limit));
    let fut = pin!(fut);
    match select(fut, timer).await {
        Either::Left((r, timer)) => {
            timer.abort();
            r
        }
        Either::Right(_) => Err(CallError::TimedOut { after: limit }),
    }
}
