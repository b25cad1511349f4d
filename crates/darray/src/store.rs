//! The chunks this process holds, the arrays it created, and their release.
//!
//! Every process has one table of chunks, keyed by the array's [`DArrayId`]. The
//! creator of an array keeps a list of the arrays it made (for `close`, `Drop` and
//! `d_closeall`); releasing tells every owner to drop its chunk. A chunk whose
//! creator is another process is also dropped when that process leaves the cluster:
//! one task per cluster watches its membership while such chunks exist.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use cohort_cluster::{CallError, Cluster, Pid};
use ndarray::{Array, Dimension};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::element::Element;
use crate::error::ChunkFailure;
use crate::transfer::{to_vec, Block};

/// The identity of a distributed array: the process that created it, a random tag of
/// that process (so ids of different clusters on one process never clash) and a
/// serial number.
///
/// ```
/// let d = cohort_darray::blocking::dzeros::<f64, _>(4).unwrap();
/// assert_eq!(d.id().creator, cohort_cluster::myid());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DArrayId {
    /// The creating process.
    pub creator: Pid,
    /// A random tag of the creating process.
    pub tag: u32,
    /// The creator's serial number for it.
    pub serial: u64,
}

impl fmt::Display for DArrayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DArray {}.{}", self.creator, self.serial)
    }
}

impl DArrayId {
    pub(crate) fn next(cluster: &Cluster) -> DArrayId {
        static TAG: OnceLock<u32> = OnceLock::new();
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        DArrayId {
            creator: cluster.myid(),
            tag: *TAG.get_or_init(rand::random),
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// A chunk: the local array, behind a lock so that the owner may write it while
/// requests from others read it.
pub(crate) type Chunk<T, D> = Arc<RwLock<Array<T, D>>>;

struct Entry {
    chunk: Arc<dyn Any + Send + Sync>,
    /// For chunks of arrays created by another process: which cluster's membership
    /// decides when the creator has gone.
    watch: Option<u64>,
    bytes: usize,
    type_name: &'static str,
}

fn table() -> &'static Mutex<HashMap<DArrayId, Entry>> {
    static T: OnceLock<Mutex<HashMap<DArrayId, Entry>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// Stores the chunk of `id` held by this process.
pub(crate) fn insert<T: Element, D: Dimension + 'static>(
    cluster: &Cluster,
    id: DArrayId,
    array: Array<T, D>,
) -> Result<(), ChunkFailure> {
    let bytes = array.len() * std::mem::size_of::<T>();
    // Small reads of chunks of this type run where their requests arrive.
    cohort_cluster::registry::run_inline::<_, (DArrayId, Vec<Wanted>)>(&read_regions_now::<T, D>);
    let chunk: Chunk<T, D> = Arc::new(RwLock::new(array));
    let mut t = table().lock();
    if t.contains_key(&id) {
        return Err(ChunkFailure::Exists { id });
    }
    let watch = if id.creator == cluster.myid() {
        if !created_here(id) {
            // Released (closed, dropped) while this chunk was being made.
            return Err(ChunkFailure::Released { id });
        }
        None
    } else {
        // Under the table's lock, so a sweep after the creator left either sees
        // this chunk or happens before this check.
        let key = watcher_for(cluster);
        if !cluster.procs().contains(&id.creator) {
            return Err(ChunkFailure::CreatorGone {
                id,
                creator: id.creator,
            });
        }
        Some(key)
    };
    t.insert(
        id,
        Entry {
            chunk,
            watch,
            bytes,
            type_name: std::any::type_name::<Array<T, D>>(),
        },
    );
    Ok(())
}

/// The chunk of `id` held here.
pub(crate) fn get<T: Element, D: Dimension + 'static>(
    id: DArrayId,
) -> Result<Chunk<T, D>, ChunkFailure> {
    let t = table().lock();
    let e = t.get(&id).ok_or(ChunkFailure::Released { id })?;
    e.chunk
        .clone()
        .downcast::<RwLock<Array<T, D>>>()
        .map_err(|_| ChunkFailure::TypeMismatch {
            id,
            stored: e.type_name.to_string(),
            asked: std::any::type_name::<Array<T, D>>().to_string(),
        })
}

/// A region a reader wants of a chunk: its local ranges, and the landing token its
/// elements go to on the reader.
pub(crate) type Wanted = (Vec<std::ops::Range<usize>>, u64);

/// On an owner: for each of `wanted`, the elements of its chunk of `id` in those
/// local ranges, row-major, with the landing token they go to. Runs on a call
/// runner: it waits for the chunk's lock.
pub(crate) fn read_regions<T: Element, D: Dimension + 'static>(
    id: DArrayId,
    wanted: Vec<Wanted>,
) -> Result<Vec<Block<T>>, ChunkFailure> {
    let chunk = get::<T, D>(id)?;
    let c = chunk.read();
    Ok(regions_of(&c, wanted))
}

