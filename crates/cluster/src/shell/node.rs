//! This process's node: the sans-IO [`Core`] behind a lock, the connections to the
//! other processes, and the pump that carries out the core's outputs.
//!
//! Every change goes through [`Node::with_core`]: it runs a step of the core, then
//! carries out what the core asked for. Transmits are queued on their connection
//! while the lock is still held — so each connection sends in the core's order (a
//! handle's registration goes ahead of the message that carries the handle) — and
//! written after it is released; everything else (completing waiters, running calls,
//! dropping freed values) happens after it is released too.
//!
//! `Drop` of a handle uses [`Node::record`] instead: it only changes the core and, if
//! that produced outputs, wakes the pump task, which carries them out. A drop never
//! writes to a socket or opens a connection.
//!
//! # Which node
//!
//! A [`Node`] is one process's membership of one cluster. Every process has a
//! default node ([`global`]) — the one a worker serves with, and the one the free
//! functions (`myid()`, `remotecall`, …) use — and a master may make more
//! ([`Node::new`], public as `Cluster::new`), each with its own workers. Handles
//! (`Future`, `RemoteChannel`) hold an `Arc` of the node they belong to.
//!
//! Code that runs *for* a node — a call it received, the decoding of a message it
//! received (a handle inside gets that node) — runs inside [`enter`], which makes it
//! the thread's [`current`] node; elsewhere the current node is the default one
//! (rayon's global pool and `ThreadPool::install` are the model).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
#[cfg(feature = "tls")]
use cohort_transport::tls::ClusterTls;
use cohort_transport::{ClusterManager, ManageEvent, WorkerConfig};
use cohort_wire::cookie::Cookie;
use cohort_wire::envelope::Splices;
use cohort_wire::ids::{Pid, RefId};
use cohort_wire::proto::{envelope::Kind, Envelope, RefRequestKind};
use parking_lot::{Mutex, MutexGuard, RwLock};
use tokio::sync::{oneshot, Notify};

use super::channel_ops::ChannelSlot;
use super::driver::Peer;
use crate::core::{Change, Core, Output, Reply};
use crate::error::{CallError, RemoteException};

/// How a waiting caller of this process is told its reply.
pub(crate) type Waiter = oneshot::Sender<Reply>;

/// The core as this shell instantiates it.
pub(crate) type NodeCore = Core<Waiter, ChannelSlot>;

/// The manager that launched a worker, and its config (master only).
pub(crate) type Managed = (Arc<dyn ClusterManager>, WorkerConfig);

/// The weak handles of the references this node holds, by id (see
/// `api::future::live`).
pub(crate) type LiveTable = Mutex<HashMap<RefId, Weak<dyn Any + Send + Sync>>>;

