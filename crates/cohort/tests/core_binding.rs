//! Workers bound to CPUs (`LocalManager::bind_cores`, `AddProcs::bind_cores`): each
//! bound worker, and every thread in it, may run on exactly one of the CPUs this
//! process may run on, the bound workers take those CPUs in turn across launches,
//! workers started without it keep this process's whole set, and asking
//! `AddProcs` to bind the workers of a manager of one's own is refused.

use std::collections::BTreeSet;

use cohort::prelude::*;
use cohort::LocalManager;

/// A CPU list as `/proc` writes it (`0-3,6`).
fn parse_list(list: &str) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => {
                out.insert(part.parse::<usize>().unwrap());
            }
        }
    }
    out
}

/// The `Cpus_allowed_list` of each of this process's threads.
fn thread_cpus() -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status"));
        // A thread may end between the listing and the read.
        let Ok(status) = status else { continue };
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list in /proc status");
        out.push(parse_list(list).into_iter().collect());
    }
    out
}

#[test]
fn bound_workers_run_on_one_cpu_each_and_take_the_cpus_in_turn() {
    let mine: BTreeSet<usize> = cohort::transport::cpus::allowed()
        .unwrap()
        .into_iter()
        .collect();
    // One bound worker each way: the manager's option, and `AddProcs`'s.
    let mut bound = AddProcs::with_manager(LocalManager::new(1).bind_cores(true))
        .launch_blocking()
        .unwrap();
    bound.extend(
        AddProcs::local(1)
            .bind_cores(true)
            .launch_blocking()
            .unwrap(),
    );
    let free = cohort::blocking::addprocs(1).unwrap();
    let mut cpus = Vec::new();
    for &p in &bound {
        let threads = cohort::blocking::remotecall_fetch(thread_cpus, p, ()).unwrap();
        // The runtime's threads are up by now (the call ran on one of them).
        assert!(threads.len() > 1, "worker {p}: {threads:?}");
        let first = threads[0].clone();
        assert_eq!(first.len(), 1, "worker {p} may run on {first:?}");
        assert!(
            threads.iter().all(|t| *t == first),
            "worker {p}: {threads:?}"
        );
        assert!(mine.contains(&first[0]), "{first:?} is not among {mine:?}");
        cpus.push(first[0]);
    }
    if mine.len() >= 2 {
        assert_ne!(cpus[0], cpus[1], "two bound workers on one CPU of {mine:?}");
    }
    let threads = cohort::blocking::remotecall_fetch(thread_cpus, free[0], ()).unwrap();
    let all: Vec<usize> = mine.iter().copied().collect();
    assert!(
        threads.iter().all(|t| *t == all),
        "unbound: {threads:?}, this process: {all:?}"
    );
    cohort::blocking::rmprocs(&[bound, free].concat(), None).unwrap();
}

#[test]
fn bind_cores_with_a_manager_of_ones_own_is_refused_before_anything_starts() {
    let e = AddProcs::with_manager(LocalManager::new(1))
        .bind_cores(true)
        .launch_blocking()
        .unwrap_err();
    assert!(matches!(e, cohort::ClusterError::BindUnsupported), "{e}");
    assert!(e.to_string().contains("LocalManager::bind_cores"), "{e}");
}
