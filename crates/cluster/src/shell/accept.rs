//! Accepting connections without letting a flood or a transient error end the
//! process: the accept loop of a worker's listener (and, later, of a driver's).
//!
//! Two things used to take a worker down. An `accept` error — a descriptor limit
//! reached (`EMFILE`), a connection reset before it was accepted (`ECONNABORTED`) —
//! ended the loop and with it the worker. And every connection, authenticated or
//! not, was held for the whole handshake timeout, so a few hundred plain connects were
//! enough to reach the limit. Here transient errors are logged and backed off, never
//! fatal; at most [`AcceptLimits::max_handshakes`] connections are in their set-up
//! phase (TLS and cookie handshake) at once — further ones wait in the kernel's
//! backlog until one finishes — and that phase has its own, configurable, timeout
//! (the node's handshake timeout).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The environment variable that sets how long a connection's set-up (TLS and the
/// cookie handshake) may take, in seconds (a decimal number; default 10). Read when a
/// cluster (a node) is made; [`AddProcs::handshake_timeout`](crate::AddProcs::handshake_timeout)
/// sets it for the workers it starts.
///
/// ```
/// assert_eq!(cohort_cluster::HANDSHAKE_TIMEOUT_ENV, "COHORT_HANDSHAKE_TIMEOUT");
/// ```
pub const HANDSHAKE_TIMEOUT_ENV: &str = "COHORT_HANDSHAKE_TIMEOUT";

/// The environment variable that caps how many accepted connections a worker keeps
/// in their set-up phase at once (default [`DEFAULT_MAX_HANDSHAKES`]).
/// [`AddProcs::max_handshakes`](crate::AddProcs::max_handshakes) sets it for the
/// workers it starts.
///
/// ```
/// assert_eq!(cohort_cluster::MAX_HANDSHAKES_ENV, "COHORT_MAX_HANDSHAKES");
/// ```
pub const MAX_HANDSHAKES_ENV: &str = "COHORT_MAX_HANDSHAKES";

/// The default handshake timeout.
///
/// ```
/// assert_eq!(cohort_cluster::DEFAULT_HANDSHAKE_TIMEOUT.as_secs(), 10);
/// ```
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default cap on connections in their set-up phase: enough for the
/// worker-to-worker connections of a large cluster arriving together (more wait in
/// the backlog for a moment), few enough that unauthenticated connections cannot use
/// up a descriptor limit of 256.
///
/// ```
/// assert_eq!(cohort_cluster::DEFAULT_MAX_HANDSHAKES, 64);
/// ```
pub const DEFAULT_MAX_HANDSHAKES: usize = 64;

/// The handshake timeout `COHORT_HANDSHAKE_TIMEOUT` names, or the default.
pub(crate) fn handshake_timeout_from_env() -> Duration {
    std::env::var(HANDSHAKE_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT)
}

/// The cap `COHORT_MAX_HANDSHAKES` names, or the default.
pub(crate) fn max_handshakes_from_env() -> usize {
    std::env::var(MAX_HANDSHAKES_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_HANDSHAKES)
}

/// How an accept loop limits connections in their set-up phase.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AcceptLimits {
    /// At most this many connections in set-up at once.
    pub(crate) max_handshakes: usize,
}

impl AcceptLimits {
    /// The set-up slots of one process's listeners: loops given the same slots
    /// share the cap (a worker's TCP and same-host listeners do).
    pub(crate) fn slots(self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(self.max_handshakes.max(1)))
    }
}

/// A listener an accept loop can take connections from.
pub(crate) trait Listen: Send + 'static {
    /// What one accepted connection is.
    type Stream: Send + 'static;
    /// Takes the next connection, with a description of where it came from (for
    /// logs).
    fn accept_one(&self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;
}

impl Listen for TcpListener {
    type Stream = TcpStream;
    async fn accept_one(&self) -> io::Result<(TcpStream, String)> {
        let (s, addr) = self.accept().await?;
        Ok((s, addr.to_string()))
    }
}

