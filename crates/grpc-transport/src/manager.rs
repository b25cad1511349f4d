//! The master side (and a worker's, for its peers): [`GrpcManager`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_transport::{
    AnnounceFailure, BoxFuture, ClusterManager, Connection, LaunchError, LaunchParams, ManageEvent,
    WorkerConfig, WorkerProcess, WorkerTransport, WORKER_TIMEOUT_ENV,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::process::Command;
use tokio::sync::mpsc::UnboundedSender;
use tonic::codec::ProstCodec;
use tonic::codegen::http;
use tonic::transport::{Channel, Endpoint};

use crate::chunk::{adapt, connection, Chunk, CONNECT_PATH};
use crate::{READY_PREFIX, WORKER_ENV};

/// How long the manager waits for a worker's ready line by default.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The host the master reaches its (local) workers at.
const LOOPBACK: &str = "127.0.0.1";

/// A [`ClusterManager`] that starts workers on this host and reaches each through
/// streams of one gRPC service on the worker's single port (see the
/// [crate docs](crate) for the service and the start-up).
///
/// The same type serves on both sides: the master launches with it, and
/// [`run_worker`](crate::run_worker) hands one to each worker's runtime, whose
/// `connect` then opens the streams to the other workers. Clones share their state
/// (the workers' ports and HTTP/2 channels), so a clone kept before
/// `AddProcs::with_manager` can still be asked for [`port_of`](Self::port_of).
///
/// ```no_run
/// use cohort_grpc::GrpcManager;
/// let manager = GrpcManager::new().ready_timeout(std::time::Duration::from_secs(30));
/// let pids = cohort_cluster::AddProcs::with_manager(manager.clone())
///     .count(2)
///     .launch_blocking()
///     .unwrap();
/// # drop(pids);
/// ```
#[derive(Clone, Debug)]
pub struct GrpcManager {
    executable: Option<PathBuf>,
    args: Vec<String>,
    ready_timeout: Duration,
    shared: Arc<Shared>,
}

/// What clones of a manager share.
#[derive(Debug, Default)]
struct Shared {
    /// Each launched worker's gRPC port, by OS process id.
    ports: Mutex<HashMap<u32, u16>>,
    /// One HTTP/2 channel per peer address this process connects to without a
    /// config of its own launch (a worker reaching its peers).
    channels: Mutex<HashMap<(String, u16), Channel>>,
}

/// What the manager keeps per worker it launched.
struct GrpcWorker {
    port: u16,
    /// One TCP connection, opened at the first `connect`, that carries every stream.
    channel: Channel,
    /// The cluster pid, once registered (for labelling the worker's output).
    pid: AtomicU32,
}

impl Default for GrpcManager {
    fn default() -> Self {
        GrpcManager::new()
    }
}

impl GrpcManager {
    /// A manager that runs the launch's executable, or else the current one, as its
    /// workers.
    ///
    /// ```
    /// let m = cohort_grpc::GrpcManager::new();
    /// # drop(m);
    /// ```
    pub fn new() -> Self {
        GrpcManager {
            executable: None,
            args: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            shared: Arc::default(),
        }
    }

    /// The worker program (instead of the launch's `executable`, or the current
    /// executable). It must be a build of the master's own program.
    ///
    /// ```
    /// let m = cohort_grpc::GrpcManager::new().executable("/usr/local/bin/my-app");
    /// # drop(m);
    /// ```
    pub fn executable(mut self, exe: impl Into<PathBuf>) -> Self {
        self.executable = Some(exe.into());
        self
    }

    /// Arguments for the worker program, before the TLS flag and the launch's
    /// `exeflags`.
    ///
    /// ```
    /// let m = cohort_grpc::GrpcManager::new().args(["--quiet"]);
    /// # drop(m);
    /// ```
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// How long to wait for each worker's ready line (60 s by default).
    ///
    /// ```
    /// let m = cohort_grpc::GrpcManager::new().ready_timeout(std::time::Duration::from_secs(5));
    /// # drop(m);
    /// ```
    pub fn ready_timeout(mut self, t: Duration) -> Self {
        self.ready_timeout = t;
        self
    }

