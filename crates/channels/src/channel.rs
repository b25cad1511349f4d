//! The local [`Channel<T>`]: a FIFO shared by tasks and threads of one process.
//!
//! # Design
//!
//! All state lives behind one `parking_lot::Mutex`. A future that has to wait
//! registers its [`Waker`] in one of two wait lists (`readers` for
//! take/fetch/wait, `writers` for put) *while still holding the lock*, so a
//! state change made by another party can never slip between "check" and
//! "register" (no lost wake-ups).
//!
//! Every state change wakes *all* waiters of the affected list, not just one.
//! That is less efficient than a hand-off to a single waiter, but it is what
//! makes cancellation trivially safe: if one woken future is dropped before it
//! runs, the others were woken too and will see the value. No future removes
//! a value from the channel until the poll that returns it, so dropping a
//! pending `take` can never lose a value.
//!
//! The blocking twins simply drive the same futures with
//! [`futures::executor::block_on`], which parks the calling OS thread. They
//! need no runtime, and from a `tokio::task::spawn_blocking` thread they are
//! fine; calling them on an async executor's worker thread would block that
//! worker (as any blocking call does).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures::stream::{FusedStream, Stream};
use parking_lot::Mutex;

use crate::error::{ChannelError, PutError};

/// Wakers of futures waiting for one kind of event, keyed by a per-future id
/// so that a re-polled future replaces its old waker instead of piling up, and
/// a dropped future can remove itself.
#[derive(Default)]
struct WaitList {
    entries: Vec<(u64, Waker)>,
}

impl WaitList {
    fn register(&mut self, id: u64, waker: &Waker) {
        match self.entries.iter_mut().find(|(i, _)| *i == id) {
            // `clone_from` skips the clone when the waker would wake the same task.
            Some((_, w)) => w.clone_from(waker),
            None => self.entries.push((id, waker.clone())),
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(pos) = self.entries.iter().position(|(i, _)| *i == id) {
            self.entries.swap_remove(pos);
        }
    }

    /// Moves every waker out; they are woken after the lock is released so
    /// that woken tasks do not immediately contend on a lock we still hold.
    fn drain_into(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.entries.drain(..).map(|(_, w)| w));
    }
}

/// A value offered by a pending `put` on an unbuffered channel. It stays here
/// until a taker removes it (the rendezvous) or the putter withdraws it
/// (cancelled or channel closed).
struct Offer<T> {
    id: u64,
    value: T,
}

struct State<T> {
    /// Buffered values (capacity > 0 only).
    buffer: VecDeque<T>,
    /// Pending offers of waiting putters (capacity 0 only), oldest first.
    offers: VecDeque<Offer<T>>,
    closed: bool,
    /// take / fetch / wait / stream futures waiting for a value or close.
    readers: WaitList,
    /// put futures waiting for space, for their offer to be taken, or close.
    writers: WaitList,
    /// Source of per-future ids (for wait-list entries and offers).
    next_id: u64,
    /// Places held for values on their way ([`Channel::reserve`]): counted as
    /// taken by `put`, and a closed channel is not drained while any remain.
    reserved: usize,
    /// A [`Channel::reserve`] got fewer places than it asked for: the next
    /// take that frees a place says so ([`Reservations::Freed`]).
    wants_places: bool,
    /// An event for the listener, sent once the lock is released.
    event: Option<Reservations>,
    /// Told of [`Reservations`] events ([`Channel::on_reservations`]).
    listener: Option<Listener>,
}

/// What [`Channel::on_reservations`] is told.
///
/// # Examples
///
/// ```
/// use cohort_channels::Reservations;
/// assert_ne!(Reservations::Wanted, Reservations::Freed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservations {
    /// Reserved places are in the way: a `put` waits that would fit without
    /// them, or the channel was closed while places are reserved. Whoever
    /// holds them should give them back ([`Channel::unreserve`]) or fill them
    /// ([`Channel::put_reserved`]).
    Wanted,
    /// A take freed a place after [`Channel::reserve`] had got fewer than it
    /// asked for: reserving again may get more.
    Freed,
}

/// A [`Channel::on_reservations`] listener.
type Listener = Arc<dyn Fn(Reservations) + Send + Sync>;

impl<T> State<T> {
    /// The event to send once the lock is released, with its listener.
    fn take_event(&mut self) -> Option<(Listener, Reservations)> {
        let event = self.event.take()?;
        Some((self.listener.clone()?, event))
    }

