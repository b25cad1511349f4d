//! Seed 004's game of life on a distributed board: each owner builds its next chunk
//! from its own cells and a one-cell halo fetched from its neighbours.
//!
//! ```julia
//! function life_step(d::DArray)
//!     DArray(size(d),procs(d)) do I
//!         top   = mod(first(I)-2,size(d,1))+1
//!         bot   = mod( last(I)  ,size(d,1))+1
//!         left  = mod(first(I)-2,size(d,2))+1
//!         right = mod( last(I)  ,size(d,2))+1
//!         old = Array{Bool}(undef, length(I)+2, length(I)+2)
//!         old[1      , 1      ] = d[top , left]   # left side
//!         old[2:end-1, 1      ] = d[I, left]
//!         ...
//!         life_rule(old)
//!     end
//! end
//! ```
//!
//! Here a step has two phases. First every owner builds `old` — its chunk with the
//! one-cell border — as a `DData` value of its own: the eight border regions with
//! one `fetch_each_into` (one request to each neighbour for all the rows, columns
//! and corners it holds, each decoded straight into its region; a local copy where
//! a region lies in the owner's own chunk), then the middle, the owner's own chunk,
//! a local copy. Then the next board is made, each owner applying `life_rule` to its
//! `old`. Julia's version fetches and computes in one `init`; here an owner that got
//! its halo first would start computing while its neighbours still ask for theirs,
//! and where processes outnumber cores the thread that serves them then waits for
//! the CPU (a halo took 1.5–5 ms on a 2-core machine that way, against a step of
//! 5 ms). Never element by element, and not through SPMD.
//!
//! Run: `cargo run --release -p cohort-darray --example life`

use cohort_darray::{DArray, DArrayError, Ranges};
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2, Axis, Ix2};
use serde::{Deserialize, Serialize};

/// Julia's `life_rule`: the next state of the interior of `old` (a board with a
/// one-cell border).
pub fn life_rule(old: ArrayView2<'_, bool>) -> Array2<bool> {
    let (m, n) = old.dim();
    let mut new = Array2::from_elem((m - 2, n - 2), false);
    for i in 1..m - 1 {
        let (up, mid, down) = (old.row(i - 1), old.row(i), old.row(i + 1));
        for j in 1..n - 1 {
            let nc = up[j - 1] as u8
                + up[j] as u8
                + up[j + 1] as u8
                + mid[j - 1] as u8
                + mid[j + 1] as u8
                + down[j - 1] as u8
                + down[j] as u8
                + down[j + 1] as u8;
            new[[i - 1, j - 1]] = nc == 3 || nc == 2 && mid[j];
        }
    }
    new
}

/// One step on a local board that wraps around (the serial baseline).
pub fn life_step_serial(board: &Array2<bool>) -> Array2<bool> {
    let (m, n) = board.dim();
    let mut old = Array2::from_elem((m + 2, n + 2), false);
    old.slice_mut(s![1..m + 1, 1..n + 1]).assign(board);
    // The wrapped border: last row on top, first row below, and so on.
    old.slice_mut(s![0, 1..n + 1]).assign(&board.row(m - 1));
    old.slice_mut(s![m + 1, 1..n + 1]).assign(&board.row(0));
    old.slice_mut(s![1..m + 1, 0]).assign(&board.column(n - 1));
    old.slice_mut(s![1..m + 1, n + 1]).assign(&board.column(0));
    old[[0, 0]] = board[[m - 1, n - 1]];
    old[[0, n + 1]] = board[[m - 1, 0]];
    old[[m + 1, 0]] = board[[0, n - 1]];
    old[[m + 1, n + 1]] = board[[0, 0]];
    life_rule(old.view())
}

/// A band of rows cut into its first column, the next `width`, and its last.
fn thirds(band: ArrayViewMut2<'_, bool>, width: usize) -> [ArrayViewMut2<'_, bool>; 3] {
    let (l, rest) = band.split_at(Axis(1), 1);
    let (c, r) = rest.split_at(Axis(1), width);
    [l, c, r]
}

/// An owner's chunk of the board with its one-cell border (the halo), kept on the
/// owner between the two phases of a step; or why it could not be made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bordered {
    old: Array2<bool>,
    error: Option<String>,
}

