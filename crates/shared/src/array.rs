//! `SharedArray<T, D>`: the handle, its builder, views and serialization.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytemuck::Pod;
use cohort_cluster::{CallError, Cluster, Future, Pid, RemoteFn};
use ndarray::{
    Array, ArrayView, ArrayViewMut, Dimension, IntoDimension, NdIndex, RawArrayView,
    RawArrayViewMut, ShapeBuilder,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{AttachCause, SharedError};
use crate::segment::{self, AttachFailure, FileMode, SegId, Segment};

/// The part of `0..len` that participant `part` (1-based, as Julia's `indexpids`) of
/// `nparts` is assigned, split exactly as Julia's `SharedArrays.localindices`: each
/// gets `len / nparts` elements and the last also takes the remainder; with fewer
/// elements than participants, the first `len` get one each and the rest none. Part
/// 0 (a non-participant) gets nothing. Indices are 0-based.
///
/// ```
/// use cohort_shared::split_range;
/// // 12 elements over 3 processes (the seed's 3×4 array): 4 each.
/// assert_eq!(split_range(12, 3, 1), 0..4);
/// assert_eq!(split_range(12, 3, 3), 8..12);
/// // Uneven: the last takes the remainder.
/// assert_eq!(split_range(10, 3, 1), 0..3);
/// assert_eq!(split_range(10, 3, 3), 6..10);
/// // More processes than elements.
/// assert_eq!(split_range(2, 4, 2), 1..2);
/// assert_eq!(split_range(2, 4, 3), 0..0);
/// assert_eq!(split_range(5, 2, 0), 0..0);
/// ```
pub fn split_range(len: usize, nparts: usize, part: usize) -> Range<usize> {
    if part == 0 || nparts == 0 || part > nparts {
        return 0..0;
    }
    if len < nparts {
        return if part <= len { part - 1..part } else { 0..0 };
    }
    let each = len / nparts;
    let lo = (part - 1) * each;
    if part == nparts {
        lo..len
    } else {
        lo..lo + each
    }
}

/// An array of plain-old-data elements in OS shared memory, mapped by every
/// participating process on one host (Julia's `SharedArray{T,N}`). Writes by any
/// participant are seen by all; passing the handle to a remote function on a
/// participant copies nothing but a small descriptor.
///
/// **Memory order** is column-major, as in Julia: the first index varies fastest, and
/// the linear order of [`localindices`](Self::localindices) and
/// [`SharedView::as_linear`] is Julia's linear indexing (0-based). Views are ordinary
/// `ndarray` views with Fortran strides, so `v[[i, j]]` addresses element `(i, j)`.
///
/// **Sharing rules.** Within one process, views are borrow-checked at run time, like a
/// `RefCell` shared by every handle of the array: one [`view_mut`](Self::view_mut),
/// or any number of [`view`](Self::view)s, or any number of
/// [`atomic_view`](Self::atomic_view)s at a time (a conflict panics; the `try_` forms
/// return [`SharedError::Borrowed`]).
///
/// Across processes nothing is locked, and Rust's rules still hold: a view is a `&`
/// or `&mut` of the elements, so **one process writing elements that another reads
/// or writes at the same time through a view is a data race — undefined behaviour**,
/// not merely an unspecified value (the compiler may, for instance, hoist the read
/// of a polled element out of the loop, so a "wait until the other process sets
/// it" loop over a view may never end). What is fine:
///
/// - **Disjoint parts.** Each process writes only elements no other process
///   accesses meanwhile — its [`localindices`](Self::localindices), or a split of
///   your own — as in the seeds' `init` and stencil loops.
/// - **Synchronise, then read.** Read what another process wrote only after
///   something that orders its writes before your reads: the completion of the call
///   that wrote (fetching or waiting for its `Future`), a `RemoteChannel` message
///   sent after the writes, or a barrier built from those. Every such message goes
///   through the sender's and receiver's system calls, which order the memory
///   accesses around them as a lock does between threads.
/// - **Atomics for what is shared at the same time.** Flags, counters and other
///   elements that processes touch concurrently go through
///   [`atomic_view`](Self::atomic_view) or [`atomic`](Self::atomic), which give
///   `std::sync::atomic` integers; those are address-free, so they synchronise
///   processes exactly as they synchronise threads.
///
/// (A view spans the whole array even when a process touches only its part: what
/// must not overlap in time is the elements actually read and written, as in every
/// program sharing memory through `mmap`.)
///
/// **Lifetime.** A handle arriving on a participant finds that process's mapping (made
/// when the array was created). The creator's last handle releases the participants;
/// each unmaps when its own last handle goes. Keep the creator's handle alive while
/// remote calls that use the array run. See the crate docs for what happens when
/// processes die.
///
/// ```
/// use cohort_shared::SharedArray;
/// use ndarray::Ix2;
/// // With no workers, the driver is the one participant.
/// let s = SharedArray::<i64, Ix2>::new((3, 4)).unwrap();
/// s.set([2, 1], 7);
/// assert_eq!(s.get([2, 1]), Some(7));
/// assert_eq!(s.view()[[2, 1]], 7);
/// assert_eq!(s.procs(), &[1]);
/// assert_eq!(s.localindices(), 0..12);
/// ```
pub struct SharedArray<T: Pod, D: Dimension> {
    /// The cluster of the participating processes.
    cluster: Cluster,
    seg: Option<Arc<Segment>>,
    /// Live, finalized or inert (see [`finalize`](Self::finalize) and
    /// [`SharedError::Inert`]).
    state: State,
    id: SegId,
    dim: D,
    pids: Arc<[Pid]>,
    _t: PhantomData<T>,
}

/// Whether a handle still stands for its array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum State {
    /// It does (it maps the array if this process is a participant or the creator).
    Live,
    /// [`SharedArray::finalize`] gave its claim up.
    Finalized,
    /// Decoded from bytes made outside a cluster message.
    Inert,
}

