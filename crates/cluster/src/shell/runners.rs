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
//!
//! The queue's logic is [`CallQueue`], generic over its [`Host`]: the lock and
//! condition variable, the clock, and the threads it drains and watches on. The real
//! host is [`Tokio`] (parking_lot, [`Instant`], tokio tasks under `block_in_place`, an
//! OS thread for the monitor), a zero-sized type whose queue is a `static`: the
//! generic code compiles to the same work per call as the hand-written queue did (one
//! lock, no allocation or reference count of its own). The model test (`model`,
//! below) runs the same code under loom with a logical clock, and explores the
//! interleavings of submitters, draining threads and the monitor.

use std::collections::VecDeque;
use std::ops::{Add, Deref, DerefMut};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

/// A call ready to run.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Queued calls that have waited this long with no call starting get a draining
/// task of their own.
pub(crate) const STALL: Duration = Duration::from_micros(100);

/// Runs `job`: at once in a task of its own if no call is running, else after the
/// calls queued before it (see the module docs).
pub(crate) fn submit(job: Job) {
    CallQueue::<Tokio>::submit(&Tokio::queue(), job);
}

/// What a [`CallQueue`] runs on: its lock and condition variable, its clock, and the
/// threads (or tasks that may block) that drain it and watch it.
trait Host: Sized + Send + Sync + 'static {
    /// A point in time.
    type Instant: Copy + Ord + Add<Duration, Output = Self::Instant>;
    /// The queue's [`State`] under a lock, with the condition variable the monitor
    /// sleeps on.
    type Lock: Send + Sync;
    /// The held lock.
    type Guard<'a>: DerefMut<Target = State<Self>>;
    /// A handle on a queue that a new thread or task can take along.
    type Ref: Deref<Target = CallQueue<Self>> + Clone + Send + 'static;

    /// A lock around `state`.
    fn new_lock(state: State<Self>) -> Self::Lock;
    /// Takes the lock.
    fn lock(lock: &Self::Lock) -> Self::Guard<'_>;
    /// Now.
    fn now(&self) -> Self::Instant;
    /// Releases `guard`, sleeps until notified and takes the lock again. `None` tells
    /// the monitor to stop (the model's end; the real host never says it).
    fn wait<'a>(&self, lock: &'a Self::Lock, guard: Self::Guard<'a>) -> Option<Self::Guard<'a>>;
    /// As [`Host::wait`], waking at `deadline` at the latest.
    fn wait_until<'a>(
        &self,
        lock: &'a Self::Lock,
        guard: Self::Guard<'a>,
        deadline: Self::Instant,
    ) -> Self::Guard<'a>;
    /// Wakes the monitor if it sleeps in [`Host::wait`].
    fn notify_one(lock: &Self::Lock);
    /// Runs [`CallQueue::drain`] of `first` on `queue` where it may block.
    fn spawn_drainer(queue: Self::Ref, first: Job);
    /// Starts a thread that runs [`CallQueue::monitor`] on `queue`.
    ///
    /// # Errors
    /// The thread could not be started.
    fn spawn_monitor(queue: Self::Ref) -> std::io::Result<()>;
}

/// The queue's state, under its host's lock.
struct State<H: Host> {
    queue: VecDeque<Job>,
    /// When `queue` last went from empty to non-empty.
    queue_since: H::Instant,
    /// When a call last started.
    last_start: H::Instant,
    /// Calls running now (each on a draining thread).
    busy: usize,
    /// Whether the monitor thread runs, and whether it sleeps until notified.
    monitor_started: bool,
    monitor_waiting: bool,
    /// Set if the monitor could not be started: then nothing is queued.
    monitor_failed: bool,
}

/// The call queue: the state and its lock, and the host it runs on.
struct CallQueue<H: Host> {
    lock: H::Lock,
    host: H,
}

impl<H: Host> CallQueue<H> {
    /// An empty queue on `host`.
    fn new(host: H) -> Self {
        let now = host.now();
        CallQueue {
            lock: H::new_lock(State {
                queue: VecDeque::new(),
                queue_since: now,
                last_start: now,
                busy: 0,
                monitor_started: false,
                monitor_waiting: false,
                monitor_failed: false,
            }),
            host,
        }
    }

