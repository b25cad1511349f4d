//! Each process's SPMD state: the contexts it takes part in (each with its mailbox
//! and its context-local storage) and the runs going on here.
//!
//! **Why sequence numbers.** Messages travel as `remote_do` calls on the connection
//! from sender to receiver, which keeps their order, but the receiver runs a large
//! one on a pool of threads (a small one where it arrives: `deliver` is registered
//! inline), so two deliveries may *run* in either order. Each
//! sender numbers its messages per context and receiver; the mailbox puts early
//! ones aside until the gap before them is filled. Messages from one sender are
//! therefore matched in the order sent, across all tags.
//!
//! **Why waits cannot starve the runner pool.** A delivery only takes the mailbox's
//! lock, appends and wakes the waiters; it never waits. The waiting itself
//! (`recvfrom`, `barrier`) happens on the run's own thread, not on one of cohort's
//! call runners, so a blocked receiver never keeps the very delivery it waits for
//! from running (see `run.rs`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use cohort_cluster::registry::{RemoteFnEntry, REMOTE_FUNCTIONS};
use cohort_cluster::{Cluster, Pid};
use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use super::context::ContextStorage;
use super::error::SpmdError;
use super::tag::Key;
use super::wire::Chunk;

/// A context's id: the process that made it and a number unique there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct CtxId {
    pub(crate) creator: Pid,
    pub(crate) n: u64,
}

/// A run's id, as [`CtxId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct RunId {
    pub(crate) driver: Pid,
    pub(crate) n: u64,
}

/// A fresh number for an id made on this process.
pub(crate) fn fresh() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One message waiting in a mailbox.
type Payload = bytes::Bytes;

/// A context's messages on this process.
#[derive(Default)]
pub(crate) struct Mailbox {
    /// The next sequence number to give a message to each receiver.
    send_seq: HashMap<Pid, u64>,
    /// The next sequence number expected from each sender.
    recv_next: HashMap<Pid, u64>,
    /// Messages that ran ahead of an earlier one from the same sender.
    early: HashMap<Pid, BTreeMap<u64, (Key, usize, Payload)>>,
    /// Messages in order, by sender and key.
    queues: HashMap<(Pid, Key), VecDeque<Payload>>,
    /// For `recvfrom_any`: the sender served last for each key (round robin).
    any_last: HashMap<Key, Pid>,
    /// A large message whose first fragments came, by sender (its fragments are
    /// consecutive in the sender's numbering).
    partial: HashMap<Pid, Vec<u8>>,
    /// The memory of a large message this process is done with, for the next large
    /// reassembly or encoding of the run (see [`CtxState::give_back`]).
    spare: Option<Vec<u8>>,
    /// A buffer lent by a waiting `bcast_into` for the next message from one
    /// sender under one key ([`CtxState::receive_into`]).
    lent: Option<Lent>,
}

/// A buffer that a waiting `bcast_into` lent for the next message from `from` under
/// `key`: the message's fragments are copied straight into it as they come (under
/// the mailbox's lock), instead of into a reassembly buffer that is copied again.
pub(crate) struct Lent {
    from: Pid,
    key: Key,
    ptr: *mut u8,
    len: usize,
    filled: usize,
    done: bool,
}

// SAFETY: `ptr` points into a buffer that the lending thread holds mutably borrowed
// and does not touch until it has taken this `Lent` back out of the mailbox, under
// the mailbox's lock (`CtxState::receive_into`, also on unwind); every write through
// `ptr` happens under that lock, so by one thread at a time, within `len` bytes.
unsafe impl Send for Lent {}

impl Mailbox {
    /// Keeps the empty vector `v` as the spare if it is larger than the spare.
    fn keep_spare(&mut self, v: Vec<u8>) {
        if self
            .spare
            .as_ref()
            .is_none_or(|s| s.capacity() < v.capacity())
        {
            self.spare = Some(v);
        }
    }

    /// The next message from `from` with `key`.
    pub(crate) fn take(&mut self, from: Pid, key: &Key) -> Option<Payload> {
        let q = self.queues.get_mut(&(from, key.clone()))?;
        let m = q.pop_front();
        if q.is_empty() {
            self.queues.remove(&(from, key.clone()));
        }
        m
    }

    /// The next message with `key` from any of `pids`, taking senders in turn after
    /// the one served last (so a busy sender cannot starve the others).
    pub(crate) fn take_any(&mut self, pids: &[Pid], key: &Key) -> Option<(Pid, Payload)> {
        let start = match self.any_last.get(key) {
            Some(last) => pids.iter().position(|p| p == last).map_or(0, |i| i + 1),
            None => 0,
        };
        for i in 0..pids.len() {
            let p = pids[(start + i) % pids.len()];
            if let Some(m) = self.take(p, key) {
                self.any_last.insert(key.clone(), p);
                return Some((p, m));
            }
        }
        None
    }