    /// Whether a closed channel still waits for reserved places to be filled.
    fn draining(&self) -> bool {
        self.closed && self.reserved == 0
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Whether a `take` would return a value right now.
    fn is_ready(&self, capacity: usize) -> bool {
        // A value in `buffer` can be taken; on an unbuffered channel it is one
        // handed back by `put_front`. Once closed, pending offers are being
        // handed back to their putters and may no longer be taken.
        !self.buffer.is_empty() || (capacity == 0 && !self.closed && !self.offers.is_empty())
    }

    /// One attempt at `take`: `None` means "would wait".
    fn try_take(
        &mut self,
        capacity: usize,
        wake: &mut Vec<Waker>,
    ) -> Option<Result<T, ChannelError>> {
        // Values handed back by `put_front` come first, also on an unbuffered
        // channel (whose `buffer` holds nothing else).
        let value = match self.buffer.pop_front() {
            Some(v) => Some(v),
            None if capacity == 0 && !self.closed => {
                self.offers.pop_front().map(|offer| offer.value)
            }
            None => None,
        };
        match value {
            Some(v) => {
                // Space freed / offer accepted: putters must re-check.
                self.writers.drain_into(wake);
                // Told once enough places are free to be worth a grant (a sixteenth
                // of the capacity, or one), not at every take.
                let free = capacity.saturating_sub(self.buffer.len() + self.reserved);
                if self.wants_places && !self.closed && free >= (capacity / 16).max(1) {
                    self.wants_places = false;
                    self.event = Some(Reservations::Freed);
                }
                Some(Ok(v))
            }
            // Reserved places of a closed channel are values still on their way.
            None if self.draining() => Some(Err(ChannelError::Closed)),
            None => None,
        }
    }

    /// One attempt at `fetch`: `None` means "would wait".
    fn try_fetch(&self, capacity: usize) -> Option<Result<T, ChannelError>>
    where
        T: Clone,
    {
        if capacity == 0 {
            return Some(Err(ChannelError::Unbuffered));
        }
        match self.buffer.front() {
            Some(v) => Some(Ok(v.clone())),
            None if self.draining() => Some(Err(ChannelError::Closed)),
            None => None,
        }
    }

    /// One attempt at `wait`: `None` means "would wait".
    fn try_wait(&self, capacity: usize) -> Option<Result<(), ChannelError>> {
        if self.is_ready(capacity) {
            Some(Ok(()))
        } else if self.draining() {
            Some(Err(ChannelError::Closed))
        } else {
            None
        }
    }
}

struct Shared<T> {
    /// 0 = unbuffered rendezvous; `usize::MAX` = unbounded.
    capacity: usize,
    state: Mutex<State<T>>,
}

fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        w.wake();
    }
}

/// Tells a listener its event (outside the lock: it may use the channel).
fn tell(event: Option<(Listener, Reservations)>) {
    if let Some((listener, event)) = event {
        listener(event);
    }
}

/// A channel of values of type `T`, shared by tasks and threads of one
/// process: the Rust form of Julia's `Channel{T}(sz)`.
///
/// * `Channel::new(0)` is *unbuffered*: [`put`](Self::put) waits until a
///   [`take`](Self::take) has received the value (a rendezvous).
/// * `Channel::new(n)` buffers up to `n` values; `put` waits while it is full.
/// * [`Channel::unbounded`] never makes `put` wait.
///
/// Values come out in FIFO order. [`close`](Self::close) makes further puts
/// fail; readers drain what is buffered and then get
/// [`ChannelError::Closed`]. The handle is cheap to clone: all clones refer to
/// the same channel.
///
/// Every waiting operation is an `async` method (returning a named future) and
/// has a `*_blocking` twin for plain threads.
///
/// # Examples
///
/// ```
/// use cohort_channels::Channel;
///
/// let c = Channel::new(2);
/// c.put_blocking(1).unwrap();   // `put!` on an open channel succeeds
/// c.close();
/// assert!(c.put_blocking(2).is_err()); // `put!` on a closed channel fails
/// assert_eq!(c.fetch_blocking(), Ok(1)); // any number of fetches succeed
/// assert_eq!(c.fetch_blocking(), Ok(1));
/// assert_eq!(c.take_blocking(), Ok(1));  // the first take removes the value
/// assert!(c.take_blocking().is_err());   // no more data on a closed channel
/// ```
pub struct Channel<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.state.lock();
        f.debug_struct("Channel")
            .field("capacity", &self.shared.capacity)
            .field("len", &st.buffer.len())
            .field("pending_puts", &st.offers.len())
            .field("open", &!st.closed)
            .finish()
    }
}