/// A worker's same-host socket (`cohort_transport::same_host`).
pub(crate) struct SameHostListener {
    pub(crate) listener: tokio::net::UnixListener,
    pub(crate) endpoint: cohort_transport::same_host::LocalEndpoint,
}

impl Listen for SameHostListener {
    type Stream = cohort_transport::Connection;
    async fn accept_one(&self) -> io::Result<(cohort_transport::Connection, String)> {
        let conn = cohort_transport::same_host::accept(&self.listener, &self.endpoint).await?;
        let peer = conn.peer.clone();
        Ok((conn, peer))
    }
}

/// Whether an `accept` error concerns one connection or a passing shortage (so the
/// loop goes on after a pause), rather than the listener itself.
///
/// The listener is broken only when the descriptor is not a listening socket any
/// more (`EBADF`, `EINVAL`, `ENOTSOCK`, `EOPNOTSUPP`, `EFAULT`); everything else —
/// out of descriptors (`EMFILE`, `ENFILE`), of buffers or memory (`ENOBUFS`,
/// `ENOMEM`), a connection gone before it was taken (`ECONNABORTED`, `ECONNRESET`,
/// `EPROTO`), a firewall's refusal (`EPERM`), network errors passed on by Linux
/// (`ENETDOWN`, `EHOSTUNREACH`, `ETIMEDOUT`, …), an interrupted call — is transient.
pub(crate) fn is_transient(e: &io::Error) -> bool {
    match e.raw_os_error() {
        Some(code) => !matches!(
            code,
            libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP | libc::EFAULT
        ),
        // An error made by the runtime rather than the OS: not about one connection.
        None => matches!(
            e.kind(),
            io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    }
}

/// The pause after the `n`th transient error in a row: 5 ms, doubling, at most 1 s
/// (a descriptor shortage lasts until connections close; retrying at once would spin).
pub(crate) fn backoff(n: u32) -> Duration {
    Duration::from_millis(5u64.saturating_mul(1 << n.min(8))).min(Duration::from_secs(1))
}

/// Accepts connections on `listener` until it fails for good, handing each to `serve`
/// with a permit (one of `slots`) that stands for its set-up phase: `serve` drops it
/// once the peer is authenticated (or the set-up failed), which lets the next waiting
/// connection in. Transient errors are logged (the first of a run at `warn`, the rest
/// at `debug`) and retried after a growing pause.
///
/// # Errors
/// The listener's own failure (see [`is_transient`]); never a transient one.
pub(crate) async fn accept_loop<L, F, Fut>(
    listener: L,
    slots: Arc<Semaphore>,
    serve: F,
) -> io::Error
where
    L: Listen,
    F: Fn(L::Stream, String, OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut errors: u32 = 0;
    loop {
        // Wait for a free set-up slot before taking the next connection: the others
        // wait in the kernel's backlog, costing this process no descriptor.
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        match listener.accept_one().await {
            Ok((stream, addr)) => {
                errors = 0;
                super::runtime::handle().spawn(serve(stream, addr, permit));
            }
            Err(e) if is_transient(&e) => {
                drop(permit);
                if errors == 0 {
                    tracing::warn!(error = %e, "accept failed; backing off and going on");
                } else {
                    tracing::debug!(error = %e, errors, "accept failed again");
                }
                let pause = backoff(errors);
                errors = errors.saturating_add(1);
                tokio::time::sleep(pause).await;
            }
            Err(e) => return e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_and_connection_errors_are_transient_a_broken_listener_is_not() {
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::ECONNABORTED,
            libc::EPROTO,
            libc::EPERM,
            libc::EINTR,
        ] {
            assert!(is_transient(&io::Error::from_raw_os_error(code)), "{code}");
        }
        for code in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK] {
            assert!(!is_transient(&io::Error::from_raw_os_error(code)), "{code}");
        }
    }

    #[test]
    fn the_backoff_grows_and_stays_bounded() {
        assert_eq!(backoff(0), Duration::from_millis(5));
        assert!(backoff(1) > backoff(0));
        assert_eq!(backoff(40), Duration::from_secs(1));
    }
}
