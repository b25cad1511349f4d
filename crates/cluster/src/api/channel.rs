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
use crate::api::future::{live, Unary};
use crate::codec;
use crate::core::Reply;
use crate::error::{CallError, ErrorKind, Failure, WireException};
use crate::registry::{RemoteFn, RemoteFnEntry, REMOTE_FUNCTIONS};
use crate::shell::channel_ops::{ChannelSlot, ErasedChannel, TAKE_AHEAD_BYTES};
use crate::shell::node::{current, enter, Node};

/// What a channel value must be to travel: serde both ways, shareable, and `Clone`
/// (for `fetch`, which copies without removing).
pub trait ChannelValue: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> ChannelValue for T {}

/// The environment variable that turns channel credits off in a process when it is
/// `0`, `off`, `false` or `no` (any case): every put of that process into a channel
/// on another process then waits for the owner's answer, as Julia's `put!` does (see
/// [`RemoteChannel::put`]). Read once, by the putting process; workers inherit it
/// from the process that starts them.
///
/// ```
/// assert_eq!(cohort_cluster::CHANNEL_CREDITS_ENV, "COHORT_CHANNEL_CREDITS");
/// ```
pub const CHANNEL_CREDITS_ENV: &str = "COHORT_CHANNEL_CREDITS";

/// Whether this process asks for channel credits ([`CHANNEL_CREDITS_ENV`]).
fn credits_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        !std::env::var(CHANNEL_CREDITS_ENV).is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "0" | "off" | "false" | "no"
            )
        })
    })
}

fn channel_error(e: ChannelError) -> CallError {
    match e {
        ChannelError::Closed => CallError::ChannelClosed,
        other => CallError::ChannelUnsupported(other.to_string()),
    }
}

fn decode_err(f: Failure) -> CallError {
    CallError::Serialization(f.message)
}

struct Typed<T, K>(Arc<dyn AbstractChannel<T, K>>);

/// Encodes `v` for the requester `to`: handles inside travel live to it.
fn encode_for<V: Serialize>((node, pid): &(Arc<Node>, Pid), v: &V) -> Result<Bytes, CallError> {
    codec::with_target(node, *pid, || codec::encode(v))
        .map(Bytes::from)
        .map_err(decode_err)
}

/// Appends the encoding of `kv` for the requester `to` to `out`.
fn encode_kv_for<V: Serialize>(
    (node, pid): &(Arc<Node>, Pid),
    kv: &V,
    out: &mut Vec<u8>,
) -> Result<(), CallError> {
    codec::with_target(node, *pid, || codec::encode_into(kv, out)).map_err(decode_err)
}

/// The `(key, value)` encodings one after the other in `bytes` (a take's answer,
/// one value or a take-ahead's batch; a batch never holds values that encode to
/// nothing, see [`Typed::take_ahead`]).
fn decode_kvs<K: ChannelValue, T: ChannelValue>(
    mut bytes: &[u8],
) -> Result<Vec<(K, T)>, CallError> {
    let mut kvs = Vec::new();
    loop {
        let (kv, rest) = postcard::take_from_bytes::<(K, T)>(bytes)
            .map_err(|e| CallError::Serialization(e.to_string()))?;
        kvs.push(kv);
        if rest.is_empty() || rest.len() == bytes.len() {
            return Ok(kvs);
        }
        bytes = rest;
    }
}

/// A value under `k` that `ch` holds now: its take polled once; one that would
/// wait is dropped, which removes nothing (a channel's take is cancel-safe).
fn take_now<T, K>(
    ch: &dyn AbstractChannel<T, K>,
    k: K,
    cx: &mut std::task::Context<'_>,
) -> Option<T> {
    match ch.take(k).as_mut().poll(cx) {
        std::task::Poll::Ready(Ok(v)) => Some(v),
        _ => None,
    }
}

impl<T: ChannelValue, K: ChannelValue> Typed<T, K> {
    /// Adds to `out` up to `more` values under `k` that are there now, without
    /// waiting, within [`TAKE_AHEAD_BYTES`] and the message limit. Each take is
    /// polled once: one that would wait is dropped, which removes nothing (the
    /// channel's take is cancel-safe).
    async fn take_ahead(&self, k: K, more: u32, to: &(Arc<Node>, Pid), out: &mut Vec<u8>) {
        if out.is_empty() {
            // Values that encode to nothing (a channel of `()`): a batch of them
            // would not say how many it holds, so one goes at a time.
            return;
        }
        let limit = crate::api::limits::payload_limit(&to.0);
        let budget = out.len().saturating_add(TAKE_AHEAD_BYTES).min(limit);
        // A value that could not go with the batch, for the front of the channel.
        let mut back = None;
        {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            for _ in 0..more {
                if out.len() >= budget {
                    break;
                }
                let Some(v) = take_now(&*self.0, k.clone(), &mut cx) else {
                    break;
                };
                let before = out.len();
                let kv = (k.clone(), v);
                if encode_kv_for(to, &kv, out).is_err() || out.len() > limit {
                    out.truncate(before);
                    back = Some(kv);
                    break;
                }
            }
        }
        if let Some((k, v)) = back {
            if self.0.put_front(k, v).await.is_err() {
                tracing::warn!("a value taken ahead could not go back to its channel");
            }
        }
    }
}

