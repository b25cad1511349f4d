//! The manual's `count_heads` with the reducer form of `@distributed`:
//!
//! ```julia
//! nheads = @distributed (+) for i = 1:200000000
//!     Int(rand(Bool))
//! end
//! ```
//!
//! `cargo run --release -p cohort-pool --example distributed_count_heads [workers]`

use std::time::Instant;

fn flip(_i: i64) -> u64 {
    u64::from(rand::random::<bool>())
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn main() {
    let n: i64 = 200_000_000;
    let nw: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let t = Instant::now();
    let serial: u64 = (0..n).map(flip).sum();
    let ts = t.elapsed();
    cohort::blocking::addprocs(nw).expect("addprocs");
    // Warm up the workers' code paths once.
    cohort_pool::blocking::distributed_reduce(0..1000, flip, add).unwrap();
    let t = Instant::now();
    let heads = cohort_pool::blocking::distributed_reduce(0..n, flip, add).unwrap();
    let tp = t.elapsed();
    println!("serial:      {serial} heads in {ts:?}");
    println!("distributed: {heads} heads in {tp:?} on {nw} workers");
    println!("speedup {:.2}", ts.as_secs_f64() / tp.as_secs_f64());
}
