//! Worker mode: how a process becomes a worker.
//!
//! A worker binds a listener, prints its address line, reads the cookie from stdin,
//! and waits for the master; it serves calls until the master tells it to exit or its
//! connection to the master closes, and exits if no master arrives within
//! `COHORT_WORKER_TIMEOUT` seconds (60 by default).
//!
//! # The worker-mode hook
//!
//! With the `worker-hook` feature (on by default) on Linux with glibc, **any
//! executable that links cohort becomes a worker when started with `--cohort-worker`
//! as its first argument**: an ELF constructor checks for the flag before `main`
//! runs, so programs, examples, benches and test binaries serve as their own workers
//! with no launch plumbing. The worker then runs inside that constructor, before the
//! Rust runtime's own start-up has finished for `main` (SIGPIPE still has its default
//! action there; cohort ignores it on its sockets). Only glibc passes argc/argv to
//! such constructors, so the hook exists only there. Turn the feature off
//! (`default-features = false`) to keep a binary from ever turning into a worker on
//! its own; [`init`] (what `#[cohort::main]` calls first) does the same check
//! explicitly, on every platform.

#[cfg(all(feature = "worker-hook", target_os = "linux", target_env = "gnu"))]
use std::ffi::{c_char, c_int, CStr};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cohort_transport::listen::{self, parse_bind};
#[cfg(feature = "tls")]
use cohort_transport::tls::TLS_STDIN_FLAG;
use cohort_transport::{ClusterManager, Connection, Topology, WORKER_FLAG};
use cohort_wire::cookie::Cookie;
use cohort_wire::ids::{Pid, MASTER};
use cohort_wire::proto::{self, envelope::Kind, Envelope, Role};

use thiserror::Error;
use tokio::sync::OwnedSemaphorePermit;

use super::accept::{accept_loop, AcceptLimits, SameHostListener};
use super::driver::Peer;
use super::handshake::{authenticate, read_one, write_one, ConnectError, Established};
use super::launch::topology_from_wire;
use super::node::{global, Node};
use crate::core::Joined;

/// The flag saying a TLS bundle follows the cookie on stdin (what
/// `cohort_transport::tls::TLS_STDIN_FLAG` is with the `tls` feature).
#[cfg(not(feature = "tls"))]
const TLS_STDIN_FLAG: &str = "--tls-stdin";

