//! Throughput: pipelined no-op calls (1 driver + 2 workers) and bulk transfer of a
//! `Vec<f64>` from a worker, beside raw TCP bulk transfer of the same byte count
//! between two processes, in the same run.
//!
//! `bulk_32MiB` makes the array in each call (`remotecall_fetch`); `bulk_256MiB` is
//! DESIGN.md's figure: a 256 MiB `f64` array held by a worker (a `Future` of it,
//! computed once), fetched again and again into the caller's buffer
//! (`Future::fetch_into`), as a `Bulk<f64>` and as a `Vec<f64>`, beside raw TCP of
//! the same byte count into a buffer read again and again; and the other way, a
//! `Bulk<f64>` of 256 MiB sent to the worker, which sums it, and the same array as
//! `SharedBytes` (`send_shared_f64_sum`: written from the caller's vector and summed
//! where it arrived), beside the serial sum of the array (`serial_sum`). The workers are on this
//! host, so the runtime reaches them on their same-host sockets
//! (`cohort::transport::same_host`); `fetch_into_bulk_f64_over_tcp` fetches from a
//! worker started with `COHORT_SAME_HOST=0`, over loopback TCP, and `memcpy` (one
//! copy of the array in memory) is the ceiling of any same-host transfer.

use std::hint::black_box;
use std::time::Duration;

use cohort::Pid;
use cohort_benches::{context_switches, cpu_seconds, Child, Peer};
use criterion::{Criterion, SamplingMode, Throughput};

/// Calls per pipelined batch.
const N: usize = 10_000;
/// Bytes in the bulk transfer.
const BULK_BYTES: usize = 32 << 20;
/// Bytes in the large bulk transfer (DESIGN.md's size).
const BIG_BYTES: usize = 256 << 20;

#[cohort::remote]
fn noop() {}

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

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
    cpu_pass(pids);
}

