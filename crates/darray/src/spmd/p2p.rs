//! Point to point: `sendto`, `recvfrom`, `recvfrom_any`, and the byte-level sending
//! and receiving the collectives share.

use bytes::Bytes;

use cohort_cluster::codec;
use cohort_cluster::{CallError, Pid};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::SpmdError;
use super::run::here;
use super::state::{remote, RunHere};
use super::tag::{Key, Op, Tag};
use super::wire::{fragment_size, Chunk};

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SpmdError> {
    codec::decode(bytes).map_err(|e| SpmdError::Serialization(e.message))
}

/// Encodes `value` for sending, into the run's spare buffer if it has one (see
/// `CtxState::give_back`, `Recycled`).
pub(crate) fn encode_for<T: Serialize + ?Sized>(
    run: &RunHere,
    value: &T,
) -> Result<Bytes, SpmdError> {
    let mut out = run.ctx.take_spare();
    codec::encode_into(value, &mut out).map_err(|e| SpmdError::Serialization(e.message))?;
    // Spliced into the messages that carry it: the memory comes back to the spare
    // once the last of them is written.
    Ok(run.ctx.recyclable(out))
}

/// Decodes a received message, then gives its memory back to the run's spare.
pub(crate) fn decode_received<T: DeserializeOwned>(
    run: &RunHere,
    bytes: Bytes,
) -> Result<T, SpmdError> {
    let v = decode(&bytes);
    run.ctx.give_back(bytes);
    v
}

/// Sends `payload` to `to` under `key`: straight to its process, numbered so that it
/// is matched in order, in fragments if it is large (see `wire`).
pub(crate) fn send_bytes(
    run: &RunHere,
    to: Pid,
    key: Key,
    payload: Bytes,
) -> Result<(), SpmdError> {
    run.member(to)?;
    let total = payload.len();
    if to == run.myid {
        let seq = run.ctx.next_send_seq(to);
        run.ctx.deliver(to, seq, key, total, payload);
        return Ok(());
    }
    let frag = fragment_size();
    let mut start = 0;
    loop {
        let end = total.min(start + frag);
        let seq = run.ctx.next_send_seq(to);
        let chunk = Chunk::Out {
            buf: payload.clone(),
            range: start..end,
        };
        run.cluster
            .remote_do(
                remote::deliver,
                to,
                (run.ctx.id, run.myid, seq, key.clone(), total as u64, chunk),
            )
            .map_err(|source| match source {
                CallError::WorkerExited { .. } | CallError::NoSuchProcess { .. } => {
                    SpmdError::PeerExited { pid: to }
                }
                CallError::TopologyForbids { .. } => SpmdError::TopologyForbids {
                    topology: run.cluster.topology(),
                },
                source => SpmdError::Send { pid: to, source },
            })?;
        start = end;
        if start >= total {
            // The run's large encodings come back to its spare by themselves when
            // the last message spliced from them is written (`Recycled`).
            return Ok(());
        }
    }
}

/// Waits for the next message from `from` under `key`.
pub(crate) fn recv_bytes(run: &RunHere, from: Pid, key: &Key) -> Result<Bytes, SpmdError> {
    run.member(from)?;
    run.ctx.wait_for(run, &[from], |mb| mb.take(from, key))
}

/// Sends `value` to process `pid` of the run (Julia's `sendto(pid, data; tag)`).
/// It does not wait for the receiver: the value is on its way when this returns.
/// Messages from one process to another are received in the order sent, whatever
/// their tags.
///
/// # Errors
/// [`SpmdError::NotInRun`] outside a run; [`SpmdError::NotAMember`] if `pid` is
/// not in the run; [`SpmdError::Serialization`]; [`SpmdError::PeerExited`] if `pid`
/// has left; [`SpmdError::TopologyForbids`]; [`SpmdError::Send`] otherwise.
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// let r = cohort_darray::spmd::blocking::spmd(
///     || -> Result<String, SpmdError> {
///         let me = cohort_cluster::myid();
///         spmd::sendto(me, &"to myself".to_string(), "note")?;
///         spmd::recvfrom(me, "note")
///     },
///     (),
/// )
/// .unwrap();
/// assert_eq!(r, vec!["to myself".to_string()]);
/// ```
pub fn sendto<T: Serialize + ?Sized>(
    pid: Pid,
    value: &T,
    tag: impl Into<Tag>,
) -> Result<(), SpmdError> {
    let run = here("sendto")?;
    send_bytes(
        &run,
        pid,
        Key::new(Op::User, tag.into(), 0),
        encode_for(&run, value)?,
    )
}

/// Waits for the next value that process `pid` sent here with `tag` (Julia's
/// `recvfrom(pid; tag)`).
///
/// # Errors
/// [`SpmdError::NotInRun`]; [`SpmdError::NotAMember`]; [`SpmdError::PeerExited`] if
/// `pid` leaves the cluster while this waits; [`SpmdError::Aborted`] if the run is
/// stopped; [`SpmdError::Serialization`] if the value is not a `T`.
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// let r = spmd::blocking::spmd(|| -> Result<u8, SpmdError> {
///     let me = cohort_cluster::myid();
///     spmd::sendto(me, &7u8, ())?;
///     spmd::recvfrom(me, ())
/// }, ()).unwrap();
/// assert_eq!(r, vec![7]);
/// ```
pub fn recvfrom<T: DeserializeOwned>(pid: Pid, tag: impl Into<Tag>) -> Result<T, SpmdError> {
    let run = here("recvfrom")?;
    let bytes = recv_bytes(&run, pid, &Key::new(Op::User, tag.into(), 0))?;
    decode_received(&run, bytes)
}

/// Waits for the next value sent here with `tag` by any process of the run, and
/// says who sent it (Julia's `recvfrom_any(; tag)`). Fair: when several senders have
/// values waiting, they are served in turn (rank order, starting after the one
/// served last), so no sender is starved by a busier one.
///
/// # Errors
/// As [`recvfrom`]; [`SpmdError::PeerExited`] if any process of the run leaves while
/// this waits.
///
/// ```
/// use cohort_darray::spmd::{self, SpmdError};
/// let r = spmd::blocking::spmd(|| -> Result<(u32, i64), SpmdError> {
///     spmd::sendto(cohort_cluster::myid(), &-1i64, 5)?;
///     spmd::recvfrom_any(5)
/// }, ()).unwrap();
/// assert_eq!(r, vec![(1, -1)]);
/// ```
pub fn recvfrom_any<T: DeserializeOwned>(tag: impl Into<Tag>) -> Result<(Pid, T), SpmdError> {
    let run = here("recvfrom_any")?;
    let key = Key::new(Op::User, tag.into(), 0);
    let pids = run.pids.clone();
    let (from, bytes) = run
        .ctx
        .wait_for(&run, &pids, |mb| mb.take_any(&pids, &key))?;
    Ok((from, decode_received(&run, bytes)?))
}
