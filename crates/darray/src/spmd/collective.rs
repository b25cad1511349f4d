//! Collectives: `barrier`, `bcast`, `scatter`, `gather`, `reduce`, `allreduce`,
//! among all processes of the run, built on the numbered point-to-point messages
//! (each under its own operation in the key, so they never match a user's
//! `sendto` with the same tag).

use std::sync::Arc;

use cohort_cluster::Pid;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::SpmdError;
use super::p2p::{decode, encode, recv_bytes, send_bytes};
use super::run::here;
use super::state::RunHere;
use super::tag::{Key, Op, Tag};

/// Waits until every process of the run has reached a `barrier` with this tag
/// (Julia's `barrier(; tag)`). A dissemination barrier: ⌈log₂ n⌉ rounds, in each of
/// which a process sends one empty message and waits for one, so two processes
/// meet after a single exchange.
///
/// # Errors
/// [`SpmdError::NotInRun`]; [`SpmdError::PeerExited`] if a process it waits for
/// leaves; [`SpmdError::Aborted`]; as [`sendto`](super::sendto) for sending.
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// spmd::blocking::spmd(|| -> Result<(), SpmdError> { spmd::barrier(()) }, ()).unwrap();
/// ```
pub fn barrier(tag: impl Into<Tag>) -> Result<(), SpmdError> {
    let run = here("barrier")?;
    let tag = tag.into();
    let n = run.pids.len();
    let me = run.rank();
    let mut step = 0u32;
    let mut dist = 1usize;
    while dist < n {
        let key = Key::new(Op::Barrier, tag.clone(), step);
        send_bytes(&run, run.pids[(me + dist) % n], key.clone(), Arc::default())?;
        recv_bytes(&run, run.pids[(me + n - dist) % n], &key)?;
        dist *= 2;
        step += 1;
    }
    Ok(())
}

fn bcast_in<T: Serialize + DeserializeOwned>(
    run: &RunHere,
    value: T,
    root: Pid,
    key: Key,
) -> Result<T, SpmdError> {
    run.member(root)?;
    if run.myid != root {
        return decode(&recv_bytes(run, root, &key)?);
    }
    // Encoded once: every receiver's message borrows the one buffer.
    let bytes = Arc::new(encode(&value)?);
    for &p in run.pids.iter().filter(|p| **p != root) {
        send_bytes(run, p, key.clone(), bytes.clone())?;
    }
    Ok(value)
}

/// Broadcasts `value` from process `root` to every process of the run, which each
/// return it (Julia's `bcast(data, pid; tag)`). Only the root's `value` is used: the
/// others may pass anything of the type (an empty `Vec`, say). The root encodes the
/// value once and sends it to each process directly.
///
/// # Errors
/// As [`barrier`]; [`SpmdError::NotAMember`] if `root` is not in the run;
/// [`SpmdError::Serialization`].
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// let r = spmd::blocking::spmd(|| -> Result<Vec<u8>, SpmdError> {
///     let root = spmd::run_pids()?[0];
///     spmd::bcast(if cohort_cluster::myid() == root { vec![1, 2] } else { vec![] }, root, ())
/// }, ()).unwrap();
/// assert_eq!(r, vec![vec![1, 2]]);
/// ```
pub fn bcast<T: Serialize + DeserializeOwned>(
    value: T,
    root: Pid,
    tag: impl Into<Tag>,
) -> Result<T, SpmdError> {
    let run = here("bcast")?;
    bcast_in(&run, value, root, Key::new(Op::Bcast, tag.into(), 0))
}

/// Hands the `i`-th of the root's `values` to the `i`-th process of the run (rank
/// order) and returns this process's one (Julia's `scatter(x, pid; tag)`, with `x`
/// already split into one part per process). Only the root's `values` are used;
/// the others pass an empty `Vec`.
///
/// # Errors
/// As [`bcast`]; [`SpmdError::WrongCount`] on the root if `values` does not hold
/// exactly one value per process (then nothing is sent, and the others' waits end
/// with [`SpmdError::Aborted`] when the driver stops the run).
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// let r = spmd::blocking::spmd(|| -> Result<char, SpmdError> {
///     spmd::scatter(vec!['a'], cohort_cluster::myid(), ())
/// }, ()).unwrap();
/// assert_eq!(r, vec!['a']);
/// ```
pub fn scatter<T: Serialize + DeserializeOwned>(
    values: Vec<T>,
    root: Pid,
    tag: impl Into<Tag>,
) -> Result<T, SpmdError> {
    let run = here("scatter")?;
    run.member(root)?;
    let key = Key::new(Op::Scatter, tag.into(), 0);
    if run.myid != root {
        return decode(&recv_bytes(&run, root, &key)?);
    }
    if values.len() != run.pids.len() {
        return Err(SpmdError::WrongCount {
            expected: run.pids.len(),
            got: values.len(),
        });
    }
    let mut mine = None;
    for (&p, v) in run.pids.iter().zip(values) {
        if p == root {
            mine = Some(v);
        } else {
            send_bytes(&run, p, key.clone(), Arc::new(encode(&v)?))?;
        }
    }
    Ok(mine.expect("the root is among the run's pids"))
}

