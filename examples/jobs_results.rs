//! The manual's producer/consumer example (jobs and results): every worker runs
//! `do_work`, taking jobs from one `RemoteChannel`, "working" for a random time and
//! putting the result — with its pid — into another; `make_jobs` fills the jobs
//! channel from a task of the driver while the driver takes the results.
//!
//! ```julia
//! const jobs = RemoteChannel(()->Channel{Int}(32));
//! const results = RemoteChannel(()->Channel{Tuple}(32));
//! @everywhere function do_work(jobs, results)
//!     while true
//!         job_id = take!(jobs)
//!         exec_time = rand()
//!         sleep(exec_time)
//!         put!(results, (job_id, exec_time, myid()))
//!     end
//! end
//! function make_jobs(n) for i in 1:n put!(jobs, i) end end
//! n = 12
//! errormonitor(@async make_jobs(n));
//! for p in workers() remote_do(do_work, p, jobs, results) end
//! @elapsed while n > 0
//!     job_id, exec_time, where = take!(results)
//!     println("$job_id finished in $(round(exec_time; digits=2)) seconds on worker $where")
//!     global n = n - 1
//! end
//! ```
//!
//! Here the channels live on the driver, as `RemoteChannel(()->…)` puts them on the
//! calling process; the workers' puts of results into them go out within channel
//! credits, without waiting for an answer each. The `jobs_results` bench
//! (`cargo bench -p cohort-benches --bench channels -- jobs_results`) runs the same
//! code with no sleep.
//!
//! Run: `cargo run --release -p cohort-examples --example jobs_results [N]`

use std::time::{Duration, Instant};

use cohort::prelude::*;

/// One job's result: its id, how long it "worked", and where.
pub(crate) type JobResult = (u32, f64, Pid);

/// Takes jobs until the jobs channel closes; puts `(job_id, exec_time, myid())` for
/// each, after sleeping up to `max_exec_secs` (Julia's `sleep(rand())`).
#[cohort::remote]
pub(crate) fn do_work(
    jobs: RemoteChannel<u32>,
    results: RemoteChannel<JobResult>,
    max_exec_secs: f64,
) {
    while let Ok(job_id) = jobs.take_blocking() {
        let exec_time = rand::random::<f64>() * max_exec_secs;
        if exec_time > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(exec_time));
        }
        if results
            .put_blocking((job_id, exec_time, cohort::myid()))
            .is_err()
        {
            break;
        }
    }
}

/// Puts jobs `1..=n` into `jobs` (Julia's `make_jobs(n)`).
pub(crate) fn make_jobs(jobs: &RemoteChannel<u32>, n: u32) {
    for i in 1..=n {
        jobs.put_blocking(i).expect("the jobs channel is open");
    }
}

/// Runs `n` jobs on `pids` (each job sleeping up to `max_exec_secs`) and returns
/// the results in the order they came. Checks that every job came back once.
pub(crate) fn run(pids: &[Pid], n: u32, max_exec_secs: f64, verbose: bool) -> Vec<JobResult> {
    let jobs = RemoteChannel::<u32>::with_capacity_blocking(myid(), 32).expect("jobs");
    let results = RemoteChannel::<JobResult>::with_capacity_blocking(myid(), 32).expect("results");
    // Julia's `@async make_jobs(n)`.
    let feeder = {
        let jobs = jobs.clone();
        std::thread::spawn(move || make_jobs(&jobs, n))
    };
    for &p in pids {
        remote_do(do_work, p, (jobs.clone(), results.clone(), max_exec_secs))
            .expect("do_work started");
    }
    let mut seen = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let r = results.take_blocking().expect("a result");
        if verbose {
            let (job_id, exec_time, from) = r;
            println!("{job_id} finished in {exec_time:.2} seconds on worker {from}");
        }
        seen.push(r);
    }
    feeder.join().expect("feeder");
    // The workers' loops end once the jobs are drained.
    jobs.close_blocking().expect("close");
    let mut ids: Vec<u32> = seen.iter().map(|r| r.0).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=n).collect::<Vec<_>>(), "every job once");
    assert!(
        seen.iter().all(|r| pids.contains(&r.2)),
        "done by the workers"
    );
    seen
}

#[allow(dead_code)]
#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let pids = blocking::addprocs(4)?;
    let start = Instant::now();
    run(&pids, n, 1.0, true);
    println!("{:.2} s elapsed", start.elapsed().as_secs_f64());
    blocking::rmprocs(&pids, None)?;
    Ok(())
}
