//! One running `srun`: its tasks' state as read from its labelled output, the task
//! that drives the process, and cancelling it.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cohort_transport::listen::parse_announcement;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use crate::parse::{
    is_srun_error, job_id_in_srun_message, parse_exit_line, parse_task_line, split_label,
};

/// srun's own lines kept for error messages.
const SAID_KEPT: usize = 20;
/// Each task's stderr lines kept for error messages.
const TASK_STDERR_KEPT: usize = 8;
/// How long scancel and squeue may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long srun gets to end its step after SIGTERM, before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// The programs the manager runs.
#[derive(Debug, Clone)]
pub(crate) struct Programs {
    pub(crate) srun: String,
    pub(crate) scancel: String,
    pub(crate) squeue: String,
}

/// What is known of one task.
#[derive(Debug, Default)]
pub(crate) struct Task {
    pub(crate) node: Option<String>,
    pub(crate) addr: Option<(String, u16)>,
    pub(crate) exited: Option<i32>,
    pub(crate) removed: bool,
    pub(crate) stderr: VecDeque<String>,
    /// The cluster pid, once registered (0 before).
    pub(crate) pid: Arc<AtomicU32>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) job: Option<String>,
    pub(crate) step: Option<String>,
    pub(crate) tasks: Vec<Task>,
    pub(crate) said: VecDeque<String>,
    /// srun's exit status, once it has exited and its output is read.
    pub(crate) srun_exit: Option<Option<ExitStatus>>,
}

impl State {
    pub(crate) fn reported(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.node.is_some() && t.addr.is_some())
            .count()
    }

    /// srun's error lines (else all its lines), joined.
    pub(crate) fn srun_said(&self) -> String {
        let errors: Vec<&str> = self
            .said
            .iter()
            .filter(|l| is_srun_error(l))
            .map(String::as_str)
            .collect();
        if errors.is_empty() {
            self.said.iter().cloned().collect::<Vec<_>>().join("; ")
        } else {
            errors.join("; ")
        }
    }
}

/// A running srun and what its output has said.
#[derive(Debug)]
pub(crate) struct Step {
    /// `--job-name` (a step name inside an allocation).
    pub(crate) name: String,
    /// Whether srun requested the job itself (so the job, not only the step, is ours).
    pub(crate) requested: bool,
    /// Whether `name` is unique to this step (ours, not the user's), so that
    /// `scancel --name` cancels nothing else.
    pub(crate) unique_name: bool,
    pub(crate) state: Mutex<State>,
    /// Bumped at every change of `state`.
    pub(crate) changed: watch::Sender<u64>,
    /// Signals for srun (sent by the driving task while srun runs).
    signals: mpsc::UnboundedSender<i32>,
    /// srun's OS pid, for a last SIGTERM when the manager is dropped.
    os_pid: Option<u32>,
    programs: Programs,
}

impl Step {
    /// Starts driving `child` (srun, with stdout and stderr piped) for `ntasks` tasks.
    pub(crate) fn start(
        mut child: Child,
        ntasks: usize,
        name: String,
        requested: bool,
        unique_name: bool,
        job: Option<String>,
        programs: Programs,
    ) -> Arc<Step> {
        let (signals, signal_rx) = mpsc::unbounded_channel();
        let state = State {
            job,
            tasks: (0..ntasks).map(|_| Task::default()).collect(),
            ..State::default()
        };
        let step = Arc::new(Step {
            name,
            requested,
            unique_name,
            state: Mutex::new(state),
            changed: watch::Sender::new(0),
            signals,
            os_pid: child.id(),
            programs,
        });
        let stdout = child.stdout.take().expect("srun's stdout is piped");
        let stderr = child.stderr.take().expect("srun's stderr is piped");
        tokio::spawn(drive(step.clone(), child, stdout, stderr, signal_rx));
        step
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn on_stdout(&self, line: &str) {
        let Some((task, text)) = split_label(line) else {
            println!("{line}");
            return;
        };
        let mut st = self.state.lock();
        if let Some((job, step, node)) = parse_task_line(text) {
            st.job.get_or_insert(job);
            st.step.get_or_insert(step);
            if let Some(t) = st.tasks.get_mut(task) {
                t.node = Some(node);
            }
            drop(st);
            self.bump();
            return;
        }
        if let Some(status) = parse_exit_line(text) {
            if let Some(t) = st.tasks.get_mut(task) {
                t.exited = Some(status);
            }
            drop(st);
            self.bump();
            return;
        }
        if let Some(t) = st.tasks.get_mut(task) {
            if t.addr.is_none() {
                if let Some(addr) = parse_announcement(text) {
                    t.addr = Some(addr);
                    drop(st);
                    self.bump();
                    return;
                }
            }
            let pid = t.pid.load(Ordering::Relaxed);
            drop(st);
            if pid == 0 {
                println!("{text}");
            } else {
                println!("      From worker {pid}:\t{text}");
            }
        }
    }

    fn on_stderr(&self, line: &str) {
        match split_label(line) {
            Some((task, text)) => {
                let mut st = self.state.lock();
                let pid = match st.tasks.get_mut(task) {
                    Some(t) => {
                        if t.stderr.len() == TASK_STDERR_KEPT {
                            t.stderr.pop_front();
                        }
                        t.stderr.push_back(text.to_string());
                        t.pid.load(Ordering::Relaxed)
                    }
                    None => 0,
                };
                drop(st);
                if pid == 0 {
                    eprintln!("{text}");
                } else {
                    eprintln!("      From worker {pid}:\t{text}");
                }
            }
            None => {
                let mut st = self.state.lock();
                if st.job.is_none() {
                    st.job = job_id_in_srun_message(line);
                }
                if st.said.len() == SAID_KEPT {
                    st.said.pop_front();
                }
                st.said.push_back(line.trim().to_string());
                drop(st);
                tracing::debug!(step = %self.name, "{line}");
                eprintln!("{line}");
                self.bump();
            }
        }
    }

    /// Whether srun has exited.
    pub(crate) fn srun_exited(&self) -> bool {
        self.state.lock().srun_exit.is_some()
    }

    /// Waits up to `d` for `done` to hold of the state; returns whether it does.
    pub(crate) async fn wait_for(&self, d: Duration, done: impl Fn(&State) -> bool) -> bool {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if done(&self.state.lock()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `self`: it cannot close while we hold `self`.
                Ok(Err(_)) | Err(_) => return done(&self.state.lock()),
            }
        }
    }

