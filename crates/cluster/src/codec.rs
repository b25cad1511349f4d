//! User payloads: serde values encoded with `postcard`.
//!
//! postcard is compact (varint integers, no field names), maintained, and serde-based;
//! bincode 3 is a deliberately broken release, and bincode 2's own format is larger
//! for small integers. Bulk numeric data should travel as byte buffers
//! (`serde_bytes`), which postcard copies as one block.
//!
//! Encoding also records which process the bytes are for, so that handles inside a
//! value (a `Future` sent to another process) can register that process with their
//! owner — see [`serializing_for`].

use std::cell::Cell;

use bytes::Bytes;
use cohort_wire::envelope::Splices;
use cohort_wire::ids::Pid;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ErrorKind, Failure};
use crate::shell::spare::{SpareBuffer, SPARE_MIN};

/// Encodes a value.
///
/// # Errors
/// A [`Failure`] of kind `Serialization` if serde refuses the value.
///
/// ```
/// let b = cohort_cluster::codec::encode(&(1u8, "a")).unwrap();
/// let v: (u8, String) = cohort_cluster::codec::decode(&b).unwrap();
/// assert_eq!(v, (1, "a".to_string()));
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Failure> {
    postcard::serialize_with_flavor(value, SpareVec(Vec::new(), None))
        .map(|(v, _)| v)
        .map_err(encode_failure)
}

thread_local! {
    /// The spare buffer of the node whose message is being encoded on this thread
    /// (set by [`with_target`]).
    static SPARE: std::cell::RefCell<Option<std::sync::Arc<SpareBuffer>>> =
        const { std::cell::RefCell::new(None) };
}

/// postcard's output for cohort's messages: a vector that, when a large encoding
/// outgrows it, moves into the node's spare buffer (`shell/spare.rs`), whose pages
/// are already mapped, instead of a fresh allocation that the kernel faults in and
/// zeroes page by page as the bytes are copied in. An encoding that splices
/// (`Some` splices) leaves out the shared buffers offered by [`serialize_shared`].
struct SpareVec(Vec<u8>, Option<Splices>);

thread_local! {
    /// Buffers offered by [`serialize_shared`] while a splicing encoding runs on this
    /// thread (`None` otherwise): the next bytes written that are exactly one of them
    /// are spliced, not copied.
    static OFFERED: std::cell::RefCell<Option<Vec<Bytes>>> = const { std::cell::RefCell::new(None) };
}

/// Shared buffers at least this large are spliced into a message rather than copied
/// into its encoding (smaller ones are cheaper to copy than to write separately).
pub const SHARE_MIN: usize = cohort_wire::envelope::SPLIT_PAYLOAD_MIN;

/// Serializes `bytes` as serde bytes — exactly what `serializer.serialize_bytes(bytes)`
/// does, so every format decodes it as bytes — and, when the value is being encoded
/// into one of cohort's messages (call arguments), lets the message be written from
/// `bytes` where it is instead of copying it into the encoding: the message holds a
/// reference to `bytes` until it is written. Worth it for buffers of [`SHARE_MIN`]
/// bytes or more; smaller ones are copied as usual. Call it from the `Serialize`
/// impl of a type that holds its bulk data as [`Bytes`]. `COHORT_SPLICE=0` in the
/// sender's environment turns splicing off (the bytes are copied).
///
/// # Errors
/// The serializer's error, as `serialize_bytes`.
///
/// ```
/// use bytes::Bytes;
/// struct Blob(Bytes);
/// impl serde::Serialize for Blob {
///     fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
///         cohort_cluster::codec::serialize_shared(&self.0, s)
///     }
/// }
/// let b = cohort_cluster::codec::encode(&Blob(Bytes::from_static(b"abc"))).unwrap();
/// // Plain serde bytes: any bytes type decodes it.
/// let v: cohort_cluster::codec::SharedBytes = cohort_cluster::codec::decode(&b).unwrap();
/// assert_eq!(&v[..], b"abc");
/// ```
pub fn serialize_shared<S: serde::Serializer>(
    bytes: &Bytes,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if would_splice(bytes.len()) {
        OFFERED.with(|o| {
            if let Some(offers) = o.borrow_mut().as_mut() {
                offers.push(bytes.clone());
            }
        });
    }
    serializer.serialize_bytes(bytes)
}

/// Whether shared buffers are spliced: yes, unless `COHORT_SPLICE=0` is in this
/// process's environment (to measure what splicing saves; the buffers are then
/// copied into the encoding).
fn splicing_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("COHORT_SPLICE").map_or(true, |v| v.trim() != "0"))
}

/// Encodes `value` at the end of `out`, leaving out the shared buffers its
/// `Serialize` offered through [`serialize_shared`]: they are returned as
/// [`Splices`] at their offsets into `out`, and the message that carries `out` is
/// written with them in their places (`encode_envelope_spliced`).
pub(crate) fn encode_spliced_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<Splices, Failure> {
    let outer = OFFERED.with(|o| o.borrow_mut().replace(Vec::new()));
    let taken = std::mem::take(out);
    let r = postcard::serialize_with_flavor(value, SpareVec(taken, Some(Splices::default())));
    OFFERED.with(|o| *o.borrow_mut() = outer);
    let (bytes, splices) = r.map_err(encode_failure)?;
    *out = bytes;
    Ok(splices.unwrap_or_default())
}

