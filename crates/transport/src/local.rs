//! [`LocalManager`]: workers as processes on this host.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedSender;

use crate::listen::{parse_announcement, parse_local};
use crate::manager::AnnounceFailure;
use crate::manager::{
    ClusterManager, LaunchError, LaunchParams, ManageEvent, WorkerConfig, WorkerProcess,
};
use crate::same_host::LocalEndpoint;
use crate::{WORKER_FLAG, WORKER_TIMEOUT_ENV};

/// Lines a worker may print before its address line before it is given up on.
///
/// ```
/// assert_eq!(cohort_transport::local::MAX_STARTUP_LINES, 1000);
/// ```
pub const MAX_STARTUP_LINES: usize = 1000;

/// Lines of a worker's output kept for the error if it fails to start.
const OUTPUT_KEPT: usize = 20;

/// How long a worker whose output ended may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// The last lines a worker printed, for the error if it fails to start.
#[derive(Default)]
pub(crate) struct LastLines(parking_lot::Mutex<std::collections::VecDeque<String>>);

impl LastLines {
    pub(crate) fn push(&self, line: &str) {
        let mut v = self.0.lock();
        if v.len() == OUTPUT_KEPT {
            v.pop_front();
        }
        v.push_back(line.to_string());
    }

    pub(crate) fn take(&self) -> Vec<String> {
        self.0.lock().drain(..).collect()
    }
}

/// Reads a launched worker's stdout until its address line, for at most `timeout`:
/// each line before it is printed as its start-up output (and kept in `last`, if
/// given), and more than [`MAX_STARTUP_LINES`] of them give up on it.
///
/// # Errors
/// [`AnnounceFailure::Exited`] when the output ends first,
/// [`AnnounceFailure::TooMuchOutput`], [`AnnounceFailure::TimedOut`].
pub(crate) async fn read_announcement<R>(
    lines: &mut tokio::io::Lines<R>,
    timeout: Duration,
    last: Option<&LastLines>,
) -> Result<(String, u16, Option<LocalEndpoint>), AnnounceFailure>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let read = async {
        let mut read = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((host, port)) = parse_announcement(&line) {
                return Ok((host, port, parse_local(&line)));
            }
            read += 1;
            if let Some(last) = last {
                last.push(&line);
            }
            // Anything the worker prints before its address is its start-up output.
            println!("      From worker startup:\t{line}");
            if read >= MAX_STARTUP_LINES {
                return Err(AnnounceFailure::TooMuchOutput { lines: read });
            }
        }
        Err(AnnounceFailure::Exited)
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(AnnounceFailure::TimedOut { after: timeout }))
}

/// Starts workers as child processes of this one (Julia's `LocalManager`).
///
/// Each worker runs `executable --cohort-worker --bind-to ADDR exeflags…` with the
/// cookie (and, with TLS, `--tls-stdin` and the credentials) written to its stdin; the executable defaults to the current one, which
/// `cohort::init` (or `#[cohort::main]`) turns into a worker. Lines the worker prints
/// after its address are forwarded to this process's stdout (stderr lines to its
/// stderr) as `      From worker N:\tline`, as Julia does; lines before it as
/// `      From worker startup:\tline`.
///
/// A worker is waited for (its address line) for the launch's worker timeout
/// (`AddProcs::worker_timeout`, else `COHORT_WORKER_TIMEOUT`, else 60 s), and given up
/// on after [`MAX_STARTUP_LINES`] lines without it; one
/// that exits first fails the launch with its exit status and the last lines it
/// printed ([`AnnounceFailure::ExitedWith`]).
///
/// With [`bind_cores`](Self::bind_cores), each worker is bound to one CPU.
///
/// ```
/// let m = cohort_transport::LocalManager::new(4);
/// assert_eq!(m.count(), 4);
/// ```
#[derive(Debug, Clone)]
pub struct LocalManager {
    count: usize,
    bind_cores: bool,
}

