//! # cohort-dashboard — a live view of a cohort cluster
//!
//! One line on the driver serves a page that shows the cluster as it works, a JSON
//! status API and Prometheus metrics:
//!
//! ```no_run
//! let d = cohort_dashboard::serve("127.0.0.1:8787").unwrap();
//! // prints: cohort dashboard: http://127.0.0.1:8787/
//! # drop(d);
//! ```
//!
//! or, for an unchanged program, `COHORT_DASHBOARD=127.0.0.1:8787` in its
//! environment: the dashboard then starts at `cohort::init()` (or `#[cohort::main]`)
//! or at the first `addprocs`, whichever comes first.
//!
//! The page (`/`) updates live from server-sent events (`/api/events`, 2.5 updates
//! a second by default) and shows:
//! - **workers**: pid, host, OS pid, state (`starting`, `idle`, `busy`, `exiting`,
//!   `dead` with the reason), uptime, RSS and CPU, calls in flight / done / failed,
//!   bytes in and out;
//! - **progress** of each running `pmap` and `distributed_reduce`: items done of
//!   total, rate, ETA, errors, retries — the numbers of the terminal bar;
//! - the **task stream**: the last calls per worker over time (start, end,
//!   function, outcome);
//! - **objects** per owner: values owned for remote references, handles held,
//!   remote channels, SharedArray segments with their bytes, and what the layers
//!   above count (`cohort_cluster::observe::OBJECT_COUNTS`, in each process) or an
//!   [`ObjectSource`] adds on the driver — the extension points a DArray panel
//!   plugs into;
//! - recent **errors** with their `RemoteException` context, and the tail of each
//!   worker's **stderr**.
//!
//! `GET /api/status` returns the same data as one JSON document ([`Status`]);
//! `GET /metrics` returns it in the Prometheus text format. Both, and the schema and
//! metric names, are described in `docs/observability.md`.
//!
//! # Security
//!
//! The dashboard binds to loopback addresses only, unless
//! [`Options::allow_remote`] says otherwise; then every request needs a random
//! token, which the printed URL carries (`?token=…`). No page, URL or response
//! contains the cluster cookie. The pages set `Cache-Control: no-store`, and
//! everything is read-only: nothing served changes the cluster.
//!
//! # Cost
//!
//! Off — no `serve`, no `COHORT_DASHBOARD` — nothing runs and nothing is recorded
//! beyond a few relaxed counters per call and per frame
//! (`cohort_cluster::observe`). On, a task polls each worker once per interval with
//! one small call (not counted in the figures it reports); the events it reads
//! are kept in bounded rings, and a slow page skips updates instead of slowing
//! anything down.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use cohort_cluster::{Cluster, Pid};
use futures::future::BoxFuture;
use tokio::sync::watch;

mod collect;
mod http;
mod metrics;
pub mod status;

pub use status::{ObjectRow, Status, Worker, WorkerState};

/// The environment variable that starts the dashboard at the driver's first use of
/// a cluster: its value is the address to serve on.
///
/// ```
/// assert_eq!(cohort_dashboard::ENV, "COHORT_DASHBOARD");
/// ```
pub const ENV: &str = "COHORT_DASHBOARD";

/// With [`ENV`]: set to `1` to allow a non-loopback address (the page then needs the
/// token in the printed URL).
///
/// ```
/// assert_eq!(cohort_dashboard::ENV_ALLOW_REMOTE, "COHORT_DASHBOARD_ALLOW_REMOTE");
/// ```
pub const ENV_ALLOW_REMOTE: &str = "COHORT_DASHBOARD_ALLOW_REMOTE";

