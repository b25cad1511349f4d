//! # cohort-slurm — workers under Slurm
//!
//! [`SlurmManager`] is a [`ClusterManager`](cohort_transport::ClusterManager) that
//! starts cohort workers as the tasks of one Slurm job step, the way
//! SlurmClusterManager.jl does for Julia (`addprocs(SlurmManager())`):
//!
//! - **inside an allocation** — the driver runs in an `sbatch` script or under
//!   `salloc` — [`SlurmManager::from_allocation`] reads the `SLURM_*` environment (job
//!   id, number of tasks and nodes) and starts one worker per task of the allocation
//!   with `srun --jobid=JOB`, or [`ntasks`](SlurmManager::ntasks) of them with srun
//!   options of its own;
//! - **requesting an allocation** — [`SlurmManager::request`] runs srun outside any
//!   job, so srun asks for one (nodes, tasks per node, CPUs per task, memory, time,
//!   partition, account, job name, extra flags) and the job ends when the workers do.
//!
//! Where it sits: it depends on `cohort-transport` only (the trait, the worker
//! command-line conventions) and on tokio for the srun process; the runtime
//! (`cohort-cluster`, through the facade's `AddProcs::with_manager`) connects to the
//! workers it reports. It is a crate of its own, not a module of the transport,
//! because it is a scheduler integration with its own failure modes and tests (a
//! real Slurm), which users of the transport need not build.
//!
//! ## How a launch goes
//!
//! 1. One `srun --label --input=all --kill-on-bad-exit=0 --wait=0 --ntasks=N …` runs
//!    `sh -c SCRIPT cohort-slurm-task EXE --cohort-worker --bind-to ADDR …` as each
//!    task. The script prints the task's job, step and node name
//!    (`SLURM_JOB_ID`, `SLURM_STEP_ID`, `SLURMD_NODENAME`), runs the worker, and
//!    prints its exit status when it ends.
//! 2. The cluster cookie (and the TLS bundle, when on) is written to **srun's
//!    stdin**, which `--input=all` hands to every task: it is never on a command
//!    line nor in an environment variable.
//! 3. srun labels every line with its task number (`--label`), so the interleaved
//!    output of many tasks is told apart: the manager waits until every task has
//!    printed its node and its address line (`cohort_worker:PORT#HOST`), then reports
//!    all the workers at once (a step is started and cancelled as a whole). Each
//!    config's [`hostname`](cohort_transport::WorkerConfig::hostname) is the node
//!    name Slurm gave, and each worker runs with `COHORT_HOSTNAME`
//!    ([`HOSTNAME_ENV`](cohort_transport::HOSTNAME_ENV)) set to it, so `procs(pid)`
//!    groups workers by Slurm node, on the driver and on the workers alike.
//! 4. Afterwards the workers' stdout and stderr reach the driver's as
//!    `      From worker N:\tline`, as local workers' do.
//!
//! ## When it fails
//!
//! Every wait is bounded by [`timeout`](SlurmManager::timeout) (default 120 s): a
//! request Slurm refuses (srun exits: no such partition, more memory than a node
//! has…), a job still pending at the deadline (the error names Slurm's pending reason,
//! e.g. `PartitionNodeLimit`), a task that exits before it reports, or srun exiting
//! early all end the launch with a [`SlurmError`] carrying srun's own message; the
//! step (inside an allocation) or the job (a request) is cancelled — srun is sent
//! SIGTERM, then SIGKILL, then `scancel` makes sure — so nothing is left in `squeue`.
//!
//! `rmprocs` and worker deaths end the tasks; when the last worker of a step has
//! gone, srun exits and the step (or the requested job) is over. If srun does not
//! exit in time, the step is cancelled. Dropping the manager (the driver exiting)
//! sends srun SIGTERM and `scancel`s what is still running.
//!
//! ```no_run
//! use cohort::prelude::*;
//! use cohort_slurm::SlurmManager;
//!
//! // In an sbatch script with `#SBATCH --ntasks=4`, the driver (run without srun)
//! // starts one worker per task of its allocation.
//! let pids = AddProcs::with_manager(SlurmManager::from_allocation()?).launch_blocking()?;
//! assert_eq!(pids.len(), 4);
//!
//! // Or ask Slurm for two nodes with two tasks each, waiting at most a minute.
//! let manager = SlurmManager::request(4)
//!     .nodes(2)
//!     .ntasks_per_node(2)
//!     .partition("compute")
//!     .time("00:30:00")
//!     .timeout(std::time::Duration::from_secs(60));
//! let more = AddProcs::with_manager(manager).launch_blocking()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod manager;
mod parse;
mod step;

pub use error::SlurmError;
pub use manager::{Allocation, SlurmManager, SlurmStep};
