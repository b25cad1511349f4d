//! Who is in the cluster as this process knows it: its own pid, the workers, the ones
//! that left, the topology and which connections exist.

use std::collections::{BTreeMap, HashSet};

use cohort_transport::Topology;
use cohort_wire::ids::{Pid, MASTER};
use cohort_wire::proto::WorkerInfo;

use crate::error::CallError;

/// How a message to a pid can go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    /// Over the existing connection.
    Connected,
    /// A worker-to-worker connection must be made first (lazy all-to-all, or a
    /// custom link); the message waits for it.
    ConnectFirst(WorkerInfo),
}

/// The membership tables of one process.
pub(crate) struct Membership {
    me: Pid,
    is_worker: bool,
    topology: Topology,
    lazy: bool,
    workers: BTreeMap<Pid, WorkerInfo>,
    /// Workers that have left (died or removed): pids are never reused, so a call to
    /// one is reported as "exited", not "no such process".
    exited: HashSet<Pid>,
    /// Custom topology: the workers this one may connect to (the master named them).
    custom_links: HashSet<Pid>,
    /// Pids with a connection (up or being made).
    connected: HashSet<Pid>,
    next_pid: Pid,
    round_robin: usize,
}

impl Membership {
    /// A master (pid 1) alone.
    pub(crate) fn new() -> Self {
        Membership {
            me: MASTER,
            is_worker: false,
            topology: Topology::AllToAll,
            lazy: true,
            workers: BTreeMap::new(),
            exited: HashSet::new(),
            custom_links: HashSet::new(),
            connected: HashSet::new(),
            next_pid: MASTER + 1,
            round_robin: 0,
        }
    }

    pub(crate) fn me(&self) -> Pid {
        self.me
    }

    pub(crate) fn is_worker(&self) -> bool {
        self.is_worker
    }

    /// Becomes worker `pid` (told by the master's `Join`).
    pub(crate) fn become_worker(&mut self, pid: Pid) {
        self.me = pid;
        self.is_worker = true;
    }

    pub(crate) fn topology(&self) -> (Topology, bool) {
        (self.topology, self.lazy)
    }

    pub(crate) fn set_topology(&mut self, topology: Topology, lazy: bool) {
        self.topology = topology;
        self.lazy = lazy;
    }

    /// The pid the next launched worker gets (master).
    pub(crate) fn allocate_pid(&mut self) -> Pid {
        let p = self.next_pid;
        self.next_pid += 1;
        p
    }

    pub(crate) fn worker(&self, pid: Pid) -> Option<&WorkerInfo> {
        self.workers.get(&pid)
    }

    pub(crate) fn worker_infos(&self) -> impl Iterator<Item = &WorkerInfo> {
        self.workers.values()
    }

    pub(crate) fn is_member(&self, pid: Pid) -> bool {
        pid == MASTER || pid == self.me || self.workers.contains_key(&pid)
    }

    /// Whether `pid` left the cluster (died, or was removed).
    pub(crate) fn has_left(&self, pid: Pid) -> bool {
        self.exited.contains(&pid)
    }

    /// Records a worker (joined, or announced by the master).
    pub(crate) fn add_worker(&mut self, info: WorkerInfo) {
        self.exited.remove(&info.pid);
        self.workers.insert(info.pid, info);
    }

    /// Records that `pid` left; returns whether it was a member.
    pub(crate) fn remove_worker(&mut self, pid: Pid) -> bool {
        self.exited.insert(pid);
        self.workers.remove(&pid).is_some()
    }

    pub(crate) fn allow_link(&mut self, pid: Pid) {
        self.custom_links.insert(pid);
    }

    pub(crate) fn set_connected(&mut self, pid: Pid) {
        self.connected.insert(pid);
    }

    /// Forgets the connection to `pid`; returns whether there was one.
    pub(crate) fn set_disconnected(&mut self, pid: Pid) -> bool {
        self.connected.remove(&pid)
    }

