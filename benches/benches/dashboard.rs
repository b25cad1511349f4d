//! What watching a cluster costs: the round trip (`remotecall_fetch` of a no-op) and
//! pipelined calls (10,000 `remotecall`s then `fetch` each, over two workers), in two
//! clusters of the same process side by side — one with no dashboard, one served by
//! the dashboard (`cohort::dashboard`, updating every 400 ms, recording on in its
//! workers) — and the raw TCP ping-pong baseline, all in one run. After criterion, a
//! per-call pass alternates the two clusters and prints p50/p90 and the CPU each call
//! costs (driver and worker summed).

use std::time::{Duration, Instant};

use cohort::{Cluster, Pid};
use cohort_benches::{cpu_seconds, quantile, Child, Peer};
use criterion::{Criterion, SamplingMode, Throughput};

#[cohort::remote]
fn noop() {}

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

const N: usize = 10_000;

fn pipelined(c: &Cluster, pids: &[Pid]) {
    let futs: Vec<cohort::Future<()>> = (0..N)
        .map(|i| c.remotecall(noop, pids[i % 2], ()))
        .collect();
    cohort::runtime::block_on(async move {
        for f in &futs {
            f.fetch().await.unwrap();
        }
    })
}

fn per_call(label: &str, c: &Cluster, w: Pid, os: &[u32]) {
    let n = 20_000;
    let cpu0: f64 = os.iter().map(|&p| cpu_seconds(p)).sum();
    let mut us = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.remotecall_fetch_blocking(noop, w, ()).unwrap();
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let cpu: f64 = os.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu0;
    println!(
        "per-call {label:<14} n={n} p50={:.1}us p90={:.1}us cpu/call={:.1}us",
        quantile(&mut us, 0.5),
        quantile(&mut us, 0.9),
        cpu / n as f64 * 1e6,
    );
}

fn pipelined_cpu(label: &str, c: &Cluster, pids: &[Pid], os: &[u32]) {
    let rounds = 5;
    let cpu0: f64 = os.iter().map(|&p| cpu_seconds(p)).sum();
    let t = Instant::now();
    for _ in 0..rounds {
        pipelined(c, pids);
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu: f64 = os.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu0;
    let calls = (rounds * N) as f64;
    println!(
        "pipelined {label:<13} {:.0} calls/s cpu/call={:.2}us",
        calls / wall,
        cpu / calls * 1e6
    );
}

fn main() {
    cohort_benches::run_child_if_requested();
    if !cohort_benches::selected(
        "dashboard/raw_tcp_pingpong_16B dashboard/roundtrip_off dashboard/roundtrip_on \
         dashboard_pipelined/remotecall_then_fetch_10k_off dashboard_pipelined/remotecall_then_fetch_10k_on",
    ) {
        return;
    }
    let mut cr = Criterion::default()
        .measurement_time(Duration::from_secs(6))
        .warm_up_time(Duration::from_secs(2))
        .configure_from_args();

    let mut echo = Peer::spawn(Child::Echo);
    let off = Cluster::new();
    let on = Cluster::new();
    let off_w = off.addprocs_blocking(2).expect("addprocs");
    let on_w = on.addprocs_blocking(2).expect("addprocs");
    let dash = cohort::dashboard::Options::new("127.0.0.1:0")
        .cluster(on.clone())
        .serve()
        .expect("serve the dashboard");
    // Recording on in the watched workers now (the dashboard's first poll does it too).
    for &w in &on_w {
        let r = cohort::runtime::block_on({
            let on = on.clone();
            async move { cohort::observe::report_of(&on, w, Default::default()).await }
        });
        assert!(r.expect("a report").recording, "recording on in worker {w}");
    }
    for (c, w) in [(&off, &off_w), (&on, &on_w)] {
        c.remotecall_fetch_blocking(noop, w[0], ())
            .expect("first call");
    }

    let mut g = cr.benchmark_group("dashboard");
    g.bench_function("raw_tcp_pingpong_16B", |b| b.iter(|| echo.ping()));
    g.bench_function("roundtrip_off", |b| {
        b.iter(|| off.remotecall_fetch_blocking(noop, off_w[0], ()).unwrap())
    });
    g.bench_function("roundtrip_on", |b| {
        b.iter(|| on.remotecall_fetch_blocking(noop, on_w[0], ()).unwrap())
    });
    g.finish();

    let mut g = cr.benchmark_group("dashboard_pipelined");
    g.throughput(Throughput::Elements(N as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    g.bench_function("remotecall_then_fetch_10k_off", |b| {
        b.iter(|| pipelined(&off, &off_w))
    });
    g.bench_function("remotecall_then_fetch_10k_on", |b| {
        b.iter(|| pipelined(&on, &on_w))
    });
    g.finish();

    let me = std::process::id();
    let os = |c: &Cluster, w: &[Pid]| -> Vec<u32> {
        let mut v = vec![me];
        v.extend(
            w.iter()
                .map(|&p| c.remotecall_fetch_blocking(os_pid, p, ()).unwrap()),
        );
        v
    };
    let (off_os, on_os) = (os(&off, &off_w), os(&on, &on_w));
    for _ in 0..3 {
        per_call("dashboard off", &off, off_w[0], &off_os[..2]);
        per_call("dashboard on", &on, on_w[0], &on_os[..2]);
    }
    for _ in 0..3 {
        pipelined_cpu("dashboard off", &off, &off_w, &off_os);
        pipelined_cpu("dashboard on", &on, &on_w, &on_os);
    }
    dash.stop();
    drop(echo);
    cr.final_summary();
}
