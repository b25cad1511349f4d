//! A harness that drives one [`Core`] as an established connection would — for the
//! `dispatch` fuzz target (`fuzz/`), behind the `fuzzing` feature. Not a public API.
//!
//! A fuzzer plays every peer of one process (a worker of a small cluster, or its
//! master): it delivers envelopes of its choosing (valid ones in the wrong state,
//! unknown kinds, references to ids that do not exist, replies nobody asked for),
//! lets time pass (reference batches, heartbeat checks), finishes the calls the core
//! asked to run, makes requests and references of its own, and drops connections.
//! Every step drains the core's outputs and checks what they must satisfy whatever
//! came in: each request is answered at most once, nothing is sent to the process
//! itself, and after the core asks to exit nothing more is done.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort_transport::Topology;
use cohort_wire::ids::{Pid, RefId};
use cohort_wire::proto::{Envelope, WorkerInfo};

use super::liveness::Heartbeat;
use super::{Core, Joined, Output, RunCall};
use crate::error::RemoteException;

/// What one step made the core do, for the fuzz target's own checks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Messages sent, by destination.
    pub transmits: Vec<Pid>,
    /// Requests answered (their tokens).
    pub completed: Vec<u64>,
    /// Calls handed out to run.
    pub runs: usize,
    /// Connections cut for a peer declared unresponsive.
    pub disconnects: Vec<Pid>,
    /// Whether the core asked this process to exit.
    pub exit: bool,
}

/// One process's core, driven by a fuzzer.
pub struct Dispatch {
    core: Core<u64, ()>,
    start: Instant,
    now: Duration,
    /// Calls handed out and not finished yet.
    running: Vec<RunCall>,
    /// Requests made and not answered yet.
    outstanding: HashSet<u64>,
    answered: HashSet<u64>,
    next_token: u64,
    next_ref: u64,
    /// References this process holds.
    held: Vec<RefId>,
    exited: bool,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("me", &self.core.me())
            .field("now", &self.now)
            .field("running", &self.running.len())
            .field("outstanding", &self.outstanding.len())
            .finish()
    }
}

fn info(pid: Pid) -> WorkerInfo {
    WorkerInfo {
        pid,
        host: "fuzz".into(),
        port: pid,
        ..Default::default()
    }
}

impl Dispatch {
    /// Worker `me` of a cluster with workers `2..=workers + 1` (all-to-all, lazy),
    /// connected to its master, with heartbeats every 10 ms and a 50 ms timeout.
    pub fn worker(me: Pid, workers: u32) -> Dispatch {
        let start = Instant::now();
        let mut core = Core::new();
        let known = (2..workers + 2).filter(|&p| p != me).map(info).collect();
        core.handle_joined(
            Joined {
                pid: me,
                topology: Topology::AllToAll,
                lazy: true,
                known,
                connect_now: Vec::new(),
                custom: false,
                heartbeat: Some(Self::heartbeat()),
            },
            start,
        );
        Self::with(core, start)
    }

    /// The master of a cluster with workers `2..=workers + 1`, all connected.
    pub fn master(workers: u32) -> Dispatch {
        let start = Instant::now();
        let mut core = Core::new();
        core.set_heartbeat(Some(Self::heartbeat()), start);
        for pid in 2..workers + 2 {
            let p = core.allocate_pid();
            debug_assert_eq!(p, pid);
            core.handle_connected(pid, Some(info(pid)), true);
        }
        Self::with(core, start)
    }

    fn heartbeat() -> Heartbeat {
        Heartbeat::new(Duration::from_millis(10), Duration::from_millis(50)).expect("valid")
    }

    fn with(core: Core<u64, ()>, start: Instant) -> Dispatch {
        let mut d = Dispatch {
            core,
            start,
            now: Duration::ZERO,
            running: Vec::new(),
            outstanding: HashSet::new(),
            answered: HashSet::new(),
            next_token: 0,
            next_ref: 0,
            held: Vec::new(),
            exited: false,
        };
        d.drain();
        d
    }

    /// This process's pid.
    pub fn me(&self) -> Pid {
        self.core.me()
    }

    /// Replies the core still waits for.
    pub fn pending_replies(&self) -> usize {
        self.core.pending_replies()
    }

    /// Whether the core asked to exit (nothing more is done then).
    pub fn exited(&self) -> bool {
        self.exited
    }