impl<T> Channel<T> {
    /// Creates an open channel that buffers up to `capacity` values.
    ///
    /// `capacity == 0` makes an unbuffered channel: every `put` waits for a
    /// matching `take` (Julia's default `Channel()` size is 0 as well).
    /// `usize::MAX` means unbounded, like [`Channel::unbounded`].
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::<u8>::new(32);
    /// assert_eq!(c.capacity(), 32);
    /// assert!(c.is_open());
    /// ```
    pub fn new(capacity: usize) -> Self {
        Channel {
            shared: Arc::new(Shared {
                capacity,
                state: Mutex::new(State {
                    buffer: VecDeque::new(),
                    offers: VecDeque::new(),
                    closed: false,
                    readers: WaitList::default(),
                    writers: WaitList::default(),
                    next_id: 0,
                    reserved: 0,
                    wants_places: false,
                    event: None,
                    listener: None,
                }),
            }),
        }
    }

    /// Creates a channel whose `put` never waits (capacity `usize::MAX`,
    /// Julia's `Channel{T}(Inf)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::unbounded();
    /// for i in 0..1000 {
    ///     c.put_blocking(i).unwrap();
    /// }
    /// assert_eq!(c.len(), 1000);
    /// assert_eq!(c.capacity(), usize::MAX);
    /// ```
    pub fn unbounded() -> Self {
        Self::new(usize::MAX)
    }