/// One process's membership of one cluster: the core and the I/O around it.
pub(crate) struct Node {
    /// Tells nodes of one process apart (in the serialization context).
    pub(crate) id: u64,
    /// This node, for the tasks it spawns (which hold it only weakly or while they
    /// run).
    me_arc: Weak<Node>,
    core: Mutex<NodeCore>,
    /// The core's pid and role, mirrored for reads without its lock (they change once,
    /// when a worker joins, before it serves anything).
    me: AtomicU32,
    worker: AtomicBool,
    cookie: RwLock<Cookie>,
    pub(crate) master_hostname: RwLock<String>,
    /// The connections by pid (the one this process sends on).
    pub(crate) peers: RwLock<HashMap<Pid, Arc<Peer>>>,
    /// Connections only read from (the second of two made at once between the same
    /// two processes), so that they can be cut too.
    pub(crate) read_only: Mutex<Vec<Weak<Peer>>>,
    /// Master only: the manager that launched each worker, and its config.
    pub(crate) managed: RwLock<HashMap<Pid, Managed>>,
    /// Wakes the pump task (outputs recorded by a `Drop`); shared with the task,
    /// which holds the node itself only weakly.
    pump: Arc<Notify>,
    /// The deadline the timer task sleeps to (it publishes it; see `shell::timer`).
    pub(crate) timer: Mutex<Option<Instant>>,
    /// Wakes the timer task (started on first use) to read the core's deadline again.
    pub(crate) timer_wake: OnceLock<Arc<Notify>>,
    /// Interrupts received (mirrors the core, read without its lock by `interrupted`).
    pub(crate) interrupts: AtomicU64,
    /// The next reference and call ids this process makes: counters outside the
    /// core, so that making a call takes the core's lock once, not three times.
    next_ref: AtomicU64,
    next_call: AtomicU64,
    /// Outcomes of calls whose runner found the core's lock taken (see
    /// [`Node::finish_call`]), and whether there are any.
    finished: Mutex<Vec<(u64, Result<Bytes, RemoteException>)>>,
    finished_waiting: AtomicBool,
    /// One handle per reference held here (see `api::future::live`).
    pub(crate) live: LiveTable,
    /// The TLS credentials of this node's connections, once TLS is on.
    #[cfg(feature = "tls")]
    pub(crate) tls: RwLock<Option<ClusterTls>>,
    /// Serializes the join phase of `addprocs`: each new worker is told a consistent
    /// membership.
    pub(crate) join_lock: tokio::sync::Mutex<()>,
    /// Counts membership changes (a worker joined or left), for waiters.
    pub(crate) membership: tokio::sync::watch::Sender<u64>,
    /// On a worker given one ([`WorkerOptions::manager`](crate::WorkerOptions)):
    /// the manager it connects to other workers through; `None`: TCP.
    pub(crate) peer_manager: RwLock<Option<Arc<dyn ClusterManager>>>,
    /// How long a connection's set-up (TLS and the cookie handshake) may take, in
    /// milliseconds (`COHORT_HANDSHAKE_TIMEOUT`, or 10 s).
    handshake_timeout_ms: AtomicU64,
    /// The largest frame this node sends or accepts after the handshake
    /// (`COHORT_MAX_FRAME`, or 1 GiB); see [`crate::Cluster::set_max_frame`].
    max_frame: AtomicUsize,
    /// What this node records for a dashboard (`crate::observe`).
    pub(crate) observe: super::observe::Observer,
    /// A large receive buffer given back, for the next large message (`spare`).
    pub(crate) spare: Arc<super::spare::SpareBuffer>,
    /// The function states other processes keep here (`crate::captures`).
    pub(crate) kept: crate::captures::KeptStates,
    /// How many bytes of function state this node lets each callee keep for it
    /// ([`crate::Cluster::set_capture_budget`]); 0: none.
    capture_budget: AtomicUsize,
}

/// The default node of this process: a worker's only one, and the one the free
/// functions use unless code runs [inside](enter) another.
pub(crate) fn global() -> &'static Arc<Node> {
    NODE.get_or_init(Node::new)
}

/// The default node, once made.
static NODE: OnceLock<Arc<Node>> = OnceLock::new();

thread_local! {
    /// The node code on this thread runs for, if not the default one.
    static CURRENT: RefCell<Option<Arc<Node>>> = const { RefCell::new(None) };
}

/// The node this thread works for: the one [`enter`]ed, else the default one.
pub(crate) fn current() -> Arc<Node> {
    CURRENT
        .with(|c| c.borrow().clone())
        .unwrap_or_else(|| global().clone())
}

/// Runs `f` with `node` as the thread's [`current`] node (restored afterwards, also
/// when `f` panics).
pub(crate) fn enter<R>(node: &Arc<Node>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<Node>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    // The common case — the default node, with none other entered — needs no change
    // (and no reference count traffic on the node every call shares).
    if CURRENT.with(|c| c.borrow().is_none()) && NODE.get().is_some_and(|g| Arc::ptr_eq(g, node)) {
        return f();
    }
    let _restore = Restore(CURRENT.with(|c| c.borrow_mut().replace(node.clone())));
    f()
}

