//! Function states kept on callees: a closure's captured values cross to a process
//! once while they are unchanged, not with every call (Julia sends a global once, and
//! again only when it changes).
//!
//! A call whose function state (its encoded captures) is at least [`CAPTURE_MIN`]
//! bytes, holds no remote reference, and fits the caller's budget
//! ([`Cluster::set_capture_budget`](crate::Cluster::set_capture_budget)) carries a
//! [`Capture`](cohort_wire::proto::Capture): a 128-bit hash of the function's type and
//! state. The caller remembers, per connection, which keys it has sent
//! ([`SentStates`]); the first call with a key carries the state, later ones only the
//! key, and the callee ([`KeptStates`]) keeps the state — decoded once, on first use —
//! under the caller's pid and the key. Both sides decide in the order the messages
//! travel: the caller at the moment a call is queued on the connection (under the
//! core's lock, which fixes that order), the callee as it hands calls to the runners
//! (in the order they came), so a key never arrives before its state. When a caller
//! lets a state go (its budget, or a third state of the same code) the next call that
//! carries a new state says so, and the callee drops it; when the connection goes,
//! both sides forget it all.
//!
//! [`Prepared`] encodes and hashes a function's state once for many calls (a `pmap`
//! uses it): without it, each call encodes its function again, then sends only the
//! key.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use cohort_wire::ids::Pid;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::error::{ErrorKind, Failure};
use crate::registry::{RemoteFn, Trampoline};

/// Function states of at least this many encoded bytes are kept on callees; smaller
/// ones travel with every call (sending them costs less than keeping track).
pub const CAPTURE_MIN: usize = 64 * 1024;

/// How many bytes of function state a caller lets each callee keep for it, by
/// default: 1 GiB. States over the budget travel with every call.
pub const DEFAULT_CAPTURE_BUDGET: usize = 1 << 30;

/// At most this many states of one function's code are kept per connection: a
/// closure whose captures change keeps its newest two (two maps of one closure over
/// different data may alternate), and older ones are let go at once.
const PER_CODE: usize = 2;

/// The identity of a function state: XXH3-128 of its type's name and its bytes.
pub(crate) type Key = [u8; 16];

/// The key of state `state` of function type `F`.
pub(crate) fn key_of<F>(state: &[u8]) -> Key {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(std::any::type_name::<F>().as_bytes());
    h.update(&[0]);
    h.update(state);
    h.digest128().to_le_bytes()
}

// ----- the caller's side -----

/// What one connection's callee holds of this process's function states, as far as
/// this side has sent them (one per sending connection; see the module docs).
#[derive(Debug, Default)]
pub(crate) struct SentStates {
    /// Least recently used first.
    sent: Vec<Sent>,
    bytes: usize,
}

#[derive(Debug)]
struct Sent {
    key: Key,
    code: i64,
    len: usize,
}

/// What a call queued now does with its state.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// The callee holds it: the call goes without the state.
    Held,
    /// The call carries the state; the callee first lets go of these keys.
    Send {
        /// Keys the callee drops.
        forget: Vec<Key>,
    },
}

impl SentStates {
    /// A call with state `key` (of code `code`, `len` bytes) is being queued: says
    /// whether the state must go with it, and counts it as sent from now.
    pub(crate) fn note(&mut self, key: Key, code: i64, len: usize, budget: usize) -> Note {
        if let Some(i) = self.sent.iter().position(|s| s.key == key) {
            let s = self.sent.remove(i);
            self.sent.push(s);
            return Note::Held;
        }
        self.sent.push(Sent { key, code, len });
        self.bytes += len;
        let mut forget = Vec::new();
        // Older states of the same code first, then the least recently used of any
        // (never the one just added).
        while self.sent.iter().filter(|s| s.code == code).count() > PER_CODE {
            let i = self
                .sent
                .iter()
                .position(|s| s.code == code)
                .expect("counted above");
            forget.push(self.evict(i));
        }
        while self.bytes > budget && self.sent.len() > 1 {
            forget.push(self.evict(0));
        }
        Note::Send { forget }
    }

    fn evict(&mut self, i: usize) -> Key {
        let s = self.sent.remove(i);
        self.bytes -= s.len;
        s.key
    }
}

// ----- the callee's side -----

/// A kept function state: its bytes until the first call decodes them, then the
/// function itself.
pub(crate) struct CaptureSlot {
    bytes: Mutex<Option<Bytes>>,
    decoded: OnceLock<Result<Arc<dyn Any + Send + Sync>, Failure>>,
}