/// Why the worker arguments after `--cohort-worker` cannot be used.
///
/// ```
/// use cohort_cluster::{WorkerArgsError, WorkerOptions};
/// let e = WorkerOptions::from_args(["--bind-to"]).unwrap_err();
/// assert!(matches!(e, WorkerArgsError::MissingValue { flag: "--bind-to" }));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WorkerArgsError {
    /// A flag that takes a value came last.
    #[error("{flag} needs a value")]
    MissingValue {
        /// The flag.
        flag: &'static str,
    },
    /// `--bind-to` named no usable address.
    #[error("bad --bind-to {value}: {source}")]
    BadBind {
        /// What was given.
        value: String,
        /// Why it cannot be used.
        #[source]
        source: std::io::Error,
    },
    /// The TLS bundle file cannot be read. (Feature `tls`.)
    #[cfg(feature = "tls")]
    #[error("cannot read the TLS bundle {path}: {source}")]
    ReadBundle {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS bundle file holds no usable credentials. (Feature `tls`.)
    #[cfg(feature = "tls")]
    #[error("bad TLS bundle {path}: {source}")]
    BadBundle {
        /// The file.
        path: String,
        /// What is wrong with it.
        #[source]
        source: cohort_transport::TlsError,
    },
    /// The `--cookie-file` cannot be read, or holds no usable cookie.
    #[error("--cookie-file {path}: {reason}")]
    BadCookieFile {
        /// The file.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// `--join` named no `host:port`.
    #[error("bad --join {value}: expected HOST:PORT, the address of the master's join listener")]
    BadJoin {
        /// What was given.
        value: String,
    },
    /// A TLS flag (`--tls-stdin`, `--tls-bundle`) was given to a worker built without
    /// the `tls` feature, which cannot run TLS: it refuses to start rather than serve
    /// in plaintext. (Never returned with the feature.)
    #[error("{flag}: this worker was built without TLS support (the `tls` feature)")]
    TlsUnavailable {
        /// The flag.
        flag: &'static str,
    },
}

/// How a worker runs.
///
/// ```
/// let o = cohort_cluster::WorkerOptions::from_args(["--bind-to", "127.0.0.1:0"]).unwrap();
/// assert_eq!(o.bind_to.port(), 0);
/// assert!(o.manager.is_none()); // worker-to-worker over TCP
/// ```
///
/// A worker of a custom transport hands the runtime its manager (Julia's
/// `init_worker(cookie, manager)`), here the program a
/// [`UnixManager`](cohort_transport::UnixManager) starts:
///
/// ```no_run
/// use std::sync::Arc;
/// use cohort_cluster::WorkerOptions;
/// use cohort_transport::{stream, unix, UnixManager};
///
/// let socket = unix::socket_from_env().expect("started by a UnixManager");
/// let opts = WorkerOptions {
///     // Its connect is how this worker reaches the others: over their sockets.
///     manager: Some(Arc::new(UnixManager::new(socket.parent().unwrap()))),
///     // The manager's flags: `--tls-stdin` when the cluster uses TLS.
///     ..WorkerOptions::from_args(std::env::args().skip(1)).unwrap()
/// };
/// opts.init_worker()?; // the cookie (and the TLS bundle) from stdin
/// cohort_cluster::runtime::block_on(async move {
///     let listener = stream::unix_listen(&socket)?;
///     unix::announce(&socket)?;
///     loop {
///         // The master's connection, then other workers'.
///         let conn = stream::unix_accept(&listener).await?;
///         let opts = opts.clone();
///         tokio::spawn(async move { opts.process_messages(conn).await });
///     }
///     #[allow(unreachable_code)]
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct WorkerOptions {
    /// Where to listen (`--bind-to addr[:port]`; default 127.0.0.1, any port).
    pub bind_to: SocketAddr,
    /// The cookie (`--cookie-file FILE`: the file's first line); `None` reads it from
    /// the first line of stdin.
    pub cookie: Option<Cookie>,
    /// An elastic worker's master (`--join HOST:PORT`): the address of its join
    /// listener ([`Cluster::listen_for_workers`](crate::Cluster::listen_for_workers)).
    /// The worker then connects there itself, instead of printing its address and
    /// waiting for a master to connect; it still listens at `bind_to` for the other
    /// workers. `None` (the default): a launched worker.
    pub join: Option<String>,
    /// How long to wait for the master.
    pub timeout: Duration,
    /// The cluster's TLS credentials (`--tls-bundle FILE`): every connection this
    /// worker accepts or opens then runs TLS, and plaintext peers are refused.
    /// (Feature `tls`, on by default.)
    #[cfg(feature = "tls")]
    pub tls: Option<cohort_transport::ClusterTls>,
    /// Read the TLS credentials from stdin after the cookie (`--tls-stdin`, which
    /// the stock managers pass when the cluster uses TLS). (Feature `tls`, on by
    /// default.)
    #[cfg(feature = "tls")]
    pub tls_from_stdin: bool,
    /// The cluster manager whose [`connect`](ClusterManager::connect) this worker
    /// uses to reach other workers (Julia's `init_worker(cookie, manager)`): set it
    /// for a custom transport whose
    /// [`worker_transport`](ClusterManager::worker_transport) says
    /// [`Custom`](cohort_transport::WorkerTransport::Custom). `None` (the default,
    /// and worker mode's): TCP to the address the master announced.
    pub manager: Option<Arc<dyn ClusterManager>>,
    /// How long a connection this worker accepts or opens may take to authenticate
    /// (TLS and the cookie handshake) before it is dropped. Default:
    /// `COHORT_HANDSHAKE_TIMEOUT` seconds, or 10 s
    /// ([`AddProcs::handshake_timeout`](crate::AddProcs::handshake_timeout) sets it
    /// for the workers it starts).
    pub handshake_timeout: Duration,
    /// At most this many accepted connections in their set-up phase at once; more wait
    /// in the listener's backlog (costing no descriptor) until one is authenticated or
    /// dropped. Default: `COHORT_MAX_HANDSHAKES`, or
    /// [`DEFAULT_MAX_HANDSHAKES`](crate::DEFAULT_MAX_HANDSHAKES). Applies to the TCP
    /// listener of [`run_worker`]; a program that accepts its own connections for
    /// [`process_messages`](Self::process_messages) limits them itself.
    pub max_handshakes: usize,
    /// Once the cookie (and TLS bundle) are read, replace stdin with `/dev/null`
    /// (`--close-stdin`; Julia's `start_worker(close_stdin=true)`), so that nothing
    /// the worker runs reads what is left on it. Default false: stdin stays as the
    /// manager left it.
    pub close_stdin: bool,
    /// Send stderr where stdout goes (`--stderr-to-stdout`; Julia's
    /// `start_worker(stderr_to_stdout=true)`), so that a manager that forwards only
    /// stdout gets both, in order. Default false: the stock managers forward both,
    /// each labelled.
    pub stderr_to_stdout: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            bind_to: SocketAddr::from(([127, 0, 0, 1], 0)),
            cookie: None,
            join: None,
            timeout: listen::worker_timeout(),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_from_stdin: false,
            manager: None,
            handshake_timeout: super::accept::handshake_timeout_from_env(),
            max_handshakes: super::accept::max_handshakes_from_env(),
            close_stdin: false,
            stderr_to_stdout: false,
        }
    }
}

