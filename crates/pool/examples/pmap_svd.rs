//! The manual's `pmap` example: singular values of ten random 1000×1000 matrices.
//!
//! ```julia
//! M = Matrix{Float64}[rand(1000,1000) for i = 1:10];
//! pmap(svdvals, M);
//! ```
//!
//! `cargo run --release -p cohort-pool --example pmap_svd [size]`

use std::time::Instant;

use nalgebra::DMatrix;

/// A square matrix travelling as its column-major data.
fn svdvals(n: usize, data: Vec<f64>) -> Vec<f64> {
    let m = DMatrix::from_vec(n, n, data);
    m.singular_values().as_slice().to_vec()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let ms: Vec<(usize, Vec<f64>)> = (0..10)
        .map(|_| (n, (0..n * n).map(|_| rand::random::<f64>()).collect()))
        .collect();
    cohort::blocking::addprocs(2).expect("addprocs");
    let t = Instant::now();
    let vals =
        cohort_pool::blocking::pmap_args(svdvals, ms, cohort_pool::PmapOptions::new()).unwrap();
    println!(
        "pmap(svdvals, M) of ten {n}×{n} matrices: {:?}",
        t.elapsed()
    );
    for (i, v) in vals.iter().enumerate() {
        let max = v.iter().cloned().fold(f64::MIN, f64::max);
        println!("  matrix {i}: largest singular value {max:.3}");
    }
}