/// A handle's `Clone` is another handle to the same memory (as passing it to a
/// call is); [`deep_copy`](SharedArray::deep_copy) is Julia's `copy`, an array of
/// its own.
impl<T: Pod, D: Dimension> Clone for SharedArray<T, D> {
    fn clone(&self) -> Self {
        SharedArray {
            cluster: self.cluster.clone(),
            seg: self.seg.clone(),
            state: self.state,
            id: self.id,
            dim: self.dim.clone(),
            pids: self.pids.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod, D: Dimension> fmt::Debug for SharedArray<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray")
            .field("elem", &std::any::type_name::<T>())
            .field("shape", &self.shape())
            .field("pids", &self.pids)
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

impl<T: Pod, D: Dimension + 'static> SharedArray<T, D> {
    /// An independent copy (Julia's `copy(S)`): a new shared array of the same shape
    /// over the same participants, in memory of its own, holding this one's elements
    /// as they are now. Writes to either are not seen in the other. (`Clone` is
    /// another handle to the *same* memory.) The copy is made in shared memory even
    /// when this array maps a file.
    ///
    /// # Errors
    /// As [`SharedArrayBuilder::build`]; [`SharedError::Borrowed`] if this array is
    /// mutably borrowed here; [`SharedError::NotMapped`], [`SharedError::Finalized`],
    /// [`SharedError::Inert`] where this handle cannot read the elements.
    ///
    /// ```
    /// use cohort_shared::SharedArray;
    /// let s = SharedArray::<i32, ndarray::Ix1>::new(3).unwrap();
    /// s.set(0, 1);
    /// let c = s.deep_copy().unwrap();
    /// c.set(0, 2);
    /// assert_eq!((s.get(0), c.get(0)), (Some(1), Some(2)));
    /// let same = s.clone();
    /// same.set(0, 3);
    /// assert_eq!(s.get(0), Some(3));
    /// ```
    pub fn deep_copy(&self) -> Result<Self, SharedError> {
        let from = self.try_view()?;
        // In the array's cluster, over its participants.
        let copy = self
            .cluster
            .install(|| Self::builder(self.dim()).pids(&self.pids).build())?;
        copy.try_view_mut()?
            .as_linear_mut()
            .copy_from_slice(from.as_linear());
        Ok(copy)
    }

    /// A zeroed shared array of `shape` over the default processes: the workers on
    /// this host (this process alone when there are none). Julia's
    /// `SharedArray{T}(dims)`.
    ///
    /// # Errors
    /// As [`SharedArrayBuilder::build`].
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<f64, ndarray::Ix1>::new(10).unwrap();
    /// assert_eq!(s.len(), 10);
    /// assert!(s.view().iter().all(|x| *x == 0.0));
    /// ```
    pub fn new(shape: impl IntoDimension<Dim = D>) -> Result<Self, SharedError> {
        Self::builder(shape).build()
    }

    /// A builder for the full form: participating processes, an `init` function, a
    /// backing file.
    ///
    /// ```
    /// use cohort_shared::SharedArray;
    /// use ndarray::Ix2;
    /// let s = SharedArray::<u32, Ix2>::builder((2, 2))
    ///     .pids(&[1])
    ///     .init(|s: SharedArray<u32, Ix2>| s.view_mut().fill(5))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(s.view().sum(), 20);
    /// ```
    pub fn builder(shape: impl IntoDimension<Dim = D>) -> SharedArrayBuilder<T, D> {
        SharedArrayBuilder {
            dim: shape.into_dimension(),
            pids: Vec::new(),
            file: None,
            init: NoInit,
            _t: PhantomData,
        }
    }

    /// A shared array mapping a file (Julia's `SharedArray{T}(filename, dims; mode)`):
    /// the data outlives the processes. Shorthand for
    /// `builder(shape).file(path, mode).build()`.
    ///
    /// # Errors
    /// As [`SharedArrayBuilder::build`], and [`SharedError::FileTooSmall`] for
    /// [`FileMode::ReadWrite`] on a file too short.
    ///
    /// ```
    /// use cohort_shared::{FileMode, SharedArray};
    /// let path = std::env::temp_dir().join(format!("cohort-doc-{}.bin", std::process::id()));
    /// {
    ///     let s = SharedArray::<u16, ndarray::Ix1>::from_file(&path, 4, FileMode::Create).unwrap();
    ///     s.view_mut().assign(&ndarray::arr1(&[1, 2, 3, 4]));
    /// }
    /// let again = SharedArray::<u16, ndarray::Ix1>::from_file(&path, 4, FileMode::ReadWrite).unwrap();
    /// assert_eq!(again.view().to_vec(), vec![1, 2, 3, 4]);
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn from_file(
        path: impl Into<PathBuf>,
        shape: impl IntoDimension<Dim = D>,
        mode: FileMode,
    ) -> Result<Self, SharedError> {
        Self::builder(shape).file(path, mode).build()
    }
}

impl<T: Pod, D: Dimension> SharedArray<T, D> {
    /// The shape.
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix2>::new((3, 4)).unwrap();
    /// assert_eq!(s.shape(), &[3, 4]);
    /// ```
    pub fn shape(&self) -> &[usize] {
        self.dim.slice()
    }

    /// The shape as an `ndarray` dimension.
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix2>::new((3, 4)).unwrap();
    /// assert_eq!(s.dim(), ndarray::Dim([3, 4]));
    /// ```
    pub fn dim(&self) -> D {
        self.dim.clone()
    }

    /// The number of elements.
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix2>::new((3, 4)).unwrap();
    /// assert_eq!(s.len(), 12);
    /// ```
    pub fn len(&self) -> usize {
        self.dim.size()
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(0).unwrap();
    /// assert!(s.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The participating processes (Julia's `procs(S)`).
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(4).unwrap();
    /// assert_eq!(s.procs(), &[cohort_cluster::myid()]);
    /// ```
    pub fn procs(&self) -> &[Pid] {
        &self.pids
    }

    /// This process's 1-based position in [`procs`](Self::procs), or 0 if it does not
    /// participate (Julia's `indexpids(S)`).
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(4).unwrap();
    /// assert_eq!(s.indexpids(), 1);
    /// ```
    pub fn indexpids(&self) -> usize {
        let me = self.cluster.myid();
        self.pids.iter().position(|p| *p == me).map_or(0, |i| i + 1)
    }

    /// The contiguous range of linear (column-major, 0-based) indices assigned to this
    /// process, split as Julia's `localindices(S)` ([`split_range`]); empty on a
    /// non-participant.
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix2>::new((3, 4)).unwrap();
    /// assert_eq!(s.localindices(), 0..12);
    /// ```
    pub fn localindices(&self) -> Range<usize> {
        split_range(self.len(), self.pids.len(), self.indexpids())
    }

    /// Whether this process maps the array (participants and the creator do).
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(4).unwrap();
    /// assert!(s.is_mapped());
    /// ```
    pub fn is_mapped(&self) -> bool {
        self.seg.is_some()
    }

    pub(crate) fn segment(&self) -> Result<&Segment, SharedError> {
        match self.state {
            State::Live => {}
            State::Finalized => return Err(SharedError::Finalized),
            State::Inert => return Err(SharedError::Inert),
        }
        self.seg.as_deref().ok_or_else(|| SharedError::NotMapped {
            pid: self.cluster.myid(),
            pids: self.pids.to_vec(),
        })
    }

    /// Gives up this handle's claim on the array now, before it is dropped (Julia's
    /// `finalize(S)`): its share of this process's mapping goes at once, and every
    /// later use of this handle fails ([`SharedError::Finalized`]; views of it
    /// panic, as for an unmapped array). Sent to another process, it arrives
    /// finalized.
    ///
    /// With no other handle to the array in this process, that is the process's
    /// claim: it unmaps the array, and on the creator the participants are released,
    /// as when the last handle is dropped. **Deliberately unlike Julia**, where `S`
    /// is one object, a clone of a `SharedArray` is a handle of its own (as a Rust
    /// `Arc` clone is), and keeps its claim until it is finalized or dropped too: a
    /// handle cannot take the memory away from a view that another handle lent out.
    /// It takes `&mut self` for the same reason — no view of this handle is alive
    /// while it lets go.
    ///
    /// ```
    /// use cohort_shared::{SharedArray, SharedError};
    /// let mut s = SharedArray::<u8, ndarray::Ix1>::new(4).unwrap();
    /// s.finalize();
    /// assert!(!s.is_mapped());
    /// assert!(matches!(s.try_view(), Err(SharedError::Finalized)));
    /// ```
    pub fn finalize(&mut self) {
        self.seg = None;
        self.state = State::Finalized;
    }

    /// The same memory seen with another shape of as many elements (Julia's
    /// `reshape(S, dims)` of a `SharedArray`, which shares `S`'s memory): the linear
    /// (column-major) order of the elements is kept, and a write through either
    /// handle is seen through the other and by every participant. The new handle
    /// has the same participants and its own claim on the mapping.
    ///
    /// # Errors
    /// [`SharedError::ShapeMismatch`] if `shape` has another number of elements;
    /// [`SharedError::Finalized`], [`SharedError::Inert`] for a dead handle.
    ///
    /// ```
    /// use cohort_shared::SharedArray;
    /// let s = SharedArray::<u32, ndarray::Ix1>::new(6).unwrap();
    /// s.view_mut().as_linear_mut().copy_from_slice(&[0, 1, 2, 3, 4, 5]);
    /// let m = s.reshape::<ndarray::Ix2>((2, 3)).unwrap();
    /// assert_eq!(m.get([1, 2]), Some(5)); // column-major: element 1 + 2 * 2
    /// m.set([0, 1], 20);
    /// assert_eq!(s.get(2), Some(20));
    /// assert!(s.reshape::<ndarray::Ix2>((4, 2)).is_err());
    /// ```
    pub fn reshape<E: Dimension>(
        &self,
        shape: impl IntoDimension<Dim = E>,
    ) -> Result<SharedArray<T, E>, SharedError> {
        match self.state {
            State::Live => {}
            State::Finalized => return Err(SharedError::Finalized),
            State::Inert => return Err(SharedError::Inert),
        }
        let dim = shape.into_dimension();
        if dim.size_checked() != Some(self.len()) {
            return Err(SharedError::ShapeMismatch {
                from: self.shape().to_vec(),
                to: dim.slice().to_vec(),
            });
        }
        Ok(SharedArray {
            cluster: self.cluster.clone(),
            seg: self.seg.clone(),
            state: self.state,
            id: self.id,
            dim,
            pids: self.pids.clone(),
            _t: PhantomData,
        })
    }

    pub(crate) fn ptr(&self) -> *mut T {
        self.seg
            .as_deref()
            .map_or(std::ptr::NonNull::dangling().as_ptr(), |s| s.ptr().cast())
    }

    /// A shared view of the whole array in this process's mapping (column-major
    /// strides), or an error if the array is mutably borrowed here or not mapped.
    ///
    /// # Errors
    /// [`SharedError::Borrowed`], [`SharedError::NotMapped`].
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(4).unwrap();
    /// let v = s.try_view().unwrap();
    /// assert!(s.try_view_mut().is_err());
    /// drop(v);
    /// assert!(s.try_view_mut().is_ok());
    /// ```
    pub fn try_view(&self) -> Result<SharedView<'_, T, D>, SharedError> {
        let seg = self.segment()?;
        let mut cur = seg.borrow.load(Ordering::Relaxed);
        loop {
            if cur < 0 {
                return Err(SharedError::Borrowed(borrowed_as(cur)));
            }
            match seg.borrow.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
        // SAFETY: the mapping holds `len()` elements of `T` (checked at creation),
        // suitably aligned (page-aligned start); it lives as long as `self.seg`, which
        // the view borrows; the borrow flag excludes mutable views in this process.
        let view = unsafe { ArrayView::from_shape_ptr(self.dim.clone().f(), self.ptr()) };
        Ok(SharedView { view, seg })
    }

    /// A shared view of the whole array (Julia's `sdata(S)` as a view). Slice it with
    /// `ndarray`'s `slice`.
    ///
    /// # Panics
    /// If a mutable view is alive in this process, or the array is not mapped here.
    ///
    /// ```
    /// use ndarray::s;
    /// let s = cohort_shared::SharedArray::<i32, ndarray::Ix2>::new((3, 4)).unwrap();
    /// s.set([1, 2], 9);
    /// let v = s.view();
    /// assert_eq!(v.slice(s![.., 2]).to_vec(), vec![0, 9, 0]);
    /// ```
    pub fn view(&self) -> SharedView<'_, T, D> {
        self.try_view().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Julia's `sdata(S)`: the local array backed by the shared memory — here, the
    /// same as [`view`](Self::view).
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(3).unwrap();
    /// assert_eq!(s.sdata().len(), 3);
    /// ```
    pub fn sdata(&self) -> SharedView<'_, T, D> {
        self.view()
    }

    /// A mutable view of the whole array, or an error if any view is alive in this
    /// process or the array is not mapped.
    ///
    /// # Errors
    /// [`SharedError::Borrowed`], [`SharedError::NotMapped`].
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(3).unwrap();
    /// let v = s.try_view_mut().unwrap();
    /// assert!(s.try_view().is_err());
    /// ```
    pub fn try_view_mut(&self) -> Result<SharedViewMut<'_, T, D>, SharedError> {
        let seg = self.segment()?;
        if let Err(c) = seg
            .borrow
            .compare_exchange(0, -1, Ordering::Acquire, Ordering::Relaxed)
        {
            return Err(SharedError::Borrowed(borrowed_as(c)));
        }
        // SAFETY: as in `try_view`; the flag (now -1) excludes every other view of
        // this array in this process while this one lives.
        let view = unsafe { ArrayViewMut::from_shape_ptr(self.dim.clone().f(), self.ptr()) };
        Ok(SharedViewMut { view, seg })
    }

    /// A mutable view of the whole array: writes land in the shared memory, seen by
    /// every participant.
    ///
    /// # Panics
    /// If another view of the array is alive in this process, or it is not mapped.
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<f32, ndarray::Ix2>::new((2, 3)).unwrap();
    /// s.view_mut().column_mut(1).fill(1.5);
    /// assert_eq!(s.view().sum(), 3.0);
    /// ```
    pub fn view_mut(&self) -> SharedViewMut<'_, T, D> {
        self.try_view_mut().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The element at `index`, or `None` out of bounds (or when not mapped here).
    ///
    /// # Panics
    /// If a mutable view is alive in this process.
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix2>::new((3, 4)).unwrap();
    /// assert_eq!(s.get([2, 3]), Some(0));
    /// assert_eq!(s.get([3, 0]), None);
    /// ```
    pub fn get<I: NdIndex<D>>(&self, index: I) -> Option<T> {
        let v = self.try_view().ok()?;
        v.get(index).copied()
    }

    /// Writes `value` at `index` (Julia's `S[i, j] = v`).
    ///
    /// # Panics
    /// Out of bounds; if a view is alive in this process; if not mapped here.
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix2>::new((3, 4)).unwrap();
    /// s.set((2, 1), 7);
    /// assert_eq!(s.view()[[2, 1]], 7);
    /// ```
    pub fn set<I: NdIndex<D>>(&self, index: I, value: T) {
        let mut v = self.view_mut();
        match v.get_mut(index) {
            Some(x) => *x = value,
            None => panic!(
                "index out of bounds for a SharedArray of shape {:?}",
                self.shape()
            ),
        }
    }

    /// A copy of the array in this process's memory (Fortran order).
    ///
    /// # Panics
    /// As [`view`](Self::view).
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(2).unwrap();
    /// let a: ndarray::Array1<u8> = s.to_owned();
    /// assert_eq!(a.len(), 2);
    /// ```
    pub fn to_owned(&self) -> Array<T, D> {
        self.view().to_owned()
    }

    /// A raw view, for code that manages aliasing itself (no borrow flag is taken).
    ///
    /// # Errors
    /// [`SharedError::NotMapped`].
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(2).unwrap();
    /// assert_eq!(s.raw_view().unwrap().len(), 2);
    /// ```
    pub fn raw_view(&self) -> Result<RawArrayView<T, D>, SharedError> {
        self.segment()?;
        // SAFETY: a raw view asserts nothing; it points at `len()` elements.
        Ok(unsafe { RawArrayView::from_shape_ptr(self.dim.clone().f(), self.ptr()) })
    }

    /// A raw mutable view, for code that manages aliasing itself.
    ///
    /// # Errors
    /// [`SharedError::NotMapped`].
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(2).unwrap();
    /// assert_eq!(s.raw_view_mut().unwrap().len(), 2);
    /// ```
    pub fn raw_view_mut(&self) -> Result<RawArrayViewMut<T, D>, SharedError> {
        self.segment()?;
        // SAFETY: as for `raw_view`.
        Ok(unsafe { RawArrayViewMut::from_shape_ptr(self.dim.clone().f(), self.ptr()) })
    }
}

/// How a segment whose borrow flag reads `flag` (≠ 0) is borrowed, for
/// [`SharedError::Borrowed`].
pub(crate) fn borrowed_as(flag: isize) -> &'static str {
    match flag {
        -1 => "mutably",
        f if f < -1 => "atomically",
        _ => "immutably",
    }
}

