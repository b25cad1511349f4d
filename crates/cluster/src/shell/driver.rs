//! One driver per connection to another process: a writer that sends queued frames
//! straight to the socket when it can and hands them to a task that coalesces them
//! into few writes when it cannot, and a reader task that decodes frames and feeds
//! each message to the core.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cohort_transport::{BoxedReader, BoxedWriter};
use cohort_wire::envelope::{decode_envelope, encode_envelope_spliced, Splices, SplitFrame};
use cohort_wire::frame::{FrameDecoder, DEFAULT_MAX_FRAME};
use cohort_wire::ids::Pid;
use cohort_wire::proto::{self, envelope::Kind, Envelope, Role};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::handshake::{handshake, tls_client, write_one, ConnectError, Established};
use super::node::Node;
use crate::captures::{Note, SentStates};

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
    /// Messages waiting to be written, in order.
    queue: Vec<Queued>,
}

/// A queued message: encoded only when it is written, outside the core's lock (the
/// lock fixes the order; encoding under it made every step of every other thread
/// wait for it).
enum Queued {
    Message(Envelope, Splices),
    Frame(SplitFrame),
}

impl Queued {
    /// The frame to write, encoded on first use (a partial write keeps its rest).
    fn frame(&mut self) -> &mut SplitFrame {
        if let Queued::Message(env, splices) = self {
            // A large payload is written from where it is, not copied into the frame.
            *self = Queued::Frame(encode_envelope_spliced(env, std::mem::take(splices)));
        }
        match self {
            Queued::Frame(f) => f,
            Queued::Message(..) => unreachable!("encoded above"),
        }
    }

    fn into_frame(self) -> SplitFrame {
        match self {
            Queued::Message(env, splices) => encode_envelope_spliced(&env, splices),
            Queued::Frame(f) => f,
        }
    }
}

/// A connected (or connecting) peer.
pub(crate) struct Peer {
    pub pid: Pid,
    /// The node this connection belongs to (weakly: the node holds its peers).
    node: Weak<Node>,
    out: Mutex<Outbox>,
    /// Whether the peer runs this very executable (equal build fingerprints), so code
    /// offsets may be sent to it. Unknown (false) until the handshake is done.
    same_exe: AtomicBool,
    /// Whether the handshake is done (until then `same_exe` is not known).
    established: AtomicBool,
    closed: AtomicBool,
    /// When the last direct write ended, in nanoseconds since [`epoch`]: a flush soon
    /// after it goes to the drain task instead (see [`Peer::flush`]).
    last_write: AtomicU64,
    /// When the direct write before that one ended (same clock): two direct writes
    /// in quick succession and a third flush make a burst.
    prev_write: AtomicU64,
    /// The reader task, once started, to stop it when the connection is cut.
    reader: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// Whether a message came from the peer on this connection: for a connection
    /// this process opened, the acceptor's answer to `Identify`, which says the
    /// peer has registered it.
    heard: AtomicBool,
    /// Wakes [`wait_answered`](Self::wait_answered) (heard, or closed).
    settled: tokio::sync::Notify,
    /// Bytes read and written (for `crate::observe`).
    pub(crate) traffic: super::observe::Traffic,
    /// The function states this connection's callee keeps for us (`crate::captures`).
    sent_states: Mutex<SentStates>,
    /// Where the connection goes, once established (for `crate::observe`).
    pub(crate) address: std::sync::OnceLock<String>,
}

/// The clock `Peer::last_write` counts from.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
fn nanos_now() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A flush this soon after the connection's last two direct writes (each within
/// this of the next) is left to the drain task: messages sent in a burst (a loop of
/// `remotecall`s, a `join_all`) then go out in a few large writes instead of one
/// system call each, while a lone request (a round trip takes longer than this) is
/// still written at once by its sender — and so is the second of a pair, such as a
/// channel's put within credits followed by the take that waits for the echo: two
/// messages are no burst, and a drain task there costs the waiting caller a thread
/// wake-up.
const BURST_NANOS: u64 = 10_000;

