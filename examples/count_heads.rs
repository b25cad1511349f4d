//! The manual's `count_heads`: two workers flip coins, the driver adds the counts.
//!
//! ```julia
//! @everywhere function count_heads(n)
//!     c::Int = 0
//!     for i = 1:n
//!         c += rand(Bool)
//!     end
//!     c
//! end
//! a = @spawnat :any count_heads(100000000)
//! b = @spawnat :any count_heads(100000000)
//! fetch(a)+fetch(b)
//! ```
//!
//! Run: `cargo run --release -p cohort-examples --example count_heads`

use cohort::prelude::*;

/// Flips `n` coins and counts the heads. `#[cohort::remote]` is the `@everywhere`:
/// every process running this executable can call it by name.
#[cohort::remote]
fn count_heads(n: u64) -> u64 {
    let mut c = 0u64;
    for _ in 0..n {
        c += rand::random::<bool>() as u64;
    }
    c
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000_000);
    let pids = blocking::addprocs(2)?;
    let start = std::time::Instant::now();
    let a = spawnat(Target::Any, cohort::closure!([n] || count_heads(*n)));
    let b = spawnat(Target::Any, cohort::closure!([n] || count_heads(*n)));
    let heads = a.fetch_blocking()? + b.fetch_blocking()?;
    println!(
        "{heads} heads in {} flips on workers {pids:?} ({:.2} s)",
        2 * n,
        start.elapsed().as_secs_f64()
    );
    let ratio = heads as f64 / (2 * n) as f64;
    assert!((ratio - 0.5).abs() < 0.01, "a fair coin: {ratio}");
    blocking::rmprocs(&pids, None)?;
    Ok(())
}
