//! # cohort-transport — byte streams and cluster managers
//!
//! This crate moves bytes and starts processes; it knows nothing of the protocol
//! spoken over the bytes (that is `cohort-wire`) and nothing of calls or references
//! (that is `cohort-cluster`, the layer where the two meet).
//!
//! - [`stream`]: the boxed byte-stream pair every connection is made of, and TCP
//!   helpers (`TCP_NODELAY` on, as latency matters more than packet count here) and
//!   Unix-domain-socket helpers.
//! - [`manager`]: the [`ClusterManager`] trait — `launch`, `manage`, `kill`, `connect` —
//!   with the [`WorkerConfig`] a manager fills in for each worker it starts, mirroring
//!   Julia's `ClusterManager` interface, and `worker_transport`: how its workers reach
//!   each other ([`WorkerTransport`]; a worker of a custom transport runs the
//!   manager's `connect` for its peers, as Julia's `connect(manager, pid, config)`).
//! - [`local`]: [`LocalManager`], which starts workers as processes on this host.
//! - [`ssh`]: [`SshManager`], which starts workers on other machines over OpenSSH,
//!   optionally tunnelled and multiplexed; [`machines`] parses its machine specs.
//! - [`listen`]: the worker side — bind, announce the address on stdout, read the
//!   cookie from stdin.
//! - [`same_host`]: a worker also listens on an abstract Unix-domain socket, which
//!   processes on its host connect to instead of loopback TCP (on by default;
//!   `COHORT_SAME_HOST=0` turns it off).
//! - [`unix`]: [`UnixManager`], which starts local workers that listen on Unix-domain
//!   sockets and connects to them there; the workers connect to each other there too.
//! - `tls` (feature `tls`, on by default): `ClusterTls`, the cluster's TLS
//!   credentials, and the wrapping of a connection in mutually authenticated TLS 1.3.
//!   Without the feature, rustls, ring and rcgen are not built.
//!
//! ```
//! use cohort_transport::{LaunchParams, LocalManager};
//! let params = LaunchParams::default();
//! assert!(params.exeflags.is_empty());
//! let _manager = LocalManager::new(2);
//! ```

pub mod cpus;
pub mod listen;
pub mod local;
pub mod machines;
pub mod manager;
pub mod same_host;
pub mod ssh;
pub mod stream;
#[cfg(feature = "tls")]
pub mod tls;
pub mod unix;

/// The boxed future type of [`ClusterManager`]'s methods, re-exported so that a
/// manager can be written without depending on `futures`.
///
/// ```
/// let f: cohort_transport::BoxFuture<'static, u32> = Box::pin(async { 1 });
/// # drop(f);
/// ```
pub use futures::future::BoxFuture;
pub use local::LocalManager;
pub use machines::{Count, MachineSpec, MachineSpecError};
pub use manager::{
    AnnounceFailure, ClusterManager, LaunchError, LaunchParams, ManageEvent, Topology,
    WorkerConfig, WorkerProcess, WorkerTransport,
};
pub use ssh::SshManager;
pub use stream::{BoxedReader, BoxedWriter, Connection};
#[cfg(feature = "tls")]
pub use tls::{ClusterTls, TlsError};
pub use unix::UnixManager;

/// The command-line flag that puts a cohort-enabled executable into worker mode.
///
/// ```
/// assert_eq!(cohort_transport::WORKER_FLAG, "--cohort-worker");
/// ```
pub const WORKER_FLAG: &str = "--cohort-worker";

/// The environment variable that sets how many seconds a worker waits for the master
/// to connect before it exits (default 60).
///
/// ```
/// assert_eq!(cohort_transport::WORKER_TIMEOUT_ENV, "COHORT_WORKER_TIMEOUT");
/// ```
pub const WORKER_TIMEOUT_ENV: &str = "COHORT_WORKER_TIMEOUT";

/// The environment variable that names the host a process counts as on, for host
/// grouping (`procs(pid)`), instead of its `gethostname`
/// ([`listen::group_hostname`]). The Slurm manager of `cohort-slurm` sets it to each
/// worker's Slurm node name.
///
/// ```
/// assert_eq!(cohort_transport::HOSTNAME_ENV, "COHORT_HOSTNAME");
/// ```
pub const HOSTNAME_ENV: &str = "COHORT_HOSTNAME";
