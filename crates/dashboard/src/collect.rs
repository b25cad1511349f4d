//! The collector: a task on cohort's runtime that, every interval, asks each worker
//! for its report (`cohort_cluster::observe::report_of`, at most one request per
//! worker in flight, so a slow worker delays only its own row), reads the driver's
//! own figures, merges the events into bounded histories and publishes one
//! [`Snapshot`] — the [`Status`] and its JSON, made once — on a watch channel.
//!
//! A watch channel keeps only the latest value: a page or scraper that reads slowly
//! skips updates, and nothing it does can make the collector (or the cluster) wait.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_cluster::observe::{self, Cursor, ErrorEvent, PeerState, Report, TaskEvent};
use cohort_cluster::{Cluster, Pid};
use tokio::sync::watch;

use crate::status::{
    Driver, LatencySummary, ObjectRow, StateCounts, Status, Worker, WorkerState, SCHEMA_VERSION,
};
use crate::ObjectSource;

/// Errors kept.
const ERROR_HISTORY: usize = 200;
/// Stderr lines kept per worker.
const STDERR_LINES: usize = 50;
/// How long one report may take before the worker's row waits for the next round.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a worker `rmprocs` removed shows as exiting if its connection's end is
/// not seen.
const EXITING_FOR_MS: u64 = 30_000;

/// How long an [`ObjectSource`] may take for one worker.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(5);

/// One published update.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) status: Status,
    pub(crate) json: String,
}

#[derive(Default)]
struct Track {
    report: Option<Report>,
    cursor: Cursor,
    polling: bool,
    cpu_percent: f64,
    last_cpu: Option<(f64, Instant)>,
    stderr: VecDeque<String>,
    bytes_in: u64,
    bytes_out: u64,
    state: Option<PeerState>,
    gone: bool,
    last_report_ms: u64,
    extra_objects: Vec<ObjectRow>,
}

#[derive(Default)]
struct State {
    workers: BTreeMap<Pid, Track>,
    tasks: VecDeque<TaskEvent>,
    errors: VecDeque<ErrorEvent>,
    driver_cursor: Cursor,
    driver_cpu: Option<(f64, Instant)>,
    driver_cpu_percent: f64,
    seq: u64,
}

pub(crate) struct Collector {
    cluster: Cluster,
    interval: Duration,
    task_history: usize,
    sources: Vec<Arc<dyn ObjectSource>>,
    state: parking_lot::Mutex<State>,
    tx: watch::Sender<Arc<Snapshot>>,
}

