//! The manual's `2 .* dA ./ dB` (seed 001, "Noteworthy external packages"), with
//! the `all(dC .≈ 4π)` check.
//!
//! ```julia
//! B = ones(10_000) ./ 2;  A = ones(10_000) .* π;  C = 2 .* A ./ B
//! all(C .≈ 4*π)          # true
//! dB = distribute(B); dA = distribute(A); dC = 2 .* dA ./ dB
//! all(dC .≈ 4*π)         # true
//! typeof(dC)             # DistributedArrays.DArray{Float64,1,Array{Float64,1}}
//! ```
//!
//! In Rust the operators build an expression of the distributed arrays, and `eval`
//! computes it on the owners in one call each (fused, as Julia's dots are).
//!
//! Run: `cargo run --release -p cohort-darray --example broadcast`

use std::f64::consts::PI;

use cohort_darray::blocking::distribute;
use ndarray::Array1;

/// Runs the example with vectors of `n` elements; returns whether every element of
/// the distributed result is ≈ 4π.
///
/// # Errors
/// As the distributed operations.
pub fn run(n: usize) -> Result<bool, cohort_darray::DArrayError> {
    let b = Array1::<f64>::ones(n) / 2.0;
    let a = Array1::<f64>::ones(n) * PI;
    let c = 2.0 * &a / &b;
    assert!(c
        .iter()
        .all(|x| (x - 4.0 * PI).abs() <= 4.0 * PI * f64::EPSILON.sqrt()));
    let db = distribute(&b)?;
    let da = distribute(&a)?;
    let dc = (2.0 * &da / &db).eval_blocking()?;
    dc.all_approx_blocking(4.0 * PI)
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    cohort::blocking::addprocs(2)?;
    let ok = run(10_000)?;
    println!("all(dC .≈ 4π) = {ok}");
    assert!(ok);
    Ok(())
}
