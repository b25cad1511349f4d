//! Smoke run of the manual's jobs/results example (`examples/jobs_results.rs`) on
//! real workers: its `run` checks that every job came back once, from a worker.

#[allow(dead_code)]
#[path = "../jobs_results.rs"]
mod jobs_results;

#[test]
fn the_jobs_results_example_runs_and_checks_itself() {
    let pids = cohort::blocking::addprocs(2).expect("addprocs");
    // Short sleeps: the example's shape, not its minute of waiting.
    let results = jobs_results::run(&pids, 40, 0.005, false);
    assert_eq!(results.len(), 40);
    // With no sleep, many more jobs, through the credited path both ways.
    let results = jobs_results::run(&pids, 5_000, 0.0, false);
    assert_eq!(results.len(), 5_000);
    cohort::blocking::rmprocs(&pids, None).expect("rmprocs");
}
