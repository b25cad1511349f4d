//! Observing a cluster: the counters and events a node keeps for a dashboard, a
//! status API and Prometheus metrics (`cohort-dashboard` reads them; any other tool
//! may).
//!
//! Each process of a cluster records about itself: the calls it ran (counters always;
//! while [enabled](enable): their durations, a bounded task stream, counts by
//! function, the failures with their [`RemoteException`] context), its memory, CPU
//! time and references, and on a worker the tail of its stderr. [`report_of`] asks a
//! process for its [`Report`] (and turns recording on there); [`report`] is this
//! process's own. The master also keeps, per connection, the bytes moved
//! ([`peers`]) and which workers are exiting or dead and why, and the [`Progress`] of
//! the maps it runs (`cohort-pool` registers each `pmap`).
//!
//! Off — the default — it costs two relaxed counter increments per call and per
//! frame; nothing is allocated or locked on the call path.
//!
//! ```
//! use cohort_cluster::{observe, Cluster};
//! let c = Cluster::new();
//! observe::enable(&c);
//! let r = observe::report(&c, observe::Cursor::default());
//! assert_eq!(r.pid, 1);
//! assert_eq!(r.os_pid, std::process::id());
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cohort_wire::ids::Pid;
use serde::{Deserialize, Serialize};

use crate::api::cluster::Cluster;
use crate::error::{CallError, RemoteException};
use crate::registry::{RemoteFnEntry, REMOTE_FUNCTIONS};
use crate::shell::node::Node;
use crate::shell::observe::{self as rec, PeerEnd, ProgressCell, LATENCY_BOUNDS_US};

/// Where a reader of a process's event rings got to: each field is the number of the
/// last event of its ring already seen (0: none). [`Report::next`] is the cursor for
/// the next call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The task stream.
    pub tasks: u64,
    /// The errors.
    pub errors: u64,
    /// The stderr lines.
    pub stderr: u64,
}

/// One call run by a process (the task stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// Its number in the process's stream.
    pub seq: u64,
    /// The process that ran it.
    pub pid: Pid,
    /// The process that asked for it.
    pub from: Pid,
    /// The function's name (registered name, or a closure's type name).
    pub function: String,
    /// When it started and ended, in milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// See `start_ms`.
    pub end_ms: u64,
    /// Whether it returned a value (false: an error or a panic).
    pub ok: bool,
}

/// A recorded failure with its remote context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// Its number among the process's errors.
    pub seq: u64,
    /// The process that recorded it.
    pub recorded_by: Pid,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Where it was seen: `"call"` (a call this process ran failed) or `"pmap"` (an
    /// item of a map failed, seen by the master), or what another layer names.
    pub source: String,
    /// The failure: where it happened, its kind, function, message and context.
    pub error: ErrorInfo,
}

/// A [`RemoteException`] as the status data carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The process where it happened.
    pub pid: Pid,
    /// Its kind in snake case: `error`, `panic`, `undefined_function`,
    /// `serialization`, `reference`, `already_set`, `interrupted`, `channel_closed`,
    /// `payload_too_large`.
    pub kind: String,
    /// The function that failed (empty if none).
    pub function: String,
    /// The message.
    pub message: String,
    /// Its context: a panic's location, an error's sources.
    pub context: String,
}

impl From<&RemoteException> for ErrorInfo {
    fn from(e: &RemoteException) -> Self {
        use crate::error::ErrorKind as K;
        let kind = match e.kind {
            K::Error => "error",
            K::Panic => "panic",
            K::UndefinedFunction => "undefined_function",
            K::Serialization => "serialization",
            K::Reference => "reference",
            K::AlreadySet => "already_set",
            K::Interrupted => "interrupted",
            K::ChannelClosed => "channel_closed",
            K::PayloadTooLarge => "payload_too_large",
        };
        ErrorInfo {
            pid: e.pid,
            kind: kind.to_string(),
            function: e.function.clone(),
            message: e.message.clone(),
            context: e.context.clone(),
        }
    }
}

/// A line a worker wrote to its stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StderrLine {
    /// Its number.
    pub seq: u64,
    /// The text, without its newline (cut at 2,000 bytes).
    pub text: String,
}

/// Calls of one function run by a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCount {
    /// The function.
    pub function: String,
    /// Calls that returned a value.
    pub ok: u64,
    /// Calls that failed or panicked.
    pub failed: u64,
}

