//! # cohort-worker — the stock worker
//!
//! The worker runtime as a library, and the thin `cohort-worker` binary built on it.
//! The stock worker serves cohort's built-in functions (`cohort::stats`,
//! `cohort::getpid`, `cohort::gethostname`, `cohort::myid`, `cohort::sleep`,
//! `cohort::observe` — what a dashboard asks each worker) and every
//! `#[cohort::remote]` function linked into it.
//!
//! ## Your own worker binary
//!
//! To serve your own functions from a separate worker executable, link the crates
//! that define them and call [`main`] — that is the whole program:
//!
//! ```no_run
//! // src/bin/my-worker.rs
//! // use my_functions as _; // the crate whose #[cohort::remote] fns you serve
//! fn main() -> std::process::ExitCode {
//!     cohort_worker::main()
//! }
//! ```
//!
//! Then start workers with it: `AddProcs::local(4).executable("target/release/my-worker")`.
//! (Any cohort program is also its own worker: `addprocs` starts the current
//! executable in worker mode by default.)
//!
//! ## Features
//!
//! All on by default, each forwarding to the `cohort` feature of the same name:
//! `tls` (`--tls-bundle`, `--tls-stdin`; without it the worker refuses them), `log`
//! (logs to stderr at the level `COHORT_LOG` names) and `shared` (serves
//! `SharedArray` segments).

use std::process::ExitCode;

use clap::Parser;

/// The worker's command line.
///
/// ```
/// use clap::Parser;
/// let cli = cohort_worker::Cli::try_parse_from(["cohort-worker", "--bind-to", "127.0.0.1:9000"]).unwrap();
/// assert_eq!(cli.bind_to.as_deref(), Some("127.0.0.1:9000"));
/// ```
#[derive(Debug, Parser)]
#[command(
    name = "cohort-worker",
    version,
    about = "A cohort worker: listens, prints `cohort_worker:PORT#HOST`, reads the cluster cookie from stdin, and serves calls from the master (or, with --join, joins a master that listens for workers)."
)]
pub struct Cli {
    /// Address to listen on, `addr[:port]` (default 127.0.0.1 and a free port).
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub bind_to: Option<String>,
    /// Read the cookie from this file (its first line) instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub cookie_file: Option<std::path::PathBuf>,
    /// Join the master listening at this address (an elastic worker; the master's
    /// `Cluster::listen_for_workers`) instead of printing an address and waiting for
    /// a master to connect. The worker still listens at `--bind-to` for the other
    /// workers: on another host than the master, bind to an address they reach.
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Option<String>,
    /// Run every connection over TLS with the credentials in this bundle file (as
    /// `cohort::ClusterTls::bundle` writes it).
    #[arg(long, value_name = "FILE")]
    pub tls_bundle: Option<std::path::PathBuf>,
    /// Read the TLS credentials from stdin after the cookie (what managers pass).
    #[arg(long)]
    pub tls_stdin: bool,
    /// Replace stdin with /dev/null once the cookie is read (Julia's
    /// `start_worker(close_stdin=true)`).
    #[arg(long)]
    pub close_stdin: bool,
    /// Send stderr where stdout goes (Julia's `start_worker(stderr_to_stdout=true)`).
    #[arg(long)]
    pub stderr_to_stdout: bool,
    /// Print the names of the functions this worker serves, and exit.
    #[arg(long)]
    pub list_functions: bool,
    /// Accepted for compatibility with the launch line of managers.
    #[arg(long = "cohort-worker", hide = true)]
    pub worker_flag: bool,
}

/// Runs the stock worker with the process's command line.
///
/// ```no_run
/// fn main() -> std::process::ExitCode { cohort_worker::main() }
/// ```
pub fn main() -> ExitCode {
    run(Cli::parse())
}

/// Runs the worker as `cli` says; returns only on a start-up error (a running worker
/// exits the process when the master lets it go).
///
/// ```no_run
/// use clap::Parser;
/// cohort_worker::run(cohort_worker::Cli::parse_from(["cohort-worker"]));
/// ```
pub fn run(cli: Cli) -> ExitCode {
    if cli.list_functions {
        for name in cohort::registered_functions() {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let mut args = Vec::new();
    if let Some(b) = &cli.bind_to {
        args.push("--bind-to".to_string());
        args.push(b.clone());
    }
    if let Some(f) = &cli.tls_bundle {
        args.push("--tls-bundle".to_string());
        args.push(f.display().to_string());
    }
    if cli.tls_stdin {
        args.push("--tls-stdin".to_string());
    }
    for (on, flag) in [
        (cli.close_stdin, "--close-stdin"),
        (cli.stderr_to_stdout, "--stderr-to-stdout"),
    ] {
        if on {
            args.push(flag.to_string());
        }
    }
    if let Some(j) = &cli.join {
        args.push("--join".to_string());
        args.push(j.clone());
    }
    if let Some(f) = &cli.cookie_file {
        args.push("--cookie-file".to_string());
        args.push(f.display().to_string());
    }
    let opts = match cohort::WorkerOptions::from_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cohort-worker: {e}");
            return ExitCode::from(2);
        }
    };
    cohort::run_worker(opts)
}
