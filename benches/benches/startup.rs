//! Start-up: `addprocs(2)` until both workers answer a call (removal not timed), and
//! the resident memory of an idle worker after start-up, which criterion cannot
//! measure and which is printed instead.

use std::time::{Duration, Instant};

use cohort::Pid;
use cohort_benches::quantile;
use criterion::{Criterion, SamplingMode};

#[cohort::remote]
fn noop() {}

fn start_two() -> (Vec<Pid>, Duration) {
    let t = Instant::now();
    let pids = cohort::blocking::addprocs(2).expect("addprocs");
    for &p in &pids {
        cohort::blocking::remotecall_fetch(noop, p, ()).expect("call");
    }
    (pids, t.elapsed())
}

fn stop(pids: &[Pid]) {
    cohort::blocking::rmprocs(pids, Some(Duration::from_secs(10))).expect("rmprocs");
}

fn main() {
    cohort_benches::run_child_if_requested();
    let want = cohort_benches::selected("startup/addprocs2_until_both_answer");
    let want_rss = cohort_benches::selected("startup/idle_worker_rss");
    let mut c = Criterion::default().configure_from_args();
    if want {
        let mut seen_ms = Vec::new();
        let mut g = c.benchmark_group("startup");
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        g.bench_function("addprocs2_until_both_answer", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (pids, d) = start_two();
                    total += d;
                    seen_ms.push(d.as_secs_f64() * 1e3);
                    stop(&pids);
                }
                total
            })
        });
        g.finish();
        println!(
            "startup/addprocs2_until_both_answer: n={} min={:.2}ms p50={:.2}ms max={:.2}ms (warm-up included)",
            seen_ms.len(),
            seen_ms.iter().copied().fold(f64::INFINITY, f64::min),
            quantile(&mut seen_ms, 0.5),
            seen_ms.iter().copied().fold(0.0, f64::max),
        );
    }
    if want_rss {
        let (pids, _) = start_two();
        for settle in [Duration::ZERO, Duration::from_secs(1)] {
            std::thread::sleep(settle);
            for &p in &pids {
                let s = cohort::runtime::block_on(cohort::stats_of(p)).expect("stats");
                println!(
                    "startup/idle_worker_rss: pid={p} after {}s idle rss={:.2} MiB ({} bytes)",
                    settle.as_secs(),
                    s.rss_bytes as f64 / (1 << 20) as f64,
                    s.rss_bytes
                );
            }
        }
        let me = cohort::stats();
        println!(
            "startup/driver_rss (for reference): rss={:.2} MiB",
            me.rss_bytes as f64 / (1 << 20) as f64
        );
        stop(&pids);
    }
    c.final_summary();
}
