//! [`Future<T>`]: a write-once remote reference to the result of a call (Julia's
//! `Future`).

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use cohort_wire::ids::{Pid, RefId};
use cohort_wire::proto::{self, envelope::Kind, Envelope, RefRequestKind};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api::cluster::Cluster;
use crate::codec;
use crate::core::Reply;
use crate::error::{CallError, ErrorKind, Failure, RemoteException, WireException};
use crate::registry::RemoteFn;
use crate::shell::node::{current, enter, Node};

type Publisher<T> = Box<dyn FnOnce(&Result<T, CallError>) + Send>;

/// The result a `remotecall` sends back unasked (protocol: `CALL_PUSH`): the
/// receiver of that reply until it is looked at, then what it said. A result too
/// large to push comes as no reply at all (the sender is dropped): then the owner is
/// asked, as for any future.
enum Pushed {
    None,
    Waiting(tokio::sync::oneshot::Receiver<Reply>),
    Arrived(Reply),
}

struct Inner<T> {
    /// The node (cluster) this handle belongs to.
    node: Arc<Node>,
    id: RefId,
    owner: Pid,
    /// The value once known here: fetched, put, or computed by a local call.
    cell: OnceLock<Result<T, CallError>>,
    ready: tokio::sync::Notify,
    /// Whether this process holds a registration with the owner (released on fetch or
    /// drop).
    tracked: AtomicBool,
    /// Whether `finalize` was called: every later use of the handle fails, also when
    /// the value had arrived here (Julia drops the cached value on `finalize`).
    finalized: AtomicBool,
    /// Whether this handle was decoded from bytes made outside a cluster message
    /// (see [`CallError::Inert`]): it names a reference but holds no claim on it.
    inert: bool,
    /// Whether the value is produced in this process's memory (a local call or a
    /// local `Future::new`), rather than stored by the owner's reference store.
    local: bool,
    /// For a local value whose handle was sent elsewhere before it was ready: copies
    /// the value into the reference store when it arrives, for remote fetchers.
    publish: Mutex<Option<Publisher<T>>>,
    /// The result the call sends back unasked, for a future `remotecall` made.
    pushed: Mutex<Pushed>,
    /// Whether this handle was put in the node's table of live handles (it has
    /// travelled): only then has its `Drop` to take it out.
    in_live: AtomicBool,
    /// What the call's arguments asked to keep alive until it is answered
    /// ([`codec::keep_until_answered`](crate::codec::keep_until_answered)); kept as
    /// long as the future (the call's end is not always seen here).
    keep: Mutex<Vec<crate::codec::KeepAlive>>,
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        if self.tracked.load(Ordering::Acquire) {
            self.node.store().dropped(self.id);
        }
        if self.in_live.load(Ordering::Acquire) {
            self.node.live.lock().remove(&self.id);
        }
    }
}

/// One handle per reference per node, so that a release (fetch, finalize) covers
/// every copy the process holds and registrations stay balanced. Shared by futures and
/// channels: reference ids are unique within a node whatever their kind.
pub(crate) fn live(node: &Node) -> &crate::shell::node::LiveTable {
    &node.live
}

/// A reference to a value that will be computed (or put) once, possibly on another
/// process — what [`remotecall`](crate::remotecall) returns.
///
/// `fetch` waits for the value and caches it: later fetches are local. Fetching (or
/// dropping the last handle) tells the owner this process no longer needs its copy;
/// the owner frees the value when no process does. Cloning a `Future` clones the
/// handle, not the value. A `Future` can travel inside call arguments and results: the
/// receiver gets a working handle to the same value, or the value itself if this
/// process had already fetched it.
///
/// Every waiting method has an async form and a `_blocking` twin.
///
/// ```
/// use cohort_cluster::Future;
/// let f: Future<i32> = Future::new(cohort_cluster::myid());
/// assert!(!f.isready_blocking().unwrap());
/// f.put_blocking(7).unwrap();
/// assert_eq!(f.fetch_blocking().unwrap(), 7);
/// assert!(f.put_blocking(8).is_err()); // write-once
/// ```
pub struct Future<T> {
    inner: Arc<Inner<T>>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future {
            inner: self.inner.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Future({}, {}, {}, {})",
            self.inner.owner,
            self.inner.id.whence,
            self.inner.id.id,
            if self.inner.cell.get().is_some() {
                "ready"
            } else {
                "pending"
            }
        )
    }
}