    /// Takes in the next message (or fragment, of a message `total` bytes long)
    /// from `from`, in order; a large reassembled message becomes `ctx`'s spare when
    /// the last holder of its bytes is done ([`Recycled`]).
    fn accept(
        &mut self,
        from: Pid,
        key: Key,
        total: usize,
        payload: Payload,
        ctx: &Weak<CtxState>,
    ) {
        if let Some(l) = self.lent.as_mut() {
            let end = l.filled + payload.len();
            // The lent buffer's message: the next one from `from` under `key`, of
            // the buffer's length (another length goes the usual way, and its
            // receiver reports it), not begun before the buffer was lent.
            if !l.done
                && l.from == from
                && l.key == key
                && total == l.len
                && end <= l.len
                && !self.partial.contains_key(&from)
            {
                // SAFETY: within the lent buffer (`end <= len`), under the mailbox's
                // lock; see `Lent`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        payload.as_ptr(),
                        l.ptr.add(l.filled),
                        payload.len(),
                    );
                }
                l.filled = end;
                l.done = end == total;
                return;
            }
        }
        let mut buf = match self.partial.remove(&from) {
            // A whole message: kept as it came (a large one in its own memory).
            None if payload.len() == total => {
                self.queues
                    .entry((from, key))
                    .or_default()
                    .push_back(payload);
                return;
            }
            // The spare, if it is large enough; else fresh memory that the message
            // fills at once, on huge pages.
            None => match self.spare.take() {
                Some(v) if v.capacity() >= total => v,
                _ => cohort_cluster::codec::large_vec(total),
            },
            Some(buf) => buf,
        };
        buf.extend_from_slice(&payload);
        if buf.len() < total {
            self.partial.insert(from, buf);
        } else {
            self.queues
                .entry((from, key))
                .or_default()
                .push_back(Recycled::bytes(buf, ctx.clone()));
        }
    }

    fn queued(&self) -> usize {
        self.partial.len()
            + self.queues.values().map(VecDeque::len).sum::<usize>()
            + self.early.values().map(BTreeMap::len).sum::<usize>()
    }
}

/// One context on this process: its mailbox, the condition its waiters sleep on,
/// and its context-local storage.
pub(crate) struct CtxState {
    pub(crate) id: CtxId,
    /// Itself, for the buffers that return to its spare ([`Recycled`]).
    me: Weak<CtxState>,
    mailbox: Mutex<Mailbox>,
    arrived: Condvar,
    pub(crate) storage: ContextStorage,
    /// Whether a run's part is here, so that a buffer coming back may be kept (one
    /// that comes back after the run is freed instead).
    spare_open: AtomicBool,
}

/// A large buffer of a context shared by what holds its bytes — the messages that
/// carry it out (spliced into them, `codec::serialize_shared`) and the code that
/// decodes it: when the last of them lets go (the last fragment written, the
/// decoding done, in either order), the memory becomes the context's spare again,
/// for the next large message of the run. A `Bytes` cannot hand a shared buffer back
/// by itself ([`CtxState::give_back`] needs the only handle), so the owner does it.
pub(crate) struct Recycled {
    buf: Vec<u8>,
    ctx: Weak<CtxState>,
}

impl Recycled {
    /// `buf` as shared bytes that go back to `ctx`'s spare when the last handle
    /// goes (a small buffer as plain bytes).
    pub(crate) fn bytes(buf: Vec<u8>, ctx: Weak<CtxState>) -> bytes::Bytes {
        if buf.capacity() < SPARE_MIN {
            return bytes::Bytes::from(buf);
        }
        bytes::Bytes::from_owner(Recycled { buf, ctx })
    }
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.upgrade() {
            ctx.keep(std::mem::take(&mut self.buf));
        }
    }
}

/// Messages at least this large are worth a spare buffer.
const SPARE_MIN: usize = 1 << 20;

impl CtxState {
    /// The bytes of a large message this process has decoded or sent: kept, if no
    /// one else holds them, as the run's spare — the next large message of the
    /// context is reassembled, or encoded, in that memory, whose pages are already
    /// there, instead of in fresh memory that the kernel faults in and zeroes. The
    /// spare goes when the run's part here ends ([`CtxState::drop_spare`]).
    pub(crate) fn give_back(&self, bytes: bytes::Bytes) {
        let Ok(mut buf) = bytes.try_into_mut() else {
            return;
        };
        // Emptied first, so that the conversion moves no bytes.
        buf.clear();
        let v = Vec::from(buf);
        if v.capacity() >= SPARE_MIN {
            self.mailbox.lock().keep_spare(v);
        }
    }

