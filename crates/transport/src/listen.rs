//! The worker side of starting up: bind a listener, announce its address on stdout
//! as one line, and read the cluster cookie from stdin.
//!
//! The announcement is `cohort_worker:PORT#HOST` (Julia prints
//! `julia_worker:PORT#HOST`), followed, for a worker that also listens on a
//! same-host socket ([`crate::same_host`]), by ` local=NAME@KEY`; a manager reads the
//! worker's stdout until it sees it.

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::same_host::LocalEndpoint;
use crate::{HOSTNAME_ENV, WORKER_TIMEOUT_ENV};

/// The prefix of the address line a worker prints.
///
/// ```
/// assert_eq!(cohort_transport::listen::ANNOUNCE_PREFIX, "cohort_worker:");
/// ```
pub const ANNOUNCE_PREFIX: &str = "cohort_worker:";

/// The default time a worker waits for the master.
///
/// ```
/// assert_eq!(cohort_transport::listen::DEFAULT_WORKER_TIMEOUT.as_secs(), 60);
/// ```
pub const DEFAULT_WORKER_TIMEOUT: Duration = Duration::from_secs(60);

/// The address line for a worker listening at `host:port`.
///
/// ```
/// use cohort_transport::listen::{announcement, parse_announcement};
/// let line = announcement("127.0.0.1", 9009);
/// assert_eq!(line, "cohort_worker:9009#127.0.0.1");
/// assert_eq!(parse_announcement(&line), Some(("127.0.0.1".to_string(), 9009)));
/// ```
pub fn announcement(host: &str, port: u16) -> String {
    format!("{ANNOUNCE_PREFIX}{port}#{host}")
}

/// Parses an address line; `None` if the line is not one.
///
/// ```
/// use cohort_transport::listen::parse_announcement;
/// assert_eq!(parse_announcement("hello"), None);
/// assert_eq!(parse_announcement("cohort_worker:x#h"), None);
/// ```
pub fn parse_announcement(line: &str) -> Option<(String, u16)> {
    let rest = line.trim().strip_prefix(ANNOUNCE_PREFIX)?;
    let (port, rest) = rest.split_once('#')?;
    let host = rest.split_whitespace().next()?;
    let port = port.parse().ok()?;
    Some((host.to_string(), port))
}

/// The word of an address line that names the worker's same-host socket.
const LOCAL_WORD: &str = "local=";

/// The address line of a worker listening at `host:port` and, on its host, at
/// `local` ([`crate::same_host`]).
///
/// ```
/// use cohort_transport::listen::{announcement_with, parse_announcement, parse_local};
/// use cohort_transport::same_host::LocalEndpoint;
/// let local = LocalEndpoint { name: "cohort-1-2".into(), host_key: "b.3.4".into() };
/// let line = announcement_with("127.0.0.1", 9009, Some(&local));
/// assert_eq!(line, "cohort_worker:9009#127.0.0.1 local=cohort-1-2@b.3.4");
/// assert_eq!(parse_announcement(&line), Some(("127.0.0.1".to_string(), 9009)));
/// assert_eq!(parse_local(&line), Some(local));
/// ```
pub fn announcement_with(host: &str, port: u16, local: Option<&LocalEndpoint>) -> String {
    match local {
        Some(l) => format!("{} {LOCAL_WORD}{}", announcement(host, port), l.to_token()),
        None => announcement(host, port),
    }
}

/// The same-host socket an address line names, if it names one (and is an address
/// line at all).
///
/// ```
/// use cohort_transport::listen::parse_local;
/// assert_eq!(parse_local("cohort_worker:9009#127.0.0.1"), None);
/// assert_eq!(parse_local("hello local=a@b"), None);
/// ```
pub fn parse_local(line: &str) -> Option<LocalEndpoint> {
    parse_announcement(line)?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(LOCAL_WORD))
        .and_then(LocalEndpoint::parse)
}

/// Parses a `--bind-to` value: `addr`, `addr:port` or `[v6addr]:port`; port 0 (or
/// none) picks a free port.
///
/// # Errors
/// `InvalidInput` if the value is not an address with an optional port.
///
/// ```
/// use cohort_transport::listen::parse_bind;
/// assert_eq!(parse_bind("127.0.0.1").unwrap().port(), 0);
/// assert_eq!(parse_bind("0.0.0.0:9000").unwrap().port(), 9000);
/// assert!(parse_bind("nonsense:x").is_err());
/// ```
pub fn parse_bind(s: &str) -> io::Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 0));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("--bind-to expects addr[:port], got {s:?}"),
    ))
}

