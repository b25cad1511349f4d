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

#[test]
fn stock_worker_joins_a_listening_master_with_a_cookie_file() {
    let c = cohort::Cluster::new();
    let joins = c.listen_for_workers(None).unwrap();
    let file = std::env::temp_dir().join(format!("cohort-join-cookie-{}", std::process::id()));
    joins.write_cookie_file(&file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "only its owner can read the cookie"
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cohort-worker"))
        .args(["--join", &joins.addr().to_string(), "--cookie-file"])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let w = loop {
        if let Some(&w) = c.workers().iter().find(|&&p| p != 1) {
            break w;
        }
        assert!(std::time::Instant::now() < deadline, "the worker joined");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        c.remotecall_fetch_blocking(cohort::builtins::getpid, w, ())
            .unwrap(),
        child.id()
    );
    c.rmprocs_blocking(&[w], Some(std::time::Duration::from_secs(20)))
        .unwrap();
    assert!(child.wait().unwrap().success());
    std::fs::remove_file(file).unwrap();
}

#[test]
fn a_bad_join_address_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cohort-worker"))
        .args(["--join", "no-port-here"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad --join no-port-here"), "{err}");
}
