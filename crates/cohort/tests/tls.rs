//! TLS between every pair of processes, over real workers.
//!
//! The TLS setting is process-wide and, once on, stays on, so the phases run in order
//! inside one test: a plaintext control cluster first, then a TLS cluster.
//!
//! The master connects through a test manager that records every byte of the
//! master–worker connection as it crosses the socket (under TLS, which the runtime
//! adds on top of the manager's connection): a distinctive argument and result must
//! show up in plaintext and must not under TLS.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use cohort::prelude::*;
use cohort::transport::{
    stream::tcp_connect, BoxFuture, ClusterManager, Connection, LaunchError, LaunchParams,
    LocalManager, ManageEvent, WorkerConfig,
};
use cohort::{cluster_tls, ClusterTls, TlsMode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc::UnboundedSender;

/// What the calls carry; it must never be seen on the wire under TLS.
const MARKER: &str = "cohort-tls-marker:0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ";

#[cohort::remote]
fn echo(s: String) -> String {
    s
}

#[cohort::remote]
fn echo_via(other: Pid, s: String) -> String {
    blocking::remotecall_fetch(echo, other, (s,)).expect("worker-to-worker call")
}

type Wire = Arc<Mutex<Vec<u8>>>;

/// LocalManager, but connections go through recorders of the raw bytes.
struct Recording {
    inner: LocalManager,
    wire: Wire,
    addrs: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Recording {
    fn new(count: usize) -> Self {
        Recording {
            inner: LocalManager::new(count),
            wire: Arc::default(),
            addrs: Arc::default(),
        }
    }
}

impl ClusterManager for Recording {
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        self.inner.launch(params, launched)
    }

    fn manage(&self, pid: u32, config: &WorkerConfig, event: ManageEvent) {
        self.inner.manage(pid, config, event)
    }

    fn connect<'a>(
        &'a self,
        _pid: u32,
        config: &'a WorkerConfig,
    ) -> BoxFuture<'a, io::Result<Connection>> {
        Box::pin(async move {
            let (host, port) = (config.host.clone().unwrap(), config.port.unwrap());
            self.addrs.lock().unwrap().push((host.clone(), port));
            let c = tcp_connect(&host, port).await?;
            let reader = Recorder {
                inner: c.reader,
                wire: self.wire.clone(),
            };
            let writer = Recorder {
                inner: c.writer,
                wire: self.wire.clone(),
            };
            Ok(Connection::new(Box::new(reader), Box::new(writer), c.peer))
        })
    }
}

struct Recorder<T> {
    inner: T,
    wire: Wire,
}

impl<T: AsyncRead + Unpin> AsyncRead for Recorder<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let new = buf.filled()[before..].to_vec();
            self.wire.lock().unwrap().extend_from_slice(&new);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Recorder<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.wire.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether the peer at the other end of `conn` closes it (or errors) within 10 s of
/// our first bytes. Returns what it sent before closing (a TLS alert, at most).
async fn closed_by_peer(mut conn: Connection) -> Option<Vec<u8>> {
    let _ = conn.writer.write_all(b"cohort hello").await;
    let _ = conn.writer.flush().await;
    let mut got = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), conn.reader.read_to_end(&mut got)).await {
        Ok(_) => Some(got),
        Err(_) => None,
    }
}

