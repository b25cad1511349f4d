//! SharedArray benches, each beside its serial or plain-memory baseline in the same run.
//!
//! - `advection/*`: the seed's kernel `q[i,j,t+1] = q[i,j,t] + u[i,j,t]` on
//!   `SIZE³` f64 (env `COHORT_BENCH_SIZE`, default 200), serial on the driver versus
//!   chunked over `N` workers (env `COHORT_BENCH_WORKERS`, default: the number of
//!   cores), one `remotecall` per worker (`myrange`), and the per-time-step distributed
//!   loop over `j`.
//! - `access/*`: reading and writing 1 Mi elements on the owner: a plain `Vec`, a
//!   SharedArray view, and per-element `get`/`set`.
//!
//! Run: `cargo bench -p cohort-shared --bench shared`

use std::hint::black_box;
use std::ops::Range;
use std::time::Duration;

use cohort::{remotecall, Pid};
use cohort_shared::SharedArray;
use criterion::{BenchmarkId, Criterion};
use ndarray::{Ix1, Ix3};

type Grid = SharedArray<f64, Ix3>;

fn chunk(q: &Grid, u: &Grid, jr: Range<usize>, tr: Range<usize>) {
    let (nx, ny) = (q.shape()[0], q.shape()[1]);
    let mut qv = q.view_mut();
    let qs = qv.as_linear_mut();
    let uv = u.view();
    let us = uv.as_linear();
    for t in tr {
        for j in jr.clone() {
            let src = nx * (j + ny * t);
            let dst = nx * (j + ny * (t + 1));
            let (before, after) = qs.split_at_mut(dst);
            for ((d, a), b) in after[..nx]
                .iter_mut()
                .zip(&before[src..src + nx])
                .zip(&us[src..src + nx])
            {
                *d = a + b;
            }
        }
    }
}

fn myrange(q: &Grid) -> Range<usize> {
    let idx = q.indexpids();
    if idx == 0 {
        return 0..0;
    }
    let n = q.procs().len() as f64;
    let ny = q.shape()[1] as f64;
    let split = |k: usize| (k as f64 * ny / n).round_ties_even() as usize;
    split(idx - 1)..split(idx)
}

#[cohort::remote]
fn shared_chunk(q: Grid, u: Grid) {
    let jr = myrange(&q);
    let nt = q.shape()[2];
    chunk(&q, &u, jr, 0..nt - 1);
}

#[cohort::remote]
fn columns(q: Grid, u: Grid, jr: Range<usize>, t: usize) {
    chunk(&q, &u, jr, t..t + 1);
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn advection(c: &mut Criterion, workers: &[Pid]) {
    let size = env("COHORT_BENCH_SIZE", 200);
    let q = Grid::builder((size, size, size))
        .pids(workers)
        .build()
        .unwrap();
    let u = Grid::builder((size, size, size))
        .pids(workers)
        .build()
        .unwrap();
    u.view_mut().fill(0.5);
    let n = workers.len();
    let mut g = c.benchmark_group("advection");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function(BenchmarkId::new("serial", size), |b| {
        b.iter(|| chunk(&q, &u, 0..size, 0..size - 1))
    });
    g.bench_function(
        BenchmarkId::new(format!("shared_chunked_{n}w"), size),
        |b| {
            b.iter(|| {
                let calls: Vec<_> = q
                    .procs()
                    .iter()
                    .map(|&p| remotecall(shared_chunk, p, (q.clone(), u.clone())))
                    .collect();
                for f in calls {
                    f.fetch_blocking().unwrap();
                }
            })
        },
    );
    let per = size.div_ceil(n);
    let cols: Vec<Range<usize>> = (0..n)
        .map(|k| (k * per).min(size)..((k + 1) * per).min(size))
        .collect();
    g.bench_function(BenchmarkId::new(format!("distributed_j_{n}w"), size), |b| {
        b.iter(|| {
            for t in 0..size - 1 {
                let calls: Vec<_> = workers
                    .iter()
                    .zip(&cols)
                    .map(|(&p, jr)| remotecall(columns, p, (q.clone(), u.clone(), jr.clone(), t)))
                    .collect();
                for f in calls {
                    f.fetch_blocking().unwrap();
                }
            }
        })
    });
    g.finish();
}

fn access(c: &mut Criterion) {
    const N: usize = 1 << 20;
    let v: Vec<u64> = (0..N as u64).collect();
    let s = SharedArray::<u64, Ix1>::builder(N)
        .pids(&[cohort::myid()])
        .build()
        .unwrap();
    s.view_mut().as_linear_mut().copy_from_slice(&v);
    let mut v = v;
    let mut g = c.benchmark_group("access");
    g.sample_size(20);
    g.bench_function("read_vec_index", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for i in 0..N {
                acc = acc.wrapping_add(v[black_box(i)]);
            }
            acc
        })
    });
    g.bench_function("read_shared_view_index", |b| {
        b.iter(|| {
            let view = s.view();
            let mut acc = 0u64;
            for i in 0..N {
                acc = acc.wrapping_add(view[black_box(i)]);
            }
            acc
        })
    });
    g.bench_function("read_shared_get", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for i in 0..N {
                acc = acc.wrapping_add(s.get(black_box(i)).unwrap());
            }
            acc
        })
    });
    g.bench_function("write_vec_index", |b| {
        b.iter(|| {
            for i in 0..N {
                v[black_box(i)] = i as u64;
            }
        })
    });
    g.bench_function("write_shared_view_index", |b| {
        b.iter(|| {
            let mut view = s.view_mut();
            for i in 0..N {
                view[black_box(i)] = i as u64;
            }
        })
    });
    g.bench_function("write_shared_set", |b| {
        b.iter(|| {
            for i in 0..N {
                s.set(black_box(i), i as u64);
            }
        })
    });
    g.finish();
}

fn main() {
    let n = env(
        "COHORT_BENCH_WORKERS",
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    );
    let mut c = Criterion::default().configure_from_args();
    access(&mut c);
    let workers = cohort::blocking::addprocs(n).expect("addprocs");
    advection(&mut c, &workers);
    c.final_summary();
    let _ = cohort::blocking::rmprocs(&workers, None);
}
