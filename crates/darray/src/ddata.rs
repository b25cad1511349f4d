//! [`DData`]: one value per process (Julia's `ddata`, a `DArray{T,1,T}`).

use cohort_cluster::{Cluster, Pid, RemoteFn};
use ndarray::{Array1, Ix1};

use crate::build::Ranges;
use crate::darray::DArray;
use crate::element::Element;
use crate::error::DArrayError;
use crate::transfer::Shipped;

/// One value of any [`Element`] type per process, kept where it was made (Julia's
/// `ddata()`, whose local parts need not be arrays). It is a distributed vector with
/// one element per process underneath, so it is released exactly as a
/// [`DArray`] is.
///
/// ```
/// let d = cohort_darray::blocking::ddata(|pid: cohort_cluster::Pid| format!("p{pid}")).unwrap();
/// assert_eq!(d.gather_blocking().unwrap(), vec!["p1".to_string()]);
/// assert_eq!(d.local().unwrap(), "p1");
/// ```
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(bound = "")]
pub struct DData<T> {
    array: DArray<T, Ix1>,
}

/// One value per process of `pids`: `init(pid)` runs on each at once (Julia's
/// `ddata(init = …, pids = …)`).
///
/// # Errors
/// [`DArrayError::NoProcs`], [`DArrayError::DuplicateProc`]; as
/// [`DArrayBuilder::init`](crate::DArrayBuilder::init).
///
/// # Cancel safety
/// As [`DArrayBuilder::init`](crate::DArrayBuilder::init).
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let d = cohort_darray::ddata_on(&[1], |pid: cohort_cluster::Pid| pid * 10).await.unwrap();
/// assert_eq!(d.gather().await.unwrap(), vec![10]);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let d = cohort_darray::blocking::ddata_on(&[1], |p: cohort_cluster::Pid| p).unwrap();
 assert_eq!(d.procs(), &[1]);"
)]
pub async fn ddata_on<T, F>(pids: &[Pid], init: F) -> Result<DData<T>, DArrayError>
where
    T: Element,
    F: RemoteFn<(Pid,), Output = T> + Clone,
{
    let array = DArray::<T, Ix1>::builder(pids.len())
        .procs(pids)
        .dist(&[pids.len()])
        .init(cohort_cluster::Closure::new(
            Shipped::new(init),
            ddata_init::<T, F>,
        ))
        .await?;
    Ok(DData { array })
}

/// One value per worker (this process alone when there are none): `init(pid)` runs
/// on each (Julia's `ddata(init = …)`, whose `pids` default to `workers()`).
///
/// # Errors
/// As [`ddata_on`].
///
/// # Cancel safety
/// As [`ddata_on`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let d = cohort_darray::ddata(|_pid: cohort_cluster::Pid| vec![0u8; 3]).await.unwrap();
/// assert_eq!(d.local().unwrap().len(), 3);
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let d = cohort_darray::blocking::ddata(|_p: cohort_cluster::Pid| 1u64).unwrap();
 assert_eq!(d.gather_blocking().unwrap().iter().sum::<u64>() as usize, d.procs().len());"
)]
pub async fn ddata<T, F>(init: F) -> Result<DData<T>, DArrayError>
where
    T: Element,
    F: RemoteFn<(Pid,), Output = T> + Clone,
{
    ddata_on(&default_pids(), init).await
}

/// Distributes `values`, one per process of `pids` (Julia's `ddata(data = v,
/// pids = …)` with `length(v) == length(pids)`).
///
/// # Errors
/// [`DArrayError::ShapeMismatch`] if the lengths differ; as [`ddata_on`].
///
/// # Cancel safety
/// As [`ddata_on`].
///
/// ```
/// # cohort_cluster::runtime::block_on(async {
/// let d = cohort_darray::ddata_from(vec!["a".to_string()], &[1]).await.unwrap();
/// assert_eq!(d.get(0).await.unwrap(), "a");
/// # });
/// ```
#[cohort_macros::twin_fn(
    example = " let d = cohort_darray::blocking::ddata_from(vec![7u8], &[1]).unwrap();
 assert_eq!(d.local().unwrap(), 7);"
)]
pub async fn ddata_from<T: Element>(values: Vec<T>, pids: &[Pid]) -> Result<DData<T>, DArrayError> {
    if values.len() != pids.len() {
        return Err(DArrayError::ShapeMismatch {
            expected: vec![pids.len()],
            got: vec![values.len()],
        });
    }
    let array = DArray::<T, Ix1>::builder(pids.len())
        .procs(pids)
        .dist(&[pids.len()])
        .distribute(&Array1::from(values))
        .await?;
    Ok(DData { array })
}

