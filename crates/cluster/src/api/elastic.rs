//! Elastic clusters (Julia's `ElasticManager`): a master listens for workers that join
//! by themselves — started by hand, by another scheduler, or by any program — with
//! `cohort-worker --join HOST:PORT` (or a cohort program started as
//! `PROGRAM --cohort-worker --join HOST:PORT`). See [`Cluster::listen_for_workers`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::api::cluster::Cluster;
use crate::error::ClusterError;
use crate::shell::elastic::{bind, serve_joins, JoinCounts};

/// A master's join listener for elastic workers, made by
/// [`Cluster::listen_for_workers`]. Workers join while it lives; dropping it (or
/// [`close`](Self::close)) stops new joins and leaves the joined workers in the
/// cluster.
///
/// ```
/// let c = cohort_cluster::Cluster::new();
/// let joins = c.listen_for_workers(None).unwrap();
/// assert!(joins.addr().ip().is_loopback());
/// assert_eq!((joins.joined(), joins.refused()), (0, 0));
/// ```
#[derive(Debug)]
pub struct ElasticListener {
    addr: SocketAddr,
    counts: Arc<JoinCounts>,
    task: tokio::task::AbortHandle,
    cluster: Cluster,
}

impl ElasticListener {
    /// The address workers join at (the port the OS chose, for port 0).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// let joins = c.listen_for_workers(None).unwrap();
    /// assert_ne!(joins.addr().port(), 0);
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many workers have joined through this listener.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// assert_eq!(c.listen_for_workers(None).unwrap().joined(), 0);
    /// ```
    pub fn joined(&self) -> u64 {
        self.counts.joined.load(Ordering::Relaxed)
    }

    /// How many connections this listener refused: a wrong cookie, TLS on one side
    /// only, a peer that broke the protocol or sent nothing in time. Each is also
    /// logged (a `tracing` warning with the peer's address and the reason).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// assert_eq!(c.listen_for_workers(None).unwrap().refused(), 0);
    /// ```
    pub fn refused(&self) -> u64 {
        self.counts.refused.load(Ordering::Relaxed)
    }

    /// Writes the cluster's cookie to `path`, readable and writable by its owner only
    /// (mode 0600, set when the file is made), for workers to read with
    /// `--cookie-file` — so that the cookie never appears in a command line or an
    /// environment.
    ///
    /// # Errors
    /// The I/O error of creating or writing the file; `AlreadyExists` if it exists
    /// (it is never overwritten, so a file others can read is never reused).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// let joins = c.listen_for_workers(None).unwrap();
    /// let path = std::env::temp_dir().join(format!("cohort-doc-cookie-{}", std::process::id()));
    /// joins.write_cookie_file(&path).unwrap();
    /// assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), c.cookie().expose());
    /// std::fs::remove_file(path).unwrap();
    /// ```
    pub fn write_cookie_file(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path)?;
        writeln!(f, "{}", self.cluster.cookie().expose())?;
        f.sync_all()
    }

    /// The command line that starts a stock worker joining here, reading the cookie
    /// from `cookie_file` (see [`write_cookie_file`](Self::write_cookie_file)).
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// let joins = c.listen_for_workers(None).unwrap();
    /// let cmd = joins.join_command("/run/user/1000/cohort.cookie");
    /// assert!(cmd.starts_with("cohort-worker --join 127.0.0.1:"));
    /// assert!(cmd.ends_with("--cookie-file /run/user/1000/cohort.cookie"));
    /// ```
    pub fn join_command(&self, cookie_file: impl AsRef<Path>) -> String {
        format!(
            "cohort-worker --join {} --cookie-file {}",
            self.addr,
            cookie_file.as_ref().display()
        )
    }

    /// Stops taking joins (as dropping it does). Workers that joined stay.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// c.listen_for_workers(None).unwrap().close();
    /// ```
    pub fn close(self) {}
}

impl Drop for ElasticListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cluster {
    /// Listens at `addr` — `None`: 127.0.0.1 and a port the OS picks — for elastic
    /// workers (Julia's `ElasticManager`): workers that join this cluster by
    /// themselves, at any time, started with
    /// `cohort-worker --join HOST:PORT` (the cookie from `--cookie-file FILE` or the
    /// first line of stdin, never the command line) or as any cohort program started
    /// with `--cohort-worker --join HOST:PORT`.
    ///
    /// Each connection is authenticated as every cohort connection is: the cookie
    /// challenge–response, under TLS when the cluster uses it (a cluster gets TLS from
    /// a launch with [`AddProcs::tls`](crate::AddProcs::tls); a joining worker then
    /// needs `--tls-bundle`). A joined worker gets the next pid and is a worker like
    /// any other: in [`workers`](Self::workers), in the default worker pool (so a
    /// running `pmap` on it hands it work), connected to the others as the cluster's
    /// topology says; its exit, death or silence is handled as any worker's, and
    /// [`rmprocs`](Self::rmprocs) asks it to exit. A connection that fails
    /// authentication is refused and logged, and the cluster goes on undisturbed.
    ///
    /// Keep the default, loopback, unless workers on other hosts are to join; then bind
    /// to an address they reach, preferably with TLS on.
    ///
    /// # Errors
    /// [`ClusterError::NotMaster`] on a worker; [`ClusterError::Listen`] if `addr`
    /// cannot be bound.
    ///
    /// ```
    /// let c = cohort_cluster::Cluster::new();
    /// let joins = c.listen_for_workers(None).unwrap(); // loopback, any port
    /// assert!(joins.addr().ip().is_loopback());
    /// // On the workers' host: cohort-worker --join <joins.addr()> --cookie-file FILE
    /// println!("{}", joins.join_command("cohort.cookie"));
    /// // Or at a given address:
    /// let _elsewhere = c.listen_for_workers("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap());
    /// ```
    pub fn listen_for_workers(
        &self,
        addr: impl Into<Option<SocketAddr>>,
    ) -> Result<ElasticListener, ClusterError> {
        let addr = addr
            .into()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        if self.node.is_worker() {
            return Err(ClusterError::NotMaster);
        }
        let listener = bind(addr).map_err(|source| ClusterError::Listen { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ClusterError::Listen { addr, source })?;
        crate::api::observe::first_use(&self.node);
        let counts = Arc::new(JoinCounts::default());
        let task = crate::shell::runtime::handle()
            .spawn(serve_joins(self.node.clone(), listener, counts.clone()))
            .abort_handle();
        Ok(ElasticListener {
            addr: local,
            counts,
            task,
            cluster: self.clone(),
        })
    }
}
