//! [`DArray<T, D>`]: the handle, its layout queries, its local part and its fetches.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, Range};
use std::sync::Arc;

use cohort_cluster::{CallError, Cluster, Pid};
use ndarray::{Array, ArrayViewMut, Dimension, IxDyn, Slice};
use parking_lot::lock_api::{ArcRwLockReadGuard, ArcRwLockWriteGuard};
use parking_lot::RawRwLock;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::element::Element;
use crate::error::{ChunkFailure, DArrayError};
use crate::layout::Layout;
use crate::store::{self, DArrayId};
use crate::transfer::{copy_region, squeeze, Landing};

/// An array of `T` split into chunks held by several processes (Julia's
/// `DArray{T,N}`): chunk `k` of [`indices`](Self::indices) lives on
/// [`procs()[k]`](Self::procs).
///
/// **Handles.** The handle made by a constructor is the *creator's*; it and its
/// clones keep the chunks alive, and the last of them to go releases every chunk
/// (Rust's `Drop`, at once — not at a garbage collection as in Julia). A handle sent
/// to another process (an argument of a remote call) is a *view*: it finds the chunks
/// while the creator keeps them, but does not keep them alive (Julia's "DArrays are
/// not tracked by the reference GC"). Once they are released — by the creator's
/// drop, [`close`](Self::close), [`d_closeall`](crate::d_closeall), or the creator's
/// death — every operation through any handle fails with
/// [`ChunkFailure::Released`], never with stale data.
///
/// **Operations** run where the data lives: each whole-array operation is one call
/// per owner, all at once, and moves only results or the requested elements, in
/// bulk for numeric types.
///
/// ```
/// use cohort_darray::DArray;
/// use ndarray::{array, Ix2};
/// let d = DArray::<f64, Ix2>::builder((3, 4))
///     .init_blocking(|idx: Vec<std::ops::Range<usize>>| {
///         ndarray::Array2::from_elem((idx[0].len(), idx[1].len()), 1.5)
///     })
///     .unwrap();
/// assert_eq!(d.shape(), &[3, 4]);
/// assert_eq!(d.sum_blocking().unwrap(), 18.0);
/// assert_eq!(d.get_blocking([1, 2]).unwrap(), 1.5);
/// ```
pub struct DArray<T, D> {
    pub(crate) handle: Arc<Handle>,
    pub(crate) layout: Arc<Layout>,
    _t: PhantomData<fn() -> (T, D)>,
}

/// The identity and cluster of an array; the creator's (`owning`) releases on drop.
pub(crate) struct Handle {
    pub(crate) id: DArrayId,
    pub(crate) cluster: Cluster,
    owning: bool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.owning {
            store::release_created(self.id);
        }
    }
}

impl<T, D> Clone for DArray<T, D> {
    fn clone(&self) -> Self {
        DArray {
            handle: self.handle.clone(),
            layout: self.layout.clone(),
            _t: PhantomData,
        }
    }
}

impl<T, D> fmt::Debug for DArray<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DArray")
            .field("id", &self.handle.id)
            .field("elem", &std::any::type_name::<T>())
            .field("dims", &self.layout.dims)
            .field("dist", &self.layout.dist)
            .field("procs", &self.layout.pids)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    id: DArrayId,
    layout: Layout,
}

impl<T, D> Serialize for DArray<T, D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            id: self.handle.id,
            layout: (*self.layout).clone(),
        }
        .serialize(s)
    }
}

impl<'de, T, D: Dimension> Deserialize<'de> for DArray<T, D> {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        let w = Wire::deserialize(d)?;
        if D::NDIM.is_some_and(|n| n != w.layout.dims.len()) {
            return Err(serde::de::Error::custom(format!(
                "a DArray of {} dimensions cannot be received as {}",
                w.layout.dims.len(),
                std::any::type_name::<D>()
            )));
        }
        Ok(DArray {
            handle: Arc::new(Handle {
                id: w.id,
                // The cluster receiving the message (current while decoding).
                cluster: Cluster::current(),
                owning: false,
            }),
            layout: Arc::new(w.layout),
            _t: PhantomData,
        })
    }
}