impl Peer {
    fn new(node: &Node, pid: Pid) -> Arc<Peer> {
        Arc::new(Peer {
            pid,
            node: Arc::downgrade(&node.arc()),
            out: Mutex::new(Outbox::default()),
            same_exe: AtomicBool::new(false),
            established: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            last_write: AtomicU64::new(0),
            prev_write: AtomicU64::new(0),
            reader: std::sync::OnceLock::new(),
            heard: AtomicBool::new(false),
            settled: tokio::sync::Notify::new(),
            traffic: Default::default(),
            sent_states: Mutex::new(SentStates::default()),
            address: std::sync::OnceLock::new(),
        })
    }

    /// Waits until the peer has answered on this connection (its first message came)
    /// or the connection closed, at most `limit`; returns whether it answered.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only waits.
    pub(crate) async fn wait_answered(&self, limit: Duration) -> bool {
        let waiting = async {
            loop {
                let settled = self.settled.notified();
                tokio::pin!(settled);
                settled.as_mut().enable();
                if self.heard.load(Ordering::Acquire) {
                    return true;
                }
                if self.closed.load(Ordering::Acquire) {
                    return false;
                }
                settled.await;
            }
        };
        tokio::time::timeout(limit, waiting).await.unwrap_or(false)
    }

    pub(crate) fn same_exe(&self) -> bool {
        self.same_exe.load(Ordering::Acquire)
    }

    pub(crate) fn is_established(&self) -> bool {
        self.established.load(Ordering::Acquire)
    }

