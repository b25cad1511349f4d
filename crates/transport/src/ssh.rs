//! [`SshManager`]: workers started on other machines over OpenSSH (Julia's
//! `SSHManager`, `addprocs(machines; tunnel, sshflags, max_parallel, multiplex, …)`).
//!
//! For each worker the manager runs
//! `ssh [sshflags] -o BatchMode=yes -o ConnectTimeout=… [-p port] [user@]host 'cd DIR &&
//! exec env K=V… EXE --cohort-worker --bind-to ADDR ARGS…'`, writes the cluster cookie
//! to ssh's **stdin** (it never appears on a command line, locally or remotely), and
//! reads the worker's `cohort_worker:PORT#HOST` line from ssh's stdout.
//!
//! - Without a tunnel the master connects straight to the worker: to its bind address
//!   if the spec names one, else to the host of the spec.
//! - With [`tunnel`](SshManager::tunnel) the worker listens on its own loopback only, and
//!   every master–worker connection is an ssh stdio forward (`ssh -W 127.0.0.1:PORT`)
//!   to it, so only sshd's port has to be reachable.
//! - With [`multiplex`](SshManager::multiplex) one ssh control master per machine
//!   carries every session to that machine (launches and tunnels): one
//!   authentication per machine instead of one per worker.
//!
//! - With [`copy_executable`](SshManager::copy_executable) (on by default for the
//!   driver's own executable) nothing has to be installed on the machines: before
//!   the first worker on a machine starts, one short ssh checks whether the machine has
//!   this very build (its SHA-256) in the per-user cache or at the driver's path; if
//!   not, the driver copies its executable into the cache over ssh, and the workers
//!   start from there. See [`CopyExecutable`].
//!
//! `BatchMode=yes` is always set: ssh never prompts, so a missing or wrong key fails at
//! once with ssh's own message instead of hanging.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, ReadBuf};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Semaphore;

use crate::local::{read_announcement, LastLines};
use crate::machines::{read_machine_file, Count, MachineSpec, MachineSpecError};
use crate::manager::{
    ClusterManager, LaunchError, LaunchParams, ManageEvent, WorkerConfig, WorkerProcess,
};
use crate::stream::{tcp_connect, Connection};
use crate::{WORKER_FLAG, WORKER_TIMEOUT_ENV};

/// How many ssh launches run at once by default (Julia's `max_parallel = 10`).
///
/// ```
/// assert_eq!(cohort_transport::ssh::DEFAULT_MAX_PARALLEL, 10);
/// ```
pub const DEFAULT_MAX_PARALLEL: usize = 10;

/// Quotes `s` for a POSIX shell (the remote login shell runs the worker command).
///
/// ```
/// use cohort_transport::ssh::shell_quote;
/// assert_eq!(shell_quote("a b"), "'a b'");
/// assert_eq!(shell_quote("it's"), r"'it'\''s'");
/// assert_eq!(shell_quote("plain-1.0/x"), "plain-1.0/x");
/// ```
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether an [`SshManager`] puts the driver's own executable on the machines
/// ([`SshManager::copy_executable`]). Only the driver's own executable is copied: an
/// executable named with [`SshManager::executable`] or `AddProcs::executable` is a
/// path on the machines, used as it is.
///
/// Copies go to a per-user cache on each machine —
/// `${XDG_CACHE_HOME:-$HOME/.cache}/cohort/exe/<sha256>/<name>`, or the directory
/// [`SshManager::exe_cache`] names — made with mode 0700 under `umask 077`, written to a
/// temporary name, checked against the driver's SHA-256 on the machine and only then
/// renamed into place, so a cut copy is never run. A cached copy is checked again
/// (its SHA-256) before each launch uses it: the cache is keyed by the build, not
/// trusted. The workers' handshake then compares build fingerprints as for any
/// worker (the copy has the driver's build ID, so closures run there too).
/// The machines need `sh`, `cat` and `sha256sum` (coreutils).
///
/// ```
/// use cohort_transport::ssh::CopyExecutable;
/// assert_eq!(CopyExecutable::default(), CopyExecutable::IfMissing);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyExecutable {
    /// Run this build from the cache if it is there, else from the driver's path if
    /// the machine has this very build there, else copy it into the cache (the
    /// default).
    #[default]
    IfMissing,
    /// Always run from the cache, copying the build there if it is not yet.
    Always,
    /// Never copy: the executable must be at the driver's path on every machine
    /// (Julia's rule).
    Never,
}