impl<T: ChannelValue, K: ChannelValue> ErasedChannel for Typed<T, K> {
    fn put(&self, bytes: Bytes) -> BoxFuture<'_, Result<(), CallError>> {
        let kv: Result<(K, T), CallError> = codec::decode(&bytes).map_err(decode_err);
        Box::pin(async move {
            let (k, v) = kv?;
            self.0.put(k, v).await.map_err(|_| CallError::ChannelClosed)
        })
    }
    fn reserve(&self, max: u32) -> u32 {
        // At most `max`, so it fits (a user's channel may reserve more than asked).
        self.0.reserve(max as usize).min(max as usize) as u32
    }
    fn put_reserved(&self, bytes: Bytes) -> Result<(), CallError> {
        let (k, v): (K, T) = codec::decode(&bytes).map_err(decode_err)?;
        self.0
            .put_reserved(k, v)
            .map_err(|_| CallError::ChannelUnsupported("no place reserved".into()))
    }
    fn unreserve(&self, n: u32) {
        self.0.unreserve(n as usize)
    }
    fn take(
        &self,
        key: Bytes,
        more: u32,
        to: (Arc<Node>, Pid),
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        let k: Result<K, CallError> = codec::decode(&key).map_err(decode_err);
        Box::pin(async move {
            let k = k?;
            let v = self.0.take(k.clone()).await.map_err(channel_error)?;
            // With its key: a value handed back goes back under it.
            let mut out = Vec::new();
            encode_kv_for(&to, &(k.clone(), v), &mut out)?;
            if more > 0 {
                self.take_ahead(k, more, &to, &mut out).await;
            }
            Ok(Bytes::from(out))
        })
    }
    fn put_front(&self, bytes: Bytes) -> BoxFuture<'_, Result<(), CallError>> {
        let kvs = decode_kvs::<K, T>(&bytes);
        Box::pin(async move {
            // The last first: each goes to the very front, so the first ends there.
            for (k, v) in kvs?.into_iter().rev() {
                self.0
                    .put_front(k, v)
                    .await
                    .map_err(|_| CallError::ChannelClosed)?;
            }
            Ok(())
        })
    }
    fn fetch(&self, key: Bytes, to: (Arc<Node>, Pid)) -> BoxFuture<'_, Result<Bytes, CallError>> {
        let k: Result<K, CallError> = codec::decode(&key).map_err(decode_err);
        Box::pin(async move {
            let v = self.0.fetch(k?).await.map_err(channel_error)?;
            encode_for(&to, &v)
        })
    }
    fn wait(&self, key: Bytes) -> BoxFuture<'_, Result<(), CallError>> {
        let k: Result<K, CallError> = codec::decode(&key).map_err(decode_err);
        Box::pin(async move { self.0.wait(k?).await.map_err(channel_error) })
    }
    fn isready(&self, key: Bytes) -> Result<bool, CallError> {
        let k: K = codec::decode(&key).map_err(decode_err)?;
        Ok(self.0.isready(k))
    }
    fn close(&self) {
        self.0.close()
    }
    fn is_open(&self) -> bool {
        self.0.is_open()
    }
    fn len(&self) -> Option<usize> {
        self.0.len()
    }
}

/// Puts a channel made by a factory into `node`'s store under `id`.
fn install<T: ChannelValue, K: ChannelValue>(
    node: &Node,
    id: RefId,
    chan: Arc<dyn AbstractChannel<T, K>>,
) {
    // Reservations for other processes' credits are managed by this node's core;
    // the listener holds the node weakly (the channel lives in the node's store).
    let weak = node.weak();
    chan.on_reservations(Box::new(move |event| {
        if let Some(node) = weak.upgrade() {
            crate::shell::channel_ops::reservations(&node, id, event);
        }
    }));
    let slot = ChannelSlot::new(Arc::new(Typed(chan.clone())), Arc::new(chan)).counted(node);
    node.store().install_channel(id, slot);
}

/// The call that runs a factory on the owner and installs its channel there.
struct Install<T, K, F> {
    id: RefId,
    factory: F,
    _t: PhantomData<fn() -> (T, K)>,
}