impl Collector {
    pub(crate) fn new(
        cluster: Cluster,
        interval: Duration,
        task_history: usize,
        sources: Vec<Arc<dyn ObjectSource>>,
    ) -> Arc<Collector> {
        let c = Collector {
            cluster,
            interval,
            task_history,
            sources,
            state: Default::default(),
            tx: watch::Sender::new(Arc::new(Snapshot {
                status: empty_status(interval),
                json: String::new(),
            })),
        };
        let c = Arc::new(c);
        // The first snapshot at once, so a request before the first tick has data.
        c.publish();
        c
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    pub(crate) fn latest(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// Runs until `stop` says so.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = crate::stopped(&mut stop) => return,
            }
            self.round();
            self.publish();
        }
    }

    /// Starts a report request for each worker that has none in flight.
    fn round(self: &Arc<Self>) {
        let me = self.cluster.myid();
        let members: Vec<Pid> = self
            .cluster
            .workers()
            .into_iter()
            .filter(|&p| p != me)
            .collect();
        let peers = observe::peers(&self.cluster);
        let mut to_poll = Vec::new();
        {
            let mut st = self.state.lock();
            for &pid in &members {
                st.workers.entry(pid).or_default();
            }
            for p in &peers {
                if let Some(t) = st.workers.get_mut(&p.pid) {
                    if matches!(p.state, PeerState::Connected) {
                        t.bytes_in = p.bytes_in;
                        t.bytes_out = p.bytes_out;
                    }
                    t.state = Some(p.state.clone());
                }
            }
            for (pid, t) in st.workers.iter_mut() {
                t.gone = !members.contains(pid);
                let dead = t.gone || matches!(t.state, Some(PeerState::Dead { .. }));
                if !dead && !t.polling {
                    t.polling = true;
                    to_poll.push((*pid, t.cursor));
                }
            }
        }
        for (pid, cursor) in to_poll {
            let me = self.clone();
            cohort_cluster::runtime::handle().spawn(async move {
                let r = tokio::time::timeout(
                    REPORT_TIMEOUT,
                    observe::report_of(&me.cluster, pid, cursor),
                )
                .await;
                let mut extra = Vec::new();
                for s in &me.sources {
                    let rows = tokio::time::timeout(SOURCE_TIMEOUT, s.collect(&me.cluster, pid));
                    extra.extend(rows.await.unwrap_or_default());
                }
                me.merge(pid, r.ok().and_then(Result::ok), extra);
            });
        }
    }

    fn merge(&self, pid: Pid, report: Option<Report>, extra: Vec<ObjectRow>) {
        let mut st = self.state.lock();
        let st = &mut *st;
        let Some(t) = st.workers.get_mut(&pid) else {
            return;
        };
        t.polling = false;
        t.extra_objects = extra;
        let Some(mut r) = report else { return };
        t.cursor = r.next;
        let now = Instant::now();
        if let Some((cpu, at)) = t.last_cpu {
            let wall = now.duration_since(at).as_secs_f64();
            if wall > 0.0 {
                t.cpu_percent = ((r.cpu_seconds - cpu) / wall * 100.0).max(0.0);
            }
        }
        t.last_cpu = Some((r.cpu_seconds, now));
        t.last_report_ms = unix_ms();
        for l in r.stderr.drain(..) {
            if t.stderr.len() == STDERR_LINES {
                t.stderr.pop_front();
            }
            t.stderr.push_back(l.text);
        }
        for e in r.tasks.drain(..) {
            if st.tasks.len() == self.task_history {
                st.tasks.pop_front();
            }
            st.tasks.push_back(e);
        }
        push_errors(&mut st.errors, r.errors.drain(..));
        t.report = Some(r);
    }

    /// Builds and publishes the current status.
    fn publish(&self) {
        let driver_report = {
            let cursor = self.state.lock().driver_cursor;
            observe::report(&self.cluster, cursor)
        };
        let progress = observe::progress(&self.cluster);
        let mut st = self.state.lock();
        let st = &mut *st;
        st.seq += 1;
        let now = Instant::now();
        if let Some((cpu, at)) = st.driver_cpu {
            let wall = now.duration_since(at).as_secs_f64();
            if wall > 0.0 {
                st.driver_cpu_percent = ((driver_report.cpu_seconds - cpu) / wall * 100.0).max(0.0);
            }
        }
        st.driver_cpu = Some((driver_report.cpu_seconds, now));
        st.driver_cursor = driver_report.next;
        push_errors(&mut st.errors, driver_report.errors.iter().cloned());

        let mut workers = Vec::new();
        let mut counts = StateCounts::default();
        let mut objects = vec![
            row(
                "remote_values",
                driver_report.pid,
                driver_report.live_values,
            ),
            row("held_refs", driver_report.pid, driver_report.held_refs),
            row("channels", driver_report.pid, driver_report.channels),
        ];
        objects.extend(
            driver_report
                .objects
                .iter()
                .map(|o| counted(driver_report.pid, o)),
        );
        let mut functions: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut latency = LatencySummary::default();
        for (&pid, t) in &st.workers {
            let now_ms = unix_ms();
            let (state, reason) = match (&t.state, t.gone) {
                (Some(PeerState::Dead { reason, .. }), _) => {
                    (WorkerState::Dead, Some(reason.clone()))
                }
                // `rmprocs` takes a worker out of the cluster at once; it is exiting
                // until its connection closes (or, if that is never seen, for a while).
                (Some(PeerState::Exiting { at_ms }), _)
                    if now_ms.saturating_sub(*at_ms) < EXITING_FOR_MS =>
                {
                    (WorkerState::Exiting, None)
                }
                (Some(PeerState::Exiting { .. }), _) => {
                    (WorkerState::Dead, Some("removed by rmprocs".to_string()))
                }
                (_, true) => (WorkerState::Dead, Some("left the cluster".to_string())),
                _ => match &t.report {
                    None => (WorkerState::Starting, None),
                    Some(r) if r.calls_in_flight > 0 => (WorkerState::Busy, None),
                    Some(_) => (WorkerState::Idle, None),
                },
            };
            match state {
                WorkerState::Starting => counts.starting += 1,
                WorkerState::Idle => counts.idle += 1,
                WorkerState::Busy => counts.busy += 1,
                WorkerState::Exiting => counts.exiting += 1,
                WorkerState::Dead => counts.dead += 1,
            }
            let r = t.report.as_ref();
            if let Some(r) = r {
                for f in &r.functions {
                    let e = functions.entry(f.function.clone()).or_default();
                    e.0 += f.ok;
                    e.1 += f.failed;
                }
                if latency.bounds_s.is_empty() {
                    latency.bounds_s = r.latency.bounds_s.clone();
                    latency.counts = vec![0; r.latency.counts.len()];
                }
                for (a, b) in latency.counts.iter_mut().zip(&r.latency.counts) {
                    *a += b;
                }
                latency.sum_s += r.latency.sum_s;
                if state != WorkerState::Dead {
                    objects.push(row("remote_values", pid, r.live_values));
                    objects.push(row("held_refs", pid, r.held_refs));
                    objects.push(row("channels", pid, r.channels));
                    objects.extend(r.objects.iter().map(|o| counted(pid, o)));
                }
            }
            if state != WorkerState::Dead {
                objects.extend(t.extra_objects.iter().cloned());
            }
            workers.push(Worker {
                pid,
                host: r.map(|r| r.host.clone()).unwrap_or_default(),
                os_pid: r.map_or(0, |r| r.os_pid),
                state,
                reason,
                uptime_s: r.map_or(0.0, |r| r.uptime_s),
                rss_bytes: r.map_or(0, |r| r.rss_bytes),
                cpu_percent: if state == WorkerState::Dead {
                    0.0
                } else {
                    t.cpu_percent
                },
                cpu_seconds: r.map_or(0.0, |r| r.cpu_seconds),
                calls_in_flight: if state == WorkerState::Dead {
                    0
                } else {
                    r.map_or(0, |r| r.calls_in_flight)
                },
                calls_done: r.map_or(0, |r| r.calls_done),
                calls_failed: r.map_or(0, |r| r.calls_failed),
                bytes_in: t.bytes_in,
                bytes_out: t.bytes_out,
                stderr: t.stderr.iter().cloned().collect(),
                last_report_ms: t.last_report_ms,
            });
        }
        let status = Status {
            schema: SCHEMA_VERSION,
            seq: st.seq,
            generated_ms: unix_ms(),
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            driver: Driver {
                pid: driver_report.pid,
                os_pid: driver_report.os_pid,
                host: driver_report.host.clone(),
                uptime_s: driver_report.uptime_s,
                rss_bytes: driver_report.rss_bytes,
                cpu_percent: st.driver_cpu_percent,
                live_values: driver_report.live_values,
                held_refs: driver_report.held_refs,
                channels: driver_report.channels,
            },
            workers,
            workers_by_state: counts,
            progress,
            tasks: st.tasks.iter().cloned().collect(),
            errors: st.errors.iter().cloned().collect(),
            objects,
            functions: functions
                .into_iter()
                .map(|(function, (ok, failed))| observe::FunctionCount {
                    function,
                    ok,
                    failed,
                })
                .collect(),
            latency,
        };
        let json = serde_json::to_string(&status).unwrap_or_else(|e| {
            // Nothing in the schema fails to serialize; say so rather than panic.
            format!("{{\"error\":\"{e}\"}}")
        });
        self.tx.send_replace(Arc::new(Snapshot { status, json }));
    }
}