    /// The capacity given at construction (0 = unbuffered, `usize::MAX` =
    /// unbounded).
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// assert_eq!(Channel::<()>::new(0).capacity(), 0);
    /// ```
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Number of values currently buffered. For an unbuffered channel only
    /// the values handed back with [`put_front`](Self::put_front) count: a
    /// value offered by a waiting `put` is not "in" the channel (use
    /// [`isready`](Self::isready) to see whether one is waiting).
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::new(4);
    /// c.put_blocking('a').unwrap();
    /// c.put_blocking('b').unwrap();
    /// assert_eq!(c.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.shared.state.lock().buffer.len()
    }

    /// Whether no value is buffered (`len() == 0`).
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::new(1);
    /// assert!(c.is_empty());
    /// c.put_blocking(()).unwrap();
    /// assert!(!c.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the channel is still open, i.e. [`close`](Self::close) has not
    /// been called (Julia's `isopen`).
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::<i32>::new(1);
    /// assert!(c.is_open());
    /// c.close();
    /// assert!(!c.is_open());
    /// ```
    pub fn is_open(&self) -> bool {
        !self.shared.state.lock().closed
    }

    /// Whether a value is available, so that [`take`](Self::take) would not
    /// wait. For an unbuffered channel: whether a `put` is waiting (and the
    /// channel is open).
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::new(1);
    /// assert!(!c.isready());
    /// c.put_blocking(5).unwrap();
    /// assert!(c.isready());
    /// ```
    pub fn isready(&self) -> bool {
        self.shared.state.lock().is_ready(self.shared.capacity)
    }

    /// Closes the channel. Idempotent.
    ///
    /// Waiting and later `put`s fail with [`PutError`], which hands their value
    /// back (this includes values offered to an unbuffered channel that no
    /// taker has received yet). Buffered values stay and can still be taken,
    /// fetched and iterated; once they are gone, reads fail with
    /// [`ChannelError::Closed`]. Every waiter is woken.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::new(10);
    /// for i in 1..=3 {
    ///     c.put_blocking(i).unwrap();
    /// }
    /// c.close();
    /// c.close(); // no effect
    /// // `for` loops over a closed channel end once it is drained.
    /// let data: Vec<i32> = c.iter().collect();
    /// assert_eq!(data, [1, 2, 3]);
    /// ```
    pub fn close(&self) {
        let mut wake = Vec::new();
        let event = {
            let mut st = self.shared.state.lock();
            st.closed = true;
            st.readers.drain_into(&mut wake);
            st.writers.drain_into(&mut wake);
            if st.reserved > 0 {
                st.event = Some(Reservations::Wanted);
            }
            st.take_event()
        };
        wake_all(wake);
        tell(event);
    }

    /// Puts `value` at the end of the channel (Julia's `put!`).
    ///
    /// Waits while a buffered channel is full; on an unbuffered channel waits
    /// until a taker has received the value.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in the sense that nothing is lost or duplicated: if the
    /// returned future is dropped before it completes, the value was not put
    /// and is dropped with the future — except on an unbuffered channel where
    /// a taker may already have received it in the meantime; it is then
    /// delivered exactly once. To keep the value of a put that may be
    /// cancelled, keep the [`Put`] future and poll it again.
    ///
    /// # Errors
    ///
    /// [`PutError`] (carrying `value` back) if the channel is or becomes
    /// closed before the value is accepted.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    /// use futures::executor::block_on;
    ///
    /// let c = Channel::new(1);
    /// block_on(async {
    ///     c.put("job").await.unwrap();
    ///     assert_eq!(c.take().await, Ok("job"));
    /// });
    /// ```
    pub fn put(&self, value: T) -> Put<T> {
        Put {
            shared: Arc::clone(&self.shared),
            value: Some(value),
            id: None,
            offered: false,
        }
    }

    /// Reserves up to `max` free places for values on their way (the credits of
    /// a remote putter) and returns how many it reserved: none on a closed or
    /// unbuffered channel, or while a `put` waits for room; otherwise up to half
    /// of the places not taken by buffered values or earlier reservations (one,
    /// if only one is free), so that several putters each get some.
    ///
    /// A reserved place counts as taken: other puts wait while the channel is
    /// full of values and reservations (and [`Reservations::Wanted`] is sent to
    /// the [`on_reservations`](Self::on_reservations) listener). It is filled by
    /// [`put_reserved`](Self::put_reserved) or given back by
    /// [`unreserve`](Self::unreserve). A closed channel is not drained while
    /// places are reserved: its readers wait for those values. If fewer places
    /// were free than asked for, [`Reservations::Freed`] is sent by the first take
    /// after which a sixteenth of the capacity (at least one place) is free.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::new(5);
    /// c.put_blocking(1).unwrap();
    /// assert_eq!(c.reserve(8), 2); // half of the four free places
    /// assert_eq!(c.reserve(8), 1);
    /// assert_eq!(c.reserve(8), 1); // the last one
    /// assert_eq!(c.reserve(8), 0);
    /// c.put_reserved(2);
    /// c.unreserve(3);
    /// assert_eq!(c.reserved(), 0);
    /// assert_eq!(c.len(), 2);
    /// ```
    pub fn reserve(&self, max: usize) -> usize {
        let capacity = self.shared.capacity;
        let mut st = self.shared.state.lock();
        if st.closed || capacity == 0 || !st.writers.entries.is_empty() {
            return 0;
        }
        let free = capacity.saturating_sub(st.buffer.len().saturating_add(st.reserved));
        // At most half of what is free (one place at least): several putters each
        // get some, and a plain put rarely finds the room all reserved.
        let n = free.min(max).min((free / 2).max(1));
        st.reserved += n;
        if n < max {
            st.wants_places = true;
        }
        n
    }

    /// Fills a place [`reserve`](Self::reserve) held: `value` goes to the end of
    /// the channel at once, even if the channel was closed since (the value was
    /// promised a place before), and waiting readers are woken. Without a
    /// reserved place it is put all the same, beyond the capacity if need be.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::new(1);
    /// assert_eq!(c.reserve(1), 1);
    /// c.close();
    /// c.put_reserved('x');
    /// assert_eq!(c.take_blocking(), Ok('x'));
    /// assert!(c.take_blocking().is_err());
    /// ```
    pub fn put_reserved(&self, value: T) {
        let mut wake = Vec::new();
        {
            let mut st = self.shared.state.lock();
            st.reserved = st.reserved.saturating_sub(1);
            st.buffer.push_back(value);
            st.readers.drain_into(&mut wake);
        }
        wake_all(wake);
    }

    /// Gives back `n` reserved places unused (at most as many as are reserved):
    /// waiting puts may use them, and readers of a closed channel stop waiting
    /// for them.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::<u8>::new(2);
    /// c.reserve(2);
    /// c.unreserve(5);
    /// assert_eq!(c.reserved(), 0);
    /// ```
    pub fn unreserve(&self, n: usize) {
        let mut wake = Vec::new();
        {
            let mut st = self.shared.state.lock();
            st.reserved = st.reserved.saturating_sub(n);
            st.writers.drain_into(&mut wake);
            st.readers.drain_into(&mut wake);
        }
        wake_all(wake);
    }

    /// How many places are reserved now ([`reserve`](Self::reserve)).
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::<u8>::new(4);
    /// assert_eq!(c.reserve(3), 2);
    /// assert_eq!(c.reserved(), 2);
    /// ```
    pub fn reserved(&self) -> usize {
        self.shared.state.lock().reserved
    }

    /// Sets the function told of [`Reservations`] events, replacing any before
    /// it. It is called on the thread of the operation that caused the event,
    /// after the channel's lock is released, so it may use the channel; it
    /// should be quick.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cohort_channels::{Channel, Reservations};
    ///
    /// let c = Channel::<u8>::new(1);
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// c.on_reservations(move |e| log.lock().unwrap().push(e));
    /// c.reserve(1);
    /// c.close(); // closed with a place reserved
    /// assert_eq!(*seen.lock().unwrap(), [Reservations::Wanted]);
    /// ```
    pub fn on_reservations(&self, listener: impl Fn(Reservations) + Send + Sync + 'static) {
        self.shared.state.lock().listener = Some(Arc::new(listener));
    }

    /// Puts `value` at the *front* of the channel, so that the next
    /// [`take`](Self::take) returns it: for handing back a value that a take
    /// removed but could not deliver (a cancelled remote take), so that no
    /// value is lost and the order is kept for the next taker.
    ///
    /// It never waits and never fails: the value was in the channel, so it
    /// may exceed the capacity (puts wait until the channel is below its
    /// capacity again), it is accepted on a closed channel (readers drain it
    /// before they see [`ChannelError::Closed`]), and on an unbuffered channel
    /// it is held like a buffered value (taken before any waiting `put`'s
    /// offer; [`fetch`](Self::fetch) still refuses an unbuffered channel).
    /// Waiting readers are woken.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::new(1);
    /// c.put_blocking(2).unwrap();
    /// let taken = c.take_blocking().unwrap();
    /// c.put_blocking(3).unwrap();
    /// c.put_front(taken); // capacity 1, now holding 2 values
    /// assert_eq!(c.len(), 2);
    /// c.close();
    /// assert_eq!(c.iter().collect::<Vec<_>>(), [2, 3]);
    /// ```
    pub fn put_front(&self, value: T) {
        let mut wake = Vec::new();
        {
            let mut st = self.shared.state.lock();
            st.buffer.push_front(value);
            st.readers.drain_into(&mut wake);
        }
        wake_all(wake);
    }

    /// Blocking form of [`put`](Self::put): parks the calling thread. Works
    /// without any async runtime.
    ///
    /// # Errors
    ///
    /// [`PutError`] (carrying `value` back) if the channel is or becomes
    /// closed before the value is accepted.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::new(0); // unbuffered: put waits for a taker
    /// let taker = {
    ///     let c = c.clone();
    ///     std::thread::spawn(move || c.take_blocking())
    /// };
    /// c.put_blocking(42).unwrap(); // returns once the taker has the value
    /// assert_eq!(taker.join().unwrap(), Ok(42));
    /// ```
    pub fn put_blocking(&self, value: T) -> Result<(), PutError<T>> {
        futures::executor::block_on(self.put(value))
    }

    /// Removes and returns the oldest value, waiting while there is none
    /// (Julia's `take!`).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future before it completes never loses a
    /// value, because values are removed only by the poll that returns them.
    /// A dropped take consumes nothing, and a value it was woken for goes to
    /// another taker (every waiting reader is woken).
    ///
    /// # Errors
    ///
    /// [`ChannelError::Closed`] if the channel is closed and drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    /// use futures::executor::block_on;
    ///
    /// let c = Channel::new(2);
    /// c.put_blocking(1).unwrap();
    /// c.put_blocking(2).unwrap();
    /// assert_eq!(block_on(c.take()), Ok(1));
    /// assert_eq!(block_on(c.take()), Ok(2));
    /// ```
    pub fn take(&self) -> Take<T> {
        Take {
            reader: Reader::new(&self.shared),
        }
    }

    /// Blocking form of [`take`](Self::take).
    ///
    /// # Errors
    ///
    /// [`ChannelError::Closed`] if the channel is closed and drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{Channel, ChannelError};
    ///
    /// let c = Channel::new(1);
    /// c.put_blocking("x").unwrap();
    /// c.close();
    /// assert_eq!(c.take_blocking(), Ok("x"));
    /// assert_eq!(c.take_blocking(), Err(ChannelError::Closed));
    /// ```
    pub fn take_blocking(&self) -> Result<T, ChannelError> {
        futures::executor::block_on(self.take())
    }

    /// Waits until a value is available (Julia's `wait(::Channel)`), without
    /// taking it.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it changes nothing in the channel, so dropping it loses
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Closed`] if the channel is closed and nothing is
    /// available.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    /// use futures::executor::block_on;
    ///
    /// let c = Channel::new(1);
    /// c.put_blocking(1).unwrap();
    /// block_on(c.wait()).unwrap();
    /// assert!(c.isready());
    /// ```
    pub fn wait(&self) -> Wait<T> {
        Wait {
            reader: Reader::new(&self.shared),
        }
    }

    /// Blocking form of [`wait`](Self::wait).
    ///
    /// # Errors
    ///
    /// [`ChannelError::Closed`] if the channel is closed and nothing is
    /// available.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{Channel, ChannelError};
    ///
    /// let c = Channel::<i32>::new(1);
    /// c.close();
    /// assert_eq!(c.wait_blocking(), Err(ChannelError::Closed));
    /// ```
    pub fn wait_blocking(&self) -> Result<(), ChannelError> {
        futures::executor::block_on(self.wait())
    }

    /// A [`Stream`] of the channel's values: each item is a
    /// [`take`](Self::take); the stream ends when the channel is closed and
    /// drained. Several streams (and other takers) share the values, each
    /// value going to exactly one of them.
    ///
    /// # Cancel safety
    ///
    /// `next()` on the stream is cancel-safe, as [`take`](Self::take) is:
    /// dropping a pending `next()` (or the stream) loses no value.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    /// use futures::{executor::block_on, StreamExt};
    ///
    /// let c = Channel::new(10);
    /// for i in 1..=3 {
    ///     c.put_blocking(i).unwrap();
    /// }
    /// c.close();
    /// let data: Vec<i32> = block_on(c.stream().collect());
    /// assert_eq!(data, [1, 2, 3]);
    /// ```
    pub fn stream(&self) -> ChannelStream<T> {
        ChannelStream {
            reader: Reader::new(&self.shared),
            done: false,
        }
    }

    /// A blocking iterator of the channel's values (each `next` is a
    /// [`take_blocking`](Self::take_blocking)); it ends when the channel is
    /// closed and drained. `for v in &channel` does the same.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::new(0);
    /// let producer = {
    ///     let c = c.clone();
    ///     std::thread::spawn(move || {
    ///         for i in 0..5 {
    ///             c.put_blocking(i).unwrap();
    ///         }
    ///         c.close();
    ///     })
    /// };
    /// let mut sum = 0;
    /// for v in &c {
    ///     sum += v;
    /// }
    /// producer.join().unwrap();
    /// assert_eq!(sum, 10);
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { channel: self }
    }
}