    /// Keeps `v`'s memory as the spare, if a run's part is here, `v` is larger than
    /// the spare, and the mailbox is free now (a buffer let go while the mailbox is
    /// locked — on this thread, perhaps — is freed instead of waiting for it).
    fn keep(&self, mut v: Vec<u8>) {
        if v.capacity() < SPARE_MIN || !self.spare_open.load(Ordering::Acquire) {
            return;
        }
        v.clear();
        if let Some(mut mb) = self.mailbox.try_lock() {
            mb.keep_spare(v);
        }
    }

    /// Large encoded bytes of this context, going back to its spare when the last
    /// handle goes (see [`Recycled`]).
    pub(crate) fn recyclable(&self, buf: Vec<u8>) -> bytes::Bytes {
        Recycled::bytes(buf, self.me.clone())
    }

    /// A run's part here begins: buffers that come back are kept until it ends.
    pub(crate) fn open_spare(&self) {
        self.spare_open.store(true, Ordering::Release);
    }

    /// An empty buffer for a large encoding: the spare, if there is one.
    pub(crate) fn take_spare(&self) -> Vec<u8> {
        self.mailbox.lock().spare.take().unwrap_or_default()
    }

    /// The capacity of the spare, if there is one.
    fn spare_bytes(&self) -> usize {
        self.mailbox.lock().spare.as_ref().map_or(0, Vec::capacity)
    }

    /// Lets the spare go (the run's part here ended); buffers that come back later
    /// are freed.
    pub(crate) fn drop_spare(&self) {
        self.spare_open.store(false, Ordering::Release);
        let spare = self.mailbox.lock().spare.take();
        drop(spare);
    }

    /// The sequence number of the next message from here to `to`.
    pub(crate) fn next_send_seq(&self, to: Pid) -> u64 {
        let mut mb = self.mailbox.lock();
        let s = mb.send_seq.entry(to).or_insert(0);
        *s += 1;
        *s - 1
    }

    /// A message (or a fragment of one `total` bytes long) from `from`, numbered
    /// `seq`, arrived.
    pub(crate) fn deliver(&self, from: Pid, seq: u64, key: Key, total: usize, payload: Payload) {
        let mut mb = self.mailbox.lock();
        let next = *mb.recv_next.get(&from).unwrap_or(&0);
        if seq != next {
            mb.early
                .entry(from)
                .or_default()
                .insert(seq, (key, total, payload));
            return;
        }
        mb.accept(from, key, total, payload, &self.me);
        let mut next = next + 1;
        // The gap is filled: the messages that ran ahead follow, in order.
        if let Some(early) = mb.early.get_mut(&from) {
            let mut ready = Vec::new();
            while let Some(m) = early.remove(&next) {
                ready.push(m);
                next += 1;
            }
            if early.is_empty() {
                mb.early.remove(&from);
            }
            for (k, total, p) in ready {
                mb.accept(from, k, total, p, &self.me);
            }
        }
        mb.recv_next.insert(from, next);
        drop(mb);
        self.arrived.notify_all();
    }

    /// Wakes every waiter so it looks again (a process left, the run was aborted).
    pub(crate) fn wake(&self) {
        let _held = self.mailbox.lock();
        self.arrived.notify_all();
    }

