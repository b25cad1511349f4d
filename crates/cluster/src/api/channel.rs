//! [`RemoteChannel<T>`]: a channel stored on one process and used from any (Julia's
//! `RemoteChannel`).
//!
//! The owner keeps the channel — a [`Channel<T>`](cohort_channels::Channel) or any
//! [`AbstractChannel<T>`] a factory made — in its reference store; other processes
//! send their `put`/`take`/`fetch`/`isready`/`wait`/`close` to it. On the owner itself,
//! operations go straight to the channel with no serialization, so a value put there
//! is the very value taken (Julia's local invocation).

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use cohort_channels::{AbstractChannel, Channel, ChannelError};
use cohort_wire::ids::{Pid, RefId};
use cohort_wire::proto::{self, envelope::Kind, Envelope, RefRequestKind};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api::cluster::Cluster;
use crate::api::future::live;
use crate::codec;
use crate::core::Reply;
use crate::error::{CallError, ErrorKind, Failure};
use crate::registry::RemoteFn;
use crate::shell::channel_ops::{ChannelSlot, ErasedChannel};
use crate::shell::node::{current, enter, Node};

/// What a channel value must be to travel: serde both ways, shareable, and `Clone`
/// (for `fetch`, which copies without removing).
pub trait ChannelValue: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> ChannelValue for T {}

fn channel_error(e: ChannelError) -> CallError {
    match e {
        ChannelError::Closed => CallError::ChannelClosed,
        other => CallError::ChannelUnsupported(other.to_string()),
    }
}

fn decode_err(f: Failure) -> CallError {
    CallError::Serialization(f.message)
}

struct Typed<T>(Arc<dyn AbstractChannel<T>>);

impl<T: ChannelValue> ErasedChannel for Typed<T> {
    fn put(&self, bytes: Bytes) -> BoxFuture<'_, Result<(), CallError>> {
        let v: Result<T, CallError> = codec::decode(&bytes).map_err(decode_err);
        Box::pin(async move {
            self.0
                .put((), v?)
                .await
                .map_err(|_| CallError::ChannelClosed)
        })
    }
    fn take(&self) -> BoxFuture<'_, Result<Bytes, CallError>> {
        Box::pin(async move {
            let v = self.0.take(()).await.map_err(channel_error)?;
            codec::encode(&v).map(Bytes::from).map_err(decode_err)
        })
    }
    fn put_front(&self, bytes: Bytes) -> BoxFuture<'_, Result<(), CallError>> {
        let v: Result<T, CallError> = codec::decode(&bytes).map_err(decode_err);
        Box::pin(async move {
            self.0
                .put_front((), v?)
                .await
                .map_err(|_| CallError::ChannelClosed)
        })
    }
    fn fetch(&self) -> BoxFuture<'_, Result<Bytes, CallError>> {
        Box::pin(async move {
            let v = self.0.fetch(()).await.map_err(channel_error)?;
            codec::encode(&v).map(Bytes::from).map_err(decode_err)
        })
    }
    fn wait(&self) -> BoxFuture<'_, Result<(), CallError>> {
        Box::pin(async move { self.0.wait(()).await.map_err(channel_error) })
    }
    fn isready(&self) -> bool {
        self.0.isready(())
    }
    fn close(&self) {
        self.0.close()
    }
}

/// Puts a channel made by a factory into `node`'s store under `id`.
fn install<T: ChannelValue>(node: &Node, id: RefId, chan: Arc<dyn AbstractChannel<T>>) {
    let slot = ChannelSlot::new(Arc::new(Typed(chan.clone())), Arc::new(chan)).counted(node);
    node.store().install_channel(id, slot);
}

/// The call that runs a factory on the owner and installs its channel there.
struct Install<T, F> {
    id: RefId,
    factory: F,
    _t: PhantomData<fn() -> T>,
}