impl std::fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so that a new field cannot be forgotten here.
        let WorkerOptions {
            bind_to,
            cookie,
            join,
            timeout,
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "tls")]
            tls_from_stdin,
            manager,
            handshake_timeout,
            max_handshakes,
            close_stdin,
            stderr_to_stdout,
        } = self;
        let mut d = f.debug_struct("WorkerOptions");
        d.field("bind_to", bind_to)
            .field("cookie", cookie)
            .field("join", join)
            .field("timeout", timeout);
        // `ClusterTls`'s own `Debug` never shows the key.
        #[cfg(feature = "tls")]
        d.field("tls", tls).field("tls_from_stdin", tls_from_stdin);
        d.field(
            "manager",
            &manager.as_ref().map(|m| m.worker_transport().to_string()),
        )
        .field("handshake_timeout", handshake_timeout)
        .field("max_handshakes", max_handshakes)
        .field("close_stdin", close_stdin)
        .field("stderr_to_stdout", stderr_to_stdout)
        .finish()
    }
}

impl WorkerOptions {
    /// Parses the worker arguments that follow `--cohort-worker`: `--bind-to
    /// addr[:port]`, `--join HOST:PORT`, `--cookie-file FILE`, `--tls-stdin`,
    /// `--tls-bundle FILE`, `--close-stdin`, `--stderr-to-stdout`; anything else is
    /// left for the program.
    ///
    /// # Errors
    /// [`WorkerArgsError`]: a malformed `--bind-to` or `--join`, a flag without its
    /// value, a cookie file or TLS bundle that cannot be read or used; without the
    /// `tls` feature, any TLS flag ([`WorkerArgsError::TlsUnavailable`]).
    ///
    /// ```
    /// assert!(cohort_cluster::WorkerOptions::from_args(["--bind-to", "nope"]).is_err());
    /// #[cfg(feature = "tls")]
    /// assert!(cohort_cluster::WorkerOptions::from_args(["--tls-stdin"]).unwrap().tls_from_stdin);
    /// #[cfg(not(feature = "tls"))]
    /// assert!(cohort_cluster::WorkerOptions::from_args(["--tls-stdin"]).is_err());
    /// ```
    pub fn from_args<I, S>(args: I) -> Result<Self, WorkerArgsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut o = WorkerOptions::default();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let a = a.as_ref();
            if a == TLS_STDIN_FLAG {
                #[cfg(feature = "tls")]
                {
                    o.tls_from_stdin = true;
                    continue;
                }
                #[cfg(not(feature = "tls"))]
                return Err(WorkerArgsError::TlsUnavailable {
                    flag: TLS_STDIN_FLAG,
                });
            }
            let bundle = flag_value(a, "--tls-bundle", &mut it)?;
            #[cfg(not(feature = "tls"))]
            if bundle.is_some() {
                return Err(WorkerArgsError::TlsUnavailable {
                    flag: "--tls-bundle",
                });
            }
            #[cfg(feature = "tls")]
            if let Some(path) = bundle {
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(source) => return Err(WorkerArgsError::ReadBundle { path, source }),
                };
                match cohort_transport::ClusterTls::from_bundle(&text) {
                    Ok(t) => o.tls = Some(t),
                    Err(source) => return Err(WorkerArgsError::BadBundle { path, source }),
                }
                continue;
            }
            if a == "--close-stdin" {
                o.close_stdin = true;
                continue;
            }
            if a == "--stderr-to-stdout" {
                o.stderr_to_stdout = true;
                continue;
            }
            if let Some(v) = flag_value(a, "--join", &mut it)? {
                if !is_host_port(&v) {
                    return Err(WorkerArgsError::BadJoin { value: v });
                }
                o.join = Some(v);
                continue;
            }
            if let Some(path) = flag_value(a, "--cookie-file", &mut it)? {
                o.cookie = Some(read_cookie_file(&path)?);
                continue;
            }
            if let Some(v) = flag_value(a, "--bind-to", &mut it)? {
                o.bind_to = match parse_bind(&v) {
                    Ok(a) => a,
                    Err(source) => return Err(WorkerArgsError::BadBind { value: v, source }),
                };
            }
        }
        Ok(o)
    }
}