    /// Queues one message, in order after those queued before it; returns false if
    /// the connection is closed. Called under the core's lock (which fixes the order);
    /// [`flush`](Self::flush) writes it.
    pub(crate) fn enqueue(&self, mut env: Envelope, splices: Splices) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        self.note_capture(&mut env);
        self.out.lock().queue.push(Queued::Message(env, splices));
        true
    }

    /// A call with a function state to keep goes without the state if the callee
    /// holds it already. Decided here, as the call joins the queue (under the core's
    /// lock, in the order calls leave): an earlier call that carries the state is
    /// then always ahead of this one on the wire.
    fn note_capture(&self, env: &mut Envelope) {
        let Some(Kind::Call(call)) = &mut env.kind else {
            return;
        };
        let Some(capture) = &mut call.capture else {
            return;
        };
        let Ok(key) = capture.key.as_slice().try_into() else {
            return;
        };
        let code = match call.function.as_ref().and_then(|f| f.target.as_ref()) {
            Some(proto::function_ref::Target::CodeOffset(c)) => *c,
            _ => 0,
        };
        let budget = self
            .node
            .upgrade()
            .map_or(crate::captures::DEFAULT_CAPTURE_BUDGET, |n| {
                n.capture_budget()
            });
        let len = call.capture_state.len();
        match self.sent_states.lock().note(key, code, len, budget) {
            Note::Held => call.capture_state = bytes::Bytes::new(),
            Note::Send { forget } => {
                capture.forget = forget.iter().map(|k| k.to_vec()).collect();
            }
        }
    }

    /// Writes what is queued now if the socket takes it; what it does not take goes
    /// to a drain task. Does nothing while the connection is being made or a drain
    /// task is writing (it takes the queue too).
    pub(crate) fn flush(self: &Arc<Self>) {
        let mut guard = self.out.lock();
        let out = &mut *guard;
        let Some(w) = out.idle.as_mut() else {
            return;
        };
        let now = nanos_now();
        let last = self.last_write.load(Ordering::Relaxed);
        let prev = self.prev_write.load(Ordering::Relaxed);
        if now.saturating_sub(last) < BURST_NANOS && last.saturating_sub(prev) < BURST_NANOS {
            // Part of a burst: the drain task writes it with what follows.
            let w = out.idle.take().expect("checked above");
            drop(guard);
            super::runtime::handle().spawn(drain(self.clone(), w));
            return;
        }
        let mut sent = 0;
        let mut result = Ok(true);
        for queued in out.queue.iter_mut() {
            let frame = queued.frame();
            let len = frame.len();
            result = write_now(w, frame);
            // What went; a rest left for the drain task is counted there.
            self.traffic.sent(len - frame.len());
            match result {
                Ok(true) => sent += 1,
                _ => break,
            }
        }
        out.queue.drain(..sent);
        if out.queue.is_empty() && out.queue.capacity() > 1024 {
            // After a burst, give the memory back (a quiet peer returns to its baseline).
            out.queue = Vec::new();
        }
        self.prev_write
            .store(self.last_write.load(Ordering::Relaxed), Ordering::Relaxed);
        self.last_write.store(nanos_now(), Ordering::Relaxed);
        match result {
            Ok(true) => {}
            Ok(false) => {
                // The socket is full: a task finishes the job when it has room.
                let w = out.idle.take().expect("checked above");
                drop(guard);
                super::runtime::handle().spawn(drain(self.clone(), w));
            }
            Err(e) => {
                drop(guard);
                self.close(&format!("write failed: {e}"));
                if let Some(n) = self.node.upgrade() {
                    n.peer_lost(self.pid, self, "write failed");
                }
            }
        }
    }

    /// Marks the connection closed and shuts our side down so the peer sees it end.
    pub(crate) fn close(&self, reason: &str) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.settled.notify_waiters();
        tracing::debug!(pid = self.pid, reason, "closing connection");
        let w = self.out.lock().idle.take();
        if let Some(mut w) = w {
            super::runtime::handle().spawn(async move {
                let _ = w.shutdown().await;
            });
        }
    }

    /// Closes the connection and stops its reader at once (see `Node::cut`).
    pub(crate) fn abort(&self, reason: &str) {
        self.close(reason);
        if let Some(r) = self.reader.get() {
            r.abort();
        }
    }

    /// A peer whose connection is made in the background (lazy worker-to-worker),
    /// through this worker's manager when it was given one (Julia's
    /// `connect(manager, pid, config)` on a worker), over TCP otherwise.
    /// Messages queue until it is up; if it cannot be made, the peer is dropped and
    /// whatever waited on it fails.
    pub(crate) fn connect_lazily(node: &Node, pid: Pid, info: proto::WorkerInfo) -> Arc<Peer> {
        let peer = Peer::new(node, pid);
        // In the table before the task starts, so that a failure finds it there.
        node.peers.write().insert(pid, peer.clone());
        let p = peer.clone();
        let n = node.arc();
        super::runtime::handle().spawn(async move {
            let result = async {
                let conn = connect_to_peer(&n, pid, &info).await?;
                let conn = tls_client(&n, conn).await?;
                let mut est = handshake(&n, conn, Role::Connector).await?;
                // Say who we are before anything queued by callers goes out.
                let hello = Envelope {
                    kind: Some(Kind::Identify(proto::Identify { pid: n.myid() })),
                };
                write_one(&mut est, &hello).await?;
                Ok::<_, ConnectError>(est)
            }
            .await;
            match result {
                Ok(est) => p.start(est),
                Err(reason) => {
                    tracing::warn!(pid, %reason, "could not connect to worker");
                    p.closed.store(true, Ordering::Release);
                    p.settled.notify_waiters();
                    n.peer_lost(pid, &p, &format!("could not connect: {reason}"));
                }
            }
        });
        peer
    }

    /// Starts the writer and reader tasks of an established connection.
    fn start(self: &Arc<Self>, est: Established) {
        let _ = self.address.set(est.address);
        // `fetch_or`: a second connection's handshake may have proved it already
        // (`register`), and this one's must not take that back.
        self.same_exe.fetch_or(est.same_exe, Ordering::AcqRel);
        self.established.store(true, Ordering::Release);
        super::runtime::handle().spawn(drain(self.clone(), est.writer));
        let reader = super::runtime::handle().spawn(reader_loop(self.clone(), est.reader, est.buf));
        let _ = self.reader.set(reader.abort_handle());
    }

    /// Registers an established connection to `pid` and starts its tasks. If this
    /// process already talks to `pid` over another connection, the new one is only
    /// read from (both sides keep sending on their first connection, which keeps each
    /// direction in order).
    pub(crate) fn register(node: &Node, pid: Pid, est: Established) -> Arc<Peer> {
        let peer = Peer::new(node, pid);
        let first = {
            let mut peers = node.peers.write();
            match peers.entry(pid) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    // Calls that come in here are checked against the peer in the
                    // table (the first connection, maybe still in its handshake):
                    // this one's handshake already proved the peer runs this
                    // executable.
                    first
                        .get()
                        .same_exe
                        .fetch_or(est.same_exe, Ordering::AcqRel);
                    false
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(peer.clone());
                    true
                }
            }
        };
        if !first {
            let mut read_only = node.read_only.lock();
            read_only.retain(|w| w.strong_count() > 0);
            read_only.push(Arc::downgrade(&peer));
        }
        peer.start(est);
        peer
    }
}

