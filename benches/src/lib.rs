//! # cohort-benches — criterion benches for cohort, each beside its raw baseline
//!
//! The benches live in `benches/` (`cargo bench -p cohort-benches`, or
//! `cargo xtask bench [FILTER]`); figures are summarised in `docs/performance.md`.
//!
//! This library holds the raw baselines the benches compare against: plain blocking
//! TCP over loopback between two processes, as `DESIGN.md` ("Performance") defines
//! them. The second process is the bench binary itself, re-executed with the
//! environment variable [`CHILD_ENV`] set; every bench's `main` calls
//! [`run_child_if_requested`] first, so that the child serves instead of benchmarking.
//!
//! The child listens on an ephemeral loopback port, prints the port on its stdout,
//! and serves one connection:
//!
//! - [`Child::Echo`]: reads 16 bytes, writes them back, until EOF (ping-pong).
//! - [`Child::Bulk`]: reads an 8-byte little-endian length `n`, writes `n` bytes
//!   from a buffer it has ready, until EOF (bulk transfer).
//!
//! Both sides use blocking std sockets with `TCP_NODELAY`, unpinned.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

/// The environment variable that turns a re-executed bench binary into a raw
/// baseline server: `echo` or `bulk`.
pub const CHILD_ENV: &str = "COHORT_BENCH_CHILD";

/// Size of one ping-pong message, in bytes.
pub const PING_BYTES: usize = 16;

/// The kinds of raw baseline server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    /// 16-byte echo: the ping-pong baseline.
    Echo,
    /// Sends as many bytes as asked: the bulk-transfer baseline.
    Bulk,
}

impl Child {
    fn name(self) -> &'static str {
        match self {
            Child::Echo => "echo",
            Child::Bulk => "bulk",
        }
    }
}

/// If this process was started as a baseline server (see [`CHILD_ENV`]), serves and
/// exits; otherwise returns at once. Call it first thing in a bench's `main`.
pub fn run_child_if_requested() {
    let Ok(kind) = std::env::var(CHILD_ENV) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    println!("{port}");
    std::io::stdout().flush().expect("flush stdout");
    let (mut s, _) = listener.accept().expect("accept");
    s.set_nodelay(true).expect("nodelay");
    match kind.as_str() {
        "echo" => {
            let mut buf = [0u8; PING_BYTES];
            while s.read_exact(&mut buf).is_ok() {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
        }
        "bulk" => {
            let mut data: Vec<u8> = Vec::new();
            let mut len = [0u8; 8];
            while s.read_exact(&mut len).is_ok() {
                let n = u64::from_le_bytes(len) as usize;
                if data.len() < n {
                    data = (0..n).map(|i| i as u8).collect();
                }
                if s.write_all(&data[..n]).is_err() {
                    break;
                }
            }
        }
        other => panic!("{CHILD_ENV}={other}: expected echo or bulk"),
    }
    std::process::exit(0);
}

/// A baseline server process and the connection to it; the process is killed on drop.
#[derive(Debug)]
pub struct Peer {
    child: std::process::Child,
    stream: TcpStream,
}

impl Peer {
    /// Re-executes the current binary as a `kind` server and connects to it.
    ///
    /// # Panics
    /// If the process cannot be started or connected to (a bench cannot go on then).
    pub fn spawn(kind: Child) -> Peer {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .env(CHILD_ENV, kind.name())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn baseline server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("child stdout"))
            .read_line(&mut line)
            .expect("read port");
        let port: u16 = line.trim().parse().expect("port number");
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Peer { child, stream }
    }

    /// The OS process id of the server.
    pub fn child_id(&self) -> u32 {
        self.child.id()
    }

    /// One 16-byte round trip (echo server).
    ///
    /// # Panics
    /// On a socket error.
    pub fn ping(&mut self) {
        let out = [7u8; PING_BYTES];
        let mut back = [0u8; PING_BYTES];
        self.stream.write_all(&out).expect("write");
        self.stream.read_exact(&mut back).expect("read");
    }

    /// Asks for `buf.len()` bytes and reads them into `buf` (bulk server).
    ///
    /// # Panics
    /// On a socket error.
    pub fn pull(&mut self, buf: &mut [u8]) {
        self.stream
            .write_all(&(buf.len() as u64).to_le_bytes())
            .expect("write");
        self.stream.read_exact(buf).expect("read");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `q`-quantile (0..=1) of `samples`, which it sorts; in the samples' unit.
///
/// ```
/// let mut v = vec![3.0, 1.0, 2.0];
/// assert_eq!(cohort_benches::quantile(&mut v, 0.5), 2.0);
/// ```
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[i]
}

/// Whether the bench filter on the command line (criterion's positional argument, as
/// `cargo bench -p cohort-benches -- FILTER` passes it) selects `id`, matched as a
/// substring either way; no filter selects everything. The benches use it to skip
/// their set-up and extra passes when criterion would skip them anyway.
///
/// ```
/// assert!(cohort_benches::selected("roundtrip/raw_tcp_pingpong_16B"));
/// ```
pub fn selected(id: &str) -> bool {
    const WITH_VALUE: &[&str] = &[
        "--save-baseline",
        "-s",
        "--baseline",
        "-b",
        "--baseline-lenient",
        "--load-baseline",
        "--color",
        "-c",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--plotting-backend",
        "--output-format",
        "--format",
        "--skip",
    ];
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            filters.push(a);
        }
    }
    filters.is_empty()
        || filters
            .iter()
            .any(|f| id.contains(f.as_str()) || f.contains(id))
}

/// CPU time (user + system) of OS process `pid` so far, in seconds (Linux; NaN if
/// the process cannot be read).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14, 15.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (field(11) + field(12)) / 100.0 // USER_HZ is 100 on Linux
}

/// Context switches (voluntary and not) of every thread of OS process `pid` so far
/// (Linux; threads that have ended are not counted).
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for t in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

/// Per-thread-name context switches of process `pid` (Linux).
pub fn switches_by_name(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return m;
    };
    for t in tasks.flatten() {
        let name = std::fs::read_to_string(t.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                *m.entry(name.clone()).or_insert(0) += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    m
}
