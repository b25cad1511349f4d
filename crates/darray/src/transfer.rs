//! Moving elements: blocks in bulk, straight into the caller's buffer, and user
//! functions inside calls.
//!
//! A [`Block`] is a run of elements in row-major order. Numeric elements travel as
//! one byte block ([`Element::as_bytes`]). A block sent in answer to a fetch carries
//! the *landing token* of the request; when the reply is decoded on the caller, the
//! token names the caller's buffer (a region of it registered for the duration of
//! the fetch) and the bytes are written there directly — no per-chunk array is made
//! on the way.

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use cohort_cluster::RemoteFn;
use ndarray::{ArrayViewMut, IxDyn, RawArrayViewMut};
use parking_lot::Mutex;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::element::Element;

/// A user function travelling as an argument of one of this crate's calls: its
/// captured state as bytes, rebuilt on the receiver.
pub(crate) struct Shipped<F, A>(pub(crate) F, PhantomData<fn(A)>);

impl<F, A> Shipped<F, A> {
    pub(crate) fn new(f: F) -> Self {
        Shipped(f, PhantomData)
    }
}

impl<F: Clone, A> Clone for Shipped<F, A> {
    fn clone(&self) -> Self {
        Shipped::new(self.0.clone())
    }
}

impl<F: RemoteFn<A>, A> Serialize for Shipped<F, A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let state = self
            .0
            .encode_state()
            .map_err(|e| serde::ser::Error::custom(e.message))?;
        s.serialize_bytes(&state)
    }
}

impl<'de, F: RemoteFn<A>, A> Deserialize<'de> for Shipped<F, A> {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        struct V<F, A>(PhantomData<(F, fn(A))>);
        impl<F: RemoteFn<A>, A> Visitor<'_> for V<F, A> {
            type Value = Shipped<F, A>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a function's state")
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Self::Value, E> {
                F::decode_state(b)
                    .map(Shipped::new)
                    .map_err(|e| E::custom(e.message))
            }
        }
        d.deserialize_bytes(V(PhantomData))
    }
}

/// Elements in row-major order, with the landing token of the request they answer
/// (0: none). Decoded where a landing with that token is registered, the elements are
/// written into it and `data` stays empty (`landed` is set).
pub(crate) struct Block<T> {
    pub(crate) token: u64,
    pub(crate) data: Vec<T>,
    pub(crate) landed: bool,
}

impl<T> Block<T> {
    pub(crate) fn new(data: Vec<T>) -> Self {
        Block {
            token: 0,
            data,
            landed: false,
        }
    }
}

struct Payload<'a, T>(&'a [T]);

impl<T: Element> Serialize for Payload<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match T::as_bytes(self.0) {
            Some(b) => s.serialize_bytes(b),
            None => self.0.serialize(s),
        }
    }
}

impl<T: Element> Serialize for Block<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.token)?;
        t.serialize_element(&Payload(&self.data))?;
        t.end()
    }
}

impl<'de, T: Element> Deserialize<'de> for Block<T> {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Element> Visitor<'de> for V<T> {
            type Value = Block<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a block of elements")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Block<T>, A::Error> {
                let token: u64 = seq
                    .next_element()?
                    .ok_or_else(|| serde::de::Error::invalid_length(0, &self))?;
                let landing = (token != 0).then(|| landing(token)).flatten();
                let block = seq
                    .next_element_seed(PayloadSeed::<T> {
                        token,
                        landing,
                        _t: PhantomData,
                    })?
                    .ok_or_else(|| serde::de::Error::invalid_length(1, &self))?;
                Ok(block)
            }
        }
        d.deserialize_tuple(2, V(PhantomData))
    }
}

struct PayloadSeed<T> {
    token: u64,
    landing: Option<Slot>,
    _t: PhantomData<T>,
}

impl<'de, T: Element> DeserializeSeed<'de> for PayloadSeed<T> {
    type Value = Block<T>;
    fn deserialize<De: Deserializer<'de>>(self, d: De) -> Result<Block<T>, De::Error> {
        if T::BULK {
            d.deserialize_bytes(self)
        } else {
            d.deserialize_seq(self)
        }
    }
}