/// The value of `flag` if `a` is it (`--flag VALUE`, the value taken from `it`) or
/// `--flag=VALUE`.
fn flag_value<I, S>(
    a: &str,
    flag: &'static str,
    it: &mut I,
) -> Result<Option<String>, WorkerArgsError>
where
    I: Iterator<Item = S>,
    S: AsRef<str>,
{
    if a == flag {
        return it
            .next()
            .map(|v| Some(v.as_ref().to_string()))
            .ok_or(WorkerArgsError::MissingValue { flag });
    }
    Ok(a.strip_prefix(flag)
        .and_then(|r| r.strip_prefix('='))
        .map(str::to_string))
}

/// Whether `s` is `host:port` with a host and a port number (`[v6]:port` too).
fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0))
}

/// The cookie in the first line of `path`.
fn read_cookie_file(path: &str) -> Result<Cookie, WorkerArgsError> {
    let bad = |reason: String| WorkerArgsError::BadCookieFile {
        path: path.to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let line = text.lines().next().unwrap_or("").trim();
    Cookie::new(line.to_string()).map_err(|e| bad(e.to_string()))
}

impl WorkerOptions {
    /// Julia's `init_worker`, for workers reached over a custom transport: makes this
    /// process a worker with these options' cookie (or the first line of stdin when
    /// `cookie` is `None`), and with `tls` (or the bundle that follows the cookie on
    /// stdin when `tls_from_stdin`), and starts the no-master timer (`timeout`). The program
    /// then accepts connections its own way and hands each to
    /// [`process_messages`](Self::process_messages). (`run_worker` does both over TCP.)
    /// The worker opens its connections to other workers with `manager`'s
    /// [`connect`](ClusterManager::connect) (Julia's `init_worker(cookie, manager)`),
    /// or over TCP without one. As [`run_worker`], it caps glibc's allocator at one
    /// arena from now on (unless `MALLOC_ARENA_MAX` is set) and trims the heap when
    /// the worker goes idle.
    ///
    /// # Errors
    /// `UnexpectedEof` if stdin closed before the cookie; `InvalidData` for an invalid
    /// cookie or TLS bundle; `AlreadyExists` if this process is already a worker.
    ///
    /// ```no_run
    /// use cohort_cluster::{Cookie, WorkerOptions};
    /// let opts = WorkerOptions { cookie: Some(Cookie::new("secret").unwrap()), ..Default::default() };
    /// opts.init_worker().unwrap();
    /// ```
    pub fn init_worker(&self) -> std::io::Result<()> {
        use std::io::{Error, ErrorKind};
        static INITIALIZED: AtomicBool = AtomicBool::new(false);
        let cookie = match &self.cookie {
            Some(c) => c.clone(),
            None => Cookie::new(listen::read_cookie_from_stdin()?)
                .map_err(|e| Error::new(ErrorKind::InvalidData, e.to_string()))?,
        };
        #[cfg(feature = "tls")]
        let tls = match &self.tls {
            Some(t) => Some(t.clone()),
            None if self.tls_from_stdin => Some(cohort_transport::tls::read_bundle_from_stdin()?),
            None => None,
        };
        // A worker serves with the process's default node.
        let n = global();
        if n.is_worker() || INITIALIZED.swap(true, Ordering::AcqRel) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "this process is already a worker",
            ));
        }
        n.set_cookie(cookie);
        #[cfg(feature = "tls")]
        if let Some(t) = tls {
            super::tls::set(n, t);
        }
        *n.peer_manager.write() = self.manager.clone();
        n.set_handshake_timeout(self.handshake_timeout);
        redirect_std_streams(self.close_stdin, self.stderr_to_stdout)?;
        super::memory::tune_allocator();
        super::memory::start_idle_trim(Arc::downgrade(n));
        start_master_timer(self.timeout);
        Ok(())
    }

    /// Julia's `process_messages`: serves one connection that arrived over any
    /// transport (a pair of byte streams) — the master's, which joins this worker to
    /// the cluster, or another worker's. Runs TLS (when on) and the handshake as the
    /// accepting side and
    /// returns once the connection is registered; its messages are then served in the
    /// background until it closes. Call [`init_worker`](Self::init_worker) first.
    ///
    /// # Errors
    /// `PermissionDenied` if the peer failed authentication or broke the protocol
    /// (the connection is dropped; the worker goes on).
    ///
    /// ```no_run
    /// # async fn demo(conn: cohort_transport::Connection) {
    /// let opts = cohort_cluster::WorkerOptions::default();
    /// opts.init_worker().unwrap();
    /// opts.process_messages(conn).await.unwrap();
    /// # }
    /// ```
    pub async fn process_messages(&self, conn: Connection) -> std::io::Result<()> {
        let peer = conn.peer.clone();
        super::runtime::handle()
            .spawn(accept_connection(conn, None))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("connection from {peer} refused: {e}"),
                )
            })
    }
}