/// Binds the worker's listener. Returns it with the host to announce (the bound
/// address, or this machine's loopback when bound to all interfaces… see below) and
/// the port.
///
/// When bound to an unspecified address (`0.0.0.0`), the announced host is the first
/// non-loopback address found by connecting a UDP socket outward is not possible on
/// closed networks, so the host name is announced instead and resolved by the master.
///
/// # Errors
/// The I/O error of the bind (address in use, not an address of this host).
///
/// # Cancel safety
/// Cancel-safe: if the future is dropped, no listener is left bound (one that was
/// bound is dropped with it, freeing the port).
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let (listener, host, port) = cohort_transport::listen::bind("127.0.0.1:0".parse().unwrap()).await?;
/// assert_eq!(host, "127.0.0.1");
/// # Ok(()) }
/// ```
pub async fn bind(addr: SocketAddr) -> io::Result<(TcpListener, String, u16)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let host = if local.ip().is_unspecified() {
        hostname()
    } else {
        local.ip().to_string()
    };
    Ok((listener, host, local.port()))
}

/// This machine's host name (`gethostname(2)`), falling back to `$HOSTNAME`, then
/// `localhost`, when the system call fails or the name is empty or not UTF-8.
///
/// ```
/// assert!(!cohort_transport::listen::hostname().is_empty());
/// ```
pub fn hostname() -> String {
    system_hostname()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

/// The name of the host this process counts as on when processes are grouped by
/// host (`procs(pid)`): `$COHORT_HOSTNAME` ([`HOSTNAME_ENV`]) when set and not
/// empty — a scheduler's node name, for instance — else [`hostname`].
///
/// ```
/// assert!(!cohort_transport::listen::group_hostname().is_empty());
/// ```
pub fn group_hostname() -> String {
    std::env::var(HOSTNAME_ENV)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(hostname)
}

fn system_hostname() -> Option<String> {
    // HOST_NAME_MAX is 64 on Linux and 255 by POSIX; one more for the NUL.
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call;
    // gethostname writes at most that many and does not keep the pointer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    // POSIX leaves a truncated name possibly without a NUL: take up to the first NUL,
    // or all of it.
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    std::str::from_utf8(&buf[..end])
        .ok()
        .map(|s| s.trim().to_string())
}

/// Prints the address line on stdout and flushes it.
///
/// # Errors
/// The I/O error of writing stdout (the manager closed the pipe).
///
/// ```no_run
/// cohort_transport::listen::announce("127.0.0.1", 9009).unwrap();
/// ```
pub fn announce(host: &str, port: u16) -> io::Result<()> {
    announce_with(host, port, None)
}

/// Prints the address line of a worker that also listens on a same-host socket
/// ([`announcement_with`]) on stdout and flushes it.
///
/// # Errors
/// The I/O error of writing stdout (the manager closed the pipe).
///
/// ```no_run
/// cohort_transport::listen::announce_with("127.0.0.1", 9009, None).unwrap();
/// ```
pub fn announce_with(host: &str, port: u16, local: Option<&LocalEndpoint>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", announcement_with(host, port, local))?;
    out.flush()
}

/// Reads the cluster cookie: the first line of stdin.
///
/// # Errors
/// `UnexpectedEof` if stdin closes before a line; the I/O error of the read.
///
/// ```no_run
/// let cookie = cohort_transport::listen::read_cookie_from_stdin().unwrap();
/// ```
pub fn read_cookie_from_stdin() -> io::Result<String> {
    let mut line = String::new();
    let n = io::stdin().lock().read_line(&mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "stdin closed before the cluster cookie arrived",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// How long a worker waits for the master: `COHORT_WORKER_TIMEOUT` seconds (a
/// decimal number), or 60 s.
///
/// ```
/// assert!(cohort_transport::listen::worker_timeout().as_secs_f64() > 0.0);
/// ```
pub fn worker_timeout() -> Duration {
    std::env::var(WORKER_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_WORKER_TIMEOUT)
}

#[cfg(test)]
mod hostname_tests {
    #[test]
    fn hostname_is_the_kernels() {
        let h = super::hostname();
        assert!(!h.is_empty() && !h.contains('\0'));
        // On Linux the kernel's name is also in /proc; they agree.
        if let Ok(p) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            assert_eq!(h, p.trim());
        }
    }
}