impl<T, K, F, C> RemoteFn<()> for Install<T, K, F>
where
    T: ChannelValue,
    K: ChannelValue,
    F: RemoteFn<(), Output = C>,
    C: AbstractChannel<T, K> + 'static,
{
    type Output = ();

    fn call(&self, (): ()) {
        // Runs on the owner, for the node that received the call.
        install::<T, K>(&current(), self.id, Arc::new(self.factory.call(())));
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

struct Inner<T, K> {
    /// The node (cluster) this handle belongs to.
    node: Arc<Node>,
    id: RefId,
    owner: Pid,
    /// Set by `finalize` (or for a handle that arrived finalized): this process no
    /// longer claims the channel.
    finalized: std::sync::atomic::AtomicBool,
    /// Decoded from bytes made outside a cluster message: no claim, every use fails
    /// ([`CallError::Inert`]).
    inert: bool,
    /// Whether this handle is the one in the node's table of live handles (a dead
    /// one never is).
    in_live: bool,
    _t: PhantomData<fn() -> (T, K)>,
}

impl<T, K> Drop for Inner<T, K> {
    fn drop(&mut self) {
        if !self.finalized.load(std::sync::atomic::Ordering::Acquire) {
            if self.owner != self.node.myid() {
                self.node.store().forget_credits(self.id);
            }
            self.node.store().dropped(self.id);
        }
        if self.in_live {
            live(&self.node).lock().remove(&self.id);
        }
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
///
/// # Keyed channels
///
/// `K` is the channel's key type ([`AbstractChannel<T, K>`]): `()` for a FIFO
/// channel, whose methods take no key (`put`, `take`, …); a keyed store made by a
/// factory — the manual's `DictChannel` — uses the `_key` forms, which forward the
/// key to the channel on its owner (Julia's `put!(rr, k, v)`, `take!(rr, k)`,
/// `fetch(rr, k)`, `isready(rr, k)`, `wait(rr, k)`).
///
/// ```
/// use cohort_channels::{AbstractChannel, ChannelError, PutError};
/// use cohort_cluster::RemoteChannel;
/// use futures::future::BoxFuture;
/// use std::collections::HashMap;
/// use std::sync::Mutex;
///
/// /// A keyed store whose takes do not wait (a small stand-in for `DictChannel`).
/// #[derive(Default)]
/// struct Store(Mutex<HashMap<String, u32>>);
/// impl AbstractChannel<u32, String> for Store {
///     fn put(&self, k: String, v: u32) -> BoxFuture<'_, Result<(), PutError<u32>>> {
///         self.0.lock().unwrap().insert(k, v);
///         Box::pin(async { Ok(()) })
///     }
///     fn take(&self, k: String) -> BoxFuture<'_, Result<u32, ChannelError>> {
///         let v = self.0.lock().unwrap().remove(&k).ok_or(ChannelError::Closed);
///         Box::pin(async move { v })
///     }
///     fn isready(&self, k: String) -> bool { self.0.lock().unwrap().contains_key(&k) }
///     fn wait(&self, _k: String) -> BoxFuture<'_, Result<(), ChannelError>> { Box::pin(async { Ok(()) }) }
///     fn close(&self) {}
///     fn is_open(&self) -> bool { true }
///     fn len(&self) -> Option<usize> { Some(self.0.lock().unwrap().len()) }
/// }
///
/// let rr = RemoteChannel::<u32, String>::with_factory_blocking(1, Store::default).unwrap();
/// rr.put_key_blocking("a".into(), 7).unwrap();
/// assert!(rr.isready_key_blocking("a".into()).unwrap());
/// assert_eq!(rr.len_blocking().unwrap(), Some(1));
/// assert_eq!(rr.take_key_blocking("a".into()).unwrap(), 7);
/// ```
pub struct RemoteChannel<T, K = ()> {
    inner: Arc<Inner<T, K>>,
}

impl<T, K> Clone for RemoteChannel<T, K> {
    fn clone(&self) -> Self {
        RemoteChannel {
            inner: self.inner.clone(),
        }
    }
}

impl<T, K> fmt::Debug for RemoteChannel<T, K> {
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

impl<T: ChannelValue, K: ChannelValue> RemoteChannel<T, K> {
    fn handle(node: Arc<Node>, id: RefId, owner: Pid) -> Self {
        let inner = Arc::new(Inner {
            node,
            id,
            owner,
            finalized: std::sync::atomic::AtomicBool::new(false),
            inert: false,
            in_live: true,
            _t: PhantomData,
        });
        let weak: Weak<dyn Any + Send + Sync> =
            Arc::downgrade(&(inner.clone() as Arc<dyn Any + Send + Sync>));
        live(&inner.node).lock().insert(id, weak);
        RemoteChannel { inner }
    }

    /// A handle that names channel `id` but holds no claim on it: one that arrived
    /// finalized, or an inert one (see [`CallError::Inert`]).
    fn dead(node: Arc<Node>, id: RefId, owner: Pid, inert: bool) -> Self {
        RemoteChannel {
            inner: Arc::new(Inner {
                node,
                id,
                owner,
                finalized: std::sync::atomic::AtomicBool::new(true),
                inert,
                in_live: false,
                _t: PhantomData,
            }),
        }
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
}

impl<T: ChannelValue> RemoteChannel<T> {
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
 assert!(!rc.isready_blocking().unwrap());"
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
}

impl<T: ChannelValue, K: ChannelValue> RemoteChannel<T, K> {
    /// A channel made on `pid` by `factory`, which returns any
    /// [`AbstractChannel<T, K>`] (Julia's `RemoteChannel(() -> Channel{Int}(10), pid)`,
    /// or `RemoteChannel(() -> DictChannel(), pid)` for a keyed one). Waits until the
    /// channel exists on `pid`.
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
        C: AbstractChannel<T, K> + 'static,
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
        C: AbstractChannel<T, K> + 'static,
    {
        let id = n.new_ref();
        if pid == n.myid() {
            n.store().created(id, pid);
            install::<T, K>(&n, id, Arc::new(factory.call(())));
            return Ok(Self::handle(n, id, pid));
        }
        // Count our handle before the channel exists, so the owner cannot free it
        // between its creation and our first use.
        n.store().created(id, pid);
        let rc = Self::handle(n.clone(), id, pid);
        let install = Install::<T, K, F> {
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
    /// process claims it. Every later operation through this handle (or a clone of
    /// it here) fails with [`CallError::Finalized`], and a finalized handle sent to
    /// another process arrives finalized: its operations there fail the same way at
    /// once.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// rc.finalize();
    /// assert_eq!(rc.take_blocking(), Err(cohort_cluster::CallError::Finalized));
    /// assert_eq!(rc.isready_blocking(), Err(cohort_cluster::CallError::Finalized));
    /// ```
    pub fn finalize(&self) {
        use std::sync::atomic::Ordering;
        if !self.inner.finalized.swap(true, Ordering::AcqRel) {
            self.inner.node.store().forget_credits(self.inner.id);
            self.inner.node.store().released(self.inner.id);
        }
    }

    /// Whether the handle may still be used: not finalized, not inert.
    fn check_finalized(&self) -> Result<(), CallError> {
        if self.inner.inert {
            Err(CallError::Inert { id: self.inner.id })
        } else if self
            .inner
            .finalized
            .load(std::sync::atomic::Ordering::Acquire)
        {
            Err(CallError::Finalized)
        } else {
            Ok(())
        }
    }

    fn local(&self) -> Option<Arc<dyn AbstractChannel<T, K>>> {
        (self.inner.owner == self.inner.node.myid())
            .then(|| channel_in::<T, K>(&self.inner.node, self.inner.id))
            .flatten()
    }

    fn is_local(&self) -> bool {
        self.inner.owner == self.inner.node.myid()
    }

    /// Encodes `v` for the owner (handles inside travel live to it).
    fn encode_for_owner<V: Serialize>(&self, v: &V) -> Result<Vec<u8>, CallError> {
        codec::with_target(&self.inner.node, self.inner.owner, || codec::encode(v))
            .map_err(decode_err)
    }

    async fn ask(&self, kind: RefRequestKind, value: Vec<u8>) -> Reply {
        self.ask_for(kind, value.into(), 0).await
    }

    /// [`ask`](Self::ask), asking for `credits` (a `PUT`'s).
    async fn ask_for(&self, kind: RefRequestKind, value: Bytes, credits: u32) -> Reply {
        let n = &self.inner.node;
        let owner = self.inner.owner;
        let call_id = n.new_call_id();
        let env = Envelope {
            kind: Some(Kind::RefRequest(proto::RefRequest {
                call_id,
                ref_id: Some(self.inner.id.into()),
                kind: kind as i32,
                value,
                creator: self.inner.id.whence,
                credits,
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

    /// Puts `value` under `key` (Julia's `put!(rr, key, value)` on a keyed channel),
    /// waiting as the channel's `put` does. For a FIFO channel (`K = ()`) this is
    /// [`put`](RemoteChannel::put).
    ///
    /// # Errors
    /// As [`put`](RemoteChannel::put).
    ///
    /// # Cancel safety
    /// As [`put`](RemoteChannel::put).
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// rc.put_key_blocking((), 3).unwrap();
    /// assert_eq!(rc.take_key_blocking(()).unwrap(), 3);
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_key_blocking((), 3).unwrap();"
    )]
    pub async fn put_key(&self, key: K, value: T) -> Result<(), SendError<T>> {
        if let Err(error) = self.check_finalized() {
            return Err(SendError { value, error });
        }
        if self.is_local() {
            let Some(ch) = self.local() else {
                return Err(SendError {
                    value,
                    error: self.gone(),
                });
            };
            return ch.put(key, value).await.map_err(|e| SendError {
                value: e.into_inner(),
                error: CallError::ChannelClosed,
            });
        }
        // The key first: a unit key encodes to nothing, so a plain channel's bytes
        // are the value's alone.
        let bytes = match self.encode_for_owner(&(&key, &value)) {
            Ok(b) => b,
            Err(error) => return Err(SendError { value, error }),
        };
        // Checked here: the owner would drop the connection over an oversized frame.
        if let Err(error) =
            crate::api::limits::check_payload(&self.inner.node, "channel value", bytes.len())
        {
            return Err(SendError { value, error });
        }
        // Within a credit the put goes out at once: the owner reserved its place.
        let (bytes, want) = if credits_on() {
            let store = self.inner.node.store();
            match store.put_credited(self.inner.owner, self.inner.id, bytes.into()) {
                Ok(()) => return Ok(()),
                Err(back) => back,
            }
        } else {
            (bytes.into(), 0)
        };
        match self.ask_for(RefRequestKind::Put, bytes, want).await {
            Ok(_) => Ok(()),
            Err(error) => Err(SendError { value, error }),
        }
    }

    async fn get(&self, kind: RefRequestKind, key: K) -> Result<T, CallError> {
        self.check_finalized()?;
        if self.is_local() {
            let ch = self.local().ok_or_else(|| self.gone())?;
            let r = if kind == RefRequestKind::Take {
                ch.take(key).await
            } else {
                ch.fetch(key).await
            };
            return r.map_err(channel_error);
        }
        let b = self.ask(kind, self.encode_for_owner(&key)?).await?;
        // Handles inside the value are this channel's cluster's. A take answers
        // with the key (see `shell::channel_ops::ErasedChannel`).
        enter(&self.inner.node, || {
            if kind == RefRequestKind::Take {
                codec::decode::<(K, T)>(&b).map(|(_, v)| v)
            } else {
                codec::decode::<T>(&b)
            }
        })
        .map_err(decode_err)
    }

    /// Removes and returns the value under `key`, waiting for it (Julia's
    /// `take!(rr, key)`). For a FIFO channel this is [`take`](RemoteChannel::take).
    ///
    /// # Errors
    /// As [`take`](RemoteChannel::take).
    ///
    /// # Cancel safety
    /// As [`take`](RemoteChannel::take), given the channel's own `take` is
    /// cancel-safe; a value removed for a take given up goes back under its key
    /// ([`AbstractChannel::put_front`]).
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// rc.put_blocking(4).unwrap();
    /// assert_eq!(rc.take_key_blocking(()).unwrap(), 4);
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_blocking(4).unwrap();
 assert_eq!(rc.take_key_blocking(()).unwrap(), 4);"
    )]
    pub async fn take_key(&self, key: K) -> Result<T, CallError> {
        self.get(RefRequestKind::Take, key).await
    }

    /// Returns a copy of the value under `key` without removing it, waiting for it
    /// (Julia's `fetch(rr, key)`). For a FIFO channel this is
    /// [`fetch`](RemoteChannel::fetch).
    ///
    /// # Errors
    /// As [`fetch`](RemoteChannel::fetch); [`CallError::ChannelUnsupported`] for a
    /// channel whose `fetch` is the trait's default.
    ///
    /// # Cancel safety
    /// Cancel-safe: it removes nothing.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// rc.put_blocking(4).unwrap();
    /// assert_eq!(rc.fetch_key_blocking(()).unwrap(), 4);
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_blocking(4).unwrap();
 assert_eq!(rc.fetch_key_blocking(()).unwrap(), 4);"
    )]
    pub async fn fetch_key(&self, key: K) -> Result<T, CallError> {
        self.get(RefRequestKind::Fetch, key).await
    }

    /// Whether the value under `key` is there now (Julia's `isready(rr, key)`).
    ///
    /// # Errors
    /// As [`isready`](RemoteChannel::isready).
    ///
    /// # Cancel safety
    /// Cancel-safe: it changes nothing.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// assert!(!rc.isready_key_blocking(()).unwrap());
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 assert!(!rc.isready_key_blocking(()).unwrap());"
    )]
    pub async fn isready_key(&self, key: K) -> Result<bool, CallError> {
        self.check_finalized()?;
        if self.is_local() {
            return Ok(self.local().ok_or_else(|| self.gone())?.isready(key));
        }
        let b = self
            .ask(RefRequestKind::IsReady, self.encode_for_owner(&key)?)
            .await?;
        Ok(b.first() == Some(&1))
    }

    /// Waits until the value under `key` is there (Julia's `wait(rr, key)`).
    ///
    /// # Errors
    /// As [`wait`](RemoteChannel::wait).
    ///
    /// # Cancel safety
    /// Cancel-safe: it changes nothing.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// rc.put_blocking(1).unwrap();
    /// rc.wait_key_blocking(()).unwrap();
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_blocking(1).unwrap();
 rc.wait_key_blocking(()).unwrap();"
    )]
    pub async fn wait_key(&self, key: K) -> Result<(), CallError> {
        self.check_finalized()?;
        if self.is_local() {
            let ch = self.local().ok_or_else(|| self.gone())?;
            return ch.wait(key).await.map_err(channel_error);
        }
        self.ask(RefRequestKind::Wait, self.encode_for_owner(&key)?)
            .await
            .map(|_| ())
    }

    /// The channel's open flag and length, asked of its owner.
    async fn state(&self) -> Result<(bool, Option<usize>), CallError> {
        self.check_finalized()?;
        if self.is_local() {
            let ch = self.local().ok_or_else(|| self.gone())?;
            return Ok((ch.is_open(), ch.len()));
        }
        // A built-in by name: any cohort process answers it, whatever its executable.
        let (open, len) = crate::api::call::remotecall_fetch_in(
            self.inner.node.clone(),
            channel_state,
            self.inner.owner,
            (self.inner.id.whence, self.inner.id.id),
        )
        .await?
        .map_err(|e| CallError::Remote(e.into()))?;
        Ok((open, len.map(|n| n as usize)))
    }

    /// Whether the channel is still open: not yet [`close`](Self::close)d (Julia's
    /// `isopen`).
    ///
    /// # Errors
    /// The owner is gone ([`CallError::WorkerExited`]), or the channel is
    /// ([`CallError::Remote`] of kind `Reference`); [`CallError::Finalized`],
    /// [`CallError::Inert`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it changes nothing.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// assert!(rc.is_open_blocking().unwrap());
    /// rc.close_blocking().unwrap();
    /// assert!(!rc.is_open_blocking().unwrap());
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 assert!(rc.is_open_blocking().unwrap());"
    )]
    pub async fn is_open(&self) -> Result<bool, CallError> {
        Ok(self.state().await?.0)
    }

    /// How many values the channel holds now, where the channel can say
    /// ([`AbstractChannel::len`]: a [`Channel`] can, a factory's channel may
    /// not): `None` if it cannot (Julia's `n_avail`).
    ///
    /// # Errors
    /// As [`is_open`](Self::is_open).
    ///
    /// # Cancel safety
    /// Cancel-safe: it changes nothing.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::with_capacity_blocking(1, 4).unwrap();
    /// rc.put_blocking(1).unwrap();
    /// rc.put_blocking(2).unwrap();
    /// assert_eq!(rc.len_blocking().unwrap(), Some(2));
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 assert_eq!(rc.len_blocking().unwrap(), Some(0));"
    )]
    pub async fn len(&self) -> Result<Option<usize>, CallError> {
        Ok(self.state().await?.1)
    }

    /// Whether the channel holds no value now (Julia's `isempty`): by its
    /// [`len`](Self::len); for a FIFO channel that cannot say its length, by
    /// `!isready`.
    ///
    /// # Errors
    /// As [`is_open`](Self::is_open); [`CallError::ChannelUnsupported`] for a keyed
    /// channel that cannot say its length.
    ///
    /// # Cancel safety
    /// Cancel-safe: it changes nothing.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// assert!(rc.is_empty_blocking().unwrap());
    /// rc.put_blocking(1).unwrap();
    /// assert!(!rc.is_empty_blocking().unwrap());
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 assert!(rc.is_empty_blocking().unwrap());"
    )]
    pub async fn is_empty(&self) -> Result<bool, CallError> {
        if let Some(n) = self.state().await?.1 {
            return Ok(n == 0);
        }
        // A FIFO channel's key is the unit: "is a value ready" is "not empty".
        match (Box::new(()) as Box<dyn Any>).downcast::<K>() {
            Ok(unit) => Ok(!self.isready_key(*unit).await?),
            Err(_) => Err(CallError::ChannelUnsupported(
                "this keyed channel cannot say how many values it holds".into(),
            )),
        }
    }

    /// Runs `f` on the value under `key` where the channel is stored, without
    /// removing it, and returns only `f`'s result (Julia's `rr[i]` on a
    /// `RemoteChannel` holding an array): see
    /// [`fetch_with`](RemoteChannel::fetch_with). The value is the one
    /// [`fetch_key`](Self::fetch_key) would return, copied on the owner.
    ///
    /// # Errors
    /// As [`fetch_key`](Self::fetch_key); [`CallError::CannotShipCode`] if the owner
    /// runs another executable; `f`'s panic as a [`CallError::Remote`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it removes nothing.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<Vec<u8>>::new_blocking(1).unwrap();
    /// rc.put_blocking(vec![1, 2, 3]).unwrap();
    /// assert_eq!(rc.fetch_key_with_blocking((), |v: &Vec<u8>| v[2]).unwrap(), 3);
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<Vec<u8>>::new_blocking(1).unwrap();
 rc.put_blocking(vec![1, 2, 3]).unwrap();
 assert_eq!(rc.fetch_key_with_blocking((), |v: &Vec<u8>| v.len()).unwrap(), 3);"
    )]
    pub async fn fetch_key_with<F, R>(&self, key: K, f: F) -> Result<R, CallError>
    where
        F: for<'a> RemoteFn<(&'a T,), Output = R>,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.fetch_key_with_args(key, Unary(f), ()).await
    }

    /// [`fetch_key_with`](Self::fetch_key_with) for a function that takes
    /// arguments after the value, shipped with it (see
    /// [`Future::fetch_with_args`](crate::Future::fetch_with_args)).
    ///
    /// # Errors
    /// As [`fetch_key_with`](Self::fetch_key_with).
    ///
    /// # Cancel safety
    /// Cancel-safe: it removes nothing.
    ///
    /// ```
    /// fn at(v: &Vec<u8>, i: usize) -> u8 { v[i] }
    /// let rc = cohort_cluster::RemoteChannel::<Vec<u8>>::new_blocking(1).unwrap();
    /// rc.put_blocking(vec![1, 2, 3]).unwrap();
    /// assert_eq!(rc.fetch_key_with_args_blocking((), at, 1).unwrap(), 2);
    /// ```
    #[cohort_macros::twin(example = " fn at(v: &Vec<u8>, i: usize) -> u8 { v[i] }
 let rc = cohort_cluster::RemoteChannel::<Vec<u8>>::new_blocking(1).unwrap();
 rc.put_blocking(vec![1, 2, 3]).unwrap();
 assert_eq!(rc.fetch_key_with_args_blocking((), at, 0).unwrap(), 1);")]
    pub async fn fetch_key_with_args<F, A, R>(&self, key: K, f: F, args: A) -> Result<R, CallError>
    where
        F: for<'a> RemoteFn<(&'a T, A), Output = R>,
        A: Serialize + DeserializeOwned + Send + Sync + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.check_finalized()?;
        if self.is_local() {
            let ch = self.local().ok_or_else(|| self.gone())?;
            let v = ch.fetch(key).await.map_err(channel_error)?;
            return Ok(f.call((&v, args)));
        }
        let call = ChannelFetchWith::<T, K, A, F> {
            id: self.inner.id,
            key,
            f,
            _t: PhantomData,
        };
        crate::api::call::remotecall_fetch_in(
            self.inner.node.clone(),
            call,
            self.inner.owner,
            (args,),
        )
        .await?
        .map_err(|e| CallError::Remote(e.into()))
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
        // This process's credits go back first (after its credited puts, before the
        // close): none of its puts can land in the closed channel after this.
        self.inner.node.store().forget_credits(self.inner.id);
        self.ask(RefRequestKind::Close, Vec::new())
            .await
            .map(|_| ())
    }
}