/// `t` in whole milliseconds, at least 1 (a zero timeout would refuse everything).
pub(crate) fn duration_ms(t: Duration) -> u64 {
    u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
}

static NEXT_NODE_ID: AtomicU64 = AtomicU64::new(1);

impl Node {
    /// A new node: a master with no workers yet, its cookie random.
    pub(crate) fn new() -> Arc<Node> {
        crate::panics::install_hook();
        super::serve::keep_worker_hook();
        let node = Arc::new_cyclic(|me| Node {
            id: NEXT_NODE_ID.fetch_add(1, Ordering::Relaxed),
            me_arc: me.clone(),
            core: Mutex::new({
                let mut core = Core::new();
                core.set_heartbeat(crate::api::liveness::heartbeat_from_env(), Instant::now());
                core
            }),
            me: AtomicU32::new(cohort_wire::ids::MASTER),
            worker: AtomicBool::new(false),
            cookie: RwLock::new(Cookie::random()),
            master_hostname: RwLock::new(cohort_transport::listen::group_hostname()),
            peers: RwLock::new(HashMap::new()),
            read_only: Mutex::new(Vec::new()),
            managed: RwLock::new(HashMap::new()),
            pump: Arc::new(Notify::new()),
            timer: Mutex::new(None),
            timer_wake: OnceLock::new(),
            interrupts: AtomicU64::new(0),
            next_ref: AtomicU64::new(1),
            next_call: AtomicU64::new(1),
            finished: Mutex::new(Vec::new()),
            finished_waiting: AtomicBool::new(false),
            live: Mutex::new(HashMap::new()),
            #[cfg(feature = "tls")]
            tls: RwLock::new(None),
            join_lock: tokio::sync::Mutex::const_new(()),
            membership: tokio::sync::watch::Sender::new(0),
            peer_manager: RwLock::new(None),
            handshake_timeout_ms: AtomicU64::new(duration_ms(
                super::accept::handshake_timeout_from_env(),
            )),
            max_frame: AtomicUsize::new(crate::api::limits::max_frame_from_env()),
            observe: Default::default(),
            spare: Default::default(),
            kept: Default::default(),
            capture_budget: AtomicUsize::new(crate::captures::DEFAULT_CAPTURE_BUDGET),
        });
        // The pump holds the node weakly: it ends when the node goes.
        let weak = Arc::downgrade(&node);
        let pump = node.pump.clone();
        super::runtime::handle().spawn(async move {
            loop {
                pump.notified().await;
                let Some(n) = weak.upgrade() else { return };
                n.with_core(|_| ());
            }
        });
        node
    }

    /// How long a connection's set-up (TLS and the cookie handshake) may take.
    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms.load(Ordering::Relaxed))
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub(crate) fn set_handshake_timeout(&self, t: Duration) {
        self.handshake_timeout_ms
            .store(duration_ms(t), Ordering::Relaxed);
    }

    /// The largest frame this node sends or accepts after the handshake.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame.load(Ordering::Relaxed)
    }

    /// Sets [`max_frame`](Self::max_frame).
    pub(crate) fn set_max_frame(&self, bytes: usize) {
        self.max_frame.store(
            crate::api::limits::clamp_max_frame(bytes),
            Ordering::Relaxed,
        );
    }

    /// How many bytes of function state each callee may keep for this node.
    pub(crate) fn capture_budget(&self) -> usize {
        self.capture_budget.load(Ordering::Relaxed)
    }

    /// Sets [`capture_budget`](Self::capture_budget).
    pub(crate) fn set_capture_budget(&self, bytes: usize) {
        self.capture_budget.store(bytes, Ordering::Relaxed);
    }

    /// This node, held weakly (by what the node itself keeps alive).
    pub(crate) fn weak(&self) -> Weak<Node> {
        self.me_arc.clone()
    }

    /// This node as an `Arc`, for tasks and handles it makes.
    pub(crate) fn arc(&self) -> Arc<Node> {
        self.me_arc
            .upgrade()
            .expect("a node is used only while something holds it")
    }
}