/// How often the dashboard collects and publishes an update by default.
///
/// ```
/// assert!(cohort_dashboard::DEFAULT_INTERVAL.as_millis() <= 500);
/// ```
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(400);

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// The address is not `HOST:PORT`, or its host does not resolve.
    #[error("bad dashboard address {addr:?}: {reason}")]
    BadAddress {
        /// The address given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The address is not a loopback one, and [`Options::allow_remote`] was not
    /// given.
    #[error(
        "the dashboard address {addr} is not a loopback address: binding elsewhere needs \
         Options::allow_remote(true) (or {ENV_ALLOW_REMOTE}=1), which protects the page with a token"
    )]
    NotLoopback {
        /// The address given.
        addr: String,
    },
    /// The socket could not be bound (in use, not permitted).
    #[error("cannot serve the dashboard on {addr}: {source}")]
    Bind {
        /// The address given.
        addr: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// A source of rows for the objects panel, for layers above the runtime: a DArray
/// panel lists each process's chunks with their sizes by implementing this and
/// passing it to [`Options::object_source`].
///
/// `collect` runs after each report of worker `pid`, on cohort's runtime; it should
/// answer within a few seconds (it is given up after 5 s).
///
/// ```
/// use cohort_dashboard::{ObjectRow, ObjectSource};
/// use futures::future::BoxFuture;
/// struct Chunks;
/// impl ObjectSource for Chunks {
///     fn collect<'a>(&'a self, _c: &'a cohort_cluster::Cluster, pid: cohort_cluster::Pid)
///         -> BoxFuture<'a, Vec<ObjectRow>> {
///         Box::pin(async move {
///             vec![ObjectRow { kind: "darray_chunks".into(), owner: pid, count: 1,
///                              bytes: Some(800), detail: "10×10 f64".into() }]
///         })
///     }
/// }
/// let _o = cohort_dashboard::Options::new("127.0.0.1:0").object_source(std::sync::Arc::new(Chunks));
/// ```
pub trait ObjectSource: Send + Sync + 'static {
    /// The rows for process `pid` of `cluster`.
    fn collect<'a>(&'a self, cluster: &'a Cluster, pid: Pid) -> BoxFuture<'a, Vec<ObjectRow>>;
}

/// How to serve: the address, whether other hosts may connect, the cluster, the
/// update interval, the history kept, extra object sources.
///
/// ```
/// let o = cohort_dashboard::Options::new("127.0.0.1:0")
///     .interval(std::time::Duration::from_millis(250))
///     .task_history(500);
/// let d = o.serve().unwrap();
/// assert!(d.url().starts_with("http://127.0.0.1:"));
/// d.stop();
/// ```
#[derive(Clone)]
pub struct Options {
    addr: String,
    allow_remote: bool,
    cluster: Option<Cluster>,
    interval: Duration,
    task_history: usize,
    sources: Vec<Arc<dyn ObjectSource>>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("addr", &self.addr)
            .field("allow_remote", &self.allow_remote)
            .field("interval", &self.interval)
            .field("task_history", &self.task_history)
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl Options {
    /// Serving on `addr` (`HOST:PORT`; port 0 picks a free one), loopback only, for
    /// the current cluster, every [`DEFAULT_INTERVAL`], keeping the last 1,000 calls.
    pub fn new(addr: &str) -> Options {
        Options {
            addr: addr.to_string(),
            allow_remote: false,
            cluster: None,
            interval: DEFAULT_INTERVAL,
            task_history: 1000,
            sources: Vec::new(),
        }
    }

    /// Whether a non-loopback address may be used; if so every request needs the
    /// random token the printed URL carries.
    ///
    /// ```
    /// let d = cohort_dashboard::Options::new("0.0.0.0:0").allow_remote(true).serve().unwrap();
    /// assert!(d.url().contains(&format!("?token={}", d.token().unwrap())));
    /// d.stop();
    /// ```
    pub fn allow_remote(mut self, yes: bool) -> Options {
        self.allow_remote = yes;
        self
    }

    /// The cluster to show (default: [`Cluster::current`] when serving starts).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// let d = cohort_dashboard::Options::new("127.0.0.1:0").cluster(c).serve().unwrap();
    /// d.stop();
    /// ```
    pub fn cluster(mut self, c: Cluster) -> Options {
        self.cluster = Some(c);
        self
    }

    /// How often to collect and publish (at least 50 ms).
    pub fn interval(mut self, every: Duration) -> Options {
        self.interval = every.max(Duration::from_millis(50));
        self
    }

    /// How many calls the task stream keeps (at least 1).
    pub fn task_history(mut self, n: usize) -> Options {
        self.task_history = n.max(1);
        self
    }

    /// Adds a source of rows for the objects panel.
    pub fn object_source(mut self, s: Arc<dyn ObjectSource>) -> Options {
        self.sources.push(s);
        self
    }

    /// Binds and starts serving (on cohort's runtime), and prints the URL on stderr.
    ///
    /// # Errors
    /// [`DashboardError::BadAddress`], [`DashboardError::NotLoopback`],
    /// [`DashboardError::Bind`].
    pub fn serve(self) -> Result<Dashboard, DashboardError> {
        let bad = |reason: String| DashboardError::BadAddress {
            addr: self.addr.clone(),
            reason,
        };
        let addrs: Vec<SocketAddr> = self
            .addr
            .to_socket_addrs()
            .map_err(|e| bad(e.to_string()))?
            .collect();
        if addrs.is_empty() {
            return Err(bad("it resolves to no address".into()));
        }
        if !self.allow_remote && !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(DashboardError::NotLoopback {
                addr: self.addr.clone(),
            });
        }
        let listener = TcpListener::bind(&addrs[..]).map_err(|source| DashboardError::Bind {
            addr: self.addr.clone(),
            source,
        })?;
        let local = listener
            .local_addr()
            .map_err(|source| DashboardError::Bind {
                addr: self.addr.clone(),
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| DashboardError::Bind {
                addr: self.addr.clone(),
                source,
            })?;
        let token = self.allow_remote.then(new_token);
        let cluster = self.cluster.unwrap_or_else(Cluster::current);
        cohort_cluster::observe::enable(&cluster);
        let collector =
            collect::Collector::new(cluster, self.interval, self.task_history, self.sources);
        let (stop_tx, stop_rx) = watch::channel(false);
        let rt = cohort_cluster::runtime::handle();
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|source| DashboardError::Bind {
                addr: self.addr.clone(),
                source,
            })?
        };
        rt.spawn(collector.clone().run(stop_rx.clone()));
        let app = http::router(http::AppState {
            collector,
            token: token.as_deref().map(Arc::from),
        });
        let mut stop = stop_rx;
        rt.spawn(async move {
            let shutdown = async move { stopped(&mut stop).await };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "the dashboard's server stopped");
            }
        });
        let host = if local.ip().is_unspecified() {
            cohort_transport_hostname()
        } else if local.is_ipv6() {
            format!("[{}]", local.ip())
        } else {
            local.ip().to_string()
        };
        let url = match &token {
            Some(t) => format!("http://{host}:{}/?token={t}", local.port()),
            None => format!("http://{host}:{}/", local.port()),
        };
        eprintln!("cohort dashboard: {url}");
        Ok(Dashboard {
            addr: local,
            url,
            token,
            stop: stop_tx,
        })
    }
}