/// A shared view of a [`SharedArray`] (derefs to `ndarray::ArrayView`); holds a shared
/// borrow of the array in this process.
///
/// ```
/// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(3).unwrap();
/// let v: cohort_shared::SharedView<'_, u8, ndarray::Ix1> = s.view();
/// assert_eq!(v.len(), 3);
/// ```
pub struct SharedView<'a, T, D: Dimension> {
    view: ArrayView<'a, T, D>,
    seg: &'a Segment,
}

/// As [`SharedArray`]'s: the element type and the shape, not the elements.
impl<T, D: Dimension> fmt::Debug for SharedView<'_, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedView")
            .field("elem", &std::any::type_name::<T>())
            .field("shape", &self.view.shape())
            .finish()
    }
}

impl<'a, T, D: Dimension> SharedView<'a, T, D> {
    /// The elements in memory order: Julia's linear (column-major) order.
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix2>::new((2, 2)).unwrap();
    /// s.set([1, 0], 3);
    /// assert_eq!(s.view().as_linear(), &[0, 3, 0, 0]);
    /// ```
    pub fn as_linear(&self) -> &[T] {
        self.view
            .as_slice_memory_order()
            .expect("a SharedArray view is contiguous")
    }
}

impl<'a, T, D: Dimension> Deref for SharedView<'a, T, D> {
    type Target = ArrayView<'a, T, D>;
    fn deref(&self) -> &Self::Target {
        &self.view
    }
}

