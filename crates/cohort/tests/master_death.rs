//! A master killed with SIGKILL: its workers, losing their connection to it, exit.
//!
//! The master must be a process of its own to be killed, so this target has its own
//! `main` (`harness = false`, libtest-mimic for the command line and report): started
//! with `COHORT_TEST_DRIVER=1` it is the driver — it adds two workers, prints their
//! OS pids and waits to be killed; otherwise it runs the test, which starts that
//! driver, kills it, and polls (with a deadline) until both workers have exited.

mod common;
use common::exited;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use cohort::prelude::*;

const DRIVER_ENV: &str = "COHORT_TEST_DRIVER";
const PID_LINE: &str = "worker-os-pid ";

/// The driver: two workers, their OS pids on stdout, then wait to be killed.
fn driver() -> ! {
    let pids = blocking::addprocs(2).expect("workers start");
    let mut out = std::io::stdout().lock();
    for p in pids {
        let os: u32 = blocking::remotecall_fetch(cohort::builtins::getpid, p, ()).unwrap();
        writeln!(out, "{PID_LINE}{os}").unwrap();
    }
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    drop(out);
    loop {
        std::thread::park();
    }
}

fn workers_exit_when_their_master_is_killed() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(DRIVER_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut workers = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(p) = line.strip_prefix(PID_LINE) {
            workers.push(p.trim().parse::<u32>().unwrap());
        } else if line == "ready" {
            break;
        }
    }
    assert_eq!(workers.len(), 2, "the driver reported {workers:?}");
    assert!(workers.iter().all(|&w| !exited(w)), "workers alive");
    child.kill().unwrap(); // SIGKILL: no goodbye to the workers.
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !workers.iter().all(|&w| exited(w)) {
        assert!(
            Instant::now() < deadline,
            "workers {workers:?} still run 30 s after their master was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() -> ExitCode {
    if std::env::var_os(DRIVER_ENV).is_some() {
        driver();
    }
    let args = libtest_mimic::Arguments::from_args();
    let tests = vec![libtest_mimic::Trial::test(
        "workers_exit_when_their_master_is_killed",
        || {
            workers_exit_when_their_master_is_killed();
            Ok(())
        },
    )];
    libtest_mimic::run(&args, tests).exit_code()
}