fn cohort_transport_hostname() -> String {
    cohort_cluster::observe::report(&Cluster::current(), Default::default()).host
}

/// Resolves when [`Dashboard::stop`] was called; never if the handle was dropped
/// without it (the dashboard then runs until the process ends).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// 128 random bits, hex.
fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Serves the dashboard of the current cluster on `addr` (a loopback `HOST:PORT`),
/// with the default [`Options`], and prints its URL on stderr.
///
/// The server runs until [`Dashboard::stop`] or the end of the process; dropping the
/// handle leaves it running.
///
/// # Errors
/// As [`Options::serve`]: a bad or non-loopback address, or a port in use.
///
/// ```
/// let d = cohort_dashboard::serve("127.0.0.1:0").unwrap();
/// assert!(d.addr().ip().is_loopback());
/// assert!(cohort_dashboard::serve("0.0.0.0:0").is_err()); // needs allow_remote
/// d.stop();
/// ```
pub fn serve(addr: &str) -> Result<Dashboard, DashboardError> {
    Options::new(addr).serve()
}

/// A running dashboard.
///
/// ```
/// let d = cohort_dashboard::Options::new("127.0.0.1:0").serve().unwrap();
/// assert_eq!(d.url(), format!("http://{}/", d.addr()));
/// assert!(d.token().is_none()); // loopback: no token
/// d.stop();
/// ```
#[derive(Debug)]
pub struct Dashboard {
    addr: SocketAddr,
    url: String,
    token: Option<String>,
    stop: watch::Sender<bool>,
}

impl Dashboard {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL (with the token, when there is one).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token every request needs, when the dashboard allows other hosts.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Stops serving and collecting (open event streams end).
    pub fn stop(self) {
        let _ = self.stop.send(true);
    }
}

/// Starts the dashboard from [`ENV`] at the driver's first use of a cluster
/// (`cohort_cluster::observe::ON_FIRST_USE`); a bad value is reported on stderr and
/// the program goes on without it.
fn start_from_env(cluster: &Cluster) {
    let Ok(addr) = std::env::var(ENV) else {
        return;
    };
    if addr.trim().is_empty() {
        return;
    }
    let remote = std::env::var(ENV_ALLOW_REMOTE).is_ok_and(|v| v.trim() == "1");
    match Options::new(addr.trim())
        .allow_remote(remote)
        .cluster(cluster.clone())
        .serve()
    {
        // Kept running for the rest of the process.
        Ok(d) => std::mem::forget(d),
        Err(e) => eprintln!("cohort dashboard not started ({ENV}): {e}"),
    }
}

#[linkme::distributed_slice(cohort_cluster::observe::ON_FIRST_USE)]
static FROM_ENV: fn(&Cluster) = start_from_env;

/// Keeps [`ENV`]'s hook linked into a program (the facade calls it from its
/// re-export's `init`; referencing it stops the linker from dropping the object
/// file that holds the hook).
#[doc(hidden)]
pub fn keep_env_hook() {
    std::hint::black_box(&FROM_ENV);
}
