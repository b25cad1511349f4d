//! Julia's `start_worker(close_stdin, stderr_to_stdout)` for workers (issue 12,
//! point 9): `--close-stdin` puts stdin on /dev/null once the cookie is read,
//! `--stderr-to-stdout` sends stderr where stdout goes; without them both stay as
//! the manager made them.

use cohort::prelude::*;

/// Where this process's descriptor `fd` points (`/proc/self/fd/N`).
#[cohort::remote]
fn fd_target(fd: u32) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

#[test]
fn workers_can_close_stdin_and_send_stderr_to_stdout() {
    let c = Cluster::new();
    let plain = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    let asked = c
        .launch_blocking(AddProcs::local(1).args(["--close-stdin", "--stderr-to-stdout"]))
        .unwrap()[0];
    let fds = |w: Pid| -> Vec<String> {
        (0..3)
            .map(|fd| c.remotecall_fetch_blocking(fd_target, w, (fd,)).unwrap())
            .collect()
    };
    let p = fds(plain);
    assert_ne!(p[0], "/dev/null", "stdin kept: {p:?}");
    assert_ne!(p[2], p[1], "stderr apart from stdout: {p:?}");
    let a = fds(asked);
    assert_eq!(a[0], "/dev/null", "{a:?}");
    assert_eq!(a[2], a[1], "stderr goes where stdout goes: {a:?}");
    c.rmprocs_blocking(&[plain, asked], None).unwrap();
}