/// Julia's `start_worker(close_stdin, stderr_to_stdout)`: stdin onto `/dev/null`, and
/// stderr onto stdout, as asked (after the cookie has been read from stdin).
fn redirect_std_streams(close_stdin: bool, stderr_to_stdout: bool) -> std::io::Result<()> {
    if close_stdin {
        let null = std::fs::File::open("/dev/null")?;
        // SAFETY: dup2 on descriptors this process owns; `null` stays open until the
        // call returns, and fd 0 then refers to /dev/null.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if stderr_to_stdout {
        use std::io::Write;
        let _ = std::io::stderr().flush();
        // SAFETY: dup2 of the process's own stdout onto its stderr.
        if unsafe { libc::dup2(1, 2) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Exits the process if no master has joined within `timeout`.
fn start_master_timer(timeout: Duration) {
    super::runtime::handle().spawn(async move {
        tokio::time::sleep(timeout).await;
        if !JOINED.load(Ordering::Acquire) {
            eprintln!(
                "cohort worker: no master connected within {:.1} s; exiting",
                timeout.as_secs_f64()
            );
            std::process::exit(1);
        }
    });
}

/// Runs this process as a worker until the master lets it go, then exits the process.
///
/// Transient `accept` errors (out of descriptors, a connection reset before it was
/// taken) are logged and retried after a pause; only a listener that fails for good
/// ends the worker (status 1). Worker mode also caps glibc's allocator at one arena
/// and returns free heap pages when the worker goes idle, so that its memory returns
/// to its baseline after a burst; `MALLOC_ARENA_MAX` in the environment keeps glibc's
/// own choice (see `docs/reliability.md`).
///
/// ```no_run
/// cohort_cluster::run_worker(cohort_cluster::WorkerOptions::default());
/// ```
pub fn run_worker(opts: WorkerOptions) -> ! {
    // Before the runtime's threads allocate (see `shell::memory`).
    super::memory::tune_allocator();
    init_logging();
    let code = match super::runtime::run_main(serve(opts)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cohort worker: {e}");
            1
        }
    };
    std::process::exit(code)
}

/// A worker owns its process, so it installs the log output: `tracing` events at the
/// level `COHORT_LOG` names (default `warn`) go to stderr, which the manager forwards
/// to the driver. A driver's logging is left to the program. Without the `log`
/// feature a worker installs no subscriber (a program that wants one installs its
/// own before `run_worker`).
#[cfg(feature = "log")]
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COHORT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Without the `log` feature a worker installs no log subscriber.
#[cfg(not(feature = "log"))]
fn init_logging() {}

/// Turns this process into a worker if it was started in worker mode
/// (`--cohort-worker` as its first argument); otherwise returns at once. On Linux the
/// check already happened before `main`; calling it is harmless and keeps programs
/// portable.
///
/// A driver started with `--machine-file FILE` (or with `COHORT_MACHINE_FILE` set)
/// first adds the workers the file lists over SSH, as `julia --machine-file` does:
/// one machine spec per line (`[count*][user@]host[:port] [bind_addr[:port]]`, `#`
/// comments; `COHORT_SSHFLAGS` adds ssh options such as `-i KEY`). A file that cannot
/// be read or workers that cannot be started end the program with a message, since
/// it was asked to run on them.
///
/// ```
/// cohort_cluster::init(); // not started as a worker: returns
/// ```
pub fn init() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(WORKER_FLAG) {
        enter_worker_mode(args.collect());
    }
    crate::api::observe::first_use(global());
    if let Some(file) = machine_file(std::env::args().skip(1)) {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // Extra ssh options for these launches (say, `-i KEY`), split on spaces.
            let flags: Vec<String> = std::env::var("COHORT_SSHFLAGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect();
            let added = cohort_transport::SshManager::from_machine_file(&file)
                .map(|m| m.sshflags(flags))
                .map_err(|e| e.to_string())
                .and_then(|m| {
                    crate::AddProcs::with_manager(m)
                        .launch_blocking()
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = added {
                eprintln!("cohort: --machine-file {}: {e}", file.display());
                std::process::exit(1);
            }
        });
    }
}

/// The machine file named by `--machine-file FILE` / `--machine-file=FILE` among
/// `args`, or by `COHORT_MACHINE_FILE`.
///
/// ```
/// let f = cohort_cluster::machine_file(["--machine-file", "hosts.txt"].map(String::from));
/// assert_eq!(f.unwrap().to_str(), Some("hosts.txt"));
/// ```
pub fn machine_file(args: impl IntoIterator<Item = String>) -> Option<std::path::PathBuf> {
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--machine-file" {
            return it.next().map(Into::into);
        }
        if let Some(f) = a.strip_prefix("--machine-file=") {
            return Some(f.into());
        }
    }
    std::env::var_os("COHORT_MACHINE_FILE")
        .filter(|v| !v.is_empty())
        .map(Into::into)
}