thread_local! {
    /// The owned call arguments being encoded on this thread by [`encode_lent_into`]:
    /// where they lie, and — once a [`Bulk`] stored inline in them lent its elements to
    /// the message — the slot that will keep them alive.
    static LENDER: std::cell::RefCell<Option<Lender>> = const { std::cell::RefCell::new(None) };
}

/// See [`LENDER`].
struct Lender {
    start: usize,
    size: usize,
    /// Made at the first lend only, so a call that lends nothing allocates nothing.
    lent: Option<std::sync::Arc<Lent>>,
}

/// Owned call arguments a message is written from: filled once they are encoded,
/// never touched again but to be dropped, with the last piece written (the mutex
/// only makes the slot shareable).
#[derive(Default)]
struct Lent(parking_lot::Mutex<Option<Box<dyn std::any::Any + Send>>>);

impl Lent {
    /// Lets go of one handle on `lent`; the last one drops the arguments — on a
    /// blocking thread of cohort's runtime when `elsewhere`, since a message's bytes
    /// go when it is written, perhaps under a connection's lock, and the arguments'
    /// drops (a handle's release, say) may need that lock.
    fn release(lent: std::sync::Arc<Lent>, elsewhere: bool) {
        let Some(args) = std::sync::Arc::into_inner(lent).and_then(|l| l.0.into_inner()) else {
            return;
        };
        if elsewhere {
            drop(crate::runtime::handle().spawn_blocking(move || drop(args)));
        } else {
            drop(args);
        }
    }
}

/// A slice of lent arguments' memory, as the owner of a [`Bytes`].
struct Borrowed {
    ptr: *const u8,
    len: usize,
    lent: Option<std::sync::Arc<Lent>>,
}

// SAFETY: the bytes are plain data in heap memory owned by the arguments that `lent`
// keeps, which nothing changes or frees while `lent` is held (see `lend`); reading
// them from any thread is sound.
unsafe impl Send for Borrowed {}

impl AsRef<[u8]> for Borrowed {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see `lend` and the `Send` impl: `ptr..ptr+len` stays valid and
        // unchanged while `self.lent` holds the arguments.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        if let Some(lent) = self.lent.take() {
            Lent::release(lent, true);
        }
    }
}

/// Encodes owned call arguments at the end of `out` as [`encode_spliced_into`]
/// does, and also splices the elements of every large [`Bulk`] stored inline in
/// them (a tuple field, say), which are then not copied: such arguments are kept
/// until the message is written, instead of being dropped as soon as encoded.
pub(crate) fn encode_lent_into<T: Serialize + Send + 'static>(
    args: T,
    out: &mut Vec<u8>,
) -> Result<Splices, Failure> {
    let here = Lender {
        start: &args as *const T as usize,
        size: std::mem::size_of::<T>(),
        lent: None,
    };
    let outer = LENDER.with(|l| l.borrow_mut().replace(here));
    let r = encode_spliced_into(&args, out);
    let lender = LENDER.with(|l| std::mem::replace(&mut *l.borrow_mut(), outer));
    if let Some(lent) = lender.and_then(|l| l.lent) {
        // Moving the arguments leaves the lent elements where they are (in the heap
        // memory of their `Bulk`'s vector), and no piece has left this thread yet.
        *lent.0.lock() = Some(Box::new(args));
        Lent::release(lent, false);
    }
    r
}

/// Whether a buffer of `len` bytes offered now would be spliced: it is large, and an
/// encoding that splices runs on this thread.
fn would_splice(len: usize) -> bool {
    len >= SHARE_MIN && splicing_on() && OFFERED.with(|o| o.borrow().is_some())
}

/// The elements `data` of a [`Bulk`] at `at` (`size` bytes), as bytes to splice into
/// the message being encoded, if they would be spliced and the `Bulk` lies inline
/// within the lent arguments being encoded (so it is theirs, and its elements live
/// and stay unchanged while the arguments are kept: nothing else can reach them).
fn lend(at: usize, size: usize, data: &[u8]) -> Option<Bytes> {
    if !would_splice(data.len()) {
        return None;
    }
    LENDER.with(|l| {
        let mut l = l.borrow_mut();
        let lender = l.as_mut()?;
        if at < lender.start || at + size > lender.start + lender.size {
            return None;
        }
        let lent = lender.lent.get_or_insert_with(Default::default).clone();
        Some(Bytes::from_owner(Borrowed {
            ptr: data.as_ptr(),
            len: data.len(),
            lent: Some(lent),
        }))
    })
}

impl SpareVec {
    /// The offered buffer `data` is, if this encoding splices and it is one.
    fn offered(&self, data: &[u8]) -> Option<Bytes> {
        if self.1.is_none() || data.len() < SHARE_MIN {
            return None;
        }
        OFFERED.with(|o| {
            let mut o = o.borrow_mut();
            let offers = o.as_mut()?;
            let i = offers
                .iter()
                .position(|b| b.as_ptr() == data.as_ptr() && b.len() == data.len())?;
            Some(offers.swap_remove(i))
        })
    }

    fn make_room(&mut self, more: usize) {
        let need = self.0.len() + more;
        if need <= self.0.capacity() || need < SPARE_MIN {
            return;
        }
        let spare = SPARE.with(|s| s.borrow().as_ref().and_then(|sp| sp.take_vec(need)));
        // No spare: fresh memory, on huge pages (at least doubling, as `Vec` grows).
        let mut room =
            spare.unwrap_or_else(|| large_vec(need.max(self.0.capacity().saturating_mul(2))));
        room.extend_from_slice(&self.0);
        self.0 = room;
    }
}