impl<T: ChannelValue> RemoteChannel<T> {
    /// Puts a value, waiting while the channel is full (Julia's `put!`).
    ///
    /// **Credits.** Into a [`Channel`] of finite capacity on another process, a put
    /// need not wait for the owner's answer: the owner reserves free places of the
    /// channel for this process (up to 256 at a time, granted with the answer to a
    /// put, and topped up as they are used), and a put into a reserved place is sent
    /// and returns at once — the place is the value's, so the put cannot wait or
    /// fail there. Puts of one task still arrive in order. Reserved places count as
    /// taken for everyone else; a put elsewhere that waits for one makes the owner
    /// call them back, so nothing waits for long on an idle holder. What changes
    /// for the caller: such a put has returned before the value reached the owner,
    /// so if the owner dies meanwhile the value is lost with the channel (as its
    /// other values are), and a put made just after another process closed the
    /// channel may succeed — until the owner's call-back arrives, about one message
    /// later — with its value kept in the closed channel for takers to drain.
    /// Unbuffered channels and channels made by a factory that reserves nothing
    /// ([`AbstractChannel::reserve`]) answer every put, and so does every put of a
    /// process with [`CHANNEL_CREDITS_ENV`] set to `0`. See `docs/protocol.md`,
    /// "Channel credits".
    ///
    /// # Errors
    /// A [`SendError`] holding the value back: [`CallError::ChannelClosed`], the
    /// owner is gone ([`CallError::WorkerExited`] naming it), or the encoded value is
    /// larger than one message may be ([`CallError::PayloadTooLarge`]; nothing was
    /// sent). A put within a credit fails only if the value is too large.
    ///
    /// # Cancel safety
    /// Not cancel-safe for the value: a dropped put never hands it back. Nothing is
    /// put twice. On the owner itself, a put dropped before it completes did not put
    /// the value (as [`Channel::put`], for a [`Channel`]) and drops it. On another
    /// process, the value travels at the first poll, and a put dropped after that is
    /// still carried out by the owner — waiting there for room if the channel is
    /// full — though nobody learns how it ended. A put within a credit completes at
    /// its first poll.
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
        self.put_key((), value).await
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
        self.take_key(()).await
    }

    /// Removes and returns the oldest value, waiting for one as
    /// [`take`](Self::take) does, together with the values after it that are in the
    /// channel at that moment, up to `max` in all, oldest first: one round trip to
    /// the owner for a whole batch, where `take` costs one per value. It never
    /// waits for a second value. `max == 0` returns an empty vector at once.
    ///
    /// The batch is bounded in bytes too (about 1 MiB past the first value, and the
    /// message limit): values that would not fit stay in the channel. Values that
    /// encode to nothing (a channel of `()`) come one at a time. Other takers never
    /// see the values of a batch: they left the channel together. For a take that
    /// keeps a batch and hands it out one value at a time, see [`TakeAhead`].
    ///
    /// # Errors
    /// As [`take`](Self::take): [`CallError::ChannelClosed`] once the channel is
    /// closed and drained (values already in the channel still come first).
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`take`](Self::take): a batch removed for a take given up is
    /// put back at the front of the channel, in its order.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::with_capacity(1, 4).await.unwrap();
    /// for i in 0..3 {
    ///     rc.put(i).await.unwrap();
    /// }
    /// assert_eq!(rc.take_up_to(2).await.unwrap(), vec![0, 1]);
    /// assert_eq!(rc.take_up_to(10).await.unwrap(), vec![2]);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::with_capacity_blocking(1, 4).unwrap();
 rc.put_blocking(1).unwrap();
 rc.put_blocking(2).unwrap();
 assert_eq!(rc.take_up_to_blocking(8).unwrap(), vec![1, 2]);"
    )]
    pub async fn take_up_to(&self, max: usize) -> Result<Vec<T>, CallError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.check_finalized()?;
        if self.is_local() {
            let ch = self.local().ok_or_else(|| self.gone())?;
            let mut got = vec![ch.take(()).await.map_err(channel_error)?];
            // The values there now: each take polled once; one that would wait is
            // dropped, which removes nothing (a channel's take is cancel-safe).
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            while got.len() < max {
                let Some(v) = take_now(&*ch, (), &mut cx) else {
                    break;
                };
                got.push(v);
            }
            return Ok(got);
        }
        // A take's `credits` asks for up to that many values after the first.
        let more = u32::try_from(max - 1).unwrap_or(u32::MAX);
        let key = self.encode_for_owner(&())?;
        let b = self.ask_for(RefRequestKind::Take, key.into(), more).await?;
        // Handles inside the values are this channel's cluster's.
        let kvs = enter(&self.inner.node, || decode_kvs::<(), T>(&b))?;
        Ok(kvs.into_iter().map(|((), v)| v).collect())
    }

    /// A taker that fetches up to `ahead` values per round trip and hands them out
    /// one at a time ([`TakeAhead::take`]): for a single consumer draining a remote
    /// channel, where [`take`](Self::take) would cost a round trip per value.
    /// `ahead` of 0 counts as 1 (no take-ahead).
    ///
    /// The values it holds have left the channel (see [`TakeAhead`] for what that
    /// means for other takers and for a process that dies).
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::with_capacity_blocking(1, 8).unwrap();
    /// let mut taker = rc.take_ahead(4);
    /// rc.put_blocking(7).unwrap();
    /// assert_eq!(taker.take_blocking().unwrap(), 7);
    /// ```
    pub fn take_ahead(&self, ahead: usize) -> TakeAhead<T> {
        TakeAhead {
            channel: self.clone(),
            ahead: ahead.max(1),
            held: std::collections::VecDeque::new(),
        }
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
    /// assert!(rc.isready().await.unwrap());
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 rc.put_blocking(3).unwrap();
 assert_eq!(rc.fetch_blocking().unwrap(), 3);"
    )]
    pub async fn fetch(&self) -> Result<T, CallError> {
        self.fetch_key(()).await
    }

    /// Whether a value can be taken now (Julia's `isready`).
    ///
    /// # Errors
    /// As Julia's `isready` throws then: the owner is gone
    /// ([`CallError::WorkerExited`] naming it); [`CallError::Finalized`] after
    /// [`finalize`](Self::finalize); [`CallError::Inert`] for an inert handle.
    ///
    /// # Cancel safety
    /// Cancel-safe: it changes nothing; an answer that comes late is dropped.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new(1).await.unwrap();
    /// assert!(!rc.isready().await.unwrap());
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
 assert!(!rc.isready_blocking().unwrap());"
    )]
    pub async fn isready(&self) -> Result<bool, CallError> {
        self.isready_key(()).await
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
        self.wait_key(()).await
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

    /// Runs `f` on the oldest value where the channel is stored, without removing
    /// it, and returns only `f`'s result: reading part of a large value without
    /// fetching all of it (Julia's `rr[2, 3]` on a `RemoteChannel` holding an
    /// array, evaluated on its owner). `f` takes the value by reference: a function
    /// or a closure that captures nothing ([`fetch_with_args`](Self::fetch_with_args)
    /// ships arguments with it). On the
    /// owner the value is copied out of the channel (as `fetch` copies it) and `f`
    /// runs on the copy; only the result crosses.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch); [`CallError::CannotShipCode`] if the owner runs
    /// another executable; `f`'s panic as a [`CallError::Remote`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it removes nothing.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<Vec<u64>>::new_blocking(1).unwrap();
    /// rc.put_blocking(vec![5; 1000]).unwrap();
    /// assert_eq!(rc.fetch_with_blocking(|v: &Vec<u64>| v.len()).unwrap(), 1000);
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<Vec<u64>>::new_blocking(1).unwrap();
 rc.put_blocking(vec![5; 10]).unwrap();
 assert_eq!(rc.fetch_with_blocking(|v: &Vec<u64>| v[0]).unwrap(), 5);"
    )]
    pub async fn fetch_with<F, R>(&self, f: F) -> Result<R, CallError>
    where
        F: for<'a> RemoteFn<(&'a T,), Output = R>,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.fetch_key_with((), f).await
    }

    /// [`fetch_with`](Self::fetch_with) for a function that takes arguments after
    /// the value, shipped with it (Julia's `rr[2, 3]`: see
    /// [`Future::fetch_with_args`](crate::Future::fetch_with_args)).
    ///
    /// # Errors
    /// As [`fetch_with`](Self::fetch_with).
    ///
    /// # Cancel safety
    /// Cancel-safe: it removes nothing.
    ///
    /// ```
    /// fn at(v: &Vec<u8>, i: usize) -> u8 { v[i] }
    /// let rc = cohort_cluster::RemoteChannel::<Vec<u8>>::new_blocking(1).unwrap();
    /// rc.put_blocking(vec![1, 2, 3]).unwrap();
    /// assert_eq!(rc.fetch_with_args_blocking(at, 2).unwrap(), 3);
    /// ```
    #[cohort_macros::twin(example = " fn at(v: &Vec<u8>, i: usize) -> u8 { v[i] }
 let rc = cohort_cluster::RemoteChannel::<Vec<u8>>::new_blocking(1).unwrap();
 rc.put_blocking(vec![1, 2, 3]).unwrap();
 assert_eq!(rc.fetch_with_args_blocking(at, 2).unwrap(), 3);")]
    pub async fn fetch_with_args<F, A, R>(&self, f: F, args: A) -> Result<R, CallError>
    where
        F: for<'a> RemoteFn<(&'a T, A), Output = R>,
        A: Serialize + DeserializeOwned + Send + Sync + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.fetch_key_with_args((), f, args).await
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

