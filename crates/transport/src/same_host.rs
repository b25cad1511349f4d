//! Same-host connections: two cohort processes on one host talk over a Unix-domain
//! socket instead of loopback TCP.
//!
//! A worker started in worker mode listens on TCP as always, and also on an
//! *abstract* Unix-domain socket (Linux; no file, so nothing is left behind when the
//! worker is killed). It announces that socket beside its TCP address, with the
//! identity of its host ([`host_key`]: the kernel's boot id and the process's network
//! and mount namespaces). A process that wants to reach the worker compares that
//! identity with its own: equal, it connects to the socket (and falls back to TCP if
//! that fails); different — another machine, or a network-namespace "host" on this
//! one — it uses TCP. Everything above the byte stream (TLS, the cookie handshake,
//! the protocol) is the same on both.
//!
//! Why: on loopback a Unix-domain stream moves bulk data about a third faster than
//! TCP, and a small message sooner, because it skips the TCP/IP stack.
//!
//! Set [`SAME_HOST_ENV`] to `0` (or `off`, `false`, `no`, `tcp`) to turn it off: a
//! worker then does not listen on a Unix socket, and a process does not use one.
//!
//! ```
//! use cohort_transport::same_host::{host_key, LocalEndpoint};
//! let e = LocalEndpoint::parse("cohort-7-1f@abc").unwrap();
//! assert_eq!(e.name, "cohort-7-1f");
//! assert_eq!(e.host_key, "abc");
//! # let _ = host_key();
//! ```

use std::io;
use std::sync::OnceLock;

use tokio::net::UnixListener;

use crate::stream::Connection;

/// The environment variable that turns same-host Unix-domain connections off when
/// it is `0`, `off`, `false`, `no` or `tcp` (any case). Read by workers (whether to
/// listen on a socket) and by every process that connects (whether to use one);
/// workers inherit it from the process that starts them.
///
/// ```
/// assert_eq!(cohort_transport::same_host::SAME_HOST_ENV, "COHORT_SAME_HOST");
/// ```
pub const SAME_HOST_ENV: &str = "COHORT_SAME_HOST";

/// How a connection made over a same-host socket describes its peer
/// ([`Connection::peer`]): this prefix, then `@` and the socket's abstract name.
///
/// ```
/// assert_eq!(cohort_transport::same_host::PEER_PREFIX, "unix:");
/// ```
pub const PEER_PREFIX: &str = "unix:";

/// Whether same-host sockets are on: [`SAME_HOST_ENV`] is unset or not one of the
/// words that turn them off, and this system has abstract Unix-domain sockets
/// (Linux).
///
/// ```
/// let _on: bool = cohort_transport::same_host::enabled();
/// ```
pub fn enabled() -> bool {
    cfg!(target_os = "linux") && !turned_off(std::env::var(SAME_HOST_ENV).ok().as_deref())
}

fn turned_off(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "off" | "false" | "no" | "tcp"
        )
    })
}

/// This process's host identity: the kernel's boot id
/// (`/proc/sys/kernel/random/boot_id`) and the inodes of its network and mount
/// namespaces, as `BOOT.NET.MNT`. Two processes with equal keys can reach each
/// other's abstract sockets (same kernel and network namespace) and see the same
/// files. `None` where it cannot be read (not Linux, no `/proc`): then no same-host
/// socket is used.
///
/// ```
/// if let Some(k) = cohort_transport::same_host::host_key() {
///     assert_eq!(k.split('.').count(), 3);
/// }
/// ```
pub fn host_key() -> Option<String> {
    static KEY: OnceLock<Option<String>> = OnceLock::new();
    KEY.get_or_init(read_host_key).clone()
}

#[cfg(target_os = "linux")]
fn read_host_key() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let boot = boot.trim();
    let net = std::fs::metadata("/proc/self/ns/net").ok()?.ino();
    let mnt = std::fs::metadata("/proc/self/ns/mnt").ok()?.ino();
    (!boot.is_empty() && !boot.contains(['.', '@', ' '])).then(|| format!("{boot}.{net}.{mnt}"))
}

#[cfg(not(target_os = "linux"))]
fn read_host_key() -> Option<String> {
    None
}

