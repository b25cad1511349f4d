//! The seed's advection kernel `q[i,j,t+1] = q[i,j,t] + u[i,j,t]` in three versions,
//! timed side by side as the Julia manual does ("Shared Arrays"):
//!
//! 1. `advection_serial` — one process;
//! 2. `advection_parallel` — for each `t`, the columns `j` split over the workers, one
//!    remote call per worker per time step. The seed uses `@sync @distributed for j`;
//!    `@distributed` (issue 4) is being built separately, so this version does the same
//!    with plain `remotecall`s over per-worker column ranges (Julia's `splitrange`);
//! 3. `advection_shared` — one call per participant, each doing its own block of
//!    columns for all `t` (`myrange`).
//!
//! Run: `cargo run --release -p cohort-shared --example advection -- [N_WORKERS] [SIZE]`
//! (defaults: as many workers as cores, 500 as in the seed: two 1 GB arrays).

use std::ops::Range;
use std::time::Instant;

use cohort::{remotecall, Pid};
use cohort_shared::SharedArray;
use ndarray::Ix3;

type Grid = SharedArray<f64, Ix3>;
/// `(irange, jrange, trange)` as the seed prints it.
type Ranges = (Range<usize>, Range<usize>, Range<usize>);

/// `advection_chunk!(q, u, irange, jrange, trange)`, on the column-major memory.
fn advection_chunk(
    q: &Grid,
    u: &Grid,
    irange: Range<usize>,
    jrange: Range<usize>,
    trange: Range<usize>,
) {
    let (nx, ny) = (q.shape()[0], q.shape()[1]);
    let mut qv = q.view_mut();
    let qs = qv.as_linear_mut();
    let uv = u.view();
    let us = uv.as_linear();
    for t in trange {
        for j in jrange.clone() {
            let src = nx * (j + ny * t);
            let dst = nx * (j + ny * (t + 1));
            let (before, after) = qs.split_at_mut(dst);
            let from = &before[src + irange.start..src + irange.end];
            let to = &mut after[irange.clone()];
            let inc = &us[src + irange.start..src + irange.end];
            for ((d, a), b) in to.iter_mut().zip(from).zip(inc) {
                *d = a + b;
            }
        }
    }
}

/// The seed's `myrange(q)`: this participant's `(irange, jrange)`, splitting the second
/// dimension at `round(Int, range(0, size(q,2), nchunks+1))` (ties to even, as Julia).
fn myrange(q: &Grid) -> (Range<usize>, Range<usize>) {
    let idx = q.indexpids();
    if idx == 0 {
        return (0..0, 0..0);
    }
    let nchunks = q.procs().len();
    let ny = q.shape()[1] as f64;
    let split = |k: usize| (k as f64 * ny / nchunks as f64).round_ties_even() as usize;
    (0..q.shape()[0], split(idx - 1)..split(idx))
}

/// `advection_shared_chunk!(q, u)`; returns the ranges it did (the seed `@show`s them).
#[cohort::remote]
fn advection_shared_chunk(q: Grid, u: Grid) -> Ranges {
    let (ir, jr) = myrange(&q);
    let tr = 0..q.shape()[2] - 1;
    advection_chunk(&q, &u, ir.clone(), jr.clone(), tr.clone());
    (ir, jr, tr)
}

/// The body of the distributed loop: columns `jrange` of time step `t`.
#[cohort::remote]
fn advection_columns(q: Grid, u: Grid, jrange: Range<usize>, t: usize) {
    let nx = q.shape()[0];
    advection_chunk(&q, &u, 0..nx, jrange, t..t + 1);
}

fn advection_serial(q: &Grid, u: &Grid) {
    let s = q.shape();
    advection_chunk(q, u, 0..s[0], 0..s[1], 0..s[2] - 1);
}