    /// Runs `job` on `q` (see [`submit`]).
    fn submit(q: &H::Ref, job: Job) {
        let mut st = H::lock(&q.lock);
        if st.busy > 0 && !st.monitor_failed {
            Self::enqueue(q, &mut st, job);
            return;
        }
        st.busy += 1;
        st.last_start = q.host.now();
        drop(st);
        H::spawn_drainer(q.clone(), job);
    }

    /// Queues `job` behind the running calls, starting the monitor on first use.
    fn enqueue(q: &H::Ref, st: &mut State<H>, job: Job) {
        if st.queue.is_empty() {
            st.queue_since = q.host.now();
        }
        st.queue.push_back(job);
        if !st.monitor_started {
            st.monitor_started = true;
            if let Err(e) = H::spawn_monitor(q.clone()) {
                // Without a monitor a blocked call could strand the queue: give up
                // queueing (each call then gets a task of its own, as with nothing busy).
                tracing::warn!(error = %e, "cannot start the call monitor");
                st.monitor_failed = true;
                let queued: Vec<Job> = st.queue.drain(..).collect();
                st.busy += queued.len();
                for job in queued {
                    H::spawn_drainer(q.clone(), job);
                }
                return;
            }
        }
        if st.monitor_waiting {
            st.monitor_waiting = false;
            H::notify_one(&q.lock);
        }
    }

    /// Takes the next queued call for a thread that is about to run it.
    fn take_queued(&self, st: &mut State<H>) -> Option<Job> {
        let job = st.queue.pop_front()?;
        if st.queue.capacity() > 1024 && st.queue.len() * 4 < st.queue.capacity() {
            // After a burst, give the memory back (a quiet worker returns to its baseline).
            st.queue.shrink_to_fit();
        }
        st.busy += 1;
        st.last_start = self.host.now();
        if !st.queue.is_empty() {
            st.queue_since = st.last_start;
        }
        Some(job)
    }

    /// Runs `first` (already counted busy), then queued calls until there are none:
    /// the body of a draining thread.
    fn drain(&self, first: Job) {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            // A call's panic is caught by its trampoline; this guards the count
            // against one in the runtime's own bookkeeping.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                tracing::error!("a call's bookkeeping panicked");
            }
            let mut st = H::lock(&self.lock);
            st.busy -= 1;
            next = self.take_queued(&mut st);
        }
    }

    /// Starts a draining thread for the queue's head whenever the queue has not moved
    /// for [`STALL`]: the body of the monitor thread.
    fn monitor(q: &H::Ref) {
        let mut st = H::lock(&q.lock);
        loop {
            if st.queue.is_empty() {
                st.monitor_waiting = true;
                match q.host.wait(&q.lock, st) {
                    Some(guard) => st = guard,
                    None => return,
                }
                continue;
            }
            let due = st.last_start.max(st.queue_since) + STALL;
            if q.host.now() < due {
                st = q.host.wait_until(&q.lock, st, due);
                continue;
            }
            let job = q.take_queued(&mut st).expect("the queue is not empty");
            drop(st);
            H::spawn_drainer(q.clone(), job);
            st = H::lock(&q.lock);
        }
    }
}

/// The real host: parking_lot's lock, the system clock, draining tasks on cohort's
/// tokio runtime under `block_in_place`, an OS thread for the monitor. Its one queue
/// is a `static` ([`Tokio::queue`]).
struct Tokio;

impl Tokio {
    /// The process's call queue.
    fn queue() -> &'static CallQueue<Tokio> {
        static Q: OnceLock<CallQueue<Tokio>> = OnceLock::new();
        Q.get_or_init(|| CallQueue::new(Tokio))
    }
}

impl Host for Tokio {
    type Instant = Instant;
    type Lock = (Mutex<State<Tokio>>, Condvar);
    type Guard<'a> = MutexGuard<'a, State<Tokio>>;
    type Ref = &'static CallQueue<Tokio>;

    fn new_lock(state: State<Tokio>) -> Self::Lock {
        (Mutex::new(state), Condvar::new())
    }