fn push_errors(errors: &mut VecDeque<ErrorEvent>, new: impl Iterator<Item = ErrorEvent>) {
    for e in new {
        if errors.len() == ERROR_HISTORY {
            errors.pop_front();
        }
        errors.push_back(e);
    }
}

fn row(kind: &str, owner: Pid, count: usize) -> ObjectRow {
    ObjectRow {
        kind: kind.to_string(),
        owner,
        count: count as u64,
        bytes: None,
        detail: String::new(),
    }
}

fn counted(owner: Pid, o: &observe::ObjectCount) -> ObjectRow {
    ObjectRow {
        kind: o.kind.clone(),
        owner,
        count: o.count,
        bytes: o.bytes,
        detail: o.detail.clone(),
    }
}

fn empty_status(interval: Duration) -> Status {
    Status {
        schema: SCHEMA_VERSION,
        seq: 0,
        generated_ms: unix_ms(),
        interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        driver: Driver {
            pid: 1,
            os_pid: std::process::id(),
            host: String::new(),
            uptime_s: 0.0,
            rss_bytes: 0,
            cpu_percent: 0.0,
            live_values: 0,
            held_refs: 0,
            channels: 0,
        },
        workers: Vec::new(),
        workers_by_state: StateCounts::default(),
        progress: Vec::new(),
        tasks: Vec::new(),
        errors: Vec::new(),
        objects: Vec::new(),
        functions: Vec::new(),
        latency: LatencySummary::default(),
    }
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