impl<T, D: Dimension> Drop for SharedView<'_, T, D> {
    fn drop(&mut self) {
        self.seg.borrow.fetch_sub(1, Ordering::Release);
    }
}

/// A mutable view of a [`SharedArray`] (derefs to `ndarray::ArrayViewMut`); holds the
/// array's exclusive borrow in this process.
///
/// ```
/// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::new(3).unwrap();
/// let mut v: cohort_shared::SharedViewMut<'_, u8, ndarray::Ix1> = s.view_mut();
/// v[0] = 1;
/// ```
pub struct SharedViewMut<'a, T, D: Dimension> {
    view: ArrayViewMut<'a, T, D>,
    seg: &'a Segment,
}

/// As [`SharedArray`]'s: the element type and the shape, not the elements.
impl<T, D: Dimension> fmt::Debug for SharedViewMut<'_, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedViewMut")
            .field("elem", &std::any::type_name::<T>())
            .field("shape", &self.view.shape())
            .finish()
    }
}

impl<'a, T, D: Dimension> SharedViewMut<'a, T, D> {
    /// The elements in memory order (Julia's linear order), mutable: with
    /// [`SharedArray::localindices`] this is Julia's `S[localindices(S)] = …`.
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix2>::new((3, 4)).unwrap();
    /// let r = s.localindices();
    /// s.view_mut().as_linear_mut()[r].fill(1);
    /// assert_eq!(s.view().sum(), 12);
    /// ```
    pub fn as_linear_mut(&mut self) -> &mut [T] {
        self.view
            .as_slice_memory_order_mut()
            .expect("a SharedArray view is contiguous")
    }
}