impl Drop for Node {
    /// The last handle to this cluster went (the default one never goes): its
    /// connections are shut, so its workers see their master leave and exit.
    fn drop(&mut self) {
        for peer in self.peers.get_mut().values() {
            peer.close("the cluster was dropped");
        }
    }
}

impl Node {
    /// Runs one step of the core and carries out its outputs (see the module docs).
    pub(crate) fn with_core<R>(&self, step: impl FnOnce(&mut NodeCore) -> R) -> R {
        let r = self.run_step(self.core.lock(), step);
        self.finish_waiting();
        r
    }

    /// Runs `step` on the held core (after the calls that finished while it was
    /// held elsewhere), carries out its outputs, and lets the lock go.
    fn run_step<R>(
        &self,
        mut core: MutexGuard<'_, NodeCore>,
        step: impl FnOnce(&mut NodeCore) -> R,
    ) -> R {
        if self.finished_waiting.swap(false, Ordering::Acquire) {
            let finished = std::mem::take(&mut *self.finished.lock());
            let now = Instant::now();
            for (seq, outcome) in finished {
                core.finish_call(seq, outcome, now);
            }
        }
        let r = step(&mut core);
        if !core.has_output() {
            // No output, but maybe a new deadline (a join starts the heartbeats): the
            // timer must hear of it, or it never fires.
            let deadline = core.new_deadline();
            drop(core);
            if let Some(at) = deadline {
                self.arm_timer(at);
            }
            return r;
        }
        let mut later = Vec::new();
        let mut to_flush: Vec<Arc<Peer>> = Vec::new();
        let mut to_cut: Vec<(Pid, String, Option<Arc<Peer>>)> = Vec::new();
        while let Some(o) = core.poll_output() {
            match o {
                Output::Transmit { to, env, splices } => {
                    if let Some(p) = self.enqueue(to, env, splices) {
                        if !to_flush.iter().any(|q| Arc::ptr_eq(q, &p)) {
                            to_flush.push(p);
                        }
                    }
                }
                Output::Connect(info) => {
                    // Made here, under the lock, so that transmits after it wait in
                    // the new connection's queue.
                    Peer::connect_lazily(self, info.pid, info);
                }
                Output::Interrupted => {
                    self.interrupts
                        .store(core.interrupt_generation(), Ordering::Release);
                }
                Output::Disconnect { pid, reason } => {
                    // Out of the table here, under the lock, so that a connection made
                    // to `pid` after this (a lazy one, later in this very step) is not
                    // the one cut.
                    let peer = self.peers.write().remove(&pid);
                    to_cut.push((pid, reason, peer));
                }
                other => later.push(other),
            }
        }
        let deadline = core.poll_timeout();
        core.new_deadline();
        drop(core);
        for p in to_flush {
            p.flush();
        }
        for (pid, reason, peer) in to_cut {
            self.cut(pid, &reason, peer);
        }
        for o in later {
            self.perform(o);
        }
        if let Some(at) = deadline {
            self.arm_timer(at);
        }
        r
    }

    /// A call run here finished: its outcome goes to the core. A call runner never
    /// waits for the core's lock — a reader handling a burst of calls holds it often,
    /// and a runner that slept on it each time cost a context switch per call. If
    /// the lock is taken, the outcome waits in `finished`, and whoever holds the lock
    /// hands it to the core before letting go (or right after: see
    /// [`finish_waiting`](Self::finish_waiting)).
    pub(crate) fn finish_call(&self, seq: u64, outcome: Result<Bytes, RemoteException>) {
        self.finished.lock().push((seq, outcome));
        self.finished_waiting.store(true, Ordering::Release);
        self.finish_waiting();
    }

