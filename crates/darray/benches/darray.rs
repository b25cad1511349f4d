//! DArray benches, each beside its serial baseline in the same run (issue 11):
//!
//! - `sum/*`: the sum of `COHORT_BENCH_SUM_N` f64 (default 10^8) — `ndarray`'s `sum`
//!   on the driver versus a DArray on 2 workers (one call per owner).
//! - `create/*`: a 1000×1000 f64 DArray made with `init` on 4 workers, beside a local
//!   `Array::from_elem` of the same size.
//! - `life_step/*`: one step of the seed's game of life on a 2048×2048 board, serial
//!   versus a DArray on 2 workers (halo fetched from the neighbours), and on 2 workers
//!   bound to a CPU each (`AddProcs::bind_cores`, as `mpirun --bind-to core`).
//! - `power_method_10/*`: 10 power-method steps on a 4000×4000 matrix: the serial
//!   `ndarray` mat-vec loop versus a DArray on 2 workers with a distributed vector
//!   (default layout, and cut by rows) and with a local vector.
//!
//! Run: `cargo bench -p cohort-darray --bench darray`

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/life.rs"]
mod life;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/power_method.rs"]
mod power_method;

use std::hint::black_box;
use std::time::Duration;

use cohort::Pid;
use cohort_darray::{DArray, Ranges};
use criterion::Criterion;
use ndarray::{Array1, Array2, Ix1, Ix2};

fn sum(c: &mut Criterion, w: &[Pid]) {
    let n: usize = std::env::var("COHORT_BENCH_SUM_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000_000);
    let mut g = c.benchmark_group("sum");
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    {
        let a = Array1::from_shape_fn(n, |i| (i % 1000) as f64 * 0.001);
        g.bench_function("serial_ndarray", |b| b.iter(|| black_box(a.sum())));
    }
    let d = DArray::<f64, Ix1>::builder(n)
        .procs(&w[..2])
        .init_blocking(|r: Ranges| {
            Array1::from_iter(r[0].clone().map(|i| (i % 1000) as f64 * 0.001))
        })
        .unwrap();
    g.bench_function("darray_2_workers", |b| {
        b.iter(|| black_box(d.sum_blocking().unwrap()))
    });
    g.finish();
}

fn create(c: &mut Criterion, w: &[Pid]) {
    let mut g = c.benchmark_group("create");
    g.sample_size(50);
    g.bench_function("local_1000x1000", |b| {
        b.iter(|| black_box(Array2::<f64>::from_elem((1000, 1000), 1.0)))
    });
    g.bench_function("darray_1000x1000_init_4_workers", |b| {
        b.iter(|| {
            DArray::<f64, Ix2>::builder((1000, 1000))
                .procs(&w[..4])
                .init_blocking(|r: Ranges| Array2::from_elem((r[0].len(), r[1].len()), 1.0))
                .unwrap()
        })
    });
    g.finish();
}

fn life(c: &mut Criterion, w: &[Pid], bound: &[Pid]) {
    let n = 2048;
    let board = Array2::from_shape_fn((n, n), |(i, j)| (i * 31 + j * 17) % 7 < 2);
    let d = DArray::<bool, Ix2>::builder((n, n))
        .procs(&w[..2])
        .distribute_blocking(&board)
        .unwrap();
    let mut g = c.benchmark_group("life_step");
    g.sample_size(10);
    g.bench_function("serial_2048", |b| {
        b.iter(|| black_box(life::life_step_serial(&board)))
    });
    g.bench_function("darray_2048_2_workers", |b| {
        b.iter(|| black_box(life::life_step(&d).unwrap()))
    });
    // The same on two workers bound to a CPU each (`AddProcs::bind_cores`).
    let d = DArray::<bool, Ix2>::builder((n, n))
        .procs(bound)
        .distribute_blocking(&board)
        .unwrap();
    g.bench_function("darray_2048_2_bound_workers", |b| {
        b.iter(|| black_box(life::life_step(&d).unwrap()))
    });
    g.finish();
}

fn power(c: &mut Criterion, w: &[Pid]) {
    let n = 4000;
    let m = Array2::from_shape_fn((n, n), |(i, j)| 1.0 / (1.0 + (i + j) as f64));
    let v0 = Array1::from_elem(n, 1.0);
    let mut g = c.benchmark_group("power_method_10");
    g.sample_size(10);
    g.bench_function("serial_ndarray_4000", |b| {
        b.iter(|| black_box(power_method::power_method_serial(&m, v0.clone(), 10)))
    });
    for (name, dist) in [("default_layout", None), ("by_rows", Some([2, 1]))] {
        let mut builder = DArray::<f64, Ix2>::builder((n, n)).procs(&w[..2]);
        if let Some(d) = dist {
            builder = builder.dist(&d);
        }
        let dm = builder.distribute_blocking(&m).unwrap();
        let dv = DArray::<f64, Ix1>::builder(n)
            .procs(&w[..2])
            .distribute_blocking(&v0)
            .unwrap();
        g.bench_function(format!("darray_4000_2_workers_{name}"), |b| {
            b.iter(|| black_box(power_method::power_method(&dm, dv.clone(), 10).unwrap()))
        });
        if dist.is_some() {
            g.bench_function("darray_4000_2_workers_by_rows_local_vector", |b| {
                b.iter(|| black_box(power_method::power_method_local(&dm, v0.clone(), 10).unwrap()))
            });
        }
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let w = cohort::blocking::addprocs(4).expect("addprocs");
    let bound = cohort::AddProcs::local(2)
        .bind_cores(true)
        .launch_blocking()
        .expect("addprocs, bound");
    create(&mut c, &w);
    sum(&mut c, &w);
    life(&mut c, &w, &bound);
    power(&mut c, &w);
    c.final_summary();
}