impl<'a, T, D: Dimension> Deref for SharedViewMut<'a, T, D> {
    type Target = ArrayViewMut<'a, T, D>;
    fn deref(&self) -> &Self::Target {
        &self.view
    }
}

impl<T, D: Dimension> DerefMut for SharedViewMut<'_, T, D> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.view
    }
}

impl<T, D: Dimension> Drop for SharedViewMut<'_, T, D> {
    fn drop(&mut self) {
        self.seg.borrow.store(0, Ordering::Release);
    }
}

/// No `init` function (the builder's default).
///
/// ```
/// let _ = cohort_shared::NoInit;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInit;

/// An `init` function given to [`SharedArrayBuilder::init`].
///
/// ```
/// let _ = cohort_shared::WithInit(|_s: cohort_shared::SharedArray<u8, ndarray::Ix1>| ());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct WithInit<F>(pub F);

/// What runs on every participant after the array is mapped: nothing ([`NoInit`]) or
/// a function ([`WithInit`]).
pub trait InitSpec<T: Pod, D: Dimension>: Send + 'static {
    /// Starts the init calls, one per participant.
    #[doc(hidden)]
    fn start(&self, s: &SharedArray<T, D>) -> Vec<(Pid, Future<()>)>;
}

impl<T: Pod, D: Dimension> InitSpec<T, D> for NoInit {
    fn start(&self, _: &SharedArray<T, D>) -> Vec<(Pid, Future<()>)> {
        Vec::new()
    }
}

