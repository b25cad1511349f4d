//! Byte streams: what a connection is made of, whatever carries it — TCP
//! ([`tcp_connect`]) or Unix-domain sockets ([`unix_connect`], [`unix_listen`],
//! [`unix_accept`]).

use std::io;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixListener, UnixStream};

/// How long a TCP connection may carry nothing before the kernel probes it
/// (`TCP_KEEPIDLE`).
///
/// ```
/// assert_eq!(cohort_transport::stream::KEEPALIVE_IDLE.as_secs(), 10);
/// ```
pub const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(10);
/// The time between unanswered keepalive probes (`TCP_KEEPINTVL`).
///
/// ```
/// assert_eq!(cohort_transport::stream::KEEPALIVE_INTERVAL.as_secs(), 2);
/// ```
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Unanswered probes after which the kernel drops the connection (`TCP_KEEPCNT`): a
/// dead peer's connection ends about 16 s after it last carried anything.
///
/// ```
/// assert_eq!(cohort_transport::stream::KEEPALIVE_RETRIES, 3);
/// ```
pub const KEEPALIVE_RETRIES: u32 = 3;

/// The reading half of a connection.
pub type BoxedReader = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection.
pub type BoxedWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection as a pair of byte streams, plus a description of the peer for logs.
///
/// A custom transport hands the runtime one of these from
/// [`ClusterManager::connect`](crate::ClusterManager::connect).
///
/// ```
/// # async fn demo() {
/// let (a, _b) = tokio::io::duplex(64);
/// let (r, w) = tokio::io::split(a);
/// let conn = cohort_transport::Connection::new(Box::new(r), Box::new(w), "in-memory");
/// assert_eq!(conn.peer, "in-memory");
/// # }
/// ```
pub struct Connection {
    /// Bytes from the peer.
    pub reader: BoxedReader,
    /// Bytes to the peer.
    pub writer: BoxedWriter,
    /// The peer, for logs and errors (an address, a socket path…).
    pub peer: String,
}

impl Connection {
    /// Wraps a reader and a writer.
    ///
    /// ```
    /// # async fn demo() {
    /// let (a, _b) = tokio::io::duplex(64);
    /// let (r, w) = tokio::io::split(a);
    /// let _ = cohort_transport::Connection::new(Box::new(r), Box::new(w), "x");
    /// # }
    /// ```
    pub fn new(reader: BoxedReader, writer: BoxedWriter, peer: impl Into<String>) -> Self {
        Connection {
            reader,
            writer,
            peer: peer.into(),
        }
    }

    /// Wraps a TCP stream, turning Nagle's algorithm off and TCP keepalive on (see
    /// [`KEEPALIVE_IDLE`]): a peer whose host vanished, or whose link was cut, is
    /// found out by the kernel even on a connection nothing is sent on (cohort's
    /// heartbeats find it sooner, and also find a peer that is only stopped).
    ///
    /// # Errors
    /// The I/O error from setting `TCP_NODELAY` or the keepalive options.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let s = tokio::net::TcpStream::connect("127.0.0.1:9000").await?;
    /// let _conn = cohort_transport::Connection::from_tcp(s)?;
    /// # Ok(()) }
    /// ```
    pub fn from_tcp(stream: TcpStream) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_RETRIES);
        socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "tcp peer".into());
        let (r, w) = stream.into_split();
        Ok(Connection::new(Box::new(r), Box::new(w), peer))
    }
}

impl Connection {
    /// Wraps a Unix-domain stream socket; the peer is described by `peer` (the
    /// socket's path, typically, since the connecting side of a Unix socket is
    /// usually unnamed).
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let s = tokio::net::UnixStream::connect("/tmp/w0.sock").await?;
    /// let _conn = cohort_transport::Connection::from_unix(s, "/tmp/w0.sock");
    /// # Ok(()) }
    /// ```
    pub fn from_unix(stream: UnixStream, peer: impl Into<String>) -> Self {
        let (r, w) = stream.into_split();
        Connection::new(Box::new(r), Box::new(w), peer)
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .finish()
    }
}

/// Connects over TCP to `host:port` with `TCP_NODELAY` on.
///
/// # Errors
/// The I/O error of the connect (refused, unreachable, bad host name).
///
/// # Cancel safety
/// Cancel-safe: nothing is lost but the attempt. A connection half made when the
/// future is dropped is closed; the peer may see a connection open and close.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let _conn = cohort_transport::stream::tcp_connect("127.0.0.1", 9000).await?;
/// # Ok(()) }
/// ```
pub async fn tcp_connect(host: &str, port: u16) -> io::Result<Connection> {
    let s = TcpStream::connect((host, port)).await?;
    Connection::from_tcp(s)
}

