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
//!     cohort::blocking::addprocs(2).unwrap();
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
//!
//! # Features
//!
//! All are on by default; with `default-features = false` pick the ones you want.
//! The items a feature adds say so in their docs.
//!
//! - `worker-hook` (default on): on Linux with glibc, a binary linking cohort turns
//!   into a worker before `main` when its first argument is `--cohort-worker`. Off,
//!   only [`init`] (and `#[cohort::main]`, which calls it) does.
//! - `tls` (default on): TLS 1.3 between the cluster's processes —
//!   `AddProcs::tls`, `TlsMode`, `ClusterTls`, `TlsError`, `cluster_tls`,
//!   `Cluster::tls`, and the workers' `--tls-stdin` / `--tls-bundle` (rustls with ring,
//!   and rcgen). Off, none of these exist, and a worker given a TLS flag refuses to
//!   start ([`WorkerArgsError::TlsUnavailable`]).
//! - `shared` (default on): `SharedArray`, the `shared` module (`cohort-shared`) and
//!   its blocking forms in [`blocking`]. A worker serves `SharedArray`s only when its
//!   executable was built with it.
//! - `darray` (default on): `DArray`, `ddata` and SPMD, the `darray` module
//!   (`cohort-darray`).
//! - `dashboard` (default on): the live dashboard, `/api/status` and `/metrics`,
//!   the `dashboard` module (`cohort-dashboard`, axum). Compiled in, it costs
//!   nothing until `dashboard::serve(addr)` or `COHORT_DASHBOARD=addr` starts it.
//! - `progress` (default on): `PmapOptions::progress`, a progress bar on stderr
//!   while a map runs (indicatif). Off, the option does not exist.
//! - `log` (default on): a process started as a worker installs a log subscriber
//!   (tracing-subscriber): `tracing` events at the level `COHORT_LOG` names (default
//!   `warn`) go to stderr, which the manager forwards. Off, workers install none.
//!
//! ```
//! // A build with only the runtime: `cohort = { version = "0.1", default-features = false }`.
//! let _ = cohort::myid();
//! ```

/// The `bytes` crate, whose [`Bytes`](bytes::Bytes) a [`SharedBytes`] holds.
pub use bytes;
pub use cohort_cluster::codec::{serialize_shared, BufferError, Bulk, IntoBuffer, SharedBytes};
pub use cohort_cluster::{
    addprocs, builtins, channel_from_id, closure, cluster_cookie, fetchfrom, interrupt,
    interrupt_all, interrupted, myid, myrole, nprocs, nworkers, procs, procs_of, remote_do,
    remotecall, remotecall_fetch, remotecall_wait, rmprocs, rmprocs_nowait, run_worker, runtime,
    set_cluster_cookie, spawnat, stats, stats_of, workers, AddProcs, CallError, Closure, Cluster,
    ClusterError, ClusterManager, ConnectError, Cookie, ElasticListener, ErrorKind, Failure,
    Future, LaunchParams, LocalManager, Pid, ProcessRole, ProtocolError, RefId, RemoteChannel,
    RemoteException, RemoteFn, RmStatus, RmprocsTask, SendError, Stats, TakeAhead, Target,
    Topology, WeakCluster, WorkerArgsError, WorkerConfig, WorkerOptions, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_HANDSHAKES, HANDSHAKE_TIMEOUT_ENV, MAX_FRAME_ENV, MAX_HANDSHAKES_ENV,
    MIN_MAX_FRAME, PAYLOAD_ROOM,
};
#[allow(deprecated)]
pub use cohort_cluster::{
    addprocs_blocking, fetchfrom_blocking, remotecall_fetch_blocking, remotecall_wait_blocking,
    rmprocs_blocking,
};
/// (Feature `tls`, on by default.)
#[cfg(feature = "tls")]
pub use cohort_cluster::{cluster_tls, ClusterTls, TlsError, TlsMode};
pub use cohort_cluster::{
    with_timeout, Heartbeat, HeartbeatError, BACKTRACE_ENV, CHANNEL_CREDITS_ENV,
    HEARTBEAT_INTERVAL_ENV, HEARTBEAT_TIMEOUT_ENV,
};
pub use cohort_cluster::{Prepared, StateCache, CAPTURE_MIN, DEFAULT_CAPTURE_BUDGET};
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
/// `DArray`, `ddata` and SPMD: arrays split across processes, and MPI-style
/// primitives. (Feature `darray`, on by default.)
#[cfg(feature = "darray")]
pub use cohort_darray as darray;
/// Parallel map and loops: `WorkerPool`, `CachingPool`, `pmap`, distributed loops,
/// `everywhere` and per-process named values.
pub use cohort_pool as pool;
pub use cohort_pool::{
    default_worker_pool, distributed_reduce, everywhere, pmap, pmap_with, CachingPool, PmapOptions,
    SyncGroup, WorkerPool,
};
#[allow(deprecated)]
pub use cohort_pool::{
    distributed_reduce_blocking, everywhere_blocking, pmap_blocking, pmap_with_blocking,
};
/// `SharedArray`: one array in shared memory, used by every process on the host.
/// (Feature `shared`, on by default.)
#[cfg(feature = "shared")]
pub use cohort_shared as shared;
/// (Feature `shared`, on by default.)
#[cfg(feature = "shared")]
pub use cohort_shared::SharedArray;