/// The durations of the calls a process ran while recording was on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Each bucket's upper bound in seconds; one more bucket (+Inf) follows.
    pub bounds_s: Vec<f64>,
    /// Calls per bucket (not cumulative), `bounds_s.len() + 1` entries.
    pub counts: Vec<u64>,
    /// The sum of the durations, in seconds.
    pub sum_s: f64,
}

/// What one process reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Its pid in the cluster.
    pub pid: Pid,
    /// Its OS process id.
    pub os_pid: u32,
    /// Its host name.
    pub host: String,
    /// When it started, in milliseconds since the Unix epoch, and for how long it has
    /// run, in seconds.
    pub started_ms: u64,
    /// See `started_ms`.
    pub uptime_s: f64,
    /// Resident memory in bytes (Linux).
    pub rss_bytes: u64,
    /// CPU time used, user plus system, in seconds.
    pub cpu_seconds: f64,
    /// Calls it is running now, and calls it finished with a value or a failure (the
    /// dashboard's own polling calls are not counted).
    pub calls_in_flight: u64,
    /// See `calls_in_flight`.
    pub calls_done: u64,
    /// See `calls_in_flight`.
    pub calls_failed: u64,
    /// Whether it records events (durations, task stream, errors, stderr).
    pub recording: bool,
    /// Values it stores for remote references (it is their owner).
    pub live_values: usize,
    /// References it holds handles to.
    pub held_refs: usize,
    /// Remote channels stored here (it is their owner).
    pub channels: usize,
    /// Objects the layers above count in this process ([`OBJECT_COUNTS`]: SharedArray
    /// segments, DArray chunks, …).
    pub objects: Vec<ObjectCount>,
    /// Calls by function, while recording.
    pub functions: Vec<FunctionCount>,
    /// Call durations, while recording.
    pub latency: Latency,
    /// Calls that ended after the cursor's `tasks` (the ring keeps the last 2,048).
    pub tasks: Vec<TaskEvent>,
    /// Failures after the cursor's `errors` (the last 256 kept).
    pub errors: Vec<ErrorEvent>,
    /// Stderr lines after the cursor's `stderr` (workers; the last 256 kept).
    pub stderr: Vec<StderrLine>,
    /// The cursor for the next report.
    pub next: Cursor,
}

/// Turns on the recording of events in this process, for `cluster` (idempotent; a
/// worker also starts keeping the tail of its stderr).
///
/// ```
/// let c = cohort_cluster::Cluster::new();
/// cohort_cluster::observe::enable(&c);
/// assert!(cohort_cluster::observe::is_enabled(&c));
/// ```
pub fn enable(cluster: &Cluster) {
    let n = cluster.node();
    n.observe.enable(n.is_worker());
}

/// Whether this process records events for `cluster`.
///
/// ```
/// assert!(!cohort_cluster::observe::is_enabled(&cohort_cluster::Cluster::new()));
/// ```
pub fn is_enabled(cluster: &Cluster) -> bool {
    cluster.node().observe.enabled()
}

/// This process's [`Report`] in `cluster`, with the events after `since`.
///
/// ```
/// let c = cohort_cluster::Cluster::new();
/// let r = cohort_cluster::observe::report(&c, Default::default());
/// assert_eq!(r.calls_in_flight, 0);
/// ```
pub fn report(cluster: &Cluster, since: Cursor) -> Report {
    report_in(cluster.node(), since)
}