/// Connects to the Unix-domain stream socket at `path`. Same host only; no
/// `TCP_NODELAY` to set (Unix sockets do not batch small writes).
///
/// # Errors
/// The I/O error of the connect (`NotFound` for no socket there,
/// `ConnectionRefused` for a socket nobody listens on).
///
/// # Cancel safety
/// Cancel-safe, as [`tcp_connect`]: a connection made but not returned is closed.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let _conn = cohort_transport::stream::unix_connect("/tmp/w0.sock").await?;
/// # Ok(()) }
/// ```
pub async fn unix_connect(path: impl AsRef<Path>) -> io::Result<Connection> {
    let path = path.as_ref();
    let s = UnixStream::connect(path).await?;
    Ok(Connection::from_unix(s, path.display().to_string()))
}

/// Binds a Unix-domain stream listener at `path` (the file must not exist yet), for
/// a worker that accepts its connections there. Must be called within a tokio
/// runtime, like `tokio::net::UnixListener::bind`.
///
/// # Errors
/// The I/O error of the bind (`AddrInUse` if the file exists, `InvalidInput` for a
/// path longer than the system's limit of about 108 bytes).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let path = std::env::temp_dir().join(format!("cohort-doc-{}.sock", std::process::id()));
/// let listener = cohort_transport::stream::unix_listen(&path)?;
/// let (client, server) = tokio::join!(
///     cohort_transport::stream::unix_connect(&path),
///     cohort_transport::stream::unix_accept(&listener),
/// );
/// let (_client, _server) = (client?, server?);
/// std::fs::remove_file(&path)?;
/// # Ok(()) }
/// ```
pub fn unix_listen(path: impl AsRef<Path>) -> io::Result<UnixListener> {
    UnixListener::bind(path)
}

/// Accepts one connection on a Unix-domain listener, as a [`Connection`] whose
/// peer is described by the listener's own path (the connecting side is unnamed).
///
/// # Errors
/// The I/O error of the accept.
///
/// # Cancel safety
/// Cancel-safe: it waits in `tokio::net::UnixListener::accept`, which is, so a
/// dropped call accepts nothing and a connection waiting in the backlog is left for
/// the next call.
///
/// ```no_run
/// # async fn demo(listener: tokio::net::UnixListener) -> std::io::Result<()> {
/// loop {
///     let conn = cohort_transport::stream::unix_accept(&listener).await?;
///     // hand `conn` to the runtime (`WorkerOptions::process_messages` in cohort)
/// #   drop(conn);
/// }
/// # }
/// ```
pub async fn unix_accept(listener: &UnixListener) -> io::Result<Connection> {
    let (s, _) = listener.accept().await?;
    let peer = listener
        .local_addr()
        .ok()
        .and_then(|a| {
            a.as_pathname()
                .map(|p| format!("unix peer at {}", p.display()))
        })
        .unwrap_or_else(|| "unix peer".into());
    Ok(Connection::from_unix(s, peer))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{unix_accept, unix_connect, unix_listen};

    #[tokio::test]
    async fn unix_socket_carries_bytes_both_ways() {
        let dir = std::env::temp_dir().join(format!("cohort-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = unix_listen(&path).unwrap();
        let (client, server) = tokio::join!(unix_connect(&path), unix_accept(&listener));
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        assert_eq!(client.peer, path.display().to_string());
        assert!(server.peer.contains("s.sock"), "{}", server.peer);

        // Client to server, then server to client, with a payload larger than one
        // socket buffer so that both directions really stream.
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let send = big.clone();
        let writer = tokio::spawn(async move {
            client.writer.write_all(&send).await.unwrap();
            client.writer.flush().await.unwrap();
            client
        });
        let mut got = vec![0u8; big.len()];
        server.reader.read_exact(&mut got).await.unwrap();
        assert_eq!(got, big);
        let mut client = writer.await.unwrap();
        server.writer.write_all(b"pong").await.unwrap();
        let mut back = [0u8; 4];
        client.reader.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"pong");
        // Closing one side ends the other's reads.
        drop(server);
        let mut rest = Vec::new();
        assert_eq!(client.reader.read_to_end(&mut rest).await.unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
