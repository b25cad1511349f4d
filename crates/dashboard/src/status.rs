//! The data the dashboard shows, as `GET /api/status` returns it and the page's
//! server-sent events carry it: one [`Status`] (JSON, field names as here). The
//! schema is documented in `docs/observability.md`; [`SCHEMA_VERSION`] changes when
//! a field changes meaning or goes away (fields may be added without a change).

use cohort_cluster::observe::{ErrorEvent, FunctionCount, ProgressView, TaskEvent};
use cohort_cluster::Pid;
use serde::{Deserialize, Serialize};

/// The version of the [`Status`] schema.
///
/// ```
/// assert_eq!(cohort_dashboard::status::SCHEMA_VERSION, 1);
/// ```
pub const SCHEMA_VERSION: u32 = 1;

/// Everything the dashboard knows about the cluster at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The update's number (1, 2, …): a page sees from it that data moves.
    pub seq: u64,
    /// When it was made, in milliseconds since the Unix epoch.
    pub generated_ms: u64,
    /// How often updates are made, in milliseconds.
    pub interval_ms: u64,
    /// The driver (the master, pid 1).
    pub driver: Driver,
    /// Every worker seen since the dashboard started, dead ones included, by pid.
    pub workers: Vec<Worker>,
    /// Workers by state: `starting`, `idle`, `busy`, `exiting`, `dead`.
    pub workers_by_state: StateCounts,
    /// Running maps and distributed loops, and the last finished ones.
    pub progress: Vec<ProgressView>,
    /// The task stream: the last calls the workers ran (oldest first, bounded by
    /// [`Options::task_history`](crate::Options::task_history)).
    pub tasks: Vec<TaskEvent>,
    /// Recent failures, oldest first (the last 200): calls that failed on a worker,
    /// and items of maps that failed, seen by the driver.
    pub errors: Vec<ErrorEvent>,
    /// Objects per owner: references, channels, SharedArray segments, and whatever
    /// [`ObjectSource`](crate::ObjectSource)s add.
    pub objects: Vec<ObjectRow>,
    /// Calls by function and outcome, summed over the workers.
    pub functions: Vec<FunctionCount>,
    /// Call durations on the workers, summed over them (seconds).
    pub latency: LatencySummary,
}

/// The driver process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    /// Its pid in the cluster (1).
    pub pid: Pid,
    /// Its OS process id.
    pub os_pid: u32,
    /// Its host.
    pub host: String,
    /// Seconds since it started.
    pub uptime_s: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// CPU use over the last interval, percent of one core.
    pub cpu_percent: f64,
    /// Values it owns for remote references, handles it holds, channels it owns.
    pub live_values: usize,
    /// See `live_values`.
    pub held_refs: usize,
    /// See `live_values`.
    pub channels: usize,
}

/// A worker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// In the cluster, its first report not in yet.
    Starting,
    /// Running no call.
    Idle,
    /// Running at least one call.
    Busy,
    /// `rmprocs` asked it to go.
    Exiting,
    /// Gone: its connection closed ([`Worker::reason`] says why).
    Dead,
}

/// One worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    /// Its pid.
    pub pid: Pid,
    /// Its host and OS process id (from its first report; empty and 0 before).
    pub host: String,
    /// See `host`.
    pub os_pid: u32,
    /// Its state.
    pub state: WorkerState,
    /// Why it is dead (the connection's reason), when it is.
    pub reason: Option<String>,
    /// Seconds since the process started.
    pub uptime_s: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// CPU use over the last interval, percent of one core; and in all, seconds.
    pub cpu_percent: f64,
    /// See `cpu_percent`.
    pub cpu_seconds: f64,
    /// Calls running now, finished with a value, failed.
    pub calls_in_flight: u64,
    /// See `calls_in_flight`.
    pub calls_done: u64,
    /// See `calls_in_flight`.
    pub calls_failed: u64,
    /// Bytes the driver received from it and sent to it (its connection to the
    /// driver; the last figures stay once it is dead).
    pub bytes_in: u64,
    /// See `bytes_in`.
    pub bytes_out: u64,
    /// The last lines of its stderr (up to 50), oldest first.
    pub stderr: Vec<String>,
    /// When its last report came, ms since the Unix epoch (0: none yet).
    pub last_report_ms: u64,
}

/// Workers by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Counts.
    pub starting: usize,
    /// Counts.
    pub idle: usize,
    /// Counts.
    pub busy: usize,
    /// Counts.
    pub exiting: usize,
    /// Counts.
    pub dead: usize,
}

/// Objects of one kind held by one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRow {
    /// The kind: `remote_values` (values owned for remote references),
    /// `held_refs` (handles held), `channels` (remote channels owned),
    /// `shared_segments` (SharedArray segments mapped), or an
    /// [`ObjectSource`](crate::ObjectSource)'s own (a DArray panel's `darray_chunks`).
    pub kind: String,
    /// The process.
    pub owner: Pid,
    /// How many.
    pub count: u64,
    /// Their size in bytes, where known.
    pub bytes: Option<u64>,
    /// A short description (a name, a shape), where there is one.
    pub detail: String,
}

/// A latency histogram summed over workers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Upper bounds in seconds (one more bucket, +Inf, follows).
    pub bounds_s: Vec<f64>,
    /// Calls per bucket, not cumulative.
    pub counts: Vec<u64>,
    /// Sum of the durations, seconds.
    pub sum_s: f64,
}
