//! Elastic workers (Julia's `ElasticManager`): workers that join a running cluster by
//! themselves, at any time, instead of being launched by it.
//!
//! The master's side is a join listener. Each connection to it is authenticated as
//! any other (TLS when the cluster uses it, then the cookie handshake, the worker
//! being the side that connected), says where its worker listens for the other
//! workers (a `JoinRequest`), and is then joined exactly as a launched worker is
//! ([`finish_join`]: `Join`, `JoinComplete`, membership). A connection that fails
//! authentication is logged and dropped; the cluster never sees it.
//!
//! The worker's side (`--join HOST:PORT`, [`WorkerOptions::join`](crate::WorkerOptions::join))
//! connects there, retrying while nothing listens yet (a worker started before its
//! driver), and becomes the worker of the master that answers.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_transport::{
    BoxFuture, ClusterManager, Connection, LaunchError, LaunchParams, WorkerConfig,
};
use cohort_wire::ids::Pid;
use cohort_wire::proto::{self, envelope::Kind, Envelope, Role};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use super::accept::{accept_loop, AcceptLimits};
use super::handshake::{authenticate, read_one, write_one, ConnectError};
use super::launch::finish_join;
use super::node::Node;

/// What a join listener has done so far, for its handle.
#[derive(Debug, Default)]
pub(crate) struct JoinCounts {
    /// Workers joined.
    pub(crate) joined: AtomicU64,
    /// Connections refused (failed authentication, broke the protocol, or could not
    /// be joined).
    pub(crate) refused: AtomicU64,
}

/// The manager a joined worker is recorded with. It started no process, so it has
/// none to stop: a joined worker that is removed is asked to exit, and exits when its
/// connection to the master closes, as every worker does. It launches nothing
/// (workers come to the listener by themselves).
#[derive(Debug)]
pub(crate) struct JoinedByThemselves;

impl ClusterManager for JoinedByThemselves {
    fn launch<'a>(
        &'a self,
        _params: &'a LaunchParams,
        _launched: tokio::sync::mpsc::UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async {
            Err(LaunchError::Other(
                "elastic workers join by themselves (cohort-worker --join); there is \
                 nothing to launch"
                    .to_string(),
            ))
        })
    }
}

/// Binds the join listener at `addr` (from inside the runtime).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    let _in_runtime = super::runtime::handle().enter();
    TcpListener::from_std(std)
}

/// Serves the join listener until the task is aborted (the handle dropped) or the
/// listener fails for good.
pub(crate) async fn serve_joins(n: Arc<Node>, listener: TcpListener, counts: Arc<JoinCounts>) {
    let limits = AcceptLimits {
        max_handshakes: super::accept::max_handshakes_from_env(),
    };
    let e = accept_loop(listener, limits.slots(), |stream, addr, permit| {
        let n = n.clone();
        let counts = counts.clone();
        async move {
            match accept_join(&n, stream, permit).await {
                Ok(pid) => {
                    counts.joined.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%addr, pid, "an elastic worker joined");
                }
                Err(e) => {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%addr, error = %e, "refused a joining worker");
                }
            }
        }
    })
    .await;
    tracing::error!(error = %e, "the join listener failed; no more workers can join");
}

/// One connection to the join listener: authenticate it, read where its worker
/// listens, join it.
async fn accept_join(
    n: &Arc<Node>,
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
) -> Result<Pid, ConnectError> {
    let addr = stream.peer_addr()?;
    let conn = Connection::from_tcp(stream)?;
    // Bounded: a connection that sends nothing holds its set-up slot only for the
    // handshake timeout.
    let mut est = authenticate(n, conn, Role::Acceptor).await?;
    drop(permit);
    let request = match read_one(&mut est, n.handshake_timeout()).await?.kind {
        Some(Kind::JoinRequest(r)) => r,
        _ => {
            return Err(ConnectError::Unexpected {
                expected: "JoinRequest",
            })
        }
    };
    let port = u16::try_from(request.port).map_err(|_| ConnectError::Unexpected {
        expected: "a JoinRequest with a port number",
    })?;
    // Where the other workers reach it: the address it reports, or else the one its
    // connection came from.
    let host = if request.host.is_empty() {
        addr.ip().to_string()
    } else {
        request.host
    };
    let config = WorkerConfig::at(host, port);
    let manager: Arc<dyn ClusterManager> = Arc::new(JoinedByThemselves);
    let (topology, lazy) = n.peek(|c| c.membership().topology());
    let pid = n.with_core(|c| c.allocate_pid());
    finish_join(n, pid, manager, &config, topology, lazy, est).await?;
    Ok(pid)
}

/// The pause between attempts to reach a join listener that is not there yet.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// The worker's side of `--join master`: connects to the master's join listener
/// (retrying while the connection is refused, until `timeout`), authenticates, says
/// it listens at `host:port`, and becomes the worker of the master that answers.
///
/// # Errors
/// Refused until `timeout`, authentication failed (a wrong cookie, TLS on one side
/// only), or the master sent no `Join`.
pub(crate) async fn join_master(
    n: &Arc<Node>,
    master: &str,
    host: String,
    port: u16,
    timeout: Duration,
) -> Result<(), ConnectError> {
    let deadline = Instant::now() + timeout;
    let conn = loop {
        match tokio::time::timeout(n.handshake_timeout(), TcpStream::connect(master)).await {
            Ok(Ok(s)) => break Connection::from_tcp(s)?,
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                if Instant::now() + RETRY_EVERY > deadline {
                    return Err(e.into());
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(ConnectError::TimedOut {
                    during: "connecting",
                })
            }
        }
    };
    let mut est = authenticate(n, conn, Role::Connector).await?;
    write_one(
        &mut est,
        &Envelope {
            kind: Some(Kind::JoinRequest(proto::JoinRequest {
                host,
                port: u32::from(port),
            })),
        },
    )
    .await?;
    // The master answers once it has taken the joins before this one.
    match read_one(&mut est, timeout).await?.kind {
        Some(Kind::Join(join)) => super::serve::become_worker(n, est, join).await,
        _ => Err(ConnectError::Unexpected { expected: "Join" }),
    }
}