/// The driver's executable, as copies of it are named.
struct LocalExe {
    path: String,
    /// Its SHA-256, hex.
    sha256: String,
}

/// Where one machine's control master lives.
struct ControlMaster {
    path: PathBuf,
    _child: Child,
}

struct Shared {
    /// Directory of the control sockets (multiplexing), removed on drop.
    control_dir: PathBuf,
    masters: tokio::sync::Mutex<HashMap<String, Arc<ControlMaster>>>,
    /// The control sockets made so far, by destination.
    paths: Mutex<Vec<(String, PathBuf)>>,
    launching: Semaphore,
    /// Per machine, the path its workers run (found or copied once).
    placed: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<String>>>>,
}

impl Shared {
    fn new(control_dir: PathBuf, max_parallel: usize) -> Arc<Shared> {
        Arc::new(Shared {
            control_dir,
            masters: tokio::sync::Mutex::new(HashMap::new()),
            paths: Mutex::new(Vec::new()),
            launching: Semaphore::new(max_parallel),
            placed: Mutex::new(HashMap::new()),
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The control masters are killed as their `Child`s drop (kill_on_drop).
        let _ = std::fs::remove_dir_all(&self.control_dir);
    }
}

/// Starts workers on other machines over ssh. See the [module docs](self).
///
/// ```
/// use cohort_transport::SshManager;
/// let m = SshManager::new(["2*alice@node1", "node2:2222 10.0.0.2"])
///     .unwrap()
///     .tunnel(true)
///     .multiplex(true)
///     .sshflags(["-i", "/home/alice/.ssh/cluster"])
///     .max_parallel(4)
///     .dir("/srv/job")
///     .executable("/srv/job/bin/app")
///     .args(["--quiet"])
///     .env("RUST_LOG", "info");
/// assert_eq!(m.machines().len(), 2);
/// ```
#[derive(Clone)]
pub struct SshManager {
    machines: Vec<MachineSpec>,
    ssh: String,
    sshflags: Vec<String>,
    tunnel: bool,
    multiplex: bool,
    connect_timeout: Duration,
    dir: Option<String>,
    executable: Option<String>,
    exeflags: Vec<String>,
    env: Vec<(String, String)>,
    max_parallel: usize,
    copy: CopyExecutable,
    exe_cache: Option<String>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SshManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshManager")
            .field("machines", &self.machines)
            .field("tunnel", &self.tunnel)
            .field("multiplex", &self.multiplex)
            .field("sshflags", &self.sshflags)
            .finish_non_exhaustive()
    }
}

static MANAGER_SEQ: AtomicUsize = AtomicUsize::new(0);

impl SshManager {
    /// A manager for these machine specs (`[count*][user@]host[:port]
    /// [bind_addr[:port]]`, see [`MachineSpec`]).
    ///
    /// # Errors
    /// The first spec that does not parse.
    ///
    /// ```
    /// assert!(cohort_transport::SshManager::new(["node1", "bad:port"]).is_err());
    /// ```
    pub fn new<I, S>(machines: I) -> Result<Self, MachineSpecError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let specs = machines
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<MachineSpec>, _>>()?;
        Ok(Self::from_specs(specs))
    }

