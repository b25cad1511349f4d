//! The seed's `init` examples (Julia manual, "Shared Arrays"):
//!
//! ```julia
//! S = SharedArray{Int,2}((3,4), init = S -> S[localindices(S)] = repeat([myid()], length(localindices(S))))
//! S[3,2] = 7
//! S = SharedArray{Int,2}((3,4), init = S -> S[indexpids(S):length(procs(S)):length(S)] = repeat([myid()], …))
//! ```
//!
//! Run: `cargo run --release -p cohort-shared --example seed_init`

use cohort_shared::SharedArray;
use ndarray::Ix2;

/// `S -> S[localindices(S)] = myid()`
#[cohort::remote]
fn fill_localindices(s: SharedArray<i64, Ix2>) {
    let mine = s.localindices();
    s.view_mut().as_linear_mut()[mine].fill(cohort::myid() as i64);
}

/// `S -> S[indexpids(S):length(procs(S)):length(S)] = myid()` (striped).
#[cohort::remote]
fn fill_striped(s: SharedArray<i64, Ix2>) {
    let (first, step) = (s.indexpids() - 1, s.procs().len());
    let mut v = s.view_mut();
    let lin = v.as_linear_mut();
    for k in (first..lin.len()).step_by(step) {
        lin[k] = cohort::myid() as i64;
    }
}

fn show(title: &str, s: &SharedArray<i64, Ix2>) {
    println!("{title}");
    println!(
        "{:?}-element SharedArray{{i64,2}} over {:?}:",
        s.shape(),
        s.procs()
    );
    for row in s.view().rows() {
        let cells: Vec<String> = row.iter().map(|x| format!("{x:>2}")).collect();
        println!(" {}", cells.join(" "));
    }
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pids = cohort::blocking::addprocs(3)?;
    println!("addprocs(3) = {pids:?}");

    let s = SharedArray::<i64, Ix2>::builder((3, 4))
        .init(fill_localindices)
        .build()?;
    show(
        "julia> S = SharedArray{Int,2}((3,4), init = S -> S[localindices(S)] = myid())",
        &s,
    );
    s.set([2, 1], 7); // S[3,2] = 7 (0-based here)
    show("julia> S[3,2] = 7; S", &s);

    let t = SharedArray::<i64, Ix2>::builder((3, 4))
        .init(fill_striped)
        .build()?;
    show(
        "julia> S = SharedArray{Int,2}((3,4), init = S -> S[indexpids(S):length(procs(S)):length(S)] = myid())",
        &t,
    );
    drop((s, t));
    cohort::blocking::rmprocs(&pids, None)?;
    Ok(())
}
