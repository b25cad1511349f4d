//! `GET /api/status` and `GET /metrics` against a cluster of real worker processes
//! (this test binary is its own worker): a map with a failing item, a call that
//! fails, a worker killed; the metrics parse with a Prometheus text parser; the
//! cookie appears nowhere; a stalled event stream does not stop the updates; a
//! non-loopback address needs `allow_remote` and then a token.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use cohort::pool::{blocking::pmap_with, BatchSize, PmapOptions};
use cohort_dashboard::{DashboardError, Options, WorkerState};
use common::*;

#[test]
fn status_and_metrics_follow_the_cluster() {
    let w = cohort::blocking::addprocs(3).unwrap();
    let d = Options::new("127.0.0.1:0")
        .interval(Duration::from_millis(100))
        .serve()
        .unwrap();
    let addr = d.addr();
    assert_eq!(d.url(), format!("http://{addr}/"));
    // A second dashboard on the same cluster, keeping five calls only.
    let small = Options::new("127.0.0.1:0")
        .interval(Duration::from_millis(100))
        .task_history(5)
        .serve()
        .unwrap();
    assert!(d.token().is_none());

    // Every worker reports (the first report turns recording on there).
    let s = wait_for(addr, 60, "three idle workers", |s| {
        s.workers.len() == 3 && s.workers.iter().all(|w| w.state == WorkerState::Idle)
    });
    for (row, &pid) in s.workers.iter().zip(&w) {
        assert_eq!(row.pid, pid);
        assert!(row.os_pid > 0 && !row.host.is_empty());
        assert!(row.rss_bytes > 0);
    }

    // A SharedArray: a segment on every process, with its bytes; a channel owned by
    // the first worker.
    let shared = cohort::shared::SharedArray::<f64, _>::new(1000).unwrap();
    let chan = cohort::Cluster::global()
        .channel_blocking::<u32>(w[0], 4)
        .unwrap();

    // A map with a failing item (replaced by 0), and a call that fails.
    let v = pmap_with(
        square_or_fail,
        0..40,
        PmapOptions::new()
            .batch_size(BatchSize::Fixed(1))
            .on_error(|_| 0),
    )
    .unwrap();
    assert_eq!(v[BAD_ITEM as usize], 0);
    assert_eq!(v[3], 9);
    let failed = cohort::blocking::remotecall_fetch(refuse, w[1], (5,));
    assert!(failed.is_err());
    // Last on its worker, so within the 50 lines kept (panics print long backtraces).
    cohort::blocking::remotecall_fetch(shout, w[0], ()).unwrap();

    let s = wait_for(addr, 60, "the map, the errors, the stream", |s| {
        s.progress
            .iter()
            .any(|p| p.label == "pmap" && p.finished && p.done == 40 && p.total == 40)
            && s.errors
                .iter()
                .any(|e| e.source == "pmap" && e.error.message.contains(BAD_MESSAGE))
            && s.errors
                .iter()
                .any(|e| e.source == "call" && e.error.message.contains("refused 5"))
            && s.tasks.len() >= 40
            && s.objects
                .iter()
                .any(|o| o.kind == "channels" && o.owner == w[0] && o.count >= 1)
            && w.iter().all(|&pid| {
                s.objects.iter().any(|o| {
                    o.kind == "shared_segments"
                        && o.owner == pid
                        && o.count >= 1
                        && o.bytes.is_some_and(|b| b >= 8000)
                })
            })
            && s.workers.iter().any(|r| {
                r.pid == w[0]
                    && r.stderr
                        .iter()
                        .any(|l| l.contains("dashboard-test marker from worker"))
            })
    });
    drop(shared);
    drop(chan);
    let bounded = wait_for(small.addr(), 60, "the small dashboard's history", |s| {
        s.tasks.len() == 5 && s.progress.iter().any(|p| p.finished)
    });
    // The newest calls kept, each worker's in the order they ended.
    assert!(bounded
        .tasks
        .windows(2)
        .all(|t| t[0].end_ms <= t[1].end_ms || t[0].pid != t[1].pid));
    small.stop();
    let p = s.progress.iter().find(|p| p.label == "pmap").unwrap();
    assert_eq!(p.errors, 1);
    assert!(p.rate > 0.0);
    assert!(s.workers.iter().map(|w| w.calls_done).sum::<u64>() >= 40);
    assert!(s.workers.iter().all(|w| w.bytes_in > 0 && w.bytes_out > 0));
    assert!(s.tasks.iter().any(|t| !t.ok && t.pid == w[1]));
    let bad = s.errors.iter().find(|e| e.source == "pmap").unwrap();
    assert_eq!(bad.error.kind, "panic");
    assert!(!bad.error.context.is_empty(), "the panic's location");

    // A worker killed: dead, with the connection's reason.
    kill_worker(w[2]);
    let s = wait_for(addr, 60, "the killed worker dead", |s| {
        s.workers
            .iter()
            .any(|r| r.pid == w[2] && r.state == WorkerState::Dead)
    });
    let dead = s.workers.iter().find(|r| r.pid == w[2]).unwrap();
    assert!(dead.reason.as_deref().is_some_and(|r| !r.is_empty()));
    assert_eq!(s.workers_by_state.dead, 1);

    // The metrics, through a Prometheus text parser.
    let m = get(addr, "/metrics");
    assert_eq!(m.code, 200);
    assert!(m.content_type.starts_with("text/plain; version=0.0.4"));
    let lines = m.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the metrics parse");
    let value = |name: &str, label: (&str, &str)| -> Option<f64> {
        scrape.samples.iter().find_map(|s| {
            if s.metric != name || s.labels.get(label.0) != Some(label.1) {
                return None;
            }
            Some(match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
        })
    };
    assert_eq!(value("cohort_workers", ("state", "dead")), Some(1.0));
    assert_eq!(value("cohort_workers", ("state", "idle")), Some(2.0));
    let refused = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "cohort_calls_total"
                && s.labels.get("outcome") == Some("failed")
                && s.labels
                    .get("function")
                    .is_some_and(|f| f.contains("refuse"))
        })
        .expect("the failed call counted by function and outcome");
    assert!(matches!(refused.value, prometheus_parse::Value::Counter(v) if v >= 1.0));
    let hist = scrape
        .samples
        .iter()
        .find(|s| s.metric == "cohort_call_duration_seconds")
        .expect("the latency histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let inf = buckets.last().expect("buckets");
            assert!(inf.less_than.is_infinite() && inf.count >= 40.0);
        }
        other => panic!("not a histogram: {other:?}"),
    }
    for name in [
        "cohort_bytes_received_total",
        "cohort_bytes_sent_total",
        "cohort_rss_bytes",
    ] {
        assert!(
            value(name, ("pid", &w[0].to_string())).is_some_and(|v| v > 0.0),
            "{name}"
        );
    }
    assert!(value("cohort_live_references", ("pid", "1")).is_some());

    // The cookie appears in no answer.
    let cookie = cohort::cluster_cookie().expose().to_string();
    for path in ["/", "/app.js", "/style.css", "/api/status", "/metrics"] {
        let r = get(addr, path);
        assert_eq!(r.code, 200, "{path}");
        assert!(!r.body.contains(&cookie), "the cookie in {path}");
    }
    assert!(!d.url().contains(&cookie));

    // A page that never reads its event stream does not stop the updates.
    let mut stalled = TcpStream::connect(addr).unwrap();
    write!(stalled, "GET /api/events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let before = status(addr, "").seq;
    wait_for(addr, 30, "updates past a stalled reader", |s| {
        s.seq >= before + 20
    });
    drop(stalled);

    // A worker removed by rmprocs: dead, and the reason says so.
    cohort::blocking::rmprocs(&[w[1]], Some(Duration::from_secs(30))).unwrap();
    let s = wait_for(addr, 60, "the removed worker dead", |s| {
        s.workers.iter().any(|r| {
            r.pid == w[1]
                && r.state == WorkerState::Dead
                && r.reason.as_deref().is_some_and(|r| r.contains("rmprocs"))
        })
    });
    assert_eq!(s.workers_by_state.dead, 2);
    d.stop();
}

