//! Round-trip latency: `remotecall_fetch` of a no-op to a local worker, beside the raw
//! baseline (a 16-byte ping-pong over blocking TCP loopback with `TCP_NODELAY`, between
//! two processes), in the same run and the same criterion group.
//!
//! After criterion, a per-call pass prints p50/p90/p99 of single round trips (criterion
//! reports means of batches) and the CPU time each round trip costs, both sides summed.

use std::time::{Duration, Instant};

use cohort::Pid;
use cohort_benches::{cpu_seconds, quantile, Child, Peer};
use criterion::Criterion;

#[cohort::remote]
fn noop() {}

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

fn per_call(label: &str, n: usize, os_pids: &[u32], mut f: impl FnMut()) {
    let cpu0: f64 = os_pids.iter().map(|&p| cpu_seconds(p)).sum();
    let wall0 = Instant::now();
    let mut us = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu: f64 = os_pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu0;
    println!(
        "per-call {label:<32} n={n} p50={:.1}us p90={:.1}us p99={:.1}us cpu/call={:.1}us (both processes, {:.2} cores busy)",
        quantile(&mut us, 0.5),
        quantile(&mut us, 0.9),
        quantile(&mut us, 0.99),
        cpu / n as f64 * 1e6,
        cpu / wall,
    );
}

fn main() {
    cohort_benches::run_child_if_requested();
    if !cohort_benches::selected(
        "roundtrip/raw_tcp_pingpong_16B remotecall_fetch_noop remotecall_fetch_noop_async",
    ) {
        return;
    }
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(2))
        .configure_from_args();

    let mut echo = Peer::spawn(Child::Echo);
    let pids: Vec<Pid> = cohort::blocking::addprocs(2).expect("addprocs");
    let w = pids[0];
    cohort::blocking::remotecall_fetch(noop, w, ()).expect("first call");

    let mut g = c.benchmark_group("roundtrip");
    g.bench_function("raw_tcp_pingpong_16B", |b| b.iter(|| echo.ping()));
    g.bench_function("remotecall_fetch_noop", |b| {
        b.iter(|| cohort::blocking::remotecall_fetch(noop, w, ()).unwrap())
    });
    // The async form, awaited in a task on cohort's runtime (what `block_on` and
    // `#[cohort::main]` code does): includes the hand-off to and from that task.
    g.bench_function("remotecall_fetch_noop_async", |b| {
        b.iter(|| {
            cohort::runtime::block_on(async move { cohort::remotecall_fetch(noop, w, ()).await })
                .unwrap()
        })
    });
    g.finish();

    // Per-call distribution, same processes, interleaved blocks.
    let me = std::process::id();
    let worker_os = cohort::blocking::remotecall_fetch(os_pid, w, ()).expect("os pid");
    for _ in 0..2 {
        per_call(
            "raw_tcp_pingpong_16B",
            20_000,
            &[me, echo.child_id()],
            || echo.ping(),
        );
        per_call("remotecall_fetch_noop", 20_000, &[me, worker_os], || {
            cohort::blocking::remotecall_fetch(noop, w, ()).unwrap()
        });
    }

    drop(echo);
    cohort::blocking::rmprocs(&pids, Some(Duration::from_secs(10))).expect("rmprocs");
    c.final_summary();
}
