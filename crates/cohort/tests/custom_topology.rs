//! Custom topology: a manager built on the public `ClusterManager` interface gives each
//! worker an identity and the identities it connects to; the runtime makes exactly
//! those worker-to-worker connections at join time. Counted with `stats_of(pid)`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort::prelude::*;
use cohort::transport::{
    BoxFuture, ClusterManager, LaunchError, LaunchParams, LocalManager, ManageEvent, WorkerConfig,
};
use cohort::Topology;
use tokio::sync::mpsc::UnboundedSender;

/// Local workers in a ring: worker `i` connects to worker `i + 1 (mod n)`.
struct Ring {
    inner: LocalManager,
    n: usize,
    /// pid → ident, recorded at registration.
    idents: Arc<Mutex<HashMap<u32, usize>>>,
}

impl ClusterManager for Ring {
    fn launch<'a>(
        &'a self,
        params: &'a LaunchParams,
        launched: UnboundedSender<WorkerConfig>,
    ) -> BoxFuture<'a, Result<(), LaunchError>> {
        Box::pin(async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<WorkerConfig>();
            let forward = async {
                let mut i = 0;
                while let Some(mut c) = rx.recv().await {
                    c.ident = Some(format!("w{i}"));
                    c.connect_idents = vec![format!("w{}", (i + 1) % self.n)];
                    i += 1;
                    let _ = launched.send(c);
                }
            };
            let (r, ()) = tokio::join!(self.inner.launch(params, tx), forward);
            r
        })
    }

    fn manage(&self, pid: u32, config: &WorkerConfig, event: ManageEvent) {
        if event == ManageEvent::Register {
            let i = config.ident.as_deref().unwrap()[1..].parse().unwrap();
            self.idents.lock().unwrap().insert(pid, i);
        }
        self.inner.manage(pid, config, event);
    }

    fn kill<'a>(&'a self, pid: u32, config: &'a WorkerConfig) -> BoxFuture<'a, ()> {
        self.inner.kill(pid, config)
    }
}

#[test]
fn custom_ring_topology_makes_exactly_the_named_connections() {
    let n = 4;
    let idents = Arc::new(Mutex::new(HashMap::new()));
    let pids = AddProcs::with_manager(Ring {
        inner: LocalManager::new(n),
        n,
        idents: idents.clone(),
    })
    .count(n)
    .topology(Topology::Custom)
    .launch_blocking()
    .unwrap();
    assert_eq!(pids.len(), n);
    let by_ident: BTreeMap<usize, u32> = idents
        .lock()
        .unwrap()
        .iter()
        .map(|(p, i)| (*i, *p))
        .collect();
    // Each worker: the master plus its two ring neighbours.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut total = 0;
    for (&i, &w) in &by_ident {
        let mut expected = vec![1, by_ident[&((i + 1) % n)], by_ident[&((i + n - 1) % n)]];
        expected.sort_unstable();
        loop {
            let s = cohort::runtime::block_on(cohort::stats_of(w)).unwrap();
            if s.connected == expected {
                total += s.connected.len() - 1;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "worker {w} (w{i}) is connected to {:?}, expected {expected:?}",
                s.connected
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // n links in a ring, each seen from both ends.
    assert_eq!(total, 2 * n);
    // Linked neighbours call each other; workers the topology does not link may not.
    let (w0, w1, w2) = (by_ident[&0], by_ident[&1], by_ident[&2]);
    let call = |from: u32, to: u32| {
        cohort::blocking::remotecall_fetch(
            cohort::closure!(
                [to] || {
                    cohort::blocking::remotecall_fetch(cohort::builtins::remote_myid, *to, ())
                        .map_err(|e| e.to_string())
                }
            ),
            from,
            (),
        )
        .unwrap()
    };
    assert_eq!(call(w0, w1), Ok(w1));
    assert_eq!(
        call(w0, w2),
        Err(cohort::CallError::TopologyForbids { from: w0, to: w2 }.to_string())
    );
    blocking::rmprocs(&pids, None).unwrap();
}