impl<T: Clone> Channel<T> {
    /// Returns a clone of the oldest value without removing it, waiting while
    /// there is none (Julia's `fetch(::Channel)`).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it removes nothing, so dropping it loses nothing.
    ///
    /// # Errors
    ///
    /// * [`ChannelError::Unbuffered`] on a capacity-0 channel, as in Julia
    ///   1.x: an unbuffered channel never holds a value to look at.
    /// * [`ChannelError::Closed`] if the channel is closed and drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::{Channel, ChannelError};
    /// use futures::executor::block_on;
    ///
    /// let c = Channel::new(1);
    /// c.put_blocking(vec![1, 2]).unwrap();
    /// assert_eq!(block_on(c.fetch()), Ok(vec![1, 2]));
    /// assert_eq!(c.len(), 1); // still there
    ///
    /// let u = Channel::<i32>::new(0);
    /// assert_eq!(block_on(u.fetch()), Err(ChannelError::Unbuffered));
    /// ```
    pub fn fetch(&self) -> Fetch<T> {
        Fetch {
            reader: Reader::new(&self.shared),
        }
    }

    /// Blocking form of [`fetch`](Self::fetch).
    ///
    /// # Errors
    ///
    /// * [`ChannelError::Unbuffered`] on a capacity-0 channel.
    /// * [`ChannelError::Closed`] if the channel is closed and drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let c = Channel::new(3);
    /// c.put_blocking('z').unwrap();
    /// assert_eq!(c.fetch_blocking(), Ok('z'));
    /// assert_eq!(c.take_blocking(), Ok('z'));
    /// ```
    pub fn fetch_blocking(&self) -> Result<T, ChannelError> {
        futures::executor::block_on(self.fetch())
    }
}