fn enter_worker_mode(args: Vec<String>) -> ! {
    match WorkerOptions::from_args(&args) {
        Ok(o) => run_worker(o),
        Err(e) => {
            eprintln!("cohort worker: {e}");
            std::process::exit(2)
        }
    }
}

/// The constructor that turns a program started with `--cohort-worker` into a worker
/// before its `main` (or the test harness's) runs (see the module docs). glibc passes
/// `argc`/`argv` to `.init_array` functions, which is how it reads the flag so early;
/// other C libraries (musl) pass nothing, so the hook exists only with glibc.
#[cfg(all(feature = "worker-hook", target_os = "linux", target_env = "gnu"))]
#[used]
#[link_section = ".init_array"]
static WORKER_HOOK: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = worker_hook;

#[cfg(all(feature = "worker-hook", target_os = "linux", target_env = "gnu"))]
extern "C" fn worker_hook(argc: c_int, argv: *const *const c_char, _env: *const *const c_char) {
    if argc < 2 || argv.is_null() {
        return;
    }
    // SAFETY: this is compiled only for glibc, which calls `.init_array` functions
    // with the process's argc/argv: an array of `argc` valid NUL-terminated strings.
    let arg = |i: c_int| unsafe {
        CStr::from_ptr(*argv.add(i as usize))
            .to_string_lossy()
            .into_owned()
    };
    if arg(1) != WORKER_FLAG {
        return;
    }
    let rest = (2..argc).map(arg).collect();
    enter_worker_mode(rest);
}

