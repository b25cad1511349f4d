//! A driver for an `sbatch` script: one worker per task of the job it runs in.
//!
//! ```sh
//! cargo build --release -p cohort-slurm --example sbatch_driver
//! sbatch --nodes=2 --ntasks=4 --wrap ./target/release/examples/sbatch_driver
//! ```
//!
//! The driver is started without srun (the manager runs srun for the workers); the
//! binary must be at the same path on the nodes (a shared file system).

use cohort::prelude::*;
use cohort_slurm::SlurmManager;

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One worker per task of the job; their output lands in the job's output file
    // as "      From worker N:\t…".
    let pids = AddProcs::with_manager(SlurmManager::from_allocation()?).launch_blocking()?;
    for &p in &pids {
        let host = blocking::remotecall_fetch(cohort::builtins::gethostname, p, ())?;
        let same_node = cohort::procs_of(p);
        println!("worker {p} runs on {host}, on the same node as {same_node:?}");
    }
    blocking::rmprocs(&pids, None)?;
    Ok(())
}
