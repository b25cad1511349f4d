//! # cohort — Julia's distributed computing model for Rust
//!
//! Start worker processes, call functions on them, and get futures back: the
//! `Distributed` standard library of Julia, as a Rust crate. This is the facade: it
//! re-exports the layers below (`cohort-cluster`, the runtime; `cohort-pool`, pools,
//! `pmap` and distributed loops; `cohort-shared`, `SharedArray`; `cohort-channels`,
//! local channels; `cohort-transport`, streams and cluster managers; `cohort-wire`,
//! the protocol; and the macros of `cohort-macros`) and adds no logic of its own
//! beyond [`registered_functions`].
//!
//! ```no_run
//! use cohort::prelude::*;
//!
//! #[cohort::remote]
//! fn count_heads(n: u64) -> u64 {
//!     (0..n).filter(|_| rand::random::<bool>()).count() as u64
//! }
//!
//! #[cohort::main]
//! fn main() {
//!     cohort::addprocs_blocking(2).unwrap();
//!     let a = cohort::spawnat(2, || count_heads(1_000_000));
//!     let b = cohort::spawnat(3, || count_heads(1_000_000));
//!     let heads = a.fetch_blocking().unwrap() + b.fetch_blocking().unwrap();
//!     println!("{heads} heads");
//! }
//! ```
//!
//! Any program that uses cohort is its own worker: `addprocs` starts the current
//! executable with `--cohort-worker`, and cohort turns it into a worker before `main`
//! (on Linux with glibc, an ELF `.init_array` constructor does it — the `worker-hook`
//! feature, on by default; [`init`], which `#[cohort::main]` calls first, does the
//! same check explicitly). So **any binary that
//! links cohort becomes a worker when its first argument is `--cohort-worker`**: it
//! then listens on a port, reads a cookie from stdin and runs calls from whoever
//! proves that cookie, and never reaches its own `main`.
//! Functions marked [`remote`] are called by name; other functions and closures
//! without captures by code offset (same executable only); [`closure!`] ships a
//! closure together with its captured values.

pub use cohort_cluster::codec::Bulk;
pub use cohort_cluster::{
    addprocs, addprocs_blocking, builtins, channel_from_id, closure, cluster_cookie, fetchfrom,
    fetchfrom_blocking, init, interrupt, interrupted, myid, nprocs, nworkers, procs, procs_of,
    remote_do, remotecall, remotecall_fetch, remotecall_fetch_blocking, remotecall_wait,
    remotecall_wait_blocking, rmprocs, rmprocs_blocking, rmprocs_nowait, run_worker, runtime,
    set_cluster_cookie, spawnat, stats, stats_of, workers, AddProcs, CallError, Closure, Cluster,
    ClusterError, ClusterManager, ConnectError, Cookie, ErrorKind, Failure, Future, LaunchParams,
    LocalManager, Pid, ProtocolError, RefId, RemoteChannel, RemoteException, RemoteFn, RmStatus,
    RmprocsTask, SendError, Stats, Target, Topology, WorkerArgsError, WorkerConfig, WorkerOptions,
};
pub use cohort_cluster::{cluster_tls, ClusterTls, TlsError, TlsMode};
pub use cohort_macros::{main, remote};

/// The names of the functions registered with `#[cohort::remote]` in this executable
/// (the built-ins included), sorted.
///
/// ```
/// assert!(cohort::registered_functions().contains(&"cohort::getpid"));
/// ```
pub fn registered_functions() -> Vec<&'static str> {
    cohort_cluster::registry::registered_names()
}

/// Local channels and the `AbstractChannel` trait a `RemoteChannel` stores.
pub use cohort_channels as channels;
/// Parallel map and loops: `WorkerPool`, `CachingPool`, `pmap`, distributed loops,
/// `everywhere` and per-process named values.
pub use cohort_pool as pool;
pub use cohort_pool::{
    default_worker_pool, distributed_reduce, distributed_reduce_blocking, everywhere,
    everywhere_blocking, pmap, pmap_blocking, pmap_with, pmap_with_blocking, CachingPool,
    PmapOptions, SyncGroup, WorkerPool,
};
/// `SharedArray`: one array in shared memory, used by every process on the host.
pub use cohort_shared as shared;
pub use cohort_shared::SharedArray;
/// The transport layer: byte streams, the cluster-manager interface, worker start-up.
pub use cohort_transport as transport;
pub use cohort_transport::{Count, MachineSpec, SshManager, UnixManager, WorkerTransport};
/// The wire protocol.
pub use cohort_wire as wire;

/// The names most programs use.
///
/// ```
/// use cohort::prelude::*;
/// assert_eq!(myid(), 1);
/// ```
pub mod prelude {
    pub use crate::{
        addprocs, addprocs_blocking, closure, fetchfrom, fetchfrom_blocking, myid, nprocs,
        nworkers, pmap, pmap_blocking, procs, remote_do, remotecall, remotecall_fetch,
        remotecall_fetch_blocking, remotecall_wait, remotecall_wait_blocking, rmprocs,
        rmprocs_blocking, spawnat, workers, AddProcs, CallError, Cluster, Future, Pid, PmapOptions,
        RemoteChannel, Target, WorkerPool,
    };
}

/// The registry paths `#[cohort::remote]` expands to (`cohort::registry::…`, the same
/// as in `cohort-cluster`, so the macros name either crate the same way).
#[doc(hidden)]
pub mod registry {
    pub use cohort_cluster::registry::{RemoteFnEntry, REMOTE_FUNCTIONS};
}

#[doc(hidden)]
pub mod __private {
    pub use cohort_cluster::__private::linkme;
    pub use cohort_cluster::registry::{RemoteFnEntry, REMOTE_FUNCTIONS};
    pub use cohort_cluster::runtime::run_main;
}

/// The README's examples, compiled as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
