//! `spmd(f, args)`: running one function on every process of a run, and the run's
//! life on each process.
//!
//! The driver calls each process once to *start* its part: that call decodes `f`
//! and the arguments, spawns a thread for the part and returns at once. The part
//! runs on that thread, not on one of cohort's call runners, so its blocking waits
//! never hold a runner: the deliveries it waits for run at once. When the part
//! ends, the process reports its outcome to the driver (a `remote_do`). The driver
//! watches the cluster's membership meanwhile: a process that leaves fails the run
//! with its pid; the first failure aborts the run on the others, whose waits wake
//! with [`SpmdError::Aborted`], so the run always ends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use cohort_cluster::codec::{self, Bulk};
use cohort_cluster::registry::{RemoteFnEntry, REMOTE_FUNCTIONS};
use cohort_cluster::{CallError, Closure, Cluster, Pid, RemoteFn, Topology};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::context::{check_pids, Context};
use super::error::{FailureKind, ProcessFailure, RunFailure, SpmdError};
use super::state::{self, fresh, remote, CtxId, RunHere, RunId};

thread_local! {
    static RUN: RefCell<Option<Arc<RunHere>>> = const { RefCell::new(None) };
}

/// The run this thread is in.
pub(crate) fn here(what: &'static str) -> Result<Arc<RunHere>, SpmdError> {
    RUN.with(|r| r.borrow().clone())
        .ok_or(SpmdError::NotInRun { what })
}

/// The processes of the run this thread is in, in rank order (Julia's `procs(d)` of
/// the run's DArray, or the `pids` passed to `spmd`).
///
/// # Errors
/// [`SpmdError::NotInRun`] outside an SPMD run.
///
/// ```
/// assert!(cohort_darray::spmd::run_pids().is_err());
/// ```
pub fn run_pids() -> Result<Vec<Pid>, SpmdError> {
    Ok(here("run_pids")?.pids.clone())
}

/// This process's rank in its run: its index in [`run_pids`] (MPI's `Comm_rank`).
///
/// # Errors
/// [`SpmdError::NotInRun`] outside an SPMD run.
///
/// ```
/// assert!(cohort_darray::spmd::rank().is_err());
/// ```
pub fn rank() -> Result<usize, SpmdError> {
    Ok(here("rank")?.rank())
}

/// Where and in which context [`spmd_with`] runs (Julia's `pids` and `context`
/// keywords).
///
/// ```
/// let o = cohort_darray::spmd::SpmdOptions::new().pids(&[1]);
/// # drop(o);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SpmdOptions {
    pids: Option<Vec<Pid>>,
    context: Option<Context>,
}

impl SpmdOptions {
    /// The defaults: every process (`procs()`, as Julia), a fresh context.
    ///
    /// ```
    /// let o = cohort_darray::spmd::SpmdOptions::new();
    /// # drop(o);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs on `pids`, in this rank order (with a context: its pids by default).
    ///
    /// ```
    /// let o = cohort_darray::spmd::SpmdOptions::new().pids(&cohort_cluster::workers());
    /// # drop(o);
    /// ```
    pub fn pids(mut self, pids: &[Pid]) -> Self {
        self.pids = Some(pids.to_vec());
        self
    }

    /// Runs in `ctx`: its context-local storage is kept for later runs.
    ///
    /// ```
    /// let ctx = cohort_darray::spmd::context(&[1]).unwrap();
    /// let o = cohort_darray::spmd::SpmdOptions::new().context(&ctx);
    /// # drop(o);
    /// ```
    pub fn context(mut self, ctx: &Context) -> Self {
        self.context = Some(ctx.clone());
        self
    }
}

/// What the driver is told at the start of each process's part.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunInfo {
    id: RunId,
    ctx: CtxId,
    /// Whether the context lives for this run only (each process frees it at its end).
    implicit: bool,
    pids: Vec<Pid>,
}

/// The captures of the start call: the run, the function's state and the arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Start<Args> {
    run: RunInfo,
    f_state: Bulk<u8>,
    args: Args,
}

