//! What a node records for the dashboard (`cohort-dashboard`), `/api/status` and
//! `/metrics`: counters and bounded event rings owned by the node, read through
//! [`crate::observe`].
//!
//! The cost is the point. On the call path, always: two relaxed counter increments
//! per call run here, and two per frame a connection reads or writes (its bytes).
//! Everything else — the clock read for a call's duration, the latency histogram, the
//! task stream, the counts by function, the recent errors, the stderr tee — is
//! recorded only once [`Observer::enable`] was called (by a dashboard, or remotely by
//! one through the `cohort::observe` built-in): until then a relaxed load of one flag
//! per call is all it costs. The rings are bounded (oldest entries dropped), so a
//! dashboard that stops reading never grows a node's memory.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cohort_wire::ids::Pid;
use parking_lot::Mutex;

use crate::error::RemoteException;

/// Calls kept in the task stream of one process.
pub(crate) const TASK_RING: usize = 2048;
/// Errors kept.
pub(crate) const ERROR_RING: usize = 256;
/// Lines of stderr kept.
pub(crate) const STDERR_RING: usize = 256;
/// Peer state changes kept (dead and exiting workers).
pub(crate) const PEER_STATES: usize = 1024;
/// A stderr line longer than this is cut (the ring stays bounded in bytes too).
const MAX_LINE: usize = 2000;

/// Upper bounds of the call-duration histogram's buckets, in microseconds (the last
/// bucket, +Inf, is implicit).
pub(crate) const LATENCY_BOUNDS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000, 30_000_000,
];

/// Milliseconds since the Unix epoch, the timestamps events carry (processes on one
/// host share the clock; across hosts they are as good as the hosts' clocks).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A bounded ring of events numbered from 1, read by cursor: a reader asks for what
/// came after the last number it saw.
pub(crate) struct Ring<T> {
    items: VecDeque<(u64, T)>,
    cap: usize,
    next: u64,
}

impl<T: Clone> Ring<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Ring {
            items: VecDeque::new(),
            cap,
            next: 1,
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.items.len() == self.cap {
            self.items.pop_front();
        }
        self.items.push_back((self.next, item));
        self.next += 1;
    }

    /// The items numbered above `after`, oldest first, and the last number given out.
    pub(crate) fn since(&self, after: u64) -> (Vec<(u64, T)>, u64) {
        let v = self
            .items
            .iter()
            .filter(|(seq, _)| *seq > after)
            .cloned()
            .collect();
        (v, self.next - 1)
    }
}

/// A call that ran here.
#[derive(Clone)]
pub(crate) struct Task {
    pub(crate) from: Pid,
    pub(crate) function: Arc<str>,
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
    pub(crate) ok: bool,
}

/// A recorded failure.
#[derive(Clone)]
pub(crate) struct Recorded {
    pub(crate) at_ms: u64,
    /// Where it was seen: `"call"` (a call run here failed), `"pmap"`, or what a
    /// layer above names.
    pub(crate) source: Arc<str>,
    pub(crate) error: RemoteException,
}

/// A worker's state as the master saw it end.
#[derive(Clone, Debug)]
pub(crate) enum PeerEnd {
    /// `rmprocs` asked it to go.
    Exiting { at_ms: u64 },
    /// Its connection is gone.
    Dead { at_ms: u64, reason: String },
}

/// Calls run here by function: successes and failures.
#[derive(Default, Clone, Copy)]
pub(crate) struct Outcomes {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
}

/// What is recorded only while enabled, under one lock taken once per call's end.
pub(crate) struct Events {
    pub(crate) tasks: Ring<Task>,
    pub(crate) errors: Ring<Recorded>,
    /// Calls by function: the names and their outcomes, found through `index` —
    /// or, for a run of calls of one function (a map), without hashing: `last`.
    pub(crate) functions: Vec<(Arc<str>, Outcomes)>,
    index: HashMap<Arc<str>, usize>,
    last: usize,
    pub(crate) latency: Histogram,
}

