//! [`SlurmManager`]: the options, the srun command line, the launch and the
//! release of workers.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cohort_transport::{
    ClusterManager, LaunchError, LaunchParams, ManageEvent, WorkerConfig, WORKER_FLAG,
    WORKER_TIMEOUT_ENV,
};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;

use crate::error::SlurmError;
use crate::parse::TASK_SCRIPT;
use crate::step::{Programs, State, Step};

/// How long a launch waits by default for every worker to report.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `kill` waits for a worker asked to exit, and then for srun.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// The Slurm allocation a driver runs in, as its `SLURM_*` environment describes it.
///
/// ```
/// use cohort_slurm::Allocation;
/// let env = [("SLURM_JOB_ID", "42"), ("SLURM_NTASKS", "8"), ("SLURM_JOB_NUM_NODES", "2"),
///            ("SLURM_JOB_NODELIST", "node[1-2]")];
/// let a = Allocation::from_vars(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
///     .unwrap();
/// assert_eq!((a.job_id.as_str(), a.ntasks, a.nodes), ("42", 8, 2));
/// assert_eq!(a.nodelist.as_deref(), Some("node[1-2]"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Allocation {
    /// `SLURM_JOB_ID` (or the older `SLURM_JOBID`).
    pub job_id: String,
    /// `SLURM_NTASKS` (or `SLURM_NPROCS`); when the job was given no task count, one
    /// per node.
    pub ntasks: usize,
    /// `SLURM_JOB_NUM_NODES` (or `SLURM_NNODES`), 1 if unset.
    pub nodes: usize,
    /// `SLURM_JOB_NODELIST` (or `SLURM_NODELIST`), in Slurm's compressed form.
    pub nodelist: Option<String>,
}

impl Allocation {
    /// The allocation of this process's environment.
    ///
    /// # Errors
    /// [`SlurmError::NotInAllocation`] without `SLURM_JOB_ID`;
    /// [`SlurmError::BadEnvironment`] when a count is not a positive number.
    ///
    /// ```no_run
    /// let a = cohort_slurm::Allocation::from_env().unwrap();
    /// println!("job {} with {} tasks", a.job_id, a.ntasks);
    /// ```
    pub fn from_env() -> Result<Self, SlurmError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The allocation described by the variables `get` returns.
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    ///
    /// ```
    /// let e = cohort_slurm::Allocation::from_vars(|_| None).unwrap_err();
    /// assert!(matches!(e, cohort_slurm::SlurmError::NotInAllocation { .. }));
    /// ```
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, SlurmError> {
        let first = |names: &[&'static str]| {
            names
                .iter()
                .find_map(|n| get(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
        };
        let count = |names: &[&'static str]| -> Result<Option<usize>, SlurmError> {
            match first(names) {
                None => Ok(None),
                Some((var, value)) => match value.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(SlurmError::BadEnvironment {
                        var,
                        value,
                        expected: "a positive number",
                    }),
                },
            }
        };
        let (_, job_id) =
            first(&["SLURM_JOB_ID", "SLURM_JOBID"]).ok_or(SlurmError::NotInAllocation {
                var: "SLURM_JOB_ID",
            })?;
        let nodes = count(&["SLURM_JOB_NUM_NODES", "SLURM_NNODES"])?.unwrap_or(1);
        let ntasks = count(&["SLURM_NTASKS", "SLURM_NPROCS"])?.unwrap_or(nodes);
        Ok(Allocation {
            job_id: job_id.trim().to_string(),
            ntasks,
            nodes,
            nodelist: first(&["SLURM_JOB_NODELIST", "SLURM_NODELIST"]).map(|(_, v)| v),
        })
    }
}

/// A job step a [`SlurmManager`] started: the job and the step id, as its tasks
/// reported them (the `JOB.STEP` that `squeue -s` and `scancel` name).
///
/// ```no_run
/// # let manager = cohort_slurm::SlurmManager::request(2);
/// for s in manager.steps() {
///     println!("{}.{} running: {}", s.job, s.step, s.running);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlurmStep {
    /// The job id.
    pub job: String,
    /// The step id within the job.
    pub step: String,
    /// The step's name (srun's `--job-name`).
    pub name: String,
    /// Whether srun still runs (the step is not over).
    pub running: bool,
}

