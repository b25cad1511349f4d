//! What the dashboard's tests share: a small HTTP client, the work they run on real
//! workers, and waiting for a condition on `/api/status` with a deadline.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use cohort_dashboard::Status;

/// A response: status code and body.
pub struct Response {
    pub code: u16,
    pub content_type: String,
    pub body: String,
}

/// `GET path` on `addr` (HTTP/1.1, connection closed after the answer).
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect to the dashboard");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let raw = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Response {
        code,
        content_type,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// `/api/status`, parsed.
pub fn status(addr: SocketAddr, query: &str) -> Status {
    let r = get(addr, &format!("/api/status{query}"));
    assert_eq!(r.code, 200, "{}", r.body);
    assert!(r.content_type.starts_with("application/json"));
    serde_json::from_str(&r.body).expect("the status parses as the documented schema")
}

/// Polls `/api/status` until `ok` holds, failing after `secs` seconds with the last
/// status in the message.
pub fn wait_for(addr: SocketAddr, secs: u64, what: &str, ok: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = status(addr, "");
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last status: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The item that fails in the tests' maps.
pub const BAD_ITEM: u64 = 7;
/// What it says.
pub const BAD_MESSAGE: &str = "item 7 is bad";

/// Writes a marker line to the worker's stderr.
pub fn shout() {
    eprintln!("dashboard-test marker from worker {}", cohort::myid());
}

/// A map item: fails for [`BAD_ITEM`].
pub fn square_or_fail(x: u64) -> u64 {
    if x == BAD_ITEM {
        panic!("{BAD_MESSAGE}");
    }
    std::thread::sleep(Duration::from_millis(5));
    x * x
}

/// A call that fails on its worker.
pub fn refuse(x: u32) -> u32 {
    if x > 0 {
        panic!("refused {x}");
    }
    x
}

/// Kills the OS process of worker `pid` with SIGKILL and returns its OS pid.
pub fn kill_worker(pid: cohort::Pid) -> u32 {
    let os = cohort::blocking::remotecall_fetch(cohort::builtins::getpid, pid, ()).unwrap();
    let st = std::process::Command::new("kill")
        .args(["-9", &os.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success());
    os
}