impl<T, F, C> RemoteFn<()> for Install<T, F>
where
    T: ChannelValue,
    F: RemoteFn<(), Output = C>,
    C: AbstractChannel<T> + 'static,
{
    type Output = ();

    fn call(&self, (): ()) {
        // Runs on the owner, for the node that received the call.
        install::<T>(&current(), self.id, Arc::new(self.factory.call(())));
    }

    fn encode_state(&self) -> Result<Vec<u8>, Failure> {
        codec::encode(&(self.id.whence, self.id.id, self.factory.encode_state()?))
    }

    fn decode_state(state: &[u8]) -> Result<Self, Failure> {
        let (whence, id, inner): (Pid, u64, Vec<u8>) = codec::decode(state)?;
        Ok(Install {
            id: RefId::new(whence, id),
            factory: F::decode_state(&inner)?,
            _t: PhantomData,
        })
    }
}

struct Inner<T> {
    /// The node (cluster) this handle belongs to.
    node: Arc<Node>,
    id: RefId,
    owner: Pid,
    /// Set by `finalize`: this process no longer claims the channel.
    finalized: std::sync::atomic::AtomicBool,
    _t: PhantomData<fn() -> T>,
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        if !self.finalized.load(std::sync::atomic::Ordering::Acquire) {
            self.node.store().dropped(self.id);
        }
        live(&self.node).lock().remove(&self.id);
    }
}

/// A channel on process `owner` that every process can use through this handle
/// (Julia's `RemoteChannel`). Cloning clones the handle; the channel lives until the
/// last handle in the cluster is dropped. Handles travel inside call arguments and
/// results, and inside other channels.
///
/// Every waiting operation has an async form and a `_blocking` twin.
///
/// # Cancel safety
///
/// [`take`](Self::take) is cancel-safe: a take given up (its future dropped by
/// `select!`, a timeout) loses no value, and [`fetch`](Self::fetch),
/// [`wait`](Self::wait) and [`isready`](Self::isready) change nothing. A
/// [`put`](Self::put) that is dropped may still put its value. Each method says what
/// it keeps and loses.
///
/// ```
/// use cohort_cluster::RemoteChannel;
/// let rc = RemoteChannel::<u32>::with_capacity_blocking(cohort_cluster::myid(), 3).unwrap();
/// rc.put_blocking(1).unwrap();
/// rc.put_blocking(2).unwrap();
/// assert_eq!(rc.fetch_blocking().unwrap(), 1); // fetch does not remove
/// assert_eq!(rc.take_blocking().unwrap(), 1);
/// rc.close_blocking().unwrap();
/// assert_eq!(rc.take_blocking().unwrap(), 2); // a closed channel drains first
/// assert!(rc.take_blocking().is_err());
/// ```
pub struct RemoteChannel<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for RemoteChannel<T> {
    fn clone(&self) -> Self {
        RemoteChannel {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for RemoteChannel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RemoteChannel({}, {}, {})",
            self.inner.owner, self.inner.id.whence, self.inner.id.id
        )
    }
}

/// A send that failed, with the value handed back.
///
/// ```
/// let e = cohort_cluster::SendError { value: 5, error: cohort_cluster::CallError::ChannelClosed };
/// assert_eq!(e.into_inner(), 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("put failed: {error}")]
pub struct SendError<T> {
    /// The value that was not put.
    pub value: T,
    /// Why.
    pub error: CallError,
}