/// A taker on a FIFO [`RemoteChannel`] that removes values in batches of up to
/// `ahead` ([`RemoteChannel::take_up_to`]) and hands them out one at a time, oldest
/// first: a consumer draining a channel on another process pays one round trip per
/// batch instead of one per value. Made by [`RemoteChannel::take_ahead`].
///
/// What it holds has left the channel: other takers get the values behind them,
/// and the channel's [`len`](RemoteChannel::len) and
/// [`isready`](RemoteChannel::isready) do not count them. When the taker is
/// dropped, the values it still holds are put back at the front of the channel,
/// in their order (without waiting; through the same path as a given-up take's,
/// `docs/protocol.md`, "Given-up takes"), so nothing is lost while this process
/// lives — but if this process dies, the values it held die with it, as a value
/// on its way to a plain take does. Use it for one consumer per channel, or where
/// a few values held by one consumer do not matter; a pool of workers sharing a
/// job queue should keep `take`, which leaves every value for whoever is free.
///
/// ```
/// let rc = cohort_cluster::RemoteChannel::<u32>::with_capacity_blocking(1, 100).unwrap();
/// for i in 0..10 {
///     rc.put_blocking(i).unwrap();
/// }
/// let mut taker = rc.take_ahead(64);
/// let got: Vec<u32> = (0..10).map(|_| taker.take_blocking().unwrap()).collect();
/// assert_eq!(got, (0..10).collect::<Vec<_>>());
/// ```
pub struct TakeAhead<T: ChannelValue> {
    channel: RemoteChannel<T>,
    ahead: usize,
    held: std::collections::VecDeque<T>,
}