#[derive(Debug, Clone)]
enum Mode {
    /// Steps in the allocation the driver runs in (or one named).
    Allocation(Allocation),
    /// srun requests a job of its own.
    Request { ntasks: usize },
}

/// The steps a manager started; those still running are released when the last
/// clone of the manager goes.
#[derive(Debug, Default)]
struct Steps(Mutex<Vec<Arc<Step>>>);

impl Drop for Steps {
    fn drop(&mut self) {
        for s in self.0.get_mut().iter() {
            s.release_now();
        }
    }
}

/// What the manager keeps per worker.
#[derive(Debug)]
struct SlurmWorker {
    step: Arc<Step>,
    task: usize,
}

static STEP_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Starts workers as the tasks of a Slurm job step. See the [crate docs](crate).
///
/// ```
/// use cohort_slurm::SlurmManager;
/// let m = SlurmManager::request(8)
///     .nodes(2)
///     .ntasks_per_node(4)
///     .cpus_per_task(1)
///     .mem("2G")
///     .time("01:00:00")
///     .partition("compute")
///     .account("proj42")
///     .job_name("my-analysis")
///     .srun_flags(["--exclusive"])
///     .timeout(std::time::Duration::from_secs(300));
/// assert_eq!(m.ntasks_wanted(), Some(8));
/// ```
#[derive(Debug, Clone)]
pub struct SlurmManager {
    mode: Mode,
    ntasks: Option<usize>,
    nodes: Option<usize>,
    ntasks_per_node: Option<usize>,
    cpus_per_task: Option<usize>,
    mem: Option<String>,
    time: Option<String>,
    partition: Option<String>,
    account: Option<String>,
    job_name: Option<String>,
    srun_flags: Vec<String>,
    timeout: Duration,
    programs: Programs,
    executable: Option<String>,
    exeflags: Vec<String>,
    env: Vec<(String, String)>,
    bind_to: String,
    steps: Arc<Steps>,
}

impl SlurmManager {
    fn with_mode(mode: Mode) -> Self {
        SlurmManager {
            mode,
            ntasks: None,
            nodes: None,
            ntasks_per_node: None,
            cpus_per_task: None,
            mem: None,
            time: None,
            partition: None,
            account: None,
            job_name: None,
            srun_flags: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            programs: Programs {
                srun: "srun".into(),
                scancel: "scancel".into(),
                squeue: "squeue".into(),
            },
            executable: None,
            exeflags: Vec::new(),
            env: Vec::new(),
            bind_to: "0.0.0.0".into(),
            steps: Arc::default(),
        }
    }

    /// A manager for the allocation this driver runs in (under `sbatch` or `salloc`):
    /// each launch is one step of that job, with one worker per task of the
    /// allocation unless [`ntasks`](Self::ntasks) (or `AddProcs::count`) says
    /// otherwise.
    ///
    /// # Errors
    /// [`SlurmError::NotInAllocation`] outside a Slurm job;
    /// [`SlurmError::BadEnvironment`] if its task or node count is garbled.
    ///
    /// ```no_run
    /// let m = cohort_slurm::SlurmManager::from_allocation().unwrap();
    /// println!("{} tasks", m.allocation().unwrap().ntasks);
    /// ```
    pub fn from_allocation() -> Result<Self, SlurmError> {
        Ok(Self::in_allocation(Allocation::from_env()?))
    }

    /// A manager for steps in a given allocation (one made with
    /// `salloc --no-shell`, for instance).
    ///
    /// ```
    /// use cohort_slurm::{Allocation, SlurmManager};
    /// let a = Allocation::from_vars(|k| (k == "SLURM_JOB_ID").then(|| "7".to_string())).unwrap();
    /// let m = SlurmManager::in_allocation(a);
    /// assert_eq!(m.allocation().unwrap().job_id, "7");
    /// ```
    pub fn in_allocation(allocation: Allocation) -> Self {
        Self::with_mode(Mode::Allocation(allocation))
    }

    /// A manager that requests a job of its own for `ntasks` workers at each launch
    /// (srun run outside any job, even when the driver is in one), with the options
    /// set on it; the job ends when its workers have gone.
    ///
    /// ```
    /// let m = cohort_slurm::SlurmManager::request(4).partition("debug");
    /// assert!(m.allocation().is_none());
    /// ```
    pub fn request(ntasks: usize) -> Self {
        Self::with_mode(Mode::Request { ntasks })
    }

