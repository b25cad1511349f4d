//! Making distributed arrays: the primitive constructor (`init` on every owner),
//! `dzeros`/`dones`/`dfill`/`drand`/`drandn`, `distribute`, comprehensions, and
//! arrays assembled from futures of chunks.

use std::marker::PhantomData;
use std::ops::Range;

use cohort_cluster::{Cluster, Future, Pid, RemoteFn};
use ndarray::{Array, ArrayBase, Data, Dimension, IntoDimension, Slice};
use num_traits::{One, Zero};
use rand::distributions::{Distribution, Standard};

use crate::darray::{all_of, dim_of, ranges_shape, DArray};
use crate::element::Element;
use crate::error::{ChunkFailure, DArrayError};
use crate::layout::Layout;
use crate::store::{self, DArrayId};
use crate::transfer::{to_vec, Block, Shipped};

/// The index ranges of one chunk, one per dimension (0-based, half-open): what an
/// `init` function gets (Julia's tuple of `UnitRange`s).
pub type Ranges = Vec<Range<usize>>;

/// The options of the primitive constructor (Julia's `DArray(init, dims, procs,
/// dist)`): the processes and the chunks per dimension, each defaulted as in Julia.
///
/// ```
/// use cohort_darray::DArray;
/// let d = DArray::<f64, ndarray::Ix2>::builder((100, 100))
///     .procs(&[cohort_cluster::myid()])
///     .dist(&[1, 1])
///     .zeros_blocking()
///     .unwrap();
/// assert_eq!(d.dist(), &[1, 1]);
/// ```
pub struct DArrayBuilder<T, D> {
    dims: D,
    procs: Option<Vec<Pid>>,
    dist: Option<Vec<usize>>,
    like: Option<Layout>,
    _t: PhantomData<fn() -> T>,
}

impl<T, D: Clone> Clone for DArrayBuilder<T, D> {
    fn clone(&self) -> Self {
        DArrayBuilder {
            dims: self.dims.clone(),
            procs: self.procs.clone(),
            dist: self.dist.clone(),
            like: self.like.clone(),
            _t: PhantomData,
        }
    }
}

impl<T, D: std::fmt::Debug> std::fmt::Debug for DArrayBuilder<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DArrayBuilder")
            .field("elem", &std::any::type_name::<T>())
            .field("dims", &self.dims)
            .field("procs", &self.procs)
            .field("dist", &self.dist)
            .finish()
    }
}

impl<T: Element, D: Dimension + 'static> DArray<T, D> {
    /// The primitive constructor's options for an array of shape `dims`.
    ///
    /// ```
    /// let b = cohort_darray::DArray::<u8, ndarray::Ix1>::builder(10);
    /// let d = b.zeros_blocking().unwrap();
    /// assert_eq!(d.len(), 10);
    /// ```
    pub fn builder(dims: impl IntoDimension<Dim = D>) -> DArrayBuilder<T, D> {
        DArrayBuilder {
            dims: dims.into_dimension(),
            procs: None,
            dist: None,
            like: None,
            _t: PhantomData,
        }
    }

    /// Julia's `@DArray [f(i, j) for i = …, j = …]`: element `idx` is `f(idx)`,
    /// computed on its owner (`idx` is `usize` for 1-D, `(usize, usize)` for 2-D, …,
    /// global and 0-based), with the default layout.
    ///
    /// # Errors
    /// As [`DArrayBuilder::init`].
    ///
    /// # Cancel safety
    /// As [`DArrayBuilder::init`].
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// use cohort_darray::DArray;
    /// let d = DArray::<usize, ndarray::Ix2>::from_fn((5, 5), |(i, j): (usize, usize)| i + j + 2).await.unwrap();
    /// assert_eq!(d.get([4, 4]).await.unwrap(), 10);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " use cohort_darray::DArray;
 let d = DArray::<usize, ndarray::Ix1>::from_fn_blocking(4, |i: usize| i * i).unwrap();
 assert_eq!(d.gather_blocking().unwrap().to_vec(), vec![0, 1, 4, 9]);")]
    pub async fn from_fn<F>(dims: impl IntoDimension<Dim = D>, f: F) -> Result<Self, DArrayError>
    where
        F: RemoteFn<(D::Pattern,), Output = T> + Clone,
    {
        Self::builder(dims).from_fn(f).await
    }
}

