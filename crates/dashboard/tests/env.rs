//! `COHORT_DASHBOARD=ADDR` starts the dashboard at the driver's first use of the
//! cluster, in a program that only uses the `cohort` facade (nothing here names
//! `cohort_dashboard`, so the start-up hook must be linked in by the facade). The
//! workers inherit the variable but start none (they are no drivers).

mod common;

#[test]
fn the_environment_variable_starts_the_dashboard_at_first_use() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // SAFETY (edition 2021: safe): set before any other thread reads the environment.
    std::env::set_var("COHORT_DASHBOARD", format!("127.0.0.1:{port}"));
    // No `cohort::init()`: the first `addprocs` is the first use.
    let w = cohort::blocking::addprocs(2).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let s = common::wait_for(addr, 60, "both workers reporting", |s| {
        s.workers.len() == 2 && s.workers.iter().all(|r| r.last_report_ms > 0)
    });
    assert_eq!(s.workers.iter().map(|r| r.pid).collect::<Vec<_>>(), w);
    assert!(s.workers.iter().all(|r| r.os_pid != std::process::id()));
}