    /// The allocation the manager starts steps in; `None` for [`request`](Self::request).
    ///
    /// ```
    /// assert!(cohort_slurm::SlurmManager::request(1).allocation().is_none());
    /// ```
    pub fn allocation(&self) -> Option<&Allocation> {
        match &self.mode {
            Mode::Allocation(a) => Some(a),
            Mode::Request { .. } => None,
        }
    }

    /// How many workers a launch starts when `AddProcs::count` does not say:
    /// [`ntasks`](Self::ntasks), else the request's count, else the allocation's
    /// tasks.
    ///
    /// ```
    /// assert_eq!(cohort_slurm::SlurmManager::request(3).ntasks(5).ntasks_wanted(), Some(5));
    /// ```
    pub fn ntasks_wanted(&self) -> Option<usize> {
        self.ntasks.or(match &self.mode {
            Mode::Allocation(a) => Some(a.ntasks),
            Mode::Request { ntasks } => Some(*ntasks),
        })
    }

    /// The number of tasks (workers) of each launch (srun `--ntasks`).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).ntasks(2);
    /// ```
    pub fn ntasks(mut self, n: usize) -> Self {
        self.ntasks = Some(n);
        self
    }

    /// The number of nodes (srun `--nodes`).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(4).nodes(2);
    /// ```
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = Some(n);
        self
    }

    /// Tasks per node (srun `--ntasks-per-node`).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(4).ntasks_per_node(2);
    /// ```
    pub fn ntasks_per_node(mut self, n: usize) -> Self {
        self.ntasks_per_node = Some(n);
        self
    }

    /// CPUs per task (srun `--cpus-per-task`).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(4).cpus_per_task(2);
    /// ```
    pub fn cpus_per_task(mut self, n: usize) -> Self {
        self.cpus_per_task = Some(n);
        self
    }

    /// Memory per node, in Slurm's syntax (srun `--mem`: `500M`, `4G`).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).mem("4G");
    /// ```
    pub fn mem(mut self, mem: impl Into<String>) -> Self {
        self.mem = Some(mem.into());
        self
    }

    /// The time limit, in Slurm's syntax (srun `--time`: `30`, `01:00:00`, `1-0`).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).time("00:10:00");
    /// ```
    pub fn time(mut self, time: impl Into<String>) -> Self {
        self.time = Some(time.into());
        self
    }

    /// The partition (srun `--partition`).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).partition("debug");
    /// ```
    pub fn partition(mut self, p: impl Into<String>) -> Self {
        self.partition = Some(p.into());
        self
    }

    /// The account charged (srun `--account`).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).account("proj42");
    /// ```
    pub fn account(mut self, a: impl Into<String>) -> Self {
        self.account = Some(a.into());
        self
    }

    /// The job's name (srun `--job-name`; inside an allocation, the step's name).
    /// Default: `cohort-PID-N`, unique to the launch (which lets a cancelled launch
    /// whose job id never showed be found by name).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).job_name("analysis");
    /// ```
    pub fn job_name(mut self, n: impl Into<String>) -> Self {
        self.job_name = Some(n.into());
        self
    }

    /// Extra srun options, after the manager's own (`--exclusive`, `--constraint=…`,
    /// `--overcommit`, `--gres=gpu:1`…). Do not give `--label`, `--input`,
    /// `--ntasks` or an output redirection: the manager relies on its own.
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).srun_flags(["--constraint=avx2"]);
    /// ```
    pub fn srun_flags<I, S>(mut self, flags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.srun_flags.extend(flags.into_iter().map(Into::into));
        self
    }

    /// How long a launch may take in all — waiting in the queue, starting the tasks,
    /// every worker reporting — before it is cancelled (default 120 s).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).timeout(std::time::Duration::from_secs(30));
    /// ```
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The srun program (default `srun` on the `PATH`).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).srun_program("/opt/slurm/bin/srun");
    /// ```
    pub fn srun_program(mut self, p: impl Into<String>) -> Self {
        self.programs.srun = p.into();
        self
    }

    /// The scancel program (default `scancel` on the `PATH`).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).scancel_program("/opt/slurm/bin/scancel");
    /// ```
    pub fn scancel_program(mut self, p: impl Into<String>) -> Self {
        self.programs.scancel = p.into();
        self
    }

    /// The squeue program (default `squeue` on the `PATH`), asked for pending reasons.
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).squeue_program("/opt/slurm/bin/squeue");
    /// ```
    pub fn squeue_program(mut self, p: impl Into<String>) -> Self {
        self.programs.squeue = p.into();
        self
    }

    /// The worker executable's path on the nodes. Default: `AddProcs::executable`,
    /// else this program's own path (the same binary on a shared file system, as is
    /// usual on a cluster).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).executable("/shared/bin/app");
    /// ```
    pub fn executable(mut self, exe: impl Into<String>) -> Self {
        self.executable = Some(exe.into());
        self
    }

    /// Extra worker arguments, after `AddProcs::args`.
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).args(["-v"]);
    /// ```
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exeflags.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable for the workers (srun passes its environment on, so
    /// it is set on srun; do not put secrets here).
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).env("RUST_LOG", "info");
    /// ```
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The address workers listen on (`--bind-to`). Default `0.0.0.0`: all
    /// interfaces, as workers on other nodes must be reachable from the driver (the
    /// cookie handshake guards every connection; add TLS on untrusted networks).
    /// Each worker then announces its node's host name, which the driver resolves.
    /// Give `127.0.0.1` when the driver and every task share one node.
    ///
    /// ```
    /// let _ = cohort_slurm::SlurmManager::request(1).bind_to("127.0.0.1");
    /// ```
    pub fn bind_to(mut self, addr: impl Into<String>) -> Self {
        self.bind_to = addr.into();
        self
    }

    /// The steps this manager has started, oldest first, with their job and step
    /// ids (those whose ids showed).
    ///
    /// ```
    /// assert!(cohort_slurm::SlurmManager::request(1).steps().is_empty());
    /// ```
    pub fn steps(&self) -> Vec<SlurmStep> {
        self.steps
            .0
            .lock()
            .iter()
            .filter_map(|s| {
                let st = s.state.lock();
                Some(SlurmStep {
                    job: st.job.clone()?,
                    step: st.step.clone()?,
                    name: s.name.clone(),
                    running: st.srun_exit.is_none(),
                })
            })
            .collect()
    }

    fn validate(&self, count: usize) -> Result<(), SlurmError> {
        let invalid = |option, reason: &str| {
            Err(SlurmError::InvalidOption {
                option,
                reason: reason.into(),
            })
        };
        if count == 0 {
            return invalid("ntasks", "a launch needs at least one task");
        }
        for (option, n) in [
            ("nodes", self.nodes),
            ("ntasks_per_node", self.ntasks_per_node),
            ("cpus_per_task", self.cpus_per_task),
        ] {
            if n == Some(0) {
                return invalid(option, "must be at least 1");
            }
        }
        for (option, v) in [
            ("mem", &self.mem),
            ("time", &self.time),
            ("partition", &self.partition),
            ("account", &self.account),
            ("job_name", &self.job_name),
        ] {
            if let Some(v) = v {
                if v.trim().is_empty() || v.chars().any(char::is_control) {
                    return invalid(
                        option,
                        "must be a non-empty value without control characters",
                    );
                }
            }
        }
        if self.bind_to.trim().is_empty() {
            return invalid("bind_to", "must be an address");
        }
        if self.timeout.is_zero() {
            return invalid("timeout", "must be longer than zero");
        }
        Ok(())
    }

    /// srun's arguments: its options, then the task command. The cookie is in
    /// neither (it goes to srun's stdin).
    fn srun_args(&self, count: usize, name: &str, params: &LaunchParams, exe: &str) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--label".into(),
            "--input=all".into(),
            "--kill-on-bad-exit=0".into(),
            "--wait=0".into(),
            format!("--ntasks={count}"),
            format!("--job-name={name}"),
        ];
        if let Mode::Allocation(alloc) = &self.mode {
            a.push(format!("--jobid={}", alloc.job_id));
        }
        let opt = |a: &mut Vec<String>, flag: &str, v: Option<String>| {
            if let Some(v) = v {
                a.push(format!("--{flag}={v}"));
            }
        };
        opt(&mut a, "nodes", self.nodes.map(|n| n.to_string()));
        opt(
            &mut a,
            "ntasks-per-node",
            self.ntasks_per_node.map(|n| n.to_string()),
        );
        opt(
            &mut a,
            "cpus-per-task",
            self.cpus_per_task.map(|n| n.to_string()),
        );
        opt(&mut a, "mem", self.mem.clone());
        opt(&mut a, "time", self.time.clone());
        opt(&mut a, "partition", self.partition.clone());
        opt(&mut a, "account", self.account.clone());
        if let Some(dir) = &params.dir {
            a.push(format!("--chdir={}", dir.display()));
        }
        a.extend(self.srun_flags.iter().cloned());
        a.extend([
            "sh".into(),
            "-c".into(),
            TASK_SCRIPT.into(),
            "cohort-slurm-task".into(),
            exe.into(),
            WORKER_FLAG.into(),
            "--bind-to".into(),
            self.bind_to.clone(),
        ]);
        a.extend(params.tls_flag().map(String::from));
        a.extend(params.exeflags.iter().cloned());
        a.extend(self.exeflags.iter().cloned());
        a
    }

    /// The srun command of a launch.
    fn srun_command(&self, args: &[String], params: &LaunchParams) -> Command {
        let mut cmd = Command::new(&self.programs.srun);
        cmd.args(args);
        if let Mode::Request { .. } = self.mode {
            // A request asks for a job of its own: srun must not see the job the
            // driver may run in (it would start a step there instead).
            for (k, _) in std::env::vars_os() {
                if let Some(k) = k.to_str() {
                    if k.starts_with("SLURM_") && k != "SLURM_CONF" {
                        cmd.env_remove(k);
                    }
                }
            }
        }
        cmd.envs(params.env.iter().map(|(k, v)| (k, v)))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(t) = params.worker_timeout {
            cmd.env(WORKER_TIMEOUT_ENV, t.as_secs_f64().to_string());
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    async fn launch_step(
        &self,
        params: &LaunchParams,
        launched: &UnboundedSender<WorkerConfig>,
    ) -> Result<(), SlurmError> {
        let count = self
            .ntasks
            .or((params.count > 0).then_some(params.count))
            .or(self.ntasks_wanted())
            .unwrap_or(0);
        self.validate(count)?;
        let exe = match (&self.executable, &params.executable) {
            (Some(e), _) => e.clone(),
            (None, Some(e)) => e.display().to_string(),
            (None, None) => std::env::current_exe()
                .map_err(|source| SlurmError::Spawn {
                    program: "<current executable>".into(),
                    source,
                })?
                .display()
                .to_string(),
        };
        let (name, unique_name) = match &self.job_name {
            Some(n) => (n.clone(), false),
            None => (
                format!(
                    "cohort-{}-{}",
                    std::process::id(),
                    STEP_SEQ.fetch_add(1, Ordering::Relaxed)
                ),
                true,
            ),
        };
        let args = self.srun_args(count, &name, params, &exe);
        let mut child =
            self.srun_command(&args, params)
                .spawn()
                .map_err(|source| SlurmError::Spawn {
                    program: self.programs.srun.clone(),
                    source,
                })?;
        let mut stdin = child.stdin.take().expect("srun's stdin is piped");
        let (requested, job) = match &self.mode {
            Mode::Allocation(a) => (false, Some(a.job_id.clone())),
            Mode::Request { .. } => (true, None),
        };
        let step = Step::start(
            child,
            count,
            name,
            requested,
            unique_name,
            job,
            self.programs.clone(),
        );
        self.steps.0.lock().push(step.clone());
        // The cookie (and the TLS bundle) go to srun's stdin, which `--input=all`
        // gives every task; srun reads it only once the tasks run, so this write waits
        // in the pipe (it is small) while the job is pending.
        let payload = params.stdin_payload();
        tokio::spawn(async move {
            if let Err(e) = stdin.write_all(payload.as_bytes()).await {
                tracing::debug!(error = %e, "srun closed its stdin early");
            }
            // Dropping stdin closes it: the workers see the end after the cookie.
        });
        match self.await_reports(&step, count).await {
            Ok(()) => {
                let st = step.state.lock();
                for (task, t) in st.tasks.iter().enumerate() {
                    let (host, port) = t.addr.clone().expect("every task reported");
                    let mut config = WorkerConfig::at(host.clone(), port);
                    config.bind_addr = Some(host);
                    config.hostname = t.node.clone();
                    config.userdata = Some(Arc::new(SlurmWorker {
                        step: step.clone(),
                        task,
                    }));
                    let _ = launched.send(config);
                }
                Ok(())
            }
            Err(e) => {
                step.cancel().await;
                Err(e)
            }
        }
    }

    /// Waits until every task has reported its node and address, or something ends
    /// the launch first.
    async fn await_reports(&self, step: &Step, count: usize) -> Result<(), SlurmError> {
        let mut rx = step.changed.subscribe();
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some(outcome) = Self::judge(&step.state.lock(), count) {
                return outcome;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => break,
            }
        }
        // The deadline: pending in the queue, or started but not all reported.
        let (job, started, reported, said) = {
            let st = step.state.lock();
            let started = st.tasks.iter().any(|t| t.node.is_some());
            (st.job.clone(), started, st.reported(), st.srun_said())
        };
        match job {
            Some(job) if step.requested && !started => Err(SlurmError::Pending {
                reason: step.pending_reason(&job).await,
                job,
                after: self.timeout,
                said,
            }),
            _ => Err(SlurmError::TimedOut {
                reported,
                expected: count,
                after: self.timeout,
                said,
            }),
        }
    }

    /// The outcome the state already decides: all reported, or a failure.
    fn judge(st: &State, count: usize) -> Option<Result<(), SlurmError>> {
        if let Some((task, t)) = st
            .tasks
            .iter()
            .enumerate()
            .find(|(_, t)| t.addr.is_none() && t.exited.is_some())
        {
            let mut said: Vec<String> = t.stderr.iter().cloned().collect();
            let srun = st.srun_said();
            if !srun.is_empty() {
                said.push(srun);
            }
            return Some(Err(SlurmError::TaskExited {
                task,
                node: t.node.clone().unwrap_or_else(|| "?".into()),
                status: t.exited.unwrap_or(-1),
                said: said.join("; "),
            }));
        }
        let reported = st.reported();
        if reported == count {
            return Some(Ok(()));
        }
        if let Some(status) = &st.srun_exit {
            let status = status.map_or_else(|| "an unknown status".into(), |s| s.to_string());
            let started = st.tasks.iter().any(|t| t.node.is_some());
            return Some(Err(if started {
                SlurmError::SrunExited {
                    status,
                    reported,
                    expected: count,
                    said: st.srun_said(),
                }
            } else {
                SlurmError::Refused {
                    status,
                    said: st.srun_said(),
                }
            }));
        }
        None
    }
}