    pub(crate) fn connected(&self) -> impl Iterator<Item = Pid> + '_ {
        self.connected.iter().copied()
    }

    /// Every pid of the cluster as this process knows it, sorted.
    pub(crate) fn procs(&self) -> Vec<Pid> {
        let mut v = vec![MASTER];
        v.extend(self.workers.keys().copied());
        if self.is_worker && !v.contains(&self.me) {
            v.push(self.me);
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The workers, or `[1]` when there are none (Julia's `workers()`).
    pub(crate) fn workers(&self) -> Vec<Pid> {
        let all = self.procs();
        if all.len() == 1 {
            return all;
        }
        all.into_iter().filter(|p| *p != MASTER).collect()
    }

    /// The next worker in turn, for `Target::Any`.
    pub(crate) fn next_worker(&mut self) -> Pid {
        let w = self.workers();
        let i = self.round_robin;
        self.round_robin = self.round_robin.wrapping_add(1);
        w[i % w.len()]
    }

    /// How a message to `pid` can go, or why it cannot.
    ///
    /// # Errors
    /// [`CallError::WorkerExited`] for a pid that left or whose connection is gone,
    /// [`CallError::NoSuchProcess`] for a pid never seen, [`CallError::TopologyForbids`]
    /// for a worker-to-worker message the topology rules out.
    pub(crate) fn route(&self, pid: Pid) -> Result<Route, CallError> {
        if self.connected.contains(&pid) {
            return Ok(Route::Connected);
        }
        if self.exited.contains(&pid) {
            return Err(CallError::WorkerExited {
                pid,
                reason: "the worker has left the cluster".into(),
            });
        }
        if self.me == MASTER || pid == MASTER {
            // The master connects to workers when they are added; a worker's master
            // connection exists from the start. Anything else is gone.
            return Err(if self.workers.contains_key(&pid) || pid == MASTER {
                CallError::WorkerExited {
                    pid,
                    reason: "not connected".into(),
                }
            } else {
                CallError::NoSuchProcess { pid }
            });
        }
        match self.topology {
            Topology::MasterWorker => {
                return Err(CallError::TopologyForbids {
                    from: self.me,
                    to: pid,
                })
            }
            Topology::Custom if !self.custom_links.contains(&pid) => {
                return Err(CallError::TopologyForbids {
                    from: self.me,
                    to: pid,
                })
            }
            _ => {}
        }
        self.workers
            .get(&pid)
            .cloned()
            .map(Route::ConnectFirst)
            .ok_or(CallError::NoSuchProcess { pid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: Pid) -> WorkerInfo {
        WorkerInfo {
            pid,
            host: "127.0.0.1".into(),
            port: 9000 + pid,
            ..Default::default()
        }
    }

    #[test]
    fn routes_follow_topology_and_departures() {
        let mut m = Membership::new();
        m.become_worker(2);
        m.set_connected(MASTER);
        m.add_worker(info(3));
        m.add_worker(info(4));
        assert_eq!(m.route(MASTER), Ok(Route::Connected));
        assert_eq!(m.route(3), Ok(Route::ConnectFirst(info(3))));
        assert_eq!(m.route(9), Err(CallError::NoSuchProcess { pid: 9 }));
        m.set_topology(Topology::MasterWorker, true);
        assert_eq!(
            m.route(3),
            Err(CallError::TopologyForbids { from: 2, to: 3 })
        );
        m.set_topology(Topology::Custom, false);
        m.allow_link(4);
        assert!(m.route(3).is_err());
        assert!(matches!(m.route(4), Ok(Route::ConnectFirst(_))));
        assert!(m.remove_worker(4));
        assert!(matches!(
            m.route(4),
            Err(CallError::WorkerExited { pid: 4, .. })
        ));
        assert_eq!(m.procs(), vec![1, 2, 3]);
        assert_eq!(m.workers(), vec![2, 3]);
    }

    #[test]
    fn a_lone_master_is_its_own_worker() {
        let mut m = Membership::new();
        assert_eq!(m.workers(), vec![MASTER]);
        assert_eq!(m.next_worker(), MASTER);
        assert_eq!(m.allocate_pid(), 2);
        assert_eq!(m.allocate_pid(), 3);
    }
}