impl<T: Element, D: Dimension + 'static> DArrayBuilder<T, D> {
    /// The processes to hold the chunks, in chunk order (Julia's `procs`); each at
    /// most once. Default: the workers (this process alone when there are none),
    /// at most as many as the longest dimension.
    ///
    /// ```
    /// let d = cohort_darray::DArray::<u8, ndarray::Ix1>::builder(4)
    ///     .procs(&[1])
    ///     .zeros_blocking()
    ///     .unwrap();
    /// assert_eq!(d.procs(), &[1]);
    /// ```
    pub fn procs(mut self, procs: &[Pid]) -> Self {
        self.procs = Some(procs.to_vec());
        self
    }

    /// How many chunks each dimension is cut into (Julia's `dist`); their product
    /// must be the number of processes. Default: Julia's
    /// [`defaultdist`](crate::defaultdist).
    ///
    /// ```
    /// let e = cohort_darray::DArray::<u8, ndarray::Ix2>::builder((4, 4))
    ///     .procs(&[1])
    ///     .dist(&[2, 1])
    ///     .zeros_blocking()
    ///     .unwrap_err();
    /// assert!(matches!(e, cohort_darray::DArrayError::DistMismatch { .. }));
    /// ```
    pub fn dist(mut self, dist: &[usize]) -> Self {
        self.dist = Some(dist.to_vec());
        self
    }

    /// Lays the new array out exactly like `other` (same cuts on the same
    /// processes), which must have the same shape; overrides `procs` and `dist`.
    ///
    /// ```
    /// let a = cohort_darray::blocking::dzeros::<f64, _>(6).unwrap();
    /// let b = cohort_darray::DArray::<i32, ndarray::Ix1>::builder(6).like(&a).zeros_blocking().unwrap();
    /// assert!(a.same_layout(&b));
    /// ```
    pub fn like<U>(mut self, other: &DArray<U, D>) -> Self {
        self.like = Some((*other.layout).clone());
        self
    }

    fn layout(&self, cluster: &Cluster) -> Result<Layout, DArrayError> {
        if let Some(l) = &self.like {
            if l.dims != self.dims.slice() {
                return Err(DArrayError::ShapeMismatch {
                    expected: l.dims.clone(),
                    got: self.dims.slice().to_vec(),
                });
            }
            return Ok(l.clone());
        }
        Layout::new(
            self.dims.slice(),
            self.procs.as_deref(),
            self.dist.as_deref(),
            || {
                let w = cluster.workers();
                if w.is_empty() {
                    vec![cluster.myid()]
                } else {
                    w
                }
            },
        )
    }

    /// Makes the array: `init(ranges)` runs on every owner at once with the index
    /// ranges of its chunk and returns the chunk (Julia's `DArray(init, dims[, procs,
    /// dist])`). `init` is a function, a closure without captures or a
    /// `cohort::closure!`.
    ///
    /// # Errors
    /// [`DArrayError::NoProcs`], [`DArrayError::DuplicateProc`],
    /// [`DArrayError::DistMismatch`], [`DArrayError::DistRank`];
    /// [`DArrayError::Chunk`] with [`ChunkFailure::InitShape`] if `init` returned a
    /// chunk of the wrong shape; [`DArrayError::Call`] if `init` panicked or an owner
    /// cannot be reached. Chunks already made are released.
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropped before it completes, no array is returned and every
    /// chunk made is released, but `init` calls already sent still run.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// use cohort_darray::DArray;
    /// // Julia: DArray(I -> fill(myid(), map(length, I)), (4, 4))
    /// let d = DArray::<u32, ndarray::Ix2>::builder((4, 4))
    ///     .init(|idx: Vec<std::ops::Range<usize>>| {
    ///         ndarray::Array2::from_elem((idx[0].len(), idx[1].len()), cohort_cluster::myid())
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(d.sum().await.unwrap(), 16);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " use cohort_darray::DArray;
 let d = DArray::<u8, ndarray::Ix1>::builder(3)
     .init_blocking(|idx: Vec<std::ops::Range<usize>>| ndarray::Array1::from_elem(idx[0].len(), 4))
     .unwrap();
 assert_eq!(d.gather_blocking().unwrap().to_vec(), vec![4, 4, 4]);")]
    pub async fn init<F, O>(self, init: F) -> Result<DArray<T, D>, DArrayError>
    where
        F: RemoteFn<(Ranges,), Output = O> + Clone,
        O: InitOutput<T, D>,
    {
        let cluster = Cluster::current();
        let layout = self.layout(&cluster)?;
        let d = DArray::<T, D>::reserve(&cluster, layout);
        let calls = (0..d.layout.nchunks())
            .map(|k| {
                let pid = d.layout.pids[k];
                let f = cluster.remotecall_fetch(
                    init_chunk::<T, D, F, O>,
                    pid,
                    (d.id(), d.layout.ranges(k), Shipped::new(init.clone())),
                );
                (pid, f)
            })
            .collect();
        all_of(calls).await?;
        Ok(d)
    }

    /// An array of zeros (Julia's `dzeros(dims, procs, dist)`).
    ///
    /// # Errors
    /// As [`init`](Self::init).
    ///
    /// # Cancel safety
    /// As [`init`](Self::init).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::DArray::<f64, ndarray::Ix1>::builder(5).zeros().await.unwrap();
    /// assert_eq!(d.sum().await.unwrap(), 0.0);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::DArray::<f64, ndarray::Ix1>::builder(5).zeros_blocking().unwrap();
 assert_eq!(d.len(), 5);"
    )]
    pub async fn zeros(self) -> Result<DArray<T, D>, DArrayError>
    where
        T: Zero,
    {
        self.init(zeros_init::<T, D>).await
    }

    /// An array of ones (Julia's `dones`).
    ///
    /// # Errors
    /// As [`init`](Self::init).
    ///
    /// # Cancel safety
    /// As [`init`](Self::init).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::DArray::<i32, ndarray::Ix1>::builder(5).ones().await.unwrap();
    /// assert_eq!(d.sum().await.unwrap(), 5);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::DArray::<i32, ndarray::Ix1>::builder(5).ones_blocking().unwrap();
 assert_eq!(d.sum_blocking().unwrap(), 5);"
    )]
    pub async fn ones(self) -> Result<DArray<T, D>, DArrayError>
    where
        T: One,
    {
        self.init(ones_init::<T, D>).await
    }

    /// An array with every element `value` (Julia's `dfill(x, dims)`).
    ///
    /// # Errors
    /// As [`init`](Self::init).
    ///
    /// # Cancel safety
    /// As [`init`](Self::init).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::DArray::<u8, ndarray::Ix1>::builder(3).fill(7).await.unwrap();
    /// assert_eq!(d.gather().await.unwrap().to_vec(), vec![7, 7, 7]);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::DArray::<u8, ndarray::Ix1>::builder(3).fill_blocking(7).unwrap();
 assert_eq!(d.sum_blocking().unwrap(), 21);"
    )]
    pub async fn fill(self, value: T) -> Result<DArray<T, D>, DArrayError> {
        self.init(cohort_cluster::Closure::new(value, fill_init::<T, D>))
            .await
    }

    /// An array of uniform random numbers drawn on the owners (Julia's `drand`;
    /// `[0, 1)` for floats, as `rand::random`).
    ///
    /// # Errors
    /// As [`init`](Self::init).
    ///
    /// # Cancel safety
    /// As [`init`](Self::init).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::DArray::<f64, ndarray::Ix1>::builder(100).rand().await.unwrap();
    /// assert!(d.max().await.unwrap().unwrap() < 1.0);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::DArray::<f64, ndarray::Ix1>::builder(100).rand_blocking().unwrap();
 assert!(d.min_blocking().unwrap().unwrap() >= 0.0);"
    )]
    pub async fn rand(self) -> Result<DArray<T, D>, DArrayError>
    where
        Standard: Distribution<T>,
    {
        self.init(rand_init::<T, D>).await
    }

    /// Julia's `@DArray` comprehension with this builder's layout: element `idx` (a
    /// global, 0-based index pattern) is `f(idx)`, computed on its owner.
    ///
    /// # Errors
    /// As [`init`](Self::init).
    ///
    /// # Cancel safety
    /// As [`init`](Self::init).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::DArray::<i64, ndarray::Ix1>::builder(4)
    ///     .from_fn(|i: usize| -(i as i64))
    ///     .await
    ///     .unwrap();
    /// assert_eq!(d.sum().await.unwrap(), -6);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::DArray::<i64, ndarray::Ix1>::builder(4)
     .from_fn_blocking(|i: usize| i as i64)
     .unwrap();
 assert_eq!(d.sum_blocking().unwrap(), 6);"
    )]
    pub async fn from_fn<F>(self, f: F) -> Result<DArray<T, D>, DArrayError>
    where
        F: RemoteFn<(D::Pattern,), Output = T> + Clone,
    {
        self.init(cohort_cluster::Closure::new(
            Shipped::new(f),
            from_fn_init::<T, D, F>,
        ))
        .await
    }

    /// Distributes a local array (Julia's `distribute(a)`): each owner gets its
    /// chunk in one message, in bulk for numeric types. The shape must be this
    /// builder's.
    ///
    /// # Errors
    /// [`DArrayError::ShapeMismatch`]; as [`init`](Self::init).
    ///
    /// # Cancel safety
    /// As [`init`](Self::init).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let a = ndarray::Array::from_iter(0..10);
    /// let d = cohort_darray::DArray::<i32, ndarray::Ix1>::builder(10).distribute(&a).await.unwrap();
    /// assert_eq!(d.sum().await.unwrap(), 45);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " let a = ndarray::arr1(&[1.0, 2.0]);
 let d = cohort_darray::DArray::<f64, ndarray::Ix1>::builder(2).distribute_blocking(&a).unwrap();
 assert_eq!(d.gather_blocking().unwrap(), a);")]
    pub async fn distribute<S>(self, a: &ArrayBase<S, D>) -> Result<DArray<T, D>, DArrayError>
    where
        S: Data<Elem = T>,
    {
        if a.shape() != self.dims.slice() {
            return Err(DArrayError::ShapeMismatch {
                expected: self.dims.slice().to_vec(),
                got: a.shape().to_vec(),
            });
        }
        let cluster = Cluster::current();
        let layout = self.layout(&cluster)?;
        let d = DArray::<T, D>::reserve(&cluster, layout);
        let calls = (0..d.layout.nchunks())
            .map(|k| {
                let pid = d.layout.pids[k];
                let r = d.layout.ranges(k);
                let part = a.slice_each_axis(|ax| Slice::from(r[ax.axis.index()].clone()));
                let f = cluster.remotecall_fetch(
                    put_chunk::<T, D>,
                    pid,
                    (d.id(), ranges_shape(&r), Block::new(to_vec(part))),
                );
                (pid, f)
            })
            .collect();
        all_of(calls).await?;
        Ok(d)
    }
}

