//! Functions every cohort process serves by name, whatever its executable: the stock
//! worker's built-ins, and what the library itself calls remotely.

use cohort_wire::ids::Pid;
use serde::{Deserialize, Serialize};

use crate::registry::{RemoteFnEntry, REMOTE_FUNCTIONS};

/// Reference and memory figures of one process, so tests and users can check that
/// nothing leaks.
///
/// ```
/// let s = cohort_cluster::stats();
/// assert_eq!(s.pid, cohort_cluster::myid());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// The process.
    pub pid: Pid,
    /// Values this process stores for remote references.
    pub live_values: usize,
    /// Owner-side entries (values plus counts waiting for late messages).
    pub owner_entries: usize,
    /// References this process holds handles to.
    pub held_refs: usize,
    /// Reference messages queued, not yet sent.
    pub pending_ref_ops: usize,
    /// Reference operations sent so far.
    pub ref_ops_sent: u64,
    /// Reference batches (messages) sent so far.
    pub ref_batches_sent: u64,
    /// Replies this process waits for: requests it made, and the results of its
    /// `remotecall`s on their way back (0 when it is idle and every result came).
    pub pending_replies: usize,
    /// Resident memory in bytes (Linux; 0 elsewhere).
    pub rss_bytes: u64,
    /// Heap bytes allocated and not freed (glibc's `mallinfo2`; 0 elsewhere): unlike
    /// RSS, it does not include the allocator's free-but-kept pages, so it is the
    /// figure to watch for leaks.
    pub heap_in_use_bytes: u64,
    /// The processes this one has a connection to, sorted.
    pub connected: Vec<Pid>,
    /// Function states (captured values) other processes keep here now, for their
    /// later calls (see [`Cluster::set_capture_budget`](crate::Cluster::set_capture_budget)).
    pub kept_states: usize,
    /// Function states received to keep so far, and their bytes: with states kept, a
    /// closure's captures cross once per caller while unchanged.
    pub kept_states_received: u64,
    /// The bytes of [`kept_states_received`](Self::kept_states_received).
    pub kept_state_bytes_received: u64,
    /// Channel credits this process holds now: places that owners of channels
    /// reserved for its puts (see [`RemoteChannel::put`](crate::RemoteChannel::put)).
    pub credits_held: u64,
    /// Channel credits other processes hold now for channels stored here: places
    /// reserved for their puts (0 once every putter is done or gone).
    pub credits_lent: u64,
    /// Puts this process sent within a credit so far (each without waiting for an
    /// answer).
    pub credited_puts: u64,
}

/// This process's [`Stats`] in the [current](crate::Cluster::current) cluster.
///
/// ```
/// assert_eq!(cohort_cluster::stats().pending_ref_ops, 0);
/// ```
pub fn stats() -> Stats {
    stats_in(&crate::shell::node::current())
}

/// This process's [`Stats`] in `n`'s cluster.
pub(crate) fn stats_in(n: &crate::shell::node::Node) -> Stats {
    let s = n.store().stats();
    let kept = n.kept.counts();
    let (pending_replies, credits) = n.peek(|c| (c.pending_replies(), c.credit_totals()));
    Stats {
        pid: n.myid(),
        live_values: s.owned_values,
        owner_entries: s.owner_entries,
        held_refs: s.held_refs,
        pending_ref_ops: s.pending_ops,
        ref_ops_sent: s.ops_sent,
        ref_batches_sent: s.batches_sent,
        pending_replies,
        rss_bytes: rss_bytes(),
        heap_in_use_bytes: heap_in_use(),
        connected: {
            let mut v: Vec<Pid> = n.peers.read().keys().copied().collect();
            v.sort_unstable();
            v
        },
        kept_states: kept.0,
        kept_states_received: kept.1,
        kept_state_bytes_received: kept.2,
        credits_held: credits.0,
        credits_lent: credits.1,
        credited_puts: credits.2,
    }
}

fn heap_in_use() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads glibc's allocator statistics.
        let m = unsafe { libc::mallinfo2() };
        (m.uordblks + m.hblkhd) as u64
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}

pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// The [`Stats`] of process `pid`.
///
/// # Errors
/// As [`remotecall_fetch`](crate::remotecall_fetch).
///
/// # Cancel safety
/// As [`remotecall_fetch`](crate::remotecall_fetch).
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let s = cohort_cluster::stats_of(1).await.unwrap();
/// assert_eq!(s.pid, 1);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " assert_eq!(cohort_cluster::blocking::stats_of(1).unwrap().pid, 1);"
)]
pub fn stats_of(pid: Pid) -> impl std::future::Future<Output = Result<Stats, crate::CallError>> {
    stats_of_in(crate::shell::node::current(), pid)
}

/// [`stats_of`] in `n`'s cluster.
pub(crate) async fn stats_of_in(
    n: std::sync::Arc<crate::shell::node::Node>,
    pid: Pid,
) -> Result<Stats, crate::CallError> {
    if pid == n.myid() {
        // Let queued reference messages go first, as a remote caller's would.
        n.store().flush_all();
        return Ok(stats_in(&n));
    }
    crate::api::call::remotecall_fetch_in(n, remote_stats, pid, ()).await
}

/// The built-in behind [`stats_of`]: flushes queued reference messages, returns free
/// heap pages to the OS (so `rss_bytes` shows memory in use, not the allocator's
/// cache after a burst), then reports.
pub fn remote_stats() -> Stats {
    let n = crate::shell::node::current();
    n.store().flush_all();
    crate::shell::memory::trim();
    stats_in(&n)
}

/// The OS process id (a built-in).
///
/// ```
/// assert_eq!(cohort_cluster::builtins::getpid(), std::process::id());
/// ```
pub fn getpid() -> u32 {
    std::process::id()
}

/// The host name (a built-in).
///
/// ```
/// assert!(!cohort_cluster::builtins::gethostname().is_empty());
/// ```
pub fn gethostname() -> String {
    cohort_transport::listen::hostname()
}

/// This process's pid (a built-in; Julia's `myid` called remotely).
///
/// ```
/// assert_eq!(cohort_cluster::builtins::remote_myid(), 1);
/// ```
pub fn remote_myid() -> Pid {
    crate::myid()
}

/// Sleeps for `secs` seconds (a built-in, for tests and demos).
///
/// ```
/// cohort_cluster::builtins::sleep(0.0);
/// ```
pub fn sleep(secs: f64) {
    std::thread::sleep(std::time::Duration::from_secs_f64(secs.max(0.0)));
}

#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static STATS: fn() -> RemoteFnEntry = || RemoteFnEntry::of::<_, ()>("cohort::stats", &remote_stats);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static GETPID: fn() -> RemoteFnEntry = || RemoteFnEntry::of::<_, ()>("cohort::getpid", &getpid);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static HOSTNAME: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, ()>("cohort::gethostname", &gethostname);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static MYID: fn() -> RemoteFnEntry = || RemoteFnEntry::of::<_, ()>("cohort::myid", &remote_myid);
#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static SLEEP: fn() -> RemoteFnEntry = || RemoteFnEntry::of::<_, (f64,)>("cohort::sleep", &sleep);