impl<T: Send + Sync + 'static> Future<T> {
    fn from_inner(inner: Inner<T>) -> Self {
        Future {
            inner: Arc::new(inner),
            _t: PhantomData,
        }
    }

    fn make(node: Arc<Node>, id: RefId, owner: Pid, local: bool, tracked: bool) -> Self {
        Future::from_inner(Inner {
            node,
            id,
            owner,
            cell: OnceLock::new(),
            ready: tokio::sync::Notify::new(),
            tracked: AtomicBool::new(tracked),
            finalized: AtomicBool::new(false),
            inert: false,
            local,
            publish: Mutex::new(None),
            pushed: Mutex::new(Pushed::None),
            in_live: AtomicBool::new(false),
            keep: Mutex::new(Vec::new()),
        })
    }

    /// An unset future whose value will be stored on process `pid` of the
    /// [current](Cluster::current) cluster (Julia's `Future(pid)`); set it with
    /// [`put`](Self::put). [`Cluster::future`] makes one in a given cluster.
    ///
    /// ```
    /// let f = cohort_cluster::Future::<String>::new(1);
    /// assert_eq!(f.owner(), 1);
    /// ```
    pub fn new(pid: Pid) -> Self {
        Future::new_in(current(), pid)
    }

    /// An unset future of `node`'s cluster, stored on `pid`.
    pub(crate) fn new_in(n: Arc<Node>, pid: Pid) -> Self {
        let id = n.new_ref();
        if pid == n.myid() {
            Future::make(n, id, pid, true, false)
        } else {
            n.store().created(id, pid);
            Future::make(n, id, pid, false, true)
        }
    }

    /// A future for the result of a call sent to `owner`.
    pub(crate) fn remote(n: &Arc<Node>, id: RefId, owner: Pid) -> Self {
        n.store().created(id, owner);
        Future::make(n.clone(), id, owner, false, true)
    }

    /// A future for the result of a `CALL_PUSH` call sent to `owner` (its handle
    /// already recorded, see `Node::start_call_push`), whose result comes to `pushed`
    /// (or does not, if it is large: then it is fetched).
    pub(crate) fn remote_pushed(
        n: &Arc<Node>,
        id: RefId,
        owner: Pid,
        pushed: tokio::sync::oneshot::Receiver<Reply>,
        keep: Vec<crate::codec::KeepAlive>,
    ) -> Self {
        let f = Future::make(n.clone(), id, owner, false, true);
        *f.inner.pushed.lock() = Pushed::Waiting(pushed);
        *f.inner.keep.lock() = keep;
        f
    }

    /// The result the call sent back unasked, waiting for it if it is on its way;
    /// `None` if there is none (not a `remotecall` future, a large result, or another
    /// clone is waiting for it now): then the owner is asked. With `keep`, it stays
    /// for a later look (a `wait` before the `fetch`).
    ///
    /// Cancel-safe: a wait given up puts the receiver back.
    async fn pushed(&self, keep: bool) -> Option<Reply> {
        let rx = {
            let mut p = self.inner.pushed.lock();
            match std::mem::replace(&mut *p, Pushed::None) {
                Pushed::None => return None,
                Pushed::Arrived(r) => {
                    if keep {
                        *p = Pushed::Arrived(r.clone());
                    }
                    return Some(r);
                }
                Pushed::Waiting(rx) => rx,
            }
        };
        struct PutBack<'a> {
            slot: &'a Mutex<Pushed>,
            rx: Option<tokio::sync::oneshot::Receiver<Reply>>,
        }
        impl Drop for PutBack<'_> {
            fn drop(&mut self) {
                if let Some(rx) = self.rx.take() {
                    let mut p = self.slot.lock();
                    if matches!(*p, Pushed::None) {
                        *p = Pushed::Waiting(rx);
                    }
                }
            }
        }
        let mut guard = PutBack {
            slot: &self.inner.pushed,
            rx: Some(rx),
        };
        let got = guard.rx.as_mut().expect("set above").await;
        guard.rx = None;
        let reply = got.ok()?;
        if keep {
            *self.inner.pushed.lock() = Pushed::Arrived(reply.clone());
        }
        Some(reply)
    }

    /// Whether the pushed result is here (taking it from its receiver if it came);
    /// `None` if that cannot be told here.
    fn pushed_ready(&self) -> Option<bool> {
        let mut p = self.inner.pushed.lock();
        match &mut *p {
            Pushed::None => None,
            Pushed::Arrived(_) => Some(true),
            Pushed::Waiting(rx) => match rx.try_recv() {
                Ok(reply) => {
                    *p = Pushed::Arrived(reply);
                    Some(true)
                }
                // On its way, behind nothing the owner would answer sooner.
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => Some(false),
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    *p = Pushed::None;
                    None
                }
            },
        }
    }

    /// A future computed in this process.
    pub(crate) fn local(n: &Arc<Node>) -> Self {
        Future::make(n.clone(), n.new_ref(), n.myid(), true, false)
    }

    /// A future that already holds its outcome (a call that failed before it left).
    pub(crate) fn ready(n: &Arc<Node>, owner: Pid, value: Result<T, CallError>) -> Self {
        let f = Future::make(n.clone(), n.new_ref(), owner, true, false);
        let _ = f.inner.cell.set(value);
        f
    }

    /// A handle that names reference `id` but holds no claim on it: one that
    /// arrived finalized, or an inert one decoded from bytes made outside a message.
    /// Every use of it fails ([`CallError::Finalized`], [`CallError::Inert`]).
    fn dead(n: &Arc<Node>, id: RefId, owner: Pid, inert: bool) -> Self {
        Future::from_inner(Inner {
            node: n.clone(),
            id,
            owner,
            cell: OnceLock::new(),
            ready: tokio::sync::Notify::new(),
            tracked: AtomicBool::new(false),
            finalized: AtomicBool::new(!inert),
            inert,
            local: false,
            publish: Mutex::new(None),
            pushed: Mutex::new(Pushed::None),
            in_live: AtomicBool::new(false),
            keep: Mutex::new(Vec::new()),
        })
    }

    /// The cluster this handle belongs to.
    ///
    /// ```
    /// let f = cohort_cluster::Future::<u8>::new(1);
    /// assert_eq!(f.cluster(), cohort_cluster::Cluster::current());
    /// ```
    pub fn cluster(&self) -> Cluster {
        Cluster::from_node(self.inner.node.clone())
    }

    /// Sets the value of a local future and wakes its waiters.
    pub(crate) fn set_local(&self, value: Result<T, CallError>) -> bool {
        let ok = self.inner.cell.set(value).is_ok();
        if ok {
            if let Some(p) = self.inner.publish.lock().take() {
                p(self.inner.cell.get().expect("just set"));
            }
            self.inner.ready.notify_waiters();
        }
        ok
    }

    /// The process that stores the value (Julia's `where`).
    ///
    /// ```
    /// let f = cohort_cluster::Future::<u8>::new(1);
    /// assert_eq!(f.owner(), 1);
    /// ```
    pub fn owner(&self) -> Pid {
        self.inner.owner
    }

    /// The reference's identity `(whence, id)` (Julia's `remoteref_id`).
    ///
    /// ```
    /// let f = cohort_cluster::Future::<u8>::new(1);
    /// assert_eq!(f.id().whence, cohort_cluster::myid());
    /// ```
    pub fn id(&self) -> RefId {
        self.inner.id
    }

    /// Whether this process's own memory is the only place the value can appear: a
    /// local future whose handle never left the process. Once a handle has travelled,
    /// the reference store is the one place of truth (another process may `put`).
    fn purely_local(&self) -> bool {
        self.inner.local && !self.inner.tracked.load(Ordering::Acquire)
    }

    async fn wait_local(&self) -> &Result<T, CallError> {
        loop {
            let notified = self.inner.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = self.inner.cell.get() {
                return v;
            }
            notified.await;
        }
    }

    async fn ask_owner(&self, kind: RefRequestKind, value: Vec<u8>) -> Reply {
        let n = &self.inner.node;
        let owner = self.inner.owner;
        let id = self.inner.id;
        if owner == n.myid() {
            let rx = n.store().request(id, kind, value.into());
            return rx.await.unwrap_or_else(|_| {
                Err(CallError::Remote(RemoteException {
                    pid: owner,
                    kind: ErrorKind::Reference,
                    function: String::new(),
                    message: format!("reference {id} was freed"),
                    context: String::new(),
                }))
            });
        }
        let call_id = n.new_call_id();
        let env = Envelope {
            kind: Some(Kind::RefRequest(proto::RefRequest {
                call_id,
                ref_id: Some(id.into()),
                kind: kind as i32,
                value: value.into(),
                creator: id.whence,
                credits: 0,
            })),
        };
        n.request(owner, call_id, env).await
    }

    fn release(&self) {
        if self.inner.tracked.swap(false, Ordering::AcqRel) {
            self.inner.node.store().released(self.inner.id);
        }
    }

    /// Gives up this process's claim on the owner's copy now (Julia's `finalize`),
    /// for every clone of this handle in the process: the owner frees the value once
    /// no process claims it.
    ///
    /// The handle is dead from then on, everywhere: every later `fetch`, `wait`,
    /// `isready` and `put` through it (or a clone of it in this process) fails with
    /// [`CallError::Finalized`], also when the value had already been fetched here —
    /// as Julia drops the cached value. A finalized handle sent to another process
    /// arrives finalized there, so a fetch there fails the same way at once (it does
    /// not wait for a value the owner has freed).
    ///
    /// ```
    /// let f = cohort_cluster::Future::<u8>::new(cohort_cluster::myid());
    /// f.put_blocking(1).unwrap();
    /// assert_eq!(f.fetch_blocking(), Ok(1));
    /// f.finalize();
    /// assert_eq!(f.fetch_blocking(), Err(cohort_cluster::CallError::Finalized));
    /// assert_eq!(f.isready_blocking(), Err(cohort_cluster::CallError::Finalized));
    /// ```
    pub fn finalize(&self) {
        self.inner.finalized.store(true, Ordering::Release);
        *self.inner.pushed.lock() = Pushed::None;
        self.release();
    }

    /// Whether the handle may still be used: not finalized, not inert.
    fn check_finalized(&self) -> Result<(), CallError> {
        if self.inner.inert {
            Err(CallError::Inert { id: self.inner.id })
        } else if self.inner.finalized.load(Ordering::Acquire) {
            Err(CallError::Finalized)
        } else {
            Ok(())
        }
    }

    /// Waits until the value is available, without fetching it (Julia's `wait`).
    ///
    /// # Errors
    /// The call's [`RemoteException`] if it failed; [`CallError::WorkerExited`] if the
    /// owner died; [`CallError::Finalized`] after [`finalize`](Self::finalize);
    /// [`CallError::Inert`] for an inert handle.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request (a late reply is dropped);
    /// the value stays with its owner and this handle stays usable.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
    /// f.put(1).await.unwrap();
    /// f.wait().await.unwrap();
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
 f.put_blocking(1).unwrap();
 f.wait_blocking().unwrap();"
    )]
    pub async fn wait(&self) -> Result<(), CallError> {
        self.check_finalized()?;
        if let Some(v) = self.inner.cell.get() {
            return v.as_ref().map(|_| ()).map_err(Clone::clone);
        }
        if self.purely_local() {
            return self
                .wait_local()
                .await
                .as_ref()
                .map(|_| ())
                .map_err(Clone::clone);
        }
        if let Some(reply) = self.pushed(true).await {
            return reply.map(|_| ());
        }
        self.ask_owner(RefRequestKind::Wait, Vec::new())
            .await
            .map(|_| ())
    }

    /// [`wait`](Self::wait), giving up after `limit` (see [`crate::with_timeout`]).
    ///
    /// # Errors
    /// As [`wait`](Self::wait), and [`CallError::TimedOut`] if the value is not
    /// there within `limit`.
    ///
    /// # Cancel safety
    /// As [`wait`](Self::wait); a wait that timed out leaves the handle usable.
    ///
    /// ```
    /// use std::time::Duration;
    /// # cohort_cluster::runtime::block_on(async {
    /// let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
    /// let r = f.wait_timeout(Duration::from_millis(10)).await;
    /// assert!(matches!(r, Err(cohort_cluster::CallError::TimedOut { .. })));
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
 f.put_blocking(1).unwrap();
 f.wait_timeout_blocking(std::time::Duration::from_secs(5)).unwrap();"
    )]
    pub async fn wait_timeout(&self, limit: std::time::Duration) -> Result<(), CallError> {
        crate::with_timeout(limit, self.wait()).await
    }

    /// Whether the value is available now (Julia's `isready`). For a remote future not
    /// yet fetched, this asks the owner. A call that failed is ready (its value is the
    /// failure, which `fetch` returns).
    ///
    /// # Errors
    /// As Julia's `isready` throws when the owner is gone:
    /// [`CallError::WorkerExited`] naming the owner if it died before the value
    /// reached this process (the value died with it); [`CallError::Finalized`] after
    /// [`finalize`](Self::finalize); [`CallError::Inert`] for an inert handle.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request (a late reply is dropped);
    /// nothing changes anywhere.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
    /// assert!(!f.isready().await.unwrap());
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
 assert!(!f.isready_blocking().unwrap());"
    )]
    pub async fn isready(&self) -> Result<bool, CallError> {
        self.check_finalized()?;
        if let Some(v) = self.inner.cell.get() {
            return ready_outcome(v.as_ref().map(|_| ()));
        }
        if self.purely_local() {
            return Ok(false);
        }
        match self.pushed_ready() {
            Some(true) => {
                // The pushed reply is here: a failure of the owner is no value.
                if let Some(reply) = self.pushed(true).await {
                    return ready_outcome(reply.as_ref().map(|_| ()));
                }
                return Ok(true);
            }
            Some(false) => return Ok(false),
            None => {}
        }
        match self.ask_owner(RefRequestKind::IsReady, Vec::new()).await {
            Ok(b) => Ok(b.first() == Some(&1)),
            Err(e) => Err(e),
        }
    }
}