impl LocalManager {
    /// A manager that starts `count` workers per launch.
    ///
    /// ```
    /// let _ = cohort_transport::LocalManager::new(1);
    /// ```
    pub fn new(count: usize) -> Self {
        LocalManager {
            count,
            bind_cores: false,
        }
    }

    /// Binds each worker it starts to one CPU, as `mpirun --bind-to core` binds its
    /// ranks: the worker and every thread it starts run on that CPU only. The CPUs
    /// are those this process may run on (its affinity mask, as `taskset` or a
    /// scheduler's cgroup set it), given in turn to the bound workers this process
    /// starts, across launches; with more workers than CPUs they share them round
    /// the set. This process itself is not bound. Off by default (Julia's
    /// `addprocs` binds nothing).
    ///
    /// Worth it where the workers compute and the machine has no core to spare: the
    /// OS scheduler then cannot queue a worker's thread behind another worker's
    /// computation while a core idles. On a 2-core machine a DArray game-of-life
    /// step on 2 bound workers took 0.62–0.65 × the serial step, against
    /// 0.74–0.76 × unbound (`docs/performance.md`). A worker doing its own
    /// multithreaded work should not be bound: its threads would share one CPU.
    ///
    /// Linux only: elsewhere a launch with it fails ([`LaunchError::Spawn`], an
    /// `Unsupported` error).
    ///
    /// ```
    /// let m = cohort_transport::LocalManager::new(2).bind_cores(true);
    /// assert!(m.binds_cores());
    /// ```
    pub fn bind_cores(mut self, on: bool) -> Self {
        self.bind_cores = on;
        self
    }

    /// Whether it binds its workers to CPUs ([`bind_cores`](Self::bind_cores)).
    ///
    /// ```
    /// assert!(!cohort_transport::LocalManager::new(1).binds_cores());
    /// ```
    pub fn binds_cores(&self) -> bool {
        self.bind_cores
    }

    /// How many workers each launch starts.
    ///
    /// ```
    /// assert_eq!(cohort_transport::LocalManager::new(3).count(), 3);
    /// ```
    pub fn count(&self) -> usize {
        self.count
    }
}

/// The pid a worker's forwarded output is labelled with, set when it registers.
struct OutputLabel(AtomicU32);