impl<D: Dimension + 'static> DArrayBuilder<f64, D> {
    /// An array of standard normal `f64`s drawn on the owners (Julia's `drandn`).
    ///
    /// # Errors
    /// As [`init`](Self::init).
    ///
    /// # Cancel safety
    /// As [`init`](Self::init).
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::DArray::<f64, ndarray::Ix1>::builder(1000).randn().await.unwrap();
    /// assert!(d.sum().await.unwrap().abs() < 200.0);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::DArray::<f64, ndarray::Ix1>::builder(10).randn_blocking().unwrap();
 assert_eq!(d.len(), 10);"
    )]
    pub async fn randn(self) -> Result<DArray<f64, D>, DArrayError> {
        self.init(randn_init::<D>).await
    }
}

/// What an `init` function may return: the chunk, or a `Result` whose error becomes
/// [`ChunkFailure::Init`] (for an `init` that can fail, e.g. one fetching a halo
/// from its neighbours).
///
/// ```
/// use cohort_darray::{DArray, Ranges};
/// let e = DArray::<u8, ndarray::Ix1>::builder(2)
///     .init_blocking(|_r: Ranges| -> Result<ndarray::Array1<u8>, String> { Err("no data".into()) })
///     .unwrap_err();
/// assert!(e.to_string().contains("no data"));
/// ```
pub trait InitOutput<T, D>: Send + 'static {
    /// The chunk, or why there is none.
    ///
    /// # Errors
    /// The `init` function's own error, as text.
    fn into_chunk(self) -> Result<Array<T, D>, String>;
}