    #[inline]
    fn lock(lock: &Self::Lock) -> Self::Guard<'_> {
        lock.0.lock()
    }

    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wait<'a>(
        &self,
        lock: &'a Self::Lock,
        mut guard: Self::Guard<'a>,
    ) -> Option<Self::Guard<'a>> {
        lock.1.wait(&mut guard);
        Some(guard)
    }

    fn wait_until<'a>(
        &self,
        lock: &'a Self::Lock,
        mut guard: Self::Guard<'a>,
        deadline: Instant,
    ) -> Self::Guard<'a> {
        lock.1.wait_until(&mut guard, deadline);
        guard
    }

    #[inline]
    fn notify_one(lock: &Self::Lock) {
        lock.1.notify_one();
    }

    fn spawn_drainer(queue: Self::Ref, first: Job) {
        crate::runtime::handle().spawn(async move {
            tokio::task::block_in_place(move || queue.drain(first));
        });
    }

    fn spawn_monitor(queue: Self::Ref) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("cohort-call-monitor".into())
            .spawn(move || CallQueue::<Tokio>::monitor(&queue))
            .map(drop)
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

/// A loom model of [`CallQueue`]: the real queue code on a host whose lock, condition
/// variable and threads are loom's and whose clock is logical, run under every
/// interleaving loom's scheduler explores: all of them, or for the two largest models
/// all of them up to a bound on preemptions, which CI's longer run raises
/// (`COHORT_LOOM_DEEP`).
///
/// Each run submits a few jobs from one or two submitter threads; a job may block until
/// another has run (the deadlock the monitor exists to break). Checked whenever the
/// queue's lock is taken: no call is queued while none runs (the lost wake-up between a
/// draining thread's last decrement of `busy` and a concurrent enqueue), and none once
/// the monitor failed to start. Checked by the last thread to finish: every job ran
/// exactly once, `busy` is back to 0 and the queue is empty. A job left in the queue for
/// good leaves the monitor waiting for ever, which loom reports as a deadlock, as it
/// does threads that wait on each other. Under the frozen clock the monitor never
/// rescues a call, so there draining threads alone must run every call.
///
/// The model adds no synchronisation of its own to what it checks, except where a job
/// blocks: the bookkeeping is in plain atomics, which loom does not schedule around
/// (it runs one thread at a time). It allows five threads in all (the main one,
/// submitters, draining threads, the monitor), which bounds a run to three jobs.
#[cfg(test)]
mod model {
    use super::*;
    use loom::sync::{Condvar as LoomCondvar, Mutex as LoomMutex, MutexGuard as LoomGuard};
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
    use std::sync::Arc;

    /// How the model's clock moves.
    #[derive(Clone, Copy, Debug)]
    enum Clock {
        /// Never: the monitor's timed wait does not expire (a [`STALL`] longer than the
        /// run), so draining threads alone run the queued calls.
        Frozen,
        /// When the monitor waits for a deadline: the deadline passes while the lock is
        /// free, at whatever point the scheduler picks.
        Passes,
    }

    /// One model's plan.
    #[derive(Clone, Debug)]
    struct Plan {
        clock: Clock,
        /// Whether the monitor thread fails to start.
        monitor_fails: bool,
        /// `waits_for[i]`: job `i` blocks until that job has run.
        waits_for: Vec<Option<usize>>,
        /// The jobs a second submitter thread submits, in order, while the main thread
        /// submits the others.
        second: Vec<usize>,
    }

    /// What the jobs and threads of one run share, for the checks.
    struct Progress {
        /// How many times each job ran.
        ran: Vec<AtomicUsize>,
        /// Submitter and draining threads not finished yet; the one that brings it to
        /// 0 once every job ran checks the end state.
        live: AtomicUsize,
        /// Where blocked jobs wait for the jobs they wait for.
        gate: LoomMutex<()>,
        /// Notified when a job that another waits for has run.
        opened: LoomCondvar,
    }