/// Opens the bytes of a worker-to-worker connection to `pid`: with the manager this
/// worker was given ([`WorkerOptions::manager`](crate::WorkerOptions::manager)), on a
/// config made from what the master announced of `pid`; without one, on `pid`'s
/// same-host socket when it is on this host, else over TCP to the announced address.
async fn connect_to_peer(
    node: &Node,
    pid: Pid,
    info: &proto::WorkerInfo,
) -> Result<cohort_transport::Connection, ConnectError> {
    // Its same-host socket, if it announced one (a malformed one counts as none).
    let local = cohort_transport::same_host::LocalEndpoint::parse(&info.local);
    let manager = node.peer_manager.read().clone();
    if let Some(manager) = manager {
        let config = cohort_transport::WorkerConfig {
            host: (!info.host.is_empty()).then(|| info.host.clone()),
            port: u16::try_from(info.port).ok().filter(|&p| p != 0),
            ident: (!info.ident.is_empty()).then(|| info.ident.clone()),
            local,
            ..Default::default()
        };
        return Ok(manager.connect(pid, &config).await?);
    }
    if let Some(conn) = cohort_transport::same_host::connect_if_local(local.as_ref()).await {
        return Ok(conn);
    }
    match u16::try_from(info.port) {
        Ok(port) if port != 0 && !info.host.is_empty() => {
            Ok(cohort_transport::stream::tcp_connect(&info.host, port).await?)
        }
        _ => Err(ConnectError::NoPeerTransport { pid }),
    }
}