/// Julia's `splitrange`: `n` items over `np` chunks, the first `n % np` one longer.
fn splitrange(n: usize, np: usize) -> Vec<Range<usize>> {
    let (each, mut extras) = (n / np, n % np);
    let chunks = if each > 0 { np } else { extras };
    let mut lo = 0;
    (0..chunks)
        .map(|_| {
            let mut hi = lo + each;
            if extras > 0 {
                hi += 1;
                extras -= 1;
            }
            let r = lo..hi;
            lo = hi;
            r
        })
        .collect()
}

fn advection_parallel(q: &Grid, u: &Grid, workers: &[Pid]) {
    let (ny, nt) = (q.shape()[1], q.shape()[2]);
    let cols = splitrange(ny, workers.len());
    for t in 0..nt - 1 {
        let calls: Vec<_> = workers
            .iter()
            .zip(&cols)
            .map(|(&p, jr)| remotecall(advection_columns, p, (q.clone(), u.clone(), jr.clone(), t)))
            .collect();
        for c in calls {
            c.fetch_blocking().expect("advection_columns");
        }
    }
}

fn advection_shared(q: &Grid, u: &Grid) -> Vec<(Pid, Ranges)> {
    let calls: Vec<_> = q
        .procs()
        .iter()
        .map(|&p| {
            (
                p,
                remotecall(advection_shared_chunk, p, (q.clone(), u.clone())),
            )
        })
        .collect();
    calls
        .into_iter()
        .map(|(p, c)| (p, c.fetch_blocking().expect("advection_shared_chunk")))
        .collect()
}

/// Resets `q[:, :, 1..]` so each version computes everything again.
fn reset(q: &Grid) {
    let plane = q.shape()[0] * q.shape()[1];
    q.view_mut().as_linear_mut()[plane..].fill(0.0);
}

fn checksum(q: &Grid) -> f64 {
    q.view().as_linear().iter().sum()
}

/// Best of `reps` timed runs of `f`, each after an untimed `setup`.
fn time(label: &str, reps: usize, setup: impl Fn(), mut f: impl FnMut()) -> f64 {
    setup();
    f(); // warm up (first touch of the pages in each process)
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        setup();
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{label:<22} {:>9.1} ms (best of {reps})", best * 1e3);
    best
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(cores);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let reps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let workers = cohort::blocking::addprocs(n)?;
    let shape = (size, size, size);
    println!(
        "advection on {size}x{size}x{size} f64 ({} MB per array), {n} workers, {cores} cores",
        (size * size * size * 8) >> 20
    );
    let q = Grid::builder(shape).pids(&workers).build()?;
    let u = Grid::builder(shape).pids(&workers).build()?;
    {
        let mut qv = q.view_mut();
        let plane = size * size;
        for (k, x) in qv.as_linear_mut()[..plane].iter_mut().enumerate() {
            *x = (k % 7) as f64;
        }
        let mut uv = u.view_mut();
        for (k, x) in uv.as_linear_mut().iter_mut().enumerate() {
            *x = (k % 3) as f64 * 0.5;
        }
    }

    let serial = time(
        "advection_serial",
        reps,
        || reset(&q),
        || advection_serial(&q, &u),
    );
    let want = checksum(&q);
    let parallel = time(
        "advection_parallel",
        reps,
        || reset(&q),
        || advection_parallel(&q, &u, &workers),
    );
    assert_eq!(
        checksum(&q),
        want,
        "distributed loop gives the serial result"
    );
    let mut ranges = Vec::new();
    let shared = time(
        "advection_shared",
        reps,
        || reset(&q),
        || {
            ranges = advection_shared(&q, &u);
        },
    );
    assert_eq!(
        checksum(&q),
        want,
        "chunked version gives the serial result"
    );
    for (p, (i, j, t)) in &ranges {
        println!("      From worker {p}: (irange,jrange,trange) = ({i:?},{j:?},{t:?})");
    }
    println!(
        "speedup over serial: distributed loop {:.2}x, chunked shared {:.2}x (goal >= {:.1}x with {n} workers on {n} cores)",
        serial / parallel,
        serial / shared,
        0.9 * n as f64
    );
    drop((q, u));
    cohort::blocking::rmprocs(&workers, None)?;
    Ok(())
}