impl<T, D, F> InitSpec<T, D> for WithInit<F>
where
    T: Pod + Send + Sync,
    D: Dimension + 'static,
    F: RemoteFn<(SharedArray<T, D>,), Output = ()> + Clone,
{
    fn start(&self, s: &SharedArray<T, D>) -> Vec<(Pid, Future<()>)> {
        s.procs()
            .iter()
            .map(|&p| (p, s.cluster.remotecall(self.0.clone(), p, (s.clone(),))))
            .collect()
    }
}

/// Options for making a [`SharedArray`]: Julia's `SharedArray{T,N}(dims; init, pids)`
/// and the file-backed form.
///
/// ```
/// use cohort_shared::SharedArray;
/// let s = SharedArray::<u64, ndarray::Ix1>::builder(8).pids(&[]).build().unwrap();
/// assert_eq!(s.len(), 8);
/// ```
pub struct SharedArrayBuilder<T, D, I = NoInit> {
    dim: D,
    pids: Vec<Pid>,
    file: Option<(PathBuf, FileMode, u64)>,
    init: I,
    _t: PhantomData<T>,
}

/// The options; of the initializer only its type (it may be a closure).
impl<T, D: fmt::Debug, I> fmt::Debug for SharedArrayBuilder<T, D, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArrayBuilder")
            .field("elem", &std::any::type_name::<T>())
            .field("dim", &self.dim)
            .field("pids", &self.pids)
            .field("file", &self.file)
            .field("init", &std::any::type_name::<I>())
            .finish()
    }
}