pub(crate) fn dim_of<D: Dimension>(dims: &[usize]) -> D {
    let mut d = D::zeros(dims.len());
    d.slice_mut().copy_from_slice(dims);
    d
}

pub(crate) fn ranges_shape(r: &[Range<usize>]) -> Vec<usize> {
    r.iter().map(|r| r.end.saturating_sub(r.start)).collect()
}

/// Runs a set of per-owner calls at once and collects their results in order; the
/// first failure (of a call or on an owner) is the error.
pub(crate) async fn all_of<R, Fut>(calls: Vec<(Pid, Fut)>) -> Result<Vec<R>, DArrayError>
where
    Fut: std::future::Future<Output = Result<Result<R, ChunkFailure>, CallError>>,
{
    let (pids, futs): (Vec<Pid>, Vec<Fut>) = calls.into_iter().unzip();
    let results = futures::future::join_all(futs).await;
    let mut out = Vec::with_capacity(results.len());
    for (pid, r) in pids.into_iter().zip(results) {
        match r {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(failure)) => return Err(DArrayError::Chunk { pid, failure }),
            Err(e) => return Err(DArrayError::call(pid, e)),
        }
    }
    Ok(out)
}

impl<T, D: Dimension + 'static> DArray<T, D> {
    /// A handle for a layout whose chunks are about to be made (registered first, so
    /// a failure half-way releases what was made).
    pub(crate) fn reserve(cluster: &Cluster, layout: Layout) -> DArray<T, D> {
        let id = DArrayId::next(cluster);
        store::register_created(id, cluster, &layout.pids);
        DArray {
            handle: Arc::new(Handle {
                id,
                cluster: cluster.clone(),
                owning: true,
            }),
            layout: Arc::new(layout),
            _t: PhantomData,
        }
    }

    /// A new array laid out like this one (its chunks still to be made).
    pub(crate) fn reserve_like<U>(&self) -> DArray<U, D> {
        DArray::reserve(&self.handle.cluster, (*self.layout).clone())
    }

    /// The array's identity.
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<u8, _>(3).unwrap();
    /// assert_eq!(d.id(), d.clone().id());
    /// ```
    pub fn id(&self) -> DArrayId {
        self.handle.id
    }

    /// The cluster the array belongs to.
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<u8, _>(3).unwrap();
    /// assert_eq!(d.cluster(), cohort_cluster::Cluster::current());
    /// ```
    pub fn cluster(&self) -> Cluster {
        self.handle.cluster.clone()
    }

    /// The shape (Julia's `size(d)`).
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<f64, _>((2, 5)).unwrap();
    /// assert_eq!(d.shape(), &[2, 5]);
    /// ```
    pub fn shape(&self) -> &[usize] {
        &self.layout.dims
    }

    /// The shape as an `ndarray` dimension.
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<f64, _>((2, 5)).unwrap();
    /// assert_eq!(d.dim(), ndarray::Dim([2, 5]));
    /// ```
    pub fn dim(&self) -> D {
        dim_of(&self.layout.dims)
    }

    /// The number of elements (Julia's `length(d)`).
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<f64, _>((2, 5)).unwrap();
    /// assert_eq!(d.len(), 10);
    /// ```
    pub fn len(&self) -> usize {
        self.layout.dims.iter().product()
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<f64, _>(0).unwrap();
    /// assert!(d.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The processes holding the chunks, in chunk order (Julia's `procs(d)`, whose
    /// shape is [`dist`](Self::dist), read column-major: the first dimension's chunk
    /// index varies fastest).
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<f64, _>(4).unwrap();
    /// assert_eq!(d.procs(), &[cohort_cluster::myid()]);
    /// ```
    pub fn procs(&self) -> &[Pid] {
        &self.layout.pids
    }

    /// How many chunks each dimension is cut into (Julia's `dist`, the shape of
    /// `procs(d)`).
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<f64, _>((4, 4)).unwrap();
    /// assert_eq!(d.dist(), &[1, 1]);
    /// ```
    pub fn dist(&self) -> &[usize] {
        &self.layout.dist
    }

    /// The boundaries of the chunks along each dimension (Julia's `d.cuts`,
    /// 0-based): chunk `c` of dimension `i` holds `cuts()[i][c]..cuts()[i][c + 1]`.
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<f64, _>(10).unwrap();
    /// assert_eq!(d.cuts(), &[vec![0, 10]]);
    /// ```
    pub fn cuts(&self) -> &[Vec<usize>] {
        &self.layout.cuts
    }

    /// The index ranges of every chunk, in chunk order (Julia's `d.indices`,
    /// 0-based and half-open).
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<f64, _>((2, 3)).unwrap();
    /// assert_eq!(d.indices(), vec![vec![0..2, 0..3]]);
    /// ```
    pub fn indices(&self) -> Vec<Vec<Range<usize>>> {
        (0..self.layout.nchunks())
            .map(|k| self.layout.ranges(k))
            .collect()
    }

    /// The index ranges of the chunk this process holds (Julia's
    /// `localindices(d)`); empty ranges on a process that holds none.
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<f64, _>((2, 3)).unwrap();
    /// assert_eq!(d.localindices(), vec![0..2, 0..3]);
    /// ```
    pub fn localindices(&self) -> Vec<Range<usize>> {
        match self.layout.chunk_of(self.handle.cluster.myid()) {
            Some(k) => self.layout.ranges(k),
            None => vec![0..0; self.layout.dims.len()],
        }
    }

    /// Whether this array is laid out exactly like `other` (same shape, cuts and
    /// processes): element-wise operations between them need it.
    ///
    /// ```
    /// let a = cohort_darray::blocking::dzeros::<f64, _>(6).unwrap();
    /// let b = cohort_darray::blocking::dones::<f64, _>(6).unwrap();
    /// assert!(a.same_layout(&b));
    /// ```
    pub fn same_layout<U>(&self, other: &DArray<U, D>) -> bool {
        self.layout.same_as(&other.layout)
    }

    /// Releases the chunks on every owner now (Julia's `close(d)`), whatever handles
    /// remain; `false` if they were released already or this process is not the
    /// creator (a view cannot release). Every later operation fails with
    /// [`ChunkFailure::Released`].
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<f64, _>(4).unwrap();
    /// let view = d.clone();
    /// assert!(d.close());
    /// assert!(view.sum_blocking().is_err());
    /// ```
    pub fn close(&self) -> bool {
        self.handle.owning && store::release_created(self.handle.id)
    }

    /// Whether the chunks are still held (always `true` on a view: only the creator
    /// knows; a view learns of a release from the error of its next operation).
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<f64, _>(4).unwrap();
    /// assert!(d.is_live());
    /// d.close();
    /// assert!(!d.is_live());
    /// ```
    pub fn is_live(&self) -> bool {
        !self.handle.owning || store::is_live(self.handle.id)
    }
}

