//! The worker side: a tonic server whose `Transport.Connect` streams each carry one
//! cohort connection, handed to `WorkerOptions::process_messages`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use cohort_cluster::WorkerOptions;
use tokio::net::TcpListener;
use tonic::codec::ProstCodec;
use tonic::codegen::{empty_body, http, Body, Service, StdError};
use tonic::transport::Server;

use crate::chunk::{adapt, connection, Chunk, CONNECT_PATH, SERVICE};
use crate::{GrpcManager, READY_PREFIX, WORKER_ENV};

/// Whether a [`GrpcManager`] started this program as a worker ([`WORKER_ENV`] is
/// set): if so, it should call [`run_worker`] instead of doing its own work.
///
/// ```
/// // Not set in a doctest.
/// assert!(!cohort_grpc::worker_requested());
/// ```
pub fn worker_requested() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}

/// Runs this process as a gRPC worker: hands the runtime a [`GrpcManager`] for its
/// worker-to-worker connections unless `opts.manager` names another, makes this
/// process a worker (`WorkerOptions::init_worker`: the cookie, and with
/// `tls_from_stdin` the TLS bundle, from stdin), binds `opts.bind_to`, prints
/// [`READY_PREFIX`] and the port, and [`serve`]s. It returns only if that fails: the
/// master's exit request ends the process.
///
/// The manager passes `--tls-stdin` when the cluster uses TLS, and the launch's
/// `exeflags` (`--bind-to`, say): build `opts` with `WorkerOptions::from_args` over
/// the command line, as below, to honour them.
///
/// # Errors
/// `init_worker`'s errors (stdin closed before the cookie, an invalid cookie or TLS
/// bundle, already a worker), or the I/O error of binding, announcing or serving.
///
/// ```no_run
/// use cohort_cluster::WorkerOptions;
/// if cohort_grpc::worker_requested() {
///     let opts = WorkerOptions::from_args(std::env::args().skip(1)).unwrap();
///     let err = cohort_grpc::run_worker(opts).unwrap_err();
///     eprintln!("gRPC worker failed: {err}");
///     std::process::exit(1);
/// }
/// ```
pub fn run_worker(mut opts: WorkerOptions) -> std::io::Result<Infallible> {
    if opts.manager.is_none() {
        opts.manager = Some(Arc::new(GrpcManager::new()));
    }
    opts.init_worker()?;
    cohort_cluster::runtime::block_on(async move {
        let listener = TcpListener::bind(opts.bind_to).await?;
        let port = listener.local_addr()?.port();
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{READY_PREFIX}{port}")?;
            out.flush()?;
        }
        serve(opts, listener).await
    })
}

/// Serves the `Transport` service on `listener`, handing each `Connect` stream to
/// `opts.process_messages` (call `opts.init_worker()` first; [`run_worker`] does
/// both). Returns only if the server fails.
///
/// # Errors
/// The server's failure, as an I/O error.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let opts = cohort_cluster::WorkerOptions::default();
/// opts.init_worker()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let _never = cohort_grpc::serve(opts, listener).await?;
/// # Ok(()) }
/// ```
pub async fn serve(opts: WorkerOptions, listener: TcpListener) -> std::io::Result<Infallible> {
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
        .map_err(std::io::Error::other)?;
    Err(std::io::Error::other("the gRPC server stopped"))
}

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
                // A refused peer (bad cookie, broken protocol) only loses its stream.
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
    type Error = Infallible;
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
