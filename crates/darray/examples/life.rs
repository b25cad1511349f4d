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
//! Here a step is one `init`, as in Julia, and each owner works on its own cells
//! where they are, without first copying them into a bordered array. It computes
//! the interior of its next chunk — every cell but the ring along the chunk's
//! edges, which needs only its own cells — while a task of cohort's runtime fetches
//! its one-cell halo: the rows above and below with the corners and the columns
//! left and right, one `fetch_each_into` (one request to each neighbour for all
//! the pieces it holds, read where the request arrives on the neighbour and decoded
//! straight into its place here; a local copy where a piece lies in the owner's
//! own chunk). Then it computes the ring from thin bordered strips. The halo's wait
//! is hidden behind the interior's computing, and a neighbour serves it without
//! interrupting its own. The serial step is the same computation on one owner
//! whose halo is its own board wrapped round. Never element by element, and not
//! through SPMD.
//!
//! Run: `cargo run --release -p cohort-darray --example life`

use cohort_darray::{DArray, DArrayError, Ranges};
use ndarray::{s, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Ix2};

/// Julia's `life_rule`: the next state of the interior of `old` (a board with a
/// one-cell border).
pub fn life_rule(old: ArrayView2<'_, bool>) -> Array2<bool> {
    let (m, n) = old.dim();
    let mut new = Array2::from_elem((m.saturating_sub(2), n.saturating_sub(2)), false);
    life_rule_into(old, new.view_mut());
    new
}

/// [`life_rule`] into `new`, whose shape is that of `old`'s interior.
fn life_rule_into(old: ArrayView2<'_, bool>, mut new: ArrayViewMut2<'_, bool>) {
    let (m, n) = old.dim();
    debug_assert_eq!(new.dim(), (m.saturating_sub(2), n.saturating_sub(2)));
    for i in 1..m.saturating_sub(1) {
        let (up, mid, down) = (old.row(i - 1), old.row(i), old.row(i + 1));
        let mut out = new.row_mut(i - 1);
        match (
            up.as_slice(),
            mid.as_slice(),
            down.as_slice(),
            out.as_slice_mut(),
        ) {
            (Some(u), Some(c), Some(d), Some(o)) => rule_row(u, c, d, o),
            _ => {
                let (u, c, d) = (up.to_vec(), mid.to_vec(), down.to_vec());
                let mut o = vec![false; n - 2];
                rule_row(&u, &c, &d, &mut o);
                out.assign(&ndarray::ArrayView1::from(&o));
            }
        }
    }
}

/// The next state of the cells `1..n - 1` of row `mid` between rows `up` and
/// `down` (all `n` long), into `out` (`n - 2` long).
fn rule_row(up: &[bool], mid: &[bool], down: &[bool], out: &mut [bool]) {
    let k = out.len();
    // Slices of exactly `k`: no bounds checks in the loop.
    let (ul, uc, ur) = (&up[..k], &up[1..k + 1], &up[2..k + 2]);
    let (ml, mc, mr) = (&mid[..k], &mid[1..k + 1], &mid[2..k + 2]);
    let (dl, dc, dr) = (&down[..k], &down[1..k + 1], &down[2..k + 2]);
    for j in 0..k {
        let nc = ul[j] as u8
            + uc[j] as u8
            + ur[j] as u8
            + ml[j] as u8
            + mr[j] as u8
            + dl[j] as u8
            + dc[j] as u8
            + dr[j] as u8;
        out[j] = nc == 3 || nc == 2 && mc[j];
    }
}

/// The one-cell border around an `m`×`n` chunk: the row above and the row below
/// (`n + 2` cells each, the corners included) and the columns to the left and the
/// right (`m` cells each).
struct Halo {
    top: Array2<bool>,
    bottom: Array2<bool>,
    left: Array2<bool>,
    right: Array2<bool>,
}