impl<T: Element, D: Dimension + 'static> DArray<T, D> {
    /// The local chunk, for reading (Julia's `localpart(d)` / `d[:L]`): it derefs to
    /// the chunk's `ndarray::Array` (row-major, indexed from 0 within the chunk; add
    /// [`localindices`](Self::localindices) for global indices). Requests of other
    /// processes for this chunk wait while a [`localpart_mut`](Self::localpart_mut)
    /// is alive; do not hold one across a call that needs the chunk in this process.
    ///
    /// # Errors
    /// [`DArrayError::NotAnOwner`] on a process that holds no chunk;
    /// [`DArrayError::Chunk`] with [`ChunkFailure::Released`] once released.
    ///
    /// ```
    /// let d = cohort_darray::blocking::dfill(2u32, (2, 2)).unwrap();
    /// assert_eq!(d.localpart().unwrap().sum(), 8);
    /// ```
    pub fn localpart(&self) -> Result<LocalPart<T, D>, DArrayError> {
        Ok(LocalPart {
            guard: self.local_chunk()?.read_arc(),
        })
    }

    /// The local chunk, for writing (how SPMD code and `init`-less algorithms set
    /// their part): [`view_mut`](LocalPartMut::view_mut) gives an
    /// `ndarray::ArrayViewMut`.
    ///
    /// # Errors
    /// As [`localpart`](Self::localpart).
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<i64, _>(4).unwrap();
    /// d.localpart_mut().unwrap().view_mut().fill(3);
    /// assert_eq!(d.sum_blocking().unwrap(), 12);
    /// ```
    pub fn localpart_mut(&self) -> Result<LocalPartMut<T, D>, DArrayError> {
        Ok(LocalPartMut {
            guard: self.local_chunk()?.write_arc(),
        })
    }

    /// Replaces the local chunk (Julia's `d[:L] = v`); `v` must have the chunk's
    /// shape.
    ///
    /// # Errors
    /// As [`localpart`](Self::localpart), and [`DArrayError::ShapeMismatch`].
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<i64, _>(3).unwrap();
    /// d.set_localpart(ndarray::arr1(&[1, 2, 3])).unwrap();
    /// assert_eq!(d.gather_blocking().unwrap().to_vec(), vec![1, 2, 3]);
    /// ```
    pub fn set_localpart(&self, v: Array<T, D>) -> Result<(), DArrayError> {
        let chunk = self.local_chunk()?;
        let mut g = chunk.write();
        if g.shape() != v.shape() {
            return Err(DArrayError::ShapeMismatch {
                expected: g.shape().to_vec(),
                got: v.shape().to_vec(),
            });
        }
        *g = v;
        Ok(())
    }

    fn local_chunk(&self) -> Result<store::Chunk<T, D>, DArrayError> {
        let me = self.handle.cluster.myid();
        if self.layout.chunk_of(me).is_none() {
            return Err(DArrayError::NotAnOwner {
                pid: me,
                id: self.handle.id,
            });
        }
        store::get(self.handle.id).map_err(|failure| DArrayError::Chunk { pid: me, failure })
    }

    /// One element (Julia's `d[i, j]`): a call to its owner, or a read here.
    /// **Slow in a loop** — one round trip per element; fetch a range
    /// ([`fetch`](Self::fetch)) or work on the owners ([`map`](Self::map),
    /// [`mapreduce`](Self::mapreduce)) instead.
    ///
    /// # Errors
    /// [`DArrayError::OutOfBounds`]; as [`fetch`](Self::fetch).
    ///
    /// # Cancel safety
    /// Dropping it abandons the wait.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::dfill(7i32, (2, 2)).await.unwrap();
    /// assert_eq!(d.get([1, 1]).await.unwrap(), 7);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let d = cohort_darray::blocking::dfill(7i32, 3).unwrap();
 assert_eq!(d.get_blocking([2]).unwrap(), 7);
 assert!(d.get_blocking([3]).is_err());")]
    pub async fn get<I: AsRef<[usize]>>(&self, index: I) -> Result<T, DArrayError> {
        let index = index.as_ref();
        let ok = index.len() == self.layout.dims.len()
            && index.iter().zip(&self.layout.dims).all(|(i, n)| i < n);
        if !ok {
            return Err(DArrayError::OutOfBounds {
                index: index.to_vec(),
                shape: self.layout.dims.clone(),
            });
        }
        let ranges: Vec<Range<usize>> = index.iter().map(|&i| i..i + 1).collect();
        let mut out = Array::<T, IxDyn>::default(IxDyn(&vec![1; index.len()]));
        self.fetch_dyn_into(&ranges, out.view_mut()).await?;
        Ok(out.iter().next().expect("one element").clone())
    }

    /// The elements in `ranges` (one per dimension, 0-based, half-open) as a local
    /// array (Julia's `d[I, J]` copied into an `Array`): one request per chunk the
    /// range touches, all at once, each answered with that chunk's part in bulk.
    ///
    /// # Errors
    /// [`DArrayError::RangeOutOfBounds`]; [`DArrayError::Call`] if an owner cannot be
    /// reached; [`DArrayError::Chunk`] (e.g. [`ChunkFailure::Released`]).
    ///
    /// # Cancel safety
    /// Dropping it abandons the wait; nothing changes on the owners.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::DArray::<usize, ndarray::Ix2>::from_fn((4, 4), |(i, j): (usize, usize)| 10 * i + j).await.unwrap();
    /// let part = d.fetch(&[1..3, 2..4]).await.unwrap();
    /// assert_eq!(part, ndarray::array![[12, 13], [22, 23]]);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::distribute(&ndarray::arr1(&[1, 2, 3, 4])).unwrap();
 assert_eq!(d.fetch_blocking(&[1..3]).unwrap().to_vec(), vec![2, 3]);"
    )]
    pub async fn fetch(&self, ranges: &[Range<usize>]) -> Result<Array<T, D>, DArrayError> {
        self.layout.check_ranges(ranges)?;
        let shape: D = dim_of(&ranges_shape(ranges));
        let mut out = Array::<T, D>::default(shape);
        self.fetch_dyn_into(ranges, out.view_mut().into_dyn())
            .await?;
        Ok(out)
    }

    /// Fetches the elements in `ranges` **into the caller's buffer** `out` (whose
    /// shape must be the ranges' lengths; any strides, e.g. a slice of a larger
    /// array): each touched chunk's reply is decoded straight into its region of
    /// `out`, with no array made per chunk; a chunk held here is copied directly.
    ///
    /// # Errors
    /// [`DArrayError::ShapeMismatch`] if `out` has another shape; as
    /// [`fetch`](Self::fetch). On an error, `out` may be partly written.
    ///
    /// # Cancel safety
    /// Dropping it abandons the wait; `out` may be partly written.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// use ndarray::s;
    /// let d = cohort_darray::distribute(&ndarray::arr1(&[1.0, 2.0, 3.0])).await.unwrap();
    /// let mut buf = ndarray::Array2::<f64>::zeros((2, 5));
    /// d.fetch_into(&[0..3], buf.slice_mut(s![1, 1..4])).await.unwrap();
    /// assert_eq!(buf.row(1).to_vec(), vec![0.0, 1.0, 2.0, 3.0, 0.0]);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::distribute(&ndarray::arr1(&[5u8, 6, 7])).unwrap();
 let mut buf = [0u8; 2];
 d.fetch_into_blocking(&[1..3], ndarray::ArrayViewMut1::from(&mut buf[..])).unwrap();
 assert_eq!(buf, [6, 7]);"
    )]
    pub async fn fetch_into<E: Dimension>(
        &self,
        ranges: &[Range<usize>],
        out: ArrayViewMut<'_, T, E>,
    ) -> Result<(), DArrayError> {
        let v = self.region_view(ranges, out)?;
        self.fetch_dyn_into(ranges, v).await
    }

    /// Fetches several ranges at once, each into its own buffer (the border regions
    /// of a halo exchange): the pieces that one owner holds, of all the ranges, go to
    /// it in **one** request and come back in one reply, each piece decoded straight
    /// into its region of its buffer; pieces held here are copied directly, once the
    /// replies are in. Each buffer's shape must be its range's lengths, as for
    /// [`fetch_into`](Self::fetch_into); the buffers are distinct, so they never
    /// overlap.
    ///
    /// # Errors
    /// As [`fetch_into`](Self::fetch_into), for any of the ranges (checked before
    /// anything is sent). On an error, the buffers may be partly written.
    ///
    /// # Cancel safety
    /// Dropping it abandons the wait; the buffers may be partly written.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// use ndarray::{s, Array2};
    /// let d = cohort_darray::DArray::<u32, ndarray::Ix2>::from_fn((4, 6), |(i, j): (usize, usize)| (10 * i + j) as u32).await.unwrap();
    /// // A column and a corner, one request per owner for both.
    /// let mut old = Array2::<u32>::zeros((5, 2));
    /// let (top, corner) = old.view_mut().split_at(ndarray::Axis(0), 4);
    /// let (col, _) = top.split_at(ndarray::Axis(1), 1);
    /// d.fetch_each_into(vec![(&[0..4, 5..6][..], col), (&[0..1, 0..2][..], corner)])
    ///     .await
    ///     .unwrap();
    /// assert_eq!(old.slice(s![..4, 0]).to_vec(), vec![5, 15, 25, 35]);
    /// assert_eq!(old.row(4).to_vec(), vec![0, 1]);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::distribute(&ndarray::arr1(&[5u8, 6, 7, 8])).unwrap();
 let (mut a, mut b) = ([0u8; 1], [0u8; 2]);
 d.fetch_each_into_blocking(vec![
     (&[0..1][..], ndarray::ArrayViewMut1::from(&mut a[..])),
     (&[2..4][..], ndarray::ArrayViewMut1::from(&mut b[..])),
 ])
 .unwrap();
 assert_eq!((a, b), ([5], [7, 8]));"
    )]
    pub async fn fetch_each_into<E: Dimension>(
        &self,
        regions: Vec<Region<'_, '_, T, E>>,
    ) -> Result<(), DArrayError> {
        let mut views = Vec::with_capacity(regions.len());
        for (ranges, out) in regions {
            views.push((ranges, self.region_view(ranges, out)?));
        }
        self.fetch_dyn_many(views).await
    }

    /// `out` as a view with exactly the ranges' shape: a lower-dimensional buffer for
    /// a range of single indices (a row of a matrix into a vector) is fine, only the
    /// lengths must agree.
    fn region_view<'b, E: Dimension>(
        &self,
        ranges: &[Range<usize>],
        out: ArrayViewMut<'b, T, E>,
    ) -> Result<ArrayViewMut<'b, T, IxDyn>, DArrayError> {
        self.layout.check_ranges(ranges)?;
        let want = ranges_shape(ranges);
        let non_unit = |s: &[usize]| s.iter().copied().filter(|n| *n != 1).collect::<Vec<_>>();
        if out.shape() != want.as_slice() && non_unit(out.shape()) != non_unit(&want) {
            return Err(DArrayError::ShapeMismatch {
                expected: want,
                got: out.shape().to_vec(),
            });
        }
        // Drop the buffer's unit axes, then insert the ranges' (works for any
        // strides, unlike a reshape).
        let mut v = squeeze(out.into_dyn());
        for (ax, n) in want.iter().enumerate() {
            if *n == 1 {
                v.insert_axis_inplace(ndarray::Axis(ax));
            }
        }
        Ok(v)
    }

    /// The whole array as a local `ndarray::Array` (Julia's `convert(Array, d)` /
    /// `Array(d)`): one request per chunk, all at once.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    ///
    /// # Cancel safety
    /// As [`fetch`](Self::fetch).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let a = ndarray::array![[1, 2], [3, 4]];
    /// let d = cohort_darray::distribute(&a).await.unwrap();
    /// assert_eq!(d.gather().await.unwrap(), a);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let a = ndarray::array![[1, 2], [3, 4]];
 let d = cohort_darray::blocking::distribute(&a).unwrap();
 assert_eq!(d.gather_blocking().unwrap(), a);")]
    pub async fn gather(&self) -> Result<Array<T, D>, DArrayError> {
        let all: Vec<Range<usize>> = self.layout.dims.iter().map(|&n| 0..n).collect();
        self.fetch(&all).await
    }

    /// A fetch of one range; `out` has exactly the ranges' shape.
    pub(crate) async fn fetch_dyn_into(
        &self,
        ranges: &[Range<usize>],
        out: ArrayViewMut<'_, T, IxDyn>,
    ) -> Result<(), DArrayError> {
        self.fetch_dyn_many(vec![(ranges, out)]).await
    }

    /// The core of every fetch: each `out` has exactly its ranges' shape. The pieces
    /// one owner holds, of all the ranges, go to it in one request.
    ///
    /// The requests to other owners go out first, and pieces held here are copied
    /// once their replies are in (a fetch of local pieces only yields once first), so
    /// that sibling fetches polled together all send their requests before any of
    /// them spends CPU copying, and this process is idle while it waits: where
    /// processes outnumber cores, a copy running then delays the threads that serve
    /// and land the requests of both sides.
    pub(crate) async fn fetch_dyn_many(
        &self,
        mut regions: Vec<Region<'_, '_, T, IxDyn>>,
    ) -> Result<(), DArrayError> {
        let me = self.handle.cluster.myid();
        let id = self.handle.id;
        let mut landings = Vec::new();
        let mut here = Vec::new();
        let mut asks: Vec<Ask> = Vec::new();
        for (ri, (ranges, out)) in regions.iter_mut().enumerate() {
            for (k, part) in self.layout.pieces(ranges) {
                let pid = self.layout.pids[k];
                let chunk_lo: Vec<usize> = self.layout.ranges(k).iter().map(|r| r.start).collect();
                let local: Vec<Range<usize>> = part
                    .iter()
                    .zip(&chunk_lo)
                    .map(|(r, lo)| r.start - lo..r.end - lo)
                    .collect();
                let place: Vec<Range<usize>> = part
                    .iter()
                    .zip(ranges.iter())
                    .map(|(r, whole)| r.start - whole.start..r.end - whole.start)
                    .collect();
                // SAFETY of the split: the pieces of one range are disjoint, and
                // different ranges have different buffers, so each landing (or local
                // copy) is the only writer of its elements; the buffers are not used
                // again until every landing and copy is done.
                let mut sub =
                    out.slice_each_axis_mut(|ax| Slice::from(place[ax.axis.index()].clone()));
                let raw = sub.raw_view_mut();
                // SAFETY: `raw` points into `out`, exclusively borrowed for this call;
                // the pieces are disjoint (see above).
                let view = unsafe { raw.deref_into_view_mut() };
                if pid == me {
                    here.push((pid, local, view));
                    continue;
                }
                let landing = Landing::new(view);
                let token = landing.token;
                landings.push(landing);
                let at = match asks.iter().position(|a| a.0 == pid) {
                    Some(at) => at,
                    None => {
                        asks.push((pid, Vec::new(), Vec::new()));
                        asks.len() - 1
                    }
                };
                asks[at].1.push((local, token));
                asks[at].2.push((ri, place));
            }
        }
        let mut places = Vec::with_capacity(asks.len());
        let mut calls = Vec::with_capacity(asks.len());
        for (pid, wanted, to) in asks {
            let elems: usize = to
                .iter()
                .map(|(_, place)| ranges_shape(place).iter().product::<usize>())
                .sum();
            places.push(to);
            let cluster = self.handle.cluster.clone();
            calls.push((pid, async move {
                if elems.saturating_mul(std::mem::size_of::<T>()) <= INLINE_READ_MAX {
                    // Read where the request arrives, unless the chunk is locked
                    // for writing: then on a runner, as a large read goes.
                    let now = cluster
                        .remotecall_fetch(
                            store::read_regions_now::<T, D>,
                            pid,
                            (id, wanted.clone()),
                        )
                        .await?;
                    match now {
                        Ok(Some(blocks)) => return Ok(Ok(blocks)),
                        Ok(None) => {}
                        Err(failure) => return Ok(Err(failure)),
                    }
                }
                cluster
                    .remotecall_fetch(store::read_regions::<T, D>, pid, (id, wanted))
                    .await
            }));
        }
        // Remote pieces first (see above).
        let replies = if calls.is_empty() {
            // Let sibling fetches polled beside this one send their requests first.
            yield_once().await;
            Vec::new()
        } else {
            all_of(calls).await?
        };
        drop(landings);
        for (pid, local, mut view) in here {
            let chunk =
                store::get::<T, D>(id).map_err(|failure| DArrayError::Chunk { pid, failure })?;
            let c = chunk.read();
            let src = c.view().into_dyn();
            let src = src.slice_each_axis(|ax| Slice::from(local[ax.axis.index()].clone()));
            copy_region(&mut view, &src);
        }
        for (blocks, to) in replies.into_iter().zip(places) {
            for (b, (ri, place)) in blocks.into_iter().zip(to) {
                if b.landed {
                    continue;
                }
                // Decoded where its landing was not registered (replies are decoded
                // inside the call's future, so this does not happen today): copy it in.
                let shape = ranges_shape(&place);
                let src = ndarray::ArrayView::from_shape(IxDyn(&shape), &b.data).map_err(|_| {
                    DArrayError::ShapeMismatch {
                        expected: shape.clone(),
                        got: vec![b.data.len()],
                    }
                })?;
                let mut dst = regions[ri]
                    .1
                    .slice_each_axis_mut(|ax| Slice::from(place[ax.axis.index()].clone()));
                copy_region(&mut dst, &src);
            }
        }
        Ok(())
    }
}

