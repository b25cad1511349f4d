//! The manual's jobs/results example: four workers take jobs from one
//! `RemoteChannel`, "work" for a random time, and put the results — with the pid that
//! did the job — into another; a feeder task fills the jobs channel.
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
//! Run: `cargo run --release -p cohort-examples --example jobs_results`

use std::time::{Duration, Instant};

use cohort::prelude::*;

/// Takes jobs until the channel closes; puts `(job_id, exec_time, pid)` for each.
#[cohort::remote]
fn do_work(jobs: RemoteChannel<u32>, results: RemoteChannel<(u32, f64, Pid)>) {
    while let Ok(job_id) = jobs.take_blocking() {
        let exec_time = rand::random::<f64>();
        std::thread::sleep(Duration::from_secs_f64(exec_time));
        if results
            .put_blocking((job_id, exec_time, cohort::myid()))
            .is_err()
        {
            break;
        }
    }
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pids = blocking::addprocs(4)?;
    let jobs = RemoteChannel::<u32>::with_capacity_blocking(myid(), 32)?;
    let results = RemoteChannel::<(u32, f64, Pid)>::with_capacity_blocking(myid(), 32)?;

    let n = 12;
    // The feeder task (Julia's `@async make_jobs(n)`).
    let feeder = {
        let jobs = jobs.clone();
        std::thread::spawn(move || {
            for i in 1..=n {
                jobs.put_blocking(i).expect("jobs channel open");
            }
        })
    };
    for &p in &pids {
        remote_do(do_work, p, (jobs.clone(), results.clone()))?;
    }
    let start = Instant::now();
    let mut seen = Vec::new();
    for _ in 0..n {
        let (job_id, exec_time, from) = results.take_blocking()?;
        println!("{job_id} finished in {exec_time:.2} seconds on worker {from}");
        seen.push(job_id);
    }
    println!("{:.2} s elapsed", start.elapsed().as_secs_f64());
    feeder.join().expect("feeder");
    seen.sort_unstable();
    assert_eq!(seen, (1..=n).collect::<Vec<_>>());
    jobs.close_blocking()?;
    blocking::rmprocs(&pids, None)?;
    Ok(())
}