impl<T: Send + 'static, D: Dimension + 'static> InitOutput<T, D> for Array<T, D> {
    fn into_chunk(self) -> Result<Array<T, D>, String> {
        Ok(self)
    }
}

impl<T, D, E> InitOutput<T, D> for Result<Array<T, D>, E>
where
    T: Send + 'static,
    D: Dimension + 'static,
    E: std::fmt::Display + Send + 'static,
{
    fn into_chunk(self) -> Result<Array<T, D>, String> {
        self.map_err(|e| e.to_string())
    }
}

/// On an owner: runs `init` for its chunk and stores the result.
fn init_chunk<T, D, F, O>(
    id: DArrayId,
    ranges: Ranges,
    init: Shipped<F, (Ranges,)>,
) -> Result<(), ChunkFailure>
where
    T: Element,
    D: Dimension + 'static,
    F: RemoteFn<(Ranges,), Output = O>,
    O: InitOutput<T, D>,
{
    let expected = ranges_shape(&ranges);
    let a = init
        .0
        .call((ranges,))
        .into_chunk()
        .map_err(ChunkFailure::Init)?;
    if a.shape() != expected.as_slice() {
        return Err(ChunkFailure::InitShape {
            expected,
            got: a.shape().to_vec(),
        });
    }
    // Chunks are kept row-major (ndarray's standard layout).
    let a = if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    };
    store::insert(&Cluster::current(), id, a)
}

