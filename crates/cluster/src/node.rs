//! This process's view of the cluster: who it is, who the others are, the connections
//! to them, the calls waiting for answers, and the values it stores for others.
//!
//! There is one [`Node`] per process (Julia's process group is process-global too).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use cohort_transport::{ClusterManager, Topology, WorkerConfig};
use cohort_wire::cookie::Cookie;
use cohort_wire::ids::{Pid, RefId, MASTER};
use cohort_wire::proto::{self, Envelope};
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::error::CallError;
use crate::peer::Peer;
use crate::store::Store;

/// What the cluster knows of a worker.
#[derive(Clone)]
pub(crate) struct WorkerRecord {
    pub info: proto::WorkerInfo,
    /// Master only: the manager that launched it and its config.
    pub managed: Option<(Arc<dyn ClusterManager>, WorkerConfig)>,
}

/// A reply someone is waiting for.
pub(crate) type Reply = Result<Bytes, CallError>;

struct Pending {
    pid: Pid,
    tx: oneshot::Sender<Reply>,
}

/// The process-global state.
pub(crate) struct Node {
    myid: AtomicU32,
    is_worker: AtomicBool,
    cookie: RwLock<Cookie>,
    pub(crate) topology: RwLock<(Topology, bool)>,
    pub(crate) master_hostname: RwLock<String>,
    pub(crate) peers: RwLock<HashMap<Pid, Arc<Peer>>>,
    pub(crate) workers: RwLock<BTreeMap<Pid, WorkerRecord>>,
    /// Workers that have left (died or removed): pids are never reused, so a call to
    /// one is reported as "exited", not "no such process".
    pub(crate) exited: RwLock<std::collections::HashSet<Pid>>,
    /// Custom topology: the workers this one may connect to (the master named them).
    pub(crate) custom_links: RwLock<std::collections::HashSet<Pid>>,
    pub(crate) next_pid: AtomicU32,
    next_ref: AtomicU64,
    next_call: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    pub(crate) store: Store,
    round_robin: AtomicUsize,
}

/// The node of this process.
pub(crate) fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        crate::panics::install_hook();
        crate::worker::keep_worker_hook();
        Node {
            myid: AtomicU32::new(MASTER),
            is_worker: AtomicBool::new(false),
            cookie: RwLock::new(Cookie::random()),
            topology: RwLock::new((Topology::AllToAll, true)),
            master_hostname: RwLock::new(cohort_transport::listen::hostname()),
            peers: RwLock::new(HashMap::new()),
            workers: RwLock::new(BTreeMap::new()),
            exited: RwLock::new(Default::default()),
            custom_links: RwLock::new(Default::default()),
            next_pid: AtomicU32::new(2),
            next_ref: AtomicU64::new(1),
            next_call: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            store: Store::default(),
            round_robin: AtomicUsize::new(0),
        }
    })
}

impl Node {
    pub(crate) fn myid(&self) -> Pid {
        self.myid.load(Ordering::Relaxed)
    }

    pub(crate) fn set_worker(&self, pid: Pid) {
        self.myid.store(pid, Ordering::Relaxed);
        self.is_worker.store(true, Ordering::Relaxed);
        self.store.reset(pid);
    }

    pub(crate) fn is_worker(&self) -> bool {
        self.is_worker.load(Ordering::Relaxed)
    }

    pub(crate) fn cookie(&self) -> Cookie {
        self.cookie.read().clone()
    }

    pub(crate) fn set_cookie(&self, c: Cookie) {
        *self.cookie.write() = c;
    }