    /// Waits for the next message from `from` under `key` and writes it into `buf`
    /// as its fragments come: `Ok(None)` once `buf` holds it, or `Ok(Some(bytes))`
    /// for a message that came the usual way — one already here or begun before
    /// this call, or one of another length than `buf` (the caller copies it or
    /// reports the length). On an error `buf` may hold part of the message.
    ///
    /// # Errors
    /// As [`wait_for`](Self::wait_for).
    pub(crate) fn receive_into(
        &self,
        run: &RunHere,
        from: Pid,
        key: &Key,
        buf: &mut [u8],
    ) -> Result<Option<Payload>, SpmdError> {
        {
            let mut mb = self.mailbox.lock();
            if let Some(m) = mb.take(from, key) {
                return Ok(Some(m));
            }
            if mb.partial.contains_key(&from) || mb.lent.is_some() {
                drop(mb);
                return self
                    .wait_for(run, &[from], |mb| mb.take(from, key))
                    .map(Some);
            }
            mb.lent = Some(Lent {
                from,
                key: key.clone(),
                ptr: buf.as_mut_ptr(),
                len: buf.len(),
                filled: 0,
                done: false,
            });
        }
        /// Takes the lent buffer back on every way out, unwinding included: no
        /// write into it follows.
        struct TakeBack<'a>(&'a CtxState);
        impl Drop for TakeBack<'_> {
            fn drop(&mut self) {
                self.0.mailbox.lock().lent = None;
            }
        }
        let _back = TakeBack(self);
        self.wait_for(run, &[from], |mb| {
            if mb.lent.as_ref().is_some_and(|l| l.done) {
                mb.lent = None;
                return Some(None);
            }
            mb.take(from, key).map(Some)
        })
    }

    /// Waits until `take` finds its message, failing when the run is aborted or one
    /// of `watch` leaves the cluster first. The waiter polls for a short while
    /// before it sleeps: a reply that comes within it costs no thread wake-up.
    pub(crate) fn wait_for<R>(
        &self,
        run: &RunHere,
        watch: &[Pid],
        mut take: impl FnMut(&mut Mailbox) -> Option<R>,
    ) -> Result<R, SpmdError> {
        let spin_until = Instant::now() + spin_budget();
        let mut mb = self.mailbox.lock();
        loop {
            if let Some(r) = take(&mut mb) {
                return Ok(r);
            }
            if run.aborted.load(Ordering::Acquire) {
                return Err(SpmdError::Aborted);
            }
            if Instant::now() < spin_until {
                MutexGuard::unlocked(&mut mb, std::thread::yield_now);
                continue;
            }
            // Looked at under the mailbox's lock, which the membership watcher takes
            // before it wakes us: a departure after this look wakes this wait.
            let procs = run.cluster.procs();
            if let Some(&gone) = watch.iter().find(|p| !procs.contains(p)) {
                return Err(SpmdError::PeerExited { pid: gone });
            }
            self.arrived.wait(&mut mb);
        }
    }

    fn queued(&self) -> usize {
        self.mailbox.lock().queued()
    }
}

/// How long a waiter polls before it sleeps, from `COHORT_SPMD_SPIN_US`
/// (microseconds; default 20, 0 turns polling off).
fn spin_budget() -> Duration {
    static SPIN: OnceLock<Duration> = OnceLock::new();
    *SPIN.get_or_init(|| {
        let us = std::env::var("COHORT_SPMD_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(20);
        Duration::from_micros(us)
    })
}

/// A run's part on this process, reached by the primitives through a thread-local.
pub(crate) struct RunHere {
    pub(crate) id: RunId,
    pub(crate) ctx: Arc<CtxState>,
    pub(crate) pids: Vec<Pid>,
    pub(crate) myid: Pid,
    pub(crate) cluster: Cluster,
    /// Set when the driver stops the run (another process failed).
    pub(crate) aborted: AtomicBool,
}

impl RunHere {
    /// This process's index in the run's pids.
    pub(crate) fn rank(&self) -> usize {
        self.pids
            .iter()
            .position(|p| *p == self.myid)
            .expect("a run's process is among its pids")
    }

    /// Checks that `pid` takes part in the run.
    pub(crate) fn member(&self, pid: Pid) -> Result<(), SpmdError> {
        if self.pids.contains(&pid) {
            Ok(())
        } else {
            Err(SpmdError::NotAMember {
                pid,
                pids: self.pids.clone(),
            })
        }
    }
}

#[derive(Default)]
struct Tables {
    contexts: HashMap<CtxId, Arc<CtxState>>,
    /// Contexts released here lately: a late message for one is dropped rather
    /// than bringing it back (bounded).
    released: VecDeque<CtxId>,
    released_set: HashSet<CtxId>,
    runs: HashMap<RunId, Arc<RunHere>>,
}

const RELEASED_REMEMBERED: usize = 4096;

fn tables() -> &'static Mutex<Tables> {
    static T: OnceLock<Mutex<Tables>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// The context `id` on this process, made at its first use here. `None` if it was
/// released here lately.
pub(crate) fn ctx_state(id: CtxId) -> Option<Arc<CtxState>> {
    let mut t = tables().lock();
    if t.released_set.contains(&id) {
        return None;
    }
    Some(
        t.contexts
            .entry(id)
            .or_insert_with(|| {
                Arc::new_cyclic(|me| CtxState {
                    id,
                    me: me.clone(),
                    mailbox: Mutex::default(),
                    arrived: Condvar::new(),
                    storage: ContextStorage::default(),
                    spare_open: AtomicBool::new(false),
                })
            })
            .clone(),
    )
}

/// Frees context `id` here: its mailbox and its storage.
pub(crate) fn release(id: CtxId) {
    let mut t = tables().lock();
    t.contexts.remove(&id);
    if t.released_set.insert(id) {
        t.released.push_back(id);
        if t.released.len() > RELEASED_REMEMBERED {
            if let Some(old) = t.released.pop_front() {
                t.released_set.remove(&old);
            }
        }
    }
}

pub(crate) fn register_run(run: Arc<RunHere>) {
    tables().lock().runs.insert(run.id, run);
}

pub(crate) fn unregister_run(id: RunId) {
    tables().lock().runs.remove(&id);
}

/// The driver stops run `id` here: its waits wake with [`SpmdError::Aborted`].
pub(crate) fn abort(id: RunId) {
    let run = tables().lock().runs.get(&id).cloned();
    if let Some(run) = run {
        run.aborted.store(true, Ordering::Release);
        run.ctx.wake();
    }
}

/// A message for context `ctx` from `from`.
pub(crate) fn deliver(ctx: CtxId, from: Pid, seq: u64, key: Key, total: u64, payload: Chunk) {
    if let Some(c) = ctx_state(ctx) {
        c.deliver(from, seq, key, total as usize, payload.into_bytes());
    }
}

/// What SPMD holds on one process: tests assert that nothing is left.
///
/// ```
/// let s = cohort_darray::spmd::local_stats();
/// assert_eq!(s.runs, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpmdStats {
    /// Contexts with state here (a mailbox, context-local storage).
    pub contexts: usize,
    /// Runs whose function runs here now.
    pub runs: usize,
    /// Messages received here and not taken yet.
    pub queued_messages: usize,
    /// Entries in the context-local storage of all contexts here.
    pub stored_values: usize,
    /// Bytes kept for the next large message of a run here (the memory of the last
    /// one; let go when the run's part here ends).
    pub spare_bytes: usize,
}

