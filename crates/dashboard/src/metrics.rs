//! `GET /metrics`: a [`Status`] in the Prometheus text exposition format (0.0.4).
//! The metric names are listed in `docs/observability.md`.

use std::fmt::Write;

use crate::status::{Status, WorkerState};

/// A label value with `\`, `"` and newlines escaped as the format asks.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders `s`.
pub(crate) fn render(s: &Status) -> String {
    let mut o = String::with_capacity(4096);

    head(&mut o, "cohort_workers", "gauge", "Workers by state.");
    let c = &s.workers_by_state;
    for (state, n) in [
        ("starting", c.starting),
        ("idle", c.idle),
        ("busy", c.busy),
        ("exiting", c.exiting),
        ("dead", c.dead),
    ] {
        let _ = writeln!(o, "cohort_workers{{state=\"{state}\"}} {n}");
    }

    head(
        &mut o,
        "cohort_calls_total",
        "counter",
        "Calls run on the workers, by function and outcome (since each worker was first watched).",
    );
    for f in &s.functions {
        let name = esc(&f.function);
        let _ = writeln!(
            o,
            "cohort_calls_total{{function=\"{name}\",outcome=\"ok\"}} {}",
            f.ok
        );
        let _ = writeln!(
            o,
            "cohort_calls_total{{function=\"{name}\",outcome=\"failed\"}} {}",
            f.failed
        );
    }

    head(
        &mut o,
        "cohort_call_duration_seconds",
        "histogram",
        "How long calls ran on the workers.",
    );
    let l = &s.latency;
    let mut cumulative = 0u64;
    for (i, n) in l.counts.iter().enumerate() {
        cumulative += n;
        let le = match l.bounds_s.get(i) {
            Some(b) => format!("{b}"),
            None => "+Inf".to_string(),
        };
        let _ = writeln!(
            o,
            "cohort_call_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    if l.counts.is_empty() {
        let _ = writeln!(o, "cohort_call_duration_seconds_bucket{{le=\"+Inf\"}} 0");
    }
    let _ = writeln!(o, "cohort_call_duration_seconds_sum {}", l.sum_s);
    let _ = writeln!(o, "cohort_call_duration_seconds_count {cumulative}");

    let per_worker: [(&str, &str, &str); 7] = [
        (
            "cohort_worker_calls_in_flight",
            "gauge",
            "Calls a worker runs now.",
        ),
        (
            "cohort_worker_calls_done_total",
            "counter",
            "Calls a worker finished with a value.",
        ),
        (
            "cohort_worker_calls_failed_total",
            "counter",
            "Calls that failed on a worker.",
        ),
        (
            "cohort_bytes_received_total",
            "counter",
            "Bytes the driver received from a worker.",
        ),
        (
            "cohort_bytes_sent_total",
            "counter",
            "Bytes the driver sent to a worker.",
        ),
        ("cohort_rss_bytes", "gauge", "Resident memory of a process."),
        (
            "cohort_cpu_seconds_total",
            "counter",
            "CPU time a process used.",
        ),
    ];
    for (name, kind, help) in per_worker {
        head(&mut o, name, kind, help);
        if name == "cohort_rss_bytes" {
            let _ = writeln!(
                o,
                "{name}{{pid=\"{}\"}} {}",
                s.driver.pid, s.driver.rss_bytes
            );
        }
        for w in &s.workers {
            if w.state == WorkerState::Dead && (kind == "gauge") {
                continue;
            }
            let v = match name {
                "cohort_worker_calls_in_flight" => w.calls_in_flight as f64,
                "cohort_worker_calls_done_total" => w.calls_done as f64,
                "cohort_worker_calls_failed_total" => w.calls_failed as f64,
                "cohort_bytes_received_total" => w.bytes_in as f64,
                "cohort_bytes_sent_total" => w.bytes_out as f64,
                "cohort_rss_bytes" => w.rss_bytes as f64,
                _ => w.cpu_seconds,
            };
            let _ = writeln!(o, "{name}{{pid=\"{}\"}} {v}", w.pid);
        }
    }

    head(
        &mut o,
        "cohort_live_references",
        "gauge",
        "Values a process owns for remote references.",
    );
    for r in s.objects.iter().filter(|r| r.kind == "remote_values") {
        let _ = writeln!(
            o,
            "cohort_live_references{{pid=\"{}\"}} {}",
            r.owner, r.count
        );
    }
    head(
        &mut o,
        "cohort_objects",
        "gauge",
        "Objects per owner and kind.",
    );
    for r in &s.objects {
        let _ = writeln!(
            o,
            "cohort_objects{{kind=\"{}\",pid=\"{}\"}} {}",
            esc(&r.kind),
            r.owner,
            r.count
        );
    }

    head(
        &mut o,
        "cohort_map_items_done",
        "gauge",
        "Items a map has done.",
    );
    for p in &s.progress {
        let _ = writeln!(
            o,
            "cohort_map_items_done{{id=\"{}\",label=\"{}\"}} {}",
            p.id,
            esc(&p.label),
            p.done
        );
    }
    head(&mut o, "cohort_map_items_total", "gauge", "Items of a map.");
    for p in &s.progress {
        let _ = writeln!(
            o,
            "cohort_map_items_total{{id=\"{}\",label=\"{}\"}} {}",
            p.id,
            esc(&p.label),
            p.total
        );
    }
    head(
        &mut o,
        "cohort_errors_recent",
        "gauge",
        "Failures in the dashboard's recent-error list.",
    );
    let _ = writeln!(o, "cohort_errors_recent {}", s.errors.len());
    o
}
