//! SPMD: run one function on many processes that talk to each other directly
//! (DistributedArrays.jl's `SPMD` submodule, with MPI's `reduce` and `allreduce`).
//!
//! [`spmd`] (async; [`blocking::spmd`] blocks) runs a function once on every process
//! of a run at the same time and returns each one's result, in rank order, when all
//! have finished. Inside it, the primitives — all blocking, as in MPI — address the
//! run's other processes:
//!
//! | Julia (`DistributedArrays.SPMD`) | cohort |
//! | --- | --- |
//! | `spmd(f, args...; pids, context)` | [`spmd`]`(f, args)`, [`spmd_with`]`(f, args, SpmdOptions::new().pids(&p).context(&ctx))` |
//! | `sendto(pid, data; tag)` | [`sendto`]`(pid, &data, tag)` |
//! | `recvfrom(pid; tag)` | [`recvfrom`]`::<T>(pid, tag)` |
//! | `recvfrom_any(; tag)` | [`recvfrom_any`]`::<T>(tag)` → `(pid, value)` |
//! | `barrier(; pids, tag)` | [`barrier`]`(tag)` (the run's pids); [`group`]`(&pids)?.barrier(tag)` |
//! | `bcast(data, pid; tag, pids)` | [`bcast`]`(data, root, tag)`; [`Group::bcast`] |
//! | (MPI's `MPI_Bcast` into a buffer) | [`bcast_into`]`(&mut buf, root, tag)`; [`Group::bcast_into`] |
//! | `scatter(x, pid; tag, pids)` | [`scatter`]`(parts, root, tag)`; [`Group::scatter`] |
//! | `gather(x, pid; tag, pids)` | [`gather`]`(x, root, tag)` → `Some(Vec)` on the root; [`Group::gather`] |
//! | MPI `Reduce` / `Allreduce` | [`reduce`]`(x, op, root, tag)`, [`allreduce`]`(x, op, tag)` |
//! | `context(pids)`, `close(ctx)` | [`context`]`(&pids)`, [`close`]`(&ctx)` |
//! | `context_local_storage()` | [`context_local_storage`]`()` → [`ContextStorage`] |
//! | `myid()` inside a run, its rank | `cohort::myid()`, [`rank`], [`run_pids`] |
//!
//! A tag is anything that converts into a [`Tag`]: `()` (Julia's `nothing`), an
//! integer or a string.
//!
//! # Message rules
//!
//! - **Direct.** A message goes from its sender's process straight to its
//!   receiver's, over the connection between the two workers (cohort makes it at the
//!   first message, under `Topology::AllToAll`), never through the driver. Under
//!   `Topology::MasterWorker` workers cannot reach each other, and [`spmd`] refuses
//!   a run over two or more workers with [`SpmdError::TopologyForbids`].
//! - **Asynchronous sends, blocking receives.** [`sendto`] returns once the message
//!   is on its way; [`recvfrom`] waits until one from that sender with that tag is
//!   there. Messages wait on the receiver until taken.
//! - **In order.** Messages from one process to another are taken in the order they
//!   were sent — per tag, and across tags. (cohort runs incoming calls on a pool of
//!   threads; each message carries a sequence number and the receiver puts the ones
//!   that overtook an earlier one aside until it comes.) Consecutive collectives with
//!   the same tag therefore do not mix; tags tell apart messages a receiver wants to
//!   take out of order.
//! - **Fair.** [`recvfrom_any`] serves the senders that have a message waiting in
//!   turn, so a fast sender cannot starve the others.
//! - **Collectives are separate.** A [`barrier`], [`bcast`], … never takes a message
//!   of a [`sendto`], whatever the tags.
//!
//! # Contexts
//!
//! Every run is in a [`Context`]: its messages and its context-local storage. A run
//! without one gets a fresh context that each process frees when its part ends;
//! a [`context`] made explicitly lives until [`close`] (or until its last handle is
//! dropped on the process that made it), and its [`ContextStorage`] on each process
//! keeps values from one run to the next. Runs in different contexts can go on at
//! the same time and never see each other's messages; one context serves one run at
//! a time ([`SpmdError::ContextBusy`]).
//! Messages a run sent and did not take stay in an explicit context's mailbox for its
//! next run (in a fresh context they go with it).
//!
//! # Failures
//!
//! A run fails if `f` returns an `Err` or panics on any process, or if a process
//! leaves the cluster (dies) during it. The first failure aborts the run on the
//! other processes: their waits return [`SpmdError::Aborted`] at once, and a wait for
//! a process that left returns [`SpmdError::PeerExited`] naming it. So a run always
//! ends, and [`spmd`] returns [`SpmdError::Run`] with every process's failure, each
//! naming its pid. As Julia's guide advises, start runs from the driver only: a run
//! started from inside another run waits for processes busy with the outer one.
//!
//! # Where the code runs
//!
//! Each process runs its part on a thread of its own, not on one of cohort's call
//! runners, so a part blocked in [`recvfrom`] never keeps a runner — nor the very
//! delivery it waits for — from running. The primitives find their run through
//! that thread: threads the part spawns are not in the run.
//!
//! ```
//! use cohort_darray::spmd::{self, SpmdError};
//! // Two workers (this program is its own worker executable) and the driver: three
//! // ranks. MPI.jl's example from the manual: the sum of the ranks, on every process.
//! cohort::blocking::addprocs(2).unwrap();
//! let sums = spmd::blocking::spmd(
//!     || -> Result<usize, SpmdError> {
//!         spmd::barrier(())?;
//!         spmd::allreduce(spmd::rank()?, |a, b| a + b, ())
//!     },
//!     (),
//! )
//! .unwrap();
//! assert_eq!(sums, vec![3, 3, 3]); // 0 + 1 + 2, on each of the three processes
//! ```

pub mod blocking;
mod collective;
mod context;
mod error;
mod p2p;
mod run;
mod state;
mod tag;
mod wire;

pub use collective::{
    allreduce, barrier, bcast, bcast_into, gather, group, reduce, scatter, Group,
};
pub use context::{close, context, context_local_storage, Context, ContextStorage};
pub use error::{FailureKind, ProcessFailure, RunFailure, SpmdError};
pub use p2p::{recvfrom, recvfrom_any, sendto};
pub use run::{rank, run_pids, spmd, spmd_with, SpmdOptions};
pub use state::{local_stats, SpmdStats};
pub use tag::Tag;