/// After criterion: batches of the two pipelined forms timed by hand, with the CPU
/// time they cost in all three processes (criterion reports wall time only).
fn cpu_pass(pids: &[Pid]) {
    let mut os_pids = vec![std::process::id()];
    for &p in pids {
        os_pids.push(cohort::blocking::remotecall_fetch(os_pid, p, ()).expect("os pid"));
    }
    let cpu = || os_pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let batches = 20;
    for (label, fetch_each) in [
        ("remotecall_then_fetch", true),
        ("remotecall_fetch_join_all", false),
    ] {
        let cpu0 = cpu();
        let switches0: Vec<u64> = os_pids.iter().map(|&p| context_switches(p)).collect();
        let t = std::time::Instant::now();
        for _ in 0..batches {
            let pids = pids.to_vec();
            cohort::runtime::block_on(async move {
                if fetch_each {
                    let futs: Vec<cohort::Future<()>> = (0..N)
                        .map(|i| cohort::remotecall(noop, pids[i % 2], ()))
                        .collect();
                    for f in &futs {
                        f.fetch().await.unwrap();
                    }
                } else {
                    let calls = (0..N).map(|i| cohort::remotecall_fetch(noop, pids[i % 2], ()));
                    for r in futures::future::join_all(calls).await {
                        r.unwrap();
                    }
                }
            });
        }
        let wall = t.elapsed().as_secs_f64();
        let calls = (batches * N) as f64;
        // Per call, in each process: the driver's, then each worker's.
        let switches: Vec<f64> = os_pids
            .iter()
            .zip(&switches0)
            .map(|(&p, &s0)| (context_switches(p) - s0) as f64 / calls)
            .collect();
        println!(
            "cpu-pass {label:<26} {:.0}k calls/s cpu/call={:.2}us switches/call={:.3} (driver {:.3}, workers {:.3} {:.3}; 3 processes, {:.2} cores busy)",
            calls / wall / 1e3,
            (cpu() - cpu0) / calls * 1e6,
            switches.iter().sum::<f64>(),
            switches[0],
            switches[1],
            switches[2],
            (cpu() - cpu0) / wall,
        );
    }
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

#[cohort::remote]
fn sum_bulk(v: cohort::Bulk<f64>) -> f64 {
    v.iter().sum()
}

/// The same sum over the elements where they arrived (no copy into a vector).
#[cohort::remote]
fn sum_shared(v: cohort::SharedBytes) -> f64 {
    v.pod_iter::<f64>().sum()
}

fn bulk_held(c: &mut Criterion, pid: Pid) {
    let mut peer = Peer::spawn(Child::Bulk);
    let mut raw = vec![0u8; BIG_BYTES];
    let n = BIG_BYTES / 8;
    let held_bulk = cohort::remotecall(make_bulk, pid, (n,));
    let held_vec = cohort::remotecall(make, pid, (n,));
    held_bulk.wait_blocking().expect("the array");
    held_vec.wait_blocking().expect("the array");
    // A worker kept on TCP (same-host sockets off), to show what the socket gains.
    let tcp_worker = cohort::Cluster::global()
        .launch_blocking(cohort::AddProcs::local(1).env("COHORT_SAME_HOST", "0"))
        .expect("a TCP worker")[0];
    let held_tcp = cohort::remotecall(make_bulk, tcp_worker, (n,));
    held_tcp.wait_blocking().expect("the array");
    let source = vec![1.5f64; n];
    let mut out = vec![0.0f64; n];
    let mut g = c.benchmark_group("bulk_256MiB");
    g.throughput(Throughput::Bytes(BIG_BYTES as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("raw_tcp", |b| b.iter(|| peer.pull(black_box(&mut raw))));
    // The ceiling of any same-host transfer: one copy in memory.
    g.bench_function("memcpy", |b| {
        b.iter(|| {
            out.copy_from_slice(black_box(&source));
            black_box(&mut out);
        })
    });
    g.bench_function("fetch_into_bulk_f64_over_tcp", |b| {
        b.iter(|| {
            held_tcp.fetch_into_blocking(&mut out).unwrap();
            assert_eq!(out[n - 1], 1.5);
        })
    });
    g.bench_function("fetch_into_bulk_f64", |b| {
        b.iter(|| {
            held_bulk.fetch_into_blocking(&mut out).unwrap();
            assert_eq!(out[n - 1], 1.5);
        })
    });
    g.bench_function("fetch_into_vec_f64", |b| {
        b.iter(|| {
            held_vec.fetch_into_blocking(&mut out).unwrap();
            assert_eq!(out[n - 1], 1.5);
        })
    });
    // The other way: an array sent to the worker to be summed (its copy for the
    // call is made before the timing starts).
    g.bench_function("send_bulk_f64_sum", |b| {
        b.iter_batched(
            || cohort::Bulk(source.clone()),
            |v| {
                let s = cohort::blocking::remotecall_fetch(sum_bulk, pid, (v,)).unwrap();
                assert_eq!(s, 1.5 * n as f64);
            },
            criterion::BatchSize::PerIteration,
        )
    });
    // The same array as shared bytes: written from the caller's vector, summed on
    // the worker where it arrived — no copy on either side.
    g.bench_function("send_shared_f64_sum", |b| {
        b.iter_batched(
            || cohort::SharedBytes::from_pod_vec(source.clone()),
            |v| {
                let s = cohort::blocking::remotecall_fetch(sum_shared, pid, (v,)).unwrap();
                assert_eq!(s, 1.5 * n as f64);
            },
            criterion::BatchSize::PerIteration,
        )
    });
    // The serial baseline of the same work: the sum of the array in this process.
    g.bench_function("serial_sum", |b| {
        b.iter(|| black_box(&source).iter().sum::<f64>())
    });
    g.finish();
    drop(held_tcp);
    cohort::blocking::rmprocs(&[tcp_worker], Some(Duration::from_secs(10))).expect("rmprocs");
}

fn main() {
    cohort_benches::run_child_if_requested();
    let want_pipe = cohort_benches::selected(
        "pipelined/remotecall_then_fetch_10k remotecall_fetch_join_all_10k",
    );
    let want_bulk = cohort_benches::selected("bulk_32MiB/raw_tcp fetch_vec_f64 fetch_bulk_f64");
    let want_held =
        cohort_benches::selected("bulk_256MiB/raw_tcp memcpy fetch_into_bulk_f64_over_tcp fetch_into_bulk_f64 fetch_into_vec_f64 send_bulk_f64_sum send_shared_f64_sum serial_sum");
    if !want_pipe && !want_bulk && !want_held {
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
    if want_held {
        bulk_held(&mut c, pids[0]);
    }
    cohort::blocking::rmprocs(&pids, Some(Duration::from_secs(10))).expect("rmprocs");
    c.final_summary();
}
