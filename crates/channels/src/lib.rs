//! # cohort-channels
//!
//! The bottom layer of cohort (Julia's `Distributed`, in Rust): **local**
//! channels, visible only inside one process, and the [`AbstractChannel`]
//! trait that remote references are built on.
//!
//! * [`Channel<T>`] is Julia's `Channel{T}(sz)`: a FIFO that tasks and
//!   threads share. Capacity 0 is an unbuffered rendezvous, capacity `n`
//!   buffers `n` values, [`Channel::unbounded`] never blocks a `put`. It
//!   supports `put`/`take`/`fetch`/`wait`/`isready`/`close` — each waiting
//!   operation both as an `async` method and as a `*_blocking` twin for
//!   plain threads — and iteration as a [`futures::Stream`] or a blocking
//!   iterator, both ending when the channel is closed and drained.
//! * [`AbstractChannel<T, K>`] is the object-safe interface (Julia's
//!   `AbstractChannel`). `cohort-cluster` stores a
//!   `Box<dyn AbstractChannel<..>>` on the owning worker and implements
//!   `RemoteChannel<T, K>` by forwarding `put`/`take`/`fetch`/`isready`/`wait`
//!   to it, with their key; [`Channel`] is the usual implementation, user types
//!   (such as the keyed `DictChannel` in `examples/dict_channel.rs`, which the
//!   `cohort` crate's `tests/handles.rs` uses behind a `RemoteChannel` across
//!   processes) are others.
//!
//! This crate knows nothing about processes, serialization or the network.
//!
//! # Example
//!
//! The jobs/results pattern from the manual, with threads as the workers:
//!
//! ```
//! use cohort_channels::Channel;
//!
//! let jobs = Channel::new(32);
//! let results = Channel::new(32);
//!
//! let workers: Vec<_> = (0..4)
//!     .map(|_| {
//!         let (jobs, results) = (jobs.clone(), results.clone());
//!         std::thread::spawn(move || {
//!             for job_id in &jobs {
//!                 results.put_blocking((job_id, job_id * 2)).unwrap();
//!             }
//!         })
//!     })
//!     .collect();
//!
//! for n in 1..=12 {
//!     jobs.put_blocking(n).unwrap();
//! }
//! jobs.close(); // workers' loops end once the jobs are drained
//!
//! let mut total = 0;
//! for _ in 0..12 {
//!     let (_job_id, doubled) = results.take_blocking().unwrap();
//!     total += doubled;
//! }
//! workers.into_iter().for_each(|w| w.join().unwrap());
//! assert_eq!(total, 2 * (1..=12).sum::<i32>());
//! ```

mod abstract_channel;
mod channel;
mod error;

pub use abstract_channel::AbstractChannel;
pub use channel::{Channel, ChannelStream, Fetch, IntoIter, Iter, Put, Reservations, Take, Wait};
pub use error::{ChannelError, PutError};
