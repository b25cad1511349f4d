//! The object-safe [`AbstractChannel`] trait: what a remote reference can
//! point at.

use futures::future::BoxFuture;

use crate::channel::{Channel, Reservations};
use crate::error::{ChannelError, PutError};

/// Anything a remote reference can refer to: Julia's `AbstractChannel`.
///
/// Julia requires a concrete `AbstractChannel` to implement `put!`, `take!`,
/// `fetch`, `isready` and `wait`; `RemoteChannel` forwards those calls,
/// *with their extra arguments*, to the process that stores the channel.
/// In Rust the extra arguments are the key type `K`:
///
/// * an ordinary FIFO channel uses `K = ()` (the default), so
///   `dyn AbstractChannel<T>` is "a channel of `T`";
/// * a keyed store such as the `DictChannel` example
///   (`examples/dict_channel.rs`, a port of Julia's `dictchannel.jl`) uses
///   its key type, e.g. `dyn AbstractChannel<V, String>`: `put(k, v)`
///   inserts, `take(k)` removes key `k`, `fetch(k)` reads it.
///
/// The trait is object-safe: a runtime (cohort-cluster's `RemoteChannel`
/// server side) holds `Box<dyn AbstractChannel<T, K>>` or
/// `Arc<dyn AbstractChannel<T, K>>` and does not care which implementation is
/// behind it. Waiting methods return [`BoxFuture`]s, so they are `Send` and
/// can be spawned.
///
/// Note: [`Channel`] also has inherent methods of the same names without the
/// key argument; method-call syntax on a `Channel` picks those, and calls
/// through `dyn AbstractChannel` pick these.
///
/// # Examples
///
/// ```
/// use cohort_channels::{AbstractChannel, Channel};
/// use futures::executor::block_on;
///
/// let chans: Vec<Box<dyn AbstractChannel<i32>>> =
///     vec![Box::new(Channel::new(1)), Box::new(Channel::unbounded())];
/// for ch in &chans {
///     block_on(ch.put((), 7)).unwrap();
///     assert!(ch.isready(()));
///     assert_eq!(block_on(ch.fetch(())), Ok(7));
///     assert_eq!(block_on(ch.take(())), Ok(7));
///     ch.close();
///     assert!(!ch.is_open());
/// }
/// ```
// `len` without `is_empty`: a channel that cannot say its length returns `None`,
// and "empty" of a keyed store has no one meaning (`isready(key)` asks per key).
#[allow(clippy::len_without_is_empty)]
pub trait AbstractChannel<T, K = ()>: Send + Sync {
    /// Stores `value` under `key` (Julia's `put!(c, args...)`), waiting for
    /// room if the implementation is bounded.
    ///
    /// # Cancel safety
    ///
    /// Up to the implementation; [`Channel`]'s is as
    /// [`Channel::put`]: a dropped put did not put its value (except on an
    /// unbuffered channel where a taker already received it) and drops it.
    ///
    /// # Errors
    ///
    /// [`PutError`] carrying `value` back if the channel is closed (the key
    /// is dropped).
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    ///
    /// let ch: Box<dyn AbstractChannel<&str>> = Box::new(Channel::new(1));
    /// futures::executor::block_on(ch.put((), "hello")).unwrap();
    /// assert!(ch.isready(()));
    /// ```
    fn put(&self, key: K, value: T) -> BoxFuture<'_, Result<(), PutError<T>>>;