#[test]
fn tls_encrypts_every_connection_and_refuses_strangers() {
    let marker = MARKER.to_string();

    // Control: without TLS the marker crosses the wire in the clear.
    let plain = Recording::new(1);
    let plain_wire = plain.wire.clone();
    let pids = AddProcs::with_manager(plain)
        .count(1)
        .launch_blocking()
        .unwrap();
    assert!(cluster_tls().is_none());
    assert_eq!(
        blocking::remotecall_fetch(echo, pids[0], (marker.clone(),)).unwrap(),
        marker
    );
    assert!(
        contains(&plain_wire.lock().unwrap(), MARKER.as_bytes()),
        "the control run should see the marker in plaintext"
    );
    blocking::rmprocs(&pids, None).unwrap();

    // TLS: the same traffic is unreadable.
    let manager = Recording::new(2);
    let wire = manager.wire.clone();
    let addrs = manager.addrs.clone();
    let pids = AddProcs::with_manager(manager)
        .count(2)
        .tls(TlsMode::Generate)
        .launch_blocking()
        .unwrap();
    assert_eq!(pids.len(), 2);
    let tls = cluster_tls().expect("TLS is on");
    let (a, b) = (pids[0], pids[1]);
    for &w in &pids {
        assert_eq!(
            blocking::remotecall_fetch(echo, w, (marker.clone(),)).unwrap(),
            marker
        );
    }
    // Worker to worker (both ends TLS; a plaintext side would be refused).
    assert_eq!(
        blocking::remotecall_fetch(echo_via, a, (b, marker.clone())).unwrap(),
        marker
    );
    assert_eq!(
        blocking::remotecall_fetch(echo_via, b, (a, marker.clone())).unwrap(),
        marker
    );
    // Futures.
    let f = remotecall(echo, b, (marker.clone(),));
    assert_eq!(f.fetch_blocking().unwrap(), marker);
    {
        let recorded = wire.lock().unwrap();
        assert!(
            recorded.len() > 1000,
            "the recorder saw the traffic ({} bytes)",
            recorded.len()
        );
        assert!(
            !contains(&recorded, MARKER.as_bytes()),
            "the marker crossed the wire in plaintext under TLS"
        );
        assert!(!contains(&recorded, b"cohort-tls-marker"));
    }

    // Strangers are refused, and the worker goes on serving its master.
    let (host, port) = addrs.lock().unwrap()[0].clone();
    let refused = cohort::runtime::block_on(async move {
        // 1. Plain TCP speaking anything (the cohort handshake included).
        let plain = tcp_connect(&host, port).await.unwrap();
        // The worker closes it, having sent no more than a TLS alert record
        // (content type 21): not a byte of the cohort protocol.
        let plain_refused = closed_by_peer(plain)
            .await
            .is_some_and(|got| got.is_empty() || (got[0] == 21 && got.len() <= 7));

        // 2. A TLS client with its own CA: it cannot present a certificate the
        //    cluster CA signed (and does not trust the worker's either).
        let foreign = ClusterTls::generate().unwrap();
        let conn = tcp_connect(&host, port).await.unwrap();
        let foreign_refused = foreign.wrap_client(conn).await.is_err();

        // 3. A TLS client that trusts the cluster CA (public) but presents a
        //    certificate of its own: the worker must refuse it.
        let forged =
            ClusterTls::from_pem(tls.ca_pem(), foreign.cert_pem(), foreign.key_pem()).unwrap();
        let conn = tcp_connect(&host, port).await.unwrap();
        let forged_refused = match forged.wrap_client(conn).await {
            Err(_) => true,
            Ok(c) => closed_by_peer(c).await.is_some_and(|got| got.is_empty()),
        };
        (plain_refused, foreign_refused, forged_refused)
    });
    assert_eq!(refused, (true, true, true));
    for &w in &pids {
        assert_eq!(
            blocking::remotecall_fetch(echo, w, (marker.clone(),)).unwrap(),
            marker
        );
    }

    // TLS stays on for later launches, with the same credentials.
    let later = Recording::new(1);
    let later_wire = later.wire.clone();
    let more = AddProcs::with_manager(later)
        .count(1)
        .launch_blocking()
        .unwrap();
    assert_eq!(
        blocking::remotecall_fetch(echo_via, more[0], (a, marker.clone())).unwrap(),
        marker
    );
    assert!(!contains(&later_wire.lock().unwrap(), MARKER.as_bytes()));
    // Asking for different credentials now is an error.
    let err = AddProcs::local(1)
        .tls(TlsMode::Credentials(ClusterTls::generate().unwrap()))
        .launch_blocking();
    assert!(err.is_err());

    let all: Vec<Pid> = workers();
    blocking::rmprocs(&all, None).unwrap();
}
