//! Launch failures (issue 12, point 6): a worker executable that exits at once fails
//! with "exited before printing its address", its exit status and what it printed —
//! never "Broken pipe" from writing the cookie; the wait for the address line honours
//! the worker timeout; a worker that prints lines but never its address is given up
//! on after a bounded amount of output.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use cohort::prelude::*;
use cohort::transport::{AnnounceFailure, LaunchError};
use cohort::ClusterError;

/// A shell script in a fresh temporary directory, executable.
fn script(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cohort-launch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn announce_failure(e: ClusterError) -> AnnounceFailure {
    match e {
        ClusterError::Launch(LaunchError::Announce { cause, .. }) => cause,
        other => panic!("expected an announce failure, got {other:?}"),
    }
}

#[test]
fn a_worker_that_exits_at_once_reports_its_status_and_output_every_time() {
    let exe = script(
        "exits",
        "echo 'starting up' ; echo 'cannot open the data file' >&2 ; exit 3",
    );
    // Many times: the cookie write used to race the exit and fail with EPIPE.
    for _ in 0..20 {
        let e = Cluster::new()
            .launch_blocking(AddProcs::local(2).executable(&exe))
            .unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("Broken pipe"), "{text}");
        match announce_failure(e) {
            AnnounceFailure::ExitedWith { status, output } => {
                assert!(status.contains("exit status: 3"), "{status}");
                assert!(output.iter().any(|l| l == "starting up"), "{output:?}");
                assert!(
                    output.iter().any(|l| l == "cannot open the data file"),
                    "{output:?}"
                );
            }
            other => panic!("expected ExitedWith, got {other:?}"),
        }
        assert!(
            text.contains("exited before printing its address (exit status: 3)"),
            "{text}"
        );
    }
}

#[test]
fn the_wait_for_the_address_honours_the_worker_timeout() {
    let exe = script("silent", "exec sleep 60");
    let e = Cluster::new()
        .launch_blocking(
            AddProcs::local(1)
                .executable(&exe)
                .worker_timeout(Duration::from_millis(500)),
        )
        .unwrap_err();
    assert_eq!(
        announce_failure(e),
        AnnounceFailure::TimedOut {
            after: Duration::from_millis(500)
        }
    );
}

#[test]
fn a_worker_that_never_prints_its_address_is_given_up_on_after_bounded_output() {
    let exe = script("chatty", "exec yes 'not an address'");
    let e = Cluster::new()
        .launch_blocking(AddProcs::local(1).executable(&exe))
        .unwrap_err();
    assert_eq!(
        announce_failure(e),
        AnnounceFailure::TooMuchOutput {
            lines: cohort::transport::local::MAX_STARTUP_LINES
        }
    );
}