/// Registration of one reading future (take, fetch, wait, stream) in the
/// `readers` wait list; removes itself on drop.
struct Reader<T> {
    shared: Arc<Shared<T>>,
    /// Set once the future first has to wait.
    id: Option<u64>,
}

impl<T> Reader<T> {
    fn new(shared: &Arc<Shared<T>>) -> Self {
        Reader {
            shared: Arc::clone(shared),
            id: None,
        }
    }

    /// Runs one attempt of a read operation under the lock; if it would wait
    /// (`None`), registers the waker before the lock is released.
    fn poll_op<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(&mut State<T>, usize, &mut Vec<Waker>) -> Option<R>,
    ) -> Poll<R> {
        let mut wake = Vec::new();
        let out = {
            let mut st = self.shared.state.lock();
            let out = op(&mut st, self.shared.capacity, &mut wake);
            match &out {
                Some(_) => {
                    if let Some(id) = self.id.take() {
                        st.readers.remove(id);
                    }
                }
                None => {
                    let id = *self.id.get_or_insert_with(|| st.fresh_id());
                    st.readers.register(id, cx.waker());
                }
            }
            (out, st.take_event())
        };
        let (out, event) = out;
        // The lock is released here; any value in `out` is moved out after it.
        wake_all(wake);
        tell(event);
        match out {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl<T> Drop for Reader<T> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.shared.state.lock().readers.remove(id);
        }
    }
}