/// `isready` of an outcome known here: a failed call is ready (its failure is the
/// value), the owner's death is not a value but an error.
fn ready_outcome(r: Result<(), &CallError>) -> Result<bool, CallError> {
    match r {
        Err(e @ (CallError::WorkerExited { .. } | CallError::NoSuchProcess { .. })) => {
            Err(e.clone())
        }
        _ => Ok(true),
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Future<T> {
    /// Waits for the value and returns a reference to the cached copy. The first
    /// fetch copies the value here and releases this process's claim on the owner's
    /// copy; later fetches are local.
    ///
    /// # Errors
    /// The call's [`RemoteException`] if it failed or panicked;
    /// [`CallError::WorkerExited`] if the owner died first;
    /// [`CallError::Serialization`] if the value is not a `T`;
    /// [`CallError::Finalized`] after [`finalize`](Self::finalize), also when the
    /// value had been fetched before; [`CallError::Inert`] for an inert handle.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request (a late reply is dropped);
    /// the value stays with its owner, and this process keeps its claim on it.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let f = cohort_cluster::Future::<Vec<u8>>::new(cohort_cluster::myid());
    /// f.put(vec![1, 2]).await.unwrap();
    /// assert_eq!(f.fetch_ref().await.unwrap().len(), 2);
    /// # });
    /// ```
    pub async fn fetch_ref(&self) -> Result<&T, CallError> {
        self.check_finalized()?;
        if let Some(v) = self.inner.cell.get() {
            return v.as_ref().map_err(Clone::clone);
        }
        if self.purely_local() {
            return self.wait_local().await.as_ref().map_err(Clone::clone);
        }
        let reply = match self.pushed(false).await {
            Some(reply) => reply,
            None => self.ask_owner(RefRequestKind::Fetch, Vec::new()).await,
        };
        // Handles inside the value are this future's cluster's.
        let value = reply.and_then(|b| {
            let v = enter(&self.inner.node, || codec::decode_value::<T>(&b))
                .map_err(|f| CallError::Serialization(f.message));
            self.inner.node.spare.recycle(b);
            v
        });
        let _ = self.inner.cell.set(value);
        self.release();
        self.inner.ready.notify_waiters();
        self.inner
            .cell
            .get()
            .expect("set above")
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Waits for the value and returns a copy of it (Julia's `fetch`).
    ///
    /// # Errors
    /// As [`fetch_ref`](Self::fetch_ref).
    ///
    /// # Cancel safety
    /// As [`fetch_ref`](Self::fetch_ref).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
    /// f.put(5).await.unwrap();
    /// assert_eq!(f.fetch().await.unwrap(), 5);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
 f.put_blocking(5).unwrap();
 assert_eq!(f.fetch_blocking().unwrap(), 5);"
    )]
    pub async fn fetch(&self) -> Result<T, CallError>
    where
        T: Clone,
    {
        self.fetch_ref().await.cloned()
    }

    /// [`fetch`](Self::fetch), giving up after `limit` (see [`crate::with_timeout`]).
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch), and [`CallError::TimedOut`] if the value is not
    /// there within `limit`.
    ///
    /// # Cancel safety
    /// As [`fetch`](Self::fetch); a fetch that timed out leaves the handle usable (a
    /// later fetch may still get the value).
    ///
    /// ```
    /// use std::time::Duration;
    /// # cohort_cluster::runtime::block_on(async {
    /// let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
    /// let r = f.fetch_timeout(Duration::from_millis(10)).await;
    /// assert!(matches!(r, Err(cohort_cluster::CallError::TimedOut { .. })));
    /// f.put(5).await.unwrap();
    /// assert_eq!(f.fetch_timeout(Duration::from_secs(5)).await.unwrap(), 5);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
 f.put_blocking(5).unwrap();
 assert_eq!(f.fetch_timeout_blocking(std::time::Duration::from_secs(5)).unwrap(), 5);"
    )]
    pub async fn fetch_timeout(&self, limit: std::time::Duration) -> Result<T, CallError>
    where
        T: Clone,
    {
        crate::with_timeout(limit, self.fetch()).await
    }
}