impl postcard::ser_flavors::Flavor for SpareVec {
    type Output = (Vec<u8>, Option<Splices>);

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if let Some(shared) = self.offered(data) {
            // The same bytes, alive and immutable as long as `shared` is: the
            // message is written from them where they are.
            let at = self.0.len();
            self.1.as_mut().expect("splicing").push(at, shared);
            return Ok(());
        }
        self.make_room(data.len());
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        if self.0.len() == self.0.capacity() {
            self.make_room(1);
        }
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<(Vec<u8>, Option<Splices>)> {
        Ok((self.0, self.1))
    }
}

/// Gives the bytes of a message this thread has decoded back to the spare buffer of
/// the node it is working for (within [`with_target`]), for the next large message
/// read or encoded; drops them otherwise.
pub(crate) fn give_back(bytes: bytes::Bytes) {
    SPARE.with(|s| {
        if let Some(spare) = s.borrow().as_ref() {
            spare.recycle(bytes);
        }
    });
}

/// Something a value being encoded for a call needs kept alive in this process until
/// the call has been answered (see [`keep_until_answered`]).
pub type KeepAlive = std::sync::Arc<dyn std::any::Any + Send + Sync>;

thread_local! {
    /// What the values being encoded for a call on this thread asked to keep.
    static KEEP: std::cell::RefCell<Option<Vec<KeepAlive>>> = const { std::cell::RefCell::new(None) };
}

/// Called by a value's `Serialize` while it is encoded into a call's arguments: keeps
/// `what` alive in this process until the call is answered (`remotecall_fetch`,
/// `remotecall_wait`) or the [`Future`](crate::Future) of a `remotecall` goes. The
/// runtime drops a call's arguments as soon as they are encoded — a large argument
/// is not held twice while the call runs — so a handle whose last local copy is an
/// argument, and whose drop would release something the callee still needs (a
/// `SharedArray`'s mapping on its creator), keeps that alive this way. Outside a
/// call's encoding it does nothing.
///
/// ```
/// cohort_cluster::codec::keep_until_answered(std::sync::Arc::new(5u8));
/// ```
pub fn keep_until_answered(what: KeepAlive) {
    note_peer_specific();
    KEEP.with(|k| {
        if let Some(v) = k.borrow_mut().as_mut() {
            v.push(what);
        }
    });
}

/// Runs `f` (an encoding), collecting what the values encoded asked to keep.
pub(crate) fn collecting_keepalives<R>(f: impl FnOnce() -> R) -> (R, Vec<KeepAlive>) {
    let outer = KEEP.with(|k| k.borrow_mut().replace(Vec::new()));
    let r = f();
    let kept = KEEP.with(|k| std::mem::replace(&mut *k.borrow_mut(), outer));
    (r, kept.unwrap_or_default())
}

thread_local! {
    /// Why a handle refused to be serialized (postcard's errors drop the message).
    static REFUSAL: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A serde error for a value that refuses to be serialized, whose message survives
/// postcard (which keeps no custom message) into the [`Failure`].
pub(crate) fn refuse<E: serde::ser::Error>(message: String) -> E {
    let e = E::custom(&message);
    REFUSAL.with(|r| *r.borrow_mut() = Some(message));
    e
}

fn encode_failure(e: postcard::Error) -> Failure {
    let message = REFUSAL
        .with(|r| r.borrow_mut().take())
        .unwrap_or_else(|| e.to_string());
    Failure::new(ErrorKind::Serialization, message)
}

/// Encodes a value at the end of `out`.
///
/// # Errors
/// A [`Failure`] of kind `Serialization` if serde refuses the value.
///
/// ```
/// let mut out = vec![9];
/// cohort_cluster::codec::encode_into(&1u8, &mut out).unwrap();
/// assert_eq!(out, vec![9, 1]);
/// ```
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Failure> {
    let taken = std::mem::take(out);
    *out = postcard::serialize_with_flavor(value, SpareVec(taken, None))
        .map_err(encode_failure)?
        .0;
    Ok(())
}

/// Decodes a value.
///
/// # Errors
/// A [`Failure`] of kind `Serialization` if the bytes are not a `T`.
///
/// ```
/// assert!(cohort_cluster::codec::decode::<u64>(&[]).is_err());
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Failure> {
    postcard::from_bytes(bytes).map_err(|e| {
        Failure::new(
            ErrorKind::Serialization,
            format!("cannot decode {}: {e}", std::any::type_name::<T>()),
        )
    })
}

/// Decodes a value, as [`decode`], with a shortcut for the vectors whose postcard
/// encoding is their memory (`Vec<f64>`, `Vec<f32>`, `Vec<u8>`, `Vec<i8>` on a
/// little-endian machine: a length, then the elements at their width): those are
/// copied in one block into a vector on huge pages ([`large_vec`]) instead of
/// element by element into a vector that grows by doubling. What the runtime uses
/// for a call's result and a future's value.
pub(crate) fn decode_value<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, Failure> {
    if let Some(v) = fixed_width_vec::<T, f64>(bytes)
        .or_else(|| fixed_width_vec::<T, f32>(bytes))
        .or_else(|| fixed_width_vec::<T, u8>(bytes))
        .or_else(|| fixed_width_vec::<T, i8>(bytes))
    {
        return Ok(v);
    }
    decode(bytes)
}

/// `bytes` as a `Vec<E>`, if `T` is `Vec<E>` and the bytes are exactly its postcard
/// encoding; `None` otherwise (the general decoding then answers, errors included).
fn fixed_width_vec<T: 'static, E: bytemuck::Pod>(bytes: &[u8]) -> Option<T> {
    use std::any::{Any, TypeId};
    if cfg!(not(target_endian = "little")) || TypeId::of::<T>() != TypeId::of::<Vec<E>>() {
        return None;
    }
    let (len, rest): (usize, &[u8]) = postcard::take_from_bytes(bytes).ok()?;
    let size = std::mem::size_of::<E>();
    if len.checked_mul(size)? != rest.len() {
        return None;
    }
    let mut v: Vec<E> = large_vec(len);
    // SAFETY: the capacity is `len` elements, `rest` holds exactly their bytes, and
    // `E: Pod` is valid for any bytes; all are written before `set_len`.
    unsafe {
        std::ptr::copy_nonoverlapping(rest.as_ptr(), v.as_mut_ptr().cast::<u8>(), rest.len());
        v.set_len(len);
    }
    let any: Box<dyn Any> = Box::new(v);
    any.downcast::<T>().ok().map(|b| *b)
}