    /// Removes and returns the value selected by `key` (for a FIFO channel:
    /// the oldest), waiting until there is one (Julia's `take!`).
    ///
    /// # Cancel safety
    ///
    /// Up to the implementation, and an implementation should make it
    /// cancel-safe: a `RemoteChannel` owner runs a remote take through it and
    /// drops the future when the taker cancels. [`Channel`]'s is: a dropped
    /// take removes nothing.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Closed`] if the channel is closed and nothing
    /// matching is left.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    /// use futures::executor::block_on;
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(2));
    /// block_on(ch.put((), 1)).unwrap();
    /// assert_eq!(block_on(ch.take(())), Ok(1));
    /// ```
    fn take(&self, key: K) -> BoxFuture<'_, Result<T, ChannelError>>;

    /// Returns a copy of the value selected by `key` without removing it,
    /// waiting until there is one (Julia's `fetch`).
    ///
    /// # Cancel safety
    ///
    /// Up to the implementation; the default and [`Channel`]'s are
    /// cancel-safe (they remove nothing).
    ///
    /// # Errors
    ///
    /// * [`ChannelError::Unsupported`] by default, for implementations where
    ///   reading without removing has no meaning.
    /// * [`ChannelError::Unbuffered`] for an unbuffered [`Channel`].
    /// * [`ChannelError::Closed`] if the channel is closed and nothing
    ///   matching is left.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    /// use futures::executor::block_on;
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(2));
    /// block_on(ch.put((), 3)).unwrap();
    /// assert_eq!(block_on(ch.fetch(())), Ok(3));
    /// assert_eq!(block_on(ch.fetch(())), Ok(3));
    /// ```
    fn fetch(&self, key: K) -> BoxFuture<'_, Result<T, ChannelError>> {
        drop(key);
        // An `async` block holds no `T`, so it is `Send` whatever `T` is.
        Box::pin(async { Err(ChannelError::Unsupported) })
    }

    /// Whether the value selected by `key` is available now, so that `take`
    /// would not wait (Julia's `isready`).
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(2));
    /// assert!(!ch.isready(()));
    /// ```
    fn isready(&self, key: K) -> bool;

    /// Waits until the value selected by `key` is available (Julia's `wait`).
    ///
    /// # Cancel safety
    ///
    /// Up to the implementation; [`Channel`]'s is cancel-safe (it changes
    /// nothing).
    ///
    /// # Errors
    ///
    /// [`ChannelError::Closed`] if the channel is closed and the value is
    /// not available.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    /// use futures::executor::block_on;
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(2));
    /// block_on(ch.put((), 1)).unwrap();
    /// assert_eq!(block_on(ch.wait(())), Ok(()));
    /// ```
    fn wait(&self, key: K) -> BoxFuture<'_, Result<(), ChannelError>>;

    /// Hands back `value`, which a [`take`](Self::take) with `key` removed but
    /// could not deliver, so that it is taken again first: a `RemoteChannel`
    /// owner calls it when a remote take was cancelled after it had removed
    /// the value. It should neither lose the value nor wait: [`Channel`] puts it
    /// at the front with [`Channel::put_front`], beyond its capacity and even
    /// when closed.
    ///
    /// The default puts it with [`put`](Self::put), at the back, waiting for
    /// room; an implementation that can keep the order should override it.
    ///
    /// # Errors
    ///
    /// [`PutError`] carrying `value` back if it cannot be taken back (the
    /// default: the channel is closed).
    ///
    /// # Cancel safety
    ///
    /// Up to the implementation; [`Channel`]'s puts the value back when it is
    /// called, before the future is polled, so dropping the future loses
    /// nothing. The default is as `put`'s (a dropped one drops the value).
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    /// use futures::executor::block_on;
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(1));
    /// block_on(ch.put((), 1)).unwrap();
    /// let v = block_on(ch.take(())).unwrap();
    /// block_on(ch.put((), 2)).unwrap();
    /// block_on(ch.put_front((), v)).unwrap(); // first again, beyond the capacity
    /// assert_eq!(block_on(ch.take(())), Ok(1));
    /// assert_eq!(block_on(ch.take(())), Ok(2));
    /// ```
    fn put_front(&self, key: K, value: T) -> BoxFuture<'_, Result<(), PutError<T>>> {
        self.put(key, value)
    }

    /// Closes the channel: later puts fail, waiters are woken, readers drain
    /// what is left and then fail with [`ChannelError::Closed`]. Idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(2));
    /// ch.close();
    /// assert!(futures::executor::block_on(ch.put((), 1)).is_err());
    /// ```
    fn close(&self);

    /// Whether [`close`](Self::close) has not been called yet.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(2));
    /// assert!(ch.is_open());
    /// ```
    fn is_open(&self) -> bool;

    /// How many values the channel holds now, if it can say (Julia's `n_avail`,
    /// `length` of a `DictChannel`'s dictionary); `None` by default. A
    /// `RemoteChannel` reports it as its `len`.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    /// use futures::executor::block_on;
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(2));
    /// block_on(ch.put((), 1)).unwrap();
    /// assert_eq!(ch.len(), Some(1));
    /// ```
    fn len(&self) -> Option<usize> {
        None
    }

    /// Reserves up to `max` places for values on their way, as
    /// [`Channel::reserve`]; returns how many. `RemoteChannel` grants a remote
    /// putter one *credit* per reserved place, so that its puts into them need
    /// not wait for an answer. The default reserves none: every remote put then
    /// waits for the owner's answer. An implementation that reserves must also
    /// implement [`put_reserved`](Self::put_reserved),
    /// [`unreserve`](Self::unreserve) and
    /// [`on_reservations`](Self::on_reservations).
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(4));
    /// assert_eq!(ch.reserve(8), 2); // half of what is free
    /// ```
    fn reserve(&self, max: usize) -> usize {
        let _ = max;
        0
    }

    /// Fills a reserved place with `value` under `key`, never waiting (as
    /// [`Channel::put_reserved`]). The default, for channels that reserve
    /// nothing, refuses and hands the value back.
    ///
    /// # Errors
    /// [`PutError`] with the value, if the implementation cannot take it.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(2));
    /// ch.reserve(1);
    /// ch.put_reserved((), 9).unwrap();
    /// assert_eq!(ch.len(), Some(1));
    /// ```
    fn put_reserved(&self, key: K, value: T) -> Result<(), PutError<T>> {
        let _ = key;
        Err(PutError { value })
    }

    /// Gives back `n` reserved places unused (as [`Channel::unreserve`]); the
    /// default has none to give back.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(2));
    /// assert_eq!(ch.reserve(2), 1);
    /// ch.unreserve(1);
    /// assert_eq!(ch.reserve(2), 1);
    /// ```
    fn unreserve(&self, n: usize) {
        let _ = n;
    }

    /// Sets the function told of [`Reservations`] events (as
    /// [`Channel::on_reservations`]); the default never calls it.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{AbstractChannel, Channel};
    ///
    /// let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(2));
    /// ch.on_reservations(Box::new(|e| println!("{e:?}")));
    /// ```
    fn on_reservations(&self, listener: Box<dyn Fn(Reservations) + Send + Sync>) {
        let _ = listener;
    }
}

