//! Helpers shared by the integration tests that include this module (`mod common;`).
#![allow(dead_code)] // each test binary uses some of them

use std::process::Command;
use std::time::{Duration, Instant};

/// Whether OS process `os` is gone (or a zombie nobody reaped: it has exited).
pub(crate) fn exited(os: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{os}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

/// Polls `f` until it returns `Some`, failing after `secs` seconds.
pub(crate) fn poll<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn signal(sig: &str, os: u32) {
    let st = Command::new("kill")
        .arg(sig)
        .arg(os.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {os}");
}

/// The network-namespace hosts of `scripts/netns-hosts.sh` (run by `.ci/run` as root):
/// their addresses, and how to reach their sshd.
pub(crate) struct NetnsHosts {
    /// The hosts' addresses (cohort-a, cohort-b).
    pub(crate) addrs: Vec<String>,
    port: String,
    key: String,
}

impl NetnsHosts {
    /// The hosts, made by the script if need be; `None` (after printing
    /// `skipped: …`) where they cannot be made — a failure under CI (`CI` set, as
    /// `.ci/run` does).
    pub(crate) fn get() -> Option<NetnsHosts> {
        let dir = std::env::var("COHORT_TEST_SSHD_DIR").unwrap_or("/tmp/cohort-sshd".into());
        let env = std::path::Path::new(&dir).join("netns.env");
        if !env.exists() {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../scripts/netns-hosts.sh");
            let _ = Command::new("bash")
                .arg(script)
                .stdin(std::process::Stdio::null())
                .status();
        }
        let Ok(text) = std::fs::read_to_string(&env) else {
            assert!(
                !in_ci(),
                "no network-namespace hosts under CI: scripts/netns-hosts.sh (run by .ci/run \
                 as root) must have made them"
            );
            println!("skipped: no network-namespace hosts (run scripts/netns-hosts.sh as root)");
            return None;
        };
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_string()
        };
        Some(NetnsHosts {
            addrs: get("HOSTS").split_whitespace().map(String::from).collect(),
            port: get("PORT"),
            key: format!("{dir}/id_ed25519"),
        })
    }

    /// Whether `addr`'s sshd takes a login now (runs `true` there): what a test waits
    /// for after it brings a host's link back up, since the first connections after a
    /// link comes up can be reset.
    pub(crate) fn answers(&self, addr: &str) -> bool {
        Command::new("ssh")
            .args(["-p", &self.port, "-i", &self.key, "-o", "BatchMode=yes"])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"])
            .arg(format!("root@{addr}"))
            .arg("true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// An SSH manager for `specs` (`N*user@host`, without the port: the hosts'
    /// sshd port is added) that starts this test binary as the worker, at its path.
    pub(crate) fn manager(&self, specs: &[String]) -> cohort::SshManager {
        self.bare_manager(specs)
            .executable(std::env::current_exe().unwrap().display().to_string())
    }

    /// An SSH manager for `specs` with the hosts' ssh options and the manager's
    /// defaults otherwise (the driver's own executable, copied where it is missing).
    pub(crate) fn bare_manager(&self, specs: &[String]) -> cohort::SshManager {
        let specs: Vec<String> = specs.iter().map(|s| format!("{s}:{}", self.port)).collect();
        cohort::SshManager::new(&specs).unwrap().sshflags([
            "-i",
            self.key.as_str(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
        ])
    }
}

/// The private test sshd of `scripts/sshd-test-env.sh` on 127.0.0.1.
pub(crate) struct Sshd {
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) key: String,
    pub(crate) wrong_key: String,
}

/// The test sshd, started by its script if need be; `None` where there is none.
pub(crate) fn sshd() -> Option<Sshd> {
    let dir = std::path::PathBuf::from(
        std::env::var("COHORT_TEST_SSHD_DIR").unwrap_or("/tmp/cohort-sshd".into()),
    );
    let env = dir.join("env");
    if !env.exists() {
        // Not set up by .ci/run: start it ourselves if this machine has sshd.
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/sshd-test-env.sh");
        let _ = std::process::Command::new("bash")
            .arg(script)
            .arg("--no-install")
            .stdin(std::process::Stdio::null())
            .status();
    }
    let text = std::fs::read_to_string(&env).ok()?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    Some(Sshd {
        port: get("PORT")?.parse().ok()?,
        user: get("USER")?,
        key: get("KEY")?,
        wrong_key: get("WRONG_KEY")?,
    })
}

/// Whether this is a CI run (`CI` set and not `false`/`0`), where a test must not skip.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}