/// On an owner: stores a chunk sent whole.
fn put_chunk<T: Element, D: Dimension + 'static>(
    id: DArrayId,
    shape: Vec<usize>,
    data: Block<T>,
) -> Result<(), ChunkFailure> {
    let got = data.data.len();
    let a = Array::from_shape_vec(dim_of::<D>(&shape), data.data).map_err(|_| {
        ChunkFailure::InitShape {
            expected: shape.clone(),
            got: vec![got],
        }
    })?;
    store::insert(&Cluster::current(), id, a)
}

fn zeros_init<T: Element + Zero, D: Dimension>(r: Ranges) -> Array<T, D> {
    Array::zeros(dim_of::<D>(&ranges_shape(&r)))
}

fn ones_init<T: Element + One, D: Dimension>(r: Ranges) -> Array<T, D> {
    Array::ones(dim_of::<D>(&ranges_shape(&r)))
}

fn fill_init<T: Element, D: Dimension>(v: &T, r: Ranges) -> Array<T, D> {
    Array::from_elem(dim_of::<D>(&ranges_shape(&r)), v.clone())
}

fn rand_init<T: Element, D: Dimension>(r: Ranges) -> Array<T, D>
where
    Standard: Distribution<T>,
{
    let mut rng = rand::thread_rng();
    Array::from_shape_simple_fn(dim_of::<D>(&ranges_shape(&r)), || Standard.sample(&mut rng))
}

