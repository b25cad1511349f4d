//! [`Element`]: what a `DArray` can hold, and how its elements cross the wire.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A type a [`DArray`](crate::DArray) or [`DData`](crate::DData) can hold.
///
/// Numbers (`f64`, `f32`, every integer type) and `bool` cross the wire **as raw
/// bytes**: a block of a million `f64` is one 8 MB copy, with no per-element encoding.
/// Other types go through serde element by element: implement `Element` for your
/// own type with an empty `impl` (the defaults are the serde path).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// #[derive(Clone, Default, Serialize, Deserialize)]
/// struct Particle { x: f64, v: f64 }
/// impl cohort_darray::Element for Particle {}
///
/// assert!(<f64 as cohort_darray::Element>::as_bytes(&[1.0, 2.0]).is_some());
/// assert!(<Particle as cohort_darray::Element>::as_bytes(&[Particle::default()]).is_none());
/// ```
pub trait Element: Serialize + DeserializeOwned + Clone + Default + Send + Sync + 'static {
    /// Whether [`as_bytes`](Self::as_bytes) gives the elements' bytes (then they travel
    /// as one block).
    const BULK: bool = false;

    /// The elements as raw bytes, for a type whose values are their bytes.
    ///
    /// ```
    /// use cohort_darray::Element;
    /// assert_eq!(<u16 as Element>::as_bytes(&[1, 2]).unwrap().len(), 4);
    /// ```
    fn as_bytes(elems: &[Self]) -> Option<&[u8]> {
        let _ = elems;
        None
    }

    /// Writes the elements whose raw bytes are `bytes` into `out` (as many as fit);
    /// `false` if the bytes are not valid elements (a `bool` other than 0 or 1) or the
    /// type does not travel as bytes.
    ///
    /// ```
    /// use cohort_darray::Element;
    /// let mut out = [false; 2];
    /// assert!(<bool as Element>::from_bytes(&[1, 0], &mut out));
    /// assert_eq!(out, [true, false]);
    /// assert!(!<bool as Element>::from_bytes(&[2, 0], &mut out));
    /// ```
    fn from_bytes(bytes: &[u8], out: &mut [Self]) -> bool {
        let _ = (bytes, out);
        false
    }
}

macro_rules! pod_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            const BULK: bool = true;
            fn as_bytes(elems: &[Self]) -> Option<&[u8]> {
                Some(bytemuck::cast_slice(elems))
            }
            fn from_bytes(bytes: &[u8], out: &mut [Self]) -> bool {
                let n = out.len().min(bytes.len() / std::mem::size_of::<$t>());
                bytemuck::cast_slice_mut::<$t, u8>(&mut out[..n])
                    .copy_from_slice(&bytes[..n * std::mem::size_of::<$t>()]);
                true
            }
        }
    )*};
}
pod_element!(f32, f64, i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

impl Element for bool {
    const BULK: bool = true;
    fn as_bytes(elems: &[Self]) -> Option<&[u8]> {
        // SAFETY: a `bool` is one byte, 0 or 1, with the alignment of `u8`; reading
        // those bytes as `u8` is always valid.
        Some(unsafe { std::slice::from_raw_parts(elems.as_ptr().cast::<u8>(), elems.len()) })
    }
    fn from_bytes(bytes: &[u8], out: &mut [Self]) -> bool {
        if bytes.iter().any(|b| *b > 1) {
            return false;
        }
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = *b == 1;
        }
        true
    }
}

impl Element for char {}
impl Element for String {}
impl Element for () {}
impl<T: Element> Element for Option<T> {}
impl<T: Element> Element for Vec<T> {}
impl<A: Element, B: Element> Element for (A, B) {}
impl<A: Element, B: Element, C: Element> Element for (A, B, C) {}
