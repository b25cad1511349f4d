//! The runtime's tokio runtime, and the bridge that gives every async operation a
//! blocking twin.
//!
//! Connections, accept loops, timers and call execution always run on this runtime,
//! so the public async functions work from any executor: where they need tokio (a
//! timer, a blocking task, a spawned task) they hand that part to this runtime and
//! await its join handle or a channel, which any executor can poll. The blocking
//! forms work from a plain `fn main` or any thread that is not one of this runtime's
//! own workers.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8);
        Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("cohort-rt")
            // Calls run on blocking threads; after a burst the extra threads (and
            // their stacks and heap arenas) go away soon rather than after 10 s.
            .thread_keep_alive(std::time::Duration::from_secs(2))
            .enable_all()
            .build()
            .expect("cannot start the cohort runtime")
    })
}

/// A handle to cohort's tokio runtime, for spawning tasks that use its connections.
///
/// ```
/// let h = cohort_cluster::runtime::handle();
/// let v = cohort_cluster::runtime::block_on(async { 1 + 1 });
/// assert_eq!(v, 2);
/// # drop(h);
/// ```
pub fn handle() -> &'static Handle {
    runtime().handle()
}

/// Panics with a clear message if the calling thread runs async tasks (a tokio
/// runtime's worker in the middle of polling one), where blocking would stall its
/// other tasks or deadlock. Blocking is fine on any other thread — a plain thread, a
/// `spawn_blocking` thread, or inside `block_in_place` (where cohort runs the calls
/// it receives).
fn assert_can_block(what: &str) {
    if Handle::try_current().is_err() {
        // In no runtime's context at all: a plain thread.
        return;
    }
    // tokio knows whether this thread is driving tasks, and says so only by
    // refusing `block_on` there: ask it with a no-op, quietly.
    crate::panics::install_hook();
    let refused = crate::panics::quietly(|| {
        std::panic::catch_unwind(|| handle().block_on(async {})).is_err()
    });
    if refused {
        panic!(
            "cohort: `{what}` blocks the calling thread, but this thread is running async \
             tasks (it would stall them, or deadlock): `.await` the async form instead"
        );
    }
}

/// Waits for `fut` on the calling thread, inside cohort's runtime context (what the
/// generated blocking forms call; `what` names the blocking function for the panic
/// message). The thread polls for the result for up to 50 µs (`COHORT_SPIN_US`)
/// before it sleeps.
///
/// # Panics
/// When called on a thread that runs async tasks (see the module docs); re-raises a
/// panic of `fut`.
///
/// ```
/// assert_eq!(cohort_cluster::runtime::block_here("demo", async { 5 }), 5);
/// ```
pub fn block_here<F: Future>(what: &str, fut: F) -> F::Output {
    assert_can_block(what);
    let _context = handle().enter();
    wait(std::pin::pin!(fut))
}

/// Runs `fut` on cohort's runtime and blocks the calling thread until it finishes.
/// The calling thread polls for the result for up to 50 µs (`COHORT_SPIN_US`) before
/// it sleeps, so a quick future costs no wake-up on the way back.
///
/// # Panics
/// Re-raises a panic of `fut`; panics with a clear message when called on a thread
/// that runs async tasks (async code should `.await` instead).
///
/// ```
/// assert_eq!(cohort_cluster::runtime::block_on(async { "done" }), "done");
/// ```
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    assert_can_block("runtime::block_on");
    let task = handle().spawn(fut);
    match wait(task) {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("cohort runtime task failed: {e}"),
    }
}

/// Runs a `main` future on cohort's runtime (what `#[cohort::main]` expands to for an
/// `async fn main`).
///
/// ```
/// cohort_cluster::runtime::run_main(async { assert_eq!(1, 1) });
/// ```
pub fn run_main<F: Future>(fut: F) -> F::Output {
    runtime().block_on(fut)
}

/// How long a thread that waits for the runtime polls before it sleeps, from
/// `COHORT_SPIN_US` (microseconds; default 50, 0 turns polling off). It yields its
/// CPU between polls.
///
/// A result that comes within this time is seen without a thread wake-up, which on a
/// virtual machine costs about as much as the rest of a round trip; a waiter whose
/// result takes longer has spent this much CPU in vain before it sleeps (the trade
/// DESIGN.md asks to measure: see docs/performance.md).
fn spin_budget() -> std::time::Duration {
    static SPIN: OnceLock<std::time::Duration> = OnceLock::new();
    *SPIN.get_or_init(|| {
        let us = std::env::var("COHORT_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(50);
        std::time::Duration::from_micros(us)
    })
}

/// Waits for `fut` on the calling thread: polls it for [`spin_budget`], then sleeps
/// until it is woken. For futures completed by another thread (a reply slot, a task's
/// join handle), not for ones that need this thread to make progress.
pub(crate) fn wait<F: Future + Unpin>(mut fut: F) -> F::Output {
    use std::task::{Context, Poll};
    let budget = spin_budget();
    if !budget.is_zero() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        // The first poll may do the work of starting (a request's send, about as
        // long as the round trip's other half on a VM): the budget counts from after
        // it, or the reply of a quick call would come just after the thread slept.
        if let Poll::Ready(v) = std::pin::Pin::new(&mut fut).poll(&mut cx) {
            return v;
        }
        let start = std::time::Instant::now();
        loop {
            if let Poll::Ready(v) = std::pin::Pin::new(&mut fut).poll(&mut cx) {
                return v;
            }
            // Yield rather than spin in place: the thread that will complete the
            // future (the reader task that receives the reply, a local call's
            // runner) may be waiting for this very CPU, and on a machine with no
            // core to spare a pure spin kept it off for the whole budget (a channel
            // round trip between two workers on 2 cores took 125-134 µs spinning,
            // 48-51 µs yielding). With nothing else to run, the yield returns at once.
            std::thread::yield_now();
            if start.elapsed() >= budget {
                break;
            }
        }
    }
    futures::executor::block_on(fut)
}