impl<T: ChannelValue> TakeAhead<T> {
    /// The next value: one held here, or else a batch of up to `ahead` values
    /// removed from the channel (waiting for the first), of which the oldest is
    /// returned and the rest held.
    ///
    /// # Errors
    /// As [`RemoteChannel::take`]; values held here come first, so a closed
    /// channel's last values are still returned before
    /// [`CallError::ChannelClosed`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a batch removed for a take given up goes back to the front of
    /// the channel ([`RemoteChannel::take_up_to`]), and the values held are kept.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let rc = cohort_cluster::RemoteChannel::<u8>::with_capacity(1, 4).await.unwrap();
    /// rc.put(1).await.unwrap();
    /// rc.put(2).await.unwrap();
    /// let mut taker = rc.take_ahead(8);
    /// assert_eq!(taker.take().await.unwrap(), 1);
    /// assert_eq!(taker.held(), 1);
    /// assert_eq!(taker.take().await.unwrap(), 2);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let rc = cohort_cluster::RemoteChannel::<u8>::with_capacity_blocking(1, 4).unwrap();
 rc.put_blocking(5).unwrap();
 let mut taker = rc.take_ahead(8);
 assert_eq!(taker.take_blocking().unwrap(), 5);"
    )]
    pub async fn take(&mut self) -> Result<T, CallError> {
        if let Some(v) = self.held.pop_front() {
            return Ok(v);
        }
        let batch = self.channel.take_up_to(self.ahead).await?;
        self.held.extend(batch);
        self.held
            .pop_front()
            .ok_or_else(|| CallError::Serialization("a take answered with no value".to_string()))
    }

    /// How many values this taker holds (taken from the channel, not yet returned).
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// assert_eq!(rc.take_ahead(4).held(), 0);
    /// ```
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The channel it takes from.
    ///
    /// ```
    /// let rc = cohort_cluster::RemoteChannel::<u8>::new_blocking(1).unwrap();
    /// assert_eq!(rc.take_ahead(4).channel().id(), rc.id());
    /// ```
    pub fn channel(&self) -> &RemoteChannel<T> {
        &self.channel
    }
}