impl CaptureSlot {
    fn new(bytes: Bytes) -> Self {
        CaptureSlot {
            bytes: Mutex::new(Some(bytes)),
            decoded: OnceLock::new(),
        }
    }

    /// The function, decoded by the first call that needs it (concurrent calls wait
    /// for that one); the bytes go once decoded.
    fn function<F, Args>(&self) -> Result<Arc<dyn Any + Send + Sync>, Failure>
    where
        F: RemoteFn<Args>,
    {
        self.decoded
            .get_or_init(|| {
                let bytes = self.bytes.lock().take().unwrap_or_default();
                F::decode_state(&bytes).map(|f| Arc::new(f) as Arc<dyn Any + Send + Sync>)
            })
            .clone()
    }
}

/// The function states other processes keep on this one (one per node).
#[derive(Default)]
pub(crate) struct KeptStates {
    slots: Mutex<HashMap<(Pid, Key), Arc<CaptureSlot>>>,
    received: AtomicU64,
    received_bytes: AtomicU64,
}

impl KeptStates {
    /// A call from `from` with `capture` (and `state`, when it came with it), taken
    /// in the order calls from `from` arrive: lets go of what the caller forgot,
    /// keeps the state that came, and returns the slot the call's function is read
    /// from.
    ///
    /// # Errors
    /// A [`Failure`] of kind [`ErrorKind::Reference`] for a malformed key or a key
    /// this process does not hold (the caller's view and this one disagree): the
    /// call fails, nothing else does.
    pub(crate) fn take_in(
        &self,
        from: Pid,
        capture: &cohort_wire::proto::Capture,
        state: Bytes,
    ) -> Result<Arc<CaptureSlot>, Failure> {
        let bad = || {
            Failure::new(
                ErrorKind::Reference,
                "a call named a kept function state of malformed key",
            )
        };
        let key: Key = capture.key.as_slice().try_into().map_err(|_| bad())?;
        let mut slots = self.slots.lock();
        for k in &capture.forget {
            if let Ok(k) = Key::try_from(k.as_slice()) {
                slots.remove(&(from, k));
            }
        }
        if !state.is_empty() {
            self.received.fetch_add(1, Ordering::Relaxed);
            self.received_bytes
                .fetch_add(state.len() as u64, Ordering::Relaxed);
            let slot = Arc::new(CaptureSlot::new(state));
            slots.insert((from, key), slot.clone());
            return Ok(slot);
        }
        slots.get(&(from, key)).cloned().ok_or_else(|| {
            Failure::new(
                ErrorKind::Reference,
                format!("process {from} called with a kept function state this process does not hold (was the connection replaced?)"),
            )
        })
    }

    /// `pid`'s connection is gone: its states go.
    pub(crate) fn forget_peer(&self, pid: Pid) {
        self.slots.lock().retain(|(from, _), _| *from != pid);
    }

    /// (states kept now, states received so far, their bytes).
    pub(crate) fn counts(&self) -> (usize, u64, u64) {
        (
            self.slots.lock().len(),
            self.received.load(Ordering::Relaxed),
            self.received_bytes.load(Ordering::Relaxed),
        )
    }
}

thread_local! {
    /// The kept state of the call running on this thread (see [`with_slot`]).
    static SLOT: std::cell::RefCell<Option<Arc<CaptureSlot>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (a call's trampoline) with `slot` as the kept state it reads.
pub(crate) fn with_slot<R>(slot: Option<Arc<CaptureSlot>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<CaptureSlot>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let old = self.0.take();
            SLOT.with(|s| *s.borrow_mut() = old);
        }
    }
    let _restore = Restore(SLOT.with(|s| std::mem::replace(&mut *s.borrow_mut(), slot)));
    f()
}

/// The trampoline of a call whose function state is kept here: the payload is the
/// argument tuple alone, and the function comes from the slot [`with_slot`] set.
fn cached_trampoline<F, Args>(payload: Bytes) -> Result<Vec<u8>, Failure>
where
    F: RemoteFn<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    let slot = SLOT.with(|s| s.borrow().clone()).ok_or_else(|| {
        Failure::new(
            ErrorKind::Reference,
            "a call for a kept function state came without one",
        )
    })?;
    let any = slot.function::<F, Args>()?;
    drop(slot);
    let f = any
        .downcast_ref::<F>()
        .ok_or_else(|| Failure::new(ErrorKind::Reference, "kept function state of another type"))?;
    let args: Args = codec::decode(&payload)?;
    drop(payload);
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.call(args)))
        .map_err(Failure::from_panic)?;
    codec::encode(&out)
}

