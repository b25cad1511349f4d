//! Setting a connection up: TLS (when on), the cookie handshake over
//! `cohort_wire::handshake`, and the first messages read and written before the
//! connection's driver starts.

use std::time::Duration;

use bytes::BytesMut;
use cohort_transport::{BoxedReader, BoxedWriter, Connection};
use cohort_wire::envelope::{decode_envelope, encode_envelope, EnvelopeError};
use cohort_wire::frame::{FrameDecoder, FrameError, DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME};
use cohort_wire::handshake::{Handshake, HandshakeError};
use cohort_wire::proto::{Envelope, Role};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::node::Node;
use crate::fingerprint::build_fingerprint;

/// Why a connection to or from another process could not be set up.
///
/// ```
/// use cohort_cluster::ConnectError;
/// let e = ConnectError::TimedOut { during: "the handshake" };
/// assert!(e.to_string().contains("timed out"));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Connecting, reading or writing failed.
    #[error("I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed (only with the `tls` feature).
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    /// The cookie handshake failed (wrong cookie, version, malformed or rejected).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer sent a frame that cannot be decoded.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer sent a message that cannot be decoded.
    #[error("bad message: {0}")]
    Message(#[from] EnvelopeError),
    /// The peer did not answer in time.
    #[error("timed out during {during}")]
    TimedOut {
        /// The step that timed out.
        during: &'static str,
    },
    /// The peer closed the connection.
    #[error("the peer closed the connection during {during}")]
    Closed {
        /// The step it closed in.
        during: &'static str,
    },
    /// The peer sent another message than the one set-up expects.
    #[error("expected {expected} from the peer")]
    Unexpected {
        /// The message expected.
        expected: &'static str,
    },
    /// A second master tried to join this worker.
    #[error("a second master tried to join")]
    SecondMaster,
    /// A worker tried to connect under a master-worker topology.
    #[error("worker {pid} tried to connect, but the topology is master-worker")]
    TopologyForbids {
        /// The worker.
        pid: u32,
    },
    /// A worker was asked to connect to another that has no TCP address (it runs
    /// a custom transport), and was given no manager to connect with
    /// (`WorkerOptions::manager`).
    #[error(
        "worker {pid} has no TCP address, and this worker was given no cluster manager \
         to reach it with (WorkerOptions::manager)"
    )]
    NoPeerTransport {
        /// The worker to connect to.
        pid: u32,
    },
    /// The task setting the connection up ended without a result.
    #[error("the connection task ended without a result")]
    TaskLost,
}

/// A connection whose handshake succeeded.
pub(crate) struct Established {
    pub(crate) reader: BoxedReader,
    pub(crate) writer: BoxedWriter,
    /// Bytes read past the handshake (the start of the next frames).
    pub(crate) buf: BytesMut,
    pub(crate) same_exe: bool,
    /// Where the connection goes ([`Connection::peer`]: a TCP address, `unix:@…`
    /// for a same-host socket), for `observe::peers`.
    pub(crate) address: String,
}

/// Wraps an outgoing connection in TLS when TLS is on (never without the `tls`
/// feature).
#[cfg(feature = "tls")]
pub(crate) async fn tls_client(node: &Node, conn: Connection) -> Result<Connection, ConnectError> {
    let tls = node.tls.read().clone();
    match tls {
        None => Ok(conn),
        Some(t) => t.wrap_client(conn).await.map_err(ConnectError::Tls),
    }
}

/// Without the `tls` feature connections are never wrapped.
#[cfg(not(feature = "tls"))]
pub(crate) async fn tls_client(_node: &Node, conn: Connection) -> Result<Connection, ConnectError> {
    Ok(conn)
}

/// Wraps an accepted connection in TLS when TLS is on (never without the `tls`
/// feature).
#[cfg(feature = "tls")]
pub(crate) async fn tls_server(node: &Node, conn: Connection) -> Result<Connection, ConnectError> {
    let tls = node.tls.read().clone();
    match tls {
        None => Ok(conn),
        Some(t) => t.wrap_server(conn).await.map_err(ConnectError::Tls),
    }
}