impl<'de, T: Element> Visitor<'de> for PayloadSeed<T> {
    type Value = Block<T>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "elements of type {}", std::any::type_name::<T>())
    }

    fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Block<T>, E> {
        let size = std::mem::size_of::<T>().max(1);
        if !b.len().is_multiple_of(size) {
            return Err(E::custom("a block's bytes are not whole elements"));
        }
        let n = b.len() / size;
        if let Some(slot) = &self.landing {
            let mut slot = slot.lock();
            if let Some(dest) = slot.as_mut().and_then(|d| d.downcast_mut::<Dest<T>>()) {
                // SAFETY: the landing is registered by `Landing::new` from a live
                // mutable view that outlives the registration, and is removed (under
                // this same lock) before that view's borrow ends.
                let mut view = unsafe { dest.0.clone().deref_into_view_mut() };
                if view.len() != n {
                    return Err(E::custom(format!(
                        "a block of {n} elements for a buffer of {}",
                        view.len()
                    )));
                }
                if !write_bytes(&mut view, b) {
                    return Err(E::custom("invalid element bytes"));
                }
                return Ok(Block {
                    token: self.token,
                    data: Vec::new(),
                    landed: true,
                });
            }
        }
        let mut data = vec![T::default(); n];
        if !T::from_bytes(b, &mut data) {
            return Err(E::custom("invalid element bytes"));
        }
        Ok(Block {
            token: self.token,
            data,
            landed: false,
        })
    }

    fn visit_byte_buf<E: serde::de::Error>(self, b: Vec<u8>) -> Result<Block<T>, E> {
        self.visit_bytes(&b)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Block<T>, A::Error> {
        if let Some(slot) = &self.landing {
            let mut slot = slot.lock();
            if let Some(dest) = slot.as_mut().and_then(|d| d.downcast_mut::<Dest<T>>()) {
                // SAFETY: as in `visit_bytes`.
                let mut view = unsafe { dest.0.clone().deref_into_view_mut() };
                for x in view.iter_mut() {
                    *x = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::custom("a block too short"))?;
                }
                if seq.next_element::<T>()?.is_some() {
                    return Err(serde::de::Error::custom("a block too long"));
                }
                return Ok(Block {
                    token: self.token,
                    data: Vec::new(),
                    landed: true,
                });
            }
        }
        let mut data = cohort_cluster::codec::large_vec(seq.size_hint().unwrap_or(0));
        while let Some(x) = seq.next_element()? {
            data.push(x);
        }
        Ok(Block {
            token: self.token,
            data,
            landed: false,
        })
    }
}

/// Writes raw element bytes into a view, in its row-major order.
fn write_bytes<T: Element>(view: &mut ArrayViewMut<'_, T, IxDyn>, b: &[u8]) -> bool {
    let size = std::mem::size_of::<T>();
    if let Some(s) = view.as_slice_mut() {
        return T::from_bytes(b, s);
    }
    let mut view = squeeze(view.view_mut());
    if view.ndim() == 0 {
        return T::from_bytes(b, std::slice::from_mut(&mut view[IxDyn(&[])]));
    }
    let mut at = 0;
    for mut row in view.rows_mut() {
        let n = row.len();
        let part = &b[at..at + n * size];
        let ok = match row.as_slice_mut() {
            Some(s) => T::from_bytes(part, s),
            None => row
                .iter_mut()
                .zip(part.chunks_exact(size))
                .all(|(x, e)| T::from_bytes(e, std::slice::from_mut(x))),
        };
        if !ok {
            return false;
        }
        at += n * size;
    }
    true
}

/// `v` without its axes of length 1 (row-major order is unchanged), so that its rows
/// are as long as they can be: a column of a matrix becomes one strided row, walked
/// as a fixed-dimension lane instead of one `IxDyn` row per element.
pub(crate) fn squeeze<S: ndarray::RawData>(
    mut v: ndarray::ArrayBase<S, IxDyn>,
) -> ndarray::ArrayBase<S, IxDyn> {
    for ax in (0..v.ndim()).rev() {
        if v.shape()[ax] == 1 {
            v = v.index_axis_move(ndarray::Axis(ax), 0);
        }
    }
    v
}

/// Copies `src` into `dst` (of the same shape) a row at a time: one slice copy per
/// contiguous row, where an element-wise `assign` over `IxDyn` visits each element
/// through its index.
pub(crate) fn copy_region<T: Clone>(
    dst: &mut ArrayViewMut<'_, T, IxDyn>,
    src: &ndarray::ArrayView<'_, T, IxDyn>,
) {
    debug_assert_eq!(dst.shape(), src.shape());
    if let (Some(d), Some(s)) = (dst.as_slice_mut(), src.as_slice()) {
        d.clone_from_slice(s);
        return;
    }
    let mut dst = squeeze(dst.view_mut());
    let src = squeeze(src.view());
    if dst.ndim() == 0 {
        dst.assign(&src);
        return;
    }
    for (mut d, s) in dst.rows_mut().into_iter().zip(src.rows()) {
        match (d.as_slice_mut(), s.as_slice()) {
            (Some(d), Some(s)) => d.clone_from_slice(s),
            _ => d.assign(&s),
        }
    }
}

