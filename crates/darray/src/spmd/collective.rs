//! Collectives: `barrier`, `bcast`, `scatter`, `gather`, `reduce`, `allreduce`,
//! among all processes of the run (the free functions) or a [`Group`] of them
//! (Julia's `pids` keyword), built on the numbered point-to-point messages (each
//! under its own operation in the key, so they never match a user's `sendto` with
//! the same tag).

use bytes::Bytes;

use cohort_cluster::Pid;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::SpmdError;
use super::p2p::{decode, decode_received, encode_for, recv_bytes, send_bytes};
use super::run::here;
use super::state::RunHere;
use super::tag::{Key, Op, Tag};

/// Some of the run's processes, for collectives among them only (Julia's `pids`
/// keyword of `barrier`, `bcast`, `scatter` and `gather`). Every process of the
/// group calls the collective; processes outside it do not.
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// let r = spmd::blocking::spmd(|| -> Result<u32, SpmdError> {
///     let g = spmd::group(&[cohort_cluster::myid()])?;
///     g.barrier(())?;
///     g.allreduce(4u32, |a, b| a + b, ())
/// }, ()).unwrap();
/// assert_eq!(r, vec![4]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pids: Vec<Pid>,
}

/// A [`Group`] of `pids` (in this rank order) of the run this thread is in.
///
/// # Errors
/// [`SpmdError::NotInRun`] outside a run; [`SpmdError::NoProcesses`];
/// [`SpmdError::DuplicatePid`]; [`SpmdError::NotAMember`] for a pid not in the run.
///
/// ```
/// assert!(cohort_darray::spmd::group(&[1]).is_err()); // not in a run
/// ```
pub fn group(pids: &[Pid]) -> Result<Group, SpmdError> {
    let run = here("group")?;
    if pids.is_empty() {
        return Err(SpmdError::NoProcesses);
    }
    for (i, p) in pids.iter().enumerate() {
        if pids[..i].contains(p) {
            return Err(SpmdError::DuplicatePid { pid: *p });
        }
        run.member(*p)?;
    }
    Ok(Group {
        pids: pids.to_vec(),
    })
}

/// This process's rank in `pids`.
fn rank_in(run: &RunHere, pids: &[Pid]) -> Result<usize, SpmdError> {
    pids.iter()
        .position(|p| *p == run.myid)
        .ok_or_else(|| SpmdError::NotAMember {
            pid: run.myid,
            pids: pids.to_vec(),
        })
}

fn in_group(pids: &[Pid], pid: Pid) -> Result<(), SpmdError> {
    if pids.contains(&pid) {
        Ok(())
    } else {
        Err(SpmdError::NotAMember {
            pid,
            pids: pids.to_vec(),
        })
    }
}

fn barrier_in(run: &RunHere, pids: &[Pid], tag: Tag) -> Result<(), SpmdError> {
    let n = pids.len();
    let me = rank_in(run, pids)?;
    let mut step = 0u32;
    let mut dist = 1usize;
    while dist < n {
        let key = Key::new(Op::Barrier, tag.clone(), step);
        send_bytes(run, pids[(me + dist) % n], key.clone(), Bytes::new())?;
        recv_bytes(run, pids[(me + n - dist) % n], &key)?;
        dist *= 2;
        step += 1;
    }
    Ok(())
}

fn bcast_in<T: Serialize + DeserializeOwned>(
    run: &RunHere,
    pids: &[Pid],
    value: T,
    root: Pid,
    key: Key,
) -> Result<T, SpmdError> {
    if run.myid == root {
        // The encoding comes back to the run's spare when its last message is
        // written (`Recycled`).
        bcast_bytes(run, pids, root, key, Some(encode_for(run, &value)?))?;
        Ok(value)
    } else {
        decode_received(run, bcast_bytes(run, pids, root, key, None)?)
    }
}

