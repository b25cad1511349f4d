//! DArray and ddata across real worker processes (this test binary is its own worker).
//!
//! The tests take one lock so that the chunk counts of every process are exact.

// One range per dimension: a 1-D array's ranges are a one-element slice.
#![allow(clippy::single_range_in_vec_init)]

use std::ops::Range;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cohort::prelude::*;
use cohort_darray::blocking::{ddata, ddata_on, dfill, distribute, distribute_like, dones, dzeros};
use cohort_darray::{chunks_of, d_closeall, ChunkFailure, DArray, DArrayError, DData, Ranges};
use ndarray::{array, s, Array, Array1, Array2, Ix1, Ix2, Ix3};

fn serial() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// Three workers shared by the tests.
fn workers3() -> Vec<Pid> {
    static W: OnceLock<Vec<Pid>> = OnceLock::new();
    W.get_or_init(|| blocking::addprocs(3).expect("addprocs"))
        .clone()
}

fn chunks_everywhere() -> Vec<usize> {
    cohort::procs()
        .into_iter()
        .map(|p| cohort_darray::blocking::chunks_of(p).unwrap().chunks)
        .collect()
}

/// Waits until every process holds `expected` chunks (releases are messages: they
/// arrive, and run, a moment after the drop that sent them).
fn wait_chunks(expected: Vec<usize>) {
    let t = Instant::now();
    loop {
        let now = chunks_everywhere();
        if now == expected {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "chunks {now:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < Duration::from_secs(30), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fill_myid(idx: Ranges) -> Array2<u32> {
    Array2::from_elem((idx[0].len(), idx[1].len()), cohort::myid())
}

#[test]
fn uneven_sizes_put_remainders_first_in_julia_chunk_order() {
    let _g = serial();
    let w = workers3();
    // 10 elements on 3 processes: 4, 3, 3 (Julia's defaultdist).
    let d = dzeros::<f64, _>(10).unwrap();
    assert_eq!(d.procs(), w.as_slice());
    assert_eq!(d.cuts(), &[vec![0, 4, 7, 10]]);
    assert_eq!(d.indices(), vec![vec![0..4], vec![4..7], vec![7..10]]);
    // Each owner sees its own localindices.
    for (k, &p) in w.iter().enumerate() {
        let li =
            blocking::remotecall_fetch(|d: DArray<f64, Ix1>| d.localindices(), p, (d.clone(),))
                .unwrap();
        assert_eq!(li, d.indices()[k]);
    }
    // The driver holds nothing.
    assert_eq!(d.localindices(), vec![0..0]);
    assert!(matches!(
        d.localpart(),
        Err(DArrayError::NotAnOwner { pid: 1, .. })
    ));

    // 2-D (7, 5) on 3: the longest dimension is cut: dist [3, 1].
    let d = DArray::<u32, Ix2>::builder((7, 5))
        .init_blocking(fill_myid)
        .unwrap();
    assert_eq!(d.dist(), &[3, 1]);
    assert_eq!(d.cuts()[0], vec![0, 3, 5, 7]);
    let a = d.gather_blocking().unwrap();
    for (k, r) in d.indices().iter().enumerate() {
        assert!(a
            .slice(s![r[0].clone(), r[1].clone()])
            .iter()
            .all(|x| *x == d.procs()[k]));
    }
    // Explicit dist [1, 3]: columns 2, 2, 1.
    let d = DArray::<u32, Ix2>::builder((7, 5))
        .procs(&w)
        .dist(&[1, 3])
        .init_blocking(fill_myid)
        .unwrap();
    assert_eq!(d.cuts()[1], vec![0, 2, 4, 5]);
    assert_eq!(
        d.gather_blocking().unwrap().row(0).to_vec(),
        vec![w[0], w[0], w[1], w[1], w[2]]
    );
    // 3-D, and a 2×... grid on fewer processes: (4, 6, 2) with dist [1, 3, 1].
    let d = DArray::<f32, Ix3>::builder((4, 6, 2))
        .procs(&w)
        .dist(&[1, 3, 1])
        .ones_blocking()
        .unwrap();
    assert_eq!(d.sum_blocking().unwrap(), 48.0);
    assert_eq!(d.indices()[2], vec![0..4, 4..6, 0..2]);
}

#[test]
fn every_constructor_with_uneven_sizes() {
    let _g = serial();
    let w = workers3();
    let z = dzeros::<i64, _>((5, 4)).unwrap();
    assert_eq!(z.gather_blocking().unwrap(), Array2::<i64>::zeros((5, 4)));
    let o = dones::<i64, _>((5, 4)).unwrap();
    assert_eq!(o.sum_blocking().unwrap(), 20);
    let f = dfill(2.5f64, 11).unwrap();
    assert_eq!(f.gather_blocking().unwrap(), Array1::from_elem(11, 2.5));
    let r = cohort_darray::blocking::drand::<f64, _>((5, 7)).unwrap();
    let ra = r.gather_blocking().unwrap();
    assert!(ra.iter().all(|x| (0.0..1.0).contains(x)));
    // Random numbers are drawn on the owners: different chunks differ.
    assert_ne!(ra.row(0), ra.row(4));
    let n = cohort_darray::blocking::drandn(1000).unwrap();
    let mean = n.sum_blocking().unwrap() / 1000.0;
    assert!(mean.abs() < 0.2, "mean of 1000 normals: {mean}");
    // distribute: uneven, 2-D, and like another array.
    let a = Array::from_iter(0..35i32)
        .into_shape_with_order((7, 5))
        .unwrap();
    let d = distribute(&a).unwrap();
    assert_eq!(d.gather_blocking().unwrap(), a);
    let cols = DArray::<i32, Ix2>::builder((7, 5))
        .procs(&w)
        .dist(&[1, 3])
        .zeros_blocking()
        .unwrap();
    let d2 = distribute_like(&a, &cols).unwrap();
    assert!(d2.same_layout(&cols));
    assert_eq!(d2.gather_blocking().unwrap(), a);
    // A transposed (column-major) source works too.
    let t = a.t();
    let dt = distribute(&t).unwrap();
    assert_eq!(dt.gather_blocking().unwrap(), t);
    // The comprehension: Julia's @DArray [i+j for i = 1:5, j = 1:5].
    let c =
        DArray::<usize, Ix2>::from_fn_blocking((5, 5), |(i, j): (usize, usize)| i + j + 2).unwrap();
    assert_eq!(
        c.gather_blocking().unwrap(),
        Array2::from_shape_fn((5, 5), |(i, j)| i + j + 2)
    );
    // init with the default layout, `closure!` captures.
    let base = 100u64;
    let k = DArray::<u64, Ix1>::builder(7)
        .init_blocking(cohort::closure!([base] |r: Ranges| {
            Array1::from_iter(r[0].clone().map(|i| base + i as u64))
        }))
        .unwrap();
    assert_eq!(
        k.gather_blocking().unwrap().to_vec(),
        (100..107).collect::<Vec<u64>>()
    );
}

#[test]
fn an_array_from_futures_made_on_separate_processes() {
    let _g = serial();
    let w = workers3();
    // One grid row of three chunks of widths 2, 3 and 1 (heights agree).
    let widths = [2usize, 3, 1];
    let futs: Vec<cohort::Future<Array2<f64>>> = w
        .iter()
        .zip(widths)
        .map(|(&p, n)| {
            cohort::remotecall(
                |n: usize| Array2::from_elem((4, n), cohort::myid() as f64),
                p,
                (n,),
            )
        })
        .collect();
    let grid = Array2::from_shape_vec((1, 3), futs).unwrap();
    let d = DArray::from_futures_blocking(grid).unwrap();
    assert_eq!(d.shape(), &[4, 6]);
    assert_eq!(d.procs(), w.as_slice());
    assert_eq!(d.cuts()[1], vec![0, 2, 5, 6]);
    let a = d.gather_blocking().unwrap();
    let expected: Vec<f64> = [w[0], w[0], w[1], w[1], w[1], w[2]]
        .iter()
        .map(|p| *p as f64)
        .collect();
    assert_eq!(a.row(3).to_vec(), expected);
    // The distribution is visible from each owner (Julia's @fetchfrom p localindices(D)).
    let li: Vec<Vec<Range<usize>>> = w
        .iter()
        .map(|&p| {
            blocking::remotecall_fetch(|d: DArray<f64, Ix2>| d.localindices(), p, (d.clone(),))
                .unwrap()
        })
        .collect();
    assert_eq!(li, d.indices());
    // Chunks that do not fit together are refused.
    let bad: Vec<cohort::Future<Array2<f64>>> = w[..2]
        .iter()
        .zip([3usize, 4])
        .map(|(&p, h)| cohort::remotecall(|h: usize| Array2::<f64>::zeros((h, 2)), p, (h,)))
        .collect();
    let grid = Array2::from_shape_vec((1, 2), bad).unwrap();
    assert!(matches!(
        DArray::from_futures_blocking(grid),
        Err(DArrayError::BadGrid { .. })
    ));
    drop(d);
    wait_chunks(vec![0; 4]);
}

#[test]
fn dist_that_does_not_match_the_processes_is_an_error() {
    let _g = serial();
    let w = workers3();
    let e = DArray::<f64, Ix2>::builder((10, 10))
        .procs(&w)
        .dist(&[2, 2])
        .zeros_blocking()
        .unwrap_err();
    assert!(
        matches!(&e, DArrayError::DistMismatch { nprocs: 3, dist } if dist == &[2, 2]),
        "{e}"
    );
    assert!(e.to_string().contains("4 chunks"));
    let e = DArray::<f64, Ix2>::builder((10, 10))
        .procs(&w)
        .dist(&[3])
        .zeros_blocking()
        .unwrap_err();
    assert!(matches!(e, DArrayError::DistRank { ndims: 2, .. }));
    let e = DArray::<f64, Ix1>::builder(3)
        .procs(&[])
        .zeros_blocking()
        .unwrap_err();
    assert!(matches!(e, DArrayError::NoProcs));
    let e = DArray::<f64, Ix1>::builder(3)
        .procs(&[w[0], w[0]])
        .zeros_blocking()
        .unwrap_err();
    assert!(matches!(e, DArrayError::DuplicateProc { .. }));
    // An init returning the wrong shape fails clearly and leaves nothing behind.
    let e = DArray::<u8, Ix1>::builder(9)
        .init_blocking(|_r: Ranges| Array1::<u8>::zeros(1))
        .unwrap_err();
    assert!(
        matches!(
            &e,
            DArrayError::Chunk {
                failure: ChunkFailure::InitShape { .. },
                ..
            }
        ),
        "{e}"
    );
    wait_chunks(vec![0; 4]);
}

/// A 9×8 array (element `100 i + j`) and its DArray cut by rows over `w`: rows 0..3
/// on `w[0]`, 3..6 on `w[1]`, 6..9 on `w[2]`.
fn nine_by_eight_by_rows(w: &[Pid]) -> (Array2<f64>, DArray<f64, Ix2>) {
    let a = Array::from_shape_fn((9, 8), |(i, j)| (i * 100 + j) as f64);
    let d = DArray::<f64, Ix2>::builder((9, 8))
        .procs(w)
        .dist(&[3, 1])
        .distribute_blocking(&a)
        .unwrap();
    (a, d)
}

#[test]
fn indexing_across_chunk_boundaries() {
    let _g = serial();
    let w = workers3();
    let (a, d) = nine_by_eight_by_rows(&w);
    // A range over all three chunks (rows 2..8 cross 3 and 6).
    assert_eq!(
        d.fetch_blocking(&[2..8, 1..7]).unwrap(),
        a.slice(s![2..8, 1..7])
    );
    // Single elements on both sides of a boundary.
    assert_eq!(d.get_blocking([2, 7]).unwrap(), 207.0);
    assert_eq!(d.get_blocking([3, 0]).unwrap(), 300.0);
    // Into a caller's buffer: a strided window of a larger array.
    let mut buf = Array2::<f64>::from_elem((12, 12), -1.0);
    d.fetch_into_blocking(&[1..9, 0..8], buf.slice_mut(s![2..10;1, 3..11]))
        .unwrap();
    assert_eq!(buf.slice(s![2..10, 3..11]), a.slice(s![1..9, ..]));
    assert_eq!(buf[[0, 0]], -1.0);
    assert_eq!(buf[[10, 3]], -1.0);
    // A column into a 1-D buffer, and into a column of a matrix (strided).
    let mut col = Array1::<f64>::zeros(9);
    d.fetch_into_blocking(&[0..9, 5..6], col.view_mut())
        .unwrap();
    assert_eq!(col, a.column(5));
    let mut m = Array2::<f64>::zeros((9, 3));
    d.fetch_into_blocking(&[0..9, 4..5], m.column_mut(1))
        .unwrap();
    assert_eq!(m.column(1), a.column(4));
    // A 2-D grid of chunks: (9, 8) over a [3, 1]... and [1, 3] grid, blocks across both.
    let d2 = DArray::<f64, Ix2>::builder((9, 8))
        .procs(&w)
        .dist(&[1, 3])
        .distribute_blocking(&a)
        .unwrap();
    assert_eq!(
        d2.fetch_blocking(&[4..9, 2..7]).unwrap(),
        a.slice(s![4..9, 2..7])
    );
    // From a worker: a view fetches from the other owners directly.
    let part = blocking::remotecall_fetch(
        |d: DArray<f64, Ix2>| d.fetch_blocking(&[0..9, 0..8]).map_err(|e| e.to_string()),
        w[1],
        (d2.clone(),),
    )
    .unwrap()
    .unwrap();
    assert_eq!(part, a);
    // Errors: out of bounds, wrong rank, wrong buffer shape.
    assert!(matches!(
        d.get_blocking([9, 0]),
        Err(DArrayError::OutOfBounds { .. })
    ));
    assert!(matches!(
        d.fetch_blocking(&[0..10, 0..1]),
        Err(DArrayError::RangeOutOfBounds { .. })
    ));
    assert!(matches!(
        d.fetch_blocking(&[0..1]),
        Err(DArrayError::RangeOutOfBounds { .. })
    ));
    let mut small = Array2::<f64>::zeros((2, 2));
    assert!(matches!(
        d.fetch_into_blocking(&[0..3, 0..3], small.view_mut()),
        Err(DArrayError::ShapeMismatch { .. })
    ));
    // Non-numeric elements go through serde, also into a buffer.
    let names = Array1::from_iter((0..7).map(|i| format!("n{i}")));
    let ds = distribute(&names).unwrap();
    let mut out = vec![String::new(); 4];
    ds.fetch_into_blocking(&[2..6], ndarray::ArrayViewMut1::from(&mut out[..]))
        .unwrap();
    assert_eq!(out, vec!["n2", "n3", "n4", "n5"]);
    let flags = distribute(&array![true, false, true, true, false]).unwrap();
    assert_eq!(
        flags.fetch_blocking(&[1..4]).unwrap(),
        array![false, true, true]
    );
}

/// Calls `pid` has finished so far (the report's own call is not counted).
fn calls_done(pid: Pid) -> u64 {
    let c = cohort_cluster::Cluster::current();
    cohort_cluster::runtime::block_on(async move {
        cohort_cluster::observe::report_of(&c, pid, Default::default()).await
    })
    .unwrap()
    .calls_done
}

#[cohort::remote]
fn fetch_two_here(d: DArray<f64, Ix2>) -> Result<(Vec<f64>, Vec<f64>), String> {
    // On the owner of rows 3..6: one region in its own chunk, one on another owner.
    let (mut mine, mut theirs) = (vec![0.0; 3], vec![0.0; 2]);
    d.fetch_each_into_blocking(vec![
        (
            &[3..6, 2..3][..],
            ndarray::ArrayViewMut1::from(&mut mine[..]),
        ),
        (
            &[8..9, 0..2][..],
            ndarray::ArrayViewMut1::from(&mut theirs[..]),
        ),
    ])
    .map_err(|e| e.to_string())?;
    Ok((mine, theirs))
}

#[test]
fn several_ranges_at_once_in_one_request_per_owner() {
    let _g = serial();
    let w = workers3();
    let (a, d) = nine_by_eight_by_rows(&w);
    let mut col = Array2::<f64>::zeros((9, 2));
    let mut band = Array2::<f64>::zeros((2, 8));
    let mut corner = [0.0; 2];
    d.fetch_each_into_blocking(vec![
        // A column across all three chunks, into a strided column of a matrix.
        (&[0..9, 5..6][..], col.column_mut(1).into_dyn()),
        // Two rows across the boundary of the first two chunks.
        (&[2..4, 0..8][..], band.view_mut().into_dyn()),
        // Two elements of the last chunk, into a plain slice.
        (
            &[7..8, 1..3][..],
            ndarray::ArrayViewMut1::from(&mut corner[..]).into_dyn(),
        ),
    ])
    .unwrap();
    assert_eq!(col.column(1), a.column(5));
    assert_eq!(col.column(0).sum(), 0.0);
    assert_eq!(band, a.slice(s![2..4, ..]));
    assert_eq!(corner, [701.0, 702.0]);

    // From an owner: its own piece is copied, the other fetched.
    let (mine, theirs) = blocking::remotecall_fetch(fetch_two_here, w[1], (d.clone(),))
        .unwrap()
        .unwrap();
    assert_eq!(mine, vec![302.0, 402.0, 502.0]);
    assert_eq!(theirs, vec![800.0, 801.0]);

    // Three ranges on the first owner cost it what one range does: one request.
    let before = calls_done(w[0]);
    let mut one = [0.0; 1];
    d.fetch_into_blocking(&[0..1, 0..1], ndarray::ArrayViewMut1::from(&mut one[..]))
        .unwrap();
    let single = calls_done(w[0]) - before;
    assert_eq!(single, 1, "one request for one range");
    let (mut x, mut y, mut z) = ([0.0; 1], [0.0; 2], [0.0; 3]);
    let before = calls_done(w[0]);
    d.fetch_each_into_blocking(vec![
        (&[0..1, 7..8][..], ndarray::ArrayViewMut1::from(&mut x[..])),
        (&[1..2, 0..2][..], ndarray::ArrayViewMut1::from(&mut y[..])),
        (&[0..3, 4..5][..], ndarray::ArrayViewMut1::from(&mut z[..])),
    ])
    .unwrap();
    assert_eq!(calls_done(w[0]) - before, single);
    assert_eq!((x, y, z), ([7.0], [100.0, 101.0], [4.0, 104.0, 204.0]));

    // A bad range fails the whole fetch before anything is sent or written.
    let mut good = [-1.0; 2];
    let mut bad = [-1.0; 2];
    let err = d
        .fetch_each_into_blocking(vec![
            (
                &[0..1, 0..2][..],
                ndarray::ArrayViewMut1::from(&mut good[..]),
            ),
            (
                &[8..10, 0..1][..],
                ndarray::ArrayViewMut1::from(&mut bad[..]),
            ),
        ])
        .unwrap_err();
    assert!(matches!(err, DArrayError::RangeOutOfBounds { .. }), "{err}");
    assert_eq!(good, [-1.0, -1.0]);
    let mut small = [0.0; 1];
    assert!(matches!(
        d.fetch_each_into_blocking(vec![(
            &[0..2, 0..1][..],
            ndarray::ArrayViewMut1::from(&mut small[..])
        )]),
        Err(DArrayError::ShapeMismatch { .. })
    ));
    // No ranges: nothing to do.
    d.fetch_each_into_blocking(Vec::<(&[Range<usize>], ndarray::ArrayViewMut1<'_, f64>)>::new())
        .unwrap();
}

#[cohort::remote]
fn bump_localpart(d: DArray<i64, Ix1>) -> Result<Vec<usize>, String> {
    let li = d.localindices();
    {
        let mut lp = d.localpart_mut().map_err(|e| e.to_string())?;
        let mut v = lp.view_mut();
        for (x, i) in v.iter_mut().zip(li[0].clone()) {
            *x = i as i64 * 10;
        }
    }
    Ok(vec![li[0].start, li[0].end])
}

/// On an owner: holds its local part for writing until `go` has a value, and
/// meanwhile waits for it over this process's connection to `go`'s owner (the
/// driver) — the connection a reader's request comes in on. Then writes 7s.
#[cohort::remote]
fn hold_localpart_until(
    d: DArray<i64, Ix1>,
    held: RemoteChannel<()>,
    go: RemoteChannel<()>,
) -> Result<(), String> {
    let mut lp = d.localpart_mut().map_err(|e| e.to_string())?;
    held.put_blocking(()).map_err(|e| e.to_string())?;
    go.take_blocking().map_err(|e| e.to_string())?;
    lp.view_mut().fill(7);
    Ok(())
}

#[test]
fn a_small_read_of_a_chunk_locked_for_writing_waits_on_a_runner_not_on_the_connection() {
    let _g = serial();
    let w = workers3();
    let owner = w[0];
    let d = DArray::<i64, Ix1>::builder(4)
        .procs(&[owner])
        .init_blocking(|idx: Ranges| Array1::<i64>::zeros(idx[0].len()))
        .unwrap();
    let me = cohort::myid();
    let held = RemoteChannel::<()>::with_capacity_blocking(me, 1).unwrap();
    let go = RemoteChannel::<()>::with_capacity_blocking(me, 1).unwrap();
    let holder = {
        let (d, held, go) = (d.clone(), held.clone(), go.clone());
        std::thread::spawn(move || {
            blocking::remotecall_fetch(hold_localpart_until, owner, (d, held, go)).unwrap()
        })
    };
    held.take_blocking().unwrap();
    let before = cohort_darray::blocking::chunks_of(owner)
        .unwrap()
        .deferred_reads;
    // A read of one element: sent to run where it arrives, it finds the lock taken
    // and goes to a runner, to wait for the lock there — the owner's connection
    // stays free for the `go` the holder waits for.
    let reader = {
        let d = d.clone();
        std::thread::spawn(move || d.get_blocking([1]).unwrap())
    };
    wait_until("the read to be deferred to a runner", || {
        cohort_darray::blocking::chunks_of(owner)
            .unwrap()
            .deferred_reads
            > before
    });
    go.put_blocking(()).unwrap();
    assert_eq!(holder.join().unwrap(), Ok(()));
    assert_eq!(reader.join().unwrap(), 7, "read after the write");
    // Unlocked: read where it arrives, nothing deferred.
    let after = cohort_darray::blocking::chunks_of(owner)
        .unwrap()
        .deferred_reads;
    assert_eq!(d.gather_blocking().unwrap().to_vec(), vec![7; 4]);
    assert_eq!(
        cohort_darray::blocking::chunks_of(owner)
            .unwrap()
            .deferred_reads,
        after
    );
}

#[test]
fn localpart_is_a_mutable_view_on_the_owner() {
    let _g = serial();
    let w = workers3();
    let d = dzeros::<i64, _>(8).unwrap();
    for &p in &w {
        blocking::remotecall_fetch(bump_localpart, p, (d.clone(),))
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        d.gather_blocking().unwrap().to_vec(),
        (0..8).map(|i| i * 10).collect::<Vec<i64>>()
    );
    // d[:L] = v on an owner, with a shape check.
    let set = blocking::remotecall_fetch(
        |d: DArray<i64, Ix1>| {
            let n = d.localindices()[0].len();
            let bad = d.set_localpart(Array1::zeros(n + 1)).is_err();
            d.set_localpart(Array1::from_elem(n, -1)).unwrap();
            bad
        },
        w[2],
        (d.clone(),),
    )
    .unwrap();
    assert!(set);
    let a = d.gather_blocking().unwrap();
    assert_eq!(
        a.slice(s![d.indices()[2][0].clone()]).to_vec(),
        vec![-1, -1]
    );
}

#[test]
fn operations_run_on_the_owners() {
    let _g = serial();
    let w = workers3();
    let a = Array::from_shape_fn((7, 5), |(i, j)| (i as f64) - 2.0 * (j as f64) + 0.5);
    let d = distribute(&a).unwrap();
    // map: same layout, new array.
    let sq = d.map_blocking(|x: f64| x * x).unwrap();
    assert!(sq.same_layout(&d));
    assert_eq!(sq.gather_blocking().unwrap(), a.mapv(|x| x * x));
    // reductions
    assert!((d.sum_blocking().unwrap() - a.sum()).abs() < 1e-9);
    assert_eq!(
        d.min_blocking().unwrap(),
        a.iter().cloned().reduce(f64::min)
    );
    assert_eq!(
        d.max_blocking().unwrap(),
        a.iter().cloned().reduce(f64::max)
    );
    let n2 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((d.norm_blocking().unwrap() - n2).abs() < 1e-9);
    assert!((d.dot_blocking(&d).unwrap() - n2 * n2).abs() < 1e-9);
    let count_neg = d
        .mapreduce_blocking(|x: f64| u64::from(x < 0.0), |p: u64, q: u64| p + q)
        .unwrap();
    assert_eq!(
        count_neg,
        Some(a.iter().filter(|x| **x < 0.0).count() as u64)
    );
    assert_eq!(
        d.reduce_blocking(|p: f64, q: f64| p.max(q)).unwrap(),
        d.max_blocking().unwrap()
    );
    // Element-wise expressions, fused, one call per owner.
    let e = (2.0 * &d - &sq / 4.0 + 1.0).eval_blocking().unwrap();
    assert_eq!(
        e.gather_blocking().unwrap(),
        a.mapv(|x| 2.0 * x - x * x / 4.0 + 1.0)
    );
    let neg = (-&d).eval_blocking().unwrap();
    assert_eq!(neg.gather_blocking().unwrap(), -&a);
    assert!(d
        .approx_eq_blocking(&(&d * 1.0).eval_blocking().unwrap())
        .unwrap());
    assert!(!d.approx_eq_blocking(&e).unwrap());
    // Different layouts: a clear error; redistributing first makes it work.
    let other = DArray::<f64, Ix2>::builder((7, 5))
        .procs(&w)
        .dist(&[1, 3])
        .ones_blocking()
        .unwrap();
    assert!(matches!(
        (&d + &other).eval_blocking(),
        Err(DArrayError::LayoutMismatch { .. })
    ));
    assert!(matches!(
        d.dot_blocking(&other),
        Err(DArrayError::LayoutMismatch { .. })
    ));
    let moved = other.redistribute_like_blocking(&d).unwrap();
    assert!(moved.same_layout(&d));
    let sum = (&d + &moved).eval_blocking().unwrap();
    assert_eq!(sum.gather_blocking().unwrap(), &a + 1.0);
    // Integer arithmetic.
    let i = dfill(7i32, 10).unwrap();
    let j = (&i * 3 - 1).eval_blocking().unwrap();
    assert_eq!(j.sum_blocking().unwrap(), 200);
    drop((d, sq, e, neg, other, moved, sum, i, j));
    wait_chunks(vec![0; 4]);
}

#[test]
fn seed_two_dot_da_over_db_is_all_four_pi() {
    let _g = serial();
    workers3();
    let b = Array1::<f64>::ones(10_000) / 2.0;
    let a = Array1::<f64>::ones(10_000) * std::f64::consts::PI;
    let c = 2.0 * &a / &b;
    assert!(c
        .iter()
        .all(|x| (x - 4.0 * std::f64::consts::PI).abs() < 1e-12));
    let db = distribute(&b).unwrap();
    let da = distribute(&a).unwrap();
    let dc = (2.0 * &da / &db).eval_blocking().unwrap();
    assert!(dc.all_approx_blocking(4.0 * std::f64::consts::PI).unwrap());
    assert!(!dc.all_approx_blocking(4.0).unwrap());
}

#[test]
fn seed_floating_point_sum_may_differ_from_serial() {
    let _g = serial();
    workers3();
    let a = Array2::from_elem((100, 100), 1.1f64);
    let serial_sum = a.sum();
    let d = distribute(&a).unwrap();
    let dsum = d.sum_blocking().unwrap();
    // Equal up to rounding; the last bits depend on the layout.
    assert!((serial_sum - dsum).abs() < 1e-9, "{serial_sum} vs {dsum}");
    // The same sum computed chunk by chunk on the driver is what the DArray gives.
    let by_chunks: f64 = d
        .indices()
        .iter()
        .map(|r| a.slice(s![r[0].clone(), r[1].clone()]).to_owned().sum())
        .fold(0.0, |x, y| x + y);
    assert_eq!(dsum, by_chunks);
}

#[test]
fn matrix_vector_products_match_serial() {
    let _g = serial();
    let w = workers3();
    let m = Array2::from_shape_fn((7, 6), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 4.0);
    let v = Array1::from_shape_fn(6, |j| j as f64 * 0.5 - 1.0);
    let serial_y = m.dot(&v);
    for dist in [[3, 1], [1, 3]] {
        let dm = DArray::<f64, Ix2>::builder((7, 6))
            .procs(&w)
            .dist(&dist)
            .distribute_blocking(&m)
            .unwrap();
        assert_eq!(dm.matvec_blocking(&v).unwrap(), serial_y, "dist {dist:?}");
        let dv = distribute(&v).unwrap();
        let y = dm.matvec_d_blocking(&dv).unwrap();
        assert_eq!(y.gather_blocking().unwrap(), serial_y, "dist {dist:?}");
        assert_eq!(y.cuts()[0], dm.cuts()[0]);
        assert!(matches!(
            dm.matvec_blocking(&Array1::zeros(5)),
            Err(DArrayError::ShapeMismatch { .. })
        ));
    }
    wait_chunks(vec![0; 4]);
}

#[test]
fn ddata_holds_one_value_per_process() {
    let _g = serial();
    let w = workers3();
    let d: DData<String> = ddata(|pid: Pid| format!("worker {pid}")).unwrap();
    assert_eq!(d.procs(), w.as_slice());
    assert_eq!(
        d.gather_blocking().unwrap(),
        w.iter().map(|p| format!("worker {p}")).collect::<Vec<_>>()
    );
    assert_eq!(d.get_blocking(1).unwrap(), format!("worker {}", w[1]));
    // d[:L] on a worker, and d[:L] = v.
    let local = blocking::remotecall_fetch(
        |d: DData<String>| {
            let before = d.local().unwrap();
            d.set_local(format!("{before}!")).unwrap();
            before
        },
        w[2],
        (d.clone(),),
    )
    .unwrap();
    assert_eq!(local, format!("worker {}", w[2]));
    assert_eq!(d.get_blocking(2).unwrap(), format!("worker {}!", w[2]));
    assert!(d.local().is_err(), "the driver holds no value");
    let v = ddata_on(&[w[2], w[0]], |pid: Pid| vec![pid; 2]).unwrap();
    assert_eq!(
        v.gather_blocking().unwrap(),
        vec![vec![w[2]; 2], vec![w[0]; 2]]
    );
    let f = cohort_darray::blocking::ddata_from(vec![1.5f64, 2.5], &w[..2]).unwrap();
    assert_eq!(f.gather_blocking().unwrap(), vec![1.5, 2.5]);
    drop((d, v, f));
    wait_chunks(vec![0; 4]);
}

#[test]
fn drop_close_and_d_closeall_release_on_every_owner() {
    let _g = serial();
    let w = workers3();
    wait_chunks(vec![0; 4]);
    let a = dzeros::<f64, _>((30, 30)).unwrap();
    wait_chunks(vec![0, 1, 1, 1]);
    assert!(cohort_darray::blocking::chunks_of(w[0]).unwrap().bytes >= 10 * 30 * 8);
    // A clone keeps it; the last handle releases it.
    let b = a.clone();
    drop(a);
    wait_chunks(vec![0, 1, 1, 1]);
    drop(b);
    wait_chunks(vec![0; 4]);

    // close: at once, whatever handles remain; a late user gets a clear error.
    let c = dones::<f64, _>(12).unwrap();
    let late = c.clone();
    assert!(c.close());
    assert!(!c.close());
    wait_chunks(vec![0; 4]);
    let e = late.sum_blocking().unwrap_err();
    assert!(
        matches!(
            &e,
            DArrayError::Chunk {
                failure: ChunkFailure::Released { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("released"));
    // A view on a worker gets the same error, not stale data.
    let on_worker = blocking::remotecall_fetch(
        |d: DArray<f64, Ix1>| d.localpart().map(|_| ()).map_err(|e| e.to_string()),
        w[0],
        (late.clone(),),
    )
    .unwrap();
    assert!(on_worker.unwrap_err().contains("released"));

    // A view sent to a worker does not keep the data alive.
    let d = dones::<f64, _>(9).unwrap();
    let stash = cohort::remotecall(|d: DArray<f64, Ix1>| d, w[1], (d.clone(),));
    stash.wait_blocking().unwrap();
    drop(d);
    wait_chunks(vec![0; 4]);
    drop(stash);

    // d_closeall: everything this process made, temporaries included.
    let x = dones::<f64, _>(9).unwrap();
    let y = (&x * 2.0).eval_blocking().unwrap();
    let dd = ddata(|p: Pid| p).unwrap();
    let _t = x.map_blocking(|v: f64| v + 1.0).unwrap();
    wait_chunks(vec![0, 4, 4, 4]);
    assert_eq!(d_closeall(), 4);
    wait_chunks(vec![0; 4]);
    assert!(y.gather_blocking().is_err());
    assert!(dd.gather_blocking().is_err());
    drop((x, y, dd));
    assert_eq!(d_closeall(), 0);
}

/// On a worker: makes an array over `pids` and leaks its creator handle, so only
/// the worker's death can release it.
#[cohort::remote]
fn create_and_keep(pids: Vec<Pid>) -> Result<Vec<usize>, String> {
    let d = DArray::<f64, Ix1>::builder(20)
        .procs(&pids)
        .ones_blocking()
        .map_err(|e| e.to_string())?;
    let n = d.indices().iter().map(|r| r[0].len()).collect();
    std::mem::forget(d);
    Ok(n)
}

#[test]
fn chunks_go_when_their_creator_dies() {
    let _g = serial();
    let w = workers3();
    let before = chunks_everywhere();
    let extra = blocking::addprocs(1).unwrap()[0];
    let sizes = blocking::remotecall_fetch(create_and_keep, extra, (vec![w[0], w[1], 1],))
        .unwrap()
        .unwrap();
    assert_eq!(sizes, vec![7, 7, 6]);
    assert_eq!(
        cohort_darray::blocking::chunks_of(w[0]).unwrap().chunks,
        before[1] + 1
    );
    assert_eq!(cohort_darray::local_chunks().chunks, before[0] + 1);
    let os_pid = blocking::remotecall_fetch(cohort::builtins::getpid, extra, ()).unwrap();
    std::process::Command::new("kill")
        .args(["-9", &os_pid.to_string()])
        .status()
        .unwrap();
    wait_until("chunks of the dead creator are freed", || {
        cohort_darray::local_chunks().chunks == before[0]
            && cohort_darray::blocking::chunks_of(w[0]).unwrap().chunks == before[1]
            && cohort_darray::blocking::chunks_of(w[1]).unwrap().chunks == before[2]
    });
    wait_chunks(before);
}

#[test]
fn chunks_of_reports_the_calling_process_too() {
    let _g = serial();
    let s = cohort_darray::blocking::chunks_of(cohort::myid()).unwrap();
    assert_eq!(s, cohort_darray::local_chunks());
    let _ = chunks_of;
}

#[test]
fn n_dimensional_arrays_of_dynamic_rank() {
    let _g = serial();
    let w = workers3();
    let a = Array::from_shape_fn(ndarray::IxDyn(&[5, 3, 4]), |ix| {
        ix[0] * 100 + ix[1] * 10 + ix[2]
    });
    let d = DArray::<usize, ndarray::IxDyn>::builder(ndarray::IxDyn(&[5, 3, 4]))
        .procs(&w)
        .distribute_blocking(&a)
        .unwrap();
    assert_eq!(d.dist(), &[3, 1, 1]);
    assert_eq!(d.gather_blocking().unwrap(), a);
    assert_eq!(d.get_blocking([4, 2, 3]).unwrap(), 423);
    let part = d.fetch_blocking(&[1..4, 1..3, 2..4]).unwrap();
    assert_eq!(part, a.slice(s![1..4, 1..3, 2..4]).into_dyn());
    assert_eq!(d.sum_blocking().unwrap(), a.sum());
}

/// The async forms can be spawned on a multi-threaded runtime.
#[test]
fn the_async_forms_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let _g = serial();
    workers3();
    let d = dones::<f64, _>(4).unwrap();
    let v = Array1::<f64>::ones(4);
    is_send(&d.sum());
    is_send(&d.fetch(&[0..2]));
    is_send(&d.gather());
    is_send(&d.map(|x: f64| x));
    is_send(&(&d + 1.0).eval());
    is_send(&cohort_darray::dzeros::<f64, _>(3));
    is_send(&DArray::<f64, Ix1>::builder(3).init(|r: Ranges| Array1::zeros(r[0].len())));
    let m = dones::<f64, _>((4, 4)).unwrap();
    is_send(&m.matvec(&v));
    is_send(&m.matvec_d(&d));
}

#[test]
fn an_owner_that_dies_fails_operations_clearly_and_the_rest_is_released() {
    let _g = serial();
    let w = workers3();
    let before = chunks_everywhere();
    let extra = blocking::addprocs(1).unwrap()[0];
    let d = DArray::<f64, Ix1>::builder(10)
        .procs(&[w[0], extra])
        .ones_blocking()
        .unwrap();
    let os_pid = blocking::remotecall_fetch(cohort::builtins::getpid, extra, ()).unwrap();
    std::process::Command::new("kill")
        .args(["-9", &os_pid.to_string()])
        .status()
        .unwrap();
    wait_until("the killed owner leaves the cluster", || {
        !cohort::workers().contains(&extra)
    });
    let e = d.sum_blocking().unwrap_err();
    assert!(
        matches!(&e, DArrayError::Call { pid, .. } if *pid == extra),
        "{e}"
    );
    // The part on the live owner is still there, and goes with the handle.
    assert_eq!(d.fetch_blocking(&[0..5]).unwrap(), Array1::<f64>::ones(5));
    drop(d);
    wait_chunks(before);
}

#[test]
fn an_owner_killed_in_the_middle_of_an_operation_fails_it_naming_the_owner() {
    // Issue 13, point 6: the kill comes while `map` runs on the owner (its function
    // waits there), not before the operation.
    let _g = serial();
    let w = workers3();
    let before = chunks_everywhere();
    let extra = blocking::addprocs(1).unwrap()[0];
    let d = DArray::<f64, Ix1>::builder(10)
        .procs(&[w[0], extra])
        .ones_blocking()
        .unwrap();
    let started = RemoteChannel::<u32>::with_capacity_blocking(1, 4).unwrap();
    let release = RemoteChannel::<()>::with_capacity_blocking(1, 1).unwrap();
    let s2 = started.clone();
    let killer = std::thread::spawn(move || {
        // The owner reports its OS pid from inside the operation, then is killed.
        let os_pid = s2.take_blocking().unwrap();
        std::process::Command::new("kill")
            .args(["-9", &os_pid.to_string()])
            .status()
            .unwrap();
    });
    let e = d
        .map_blocking(cohort::closure!([started, release, extra] |x: f64| {
            if cohort::myid() == *extra {
                started.put_blocking(std::process::id()).unwrap();
                let _ = release.take_blocking();
            }
            x * 2.0
        }))
        .unwrap_err();
    killer.join().unwrap();
    assert!(
        matches!(&e, DArrayError::Call { pid, .. } if *pid == extra),
        "{e}"
    );
    drop(d);
    wait_until("the killed owner leaves the cluster", || {
        !cohort::workers().contains(&extra)
    });
    // The live owner's chunk (and the half-made result's) is released.
    wait_chunks(before);
}
