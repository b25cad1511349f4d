//! Seed 004's "Numerical Results of Distributed Computations": a distributed
//! floating-point sum adds each chunk's sum, then the partial sums, so it may differ
//! from the serial sum in the last bits — how much depends on the layout.
//!
//! ```julia
//! addprocs(8); A = fill(1.1, (100,100))
//! sum(A)                 # 11000.000000000013
//! DA = distribute(A)
//! sum(DA)                # 11000.000000000127
//! sum(A) == sum(DA)      # false
//! ```
//!
//! Run: `cargo run --release -p cohort-darray --example float_sum`

use ndarray::Array2;

/// The serial sum of `fill(1.1, (100, 100))`, and its distributed sums over every
/// layout `procs` allow (one process, then all of them by rows, then by columns).
///
/// # Errors
/// As the distributed operations.
pub fn run(procs: &[cohort::Pid]) -> Result<(f64, Vec<f64>), cohort_darray::DArrayError> {
    let a = Array2::from_elem((100, 100), 1.1f64);
    let serial = a.sum();
    let mut sums = Vec::new();
    let n = procs.len();
    for (p, dist) in [(&procs[..1], [1, 1]), (procs, [n, 1]), (procs, [1, n])] {
        let d = cohort_darray::DArray::<f64, ndarray::Ix2>::builder((100, 100))
            .procs(p)
            .dist(&dist)
            .distribute_blocking(&a)?;
        sums.push(d.sum_blocking()?);
    }
    Ok((serial, sums))
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let w = cohort::blocking::addprocs(4)?;
    let (serial, sums) = run(&w)?;
    println!("sum(A) = {serial:?}");
    for s in &sums {
        println!("sum(DA) = {s:?}  (== sum(A): {})", *s == serial);
        assert!((s - serial).abs() < 1e-9);
    }
    Ok(())
}