/// Where a worker listens on its host: the abstract name of its Unix-domain socket
/// and the [`host_key`] of the host. It travels as `NAME@KEY`
/// ([`to_token`](Self::to_token), [`parse`](Self::parse)).
///
/// ```
/// use cohort_transport::same_host::LocalEndpoint;
/// let e = LocalEndpoint { name: "cohort-1-2".into(), host_key: "b.1.2".into() };
/// assert_eq!(LocalEndpoint::parse(&e.to_token()), Some(e));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalEndpoint {
    /// The socket's name in the abstract namespace (without the leading NUL).
    pub name: String,
    /// The host it is on ([`host_key`]).
    pub host_key: String,
}

impl LocalEndpoint {
    /// `NAME@KEY`.
    ///
    /// ```
    /// use cohort_transport::same_host::LocalEndpoint;
    /// let e = LocalEndpoint { name: "n".into(), host_key: "k".into() };
    /// assert_eq!(e.to_token(), "n@k");
    /// ```
    pub fn to_token(&self) -> String {
        format!("{}@{}", self.name, self.host_key)
    }

    /// Parses `NAME@KEY`; `None` if either part is empty or holds a space.
    ///
    /// ```
    /// use cohort_transport::same_host::LocalEndpoint;
    /// assert!(LocalEndpoint::parse("").is_none());
    /// assert!(LocalEndpoint::parse("name-only").is_none());
    /// assert!(LocalEndpoint::parse("@k").is_none());
    /// ```
    pub fn parse(token: &str) -> Option<LocalEndpoint> {
        let (name, key) = token.trim().split_once('@')?;
        let ok = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
        (ok(name) && ok(key)).then(|| LocalEndpoint {
            name: name.to_string(),
            host_key: key.to_string(),
        })
    }

    /// Whether this process should connect here rather than over TCP: same-host
    /// sockets are [`enabled`] and the endpoint's host is this process's.
    ///
    /// ```
    /// use cohort_transport::same_host::LocalEndpoint;
    /// let far = LocalEndpoint { name: "n".into(), host_key: "another-host".into() };
    /// assert!(!far.is_reachable());
    /// ```
    pub fn is_reachable(&self) -> bool {
        enabled() && host_key().is_some_and(|k| k == self.host_key)
    }

    /// How a connection to this endpoint describes its peer: `unix:@NAME`.
    ///
    /// ```
    /// use cohort_transport::same_host::LocalEndpoint;
    /// let e = LocalEndpoint { name: "n".into(), host_key: "k".into() };
    /// assert_eq!(e.peer(), "unix:@n");
    /// ```
    pub fn peer(&self) -> String {
        format!("{PEER_PREFIX}@{}", self.name)
    }
}

/// Binds this worker's same-host socket: an abstract Unix-domain socket named
/// `cohort-OSPID-RANDOM`. Must be called within a tokio runtime. `Ok(None)` when
/// same-host sockets are off ([`enabled`]) or the host key cannot be read.
///
/// # Errors
/// The I/O error of the bind (very unlikely: the name is random).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use cohort_transport::same_host;
/// if let Some((listener, endpoint)) = same_host::bind()? {
///     let (client, server) = tokio::join!(
///         same_host::connect(&endpoint),
///         same_host::accept(&listener, &endpoint),
///     );
///     assert_eq!(client?.peer, endpoint.peer());
///     server?;
/// }
/// # Ok(()) }
/// ```
pub fn bind() -> io::Result<Option<(UnixListener, LocalEndpoint)>> {
    let Some(key) = host_key().filter(|_| enabled()) else {
        return Ok(None);
    };
    let name = format!("cohort-{}-{:016x}", std::process::id(), random_u64());
    let listener = bind_abstract(&name)?;
    Ok(Some((
        listener,
        LocalEndpoint {
            name,
            host_key: key,
        },
    )))
}

#[cfg(target_os = "linux")]
fn bind_abstract(name: &str) -> io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let std_listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    std_listener.set_nonblocking(true)?;
    UnixListener::from_std(std_listener)
}

#[cfg(not(target_os = "linux"))]
fn bind_abstract(_name: &str) -> io::Result<UnixListener> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract Unix-domain sockets are Linux's",
    ))
}

/// A random number for socket names, from the standard library's per-process
/// random hash keys and the clock (no dependency for one number).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Connects to a same-host endpoint. Call it for an endpoint that
/// [`is_reachable`](LocalEndpoint::is_reachable); the caller falls back to TCP on
/// an error.
///
/// # Errors
/// `ConnectionRefused` when nobody listens on that name (the worker is gone, or the
/// name is of another network namespace); `Unsupported` off Linux.
///
/// # Cancel safety
/// Cancel-safe: a connection made but not returned is closed.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use cohort_transport::same_host::{connect, LocalEndpoint};
/// let e = LocalEndpoint::parse("cohort-1-2@k").unwrap();
/// let _conn = connect(&e).await?;
/// # Ok(()) }
/// ```
pub async fn connect(endpoint: &LocalEndpoint) -> io::Result<Connection> {
    let stream = connect_abstract(&endpoint.name).await?;
    Ok(Connection::from_unix(stream, endpoint.peer()))
}

