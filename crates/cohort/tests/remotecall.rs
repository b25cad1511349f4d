//! The remotecall family against real worker processes (this test binary is its own
//! worker executable).

use std::sync::OnceLock;

use cohort::prelude::*;
use cohort::Future;
use cohort::{CallError, ErrorKind};

#[cohort::remote]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[cohort::remote]
fn whoami() -> u32 {
    cohort::myid()
}

#[cohort::remote]
fn boom(msg: String) -> u8 {
    panic!("{msg}")
}

fn unregistered_square(x: u64) -> u64 {
    x * x
}

/// One cluster for the whole test binary: tests run in parallel threads.
fn cluster() -> Vec<Pid> {
    static W: OnceLock<Vec<Pid>> = OnceLock::new();
    W.get_or_init(|| blocking::addprocs(2).expect("addprocs"))
        .clone()
}

#[test]
fn registered_function_runs_on_each_worker() {
    let w = cluster();
    for &p in &w {
        assert_eq!(blocking::remotecall_fetch(add, p, (40, 2)).unwrap(), 42);
        assert_eq!(blocking::remotecall_fetch(whoami, p, ()).unwrap(), p);
    }
    assert_eq!(cohort::nprocs(), 3);
    assert_eq!(cohort::workers(), w);
}

#[test]
fn closures_and_unregistered_functions_ship_by_offset() {
    let w = cluster();
    assert_eq!(
        blocking::remotecall_fetch(unregistered_square, w[0], (12,)).unwrap(),
        144
    );
    let base = 1000u64;
    let c = cohort::closure!([base] |x: u64| base + x + cohort::myid() as u64);
    assert_eq!(
        blocking::remotecall_fetch(c, w[1], (5,)).unwrap(),
        1005 + w[1] as u64
    );
}

#[test]
fn futures_fetch_wait_isready() {
    let w = cluster();
    let f = remotecall(add, w[0], (1, 2));
    f.wait_blocking().unwrap();
    assert!(f.isready_blocking().unwrap());
    assert_eq!(f.fetch_blocking().unwrap(), 3);
    assert_eq!(f.fetch_blocking().unwrap(), 3);
    let g = blocking::remotecall_wait(whoami, w[1], ()).unwrap();
    assert!(g.isready_blocking().unwrap());
    assert_eq!(g.fetch_blocking().unwrap(), w[1]);
}

#[test]
fn panics_come_back_as_remote_exceptions_and_worker_survives() {
    let w = cluster();
    let err = blocking::remotecall_fetch(boom, w[0], ("kaboom".to_string(),)).unwrap_err();
    match err {
        CallError::Remote(e) => {
            assert_eq!(e.pid, w[0]);
            assert_eq!(e.kind, ErrorKind::Panic);
            assert_eq!(e.message, "kaboom");
            assert!(e.function.ends_with("boom"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(blocking::remotecall_fetch(add, w[0], (1, 1)).unwrap(), 2);
    let f = remotecall(boom, w[1], ("later".to_string(),));
    assert!(matches!(f.fetch_blocking(), Err(CallError::Remote(_))));
}

#[test]
fn future_put_is_write_once_across_processes() {
    let w = cluster();
    let f: Future<String> = Future::new(w[0]);
    assert!(!f.isready_blocking().unwrap());
    f.put_blocking("first".into()).unwrap();
    assert_eq!(f.put_blocking("second".into()), Err(CallError::AlreadySet));
    // A second put from another worker is refused by the owner too.
    let g = f.clone();
    let r = blocking::remotecall_fetch(
        cohort::closure!([g] || g.put_blocking("from worker".into()).is_err()),
        w[1],
        (),
    );
    assert!(r.unwrap());
    assert_eq!(f.fetch_blocking().unwrap(), "first");
}

#[test]
fn spawnat_any_goes_round_robin_and_fetchfrom_works() {
    let w = cluster();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(spawnat(Target::Any, whoami).fetch_blocking().unwrap());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), w);
    assert_eq!(
        blocking::fetchfrom(w[1], || cohort::myid() * 10).unwrap(),
        w[1] * 10
    );
}

#[test]
fn worker_to_worker_calls_connect_lazily() {
    let w = cluster();
    let (a, b) = (w[0], w[1]);
    let v = blocking::remotecall_fetch(
        cohort::closure!([b] || blocking::remotecall_fetch(whoami, *b, ()).unwrap()),
        a,
        (),
    )
    .unwrap();
    assert_eq!(v, b);
}

#[test]
fn unknown_pid_is_a_clear_error() {
    let _ = cluster();
    let e = blocking::remotecall_fetch(add, 99, (1, 2)).unwrap_err();
    assert_eq!(e, CallError::NoSuchProcess { pid: 99 });
}

#[test]
fn remote_do_runs_for_effect() {
    let w = cluster();
    let f: Future<u32> = Future::new(1);
    let g = f.clone();
    cohort::remote_do(
        cohort::closure!([g] || g.put_blocking(7).unwrap()),
        w[0],
        (),
    )
    .unwrap();
    assert_eq!(f.fetch_blocking().unwrap(), 7);
}
