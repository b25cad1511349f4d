//! Byte streams: what a connection is made of, whatever carries it.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

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

    /// Wraps a TCP stream, turning Nagle's algorithm off.
    ///
    /// # Errors
    /// The I/O error from setting `TCP_NODELAY`.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let s = tokio::net::TcpStream::connect("127.0.0.1:9000").await?;
    /// let _conn = cohort_transport::Connection::from_tcp(s)?;
    /// # Ok(()) }
    /// ```
    pub fn from_tcp(stream: TcpStream) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "tcp peer".into());
        let (r, w) = stream.into_split();
        Ok(Connection::new(Box::new(r), Box::new(w), peer))
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
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let _conn = cohort_transport::stream::tcp_connect("127.0.0.1", 9000).await?;
/// # Ok(()) }
/// ```
pub async fn tcp_connect(host: &str, port: u16) -> io::Result<Connection> {
    let s = TcpStream::connect((host, port)).await?;
    Connection::from_tcp(s)
}