impl Events {
    /// The entry of `function`, made if new.
    fn function(&mut self, function: &str) -> &mut (Arc<str>, Outcomes) {
        let hit = self
            .functions
            .get(self.last)
            .is_some_and(|(name, _)| &**name == function);
        if !hit {
            self.last = match self.index.get(function) {
                Some(&i) => i,
                None => {
                    let name: Arc<str> = Arc::from(function);
                    self.functions.push((name.clone(), Outcomes::default()));
                    self.index.insert(name, self.functions.len() - 1);
                    self.functions.len() - 1
                }
            };
        }
        &mut self.functions[self.last]
    }
}

/// The call-duration histogram (calls run here), only counted while enabled (under
/// the events' lock).
#[derive(Default)]
pub(crate) struct Histogram {
    pub(crate) buckets: [u64; LATENCY_BOUNDS_US.len() + 1],
    pub(crate) sum_us: u64,
}

impl Histogram {
    fn observe(&mut self, us: u64) {
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }
}

/// A running map's progress: the numbers its terminal bar shows.
pub(crate) struct ProgressCell {
    pub(crate) id: u64,
    pub(crate) label: String,
    pub(crate) total: u64,
    pub(crate) started: Instant,
    pub(crate) started_ms: u64,
    pub(crate) done: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) retries: AtomicU64,
    /// Set when the map returned.
    pub(crate) finished_ms: AtomicU64,
}

/// The observation state of one node.
pub(crate) struct Observer {
    enabled: AtomicBool,
    pub(crate) started: Instant,
    pub(crate) started_ms: u64,
    pub(crate) calls_started: AtomicU64,
    pub(crate) calls_done: AtomicU64,
    pub(crate) calls_failed: AtomicU64,
    pub(crate) events: Mutex<Events>,
    /// Master: the workers that are going or gone, by pid (bounded).
    pub(crate) peer_ends: Mutex<VecDeque<(Pid, PeerEnd)>>,
    /// Running (and recently finished) maps; a map's handle holds the cell.
    pub(crate) progress: Mutex<Vec<Weak<ProgressCell>>>,
    /// Finished maps, kept for a while so a dashboard shows them at 100 %.
    pub(crate) finished: Mutex<VecDeque<Arc<ProgressCell>>>,
    next_progress: AtomicU64,
    /// Channels stored here (see [`LiveChannel`]).
    pub(crate) channels: Arc<AtomicUsize>,
    /// The tail of this process's stderr, once the tee runs (workers only).
    pub(crate) stderr: OnceLock<Arc<Mutex<Ring<String>>>>,
}

impl Default for Observer {
    fn default() -> Self {
        Observer {
            enabled: AtomicBool::new(false),
            started: Instant::now(),
            started_ms: unix_ms(),
            calls_started: AtomicU64::new(0),
            calls_done: AtomicU64::new(0),
            calls_failed: AtomicU64::new(0),
            events: Mutex::new(Events {
                tasks: Ring::new(TASK_RING),
                errors: Ring::new(ERROR_RING),
                functions: Vec::new(),
                index: HashMap::new(),
                last: 0,
                latency: Histogram::default(),
            }),
            peer_ends: Mutex::new(VecDeque::new()),
            progress: Mutex::new(Vec::new()),
            finished: Mutex::new(VecDeque::new()),
            next_progress: AtomicU64::new(1),
            channels: Arc::new(AtomicUsize::new(0)),
            stderr: OnceLock::new(),
        }
    }
}

/// The name the dashboard's own polling call runs under: not counted, so watching a
/// cluster does not change what it shows.
pub(crate) const OBSERVE_FN: &str = "cohort::observe";

/// What [`Observer::call_started`] hands to [`Observer::call_finished`].
pub(crate) struct CallToken {
    /// When it started, if events are recorded.
    started: Option<Instant>,
    counted: bool,
}