    /// The gRPC port of the worker this manager (or a clone) launched as OS process
    /// `os_pid`, if it did.
    ///
    /// ```
    /// assert_eq!(cohort_grpc::GrpcManager::new().port_of(4242), None);
    /// ```
    pub fn port_of(&self, os_pid: u32) -> Option<u16> {
        self.shared
            .ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&os_pid)
            .copied()
    }

    /// The shared channel to a peer at `host:port` (made lazily: it connects at the
    /// first stream).
    fn channel_to(&self, host: &str, port: u16) -> std::io::Result<Channel> {
        let mut channels = self
            .shared
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(&(host.to_string(), port)) {
            return Ok(c.clone());
        }
        let c = endpoint(host, port)?.connect_lazy();
        channels.insert((host.to_string(), port), c.clone());
        Ok(c)
    }

    async fn launch_one(
        &self,
        params: &LaunchParams,
        exe: &Path,
    ) -> Result<WorkerConfig, LaunchError> {
        let spawn_err = |source| LaunchError::Spawn {
            exe: exe.display().to_string(),
            source,
        };
        let mut cmd = Command::new(exe);
        cmd.args(&self.args)
            .args(params.tls_flag())
            .args(&params.exeflags)
            .envs(params.env.iter().map(|(k, v)| (k, v)))
            .env(WORKER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(t) = params.worker_timeout {
            cmd.env(WORKER_TIMEOUT_ENV, t.as_secs_f64().to_string());
        }
        if let Some(dir) = &params.dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let stdout = child.stdout.take().expect("stdout was piped");
        let process = WorkerProcess::new(child);
        // The cookie (and the TLS bundle) go over stdin, never argv.
        if let Err(e) = stdin.write_all(params.stdin_payload().as_bytes()).await {
            process.kill().await;
            return Err(spawn_err(e));
        }
        drop(stdin);
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(self.ready_timeout, async {
            while let Ok(Some(line)) = lines.next_line().await {
                // A test harness may print its own text before the ready line.
                if let Some((_, p)) = line.split_once(READY_PREFIX) {
                    return p.trim().parse::<u16>().ok();
                }
                println!("{line}");
            }
            None
        })
        .await;
        let port = match ready {
            Ok(Some(port)) => port,
            Ok(None) => {
                process.kill().await;
                return Err(LaunchError::Announce {
                    exe: exe.display().to_string(),
                    cause: AnnounceFailure::Exited,
                });
            }
            Err(_) => {
                process.kill().await;
                return Err(LaunchError::Announce {
                    exe: exe.display().to_string(),
                    cause: AnnounceFailure::TimedOut {
                        after: self.ready_timeout,
                    },
                });
            }
        };
        let channel = match endpoint(LOOPBACK, port) {
            Ok(e) => e.connect_lazy(),
            Err(e) => {
                process.kill().await;
                return Err(spawn_err(e));
            }
        };
        if let Some(os_pid) = process.os_pid() {
            self.shared
                .ports
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(os_pid, port);
        }
        let worker = Arc::new(GrpcWorker {
            port,
            channel,
            pid: AtomicU32::new(0),
        });
        let forward = worker.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let pid = forward.pid.load(Ordering::Relaxed);
                println!("      From worker {pid}:\t{line}");
            }
        });
        Ok(WorkerConfig {
            // The other workers reach it at its gRPC port (through their own
            // GrpcManager's connect).
            host: Some(LOOPBACK.to_string()),
            port: Some(port),
            process: Some(process),
            userdata: Some(worker),
            ..Default::default()
        })
    }
}

/// The HTTP/2 endpoint of a worker's gRPC port.
fn endpoint(host: &str, port: u16) -> std::io::Result<Endpoint> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Endpoint::from_shared(format!("http://{host}:{port}"))
        .map(|e| e.tcp_nodelay(true))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

fn worker_of(config: &WorkerConfig) -> Option<&GrpcWorker> {
    config
        .userdata
        .as_ref()
        .and_then(|u| u.downcast_ref::<GrpcWorker>())
}

impl ClusterManager for GrpcManager {
    /// Starts `params.count` workers at once and sends each one's config as soon as
    /// it printed its port.
    ///
    /// # Errors
    /// [`LaunchError::Spawn`] if the executable cannot be started or given its
    /// cookie, [`LaunchError::Announce`] if a worker exits or stays silent instead of
    /// printing its port; the first error, after every worker was tried.
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async move {
            let exe = match (&self.executable, &params.executable) {
                (Some(e), _) | (None, Some(e)) => e.clone(),
                (None, None) => std::env::current_exe().map_err(|source| LaunchError::Spawn {
                    exe: "<current executable>".into(),
                    source,
                })?,
            };
            cohort_transport::manager::launch_all(params.count, &launched, || {
                self.launch_one(params, &exe)
            })
            .await
        })
    }

    fn manage(&self, pid: u32, config: &WorkerConfig, event: ManageEvent) {
        if event == ManageEvent::Register {
            if let Some(w) = worker_of(config) {
                w.pid.store(pid, Ordering::Relaxed);
            }
        }
    }

    /// Opens one `Transport.Connect` stream to the worker, on the HTTP/2 channel of
    /// the worker this manager launched (master), or on a channel to the
    /// `config.host:port` the master announced (a worker reaching a peer).
    ///
    /// # Errors
    /// `InvalidInput` for a config with neither; the channel's or the call's failure
    /// (the worker is unreachable or refused the stream), as an I/O error.
    fn connect<'a>(
        &'a self,
        _pid: u32,
        config: &'a WorkerConfig,
    ) -> BoxFuture<'a, std::io::Result<Connection>> {
        Box::pin(async move {
            let (channel, host, port) = match (worker_of(config), &config.host, config.port) {
                (Some(w), _, _) => (w.channel.clone(), LOOPBACK, w.port),
                (None, Some(h), Some(p)) => (self.channel_to(h, p)?, h.as_str(), p),
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "this worker was not launched by a GrpcManager (no gRPC address)",
                    ))
                }
            };
            let io = open_stream(channel).await?;
            Ok(connection(io, format!("grpc://{host}:{port}")))
        })
    }

    /// [`WorkerTransport::Custom`]`("grpc")`: [`run_worker`](crate::run_worker) gives
    /// every worker a `GrpcManager` for its peers.
    fn worker_transport(&self) -> WorkerTransport {
        WorkerTransport::Custom("grpc")
    }
}

/// Opens one `Transport.Connect` stream on `channel`, adapted to bytes.
async fn open_stream(channel: Channel) -> std::io::Result<DuplexStream> {
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
