//! pmap and the reducer form of `@distributed`, each beside its serial baseline.
//! `cargo bench -p cohort-pool --bench pool`; `COHORT_BENCH_WORKERS=N` sets the
//! number of workers (default 2), `COHORT_BENCH_BIND=1` binds each to a CPU
//! (`AddProcs::bind_cores`), `COHORT_BENCH_REDUCE_ITEMS=M` the reducer's items.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn trivial(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn one_ms(x: u64) -> u64 {
    let t = std::time::Instant::now();
    let mut acc = x;
    while t.elapsed() < Duration::from_millis(1) {
        acc = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(7));
    }
    acc
}

fn flip(i: i64) -> u64 {
    // A small xorshift on the index: compute-bound, no shared state.
    let mut x = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x & 1
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn benches(c: &mut Criterion) {
    // COHORT_BENCH_WORKERS sets N (default 2, this machine's core count).
    let n: usize = std::env::var("COHORT_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    // COHORT_BENCH_BIND=1 binds each worker to a CPU (`AddProcs::bind_cores`).
    let bind = std::env::var("COHORT_BENCH_BIND").is_ok_and(|v| v.trim() == "1");
    let w = cohort::AddProcs::local(n)
        .bind_cores(bind)
        .launch_blocking()
        .expect("addprocs");
    let nw = w.len();

    let items: Vec<u64> = (0..100_000).collect();
    let mut g = c.benchmark_group("pmap_trivial_100k");
    g.throughput(Throughput::Elements(items.len() as u64));
    g.sample_size(20);
    g.bench_function("serial_map", |b| {
        b.iter(|| items.iter().map(|&x| trivial(x)).collect::<Vec<_>>())
    });
    g.bench_function("pmap_default", |b| {
        b.iter(|| cohort_pool::blocking::pmap(trivial, items.clone()).unwrap())
    });
    g.finish();

    let items: Vec<u64> = (0..1000).collect();
    let mut g = c.benchmark_group("pmap_1000x1ms");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("serial_map", |b| {
        b.iter(|| items.iter().map(|&x| one_ms(x)).collect::<Vec<_>>())
    });
    g.bench_function(format!("pmap_default_{nw}_workers"), |b| {
        b.iter(|| cohort_pool::blocking::pmap(one_ms, items.clone()).unwrap())
    });
    g.finish();

    // COHORT_BENCH_REDUCE_ITEMS sets the reducer's item count (default 200 M: about
    // 0.13 s serial on a fast core, so with many workers the fixed cost of starting
    // the chunks is a visible share; a larger count measures the steady state).
    let n: i64 = std::env::var("COHORT_BENCH_REDUCE_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000_000);
    let mut g = c.benchmark_group(format!("reduce_{}M", n / 1_000_000));
    g.sample_size(10);
    g.bench_function("serial", |b| b.iter(|| (0..n).map(flip).sum::<u64>()));
    g.bench_function(format!("distributed_{nw}_workers"), |b| {
        b.iter(|| cohort_pool::blocking::distributed_reduce(0..n, flip, add).unwrap())
    });
    g.finish();
}

mod group {
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(pool, benches);
}
criterion_main!(group::pool);