thread_local! {
    /// The large message whose bytes are being decoded on this thread (set by
    /// [`decoding_from`]), for [`shared_bytes`].
    static PAYLOAD: std::cell::RefCell<Option<bytes::Bytes>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (a decoding of `payload`'s bytes) with [`shared_bytes`] able to hand out
/// slices of `payload`, if it is a large message (restored afterwards, also when `f`
/// panics).
pub(crate) fn decoding_from<R>(payload: &bytes::Bytes, f: impl FnOnce() -> R) -> R {
    if payload.len() < SPARE_MIN {
        return f();
    }
    struct Restore(Option<bytes::Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            PAYLOAD.with(|p| *p.borrow_mut() = outer);
        }
    }
    let _restore = Restore(PAYLOAD.with(|p| p.borrow_mut().replace(payload.clone())));
    f()
}

/// Inside a `Deserialize` run by cohort on the arguments of a call: the borrowed
/// bytes `b` (as a visitor's `visit_bytes` gets them) as a [`Bytes`]
/// handle on the message's own memory, without a copy — if the message is large
/// (1 MiB or more) and `b` lies within it. `None` otherwise (a small message shares
/// its memory with the messages read with it, which a kept slice would pin; a value
/// decoded by hand has no message): copy then.
///
/// Holding the handle keeps the whole message's buffer, so it suits a value that
/// keeps most of the message (a large array of bytes); cohort's SPMD messages use it.
///
/// ```
/// // Outside a call's decoding there is no message to share.
/// assert!(cohort_cluster::codec::shared_bytes(&[1, 2, 3]).is_none());
/// ```
pub fn shared_bytes(b: &[u8]) -> Option<bytes::Bytes> {
    PAYLOAD.with(|p| {
        let p = p.borrow();
        let whole = p.as_ref()?;
        let (start, end) = (
            whole.as_ptr() as usize,
            whole.as_ptr() as usize + whole.len(),
        );
        let at = b.as_ptr() as usize;
        (at >= start && at + b.len() <= end).then(|| whole.slice_ref(b))
    })
}

/// Bytes that cross to another process without a copy on either side: a call's
/// argument of this type is written from the sender's buffer where it is
/// ([`serialize_shared`]), and decoded on the receiver as a handle on the message's
/// own memory ([`shared_bytes`]) when the message is large. For bulk data held as
/// [`Bytes`] — the buffer must not be changed meanwhile, which `Bytes` guarantees.
/// Small values (under [`SHARE_MIN`]) are copied as usual; other formats see plain
/// serde bytes.
///
/// ```
/// use cohort_cluster::codec::{decode, encode, SharedBytes};
/// let b = SharedBytes(bytes::Bytes::from(vec![1u8, 2, 3]));
/// let back: SharedBytes = decode(&encode(&b).unwrap()).unwrap();
/// assert_eq!(back, b);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SharedBytes(pub Bytes);

impl std::ops::Deref for SharedBytes {
    type Target = Bytes;
    fn deref(&self) -> &Bytes {
        &self.0
    }
}

impl From<Bytes> for SharedBytes {
    fn from(b: Bytes) -> Self {
        SharedBytes(b)
    }
}

impl SharedBytes {
    /// The memory of a vector of plain-old-data elements (`f64`, `u32`, …) as shared
    /// bytes, without a copy: the bytes own the vector and free it when the last
    /// handle goes. Elements are in this machine's byte order (little-endian on
    /// every cohort platform). The receiver reads them where they arrived, which
    /// need not be aligned for `T`: read them with [`pod_iter`](Self::pod_iter)
    /// (or copy them out).
    ///
    /// ```
    /// let b = cohort_cluster::codec::SharedBytes::from_pod_vec(vec![1.5f64, 2.5]);
    /// assert_eq!(b.len(), 16);
    /// assert_eq!(b.pod_iter::<f64>().sum::<f64>(), 4.0);
    /// ```
    pub fn from_pod_vec<T: bytemuck::Pod + Send>(v: Vec<T>) -> Self {
        struct PodVec<T>(Vec<T>);
        impl<T: bytemuck::Pod> AsRef<[u8]> for PodVec<T> {
            fn as_ref(&self) -> &[u8] {
                bytemuck::cast_slice(&self.0)
            }
        }
        SharedBytes(Bytes::from_owner(PodVec(v)))
    }

    /// The bytes read as consecutive `T`s, wherever they lie (no alignment needed);
    /// a last partial element is left out.
    ///
    /// ```
    /// let b = cohort_cluster::codec::SharedBytes::from(vec![1u8, 0, 2, 0, 9]);
    /// assert_eq!(b.pod_iter::<u16>().collect::<Vec<_>>(), vec![1, 2]);
    /// ```
    pub fn pod_iter<T: bytemuck::Pod>(&self) -> impl Iterator<Item = T> + '_ {
        self.0
            .chunks_exact(std::mem::size_of::<T>().max(1))
            .map(bytemuck::pod_read_unaligned)
    }
}