/// One range of a [`DArray::fetch_each_into`] and the buffer it goes into.
///
/// ```
/// let mut buf = [0u8; 2];
/// let r: cohort_darray::Region<'_, '_, u8, ndarray::Ix1> =
///     (&[0..2][..], ndarray::ArrayViewMut1::from(&mut buf[..]));
/// assert_eq!(r.1.len(), 2);
/// ```
pub type Region<'r, 'b, T, E> = (&'r [Range<usize>], ArrayViewMut<'b, T, E>);

/// What one fetch asks of one owner: the owner, the pieces (its local ranges and the
/// landing token of each), and where each goes (the region's index and the piece's
/// place in that region).
type Ask = (
    Pid,
    Vec<(Vec<Range<usize>>, u64)>,
    Vec<(usize, Vec<Range<usize>>)>,
);

/// The largest read of one owner's chunk (in bytes) that runs where its request
/// arrives (`store::read_regions_now`) rather than on a call runner: a halo or an
/// element comes back without waiting behind the owner's running call, while a
/// large read does not hold up the owner's connection as it copies.
const INLINE_READ_MAX: usize = 1 << 20;

/// Returns `Pending` once (waking itself at once), then `Ready`: lets the other
/// futures polled beside this one run their first step.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// The local chunk of a [`DArray`], read-locked; derefs to its `ndarray::Array`.
///
/// ```
/// let d = cohort_darray::blocking::dfill(1u8, 4).unwrap();
/// let lp: cohort_darray::LocalPart<u8, ndarray::Ix1> = d.localpart().unwrap();
/// assert_eq!(lp.len(), 4);
/// ```
pub struct LocalPart<T, D> {
    guard: ArcRwLockReadGuard<RawRwLock, Array<T, D>>,
}

