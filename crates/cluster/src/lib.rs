//! # cohort-cluster — the runtime
//!
//! The layer where the wire protocol (`cohort-wire`), reference tracking
//! (`cohort-refs`) and byte streams and managers (`cohort-transport`) meet. It owns the
//! process group: this process's pid, the connections to the others, the table of
//! functions that can be called by name, the remotecall family, [`Future`] and
//! [`RemoteChannel`].
//!
//! Users normally reach it through the `cohort` facade crate.
//!
//! # Shape: core, shell, API
//!
//! - `core/` is sans-IO (quinn's `quinn-proto` applied to the runtime): membership
//!   and topology, the pending-reply table, the reference store over `cohort-refs`,
//!   running calls and interrupts. Events and `now` go in (`handle_envelope`,
//!   `handle_peer_lost`, `handle_timeout`, commands); outputs come out
//!   (`poll_output`, `poll_timeout`). No tokio, sockets, threads or clock; a seeded
//!   simulation of N cores with reordering, delays and deaths tests it.
//! - `shell/` is the I/O: the tokio [`runtime`], one driver per connection, the
//!   handshake, launch/join/rmprocs, worker mode, and the pump that carries out the
//!   core's outputs. A handle's `Drop` only records an event in the core.
//! - `api/` is what users call: the remotecall family, [`Future`], [`RemoteChannel`],
//!   membership functions, [`interrupt`], [`stats`].
//! - [`registry`], [`codec`], [`fingerprint`] and the errors are shared by all three.
//!
//! How a call travels: [`remotecall_fetch`] names the function (registered name or
//! code offset, see [`registry`]), serializes the argument tuple ([`codec`]) and asks
//! the core to send it; the core registers the reply waiter and hands the `Call` to
//! the shell, which writes it to the peer's socket. The worker's reader feeds the
//! frame to its core, which records the running call and hands it back to run; the
//! shell runs it on a call runner and gives the outcome to the core, which answers
//! with a `CallResult`; the caller's core completes the waiter.
//!
//! ```
//! use cohort_cluster::{remotecall, myid};
//! // With no workers, calls to this process run locally, on the same values.
//! let f = remotecall(|a: u32, b: u32| a * b, myid(), (6, 7));
//! assert_eq!(f.fetch_blocking().unwrap(), 42);
//! ```

// The generated blocking forms name `::cohort_cluster` from inside this crate too.
extern crate self as cohort_cluster;

mod api;
pub mod blocking;
mod captures;
pub mod codec;
mod core;
mod error;
pub mod fingerprint;
mod panics;
pub mod registry;
mod shell;

pub use api::builtins;
pub use api::builtins::{stats, stats_of, Stats};
pub use api::call::{
    fetchfrom, remote_do, remotecall, remotecall_fetch, remotecall_wait, spawnat, Target,
};
pub use api::channel::{
    channel_from_id, ChannelValue, RemoteChannel, SendError, TakeAhead, CHANNEL_CREDITS_ENV,
};
pub use api::cluster::{Cluster, WeakCluster};
pub use api::deadline::with_timeout;
#[allow(deprecated)]
pub use api::deprecated::{
    addprocs_blocking, fetchfrom_blocking, remotecall_fetch_blocking, remotecall_wait_blocking,
    rmprocs_blocking,
};
pub use api::elastic::ElasticListener;
pub use api::future::Future;
pub use api::interrupt::{interrupt, interrupt_all};
pub use api::limits::{MAX_FRAME_ENV, MIN_MAX_FRAME, PAYLOAD_ROOM};
pub use api::liveness::{HEARTBEAT_INTERVAL_ENV, HEARTBEAT_TIMEOUT_ENV};
pub use api::observe;
pub use api::procs::{
    addprocs, cluster_cookie, myid, myrole, nprocs, nworkers, procs, procs_of, rmprocs,
    rmprocs_nowait, set_cluster_cookie, workers, AddProcs, ProcessRole, RmStatus, RmprocsTask,
};
pub use api::topology::topology;
pub use captures::{Prepared, StateCache, CAPTURE_MIN, DEFAULT_CAPTURE_BUDGET};
pub use cohort_transport::{
    ClusterManager, LaunchParams, LocalManager, Topology, WorkerConfig, WorkerTransport,
};
#[cfg(feature = "tls")]
pub use cohort_transport::{ClusterTls, TlsError};
pub use cohort_wire::cookie::Cookie;
pub use cohort_wire::ids::{Pid, RefId};
/// The core driven as a fuzzer would drive it (feature `fuzzing`, for `fuzz/`'s
/// `dispatch` target; not a public API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use core::fuzzing;
pub use core::liveness::{Heartbeat, HeartbeatError};
pub use error::{CallError, ClusterError, ErrorKind, Failure, ProtocolError, RemoteException};
pub use panics::BACKTRACE_ENV;
pub use registry::{Closure, RemoteFn};
pub use shell::accept::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_HANDSHAKES, HANDSHAKE_TIMEOUT_ENV, MAX_HANDSHAKES_ENV,
};
pub use shell::execute::interrupted;
pub use shell::handshake::ConnectError;
pub use shell::runtime;
pub use shell::serve::{init, machine_file, run_worker, WorkerArgsError, WorkerOptions};
#[cfg(feature = "tls")]
pub use shell::tls::{cluster_tls, TlsMode};

#[doc(hidden)]
pub mod __private {
    pub use linkme;
}