impl<T> Future<T>
where
    T: DeserializeOwned + Send + Sync + 'static + codec::IntoBuffer,
    T::Elem: Copy,
{
    /// Waits for the value — a `Vec<E>` or a [`Bulk<E>`](crate::codec::Bulk) of plain
    /// numbers — and copies its elements into `out`, with no vector of its own:
    /// repeated transfers reuse the caller's memory (a large array is decoded
    /// straight from the message that brought it). Unlike `fetch`, it does not cache
    /// the value here and keeps this process's claim on the owner's copy (another
    /// `fetch_into`, or a `fetch`, gets it again); a value already here (fetched,
    /// put or computed here) is copied from where it is.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch); [`CallError::Buffer`] if `out` is not as long as
    /// the value (then `out` is left as it was) or the value is not such an array.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request (a late answer is
    /// dropped); `out` may then hold part of the value or none of it, and the
    /// handle stays usable.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let f = cohort_cluster::Future::<Vec<f64>>::new(cohort_cluster::myid());
    /// f.put(vec![1.0, 2.0, 3.0]).await.unwrap();
    /// let mut buf = [0.0; 3];
    /// f.fetch_into(&mut buf).await.unwrap();
    /// assert_eq!(buf, [1.0, 2.0, 3.0]);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let f = cohort_cluster::Future::<Vec<f64>>::new(cohort_cluster::myid());
 f.put_blocking(vec![1.0, 2.0]).unwrap();
 let mut buf = [0.0; 2];
 f.fetch_into_blocking(&mut buf).unwrap();
 assert_eq!(buf, [1.0, 2.0]);"
    )]
    pub async fn fetch_into(&self, out: &mut [T::Elem]) -> Result<(), CallError> {
        self.check_finalized()?;
        if let Some(v) = self.inner.cell.get() {
            return copy_elems(v.as_ref().map_err(Clone::clone)?, out);
        }
        if self.purely_local() {
            let v = self.wait_local().await.as_ref().map_err(Clone::clone)?;
            return copy_elems(v, out);
        }
        let reply = match self.pushed(true).await {
            Some(reply) => reply,
            None => self.ask_owner(RefRequestKind::Fetch, Vec::new()).await,
        }?;
        T::decode_into(&reply, out)?;
        // The message's memory holds the next large one (repeated transfers).
        self.inner.node.spare.recycle(reply);
        Ok(())
    }
}

