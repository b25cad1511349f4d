//! `SshManager` against a real OpenSSH server on 127.0.0.1 (started by
//! `scripts/sshd-test-env.sh`, which `.ci/run` calls). The "remote" worker executable
//! is this test binary, started with `--cohort-worker` through sshd.
//!
//! Skips (printing "skipped: ...") when no test sshd can be had, except under CI
//! (`CI` set, as `.ci/run` does): there a missing sshd fails the tests.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cohort::prelude::*;
use cohort::transport::SshManager;

mod common;
use common::{in_ci, sshd, Sshd};

/// Each test has a cluster of its own; only the tests that count this process's
/// `ssh -W` children take this lock (those are process-wide).
static TUNNELS: Mutex<()> = Mutex::new(());

macro_rules! need_sshd {
    () => {
        match sshd() {
            Some(s) => s,
            None => {
                assert!(
                    !in_ci(),
                    "no test sshd under CI: scripts/sshd-test-env.sh (run by .ci/run as \
                     root) must have started it"
                );
                println!("skipped: no test sshd (run scripts/sshd-test-env.sh as root)");
                return;
            }
        }
    };
}

fn manager(s: &Sshd, spec: &str, key: &str) -> SshManager {
    SshManager::new([format!("{spec}@127.0.0.1:{}", s.port)])
        .unwrap()
        .sshflags([
            "-i",
            key,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .connect_timeout(Duration::from_secs(5))
        .executable(std::env::current_exe().unwrap().display().to_string())
}

fn spec(s: &Sshd, count: &str) -> String {
    format!("{count}*{}", s.user)
}

/// Checks the workers answer, call each other, and are gone after rmprocs.
fn exercise(c: &Cluster, pids: &[Pid]) {
    let mut os_pids = Vec::new();
    for &p in pids {
        assert_eq!(
            c.remotecall_fetch_blocking(cohort::builtins::remote_myid, p, ())
                .unwrap(),
            p
        );
        os_pids.push(
            c.remotecall_fetch_blocking(cohort::builtins::getpid, p, ())
                .unwrap(),
        );
    }
    if pids.len() >= 2 {
        // Worker to worker (lazy all-to-all) over the direct path.
        assert_eq!(
            c.remotecall_fetch_blocking(call_peer, pids[0], (pids[1],))
                .unwrap(),
            pids[1]
        );
    }
    c.rmprocs_blocking(pids, Some(Duration::from_secs(20)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for os in os_pids {
        while Path::new(&format!("/proc/{os}")).exists()
            && !std::fs::read_to_string(format!("/proc/{os}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
        {
            assert!(Instant::now() < deadline, "worker process {os} still runs");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cohort::remote]
fn call_peer(peer: u32) -> u32 {
    blocking::remotecall_fetch(cohort::builtins::remote_myid, peer, ()).unwrap()
}

#[test]
fn ssh_plain() {
    let s = need_sshd!();
    let m = manager(&s, &spec(&s, "2"), &s.key);
    let c = Cluster::new();
    let pids = c
        .launch_blocking(AddProcs::with_manager(m).worker_timeout(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(pids.len(), 2);
    exercise(&c, &pids);
}

#[test]
fn ssh_auto_count_is_the_hosts_cpu_threads() {
    let s = need_sshd!();
    let m = manager(&s, &spec(&s, "auto"), &s.key);
    let c = Cluster::new();
    let pids = c
        .launch_blocking(AddProcs::with_manager(m).worker_timeout(Duration::from_secs(20)))
        .unwrap();
    let threads = std::thread::available_parallelism().unwrap().get();
    assert_eq!(pids.len(), threads);
    exercise(&c, &pids);
}

#[test]
fn ssh_tunnel() {
    let s = need_sshd!();
    let _g = TUNNELS.lock().unwrap_or_else(|e| e.into_inner());
    let m = manager(&s, &spec(&s, "2"), &s.key).tunnel(true);
    let c = Cluster::new();
    let pids = c
        .launch_blocking(AddProcs::with_manager(m).worker_timeout(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(pids.len(), 2);
    // The master's connections are ssh processes (`ssh ... -W 127.0.0.1:PORT`), our
    // children.
    let me = std::process::id();
    let tunnels = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok().map(|c| (e, c)))
        .filter(|(e, c)| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            ppid == Some(me) && c.split(|b| *b == 0).any(|a| a == b"-W")
        })
        .count();
    assert_eq!(tunnels, 2, "one ssh -W tunnel per worker");
    exercise(&c, &pids);
}

#[test]
fn ssh_multiplex() {
    let s = need_sshd!();
    let _g = TUNNELS.lock().unwrap_or_else(|e| e.into_inner());
    let m = manager(&s, &spec(&s, "2"), &s.key)
        .multiplex(true)
        .tunnel(true);
    let c = Cluster::new();
    let pids = c
        .launch_blocking(AddProcs::with_manager(m.clone()).worker_timeout(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(pids.len(), 2);
    let paths = m.control_paths();
    assert_eq!(paths.len(), 1, "one control master for the one machine");
    let check = std::process::Command::new("ssh")
        .arg("-o")
        .arg(format!("ControlPath={}", paths[0].1.display()))
        .args(["-O", "check", "-p", &s.port.to_string()])
        .arg(format!("{}@127.0.0.1", s.user))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "control master not running: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    exercise(&c, &pids);
    drop(m);
}

#[test]
fn ssh_wrong_key_is_a_clear_error() {
    let s = need_sshd!();
    let start = Instant::now();
    let m = manager(&s, &spec(&s, "2"), &s.wrong_key);
    let err = Cluster::new()
        .launch_blocking(AddProcs::with_manager(m).worker_timeout(Duration::from_secs(20)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("Permission denied"), "unclear error: {err}");
    assert!(
        err.contains("127.0.0.1"),
        "error does not name the host: {err}"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
    // Same with multiplexing: the control master fails, nothing waits.
    let m = manager(&s, &spec(&s, "1"), &s.wrong_key).multiplex(true);
    let err = Cluster::new()
        .launch_blocking(AddProcs::with_manager(m))
        .unwrap_err()
        .to_string();
    assert!(err.contains("Permission denied"), "unclear error: {err}");
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[test]
fn machine_file_specs_launch() {
    let s = need_sshd!();
    let dir = std::env::temp_dir().join(format!("cohort-mf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("machines");
    std::fs::write(
        &file,
        format!(
            "# test machines\n1*{}@127.0.0.1:{}\n1*{}@127.0.0.1:{} 127.0.0.1\n",
            s.user, s.port, s.user, s.port
        ),
    )
    .unwrap();
    let m = SshManager::from_machine_file(&file)
        .unwrap()
        .sshflags([
            "-i",
            &s.key,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ])
        .executable(std::env::current_exe().unwrap().display().to_string());
    let c = Cluster::new();
    let pids = c
        .launch_blocking(AddProcs::with_manager(m).worker_timeout(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(pids.len(), 2);
    exercise(&c, &pids);
    let _ = std::fs::remove_dir_all(dir);
}

/// The inner half of `machine_file_flag_adds_workers_before_main`: run in a child
/// process with `COHORT_MACHINE_FILE` set, as a program started with
/// `--machine-file FILE` would be.
#[test]
#[ignore = "run by machine_file_flag_adds_workers_before_main in a child process"]
fn machine_file_child() {
    cohort::init();
    println!("machine-file workers: {:?}", cohort::workers());
    for p in cohort::workers() {
        assert_eq!(
            blocking::remotecall_fetch(cohort::builtins::remote_myid, p, ()).unwrap(),
            p
        );
    }
}

#[test]
fn machine_file_flag_adds_workers_before_main() {
    let s = need_sshd!();
    let dir = std::env::temp_dir().join(format!("cohort-mf2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("machines");
    std::fs::write(&file, format!("2*{}@127.0.0.1:{}\n", s.user, s.port)).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "machine_file_child", "--ignored", "--nocapture"])
        .env("COHORT_MACHINE_FILE", &file)
        .env(
            "COHORT_SSHFLAGS",
            format!(
                "-i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o IdentitiesOnly=yes",
                s.key
            ),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("machine-file workers: [2, 3]"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}
