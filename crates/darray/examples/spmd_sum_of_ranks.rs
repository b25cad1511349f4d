//! The manual's MPI.jl example — every rank takes part, and the root prints the sum
//! of the ranks — with cohort's SPMD primitives:
//!
//! ```julia
//! import MPI
//! MPI.Init()
//! comm = MPI.COMM_WORLD
//! MPI.Barrier(comm)
//! root = 0
//! r = MPI.Comm_rank(comm)
//! sr = MPI.Reduce(r, MPI.SUM, root, comm)
//! if(MPI.Comm_rank(comm) == root)
//!    @printf("sum of ranks: %s\n", sr)
//! end
//! MPI.Finalize()
//! ```
//! run as `mpirun -np 4 ./julia example.jl`. Here the driver and 3 workers are the
//! 4 ranks (`spmd` on `procs()`), `reduce` is `MPI.Reduce` and `allreduce` gives
//! every rank the sum.
//!
//! `cargo run -p cohort-darray --example spmd_sum_of_ranks [workers]`

use cohort::darray::spmd::{self, SpmdError, SpmdOptions};
use cohort::Pid;

/// One rank's part.
fn sum_of_ranks() -> Result<(usize, Option<usize>), SpmdError> {
    spmd::barrier(())?;
    let root = spmd::run_pids()?[0];
    let r = spmd::rank()?;
    let sr = spmd::reduce(r, |a, b| a + b, root, ())?;
    if let Some(sr) = sr {
        println!("sum of ranks: {sr}");
    }
    Ok((spmd::allreduce(r, |a, b| a + b, ())?, sr))
}

/// Runs it on `pids` and checks the sums: `n(n-1)/2` on every rank by `allreduce`,
/// on the root alone by `reduce`.
pub(crate) fn run(pids: &[Pid]) -> usize {
    let out = spmd::blocking::spmd_with(sum_of_ranks, (), SpmdOptions::new().pids(pids))
        .expect("the run");
    let n = pids.len();
    let want = n * (n - 1) / 2;
    for (rank, (all, sr)) in out.iter().enumerate() {
        assert_eq!(*all, want, "allreduce on rank {rank}");
        assert_eq!(*sr, (rank == 0).then_some(want), "reduce on rank {rank}");
    }
    want
}

#[allow(dead_code)]
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    cohort::blocking::addprocs(n).expect("addprocs");
    let sum = run(&cohort::procs());
    println!("{} ranks, sum of ranks {sum}", cohort::nprocs());
}
