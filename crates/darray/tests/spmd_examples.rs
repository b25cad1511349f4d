//! Smoke runs of the SPMD examples (`examples/spmd_ring.rs`,
//! `examples/spmd_sum_of_ranks.rs`) on real workers: each example's `run` checks its
//! own results.

#[allow(dead_code)]
#[path = "../examples/spmd_ring.rs"]
mod ring;
#[allow(dead_code)]
#[path = "../examples/spmd_sum_of_ranks.rs"]
mod sum_of_ranks;

#[test]
fn the_spmd_examples_run_and_check_themselves() {
    let w = cohort::blocking::addprocs(2).expect("addprocs");
    // The seed's ring on the workers, as its spmd(…, pids=workers()).
    assert_eq!(ring::run(&w).len(), 2);
    // Three ranks with the driver: 0 + 1 + 2.
    assert_eq!(sum_of_ranks::run(&cohort::procs()), 3);
}
