//! Start-up: `addprocs(2)` until both workers answer a call (removal not timed), the
//! same at scale (`addprocs(64)`), and 64 workers of which one starts
//! [`SLOW_DELAY`] late, which shows whether the others wait for it (the launch
//! would then take the delay plus the 63 others' start-up, instead of about the
//! delay); and the resident memory of an idle worker after start-up, which criterion
//! cannot measure and which is printed instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cohort::transport::{
    BoxFuture, ClusterManager, LaunchError, LaunchParams, LocalManager, ManageEvent, WorkerConfig,
};
use cohort::{AddProcs, Pid};
use cohort_benches::quantile;
use criterion::{Criterion, SamplingMode};
use tokio::sync::mpsc::UnboundedSender;

/// Workers of the scale benches.
const SCALE: usize = 64;
/// How late the slow worker of `addprocs64_one_slow` starts.
const SLOW_DELAY: Duration = Duration::from_millis(500);

/// `count` local workers, one of which is started through a script that sleeps
/// [`SLOW_DELAY`] first (a worker slow to come up).
struct OneSlow {
    script: PathBuf,
    local: LocalManager,
}

impl OneSlow {
    fn new(dir: &Path) -> Self {
        let exe = std::env::current_exe().expect("current exe");
        let script = dir.join(format!(
            "cohort-bench-slow-worker-{}.sh",
            std::process::id()
        ));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nsleep {}\nexec '{}' \"$@\"\n",
                SLOW_DELAY.as_secs_f64(),
                exe.display()
            ),
        )
        .expect("write the slow worker's script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the script");
        OneSlow {
            script,
            local: LocalManager::new(0),
        }
    }
}

impl Drop for OneSlow {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.script);
    }
}

impl ClusterManager for OneSlow {
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async move {
            let fast = LaunchParams {
                count: params.count - 1,
                ..params.clone()
            };
            let slow = LaunchParams {
                count: 1,
                executable: Some(self.script.clone()),
                ..params.clone()
            };
            let (a, b) = futures::join!(
                self.local.launch(&fast, launched.clone()),
                self.local.launch(&slow, launched)
            );
            a.and(b)
        })
    }

    fn manage(&self, pid: u32, config: &WorkerConfig, event: ManageEvent) {
        // The output label of LocalManager's workers.
        self.local.manage(pid, config, event);
    }
}

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

/// `SCALE` workers (through `manager`, else `addprocs`) until every one answers;
/// with `manager`, also when all but one had joined (polled every millisecond on
/// another thread, from the cluster's membership).
fn start_many(manager: Option<&std::sync::Arc<OneSlow>>) -> (Vec<Pid>, Duration, Option<Duration>) {
    let t = Instant::now();
    let probe = manager.is_some().then(|| {
        std::thread::spawn(move || {
            // The master and all workers but the slow one.
            while cohort::procs().len() < SCALE && t.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(1));
            }
            t.elapsed()
        })
    });
    let pids = match manager {
        Some(m) => AddProcs::with_manager(ArcManager(m.clone()))
            .count(SCALE)
            .launch_blocking()
            .expect("addprocs"),
        None => cohort::blocking::addprocs(SCALE).expect("addprocs"),
    };
    assert_eq!(pids.len(), SCALE);
    for &p in &pids {
        cohort::blocking::remotecall_fetch(noop, p, ()).expect("call");
    }
    let all = t.elapsed();
    (pids, all, probe.map(|p| p.join().expect("probe thread")))
}

/// A shared [`OneSlow`] (one script for every sample).
struct ArcManager(std::sync::Arc<OneSlow>);

impl ClusterManager for ArcManager {
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        self.0.launch(params, launched)
    }

    fn manage(&self, pid: u32, config: &WorkerConfig, event: ManageEvent) {
        self.0.manage(pid, config, event);
    }
}

/// Runs one scale bench and prints min/p50/max of every start.
fn bench_scale(c: &mut Criterion, name: &str, manager: Option<std::sync::Arc<OneSlow>>) {
    let mut seen_ms = Vec::new();
    let mut others_ms = Vec::new();
    let mut g = c.benchmark_group("startup");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (pids, d, others) = start_many(manager.as_ref());
                total += d;
                seen_ms.push(d.as_secs_f64() * 1e3);
                others_ms.extend(others.map(|o| o.as_secs_f64() * 1e3));
                stop(&pids);
            }
            total
        })
    });
    g.finish();
    println!(
        "startup/{name}: n={} min={:.1}ms p50={:.1}ms max={:.1}ms (warm-up included)",
        seen_ms.len(),
        seen_ms.iter().copied().fold(f64::INFINITY, f64::min),
        quantile(&mut seen_ms, 0.5),
        seen_ms.iter().copied().fold(0.0, f64::max),
    );
    if !others_ms.is_empty() {
        println!(
            "startup/{name}: the {} others had joined at p50={:.1}ms max={:.1}ms",
            SCALE - 1,
            quantile(&mut others_ms, 0.5),
            others_ms.iter().copied().fold(0.0, f64::max),
        );
    }
}

fn stop(pids: &[Pid]) {
    cohort::blocking::rmprocs(pids, Some(Duration::from_secs(10))).expect("rmprocs");
}

fn main() {
    cohort_benches::run_child_if_requested();
    let want = cohort_benches::selected("startup/addprocs2_until_both_answer");
    let want_rss = cohort_benches::selected("startup/idle_worker_rss");
    let want_scale = cohort_benches::selected("startup/addprocs64_until_all_answer");
    let want_slow = cohort_benches::selected("startup/addprocs64_one_slow");
    let mut c = Criterion::default().configure_from_args();
    if want_scale {
        bench_scale(&mut c, "addprocs64_until_all_answer", None);
    }
    if want_slow {
        let m = std::sync::Arc::new(OneSlow::new(&std::env::temp_dir()));
        bench_scale(&mut c, "addprocs64_one_slow", Some(m));
        println!(
            "startup/addprocs64_one_slow: one of the {SCALE} workers starts {}ms late",
            SLOW_DELAY.as_millis()
        );
    }
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