/// [`cached_trampoline`] of `F` as a plain function pointer (sent as a code offset).
pub(crate) fn cached_trampoline_of<F, Args>() -> Trampoline
where
    F: RemoteFn<Args>,
    Args: DeserializeOwned,
    F::Output: Serialize,
{
    cached_trampoline::<F, Args>
}

// ----- encoding a state once -----

/// A function's state, encoded once and kept for all its calls: what [`Prepared`]
/// hands the runtime through [`RemoteFn::state_cache`]. Empty until the first call.
///
/// ```
/// let c = cohort_cluster::StateCache::default();
/// assert!(!c.is_filled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct StateCache {
    cell: Arc<OnceLock<Option<(Bytes, Key)>>>,
}

/// A function state as one call sends it.
pub(crate) enum StateBytes {
    /// Encoded before, kept with its key.
    Kept(Bytes, Key),
    /// Encoded for this call; `true` if it holds something specific to its receiver.
    Fresh(Vec<u8>, bool),
}

impl StateCache {
    /// Whether the state has been encoded (by the first call to another process).
    ///
    /// ```
    /// assert!(!cohort_cluster::StateCache::default().is_filled());
    /// ```
    pub fn is_filled(&self) -> bool {
        self.cell.get().is_some()
    }

    /// The state of `f` (of type `F`): the one encoded before, or encoded now. A
    /// state worth keeping ([`CAPTURE_MIN`] bytes, nothing receiver-specific) is
    /// kept for later calls; any other is encoded again by each call.
    pub(crate) fn state_of<F, Args>(&self, f: &F) -> Result<StateBytes, Failure>
    where
        F: RemoteFn<Args>,
    {
        if let Some(v) = self.cell.get() {
            return match v {
                Some((b, k)) => Ok(StateBytes::Kept(b.clone(), *k)),
                None => fresh(f),
            };
        }
        let (state, specific) = encode_watched(f)?;
        if specific || state.len() < CAPTURE_MIN {
            let _ = self.cell.set(None);
            return Ok(StateBytes::Fresh(state, specific));
        }
        let key = key_of::<F>(&state);
        let bytes = Bytes::from(state);
        let _ = self.cell.set(Some((bytes.clone(), key)));
        Ok(StateBytes::Kept(bytes, key))
    }
}

/// `f`'s state encoded for this call.
pub(crate) fn fresh<F: RemoteFn<Args>, Args>(f: &F) -> Result<StateBytes, Failure> {
    let (state, specific) = encode_watched(f)?;
    Ok(StateBytes::Fresh(state, specific))
}

/// `f`'s state, and whether it holds something specific to its receiver.
fn encode_watched<F: RemoteFn<Args>, Args>(f: &F) -> Result<(Vec<u8>, bool), Failure> {
    let (state, specific) = codec::watching_peer_specific(|| f.encode_state());
    Ok((state?, specific))
}

/// `f` with its state (a closure's captured values) encoded and hashed once, by its
/// first call to another process, instead of by every call: for many calls of one
/// function with large captures (a `pmap` wraps its function in one). On the wire it
/// is `f` itself; its state crosses to each process once while the callee keeps it
/// (see [`CAPTURE_MIN`], [`Cluster::set_capture_budget`](crate::Cluster::set_capture_budget)).
///
/// The state is taken as it is at that first call: `Prepared` is for captures that
/// do not change (a `Closure`'s captures cannot change anyway: they are owned
/// values behind `&`).
///
/// ```
/// use cohort_cluster::{closure, Prepared, RemoteFn};
/// let table = vec![1.0f64; 100_000];
/// let f = Prepared::new(closure!([table] |i: usize| table[i] * 2.0));
/// assert_eq!(f.call((3,)), 2.0);
/// ```
pub struct Prepared<F> {
    f: Arc<F>,
    cache: StateCache,
}

impl<F> Clone for Prepared<F> {
    fn clone(&self) -> Self {
        Prepared {
            f: self.f.clone(),
            cache: self.cache.clone(),
        }
    }
}

/// The function's type; not the function (its captures may be large).
impl<F> std::fmt::Debug for Prepared<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("f", &std::any::type_name::<F>())
            .field("encoded", &self.cache.is_filled())
            .finish()
    }
}

impl<F> Prepared<F> {
    /// Wraps `f`; nothing is encoded until its first call to another process.
    ///
    /// ```
    /// let _p = cohort_cluster::Prepared::new(|x: u8| x);
    /// ```
    pub fn new(f: F) -> Self {
        Prepared {
            f: Arc::new(f),
            cache: StateCache::default(),
        }
    }