fn gather_in<T: Serialize + DeserializeOwned>(
    run: &RunHere,
    value: T,
    root: Pid,
    key: &Key,
) -> Result<Option<Vec<T>>, SpmdError> {
    run.member(root)?;
    if run.myid != root {
        send_bytes(run, root, key.clone(), Arc::new(encode(&value)?))?;
        return Ok(None);
    }
    let mut out = Vec::with_capacity(run.pids.len());
    let mut own = Some(value);
    for &p in &run.pids {
        if p == root {
            out.push(own.take().expect("the root appears once"));
        } else {
            out.push(decode(&recv_bytes(run, p, key)?)?);
        }
    }
    Ok(Some(out))
}

/// Collects every process's `value` on process `root`, in rank order (Julia's
/// `gather(x, pid; tag)`): `Some` on the root, `None` on the others (which do not
/// wait for the root).
///
/// # Errors
/// As [`bcast`].
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// let r = spmd::blocking::spmd(|| -> Result<Option<Vec<u32>>, SpmdError> {
///     spmd::gather(cohort_cluster::myid(), 1, ())
/// }, ()).unwrap();
/// assert_eq!(r, vec![Some(vec![1])]);
/// ```
pub fn gather<T: Serialize + DeserializeOwned>(
    value: T,
    root: Pid,
    tag: impl Into<Tag>,
) -> Result<Option<Vec<T>>, SpmdError> {
    let run = here("gather")?;
    gather_in(&run, value, root, &Key::new(Op::Gather, tag.into(), 0))
}

/// Combines every process's `value` with `op` on process `root` (MPI's `Reduce`):
/// `Some(v₁ op v₂ op … op vₙ)` in rank order on the root, `None` elsewhere. The
/// order is fixed, so the result does not depend on timing (a floating-point sum
/// still differs in the last bits from a serial one in another order).
///
/// # Errors
/// As [`gather`].
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// let r = spmd::blocking::spmd(|| -> Result<Option<usize>, SpmdError> {
///     spmd::reduce(spmd::rank()?, |a, b| a + b, 1, ())
/// }, ()).unwrap();
/// assert_eq!(r, vec![Some(0)]);
/// ```
pub fn reduce<T: Serialize + DeserializeOwned>(
    value: T,
    op: impl Fn(T, T) -> T,
    root: Pid,
    tag: impl Into<Tag>,
) -> Result<Option<T>, SpmdError> {
    let run = here("reduce")?;
    let all = gather_in(&run, value, root, &Key::new(Op::Reduce, tag.into(), 0))?;
    Ok(all.and_then(|v| v.into_iter().reduce(op)))
}

/// Combines every process's `value` with `op` and returns the result on every
/// process (MPI's `Allreduce`): a [`reduce`] onto the run's first process, then a
/// [`bcast`] from it, so every process gets the same bits.
///
/// # Errors
/// As [`reduce`].
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// let r = spmd::blocking::spmd(|| -> Result<f64, SpmdError> {
///     spmd::allreduce(1.5, f64::max, ())
/// }, ()).unwrap();
/// assert_eq!(r, vec![1.5]);
/// ```
pub fn allreduce<T: Serialize + DeserializeOwned>(
    value: T,
    op: impl Fn(T, T) -> T,
    tag: impl Into<Tag>,
) -> Result<T, SpmdError> {
    let run = here("allreduce")?;
    let tag = tag.into();
    let root = run.pids[0];
    let reduced = gather_in(&run, value, root, &Key::new(Op::Allreduce, tag.clone(), 0))?
        .and_then(|v| v.into_iter().reduce(op));
    match reduced {
        Some(v) => bcast_in(&run, v, root, Key::new(Op::Allreduce, tag, 1)),
        None => decode(&recv_bytes(&run, root, &Key::new(Op::Allreduce, tag, 1))?),
    }
}