impl Observer {
    /// Whether events are recorded.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Starts recording events (idempotent). On a worker, also starts the stderr tee.
    pub(crate) fn enable(&self, worker: bool) {
        if self.enabled.swap(true, Ordering::Relaxed) {
            return;
        }
        if worker {
            let ring = Arc::new(Mutex::new(Ring::new(STDERR_RING)));
            if self.stderr.set(ring.clone()).is_ok() {
                tee_stderr(ring);
            }
        }
    }

    /// A call starts running here.
    #[inline]
    pub(crate) fn call_started(&self, function: &str) -> CallToken {
        let counted = function != OBSERVE_FN;
        if counted {
            self.calls_started.fetch_add(1, Ordering::Relaxed);
        }
        let started = (counted && self.enabled()).then(Instant::now);
        CallToken { started, counted }
    }

    /// The call of `token` finished here; `error` if it failed.
    #[inline]
    pub(crate) fn call_finished(
        &self,
        token: CallToken,
        from: Pid,
        function: &str,
        error: Option<&RemoteException>,
    ) {
        if !token.counted {
            return;
        }
        if error.is_some() {
            self.calls_failed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.calls_done.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(t0) = token.started {
            self.record_task(t0, from, function, error);
        }
    }

    #[cold]
    fn record_task(&self, t0: Instant, from: Pid, function: &str, error: Option<&RemoteException>) {
        // Two readings of the monotonic clock per call; wall-clock times are derived
        // from the node's start (one `SystemTime` reading, at start-up).
        let t1 = Instant::now();
        let us = u64::try_from(t1.duration_since(t0).as_micros()).unwrap_or(u64::MAX);
        let ms_at = |t: Instant| {
            self.started_ms
                + u64::try_from(t.saturating_duration_since(self.started).as_millis())
                    .unwrap_or(u64::MAX)
        };
        let (start_ms, end_ms) = (ms_at(t0), ms_at(t1));
        let mut ev = self.events.lock();
        ev.latency.observe(us);
        let (name, o) = ev.function(function);
        if error.is_some() {
            o.failed += 1;
        } else {
            o.ok += 1;
        }
        let name = name.clone();
        ev.tasks.push(Task {
            from,
            function: name,
            start_ms,
            end_ms,
            ok: error.is_none(),
        });
        if let Some(e) = error {
            ev.errors.push(Recorded {
                at_ms: end_ms,
                source: Arc::from("call"),
                error: e.clone(),
            });
        }
    }

    /// Records a failure seen by a layer above (a map's failed item, say), while
    /// enabled.
    pub(crate) fn record_error(&self, source: &str, error: &RemoteException) {
        if !self.enabled() {
            return;
        }
        self.events.lock().errors.push(Recorded {
            at_ms: unix_ms(),
            source: Arc::from(source),
            error: error.clone(),
        });
    }

    fn peer_end(&self, pid: Pid, end: PeerEnd) {
        let mut ends = self.peer_ends.lock();
        if ends.len() == PEER_STATES {
            ends.pop_front();
        }
        ends.push_back((pid, end));
    }

    /// `rmprocs` asked these workers to go (master).
    pub(crate) fn exiting(&self, pids: &[Pid]) {
        for &pid in pids {
            self.peer_end(pid, PeerEnd::Exiting { at_ms: unix_ms() });
        }
    }

    /// The connection to `pid` is gone (recorded whether or not enabled: it is rare,
    /// and a dashboard started later still shows who died and why).
    pub(crate) fn peer_lost(&self, pid: Pid, reason: &str) {
        self.peer_end(
            pid,
            PeerEnd::Dead {
                at_ms: unix_ms(),
                reason: reason.to_string(),
            },
        );
    }

    /// A new progress cell, listed while its holder keeps it.
    pub(crate) fn start_progress(&self, label: &str, total: u64) -> Arc<ProgressCell> {
        let cell = Arc::new(ProgressCell {
            id: self.next_progress.fetch_add(1, Ordering::Relaxed),
            label: label.to_string(),
            total,
            started: Instant::now(),
            started_ms: unix_ms(),
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            finished_ms: AtomicU64::new(0),
        });
        let mut list = self.progress.lock();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&cell));
        cell
    }

    /// A map finished: its cell stays listed among the last few finished ones.
    pub(crate) fn finish_progress(&self, cell: &Arc<ProgressCell>) {
        cell.finished_ms.store(unix_ms().max(1), Ordering::Relaxed);
        let mut f = self.finished.lock();
        if f.len() == 16 {
            f.pop_front();
        }
        f.push_back(cell.clone());
    }
}