    pub(crate) fn new_ref(&self) -> RefId {
        RefId::new(self.myid(), self.next_ref.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn new_call_id(&self) -> u64 {
        self.next_call.fetch_add(1, Ordering::Relaxed)
    }

    /// Every pid of the cluster as this process knows it, sorted.
    pub(crate) fn procs(&self) -> Vec<Pid> {
        let mut v = vec![MASTER];
        v.extend(self.workers.read().keys().copied());
        if self.is_worker() && !v.contains(&self.myid()) {
            v.push(self.myid());
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    pub(crate) fn workers(&self) -> Vec<Pid> {
        let all = self.procs();
        if all.len() == 1 {
            return all;
        }
        all.into_iter().filter(|p| *p != MASTER).collect()
    }

    /// The next worker in turn, for `Any`.
    pub(crate) fn next_worker(&self) -> Pid {
        let w = self.workers();
        let i = self.round_robin.fetch_add(1, Ordering::Relaxed);
        w[i % w.len()]
    }

    /// Registers a reply slot for `call_id`, answered by `pid`.
    pub(crate) fn expect_reply(&self, call_id: u64, pid: Pid) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(call_id, Pending { pid, tx });
        rx
    }

    pub(crate) fn complete(&self, call_id: u64, reply: Reply) {
        let p = {
            let mut pending = self.pending.lock();
            let p = pending.remove(&call_id);
            if pending.capacity() > 1024 && pending.len() * 4 < pending.capacity() {
                pending.shrink_to_fit();
            }
            p
        };
        if let Some(p) = p {
            let _ = p.tx.send(reply);
        }
    }

    /// The connection to `pid`, made now if it is a worker not yet connected (lazy
    /// all-to-all). Messages sent before the connection is up wait in order.
    pub(crate) fn peer(&self, pid: Pid) -> Result<Arc<Peer>, CallError> {
        if let Some(p) = self.peers.read().get(&pid) {
            return Ok(p.clone());
        }
        let me = self.myid();
        if self.exited.read().contains(&pid) {
            return Err(CallError::WorkerExited {
                pid,
                reason: "the worker has left the cluster".into(),
            });
        }
        if me == MASTER || pid == MASTER {
            // The master connects to workers when they are added; a worker's master
            // connection exists from the start. Anything else is gone.
            return Err(if self.workers.read().contains_key(&pid) || pid == MASTER {
                CallError::WorkerExited {
                    pid,
                    reason: "not connected".into(),
                }
            } else {
                CallError::NoSuchProcess { pid }
            });
        }
        match self.topology.read().0 {
            Topology::MasterWorker => return Err(CallError::TopologyForbids { from: me, to: pid }),
            Topology::Custom if !self.custom_links.read().contains(&pid) => {
                return Err(CallError::TopologyForbids { from: me, to: pid })
            }
            _ => {}
        }
        let info = self
            .workers
            .read()
            .get(&pid)
            .map(|r| r.info.clone())
            .ok_or(CallError::NoSuchProcess { pid })?;
        let mut peers = self.peers.write();
        if let Some(p) = peers.get(&pid) {
            return Ok(p.clone());
        }
        let peer = Peer::connect_lazily(pid, info);
        peers.insert(pid, peer.clone());
        Ok(peer)
    }

    /// Sends `env` to `pid` (a local pid is an error: callers run local work directly).
    pub(crate) fn send(&self, pid: Pid, env: &Envelope) -> Result<(), CallError> {
        self.peer(pid)?.send(env)
    }

    /// A request/response exchange with `pid`: registers the reply slot, sends, waits.
    pub(crate) async fn request(&self, pid: Pid, call_id: u64, env: Envelope) -> Reply {
        let rx = self.expect_reply(call_id, pid);
        if let Err(e) = self.send(pid, &env) {
            self.pending.lock().remove(&call_id);
            return Err(e);
        }
        rx.await.unwrap_or_else(|_| {
            Err(CallError::WorkerExited {
                pid,
                reason: "connection closed".into(),
            })
        })
    }

    /// Blocking form of [`request`](Self::request), run on the calling thread: no
    /// hand-off to the runtime on the way out (the frame is written directly when the
    /// socket has room), one wake-up on the way back.
    pub(crate) fn request_blocking(&self, pid: Pid, call_id: u64, env: Envelope) -> Reply {
        let rx = self.expect_reply(call_id, pid);
        if let Err(e) = self.send(pid, &env) {
            self.pending.lock().remove(&call_id);
            return Err(e);
        }
        crate::runtime::wait(rx).unwrap_or_else(|_| {
            Err(CallError::WorkerExited {
                pid,
                reason: "connection closed".into(),
            })
        })
    }

    /// A peer's connection is gone: fail what waited on it and forget its references.
    pub(crate) fn peer_lost(&self, pid: Pid, peer: &Arc<Peer>, reason: &str) {
        {
            let mut peers = self.peers.write();
            if peers.get(&pid).is_some_and(|p| Arc::ptr_eq(p, peer)) {
                peers.remove(&pid);
            }
        }
        if self.peers.read().contains_key(&pid) {
            // Another connection to the same peer is still up.
            return;
        }
        tracing::debug!(pid, reason, "peer lost");
        let failed: Vec<_> = {
            let mut pending = self.pending.lock();
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| p.pid == pid)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| pending.remove(&id))
                .collect()
        };
        for p in failed {
            let _ = p.tx.send(Err(CallError::WorkerExited {
                pid,
                reason: reason.to_string(),
            }));
        }
        self.store.peer_died(pid);
        if !self.is_worker() {
            // A worker that died leaves the cluster, as in Julia; reap its process.
            self.exited.write().insert(pid);
            // Tell the others, so owners drop the dead worker from their client sets
            // even when they never talked to it.
            crate::procs::broadcast(
                pid,
                Envelope {
                    kind: Some(proto::envelope::Kind::PeerUpdate(proto::PeerUpdate {
                        added: vec![],
                        removed: vec![pid],
                    })),
                },
            );
            if let Some(rec) = self.workers.write().remove(&pid) {
                if let Some((manager, config)) = rec.managed {
                    crate::runtime::handle().spawn(async move {
                        manager.manage(pid, &config, cohort_transport::ManageEvent::Deregister);
                        manager.kill(pid, &config).await;
                    });
                }
            }
        }
        if self.is_worker() && pid == MASTER {
            tracing::info!("connection to the master closed; worker exiting");
            std::process::exit(0);
        }
    }
}