/// Copies the elements of `v`, held here, into `out` of the same length.
fn copy_elems<T: codec::IntoBuffer>(v: &T, out: &mut [T::Elem]) -> Result<(), CallError>
where
    T::Elem: Copy,
{
    let elems = v.elems();
    if elems.len() != out.len() {
        return Err(codec::BufferError::Length {
            value: elems.len(),
            buffer: out.len(),
        }
        .into());
    }
    out.copy_from_slice(elems);
    Ok(())
}

impl<T: DeserializeOwned + Send + Sync + 'static> Future<T> {
    /// Runs `f` on the value where it is stored and returns only `f`'s result:
    /// reading part of a large remote value without fetching all of it (Julia's
    /// `rr[2, 3]` on a `Future` holding an array, which runs `getindex` on the
    /// owner). `f` takes the value by reference: a function or a closure that
    /// captures nothing; [`fetch_with_args`](Self::fetch_with_args) ships arguments
    /// with it (an index).
    ///
    /// Where the value is already in this process (fetched, put or computed here, or
    /// a `remotecall` result pushed back), `f` runs here on it; otherwise it runs on
    /// the owner, as shipped code, against the stored value (waiting for it there as
    /// `fetch` would), and only the result crosses. Unlike `fetch`, it does not cache
    /// the value and does not give up this process's claim on it.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch) (the call's failure, [`CallError::WorkerExited`],
    /// [`CallError::Finalized`], [`CallError::Inert`]); [`CallError::CannotShipCode`]
    /// if the owner runs another executable; `f`'s panic as a
    /// [`RemoteException`].
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request (a late answer is
    /// dropped); the value stays with its owner and this handle stays usable.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let f = cohort_cluster::Future::<Vec<u64>>::new(cohort_cluster::myid());
    /// f.put(vec![10, 20, 30]).await.unwrap();
    /// assert_eq!(f.fetch_with(|v: &Vec<u64>| v[1]).await.unwrap(), 20);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let f = cohort_cluster::Future::<Vec<u64>>::new(cohort_cluster::myid());
 f.put_blocking(vec![10, 20, 30]).unwrap();
 assert_eq!(f.fetch_with_blocking(|v: &Vec<u64>| v.len()).unwrap(), 3);"
    )]
    pub async fn fetch_with<F, R>(&self, f: F) -> Result<R, CallError>
    where
        F: for<'a> RemoteFn<(&'a T,), Output = R>,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.fetch_with_args(Unary(f), ()).await
    }

    /// [`fetch_with`](Self::fetch_with) for a function that takes arguments after
    /// the value, shipped with it: `f(&value, args)` runs where the value is. Julia's
    /// `rr[2, 3]` is `rr.fetch_with_args(at, (1, 2))` with
    /// `fn at(m: &Array2<f64>, (i, j): (usize, usize)) -> f64 { m[[i, j]] }`.
    ///
    /// # Errors
    /// As [`fetch_with`](Self::fetch_with), and [`CallError::Serialization`] if
    /// `args` cannot be encoded.
    ///
    /// # Cancel safety
    /// As [`fetch_with`](Self::fetch_with).
    ///
    /// ```
    /// fn at(v: &Vec<u64>, i: usize) -> u64 { v[i] }
    /// # cohort_cluster::runtime::block_on(async {
    /// let f = cohort_cluster::Future::<Vec<u64>>::new(cohort_cluster::myid());
    /// f.put(vec![10, 20, 30]).await.unwrap();
    /// assert_eq!(f.fetch_with_args(at, 2).await.unwrap(), 30);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " fn at(v: &Vec<u64>, i: usize) -> u64 { v[i] }
 let f = cohort_cluster::Future::<Vec<u64>>::new(cohort_cluster::myid());
 f.put_blocking(vec![10, 20, 30]).unwrap();
 assert_eq!(f.fetch_with_args_blocking(at, 0).unwrap(), 10);")]
    pub async fn fetch_with_args<F, A, R>(&self, f: F, args: A) -> Result<R, CallError>
    where
        F: for<'a> RemoteFn<(&'a T, A), Output = R>,
        A: Serialize + DeserializeOwned + Send + Sync + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.check_finalized()?;
        let here = |v: &Result<T, CallError>, args: A| {
            v.as_ref().map(|v| f.call((v, args))).map_err(Clone::clone)
        };
        if let Some(v) = self.inner.cell.get() {
            return here(v, args);
        }
        if self.purely_local() {
            return here(self.wait_local().await, args);
        }
        let n = &self.inner.node;
        // A pushed result already here, or a value this process owns: no call.
        let bytes = if self.pushed_ready() == Some(true) {
            self.pushed(true).await
        } else if self.inner.owner == n.myid() {
            Some(self.ask_owner(RefRequestKind::Fetch, Vec::new()).await)
        } else {
            None
        };
        if let Some(reply) = bytes {
            let value = reply.and_then(|b| {
                enter(n, || codec::decode_value::<T>(&b))
                    .map_err(|f| CallError::Serialization(f.message))
            });
            return here(&value, args);
        }
        let call = FetchWith::<T, A, F> {
            id: self.inner.id,
            f,
            _t: PhantomData,
        };
        crate::api::call::remotecall_fetch_in(n.clone(), call, self.inner.owner, (args,))
            .await?
            .map_err(|e| CallError::Remote(e.into()))
    }
}

