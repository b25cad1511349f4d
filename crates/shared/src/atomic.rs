//! Atomic element access: flags and counters that several processes touch at once.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::Ordering;

use bytemuck::Pod;
use ndarray::Dimension;

use crate::array::{borrowed_as, SharedArray};
use crate::error::SharedError;
use crate::segment::Segment;

mod sealed {
    pub trait Sealed {}
}

/// A std atomic integer type that can view the elements of a [`SharedArray`]
/// ([`SharedArray::try_atomic_view`], [`SharedArray::atomic`]).
///
/// Implemented for the atomic integers of std (`AtomicU8` … `AtomicU64`, `AtomicI8` …
/// `AtomicI64`, `AtomicUsize`, `AtomicIsize`) where the target has them: every bit
/// pattern is a valid value of those, as it is of a `Pod` element. `AtomicBool` is
/// not one (only 0 and 1 are valid `bool`s). The trait is sealed.
///
/// ```
/// fn takes<A: cohort_shared::SharedAtomic>() {}
/// takes::<std::sync::atomic::AtomicU32>();
/// ```
///
/// ```compile_fail
/// fn takes<A: cohort_shared::SharedAtomic>() {}
/// takes::<std::sync::atomic::AtomicBool>(); // not every byte is a valid bool
/// ```
pub trait SharedAtomic: sealed::Sealed + Send + Sync + 'static {}

macro_rules! shared_atomic {
    ($($width:literal: $($a:ident),+;)+) => {$($(
        #[cfg(target_has_atomic = $width)]
        impl sealed::Sealed for std::sync::atomic::$a {}
        #[cfg(target_has_atomic = $width)]
        impl SharedAtomic for std::sync::atomic::$a {}
    )+)+};
}

shared_atomic! {
    "8": AtomicU8, AtomicI8;
    "16": AtomicU16, AtomicI16;
    "32": AtomicU32, AtomicI32;
    "64": AtomicU64, AtomicI64;
    "ptr": AtomicUsize, AtomicIsize;
}

/// Takes an atomic borrow of `seg` (any number of them at a time; excludes views).
fn borrow_atomically(seg: &Segment) -> Result<(), SharedError> {
    let mut cur = seg.borrow.load(Ordering::Relaxed);
    loop {
        let next = match cur {
            0 => -2,
            c if c < -1 => c - 1,
            c => return Err(SharedError::Borrowed(borrowed_as(c))),
        };
        match seg
            .borrow
            .compare_exchange_weak(cur, next, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => return Ok(()),
            Err(c) => cur = c,
        }
    }
}

fn release_atomically(seg: &Segment) {
    // -2 (the last atomic borrow) goes back to 0, -(n+1) to -n.
    let _ = seg
        .borrow
        .fetch_update(Ordering::Release, Ordering::Relaxed, |c| {
            Some(if c == -2 { 0 } else { c + 1 })
        });
}

impl<T: Pod, D: Dimension> SharedArray<T, D> {
    /// Checks that `A` can view the elements and returns them as `&[A]`, without
    /// taking a borrow.
    fn atomics<A: SharedAtomic>(&self) -> Result<(&Segment, &[A]), SharedError> {
        let seg = self.segment()?;
        if std::mem::size_of::<A>() != std::mem::size_of::<T>() {
            return Err(SharedError::AtomicSize {
                elem: std::any::type_name::<T>(),
                elem_size: std::mem::size_of::<T>(),
                atomic: std::any::type_name::<A>(),
                atomic_size: std::mem::size_of::<A>(),
            });
        }
        let ptr = self.ptr().cast::<A>();
        if !ptr.is_aligned() {
            return Err(SharedError::AtomicAlign {
                atomic: std::any::type_name::<A>(),
                align: std::mem::align_of::<A>(),
                addr: ptr as usize,
            });
        }
        // SAFETY: the mapping holds `len()` elements of `T` from `ptr` (checked at
        // creation) and lives as long as `self.seg`, which the slice borrows; `A` has
        // the size of `T` (checked above), so that is `len()` `A`s, and `ptr` is
        // aligned for `A` (checked above; for an empty array it is a dangling
        // pointer aligned to 8, and the check still applies). Every bit pattern is a
        // valid `T` (`Pod`) and a valid `A` (an atomic integer, `SharedAtomic` is
        // sealed to those). `A` is all `UnsafeCell`, so concurrent writes through
        // other `&A`s, in this process or another, are atomic accesses, not races.
        // Non-atomic `&`/`&mut` access to the same bytes in this process is excluded
        // by the borrow flag, which the callers take before handing the slice out.
        let elems = unsafe { std::slice::from_raw_parts(ptr.cast_const(), self.len()) };
        Ok((seg, elems))
    }

