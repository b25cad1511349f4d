//! SPMD contexts (`context(pids)`, `close(ctx)`) and context-local storage.
//!
//! A context is a namespace for messages and a place to keep values between runs:
//! runs in different contexts never see each other's messages, and each process
//! keeps one [`ContextStorage`] per context, which lives until the context is
//! closed — by [`close`], or when the last handle of the [`Context`] is dropped on
//! the process that made it (Julia: when it is garbage-collected). A run without a
//! context gets a fresh one, released on each process when its part of the run ends.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cohort_cluster::{Cluster, Pid};
use parking_lot::Mutex;

use super::error::SpmdError;
use super::run::here;
use super::state::{fresh, remote, CtxId};

/// An SPMD context (Julia's `SPMDContext`): the processes it spans, and the
/// context-local storage each keeps for it. Cloning shares it; the context is
/// released on every process by [`close`], or when the last clone is dropped here.
///
/// ```
/// let ctx = cohort_darray::spmd::context(&[cohort_cluster::myid()]).unwrap();
/// assert_eq!(ctx.pids(), &[1]);
/// ```
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<ContextInner>,
}

pub(crate) struct ContextInner {
    pub(crate) id: CtxId,
    pub(crate) pids: Vec<Pid>,
    pub(crate) cluster: Cluster,
    pub(crate) closed: AtomicBool,
    /// Set while a run uses the context.
    pub(crate) busy: AtomicBool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("id", &(self.inner.id.creator, self.inner.id.n))
            .field("pids", &self.inner.pids)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Context {
    /// The processes of the context, in rank order.
    ///
    /// ```
    /// let ctx = cohort_darray::spmd::context(&[1]).unwrap();
    /// assert_eq!(ctx.pids().len(), 1);
    /// ```
    pub fn pids(&self) -> &[Pid] {
        &self.inner.pids
    }

    /// Whether [`close`] was called.
    ///
    /// ```
    /// let ctx = cohort_darray::spmd::context(&[1]).unwrap();
    /// assert!(!ctx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Best effort and without waiting (a drop must not block): each process
        // frees the context when the message reaches it.
        for &p in &self.pids {
            if p == self.cluster.myid() {
                super::state::release(self.id);
            } else {
                let _ = self.cluster.remote_do(remote::release, p, (self.id,));
            }
        }
    }
}

/// Checks a list of processes for a run or a context: not empty, no pid twice,
/// each in the cluster.
pub(crate) fn check_pids(cluster: &Cluster, pids: &[Pid]) -> Result<(), SpmdError> {
    if pids.is_empty() {
        return Err(SpmdError::NoProcesses);
    }
    let procs = cluster.procs();
    for (i, p) in pids.iter().enumerate() {
        if pids[..i].contains(p) {
            return Err(SpmdError::DuplicatePid { pid: *p });
        }
        if !procs.contains(p) {
            return Err(SpmdError::NoSuchProcess {
                pid: *p,
                procs: procs.clone(),
            });
        }
    }
    Ok(())
}

/// A new context over `pids` of the [current](Cluster::current) cluster (Julia's
/// `context(pids)`; pass [`procs()`](cohort_cluster::procs) for Julia's default).
/// Nothing is sent until a run uses it.
///
/// # Errors
/// [`SpmdError::NoProcesses`], [`SpmdError::DuplicatePid`],
/// [`SpmdError::NoSuchProcess`].
///
/// ```
/// use cohort_darray::spmd::{context, SpmdError};
/// assert!(context(&[1]).is_ok());
/// assert_eq!(context(&[]).unwrap_err(), SpmdError::NoProcesses);
/// ```
pub fn context(pids: &[Pid]) -> Result<Context, SpmdError> {
    let cluster = Cluster::current();
    check_pids(&cluster, pids)?;
    Ok(Context {
        inner: Arc::new(ContextInner {
            id: CtxId {
                creator: cluster.myid(),
                n: fresh(),
            },
            pids: pids.to_vec(),
            cluster,
            closed: AtomicBool::new(false),
            busy: AtomicBool::new(false),
        }),
    })
}