impl From<Vec<u8>> for SharedBytes {
    fn from(v: Vec<u8>) -> Self {
        SharedBytes(Bytes::from(v))
    }
}

impl Serialize for SharedBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_shared(&self.0, s)
    }
}

impl<'de> serde::Deserialize<'de> for SharedBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SharedBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<SharedBytes, E> {
                // A copy when the bytes are not a large message's (on huge pages
                // when large: `large_vec`).
                Ok(SharedBytes(shared_bytes(b).unwrap_or_else(|| {
                    let mut v = large_vec(b.len());
                    v.extend_from_slice(b);
                    Bytes::from(v)
                })))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, b: Vec<u8>) -> Result<SharedBytes, E> {
                Ok(SharedBytes(Bytes::from(b)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<SharedBytes, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(SharedBytes(Bytes::from(v)))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

thread_local! {
    /// The node serializing on this thread (its id) and the process the bytes are for.
    static TARGET: Cell<Option<(u64, Pid)>> = const { Cell::new(None) };
}

/// The process the value being serialized on this thread is for, if the runtime is
/// serializing a message (Julia's `worker_id_from_socket` during serialization). Custom
/// `Serialize` impls may use it; handles use it to register the receiver.
///
/// ```
/// assert_eq!(cohort_cluster::codec::serializing_for(), None);
/// ```
pub fn serializing_for() -> Option<Pid> {
    note_peer_specific();
    TARGET.with(|t| t.get()).map(|(_, pid)| pid)
}

/// The serialization target with the id of the node serializing: a handle checks
/// that it belongs to that node's cluster.
pub(crate) fn target() -> Option<(u64, Pid)> {
    note_peer_specific();
    TARGET.with(|t| t.get())
}

thread_local! {
    /// Set when a value being encoded asked who it is encoded for, or whether it goes
    /// into a message: a handle, whose bytes hold to one receiver (see
    /// [`watching_peer_specific`]).
    static PEER_SPECIFIC: Cell<bool> = const { Cell::new(false) };
}

fn note_peer_specific() {
    PEER_SPECIFIC.with(|p| p.set(true));
}

/// Runs `f` (an encoding) and says whether what it encoded is specific to its
/// receiver: a remote reference, or anything else that asked for its target,
/// whether it is in a message, or to be kept until the call is answered. Such bytes
/// must go to that receiver exactly once, so a function state holding them is never
/// kept on a callee for later calls.
pub(crate) fn watching_peer_specific<R>(f: impl FnOnce() -> R) -> (R, bool) {
    let outer = PEER_SPECIFIC.with(|p| p.replace(false));
    let r = f();
    let specific = PEER_SPECIFIC.with(|p| p.replace(outer || p.get()));
    (r, specific)
}

thread_local! {
    /// Set while the runtime encodes a value for its own store (a local future's
    /// value copied for remote fetchers): handles inside travel as live ones,
    /// though no message is being built yet.
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
}

/// Whether a value serialized now is going into a cluster message (or a value the
/// runtime stores for one): only then does a handle inside travel live. Bytes made
/// anywhere else — `serde_json` into a file, [`encode`] by hand — carry an inert
/// handle (see [`CallError::Inert`](crate::CallError::Inert)). A handle type of
/// another crate (a `SharedArray`) asks this to follow the same rule.
///
/// ```
/// assert!(!cohort_cluster::codec::in_message());
/// ```
pub fn in_message() -> bool {
    note_peer_specific();
    target().is_some() || INTERNAL.with(Cell::get)
}

/// Runs `f` (an encoding by the runtime for its own store) with handles treated as
/// inside a message (see [`in_message`]).
pub(crate) fn internally<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            INTERNAL.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(INTERNAL.with(|t| t.replace(true)));
    f()
}

/// Runs `f` with [`serializing_for`] reporting `pid` of `node`'s cluster (restored
/// afterwards, also when `f` panics).
pub(crate) fn with_target<R>(
    node: &crate::shell::node::Node,
    pid: Pid,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore(Option<(u64, Pid)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            TARGET.with(|t| t.set(self.0));
        }
    }
    struct RestoreSpare(Option<std::sync::Arc<SpareBuffer>>);
    impl Drop for RestoreSpare {
        fn drop(&mut self) {
            let outer = self.0.take();
            SPARE.with(|s| *s.borrow_mut() = outer);
        }
    }
    let _restore = Restore(TARGET.with(|t| t.replace(Some((node.id, pid)))));
    // Large messages encoded meanwhile may use the node's spare buffer.
    let _spare = RestoreSpare(SPARE.with(|s| s.borrow_mut().replace(node.spare.clone())));
    f()
}

/// A numeric array that crosses the wire as raw bytes: one length and one block copy,
/// with no per-element encoding (plain serde encodes a `Vec<f64>` element by element).
/// Use it for bulk arguments and results; it derefs to the `Vec`.
///
/// Elements are plain-old-data (`bytemuck::Pod`); bytes travel in this machine's byte
/// order, which every cohort platform shares (little-endian).
///
/// As a call's argument — a field of the argument tuple passed to `remotecall` and
/// its kin, which take it — a `Bulk` of [`SHARE_MIN`] bytes or more is not copied
/// into the message: the message is written from its elements where they are, and
/// the arguments are dropped once it has been written (on one of cohort's threads)
/// instead of as soon as they are encoded. A `Bulk` behind a pointer (a `Box` in the
/// tuple) is copied as usual. The receiver decodes it into a vector of its own (one
/// copy, into fresh memory); [`SharedBytes`] avoids that copy too.
///
/// ```
/// use cohort_cluster::codec::{decode, encode, Bulk};
/// let a = Bulk(vec![1.5f64; 1000]);
/// let bytes = encode(&a).unwrap();
/// assert!(bytes.len() <= 8000 + 3);
/// let b: Bulk<f64> = decode(&bytes).unwrap();
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bulk<T>(pub Vec<T>);

impl<T> Bulk<T> {
    /// The vector inside.
    ///
    /// ```
    /// assert_eq!(cohort_cluster::codec::Bulk(vec![1u8]).into_inner(), vec![1]);
    /// ```
    pub fn into_inner(self) -> Vec<T> {
        self.0
    }
}

impl<T> std::ops::Deref for Bulk<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Bulk<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T> From<Vec<T>> for Bulk<T> {
    fn from(v: Vec<T>) -> Self {
        Bulk(v)
    }
}

/// An empty vector with room for `capacity` elements, for filling at once: when it
/// is large (4 MiB or more), the kernel is asked to back it with transparent huge
/// pages, so that filling the fresh memory costs one page fault per 2 MiB instead of
/// one per 4 KiB — on a virtual machine that made a fresh 256 MiB copy three times
/// faster. cohort decodes [`Bulk`] arrays, large messages and SPMD reassemblies into
/// such vectors; code of its own that fills a large fresh vector may use it too.
///
/// Only advice: where the system's setting for transparent huge pages is `never`
/// (`/sys/kernel/mm/transparent_hugepage/enabled`), the vector has ordinary pages;
/// `COHORT_HUGE_PAGES=0` in a process's environment turns the advice off there. The
/// vector is an ordinary `Vec`, freed as any other.
///
/// # Panics
/// As [`Vec::with_capacity`]: if the capacity exceeds `isize::MAX` bytes.
///
/// ```
/// let mut v: Vec<f64> = cohort_cluster::codec::large_vec(1 << 20);
/// assert!(v.is_empty() && v.capacity() >= 1 << 20);
/// v.resize(1 << 20, 1.5);
/// assert_eq!(v.iter().sum::<f64>(), 1.5 * (1 << 20) as f64);
/// ```
pub fn large_vec<T>(capacity: usize) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(capacity);
    crate::shell::memory::advise_huge(
        v.as_mut_ptr().cast(),
        capacity.saturating_mul(std::mem::size_of::<T>()),
    );
    v
}