fn report_in(n: &Node, since: Cursor) -> Report {
    let o = &n.observe;
    let stats = n.store().stats();
    let started = o.calls_started.load(Ordering::Relaxed);
    let done = o.calls_done.load(Ordering::Relaxed);
    let failed = o.calls_failed.load(Ordering::Relaxed);
    let (tasks, errors, functions, latency, next_tasks, next_errors) = {
        let ev = o.events.lock();
        let (tasks, nt) = ev.tasks.since(since.tasks);
        let (errors, ne) = ev.errors.since(since.errors);
        let mut functions: Vec<FunctionCount> = ev
            .functions
            .iter()
            .map(|(k, v)| FunctionCount {
                function: k.to_string(),
                ok: v.ok,
                failed: v.failed,
            })
            .collect();
        functions.sort_by(|a, b| a.function.cmp(&b.function));
        let latency = Latency {
            bounds_s: LATENCY_BOUNDS_US.iter().map(|&b| b as f64 / 1e6).collect(),
            counts: ev.latency.buckets.to_vec(),
            sum_s: ev.latency.sum_us as f64 / 1e6,
        };
        (tasks, errors, functions, latency, nt, ne)
    };
    let (stderr, next_stderr) = match o.stderr.get() {
        Some(ring) => ring.lock().since(since.stderr),
        None => (Vec::new(), since.stderr),
    };
    let me = n.myid();
    Report {
        pid: me,
        os_pid: std::process::id(),
        host: cohort_transport::listen::hostname(),
        started_ms: o.started_ms,
        uptime_s: o.started.elapsed().as_secs_f64(),
        rss_bytes: crate::api::builtins::rss_bytes(),
        cpu_seconds: rec::cpu_seconds(),
        calls_in_flight: started.saturating_sub(done + failed),
        calls_done: done,
        calls_failed: failed,
        recording: o.enabled(),
        live_values: stats.owned_values,
        held_refs: stats.held_refs,
        channels: o.channels.load(Ordering::Relaxed),
        objects: OBJECT_COUNTS.iter().map(|f| f()).collect(),
        functions,
        latency,
        tasks: tasks
            .into_iter()
            .map(|(seq, t)| TaskEvent {
                seq,
                pid: me,
                from: t.from,
                function: t.function.to_string(),
                start_ms: t.start_ms,
                end_ms: t.end_ms,
                ok: t.ok,
            })
            .collect(),
        errors: errors
            .into_iter()
            .map(|(seq, e)| ErrorEvent {
                seq,
                recorded_by: me,
                at_ms: e.at_ms,
                source: e.source.to_string(),
                error: ErrorInfo::from(&e.error),
            })
            .collect(),
        stderr: stderr
            .into_iter()
            .map(|(seq, text)| StderrLine { seq, text })
            .collect(),
        next: Cursor {
            tasks: next_tasks,
            errors: next_errors,
            stderr: next_stderr,
        },
    }
}

/// The built-in behind [`report_of`]: turns recording on here and reports.
fn remote_report(since: Cursor) -> Report {
    let n = crate::shell::node::current();
    n.observe.enable(n.is_worker());
    report_in(&n, since)
}

#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static OBSERVE: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (Cursor,)>(rec::OBSERVE_FN, &remote_report);

/// The [`Report`] of process `pid` of `cluster`, with its events after `since`;
/// turns recording on there (so the first report of a process has no events yet).
/// The call runs under the built-in name `cohort::observe` and is not counted in the
/// process's figures.
///
/// # Errors
/// As [`remotecall_fetch`](crate::remotecall_fetch): [`CallError::WorkerExited`] if
/// it died, [`CallError::NoSuchProcess`].
///
/// # Cancel safety
/// As [`remotecall_fetch`](crate::remotecall_fetch).
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let c = cohort_cluster::Cluster::new();
/// let r = cohort_cluster::observe::report_of(&c, 1, Default::default()).await.unwrap();
/// assert_eq!(r.pid, 1);
/// # });
/// ```
pub async fn report_of(cluster: &Cluster, pid: Pid, since: Cursor) -> Result<Report, CallError> {
    let n = cluster.node();
    if pid == n.myid() {
        n.observe.enable(n.is_worker());
        return Ok(report_in(n, since));
    }
    crate::api::call::remotecall_fetch_in(n.clone(), remote_report, pid, (since,)).await
}

/// How a worker's membership ended, as the master saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PeerState {
    /// Connected.
    Connected,
    /// `rmprocs` asked it to go, at this time (ms since the Unix epoch).
    Exiting {
        /// When.
        at_ms: u64,
    },
    /// Its connection is gone.
    Dead {
        /// When.
        at_ms: u64,
        /// Why (the connection's reason: closed, reset, a bad message, …).
        reason: String,
    },
}

/// A process this one has (or had) a connection to, with the bytes moved on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// Its pid.
    pub pid: Pid,
    /// Bytes received from it and sent to it on the current connection (0 once
    /// dead).
    pub bytes_in: u64,
    /// See `bytes_in`.
    pub bytes_out: u64,
    /// Where the current connection goes: the peer's TCP address (`host:port`),
    /// `unix:@NAME` for a same-host Unix-domain socket
    /// (`cohort_transport::same_host`), or what a custom transport calls it; empty
    /// while the connection is being made, and once the peer is dead.
    pub address: String,
    /// Its state.
    pub state: PeerState,
}

