//! What users call: the remotecall family, [`Future`](crate::Future),
//! [`RemoteChannel`](crate::RemoteChannel), membership functions and `addprocs`,
//! interrupts and statistics. Each handle goes to the shell's node; none touches a
//! socket itself.

pub mod builtins;
pub(crate) mod call;
pub(crate) mod channel;
pub(crate) mod cluster;
pub(crate) mod deadline;
pub(crate) mod deprecated;
pub(crate) mod elastic;
pub(crate) mod future;
pub(crate) mod interrupt;
pub(crate) mod limits;
pub(crate) mod liveness;
pub mod observe;
pub(crate) mod procs;
pub(crate) mod topology;