    /// The model's host.
    struct Model {
        clock: Clock,
        /// The logical time in nanoseconds, read and moved under the queue's lock.
        now: AtomicU64,
        /// Set under the queue's lock when the run is over: the monitor stops.
        stop: AtomicBool,
        monitor_fails: bool,
        /// Monitor threads started.
        monitors: AtomicUsize,
        progress: Arc<Progress>,
    }

    /// The queue's invariants, whenever its lock is taken.
    fn check(st: &State<Model>) {
        assert!(
            st.queue.is_empty() || st.busy > 0,
            "{} calls queued while none runs",
            st.queue.len()
        );
        assert!(
            !st.monitor_failed || st.queue.is_empty(),
            "calls queued with no monitor"
        );
    }

    impl Host for Model {
        type Instant = Duration;
        type Lock = (LoomMutex<State<Model>>, LoomCondvar);
        type Guard<'a> = LoomGuard<'a, State<Model>>;
        type Ref = Arc<CallQueue<Model>>;

        fn new_lock(state: State<Model>) -> Self::Lock {
            (LoomMutex::new(state), LoomCondvar::new())
        }

        fn lock(lock: &Self::Lock) -> Self::Guard<'_> {
            let guard = lock.0.lock().unwrap();
            check(&guard);
            guard
        }

        fn now(&self) -> Duration {
            Duration::from_nanos(self.now.load(Relaxed))
        }