/// Without the `tls` feature connections are never wrapped.
#[cfg(not(feature = "tls"))]
pub(crate) async fn tls_server(_node: &Node, conn: Connection) -> Result<Connection, ConnectError> {
    Ok(conn)
}

/// Runs the cookie handshake on a fresh connection.
///
/// # Errors
/// Any [`ConnectError`] (bad cookie, version, timeout, I/O).
pub(crate) async fn handshake(
    node: &Node,
    conn: Connection,
    role: Role,
) -> Result<Established, ConnectError> {
    let Connection {
        mut reader,
        mut writer,
        peer: address,
    } = conn;
    let mut hs = Handshake::new(role, node.cookie(), build_fingerprint().to_vec());
    let mut buf = BytesMut::with_capacity(4096);
    let mut decoder = FrameDecoder::new(HANDSHAKE_MAX_FRAME);
    let run = async {
        loop {
            let mut out = BytesMut::new();
            while let Some(p) = hs.poll_transmit() {
                cohort_wire::frame::encode_frame(&p, &mut out);
            }
            if !out.is_empty() {
                writer.write_all(&out).await?;
                writer.flush().await?;
            }
            if hs.is_established() {
                return Ok(());
            }
            let frame = loop {
                match decoder.decode(&mut buf)? {
                    Some(f) => break f,
                    None => {
                        if reader.read_buf(&mut buf).await? == 0 {
                            return Err(ConnectError::Closed {
                                during: "the handshake",
                            });
                        }
                    }
                }
            };
            if let Err(e) = hs.handle_payload(&frame) {
                // Tell the peer why (the queued Reject), then give up.
                let mut out = BytesMut::new();
                while let Some(p) = hs.poll_transmit() {
                    cohort_wire::frame::encode_frame(&p, &mut out);
                }
                let _ = writer.write_all(&out).await;
                let _ = writer.flush().await;
                return Err(e.into());
            }
        }
    };
    match tokio::time::timeout(node.handshake_timeout(), run).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ConnectError::TimedOut {
                during: "the handshake",
            })
        }
    }
    let same_exe = hs.peer_fingerprint() == Some(build_fingerprint());
    Ok(Established {
        reader,
        writer,
        buf,
        same_exe,
        address,
    })
}

/// Authenticates a fresh connection as `role`: TLS (when on; client or server by
/// role), then the cookie handshake, the whole of it bounded by the node's handshake
/// timeout — TLS has no timeout of its own, so a peer that sends nothing holds the
/// connection only that long.
///
/// # Errors
/// Any [`ConnectError`] of TLS or the handshake; `TimedOut` past the timeout.
pub(crate) async fn authenticate(
    node: &Node,
    conn: Connection,
    role: Role,
) -> Result<Established, ConnectError> {
    let setup = async {
        let conn = match role {
            Role::Acceptor => tls_server(node, conn).await?,
            _ => tls_client(node, conn).await?,
        };
        handshake(node, conn, role).await
    };
    tokio::time::timeout(node.handshake_timeout(), setup)
        .await
        .map_err(|_| ConnectError::TimedOut {
            during: "the handshake",
        })?
}

/// Reads one envelope from a connection before its driver starts (Join,
/// JoinComplete, Identify), keeping any bytes after it in `est.buf`.
pub(crate) async fn read_one(
    est: &mut Established,
    timeout: Duration,
) -> Result<Envelope, ConnectError> {
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let fut = async {
        loop {
            if let Some(frame) = decoder.decode(&mut est.buf)? {
                return Ok(decode_envelope(frame)?);
            }
            if est.reader.read_buf(&mut est.buf).await? == 0 {
                return Err(ConnectError::Closed { during: "set-up" });
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ConnectError::TimedOut {
            during: "set-up (waiting for a message)",
        })?
}

/// Writes one envelope directly (before the driver exists).
pub(crate) async fn write_one(est: &mut Established, env: &Envelope) -> Result<(), ConnectError> {
    let mut out = BytesMut::new();
    encode_envelope(env, &mut out);
    est.writer.write_all(&out).await?;
    est.writer.flush().await?;
    Ok(())
}