/// The processes `cluster`'s node is connected to, and those it saw go (the last
/// 1,024), by pid; a pid both connected and gone (a stale record) shows as connected.
///
/// ```
/// let c = cohort_cluster::Cluster::new();
/// assert!(cohort_cluster::observe::peers(&c).is_empty());
/// ```
pub fn peers(cluster: &Cluster) -> Vec<PeerView> {
    let n = cluster.node();
    let mut out: std::collections::BTreeMap<Pid, PeerView> = Default::default();
    for (pid, end) in n.observe.peer_ends.lock().iter() {
        let pid = *pid;
        let state = match end {
            PeerEnd::Exiting { at_ms } => PeerState::Exiting { at_ms: *at_ms },
            PeerEnd::Dead { at_ms, reason } => PeerState::Dead {
                at_ms: *at_ms,
                reason: reason.clone(),
            },
        };
        // A death after `rmprocs` asked: dead, with the request in the reason.
        let state = match (out.get(&pid).map(|p| &p.state), state) {
            (Some(PeerState::Exiting { .. }), PeerState::Dead { at_ms, reason }) => {
                PeerState::Dead {
                    at_ms,
                    reason: format!("removed by rmprocs ({reason})"),
                }
            }
            (_, s) => s,
        };
        out.insert(
            pid,
            PeerView {
                pid,
                bytes_in: 0,
                bytes_out: 0,
                address: String::new(),
                state,
            },
        );
    }
    for (&pid, peer) in n.peers.read().iter() {
        let exiting = out
            .get(&pid)
            .filter(|p| matches!(p.state, PeerState::Exiting { .. }))
            .map(|p| p.state.clone());
        out.insert(
            pid,
            PeerView {
                pid,
                bytes_in: peer.traffic.bytes_in.load(Ordering::Relaxed),
                bytes_out: peer.traffic.bytes_out.load(Ordering::Relaxed),
                address: peer.address.get().cloned().unwrap_or_default(),
                state: exiting.unwrap_or(PeerState::Connected),
            },
        );
    }
    out.into_values().collect()
}

/// Records a failure seen by a layer above the runtime (`source` names it, as
/// `"pmap"` does for a failed item) among this process's errors, while recording is
/// on; otherwise does nothing.
///
/// ```
/// use cohort_cluster::{observe, Cluster, ErrorKind, RemoteException};
/// let c = Cluster::new();
/// observe::enable(&c);
/// let e = RemoteException { pid: 2, kind: ErrorKind::Error, function: "f".into(),
///     message: "bad".into(), context: String::new() };
/// observe::record_error(&c, "pmap", &e);
/// assert_eq!(observe::report(&c, Default::default()).errors[0].error.message, "bad");
/// ```
pub fn record_error(cluster: &Cluster, source: &str, error: &RemoteException) {
    cluster.node().observe.record_error(source, error);
}

/// A running map's progress as a dashboard shows it: the numbers of its terminal bar.
///
/// Made by the map ([`Progress::start`]); listed by [`progress`] while it runs and,
/// once [finished](Progress::finish), among the last 16 finished ones.
///
/// ```
/// let c = cohort_cluster::Cluster::new();
/// let p = cohort_cluster::observe::Progress::start(&c, "pmap", 10);
/// p.done(10);
/// p.finish();
/// let v = cohort_cluster::observe::progress(&c);
/// assert!(v.iter().any(|s| s.done == 10 && s.total == 10 && s.finished));
/// ```
pub struct Progress {
    cell: Arc<ProgressCell>,
    node: Arc<Node>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("id", &self.cell.id)
            .field("label", &self.cell.label)
            .finish()
    }
}

impl Progress {
    /// Starts tracking a map of `total` items in `cluster`'s node.
    pub fn start(cluster: &Cluster, label: &str, total: u64) -> Progress {
        let node = cluster.node().clone();
        Progress {
            cell: node.observe.start_progress(label, total),
            node,
        }
    }

    /// `k` more items are done.
    pub fn done(&self, k: u64) {
        self.cell.done.fetch_add(k, Ordering::Relaxed);
    }

