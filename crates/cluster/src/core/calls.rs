//! The calls running on this process for others, and the interrupt generation.
//!
//! A call is recorded when it arrives and removed when its outcome is delivered —
//! or when an interrupt answers it first, in which case the late outcome is dropped.

use super::ids::IdMap;

use cohort_wire::ids::{Pid, RefId};
use cohort_wire::proto::CallMode;

/// A call that is running on this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Running {
    pub(crate) from: Pid,
    pub(crate) call_id: u64,
    pub(crate) mode: CallMode,
    pub(crate) result_ref: Option<RefId>,
    pub(crate) function: String,
}

/// The running-call table.
#[derive(Default)]
pub(crate) struct Calls {
    next_seq: u64,
    running: IdMap<u64, Running>,
    generation: u64,
}

impl Calls {
    /// Records a call as running; returns its key for [`finish`](Self::finish).
    pub(crate) fn start(&mut self, r: Running) -> u64 {
        self.next_seq += 1;
        self.running.insert(self.next_seq, r);
        self.next_seq
    }

    /// The record of a finished call, unless an interrupt already answered it.
    pub(crate) fn finish(&mut self, seq: u64) -> Option<Running> {
        let r = self.running.remove(&seq);
        if self.running.capacity() > 1024 && self.running.len() * 4 < self.running.capacity() {
            self.running.shrink_to_fit();
        }
        r
    }

    /// An interrupt: takes every running call (each is answered `Interrupted`) and
    /// moves to the next generation.
    pub(crate) fn interrupt(&mut self) -> Vec<Running> {
        self.generation += 1;
        self.running.drain().map(|(_, r)| r).collect()
    }

    /// Interrupts received so far.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(from: Pid, call_id: u64) -> Running {
        Running {
            from,
            call_id,
            mode: CallMode::Fetch,
            result_ref: None,
            function: "f".into(),
        }
    }

    #[test]
    fn an_interrupted_call_is_not_delivered_twice() {
        let mut c = Calls::default();
        let a = c.start(call(1, 10));
        let b = c.start(call(1, 11));
        let taken = c.interrupt();
        assert_eq!(taken.len(), 2);
        assert_eq!(c.generation(), 1);
        assert_eq!(c.finish(a), None);
        assert_eq!(c.finish(b), None);
        let d = c.start(call(2, 12));
        assert_eq!(c.finish(d), Some(call(2, 12)));
        assert_eq!(c.len(), 0);
    }
}
