//! Remote-reference tracking and distributed garbage collection for cohort — sans-IO.
//!
//! A remote reference (a `Future` or a `RemoteChannel`) is a [`RefId`] `(whence, id)` plus
//! the pid of its *owner*, the process that stores the value. This crate decides when an
//! owner may free a value: when no process holds a handle to it any more. It is a pure
//! state machine in the style of `quinn-proto`: no sockets, threads, clocks or async.
//! Events come in through method calls (`created`, `serialized`, `dropped`,
//! `handle_ops`, …), time comes in as a `now: Instant` argument, and outputs go out
//! through `poll_*` methods: batches of [`RefOp`]s to send, freed values to drop, the
//! next timer deadline.
//!
//! It sits below `cohort-cluster`, which owns the sockets and the values, implements
//! `Clone`/`Drop`/serialization of the handle types by calling in here, sends the
//! batches this crate produces, and feeds in the batches peers send. It depends only on
//! the id types of `cohort-wire`.
//!
//! # Pieces
//!
//! - [`RefOp`]: `AddClient` / `DelClient`, what clients tell owners; [`RefError`]: misuse.
//! - [`OwnerTable`]: the owner side — values with signed per-client counts.
//! - [`ClientRefs`]: the client side — local handle counts and outgoing queues.
//! - [`Outbox`] / [`BatchPolicy`]: per-destination FIFO batching by size and delay.
//! - [`RefTracker`]: both sides of one process, wired together; what a runtime uses.
//!
//! # Protocol
//!
//! Per reference, each process counts its local handles and its *registrations* (see
//! [`ClientRefs`]). Creating a reference registers the creator (through the owner's
//! [`OwnerTable::insert`]); serializing a handle for `P` makes the **sender** queue
//! `AddClient{P}` to the owner; each arrival bumps the receiver's registrations; when the
//! last local handle goes, the process queues one `DelClient{me, count: registrations}`.
//! The owner adds `+1` per add and `-count` per delete to a signed count per
//! `(reference, client)` and frees the value once **no client's count is positive**.
//!
//! ## Why the value is never freed while a handle exists
//!
//! Call each registration a *token*: it is *applied* at the owner when its add (or the
//! insert) has been, *covered* when the delete that balances it has been applied, and
//! *live* while its holder has not yet sent that delete (the handle is held, or still in
//! flight towards it). Ordering assumptions: messages between two processes arrive in
//! order (ops travel on the same ordered connection as the handle-carrying messages and
//! the creating call), and a sender holds a handle while it serializes it, so its
//! `AddClient{P}` is queued before its own later `DelClient` and reaches the owner first.
//!
//! Claim: while any token is live, some count is positive. Take a live token. If it is
//! applied, its holder `Q` gains `+1` from it; the only negative contributions to `Q`'s
//! count come from tokens covered but not applied. Follow such a token (or the first
//! token itself, if not applied): its add is still in flight from its sender `R`, so the
//! delete `R` sends later, for the tokens `R` held when it serialized, is still behind it
//! and those tokens are uncovered; each of them is applied (`+1` to `R`, and again only
//! covered-unapplied tokens of `R` can cancel that) or not (follow it). Every step of
//! this walk goes to a token issued strictly earlier, so it ends — at a creator's first
//! token (applied by the insert, and a creator's count has nothing earlier to cancel it)
//! or at a positive count. Hence no value is freed while anyone holds, or is being sent,
//! a handle to it.
//!
//! ## Why nothing leaks
//!
//! Every token is eventually both applied and covered (each add is answered by exactly
//! one delete's share), so once all handles are dropped and all batches delivered every
//! count is zero: values are freed and entries forgotten. Ops that arrive before the
//! insert or after the free are kept as counts without a value until they cancel out.
//!
//! ## Dead peers
//!
//! `handle_peer_died(p)` on the owner side forgets `p`'s counts (its handles died with
//! it) and ignores later ops naming `p`; on the client side it discards the queue to
//! `p`. Two runtime duties keep the claim true with deaths: call it only after every
//! message received from `p` has been applied (an ordered connection's end gives that),
//! and flush the owner's queue *before* sending a message that carries a handle, so that
//! no handle can be delivered whose registration died queued in its sender.
//!
//! # Example
//!
//! ```
//! use cohort_refs::{BatchPolicy, RefTracker};
//! use cohort_wire::ids::RefId;
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let (mut a, mut o, mut c) = (
//!     RefTracker::<&str>::new(2, BatchPolicy::default()),
//!     RefTracker::<&str>::new(3, BatchPolicy::default()),
//!     RefTracker::<&str>::new(4, BatchPolicy::default()),
//! );
//! let r = RefId::new(2, 1);
//! // 2 runs `remotecall` on 3: the Future is stored on 3, the call registers 2.
//! a.created(r, 3).unwrap();
//! o.insert(r, "result", 2).unwrap();
//! // 2 sends the Future to 4: AddClient{4} goes to the owner first.
//! let owner = a.serialized(r, 4, now).unwrap();
//! let adds = a.flush(owner).unwrap();
//! c.deserialized(r, 3).unwrap();
//! // 4 drops it at once; its delete overtakes 2's add.
//! c.dropped(r, now).unwrap();
//! o.handle_ops(c.flush(3).unwrap());
//! assert!(o.get(&r).is_some());
//! o.handle_ops(adds);
//! a.dropped(r, now).unwrap();
//! o.handle_ops(a.flush(3).unwrap());
//! assert_eq!(o.poll_freed(), Some((r, "result")));
//! ```

mod batch;
mod client;
mod ops;
mod owner;
mod tracker;

pub use batch::{BatchPolicy, Outbox};
pub use client::{ClientRefs, ClientStats};
pub use ops::{RefError, RefOp};
pub use owner::{OwnerStats, OwnerTable};
pub use tracker::{RefStats, RefTracker};

#[doc(no_inline)]
pub use cohort_wire::ids::{Pid, RefId};