impl<T: Pod, D: Dimension + 'static, I: InitSpec<T, D>> SharedArrayBuilder<T, D, I> {
    /// The participating processes; empty (the default) means the workers on this
    /// host, or this process alone when there are none. Every one must be on this
    /// host.
    ///
    /// ```
    /// let b = cohort_shared::SharedArray::<u8, ndarray::Ix1>::builder(4).pids(&[1]);
    /// assert_eq!(b.build().unwrap().procs(), &[1]);
    /// ```
    pub fn pids(mut self, pids: &[Pid]) -> Self {
        self.pids = pids.to_vec();
        self
    }

    /// Backs the array with a file instead of anonymous shared memory; the data
    /// outlives the processes. Elements start at byte 0 (see
    /// [`offset`](Self::offset)).
    ///
    /// ```no_run
    /// use cohort_shared::{FileMode, SharedArray};
    /// let s = SharedArray::<f64, ndarray::Ix2>::builder((100, 100))
    ///     .file("/tmp/grid.bin", FileMode::OpenOrCreate)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn file(mut self, path: impl Into<PathBuf>, mode: FileMode) -> Self {
        let offset = self.file.as_ref().map_or(0, |f| f.2);
        self.file = Some((path.into(), mode, offset));
        self
    }

    /// The byte offset of the first element in the backing file (a multiple of the
    /// page size is fastest; any multiple of the element's alignment works). Only
    /// meaningful with [`file`](Self::file).
    ///
    /// ```no_run
    /// use cohort_shared::{FileMode, SharedArray};
    /// let s = SharedArray::<u8, ndarray::Ix1>::builder(16)
    ///     .file("/tmp/data.bin", FileMode::ReadWrite)
    ///     .offset(4096)
    ///     .build();
    /// ```
    pub fn offset(mut self, offset: u64) -> Self {
        if let Some(f) = &mut self.file {
            f.2 = offset;
        }
        self
    }

    /// A function run on every participant once the array is mapped there, in
    /// parallel (Julia's `init`); it gets a handle and typically fills its
    /// [`localindices`](SharedArray::localindices). A `#[cohort::remote]` function,
    /// a closure without captures, or a `cohort::closure!`.
    ///
    /// ```
    /// use cohort_shared::SharedArray;
    /// use ndarray::Ix1;
    /// let s = SharedArray::<u32, Ix1>::builder(4)
    ///     .init(|s: SharedArray<u32, Ix1>| {
    ///         let r = s.localindices();
    ///         s.view_mut().as_linear_mut()[r].fill(cohort_cluster::myid());
    ///     })
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(s.view().to_vec(), vec![1, 1, 1, 1]);
    /// ```
    pub fn init<F>(self, f: F) -> SharedArrayBuilder<T, D, WithInit<F>>
    where
        F: RemoteFn<(SharedArray<T, D>,), Output = ()> + Clone,
        T: Send + Sync,
    {
        SharedArrayBuilder {
            dim: self.dim,
            pids: self.pids,
            file: self.file,
            init: WithInit(f),
            _t: PhantomData,
        }
    }

    fn prepare(&self, cluster: &Cluster) -> Result<(Vec<Pid>, usize), SharedError> {
        let me = cluster.myid();
        let mut local = cluster.procs_of(me);
        // On a worker, cohort-cluster does not yet know every peer's host (procs_of
        // may be empty there); this process is on its own host in any case.
        if !local.contains(&me) {
            local.push(me);
        }
        let pids = if self.pids.is_empty() {
            let mut p = local;
            if p.len() > 1 {
                p.retain(|p| *p != 1);
            }
            p
        } else {
            if let Some(bad) = self.pids.iter().find(|p| !local.contains(p)) {
                return Err(SharedError::NotOnThisHost { pid: *bad });
            }
            let mut seen = Vec::with_capacity(self.pids.len());
            for p in &self.pids {
                if !seen.contains(p) {
                    seen.push(*p);
                }
            }
            seen
        };
        let bytes = self
            .dim
            .size_checked()
            .and_then(|n| n.checked_mul(std::mem::size_of::<T>()))
            .filter(|b| *b <= isize::MAX as usize)
            .ok_or_else(|| SharedError::Overflow {
                shape: self.dim.slice().to_vec(),
                elem_size: std::mem::size_of::<T>(),
            })?;
        Ok((pids, bytes))
    }

    fn start(&self) -> Result<Pending<T, D>, SharedError> {
        // The array belongs to the cluster current when it is made.
        let cluster = Cluster::current();
        let (pids, bytes) = self.prepare(&cluster)?;
        let created = segment::create(
            &cluster,
            bytes,
            pids.clone(),
            self.file.as_ref().map(|(p, m, o)| (p.as_path(), *m, *o)),
        )?;
        let me = cluster.myid();
        let attaching = pids
            .iter()
            .filter(|p| **p != me)
            .map(|&p| {
                (
                    p,
                    cluster.remotecall(segment::attach, p, (created.desc.clone(),)),
                )
            })
            .collect();
        let array = SharedArray {
            cluster,
            seg: Some(created.seg.clone()),
            state: State::Live,
            id: created.desc.id,
            dim: self.dim.clone(),
            pids: pids.into(),
            _t: PhantomData,
        };
        Ok(Pending {
            created,
            array,
            attaching,
        })
    }

    /// Makes the array: reserves and maps the segment here, has every participant
    /// map it, removes its name, then runs `init` on the participants and waits for
    /// them.
    ///
    /// # Errors
    /// [`SharedError::NotOnThisHost`] for a process on another host (or no such
    /// process); [`SharedError::TooLarge`] when the shared-memory file system (or the
    /// file's) cannot hold it; [`SharedError::Overflow`]; [`SharedError::Attach`];
    /// [`SharedError::Init`] listing every failed `init`; [`SharedError::Io`].
    ///
    /// ```
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::builder(3).build().unwrap();
    /// assert_eq!(s.len(), 3);
    /// ```
    pub fn build(self) -> Result<SharedArray<T, D>, SharedError> {
        let mut p = self.start()?;
        let mut failed = None;
        for (pid, f) in std::mem::take(&mut p.attaching) {
            let r = match f.fetch_blocking() {
                Ok(r) => r.map_err(AttachFailure::into_cause),
                Err(e) => Err(AttachCause::Call(e)),
            };
            if let (Err(cause), None) = (r, &failed) {
                failed = Some(SharedError::Attach { pid, cause });
            }
        }
        p.created.unlink();
        if let Some(e) = failed {
            return Err(e);
        }
        let failures: Vec<(Pid, CallError)> = self
            .init
            .start(&p.array)
            .into_iter()
            .filter_map(|(pid, f)| f.fetch_blocking().err().map(|e| (pid, e)))
            .collect();
        if !failures.is_empty() {
            return Err(SharedError::Init { failures });
        }
        Ok(p.array)
    }

    /// Async form of [`build`](Self::build).
    ///
    /// # Errors
    /// As [`build`](Self::build).
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropped before it completes, no array is returned and what it
    /// made is undone the way a dropped array is — the segment's name is removed and the
    /// participants are told to let go of their mappings, so the memory is freed — but the
    /// mapping and `init` calls it already sent still run on the participants.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let s = cohort_shared::SharedArray::<u8, ndarray::Ix1>::builder(3)
    ///     .build_async()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(s.len(), 3);
    /// # });
    /// ```
    pub async fn build_async(self) -> Result<SharedArray<T, D>, SharedError> {
        let mut p = self.start()?;
        let mut failed = None;
        for (pid, f) in std::mem::take(&mut p.attaching) {
            let r = match f.fetch().await {
                Ok(r) => r.map_err(AttachFailure::into_cause),
                Err(e) => Err(AttachCause::Call(e)),
            };
            if let (Err(cause), None) = (r, &failed) {
                failed = Some(SharedError::Attach { pid, cause });
            }
        }
        p.created.unlink();
        if let Some(e) = failed {
            return Err(e);
        }
        let mut failures = Vec::new();
        for (pid, f) in self.init.start(&p.array) {
            if let Err(e) = f.fetch().await {
                failures.push((pid, e));
            }
        }
        if !failures.is_empty() {
            return Err(SharedError::Init { failures });
        }
        Ok(p.array)
    }
}

