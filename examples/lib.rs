//! The examples of the seed documents, ported to cohort. Run one with
//! `cargo run --release -p cohort-examples --example NAME`:
//!
//! - `quickstart` — the manual's first session: a random matrix made on worker 2,
//!   `1 .+ fetch(r)` run on its owner, and `remotecall_fetch` of one element.
//! - `count_heads` — two spawned coin-flip counts, summed.
//! - `local_invocation` — a call to the calling process itself works on the same
//!   values; a call to another process works on a copy.