/// [`read_regions`] where the request arrives (marked inline by [`insert`], so it
/// does not wait behind a long call holding a runner — a neighbour computing its
/// next chunk, say): `None`, without waiting, if another thread holds the chunk's
/// lock for writing (SPMD code in `localpart_mut`, which may wait for a message on
/// this very connection); the reader then asks [`read_regions`] instead. Readers
/// send it only for small regions (`INLINE_READ_MAX` in `darray.rs`), as every
/// message behind it on the connection waits while it copies.
pub(crate) fn read_regions_now<T: Element, D: Dimension + 'static>(
    id: DArrayId,
    wanted: Vec<Wanted>,
) -> Result<Option<Vec<Block<T>>>, ChunkFailure> {
    let chunk = get::<T, D>(id)?;
    let Some(c) = chunk.try_read() else {
        DEFERRED_READS.fetch_add(1, Ordering::Relaxed);
        return Ok(None);
    };
    Ok(Some(regions_of(&c, wanted)))
}

fn regions_of<T: Element, D: Dimension>(c: &Array<T, D>, wanted: Vec<Wanted>) -> Vec<Block<T>> {
    let v = c.view().into_dyn();
    wanted
        .into_iter()
        .map(|(local, token)| {
            let part = v.slice_each_axis(|ax| ndarray::Slice::from(local[ax.axis.index()].clone()));
            let mut b = Block::new(to_vec(part));
            b.token = token;
            b
        })
        .collect()
}

/// Drops the chunk of `id` held here, if any (the built-in `cohort_darray::store::release`).
#[cohort_macros::remote(crate = cohort_cluster)]
pub(crate) fn release(id: DArrayId) {
    let gone = table().lock().remove(&id);
    // Freed outside the lock: a large chunk takes a while to give back.
    drop(gone);
}

/// How many chunks a process holds, and their bytes (see [`chunks_of`]).
///
/// ```
/// let s = cohort_darray::local_chunks();
/// assert!(s.bytes >= 8 * s.chunks || s.chunks == 0 || s.bytes < 8 * s.chunks);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChunkStats {
    /// The number of chunks (of any array) this process holds.
    pub chunks: usize,
    /// Their elements' size in bytes (the heap memory of non-numeric elements not
    /// counted).
    pub bytes: usize,
    /// Reads by other processes of a small region that found its chunk locked for
    /// writing here (a `localpart_mut` held) and so went to a call runner, to wait
    /// for the lock there, since this process started.
    pub deferred_reads: u64,
}

/// Reads deferred to a runner ([`ChunkStats::deferred_reads`]).
static DEFERRED_READS: AtomicU64 = AtomicU64::new(0);

/// The chunks this process holds now, for leak checks.
///
/// ```
/// let before = cohort_darray::local_chunks().chunks;
/// let d = cohort_darray::blocking::dzeros::<f64, _>(8).unwrap();
/// assert_eq!(cohort_darray::local_chunks().chunks, before + 1);
/// drop(d);
/// assert_eq!(cohort_darray::local_chunks().chunks, before);
/// ```
pub fn local_chunks() -> ChunkStats {
    let t = table().lock();
    ChunkStats {
        chunks: t.len(),
        bytes: t.values().map(|e| e.bytes).sum(),
        deferred_reads: DEFERRED_READS.load(Ordering::Relaxed),
    }
}

#[cohort_macros::remote(crate = cohort_cluster)]
fn chunk_stats() -> ChunkStats {
    local_chunks()
}

/// The chunks process `pid` holds now (Julia has no such call; tests use it to
/// check that released arrays leave nothing behind).
///
/// # Errors
/// As `remotecall_fetch`.
///
/// # Cancel safety
/// As `remotecall_fetch`: dropping it abandons the wait.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let s = cohort_darray::chunks_of(cohort_cluster::myid()).await.unwrap();
/// assert_eq!(s, cohort_darray::local_chunks());
/// # });
/// ```
#[cohort_macros::twin_fn(example = " let s = cohort_darray::blocking::chunks_of(1).unwrap();
 assert_eq!(s, cohort_darray::local_chunks());")]
