//! # cohort-darray — `DArray`, `ddata` and SPMD: arrays split across processes
//!
//! DistributedArrays.jl for cohort (seed 004). **Where it sits:** above
//! `cohort-cluster` and `cohort-pool`, below the `cohort` facade, which re-exports it
//! as `cohort::darray`.
//!
//! - [`spmd`]: single program, multiple data — `spmd` runs one function on every
//!   process at once; inside it `sendto`/`recvfrom`/`recvfrom_any`, `barrier`,
//!   `bcast`, `scatter`, `gather`, `reduce`, `allreduce` go straight from worker to
//!   worker, in order per sender; contexts keep context-local storage between runs.
//!   Its module docs give the message rules, contexts and what a failure does.

pub mod spmd;
