//! One connection to another process: the handshake over its byte streams, a writer
//! task that coalesces queued frames into few writes, and a reader task that decodes
//! frames and dispatches each message.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use cohort_transport::{BoxedReader, BoxedWriter, Connection};
use cohort_wire::envelope::{decode_envelope, encode_envelope, encode_envelope_split, SplitFrame};
use cohort_wire::frame::{FrameDecoder, DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME};
use cohort_wire::handshake::Handshake;
use cohort_wire::ids::Pid;
use cohort_wire::proto::{self, envelope::Kind, Envelope, Role};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::CallError;
use crate::fingerprint::build_fingerprint;
use crate::node::node;

/// How long a handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A writer coalesces queued frames up to this many bytes into one write.
const COALESCE_LIMIT: usize = 256 * 1024;

/// The sending side of a connection.
///
/// A sender writes its frame straight to the socket when nothing is queued and no
/// task is writing (the common case of a call waiting for its answer): no hand-off to
/// another thread, no wake-up. Only when the socket would block does the writer go to
/// a task, which drains the queue and then gives the writer back.
#[derive(Default)]
struct Outbox {
    /// The writer while no task uses it; `None` before the connection is up and
    /// while the drain task holds it.
    idle: Option<BoxedWriter>,
    /// Frames waiting to be written, in order.
    queue: Vec<SplitFrame>,
}

/// A connected (or connecting) peer.
pub(crate) struct Peer {
    pub pid: Pid,
    out: Mutex<Outbox>,
    /// Whether the peer runs this very executable (equal build fingerprints), so code
    /// offsets may be sent to it. Unknown (false) until the handshake is done.
    same_exe: AtomicBool,
    /// Whether the handshake is done (until then `same_exe` is not known).
    established: AtomicBool,
    closed: AtomicBool,
}

impl Peer {
    fn new(pid: Pid) -> Arc<Peer> {
        Arc::new(Peer {
            pid,
            out: Mutex::new(Outbox::default()),
            same_exe: AtomicBool::new(false),
            established: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    pub(crate) fn same_exe(&self) -> bool {
        self.same_exe.load(Ordering::Acquire)
    }

    pub(crate) fn is_established(&self) -> bool {
        self.established.load(Ordering::Acquire)
    }

    /// Queues one message.
    pub(crate) fn send(self: &Arc<Self>, env: &Envelope) -> Result<(), CallError> {
        // A large payload is written from where it is, not copied into the frame.
        self.send_frame(encode_envelope_split(env))
    }

    fn send_frame(self: &Arc<Self>, mut frame: SplitFrame) -> Result<(), CallError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.exited("connection closed"));
        }
        let mut out = self.out.lock();
        let Some(w) = out.idle.as_mut() else {
            // Not connected yet, or a drain task is writing: it will take this too.
            out.queue.push(frame);
            return Ok(());
        };
        match write_now(w, &mut frame) {
            Ok(true) => Ok(()),
            Ok(false) => {
                // The socket is full: a task finishes the job when it has room.
                out.queue.push(frame);
                let w = out.idle.take().expect("checked above");
                drop(out);
                crate::runtime::handle().spawn(drain(self.clone(), w));
                Ok(())
            }
            Err(e) => {
                drop(out);
                self.close(&format!("write failed: {e}"));
                Err(self.exited("connection closed"))
            }
        }
    }

