//! Nothing to install on the nodes (issue 14, point 5): an `SshManager` starting the
//! driver's own executable copies it to a machine that lacks it, into a per-user
//! cache keyed by its SHA-256, and starts the workers from there; the copy is the same
//! build (closures run on it).
//!
//! The machine that lacks the executable is network-namespace host b of
//! `scripts/netns-hosts.sh`, whose sshd hides `/tmp/cohort-hidden`: the test puts a
//! copy of itself there and runs it as the driver, so the driver's executable exists
//! here and not on host b. The test sshd on 127.0.0.1 (`scripts/sshd-test-env.sh`)
//! sees this machine's files: there the cache is used when asked for
//! (`CopyExecutable::Always`), and skipped when the machine has the build
//! (`IfMissing`), and a copy made once is reused.
//!
//! Its own `main` (`harness = false`, libtest-mimic): started with
//! `COHORT_COPY_DRIVER=HOST` it is that driver. Skips ("skipped: …") without the test
//! services, except under CI.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use cohort::prelude::*;
use cohort::transport::ssh::CopyExecutable;
use cohort::transport::SshManager;

const DRIVER_ENV: &str = "COHORT_COPY_DRIVER";
const CACHE_ENV: &str = "COHORT_COPY_CACHE";
const MODE_ENV: &str = "COHORT_COPY_MODE";
/// What host b of the network-namespace hosts does not see.
const HIDDEN: &str = "/tmp/cohort-hidden";

#[cohort::remote]
fn worker_exe() -> String {
    std::env::current_exe().unwrap().display().to_string()
}

/// A fresh directory for a cache.
fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cohort-copy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Starts one worker with `m` and returns the path its executable runs from, after
/// checking that a closure runs there (the same build).
fn launch_and_report(c: &Cluster, m: SshManager) -> Result<String, cohort::ClusterError> {
    let w = c.launch_blocking(AddProcs::with_manager(m).worker_timeout(Duration::from_secs(30)))?;
    let exe = c.remotecall_fetch_blocking(worker_exe, w[0], ()).unwrap();
    let seven = c.remotecall_fetch_blocking(|| 3 + 4, w[0], ()).unwrap();
    assert_eq!(seven, 7, "a closure runs on the copy");
    c.rmprocs_blocking(&w, Some(Duration::from_secs(20)))
        .unwrap();
    Ok(exe)
}