impl<T: ChannelValue> fmt::Debug for TakeAhead<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TakeAhead")
            .field("channel", &self.channel)
            .field("ahead", &self.ahead)
            .field("held", &self.held.len())
            .finish()
    }
}

impl<T: ChannelValue> Drop for TakeAhead<T> {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let ch = &self.channel;
        if ch.is_local() {
            if let Some(local) = ch.local() {
                // The last first: each goes to the very front. Run here if it can
                // finish at once (a `Channel`'s can: the values came out of it).
                crate::shell::channel_ops::run_now_or_spawn(Box::pin(async move {
                    for v in held.into_iter().rev() {
                        if local.put_front((), v).await.is_err() {
                            tracing::warn!(
                                "a value held by a take-ahead was lost: its channel closed"
                            );
                        }
                    }
                }));
            }
            return;
        }
        // One `PUT_FRONT` with every value, as a batch is answered.
        let mut bytes = Vec::new();
        for v in &held {
            if let Err(e) = codec::with_target(&ch.inner.node, ch.inner.owner, || {
                codec::encode_into(&((), v), &mut bytes)
            }) {
                tracing::warn!(error = %e.message, "values held by a take-ahead could not go back");
                return;
            }
        }
        // No I/O in a drop: the pump sends it.
        let (owner, id) = (ch.inner.owner, ch.inner.id);
        ch.inner
            .node
            .record(|c| c.put_back(owner, id, Bytes::from(bytes)));
    }
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