    /// Marks the connection closed and shuts our side down so the peer sees it end.
    fn close(&self, reason: &str) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!(pid = self.pid, reason, "closing connection");
        let w = self.out.lock().idle.take();
        if let Some(mut w) = w {
            crate::runtime::handle().spawn(async move {
                let _ = w.shutdown().await;
            });
        }
    }

    fn exited(&self, reason: &str) -> CallError {
        CallError::WorkerExited {
            pid: self.pid,
            reason: reason.into(),
        }
    }

    /// A peer whose connection is made in the background (lazy worker-to-worker).
    /// Messages queue until it is up; if it cannot be made, the peer is dropped and
    /// whatever waited on it fails.
    pub(crate) fn connect_lazily(pid: Pid, info: proto::WorkerInfo) -> Arc<Peer> {
        let peer = Peer::new(pid);
        let p = peer.clone();
        crate::runtime::handle().spawn(async move {
            let result = async {
                let conn = cohort_transport::stream::tcp_connect(&info.host, info.port as u16)
                    .await
                    .map_err(|e| e.to_string())?;
                let conn = crate::tls::client(conn).await?;
                let mut est = handshake(conn, Role::Connector).await?;
                // Say who we are before anything queued by callers goes out.
                let hello = Envelope {
                    kind: Some(Kind::Identify(proto::Identify { pid: node().myid() })),
                };
                write_one(&mut est, &hello).await?;
                Ok::<_, String>(est)
            }
            .await;
            match result {
                Ok(est) => p.start(est),
                Err(reason) => {
                    tracing::warn!(pid, %reason, "could not connect to worker");
                    p.closed.store(true, Ordering::Release);
                    node().peer_lost(pid, &p, &format!("could not connect: {reason}"));
                }
            }
        });
        peer
    }

    /// Starts the writer and reader tasks of an established connection.
    fn start(self: &Arc<Self>, est: Established) {
        self.same_exe.store(est.same_exe, Ordering::Release);
        self.established.store(true, Ordering::Release);
        crate::runtime::handle().spawn(drain(self.clone(), est.writer));
        crate::runtime::handle().spawn(reader_loop(self.clone(), est.reader, est.buf));
    }

    /// Registers an established connection to `pid` and starts its tasks. If this
    /// process already talks to `pid` over another connection, the new one is only
    /// read from (both sides keep sending on their first connection, which keeps each
    /// direction in order).
    pub(crate) fn register(pid: Pid, est: Established) -> Arc<Peer> {
        let peer = Peer::new(pid);
        {
            let mut peers = node().peers.write();
            peers.entry(pid).or_insert_with(|| peer.clone());
        }
        peer.start(est);
        peer
    }
}

/// Writes as much of `frame` as the socket takes now, without waiting. Returns
/// whether all of it went (`frame` keeps the rest otherwise).
fn write_now(w: &mut BoxedWriter, frame: &mut SplitFrame) -> std::io::Result<bool> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    while !frame.is_empty() {
        // The head first, then the payload it announces.
        let part: &[u8] = if frame.head.is_empty() {
            &frame.tail
        } else {
            &frame.head
        };
        match Pin::new(&mut **w).poll_write(&mut cx, part) {
            Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) if frame.head.is_empty() => frame.tail.advance(n),
            Poll::Ready(Ok(n)) => frame.head.advance(n),
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(false),
        }
    }
    match Pin::new(&mut **w).poll_flush(&mut cx) {
        Poll::Ready(Ok(())) => Ok(true),
        Poll::Ready(Err(e)) => Err(e),
        // A buffering writer (TLS, say) still holds bytes: let the task flush them.
        Poll::Pending => Ok(false),
    }
}

/// Writes what is queued until the queue is empty, then gives the writer back for
/// direct writes. Small frames are coalesced into one write.
async fn drain(peer: Arc<Peer>, mut w: BoxedWriter) {
    let mut buf = BytesMut::new();
    loop {
        let batch = {
            let mut out = peer.out.lock();
            if peer.closed.load(Ordering::Acquire) {
                drop(out);
                let _ = w.shutdown().await;
                return;
            }
            if out.queue.is_empty() {
                out.idle = Some(w);
                return;
            }
            std::mem::take(&mut out.queue)
        };
        let mut result = Ok(());
        for frame in batch {
            if frame.len() >= COALESCE_LIMIT {
                if !buf.is_empty() {
                    result = result.and(w.write_all(&buf).await);
                    buf.clear();
                }
                result = result.and(w.write_all(&frame.head).await);
                result = result.and(w.write_all(&frame.tail).await);
            } else {
                buf.extend_from_slice(&frame.head);
                buf.extend_from_slice(&frame.tail);
                if buf.len() >= COALESCE_LIMIT {
                    result = result.and(w.write_all(&buf).await);
                    buf.clear();
                }
            }
        }
        if !buf.is_empty() {
            result = result.and(w.write_all(&buf).await);
            buf.clear();
        }
        result = result.and(w.flush().await);
        if let Err(e) = result {
            tracing::debug!(pid = peer.pid, error = %e, "write failed");
            peer.closed.store(true, Ordering::Release);
            let _ = w.shutdown().await;
            return;
        }
    }
}

