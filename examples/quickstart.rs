//! The manual's first session, in Rust:
//!
//! ```julia
//! julia> r = remotecall(rand, 2, 2, 2)
//! julia> s = @spawnat 2 1 .+ fetch(r)
//! julia> fetch(s)
//! julia> remotecall_fetch(r -> fetch(r)[1, 1], 2, r)
//! ```
//!
//! Run: `cargo run --release -p cohort-examples --example quickstart`

use cohort::prelude::*;
use cohort::Future;

/// A `rows × cols` matrix of uniform random numbers, row-major.
#[cohort::remote]
fn rand_matrix(rows: usize, cols: usize) -> Vec<Vec<f64>> {
    (0..rows)
        .map(|_| (0..cols).map(|_| rand::random::<f64>()).collect())
        .collect()
}

fn show(m: &[Vec<f64>]) -> String {
    m.iter()
        .map(|row| {
            row.iter()
                .map(|x| format!("{x:8.5}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pids = blocking::addprocs(2)?;
    println!("workers: {pids:?}");

    // r = remotecall(rand, 2, 2, 2): returns at once with a Future.
    let r: Future<Vec<Vec<f64>>> = remotecall(rand_matrix, 2, (2, 2));
    println!("r = {r:?}");

    // s = @spawnat 2 1 .+ fetch(r): the closure carries the Future `r` to worker 2,
    // which owns its value, so the fetch there is local.
    // (`closure!` moves what it captures, so it gets its own handle to the same value.)
    let r_on_2 = r.clone();
    let s = spawnat(
        2,
        cohort::closure!(
            [r_on_2] || {
                let m = r_on_2
                    .fetch_blocking()
                    .expect("r is computed on this worker");
                m.iter()
                    .map(|row| row.iter().map(|x| 1.0 + x).collect::<Vec<f64>>())
                    .collect::<Vec<_>>()
            }
        ),
    );
    println!("s = {s:?}");
    println!("fetch(s) =\n{}", show(&s.fetch_blocking()?));

    // remotecall_fetch(r -> fetch(r)[1, 1], 2, r)
    let first = blocking::remotecall_fetch(
        |r: Future<Vec<Vec<f64>>>| r.fetch_blocking().map(|m| m[0][0]).unwrap_or(f64::NAN),
        2,
        (r.clone(),),
    )?;
    println!("r[1, 1] fetched from worker 2: {first:.5}");
    assert_eq!(first, r.fetch_blocking()?[0][0]);

    blocking::rmprocs(&pids, None)?;
    Ok(())
}