/// Keeps the constructor linked: referencing it from code every program runs stops
/// the linker from dropping the object file that holds it.
pub(crate) fn keep_worker_hook() {
    #[cfg(all(feature = "worker-hook", target_os = "linux", target_env = "gnu"))]
    std::hint::black_box(&WORKER_HOOK);
}

static JOINED: AtomicBool = AtomicBool::new(false);

async fn serve(opts: WorkerOptions) -> Result<(), String> {
    let cookie = match opts.cookie {
        Some(c) => c,
        None => {
            let line = tokio::task::spawn_blocking(listen::read_cookie_from_stdin)
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("reading the cookie: {e}"))?;
            Cookie::new(line).map_err(|e| e.to_string())?
        }
    };
    let n = global();
    n.set_cookie(cookie);
    #[cfg(feature = "tls")]
    let tls = match opts.tls {
        Some(t) => Some(t),
        None if opts.tls_from_stdin => Some(
            tokio::task::spawn_blocking(cohort_transport::tls::read_bundle_from_stdin)
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("reading the TLS credentials: {e}"))?,
        ),
        None => None,
    };
    #[cfg(feature = "tls")]
    if let Some(t) = tls {
        super::tls::set(n, t);
    }
    *n.peer_manager.write() = opts.manager;
    n.set_handshake_timeout(opts.handshake_timeout);
    redirect_std_streams(opts.close_stdin, opts.stderr_to_stdout)
        .map_err(|e| format!("redirecting stdin/stderr: {e}"))?;
    super::memory::start_idle_trim(Arc::downgrade(n));
    let (listener, host, port) = listen::bind(opts.bind_to)
        .await
        .map_err(|e| format!("cannot bind {}: {e}", opts.bind_to))?;
    // Processes on this host connect to the same-host socket instead of TCP. Failing
    // to make one costs only speed: the worker goes on with TCP alone.
    let same_host = match cohort_transport::same_host::bind() {
        Ok(s) => s.map(|(listener, endpoint)| SameHostListener { listener, endpoint }),
        Err(e) => {
            tracing::warn!(error = %e, "no same-host socket; processes on this host use TCP");
            None
        }
    };
    match &opts.join {
        // An elastic worker goes to its master; if it cannot join, it exits.
        Some(master) => {
            let master = master.clone();
            let timeout = opts.timeout;
            super::runtime::handle().spawn(async move {
                if let Err(e) = super::elastic::join_master(n, &master, host, port, timeout).await {
                    eprintln!("cohort worker: cannot join the master at {master}: {e}");
                    std::process::exit(1);
                }
            });
        }
        None => listen::announce_with(&host, port, same_host.as_ref().map(|s| &s.endpoint))
            .map_err(|e| format!("cannot announce the address: {e}"))?,
    }
    start_master_timer(opts.timeout);
    let slots = AcceptLimits {
        max_handshakes: opts.max_handshakes,
    }
    .slots();
    // Only a broken listener ends a loop; a transient error (out of descriptors, a
    // connection reset before it was taken) is backed off inside it. A broken
    // same-host socket leaves TCP; a broken TCP listener ends the worker.
    if let Some(same_host) = same_host {
        let slots = slots.clone();
        super::runtime::handle().spawn(async move {
            let e = accept_loop(same_host, slots, |conn, addr, permit| async move {
                log_refusal(&addr, accept_connection(conn, Some(permit)).await);
            })
            .await;
            tracing::error!(error = %e, "the same-host socket failed; TCP goes on");
        });
    }
    let e = accept_loop(listener, slots, |stream, addr, permit| async move {
        log_refusal(&addr, accept(stream, permit).await);
    })
    .await;
    Err(format!("the listener failed: {e}"))
}

/// Logs why an accepted connection came to nothing, if it did.
fn log_refusal(addr: &str, result: Result<(), ConnectError>) {
    match result {
        Ok(()) => {}
        // A peer that said nothing, or went away (a port scan, a health check, a
        // flood), is not worth a warning per connection; a failed authentication or a
        // protocol error is.
        Err(
            e @ (ConnectError::Closed { .. } | ConnectError::TimedOut { .. } | ConnectError::Io(_)),
        ) => {
            tracing::debug!(%addr, error = %e, "dropped a connection that did not authenticate");
        }
        Err(e) => tracing::warn!(%addr, error = %e, "refused a connection"),
    }
}