fn bcast_into_in<E: bytemuck::Pod>(
    run: &RunHere,
    pids: &[Pid],
    buf: &mut [E],
    root: Pid,
    key: Key,
) -> Result<(), SpmdError> {
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(buf);
    if run.myid == root {
        // Copied once, into the run's spare (pages already there after the first):
        // the messages are written from it after this returns, and the caller may
        // change its buffer at once.
        let mut out = run.ctx.take_spare();
        if out.capacity() < bytes.len() {
            out = cohort_cluster::codec::large_vec(bytes.len());
        }
        out.extend_from_slice(bytes);
        bcast_bytes(run, pids, root, key, Some(run.ctx.recyclable(out)))?;
        return Ok(());
    }
    let got = match tree_of(run, pids, root)? {
        // A leaf forwards nothing: the message is written into `buf` as it comes.
        (Some(from), children) if children.is_empty() => {
            run.member(from)?;
            match run.ctx.receive_into(run, from, &key, bytes)? {
                None => return Ok(()),
                Some(got) => got,
            }
        }
        _ => bcast_bytes(run, pids, root, key, None)?,
    };
    if got.len() != bytes.len() {
        return Err(SpmdError::WrongLength {
            root,
            sent: got.len(),
            buffer: bytes.len(),
        });
    }
    bytes.copy_from_slice(&got);
    run.ctx.give_back(got);
    Ok(())
}

/// Broadcasts the root's bytes (`mine`, which only the root has) down a binomial tree
/// rooted at `root` (see `tree`): each process gets them from its parent — not
/// necessarily the root — and forwards them, as they came, to its children.
fn bcast_bytes(
    run: &RunHere,
    pids: &[Pid],
    root: Pid,
    key: Key,
    mine: Option<Bytes>,
) -> Result<Bytes, SpmdError> {
    let (parent, children) = tree_of(run, pids, root)?;
    let bytes = match (parent, mine) {
        (Some(p), _) => recv_bytes(run, p, &key)?,
        (None, Some(b)) => b,
        (None, None) => unreachable!("only the root has no parent, and it has the value"),
    };
    for c in children {
        send_bytes(run, c, key.clone(), bytes.clone())?;
    }
    Ok(bytes)
}

/// This process's parent (none for the root) and children in the broadcast tree of
/// `pids` rooted at `root` (see [`tree`]), as pids.
fn tree_of(run: &RunHere, pids: &[Pid], root: Pid) -> Result<(Option<Pid>, Vec<Pid>), SpmdError> {
    in_group(pids, root)?;
    let me = rank_in(run, pids)?;
    let n = pids.len();
    let root_rank = pids.iter().position(|p| *p == root).expect("checked");
    let pid = |rel: usize| pids[(rel + root_rank) % n];
    let (parent, children) = tree((me + n - root_rank) % n, n);
    Ok((parent.map(pid), children.into_iter().map(pid).collect()))
}

/// The binomial tree of a broadcast among `n` processes, ranks relative to the root
/// (0): the parent of `rel` (none for the root) and its children, farthest first. The
/// root sends ⌈log₂ n⌉ messages instead of n − 1; with two processes it is one.
fn tree(rel: usize, n: usize) -> (Option<usize>, Vec<usize>) {
    let mut mask = 1usize;
    let mut parent = None;
    while mask < n {
        if rel & mask != 0 {
            parent = Some(rel - mask);
            break;
        }
        mask <<= 1;
    }
    let mut children = Vec::new();
    mask >>= 1;
    while mask > 0 {
        if rel + mask < n {
            children.push(rel + mask);
        }
        mask >>= 1;
    }
    (parent, children)
}

fn scatter_in<T: Serialize + DeserializeOwned>(
    run: &RunHere,
    pids: &[Pid],
    values: Vec<T>,
    root: Pid,
    tag: Tag,
) -> Result<T, SpmdError> {
    in_group(pids, root)?;
    rank_in(run, pids)?;
    let key = Key::new(Op::Scatter, tag, 0);
    if run.myid != root {
        return decode(&recv_bytes(run, root, &key)?);
    }
    if values.len() != pids.len() {
        return Err(SpmdError::WrongCount {
            expected: pids.len(),
            got: values.len(),
        });
    }
    let mut mine = None;
    for (&p, v) in pids.iter().zip(values) {
        if p == root {
            mine = Some(v);
        } else {
            send_bytes(run, p, key.clone(), encode_for(run, &v)?)?;
        }
    }
    Ok(mine.expect("the root is in the group"))
}

