//! An example cohort cluster manager over gRPC ([tonic](https://docs.rs/tonic)), where
//! every connection to a worker is one bidirectional-streaming RPC on the worker's
//! single TCP port, so all of its traffic shares that port.
//!
//! The manager and the worker's server live in this crate's test
//! (`tests/grpc.rs`), built only on cohort's public interface
//! ([`ClusterManager`](https://docs.rs/cohort), `WorkerOptions::init_worker`,
//! `WorkerOptions::process_messages`), like `crates/cohort/tests/unix_transport.rs`.
//! It needs the `grpc` feature (off by default, so the workspace builds without
//! tonic):
//!
//! ```text
//! cargo test -p cohort-grpc --features grpc
//! ```
//!
//! Workers reached this way must use `Topology::MasterWorker`: worker-to-worker
//! connections are made by the runtime over TCP today, not through the manager.