async fn accept(
    stream: tokio::net::TcpStream,
    permit: OwnedSemaphorePermit,
) -> Result<(), ConnectError> {
    let conn = Connection::from_tcp(stream)?;
    accept_connection(conn, Some(permit)).await
}

/// The accepting side of any connection: TLS (when on), handshake, then `Join` or
/// `Identify`. `permit` (the accept loop's set-up slot) is let go once the peer is
/// authenticated.
async fn accept_connection(
    conn: Connection,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<(), ConnectError> {
    let n = global();
    // Bounded, so a connection that sends nothing holds its slot (and descriptor)
    // only for the handshake timeout.
    let mut est = authenticate(n, conn, Role::Acceptor).await?;
    drop(permit);
    let first = read_one(&mut est, Duration::from_secs(30)).await?;
    match first.kind {
        Some(Kind::Join(join)) => become_worker(n, est, join).await,
        Some(Kind::Identify(id)) => {
            if n.peek(|c| c.membership().topology().0) == Topology::MasterWorker {
                return Err(ConnectError::TopologyForbids { pid: id.pid });
            }
            Peer::register(n, id.pid, est);
            n.with_core(|c| c.handle_connected(id.pid, None, false));
            // The answer that tells the connector this connection is registered here
            // (what a worker joining with eager connections waits for): any message
            // will do, and a heartbeat means nothing else.
            let _ = n.send(
                id.pid,
                Envelope {
                    kind: Some(Kind::Heartbeat(proto::Heartbeat {})),
                },
            );
            Ok(())
        }
        _ => Err(ConnectError::Unexpected {
            expected: "Join or Identify",
        }),
    }
}

/// Makes this process the worker `join` describes, on `est`, the connection its master
/// sent it on: records the cluster, answers `JoinComplete` and serves the master's
/// messages from then on. A master's connection, whichever end opened it (the master,
/// to a worker it launched; an elastic worker, to its master's join listener).
///
/// # Errors
/// [`ConnectError::SecondMaster`] if a master already joined this process; the I/O
/// error of writing the answer.
pub(crate) async fn become_worker(
    n: &Arc<Node>,
    mut est: Established,
    join: proto::Join,
) -> Result<(), ConnectError> {
    if JOINED.swap(true, Ordering::AcqRel) {
        return Err(ConnectError::SecondMaster);
    }
    *n.master_hostname.write() = join.master_hostname.clone();
    let eager: Vec<Pid> = join.connect_now.iter().map(|w| w.pid).collect();
    n.join_as_worker(Joined {
        pid: join.pid,
        topology: topology_from_wire(join.topology()),
        lazy: join.lazy,
        known: join.known,
        // Eager all-to-all and custom: connect to the workers the master named.
        // Under a custom topology these are the only workers this one may call.
        connect_now: join.connect_now,
        custom: true,
        heartbeat: crate::core::liveness::Heartbeat::new(
            Duration::from_millis(join.heartbeat_interval_ms),
            Duration::from_millis(join.heartbeat_timeout_ms),
        )
        .ok(),
    });
    // Eager connections: JoinComplete waits until each peer has registered the
    // connection (its answer to Identify came), so that a launch returns with every
    // connection it asked for up at both ends. One that fails or stays silent is
    // not waited for past the limit; calls to it fail or connect later as usual.
    let peers: Vec<Arc<Peer>> = {
        let table = n.peers.read();
        eager.iter().filter_map(|p| table.get(p).cloned()).collect()
    };
    let limit = n.handshake_timeout() * 2;
    for p in peers {
        if !p.wait_answered(limit).await {
            tracing::warn!(
                pid = p.pid,
                "an eager connection did not come up while joining"
            );
        }
    }
    let jc = proto::JoinComplete {
        os_pid: std::process::id(),
        cpu_threads: std::thread::available_parallelism()
            .map(|c| c.get() as u32)
            .unwrap_or(1),
        hostname: listen::group_hostname(),
    };
    write_one(
        &mut est,
        &Envelope {
            kind: Some(Kind::JoinComplete(jc)),
        },
    )
    .await?;
    Peer::register(n, MASTER, est);
    Ok(())
}