        fn wait<'a>(
            &self,
            lock: &'a Self::Lock,
            guard: Self::Guard<'a>,
        ) -> Option<Self::Guard<'a>> {
            if self.stop.load(Relaxed) {
                return None;
            }
            let guard = lock.1.wait(guard).unwrap();
            check(&guard);
            (!self.stop.load(Relaxed)).then_some(guard)
        }

        fn wait_until<'a>(
            &self,
            lock: &'a Self::Lock,
            guard: Self::Guard<'a>,
            deadline: Duration,
        ) -> Self::Guard<'a> {
            match self.clock {
                Clock::Frozen => {
                    if self.stop.load(Relaxed) {
                        // The loop finds the queue empty and stops in `wait`.
                        return guard;
                    }
                    let guard = lock.1.wait(guard).unwrap();
                    check(&guard);
                    guard
                }
                Clock::Passes => {
                    drop(guard);
                    let guard = Self::lock(lock);
                    let deadline = u64::try_from(deadline.as_nanos()).unwrap();
                    self.now.fetch_max(deadline, Relaxed);
                    guard
                }
            }
        }

        fn notify_one(lock: &Self::Lock) {
            lock.1.notify_one();
        }

        fn spawn_drainer(queue: Self::Ref, first: Job) {
            queue.host.progress.live.fetch_add(1, Relaxed);
            loom::thread::spawn(move || {
                queue.drain(first);
                finished(&queue);
            });
        }

        fn spawn_monitor(queue: Self::Ref) -> std::io::Result<()> {
            if queue.host.monitor_fails {
                return Err(std::io::Error::other("the model refuses the monitor"));
            }
            let before = queue.host.monitors.fetch_add(1, Relaxed);
            assert_eq!(before, 0, "a second monitor");
            loom::thread::spawn(move || CallQueue::<Model>::monitor(&queue));
            Ok(())
        }
    }

    /// A submitter or draining thread is done. The last one, once every job ran, checks
    /// the end state and stops the monitor.
    fn finished(q: &CallQueue<Model>) {
        let p = &q.host.progress;
        if p.live.fetch_sub(1, Relaxed) != 1 || p.ran.iter().any(|r| r.load(Relaxed) == 0) {
            // More threads to come: a job has not run yet, so someone will run it.
            return;
        }
        let ran: Vec<usize> = p.ran.iter().map(|r| r.load(Relaxed)).collect();
        assert!(ran.iter().all(|&r| r == 1), "runs per job: {ran:?}");
        let st = Model::lock(&q.lock);
        assert_eq!(st.busy, 0, "calls counted running after all finished");
        assert!(st.queue.is_empty());
        // The end: the monitor stops (the real one never does).
        q.host.stop.store(true, Relaxed);
        q.lock.1.notify_all();
    }

    /// One execution of `plan` (loom calls it once per interleaving).
    fn run(plan: &Plan) {
        let n = plan.waits_for.len();
        let progress = Arc::new(Progress {
            ran: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            // This thread, and the second submitter if there is one.
            live: AtomicUsize::new(1 + usize::from(!plan.second.is_empty())),
            gate: LoomMutex::new(()),
            opened: LoomCondvar::new(),
        });
        let q = Arc::new(CallQueue::new(Model {
            clock: plan.clock,
            now: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            monitor_fails: plan.monitor_fails,
            monitors: AtomicUsize::new(0),
            progress: progress.clone(),
        }));
        let job = |i: usize| -> Job {
            let p = progress.clone();
            let waits_for = plan.waits_for[i];
            let awaited = plan.waits_for.contains(&Some(i));
            Box::new(move || {
                if let Some(j) = waits_for {
                    let mut gate = p.gate.lock().unwrap();
                    while p.ran[j].load(Relaxed) == 0 {
                        gate = p.opened.wait(gate).unwrap();
                    }
                }
                p.ran[i].fetch_add(1, Relaxed);
                if awaited {
                    let _gate = p.gate.lock().unwrap();
                    p.opened.notify_all();
                }
            })
        };
        if !plan.second.is_empty() {
            let jobs: Vec<Job> = plan.second.iter().map(|&i| job(i)).collect();
            let q = q.clone();
            loom::thread::spawn(move || {
                for j in jobs {
                    CallQueue::<Model>::submit(&q, j);
                }
                finished(&q);
            });
        }
        for i in (0..n).filter(|i| !plan.second.contains(i)) {
            CallQueue::<Model>::submit(&q, job(i));
        }
        finished(&q);
    }

    /// Explores `plan` under every interleaving with at most `bound` preemptions
    /// (`None`: every interleaving), or `deep` with `COHORT_LOOM_DEEP` set (CI's
    /// longer run); loom's own `LOOM_MAX_PREEMPTIONS` overrides both.
    fn explore(plan: Plan, bound: Option<usize>, deep: Option<usize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = if std::env::var_os("COHORT_LOOM_DEEP").is_some() {
                deep
            } else {
                bound
            };
        }
        let bound = builder.preemption_bound;
        builder.check(move || {
            counted.fetch_add(1, Relaxed);
            run(&plan);
        });
        let runs = runs.load(Relaxed);
        eprintln!("{runs} interleavings (preemption bound {bound:?})");
        // A control: the model is not vacuous.
        assert!(runs > 10, "only {runs} interleavings");
    }

    fn plan(clock: Clock, waits_for: &[Option<usize>], second: &[usize]) -> Plan {
        Plan {
            clock,
            monitor_fails: false,
            waits_for: waits_for.to_vec(),
            second: second.to_vec(),
        }
    }

    #[test]
    fn running_calls_alone_drain_a_burst() {
        // Three calls from one connection; the monitor never fires.
        explore(plan(Clock::Frozen, &[None, None, None], &[]), None, None);
    }

    #[test]
    fn concurrent_submitters_strand_no_call() {
        // Two connections submit at once while calls finish.
        explore(plan(Clock::Frozen, &[None, None, None], &[1]), None, None);
    }

    #[test]
    fn the_monitor_and_draining_calls_take_each_call_once() {
        // The monitor may fire at any point: it and the draining threads race for
        // the queue's head.
        explore(plan(Clock::Passes, &[None, None, None], &[]), Some(3), None);
    }

    #[test]
    fn calls_that_wait_on_each_other_all_start() {
        // Job 0 waits for job 1, which waits for job 2: only the monitor can start
        // them.
        explore(
            plan(Clock::Passes, &[Some(1), Some(2), None], &[]),
            Some(2),
            Some(4),
        );
    }

    #[test]
    fn a_call_waiting_for_another_connections_call_gets_it_started() {
        explore(plan(Clock::Passes, &[Some(1), None], &[1]), None, None);
    }

    #[test]
    fn without_a_monitor_every_call_gets_a_thread() {
        let plan = Plan {
            monitor_fails: true,
            ..plan(Clock::Passes, &[Some(2), None, None], &[])
        };
        explore(plan, None, None);
    }
}
