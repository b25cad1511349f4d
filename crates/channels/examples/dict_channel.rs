//! A user-defined [`AbstractChannel`] backed by a dictionary: the Rust port of
//! `dictchannel.jl` from Julia's Examples repository, which Julia's manual cites
//! as the example of a custom channel that a `RemoteChannel` can refer to. It is a
//! plain `AbstractChannel<V, K>` here; behind a `RemoteChannel` (in
//! `cohort-cluster`, above this crate) it is used from any process, as in Julia:
//!
//! ```julia
//! rr = RemoteChannel(() -> DictChannel(), 2)
//! put!(rr, "k", 1); fetch(rr, "k"); take!(rr, "k")
//! ```
//!
//! ```ignore
//! let rr = RemoteChannel::<i64, String>::with_factory_blocking(2, DictChannel::<String, i64>::new)?;
//! rr.put_key_blocking("k".into(), 1)?;
//! assert_eq!(rr.fetch_key_blocking("k".into())?, 1);
//! assert_eq!(rr.take_key_blocking("k".into())?, 1);
//! ```
//!
//! (`crates/cohort/tests/handles.rs` runs exactly that across processes, with
//! this file as its `DictChannel`.)
//!
//! The Julia original:
//!
//! ```julia
//! mutable struct DictChannel <: AbstractChannel
//!     d::Dict
//!     cond_take::Condition    # waiting for data to become available
//!     DictChannel() = new(Dict(), Condition())
//! end
//!
//! function put!(D::DictChannel, k, v)
//!     D.d[k] = v
//!     notify(D.cond_take)
//!     D
//! end
//!
//! function take!(D::DictChannel, k)
//!     v = fetch(D, k)
//!     delete!(D.d, k)
//!     v
//! end
//!
//! isready(D::DictChannel) = length(D.d) > 1
//! isready(D::DictChannel, k) = haskey(D.d, k)
//! function fetch(D::DictChannel, k)
//!     wait(D, k)
//!     D.d[k]
//! end
//!
//! function wait(D::DictChannel, k)
//!     while !isready(D, k)
//!         wait(D.cond_take)
//!     end
//! end
//! ```
//!
//! In Rust the extra `k` argument becomes the key type parameter of
//! `AbstractChannel<V, K>`, the `Condition` becomes a `tokio::sync::Notify`,
//! and — unlike the original — the channel can be closed, so that waiters for
//! a key that will never arrive are released.
//!
//! Run with `cargo run -p cohort-channels --example dict_channel`.

use std::collections::HashMap;
use std::hash::Hash;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use cohort_channels::{AbstractChannel, ChannelError, PutError};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// A channel that stores values under keys; `take`/`fetch`/`wait` wait for a
/// particular key.
#[derive(Debug)]
pub struct DictChannel<K, V> {
    d: Mutex<Dict<K, V>>,
    /// Notified on every put and on close: "data may have become available".
    cond_take: Notify,
}

#[derive(Debug)]
struct Dict<K, V> {
    map: HashMap<K, V>,
    closed: bool,
}

impl<K, V> Default for DictChannel<K, V> {
    fn default() -> Self {
        DictChannel {
            d: Mutex::new(Dict {
                map: HashMap::new(),
                closed: false,
            }),
            cond_take: Notify::new(),
        }
    }
}

impl<K, V> DictChannel<K, V>
where
    K: Eq + Hash + Send + Sync,
    V: Clone + Send + Sync,
{
    /// Creates an empty, open dictionary channel.
    pub fn new() -> Self {
        Self::default()
    }

    /// Julia's `isready(D)` without a key: whether any entry is stored.
    /// (The original says `length(D.d) > 1`, an off-by-one; `>= 1` is meant.)
    pub fn isready_any(&self) -> bool {
        !self.d.lock().map.is_empty()
    }

    /// The loop shared by `take`, `fetch` and `wait`: run `op` on the
    /// dictionary until it yields something, sleeping on `cond_take` between
    /// tries. `Notified::enable` registers us *before* we look, so a put
    /// between the look and the sleep still wakes us.
    async fn wait_for<R>(
        &self,
        mut op: impl FnMut(&mut Dict<K, V>) -> Option<R>,
    ) -> Result<R, ChannelError> {
        loop {
            let mut notified = pin!(self.cond_take.notified());
            notified.as_mut().enable();
            {
                let mut d = self.d.lock();
                if let Some(r) = op(&mut d) {
                    return Ok(r);
                }
                if d.closed {
                    return Err(ChannelError::Closed);
                }
            }
            notified.await;
        }
    }
}

