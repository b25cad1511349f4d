//! A cluster manager over gRPC (tonic), built only on the public interface: every
//! connection to a worker is one bidirectional-streaming RPC on the worker's single
//! TCP port (HTTP/2 multiplexes them), so all of a worker's traffic shares one port.
//!
//! The service is small enough to write without code generation:
//!
//! ```proto
//! package cohort.grpc;
//! service Transport { rpc Connect(stream Chunk) returns (stream Chunk); }
//! message Chunk { bytes data = 1; }
//! ```
//!
//! (`Chunk` is a hand-derived `prost::Message`; the server is a `tower` service over
//! `tonic::server::Grpc`, the client `tonic::client::Grpc`, both with `ProstCodec`.)
//!
//! Master side: `launch` starts this test binary with `COHORT_GRPC_WORKER=1`, which
//! makes its `main` run `grpc_worker_main` below instead of the test, writes the cookie
//! to its stdin and reads the worker's port from its ready line; `connect` opens a new `Connect` stream on
//! the worker's (shared, lazily connected) HTTP/2 channel and adapts it to a
//! `Connection`.
//!
//! Worker side: `WorkerOptions::init_worker`, then a tonic server on one port; each
//! incoming `Connect` stream, adapted to a byte-stream pair, goes to
//! `WorkerOptions::process_messages`.
//!
//! The worker must be this very executable (closures travel as code offsets, valid
//! only between identical builds), so the target has its own `main` (`harness = false`
//! in Cargo.toml, with libtest-mimic for the test-harness command line and report):
//! the worker is a mode of the binary, not a `#[test]` that would count as passing.
//!
//! Topology: master–worker only. Worker-to-worker connections are made by the runtime
//! over TCP to the address in the worker's config today, not through the manager, so
//! a gRPC-only worker cannot be reached by its peers.

use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Duration;

use cohort::prelude::*;
use cohort::transport::{
    BoxFuture, ClusterManager, Connection, LaunchError, LaunchParams, WorkerConfig, WorkerProcess,
};
use cohort::{Topology, WorkerOptions};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;
use tonic::codec::ProstCodec;
use tonic::codegen::{empty_body, http, Body, Service, StdError};
use tonic::transport::{Channel, Endpoint, Server};

const WORKER_ENV: &str = "COHORT_GRPC_WORKER";
const READY: &str = "grpc_worker_ready:";
/// The service's name and its one method's path.
const SERVICE: &str = "cohort.grpc.Transport";
const CONNECT_PATH: &str = "/cohort.grpc.Transport/Connect";
/// The most bytes one `Chunk` carries.
const CHUNK: usize = 32 * 1024;

/// `message Chunk { bytes data = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct Chunk {
    #[prost(bytes = "vec", tag = "1")]
    data: Vec<u8>,
}

/// Adapts a message stream pair to a byte-stream pair: returns the runtime's end (an
/// in-memory duplex pipe) and pumps the other end. Bytes written to the returned
/// end become outgoing `Chunk`s (the returned stream); incoming chunks (`inbound`)
/// become bytes to read from it. Either side closing closes the other.
fn adapt<S>(
    inbound: S,
) -> (
    tokio::io::DuplexStream,
    impl futures::Stream<Item = Chunk> + Send + 'static,
)
where
    S: futures::Stream<Item = Result<Chunk, tonic::Status>> + Send + Unpin + 'static,
{
    use futures::StreamExt;
    let (ours, theirs) = tokio::io::duplex(4 * CHUNK);
    let (ours_r, mut ours_w) = tokio::io::split(ours);
    tokio::spawn(async move {
        let mut inbound = inbound;
        while let Some(Ok(chunk)) = inbound.next().await {
            if ours_w.write_all(&chunk.data).await.is_err() {
                break;
            }
        }
        let _ = ours_w.shutdown().await;
    });
    let outbound = futures::stream::unfold(ours_r, |mut r| async move {
        let mut data = vec![0u8; CHUNK];
        match r.read(&mut data).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                data.truncate(n);
                Some((Chunk { data }, r))
            }
        }
    });
    (theirs, outbound)
}

/// Splits a byte stream into the `Connection` the runtime wants.
fn connection<T>(io: T, peer: String) -> Connection
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    Connection::new(Box::new(r), Box::new(w), peer)
}

// ---------------------------------------------------------------- worker side