impl cohort_darray::Element for Bordered {}

/// On an owner: its chunk of `d` with the border around it, from its neighbours.
fn bordered(d: &DArray<bool, Ix2>) -> Bordered {
    match fetch_bordered(d) {
        Ok(old) => Bordered { old, error: None },
        Err(e) => Bordered {
            old: Array2::default((0, 0)),
            error: Some(e.to_string()),
        },
    }
}

fn fetch_bordered(d: &DArray<bool, Ix2>) -> Result<Array2<bool>, DArrayError> {
    let idx = d.localindices();
    let (m, n) = (d.shape()[0], d.shape()[1]);
    let (rows, cols) = (idx[0].clone(), idx[1].clone());
    let top = (rows.start + m - 1) % m;
    let bot = rows.end % m;
    let left = (cols.start + n - 1) % n;
    let right = cols.end % n;
    let mut old = Array2::from_elem((rows.len() + 2, cols.len() + 2), false);
    {
        // Nine disjoint regions of `old`: three bands of rows, each cut in three.
        let (top_band, rest) = old.view_mut().split_at(Axis(0), 1);
        let (mid_band, bot_band) = rest.split_at(Axis(0), rows.len());
        let [tl, tc, tr] = thirds(top_band, cols.len());
        let [ml, mc, mr] = thirds(mid_band, cols.len());
        let [bl, bc, br] = thirds(bot_band, cols.len());
        let one = |i: usize| i..i + 1;
        // Julia's nine indexing expressions, in the same order, but the middle (this
        // owner's own chunk) is copied last: first the eight border regions, in one
        // request per neighbour, while this process and its neighbours are idle
        // enough to serve and land them at once.
        let border = [
            [one(top), one(left)],
            [rows.clone(), one(left)],
            [one(bot), one(left)],
            [one(top), cols.clone()],
            [one(bot), cols.clone()],
            [one(top), one(right)],
            [rows.clone(), one(right)],
            [one(bot), one(right)],
        ];
        let targets = [tl, ml, bl, tc, bc, tr, mr, br];
        let regions = border.iter().map(|r| &r[..]).zip(targets).collect();
        d.fetch_each_into_blocking(regions)?;
        // The middle: this owner's own chunk, a local copy.
        d.fetch_into_blocking(&[rows, cols], mc)?;
    }
    Ok(old)
}

/// Seed 004's `life_step`: the next board, laid out like `d`.
///
/// # Errors
/// As `DArrayBuilder::init` and `ddata_on` (a neighbour that cannot be reached fails
/// the step, with its error).
pub fn life_step(d: &DArray<bool, Ix2>) -> Result<DArray<bool, Ix2>, DArrayError> {
    let board = d.clone();
    // Phase 1: every owner gets its halo; nobody computes yet.
    let halos = cohort_darray::blocking::ddata_on(
        d.procs(),
        cohort::closure!([board] |_pid: cohort::Pid| bordered(board)),
    )?;
    // Phase 2: every owner computes its next chunk from what it holds.
    DArray::<bool, Ix2>::builder(d.dim()).like(d).init_blocking(
        cohort::closure!([halos] |_idx: Ranges| {
            halos
                .with_local(|b| match &b.error {
                    Some(e) => Err(e.clone()),
                    None => Ok(life_rule(b.old.view())),
                })
                .map_err(|e| e.to_string())?
        }),
    )
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    cohort::blocking::addprocs(2)?;
    let board = Array2::from_shape_fn((n, n), |_| rand::random::<f64>() < 0.3);
    let mut d = cohort_darray::blocking::distribute(&board)?;
    let mut serial = board;
    let t = std::time::Instant::now();
    for _ in 0..10 {
        d = life_step(&d)?;
    }
    let dt = t.elapsed();
    for _ in 0..10 {
        serial = life_step_serial(&serial);
    }
    assert_eq!(d.gather_blocking()?, serial);
    println!(
        "10 steps of life on a {n}x{n} board over {:?}: {dt:?}, {} cells alive; same as serial",
        d.procs(),
        serial.iter().filter(|x| **x).count()
    );
    Ok(())
}