fn gather_in<T: Serialize + DeserializeOwned>(
    run: &RunHere,
    pids: &[Pid],
    value: T,
    root: Pid,
    key: &Key,
) -> Result<Option<Vec<T>>, SpmdError> {
    in_group(pids, root)?;
    rank_in(run, pids)?;
    if run.myid != root {
        send_bytes(run, root, key.clone(), encode_for(run, &value)?)?;
        return Ok(None);
    }
    let mut out = Vec::with_capacity(pids.len());
    let mut own = Some(value);
    for &p in pids {
        if p == root {
            out.push(own.take().expect("the root appears once"));
        } else {
            out.push(decode(&recv_bytes(run, p, key)?)?);
        }
    }
    Ok(Some(out))
}

fn reduce_in<T: Serialize + DeserializeOwned>(
    run: &RunHere,
    pids: &[Pid],
    value: T,
    op: impl Fn(T, T) -> T,
    root: Pid,
    tag: Tag,
) -> Result<Option<T>, SpmdError> {
    let all = gather_in(run, pids, value, root, &Key::new(Op::Reduce, tag, 0))?;
    Ok(all.and_then(|v| v.into_iter().reduce(op)))
}

fn allreduce_in<T: Serialize + DeserializeOwned>(
    run: &RunHere,
    pids: &[Pid],
    value: T,
    op: impl Fn(T, T) -> T,
    tag: Tag,
) -> Result<T, SpmdError> {
    let root = pids[0];
    let reduced = gather_in(
        run,
        pids,
        value,
        root,
        &Key::new(Op::Allreduce, tag.clone(), 0),
    )?
    .and_then(|v| v.into_iter().reduce(op));
    // The result goes down the same tree as a broadcast: a process gets it from its
    // parent in the tree, which is the root only for some of them.
    let key = Key::new(Op::Allreduce, tag, 1);
    match reduced {
        Some(v) => bcast_in(run, pids, v, root, key),
        None => decode_received(run, bcast_bytes(run, pids, root, key, None)?),
    }
}

impl Group {
    /// The group's processes, in rank order.
    ///
    /// ```
    /// use cohort_darray::spmd::{self, SpmdError};
    /// spmd::blocking::spmd(|| -> Result<(), SpmdError> {
    ///     assert_eq!(spmd::group(&[1])?.pids(), &[1]);
    ///     Ok(())
    /// }, ()).unwrap();
    /// ```
    pub fn pids(&self) -> &[Pid] {
        &self.pids
    }

    /// [`barrier`] among the group.
    ///
    /// # Errors
    /// As [`barrier`]; [`SpmdError::NotAMember`] if this process is not in the group.
    ///
    /// ```
    /// use cohort_darray::spmd::{self, SpmdError};
    /// spmd::blocking::spmd(|| -> Result<(), SpmdError> { spmd::group(&[1])?.barrier("g") }, ()).unwrap();
    /// ```
    pub fn barrier(&self, tag: impl Into<Tag>) -> Result<(), SpmdError> {
        barrier_in(&*here("barrier")?, &self.pids, tag.into())
    }

    /// [`bcast`] among the group (`root` must be in it).
    ///
    /// # Errors
    /// As [`bcast`]; [`SpmdError::NotAMember`] if this process or `root` is not in
    /// the group.
    ///
    /// ```
    /// use cohort_darray::spmd::{self, SpmdError};
    /// let r = spmd::blocking::spmd(|| -> Result<u8, SpmdError> { spmd::group(&[1])?.bcast(9u8, 1, ()) }, ()).unwrap();
    /// assert_eq!(r, vec![9]);
    /// ```
    pub fn bcast<T: Serialize + DeserializeOwned>(
        &self,
        value: T,
        root: Pid,
        tag: impl Into<Tag>,
    ) -> Result<T, SpmdError> {
        let key = Key::new(Op::Bcast, tag.into(), 0);
        bcast_in(&*here("bcast")?, &self.pids, value, root, key)
    }