/// Starts one worker (bound to `cpu`, if given) and waits for its address.
async fn launch_one(
    params: &LaunchParams,
    exe: &PathBuf,
    cpu: Option<usize>,
) -> Result<WorkerConfig, LaunchError> {
    let bind = if params.restrict {
        "127.0.0.1"
    } else {
        "0.0.0.0"
    };
    let mut cmd = Command::new(exe);
    cmd.arg(WORKER_FLAG)
        .arg("--bind-to")
        .arg(bind)
        .args(params.tls_flag())
        .args(&params.exeflags)
        .envs(params.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = params.worker_timeout {
        cmd.env(WORKER_TIMEOUT_ENV, t.as_secs_f64().to_string());
    }
    if let Some(dir) = &params.dir {
        cmd.current_dir(dir);
    }
    if let Some(cpu) = cpu {
        crate::cpus::bind(&mut cmd, cpu);
    }
    let spawn_err = |source| LaunchError::Spawn {
        exe: exe.display().to_string(),
        source,
    };
    let mut child = spawn_retrying_busy(&mut cmd).await.map_err(spawn_err)?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let stdout = child.stdout.take().expect("stdout was piped");
    let stderr = child.stderr.take().expect("stderr was piped");
    let label = Arc::new(OutputLabel(AtomicU32::new(0)));
    let last = Arc::new(LastLines::default());
    // stderr is forwarded labelled, as stdout is: "From worker startup:" until the
    // worker has a pid, "From worker N:" after.
    let stderr_task = {
        let (label, last) = (label.clone(), last.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match label.0.load(Ordering::Relaxed) {
                    0 => {
                        last.push(&line);
                        eprintln!("      From worker startup:\t{line}");
                    }
                    pid => eprintln!("      From worker {pid}:\t{line}"),
                }
            }
        })
    };
    // The cookie (and the TLS bundle) go over stdin, never argv, where any local user
    // could read them. A worker that exited at once has closed it (EPIPE): what it
    // printed and its exit status, read below, say why.
    let cookie_line = params.stdin_payload();
    if let Err(e) = stdin.write_all(cookie_line.as_bytes()).await {
        tracing::debug!(error = %e, "the worker closed its stdin before the cookie was written");
    }
    drop(stdin);
    let process = WorkerProcess::new(child);
    let mut lines = BufReader::new(stdout).lines();
    let timeout = params
        .worker_timeout
        .unwrap_or_else(crate::listen::worker_timeout);
    let fail = |cause| LaunchError::Announce {
        exe: exe.display().to_string(),
        cause,
    };
    let (host, port, local) = match read_announcement(&mut lines, timeout, Some(&last)).await {
        Ok(addr) => addr,
        Err(AnnounceFailure::Exited) => {
            // Its output ended: it exited (or is about to). Its status, and the last
            // lines it printed once stderr is drained too.
            let status = process.stop_with_status(EXIT_GRACE).await.status;
            let _ = tokio::time::timeout(Duration::from_secs(2), stderr_task).await;
            return Err(fail(AnnounceFailure::ExitedWith {
                status: status.map_or_else(|| "status unknown".into(), |s| s.to_string()),
                output: last.take(),
            }));
        }
        Err(cause) => {
            process.kill().await;
            return Err(fail(cause));
        }
    };
    let forward = label.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let pid = forward.0.load(Ordering::Relaxed);
            println!("      From worker {pid}:\t{line}");
        }
    });
    let mut config = WorkerConfig::at(host, port);
    // A worker on this host announces its same-host socket too; the runtime
    // connects there when it may (`crate::same_host`).
    config.local = local;
    config.process = Some(process);
    config.userdata = Some(label);
    Ok(config)
}

impl ClusterManager for LocalManager {
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async move {
            let exe = match &params.executable {
                Some(e) => e.clone(),
                None => std::env::current_exe().map_err(|source| LaunchError::Spawn {
                    exe: "<current executable>".into(),
                    source,
                })?,
            };
            let count = if params.count == 0 {
                self.count
            } else {
                params.count
            };
            // Each worker's CPU when bound, chosen before any starts.
            let cpus: Vec<Option<usize>> = if self.bind_cores {
                crate::cpus::take(count)
                    .map_err(|source| LaunchError::Spawn {
                        exe: exe.display().to_string(),
                        source,
                    })?
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                vec![None; count]
            };
            let next = std::sync::atomic::AtomicUsize::new(0);
            crate::manager::launch_all(count, &launched, || {
                let cpu = cpus[next.fetch_add(1, Ordering::Relaxed)];
                launch_one(params, &exe, cpu)
            })
            .await
        })
    }

    fn manage(&self, pid: u32, config: &WorkerConfig, event: ManageEvent) {
        if event == ManageEvent::Register {
            if let Some(label) = config
                .userdata
                .as_ref()
                .and_then(|u| u.downcast_ref::<OutputLabel>())
            {
                label.0.store(pid, Ordering::Relaxed);
            }
        }
    }
}

/// Spawns `cmd`, retrying for a moment while the executable is busy (`ETXTBSY`): an
/// executable this process has just written (a generated worker script, say) stays
/// open for writing in any child another thread forked meanwhile, until that child
/// execs — a few milliseconds at most. Other errors are returned at once.
async fn spawn_retrying_busy(cmd: &mut Command) -> std::io::Result<Child> {
    let mut wait = Duration::from_millis(1);
    for _ in 0..10 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(100));
            }
            r => return r,
        }
    }
    cmd.spawn()
}