fn randn_init<D: Dimension>(r: Ranges) -> Array<f64, D> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    // Box–Muller: two uniforms give a standard normal.
    Array::from_shape_simple_fn(dim_of::<D>(&ranges_shape(&r)), || {
        let u: f64 = 1.0 - rng.gen::<f64>();
        let v: f64 = rng.gen();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    })
}

fn from_fn_init<T, D, F>(f: &Shipped<F, (D::Pattern,)>, r: Ranges) -> Array<T, D>
where
    T: Element,
    D: Dimension,
    F: RemoteFn<(D::Pattern,), Output = T>,
{
    let lo: Vec<usize> = r.iter().map(|r| r.start).collect();
    Array::from_shape_fn(dim_of::<D>(&ranges_shape(&r)), |local: D::Pattern| {
        let mut g = local.into_dimension();
        for (x, o) in g.slice_mut().iter_mut().zip(&lo) {
            *x += o;
        }
        f.0.call((g.into_pattern(),))
    })
}

// ----- the d-functions, with the default layout -----

/// An array of zeros of shape `dims` with the default layout (Julia's
/// `dzeros(dims)`).
///
/// # Errors
/// As [`DArrayBuilder::init`].
///
/// # Cancel safety
/// As [`DArrayBuilder::init`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let d = cohort_darray::dzeros::<f64, _>((10, 10)).await.unwrap();
/// assert_eq!(d.sum().await.unwrap(), 0.0);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let d = cohort_darray::blocking::dzeros::<f64, _>((10, 10)).unwrap();
 assert_eq!(d.len(), 100);"
)]
pub async fn dzeros<T, Sh>(dims: Sh) -> Result<DArray<T, Sh::Dim>, DArrayError>
where
    T: Element + Zero,
    Sh: IntoDimension,
    Sh::Dim: 'static,
{
    DArray::<T, Sh::Dim>::builder(dims).zeros().await
}

/// An array of ones with the default layout (Julia's `dones(dims)`).
///
/// # Errors
/// As [`DArrayBuilder::init`].
///
/// # Cancel safety
/// As [`DArrayBuilder::init`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let d = cohort_darray::dones::<f64, _>(4).await.unwrap();
/// assert_eq!(d.sum().await.unwrap(), 4.0);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let d = cohort_darray::blocking::dones::<i32, _>(4).unwrap();
 assert_eq!(d.sum_blocking().unwrap(), 4);"
)]
pub async fn dones<T, Sh>(dims: Sh) -> Result<DArray<T, Sh::Dim>, DArrayError>
where
    T: Element + One,
    Sh: IntoDimension,
    Sh::Dim: 'static,
{
    DArray::<T, Sh::Dim>::builder(dims).ones().await
}

/// An array with every element `value`, default layout (Julia's `dfill(x, dims)`).
///
/// # Errors
/// As [`DArrayBuilder::init`].
///
/// # Cancel safety
/// As [`DArrayBuilder::init`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let d = cohort_darray::dfill(0.5f64, (2, 2)).await.unwrap();
/// assert_eq!(d.sum().await.unwrap(), 2.0);
/// # });
/// ```
#[cohort_macros::twin_fn(example = " let d = cohort_darray::blocking::dfill(true, 3).unwrap();
 assert!(d.gather_blocking().unwrap().iter().all(|x| *x));")]
pub async fn dfill<T, Sh>(value: T, dims: Sh) -> Result<DArray<T, Sh::Dim>, DArrayError>
where
    T: Element,
    Sh: IntoDimension,
    Sh::Dim: 'static,
{
    DArray::<T, Sh::Dim>::builder(dims).fill(value).await
}