    /// [`bcast_into`] among the group.
    ///
    /// # Errors
    /// As [`bcast_into`]; [`SpmdError::NotAMember`] as [`Group::bcast`].
    ///
    /// ```
    /// use cohort_darray::spmd::{self, SpmdError};
    /// let r = spmd::blocking::spmd(|| -> Result<[u8; 1], SpmdError> {
    ///     let mut b = [9u8];
    ///     spmd::group(&[1])?.bcast_into(&mut b, 1, ())?;
    ///     Ok(b)
    /// }, ()).unwrap();
    /// assert_eq!(r, vec![[9]]);
    /// ```
    pub fn bcast_into<E: bytemuck::Pod>(
        &self,
        buf: &mut [E],
        root: Pid,
        tag: impl Into<Tag>,
    ) -> Result<(), SpmdError> {
        let key = Key::new(Op::BcastInto, tag.into(), 0);
        bcast_into_in(&*here("bcast_into")?, &self.pids, buf, root, key)
    }

    /// [`scatter`] among the group: one value per member, in the group's order.
    ///
    /// # Errors
    /// As [`scatter`]; [`SpmdError::NotAMember`] as [`Group::bcast`].
    ///
    /// ```
    /// use cohort_darray::spmd::{self, SpmdError};
    /// let r = spmd::blocking::spmd(|| -> Result<u8, SpmdError> { spmd::group(&[1])?.scatter(vec![3u8], 1, ()) }, ()).unwrap();
    /// assert_eq!(r, vec![3]);
    /// ```
    pub fn scatter<T: Serialize + DeserializeOwned>(
        &self,
        values: Vec<T>,
        root: Pid,
        tag: impl Into<Tag>,
    ) -> Result<T, SpmdError> {
        scatter_in(&*here("scatter")?, &self.pids, values, root, tag.into())
    }

    /// [`gather`] among the group, in the group's order.
    ///
    /// # Errors
    /// As [`gather`]; [`SpmdError::NotAMember`] as [`Group::bcast`].
    ///
    /// ```
    /// use cohort_darray::spmd::{self, SpmdError};
    /// let r = spmd::blocking::spmd(|| -> Result<Option<Vec<u8>>, SpmdError> { spmd::group(&[1])?.gather(2u8, 1, ()) }, ()).unwrap();
    /// assert_eq!(r, vec![Some(vec![2])]);
    /// ```
    pub fn gather<T: Serialize + DeserializeOwned>(
        &self,
        value: T,
        root: Pid,
        tag: impl Into<Tag>,
    ) -> Result<Option<Vec<T>>, SpmdError> {
        let key = Key::new(Op::Gather, tag.into(), 0);
        gather_in(&*here("gather")?, &self.pids, value, root, &key)
    }

    /// [`reduce`] among the group, combined in the group's order.
    ///
    /// # Errors
    /// As [`reduce`]; [`SpmdError::NotAMember`] as [`Group::bcast`].
    ///
    /// ```
    /// use cohort_darray::spmd::{self, SpmdError};
    /// let r = spmd::blocking::spmd(|| -> Result<Option<u8>, SpmdError> { spmd::group(&[1])?.reduce(2u8, |a, b| a + b, 1, ()) }, ()).unwrap();
    /// assert_eq!(r, vec![Some(2)]);
    /// ```
    pub fn reduce<T: Serialize + DeserializeOwned>(
        &self,
        value: T,
        op: impl Fn(T, T) -> T,
        root: Pid,
        tag: impl Into<Tag>,
    ) -> Result<Option<T>, SpmdError> {
        reduce_in(&*here("reduce")?, &self.pids, value, op, root, tag.into())
    }

    /// [`allreduce`] among the group.
    ///
    /// # Errors
    /// As [`allreduce`]; [`SpmdError::NotAMember`] if this process is not in the
    /// group.
    ///
    /// ```
    /// use cohort_darray::spmd::{self, SpmdError};
    /// let r = spmd::blocking::spmd(|| -> Result<u8, SpmdError> { spmd::group(&[1])?.allreduce(2u8, |a, b| a + b, ()) }, ()).unwrap();
    /// assert_eq!(r, vec![2]);
    /// ```
    pub fn allreduce<T: Serialize + DeserializeOwned>(
        &self,
        value: T,
        op: impl Fn(T, T) -> T,
        tag: impl Into<Tag>,
    ) -> Result<T, SpmdError> {
        allreduce_in(&*here("allreduce")?, &self.pids, value, op, tag.into())
    }
}

