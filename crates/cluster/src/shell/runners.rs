//! Running calls received from other processes.
//!
//! A call may block for as long as it likes — compute, wait on a channel, call
//! another worker — so it runs off the message loop, under tokio's `block_in_place`:
//! on the runtime thread that took its task, while tokio hands that thread's other
//! work to another thread. A lone call (the ping-pong case) thus starts at once, on
//! the thread that decoded it, with no wake-up.
//!
//! Handing a runtime thread's work over costs more than a short call, though, and a
//! burst of pipelined calls would pay it once per call. So while a call is running,
//! further calls are *queued*, and a running call's thread takes the queued ones in
//! order when it has finished its own, inside the same `block_in_place` section: a
//! burst costs one hand-off, not thousands.
//!
//! A queued call must not wait for long behind a blocked or long call: a monitor
//! thread starts another draining task whenever queued calls have waited [`STALL`]
//! without any call starting. Two calls that wait on each other therefore never
//! deadlock; the second starts at most about [`STALL`] late.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

/// A call ready to run.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Queued calls that have waited this long with no call starting get a draining
/// task of their own.
pub(crate) const STALL: Duration = Duration::from_micros(100);

struct State {
    queue: VecDeque<Job>,
    /// When `queue` last went from empty to non-empty.
    queue_since: Instant,
    /// When a call last started.
    last_start: Instant,
    /// Calls running now.
    busy: usize,
    /// Whether the monitor thread runs, and whether it sleeps until notified.
    monitor_started: bool,
    monitor_waiting: bool,
    /// Set if the monitor could not be started: then nothing is queued.
    monitor_failed: bool,
}

struct Calls {
    state: Mutex<State>,
    /// Wakes the monitor when calls are queued.
    monitor: Condvar,
}

fn calls() -> &'static Calls {
    static C: OnceLock<Calls> = OnceLock::new();
    C.get_or_init(|| Calls {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            queue_since: Instant::now(),
            last_start: Instant::now(),
            busy: 0,
            monitor_started: false,
            monitor_waiting: false,
            monitor_failed: false,
        }),
        monitor: Condvar::new(),
    })
}

/// Runs `job`: at once in a task of its own if no call is running, else after the
/// calls queued before it (see the module docs).
pub(crate) fn submit(job: Job) {
    let c = calls();
    let mut st = c.state.lock();
    if st.busy > 0 && !st.monitor_failed {
        enqueue(c, &mut st, job);
        return;
    }
    st.busy += 1;
    st.last_start = Instant::now();
    drop(st);
    spawn_drainer(job);
}

fn enqueue(c: &Calls, st: &mut State, job: Job) {
    if st.queue.is_empty() {
        st.queue_since = Instant::now();
    }
    st.queue.push_back(job);
    if !st.monitor_started {
        st.monitor_started = true;
        if let Err(e) = std::thread::Builder::new()
            .name("cohort-call-monitor".into())
            .spawn(monitor)
        {
            // Without a monitor a blocked call could strand the queue: give up
            // queueing (each call then gets a task of its own, as with nothing busy).
            tracing::warn!(error = %e, "cannot start the call monitor");
            st.monitor_failed = true;
            let queued: Vec<Job> = st.queue.drain(..).collect();
            st.busy += queued.len();
            for job in queued {
                spawn_drainer(job);
            }
            return;
        }
    }
    if st.monitor_waiting {
        st.monitor_waiting = false;
        c.monitor.notify_one();
    }
}

/// Takes the next queued call for a thread that is about to run it.
fn take_queued(st: &mut State) -> Option<Job> {
    let job = st.queue.pop_front()?;
    if st.queue.capacity() > 1024 && st.queue.len() * 4 < st.queue.capacity() {
        // After a burst, give the memory back (a quiet worker returns to its baseline).
        st.queue.shrink_to_fit();
    }
    st.busy += 1;
    st.last_start = Instant::now();
    if !st.queue.is_empty() {
        st.queue_since = st.last_start;
    }
    Some(job)
}

/// Runs `first` (already counted busy), then queued calls until there are none, in
/// one `block_in_place` section on a runtime thread.
fn spawn_drainer(first: Job) {
    crate::runtime::handle().spawn(async move {
        tokio::task::block_in_place(move || {
            let mut next = Some(first);
            while let Some(job) = next.take() {
                // A call's panic is caught by its trampoline; this guards the count
                // against one in the runtime's own bookkeeping.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a call's bookkeeping panicked");
                }
                let mut st = calls().state.lock();
                st.busy -= 1;
                next = take_queued(&mut st);
            }
        });
    });
}

/// Starts a draining task for the queue's head whenever the queue has not moved for
/// [`STALL`].
fn monitor() {
    let c = calls();
    let mut st: MutexGuard<'_, State> = c.state.lock();
    loop {
        if st.queue.is_empty() {
            st.monitor_waiting = true;
            c.monitor.wait(&mut st);
            continue;
        }
        let due = st.last_start.max(st.queue_since) + STALL;
        if Instant::now() < due {
            c.monitor.wait_until(&mut st, due);
            continue;
        }
        let job = take_queued(&mut st).expect("the queue is not empty");
        drop(st);
        spawn_drainer(job);
        st = c.state.lock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc};

    // The runtime's worker threads run these jobs; `block_in_place` needs them to.

    #[test]
    fn calls_that_wait_on_each_other_all_start() {
        // 32 jobs that each wait until all 32 have started: only possible if queued
        // jobs get threads of their own while the others block.
        let n = 32;
        let barrier = Arc::new(std::sync::Barrier::new(n));
        let (tx, rx) = mpsc::channel();
        for i in 0..n {
            let (b, tx) = (barrier.clone(), tx.clone());
            submit(Box::new(move || {
                b.wait();
                tx.send(i).unwrap();
            }));
        }
        let mut got: Vec<usize> = (0..n)
            .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn a_stream_of_short_jobs_all_run() {
        let (tx, rx) = mpsc::channel();
        for i in 0..10_000u32 {
            let tx = tx.clone();
            submit(Box::new(move || tx.send(i).unwrap()));
            if i % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let mut sum = 0u64;
        for _ in 0..10_000 {
            sum += rx.recv_timeout(Duration::from_secs(30)).unwrap() as u64;
        }
        assert_eq!(sum, (0..10_000u64).sum());
    }

    #[test]
    fn a_long_call_does_not_hold_up_a_short_one() {
        let (tx, rx) = mpsc::channel::<&str>();
        let long_tx = tx.clone();
        let (release, wait) = mpsc::channel::<()>();
        submit(Box::new(move || {
            wait.recv_timeout(Duration::from_secs(30)).ok();
            long_tx.send("long").unwrap();
        }));
        submit(Box::new(move || tx.send("short").unwrap()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "short");
        release.send(()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "long");
    }
}
