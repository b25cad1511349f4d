//! The examples of the seed documents, ported to cohort. Run one with
//! `cargo run --release -p cohort-examples --example NAME`:
//!
//! - `quickstart` — the manual's first session: a random matrix made on worker 2,
//!   `1 .+ fetch(r)` run on its owner, and `remotecall_fetch` of one element.
//! - `count_heads` — two spawned coin-flip counts, summed.
//! - `local_invocation` — a call to the calling process itself works on the same
//!   values; a call to another process works on a copy.
//! - `jobs_results` — four workers take jobs from a `RemoteChannel` and put results
//!   with their pid into another, fed by a feeder task.
//! - `local_channel_identity` — a `RemoteChannel` on this process holds one shared
//!   instance put three times; one on a worker holds three copies.