    /// The wrapped function.
    ///
    /// ```
    /// let p = cohort_cluster::Prepared::new(7u8);
    /// assert_eq!(*p.inner(), 7);
    /// ```
    pub fn inner(&self) -> &F {
        &self.f
    }
}

impl<F, Args> RemoteFn<Args> for Prepared<F>
where
    F: RemoteFn<Args>,
{
    type Output = F::Output;

    fn call(&self, args: Args) -> F::Output {
        self.f.call(args)
    }

    fn encode_state(&self) -> Result<Vec<u8>, Failure> {
        self.f.encode_state()
    }

    fn decode_state(state: &[u8]) -> Result<Self, Failure> {
        Ok(Prepared::new(F::decode_state(state)?))
    }

    fn state_cache(&self) -> Option<&StateCache> {
        Some(&self.cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: usize = 1 << 30;

    #[test]
    fn a_state_goes_once_then_only_its_key() {
        let mut s = SentStates::default();
        assert_eq!(s.note([1; 16], 7, 100, GIB), Note::Send { forget: vec![] });
        assert_eq!(s.note([1; 16], 7, 100, GIB), Note::Held);
        assert_eq!(s.note([1; 16], 7, 100, GIB), Note::Held);
    }

    #[test]
    fn a_third_state_of_one_code_lets_the_oldest_go() {
        let mut s = SentStates::default();
        s.note([1; 16], 7, 100, GIB);
        s.note([2; 16], 7, 100, GIB);
        // Another code's state does not count against code 7.
        s.note([9; 16], 8, 100, GIB);
        assert_eq!(
            s.note([3; 16], 7, 100, GIB),
            Note::Send {
                forget: vec![[1; 16]]
            }
        );
        assert_eq!(s.note([2; 16], 7, 100, GIB), Note::Held);
        assert_eq!(s.note([9; 16], 8, 100, GIB), Note::Held);
        assert_eq!(
            s.note([1; 16], 7, 100, GIB),
            Note::Send {
                forget: vec![[3; 16]]
            }
        );
    }

    #[test]
    fn the_budget_lets_the_least_recently_used_go_but_never_the_new_state() {
        let mut s = SentStates::default();
        s.note([1; 16], 1, 400, 1000);
        s.note([2; 16], 2, 400, 1000);
        // Used again: now the most recent.
        assert_eq!(s.note([1; 16], 1, 400, 1000), Note::Held);
        assert_eq!(
            s.note([3; 16], 3, 400, 1000),
            Note::Send {
                forget: vec![[2; 16]]
            }
        );
        // Larger than the budget by itself: the others go, it stays.
        assert_eq!(
            s.note([4; 16], 4, 5000, 1000),
            Note::Send {
                forget: vec![[1; 16], [3; 16]]
            }
        );
        assert_eq!(s.note([4; 16], 4, 5000, 1000), Note::Held);
    }

    #[test]
    fn the_callee_keeps_states_per_caller_and_drops_what_is_forgotten() {
        let k = KeptStates::default();
        let cap = |key: u8, forget: &[u8]| cohort_wire::proto::Capture {
            key: vec![key; 16],
            forget: forget.iter().map(|f| vec![*f; 16]).collect(),
        };
        let a = k
            .take_in(2, &cap(1, &[]), Bytes::from_static(b"state"))
            .unwrap();
        let again = k.take_in(2, &cap(1, &[]), Bytes::new()).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        // Another caller does not see caller 2's states.
        let e = k.take_in(3, &cap(1, &[]), Bytes::new()).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Reference);
        k.take_in(2, &cap(2, &[1]), Bytes::from_static(b"other"))
            .unwrap();
        assert!(k.take_in(2, &cap(1, &[]), Bytes::new()).is_err());
        assert_eq!(k.counts(), (1, 2, 10));
        // A malformed key is an error, not a panic.
        let bad = cohort_wire::proto::Capture {
            key: vec![1, 2],
            forget: vec![vec![]],
        };
        assert!(k.take_in(2, &bad, Bytes::new()).is_err());
        k.forget_peer(2);
        assert_eq!(k.counts().0, 0);
    }

    #[test]
    fn keys_differ_by_type_and_by_state() {
        assert_ne!(key_of::<u8>(b"a"), key_of::<u16>(b"a"));
        assert_ne!(key_of::<u8>(b"a"), key_of::<u8>(b"b"));
        assert_eq!(key_of::<u8>(b"a"), key_of::<u8>(b"a"));
    }
}