/// The gRPC server: `Transport.Connect` hands each stream to `process_messages`.
#[derive(Clone)]
struct TransportServer {
    opts: WorkerOptions,
}

/// The `Connect` method.
struct ConnectMethod {
    opts: WorkerOptions,
}

impl tonic::server::StreamingService<Chunk> for ConnectMethod {
    type Response = Chunk;
    type ResponseStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<Chunk, tonic::Status>> + Send>>;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<tonic::Response<Self::ResponseStream>, tonic::Status>,
                > + Send,
        >,
    >;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<Chunk>>) -> Self::Future {
        use futures::StreamExt;
        let opts = self.opts.clone();
        Box::pin(async move {
            let peer = request
                .remote_addr()
                .map(|a| format!("grpc stream from {a}"))
                .unwrap_or_else(|| "grpc stream".into());
            let (io, outbound) = adapt(request.into_inner());
            tokio::spawn(async move {
                if let Err(e) = opts.process_messages(connection(io, peer)).await {
                    eprintln!("{e}");
                }
            });
            let out: Self::ResponseStream = Box::pin(outbound.map(Ok));
            Ok(tonic::Response::new(out))
        })
    }
}

impl<B> Service<http::Request<B>> for TransportServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::BoxBody>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == CONNECT_PATH {
            let method = ConnectMethod {
                opts: self.opts.clone(),
            };
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<Chunk, Chunk>::default());
                Ok(grpc.streaming(method, req).await)
            })
        } else {
            Box::pin(async move {
                let mut response = http::Response::new(empty_body());
                let headers = response.headers_mut();
                headers.insert(
                    tonic::Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            })
        }
    }
}

impl tonic::server::NamedService for TransportServer {
    const NAME: &'static str = SERVICE;
}

/// The worker's program, run by `main` when `GrpcManager` started this binary (with
/// `COHORT_GRPC_WORKER=1`); serves until the master removes the worker.
fn grpc_worker_main() {
    let opts = WorkerOptions {
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    opts.init_worker().expect("init_worker");
    cohort::runtime::block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the gRPC port");
        let port = listener.local_addr().expect("local address").port();
        println!("{READY}{port}");
        let incoming = futures::stream::unfold(listener, |l| async move {
            let s = l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                s
            });
            Some((s, l))
        });
        Server::builder()
            .add_service(TransportServer { opts })
            .serve_with_incoming(incoming)
            .await
            .expect("gRPC server");
    });
}

// ---------------------------------------------------------------- master side

/// Starts local workers reachable only through their gRPC port.
#[derive(Default)]
struct GrpcManager {
    /// Each launched worker's gRPC port, by OS process id (for the test to check).
    ports: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u32, u16>>>,
}

/// What the manager keeps per worker: its port and the HTTP/2 channel to it (one TCP
/// connection, opened at the first `connect`, that carries every stream).
struct GrpcWorker {
    port: u16,
    channel: Channel,
}

impl ClusterManager for GrpcManager {
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async move {
            let exe = std::env::current_exe().map_err(|source| LaunchError::Spawn {
                exe: "<test binary>".into(),
                source,
            })?;
            for _ in 0..params.count {
                let mut child = tokio::process::Command::new(&exe)
                    .env(WORKER_ENV, "1")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|source| LaunchError::Spawn {
                        exe: exe.display().to_string(),
                        source,
                    })?;
                // The cookie goes over stdin.
                let mut stdin = child.stdin.take().unwrap();
                let _ = stdin
                    .write_all(format!("{}\n", params.cookie).as_bytes())
                    .await;
                drop(stdin);
                let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
                let process = WorkerProcess::new(child);
                let port = tokio::time::timeout(Duration::from_secs(30), async {
                    while let Ok(Some(l)) = lines.next_line().await {
                        if let Some((_, p)) = l.split_once(READY) {
                            return p.trim().parse::<u16>().ok();
                        }
                    }
                    None
                })
                .await;
                let Ok(Some(port)) = port else {
                    process.kill().await;
                    return Err(LaunchError::NoAddress {
                        what: "gRPC worker did not report its port".into(),
                    });
                };
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                if let Some(os_pid) = process.os_pid() {
                    self.ports.lock().unwrap().insert(os_pid, port);
                }
                let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .map_err(|e| LaunchError::NoAddress {
                        what: e.to_string(),
                    })?
                    .tcp_nodelay(true)
                    .connect_lazy();
                let config = WorkerConfig {
                    process: Some(process),
                    userdata: Some(std::sync::Arc::new(GrpcWorker { port, channel })),
                    ..Default::default()
                };
                let _ = launched.send(config);
            }
            Ok(())
        })
    }

    fn connect<'a>(
        &'a self,
        _pid: u32,
        config: &'a WorkerConfig,
    ) -> BoxFuture<'a, std::io::Result<Connection>> {
        Box::pin(async move {
            let w = config
                .userdata
                .as_ref()
                .and_then(|u| u.downcast_ref::<GrpcWorker>())
                .ok_or_else(|| std::io::Error::other("not a gRPC worker"))?;
            let io = open_stream(w.channel.clone()).await?;
            Ok(connection(io, format!("grpc://127.0.0.1:{}", w.port)))
        })
    }
}