/// This process's [`SpmdStats`]; on another process:
/// `remotecall_fetch(cohort_darray::spmd::local_stats, pid, ())`.
///
/// ```
/// assert_eq!(cohort_darray::spmd::local_stats().contexts, 0);
/// ```
pub fn local_stats() -> SpmdStats {
    let t = tables().lock();
    SpmdStats {
        contexts: t.contexts.len(),
        runs: t.runs.len(),
        queued_messages: t.contexts.values().map(|c| c.queued()).sum(),
        stored_values: t.contexts.values().map(|c| c.storage.len()).sum(),
        spare_bytes: t.contexts.values().map(|c| c.spare_bytes()).sum(),
    }
}

// Registered by name, so that processes running different executables agree on them.
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static DELIVER: fn() -> RemoteFnEntry = || {
    // Inline: it only hands the message to the mailbox, so it runs on the reader it
    // arrives on, saving the hand-off to a call runner (a task and a thread wake-up)
    // on every message's path.
    RemoteFnEntry::of::<_, (CtxId, Pid, u64, Key, u64, Chunk)>(
        "cohort_darray::spmd::deliver",
        &deliver,
    )
    .inline()
};
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static ABORT: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (RunId,)>("cohort_darray::spmd::abort", &abort);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static RELEASE: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (CtxId,)>("cohort_darray::spmd::release", &release);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static LOCAL_STATS: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, ()>("cohort_darray::spmd::local_stats", &local_stats);

/// The remote functions, for the other modules.
pub(crate) mod remote {
    pub(crate) use super::{abort, deliver, release};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_buffer_shared_by_messages_becomes_the_spare_when_the_last_holder_goes() {
        let ctx = ctx_state(CtxId {
            creator: 1,
            n: u64::MAX,
        })
        .expect("a fresh context");
        ctx.open_spare();
        let bytes = ctx.recyclable(vec![7u8; 2 << 20]);
        let fragment = bytes.slice(10..(1 << 20));
        drop(bytes);
        assert_eq!(ctx.spare_bytes(), 0, "a fragment still holds it");
        drop(fragment);
        assert!(ctx.spare_bytes() >= 2 << 20, "the last holder gave it back");
        // Taken for the next encoding, in the same memory.
        let v = ctx.take_spare();
        assert!(v.is_empty() && v.capacity() >= 2 << 20);
        // After the run's part ends, a buffer that comes back is freed.
        ctx.drop_spare();
        drop(ctx.recyclable(v));
        assert_eq!(ctx.spare_bytes(), 0);
        // Small buffers are plain bytes.
        ctx.open_spare();
        drop(ctx.recyclable(vec![1u8; 10]));
        assert_eq!(ctx.spare_bytes(), 0);
        release(ctx.id);
    }
}