/// Writes as much of `frame` as the socket takes now, without waiting. Returns
/// whether all of it went (`frame` keeps the rest otherwise).
fn write_now(w: &mut BoxedWriter, frame: &mut SplitFrame) -> std::io::Result<bool> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    while !frame.is_empty() {
        // The head first, then the payload it announces, piece by piece.
        match Pin::new(&mut **w).poll_write(&mut cx, frame.chunk()) {
            Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => frame.advance(n),
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
        for queued in batch {
            let frame = queued.into_frame();
            peer.traffic.sent(frame.len());
            if frame.len() >= COALESCE_LIMIT {
                if !buf.is_empty() {
                    result = result.and(w.write_all(&buf).await);
                    buf.clear();
                }
                result = result.and(w.write_all(&frame.head).await);
                for piece in std::iter::once(frame.tail).chain(frame.rest) {
                    result = result.and(w.write_all(&piece).await);
                    if piece.len() >= super::spare::SPARE_MIN {
                        // Written: its memory holds the next large message here (if
                        // this was its last holder: a buffer spliced into several
                        // messages is kept by the last one written).
                        if let Some(n) = peer.node.upgrade() {
                            n.spare.recycle_sent(piece);
                        }
                    }
                }
            } else {
                for part in frame.parts() {
                    buf.extend_from_slice(part);
                }
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
            peer.settled.notify_waiters();
            let _ = w.shutdown().await;
            return;
        }
    }
}

/// At most this many messages are handled under one hold of the core's lock: enough
/// to take a pipelined burst in one step, few enough that no other thread waits long.
const BATCH_LIMIT: usize = 256;

/// While a large message arrives, the reader tells the core it heard from the peer
/// at most this often (each whole message tells it by itself).
const HEARD_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The whole length (header included) of the large frame `buf` starts with, while
/// it has not all come.
fn large_frame_pending(buf: &BytesMut) -> Option<usize> {
    let head: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let total = 4 + u32::from_le_bytes(head) as usize;
    (total >= super::spare::SPARE_MIN && buf.len() < total).then_some(total)
}

async fn reader_loop(peer: Arc<Peer>, mut r: BoxedReader, mut buf: BytesMut) {
    let max = peer
        .node
        .upgrade()
        .map_or(DEFAULT_MAX_FRAME, |n| n.max_frame());
    let mut decoder = FrameDecoder::new(max);
    // The messages of one read, handled in one step of the core: one hold of its lock
    // (and one reading of the clock) for a pipelined burst, not one per message, so
    // that the threads that send requests meanwhile rarely find the lock held.
    let mut batch: Vec<Envelope> = Vec::new();
    // When the core last heard of this peer from here (see `HEARD_EVERY`).
    let mut noted = Instant::now();
    // The buffer last given huge pages for a large message (its address).
    let mut huge_for = 0usize;
    let reason = loop {
        let mut failed = None;
        while batch.len() < BATCH_LIMIT {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if frame.len() >= super::spare::SPARE_MIN {
                        // Let go of the large message's memory here (keep what
                        // follows it), so that whoever decodes it can give it back.
                        buf = BytesMut::from(&buf[..]);
                    }
                    match decode_envelope(frame) {
                        Ok(env) => batch.push(env),
                        Err(e) => {
                            failed = Some(format!("bad message: {e}"));
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(format!("bad frame: {e}"));
                    break;
                }
            }
        }
        // A full batch may have left whole frames in the buffer: handle them before
        // reading more.
        let full = batch.len() >= BATCH_LIMIT;
        if !batch.is_empty() {
            if !peer.heard.swap(true, Ordering::AcqRel) {
                peer.settled.notify_waiters();
            }
            // Held only while these are handled, let go before the next read waits.
            let Some(n) = peer.node.upgrade() else {
                break "the node is gone".to_string();
            };
            let now = Instant::now();
            noted = now;
            n.with_core(|c| {
                for env in batch.drain(..) {
                    c.handle_envelope(peer.pid, env, now);
                }
            });
        }
        // What came before a bad message is handled; the bad one ends the connection.
        if let Some(reason) = failed {
            break reason;
        }
        if full {
            continue;
        }
        if let Some(total) = large_frame_pending(&buf) {
            // Into the memory of a large message given back, if there is one: its
            // pages are already mapped (see `spare`).
            if let Some(spare) = peer
                .node
                .upgrade()
                .and_then(|n| n.spare.take_for(total, &buf))
            {
                buf = spare;
            } else if buf.as_ptr() as usize != huge_for {
                // Else the fresh memory the decoder reserved for it, once: on huge
                // pages (see `memory::advise_huge`).
                huge_for = buf.as_ptr() as usize;
                let room = buf.spare_capacity_mut();
                super::memory::advise_huge(room.as_mut_ptr().cast(), room.len());
            }
        }
        if buf.capacity() - buf.len() < 8192 {
            buf.reserve(64 * 1024);
        }
        match r.read_buf(&mut buf).await {
            Ok(0) => break "connection closed".to_string(),
            Ok(k) => {
                peer.traffic.received(k);
                // The bytes of a large message still arriving show the peer is alive
                // though no whole message has come for a while.
                let now = Instant::now();
                if now.duration_since(noted) >= HEARD_EVERY {
                    noted = now;
                    if let Some(n) = peer.node.upgrade() {
                        n.with_core(|c| c.handle_heard(peer.pid, now));
                    }
                }
            }
            Err(e) => break format!("read failed: {e}"),
        }
    };
    if reason != "connection closed" {
        tracing::warn!(pid = peer.pid, %reason, "closing connection");
    }
    // Close our side too, so the peer sees the connection end.
    peer.close(&reason);
    if let Some(n) = peer.node.upgrade() {
        n.peer_lost(peer.pid, &peer, &reason);
    }
}