/// Opens one `Transport.Connect` stream on `channel`, adapted to bytes.
async fn open_stream(channel: Channel) -> std::io::Result<tokio::io::DuplexStream> {
    // The request stream must exist before the call, and the response stream (the
    // inbound half) only after it: bridge the two with a channel of chunks.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Chunk, tonic::Status>>();
    let (io, outbound) = adapt(rx);
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.map_err(std::io::Error::other)?;
    let response = client
        .streaming(
            tonic::Request::new(outbound),
            http::uri::PathAndQuery::from_static(CONNECT_PATH),
            ProstCodec::<Chunk, Chunk>::default(),
        )
        .await
        .map_err(std::io::Error::other)?;
    let mut inbound = response.into_inner();
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = inbound.message().await {
            if tx.unbounded_send(Ok(chunk)).is_err() {
                break;
            }
        }
    });
    Ok(io)
}

// ---------------------------------------------------------------- the test

#[cohort::remote]
fn whoami() -> (u32, u32) {
    (myid(), std::process::id())
}

/// The TCP ports process `pid` listens on: its socket inodes (`/proc/PID/fd`) matched
/// against the LISTEN entries (state 0A) of its network namespace's tables.
fn listening_ports(pid: u32) -> Vec<u16> {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

fn grpc_transport_runs_calls_over_one_port() {
    let manager = GrpcManager::default();
    let ports = manager.ports.clone();
    let pids = AddProcs::with_manager(manager)
        .count(2)
        .topology(Topology::MasterWorker)
        .launch_blocking()
        .unwrap();
    assert_eq!(pids.len(), 2);
    for &p in &pids {
        let (id, os) = remotecall_fetch_blocking(whoami, p, ()).unwrap();
        assert_eq!(id, p);
        assert_ne!(os, std::process::id());
        // All of the worker's traffic shares one port: it listens on exactly one, its
        // gRPC port (which the master's connection came in through).
        let grpc_port = ports.lock().unwrap()[&os];
        assert_eq!(listening_ports(os), vec![grpc_port], "worker {p}");
    }
    // Futures round trips too, over the gRPC streams, and a larger payload (several
    // chunks each way).
    let f = remotecall(|a: u64, b: u64| a + b, pids[0], (40, 2));
    let g = remotecall(|v: Vec<u8>| v.len(), pids[1], (vec![7u8; 1 << 20],));
    assert_eq!(f.fetch_blocking().unwrap(), 42);
    assert_eq!(g.fetch_blocking().unwrap(), 1 << 20);
    let big = remotecall_fetch_blocking(|n: usize| vec![1u8; n], pids[0], (300_000,)).unwrap();
    assert_eq!(big.len(), 300_000);
    rmprocs_blocking(&pids, Some(Duration::from_secs(20))).unwrap();
}

/// This target's `main` (`harness = false`): a worker when `GrpcManager` started it,
/// the test otherwise.
fn main() -> std::process::ExitCode {
    if std::env::var_os(WORKER_ENV).is_some() {
        grpc_worker_main();
        return std::process::ExitCode::SUCCESS;
    }
    let args = libtest_mimic::Arguments::from_args();
    let tests = vec![libtest_mimic::Trial::test(
        "grpc_transport_runs_calls_over_one_port",
        || {
            grpc_transport_runs_calls_over_one_port();
            Ok(())
        },
    )];
    libtest_mimic::run(&args, tests).exit_code()
}
