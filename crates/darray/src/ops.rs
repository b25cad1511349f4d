//! Operations that run where the data lives: `map`, reductions, comparisons, and the
//! matrix–vector product. Each is one call per owner, all at once.

use std::ops::Range;

use cohort_cluster::{Cluster, RemoteFn};
use ndarray::{Array1, Dimension, Ix1, Ix2, LinalgScalar, Zip};
use num_traits::{Float, Zero};

use crate::darray::{all_of, DArray};
use crate::element::Element;
use crate::error::{ChunkFailure, DArrayError};
use crate::layout::Layout;
use crate::store::{self, DArrayId};
use crate::transfer::{Block, Shipped};

impl<T: Element, D: Dimension + 'static> DArray<T, D> {
    fn check_same<U>(&self, other: &DArray<U, D>) -> Result<(), DArrayError> {
        if self.same_layout(other) {
            Ok(())
        } else {
            Err(DArrayError::LayoutMismatch {
                left: self.shape().to_vec(),
                right: other.shape().to_vec(),
            })
        }
    }

    /// A new array of `f(x)` for every element, laid out like this one (Julia's
    /// `map(f, d)`), computed on the owners.
    ///
    /// # Errors
    /// [`DArrayError::Chunk`] (e.g. released); [`DArrayError::Call`] if `f` panicked
    /// or an owner cannot be reached (what was made is released).
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropped, no array is returned and its chunks are released;
    /// calls already sent still run.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::distribute(&ndarray::arr1(&[1.0, 4.0, 9.0])).await.unwrap();
    /// let r = d.map(|x: f64| x.sqrt()).await.unwrap();
    /// assert_eq!(r.gather().await.unwrap().to_vec(), vec![1.0, 2.0, 3.0]);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let d = cohort_darray::blocking::dfill(2i32, 3).unwrap();
 let r = d.map_blocking(|x: i32| x > 1).unwrap();
 assert!(r.gather_blocking().unwrap().iter().all(|b| *b));")]
    pub async fn map<U, F>(&self, f: F) -> Result<DArray<U, D>, DArrayError>
    where
        U: Element,
        F: RemoteFn<(T,), Output = U> + Clone,
    {
        let out = self.reserve_like::<U>();
        let c = &self.handle.cluster;
        let calls = self
            .procs()
            .iter()
            .map(|&p| {
                let f = c.remotecall_fetch(
                    map_chunk::<T, U, D, F>,
                    p,
                    (self.id(), out.id(), Shipped::new(f.clone())),
                );
                (p, f)
            })
            .collect();
        all_of(calls).await?;
        Ok(out)
    }

    /// `map` then `reduce` (Julia's `mapreduce(f, op, d)`): each owner maps and folds
    /// its chunk, and the partial results are folded here in chunk order; `None` for
    /// an empty array. `op` must be associative (the grouping follows the chunks).
    ///
    /// # Errors
    /// As [`map`](Self::map).
    ///
    /// # Cancel safety
    /// Dropping it abandons the wait; nothing changes on the owners.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::distribute(&ndarray::arr1(&[1, 2, 3])).await.unwrap();
    /// let s = d.mapreduce(|x: i32| x * x, |a: i32, b: i32| a + b).await.unwrap();
    /// assert_eq!(s, Some(14));
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::distribute(&ndarray::arr1(&[1, 5, 3])).unwrap();
 assert_eq!(d.mapreduce_blocking(|x: i32| x, |a: i32, b: i32| a.max(b)).unwrap(), Some(5));"
    )]
    pub async fn mapreduce<U, M, R>(&self, f: M, op: R) -> Result<Option<U>, DArrayError>
    where
        U: Element,
        M: RemoteFn<(T,), Output = U> + Clone,
        R: RemoteFn<(U, U), Output = U> + Clone,
    {
        let c = &self.handle.cluster;
        let calls = self
            .procs()
            .iter()
            .map(|&p| {
                let call = c.remotecall_fetch(
                    mapreduce_chunk::<T, U, D, M, R>,
                    p,
                    (self.id(), Shipped::new(f.clone()), Shipped::new(op.clone())),
                );
                (p, call)
            })
            .collect();
        let parts: Vec<Option<U>> = all_of(calls).await?;
        Ok(parts.into_iter().flatten().reduce(|a, b| op.call((a, b))))
    }

    /// Folds every element with `op` (Julia's `reduce(op, d)`); `None` for an empty
    /// array.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    ///
    /// # Cancel safety
    /// As [`mapreduce`](Self::mapreduce).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::distribute(&ndarray::arr1(&[2, 3, 4])).await.unwrap();
    /// assert_eq!(d.reduce(|a: i32, b: i32| a * b).await.unwrap(), Some(24));
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::distribute(&ndarray::arr1(&[2, 3])).unwrap();
 assert_eq!(d.reduce_blocking(|a: i32, b: i32| a - b).unwrap(), Some(-1));"
    )]
    pub async fn reduce<R>(&self, op: R) -> Result<Option<T>, DArrayError>
    where
        R: RemoteFn<(T, T), Output = T> + Clone,
    {
        self.mapreduce(identity::<T>, op).await
    }

    /// The sum of the elements (Julia's `sum(d)`): each owner sums its chunk
    /// (`ndarray`'s `sum`), and the partial sums are added here in chunk order — so
    /// a floating-point sum may differ in the last bits from the serial one (seed
    /// 004's "Numerical Results of Distributed Computations").
    ///
    /// # Errors
    /// As [`map`](Self::map).
    ///
    /// # Cancel safety
    /// As [`mapreduce`](Self::mapreduce).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::dfill(1.1f64, (100, 100)).await.unwrap();
    /// assert!((d.sum().await.unwrap() - 11000.0).abs() < 1e-6);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::dones::<u64, _>(10).unwrap();
 assert_eq!(d.sum_blocking().unwrap(), 10);"
    )]
    pub async fn sum(&self) -> Result<T, DArrayError>
    where
        T: Zero,
    {
        let c = &self.handle.cluster;
        let calls = self
            .procs()
            .iter()
            .map(|&p| (p, c.remotecall_fetch(sum_chunk::<T, D>, p, (self.id(),))))
            .collect();
        let parts: Vec<T> = all_of(calls).await?;
        Ok(parts.into_iter().fold(T::zero(), |a, b| a + b))
    }

    /// The smallest element (Julia's `minimum(d)`); `None` for an empty array.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    ///
    /// # Cancel safety
    /// As [`mapreduce`](Self::mapreduce).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::distribute(&ndarray::arr1(&[3, 1, 2])).await.unwrap();
    /// assert_eq!(d.min().await.unwrap(), Some(1));
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::distribute(&ndarray::arr1(&[3, 1, 2])).unwrap();
 assert_eq!(d.min_blocking().unwrap(), Some(1));"
    )]
    pub async fn min(&self) -> Result<Option<T>, DArrayError>
    where
        T: PartialOrd,
    {
        self.extreme(false).await
    }

    /// The largest element (Julia's `maximum(d)`); `None` for an empty array.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    ///
    /// # Cancel safety
    /// As [`mapreduce`](Self::mapreduce).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::distribute(&ndarray::arr1(&[3, 1, 2])).await.unwrap();
    /// assert_eq!(d.max().await.unwrap(), Some(3));
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::distribute(&ndarray::arr1(&[3, 1, 2])).unwrap();
 assert_eq!(d.max_blocking().unwrap(), Some(3));"
    )]
    pub async fn max(&self) -> Result<Option<T>, DArrayError>
    where
        T: PartialOrd,
    {
        self.extreme(true).await
    }

    async fn extreme(&self, largest: bool) -> Result<Option<T>, DArrayError>
    where
        T: PartialOrd,
    {
        let c = &self.handle.cluster;
        let calls = self
            .procs()
            .iter()
            .map(|&p| {
                (
                    p,
                    c.remotecall_fetch(extreme_chunk::<T, D>, p, (self.id(), largest)),
                )
            })
            .collect();
        let parts: Vec<Option<T>> = all_of(calls).await?;
        Ok(parts
            .into_iter()
            .flatten()
            .reduce(|a, b| pick(a, b, largest)))
    }

    /// A copy of this array laid out like `like` (same shape): each of `like`'s
    /// owners fetches its new chunk's elements from this array's owners directly,
    /// one request per touched chunk. Element-wise operations need operands laid out
    /// alike; this is how to get there.
    ///
    /// # Errors
    /// [`DArrayError::ShapeMismatch`]; as [`map`](Self::map).
    ///
    /// # Cancel safety
    /// As [`map`](Self::map).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let me = cohort_cluster::myid();
    /// let a = cohort_darray::distribute(&ndarray::arr1(&[1, 2, 3])).await.unwrap();
    /// let b = cohort_darray::DArray::<i32, ndarray::Ix1>::builder(3).procs(&[me]).zeros().await.unwrap();
    /// let c = a.redistribute_like(&b).await.unwrap();
    /// assert!(c.same_layout(&b));
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let a = cohort_darray::blocking::dones::<f64, _>(4).unwrap();
 let b = a.redistribute_like_blocking(&a).unwrap();
 assert_eq!(b.sum_blocking().unwrap(), 4.0);"
    )]
    pub async fn redistribute_like<U>(&self, like: &DArray<U, D>) -> Result<Self, DArrayError> {
        if self.shape() != like.shape() {
            return Err(DArrayError::ShapeMismatch {
                expected: like.shape().to_vec(),
                got: self.shape().to_vec(),
            });
        }
        let out = like.reserve_like::<T>();
        let c = &self.handle.cluster;
        let calls = (0..out.layout.nchunks())
            .map(|k| {
                let p = out.layout.pids[k];
                let f = c.remotecall_fetch(
                    copy_chunk::<T, D>,
                    p,
                    (self.clone(), out.id(), out.layout.ranges(k)),
                );
                (p, f)
            })
            .collect();
        all_of(calls).await?;
        Ok(out)
    }
}

