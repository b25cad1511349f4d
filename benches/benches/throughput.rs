//! Throughput: pipelined no-op calls (1 driver + 2 workers) and bulk transfer of a
//! `Vec<f64>` from a worker, beside raw TCP bulk transfer of the same byte count
//! between two processes, in the same run.
//!
//! The bulk figure uses 32 MiB rather than DESIGN.md's 256 MiB so that a criterion
//! run fits the bench time on a 2-core machine; at these sizes the transfer is
//! bandwidth-bound either way.

use std::hint::black_box;
use std::time::Duration;

use cohort::Pid;
use cohort_benches::{Child, Peer};
use criterion::{Criterion, SamplingMode, Throughput};

/// Calls per pipelined batch.
const N: usize = 10_000;
/// Bytes in the bulk transfer.
const BULK_BYTES: usize = 32 << 20;

#[cohort::remote]
fn noop() {}

#[cohort::remote]
fn make(n: usize) -> Vec<f64> {
    vec![1.5; n]
}

#[cohort::remote]
fn make_bulk(n: usize) -> cohort::Bulk<f64> {
    cohort::Bulk(vec![1.5; n])
}

fn pipelined(c: &mut Criterion, pids: &[Pid]) {
    let mut g = c.benchmark_group("pipelined");
    g.throughput(Throughput::Elements(N as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("remotecall_then_fetch_10k", |b| {
        b.iter(|| {
            let futs: Vec<cohort::Future<()>> = (0..N)
                .map(|i| cohort::remotecall(noop, pids[i % 2], ()))
                .collect();
            cohort::runtime::block_on(async move {
                for f in &futs {
                    f.fetch().await.unwrap();
                }
            })
        })
    });
    g.bench_function("remotecall_fetch_join_all_10k", |b| {
        b.iter(|| {
            let pids = pids.to_vec();
            cohort::runtime::block_on(async move {
                let calls = (0..N).map(|i| cohort::remotecall_fetch(noop, pids[i % 2], ()));
                for r in futures::future::join_all(calls).await {
                    r.unwrap();
                }
            })
        })
    });
    g.finish();
}

fn bulk(c: &mut Criterion, pid: Pid) {
    let mut peer = Peer::spawn(Child::Bulk);
    let mut buf = vec![0u8; BULK_BYTES];
    let mut g = c.benchmark_group("bulk_32MiB");
    g.throughput(Throughput::Bytes(BULK_BYTES as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("raw_tcp", |b| b.iter(|| peer.pull(black_box(&mut buf))));
    g.bench_function("fetch_vec_f64", |b| {
        b.iter(|| {
            let v = cohort::blocking::remotecall_fetch(make, pid, (BULK_BYTES / 8,)).unwrap();
            assert_eq!(v.len(), BULK_BYTES / 8);
            black_box(v)
        })
    });
    g.bench_function("fetch_bulk_f64", |b| {
        b.iter(|| {
            let v = cohort::blocking::remotecall_fetch(make_bulk, pid, (BULK_BYTES / 8,)).unwrap();
            assert_eq!(v.len(), BULK_BYTES / 8);
            black_box(v)
        })
    });
    g.finish();
}

fn main() {
    cohort_benches::run_child_if_requested();
    let want_pipe = cohort_benches::selected(
        "pipelined/remotecall_then_fetch_10k remotecall_fetch_join_all_10k",
    );
    let want_bulk = cohort_benches::selected("bulk_32MiB/raw_tcp fetch_vec_f64 fetch_bulk_f64");
    if !want_pipe && !want_bulk {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let pids: Vec<Pid> = cohort::blocking::addprocs(2).expect("addprocs");
    for &p in &pids {
        cohort::blocking::remotecall_fetch(noop, p, ()).expect("first call");
    }
    if want_pipe {
        pipelined(&mut c, &pids);
    }
    if want_bulk {
        bulk(&mut c, pids[0]);
    }
    cohort::blocking::rmprocs(&pids, Some(Duration::from_secs(10))).expect("rmprocs");
    c.final_summary();
}