    /// Ends the step: SIGTERM to srun (which cancels its step, or its pending or
    /// running job), SIGKILL if it has not exited after a grace period, then
    /// `scancel` of what srun may have left.
    pub(crate) async fn cancel(&self) {
        if !self.srun_exited() {
            let _ = self.signals.send(libc::SIGTERM);
            if !self.wait_for(TERM_GRACE, |s| s.srun_exit.is_some()).await {
                let _ = self.signals.send(libc::SIGKILL);
                self.wait_for(TERM_GRACE, |s| s.srun_exit.is_some()).await;
            }
        }
        for args in self.scancel_args() {
            run_bounded(&self.programs.scancel, &args).await;
        }
        if !self.requested {
            // Inside an allocation, a step whose id never showed: find it by name.
            let (job, step_known) = {
                let st = self.state.lock();
                (st.job.clone(), st.step.is_some())
            };
            if let (Some(job), false) = (job, step_known) {
                let out = run_bounded(
                    &self.programs.squeue,
                    &["-h", "-s", "-j", &job, "-o", "%i %j"].map(String::from),
                )
                .await;
                for line in out.lines() {
                    if let Some((id, name)) = line.trim().split_once(' ') {
                        if name.trim() == self.name {
                            run_bounded(&self.programs.scancel, &[id.to_string()]).await;
                        }
                    }
                }
            }
        }
    }

    /// What to scancel: the job srun requested, or the step it made in an
    /// allocation; by name when its id never showed and the name is ours.
    fn scancel_args(&self) -> Vec<Vec<String>> {
        let st = self.state.lock();
        match (self.requested, &st.job, &st.step) {
            (true, Some(job), _) => vec![vec![job.clone()]],
            (true, None, _) if self.unique_name => {
                // SAFETY: getuid(2) takes nothing and cannot fail.
                let uid = unsafe { libc::getuid() };
                vec![vec![
                    format!("--name={}", self.name),
                    format!("--user={uid}"),
                ]]
            }
            (false, Some(job), Some(step)) => vec![vec![format!("{job}.{step}")]],
            _ => Vec::new(),
        }
    }

    /// Slurm's reason for a pending job (`squeue -o %r`), or `unknown`.
    pub(crate) async fn pending_reason(&self, job: &str) -> String {
        let out = run_bounded(
            &self.programs.squeue,
            &["-h", "-j", job, "-o", "%r"].map(String::from),
        )
        .await;
        let r = out.trim();
        if r.is_empty() {
            "unknown".into()
        } else {
            r.to_string()
        }
    }

    /// Without waiting (a `Drop`): SIGTERM to a srun still running, and a detached
    /// `scancel` of what is known.
    pub(crate) fn release_now(&self) {
        if self.srun_exited() {
            return;
        }
        if let Some(pid) = self.os_pid.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) takes no pointers. srun is our child and has not been
            // reaped (its exit would have been recorded), so the pid is still its.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for args in self.scancel_args() {
            let _ = std::process::Command::new(&self.programs.scancel)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
        }
    }
}

/// Runs `program args` with a deadline and returns its stdout ("" on any failure,
/// which is logged).
async fn run_bounded(program: &str, args: &[String]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(CONTROL_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => {
            if !out.status.success() {
                tracing::debug!(
                    "{program} {args:?}: {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        Ok(Err(e)) => {
            tracing::warn!("cannot run {program}: {e}");
            String::new()
        }
        Err(_) => {
            tracing::warn!("{program} {args:?} did not finish within {CONTROL_TIMEOUT:?}");
            String::new()
        }
    }
}

/// Reads srun's output, reaps it, and passes signals to it while it runs.
async fn drive(
    step: Arc<Step>,
    mut child: Child,
    stdout: tokio::process::ChildStdout,
    stderr: tokio::process::ChildStderr,
    mut signals: mpsc::UnboundedReceiver<i32>,
) {
    let mut out = BufReader::new(stdout).lines();
    let mut err = BufReader::new(stderr).lines();
    let (mut out_open, mut err_open) = (true, true);
    let mut status: Option<Option<ExitStatus>> = None;
    // Once srun has exited, its output gets a moment to drain (a helper it left could
    // hold the pipes open), then the step is over.
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        if status.is_some() && (!(out_open || err_open)) {
            break;
        }
        let drain = async {
            match drain_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            l = out.next_line(), if out_open => match l {
                Ok(Some(line)) => step.on_stdout(&line),
                _ => out_open = false,
            },
            l = err.next_line(), if err_open => match l {
                Ok(Some(line)) => step.on_stderr(&line),
                _ => err_open = false,
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s.ok());
                drain_until = Some(tokio::time::Instant::now() + Duration::from_secs(2));
            },
            Some(sig) = signals.recv(), if status.is_none() => {
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    // SAFETY: kill(2) takes no pointers; `child` is not reaped (it
                    // has an id), so the pid is srun's.
                    unsafe { libc::kill(pid, sig) };
                }
            },
            () = drain => break,
        }
    }
    step.state.lock().srun_exit = Some(status.flatten());
    step.bump();
}