impl<T> SendError<T> {
    /// The value that was not put.
    ///
    /// ```
    /// let e = cohort_cluster::SendError { value: "v", error: cohort_cluster::CallError::ChannelClosed };
    /// assert_eq!(e.into_inner(), "v");
    /// ```
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T: ChannelValue> RemoteChannel<T> {
    fn handle(node: Arc<Node>, id: RefId, owner: Pid) -> Self {
        let inner = Arc::new(Inner {
            node,
            id,
            owner,
            finalized: std::sync::atomic::AtomicBool::new(false),
            _t: PhantomData,
        });
        let weak: Weak<dyn Any + Send + Sync> =
            Arc::downgrade(&(inner.clone() as Arc<dyn Any + Send + Sync>));
        live(&inner.node).lock().insert(id, weak);
        RemoteChannel { inner }
    }

    /// The cluster this handle belongs to.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// assert_eq!(rc.cluster(), cohort_cluster::Cluster::current());
    /// ```
    pub fn cluster(&self) -> Cluster {
        Cluster::from_node(self.inner.node.clone())
    }

    /// A channel of capacity 1 on `pid` (Julia's `RemoteChannel(pid)`).
    ///
    /// # Errors
    /// As [`with_factory`](Self::with_factory).
    ///
    /// # Cancel safety
    /// As [`with_factory`](Self::with_factory).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<String>::new(cohort_cluster::myid()).await.unwrap();
    /// rc.put("hi".into()).await.unwrap();
    /// assert_eq!(rc.take().await.unwrap(), "hi");
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 assert!(!rc.isready_blocking());"
    )]
    pub fn new(pid: Pid) -> impl std::future::Future<Output = Result<Self, CallError>> {
        Self::with_capacity(pid, 1)
    }

    /// A [`Channel<T>`] of capacity `cap` on `pid` (0 = unbuffered).
    ///
    /// # Errors
    /// As [`with_factory`](Self::with_factory).
    ///
    /// # Cancel safety
    /// As [`with_factory`](Self::with_factory).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::with_capacity(1, 10).await.unwrap();
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::with_capacity_blocking(1, 10).unwrap();"
    )]
    pub fn with_capacity(
        pid: Pid,
        cap: usize,
    ) -> impl std::future::Future<Output = Result<Self, CallError>> {
        Self::with_capacity_in(current(), pid, cap)
    }

    /// [`with_capacity`](Self::with_capacity) in `n`'s cluster.
    pub(crate) fn with_capacity_in(
        n: Arc<Node>,
        pid: Pid,
        cap: usize,
    ) -> impl std::future::Future<Output = Result<Self, CallError>> {
        Self::with_factory_in(
            n,
            pid,
            NewChannel::<T> {
                cap,
                _t: PhantomData,
            },
        )
    }

    /// A channel made on `pid` by `factory`, which returns any [`AbstractChannel<T>`]
    /// (Julia's `RemoteChannel(() -> Channel{Int}(10), pid)`). Waits until the channel
    /// exists on `pid`.
    ///
    /// The factory travels as shipped code, so `pid` must run this executable.
    ///
    /// # Errors
    /// [`CallError::NoSuchProcess`], [`CallError::WorkerExited`],
    /// [`CallError::CannotShipCode`], or the factory's panic as
    /// [`CallError::Remote`].
    ///
    /// # Cancel safety
    /// Nothing to lose, but dropping the future does not undo what it started. On
    /// this process the channel is made at the first poll. On another, the call that
    /// makes the channel is sent at the first poll and runs there even if the future
    /// is dropped; the handle goes with the future, so the channel is freed once that
    /// release reaches `pid`, as for any channel nobody holds.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// use cohort_channels::Channel;
    /// let rc = cohort_cluster::RemoteChannel::<i64>::with_factory(1, || Channel::new(10)).await.unwrap();
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<i64>::with_factory_blocking(1, || cohort_channels::Channel::new(2)).unwrap();"
    )]
    pub fn with_factory<F, C>(
        pid: Pid,
        factory: F,
    ) -> impl std::future::Future<Output = Result<Self, CallError>>
    where
        F: RemoteFn<(), Output = C>,
        C: AbstractChannel<T> + 'static,
    {
        Self::with_factory_in(current(), pid, factory)
    }

    /// [`with_factory`](Self::with_factory) in `n`'s cluster.
    pub(crate) async fn with_factory_in<F, C>(
        n: Arc<Node>,
        pid: Pid,
        factory: F,
    ) -> Result<Self, CallError>
    where
        F: RemoteFn<(), Output = C>,
        C: AbstractChannel<T> + 'static,
    {
        let id = n.new_ref();
        if pid == n.myid() {
            n.store().created(id, pid);
            install::<T>(&n, id, Arc::new(factory.call(())));
            return Ok(Self::handle(n, id, pid));
        }
        // Count our handle before the channel exists, so the owner cannot free it
        // between its creation and our first use.
        n.store().created(id, pid);
        let rc = Self::handle(n.clone(), id, pid);
        let install = Install::<T, F> {
            id,
            factory,
            _t: PhantomData,
        };
        crate::api::call::remotecall_wait_in(n, install, pid, ()).await?;
        Ok(rc)
    }

    /// The process that stores the channel.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// assert_eq!(rc.owner(), 1);
    /// ```
    pub fn owner(&self) -> Pid {
        self.inner.owner
    }

    /// The reference's identity (Julia's `remoteref_id`).
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// assert_eq!(rc.id().whence, 1);
    /// ```
    pub fn id(&self) -> RefId {
        self.inner.id
    }

    /// Gives up this process's claim on the channel now, for every clone of this
    /// handle in the process (Julia's `finalize`); the owner frees the channel once no
    /// process claims it. Later operations through this handle fail with
    /// [`CallError::Finalized`].
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// rc.finalize();
    /// assert_eq!(rc.take_blocking(), Err(cohort_cluster::CallError::Finalized));
    /// ```
    pub fn finalize(&self) {
        use std::sync::atomic::Ordering;
        if !self.inner.finalized.swap(true, Ordering::AcqRel) {
            self.inner.node.store().released(self.inner.id);
        }
    }

    fn check_finalized(&self) -> Result<(), CallError> {
        if self
            .inner
            .finalized
            .load(std::sync::atomic::Ordering::Acquire)
        {
            Err(CallError::Finalized)
        } else {
            Ok(())
        }
    }

    fn local(&self) -> Option<Arc<dyn AbstractChannel<T>>> {
        (self.inner.owner == self.inner.node.myid())
            .then(|| channel_in::<T>(&self.inner.node, self.inner.id))
            .flatten()
    }

    async fn ask(&self, kind: RefRequestKind, value: Vec<u8>) -> Reply {
        let n = &self.inner.node;
        let owner = self.inner.owner;
        let call_id = n.new_call_id();
        let env = Envelope {
            kind: Some(Kind::RefRequest(proto::RefRequest {
                call_id,
                ref_id: Some(self.inner.id.into()),
                kind: kind as i32,
                value: value.into(),
                creator: self.inner.id.whence,
            })),
        };
        n.request(owner, call_id, env).await.map_err(|e| match e {
            CallError::Remote(r) if r.kind == ErrorKind::ChannelClosed => CallError::ChannelClosed,
            other => other,
        })
    }

    fn gone(&self) -> CallError {
        CallError::Remote(crate::RemoteException {
            pid: self.inner.owner,
            kind: ErrorKind::Reference,
            function: String::new(),
            message: format!("channel {} no longer exists", self.inner.id),
            context: String::new(),
        })
    }

    /// Puts a value, waiting while the channel is full (Julia's `put!`).
    ///
    /// # Errors
    /// A [`SendError`] holding the value back: [`CallError::ChannelClosed`], the
    /// owner is gone ([`CallError::WorkerExited`] naming it), or the encoded value is
    /// larger than one message may be ([`CallError::PayloadTooLarge`]; nothing was
    /// sent).
    ///
    /// # Cancel safety
    /// Not cancel-safe for the value: a dropped put never hands it back. Nothing is
    /// put twice. On the owner itself, a put dropped before it completes did not put
    /// the value (as [`Channel::put`], for a [`Channel`]) and drops it. On another
    /// process, the value travels at the first poll, and a put dropped after that is
    /// still carried out by the owner — waiting there for room if the channel is
    /// full — though nobody learns how it ended.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new(1).await.unwrap();
    /// rc.put(3).await.unwrap();
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_blocking(3).unwrap();"
    )]
    pub async fn put(&self, value: T) -> Result<(), SendError<T>> {
        if let Err(error) = self.check_finalized() {
            return Err(SendError { value, error });
        }
        if self.inner.owner == self.inner.node.myid() {
            let Some(ch) = self.local() else {
                return Err(SendError {
                    value,
                    error: self.gone(),
                });
            };
            return ch.put((), value).await.map_err(|e| SendError {
                value: e.into_inner(),
                error: CallError::ChannelClosed,
            });
        }
        let bytes = match codec::with_target(&self.inner.node, self.inner.owner, || {
            codec::encode(&value)
        }) {
            Ok(b) => b,
            Err(f) => {
                return Err(SendError {
                    value,
                    error: decode_err(f),
                })
            }
        };
        // Checked here: the owner would drop the connection over an oversized frame.
        if let Err(error) =
            crate::api::limits::check_payload(&self.inner.node, "channel value", bytes.len())
        {
            return Err(SendError { value, error });
        }
        match self.ask(RefRequestKind::Put, bytes).await {
            Ok(_) => Ok(()),
            Err(error) => Err(SendError { value, error }),
        }
    }

    async fn get(&self, kind: RefRequestKind) -> Result<T, CallError> {
        self.check_finalized()?;
        if self.inner.owner == self.inner.node.myid() {
            let ch = self.local().ok_or_else(|| self.gone())?;
            let r = if kind == RefRequestKind::Take {
                ch.take(()).await
            } else {
                ch.fetch(()).await
            };
            return r.map_err(channel_error);
        }
        let b = self.ask(kind, Vec::new()).await?;
        // Handles inside the value are this channel's cluster's.
        enter(&self.inner.node, || codec::decode(&b)).map_err(decode_err)
    }

    /// Removes and returns the oldest value, waiting for one (Julia's `take!`).
    ///
    /// # Errors
    /// [`CallError::ChannelClosed`] once the channel is closed and drained; the owner
    /// is gone.
    ///
    /// # Cancel safety
    /// Cancel-safe: a take whose future is dropped before it completes loses no
    /// value, whichever process owns the channel, so it can be raced in `select!` or
    /// put under a timeout, and the next take gets the value.
    ///
    /// - On the owner itself the take goes straight to the channel, and a
    ///   [`Channel`]'s take removes a value only in the poll that returns it. (A
    ///   channel made by a factory is as cancel-safe as its
    ///   [`AbstractChannel::take`].)
    /// - On another process, the owner is told to stop the take; if it had removed a
    ///   value already (the value was on its way), the value is sent back and put at
    ///   the front of the channel, ahead of the values behind it (`docs/protocol.md`,
    ///   "Given-up takes"). Until it is back, other takes may get the values behind
    ///   it, and [`isready`](Self::isready) may say there is none.
    ///
    /// What stays unavoidable: if the owner dies, its channel and the value on its
    /// way back are gone; if this process dies, so is a value on its way here.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new(1).await.unwrap();
    /// rc.put(3).await.unwrap();
    /// assert_eq!(rc.take().await.unwrap(), 3);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_blocking(3).unwrap();
 assert_eq!(rc.take_blocking().unwrap(), 3);"
    )]
    pub async fn take(&self) -> Result<T, CallError> {
        self.get(RefRequestKind::Take).await
    }

    /// [`take`](Self::take), giving up after `limit` (see [`crate::with_timeout`]).
    ///
    /// # Errors
    /// As [`take`](Self::take), and [`CallError::TimedOut`] if no value came within
    /// `limit`.
    ///
    /// # Cancel safety
    /// As [`take`](Self::take): a take that timed out removes nothing for good (a
    /// value the owner had already removed for it is put back at the front).
    ///
    /// ```
    /// use std::time::Duration;
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new(1).await.unwrap();
    /// let r = rc.take_timeout(Duration::from_millis(10)).await;
    /// assert!(matches!(r, Err(cohort_cluster::CallError::TimedOut { .. })));
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_blocking(3).unwrap();
 assert_eq!(rc.take_timeout_blocking(std::time::Duration::from_secs(5)).unwrap(), 3);"
    )]
    pub async fn take_timeout(&self, limit: std::time::Duration) -> Result<T, CallError> {
        crate::with_timeout(limit, self.take()).await
    }

    /// [`fetch`](Self::fetch), giving up after `limit` (see [`crate::with_timeout`]).
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch), and [`CallError::TimedOut`] if no value came within
    /// `limit`.
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`fetch`](Self::fetch).
    ///
    /// ```
    /// use std::time::Duration;
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new(1).await.unwrap();
    /// let r = rc.fetch_timeout(Duration::from_millis(10)).await;
    /// assert!(matches!(r, Err(cohort_cluster::CallError::TimedOut { .. })));
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_blocking(3).unwrap();
 assert_eq!(rc.fetch_timeout_blocking(std::time::Duration::from_secs(5)).unwrap(), 3);"
    )]
    pub async fn fetch_timeout(&self, limit: std::time::Duration) -> Result<T, CallError> {
        crate::with_timeout(limit, self.fetch()).await
    }

    /// Returns a copy of the oldest value without removing it, waiting for one
    /// (Julia's `fetch`).
    ///
    /// # Errors
    /// As [`take`](Self::take); [`CallError::ChannelUnsupported`] on an unbuffered
    /// channel.
    ///
    /// # Cancel safety
    /// Cancel-safe: it removes nothing. On another process the owner's fetch goes on
    /// waiting for a value, and its answer is then dropped.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new(1).await.unwrap();
    /// rc.put(3).await.unwrap();
    /// assert_eq!(rc.fetch().await.unwrap(), 3);
    /// assert!(rc.isready().await);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_blocking(3).unwrap();
 assert_eq!(rc.fetch_blocking().unwrap(), 3);"
    )]
    pub async fn fetch(&self) -> Result<T, CallError> {
        self.get(RefRequestKind::Fetch).await
    }

    /// Whether a value can be taken now (Julia's `isready`).
    ///
    /// # Cancel safety
    /// Cancel-safe: it changes nothing; an answer that comes late is dropped.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new(1).await.unwrap();
    /// assert!(!rc.isready().await);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 assert!(!rc.isready_blocking());"
    )]
    pub async fn isready(&self) -> bool {
        if self.check_finalized().is_err() {
            return false;
        }
        if self.inner.owner == self.inner.node.myid() {
            return self.local().is_some_and(|c| c.isready(()));
        }
        matches!(self.ask(RefRequestKind::IsReady, Vec::new()).await, Ok(b) if b.first() == Some(&1))
    }

    /// Waits until a value is available (Julia's `wait`).
    ///
    /// # Errors
    /// [`CallError::ChannelClosed`] if the channel is closed and empty; the owner is
    /// gone.
    ///
    /// # Cancel safety
    /// Cancel-safe: it changes nothing. On another process the owner's wait goes on
    /// until there is a value, and its answer is then dropped.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new(1).await.unwrap();
    /// rc.put(1).await.unwrap();
    /// rc.wait().await.unwrap();
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_blocking(1).unwrap();
 rc.wait_blocking().unwrap();"
    )]
    pub async fn wait(&self) -> Result<(), CallError> {
        self.check_finalized()?;
        if self.inner.owner == self.inner.node.myid() {
            let ch = self.local().ok_or_else(|| self.gone())?;
            return ch.wait(()).await.map_err(channel_error);
        }
        self.ask(RefRequestKind::Wait, Vec::new()).await.map(|_| ())
    }

    /// [`wait`](Self::wait), giving up after `limit` (see [`crate::with_timeout`]).
    ///
    /// # Errors
    /// As [`wait`](Self::wait), and [`CallError::TimedOut`] if no value came within
    /// `limit`.
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`wait`](Self::wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new(1).await.unwrap();
    /// let r = rc.wait_timeout(Duration::from_millis(10)).await;
    /// assert!(matches!(r, Err(cohort_cluster::CallError::TimedOut { .. })));
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_blocking(3).unwrap();
 rc.wait_timeout_blocking(std::time::Duration::from_secs(5)).unwrap();"
    )]
    pub async fn wait_timeout(&self, limit: std::time::Duration) -> Result<(), CallError> {
        crate::with_timeout(limit, self.wait()).await
    }

    /// Closes the channel for everyone (Julia's `close`): puts fail from now on, takes
    /// drain what is left, then fail. Completes once the owner has closed it.
    ///
    /// # Errors
    /// [`CallError::Finalized`] through a finalized handle; the owner's loss
    /// ([`CallError::WorkerExited`]).
    ///
    /// # Cancel safety
    /// Dropping the future before it completes may or may not close the channel
    /// (the request may have left already).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new(1).await.unwrap();
    /// rc.close().await.unwrap();
    /// assert!(rc.put(1).await.is_err());
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.close_blocking().unwrap();
 assert!(rc.put_blocking(1).is_err());"
    )]
    pub async fn close(&self) -> Result<(), CallError> {
        self.check_finalized()?;
        if self.inner.owner == self.inner.node.myid() {
            if let Some(c) = self.local() {
                c.close();
            }
            return Ok(());
        }
        self.ask(RefRequestKind::Close, Vec::new())
            .await
            .map(|_| ())
    }

    /// A blocking iterator that takes values until the channel is closed and drained
    /// (Julia's `for x in channel`).
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::with_capacity_blocking(1, 4).unwrap();
    /// for i in 0..3 { rc.put_blocking(i).unwrap(); }
    /// rc.close_blocking().unwrap();
    /// assert_eq!(rc.iter().collect::<Vec<_>>(), vec![0, 1, 2]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.take_blocking().ok())
    }
}

