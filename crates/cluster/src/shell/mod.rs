//! The I/O shell around the [core](crate::core): the tokio runtime, one driver per
//! connection, connection set-up, launching and joining workers, worker mode, and
//! running the calls and channel operations the core hands out.
//!
//! Modules: [`accept`] (the accept loop: transient errors, the cap on set-ups),
//! [`node`] (the core behind its lock, and the pump that carries out its
//! outputs), [`driver`] (one connection's writer and reader), [`handshake`] (TLS and
//! the cookie handshake), [`launch`] (addprocs, join, rmprocs), [`elastic`] (workers
//! that join by themselves: the master's join listener, the worker's `--join`), [`memory`] (giving the
//! allocator's free pages back after a burst), [`serve`] (worker
//! mode: accept loop, `init`, the worker-mode hook), [`execute`] (running received
//! calls), [`channel_ops`] (running channel operations for others), [`inline_task`] (a
//! future polled by the thread that wakes it, for those operations), [`runners`] (the
//! call queue), [`runtime`] (the tokio runtime and blocking waits), [`timer`]
//! (reference-batch deadlines), `tls` (the process's TLS setting; feature `tls`).

pub(crate) mod accept;
pub(crate) mod channel_ops;
pub(crate) mod driver;
pub(crate) mod elastic;
pub(crate) mod execute;
pub(crate) mod handshake;
pub(crate) mod inline_task;
pub(crate) mod launch;
pub(crate) mod memory;
pub(crate) mod node;
pub(crate) mod observe;
pub(crate) mod runners;
pub mod runtime;
pub(crate) mod serve;
pub(crate) mod spare;
pub(crate) mod timer;
#[cfg(feature = "tls")]
pub(crate) mod tls;