/// How a part ended, as the driver is told.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Outcome {
    Done(Bulk<u8>),
    Returned(String),
    Panicked(String),
    Result(String),
}

type Report = (Pid, Outcome);

/// The driver's open runs: where each process's report goes.
fn open_runs() -> &'static Mutex<HashMap<RunId, mpsc::UnboundedSender<Report>>> {
    static R: OnceLock<Mutex<HashMap<RunId, mpsc::UnboundedSender<Report>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// A process's report of its part of run `id` (on the driver).
fn report(id: RunId, pid: Pid, outcome: Outcome) {
    if let Some(tx) = open_runs().lock().get(&id) {
        let _ = tx.send((pid, outcome));
    }
}

#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static REPORT: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (RunId, Pid, Outcome)>("cohort_darray::spmd::report", &report);

/// The start call, on each process: decode, spawn the part's thread, return.
fn start_here<F, Args, T, E>(start: &Start<Args>) -> Result<(), String>
where
    F: RemoteFn<Args, Output = Result<T, E>>,
    Args: Clone + Send + 'static,
    T: Serialize,
    E: Display,
{
    let f = F::decode_state(&start.f_state).map_err(|e| e.message)?;
    let args = start.args.clone();
    let cluster = Cluster::current();
    let info = start.run.clone();
    let ctx = state::ctx_state(info.ctx)
        .ok_or_else(|| "the run's context was released on this process".to_string())?;
    let run = Arc::new(RunHere {
        id: info.id,
        ctx,
        pids: info.pids,
        myid: cluster.myid(),
        cluster: cluster.clone(),
        aborted: AtomicBool::new(false),
    });
    state::register_run(run.clone());
    let implicit = info.implicit;
    let spawned = std::thread::Builder::new()
        .name("cohort-spmd".into())
        .spawn(move || run_part(run, implicit, f, args));
    if let Err(e) = spawned {
        state::unregister_run(info.id);
        return Err(format!("cannot start the run's thread: {e}"));
    }
    Ok(())
}

/// One process's part of a run, on its own thread.
fn run_part<F, Args, T, E>(run: Arc<RunHere>, implicit: bool, f: F, args: Args)
where
    F: RemoteFn<Args, Output = Result<T, E>>,
    T: Serialize,
    E: Display,
{
    let cluster = run.cluster.clone();
    // Departures wake the part's waits, which then look whether their peer is gone.
    let stop = Arc::new(tokio::sync::Notify::new());
    {
        let mut changes = cluster.watch_membership();
        let ctx = run.ctx.clone();
        let stop = stop.clone();
        cohort_cluster::runtime::handle().spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        ctx.wake();
                    }
                    _ = stop.notified() => break,
                }
            }
        });
    }
    run.ctx.open_spare();
    RUN.with(|r| *r.borrow_mut() = Some(run.clone()));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cluster.install(|| f.call(args))
    }));
    RUN.with(|r| *r.borrow_mut() = None);
    run.ctx.drop_spare();
    stop.notify_one();
    let outcome = match result {
        Ok(Ok(v)) => match codec::encode(&v) {
            Ok(b) => Outcome::Done(Bulk(b)),
            Err(e) => Outcome::Result(e.message),
        },
        Ok(Err(e)) => Outcome::Returned(e.to_string()),
        Err(p) => Outcome::Panicked(panic_message(&*p)),
    };
    state::unregister_run(run.id);
    if implicit {
        state::release(run.ctx.id);
    }
    let _ = cluster.remote_do(report, run.id.driver, (run.id, run.myid, outcome));
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".into()
    }
}