    /// A manager for parsed specs (e.g. Julia's `(spec, count)` pairs made with
    /// [`MachineSpec::with_count`]).
    ///
    /// ```
    /// use cohort_transport::{machines::{Count, MachineSpec}, SshManager};
    /// let m = SshManager::from_specs(vec![MachineSpec::with_count("node1", Count::Auto).unwrap()]);
    /// assert_eq!(m.machines()[0].count, Count::Auto);
    /// ```
    pub fn from_specs(machines: Vec<MachineSpec>) -> Self {
        let control_dir = std::env::temp_dir().join(format!(
            "cohort-ssh-{}-{}",
            std::process::id(),
            MANAGER_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        SshManager {
            machines,
            ssh: "ssh".into(),
            sshflags: Vec::new(),
            tunnel: false,
            multiplex: false,
            connect_timeout: Duration::from_secs(5),
            dir: None,
            executable: None,
            exeflags: Vec::new(),
            env: Vec::new(),
            max_parallel: DEFAULT_MAX_PARALLEL,
            copy: CopyExecutable::default(),
            exe_cache: None,
            shared: Shared::new(control_dir, DEFAULT_MAX_PARALLEL),
        }
    }

    /// A manager for the machines listed in a machine file (one spec per line, `#`
    /// comments; the CLI's `--machine-file`).
    ///
    /// # Errors
    /// The file cannot be read, or a line does not parse (the error names it).
    ///
    /// ```no_run
    /// let m = cohort_transport::SshManager::from_machine_file("hosts.txt").unwrap();
    /// ```
    pub fn from_machine_file(path: impl AsRef<std::path::Path>) -> Result<Self, MachineSpecError> {
        Ok(Self::from_specs(read_machine_file(path)?))
    }

    /// The machines this manager starts workers on.
    ///
    /// ```
    /// let m = cohort_transport::SshManager::new(["h1", "h2"]).unwrap();
    /// assert_eq!(m.machines()[1].host, "h2");
    /// ```
    pub fn machines(&self) -> &[MachineSpec] {
        &self.machines
    }

    /// Route master–worker connections through ssh (`ssh -W`), with workers listening
    /// on their loopback only. Default false.
    ///
    /// ```
    /// let _ = cohort_transport::SshManager::new(["h"]).unwrap().tunnel(true);
    /// ```
    pub fn tunnel(mut self, on: bool) -> Self {
        self.tunnel = on;
        self
    }

    /// Share one authenticated ssh connection (a control master) per machine among
    /// all sessions to it. Default false.
    ///
    /// ```
    /// let _ = cohort_transport::SshManager::new(["h"]).unwrap().multiplex(true);
    /// ```
    pub fn multiplex(mut self, on: bool) -> Self {
        self.multiplex = on;
        self
    }

    /// Extra ssh options, placed before cohort's own (ssh keeps the first value of an
    /// option, so these win): `-i key`, `-o StrictHostKeyChecking=…`, …
    ///
    /// ```
    /// let _ = cohort_transport::SshManager::new(["h"]).unwrap().sshflags(["-i", "key"]);
    /// ```
    pub fn sshflags<I, S>(mut self, flags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sshflags.extend(flags.into_iter().map(Into::into));
        self
    }

    /// The ssh program (default `ssh` on the `PATH`).
    ///
    /// ```
    /// let _ = cohort_transport::SshManager::new(["h"]).unwrap().ssh_program("/usr/bin/ssh");
    /// ```
    pub fn ssh_program(mut self, ssh: impl Into<String>) -> Self {
        self.ssh = ssh.into();
        self
    }

    /// ssh's `ConnectTimeout` (default 5 s).
    ///
    /// ```
    /// let _ = cohort_transport::SshManager::new(["h"]).unwrap()
    ///     .connect_timeout(std::time::Duration::from_secs(2));
    /// ```
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// How many ssh launches may be in progress at once (default 10).
    ///
    /// ```
    /// let _ = cohort_transport::SshManager::new(["h"]).unwrap().max_parallel(2);
    /// ```
    pub fn max_parallel(mut self, n: usize) -> Self {
        self.max_parallel = n.max(1);
        self.shared = Shared::new(self.shared.control_dir.clone(), self.max_parallel);
        self
    }

    /// Whether to put the driver's own executable on machines that lack it (default
    /// [`CopyExecutable::IfMissing`]; [`CopyExecutable::Never`] turns copying off).
    /// See [`CopyExecutable`].
    ///
    /// ```
    /// use cohort_transport::{ssh::CopyExecutable, SshManager};
    /// let _ = SshManager::new(["h"]).unwrap().copy_executable(CopyExecutable::Never);
    /// ```
    pub fn copy_executable(mut self, copy: CopyExecutable) -> Self {
        self.copy = copy;
        self
    }

    /// The directory on the machines that holds copied executables (default
    /// `${XDG_CACHE_HOME:-$HOME/.cache}/cohort/exe`; an absolute path, or one relative
    /// to the login directory).
    ///
    /// ```
    /// let _ = cohort_transport::SshManager::new(["h"]).unwrap().exe_cache("/scratch/me/cohort");
    /// ```
    pub fn exe_cache(mut self, dir: impl Into<String>) -> Self {
        self.exe_cache = Some(dir.into());
        self
    }

    /// The workers' working directory on the remote machines (default: the login
    /// directory). `AddProcs::dir` is used when this is not set.
    ///
    /// ```
    /// let _ = cohort_transport::SshManager::new(["h"]).unwrap().dir("/srv");
    /// ```
    pub fn dir(mut self, dir: impl Into<String>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The worker executable's path on the remote machines. Default: the
    /// `AddProcs::executable`, else this program's own path (the same binary installed
    /// at the same place, or a shared file system).
    ///
    /// ```
    /// let _ = cohort_transport::SshManager::new(["h"]).unwrap().executable("/opt/app");
    /// ```
    pub fn executable(mut self, exe: impl Into<String>) -> Self {
        self.executable = Some(exe.into());
        self
    }

    /// Extra worker arguments, after `AddProcs::args`.
    ///
    /// ```
    /// let _ = cohort_transport::SshManager::new(["h"]).unwrap().args(["-v"]);
    /// ```
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exeflags.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable for the remote workers (set with `env` on the remote
    /// command line, so do not put secrets here).
    ///
    /// ```
    /// let _ = cohort_transport::SshManager::new(["h"]).unwrap().env("RUST_LOG", "info");
    /// ```
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The control-socket paths of the machines' control masters started so far
    /// (multiplexing only), by ssh destination.
    ///
    /// ```
    /// let m = cohort_transport::SshManager::new(["h"]).unwrap();
    /// assert!(m.control_paths().is_empty());
    /// ```
    pub fn control_paths(&self) -> Vec<(String, PathBuf)> {
        self.shared.paths.lock().clone()
    }

    /// ssh's options for `spec`: user flags, cohort's defaults, port.
    fn base_args(&self, spec: &MachineSpec) -> Vec<String> {
        let mut a = self.sshflags.clone();
        a.extend([
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)),
            "-o".into(),
            "ServerAliveInterval=15".into(),
            "-T".into(),
        ]);
        if let Some(p) = spec.port {
            a.extend(["-p".into(), p.to_string()]);
        }
        a
    }

    /// The `ssh` command for `spec`, through its control master if given; the remote
    /// command (if any) goes after.
    fn ssh_command(&self, spec: &MachineSpec, control: Option<&ControlMaster>) -> Command {
        let mut cmd = Command::new(&self.ssh);
        cmd.args(self.base_args(spec));
        if let Some(c) = control {
            cmd.arg("-o")
                .arg("ControlMaster=no")
                .arg("-o")
                .arg(format!("ControlPath={}", c.path.display()));
        }
        cmd.arg(spec.destination());
        cmd
    }

    fn key(spec: &MachineSpec) -> String {
        format!("{}:{}", spec.destination(), spec.port.unwrap_or(22))
    }

    /// The control master for `spec`, started on first use.
    async fn control_master(&self, spec: &MachineSpec) -> Result<Arc<ControlMaster>, LaunchError> {
        let key = Self::key(spec);
        let mut masters = self.shared.masters.lock().await;
        if let Some(m) = masters.get(&key) {
            return Ok(m.clone());
        }
        let dir = &self.shared.control_dir;
        std::fs::create_dir_all(dir).map_err(|e| remote_err(spec, format!("{dir:?}: {e}")))?;
        let path = dir.join(format!("cm{}", masters.len()));
        let mut cmd = Command::new(&self.ssh);
        cmd.args(self.base_args(spec))
            .arg("-o")
            .arg("ControlMaster=yes")
            .arg("-o")
            .arg(format!("ControlPath={}", path.display()))
            .arg("-N")
            .arg(spec.destination())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| remote_err(spec, format!("cannot run {}: {e}", self.ssh)))?;
        let deadline = tokio::time::Instant::now() + self.connect_timeout + Duration::from_secs(10);
        loop {
            if path.exists() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut err).await;
                }
                return Err(remote_err(
                    spec,
                    format!(
                        "ssh control master exited ({status}): {}",
                        err.trim().lines().last().unwrap_or("")
                    ),
                ));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(remote_err(spec, "ssh control master did not start".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let m = Arc::new(ControlMaster {
            path,
            _child: child,
        });
        self.shared.paths.lock().push((key.clone(), m.path.clone()));
        masters.insert(key, m.clone());
        Ok(m)
    }

    async fn control_for(
        &self,
        spec: &MachineSpec,
    ) -> Result<Option<Arc<ControlMaster>>, LaunchError> {
        if self.multiplex {
            Ok(Some(self.control_master(spec).await?))
        } else {
            Ok(None)
        }
    }

    /// Runs a short command on `spec`'s machine and returns its stdout.
    async fn run_remote(&self, spec: &MachineSpec, command: &str) -> Result<String, LaunchError> {
        let control = self.control_for(spec).await?;
        let mut cmd = self.ssh_command(spec, control.as_deref());
        cmd.arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(self.connect_timeout * 4, cmd.output())
            .await
            .map_err(|_| remote_err(spec, format!("`{command}` timed out")))?
            .map_err(|e| remote_err(spec, format!("cannot run {}: {e}", self.ssh)))?;
        if !out.status.success() {
            return Err(remote_err(
                spec,
                format!(
                    "`{command}` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The remote shell command that starts one worker.
    fn worker_command(&self, spec: &MachineSpec, params: &LaunchParams, exe: &str) -> String {
        let bind_ip = match (&spec.bind_addr, self.tunnel) {
            (Some(b), _) => b.clone(),
            (None, true) => "127.0.0.1".into(),
            (None, false) if spec.host.parse::<std::net::IpAddr>().is_ok() => spec.host.clone(),
            (None, false) => "0.0.0.0".into(),
        };
        let bind = match (spec.bind_port, bind_ip.contains(':')) {
            (Some(p), true) => format!("[{bind_ip}]:{p}"),
            (Some(p), false) => format!("{bind_ip}:{p}"),
            (None, _) => bind_ip,
        };
        let mut s = String::new();
        if let Some(d) = self
            .dir
            .clone()
            .or_else(|| params.dir.as_ref().map(|d| d.display().to_string()))
        {
            s.push_str(&format!("cd {} && ", shell_quote(&d)));
        }
        s.push_str("exec env");
        let mut env: Vec<(String, String)> = params.env.clone();
        env.extend(self.env.iter().cloned());
        if let Some(t) = params.worker_timeout {
            env.push((WORKER_TIMEOUT_ENV.into(), t.as_secs_f64().to_string()));
        }
        for (k, v) in &env {
            s.push(' ');
            s.push_str(&shell_quote(&format!("{k}={v}")));
        }
        for a in [exe, WORKER_FLAG, "--bind-to", &bind] {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        if let Some(flag) = params.tls_flag() {
            s.push(' ');
            s.push_str(flag);
        }
        for a in params.exeflags.iter().chain(&self.exeflags) {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        s
    }

    async fn launch_one(
        &self,
        spec: &MachineSpec,
        params: &LaunchParams,
        exe: &str,
    ) -> Result<WorkerConfig, LaunchError> {
        let _permit = self
            .shared
            .launching
            .acquire()
            .await
            .map_err(|_closed| LaunchError::ManagerClosed)?;
        let control = self.control_for(spec).await?;
        let mut cmd = self.ssh_command(spec, control.as_deref());
        cmd.arg(self.worker_command(spec, params, exe))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| remote_err(spec, format!("cannot run {}: {e}", self.ssh)))?;
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr = child.stderr.take().expect("stderr was piped");
        let process = WorkerProcess::new(child);
        // Keep the last lines of ssh's stderr for errors, and pass them on.
        let kept = Arc::new(LastLines::default());
        let k = kept.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                k.push(&line);
            }
        });
        // The cookie (and the TLS bundle) travel over ssh's stdin: never on a command line.
        if let Err(e) = stdin.write_all(params.stdin_payload().as_bytes()).await {
            tracing::debug!(error = %e, "ssh closed stdin early");
        }
        drop(stdin);
        let mut lines = BufReader::new(stdout).lines();
        let timeout = params
            .worker_timeout
            .unwrap_or_else(crate::listen::worker_timeout);
        let why = match read_announcement(&mut lines, timeout, None).await {
            Ok((_, port, _)) => Ok(port),
            Err(cause) => Err(cause.to_string()),
        };
        let port = match why {
            Ok(port) => port,
            Err(why) => {
                process.kill().await;
                // Let the stderr task take the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let err = kept.take().join("\n");
                return Err(remote_err(
                    spec,
                    if err.is_empty() {
                        format!("worker {why}")
                    } else {
                        format!("worker {why}; ssh said: {err}")
                    },
                ));
            }
        };
        let label = Arc::new(SshWorker {
            pid: AtomicU32::new(0),
            spec: spec.clone(),
            control,
        });
        let forward = label.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let pid = forward.pid.load(Ordering::Relaxed);
                println!("      From worker {pid}:\t{line}");
            }
        });
        let reach = match (&spec.bind_addr, self.tunnel) {
            (_, true) => "127.0.0.1".to_string(),
            (Some(b), false) => b.clone(),
            (None, false) => spec.host.clone(),
        };
        let mut config = WorkerConfig::at(reach.clone(), port);
        if self.tunnel {
            // The master reaches the worker through ssh; other workers on the same
            // machine reach it on loopback, others through the bind address if given.
            config.host = Some(spec.host.clone());
            config.bind_addr = Some(spec.bind_addr.clone().unwrap_or(reach));
        } else {
            config.bind_addr = Some(reach);
        }
        config.process = Some(process);
        config.userdata = Some(label);
        Ok(config)
    }
}

impl SshManager {
    /// The path `spec`'s workers run: `exe` itself, or this build in the machine's
    /// cache (found there, or copied) — decided once per machine, whichever worker
    /// asks first; the others wait for it.
    async fn remote_executable(
        &self,
        spec: &MachineSpec,
        exe: &str,
        own: bool,
    ) -> Result<String, LaunchError> {
        if !own || self.copy == CopyExecutable::Never {
            return Ok(exe.to_string());
        }
        let cell = self
            .shared
            .placed
            .lock()
            .entry(Self::key(spec))
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.place_executable(spec, exe))
            .await
            .cloned()
    }

    /// The driver's executable and its SHA-256 (hashed off the runtime's threads, once
    /// per process: [`sha256_file`] remembers it).
    async fn local_exe(&self, exe: &str) -> Result<LocalExe, LaunchError> {
        let path = exe.to_string();
        let p = path.clone();
        let sha256 = tokio::task::spawn_blocking(move || sha256_file(&p))
            .await
            .map_err(|e| LaunchError::Spawn {
                exe: path.clone(),
                source: io::Error::other(format!("hashing it failed: {e}")),
            })?
            .map_err(|source| LaunchError::Spawn {
                exe: path.clone(),
                source,
            })?;
        Ok(LocalExe { path, sha256 })
    }

    /// Finds this build on `spec`'s machine, or copies it there; returns the path to run.
    async fn place_executable(&self, spec: &MachineSpec, exe: &str) -> Result<String, LaunchError> {
        let local = self.local_exe(exe).await?;
        let name = std::path::Path::new(&local.path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cohort-worker".into());
        let cache = match &self.exe_cache {
            Some(d) => shell_quote(d),
            None => "\"${XDG_CACHE_HOME:-$HOME/.cache}/cohort/exe\"".to_string(),
        };
        let digest = &local.sha256;
        let same_path_ok = self.copy == CopyExecutable::IfMissing;
        // One short ssh: the cached copy if it is this build, else the driver's path
        // if it holds this build, else where a copy goes. Paths come back expanded.
        let probe = format!(
            "c={cache}/{short}/{name_q}; e={exe_q}; \
             sum() {{ sha256sum \"$1\" 2>/dev/null | cut -d' ' -f1; }}; \
             case \"$c\" in /*) ;; *) c=\"$HOME/$c\";; esac; \
             if [ -x \"$c\" ] && [ \"$(sum \"$c\")\" = {digest} ]; then echo \"cohort-exe cached $c\"; \
             elif {same_path_ok} && [ -x \"$e\" ] && [ \"$(sum \"$e\")\" = {digest} ]; then echo \"cohort-exe same $e\"; \
             else echo \"cohort-exe absent $c\"; fi",
            short = &digest[..32],
            name_q = shell_quote(&name),
            exe_q = shell_quote(&local.path),
            same_path_ok = if same_path_ok { "true" } else { "false" },
        );
        let out = self.run_remote(spec, &probe).await?;
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("cohort-exe "))
            .ok_or_else(|| remote_err(spec, format!("checking for the executable said {out:?}")))?;
        let (what, path) = line
            .split_once(' ')
            .ok_or_else(|| remote_err(spec, format!("checking for the executable said {out:?}")))?;
        if what != "absent" {
            tracing::debug!(host = %spec.destination(), path, what, "worker executable found");
            return Ok(path.to_string());
        }
        self.copy_to(spec, &local, path).await?;
        Ok(path.to_string())
    }

    /// Copies the driver's executable to `path` on `spec`'s machine over ssh: written
    /// to a temporary name, checked against its SHA-256 there, then renamed.
    async fn copy_to(
        &self,
        spec: &MachineSpec,
        local: &LocalExe,
        path: &str,
    ) -> Result<(), LaunchError> {
        let q = shell_quote(path);
        let command = format!(
            "umask 077; c={q}; t=\"$c.part.$$\"; mkdir -p \"$(dirname \"$c\")\" && cat > \"$t\" && \
             [ \"$(sha256sum \"$t\" | cut -d' ' -f1)\" = {digest} ] && chmod 700 \"$t\" && mv -f \"$t\" \"$c\" \
             || {{ rm -f \"$t\"; echo \"the copy of the executable at $c failed its SHA-256 check (or could not be written)\" >&2; exit 1; }}",
            digest = local.sha256,
        );
        let control = self.control_for(spec).await?;
        let mut cmd = self.ssh_command(spec, control.as_deref());
        cmd.arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| remote_err(spec, format!("cannot run {}: {e}", self.ssh)))?;
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let mut file =
            tokio::fs::File::open(&local.path)
                .await
                .map_err(|source| LaunchError::Spawn {
                    exe: local.path.clone(),
                    source,
                })?;
        let sent = tokio::io::copy(&mut file, &mut stdin).await;
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| remote_err(spec, format!("copying the executable: {e}")))?;
        if let Err(e) = sent {
            if out.status.success() {
                return Err(remote_err(spec, format!("copying the executable: {e}")));
            }
        }
        if !out.status.success() {
            return Err(remote_err(
                spec,
                format!(
                    "copying the executable to {path} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        tracing::info!(host = %spec.destination(), path, "copied the worker executable");
        Ok(())
    }
}

/// The SHA-256 of the file at `path`, hex; remembered for the process while the file's
/// size and modification time stay the same (every manager of a driver asks).
fn sha256_file(path: &str) -> io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    /// A file as last seen: path, size, modification time (s, ns).
    type Seen = (String, u64, i64, i64);
    static KNOWN: Mutex<Vec<(Seen, String)>> = Mutex::new(Vec::new());
    let mut f = std::fs::File::open(path)?;
    let m = f.metadata()?;
    let key = (path.to_string(), m.len(), m.mtime(), m.mtime_nsec());
    if let Some((_, d)) = KNOWN.lock().iter().find(|(k, _)| *k == key) {
        return Ok(d.clone());
    }
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    KNOWN.lock().push((key, digest.clone()));
    Ok(digest)
}

/// What the manager keeps per worker.
struct SshWorker {
    pid: AtomicU32,
    spec: MachineSpec,
    control: Option<Arc<ControlMaster>>,
}

fn remote_err(spec: &MachineSpec, reason: String) -> LaunchError {
    LaunchError::Remote {
        host: spec.destination(),
        reason,
    }
}

/// A reader that owns the ssh process carrying it (tunnels): the process is killed
/// when the connection is dropped.
struct TunnelReader {
    out: tokio::process::ChildStdout,
    _child: Child,
}

impl AsyncRead for TunnelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.out).poll_read(cx, buf)
    }
}