/// What each process records for a dashboard: counters, the task stream, errors,
/// progress of maps (`cohort_cluster::observe`).
pub use cohort_cluster::observe;
/// The live dashboard in the browser, `GET /api/status` and `GET /metrics`
/// (cohort-dashboard; feature `dashboard`, on by default — compiled in, it does
/// nothing until [`dashboard::serve`] or `COHORT_DASHBOARD=ADDR`).
#[cfg(feature = "dashboard")]
pub use cohort_dashboard as dashboard;

/// `cohort_cluster::init`: turns a process started as a worker into one (and does
/// not return then); on the driver, returns — after starting the dashboard if
/// `COHORT_DASHBOARD` names an address (feature `dashboard`).
///
/// ```
/// cohort::init(); // not started as a worker: returns
/// ```
pub fn init() {
    // Keeps the dashboard's start-up hook linked into every program that calls this.
    #[cfg(feature = "dashboard")]
    cohort_dashboard::keep_env_hook();
    cohort_cluster::init();
}
/// The transport layer: byte streams, the cluster-manager interface, worker start-up.
pub use cohort_transport as transport;
pub use cohort_transport::{Count, MachineSpec, SshManager, UnixManager, WorkerTransport};
/// The wire protocol.
pub use cohort_wire as wire;

/// (Feature `darray`, on by default.)
#[cfg(feature = "darray")]
pub use cohort_darray::{DArray, DData};

/// The names most async programs use. (`Future` is not in it: it would shadow
/// `std::future::Future` under a glob import; name it `cohort::Future`.)
///
/// ```
/// use cohort::prelude::*;
/// assert_eq!(myid(), 1);
/// ```
pub mod prelude {
    pub use crate::{
        addprocs, blocking, closure, fetchfrom, myid, nprocs, nworkers, pmap, procs, remote_do,
        remotecall, remotecall_fetch, remotecall_wait, rmprocs, spawnat, workers, AddProcs,
        CallError, Cluster, Pid, PmapOptions, RemoteChannel, Target, WorkerPool,
    };
    /// (Feature `darray`, on by default.)
    #[cfg(feature = "darray")]
    pub use crate::{DArray, DData};
}

/// The blocking API: every free function of cohort that waits, under the same name
/// as its async form, waiting on the calling thread (reqwest's `blocking` module is
/// the model), and a [`prelude`](blocking::prelude) for programs written in the
/// blocking style. Methods of handles have their blocking form beside the async one,
/// with the `_blocking` suffix (`Future::fetch_blocking`,
/// `RemoteChannel::take_blocking`). Each blocking form is generated from its async
/// definition, so the two cannot drift; called from async code on a runtime thread,
/// it panics with a message saying to `.await` the async form.
///
/// ```
/// use cohort::blocking::prelude::*;
/// fn double(x: u64) -> u64 { x * 2 }
/// assert_eq!(remotecall_fetch(double, myid(), (21,)).unwrap(), 42);
/// assert_eq!(pmap(double, vec![1, 2]).unwrap(), vec![2, 4]);
/// ```
pub mod blocking {
    pub use cohort_cluster::blocking::*;
    pub use cohort_pool::blocking::*;
    // `mapped_segments_on` and the other blocking forms of `SharedArray`'s crate.
    #[cfg(feature = "shared")]
    pub use cohort_shared::blocking::*;

    /// The names most blocking programs use: the blocking free functions and the
    /// names that do not wait.
    ///
    /// ```
    /// use cohort::blocking::prelude::*;
    /// assert_eq!(fetchfrom(myid(), || 7).unwrap(), 7);
    /// ```
    pub mod prelude {
        pub use super::{
            addprocs, everywhere, fetchfrom, pmap, pmap_with, remotecall_fetch, remotecall_wait,
            rmprocs,
        };
        pub use crate::{
            closure, myid, nprocs, nworkers, procs, remote_do, remotecall, spawnat, workers,
            AddProcs, CallError, Cluster, Pid, PmapOptions, RemoteChannel, Target, WorkerPool,
        };
    }
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