struct Pending<T: Pod, D: Dimension> {
    created: segment::Created,
    array: SharedArray<T, D>,
    attaching: Vec<(Pid, Future<Result<(), AttachFailure>>)>,
}

/// What travels: the segment's identity, the shape and the participants, and
/// whether the handle is live.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: SegId,
    shape: Vec<usize>,
    pids: Vec<Pid>,
    state: State,
}

impl<T: Pod, D: Dimension> Serialize for SharedArray<T, D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Passed to a call, this may be the last handle here (the runtime drops a
        // call's arguments once encoded): the mapping — on the creator, the one whose
        // drop releases the participants' — stays until the call is answered, so the
        // callee still finds the segment mapped.
        if let Some(seg) = &self.seg {
            cohort_cluster::codec::keep_until_answered(seg.clone());
        }
        // Outside a cluster message (into a file, by hand), the handle goes inert: a
        // later process must not take the segment's identity for a live array.
        let state = if cohort_cluster::codec::in_message() {
            self.state
        } else {
            State::Inert
        };
        Wire {
            id: self.id,
            shape: self.shape().to_vec(),
            pids: self.pids.to_vec(),
            state,
        }
        .serialize(s)
    }
}

impl<'de, T: Pod, D: Dimension> Deserialize<'de> for SharedArray<T, D> {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        let w = Wire::deserialize(d)?;
        if D::NDIM.is_some_and(|n| n != w.shape.len()) {
            return Err(serde::de::Error::custom(format!(
                "a SharedArray of {} dimensions cannot be received as {}",
                w.shape.len(),
                std::any::type_name::<D>()
            )));
        }
        let mut dim = D::zeros(w.shape.len());
        dim.slice_mut().copy_from_slice(&w.shape);
        Ok(SharedArray {
            // The cluster that receives the message (the current one while decoding).
            cluster: Cluster::current(),
            seg: (w.state == State::Live)
                .then(|| segment::lookup(&w.id))
                .flatten(),
            state: w.state,
            id: w.id,
            dim,
            pids: w.pids.into(),
            _t: PhantomData,
        })
    }
}

// Keeps the `DeserializeOwned` bound visible in docs for users writing generic code.
#[allow(dead_code)]
fn _assert_traits<T: Pod, D: Dimension + 'static>()
where
    SharedArray<T, D>: Serialize + DeserializeOwned + Send + Sync + Clone,
{
}