fn identity<T>(x: T) -> T {
    x
}

fn pick<T: PartialOrd>(a: T, b: T, largest: bool) -> T {
    if (b > a) == largest && b != a {
        b
    } else {
        a
    }
}

fn map_chunk<T, U, D, F>(
    src: DArrayId,
    dst: DArrayId,
    f: Shipped<F, (T,)>,
) -> Result<(), ChunkFailure>
where
    T: Element,
    U: Element,
    D: Dimension + 'static,
    F: RemoteFn<(T,), Output = U>,
{
    let chunk = store::get::<T, D>(src)?;
    let out = chunk.read().map(|x| f.0.call((x.clone(),)));
    store::insert(&Cluster::current(), dst, out)
}

fn mapreduce_chunk<T, U, D, M, R>(
    id: DArrayId,
    f: Shipped<M, (T,)>,
    op: Shipped<R, (U, U)>,
) -> Result<Option<U>, ChunkFailure>
where
    T: Element,
    U: Element,
    D: Dimension + 'static,
    M: RemoteFn<(T,), Output = U>,
    R: RemoteFn<(U, U), Output = U>,
{
    let chunk = store::get::<T, D>(id)?;
    let c = chunk.read();
    Ok(c.iter()
        .map(|x| f.0.call((x.clone(),)))
        .reduce(|a, b| op.0.call((a, b))))
}