    /// Whether call outcomes wait in `finished`, read after a release of the core's
    /// lock: the fence orders that release before this read (see
    /// [`finish_waiting`](Self::finish_waiting)).
    fn outcomes_waiting(&self) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.finished_waiting.load(Ordering::Acquire)
    }

    /// Hands waiting outcomes to the core if its lock is free; called after every
    /// release of the lock.
    ///
    /// Why nothing is stranded: a runner stores `finished_waiting` and then tries
    /// the lock; a holder lets the lock go and then reads `finished_waiting`. The
    /// fence orders each side's write before its read, so either the runner finds
    /// the lock free, or the holder sees the flag (and, if a third thread took the
    /// lock meanwhile, that thread does the same when it lets go).
    fn finish_waiting(&self) {
        loop {
            if !self.outcomes_waiting() {
                return;
            }
            let Some(core) = self.core.try_lock() else {
                return;
            };
            self.run_step(core, |_| ());
        }
    }

    /// Runs one step of the core without doing any I/O on this thread: outputs it
    /// produced are carried out by the pump task. For `Drop`.
    pub(crate) fn record(&self, step: impl FnOnce(&mut NodeCore)) {
        let mut core = self.core.lock();
        step(&mut core);
        let wake = core.has_output();
        let deadline = core.poll_timeout();
        drop(core);
        // A drop does no I/O: outcomes that came while the lock was held here are
        // handed over by the pump, like the outputs.
        if wake || self.outcomes_waiting() {
            self.pump.notify_one();
        }
        if let Some(at) = deadline {
            self.arm_timer(at);
        }
    }

    /// A read-only look at the core.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&NodeCore) -> R) -> R {
        let r = f(&self.core.lock());
        // Outcomes that came meanwhile (see `finish_waiting`); handed over by the
        // pump, as a look does no I/O.
        if self.outcomes_waiting() {
            self.pump.notify_one();
        }
        r
    }

    fn enqueue(&self, to: Pid, env: Envelope, splices: Splices) -> Option<Arc<Peer>> {
        let peer = self.peers.read().get(&to).cloned();
        match peer {
            Some(p) => p.enqueue(env, splices).then_some(p),
            None => {
                tracing::debug!(pid = to, "message to a process with no connection dropped");
                None
            }
        }
    }

    fn perform(&self, o: Output<Waiter, ChannelSlot>) {
        match o {
            Output::Complete { waiter, reply } => {
                let _ = waiter.send(reply);
            }
            Output::Run(run) => super::execute::run_call(&self.arc(), run),
            Output::Channel(op) => super::channel_ops::run(self.arc(), op),
            Output::Freed(_, slot) => drop(slot),
            Output::Membership(change) => {
                self.membership.send_modify(|g| *g += 1);
                if let Change::Removed(pid) = change {
                    if let Some((manager, config)) = self.managed.write().remove(&pid) {
                        super::runtime::handle().spawn(async move {
                            manager.manage(pid, &config, ManageEvent::Deregister);
                            manager.kill(pid, &config).await;
                        });
                    }
                }
            }
            Output::RemoteDoFailed(e) => eprintln!("error in remote_do {e}"),
            Output::Exit(code) => {
                tracing::info!("leaving the cluster; worker exiting");
                std::process::exit(code);
            }
            Output::Transmit { .. }
            | Output::Connect(_)
            | Output::Interrupted
            | Output::Disconnect { .. } => {
                unreachable!("carried out under the lock")
            }
        }
    }

    /// The core has a deadline at `at`: wakes the timer task unless it already sleeps
    /// to that deadline or an earlier one (it reads the core's next deadline itself
    /// after each timeout; see `shell::timer`).
    pub(crate) fn arm_timer(&self, at: Instant) {
        if self.timer.lock().is_some_and(|armed| armed <= at) {
            return;
        }
        super::timer::wake(self);
    }

    /// The timer fired.
    pub(crate) fn handle_timeout(&self) {
        self.with_core(|c| c.handle_timeout(Instant::now()));
    }

    // ----- identity and membership -----

    pub(crate) fn myid(&self) -> Pid {
        self.me.load(Ordering::Acquire)
    }

    pub(crate) fn is_worker(&self) -> bool {
        self.worker.load(Ordering::Acquire)
    }

    /// This process joined the cluster as a worker (the master's `Join`).
    pub(crate) fn join_as_worker(&self, joined: crate::core::Joined) {
        let pid = joined.pid;
        self.with_core(|c| {
            c.handle_joined(joined, Instant::now());
            self.me.store(pid, Ordering::Release);
            self.worker.store(true, Ordering::Release);
        });
    }

    pub(crate) fn cookie(&self) -> Cookie {
        self.cookie.read().clone()
    }

    pub(crate) fn set_cookie(&self, c: Cookie) {
        *self.cookie.write() = c;
    }

    /// A fresh reference id, created by this process.
    pub(crate) fn new_ref(&self) -> cohort_wire::ids::RefId {
        RefId::new(self.myid(), self.next_ref.fetch_add(1, Ordering::Relaxed))
    }

    /// A fresh id for a request of this process (its reply carries it).
    pub(crate) fn new_call_id(&self) -> u64 {
        self.next_call.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn procs(&self) -> Vec<Pid> {
        self.peek(|c| c.membership().procs())
    }

    pub(crate) fn workers(&self) -> Vec<Pid> {
        self.peek(|c| c.membership().workers())
    }

    pub(crate) fn next_worker(&self) -> Pid {
        self.with_core(|c| c.next_worker())
    }

    // ----- sending -----

    /// The connection to `pid`, made now if the topology allows a lazy one.
    ///
    /// # Errors
    /// As [`Node::send`].
    pub(crate) fn peer(&self, pid: Pid) -> Result<Arc<Peer>, CallError> {
        if let Some(p) = self.peers.read().get(&pid) {
            return Ok(p.clone());
        }
        self.with_core(|c| c.check_route(pid))?;
        self.peers
            .read()
            .get(&pid)
            .cloned()
            .ok_or(CallError::WorkerExited {
                pid,
                reason: "connection closed".into(),
            })
    }

    /// Sends `env` to `pid` (a local pid is an error: callers run local work directly).
    ///
    /// # Errors
    /// [`CallError::WorkerExited`], [`CallError::NoSuchProcess`],
    /// [`CallError::TopologyForbids`].
    pub(crate) fn send(&self, pid: Pid, env: Envelope) -> Result<(), CallError> {
        self.send_spliced(pid, env, Splices::default())
    }

    /// [`send`](Self::send) with `splices` in the payload of `env` (a call whose
    /// arguments hold shared buffers, `codec::serialize_shared`).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub(crate) fn send_spliced(
        &self,
        pid: Pid,
        env: Envelope,
        splices: Splices,
    ) -> Result<(), CallError> {
        self.with_core(|c| c.send_spliced(pid, env, splices))
    }

    /// Sends a `remotecall` (`CALL_PUSH`) whose result is `id`, stored on `pid`: in
    /// one step, this process's handle to `id` is recorded and the waiter for the
    /// result that comes back unasked registered.
    ///
    /// # Errors
    /// As [`send`](Self::send); then nothing is recorded.
    pub(crate) fn start_call_push(
        &self,
        pid: Pid,
        call_id: u64,
        id: RefId,
        env: Envelope,
        splices: Splices,
    ) -> Result<oneshot::Receiver<Reply>, CallError> {
        let (tx, rx) = oneshot::channel();
        self.with_core(|c| {
            c.request_spliced(pid, call_id, env, splices, tx)?;
            c.ref_created(id, pid);
            Ok(rx)
        })
    }

    /// Registers the reply waiter for request `call_id` and sends it; the reply comes
    /// to the receiver returned.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    fn start_request(
        &self,
        pid: Pid,
        call_id: u64,
        env: Envelope,
        splices: Splices,
    ) -> Result<oneshot::Receiver<Reply>, CallError> {
        let (tx, rx) = oneshot::channel();
        self.with_core(|c| c.request_spliced(pid, call_id, env, splices, tx))?;
        Ok(rx)
    }

    /// A request/response exchange with `pid`: registers the reply waiter, sends, waits.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request: its waiter is removed, and a reply
    /// that comes later is dropped. What the request did on the peer stands — except
    /// for a channel `TAKE`, which loses nothing: the owner is told to stop it, and a
    /// value it removed anyway (the reply was on its way, or already here but not
    /// yet seen by the caller) is put back at the front of the channel.
    pub(crate) async fn request(&self, pid: Pid, call_id: u64, env: Envelope) -> Reply {
        self.request_spliced(pid, call_id, env, Splices::default())
            .await
    }

    /// [`request`](Self::request) with `splices` in the payload of `env`.
    ///
    /// # Cancel safety
    /// As [`request`](Self::request).
    pub(crate) async fn request_spliced(
        &self,
        pid: Pid,
        call_id: u64,
        env: Envelope,
        splices: Splices,
    ) -> Reply {
        let take = match &env.kind {
            Some(Kind::RefRequest(r)) if r.kind() == RefRequestKind::Take => {
                r.ref_id.map(RefId::from)
            }
            _ => None,
        };
        let rx = self.start_request(pid, call_id, env, splices)?;
        let mut guard = Abandon {
            node: self,
            call_id,
            pid,
            take,
            rx: Some(rx),
        };
        let r = guard.rx.as_mut().expect("set above").await;
        guard.rx = None;
        r.unwrap_or_else(|_| Err(lost(pid)))
    }

    /// A request on a value this process owns; `waiter` gets the reply.
    pub(crate) fn local_request(
        &self,
        id: cohort_wire::ids::RefId,
        kind: cohort_wire::proto::RefRequestKind,
        value: bytes::Bytes,
    ) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        self.with_core(|c| c.local_request(id, kind, value, tx, Instant::now()));
        rx
    }

    /// Ends every connection to `pid` now — the one sent on (`peer`, already out of
    /// the table) and any only read from — without waiting for the peer: its readers
    /// stop, and our side is shut down. For a peer the core declared unresponsive (a
    /// stopped process sends no end of connection, so its reader would wait forever).
    fn cut(&self, pid: Pid, reason: &str, peer: Option<Arc<Peer>>) {
        if let Some(p) = peer {
            p.abort(reason);
        }
        let mut read_only = self.read_only.lock();
        read_only.retain(|w| match w.upgrade() {
            Some(p) if p.pid == pid => {
                p.abort(reason);
                false
            }
            Some(_) => true,
            None => false,
        });
    }

    /// A connection is gone: if it was the one this process sends on, the core fails
    /// what waited on it and forgets its references.
    pub(crate) fn peer_lost(&self, pid: Pid, peer: &Arc<Peer>, reason: &str) {
        let removed = {
            let mut peers = self.peers.write();
            if peers.get(&pid).is_some_and(|p| Arc::ptr_eq(p, peer)) {
                peers.remove(&pid);
                true
            } else {
                false
            }
        };
        if !removed {
            // A second, read-only connection to the same peer; the first is still up.
            return;
        }
        tracing::debug!(pid, reason, "peer lost");
        self.kept.forget_peer(pid);
        self.observe.peer_lost(pid, reason);
        self.with_core(|c| c.handle_peer_lost(pid, reason, Instant::now()));
    }
}