fn default_pids() -> Vec<Pid> {
    let c = Cluster::current();
    let w = c.workers();
    if w.is_empty() {
        vec![c.myid()]
    } else {
        w
    }
}

fn ddata_init<T: Element, F: RemoteFn<(Pid,), Output = T>>(
    f: &Shipped<F, (Pid,)>,
    _r: Ranges,
) -> Array1<T> {
    Array1::from_elem(1, f.0.call((Cluster::current().myid(),)))
}

impl<T: Element> DData<T> {
    /// The processes holding a value, in order.
    ///
    /// ```
    /// let d = cohort_darray::blocking::ddata_on(&[1], |p: cohort_cluster::Pid| p).unwrap();
    /// assert_eq!(d.procs(), &[1]);
    /// ```
    pub fn procs(&self) -> &[Pid] {
        self.array.procs()
    }

    /// The distributed vector underneath (one element per process).
    ///
    /// ```
    /// let d = cohort_darray::blocking::ddata_on(&[1], |p: cohort_cluster::Pid| p).unwrap();
    /// assert_eq!(d.as_darray().len(), 1);
    /// ```
    pub fn as_darray(&self) -> &DArray<T, Ix1> {
        &self.array
    }

    /// This process's value, cloned (Julia's `d[:L]`).
    ///
    /// # Errors
    /// As [`DArray::localpart`].
    ///
    /// ```
    /// let d = cohort_darray::blocking::ddata_on(&[1], |p: cohort_cluster::Pid| p + 1).unwrap();
    /// assert_eq!(d.local().unwrap(), 2);
    /// ```
    pub fn local(&self) -> Result<T, DArrayError> {
        Ok(self.array.localpart()?[0].clone())
    }

    /// Runs `f` on this process's value in place, without cloning it.
    ///
    /// # Errors
    /// As [`DArray::localpart`].
    ///
    /// ```
    /// let d = cohort_darray::blocking::ddata_on(&[1], |_p: cohort_cluster::Pid| vec![1, 2]).unwrap();
    /// assert_eq!(d.with_local(|v| v.len()).unwrap(), 2);
    /// ```
    pub fn with_local<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, DArrayError> {
        Ok(f(&self.array.localpart()?[0]))
    }

    /// Sets this process's value (Julia's `d[:L] = v`).
    ///
    /// # Errors
    /// As [`DArray::localpart`].
    ///
    /// ```
    /// let d = cohort_darray::blocking::ddata_on(&[1], |_p: cohort_cluster::Pid| 0i32).unwrap();
    /// d.set_local(5).unwrap();
    /// assert_eq!(d.local().unwrap(), 5);
    /// ```
    pub fn set_local(&self, value: T) -> Result<(), DArrayError> {
        self.array.localpart_mut()?.view_mut()[0] = value;
        Ok(())
    }

    /// The value of the `i`-th process of [`procs`](Self::procs) (Julia's `d[i]`).
    ///
    /// # Errors
    /// As [`DArray::get`].
    ///
    /// # Cancel safety
    /// Dropping it abandons the wait.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::ddata_on(&[1], |p: cohort_cluster::Pid| p).await.unwrap();
    /// assert_eq!(d.get(0).await.unwrap(), 1);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::ddata_on(&[1], |p: cohort_cluster::Pid| p).unwrap();
 assert_eq!(d.get_blocking(0).unwrap(), 1);"
    )]
    pub async fn get(&self, i: usize) -> Result<T, DArrayError> {
        self.array.get([i]).await
    }

    /// Every process's value, in [`procs`](Self::procs) order (Julia's `gather(d)`):
    /// one request per process, all at once.
    ///
    /// # Errors
    /// As [`DArray::gather`].
    ///
    /// # Cancel safety
    /// Dropping it abandons the wait.
    ///
    /// ```
    /// # cohort_cluster::runtime::block_on(async {
    /// let d = cohort_darray::ddata_on(&[1], |p: cohort_cluster::Pid| p as u64).await.unwrap();
    /// assert_eq!(d.gather().await.unwrap(), vec![1]);
    /// # });
    /// ```
    #[cohort_macros::twin(
        example = " let d = cohort_darray::blocking::ddata_on(&[1], |p: cohort_cluster::Pid| p).unwrap();
 assert_eq!(d.gather_blocking().unwrap(), vec![1]);"
    )]
    pub async fn gather(&self) -> Result<Vec<T>, DArrayError> {
        Ok(self.array.gather().await?.to_vec())
    }

    /// Releases every process's value now (as [`DArray::close`]).
    ///
    /// ```
    /// let d = cohort_darray::blocking::ddata_on(&[1], |p: cohort_cluster::Pid| p).unwrap();
    /// assert!(d.close());
    /// assert!(d.local().is_err());
    /// ```
    pub fn close(&self) -> bool {
        self.array.close()
    }
}
