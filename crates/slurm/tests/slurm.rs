//! `SlurmManager` against a real Slurm: the two-node test cluster of
//! `scripts/slurm-test-env.sh` (which `.ci/run` calls; both nodes are this machine,
//! each with its own slurmd). The workers' executable is this test binary, started by
//! srun with `--cohort-worker`; under `sbatch` and `salloc` it is the driver too
//! (`--slurm-driver`, see `driver_main`).
//!
//! Skips (printing "skipped: ...") when the test Slurm cannot be had, except under CI
//! (`CI` set, as `.ci/run` does): there a missing Slurm fails the tests.
//!
//! The target has its own `main` (`harness = false`, libtest-mimic for the command
//! line and report): it sets `SLURM_CONF` for the test cluster before any thread
//! runs, and the driver is a mode of the binary, not a test that would count as
//! passing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cohort::prelude::*;
use cohort::transport::LaunchError;
use cohort::ClusterError;
use cohort_slurm::{Allocation, SlurmError, SlurmManager};

/// What the test cluster is, from `$DIR/env`.
#[derive(Debug, Clone)]
struct TestSlurm {
    nodes: Vec<String>,
    dir: PathBuf,
}

fn slurm_dir() -> PathBuf {
    PathBuf::from(std::env::var("COHORT_TEST_SLURM_DIR").unwrap_or("/tmp/cohort-slurm".into()))
}

/// Reads the test cluster's env file, starting the cluster first (without
/// installing anything) if it is not there. Sets `SLURM_CONF`: call before threads.
fn test_slurm() -> Option<TestSlurm> {
    let dir = slurm_dir();
    let env = dir.join("env");
    if !env.exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slurm-test-env.sh");
        let _ = Command::new("bash")
            .arg(script)
            .arg("--no-install")
            .env_remove("CI")
            .stdin(Stdio::null())
            .status();
    }
    let text = std::fs::read_to_string(&env).ok()?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    // SAFETY (of the environment): `main` calls this before it starts any thread.
    std::env::set_var("SLURM_CONF", get("SLURM_CONF")?);
    Some(TestSlurm {
        nodes: get("NODES")?.split_whitespace().map(String::from).collect(),
        dir,
    })
}

/// Whether this is a CI run (`CI` set and not `false`/`0`), where a test must not skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

type Outcome = Result<(), String>;

/// A test of this file: its name and its body.
type Test = (&'static str, fn(&TestSlurm) -> Outcome);

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

#[cohort::remote]
fn say(text: String) {
    println!("{text}");
    eprintln!("{text} (stderr)");
}

#[cohort::remote]
fn slurm_node() -> String {
    std::env::var("SLURMD_NODENAME").unwrap_or_default()
}

/// The processes on this worker's host, as the worker sees them.
#[cohort::remote]
fn my_node_mates() -> Vec<u32> {
    let mut v = cohort::procs_of(cohort::myid());
    v.sort_unstable();
    v
}

#[cohort::remote]
fn call_peer(peer: u32) -> u32 {
    blocking::remotecall_fetch(cohort::builtins::remote_myid, peer, ()).unwrap()
}

/// This process's and its parent's (the task wrapper's) command lines and
/// environments, as one string.
#[cohort::remote]
fn own_argv_and_env() -> String {
    let ppid = std::os::unix::process::parent_id();
    ["self".to_string(), ppid.to_string()]
        .iter()
        .flat_map(|p| ["cmdline", "environ"].map(|f| format!("/proc/{p}/{f}")))
        .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The command lines and environments of this process's srun children.
fn sruns_argv_and_env() -> Vec<String> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            ppid == Some(me) && stat.contains("(srun)")
        })
        .map(|e| {
            ["cmdline", "environ"]
                .map(|f| {
                    String::from_utf8_lossy(&std::fs::read(e.path().join(f)).unwrap_or_default())
                        .into_owned()
                })
                .join("\n")
        })
        .collect()
}