fn sum_chunk<T: Element + Zero, D: Dimension + 'static>(id: DArrayId) -> Result<T, ChunkFailure> {
    let chunk = store::get::<T, D>(id)?;
    let s = chunk.read().sum();
    Ok(s)
}

fn extreme_chunk<T: Element + PartialOrd, D: Dimension + 'static>(
    id: DArrayId,
    largest: bool,
) -> Result<Option<T>, ChunkFailure> {
    let chunk = store::get::<T, D>(id)?;
    let c = chunk.read();
    Ok(c.iter().cloned().reduce(|a, b| pick(a, b, largest)))
}

/// On a new owner: fetches its chunk of `src` (from wherever it lives) into a new
/// chunk of `dst`.
fn copy_chunk<T: Element, D: Dimension + 'static>(
    src: DArray<T, D>,
    dst: DArrayId,
    ranges: Vec<Range<usize>>,
) -> Result<(), ChunkFailure> {
    let a = src
        .fetch_blocking(&ranges)
        .map_err(|e| ChunkFailure::Nested(e.to_string()))?;
    store::insert(&Cluster::current(), dst, a)
}

// ----- floating point: norms, dot products, approximate equality -----

impl<T: Element + Float, D: Dimension + 'static> DArray<T, D> {
    /// The 2-norm, `sqrt(Σ x²)` (Julia's `norm(d)`).
    ///
    /// # Errors
    /// As [`map`](Self::map).
    ///
    /// # Cancel safety
    /// As [`mapreduce`](Self::mapreduce).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::distribute(&ndarray::arr1(&[3.0, 4.0])).await.unwrap();
    /// assert_eq!(d.norm().await.unwrap(), 5.0);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::distribute(&ndarray::arr1(&[3.0f32, 4.0])).unwrap();
 assert_eq!(d.norm_blocking().unwrap(), 5.0);"
    )]
    pub async fn norm(&self) -> Result<T, DArrayError> {
        let c = &self.handle.cluster;
        let calls = self
            .procs()
            .iter()
            .map(|&p| (p, c.remotecall_fetch(sumsq_chunk::<T, D>, p, (self.id(),))))
            .collect();
        let parts: Vec<T> = all_of(calls).await?;
        Ok(parts.into_iter().fold(T::zero(), |a, b| a + b).sqrt())
    }

    /// The dot product `Σ aᵢ bᵢ` with an array laid out alike (Julia's `dot(a, b)`).
    ///
    /// # Errors
    /// [`DArrayError::LayoutMismatch`]; as [`map`](Self::map).
    ///
    /// # Cancel safety
    /// As [`mapreduce`](Self::mapreduce).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let a = cohort_darray::distribute(&ndarray::arr1(&[1.0, 2.0])).await.unwrap();
    /// let b = cohort_darray::distribute_like(&ndarray::arr1(&[3.0, 4.0]), &a).await.unwrap();
    /// assert_eq!(a.dot(&b).await.unwrap(), 11.0);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let a = cohort_darray::blocking::dones::<f64, _>(3).unwrap();
 assert_eq!(a.dot_blocking(&a).unwrap(), 3.0);"
    )]
    pub async fn dot(&self, other: &DArray<T, D>) -> Result<T, DArrayError> {
        self.check_same(other)?;
        let c = &self.handle.cluster;
        let calls = self
            .procs()
            .iter()
            .map(|&p| {
                (
                    p,
                    c.remotecall_fetch(dot_chunk::<T, D>, p, (self.id(), other.id())),
                )
            })
            .collect();
        let parts: Vec<T> = all_of(calls).await?;
        Ok(parts.into_iter().fold(T::zero(), |a, b| a + b))
    }

    /// Whether every element is approximately equal to the matching element of
    /// `other` (Julia's `all(a .≈ b)`): `|a - b| ≤ rtol · max(|a|, |b|)` with
    /// `rtol = √ε`, Julia's default.
    ///
    /// # Errors
    /// [`DArrayError::LayoutMismatch`]; as [`map`](Self::map).
    ///
    /// # Cancel safety
    /// As [`mapreduce`](Self::mapreduce).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let a = cohort_darray::dfill(0.1f64 * 3.0, 4).await.unwrap();
    /// let b = cohort_darray::dfill(0.3f64, 4).await.unwrap();
    /// assert!(a.approx_eq(&b).await.unwrap());
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let a = cohort_darray::blocking::dfill(1.0f64, 4).unwrap();
 let b = cohort_darray::blocking::dfill(1.1f64, 4).unwrap();
 assert!(!a.approx_eq_blocking(&b).unwrap());"
    )]
    pub async fn approx_eq(&self, other: &DArray<T, D>) -> Result<bool, DArrayError> {
        self.check_same(other)?;
        let c = &self.handle.cluster;
        let calls = self
            .procs()
            .iter()
            .map(|&p| {
                (
                    p,
                    c.remotecall_fetch(
                        approx_chunk::<T, D>,
                        p,
                        (self.id(), Some(other.id()), T::zero()),
                    ),
                )
            })
            .collect();
        let parts: Vec<bool> = all_of(calls).await?;
        Ok(parts.into_iter().all(|b| b))
    }

    /// Whether every element is approximately `value` (Julia's `all(d .≈ x)`), with
    /// the tolerance of [`approx_eq`](Self::approx_eq).
    ///
    /// # Errors
    /// As [`map`](Self::map).
    ///
    /// # Cancel safety
    /// As [`mapreduce`](Self::mapreduce).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::dfill(std::f64::consts::PI * 4.0, 8).await.unwrap();
    /// assert!(d.all_approx(4.0 * std::f64::consts::PI).await.unwrap());
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::dfill(2.0f64, 8).unwrap();
 assert!(d.all_approx_blocking(2.0).unwrap());"
    )]
    pub async fn all_approx(&self, value: T) -> Result<bool, DArrayError> {
        let c = &self.handle.cluster;
        let calls = self
            .procs()
            .iter()
            .map(|&p| {
                (
                    p,
                    c.remotecall_fetch(approx_chunk::<T, D>, p, (self.id(), None, value)),
                )
            })
            .collect();
        let parts: Vec<bool> = all_of(calls).await?;
        Ok(parts.into_iter().all(|b| b))
    }
}

