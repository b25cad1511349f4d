//! Julia's process roles and the calls that depend on them (issue 12, point 5):
//! `myrole()`, `addprocs()` with no count (one worker per CPU thread), `interrupt()`
//! with no pids (every worker) and only on the master, and `@fetch` (`fetchfrom` on
//! whichever worker is next).

use std::time::Duration;

use cohort::prelude::*;
use cohort::{CallError, ErrorKind, ProcessRole, RemoteChannel, Target};

#[cohort::remote]
fn role_here() -> ProcessRole {
    cohort::myrole()
}

/// Whether `interrupt` refused, as master-only, to run here.
#[cohort::remote]
fn interrupt_is_refused_here() -> bool {
    matches!(
        cohort::interrupt(&[1]),
        Err(CallError::MasterOnly { what: "interrupt" })
    )
}

/// Says it started on `started`, then works until interrupted (at most a minute).
#[cohort::remote]
fn until_interrupted(started: RemoteChannel<Pid>) -> String {
    started.put_blocking(cohort::myid()).unwrap();
    let limit = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < limit {
        if cohort::interrupted() {
            return "stopped".into();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    "never interrupted".into()
}

#[test]
fn myrole_says_master_or_worker() {
    let c = Cluster::new();
    assert_eq!(c.myrole(), ProcessRole::Master);
    let w = c.launch_blocking(AddProcs::local(1)).unwrap();
    assert_eq!(
        c.remotecall_fetch_blocking(role_here, w[0], ()).unwrap(),
        ProcessRole::Worker
    );
    c.rmprocs_blocking(&w, None).unwrap();
}

#[test]
fn addprocs_with_no_count_starts_one_worker_per_cpu_thread() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local_per_cpu_thread()).unwrap();
    assert_eq!(w.len(), std::thread::available_parallelism().unwrap().get());
    c.rmprocs_blocking(&w, None).unwrap();
}

#[test]
fn interrupt_all_interrupts_every_worker_and_only_the_master_may_interrupt() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(2)).unwrap();
    // A worker may not interrupt: Julia's `interrupt` is master-only.
    assert!(c
        .remotecall_fetch_blocking(interrupt_is_refused_here, w[0], ())
        .unwrap());
    let started: RemoteChannel<Pid> = c.channel_blocking(1, 8).unwrap();
    let calls: Vec<_> = w
        .iter()
        .map(|&p| c.remotecall(until_interrupted, p, (started.clone(),)))
        .collect();
    for _ in &w {
        started.take_blocking().unwrap();
    }
    c.interrupt_all().unwrap();
    for f in calls {
        match f.fetch_blocking() {
            Err(CallError::Remote(e)) => assert_eq!(e.kind, ErrorKind::Interrupted, "{e}"),
            other => panic!("expected an interrupted call, got {other:?}"),
        }
    }
    c.rmprocs_blocking(&w, None).unwrap();
}

#[test]
fn fetchfrom_any_takes_the_workers_in_turn() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(2)).unwrap();
    let mut seen: Vec<Pid> = c.install(|| {
        (0..4)
            .map(|_| blocking::fetchfrom(Target::Any, cohort::myid).unwrap())
            .collect()
    });
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, w, "both workers, in turn");
    c.rmprocs_blocking(&w, None).unwrap();
}