    /// The whole array as a slice of atomics `A` (e.g. `AtomicU32` for a
    /// `SharedArray<u32, _>`, in linear column-major order), for flags and counters
    /// that several processes read and write **at the same time** — which plain
    /// views must not do (see [`SharedArray`]'s sharing rules). Lock-free atomics on
    /// shared memory are address-free, so every process's atomic operations on an
    /// element are atomic with respect to each other, with the memory orderings of
    /// `std::sync::atomic` (a `Release` store in one process and an `Acquire` load
    /// of it in another order the writes before it, just as between threads).
    ///
    /// Takes an *atomic* borrow in this process: any number of atomic views at a
    /// time, but no [`view`](Self::view)/[`view_mut`](Self::view_mut) while one
    /// lives (a plain `&T` of an element being atomically written would be a data
    /// race within this process).
    ///
    /// # Errors
    /// [`SharedError::AtomicSize`] when `A` and `T` differ in size;
    /// [`SharedError::AtomicAlign`] when the elements are not aligned for `A`;
    /// [`SharedError::Borrowed`] when a plain view is alive here;
    /// [`SharedError::NotMapped`].
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use cohort_shared::SharedArray;
    /// let s = SharedArray::<u64, ndarray::Ix1>::new(4).unwrap();
    /// let a = s.try_atomic_view::<AtomicU64>().unwrap();
    /// a[0].fetch_add(5, Ordering::Relaxed);
    /// a[3].store(1, Ordering::Release);
    /// assert!(s.try_view().is_err()); // no plain view while atomics are out
    /// drop(a);
    /// assert_eq!(s.view().to_vec(), vec![5, 0, 0, 1]);
    /// // Sizes must match:
    /// assert!(s.try_atomic_view::<std::sync::atomic::AtomicU32>().is_err());
    /// ```
    pub fn try_atomic_view<A: SharedAtomic>(&self) -> Result<AtomicView<'_, A>, SharedError> {
        let (seg, elems) = self.atomics::<A>()?;
        borrow_atomically(seg)?;
        Ok(AtomicView { elems, seg })
    }

    /// [`try_atomic_view`](Self::try_atomic_view), panicking on error.
    ///
    /// # Panics
    /// On every error of [`try_atomic_view`](Self::try_atomic_view).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicI32, Ordering};
    /// let s = cohort_shared::SharedArray::<i32, ndarray::Ix2>::new((2, 2)).unwrap();
    /// s.atomic_view::<AtomicI32>()[1].fetch_sub(1, Ordering::AcqRel);
    /// assert_eq!(s.get([1, 0]), Some(-1));
    /// ```
    pub fn atomic_view<A: SharedAtomic>(&self) -> AtomicView<'_, A> {
        self.try_atomic_view().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The element at linear (column-major, 0-based) `index` as an atomic `A`: the
    /// one-element form of [`try_atomic_view`](Self::try_atomic_view), with its
    /// rules and its atomic borrow.
    ///
    /// # Errors
    /// [`SharedError::OutOfBounds`], and those of
    /// [`try_atomic_view`](Self::try_atomic_view).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use cohort_shared::{SharedArray, SharedError};
    /// let s = SharedArray::<u32, ndarray::Ix1>::new(2).unwrap();
    /// // A flag: set with Release by the writer, read with Acquire by the reader.
    /// s.atomic::<AtomicU32>(1).unwrap().store(1, Ordering::Release);
    /// assert_eq!(s.atomic::<AtomicU32>(1).unwrap().load(Ordering::Acquire), 1);
    /// assert!(matches!(
    ///     s.atomic::<AtomicU32>(2),
    ///     Err(SharedError::OutOfBounds { index: 2, len: 2 })
    /// ));
    /// ```
    pub fn atomic<A: SharedAtomic>(&self, index: usize) -> Result<AtomicRef<'_, A>, SharedError> {
        let (seg, elems) = self.atomics::<A>()?;
        let elem = elems.get(index).ok_or(SharedError::OutOfBounds {
            index,
            len: elems.len(),
        })?;
        borrow_atomically(seg)?;
        Ok(AtomicRef { elem, seg })
    }
}

/// The elements of a [`SharedArray`] as atomics (derefs to `[A]`); holds an atomic
/// borrow of the array in this process. Made by
/// [`SharedArray::try_atomic_view`].
///
/// ```
/// use std::sync::atomic::{AtomicU8, Ordering};
/// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(3).unwrap();
/// let a: cohort_shared::AtomicView<'_, AtomicU8> = s.atomic_view();
/// assert_eq!(a.len(), 3);
/// a.iter().for_each(|x| x.store(7, Ordering::Relaxed));
/// ```
pub struct AtomicView<'a, A> {
    elems: &'a [A],
    seg: &'a Segment,
}

impl<A> Deref for AtomicView<'_, A> {
    type Target = [A];
    fn deref(&self) -> &[A] {
        self.elems
    }
}

impl<A: fmt::Debug> fmt::Debug for AtomicView<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AtomicView").field(&self.elems).finish()
    }
}

impl<A> Drop for AtomicView<'_, A> {
    fn drop(&mut self) {
        release_atomically(self.seg);
    }
}