impl ClusterManager for SshManager {
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async move {
            let exe = match (&self.executable, &params.executable) {
                (Some(e), _) => e.clone(),
                (None, Some(e)) => e.display().to_string(),
                (None, None) => std::env::current_exe()
                    .map_err(|source| LaunchError::Spawn {
                        exe: "<current executable>".into(),
                        source,
                    })?
                    .display()
                    .to_string(),
            };
            // Resolve `auto` counts first (one short ssh per such machine).
            let counts = join_all(self.machines.iter().map(|m| async move {
                match m.count {
                    Count::Fixed(n) => Ok(n),
                    Count::Auto => {
                        let out = self
                            .run_remote(m, "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN")
                            .await?;
                        out.trim().parse::<usize>().map_err(|_| {
                            remote_err(m, format!("cannot count CPU threads: {out:?}"))
                        })
                    }
                }
            }))
            .await;
            let mut jobs = Vec::new();
            let mut first_err = None;
            for (m, c) in self.machines.iter().zip(counts) {
                match c {
                    Ok(n) => jobs.extend((0..n).map(|_| m)),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            // Only the driver's own executable is copied; a named one is a remote path.
            let own = self.executable.is_none() && params.executable.is_none();
            let results = join_all(jobs.into_iter().map(|m| {
                let exe = &exe;
                let launched = &launched;
                async move {
                    let r = match self.remote_executable(m, exe, own).await {
                        Ok(path) => self.launch_one(m, params, &path).await,
                        Err(e) => Err(e),
                    };
                    if let Ok(c) = &r {
                        let _ = launched.send(c.clone());
                    }
                    r
                }
            }))
            .await;
            if let Some(e) = first_err {
                return Err(e);
            }
            match results.into_iter().find_map(Result::err) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
    }

    fn connect<'a>(
        &'a self,
        _pid: u32,
        config: &'a WorkerConfig,
    ) -> BoxFuture<'a, io::Result<Connection>> {
        Box::pin(async move {
            let port = config.port.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "worker config has no port")
            })?;
            let info = config
                .userdata
                .as_ref()
                .and_then(|u| u.downcast_ref::<SshWorker>());
            match info {
                Some(w) if self.tunnel => {
                    let mut cmd = self.ssh_command(&w.spec, w.control.as_deref());
                    cmd.arg("-W")
                        .arg(format!("127.0.0.1:{port}"))
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::inherit())
                        .kill_on_drop(true);
                    let mut child = cmd.spawn()?;
                    let writer = child.stdin.take().expect("stdin was piped");
                    let out = child.stdout.take().expect("stdout was piped");
                    let reader = TunnelReader { out, _child: child };
                    Ok(Connection::new(
                        Box::new(reader),
                        Box::new(writer),
                        format!("ssh tunnel to {}:{port}", w.spec.destination()),
                    ))
                }
                _ => {
                    let host = config.bind_addr.as_deref().or(config.host.as_deref());
                    tcp_connect(host.unwrap_or("127.0.0.1"), port).await
                }
            }
        })
    }

    fn manage(&self, pid: u32, config: &WorkerConfig, event: ManageEvent) {
        if event == ManageEvent::Register {
            if let Some(w) = config
                .userdata
                .as_ref()
                .and_then(|u| u.downcast_ref::<SshWorker>())
            {
                w.pid.store(pid, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_command_quotes_and_binds() {
        let m = SshManager::new(["u@10.0.0.5:2222"])
            .unwrap()
            .dir("/my dir")
            .env("A", "b c");
        let p = LaunchParams {
            exeflags: vec!["--x".into()],
            ..Default::default()
        };
        let c = m.worker_command(&m.machines()[0], &p, "/bin/app");
        assert_eq!(
            c,
            "cd '/my dir' && exec env 'A=b c' /bin/app --cohort-worker --bind-to 10.0.0.5 --x"
        );
        let t = m.clone().tunnel(true);
        assert!(t
            .worker_command(&t.machines()[0], &p, "/bin/app")
            .contains("--bind-to 127.0.0.1"));
        let n = SshManager::new(["node 10.1.1.1:9000"]).unwrap();
        assert!(n
            .worker_command(&n.machines()[0], &p, "x")
            .contains("--bind-to 10.1.1.1:9000"));
        let h = SshManager::new(["node"]).unwrap();
        assert!(h
            .worker_command(&h.machines()[0], &p, "x")
            .contains("--bind-to 0.0.0.0"));
    }

    #[test]
    fn cookie_is_not_on_the_command_line() {
        let m = SshManager::new(["h"]).unwrap();
        let p = LaunchParams {
            cookie: "secret-cookie".into(),
            ..Default::default()
        };
        let c = m.worker_command(&m.machines()[0], &p, "x");
        assert!(!c.contains("secret-cookie"));
        let cmd = m.ssh_command(&m.machines()[0], None);
        let args: Vec<_> = cmd.as_std().get_args().collect();
        assert!(!args.iter().any(|a| a.to_string_lossy().contains("secret")));
        assert!(args.iter().any(|a| *a == "BatchMode=yes"));
    }
}
