//! The reference-tracking operations that clients send to owners, and this crate's errors.

use cohort_wire::ids::{Pid, RefId};

/// One reference-tracking operation, sent by a client process to the process that owns
/// (stores) the value of a remote reference.
///
/// Ops to one owner travel in batches (`Vec<RefOp>`) and must be delivered in the order
/// they were produced, on the same ordered connection as every other message from the
/// producing process to that owner (see the crate docs for why the order matters).
///
/// ```
/// use cohort_refs::RefOp;
/// use cohort_wire::ids::RefId;
/// let op = RefOp::AddClient { id: RefId::new(1, 7), client: 3 };
/// assert_eq!(op.id(), RefId::new(1, 7));
/// assert_eq!(op.client(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefOp {
    /// A handle to `id` was serialized towards `client`: register one more arrival for it.
    /// Sent by the *sender* of the handle, never by `client` itself.
    AddClient {
        /// The reference.
        id: RefId,
        /// The process the handle was sent to.
        client: Pid,
    },
    /// `client` let go of its last local handle to `id`; it had been registered `count`
    /// times (its arrivals, plus one if it created the reference) since it last let go.
    /// Sent by `client` itself.
    DelClient {
        /// The reference.
        id: RefId,
        /// The process that let go.
        client: Pid,
        /// How many registrations this deletion balances (always at least 1).
        count: u64,
    },
}

impl RefOp {
    /// The reference this op is about.
    ///
    /// ```
    /// use cohort_refs::RefOp;
    /// use cohort_wire::ids::RefId;
    /// let op = RefOp::DelClient { id: RefId::new(2, 1), client: 2, count: 1 };
    /// assert_eq!(op.id(), RefId::new(2, 1));
    /// ```
    pub fn id(&self) -> RefId {
        match *self {
            RefOp::AddClient { id, .. } | RefOp::DelClient { id, .. } => id,
        }
    }

    /// The client process this op is about.
    ///
    /// ```
    /// use cohort_refs::RefOp;
    /// use cohort_wire::ids::RefId;
    /// let op = RefOp::DelClient { id: RefId::new(2, 1), client: 4, count: 2 };
    /// assert_eq!(op.client(), 4);
    /// ```
    pub fn client(&self) -> Pid {
        match *self {
            RefOp::AddClient { client, .. } | RefOp::DelClient { client, .. } => client,
        }
    }

    /// The signed change this op makes to the owner's count for `(id, client)`:
    /// `+1` for an add, `-count` for a delete.
    ///
    /// ```
    /// use cohort_refs::RefOp;
    /// use cohort_wire::ids::RefId;
    /// let id = RefId::new(1, 1);
    /// assert_eq!(RefOp::AddClient { id, client: 2 }.delta(), 1);
    /// assert_eq!(RefOp::DelClient { id, client: 2, count: 3 }.delta(), -3);
    /// ```
    pub fn delta(&self) -> i64 {
        match *self {
            RefOp::AddClient { .. } => 1,
            RefOp::DelClient { count, .. } => -i64::try_from(count).unwrap_or(i64::MAX),
        }
    }
}

/// Misuse of the client-side reference table by the runtime.
///
/// ```
/// use cohort_refs::RefError;
/// use cohort_wire::ids::RefId;
/// let e = RefError::NotHeld(RefId::new(1, 2));
/// assert_eq!(e.to_string(), "no live handle to reference (1, 2) on this process");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// The operation needs a live local handle, and this process holds none.
    #[error("no live handle to reference {0} on this process")]
    NotHeld(RefId),
    /// `created` was called for a reference this process already holds.
    #[error("reference {0} is already held on this process")]
    AlreadyHeld(RefId),
    /// A handle arrived naming a different owner than the one already recorded.
    #[error("reference {id} arrived with owner {got}, but this process records owner {known}")]
    OwnerMismatch {
        /// The reference.
        id: RefId,
        /// The owner already recorded.
        known: Pid,
        /// The owner the arriving handle named.
        got: Pid,
    },
}
