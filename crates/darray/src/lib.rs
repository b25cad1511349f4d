//! # cohort-darray — `DArray`, `ddata` and SPMD: arrays split across processes
//!
//! DistributedArrays.jl for cohort (seed 004). **Where it sits:** above
//! `cohort-cluster` and `cohort-pool`, below the `cohort` facade, which re-exports it
//! as `cohort::darray`.
//!
//! - [`spmd`]: single program, multiple data — `spmd`, `sendto`/`recvfrom`,
//!   `barrier`, `bcast`, `scatter`, `gather`, `reduce`, `allreduce`, contexts.

pub mod spmd;