/// Closes `ctx`: its context-local storage and mailbox are freed on every process of
/// it, and it cannot be used for runs any more (Julia's `close(ctx)`). Closing twice
/// does nothing.
///
/// # Errors
/// [`SpmdError::ContextBusy`] while a run uses it; [`SpmdError::Send`] if a process
/// could not be told (the others are; a process that left has nothing to free).
///
/// # Cancel safety
/// Not cancel-safe: the release is sent to every process at the first poll; a
/// dropped call still frees the context everywhere the message reaches.
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let ctx = cohort_darray::spmd::context(&[1]).unwrap();
/// cohort_darray::spmd::close(&ctx).await.unwrap();
/// assert!(ctx.is_closed());
/// # });
/// ```
pub async fn close(ctx: &Context) -> Result<(), SpmdError> {
    let inner = &ctx.inner;
    if inner.busy.load(Ordering::Acquire) {
        return Err(SpmdError::ContextBusy);
    }
    if inner.closed.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    let calls: Vec<_> = inner
        .pids
        .iter()
        .map(|&p| {
            let c = inner.cluster.clone();
            let id = inner.id;
            async move { (p, c.remotecall_fetch(remote::release, p, (id,)).await) }
        })
        .collect();
    let mut first = None;
    for (pid, r) in futures::future::join_all(calls).await {
        match r {
            Ok(()) | Err(cohort_cluster::CallError::WorkerExited { .. }) => {}
            Err(source) => {
                first.get_or_insert(SpmdError::Send { pid, source });
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Context-local storage (Julia's `context_local_storage()`, a `Dict`): named values
/// that one process keeps for one context, across the runs in that context. Values
/// stay on their process (they are never sent), so any `Send + Sync` type fits.
///
/// ```
/// let s = cohort_darray::spmd::ContextStorage::default();
/// s.insert("n", 3u32);
/// assert_eq!(s.get::<u32>("n"), Some(3));
/// s.with_mut("n", |n: &mut u32| *n += 1);
/// assert_eq!(s.get::<u32>("n"), Some(4));
/// ```
#[derive(Clone, Default)]
pub struct ContextStorage {
    values: Arc<Mutex<HashMap<String, Box<dyn Any + Send + Sync>>>>,
}

impl std::fmt::Debug for ContextStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<String> = self.values.lock().keys().cloned().collect();
        keys.sort_unstable();
        f.debug_struct("ContextStorage")
            .field("keys", &keys)
            .finish()
    }
}

impl ContextStorage {
    /// Stores `value` under `key`, replacing what was there; says whether something was.
    ///
    /// ```
    /// let s = cohort_darray::spmd::ContextStorage::default();
    /// assert!(!s.insert("k", 1u8));
    /// assert!(s.insert("k", "now a string"));
    /// ```
    pub fn insert<V: Any + Send + Sync>(&self, key: impl Into<String>, value: V) -> bool {
        self.values
            .lock()
            .insert(key.into(), Box::new(value))
            .is_some()
    }

    /// A copy of the value under `key`; `None` if there is none or it is not a `V`.
    ///
    /// ```
    /// let s = cohort_darray::spmd::ContextStorage::default();
    /// s.insert("k", 1u8);
    /// assert_eq!(s.get::<u8>("k"), Some(1));
    /// assert_eq!(s.get::<u16>("k"), None);
    /// ```
    pub fn get<V: Any + Clone>(&self, key: &str) -> Option<V> {
        self.values.lock().get(key)?.downcast_ref::<V>().cloned()
    }

    /// Runs `f` on the value under `key` in place; `None` if there is none or it is not
    /// a `V`. The storage is locked meanwhile: `f` must not use it.
    ///
    /// ```
    /// let s = cohort_darray::spmd::ContextStorage::default();
    /// s.insert("v", vec![1]);
    /// assert_eq!(s.with_mut("v", |v: &mut Vec<i32>| { v.push(2); v.len() }), Some(2));
    /// ```
    pub fn with_mut<V: Any, R>(&self, key: &str, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let mut g = self.values.lock();
        Some(f(g.get_mut(key)?.downcast_mut::<V>()?))
    }

    /// Removes `key`; says whether it was there.
    ///
    /// ```
    /// let s = cohort_darray::spmd::ContextStorage::default();
    /// s.insert("k", 1u8);
    /// assert!(s.remove("k"));
    /// assert!(!s.remove("k"));
    /// ```
    pub fn remove(&self, key: &str) -> bool {
        self.values.lock().remove(key).is_some()
    }

    /// Whether `key` holds a value.
    ///
    /// ```
    /// assert!(!cohort_darray::spmd::ContextStorage::default().contains_key("k"));
    /// ```
    pub fn contains_key(&self, key: &str) -> bool {
        self.values.lock().contains_key(key)
    }

    /// The number of values stored.
    ///
    /// ```
    /// assert_eq!(cohort_darray::spmd::ContextStorage::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.values.lock().len()
    }

    /// Whether nothing is stored.
    ///
    /// ```
    /// assert!(cohort_darray::spmd::ContextStorage::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.values.lock().is_empty()
    }
}

/// This process's storage for the context of the run it is in (Julia's
/// `context_local_storage()`); values put there are found again by later runs in the
/// same [`Context`] on this process.
///
/// # Errors
/// [`SpmdError::NotInRun`] outside an SPMD run.
///
/// ```
/// assert!(cohort_darray::spmd::context_local_storage().is_err());
/// ```
pub fn context_local_storage() -> Result<ContextStorage, SpmdError> {
    Ok(here("context_local_storage")?.ctx.storage.clone())
}