    /// An item failed (retried or not).
    pub fn error(&self) {
        self.cell.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// An item is retried.
    pub fn retry(&self) {
        self.cell.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// The map returned: listed among the finished ones from now on.
    pub fn finish(&self) {
        self.node.observe.finish_progress(&self.cell);
    }
}

/// One map's progress, as [`progress`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressView {
    /// Its number in this process.
    pub id: u64,
    /// What runs (`"pmap"`, …).
    pub label: String,
    /// Items done, of `total`.
    pub done: u64,
    /// See `done`.
    pub total: u64,
    /// Items failed so far, and retries.
    pub errors: u64,
    /// See `errors`.
    pub retries: u64,
    /// Items per second since it started.
    pub rate: f64,
    /// Seconds left at that rate (`None` before the first item, or once finished).
    pub eta_s: Option<f64>,
    /// How long it ran (so far), in seconds.
    pub elapsed_s: f64,
    /// When it started, in ms since the Unix epoch.
    pub started_ms: u64,
    /// Whether it returned.
    pub finished: bool,
}

/// The maps running in `cluster`'s node, and the last 16 finished ones, oldest first.
///
/// ```
/// assert!(cohort_cluster::observe::progress(&cohort_cluster::Cluster::new()).is_empty());
/// ```
pub fn progress(cluster: &Cluster) -> Vec<ProgressView> {
    let o = &cluster.node().observe;
    let mut cells: Vec<Arc<ProgressCell>> = o.finished.lock().iter().cloned().collect();
    for w in o.progress.lock().iter() {
        if let Some(c) = w.upgrade() {
            if !cells.iter().any(|x| x.id == c.id) {
                cells.push(c);
            }
        }
    }
    cells.sort_by_key(|c| c.id);
    cells
        .into_iter()
        .map(|c| {
            let done = c.done.load(Ordering::Relaxed);
            let finished_ms = c.finished_ms.load(Ordering::Relaxed);
            let elapsed_s = if finished_ms > 0 {
                finished_ms.saturating_sub(c.started_ms) as f64 / 1e3
            } else {
                c.started.elapsed().as_secs_f64()
            };
            let rate = if elapsed_s > 0.0 {
                done as f64 / elapsed_s
            } else {
                0.0
            };
            let eta_s = (finished_ms == 0 && rate > 0.0)
                .then(|| c.total.saturating_sub(done) as f64 / rate);
            ProgressView {
                id: c.id,
                label: c.label.clone(),
                done,
                total: c.total,
                errors: c.errors.load(Ordering::Relaxed),
                retries: c.retries.load(Ordering::Relaxed),
                rate,
                eta_s,
                elapsed_s,
                started_ms: c.started_ms,
                finished: finished_ms > 0,
            }
        })
        .collect()
}

/// Objects of one kind that a process holds, as a layer above counts them for
/// [`Report::objects`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCount {
    /// The kind, in snake case (`shared_segments`, `darray_chunks`, …).
    pub kind: String,
    /// How many this process holds.
    pub count: u64,
    /// Their size in bytes, where known.
    pub bytes: Option<u64>,
    /// A short description, where there is one.
    pub detail: String,
}

/// The object counters of the layers above: each entry, registered with
/// `#[linkme::distributed_slice(OBJECT_COUNTS)]` by the crate that owns the
/// objects (cohort-shared registers its segments), is called for every [`Report`]
/// on the process that reports. It must be quick and must not block: it runs on a
/// call runner, under no lock of the runtime. This is where a DArray panel plugs in.
///
/// ```
/// assert!(cohort_cluster::observe::OBJECT_COUNTS.iter().all(|f| !f().kind.is_empty()));
/// ```
#[linkme::distributed_slice]
pub static OBJECT_COUNTS: [fn() -> ObjectCount];

/// Functions a layer above registers to run when a master process starts using a
/// cluster: at [`init`](crate::init) on a process that is not a worker, and at the
/// first `addprocs` (the dashboard starts itself from `COHORT_DASHBOARD` this way).
/// Each runs once per process, with the cluster in use.
#[linkme::distributed_slice]
pub static ON_FIRST_USE: [fn(&Cluster)];

/// Runs [`ON_FIRST_USE`] once per process (master only).
pub(crate) fn first_use(n: &Arc<Node>) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if n.is_worker() {
        return;
    }
    ONCE.call_once(|| {
        let c = Cluster::from_node(n.clone());
        for f in ON_FIRST_USE {
            f(&c);
        }
    });
}