fn worker_of(config: &WorkerConfig) -> Option<&SlurmWorker> {
    config
        .userdata
        .as_ref()
        .and_then(|u| u.downcast_ref::<SlurmWorker>())
}

impl ClusterManager for SlurmManager {
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> cohort_transport::BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async move { Ok(self.launch_step(params, &launched).await?) })
    }

    fn manage(&self, pid: u32, config: &WorkerConfig, event: ManageEvent) {
        if event == ManageEvent::Register {
            if let Some(w) = worker_of(config) {
                if let Some(t) = w.step.state.lock().tasks.get(w.task) {
                    t.pid.store(pid, Ordering::Relaxed);
                }
            }
        }
    }

    /// The worker was asked to exit: wait a moment for its task to end; once every
    /// worker of its step has gone, wait for srun to end the step, and cancel the
    /// step if it does not.
    fn kill<'a>(
        &'a self,
        _pid: u32,
        config: &'a WorkerConfig,
    ) -> cohort_transport::BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(w) = worker_of(config) else {
                return;
            };
            if let Some(t) = w.step.state.lock().tasks.get_mut(w.task) {
                t.removed = true;
            }
            let task = w.task;
            let exited = w
                .step
                .wait_for(EXIT_GRACE, |s| {
                    s.srun_exit.is_some() || s.tasks.get(task).is_none_or(|t| t.exited.is_some())
                })
                .await;
            let all_gone = w
                .step
                .state
                .lock()
                .tasks
                .iter()
                .all(|t| t.removed || t.exited.is_some());
            if all_gone {
                if !w.step.wait_for(EXIT_GRACE, |s| s.srun_exit.is_some()).await {
                    w.step.cancel().await;
                }
            } else if !exited {
                tracing::warn!(
                    step = %w.step.name,
                    task,
                    "a Slurm worker did not exit when asked; it ends with its step"
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc() -> Allocation {
        Allocation::from_vars(|k| match k {
            "SLURM_JOB_ID" => Some("99".into()),
            "SLURM_NTASKS" => Some("3".into()),
            _ => None,
        })
        .unwrap()
    }

    #[test]
    fn allocation_env() {
        let a = alloc();
        assert_eq!((a.job_id.as_str(), a.ntasks, a.nodes), ("99", 3, 1));
        let one_per_node = Allocation::from_vars(|k| match k {
            "SLURM_JOBID" => Some("5".into()),
            "SLURM_NNODES" => Some("4".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(one_per_node.ntasks, 4);
        let bad = Allocation::from_vars(|k| match k {
            "SLURM_JOB_ID" => Some("5".into()),
            "SLURM_NTASKS" => Some("x".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(
            matches!(
                bad,
                SlurmError::BadEnvironment {
                    var: "SLURM_NTASKS",
                    ..
                }
            ),
            "{bad}"
        );
    }

    #[test]
    fn srun_line_in_an_allocation() {
        let m = SlurmManager::in_allocation(alloc()).cpus_per_task(2);
        let p = LaunchParams {
            cookie: "secret-cookie-123".into(),
            exeflags: vec!["--x".into()],
            ..Default::default()
        };
        let a = m.srun_args(3, "cohort-1-0", &p, "/bin/app");
        let pos = |s: &str| a.iter().position(|x| x == s).unwrap();
        for flag in [
            "--label",
            "--input=all",
            "--ntasks=3",
            "--jobid=99",
            "--cpus-per-task=2",
        ] {
            assert!(pos(flag) < pos("sh"), "{flag} in {a:?}");
        }
        let tail = &a[pos("sh")..];
        assert_eq!(tail[0..2], ["sh", "-c"]);
        assert_eq!(
            tail[3..],
            [
                "cohort-slurm-task",
                "/bin/app",
                "--cohort-worker",
                "--bind-to",
                "0.0.0.0",
                "--x"
            ]
        );
        assert!(!a.iter().any(|x| x.contains("secret")));
        let cmd = m.srun_command(&a, &p);
        assert!(!cmd
            .as_std()
            .get_envs()
            .any(|(k, v)| k.to_string_lossy().contains("secret")
                || v.is_some_and(|v| v.to_string_lossy().contains("secret"))));
    }

    #[test]
    fn srun_line_of_a_request() {
        let m = SlurmManager::request(4)
            .nodes(2)
            .ntasks_per_node(2)
            .mem("1G")
            .time("5")
            .partition("p")
            .account("acc")
            .srun_flags(["--exclusive"]);
        let a = m.srun_args(4, "job", &LaunchParams::default(), "x");
        for flag in [
            "--nodes=2",
            "--ntasks-per-node=2",
            "--mem=1G",
            "--time=5",
            "--partition=p",
            "--account=acc",
            "--exclusive",
            "--job-name=job",
        ] {
            assert!(a.iter().any(|x| x == flag), "{flag} in {a:?}");
        }
        assert!(!a.iter().any(|x| x.starts_with("--jobid")));
        // The driver's own job is hidden from a request's srun.
        let cmd = m.srun_command(&a, &LaunchParams::default());
        for (k, v) in std::env::vars() {
            if k.starts_with("SLURM_") && k != "SLURM_CONF" {
                assert!(
                    cmd.as_std()
                        .get_envs()
                        .any(|(ek, ev)| ek == k.as_str() && ev.is_none()),
                    "{k}={v} is removed"
                );
            }
        }
    }

    #[test]
    fn bad_options_are_refused_before_srun() {
        let e = SlurmManager::request(0).validate(0).unwrap_err();
        assert!(
            matches!(
                e,
                SlurmError::InvalidOption {
                    option: "ntasks",
                    ..
                }
            ),
            "{e}"
        );
        let e = SlurmManager::request(1)
            .partition(" ")
            .validate(1)
            .unwrap_err();
        assert!(
            matches!(
                e,
                SlurmError::InvalidOption {
                    option: "partition",
                    ..
                }
            ),
            "{e}"
        );
        let e = SlurmManager::request(1).nodes(0).validate(1).unwrap_err();
        assert!(
            matches!(
                e,
                SlurmError::InvalidOption {
                    option: "nodes",
                    ..
                }
            ),
            "{e}"
        );
        assert!(SlurmManager::request(1).validate(1).is_ok());
    }
}
