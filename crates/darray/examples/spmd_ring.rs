//! The SPMD ring of DistributedArrays.jl's guide (`foo_spmd`): every process swaps
//! its local part with both neighbours `n` times, with a barrier each round, and
//! keeps a running sum.
//!
//! ```julia
//! @everywhere function foo_spmd(d_in, d_out, n)
//!     pids = sort(vec(procs(d_in)))
//!     pididx = findfirst(isequal(myid()), pids)
//!     mylp = d_in[:L]
//!     localsum = 0
//!     n_pididx = pididx+1 > length(pids) ? 1 : pididx+1
//!     p_pididx = pididx-1 < 1 ? length(pids) : pididx-1
//!     for i in 1:n
//!         sendto(pids[n_pididx], mylp)
//!         sendto(pids[p_pididx], mylp)
//!         mylp = recvfrom(pids[p_pididx])
//!         mylp = recvfrom(pids[n_pididx])
//!         barrier(;pids=pids)
//!         localsum = localsum + mylp + mylp
//!     end
//!     d_out[:L] = localsum
//! end
//! spmd(foo_spmd, d_in, d_out, 10, pids=workers())
//! ```
//!
//! Here each process's local part of `d_in` is its row `[myid(), myid()]` (the
//! guide's `DArray(I->fill(myid(), …), (nworkers(), 2), workers(), [nworkers(),1])`)
//! and `spmd` returns each process's `localsum` (the guide's `d_out[:L]`), in rank
//! order.
//!
//! `cargo run -p cohort-darray --example spmd_ring [workers]`

use cohort::darray::spmd::{self, SpmdError, SpmdOptions};
use cohort::Pid;

/// One process's part: the guide's `foo_spmd`.
fn foo_spmd(n: u32) -> Result<[i64; 2], SpmdError> {
    let mut pids = spmd::run_pids()?;
    pids.sort_unstable();
    let me = cohort::myid();
    let idx = pids.iter().position(|p| *p == me).expect("in the run");
    let mut mylp = [me as i64; 2];
    let mut localsum = [0i64; 2];
    let next = pids[(idx + 1) % pids.len()];
    let prev = pids[(idx + pids.len() - 1) % pids.len()];
    for _ in 0..n {
        spmd::sendto(next, &mylp, ())?;
        spmd::sendto(prev, &mylp, ())?;
        // As in the guide, the second receive overwrites the first.
        let _from_prev: [i64; 2] = spmd::recvfrom(prev, ())?;
        mylp = spmd::recvfrom(next, ())?;
        spmd::barrier(())?;
        for (s, x) in localsum.iter_mut().zip(mylp) {
            *s += x + x;
        }
    }
    Ok(localsum)
}

/// Runs the ring on `pids` for 10 rounds, prints `d_in` and `d_out`, and checks the
/// sums against a serial computation.
pub(crate) fn run(pids: &[Pid]) -> Vec<[i64; 2]> {
    let d_out = spmd::blocking::spmd_with(foo_spmd, (10u32,), SpmdOptions::new().pids(pids))
        .expect("the ring ran");
    let d_in: Vec<[i64; 2]> = pids.iter().map(|p| [*p as i64; 2]).collect();
    println!("d_in  = {d_in:?}");
    println!("d_out = {d_out:?}");
    // Serially: each round, a process's part becomes its next neighbour's (the
    // second receive overwrites the first).
    let mut sorted = pids.to_vec();
    sorted.sort_unstable();
    let m = sorted.len();
    let mut lp: Vec<i64> = sorted.iter().map(|p| *p as i64).collect();
    let mut sum = vec![0i64; m];
    for _ in 0..10 {
        lp = (0..m).map(|i| lp[(i + 1) % m]).collect();
        for i in 0..m {
            sum[i] += 2 * lp[i];
        }
    }
    for (k, p) in pids.iter().enumerate() {
        let i = sorted.iter().position(|q| q == p).expect("sorted");
        assert_eq!(d_out[k], [sum[i]; 2], "process {p}");
    }
    d_out
}

#[allow(dead_code)]
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let w = cohort::blocking::addprocs(n).expect("addprocs");
    run(&w);
}