/// A [`Channel`] as an [`AbstractChannel`] with key `()`: every method
/// forwards to the inherent method of the same name. `T: Clone` is required
/// because `fetch` hands out copies.
impl<T: Clone + Send + 'static> AbstractChannel<T> for Channel<T> {
    fn put(&self, _key: (), value: T) -> BoxFuture<'_, Result<(), PutError<T>>> {
        Box::pin(Channel::put(self, value))
    }

    fn take(&self, _key: ()) -> BoxFuture<'_, Result<T, ChannelError>> {
        Box::pin(Channel::take(self))
    }

    fn fetch(&self, _key: ()) -> BoxFuture<'_, Result<T, ChannelError>> {
        Box::pin(Channel::fetch(self))
    }

    fn put_front(&self, _key: (), value: T) -> BoxFuture<'_, Result<(), PutError<T>>> {
        Channel::put_front(self, value);
        Box::pin(async { Ok(()) })
    }

    fn isready(&self, _key: ()) -> bool {
        Channel::isready(self)
    }

    fn wait(&self, _key: ()) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(Channel::wait(self))
    }

    fn close(&self) {
        Channel::close(self)
    }

    fn is_open(&self) -> bool {
        Channel::is_open(self)
    }

    fn len(&self) -> Option<usize> {
        Some(Channel::len(self))
    }

    fn reserve(&self, max: usize) -> usize {
        Channel::reserve(self, max)
    }

    fn put_reserved(&self, _key: (), value: T) -> Result<(), PutError<T>> {
        Channel::put_reserved(self, value);
        Ok(())
    }

    fn unreserve(&self, n: usize) {
        Channel::unreserve(self, n)
    }

    fn on_reservations(&self, listener: Box<dyn Fn(Reservations) + Send + Sync>) {
        Channel::on_reservations(self, listener)
    }
}