impl<K, V> AbstractChannel<V, K> for DictChannel<K, V>
where
    K: Eq + Hash + Send + Sync,
    V: Clone + Send + Sync,
{
    /// `put!(D, k, v)`: insert (replacing any old value) and notify.
    fn put(&self, key: K, value: V) -> BoxFuture<'_, Result<(), PutError<V>>> {
        let result = {
            let mut d = self.d.lock();
            if d.closed {
                Err(PutError { value })
            } else {
                d.map.insert(key, value);
                Ok(())
            }
        };
        if result.is_ok() {
            self.cond_take.notify_waiters();
        }
        Box::pin(async move { result })
    }

    /// `take!(D, k)`: wait for `k`, then remove and return its value.
    fn take(&self, key: K) -> BoxFuture<'_, Result<V, ChannelError>> {
        Box::pin(async move { self.wait_for(|d| d.map.remove(&key)).await })
    }

    /// `fetch(D, k)`: wait for `k`, then return a copy of its value.
    fn fetch(&self, key: K) -> BoxFuture<'_, Result<V, ChannelError>> {
        Box::pin(async move { self.wait_for(|d| d.map.get(&key).cloned()).await })
    }

    /// `isready(D, k)`: whether `k` is present.
    fn isready(&self, key: K) -> bool {
        self.d.lock().map.contains_key(&key)
    }

    /// `wait(D, k)`: wait until `k` is present.
    fn wait(&self, key: K) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            self.wait_for(|d| d.map.contains_key(&key).then_some(()))
                .await
        })
    }

    /// Not in the original: stop accepting puts and release waiters. Stored
    /// entries can still be taken and fetched.
    fn close(&self) {
        self.d.lock().closed = true;
        self.cond_take.notify_waiters();
    }

    fn is_open(&self) -> bool {
        !self.d.lock().closed
    }

    /// `length(D.d)`: the number of stored entries.
    fn len(&self) -> Option<usize> {
        Some(self.d.lock().map.len())
    }
}

/// Exercises the `DictChannel` purely through `dyn AbstractChannel`, the kind of
/// trait object a `RemoteChannel`'s owner drives (there with the key type `()`).
/// Panics if anything misbehaves, so the test suite runs it too.
pub async fn demo() {
    let chan: Arc<dyn AbstractChannel<i64, String>> = Arc::new(DictChannel::<String, i64>::new());

    // A consumer waits for a key that does not exist yet.
    let consumer = {
        let chan = Arc::clone(&chan);
        tokio::spawn(async move { chan.take("answer".to_string()).await })
    };

    chan.put("noise".into(), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!consumer.is_finished(), "take waits for its own key only");

    chan.put("answer".into(), 42).await.unwrap();
    assert_eq!(consumer.await.unwrap(), Ok(42));
    assert!(!chan.isready("answer".into()), "take removed the key");

    // fetch reads without removing.
    assert_eq!(chan.fetch("noise".into()).await, Ok(1));
    assert_eq!(chan.fetch("noise".into()).await, Ok(1));
    assert!(chan.isready("noise".into()));
    chan.wait("noise".into()).await.unwrap();

    // Close: puts fail and hand the value back, waiters for missing keys are
    // released, stored entries can still be taken.
    let waiter = {
        let chan = Arc::clone(&chan);
        tokio::spawn(async move { chan.wait("never".to_string()).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    chan.close();
    assert_eq!(waiter.await.unwrap(), Err(ChannelError::Closed));
    assert_eq!(chan.put("late".into(), 7).await.unwrap_err().value, 7);
    assert_eq!(chan.take("noise".into()).await, Ok(1));
    assert_eq!(chan.take("noise".into()).await, Err(ChannelError::Closed));
    println!("DictChannel demo: ok");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    demo().await;
}