/// A connection to `endpoint` when it is on this host and same-host sockets are on
/// ([`LocalEndpoint::is_reachable`]); `None` otherwise, or when the connect fails
/// (logged at debug level), so that the caller uses TCP: a worker whose socket
/// cannot be reached is slower, never unreachable. What the default
/// [`ClusterManager::connect`](crate::ClusterManager::connect) and the runtime's
/// worker-to-worker connections do first.
///
/// # Cancel safety
/// Cancel-safe, as [`connect`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use cohort_transport::same_host::{connect_if_local, LocalEndpoint};
/// assert!(connect_if_local(None).await.is_none());
/// let far = LocalEndpoint { name: "n".into(), host_key: "another-host".into() };
/// assert!(connect_if_local(Some(&far)).await.is_none());
/// # }
/// ```
pub async fn connect_if_local(endpoint: Option<&LocalEndpoint>) -> Option<Connection> {
    let endpoint = endpoint.filter(|e| e.is_reachable())?;
    match connect(endpoint).await {
        Ok(conn) => Some(conn),
        Err(e) => {
            tracing::debug!(socket = %endpoint.name, error = %e, "same-host socket refused; using TCP");
            None
        }
    }
}

#[cfg(target_os = "linux")]
async fn connect_abstract(name: &str) -> io::Result<tokio::net::UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    // A local connect does not block for long: it either finds the listener's
    // backlog or is refused. Done on a blocking thread all the same, so that a full
    // backlog never stalls the runtime.
    let stream =
        tokio::task::spawn_blocking(move || std::os::unix::net::UnixStream::connect_addr(&addr))
            .await
            .map_err(io::Error::other)??;
    stream.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(stream)
}

#[cfg(not(target_os = "linux"))]
async fn connect_abstract(_name: &str) -> io::Result<tokio::net::UnixStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract Unix-domain sockets are Linux's",
    ))
}

/// Accepts one connection on a worker's same-host socket, described as
/// [`LocalEndpoint::peer`].
///
/// # Errors
/// The I/O error of the accept.
///
/// # Cancel safety
/// Cancel-safe, as `tokio::net::UnixListener::accept`.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use cohort_transport::same_host;
/// let (listener, endpoint) = same_host::bind()?.expect("on Linux");
/// let _conn = same_host::accept(&listener, &endpoint).await?;
/// # Ok(()) }
/// ```
pub async fn accept(listener: &UnixListener, endpoint: &LocalEndpoint) -> io::Result<Connection> {
    let (stream, _) = listener.accept().await?;
    Ok(Connection::from_unix(stream, endpoint.peer()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_that_turn_it_off() {
        for v in ["0", "off", "OFF", " false ", "no", "tcp"] {
            assert!(turned_off(Some(v)), "{v}");
        }
        for v in ["1", "on", "", "yes"] {
            assert!(!turned_off(Some(v)), "{v}");
        }
        assert!(!turned_off(None));
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let e = LocalEndpoint {
            name: "cohort-1-ff".into(),
            host_key: "b-1.2.3".into(),
        };
        assert_eq!(LocalEndpoint::parse(&e.to_token()), Some(e));
        for bad in ["", "@", "n@", "@k", "n k@x", "nokey"] {
            assert_eq!(LocalEndpoint::parse(bad), None, "{bad:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_bound_socket_is_reachable_and_carries_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let endpoint = LocalEndpoint {
            name: format!("cohort-test-{:x}", random_u64()),
            host_key: host_key().expect("Linux has a host key"),
        };
        let listener = bind_abstract(&endpoint.name).unwrap();
        assert_eq!(endpoint.is_reachable(), enabled());
        let (client, server) = tokio::join!(connect(&endpoint), accept(&listener, &endpoint));
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        client.writer.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.reader.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        drop(listener);
        // Once the listener is gone the name is free again: refused, not a hang,
        // and the caller is told to use TCP.
        assert!(connect(&endpoint).await.is_err());
        assert!(connect_if_local(Some(&endpoint)).await.is_none());
    }
}