impl Halo {
    fn new(m: usize, n: usize) -> Halo {
        Halo {
            top: Array2::from_elem((1, n + 2), false),
            bottom: Array2::from_elem((1, n + 2), false),
            left: Array2::from_elem((m, 1), false),
            right: Array2::from_elem((m, 1), false),
        }
    }
}

/// Row `i` of `chunk` with its halo around it (`n + 2` cells), `i` from -1 to `m`,
/// into `out`.
fn bordered_row(
    chunk: ArrayView2<'_, bool>,
    halo: &Halo,
    i: isize,
    mut out: ArrayViewMut1<'_, bool>,
) {
    let m = chunk.nrows() as isize;
    if i < 0 {
        out.assign(&halo.top.row(0));
    } else if i == m {
        out.assign(&halo.bottom.row(0));
    } else {
        let i = i as usize;
        let n = chunk.ncols();
        out[0] = halo.left[[i, 0]];
        out.slice_mut(s![1..n + 1]).assign(&chunk.row(i));
        out[n + 1] = halo.right[[i, 0]];
    }
}

/// Column `j` of `chunk` (`m` cells), `j` from -1 (the halo's left column) to `n`
/// (its right one), into `out`.
fn bordered_column(
    chunk: ArrayView2<'_, bool>,
    halo: &Halo,
    j: isize,
    mut out: ArrayViewMut1<'_, bool>,
) {
    let n = chunk.ncols() as isize;
    if j < 0 {
        out.assign(&halo.left.column(0));
    } else if j == n {
        out.assign(&halo.right.column(0));
    } else {
        out.assign(&chunk.column(j as usize));
    }
}

/// The next state of the cells of `chunk` that need none of its halo: all but its
/// first and last rows and columns.
fn next_interior(chunk: ArrayView2<'_, bool>, next: &mut Array2<bool>) {
    let (m, n) = chunk.dim();
    if m > 2 && n > 2 {
        life_rule_into(chunk, next.slice_mut(s![1..m - 1, 1..n - 1]));
    }
}

/// The next state of the ring of cells along `chunk`'s edges, each from a strip of
/// three rows or columns of the bordered chunk.
fn next_edges(chunk: ArrayView2<'_, bool>, halo: &Halo, next: &mut Array2<bool>) {
    let (m, n) = chunk.dim();
    let (mi, ni) = (m as isize, n as isize);
    // Bordered rows `first..first + 3`, whole: the next state of row `first + 1`.
    let across = |first: isize| {
        let mut strip = Array2::from_elem((3, n + 2), false);
        for (k, row) in strip.rows_mut().into_iter().enumerate() {
            bordered_row(chunk, halo, first + k as isize, row);
        }
        life_rule(strip.view())
    };
    // Bordered columns `first..first + 3` over the chunk's rows: the next state of
    // column `first + 1` but for its first and last cells. Laid out as rows (the
    // rule does not care which way round the board is) so the rule runs along them.
    let down = |first: isize| {
        let mut strip = Array2::from_elem((3, m), false);
        for (k, row) in strip.rows_mut().into_iter().enumerate() {
            bordered_column(chunk, halo, first + k as isize, row);
        }
        life_rule(strip.view()).reversed_axes()
    };
    next.row_mut(0).assign(&across(-1).row(0));
    if m > 1 {
        next.row_mut(m - 1).assign(&across(mi - 2).row(0));
    }
    if m > 2 {
        next.slice_mut(s![1..m - 1, 0..1]).assign(&down(-1));
        if n > 1 {
            next.slice_mut(s![1..m - 1, n - 1..n]).assign(&down(ni - 2));
        }
    }
}

/// The next state of an `m`×`n` chunk with its halo.
fn next_chunk(chunk: ArrayView2<'_, bool>, halo: &Halo) -> Array2<bool> {
    let mut next = Array2::from_elem(chunk.dim(), false);
    next_interior(chunk, &mut next);
    next_edges(chunk, halo, &mut next);
    next
}