/// Future returned by [`Channel::take`].
///
/// # Examples
///
/// ```
/// use cohort_channels::{Channel, Take};
///
/// let c = Channel::new(1);
/// c.put_blocking(1).unwrap();
/// let fut: Take<i32> = c.take();
/// assert_eq!(futures::executor::block_on(fut), Ok(1));
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Take<T> {
    reader: Reader<T>,
}

impl<T> Future for Take<T> {
    type Output = Result<T, ChannelError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut()
            .reader
            .poll_op(cx, |st, cap, wake| st.try_take(cap, wake))
    }
}

impl<T> fmt::Debug for Take<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Take").finish_non_exhaustive()
    }
}

/// Future returned by [`Channel::fetch`].
///
/// # Examples
///
/// ```
/// use cohort_channels::{Channel, Fetch};
///
/// let c = Channel::new(1);
/// c.put_blocking(1).unwrap();
/// let fut: Fetch<i32> = c.fetch();
/// assert_eq!(futures::executor::block_on(fut), Ok(1));
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Fetch<T> {
    reader: Reader<T>,
}

impl<T: Clone> Future for Fetch<T> {
    type Output = Result<T, ChannelError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut()
            .reader
            .poll_op(cx, |st, cap, _| st.try_fetch(cap))
    }
}

impl<T> fmt::Debug for Fetch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetch").finish_non_exhaustive()
    }
}

/// Future returned by [`Channel::wait`].
///
/// # Examples
///
/// ```
/// use cohort_channels::{Channel, Wait};
///
/// let c = Channel::new(1);
/// c.put_blocking(1).unwrap();
/// let fut: Wait<i32> = c.wait();
/// assert_eq!(futures::executor::block_on(fut), Ok(()));
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Wait<T> {
    reader: Reader<T>,
}

impl<T> Future for Wait<T> {
    type Output = Result<(), ChannelError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut()
            .reader
            .poll_op(cx, |st, cap, _| st.try_wait(cap))
    }
}

impl<T> fmt::Debug for Wait<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait").finish_non_exhaustive()
    }
}

/// Future returned by [`Channel::put`].
///
/// # Examples
///
/// ```
/// use cohort_channels::{Channel, Put};
///
/// let c = Channel::new(1);
/// let fut: Put<i32> = c.put(1);
/// futures::executor::block_on(fut).unwrap();
/// assert_eq!(c.len(), 1);
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Put<T> {
    shared: Arc<Shared<T>>,
    /// The value while it is still ours (before it is buffered or offered).
    value: Option<T>,
    /// Wait-list id, also the offer id on an unbuffered channel.
    id: Option<u64>,
    /// Unbuffered channel only: the value sits in `offers` under `id`.
    offered: bool,
}

impl<T> Put<T> {
    /// The id for this future's wait-list entry / offer, assigned lazily.
    fn id(&mut self, st: &mut State<T>) -> u64 {
        *self.id.get_or_insert_with(|| st.fresh_id())
    }

    fn poll_locked(
        &mut self,
        st: &mut State<T>,
        cx: &mut Context<'_>,
        wake: &mut Vec<Waker>,
    ) -> Poll<Result<(), PutError<T>>> {
        let capacity = self.shared.capacity;

        if self.offered {
            // Unbuffered: our value was offered earlier. If it is gone from
            // `offers`, a taker received it: the rendezvous happened.
            let id = self.id(st);
            let Some(pos) = st.offers.iter().position(|o| o.id == id) else {
                self.offered = false;
                st.writers.remove(id);
                return Poll::Ready(Ok(()));
            };
            if st.closed {
                // Closed before anyone took it: withdraw and hand it back.
                self.offered = false;
                st.writers.remove(id);
                let offer = st.offers.remove(pos).expect("position is in range");
                return Poll::Ready(Err(PutError { value: offer.value }));
            }
            st.writers.register(id, cx.waker());
            return Poll::Pending;
        }

        let value = self.value.take().expect("Put polled after completion");
        if st.closed {
            if let Some(id) = self.id {
                st.writers.remove(id);
            }
            return Poll::Ready(Err(PutError { value }));
        }

        if capacity == 0 {
            // Offer the value and wait for a taker; tell waiting readers.
            let id = self.id(st);
            st.offers.push_back(Offer { id, value });
            self.offered = true;
            st.readers.drain_into(wake);
            st.writers.register(id, cx.waker());
            Poll::Pending
        } else if st.buffer.len().saturating_add(st.reserved) < capacity {
            st.buffer.push_back(value);
            st.readers.drain_into(wake);
            if let Some(id) = self.id {
                st.writers.remove(id);
            }
            Poll::Ready(Ok(()))
        } else {
            // Full: keep the value (nothing inserted yet) and wait for space.
            self.value = Some(value);
            let id = self.id(st);
            st.writers.register(id, cx.waker());
            if st.buffer.len() < capacity {
                // It would fit but for reserved places: ask for them back.
                st.event = Some(Reservations::Wanted);
            }
            Poll::Pending
        }
    }
}