impl<T: bytemuck::Pod> Serialize for Bulk<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let data: &[u8] = bytemuck::cast_slice(&self.0);
        // A large array among a call's owned arguments is written from where it is.
        match lend(
            self as *const Self as usize,
            std::mem::size_of::<Self>(),
            data,
        ) {
            Some(lent) => serialize_shared(&lent, s),
            None => s.serialize_bytes(data),
        }
    }
}

impl<'de, T: bytemuck::Pod> serde::Deserialize<'de> for Bulk<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: bytemuck::Pod> serde::de::Visitor<'de> for V<T> {
            type Value = Bulk<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "the bytes of a [{}]", std::any::type_name::<T>())
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Bulk<T>, E> {
                let size = std::mem::size_of::<T>().max(1);
                if !b.len().is_multiple_of(size) {
                    return Err(E::invalid_length(b.len(), &self));
                }
                // Copy into a properly aligned vector (the input may be unaligned).
                let n = b.len() / size;
                let mut v: Vec<T> = large_vec(n);
                // SAFETY: the capacity is `n`; `T: Pod` is valid for any bytes, and
                // every byte of the first `n` elements is written before `set_len`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        b.as_ptr(),
                        v.as_mut_ptr().cast::<u8>(),
                        n * size,
                    );
                    v.set_len(n);
                }
                Ok(Bulk(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, b: Vec<u8>) -> Result<Bulk<T>, E> {
                self.visit_bytes(&b)
            }
        }
        d.deserialize_bytes(V(std::marker::PhantomData))
    }
}

/// A value that can be decoded into a caller's buffer of its elements, without a
/// vector of its own: what [`Future::fetch_into`](crate::Future::fetch_into) fetches.
/// Implemented for [`Bulk<E>`] (its bytes are copied in one block) and `Vec<E>` (its
/// elements are decoded in place; `f32`/`f64`/`u8`/`i8`, which postcard writes at
/// their fixed width, in one block too).
///
/// ```
/// use cohort_cluster::codec::{encode, Bulk, IntoBuffer};
/// let bytes = encode(&Bulk(vec![1.5f64, 2.5])).unwrap();
/// let mut out = [0.0; 2];
/// <Bulk<f64> as IntoBuffer>::decode_into(&bytes, &mut out).unwrap();
/// assert_eq!(out, [1.5, 2.5]);
/// ```
pub trait IntoBuffer {
    /// The element type.
    type Elem;