pub async fn chunks_of(pid: Pid) -> Result<ChunkStats, CallError> {
    Cluster::current()
        .remotecall_fetch(chunk_stats, pid, ())
        .await
}

// ----- the creator's side -----

struct Created {
    cluster: Cluster,
    pids: Vec<Pid>,
}

fn created() -> &'static Mutex<HashMap<DArrayId, Created>> {
    static C: OnceLock<Mutex<HashMap<DArrayId, Created>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn created_here(id: DArrayId) -> bool {
    created().lock().contains_key(&id)
}

/// Records an array this process creates, before its chunks are made.
pub(crate) fn register_created(id: DArrayId, cluster: &Cluster, pids: &[Pid]) {
    created().lock().insert(
        id,
        Created {
            cluster: cluster.clone(),
            pids: pids.to_vec(),
        },
    );
}

/// Whether an array this process created is still alive.
pub(crate) fn is_live(id: DArrayId) -> bool {
    created_here(id)
}

/// Releases an array this process created on every owner; `false` if it was
/// released already.
pub(crate) fn release_created(id: DArrayId) -> bool {
    let Some(c) = created().lock().remove(&id) else {
        return false;
    };
    let me = c.cluster.myid();
    for p in c.pids {
        if p == me {
            release(id);
        } else {
            // A lost owner took its chunk with it; nothing to report.
            let _ = c.cluster.remote_do(release, p, (id,));
        }
    }
    true
}

/// Releases every distributed array (and ddata) this process created in the current
/// cluster, temporaries included (Julia's `d_closeall()`); returns how many. Handles
/// to them still exist but every operation on them fails with
/// [`ChunkFailure::Released`].
///
/// ```
/// let a = cohort_darray::blocking::dzeros::<f64, _>(8).unwrap();
/// let b = cohort_darray::blocking::dones::<f64, _>(8).unwrap();
/// assert!(cohort_darray::d_closeall() >= 2);
/// assert!(a.gather_blocking().is_err());
/// ```
pub fn d_closeall() -> usize {
    let cluster = Cluster::current();
    let ids: Vec<DArrayId> = created()
        .lock()
        .iter()
        .filter(|(_, c)| c.cluster == cluster)
        .map(|(id, _)| *id)
        .collect();
    ids.into_iter().filter(|id| release_created(*id)).count()
}

// ----- creators that leave the cluster -----

struct Watched {
    key: u64,
    rx: tokio::sync::watch::Receiver<u64>,
}

fn watched() -> &'static Mutex<Vec<Watched>> {
    static W: OnceLock<Mutex<Vec<Watched>>> = OnceLock::new();
    W.get_or_init(Default::default)
}

/// The key of `cluster`'s membership watcher, starting the watcher if there is none.
/// Called with the chunk table locked.
fn watcher_for(cluster: &Cluster) -> u64 {
    static KEYS: AtomicU64 = AtomicU64::new(1);
    let rx = cluster.watch_membership();
    let mut w = watched().lock();
    if let Some(found) = w.iter().find(|w| w.rx.same_channel(&rx)) {
        return found.key;
    }
    let key = KEYS.fetch_add(1, Ordering::Relaxed);
    w.push(Watched {
        key,
        rx: rx.clone(),
    });
    let cluster = cluster.clone();
    cohort_cluster::runtime::handle().spawn(watch(cluster, key, rx));
    key
}

/// Drops the chunks of creators that left `cluster`; ends (letting go of the
/// cluster) when no chunk of another process's array is left here.
async fn watch(cluster: Cluster, key: u64, mut rx: tokio::sync::watch::Receiver<u64>) {
    loop {
        let closed = rx.changed().await.is_err();
        let mut t = table().lock();
        let procs = cluster.procs();
        let gone: Vec<DArrayId> = t
            .iter()
            .filter(|(id, e)| e.watch == Some(key) && (closed || !procs.contains(&id.creator)))
            .map(|(id, _)| *id)
            .collect();
        let freed: Vec<Entry> = gone.iter().filter_map(|id| t.remove(id)).collect();
        let any_left = t.values().any(|e| e.watch == Some(key));
        if !any_left {
            watched().lock().retain(|w| w.key != key);
        }
        drop(t);
        drop(freed);
        if !any_left {
            return;
        }
    }
}