/// A function of the value alone, as one of the value and `()`: how
/// `fetch_with` runs through `fetch_with_args`.
pub(crate) struct Unary<F>(pub(crate) F);

impl<'a, T: 'a, F, R> RemoteFn<(&'a T, ())> for Unary<F>
where
    F: RemoteFn<(&'a T,), Output = R>,
{
    type Output = R;

    fn call(&self, (v, ()): (&'a T, ())) -> R {
        self.0.call((v,))
    }

    fn encode_state(&self) -> Result<Vec<u8>, Failure> {
        self.0.encode_state()
    }

    fn decode_state(state: &[u8]) -> Result<Self, Failure> {
        F::decode_state(state).map(Unary)
    }
}

/// The call [`Future::fetch_with_args`] sends to the owner: reads the stored value
/// there and runs the function on it and the arguments.
struct FetchWith<T, A, F> {
    id: RefId,
    f: F,
    _t: PhantomData<fn() -> (T, A)>,
}

impl<T, A, F, R> RemoteFn<(A,)> for FetchWith<T, A, F>
where
    T: DeserializeOwned + Send + Sync + 'static,
    A: 'static,
    F: for<'a> RemoteFn<(&'a T, A), Output = R>,
{
    type Output = Result<R, WireException>;

    fn call(&self, (args,): (A,)) -> Self::Output {
        // On the owner, for the node that received the call.
        let node = current();
        let me = node.myid();
        let rx = node
            .store()
            .request(self.id, RefRequestKind::Fetch, Bytes::new());
        let bytes = crate::runtime::block_on(rx)
            .unwrap_or_else(|_| {
                Err(CallError::Remote(RemoteException {
                    pid: me,
                    kind: ErrorKind::Reference,
                    function: String::new(),
                    message: format!("reference {} was freed", self.id),
                    context: String::new(),
                }))
            })
            .map_err(|e| WireException::of(me, e))?;
        let value: T = enter(&node, || codec::decode(&bytes))
            .map_err(|f| WireException::from(RemoteException::from_failure(me, "", f)))?;
        Ok(self.f.call((&value, args)))
    }

    fn encode_state(&self) -> Result<Vec<u8>, Failure> {
        codec::encode(&(self.id.whence, self.id.id, self.f.encode_state()?))
    }

    fn decode_state(state: &[u8]) -> Result<Self, Failure> {
        let (whence, id, inner): (Pid, u64, Vec<u8>) = codec::decode(state)?;
        Ok(FetchWith {
            id: RefId::new(whence, id),
            f: F::decode_state(&inner)?,
            _t: PhantomData,
        })
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Future<T> {
    /// Stores the value (Julia's `put!` on a `Future`). A future is write-once.
    ///
    /// # Errors
    /// [`CallError::AlreadySet`] if it has a value already (set here, or by any other
    /// process); [`CallError::WorkerExited`] if the owner is gone;
    /// [`CallError::PayloadTooLarge`] if the encoded value is over the message limit
    /// for a remote owner (nothing is sent); [`CallError::Finalized`] after
    /// [`finalize`](Self::finalize); [`CallError::Inert`] for an inert handle.
    ///
    /// # Cancel safety
    /// Not cancel-safe: once the value has been sent, dropping the future does not
    /// take it back; the owner may or may not have stored it (a later `put` then
    /// reports [`CallError::AlreadySet`]).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
    /// f.put(1).await.unwrap();
    /// assert_eq!(f.put(2).await, Err(cohort_cluster::CallError::AlreadySet));
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let f = cohort_cluster::Future::<i32>::new(cohort_cluster::myid());
 f.put_blocking(1).unwrap();"
    )]
    pub async fn put(&self, value: T) -> Result<(), CallError> {
        self.check_finalized()?;
        if self.inner.cell.get().is_some() {
            return Err(CallError::AlreadySet);
        }
        if self.purely_local() {
            return if self.set_local(Ok(value)) {
                Ok(())
            } else {
                Err(CallError::AlreadySet)
            };
        }
        let bytes =
            codec::with_target(&self.inner.node, self.inner.owner, || codec::encode(&value))
                .map_err(|f| CallError::Serialization(f.message))?;
        // Checked here: the owner would drop the connection over an oversized frame.
        crate::api::limits::check_payload(&self.inner.node, "value", bytes.len())?;
        match self.ask_owner(RefRequestKind::Put, bytes).await {
            Ok(_) => {
                let _ = self.inner.cell.set(Ok(value));
                self.release();
                self.inner.ready.notify_waiters();
                Ok(())
            }
            Err(CallError::Remote(e)) if e.kind == ErrorKind::AlreadySet => {
                Err(CallError::AlreadySet)
            }
            Err(e) => Err(e),
        }
    }
}

/// `(&future).await` fetches, as [`fetch`](Future::fetch) does (the handle stays
/// usable: later fetches are local).
///
/// # Cancel safety
/// As [`fetch`](Future::fetch).
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let f = cohort_cluster::remotecall(|| 6 * 7, 1, ());
/// assert_eq!((&f).await.unwrap(), 42);
/// assert_eq!(f.fetch().await.unwrap(), 42);
/// # });
/// ```
impl<'a, T> std::future::IntoFuture for &'a Future<T>
where
    T: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Output = Result<T, CallError>;
    type IntoFuture = futures::future::BoxFuture<'a, Result<T, CallError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.fetch())
    }
}