/// Uniform random numbers, default layout (Julia's `drand(dims)`).
///
/// # Errors
/// As [`DArrayBuilder::init`].
///
/// # Cancel safety
/// As [`DArrayBuilder::init`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let d = cohort_darray::drand::<f64, _>(100).await.unwrap();
/// assert!(d.max().await.unwrap().unwrap() < 1.0);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let d = cohort_darray::blocking::drand::<f32, _>((3, 3)).unwrap();
 assert_eq!(d.len(), 9);"
)]
pub async fn drand<T, Sh>(dims: Sh) -> Result<DArray<T, Sh::Dim>, DArrayError>
where
    T: Element,
    Standard: Distribution<T>,
    Sh: IntoDimension,
    Sh::Dim: 'static,
{
    DArray::<T, Sh::Dim>::builder(dims).rand().await
}

/// Standard normal `f64`s, default layout (Julia's `drandn(dims)`).
///
/// # Errors
/// As [`DArrayBuilder::init`].
///
/// # Cancel safety
/// As [`DArrayBuilder::init`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let d = cohort_darray::drandn(100).await.unwrap();
/// assert_eq!(d.len(), 100);
/// # });
/// ```
#[cohort_macros::twin_fn(example = " let d = cohort_darray::blocking::drandn((2, 3)).unwrap();
 assert_eq!(d.shape(), &[2, 3]);")]
pub async fn drandn<Sh>(dims: Sh) -> Result<DArray<f64, Sh::Dim>, DArrayError>
where
    Sh: IntoDimension,
    Sh::Dim: 'static,
{
    DArray::<f64, Sh::Dim>::builder(dims).randn().await
}

/// Distributes a local array with the default layout (Julia's `distribute(a)`).
///
/// # Errors
/// As [`DArrayBuilder::distribute`].
///
/// # Cancel safety
/// As [`DArrayBuilder::init`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let a = ndarray::array![[1.0, 2.0], [3.0, 4.0]];
/// let d = cohort_darray::distribute(&a).await.unwrap();
/// assert_eq!(d.sum().await.unwrap(), 10.0);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let d = cohort_darray::blocking::distribute(&ndarray::arr1(&[1, 2, 3])).unwrap();
 assert_eq!(d.sum_blocking().unwrap(), 6);"
)]
pub async fn distribute<T, S, D>(a: &ArrayBase<S, D>) -> Result<DArray<T, D>, DArrayError>
where
    T: Element,
    S: Data<Elem = T>,
    D: Dimension + 'static,
{
    DArray::<T, D>::builder(a.raw_dim()).distribute(a).await
}

/// Distributes a local array laid out like `like` (Julia's `distribute(a, procs =
/// procs(d), dist = …)` to match another array).
///
/// # Errors
/// As [`DArrayBuilder::distribute`].
///
/// # Cancel safety
/// As [`DArrayBuilder::init`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let a = cohort_darray::dzeros::<f64, _>(3).await.unwrap();
/// let b = cohort_darray::distribute_like(&ndarray::arr1(&[1.0, 2.0, 3.0]), &a).await.unwrap();
/// assert!(a.same_layout(&b));
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let a = cohort_darray::blocking::dzeros::<f64, _>(2).unwrap();
 let b = cohort_darray::blocking::distribute_like(&ndarray::arr1(&[1.0, 2.0]), &a).unwrap();
 assert!(a.same_layout(&b));"
)]
pub async fn distribute_like<T, U, S, D>(
    a: &ArrayBase<S, D>,
    like: &DArray<U, D>,
) -> Result<DArray<T, D>, DArrayError>
where
    T: Element,
    S: Data<Elem = T>,
    D: Dimension + 'static,
{
    DArray::<T, D>::builder(a.raw_dim())
        .like(like)
        .distribute(a)
        .await
}

