//! Identifiers shared by every layer: process ids and remote-reference ids.

use std::fmt;

/// A process identifier. The driver (master) is always pid [`MASTER`]; workers get
/// 2, 3, … in the order they join, and a pid is never reused within a cluster.
///
/// ```
/// use cohort_wire::ids::{Pid, MASTER};
/// let p: Pid = 2;
/// assert_ne!(p, MASTER);
/// ```
pub type Pid = u32;

/// The pid of the driver process.
///
/// ```
/// assert_eq!(cohort_wire::ids::MASTER, 1);
/// ```
pub const MASTER: Pid = 1;

/// The identity of a remote reference (a `Future` or a `RemoteChannel`): the pid of the
/// process that created the handle (`whence`) and a number unique within that process.
///
/// The pid of the process that *stores* the value (Julia's `where`) is not part of the
/// identity; it travels beside it.
///
/// ```
/// use cohort_wire::ids::RefId;
/// let r = RefId::new(1, 7);
/// assert_eq!(r.to_string(), "(1, 7)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefId {
    /// The process that created the reference.
    pub whence: Pid,
    /// A number unique among the references `whence` created.
    pub id: u64,
}

impl RefId {
    /// Makes a reference id from its two parts.
    ///
    /// ```
    /// let r = cohort_wire::ids::RefId::new(3, 1);
    /// assert_eq!((r.whence, r.id), (3, 1));
    /// ```
    pub const fn new(whence: Pid, id: u64) -> Self {
        RefId { whence, id }
    }
}

impl fmt::Display for RefId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.whence, self.id)
    }
}
