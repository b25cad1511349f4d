//! Start-up at scale: `addprocs` of 64 local workers does not wait for a slow one.
//!
//! The manager starts 63 workers at once and holds the 64th back until the test
//! opens a gate — which it does only once the 63 have joined and answered a call. If
//! the runtime (or the manager's `launch_all`) waited for every worker before
//! joining any, the 63 would never join and the test would fail at its deadline.
//! No timing is asserted: the order of events is forced by the gate.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cohort::prelude::*;
use cohort::transport::{
    BoxFuture, ClusterManager, LaunchError, LaunchParams, LocalManager, ManageEvent, WorkerConfig,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

const SCALE: usize = 64;

/// Local workers, the last of which starts only when the gate opens.
struct Gated {
    local: LocalManager,
    gate: Mutex<Option<oneshot::Receiver<()>>>,
}

impl ClusterManager for Gated {
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
                ..params.clone()
            };
            let gate = self.gate.lock().unwrap().take();
            let late = launched.clone();
            let (a, b) = futures::join!(self.local.launch(&fast, launched), async move {
                if let Some(g) = gate {
                    g.await
                        .map_err(|_| LaunchError::Other("the gate was dropped".into()))?;
                }
                self.local.launch(&slow, late).await
            });
            a.and(b)
        })
    }

    fn manage(&self, pid: u32, config: &WorkerConfig, event: ManageEvent) {
        self.local.manage(pid, config, event);
    }
}

#[test]
fn sixty_three_workers_join_while_the_sixty_fourth_is_held_back() {
    let c = Cluster::new();
    let (open, gate) = oneshot::channel();
    let manager = Gated {
        local: LocalManager::new(0),
        gate: Mutex::new(Some(gate)),
    };
    let c2 = c.clone();
    let launch = std::thread::spawn(move || {
        c2.launch_blocking(
            AddProcs::with_manager(manager)
                .count(SCALE)
                .worker_timeout(Duration::from_secs(60)),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let early = loop {
        let w: Vec<Pid> = c.workers().into_iter().filter(|&p| p != 1).collect();
        if w.len() == SCALE - 1 {
            break w;
        }
        assert!(
            Instant::now() < deadline && !launch.is_finished(),
            "only {} of {} workers joined before the last was started",
            w.len(),
            SCALE - 1
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for &p in &early {
        assert_eq!(
            c.remotecall_fetch_blocking(cohort::builtins::remote_myid, p, ())
                .unwrap(),
            p
        );
    }
    open.send(()).unwrap();
    let pids = launch.join().unwrap().unwrap();
    assert_eq!(pids.len(), SCALE);
    for &p in &pids {
        assert_eq!(
            c.remotecall_fetch_blocking(cohort::builtins::remote_myid, p, ())
                .unwrap(),
            p
        );
    }
    c.rmprocs_blocking(&pids, Some(Duration::from_secs(30)))
        .unwrap();
    assert!(c.workers().iter().all(|&p| p == 1), "{:?}", c.workers());
}