impl<T: Element, D: Dimension + 'static> DArray<T, D> {
    /// Assembles an array from chunks already made on separate processes (Julia's
    /// `DArray(reshape([@spawnat p rand(30,30) for p in workers()[1:4]], (2,2)))`):
    /// `grid` holds one `Future` per chunk, in chunk-grid position; each owner takes
    /// its future's value as its chunk, without moving it. Chunks of one grid row
    /// must have the same height, of one grid column the same width, and so on; each
    /// process may own one chunk.
    ///
    /// # Errors
    /// [`DArrayError::BadGrid`] if the chunks do not fit together or two are on one
    /// process; [`DArrayError::Call`] if a future failed or an owner cannot be
    /// reached.
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropped before it completes, no array is returned and every
    /// chunk adopted is released.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// use cohort_darray::DArray;
    /// let me = cohort_cluster::myid();
    /// let f = cohort_cluster::spawnat(me, || ndarray::Array2::<f64>::ones((3, 2)));
    /// let grid = ndarray::Array2::from_shape_vec((1, 1), vec![f]).unwrap();
    /// let d = DArray::from_futures(grid).await.unwrap();
    /// assert_eq!(d.shape(), &[3, 2]);
    /// # });
    /// ```
    #[cohort_macros::twin(example = " use cohort_darray::DArray;
 let f = cohort_cluster::spawnat(1, || ndarray::Array1::<i32>::ones(4));
 let d = DArray::from_futures_blocking(ndarray::Array1::from(vec![f])).unwrap();
 assert_eq!(d.sum_blocking().unwrap(), 4);")]
    pub async fn from_futures(grid: Array<Future<Array<T, D>>, D>) -> Result<Self, DArrayError>
    where
        Array<T, D>: serde::Serialize + serde::de::DeserializeOwned,
    {
        let cluster = Cluster::current();
        let dist = grid.shape().to_vec();
        // Chunk order: the first grid dimension fastest (Julia's).
        let futures: Vec<Future<Array<T, D>>> = grid.reversed_axes().iter().cloned().collect();
        let pids: Vec<Pid> = futures.iter().map(Future::owner).collect();
        let mut seen = pids.clone();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(DArrayError::BadGrid {
                reason: format!("two chunks are on process {}", w[0]),
            });
        }
        let provisional = Layout::from_sizes(dist.iter().map(|&n| vec![0; n]).collect(), pids);
        let d = DArray::<T, D>::reserve(&cluster, provisional);
        let calls = futures
            .into_iter()
            .zip(d.layout.pids.clone())
            .map(|(f, pid)| {
                (
                    pid,
                    cluster.remotecall_fetch(adopt_chunk::<T, D>, pid, (d.id(), f)),
                )
            })
            .collect();
        let shapes: Vec<Vec<usize>> = all_of(calls).await?;
        // Each grid line's chunk lengths must agree.
        let mut sizes: Vec<Vec<usize>> = dist.iter().map(|&n| vec![usize::MAX; n]).collect();
        for (k, shape) in shapes.iter().enumerate() {
            if shape.len() != dist.len() {
                return Err(DArrayError::BadGrid {
                    reason: format!("chunk {k} has {} dimensions", shape.len()),
                });
            }
            let pos = d.layout.grid_pos(k);
            for (dim, (&c, &n)) in pos.iter().zip(shape).enumerate() {
                let s = &mut sizes[dim][c];
                if *s == usize::MAX {
                    *s = n;
                } else if *s != n {
                    return Err(DArrayError::BadGrid {
                        reason: format!(
                            "chunks in grid line {c} of dimension {dim} have lengths {s} and {n}"
                        ),
                    });
                }
            }
        }
        let layout = Layout::from_sizes(sizes, d.layout.pids.clone());
        let mut d = d;
        d.layout = std::sync::Arc::new(layout);
        Ok(d)
    }
}

/// On an owner: takes a future's value (stored here) as the chunk of `id`.
fn adopt_chunk<T: Element, D: Dimension + 'static>(
    id: DArrayId,
    f: Future<Array<T, D>>,
) -> Result<Vec<usize>, ChunkFailure>
where
    Array<T, D>: serde::Serialize + serde::de::DeserializeOwned,
{
    let a = f
        .fetch_blocking()
        .map_err(|e| ChunkFailure::Nested(format!("the chunk's future failed: {e}")))?;
    let shape = a.shape().to_vec();
    let a = if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    };
    store::insert(&Cluster::current(), id, a)?;
    Ok(shape)
}
