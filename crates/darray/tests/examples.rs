//! The crate's examples as tests over real workers (this test binary is its own
//! worker), so they cannot rot: the seed's game of life, `power_method`,
//! `2 .* dA ./ dB` and the floating-point sum note.

// One range per dimension: a 1-D array's ranges are a one-element slice.
#![allow(clippy::single_range_in_vec_init)]

// The examples' `main`s are not used here.
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/broadcast.rs"]
mod broadcast;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/float_sum.rs"]
mod float_sum;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/life.rs"]
mod life;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/power_method.rs"]
mod power_method;

use std::sync::OnceLock;

use cohort::Pid;
use cohort_darray::DArray;
use ndarray::{Array1, Array2, Ix2};

fn workers() -> Vec<Pid> {
    static W: OnceLock<Vec<Pid>> = OnceLock::new();
    W.get_or_init(|| cohort::blocking::addprocs(2).expect("addprocs"))
        .clone()
}

/// One step of the game of life on a torus, cell by cell from the rule's
/// definition: the reference the example's steps are checked against.
fn naive_life_step(board: &Array2<bool>) -> Array2<bool> {
    let (m, n) = board.dim();
    Array2::from_shape_fn((m, n), |(i, j)| {
        let mut alive = 0;
        // Offsets -1, 0 and +1 (as `m - 1` and `n - 1` on the torus): on a board one
        // cell wide, a cell is its own neighbour above and below.
        for (a, di) in [m - 1, 0, 1].into_iter().enumerate() {
            for (b, dj) in [n - 1, 0, 1].into_iter().enumerate() {
                if (a, b) != (1, 1) && board[[(i + di) % m, (j + dj) % n]] {
                    alive += 1;
                }
            }
        }
        alive == 3 || alive == 2 && board[[i, j]]
    })
}

#[test]
fn life_step_matches_the_rule_on_every_layout_and_chunk_size() {
    let w = workers();
    // Chunks down to one row or one column, where an owner's halo rows or columns
    // are its own cells or the same neighbour's on both sides.
    for (m, n) in [(23, 17), (3, 5), (2, 7), (5, 2), (1, 6), (6, 1)] {
        let board = Array2::from_shape_fn((m, n), |(i, j)| (i * 7 + j * 13) % 5 < 2);
        for dist in [[1, 2], [2, 1]] {
            if dist[0] > m || dist[1] > n {
                continue;
            }
            let mut d = DArray::<bool, Ix2>::builder((m, n))
                .procs(&w)
                .dist(&dist)
                .distribute_blocking(&board)
                .unwrap();
            let mut serial = board.clone();
            for step in 0..4 {
                let want = naive_life_step(&serial);
                serial = life::life_step_serial(&serial);
                assert_eq!(serial, want, "serial, {m}x{n}, step {step}");
                d = life::life_step(&d).unwrap();
                assert_eq!(
                    d.gather_blocking().unwrap(),
                    want,
                    "{m}x{n}, dist {dist:?}, step {step}"
                );
            }
        }
    }
    // A glider moves one cell diagonally every four steps, across chunk boundaries
    // and around the edges.
    let mut g = Array2::from_elem((8, 8), false);
    for (i, j) in [(0, 1), (1, 2), (2, 0), (2, 1), (2, 2)] {
        g[[i, j]] = true;
    }
    let mut d = cohort_darray::blocking::distribute(&g).unwrap();
    for _ in 0..32 {
        d = life::life_step(&d).unwrap();
    }
    // 32 steps: 8 cells down and right, back where it started on an 8×8 torus.
    assert_eq!(d.gather_blocking().unwrap(), g);
}

#[test]
fn power_method_finds_the_golden_eigenvalue() {
    workers();
    let m = ndarray::array![[2.0, 1.0], [1.0, 1.0]];
    let v = ndarray::arr1(&[0.40395, 0.445877]);
    let dm = cohort_darray::blocking::distribute(&m).unwrap();
    let dv = cohort_darray::blocking::distribute(&v).unwrap();
    let (dv, lambda) = power_method::power_method(&dm, dv, 100).unwrap();
    assert!((lambda - 2.618033988749895).abs() < 1e-12, "{lambda}");
    let got = dv.gather_blocking().unwrap();
    assert!((got[0] - 0.850651).abs() < 1e-6 && (got[1] - 0.525731).abs() < 1e-6);
    let (lv, llambda) = power_method::power_method_local(&dm, v.clone(), 100).unwrap();
    let (sv, slambda) = power_method::power_method_serial(&m, v, 100);
    assert!((llambda - slambda).abs() < 1e-12);
    assert!((&lv - &sv).iter().all(|x| x.abs() < 1e-12));
    // A larger matrix, cut by rows and by columns.
    let n = 40;
    let big = Array2::from_shape_fn((n, n), |(i, j)| 1.0 / (1.0 + i as f64 + j as f64));
    let v0 = Array1::from_elem(n, 1.0);
    let (_, serial_l) = power_method::power_method_serial(&big, v0.clone(), 20);
    let w = workers();
    for dist in [[2, 1], [1, 2]] {
        let dm = DArray::<f64, Ix2>::builder((n, n))
            .procs(&w)
            .dist(&dist)
            .distribute_blocking(&big)
            .unwrap();
        let dv = cohort_darray::blocking::distribute(&v0).unwrap();
        let (_, l) = power_method::power_method(&dm, dv, 20).unwrap();
        assert!((l - serial_l).abs() < 1e-9 * serial_l, "{l} vs {serial_l}");
    }
}

#[test]
fn two_dot_da_over_db_is_all_four_pi() {
    workers();
    assert!(broadcast::run(10_000).unwrap());
}

#[test]
fn a_distributed_float_sum_agrees_up_to_the_last_bits() {
    let w = workers();
    let (serial, sums) = float_sum::run(&w).unwrap();
    for s in sums {
        assert!((s - serial).abs() < 1e-9, "{s} vs {serial}");
    }
}
