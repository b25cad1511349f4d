//! RemoteChannel between two workers, beside the raw TCP round trip in the same run;
//! and the cost of reference traffic (messages per dropped reference).
//!
//! - `channels/raw_tcp_pingpong_16B`: the baseline, two processes over TCP loopback.
//! - `channels/call_roundtrip`: worker A calls a no-op on an idle third worker, one
//!   call after the other: the baseline of the next one (worker B is not idle: its
//!   echo loop holds a call runner, so calls to it wait for the call queue's stall
//!   monitor).
//! - `channels/put_take_roundtrip`: worker A puts into a channel stored on worker B and
//!   takes the reply from a second channel on B that B's echo loop fills — a
//!   put/take round trip between two workers, measured on worker A.
//! - `channels/put_throughput_1k`: 1,000 puts from the driver into a channel of
//!   capacity 1,000 on a worker, then 1,000 takes (`put_only_1k`: the puts alone,
//!   the channel drained on the worker between iterations; `put_throughput_1k_take_ahead`:
//!   the takes through `RemoteChannel::take_ahead(1000)`, a batch per round trip).
//! - `channels/jobs_results_10k`: the manual's producer/consumer example
//!   (`examples/jobs_results.rs`, no sleep) with 10,000 jobs on 2 workers, beside
//!   `jobs_results_10k_threads`, the same pattern in one process with 2 threads and
//!   local `Channel`s.
//! - After criterion: how many reference messages 100,000 dropped futures cost.

use std::time::{Duration, Instant};

use cohort::{Pid, RemoteChannel};
use cohort_benches::{Child, Peer};
use criterion::{Criterion, Throughput};

#[allow(dead_code)]
#[path = "../../examples/jobs_results.rs"]
mod jobs_results;

/// Takes everything in `rc` (on its owner), so the next iteration's puts find room.
#[cohort::remote]
fn drain(rc: RemoteChannel<u64>, n: u64) {
    for _ in 0..n {
        rc.take_blocking().expect("take");
    }
}