    /// Decodes the encoded value `bytes` into `out`, which must have exactly the
    /// value's length.
    ///
    /// # Errors
    /// [`BufferError::Length`] if `out` is not as long as the value (nothing else is
    /// written then), [`BufferError::Decode`] if `bytes` are not such a value.
    fn decode_into(bytes: &[u8], out: &mut [Self::Elem]) -> Result<(), BufferError>;

    /// The elements of a value held here, for a copy into a buffer.
    fn elems(&self) -> &[Self::Elem];
}

/// Why a value could not be decoded into a buffer ([`IntoBuffer::decode_into`]).
///
/// ```
/// let e = cohort_cluster::codec::BufferError::Length { value: 3, buffer: 2 };
/// assert!(e.to_string().contains("3"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    /// The buffer's length is not the value's.
    #[error("the value has {value} elements but the buffer {buffer}")]
    Length {
        /// Elements in the value.
        value: usize,
        /// Elements in the buffer.
        buffer: usize,
    },
    /// The bytes are not an encoded value of this type.
    #[error("cannot decode the value: {0}")]
    Decode(String),
}

impl<E: bytemuck::Pod> IntoBuffer for Bulk<E> {
    type Elem = E;

    fn decode_into(bytes: &[u8], out: &mut [E]) -> Result<(), BufferError> {
        let (raw, _): (&[u8], _) =
            postcard::take_from_bytes(bytes).map_err(|e| BufferError::Decode(e.to_string()))?;
        copy_raw(raw, out)
    }

    fn elems(&self) -> &[E] {
        &self.0
    }
}

/// Copies `raw`, the bytes of `out.len()` elements, into `out`.
fn copy_raw<E: bytemuck::Pod>(raw: &[u8], out: &mut [E]) -> Result<(), BufferError> {
    let size = std::mem::size_of::<E>().max(1);
    if !raw.len().is_multiple_of(size) {
        return Err(BufferError::Decode(format!(
            "{} bytes are not a whole number of {}",
            raw.len(),
            std::any::type_name::<E>()
        )));
    }
    if raw.len() / size != out.len() {
        return Err(BufferError::Length {
            value: raw.len() / size,
            buffer: out.len(),
        });
    }
    bytemuck::cast_slice_mut::<E, u8>(out).copy_from_slice(raw);
    Ok(())
}

impl<E: bytemuck::Pod + DeserializeOwned> IntoBuffer for Vec<E> {
    type Elem = E;

    fn decode_into(bytes: &[u8], out: &mut [E]) -> Result<(), BufferError> {
        let bad = |e: postcard::Error| BufferError::Decode(e.to_string());
        // postcard's length prefix, then the elements.
        let (len, rest): (usize, &[u8]) = postcard::take_from_bytes(bytes).map_err(bad)?;
        if len != out.len() {
            return Err(BufferError::Length {
                value: len,
                buffer: out.len(),
            });
        }
        use std::any::TypeId;
        let fixed = [
            TypeId::of::<f64>(),
            TypeId::of::<f32>(),
            TypeId::of::<u8>(),
            TypeId::of::<i8>(),
        ];
        if cfg!(target_endian = "little") && fixed.contains(&TypeId::of::<E>()) {
            // postcard writes these at their width, little-endian: the elements'
            // bytes as they are in memory.
            let need = len * std::mem::size_of::<E>();
            let raw = rest.get(..need).ok_or_else(|| {
                BufferError::Decode(format!("{} bytes for {len} elements", rest.len()))
            })?;
            return copy_raw(raw, out);
        }
        let mut rest = rest;
        for slot in out.iter_mut() {
            let (v, r) = postcard::take_from_bytes::<E>(rest).map_err(bad)?;
            *slot = v;
            rest = r;
        }
        Ok(())
    }

    fn elems(&self) -> &[E] {
        self
    }
}

#[cfg(test)]
mod buffer_tests {
    use super::*;

    #[test]
    fn offered_buffers_are_spliced_only_in_a_splicing_encoding_and_only_if_large() {
        let big = Bytes::from(vec![5u8; SHARE_MIN]);
        let other = Bytes::from(vec![6u8; 3 * SHARE_MIN]);
        let v = (
            SharedBytes(big.clone()),
            3u8,
            SharedBytes(Bytes::from_static(b"small")),
            SharedBytes(other.slice(1..)),
        );
        let copied = encode(&v).unwrap();
        let mut out = vec![9];
        let s = encode_spliced_into(&v, &mut out).unwrap();
        assert_eq!(s.bytes(), SHARE_MIN + 3 * SHARE_MIN - 1);
        let pieces: Vec<_> = s.iter().collect();
        assert_eq!(pieces.len(), 2);
        // Shared, not copied: the pieces are the caller's buffers.
        assert_eq!(pieces[0].1.as_ptr(), big.as_ptr());
        assert_eq!(pieces[1].1.as_ptr(), other[1..].as_ptr());
        // In their places, the encoding is the copied one (after what `out` held).
        assert_eq!(s.splice_into(&out)[1..], copied[..]);
        assert!(out.len() < 64, "only the small parts are in the buffer");
        // Nothing is left offered afterwards, and a plain encoding splices nothing.
        assert!(OFFERED.with(|o| o.borrow().is_none()));
        assert_eq!(encode(&v).unwrap(), copied);
        let back: (SharedBytes, u8, SharedBytes, SharedBytes) = decode(&copied).unwrap();
        assert_eq!(back, v);
    }