/// Runs `f(args…)` once on every process (`procs()`, Julia's default) at the same
/// time, in a fresh context, and returns each process's result in rank order when
/// all have finished (Julia's `spmd(f, args...)`). See [`spmd_with`].
///
/// # Errors
/// As [`spmd_with`].
///
/// # Cancel safety
/// As [`spmd_with`].
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// # cohort_cluster::runtime::block_on(async {
/// let r = spmd::spmd(|x: u32| -> Result<u32, SpmdError> { Ok(x + spmd::rank()? as u32) }, (10,))
///     .await
///     .unwrap();
/// assert_eq!(r, vec![10]);
/// # });
/// ```
pub async fn spmd<F, Args, T, E>(f: F, args: Args) -> Result<Vec<T>, SpmdError>
where
    F: RemoteFn<Args, Output = Result<T, E>> + Clone,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Display + 'static,
{
    spmd_with(f, args, SpmdOptions::new()).await
}

/// Runs `f(args…)` once on every process of `options` (default `procs()`) at the
/// same time and returns each process's result, in rank order, when all have
/// finished. Inside `f`, the SPMD primitives ([`sendto`](super::sendto),
/// [`barrier`](super::barrier), …) talk to the run's other processes directly.
///
/// `f` returns a `Result`: an `Err` (its `Display` is reported), a panic or the
/// death of a process fails the run. The first failure aborts the run on the other
/// processes (their waits return [`SpmdError::Aborted`]), so the run always ends,
/// and every failure comes back in [`SpmdError::Run`], each naming its pid.
///
/// `f` and the arguments are shipped like a remote call's (a function item or a
/// [`closure!`](cohort_cluster::closure!)); the run's start is addressed by code
/// offset, so the processes must run this executable.
///
/// # Errors
/// [`SpmdError::NoProcesses`], [`SpmdError::DuplicatePid`] or
/// [`SpmdError::NoSuchProcess`] for bad pids; [`SpmdError::ContextMismatch`],
/// [`SpmdError::ContextClosed`], [`SpmdError::ContextBusy`] for a bad context;
/// [`SpmdError::TopologyForbids`] when two or more of the pids are workers of a
/// `Topology::MasterWorker` cluster; [`SpmdError::Serialization`] if `f` cannot be
/// encoded; [`SpmdError::Run`] with every process's failure.
///
/// # Cancel safety
/// Not cancel-safe: the parts start at the first poll, and dropping the future does
/// not stop them; they run to their end (a part waiting for a message that never
/// comes waits until its peer leaves).
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError, SpmdOptions};
/// # cohort_cluster::runtime::block_on(async {
/// let me = cohort_cluster::myid();
/// let r = spmd::spmd_with(
///     || -> Result<usize, SpmdError> { spmd::barrier(())?; Ok(spmd::run_pids()?.len()) },
///     (),
///     SpmdOptions::new().pids(&[me]),
/// )
/// .await
/// .unwrap();
/// assert_eq!(r, vec![1]);
/// # });
/// ```
pub async fn spmd_with<F, Args, T, E>(
    f: F,
    args: Args,
    options: SpmdOptions,
) -> Result<Vec<T>, SpmdError>
where
    F: RemoteFn<Args, Output = Result<T, E>> + Clone,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Display + 'static,
{
    let cluster = Cluster::current();
    let pids = match (&options.pids, &options.context) {
        (Some(p), Some(c)) if p.as_slice() != c.pids() => {
            return Err(SpmdError::ContextMismatch {
                pids: p.clone(),
                context: c.pids().to_vec(),
            })
        }
        (Some(p), _) => p.clone(),
        (None, Some(c)) => c.pids().to_vec(),
        (None, None) => cluster.procs(),
    };
    check_pids(&cluster, &pids)?;
    let topology = cluster.topology();
    let me = cluster.myid();
    if topology == Topology::MasterWorker && pids.iter().filter(|p| **p != me).count() > 1 {
        return Err(SpmdError::TopologyForbids { topology });
    }
    // An explicit context is held for the run (one run at a time in it).
    let _busy = match &options.context {
        Some(c) => {
            if c.is_closed() {
                return Err(SpmdError::ContextClosed);
            }
            if c.inner.busy.swap(true, Ordering::AcqRel) {
                return Err(SpmdError::ContextBusy);
            }
            Some(Busy(c.clone()))
        }
        None => None,
    };
    let ctx = match &options.context {
        Some(c) => c.inner.id,
        None => CtxId {
            creator: me,
            n: fresh(),
        },
    };
    let id = RunId {
        driver: me,
        n: fresh(),
    };
    let f_state = Bulk(
        f.encode_state()
            .map_err(|e| SpmdError::Serialization(e.message))?,
    );
    let (tx, mut reports) = mpsc::unbounded_channel();
    open_runs().lock().insert(id, tx);
    let _open = OpenRun(id);
    // Taken before the parts start, so no departure is missed.
    let mut changes = cluster.watch_membership();
    let info = RunInfo {
        id,
        ctx,
        implicit: options.context.is_none(),
        pids: pids.clone(),
    };
    let starts: Vec<_> = pids
        .iter()
        .map(|&p| {
            let start = Start {
                run: info.clone(),
                f_state: f_state.clone(),
                args: args.clone(),
            };
            let call = Closure::new(start, start_here::<F, Args, T, E>);
            let c = cluster.clone();
            async move { c.remotecall_fetch(call, p, ()).await }
        })
        .collect();
    let mut failures: HashMap<Pid, FailureKind> = HashMap::new();
    let mut results: HashMap<Pid, T> = HashMap::new();
    let mut pending: Vec<Pid> = Vec::new();
    for (&p, r) in pids.iter().zip(futures::future::join_all(starts).await) {
        match r {
            Ok(Ok(())) => pending.push(p),
            Ok(Err(msg)) => {
                failures.insert(p, FailureKind::Start(msg));
            }
            Err(CallError::WorkerExited { reason, .. }) => {
                failures.insert(p, FailureKind::Exited(reason));
            }
            Err(e) => {
                failures.insert(p, FailureKind::Start(e.to_string()));
            }
        }
    }
    let mut aborted = false;
    loop {
        if !failures.is_empty() && !aborted {
            aborted = true;
            for &p in &pending {
                let _ = cluster.remote_do(remote::abort, p, (id,));
            }
        }
        let procs = cluster.procs();
        pending.retain(|p| {
            if procs.contains(p) {
                return true;
            }
            failures.insert(
                *p,
                FailureKind::Exited("it left the cluster during the run".into()),
            );
            false
        });
        if pending.is_empty() {
            break;
        }
        if !failures.is_empty() && !aborted {
            continue;
        }
        tokio::select! {
            Some((pid, outcome)) = reports.recv() => {
                if let Some(i) = pending.iter().position(|p| *p == pid) {
                    pending.swap_remove(i);
                    match outcome {
                        Outcome::Done(b) => match codec::decode::<T>(&b) {
                            Ok(v) => {
                                results.insert(pid, v);
                            }
                            Err(e) => {
                                failures.insert(pid, FailureKind::Result(e.message));
                            }
                        },
                        Outcome::Returned(m) => {
                            failures.insert(pid, FailureKind::Returned(m));
                        }
                        Outcome::Panicked(m) => {
                            failures.insert(pid, FailureKind::Panicked(m));
                        }
                        Outcome::Result(m) => {
                            failures.insert(pid, FailureKind::Result(m));
                        }
                    }
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    // The cluster is going away: whoever has not reported is lost.
                    for p in pending.drain(..) {
                        failures.insert(p, FailureKind::Exited("the cluster was shut down".into()));
                    }
                }
            }
        }
    }
    if failures.is_empty() {
        return Ok(pids
            .iter()
            .map(|p| results.remove(p).expect("every process reported"))
            .collect());
    }
    let failures = pids
        .iter()
        .filter_map(|p| {
            failures
                .remove(p)
                .map(|kind| ProcessFailure { pid: *p, kind })
        })
        .collect();
    Err(SpmdError::Run(RunFailure { failures }))
}

/// Marks an explicit context free again when the run ends.
struct Busy(Context);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.inner.busy.store(false, Ordering::Release);
    }
}

/// Forgets the driver's record of a run when it ends (or is dropped).
struct OpenRun(RunId);

impl Drop for OpenRun {
    fn drop(&mut self) {
        open_runs().lock().remove(&self.0);
    }
}