/// The jobs/results pattern in one process: `workers` threads over local channels.
fn jobs_results_threads(workers: usize, n: u32) {
    use cohort::channels::Channel;
    let jobs = Channel::<u32>::new(32);
    let results = Channel::<(u32, f64, u32)>::new(32);
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let (jobs, results) = (jobs.clone(), results.clone());
            std::thread::spawn(move || {
                while let Ok(job) = jobs.take_blocking() {
                    if results.put_blocking((job, 0.0, w as u32)).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    let feeder = {
        let jobs = jobs.clone();
        std::thread::spawn(move || {
            for i in 1..=n {
                jobs.put_blocking(i).unwrap();
            }
        })
    };
    for _ in 0..n {
        results.take_blocking().unwrap();
    }
    feeder.join().unwrap();
    jobs.close();
    threads.into_iter().for_each(|t| t.join().unwrap());
}

/// Echoes every value from `input` to `output` until `input` closes.
#[cohort::remote]
fn echo_loop(input: RemoteChannel<u64>, output: RemoteChannel<u64>) {
    for v in input.iter() {
        if output.put_blocking(v).is_err() {
            break;
        }
    }
}

/// Runs `n` put/take round trips through the echo loop and returns the seconds taken.
#[cohort::remote]
fn roundtrips(input: RemoteChannel<u64>, output: RemoteChannel<u64>, n: u64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        input.put_blocking(i).expect("put");
        assert_eq!(output.take_blocking().expect("take"), i);
    }
    t.elapsed().as_secs_f64()
}

#[cohort::remote]
fn unit() {}

/// Runs `n` no-op calls from this worker to worker `to` and returns the seconds
/// taken: the call round trip between the same two processes as the channel one.
#[cohort::remote]
fn call_roundtrips(to: Pid, n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        cohort::blocking::remotecall_fetch(unit, to, ()).expect("call");
    }
    t.elapsed().as_secs_f64()
}

fn main() {
    cohort_benches::run_child_if_requested();
    if !cohort_benches::selected(
        "channels/raw_tcp_pingpong_16B call_roundtrip put_take_roundtrip put_throughput_1k put_throughput_1k_async put_throughput_1k_take_ahead put_only_1k jobs_results_10k jobs_results_10k_threads",
    ) {
        return;
    }
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(6))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let mut echo = Peer::spawn(Child::Echo);
    let pids: Vec<Pid> = cohort::blocking::addprocs(3).expect("addprocs");
    // `b` runs the echo loop for good, so a call to it waits for the call queue's
    // stall monitor (a long call holds its runner): the call baseline goes to `idle`.
    let (a, b, idle) = (pids[0], pids[1], pids[2]);
    let input = RemoteChannel::<u64>::with_capacity_blocking(b, 1).expect("input");
    let output = RemoteChannel::<u64>::with_capacity_blocking(b, 1).expect("output");
    cohort::remote_do(echo_loop, b, (input.clone(), output.clone())).expect("echo loop");

    let mut g = c.benchmark_group("channels");
    g.bench_function("raw_tcp_pingpong_16B", |bch| bch.iter(|| echo.ping()));
    // The baseline of the next one: a call round trip between the same workers.
    g.bench_function("call_roundtrip", |bch| {
        bch.iter_custom(|iters| {
            let secs = cohort::blocking::remotecall_fetch(call_roundtrips, a, (idle, iters))
                .expect("call roundtrips");
            Duration::from_secs_f64(secs)
        })
    });
    g.bench_function("put_take_roundtrip", |bch| {
        bch.iter_custom(|iters| {
            let secs = cohort::blocking::remotecall_fetch(
                roundtrips,
                a,
                (input.clone(), output.clone(), iters),
            )
            .expect("roundtrips");
            Duration::from_secs_f64(secs)
        })
    });
    let credited = cohort::blocking::stats_of(a).expect("stats").credited_puts;
    println!("put_take_roundtrip: worker {a} sent {credited} puts within credits");
    let buffered = RemoteChannel::<u64>::with_capacity_blocking(a, 1000).expect("buffered");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("put_throughput_1k", |bch| {
        bch.iter(|| {
            for i in 0..1000 {
                buffered.put_blocking(i).unwrap();
            }
            for _ in 0..1000 {
                buffered.take_blocking().unwrap();
            }
        })
    });
    // The same, awaited in one task on cohort's runtime: no blocking wait per item.
    g.bench_function("put_throughput_1k_async", |bch| {
        bch.iter(|| {
            let ch = buffered.clone();
            cohort::runtime::block_on(async move {
                for i in 0..1000 {
                    ch.put(i).await.unwrap();
                }
                for _ in 0..1000 {
                    ch.take().await.unwrap();
                }
            })
        })
    });
    // The same, the takes through a take-ahead: a batch of up to 1,000 values per
    // round trip, handed out one at a time.
    g.bench_function("put_throughput_1k_take_ahead", |bch| {
        bch.iter(|| {
            for i in 0..1000 {
                buffered.put_blocking(i).unwrap();
            }
            let mut taker = buffered.take_ahead(1000);
            for _ in 0..1000 {
                taker.take_blocking().unwrap();
            }
        })
    });
    // The puts alone: the worker drains the channel between iterations.
    g.bench_function("put_only_1k", |bch| {
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                for i in 0..1000 {
                    buffered.put_blocking(i).unwrap();
                }
                total += t.elapsed();
                cohort::blocking::remotecall_fetch(drain, a, (buffered.clone(), 1000))
                    .expect("drain");
            }
            total
        })
    });
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("jobs_results_10k", |bch| {
        bch.iter(|| jobs_results::run(&pids[..2], 10_000, 0.0, false))
    });
    g.bench_function("jobs_results_10k_threads", |bch| {
        bch.iter(|| jobs_results_threads(2, 10_000))
    });
    g.finish();

    // Reference traffic: messages per dropped reference.
    let before = cohort::stats();
    const N: usize = 100_000;
    for _ in 0..N {
        drop(cohort::remotecall(unit, a, ()));
    }
    let _ = cohort::runtime::block_on(cohort::stats_of(a));
    let after = cohort::stats();
    let ops = after.ref_ops_sent - before.ref_ops_sent;
    let batches = after.ref_batches_sent - before.ref_batches_sent;
    println!(
        "reference traffic: {N} dropped futures -> {ops} ops in {batches} messages ({:.4} messages per dropped reference)",
        batches as f64 / N as f64
    );

    input.close_blocking().unwrap();
    drop(echo);
    cohort::blocking::rmprocs(&pids, Some(Duration::from_secs(10))).expect("rmprocs");
    c.final_summary();
}