#[test]
fn other_hosts_need_allow_remote_and_a_token() {
    match cohort_dashboard::serve("0.0.0.0:0") {
        Err(DashboardError::NotLoopback { addr }) => assert_eq!(addr, "0.0.0.0:0"),
        other => panic!("expected NotLoopback, got {other:?}"),
    }
    assert!(matches!(
        cohort_dashboard::serve("no port here"),
        Err(DashboardError::BadAddress { .. })
    ));
    let d = Options::new("0.0.0.0:0")
        .allow_remote(true)
        .serve()
        .unwrap();
    let token = d.token().expect("a token").to_string();
    assert_eq!(token.len(), 32);
    assert!(d.url().ends_with(&format!("/?token={token}")));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], d.addr().port()));
    for path in ["/", "/api/status", "/metrics", "/api/events"] {
        assert_eq!(get(addr, path).code, 403, "{path} without the token");
        assert_eq!(
            get(addr, &format!("{path}?token=wrong")).code,
            403,
            "{path} with a wrong token"
        );
    }
    let page = get(addr, &format!("/?token={token}"));
    assert_eq!(page.code, 200);
    // The page's own assets carry the token, or the browser could not load them.
    for asset in ["style.css", "app.js"] {
        assert!(
            page.body.contains(&format!("\"{asset}?token={token}\"")),
            "{asset}"
        );
        assert_eq!(get(addr, &format!("/{asset}?token={token}")).code, 200);
    }
    let s = status(addr, &format!("?token={token}"));
    assert_eq!(s.schema, cohort_dashboard::status::SCHEMA_VERSION);
    let m = get(addr, &format!("/metrics?token={token}"));
    assert_eq!(m.code, 200);
    d.stop();
}
