//! # cohort-grpc — a cohort cluster manager over gRPC
//!
//! [`GrpcManager`] starts local workers that each serve one gRPC service
//! ([tonic](https://docs.rs/tonic)) on a single TCP port. Every connection to a
//! worker — the master's and, with all-to-all, every other worker's — is one
//! bidirectional-streaming RPC on that port (HTTP/2 multiplexes them), so all of a
//! worker's traffic shares one port: the only one it listens on.
//!
//! Everything here needs the `grpc` feature (off by default, so the workspace builds
//! without tonic); without it the crate is empty.
//!
//! ```toml
//! cohort-grpc = { version = "0.1", features = ["grpc"] }
//! ```
//!
//! The program is its own worker, as with cohort's stock managers (closures travel
//! as code offsets, valid only between identical builds): started by a
//! `GrpcManager`, it finds [`WORKER_ENV`] set ([`worker_requested`]) and calls
//! [`run_worker`] instead of its own work.
//!
//! ```no_run
//! # #[cfg(feature = "grpc")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cohort_cluster::{blocking, AddProcs, WorkerOptions};
//! use cohort_grpc::GrpcManager;
//!
//! if cohort_grpc::worker_requested() {
//!     // Started by the manager below (with `--tls-stdin` when the cluster uses
//!     // TLS): serve until the master removes this worker.
//!     let opts = WorkerOptions::from_args(std::env::args().skip(1))?;
//!     let err = cohort_grpc::run_worker(opts).unwrap_err();
//!     panic!("gRPC worker failed: {err}");
//! }
//! // All-to-all (the default): workers call each other over gRPC streams too.
//! let pids = AddProcs::with_manager(GrpcManager::new()).count(2).launch_blocking()?;
//! let sum = blocking::remotecall_fetch(|a: u64, b: u64| a + b, pids[0], (40, 2))?;
//! assert_eq!(sum, 42);
//! cohort_cluster::blocking::rmprocs(&pids, None)?;
//! # Ok(()) }
//! # #[cfg(not(feature = "grpc"))]
//! # fn main() {}
//! ```
//!
//! ## The service
//!
//! Small enough to write without code generation (`Chunk` is a hand-derived
//! `prost::Message`; the server is a `tower` service over `tonic::server::Grpc`, the
//! client `tonic::client::Grpc`, both with `ProstCodec`):
//!
//! ```proto
//! package cohort.grpc;
//! service Transport { rpc Connect(stream Chunk) returns (stream Chunk); }
//! message Chunk { bytes data = 1; }
//! ```
//!
//! A `Connect` stream carries the bytes of one cohort connection (handshake, TLS when
//! the cluster uses it, then the protocol) in `Chunk`s of at most 32 KiB each way;
//! either end closing its side closes the connection.
//!
//! ## Start-up
//!
//! 1. The manager starts the worker program (the launch's executable, or the current
//!    one) with [`WORKER_ENV`]`=1`, its own arguments, `--tls-stdin` when the
//!    cluster uses TLS, and the launch's `exeflags`, `env`, `dir` and worker timeout.
//! 2. It writes the cookie line (and the TLS bundle) to the worker's stdin, never its
//!    argv.
//! 3. The worker ([`run_worker`]) binds `WorkerOptions::bind_to` (127.0.0.1, any port,
//!    by default), prints [`READY_PREFIX`] and the port on stdout, and serves.
//! 4. The master reaches the worker through [`GrpcManager`]'s `connect`, a new stream
//!    on one HTTP/2 channel per worker; the port is also the worker's address for the
//!    others, which reach it the same way: `run_worker` hands the runtime a
//!    `GrpcManager` for its peers (cohort's `WorkerOptions::manager`).
//!
//! Workers are local: the master connects to 127.0.0.1. The manager says
//! [`WorkerTransport::Custom`](cohort_transport::WorkerTransport::Custom)`("grpc")`,
//! so every topology works, and the runtime refuses to mix these workers with TCP
//! ones in an all-to-all cluster.

// Without the feature the items the docs name do not exist.
#![cfg_attr(not(feature = "grpc"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "grpc")]
mod chunk;
#[cfg(feature = "grpc")]
mod manager;
#[cfg(feature = "grpc")]
mod worker;

#[cfg(feature = "grpc")]
pub use manager::GrpcManager;
#[cfg(feature = "grpc")]
pub use worker::{run_worker, serve, worker_requested};

/// The environment variable that tells a program a [`GrpcManager`] started it as a
/// worker (its value is `1`).
///
/// ```
/// assert_eq!(cohort_grpc::WORKER_ENV, "COHORT_GRPC_WORKER");
/// ```
pub const WORKER_ENV: &str = "COHORT_GRPC_WORKER";

/// What a worker prints, followed by its gRPC port, once it listens (step 3 of the
/// start-up).
///
/// ```
/// assert_eq!(cohort_grpc::READY_PREFIX, "cohort_grpc_worker:");
/// ```
pub const READY_PREFIX: &str = "cohort_grpc_worker:";
