//! A remote panic carries the worker's stack backtrace when the worker has backtraces
//! on (issue 12, point 10): `RUST_BACKTRACE` there, or `COHORT_BACKTRACE=1`; it prints
//! below the error in the driver's report. Off, only the panic's location travels.

use cohort::prelude::*;
use cohort::{CallError, ErrorKind};

#[inline(never)]
fn the_innermost_frame(x: u32) -> u32 {
    if x > 1 {
        panic!("deep trouble with {x}");
    }
    x
}

#[cohort::remote]
fn panics_deep_down(x: u32) -> u32 {
    the_innermost_frame(x) + 1
}

fn remote_panic(c: &Cluster, w: Pid) -> cohort::RemoteException {
    match c.remotecall_fetch_blocking(panics_deep_down, w, (7,)) {
        Err(CallError::Remote(e)) => e,
        other => panic!("expected a remote panic, got {other:?}"),
    }
}

#[test]
fn a_remote_panic_carries_the_workers_backtrace_when_it_has_them_on() {
    let c = Cluster::new();
    let on = c
        .launch_blocking(
            AddProcs::local(1)
                .env("RUST_BACKTRACE", "0")
                .env(cohort::BACKTRACE_ENV, "1"),
        )
        .unwrap()[0];
    let off = c
        .launch_blocking(
            AddProcs::local(1)
                .env("RUST_BACKTRACE", "0")
                .env("RUST_LIB_BACKTRACE", "0"),
        )
        .unwrap()[0];
    let e = remote_panic(&c, on);
    assert_eq!(e.kind, ErrorKind::Panic);
    assert!(e.context.starts_with("panicked at "), "{}", e.context);
    assert!(e.context.contains("stack backtrace:"), "{}", e.context);
    assert!(e.context.contains("the_innermost_frame"), "{}", e.context);
    let report = e.to_string();
    assert!(
        report.contains("deep trouble with 7\n    panicked at "),
        "the backtrace goes below the message: {report}"
    );
    let e = remote_panic(&c, off);
    assert!(e.context.starts_with("panicked at "), "{}", e.context);
    assert!(!e.context.contains("stack backtrace"), "{}", e.context);
    assert!(!e.to_string().contains('\n'), "one line: {e}");
    c.rmprocs_blocking(&[on, off], None).unwrap();
}