// `Put` never hands out pinned references to its fields (the value is only
// moved in and out by value), so it can be `Unpin` whatever `T` is.
impl<T> Unpin for Put<T> {}

impl<T> Future for Put<T> {
    type Output = Result<(), PutError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = Arc::clone(&this.shared);
        let mut wake = Vec::new();
        let (out, event) = {
            let mut st = shared.state.lock();
            let out = this.poll_locked(&mut st, cx, &mut wake);
            (out, st.take_event())
        };
        wake_all(wake);
        tell(event);
        out
    }
}

impl<T> Drop for Put<T> {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let withdrawn = {
            let mut st = self.shared.state.lock();
            st.writers.remove(id);
            if self.offered {
                // Cancelled before a taker received it: the value was not put.
                st.offers
                    .iter()
                    .position(|o| o.id == id)
                    .and_then(|pos| st.offers.remove(pos))
            } else {
                None
            }
        };
        // Drop the withdrawn value only after unlocking: its destructor may
        // do anything, including touching this channel.
        drop(withdrawn);
    }
}

impl<T> fmt::Debug for Put<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Put")
            .field("offered", &self.offered)
            .finish_non_exhaustive()
    }
}

/// [`Stream`] of a channel's values, returned by [`Channel::stream`]. Ends
/// when the channel is closed and drained.
///
/// # Examples
///
/// ```
/// use cohort_channels::{Channel, ChannelStream};
/// use futures::{executor::block_on, StreamExt};
///
/// let c = Channel::new(2);
/// c.put_blocking(1).unwrap();
/// c.close();
/// let mut s: ChannelStream<i32> = c.stream();
/// assert_eq!(block_on(s.next()), Some(1));
/// assert_eq!(block_on(s.next()), None);
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct ChannelStream<T> {
    reader: Reader<T>,
    done: bool,
}

impl<T> Stream for ChannelStream<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let out = this
            .reader
            .poll_op(cx, |st, cap, wake| st.try_take(cap, wake));
        out.map(|r| match r {
            Ok(v) => Some(v),
            Err(_) => {
                this.done = true;
                None
            }
        })
    }
}

impl<T> FusedStream for ChannelStream<T> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<T> fmt::Debug for ChannelStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Blocking iterator over a borrowed channel, returned by [`Channel::iter`]
/// and `(&channel).into_iter()`. Ends when the channel is closed and drained.
///
/// # Examples
///
/// ```
/// use cohort_channels::{Channel, Iter};
///
/// let c = Channel::new(2);
/// c.put_blocking(1).unwrap();
/// c.close();
/// let mut it: Iter<'_, i32> = c.iter();
/// assert_eq!(it.next(), Some(1));
/// assert_eq!(it.next(), None);
/// ```
#[derive(Debug)]
pub struct Iter<'a, T> {
    channel: &'a Channel<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.channel.take_blocking().ok()
    }
}

impl<'a, T> IntoIterator for &'a Channel<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// Blocking iterator that owns a channel handle, returned by
/// `channel.into_iter()`. Ends when the channel is closed and drained.
///
/// # Examples
///
/// ```
/// use cohort_channels::{Channel, IntoIter};
///
/// let c = Channel::new(2);
/// c.put_blocking(1).unwrap();
/// c.close();
/// let it: IntoIter<i32> = c.into_iter();
/// assert_eq!(it.collect::<Vec<_>>(), [1]);
/// ```
#[derive(Debug)]
pub struct IntoIter<T> {
    channel: Channel<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.channel.take_blocking().ok()
    }
}

impl<T> IntoIterator for Channel<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter { channel: self }
    }
}