impl<T, D: Dimension> Deref for LocalPart<T, D> {
    type Target = Array<T, D>;
    fn deref(&self) -> &Array<T, D> {
        &self.guard
    }
}

impl<T, D: Dimension> fmt::Debug for LocalPart<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPart")
            .field("shape", &self.guard.shape())
            .finish()
    }
}

/// The local chunk of a [`DArray`], write-locked; derefs to its `ndarray::Array`
/// for reading and gives a mutable view with [`view_mut`](Self::view_mut) (its shape
/// cannot change).
///
/// ```
/// let d = cohort_darray::blocking::dzeros::<u8, _>(4).unwrap();
/// let mut lp = d.localpart_mut().unwrap();
/// lp.view_mut()[0] = 9;
/// assert_eq!(lp[0], 9);
/// ```
pub struct LocalPartMut<T, D> {
    guard: ArcRwLockWriteGuard<RawRwLock, Array<T, D>>,
}

impl<T, D: Dimension> LocalPartMut<T, D> {
    /// A mutable view of the chunk.
    ///
    /// ```
    /// let d = cohort_darray::blocking::dzeros::<u8, _>(2).unwrap();
    /// d.localpart_mut().unwrap().view_mut().fill(1);
    /// assert_eq!(d.localpart().unwrap().sum(), 2);
    /// ```
    pub fn view_mut(&mut self) -> ArrayViewMut<'_, T, D> {
        self.guard.view_mut()
    }
}

impl<T, D: Dimension> Deref for LocalPartMut<T, D> {
    type Target = Array<T, D>;
    fn deref(&self) -> &Array<T, D> {
        &self.guard
    }
}

impl<T, D: Dimension> fmt::Debug for LocalPartMut<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPartMut")
            .field("shape", &self.guard.shape())
            .finish()
    }
}