/// A connection's byte counters (always on: one relaxed add per read and per frame
/// written).
#[derive(Default)]
pub(crate) struct Traffic {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
}

impl Traffic {
    #[inline]
    pub(crate) fn received(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn sent(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Counts a channel stored on its owner for as long as any clone of its slot lives.
pub(crate) struct LiveChannel(Arc<AtomicUsize>);

impl LiveChannel {
    pub(crate) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        LiveChannel(count.clone())
    }
}

impl Drop for LiveChannel {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// CPU time this process has used (user + system), in seconds.
pub(crate) fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Puts a pipe in place of this process's stderr (fd 2) and a thread that copies
/// everything to the original stderr — so the output still reaches the manager that
/// forwards it — and keeps the last lines in `ring`. Started once, on a worker that a
/// dashboard watches; if any step fails stderr is left as it was.
fn tee_stderr(ring: Arc<Mutex<Ring<String>>>) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe writes two descriptors into the array it is given.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return;
    }
    let [read_end, write_end] = fds;
    // SAFETY: dup of fd 2, which every process has (or the call fails harmlessly).
    let original = unsafe { libc::dup(2) };
    if original < 0 {
        // SAFETY: closing the descriptors made above.
        unsafe {
            libc::close(read_end);
            libc::close(write_end);
        }
        return;
    }
    // SAFETY: replaces fd 2 by the pipe's write end; both descriptors are open.
    if unsafe { libc::dup2(write_end, 2) } < 0 {
        // SAFETY: closing the descriptors made above.
        unsafe {
            libc::close(read_end);
            libc::close(write_end);
            libc::close(original);
        }
        return;
    }
    // SAFETY: fd 2 is the pipe now; this copy of the write end is not needed.
    unsafe { libc::close(write_end) };
    let spawned = std::thread::Builder::new()
        .name("cohort-stderr".into())
        .spawn(move || copy_stderr(read_end, original, &ring));
    if spawned.is_err() {
        // Nobody would drain the pipe: put the original stderr back.
        // SAFETY: both descriptors are open.
        unsafe {
            libc::dup2(original, 2);
            libc::close(read_end);
        }
    }
}

fn copy_stderr(read_end: libc::c_int, original: libc::c_int, ring: &Mutex<Ring<String>>) {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    // SAFETY: this thread owns both descriptors from here on.
    let mut input = unsafe { std::fs::File::from_raw_fd(read_end) };
    // SAFETY: as above.
    let mut output = unsafe { std::fs::File::from_raw_fd(original) };
    let mut buf = [0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let _ = output.write_all(&buf[..n]);
        for &b in &buf[..n] {
            if b == b'\n' {
                let text = String::from_utf8_lossy(&line).into_owned();
                ring.lock().push(text);
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;

    #[test]
    fn a_ring_keeps_the_newest_and_reads_by_cursor() {
        let mut r = Ring::new(3);
        assert_eq!(r.since(0), (vec![], 0));
        for i in 1..=5u32 {
            r.push(i * 10);
        }
        // Only the last three are kept; numbers keep counting.
        assert_eq!(r.since(0), (vec![(3, 30), (4, 40), (5, 50)], 5));
        assert_eq!(r.since(4), (vec![(5, 50)], 5));
        assert_eq!(r.since(5), (vec![], 5));
    }
}