async fn reader_loop(peer: Arc<Peer>, mut r: BoxedReader, mut buf: BytesMut) {
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let reason = loop {
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => match decode_envelope(frame) {
                Ok(env) => crate::dispatch::handle(&peer, env),
                Err(e) => break format!("bad message: {e}"),
            },
            Ok(None) => {
                if buf.capacity() - buf.len() < 8192 {
                    buf.reserve(64 * 1024);
                }
                match r.read_buf(&mut buf).await {
                    Ok(0) => break "connection closed".to_string(),
                    Ok(_) => {}
                    Err(e) => break format!("read failed: {e}"),
                }
            }
            Err(e) => break format!("bad frame: {e}"),
        }
    };
    if reason != "connection closed" {
        tracing::warn!(pid = peer.pid, %reason, "closing connection");
    }
    // Close our side too, so the peer sees the connection end.
    peer.close(&reason);
    node().peer_lost(peer.pid, &peer, &reason);
}

/// A connection whose handshake succeeded.
pub(crate) struct Established {
    pub reader: BoxedReader,
    pub writer: BoxedWriter,
    /// Bytes read past the handshake (the start of the next frames).
    pub buf: BytesMut,
    pub same_exe: bool,
}

/// Runs the handshake on a fresh connection.
///
/// # Errors
/// A description of the failure (bad cookie, version, timeout, I/O).
pub(crate) async fn handshake(conn: Connection, role: Role) -> Result<Established, String> {
    let Connection {
        mut reader,
        mut writer,
        peer,
    } = conn;
    let mut hs = Handshake::new(role, node().cookie(), build_fingerprint().to_vec());
    let mut buf = BytesMut::with_capacity(4096);
    let mut decoder = FrameDecoder::new(HANDSHAKE_MAX_FRAME);
    let run = async {
        loop {
            let mut out = BytesMut::new();
            while let Some(p) = hs.poll_transmit() {
                cohort_wire::frame::encode_frame(&p, &mut out);
            }
            if !out.is_empty() {
                writer.write_all(&out).await.map_err(|e| e.to_string())?;
                writer.flush().await.map_err(|e| e.to_string())?;
            }
            if hs.is_established() {
                return Ok(());
            }
            let frame = loop {
                match decoder.decode(&mut buf).map_err(|e| e.to_string())? {
                    Some(f) => break f,
                    None => {
                        let n = reader.read_buf(&mut buf).await.map_err(|e| e.to_string())?;
                        if n == 0 {
                            return Err(
                                "the peer closed the connection during the handshake".to_string()
                            );
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
                return Err(e.to_string());
            }
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("handshake with {peer} failed: {e}")),
        Err(_) => return Err(format!("handshake with {peer} timed out")),
    }
    let same_exe = hs.peer_fingerprint() == Some(build_fingerprint());
    Ok(Established {
        reader,
        writer,
        buf,
        same_exe,
    })
}

/// Reads one envelope from a connection before its reader task starts (Join,
/// JoinComplete, Identify), keeping any bytes after it in `est.buf`.
pub(crate) async fn read_one(est: &mut Established, timeout: Duration) -> Result<Envelope, String> {
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let fut = async {
        loop {
            if let Some(frame) = decoder.decode(&mut est.buf).map_err(|e| e.to_string())? {
                return decode_envelope(frame).map_err(|e| e.to_string());
            }
            let n = est
                .reader
                .read_buf(&mut est.buf)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".to_string());
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| "timed out waiting for a message".to_string())?
}

/// Writes one envelope directly (before the writer task exists).
pub(crate) async fn write_one(est: &mut Established, env: &Envelope) -> Result<(), String> {
    let mut out = BytesMut::new();
    encode_envelope(env, &mut out);
    est.writer
        .write_all(&out)
        .await
        .map_err(|e| e.to_string())?;
    est.writer.flush().await.map_err(|e| e.to_string())
}
