//! A `pmap` whose function captures 100 MB (issue 12, point 16: Julia users' top
//! `pmap` complaint is a large global re-sent with every call), on two workers, one
//! item per call:
//!
//! - `captures/serial_1000_items`: the baseline, the same 1,000 items run here.
//! - `captures/kept_1000_items`: a map of 1,000 items with the capture kept on the
//!   workers (the default): each map's capture (changed a little before each map, so
//!   that every map sends it afresh) crosses to each worker once.
//! - `captures/resent_20_items`: the same with
//!   [`Cluster::set_capture_budget(0)`](cohort::Cluster::set_capture_budget), which
//!   sends the capture with every call, as before: only 20 items per map (1,000
//!   would take minutes per sample); compare the items per second.

use std::time::{Duration, Instant};

use cohort::pool::blocking::pmap_with;
use cohort::{Cluster, PmapOptions};
use criterion::{Criterion, SamplingMode, Throughput};

/// The capture's size in `f64`s: 100 MB.
const CAPTURE_LEN: usize = 100_000_000 / 8;

/// One item's work: a few reads of the captured table.
fn item(table: &[f64], i: usize) -> f64 {
    table[i % table.len()] + table[(i * 7919) % table.len()]
}

/// Seconds of `iters` maps of `n` items over a copy of `table` each (the copy, made
/// before the map starts, is not timed); `table[0]` changes before each, so that
/// every map's capture is new to the workers.
fn maps(table: &mut [f64], round: &mut f64, iters: u64, n: usize) -> Duration {
    let mut t = Duration::ZERO;
    for _ in 0..iters {
        *round += 1.0;
        table[0] = *round;
        let captured = table.to_vec();
        let f = cohort::closure!([captured] |i: usize| item(captured, i));
        let start = Instant::now();
        let out = pmap_with(f, 0..n, PmapOptions::new().batch_size(1)).expect("pmap");
        t += start.elapsed();
        assert_eq!(out[0], 2.0 * *round);
    }
    t
}

fn main() {
    cohort_benches::run_child_if_requested();
    if !cohort_benches::selected("captures/serial_1000_items kept_1000_items resent_20_items") {
        return;
    }
    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let workers = cohort::blocking::addprocs(2).expect("addprocs");
    let mut table: Vec<f64> = (0..CAPTURE_LEN).map(|i| i as f64).collect();

    let mut g = c.benchmark_group("captures");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("serial_1000_items", |b| {
        b.iter(|| (0..1000).map(|i| item(&table, i)).collect::<Vec<_>>())
    });
    let mut round = 0.0;
    g.bench_function("kept_1000_items", |b| {
        b.iter_custom(|iters| maps(&mut table, &mut round, iters, 1000))
    });
    Cluster::global().set_capture_budget(0);
    g.throughput(Throughput::Elements(20));
    g.bench_function("resent_20_items", |b| {
        b.iter_custom(|iters| maps(&mut table, &mut round, iters, 20))
    });
    g.finish();
    Cluster::global().set_capture_budget(cohort::DEFAULT_CAPTURE_BUDGET);
    cohort::blocking::rmprocs(&workers, None).expect("rmprocs");
    c.final_summary();
}