/// `Σ x²` of a slice with independent accumulators (so the loop vectorizes).
fn sumsq<T: Float>(s: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            acc[i] = acc[i] + c[i] * c[i];
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(T::zero(), |a, x| a + *x * *x);
    acc.iter().fold(tail, |a, b| a + *b)
}

fn sumsq_chunk<T: Element + Float, D: Dimension + 'static>(
    id: DArrayId,
) -> Result<T, ChunkFailure> {
    let chunk = store::get::<T, D>(id)?;
    let c = chunk.read();
    Ok(match c.as_slice_memory_order() {
        Some(s) => sumsq(s),
        None => c.iter().fold(T::zero(), |a, x| a + *x * *x),
    })
}

fn dot_chunk<T: Element + Float, D: Dimension + 'static>(
    a: DArrayId,
    b: DArrayId,
) -> Result<T, ChunkFailure> {
    let (ca, cb) = (store::get::<T, D>(a)?, store::get::<T, D>(b)?);
    // Recursive: `a.dot(&a)` reads one chunk twice (a plain second read would wait
    // behind a queued writer).
    let (x, y) = (ca.read_recursive(), cb.read_recursive());
    Ok(Zip::from(&*x)
        .and(&*y)
        .fold(T::zero(), |acc, p, q| acc + *p * *q))
}