/// Runs `program args` and returns its stdout, or an error with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits (polling, with a deadline) until squeue no longer lists `what` (a job id, or
/// `JOB.STEP` with `steps`). squeue lists every job (or step) here, so that a failing
/// squeue is an error rather than an empty list.
fn gone_from_squeue(what: &str, steps: bool) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let args: &[&str] = if steps {
            &["-h", "-s", "-o", "%i"]
        } else {
            &["-h", "-o", "%i"]
        };
        let out = run("squeue", args)?;
        if !out.lines().any(|l| l.trim() == what) {
            return Ok(());
        }
        check!(
            Instant::now() < deadline,
            "{what} is still in squeue: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The workers answer, report the Slurm node they run on, call each other, and are
/// grouped by node.
fn exercise(c: &Cluster, pids: &[Pid], nodes: &[String]) -> Outcome {
    let mut seen = Vec::new();
    for &p in pids {
        let id = c
            .remotecall_fetch_blocking(cohort::builtins::remote_myid, p, ())
            .map_err(|e| e.to_string())?;
        check!(id == p, "worker {p} says it is {id}");
        let node = c
            .remotecall_fetch_blocking(slurm_node, p, ())
            .map_err(|e| e.to_string())?;
        check!(
            nodes.contains(&node),
            "worker {p} runs on {node:?}, not a test node"
        );
        seen.push((p, node));
    }
    // The cookie is on no command line and in no environment: not the workers', not
    // their wrappers', not srun's.
    let cookie = c.cookie().expose().to_string();
    for &p in pids {
        let seen = c
            .remotecall_fetch_blocking(own_argv_and_env, p, ())
            .map_err(|e| e.to_string())?;
        check!(
            seen.contains("--cohort-worker"),
            "worker {p}'s command line was read: {seen}"
        );
        check!(
            !seen.contains(&cookie),
            "worker {p}'s argv or environment holds the cookie"
        );
    }
    let sruns = sruns_argv_and_env();
    check!(!sruns.is_empty(), "srun runs while the workers do");
    check!(
        sruns
            .iter()
            .all(|s| s.contains("--input=all") && !s.contains(&cookie)),
        "srun's argv or environment holds the cookie"
    );
    if pids.len() >= 2 {
        let got = c
            .remotecall_fetch_blocking(call_peer, pids[0], (pids[1],))
            .map_err(|e| e.to_string())?;
        check!(got == pids[1], "worker to worker call answered {got}");
    }
    // procs(pid) groups by the node name Slurm reported (both nodes are this machine,
    // so the OS host name could not tell them apart).
    for (p, node) in &seen {
        let mut same: Vec<Pid> = seen
            .iter()
            .filter(|(_, n)| n == node)
            .map(|(q, _)| *q)
            .collect();
        same.sort_unstable();
        let mut got = c.procs_of(*p);
        got.sort_unstable();
        check!(
            got == same,
            "procs({p}) on {node} is {got:?}, expected {same:?}"
        );
        // The worker agrees (it counts as on its node: COHORT_HOSTNAME).
        let theirs = c
            .remotecall_fetch_blocking(my_node_mates, *p, ())
            .map_err(|e| e.to_string())?;
        check!(
            theirs == same,
            "worker {p} sees {theirs:?} on {node}, expected {same:?}"
        );
    }
    Ok(())
}

fn slurm_error(e: &ClusterError) -> Option<&SlurmError> {
    match e {
        ClusterError::Launch(LaunchError::Manager { source, .. }) => source.downcast_ref(),
        _ => None,
    }
}

/// `salloc --no-shell` makes an allocation over both nodes; the manager starts a step
/// of four workers in it; rmprocs ends the step (the allocation stays until
/// cancelled).
fn steps_in_an_salloc_allocation(s: &TestSlurm) -> Outcome {
    let mut salloc = Command::new("salloc");
    salloc.args([
        "--no-shell",
        "-N",
        "2",
        "-n",
        "4",
        "-J",
        "cohort-test-alloc",
        "--time=10",
    ]);
    let out = run_bounded(salloc, "salloc --no-shell")?;
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let job = said
        .split_whitespace()
        .skip_while(|w| *w != "allocation")
        .nth(1)
        .map(String::from)
        .ok_or_else(|| format!("salloc said: {said}"))?;
    let result = (|| {
        let alloc = Allocation::from_vars(|k| match k {
            "SLURM_JOB_ID" => Some(job.clone()),
            "SLURM_NTASKS" => Some("4".into()),
            _ => None,
        })
        .map_err(|e| e.to_string())?;
        let m = SlurmManager::in_allocation(alloc).timeout(Duration::from_secs(60));
        let c = Cluster::new();
        let pids = c
            .launch_blocking(
                AddProcs::with_manager(m.clone()).worker_timeout(Duration::from_secs(30)),
            )
            .map_err(|e| e.to_string())?;
        check!(pids.len() == 4, "{pids:?}");
        exercise(&c, &pids, &s.nodes)?;
        let steps = m.steps();
        check!(steps.len() == 1 && steps[0].job == job, "{steps:?}");
        let step = format!("{}.{}", steps[0].job, steps[0].step);
        c.rmprocs_blocking(&pids, Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        gone_from_squeue(&step, true)
    })();
    let _ = run("scancel", &[&job]);
    result
}

/// The manager requests a job of its own, one task on each node; a worker killed
/// with SIGKILL is noticed, and removing the other ends the job.
fn request_an_allocation(s: &TestSlurm) -> Outcome {
    let m = SlurmManager::request(2)
        .nodes(2)
        .ntasks_per_node(1)
        .time("10")
        .mem("64M")
        .partition("cohort")
        .timeout(Duration::from_secs(60));
    let c = Cluster::new();
    let pids = c
        .launch_blocking(AddProcs::with_manager(m.clone()).worker_timeout(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    check!(pids.len() == 2, "{pids:?}");
    exercise(&c, &pids, &s.nodes)?;
    let mut nodes: Vec<String> = pids
        .iter()
        .map(|&p| {
            c.remotecall_fetch_blocking(slurm_node, p, ())
                .unwrap_or_default()
        })
        .collect();
    nodes.sort();
    check!(nodes == s.nodes, "one task per node: {nodes:?}");
    let steps = m.steps();
    check!(steps.len() == 1, "{steps:?}");
    let job = steps[0].job.clone();
    // A worker dies: the cluster notices and removes it.
    let os = c
        .remotecall_fetch_blocking(cohort::builtins::getpid, pids[0], ())
        .map_err(|e| e.to_string())?;
    // SAFETY: kill(2) takes no pointers; the pid is a worker of this test (on this
    // machine, as both test nodes are).
    unsafe { libc::kill(os as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.procs().contains(&pids[0]) {
        check!(
            Instant::now() < deadline,
            "killed worker {} still listed",
            pids[0]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    check!(
        c.remotecall_fetch_blocking(cohort::builtins::remote_myid, pids[1], ())
            .map_err(|e| e.to_string())?
            == pids[1],
        "the other worker still answers"
    );
    c.rmprocs_blocking(&pids[1..], Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    gone_from_squeue(&job, false)?;
    check!(!m.steps()[0].running, "srun has exited");
    Ok(())
}

/// Under TLS the credentials travel with the cookie on srun's stdin (`--tls-stdin`):
/// the workers answer over TLS and call each other, and the key is on no command
/// line either.
fn tls_through_srun(s: &TestSlurm) -> Outcome {
    let m = SlurmManager::request(2)
        .nodes(2)
        .timeout(Duration::from_secs(60));
    let c = Cluster::new();
    let pids = c
        .launch_blocking(
            AddProcs::with_manager(m.clone())
                .tls(cohort::TlsMode::Generate)
                .worker_timeout(Duration::from_secs(30)),
        )
        .map_err(|e| e.to_string())?;
    check!(pids.len() == 2, "{pids:?}");
    // This launch's srun (the other tests' run beside it in this process).
    let name = m.steps().first().map(|s| s.name.clone()).ok_or("no step")?;
    let ours: Vec<String> = sruns_argv_and_env()
        .into_iter()
        .filter(|a| a.contains(&format!("--job-name={name}")))
        .collect();
    check!(ours.len() == 1, "one srun for the launch: {}", ours.len());
    check!(
        ours[0].contains("--tls-stdin") && !ours[0].contains("PRIVATE KEY"),
        "srun passes --tls-stdin and no key"
    );
    exercise(&c, &pids, &s.nodes)?;
    let job = m.steps().first().map(|s| s.job.clone()).ok_or("no step")?;
    c.rmprocs_blocking(&pids, Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    gone_from_squeue(&job, false)
}

/// A partition that does not exist: srun's refusal, at once, in the error.
fn refused_partition(_: &TestSlurm) -> Outcome {
    let m = SlurmManager::request(1)
        .partition("no-such-partition")
        .timeout(Duration::from_secs(60));
    let started = Instant::now();
    let e = Cluster::new()
        .launch_blocking(AddProcs::with_manager(m.clone()))
        .err()
        .ok_or("a launch in a missing partition succeeded")?;
    let text = e.to_string();
    println!("the launch failed as it should: {text}");
    match slurm_error(&e) {
        Some(SlurmError::Refused { said, .. }) => check!(
            said.contains("Invalid partition name specified"),
            "the error names Slurm's reason: {text}"
        ),
        other => {
            return Err(format!(
                "expected SlurmError::Refused, got {other:?}: {text}"
            ))
        }
    }
    // Refused well before the launch timeout (srun exits at once); not a timing
    // assertion on the scheduler, only that the error did not come from the deadline.
    check!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    check!(m.steps().is_empty(), "no step was made: {:?}", m.steps());
    Ok(())
}

/// More nodes than the cluster has: Slurm keeps the job pending; the launch fails at
/// its timeout with Slurm's pending reason, and the job is cancelled.
fn pending_past_the_timeout(_: &TestSlurm) -> Outcome {
    let m = SlurmManager::request(3)
        .nodes(3)
        .timeout(Duration::from_secs(5));
    let e = Cluster::new()
        .launch_blocking(AddProcs::with_manager(m))
        .err()
        .ok_or("a launch on 3 nodes of 2 succeeded")?;
    let text = e.to_string();
    println!("the launch failed as it should: {text}");
    let job = match slurm_error(&e) {
        Some(SlurmError::Pending { job, reason, .. }) => {
            check!(
                reason != "unknown" && text.contains(reason.as_str()),
                "Slurm's reason is named: {text}"
            );
            job.clone()
        }
        // A Slurm configured with EnforcePartLimits refuses it instead.
        Some(SlurmError::Refused { said, .. }) => {
            check!(!said.is_empty(), "srun's message is in the error: {text}");
            return Ok(());
        }
        other => {
            return Err(format!(
                "expected SlurmError::Pending, got {other:?}: {text}"
            ))
        }
    };
    gone_from_squeue(&job, false)
}

/// A task that exits before it reports its address: the launch fails with its exit
/// status, and the job is cancelled.
fn task_exits_before_reporting(_: &TestSlurm) -> Outcome {
    let m = SlurmManager::request(2)
        .executable("/bin/false")
        .timeout(Duration::from_secs(60));
    let e = Cluster::new()
        .launch_blocking(AddProcs::with_manager(m.clone()))
        .err()
        .ok_or("a launch of /bin/false succeeded")?;
    let text = e.to_string();
    println!("the launch failed as it should: {text}");
    match slurm_error(&e) {
        Some(SlurmError::TaskExited { status, node, .. }) => {
            check!(*status == 1, "status of /bin/false: {text}");
            check!(node.starts_with("cohort"), "the node is named: {text}");
        }
        other => {
            return Err(format!(
                "expected SlurmError::TaskExited, got {other:?}: {text}"
            ))
        }
    }
    for s in m.steps() {
        gone_from_squeue(&s.job, false)?;
    }
    Ok(())
}

/// Tasks that start but never print an address (a hung start-up): the launch fails
/// at its timeout, naming how many reported, and the running job is cancelled.
fn silent_tasks_time_out(s: &TestSlurm) -> Outcome {
    let script = s.dir.join(format!("silent-{}.sh", std::process::id()));
    std::fs::write(&script, "#!/bin/sh\nexec sleep 300\n").map_err(|e| e.to_string())?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
    }
    let m = SlurmManager::request(2)
        .executable(script.display().to_string())
        .timeout(Duration::from_secs(3));
    let result = Cluster::new()
        .launch_blocking(AddProcs::with_manager(m.clone()))
        .err();
    let _ = std::fs::remove_file(&script);
    let e = result.ok_or("a launch of tasks that never report succeeded")?;
    let text = e.to_string();
    println!("the launch failed as it should: {text}");
    match slurm_error(&e) {
        Some(SlurmError::TimedOut {
            reported: 0,
            expected: 2,
            ..
        }) => {}
        // Pending for the whole 3 s (a busy test cluster) is the other honest outcome.
        Some(SlurmError::Pending { .. }) => {}
        other => {
            return Err(format!(
                "expected SlurmError::TimedOut, got {other:?}: {text}"
            ))
        }
    }
    let steps = m.steps();
    for st in &steps {
        check!(!st.running, "srun was stopped: {st:?}");
        gone_from_squeue(&st.job, false)?;
    }
    Ok(())
}

/// Writes a batch script that runs this binary as the driver.
fn batch_script(s: &TestSlurm, name: &str, header: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = s.dir.join(format!("{name}-{}.sh", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n{header}\nexec {} --slurm-driver\n",
            exe.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(path)
}

/// Runs `cmd` (which waits for its job) with a deadline; its output.
fn run_bounded(mut cmd: Command, what: &str) -> Result<std::process::Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            return child.wait_with_output().map_err(|e| e.to_string());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} did not finish within 180 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the driver printed, checked: three workers on the two nodes, their output
/// forwarded with the pid prefix.
fn check_driver_output(out: &str) -> Outcome {
    check!(out.contains("driver: 3 workers"), "driver output:\n{out}");
    for pid in 2..=4 {
        check!(
            out.contains(&format!("From worker {pid}:\thello from the driver")),
            "worker {pid}'s output is forwarded with its pid:\n{out}"
        );
    }
    check!(out.contains("driver: done"), "driver output:\n{out}");
    Ok(())
}

/// sbatch runs this binary as the driver; it starts one worker per task of its job
/// (`SlurmManager::from_allocation`).
fn sbatch_driver(s: &TestSlurm) -> Outcome {
    let out_file = s.dir.join(format!("sbatch-{}.out", std::process::id()));
    let script = batch_script(
        s,
        "sbatch",
        &format!(
            "#SBATCH --nodes=2\n#SBATCH --ntasks=3\n#SBATCH --time=10\n#SBATCH --output={}",
            out_file.display()
        ),
    )?;
    let mut cmd = Command::new("sbatch");
    cmd.args(["--parsable", "--wait", "-J", "cohort-test-sbatch"])
        .arg(&script);
    let out = run_bounded(cmd, "sbatch --wait")?;
    let job = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_file(&out_file);
    check!(
        out.status.success(),
        "sbatch --wait: {} {}\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("the driver printed:\n{text}");
    check_driver_output(&text)?;
    gone_from_squeue(&job, false)
}

/// salloc runs this binary as the driver, in the allocation it made.
fn salloc_driver(_: &TestSlurm) -> Outcome {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("salloc");
    cmd.args([
        "-N",
        "2",
        "-n",
        "3",
        "--time=10",
        "-J",
        "cohort-test-salloc",
    ])
    .arg(exe)
    .arg("--slurm-driver");
    let out = run_bounded(cmd, "salloc")?;
    let text = String::from_utf8_lossy(&out.stdout);
    check!(
        out.status.success(),
        "salloc: {}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    check_driver_output(&text)
}

/// The driver program of the sbatch and salloc tests: a worker per task of its
/// allocation, each says hello (through the forwarded output), all are removed.
fn driver_main() -> ! {
    let run = || -> Result<(), String> {
        let m = SlurmManager::from_allocation()
            .map_err(|e| e.to_string())?
            .timeout(Duration::from_secs(60));
        let pids = AddProcs::with_manager(m.clone())
            .worker_timeout(Duration::from_secs(30))
            .launch_blocking()
            .map_err(|e| e.to_string())?;
        println!("driver: {} workers", pids.len());
        for &p in &pids {
            blocking::remotecall_fetch(say, p, ("hello from the driver".to_string(),))
                .map_err(|e| e.to_string())?;
        }
        blocking::rmprocs(&pids, Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        // The workers' step has ended.
        for s in m.steps() {
            gone_from_squeue(&format!("{}.{}", s.job, s.step), true)?;
        }
        println!("driver: done");
        Ok(())
    };
    match run() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            println!("driver failed: {e}");
            std::process::exit(1)
        }
    }
}

/// A driver that requests a job, starts two workers and exits at once, without
/// removing them or running any destructor: prints `job: ID` first.
fn abrupt_driver_main() -> ! {
    let m = SlurmManager::request(2).timeout(Duration::from_secs(60));
    match AddProcs::with_manager(m.clone())
        .worker_timeout(Duration::from_secs(30))
        .launch_blocking()
    {
        Ok(pids) => {
            let job = m.steps().first().map(|s| s.job.clone()).unwrap_or_default();
            println!("job: {job}");
            println!("workers: {}", pids.len());
            std::process::exit(0)
        }
        Err(e) => {
            println!("driver failed: {e}");
            std::process::exit(1)
        }
    }
}

/// The driver exits without rmprocs: its workers lose the master and exit, srun ends,
/// and the job leaves the queue.
fn driver_exit_releases_the_job(_: &TestSlurm) -> Outcome {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("--slurm-abrupt-driver");
    let out = run_bounded(cmd, "the abrupt driver")?;
    let text = String::from_utf8_lossy(&out.stdout);
    check!(
        out.status.success() && text.contains("workers: 2"),
        "the driver: {}\n{text}",
        out.status
    );
    let job = text
        .lines()
        .find_map(|l| l.strip_prefix("job: "))
        .filter(|j| !j.is_empty())
        .ok_or_else(|| format!("no job id in:\n{text}"))?;
    gone_from_squeue(job, false)
}

fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--slurm-driver") => driver_main(),
        Some("--slurm-abrupt-driver") => abrupt_driver_main(),
        _ => {}
    }
    let slurm = test_slurm();
    let args = libtest_mimic::Arguments::from_args();
    let tests: [Test; 10] = [
        ("tls_through_srun", tls_through_srun),
        ("silent_tasks_time_out", silent_tasks_time_out),
        ("driver_exit_releases_the_job", driver_exit_releases_the_job),
        (
            "steps_in_an_salloc_allocation",
            steps_in_an_salloc_allocation,
        ),
        ("request_an_allocation", request_an_allocation),
        ("refused_partition", refused_partition),
        ("pending_past_the_timeout", pending_past_the_timeout),
        ("task_exits_before_reporting", task_exits_before_reporting),
        ("sbatch_driver", sbatch_driver),
        ("salloc_driver", salloc_driver),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let slurm = slurm.clone();
            libtest_mimic::Trial::test(name, move || match &slurm {
                Some(s) => f(s).map_err(Into::into),
                None if in_ci() => Err("no test Slurm under CI: scripts/slurm-test-env.sh \
                                        (run by .ci/run as root) must have started it"
                    .into()),
                None => {
                    println!("skipped: no test Slurm (run scripts/slurm-test-env.sh as root)");
                    Ok(())
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