/// The driver a test starts from a copy of this binary: one worker on `host`.
fn driver(host: String) -> ExitCode {
    let Some(hosts) = common::NetnsHosts::get() else {
        return ExitCode::from(3);
    };
    let mode = match std::env::var(MODE_ENV).as_deref() {
        Ok("never") => CopyExecutable::Never,
        _ => CopyExecutable::IfMissing,
    };
    let m = hosts
        .bare_manager(&[format!("1*root@{host}")])
        .exe_cache(std::env::var(CACHE_ENV).unwrap())
        .copy_executable(mode);
    match launch_and_report(&Cluster::new(), m) {
        Ok(exe) => {
            println!("worker-exe {exe}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("launch-error {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs a copy of this binary from `HIDDEN` as the driver of one worker on host b,
/// with `mode`; returns its report line.
fn run_hidden_driver(host: &str, cache: &Path, mode: &str) -> String {
    let me = std::env::current_exe().unwrap();
    let copy = Path::new(HIDDEN).join(format!("ssh_copy-driver-{}", std::process::id()));
    std::fs::create_dir_all(HIDDEN).unwrap();
    std::fs::copy(&me, &copy).unwrap();
    let out = Command::new(&copy)
        .env(DRIVER_ENV, host)
        .env(CACHE_ENV, cache)
        .env(MODE_ENV, mode)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    std::fs::remove_file(&copy).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("worker-exe ") || l.starts_with("launch-error "))
        .unwrap_or_else(|| {
            panic!(
                "the driver reported nothing ({}): {text}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

fn a_host_without_the_executable_gets_a_copy() {
    let Some(hosts) = common::NetnsHosts::get() else {
        return;
    };
    let host_b = &hosts.addrs[1];
    let cache = temp_dir("netns");
    // Copying off: the host lacks the driver's executable, and says so.
    let line = run_hidden_driver(host_b, &cache, "never");
    assert!(line.starts_with("launch-error "), "{line}");
    assert!(
        line.contains("exited before printing its address"),
        "{line}"
    );
    assert!(
        line.contains("ssh_copy-driver"),
        "names the missing executable: {line}"
    );
    // The default: copied into the cache, run from there.
    let line = run_hidden_driver(host_b, &cache, "if-missing");
    let exe = line
        .strip_prefix("worker-exe ")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(exe.starts_with(cache.to_str().unwrap()), "{exe}");
    let meta = std::fs::metadata(exe).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "only its user runs it"
    );
    assert_eq!(
        meta.len(),
        std::fs::metadata(std::env::current_exe().unwrap())
            .unwrap()
            .len()
    );
    std::fs::remove_dir_all(cache).unwrap();
}

fn the_test_sshd_uses_the_cache_when_asked_and_the_path_when_it_has_the_build() {
    let Some(s) = common::sshd() else {
        assert!(!common::in_ci(), "no test sshd under CI");
        println!("skipped: no test sshd (run scripts/sshd-test-env.sh as root)");
        return;
    };
    let manager = || {
        SshManager::new([format!("1*{}@127.0.0.1:{}", s.user, s.port)])
            .unwrap()
            .sshflags([
                "-i",
                s.key.as_str(),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
            ])
    };
    let cache = temp_dir("sshd");
    let c = Cluster::new();
    // This machine has the build at the driver's path: no copy.
    let exe = launch_and_report(&c, manager().exe_cache(cache.display().to_string())).unwrap();
    assert_eq!(Path::new(&exe), std::env::current_exe().unwrap());
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "nothing copied"
    );
    // Always: copied once into the cache, then reused by another manager.
    let always = || {
        manager()
            .exe_cache(cache.display().to_string())
            .copy_executable(CopyExecutable::Always)
    };
    let first = launch_and_report(&c, always()).unwrap();
    assert!(first.starts_with(cache.to_str().unwrap()), "{first}");
    let inode = std::fs::metadata(&first).unwrap().ino();
    let again = launch_and_report(&c, always()).unwrap();
    assert_eq!(again, first);
    assert_eq!(
        std::fs::metadata(&again).unwrap().ino(),
        inode,
        "reused, not copied again"
    );
    // A cached file that is not this build is never run: it is replaced.
    std::fs::write(&first, b"#!/bin/sh\necho not this build\n").unwrap();
    std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o700)).unwrap();
    let replaced = launch_and_report(&c, always()).unwrap();
    assert_eq!(replaced, first);
    assert_eq!(
        std::fs::metadata(&replaced).unwrap().len(),
        std::fs::metadata(std::env::current_exe().unwrap())
            .unwrap()
            .len()
    );
    std::fs::remove_dir_all(cache).unwrap();
}

fn main() -> ExitCode {
    if let Ok(host) = std::env::var(DRIVER_ENV) {
        return driver(host);
    }
    let args = libtest_mimic::Arguments::from_args();
    let tests = vec![
        libtest_mimic::Trial::test("a_host_without_the_executable_gets_a_copy", || {
            a_host_without_the_executable_gets_a_copy();
            Ok(())
        }),
        libtest_mimic::Trial::test(
            "the_test_sshd_uses_the_cache_when_asked_and_the_path_when_it_has_the_build",
            || {
                the_test_sshd_uses_the_cache_when_asked_and_the_path_when_it_has_the_build();
                Ok(())
            },
        ),
    ];
    libtest_mimic::run(&args, tests).exit_code()
}