fn channel_in<T: Send + 'static, K: 'static>(
    node: &Node,
    id: RefId,
) -> Option<Arc<dyn AbstractChannel<T, K>>> {
    let slot = node.store().channel(id)?;
    slot.typed
        .downcast_ref::<Arc<dyn AbstractChannel<T, K>>>()
        .cloned()
}

/// The built-in behind [`RemoteChannel::is_open`] and [`RemoteChannel::len`] on
/// another process: the open flag and length of channel `(whence, id)` stored here.
/// Registered by name, so a process of any executable answers it.
fn channel_state(whence: Pid, id: u64) -> Result<(bool, Option<u64>), WireException> {
    let node = current();
    let id = RefId::new(whence, id);
    let slot = node.store().channel(id).ok_or_else(|| {
        WireException::from(crate::RemoteException {
            pid: node.myid(),
            kind: ErrorKind::Reference,
            function: String::new(),
            message: format!("channel {id} no longer exists"),
            context: String::new(),
        })
    })?;
    Ok((slot.erased.is_open(), slot.erased.len().map(|n| n as u64)))
}

#[linkme::distributed_slice(REMOTE_FUNCTIONS)]
static CHANNEL_STATE: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (Pid, u64)>("cohort::channel_state", &channel_state);

/// The call [`RemoteChannel::fetch_key_with`] sends to the owner: copies the value
/// under the key out of the channel there and runs the function on it.
struct ChannelFetchWith<T, K, A, F> {
    id: RefId,
    key: K,
    f: F,
    _t: PhantomData<fn() -> (T, A)>,
}

impl<T, K, A, F, R> RemoteFn<(A,)> for ChannelFetchWith<T, K, A, F>
where
    T: ChannelValue,
    K: ChannelValue,
    A: 'static,
    F: for<'a> RemoteFn<(&'a T, A), Output = R>,
{
    type Output = Result<R, WireException>;

    fn call(&self, (args,): (A,)) -> Self::Output {
        // On the owner, for the node that received the call.
        let node = current();
        let me = node.myid();
        let ch = channel_in::<T, K>(&node, self.id).ok_or_else(|| {
            WireException::of(
                me,
                CallError::NotAChannel {
                    id: self.id,
                    pid: me,
                },
            )
        })?;
        let key = self.key.clone();
        let v = crate::runtime::block_on(async move { ch.fetch(key).await })
            .map_err(|e| WireException::of(me, channel_error(e)))?;
        Ok(self.f.call((&v, args)))
    }

    fn encode_state(&self) -> Result<Vec<u8>, Failure> {
        codec::encode(&(
            self.id.whence,
            self.id.id,
            codec::encode(&self.key)?,
            self.f.encode_state()?,
        ))
    }

    fn decode_state(state: &[u8]) -> Result<Self, Failure> {
        let (whence, id, key, inner): (Pid, u64, Vec<u8>, Vec<u8>) = codec::decode(state)?;
        Ok(ChannelFetchWith {
            id: RefId::new(whence, id),
            key: codec::decode(&key)?,
            f: F::decode_state(&inner)?,
            _t: PhantomData,
        })
    }
}

/// How a `RemoteChannel` travels: its identity and owner, and whether it is live.
#[derive(Serialize, Deserialize)]
enum Carried {
    /// A live handle: the receiver registers with the owner.
    Live { whence: Pid, id: u64, owner: Pid },
    /// A finalized handle: the receiver's is finalized too.
    Finalized { whence: Pid, id: u64, owner: Pid },
    /// Encoded outside a cluster message: the handle made from it is inert.
    Inert { whence: Pid, id: u64, owner: Pid },
}

impl<T: ChannelValue, K: ChannelValue> Serialize for RemoteChannel<T, K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let inner = &self.inner;
        let (whence, id, owner) = (inner.id.whence, inner.id.id, inner.owner);
        if inner.inert || !codec::in_message() {
            // Into a file, by hand: a later process must not take these ids for a
            // live channel (they may name another reference by then).
            return Carried::Inert { whence, id, owner }.serialize(s);
        }
        if inner.finalized.load(std::sync::atomic::Ordering::Acquire) {
            return Carried::Finalized { whence, id, owner }.serialize(s);
        }
        if let Some((node_id, dest)) = codec::target() {
            if node_id != inner.node.id {
                return Err(codec::refuse(format!(
                    "a RemoteChannel of another cluster cannot travel in this message (reference {})",
                    inner.id
                )));
            }
            inner.node.store().serialized(inner.id, dest);
        }
        Carried::Live { whence, id, owner }.serialize(s)
    }
}

impl<'de, T: ChannelValue, K: ChannelValue> Deserialize<'de> for RemoteChannel<T, K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The node that receives the message (see `shell::node::enter`).
        let n = current();
        let (whence, id, owner) = match Carried::deserialize(d)? {
            Carried::Live { whence, id, owner } => (whence, id, owner),
            Carried::Finalized { whence, id, owner } => {
                return Ok(Self::dead(n, RefId::new(whence, id), owner, false))
            }
            Carried::Inert { whence, id, owner } => {
                return Ok(Self::dead(n, RefId::new(whence, id), owner, true))
            }
        };
        let id = RefId::new(whence, id);
        let existing = live(&n).lock().get(&id).and_then(Weak::upgrade);
        if let Some(existing) = existing {
            if let Ok(inner) = existing.downcast::<Inner<T, K>>() {
                n.store().deserialized(id, owner, false);
                return Ok(RemoteChannel { inner });
            }
        }
        n.store().deserialized(id, owner, true);
        Ok(Self::handle(n, id, owner))
    }
}