/// One element of a [`SharedArray`] as an atomic (derefs to `A`); holds an atomic
/// borrow of the array in this process. Made by [`SharedArray::atomic`].
///
/// ```
/// use std::sync::atomic::{AtomicI64, Ordering};
/// let s = cohort_shared::SharedArray::<i64, ndarray::Ix1>::new(1).unwrap();
/// let counter: cohort_shared::AtomicRef<'_, AtomicI64> = s.atomic(0).unwrap();
/// assert_eq!(counter.fetch_add(2, Ordering::Relaxed), 0);
/// ```
pub struct AtomicRef<'a, A> {
    elem: &'a A,
    seg: &'a Segment,
}

impl<A> Deref for AtomicRef<'_, A> {
    type Target = A;
    fn deref(&self) -> &A {
        self.elem
    }
}

impl<A: fmt::Debug> fmt::Debug for AtomicRef<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AtomicRef").field(self.elem).finish()
    }
}

impl<A> Drop for AtomicRef<'_, A> {
    fn drop(&mut self) {
        release_atomically(self.seg);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

    use ndarray::Ix1;

    use crate::{FileMode, SharedArray, SharedError};

    #[test]
    fn atomic_borrows_count_and_exclude_plain_views() {
        let s = SharedArray::<u32, Ix1>::builder(4)
            .pids(&[1])
            .build()
            .unwrap();
        let a = s.atomic_view::<AtomicU32>();
        let b = s.atomic::<AtomicU32>(2).unwrap();
        assert!(matches!(
            s.try_view(),
            Err(SharedError::Borrowed("atomically"))
        ));
        assert!(matches!(
            s.try_view_mut(),
            Err(SharedError::Borrowed("atomically"))
        ));
        b.store(3, Ordering::Relaxed);
        assert_eq!(a[2].load(Ordering::Relaxed), 3);
        drop(a);
        assert!(s.try_view().is_err(), "b still holds an atomic borrow");
        drop(b);
        assert_eq!(s.view()[2], 3);
        let v = s.view();
        assert!(matches!(
            s.try_atomic_view::<AtomicU32>(),
            Err(SharedError::Borrowed("immutably"))
        ));
        drop(v);
        let m = s.view_mut();
        assert!(matches!(
            s.atomic::<AtomicU32>(0),
            Err(SharedError::Borrowed("mutably"))
        ));
        drop(m);
    }

    #[test]
    fn threads_count_through_one_atomic_view() {
        let s = SharedArray::<u64, Ix1>::builder(1)
            .pids(&[1])
            .build()
            .unwrap();
        let a = s.atomic_view::<AtomicU64>();
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..1000 {
                        a[0].fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        drop(a);
        assert_eq!(s.get(0), Some(4000));
    }

    #[test]
    fn size_bounds_and_alignment_are_typed_errors() {
        let s = SharedArray::<u64, Ix1>::builder(2)
            .pids(&[1])
            .build()
            .unwrap();
        assert!(matches!(
            s.try_atomic_view::<AtomicU32>(),
            Err(SharedError::AtomicSize {
                elem_size: 8,
                atomic_size: 4,
                ..
            })
        ));
        assert!(matches!(
            s.atomic::<AtomicU64>(2),
            Err(SharedError::OutOfBounds { index: 2, len: 2 })
        ));
        // A file-backed array of 2-byte elements at an odd-but-valid offset for
        // `[u8; 2]` is not aligned for `AtomicU16`.
        let path = std::env::temp_dir().join(format!("cohort-atomic-{}.bin", std::process::id()));
        let f = SharedArray::<[u8; 2], Ix1>::builder(4)
            .pids(&[1])
            .file(&path, FileMode::Create)
            .offset(1)
            .build()
            .unwrap();
        let r = f.try_atomic_view::<AtomicU16>();
        assert!(
            matches!(r, Err(SharedError::AtomicAlign { align: 2, .. })),
            "{r:?}"
        );
        drop(r);
        drop(f);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn two_mappings_of_one_file_see_each_others_atomics() {
        // Two mappings of the same memory in one process, as two processes have.
        let path = std::env::temp_dir().join(format!("cohort-atomic2-{}.bin", std::process::id()));
        let a = SharedArray::<u32, Ix1>::builder(2)
            .pids(&[1])
            .file(&path, FileMode::Create)
            .build()
            .unwrap();
        let b = SharedArray::<u32, Ix1>::builder(2)
            .pids(&[1])
            .file(&path, FileMode::ReadWrite)
            .build()
            .unwrap();
        assert_ne!(
            a.raw_view().unwrap().as_ptr(),
            b.raw_view().unwrap().as_ptr()
        );
        let (fa, fb) = (a.atomic_view::<AtomicU32>(), b.atomic_view::<AtomicU32>());
        std::thread::scope(|sc| {
            sc.spawn(|| {
                fa[0].store(42, Ordering::Relaxed);
                fa[1].store(1, Ordering::Release);
            });
            while fb[1].load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
            }
            assert_eq!(fb[0].load(Ordering::Relaxed), 42);
        });
        drop((fa, fb));
        drop((a, b));
        std::fs::remove_file(&path).unwrap();
    }
}