/// One step on a local board that wraps around (the serial baseline): the same
/// computation as an owner's, its halo the board's opposite edges.
pub fn life_step_serial(board: &Array2<bool>) -> Array2<bool> {
    let (m, n) = board.dim();
    let mut halo = Halo::new(m, n);
    // The wrapped border: last row on top, first row below, and so on.
    for (row, from) in [(&mut halo.top, m - 1), (&mut halo.bottom, 0)] {
        row[[0, 0]] = board[[from, n - 1]];
        row.slice_mut(s![0, 1..n + 1]).assign(&board.row(from));
        row[[0, n + 1]] = board[[from, 0]];
    }
    halo.left.column_mut(0).assign(&board.column(n - 1));
    halo.right.column_mut(0).assign(&board.column(0));
    next_chunk(board.view(), &halo)
}

/// A `1`×`width + 2` row cut into its first cell, the next `width`, and its last.
fn thirds(row: ArrayViewMut2<'_, bool>, width: usize) -> [ArrayViewMut2<'_, bool>; 3] {
    let (l, rest) = row.split_at(Axis(1), 1);
    let (c, r) = rest.split_at(Axis(1), width);
    [l, c, r]
}

/// This owner's chunk's halo, from its neighbours (and from itself where the board
/// wraps onto its own chunk).
async fn fetch_halo(d: DArray<bool, Ix2>, idx: Ranges) -> Result<Halo, DArrayError> {
    let (m, n) = (d.shape()[0], d.shape()[1]);
    let (rows, cols) = (idx[0].clone(), idx[1].clone());
    let top = (rows.start + m - 1) % m;
    let bot = rows.end % m;
    let left = (cols.start + n - 1) % n;
    let right = cols.end % n;
    let mut halo = Halo::new(rows.len(), cols.len());
    let one = |i: usize| i..i + 1;
    // Julia's eight border expressions, in one request per neighbour.
    let border = [
        [one(top), one(left)],
        [one(top), cols.clone()],
        [one(top), one(right)],
        [one(bot), one(left)],
        [one(bot), cols.clone()],
        [one(bot), one(right)],
        [rows.clone(), one(left)],
        [rows.clone(), one(right)],
    ];
    {
        let [tl, tc, tr] = thirds(halo.top.view_mut(), cols.len());
        let [bl, bc, br] = thirds(halo.bottom.view_mut(), cols.len());
        let targets = [
            tl,
            tc,
            tr,
            bl,
            bc,
            br,
            halo.left.view_mut(),
            halo.right.view_mut(),
        ];
        let regions = border.iter().map(|r| &r[..]).zip(targets).collect();
        d.fetch_each_into(regions).await?;
    }
    Ok(halo)
}

/// On an owner: its chunk of the board after this step.
fn next_local_chunk(d: &DArray<bool, Ix2>) -> Result<Array2<bool>, DArrayError> {
    // The halo is fetched by a task of the runtime while this thread computes the
    // interior, from this owner's cells alone.
    let halo = cohort::runtime::handle().spawn(fetch_halo(d.clone(), d.localindices()));
    let mut next = {
        let part = d.localpart()?;
        let mut next = Array2::from_elem(part.dim(), false);
        next_interior(part.view(), &mut next);
        next
    };
    let halo =
        cohort::runtime::block_here("life: the halo", halo).expect("the halo's task panicked")?;
    next_edges(d.localpart()?.view(), &halo, &mut next);
    Ok(next)
}

/// Seed 004's `life_step`: the next board, laid out like `d`.
///
/// # Errors
/// As `DArrayBuilder::init` (a neighbour that cannot be reached fails the step,
/// with its error).
pub fn life_step(d: &DArray<bool, Ix2>) -> Result<DArray<bool, Ix2>, DArrayError> {
    let board = d.clone();
    DArray::<bool, Ix2>::builder(d.dim()).like(d).init_blocking(
        cohort::closure!([board] |_idx: Ranges| {
            next_local_chunk(board).map_err(|e| e.to_string())
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