/// Waits until every process of the run has reached a `barrier` with this tag
/// (Julia's `barrier(; tag)`; [`Group::barrier`] for some of the processes). A
/// dissemination barrier: ⌈log₂ n⌉ rounds, in each of which a process sends one
/// empty message and waits for one, so two processes meet after a single exchange.
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
    barrier_in(&run, &run.pids, tag.into())
}

/// Broadcasts `value` from process `root` to every process of the run, which each
/// return it (Julia's `bcast(data, pid; tag)`). Only the root's `value` is used: the
/// others may pass anything of the type (an empty `Vec`, say). The root encodes the
/// value once; it travels down a binomial tree (each process forwards the bytes it
/// got), so the root sends ⌈log₂ n⌉ messages, not n − 1.
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
    bcast_in(
        &run,
        &run.pids,
        value,
        root,
        Key::new(Op::Bcast, tag.into(), 0),
    )
}

/// Broadcasts the root's `buf` into every other process's `buf`, which must be as
/// long (MPI's `MPI_Bcast`; `bcast` returns a new value instead). For arrays of
/// plain numbers that a process broadcasts again and again: nothing is encoded,
/// and each receiver writes into memory it already has, instead of a fresh array
/// per broadcast. On the root `buf` is only read; it is copied once before this
/// returns, so it may be changed at once. Every process of the run calls
/// `bcast_into` (a `bcast` with the same tag does not match it).
///
/// # Errors
/// As [`bcast`]; [`SpmdError::WrongLength`] on a process whose `buf` is not as
/// long as the root's (nothing is written into it; the others are not affected).
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// let r = spmd::blocking::spmd(|| -> Result<Vec<f64>, SpmdError> {
///     let root = spmd::run_pids()?[0];
///     let mut buf = if cohort_cluster::myid() == root { vec![1.5, 2.5] } else { vec![0.0; 2] };
///     spmd::bcast_into(&mut buf, root, ())?;
///     Ok(buf)
/// }, ()).unwrap();
/// assert_eq!(r, vec![vec![1.5, 2.5]]);
/// ```
pub fn bcast_into<E: bytemuck::Pod>(
    buf: &mut [E],
    root: Pid,
    tag: impl Into<Tag>,
) -> Result<(), SpmdError> {
    let run = here("bcast_into")?;
    bcast_into_in(
        &run,
        &run.pids,
        buf,
        root,
        Key::new(Op::BcastInto, tag.into(), 0),
    )
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
    scatter_in(&run, &run.pids, values, root, tag.into())
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
    gather_in(
        &run,
        &run.pids,
        value,
        root,
        &Key::new(Op::Gather, tag.into(), 0),
    )
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
    reduce_in(&run, &run.pids, value, op, root, tag.into())
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
    allreduce_in(&run, &run.pids, value, op, tag.into())
}

#[cfg(test)]
mod tests {
    use super::tree;

    #[test]
    fn the_broadcast_tree_reaches_everyone_once_from_a_parent_that_has_it() {
        for n in 1..=70 {
            let mut reached = vec![0u32; n];
            // In the order a broadcast goes: a process sends once it has the value.
            let mut has = vec![false; n];
            has[0] = true;
            let mut frontier = vec![0usize];
            while let Some(p) = frontier.pop() {
                for c in tree(p, n).1 {
                    assert!(has[p]);
                    assert_eq!(tree(c, n).0, Some(p), "n {n}: parent of {c}");
                    reached[c] += 1;
                    has[c] = true;
                    frontier.push(c);
                }
            }
            assert_eq!(tree(0, n).0, None);
            assert!(reached[1..].iter().all(|r| *r == 1), "n {n}: {reached:?}");
            assert!(tree(0, n).1.len() <= (usize::BITS - n.leading_zeros()) as usize);
        }
    }
}