/// The default factory: a [`Channel<T>`] of a given capacity.
struct NewChannel<T> {
    cap: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T: ChannelValue> RemoteFn<()> for NewChannel<T> {
    type Output = Channel<T>;
    fn call(&self, (): ()) -> Channel<T> {
        Channel::new(self.cap)
    }
    fn encode_state(&self) -> Result<Vec<u8>, Failure> {
        codec::encode(&(self.cap as u64))
    }
    fn decode_state(state: &[u8]) -> Result<Self, Failure> {
        let cap: u64 = codec::decode(state)?;
        Ok(NewChannel {
            cap: cap as usize,
            _t: PhantomData,
        })
    }
}

/// The channel behind a reference this process owns (Julia's `channel_from_id`), or
/// `None` if it does not own one with that id and element type.
///
/// ```
/// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
/// let ch = cohort_cluster::channel_from_id::<u8>(rc.id()).unwrap();
/// assert!(!ch.isready(()));
/// ```
pub fn channel_from_id<T: Send + 'static>(id: RefId) -> Option<Arc<dyn AbstractChannel<T>>> {
    channel_in(&current(), id)
}

fn channel_in<T: Send + 'static>(node: &Node, id: RefId) -> Option<Arc<dyn AbstractChannel<T>>> {
    let slot = node.store().channel(id)?;
    slot.typed
        .downcast_ref::<Arc<dyn AbstractChannel<T>>>()
        .cloned()
}

