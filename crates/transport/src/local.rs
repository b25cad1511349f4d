//! [`LocalManager`]: workers as processes on this host.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;

use crate::listen::parse_announcement;
use crate::manager::AnnounceFailure;
use crate::manager::{
    ClusterManager, LaunchError, LaunchParams, ManageEvent, WorkerConfig, WorkerProcess,
};
use crate::{WORKER_FLAG, WORKER_TIMEOUT_ENV};

/// How long a launched worker may take to print its address.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts workers as child processes of this one (Julia's `LocalManager`).
///
/// Each worker runs `executable --cohort-worker --bind-to ADDR exeflags…` with the
/// cookie (and, with TLS, `--tls-stdin` and the credentials) written to its stdin; the executable defaults to the current one, which
/// `cohort::init` (or `#[cohort::main]`) turns into a worker. Lines the worker prints
/// after its address are forwarded to this process's stdout as
/// `      From worker N:\tline`, as Julia does.
///
/// ```
/// let m = cohort_transport::LocalManager::new(4);
/// assert_eq!(m.count(), 4);
/// ```
#[derive(Debug, Clone)]
pub struct LocalManager {
    count: usize,
}

impl LocalManager {
    /// A manager that starts `count` workers per launch.
    ///
    /// ```
    /// let _ = cohort_transport::LocalManager::new(1);
    /// ```
    pub fn new(count: usize) -> Self {
        LocalManager { count }
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

async fn launch_one(params: &LaunchParams, exe: &PathBuf) -> Result<WorkerConfig, LaunchError> {
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
        .stderr(Stdio::inherit());
    if let Some(t) = params.worker_timeout {
        cmd.env(WORKER_TIMEOUT_ENV, t.as_secs_f64().to_string());
    }
    if let Some(dir) = &params.dir {
        cmd.current_dir(dir);
    }
    let spawn_err = |source| LaunchError::Spawn {
        exe: exe.display().to_string(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let stdout = child.stdout.take().expect("stdout was piped");
    // The cookie (and the TLS bundle) go over stdin, never argv, where any local user
    // could read them.
    let cookie_line = params.stdin_payload();
    if let Err(e) = stdin.write_all(cookie_line.as_bytes()).await {
        let _ = child.start_kill();
        return Err(spawn_err(e));
    }
    drop(stdin);
    let process = WorkerProcess::new(child);
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(ANNOUNCE_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = parse_announcement(&line) {
                return Some(addr);
            }
            // Anything the worker printed before its address is passed on as is.
            println!("{line}");
        }
        None
    })
    .await;
    let (host, port) = match found {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            process.kill().await;
            return Err(LaunchError::Announce {
                exe: exe.display().to_string(),
                cause: AnnounceFailure::Exited,
            });
        }
        Err(_) => {
            process.kill().await;
            return Err(LaunchError::Announce {
                exe: exe.display().to_string(),
                cause: AnnounceFailure::TimedOut {
                    after: ANNOUNCE_TIMEOUT,
                },
            });
        }
    };
    let label = Arc::new(OutputLabel(AtomicU32::new(0)));
    let forward = label.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let pid = forward.0.load(Ordering::Relaxed);
            println!("      From worker {pid}:\t{line}");
        }
    });
    let mut config = WorkerConfig::at(host, port);
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
            crate::manager::launch_all(count, &launched, || launch_one(params, &exe)).await
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