/// How a `Future` travels.
#[derive(Serialize, Deserialize)]
enum Carried<T> {
    /// A handle: the receiver asks the owner.
    Handle { whence: Pid, id: u64, owner: Pid },
    /// The value, already fetched by the sender.
    Value(T),
    /// The failure the sender already observed.
    Failed { pid: Pid, message: String },
    /// A finalized handle: the receiver's handle is finalized too.
    Finalized { whence: Pid, id: u64, owner: Pid },
    /// Encoded outside a cluster message: no claim, no value; the handle made from
    /// it is inert.
    Inert { whence: Pid, id: u64, owner: Pid },
}

impl<T> Serialize for Future<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let inner = &self.inner;
        let (whence, id, owner) = (inner.id.whence, inner.id.id, inner.owner);
        if inner.inert || !codec::in_message() {
            // Into a file, by hand: a later process must not take these ids for a
            // live reference (they may name another value by then), nor read a value
            // this handle vouched for.
            return Carried::<&T>::Inert { whence, id, owner }.serialize(s);
        }
        if inner.finalized.load(Ordering::Acquire) {
            return Carried::<&T>::Finalized { whence, id, owner }.serialize(s);
        }
        match inner.cell.get() {
            Some(Ok(v)) => return Carried::Value(v).serialize(s),
            Some(Err(e)) => {
                let pid = match e {
                    CallError::Remote(r) => r.pid,
                    _ => inner.owner,
                };
                return Carried::<&T>::Failed {
                    pid,
                    message: e.to_string(),
                }
                .serialize(s);
            }
            None => {}
        }
        let n = &inner.node;
        if let Some((node_id, dest)) = codec::target() {
            if node_id != n.id {
                return Err(codec::refuse(format!(
                    "a Future of another cluster cannot travel in this message (reference {})",
                    inner.id
                )));
            }
            if inner.local {
                // The value will be produced here: have it copied into the reference
                // store when it arrives, so the receiver can fetch it from us.
                let mut publish = inner.publish.lock();
                if publish.is_none() && !inner.tracked.load(Ordering::Acquire) {
                    n.store().created(inner.id, n.myid());
                    inner.tracked.store(true, Ordering::Release);
                    let id = inner.id;
                    let node = n.clone();
                    *publish = Some(Box::new(move |v: &Result<T, CallError>| {
                        let stored = match v {
                            // A value too large to send is stored as that failure:
                            // every fetch of it would cost its connection.
                            // Handles inside travel live: the bytes are for fetchers.
                            Ok(v) => codec::internally(|| codec::encode(v))
                                .and_then(|b| {
                                    crate::api::limits::check_result(&node, b.len())?;
                                    Ok(b)
                                })
                                .map(Bytes::from)
                                .map_err(|f| RemoteException::from_failure(node.myid(), "", f)),
                            Err(e) => Err(RemoteException {
                                pid: node.myid(),
                                kind: ErrorKind::Error,
                                function: String::new(),
                                message: e.to_string(),
                                context: String::new(),
                            }),
                        };
                        let _ = node.store().set(id, stored);
                    }));
                }
            }
            if inner.tracked.load(Ordering::Acquire) {
                n.store().serialized(inner.id, dest);
            }
        }
        let weak: Weak<dyn Any + Send + Sync> =
            Arc::downgrade(&(self.inner.clone() as Arc<dyn Any + Send + Sync>));
        live(n).lock().entry(inner.id).or_insert(weak);
        inner.in_live.store(true, Ordering::Release);
        Carried::<&T>::Handle {
            whence: inner.id.whence,
            id: inner.id.id,
            owner: inner.owner,
        }
        .serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Future<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The node that receives the message (see `shell::node::enter`).
        let n = current();
        match Carried::<T>::deserialize(d)? {
            Carried::Value(v) => Ok(Future::ready(&n, n.myid(), Ok(v))),
            Carried::Failed { pid, message } => Ok(Future::ready(
                &n,
                pid,
                Err(CallError::Remote(RemoteException {
                    pid,
                    kind: ErrorKind::Error,
                    function: String::new(),
                    message,
                    context: String::new(),
                })),
            )),
            Carried::Finalized { whence, id, owner } => {
                Ok(Future::dead(&n, RefId::new(whence, id), owner, false))
            }
            Carried::Inert { whence, id, owner } => {
                Ok(Future::dead(&n, RefId::new(whence, id), owner, true))
            }
            Carried::Handle { whence, id, owner } => {
                let id = RefId::new(whence, id);
                let mut map = live(&n).lock();
                // A handle of another type under the same id (a confused peer) is
                // dropped only after the table's lock is released: if it was the
                // last one, its `Drop` takes that lock.
                let mut confused = None;
                if let Some(existing) = map.get(&id).and_then(Weak::upgrade) {
                    match existing.downcast::<Inner<T>>() {
                        Err(other) => confused = Some(other),
                        Ok(inner) => {
                            drop(map);
                            if inner.tracked.load(Ordering::Acquire) {
                                n.store().deserialized(id, owner, false);
                            } else {
                                // Our handle already let go of the owner (it fetched), but
                                // the sender registered us again: give that back.
                                n.store().deserialized(id, owner, true);
                                n.store().dropped(id);
                            }
                            return Ok(Future {
                                inner,
                                _t: PhantomData,
                            });
                        }
                    }
                }
                let f = Future::make(n.clone(), id, owner, false, true);
                let weak: Weak<dyn Any + Send + Sync> =
                    Arc::downgrade(&(f.inner.clone() as Arc<dyn Any + Send + Sync>));
                map.insert(id, weak);
                f.inner.in_live.store(true, Ordering::Release);
                drop(map);
                drop(confused);
                n.store().deserialized(id, owner, true);
                Ok(f)
            }
        }
    }
}
