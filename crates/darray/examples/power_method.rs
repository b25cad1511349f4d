//! The manual's `power_method` (seed 001, "Noteworthy external packages") on a
//! distributed matrix and a distributed vector.
//!
//! ```julia
//! function power_method(M, v)
//!     for i in 1:100
//!         v = M*v
//!         v /= norm(v)
//!     end
//!     return v, norm(M*v) / norm(v)  # or  (M*v) ./ v
//! end
//! dM = distribute([2. 1; 1 1]); dv = distribute(rand(2))
//! power_method(dM, dv)   # ([0.850651, 0.525731], 2.618033988749895)
//! ```
//!
//! `M * v` is [`DArray::matvec_d`] (each owner of a block of `M` fetches the part
//! of `v` it needs from `v`'s owners), `norm` is one call per owner, and `v / n` is
//! an element-wise expression evaluated where `v` lives.
//!
//! Run: `cargo run --release -p cohort-darray --example power_method`

use cohort_darray::{DArray, DArrayError};
use ndarray::{Array1, Array2, Ix1, Ix2};

/// `iters` steps of the power method on a distributed matrix; returns the vector and
/// the eigenvalue estimate `norm(M v) / norm(v)`.
///
/// # Errors
/// As the operations it uses.
pub fn power_method(
    m: &DArray<f64, Ix2>,
    v: DArray<f64, Ix1>,
    iters: usize,
) -> Result<(DArray<f64, Ix1>, f64), DArrayError> {
    let mut v = v;
    for _ in 0..iters {
        v = m.matvec_d_blocking(&v)?;
        let n = v.norm_blocking()?;
        v = (&v / n).eval_blocking()?;
    }
    let mv = m.matvec_d_blocking(&v)?;
    let lambda = mv.norm_blocking()? / v.norm_blocking()?;
    Ok((v, lambda))
}

/// The same with a local vector: each step sends each owner the part of `v` it
/// needs and adds up the partial products here.
///
/// # Errors
/// As [`DArray::matvec`].
pub fn power_method_local(
    m: &DArray<f64, Ix2>,
    v: Array1<f64>,
    iters: usize,
) -> Result<(Array1<f64>, f64), DArrayError> {
    let mut v = v;
    for _ in 0..iters {
        v = m.matvec_blocking(&v)?;
        let n = v.dot(&v).sqrt();
        v /= n;
    }
    let mv = m.matvec_blocking(&v)?;
    Ok((v.clone(), mv.dot(&mv).sqrt() / v.dot(&v).sqrt()))
}

/// The serial baseline: `ndarray`'s mat-vec loop.
pub fn power_method_serial(m: &Array2<f64>, v: Array1<f64>, iters: usize) -> (Array1<f64>, f64) {
    let mut v = v;
    for _ in 0..iters {
        v = m.dot(&v);
        let n = v.dot(&v).sqrt();
        v /= n;
    }
    let mv = m.dot(&v);
    (v.clone(), mv.dot(&mv).sqrt() / v.dot(&v).sqrt())
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    cohort::blocking::addprocs(2)?;
    let m = ndarray::array![[2.0, 1.0], [1.0, 1.0]];
    let v = Array1::from_shape_fn(2, |_| rand::random::<f64>() + 0.1);
    let dm = cohort_darray::blocking::distribute(&m)?;
    let dv = cohort_darray::blocking::distribute(&v)?;
    let (dv, lambda) = power_method(&dm, dv, 100)?;
    let (sv, slambda) = power_method_serial(&m, v, 100);
    println!(
        "power_method on {:?}: v = {}, λ = {lambda} (serial: {sv}, {slambda})",
        dm.procs(),
        dv.gather_blocking()?
    );
    assert!((lambda - 2.618033988749895).abs() < 1e-12);
    Ok(())
}
