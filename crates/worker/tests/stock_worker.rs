//! The stock `cohort-worker` binary as the worker executable: built-ins are served by
//! name; functions it does not link fail with an error naming them and the worker.

use cohort::prelude::*;
use cohort::{CallError, ErrorKind};

#[cohort::remote]
fn only_in_this_test(x: u32) -> u32 {
    x + 1
}

#[test]
fn stock_worker_serves_builtins_and_names_what_it_lacks() {
    let pids = AddProcs::local(1)
        .executable(env!("CARGO_BIN_EXE_cohort-worker"))
        .launch_blocking()
        .unwrap();
    let w = pids[0];
    let os = blocking::remotecall_fetch(cohort::builtins::getpid, w, ()).unwrap();
    assert_ne!(os, std::process::id());
    assert_eq!(
        blocking::remotecall_fetch(cohort::builtins::remote_myid, w, ()).unwrap(),
        w
    );

    match blocking::remotecall_fetch(only_in_this_test, w, (1,)).unwrap_err() {
        CallError::Remote(e) => {
            assert_eq!(e.kind, ErrorKind::UndefinedFunction);
            assert_eq!(e.pid, w);
            assert!(e.message.contains("only_in_this_test"), "{}", e.message);
            assert!(e.message.contains(&format!("worker {w}")), "{}", e.message);
        }
        other => panic!("unexpected {other:?}"),
    }

    // A closure cannot run in another executable.
    let err = blocking::remotecall_fetch(|| 1u8, w, ()).unwrap_err();
    assert!(
        matches!(err, CallError::CannotShipCode { pid, .. } if pid == w),
        "{err:?}"
    );

    blocking::rmprocs(&pids, None).unwrap();
}

#[test]
fn list_functions_prints_the_builtins() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cohort-worker"))
        .arg("--list-functions")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l == "cohort::stats"), "{text}");
}