    /// Sets its flag when dropped (sends on its channel), to see when lent
    /// arguments go.
    struct Flag(std::sync::mpsc::Sender<()>);
    impl Serialize for Flag {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_unit()
        }
    }
    impl Drop for Flag {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    #[test]
    fn owned_bulk_arguments_lend_their_elements_and_live_until_the_message_goes() {
        let n = SHARE_MIN / 8 + 1;
        let lent = Bulk((0..n).map(|i| i as f64).collect::<Vec<f64>>());
        let at = lent.as_ptr().cast::<u8>();
        // Not inline in the arguments (behind a box): copied. Small: copied.
        let boxed = Box::new(Bulk(vec![2.5f64; n]));
        let (tx, rx) = std::sync::mpsc::channel();
        let v = (lent, 7u32, boxed, Bulk(vec![1u16; 3]), Flag(tx));
        let copied = encode(&v).unwrap();
        let mut out = vec![9];
        let s = encode_lent_into(v, &mut out).unwrap();
        let pieces: Vec<_> = s.iter().collect();
        assert_eq!(pieces.len(), 1);
        assert_eq!(
            pieces[0].1.as_ptr(),
            at,
            "the caller's elements, not a copy"
        );
        assert_eq!(s.splice_into(&out)[1..], copied[..]);
        // The arguments live while the message's pieces do, and go after them.
        assert!(rx.try_recv().is_err());
        drop(s);
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the arguments are dropped once the message is");
        assert!(LENDER.with(|l| l.borrow().is_none()));

        // Nothing lent: the arguments go at once, and the encoding is the plain one.
        let (tx, rx) = std::sync::mpsc::channel();
        let v = (Bulk(vec![1.0f64; 10]), Flag(tx));
        let mut out = Vec::new();
        let s = encode_lent_into(v, &mut out).unwrap();
        assert_eq!(s.bytes(), 0);
        assert!(rx.try_recv().is_ok(), "dropped when encoded");
        let back: (Bulk<f64>, ()) = decode(&out).unwrap();
        assert_eq!(back.0 .0, vec![1.0; 10]);
    }

    #[test]
    fn fixed_width_vectors_decode_in_one_block_as_the_general_decoding_does() {
        let f: Vec<f64> = (0..10_000).map(|i| i as f64 * 0.5).collect();
        assert_eq!(decode_value::<Vec<f64>>(&encode(&f).unwrap()).unwrap(), f);
        let g: Vec<f32> = vec![1.5, -2.0];
        assert_eq!(decode_value::<Vec<f32>>(&encode(&g).unwrap()).unwrap(), g);
        let b: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_value::<Vec<u8>>(&encode(&b).unwrap()).unwrap(), b);
        let i: Vec<i8> = vec![-128, 0, 127];
        assert_eq!(decode_value::<Vec<i8>>(&encode(&i).unwrap()).unwrap(), i);
        let e: Vec<f64> = Vec::new();
        assert_eq!(decode_value::<Vec<f64>>(&encode(&e).unwrap()).unwrap(), e);
        // Other types take the general path.
        let w: Vec<u64> = vec![1, 300, u64::MAX];
        assert_eq!(decode_value::<Vec<u64>>(&encode(&w).unwrap()).unwrap(), w);
        // Bytes too short or too long for the length: the general decoding's answer
        // (an error when short; trailing bytes are ignored, as postcard does).
        let mut bad = encode(&f).unwrap();
        bad.pop();
        assert!(decode_value::<Vec<f64>>(&bad).is_err());
        let mut long = encode(&g).unwrap();
        long.push(0);
        assert_eq!(
            decode_value::<Vec<f32>>(&long).unwrap(),
            decode::<Vec<f32>>(&long).unwrap()
        );
        assert!(decode_value::<Vec<f64>>(&[0xff; 3]).is_err());
    }

    #[test]
    fn vectors_and_bulk_arrays_decode_into_buffers_of_their_length_only() {
        let v: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
        let mut out = vec![0.0; 1000];
        Vec::<f64>::decode_into(&encode(&v).unwrap(), &mut out).unwrap();
        assert_eq!(out, v);
        Bulk::<f64>::decode_into(&encode(&Bulk(v.clone())).unwrap(), &mut out).unwrap();
        assert_eq!(out, v);
        // Varint-encoded elements, decoded one by one.
        let w: Vec<u64> = vec![1, 300, u64::MAX, 0];
        let mut o = [9u64; 4];
        Vec::<u64>::decode_into(&encode(&w).unwrap(), &mut o).unwrap();
        assert_eq!(o.to_vec(), w);
        let mut short = vec![7.0; 999];
        assert_eq!(
            Vec::<f64>::decode_into(&encode(&v).unwrap(), &mut short),
            Err(BufferError::Length {
                value: 1000,
                buffer: 999
            })
        );
        assert!(short.iter().all(|&x| x == 7.0), "nothing written");
        assert!(matches!(
            Bulk::<f64>::decode_into(&encode(&Bulk(v)).unwrap(), &mut short),
            Err(BufferError::Length { .. })
        ));
        // Truncated or garbage bytes are errors, not panics.
        let e = encode(&w).unwrap();
        assert!(Vec::<u64>::decode_into(&e[..e.len() - 1], &mut o).is_err());
        assert!(Vec::<f64>::decode_into(&[0xff; 11], &mut out).is_err());
        assert!(Bulk::<f64>::decode_into(&[3, 1, 2, 3], &mut [0.0]).is_err());
        let empty: Vec<f32> = Vec::new();
        Vec::<f32>::decode_into(&encode(&empty).unwrap(), &mut []).unwrap();
    }
}