fn approx_chunk<T: Element + Float, D: Dimension + 'static>(
    a: DArrayId,
    b: Option<DArrayId>,
    value: T,
) -> Result<bool, ChunkFailure> {
    let rtol = T::epsilon().sqrt();
    let close = |x: T, y: T| x == y || (x - y).abs() <= rtol * x.abs().max(y.abs());
    let ca = store::get::<T, D>(a)?;
    let x = ca.read_recursive();
    Ok(match b {
        Some(b) => {
            let cb = store::get::<T, D>(b)?;
            let y = cb.read_recursive();
            Zip::from(&*x).and(&*y).all(|p, q| close(*p, *q))
        }
        None => x.iter().all(|p| close(*p, value)),
    })
}

// ----- matrix–vector products -----

impl<T: Element + LinalgScalar> DArray<T, Ix2> {
    /// The product with a local vector, `M * v` (Julia's `M * v` with `v::Vector`):
    /// each owner gets the part of `v` its columns need (in bulk) and sends back its
    /// rows' partial result; they are added here.
    ///
    /// # Errors
    /// [`DArrayError::ShapeMismatch`] if `v`'s length is not the number of columns;
    /// as [`map`](Self::map).
    ///
    /// # Cancel safety
    /// As [`mapreduce`](Self::mapreduce).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let m = cohort_darray::distribute(&ndarray::array![[2.0, 1.0], [1.0, 1.0]]).await.unwrap();
    /// let y = m.matvec(&ndarray::arr1(&[1.0, 2.0])).await.unwrap();
    /// assert_eq!(y.to_vec(), vec![4.0, 3.0]);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let m = cohort_darray::blocking::distribute(&ndarray::array![[1, 2], [3, 4]]).unwrap();
 assert_eq!(m.matvec_blocking(&ndarray::arr1(&[1, 1])).unwrap().to_vec(), vec![3, 7]);"
    )]
    pub async fn matvec(&self, v: &Array1<T>) -> Result<Array1<T>, DArrayError> {
        let (rows, cols) = (self.shape()[0], self.shape()[1]);
        if v.len() != cols {
            return Err(DArrayError::ShapeMismatch {
                expected: vec![cols],
                got: vec![v.len()],
            });
        }
        let c = &self.handle.cluster;
        let mut row_starts = Vec::new();
        let calls = (0..self.layout.nchunks())
            .map(|k| {
                let p = self.layout.pids[k];
                let r = self.layout.ranges(k);
                row_starts.push(r[0].start);
                let part = Block::new(v.slice(ndarray::s![r[1].clone()]).to_vec());
                (
                    p,
                    c.remotecall_fetch(matvec_chunk::<T>, p, (self.id(), part)),
                )
            })
            .collect();
        let parts: Vec<Block<T>> = all_of(calls).await?;
        let mut y = Array1::<T>::zeros(rows);
        for (lo, part) in row_starts.into_iter().zip(parts) {
            let n = part.data.len();
            y.slice_mut(ndarray::s![lo..lo + n])
                .zip_mut_with(&ndarray::ArrayView1::from(&part.data[..]), |a, b| {
                    *a = *a + *b
                });
        }
        Ok(y)
    }

    /// The product with a distributed vector, `M * v` as a distributed vector
    /// (Julia's `M * v` with `v::DArray`): each owner of a chunk of `M` fetches the
    /// part of `v` its columns need straight from `v`'s owners, and the result is
    /// cut like `M`'s rows, on the owners of `M`'s first column of chunks. When `M` is
    /// also cut by columns, the partial products are stored by their owners and
    /// summed by the result's owners (a second round of calls).
    ///
    /// # Errors
    /// [`DArrayError::ShapeMismatch`] if `v`'s length is not the number of columns;
    /// as [`map`](Self::map).
    ///
    /// # Cancel safety
    /// As [`map`](Self::map).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let m = cohort_darray::distribute(&ndarray::array![[2.0, 1.0], [1.0, 1.0]]).await.unwrap();
    /// let v = cohort_darray::distribute(&ndarray::arr1(&[1.0, 2.0])).await.unwrap();
    /// let y = m.matvec_d(&v).await.unwrap();
    /// assert_eq!(y.gather().await.unwrap().to_vec(), vec![4.0, 3.0]);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let m = cohort_darray::blocking::distribute(&ndarray::array![[1, 2], [3, 4]]).unwrap();
 let v = cohort_darray::blocking::distribute(&ndarray::arr1(&[1, 1])).unwrap();
 assert_eq!(m.matvec_d_blocking(&v).unwrap().gather_blocking().unwrap().to_vec(), vec![3, 7]);"
    )]
    pub async fn matvec_d(&self, v: &DArray<T, Ix1>) -> Result<DArray<T, Ix1>, DArrayError> {
        let (rows, cols) = (self.shape()[0], self.shape()[1]);
        if v.len() != cols {
            return Err(DArrayError::ShapeMismatch {
                expected: vec![cols],
                got: vec![v.len()],
            });
        }
        let c = &self.handle.cluster;
        let (p0, q) = (self.layout.dist[0], self.layout.dist[1]);
        // The result: M's row cuts, on the owners of grid column 0.
        let y_layout = Layout {
            dims: vec![rows],
            dist: vec![p0],
            cuts: vec![self.layout.cuts[0].clone()],
            pids: self.layout.pids[..p0].to_vec(),
        };
        if q == 1 {
            let y = DArray::<T, Ix1>::reserve(c, y_layout);
            let calls = (0..self.layout.nchunks())
                .map(|k| {
                    let p = self.layout.pids[k];
                    let cols = self.layout.ranges(k)[1].clone();
                    let f = c.remotecall_fetch(
                        matvec_d_chunk::<T>,
                        p,
                        (self.id(), v.clone(), cols, y.id()),
                    );
                    (p, f)
                })
                .collect();
            all_of(calls).await?;
            return Ok(y);
        }
        // Partial products: an (rows × q) array cut like M's rows and one column per
        // grid column, each chunk on the owner of the matching chunk of M.
        let partial_layout = Layout {
            dims: vec![rows, q],
            dist: vec![p0, q],
            cuts: vec![self.layout.cuts[0].clone(), (0..=q).collect()],
            pids: self.layout.pids.clone(),
        };
        let partial = DArray::<T, Ix2>::reserve(c, partial_layout);
        let calls = (0..self.layout.nchunks())
            .map(|k| {
                let p = self.layout.pids[k];
                let cols = self.layout.ranges(k)[1].clone();
                let f = c.remotecall_fetch(
                    matvec_partial_chunk::<T>,
                    p,
                    (self.id(), v.clone(), cols, partial.id()),
                );
                (p, f)
            })
            .collect();
        all_of(calls).await?;
        let y = DArray::<T, Ix1>::reserve(c, y_layout);
        let calls = (0..p0)
            .map(|i| {
                let p = y.layout.pids[i];
                let r = y.layout.ranges(i)[0].clone();
                let f = c.remotecall_fetch(sum_rows_chunk::<T>, p, (partial.clone(), r, y.id()));
                (p, f)
            })
            .collect();
        all_of(calls).await?;
        drop(partial);
        Ok(y)
    }
}