/// Abandons a request whose future was dropped before its reply came.
struct Abandon<'a> {
    node: &'a Node,
    call_id: u64,
    pid: Pid,
    /// For a channel `TAKE`: the channel, to put back a value that came.
    take: Option<RefId>,
    /// `None` once the caller has its reply.
    rx: Option<oneshot::Receiver<Reply>>,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let call_id = self.call_id;
        let mut pending = false;
        self.node.record(|c| pending = c.abandon(call_id));
        if pending {
            // The core stops a take and puts back what comes for it.
            return;
        }
        let Some(id) = self.take else {
            return;
        };
        // The reply was handed to this waiter already: a value is put back.
        let owner = self.pid;
        match rx.try_recv() {
            Ok(Ok(value)) => self.node.record(|c| c.put_back(owner, id, value)),
            Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {}
            Err(oneshot::error::TryRecvError::Empty) => {
                // On its way from another thread (taken out of the core, not sent yet).
                let node = self.node.arc();
                super::runtime::handle().spawn(async move {
                    if let Ok(Ok(value)) = rx.await {
                        node.with_core(|c| c.put_back(owner, id, value));
                    }
                });
            }
        }
    }
}

fn lost(pid: Pid) -> CallError {
    CallError::WorkerExited {
        pid,
        reason: "connection closed".into(),
    }
}