/// Copies a region's elements, in row-major order, into one vector.
pub(crate) fn to_vec<T: Clone, D: ndarray::Dimension>(v: ndarray::ArrayView<'_, T, D>) -> Vec<T> {
    if let Some(s) = v.as_slice() {
        return s.to_vec();
    }
    let v = squeeze(v.into_dyn());
    if v.ndim() == 0 {
        return v.iter().cloned().collect();
    }
    let mut out = Vec::with_capacity(v.len());
    for row in v.rows() {
        match row.as_slice() {
            Some(s) => out.extend_from_slice(s),
            None => out.extend(row.iter().cloned()),
        }
    }
    out
}

/// A registered destination: a raw view of (part of) a caller's buffer.
struct Dest<T>(RawArrayViewMut<T, IxDyn>);

// SAFETY: the view is only dereferenced under its slot's lock, while the buffer it
// points into is exclusively borrowed by the fetch that registered it; `T: Send`.
unsafe impl<T: Send> Send for Dest<T> {}

type Slot = Arc<Mutex<Option<Box<dyn Any + Send>>>>;

fn landings() -> &'static Mutex<HashMap<u64, Slot>> {
    static L: OnceLock<Mutex<HashMap<u64, Slot>>> = OnceLock::new();
    L.get_or_init(Default::default)
}

fn landing(token: u64) -> Option<Slot> {
    landings().lock().get(&token).cloned()
}

/// A region of a caller's buffer registered to receive one block; unregistered on
/// drop (waiting for a write in progress to finish).
pub(crate) struct Landing<'a> {
    pub(crate) token: u64,
    slot: Slot,
    _borrow: PhantomData<&'a mut ()>,
}

impl<'a> Landing<'a> {
    /// Registers `view` (whose borrow the landing keeps) as the destination of a
    /// block.
    pub(crate) fn new<T: Element>(view: ArrayViewMut<'a, T, IxDyn>) -> Landing<'a> {
        static TOKENS: AtomicU64 = AtomicU64::new(1);
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        let mut view = view;
        let raw = view.raw_view_mut();
        let slot: Slot = Arc::new(Mutex::new(Some(Box::new(Dest(raw)))));
        landings().lock().insert(token, slot.clone());
        Landing {
            token,
            slot,
            _borrow: PhantomData,
        }
    }
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        landings().lock().remove(&self.token);
        *self.slot.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array, Array2, Array3};

    fn grid(m: usize, n: usize) -> Array2<u32> {
        Array2::from_shape_fn((m, n), |(i, j)| (i * 100 + j) as u32)
    }

    #[test]
    fn to_vec_is_row_major_for_rows_columns_blocks_and_3d() {
        let a = grid(5, 7);
        for region in [s![1..2, ..], s![.., 3..4], s![1..4, 2..6], s![2..3, 4..5]] {
            let v = a.slice(region);
            assert_eq!(to_vec(v), v.iter().copied().collect::<Vec<_>>());
        }
        let b = Array3::from_shape_fn((3, 4, 5), |(i, j, k)| i * 20 + j * 5 + k);
        let v = b.slice(s![.., 1..2, 2..4]);
        assert_eq!(to_vec(v), v.iter().copied().collect::<Vec<_>>());
        let z = Array::from_elem(ndarray::IxDyn(&[]), 9u8);
        assert_eq!(to_vec(z.view()), vec![9]);
    }

    #[test]
    fn copy_region_copies_columns_and_strided_blocks() {
        let a = grid(6, 8);
        for (src, dst) in [
            (s![.., 2..3], s![..6, 0..1]),
            (s![1..5, 3..7], s![2..6, 4..8]),
            (s![4..5, ..], s![0..1, ..]),
        ] {
            let mut out = Array2::<u32>::zeros((6, 8));
            let from = a.slice(src).into_dyn();
            let mut to = out.slice_mut(dst).into_dyn();
            copy_region(&mut to, &from);
            assert_eq!(out.slice(dst), a.slice(src));
            // Nothing outside the region was written.
            let written: usize = out.iter().filter(|x| **x != 0).count();
            assert!(written <= out.slice(dst).len());
        }
    }

    #[test]
    fn write_bytes_fills_a_column_in_order_and_rejects_bad_bools() {
        let mut out = Array2::from_elem((4, 3), false);
        let bytes = [1u8, 0, 1, 1];
        let mut col = out.slice_mut(s![.., 1..2]).into_dyn();
        assert!(write_bytes(&mut col, &bytes));
        assert_eq!(out.column(1).to_vec(), vec![true, false, true, true]);
        assert_eq!(out.iter().filter(|x| **x).count(), 3);
        let mut col = out.slice_mut(s![.., 0..1]).into_dyn();
        assert!(!write_bytes(&mut col, &[1, 2, 0, 0]));
    }
}