    fn at(&self) -> Instant {
        self.start + self.now
    }

    /// An envelope from `from` arrives, as a reader hands it over.
    pub fn deliver(&mut self, from: Pid, env: Envelope) -> Effects {
        if self.exited || from == self.me() {
            return Effects::default();
        }
        let at = self.at();
        self.core.handle_envelope(from, env, at);
        self.drain()
    }

    /// `ms` milliseconds pass; due timers fire.
    pub fn tick(&mut self, ms: u64) -> Effects {
        if self.exited {
            return Effects::default();
        }
        self.now += Duration::from_millis(ms);
        let at = self.at();
        self.core.handle_timeout(at);
        self.drain()
    }

    /// Finishes the `i`-th running call (modulo how many run), with its arguments as
    /// the result or a failure.
    pub fn finish(&mut self, i: usize, ok: bool) -> Effects {
        if self.exited || self.running.is_empty() {
            return Effects::default();
        }
        let run = self.running.swap_remove(i % self.running.len());
        let outcome = if ok {
            Ok(run.call.args.clone())
        } else {
            Err(RemoteException {
                pid: self.me(),
                kind: crate::error::ErrorKind::Error,
                function: "fuzz".into(),
                message: "failed".into(),
                context: String::new(),
            })
        };
        let at = self.at();
        self.core.finish_call(run.seq, outcome, at);
        self.drain()
    }

    /// Sends `env` as a request (it carries `call_id`) to `to`, waiting for its reply.
    pub fn request(&mut self, to: Pid, call_id: u64, env: Envelope) -> Effects {
        if self.exited || to == self.me() {
            return Effects::default();
        }
        self.next_token += 1;
        let token = self.next_token;
        if self.core.request(to, call_id, env, token).is_ok() {
            self.outstanding.insert(token);
        }
        self.drain()
    }

    /// This process makes a handle to a value stored on `owner`.
    pub fn create_ref(&mut self, owner: Pid) -> Effects {
        if self.exited {
            return Effects::default();
        }
        self.next_ref += 1;
        let id = RefId::new(self.me(), self.next_ref);
        self.core.ref_created(id, owner);
        self.held.push(id);
        self.drain()
    }

    /// Drops the `i`-th handle held (modulo how many are).
    pub fn drop_ref(&mut self, i: usize) -> Effects {
        if self.exited || self.held.is_empty() {
            return Effects::default();
        }
        let id = self.held.swap_remove(i % self.held.len());
        let at = self.at();
        self.core.ref_dropped(id, at);
        self.drain()
    }

    /// The connection to `pid` ends.
    pub fn lose(&mut self, pid: Pid) -> Effects {
        if self.exited || pid == self.me() {
            return Effects::default();
        }
        let at = self.at();
        self.core.handle_peer_lost(pid, "fuzz", at);
        self.drain()
    }

    /// Carries out the core's outputs and checks them.
    ///
    /// # Panics
    /// If the core answers a request twice or one it never had, or sends to itself.
    fn drain(&mut self) -> Effects {
        let mut e = Effects::default();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Transmit { to, .. } => {
                    assert_ne!(to, self.me(), "a message to the process itself");
                    e.transmits.push(to);
                }
                Output::Connect(info) => assert_ne!(info.pid, self.me(), "a connection to itself"),
                Output::Complete { waiter, .. } => {
                    assert!(
                        self.outstanding.remove(&waiter),
                        "request {waiter} answered {}",
                        if self.answered.contains(&waiter) {
                            "twice"
                        } else {
                            "though never made"
                        }
                    );
                    self.answered.insert(waiter);
                    e.completed.push(waiter);
                }
                Output::Run(run) => {
                    e.runs += 1;
                    self.running.push(run);
                }
                Output::Disconnect { pid, .. } => e.disconnects.push(pid),
                Output::Exit(_) => {
                    e.exit = true;
                    self.exited = true;
                    return e;
                }
                Output::Channel(_)
                | Output::Freed(..)
                | Output::Membership(_)
                | Output::Interrupted
                | Output::RemoteDoFailed(_) => {}
            }
        }
        e
    }
}

/// A payload of `n` bytes.
pub fn payload(n: usize) -> Bytes {
    Bytes::from(vec![0xA5; n])
}