/// The reference store's commands, as the handles use them.
pub(crate) struct StoreHandle<'a>(&'a Node);

impl Node {
    /// The reference store of this process.
    pub(crate) fn store(&self) -> StoreHandle<'_> {
        StoreHandle(self)
    }
}

impl StoreHandle<'_> {
    /// This process made a handle to `id`, stored on `owner`.
    pub(crate) fn created(&self, id: RefId, owner: Pid) {
        self.0.record(|c| c.ref_created(id, owner));
    }

    /// The last local handle to `id` went. Only records the event (it runs in `Drop`).
    pub(crate) fn dropped(&self, id: RefId) {
        self.0.record(|c| c.ref_dropped(id, Instant::now()));
    }

    pub(crate) fn released(&self, id: RefId) {
        self.0.with_core(|c| c.ref_released(id, Instant::now()));
    }

    /// A handle to `id` is about to travel to `dest`: its registration is queued
    /// ahead of anything sent after this returns.
    pub(crate) fn serialized(&self, id: RefId, dest: Pid) {
        self.0
            .with_core(|c| c.ref_serialized(id, dest, Instant::now()));
    }

    pub(crate) fn deserialized(&self, id: RefId, owner: Pid, fresh_handle: bool) {
        self.0
            .with_core(|c| c.ref_deserialized(id, owner, fresh_handle, Instant::now()));
    }

    /// A request by this process on a value it owns.
    pub(crate) fn request(
        &self,
        id: RefId,
        kind: RefRequestKind,
        value: Bytes,
    ) -> oneshot::Receiver<Reply> {
        self.0.local_request(id, kind, value)
    }

    /// Stores the value of `id` here.
    ///
    /// # Errors
    /// [`CallError::AlreadySet`].
    pub(crate) fn set(
        &self,
        id: RefId,
        value: Result<Bytes, crate::error::RemoteException>,
    ) -> Result<(), CallError> {
        self.0.with_core(|c| c.set_value(id, value, Instant::now()))
    }

    /// A put to channel `id` on `owner`, sent at once within a credit (`Ok`);
    /// without one, the value back with how many credits to ask for.
    ///
    /// # Errors
    /// `(value, want)` when no credit is held.
    pub(crate) fn put_credited(
        &self,
        owner: Pid,
        id: RefId,
        value: Bytes,
    ) -> Result<(), (Bytes, u32)> {
        self.0.with_core(|c| c.put_credited(owner, id, value))
    }

    /// This process is done with channel `id`: its credits go back to the owner.
    /// Only records the event (it runs in `Drop`); the return goes out with the
    /// next step of the core.
    pub(crate) fn forget_credits(&self, id: RefId) {
        self.0.record(|c| c.forget_credits(id));
    }

    pub(crate) fn install_channel(&self, id: RefId, slot: ChannelSlot) {
        self.0.with_core(|c| c.install_channel(id, slot));
    }

    pub(crate) fn channel(&self, id: RefId) -> Option<ChannelSlot> {
        self.0.peek(|c| c.channel(id))
    }

    pub(crate) fn stats(&self) -> cohort_refs::RefStats {
        self.0.peek(|c| c.ref_stats())
    }

    /// Sends every queued reference message now.
    pub(crate) fn flush_all(&self) {
        self.0.with_core(|c| c.flush_refs(Instant::now()));
    }
}
