//! The pending-reply table: which call ids wait for an answer, from whom, and who is
//! told when it comes.

use std::collections::HashMap;

use cohort_wire::ids::Pid;

use super::Reply;
use crate::error::CallError;

/// One waiting request.
struct Pending<W> {
    pid: Pid,
    waiter: W,
}

/// `call_id → waiter`, generic over how the shell is told (a oneshot sender there, a
/// token in the simulation).
pub(crate) struct Replies<W> {
    next_call: u64,
    pending: HashMap<u64, Pending<W>>,
}

impl<W> Default for Replies<W> {
    fn default() -> Self {
        Replies {
            next_call: 1,
            pending: HashMap::new(),
        }
    }
}

impl<W> Replies<W> {
    /// A fresh call id (never 0: 0 means "no reply wanted" on the wire).
    pub(crate) fn new_call_id(&mut self) -> u64 {
        let id = self.next_call;
        self.next_call += 1;
        id
    }

    /// Registers `waiter` for the answer to `call_id` from `pid`.
    pub(crate) fn expect(&mut self, call_id: u64, pid: Pid, waiter: W) {
        self.pending.insert(call_id, Pending { pid, waiter });
    }

    /// Takes the waiter of `call_id` (the answer came, or the request was abandoned).
    pub(crate) fn take(&mut self, call_id: u64) -> Option<(Pid, W)> {
        let p = self.pending.remove(&call_id)?;
        if self.pending.capacity() > 1024 && self.pending.len() * 4 < self.pending.capacity() {
            self.pending.shrink_to_fit();
        }
        Some((p.pid, p.waiter))
    }

    /// Takes every waiter of `pid`, each with the error that answers it.
    pub(crate) fn fail_peer(&mut self, pid: Pid, reason: &str) -> Vec<(W, Reply)> {
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.pending.remove(&id))
            .map(|p| {
                (
                    p.waiter,
                    Err(CallError::WorkerExited {
                        pid,
                        reason: reason.to_string(),
                    }),
                )
            })
            .collect()
    }

    /// How many requests wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_peer_fails_only_its_own_waiters() {
        let mut r = Replies::default();
        let a = r.new_call_id();
        let b = r.new_call_id();
        assert_ne!(a, b);
        assert_ne!(a, 0);
        r.expect(a, 2, "a");
        r.expect(b, 3, "b");
        let failed = r.fail_peer(2, "gone");
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "a");
        assert!(matches!(
            &failed[0].1,
            Err(CallError::WorkerExited { pid: 2, .. })
        ));
        assert_eq!(r.take(b), Some((3, "b")));
        assert_eq!(r.take(b), None);
        assert_eq!(r.len(), 0);
    }
}
