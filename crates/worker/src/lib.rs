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
    about = "A cohort worker: listens, prints `cohort_worker:PORT#HOST`, reads the cluster cookie from stdin, and serves calls from the master."
)]
pub struct Cli {
    /// Address to listen on, `addr[:port]` (default 127.0.0.1 and a free port).
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub bind_to: Option<String>,
    /// Read the cookie from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub cookie_file: Option<std::path::PathBuf>,
    /// Run every connection over TLS with the credentials in this bundle file (as
    /// `cohort::ClusterTls::bundle` writes it).
    #[arg(long, value_name = "FILE")]
    pub tls_bundle: Option<std::path::PathBuf>,
    /// Read the TLS credentials from stdin after the cookie (what managers pass).
    #[arg(long)]
    pub tls_stdin: bool,
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
    let mut opts = match cohort::WorkerOptions::from_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cohort-worker: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &cli.cookie_file {
        let cookie = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|s| cohort::Cookie::new(s.trim().to_string()).map_err(|e| e.to_string()));
        match cookie {
            Ok(c) => opts.cookie = Some(c),
            Err(e) => {
                eprintln!("cohort-worker: {e}");
                return ExitCode::from(2);
            }
        }
    }
    cohort::run_worker(opts)
}
