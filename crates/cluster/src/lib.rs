//! # cohort-cluster — the runtime
//!
//! The layer where the wire protocol (`cohort-wire`), reference tracking
//! (`cohort-refs`) and byte streams and managers (`cohort-transport`) meet. It owns the
//! process group: this process's pid, the connections to the others (a reader task
//! per peer, and a drain task while a socket is full, on a tokio runtime of its own),
//! the table of functions that can be called by name, the remotecall family,
//! [`Future`] and [`RemoteChannel`].
//!
//! Users normally reach it through the `cohort` facade crate.
//!
//! How a call travels: [`remotecall_fetch`] names the function (registered name or
//! code offset, see [`registry`]), serializes the argument tuple ([`codec`]) and
//! writes a `Call` frame to the peer's socket; the worker's reader decodes it, runs the
//! code in place (`block_in_place`) and writes a `CallResult`; the caller's reader
//! completes the waiting reply slot.
//!
//! ```
//! use cohort_cluster::{remotecall, myid};
//! // With no workers, calls to this process run locally, on the same values.
//! let f = remotecall(|a: u32, b: u32| a * b, myid(), (6, 7));
//! assert_eq!(f.fetch_blocking().unwrap(), 42);
//! ```

pub mod builtins;
mod call;
mod channel;
pub mod codec;
mod dispatch;
mod error;
pub mod fingerprint;
mod future;
mod interrupt;
mod node;
mod panics;
mod peer;
mod procs;
pub mod registry;
mod runners;
pub mod runtime;
mod store;
mod tls;
mod worker;

pub use builtins::{stats, stats_of, Stats};
pub use call::{
    fetchfrom, fetchfrom_blocking, remote_do, remotecall, remotecall_fetch,
    remotecall_fetch_blocking, remotecall_wait, remotecall_wait_blocking, spawnat, Target,
};
pub use channel::{channel_from_id, ChannelValue, RemoteChannel, SendError};
pub use cohort_transport::{
    ClusterManager, ClusterTls, LaunchParams, LocalManager, TlsError, Topology, WorkerConfig,
};
pub use cohort_wire::cookie::Cookie;
pub use cohort_wire::ids::{Pid, RefId};
pub use error::{CallError, ClusterError, ErrorKind, Failure, RemoteException};
pub use future::Future;
pub use interrupt::{interrupt, interrupted};
pub use procs::{
    addprocs, addprocs_blocking, cluster_cookie, myid, nprocs, nworkers, procs, procs_of, rmprocs,
    rmprocs_blocking, rmprocs_nowait, set_cluster_cookie, workers, AddProcs, RmStatus, RmprocsTask,
};
pub use registry::{Closure, RemoteFn};
pub use tls::{cluster_tls, TlsMode};
pub use worker::{init, machine_file, run_worker, WorkerOptions};

#[doc(hidden)]
pub mod __private {
    pub use linkme;
}