/// How a `RemoteChannel` travels: its identity and owner.
#[derive(Serialize, Deserialize)]
struct Carried {
    whence: Pid,
    id: u64,
    owner: Pid,
}

impl<T: ChannelValue> Serialize for RemoteChannel<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some((node_id, dest)) = codec::target() {
            if node_id != self.inner.node.id {
                return Err(codec::refuse(format!(
                    "a RemoteChannel of another cluster cannot travel in this message (reference {})",
                    self.inner.id
                )));
            }
            self.inner.node.store().serialized(self.inner.id, dest);
        }
        Carried {
            whence: self.inner.id.whence,
            id: self.inner.id.id,
            owner: self.inner.owner,
        }
        .serialize(s)
    }
}

impl<'de, T: ChannelValue> Deserialize<'de> for RemoteChannel<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let c = Carried::deserialize(d)?;
        let id = RefId::new(c.whence, c.id);
        // The node that receives the message (see `shell::node::enter`).
        let n = current();
        let existing = live(&n).lock().get(&id).and_then(Weak::upgrade);
        if let Some(existing) = existing {
            if let Ok(inner) = existing.downcast::<Inner<T>>() {
                n.store().deserialized(id, c.owner, false);
                return Ok(RemoteChannel { inner });
            }
        }
        n.store().deserialized(id, c.owner, true);
        Ok(Self::handle(n, id, c.owner))
    }
}