fn matvec_chunk<T: Element + LinalgScalar>(
    id: DArrayId,
    v: Block<T>,
) -> Result<Block<T>, ChunkFailure> {
    let chunk = store::get::<T, Ix2>(id)?;
    let m = chunk.read();
    let y = m.dot(&ndarray::ArrayView1::from(&v.data[..]));
    Ok(Block::new(y.to_vec()))
}

fn local_product<T: Element + LinalgScalar>(
    id: DArrayId,
    v: &DArray<T, Ix1>,
    cols: Range<usize>,
) -> Result<Array1<T>, ChunkFailure> {
    let chunk = store::get::<T, Ix2>(id)?;
    let x = v
        .fetch_blocking(&[cols])
        .map_err(|e| ChunkFailure::Nested(e.to_string()))?;
    let m = chunk.read();
    Ok(m.dot(&x))
}

fn matvec_d_chunk<T: Element + LinalgScalar>(
    id: DArrayId,
    v: DArray<T, Ix1>,
    cols: Range<usize>,
    out: DArrayId,
) -> Result<(), ChunkFailure> {
    let y = local_product(id, &v, cols)?;
    store::insert(&Cluster::current(), out, y)
}

fn matvec_partial_chunk<T: Element + LinalgScalar>(
    id: DArrayId,
    v: DArray<T, Ix1>,
    cols: Range<usize>,
    out: DArrayId,
) -> Result<(), ChunkFailure> {
    let y = local_product(id, &v, cols)?;
    let n = y.len();
    let y = y.into_shape_with_order((n, 1)).expect("a column");
    store::insert(&Cluster::current(), out, y)
}

fn sum_rows_chunk<T: Element + LinalgScalar>(
    partial: DArray<T, Ix2>,
    rows: Range<usize>,
    out: DArrayId,
) -> Result<(), ChunkFailure> {
    let q = partial.shape()[1];
    let p = partial
        .fetch_blocking(&[rows, 0..q])
        .map_err(|e| ChunkFailure::Nested(e.to_string()))?;
    let y = p.sum_axis(ndarray::Axis(1));
    store::insert(&Cluster::current(), out, y)
}
