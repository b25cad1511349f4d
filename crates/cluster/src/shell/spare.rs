//! A large receive buffer kept, for a moment, for the next large message.
//!
//! A large message arrives in a buffer of its own size. Freshly allocated, its pages
//! are faulted in and zeroed by the kernel as the socket's bytes land — for a
//! 256 MiB array that costs about as much as the copy itself. When the code that
//! decoded such a message gives its bytes back ([`SpareBuffer::recycle`]; only
//! possible when nothing else holds them), the next large message from any
//! connection of the node is read into that buffer instead, whose pages are already
//! there: repeated transfers ([`Future::fetch_into`](crate::Future::fetch_into))
//! then cost the kernel's copy and little else. A spare not used within
//! [`SPARE_FOR`] is let go, so an idle process returns to its small footprint.
//!
//! The same memory serves the other direction: a large message this process has
//! written is given back by the writer ([`SpareBuffer::recycle_sent`]), a callee
//! gives back a large call's arguments once it has decoded them, and an encoding
//! that grows past [`SPARE_MIN`] moves into the spare ([`SpareBuffer::take_vec`],
//! through `codec::encode` within `codec::with_target`). A callee that gave back a
//! call's arguments thus encodes a large result in their memory: it holds the value
//! and one buffer, never a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

/// Messages of at least this many bytes are worth a kept buffer.
pub(crate) const SPARE_MIN: usize = 1 << 20;

/// How long a spare buffer waits for a message to hold.
pub(crate) const SPARE_FOR: Duration = Duration::from_secs(1);

/// How much larger than a spare's capacity a message may be: its frame header and
/// envelope head took that much before the payload.
const HEAD_ROOM: usize = 64;

/// At most one spare buffer per node (the largest given back).
#[derive(Default)]
pub(crate) struct SpareBuffer {
    slot: Mutex<Option<(BytesMut, u64)>>,
    generation: AtomicU64,
}

impl SpareBuffer {
    /// Bytes of a message this process is done with: kept, if large and held by no
    /// one else, for the next large message (for [`SPARE_FOR`]).
    pub(crate) fn recycle(self: &Arc<Self>, bytes: Bytes) {
        if bytes.len() < SPARE_MIN {
            return;
        }
        self.keep(bytes);
    }

    /// The payload of a large message this process has written (it may have been
    /// advanced past what went): kept, if held by no one else, for the next large
    /// message read or encoded here.
    pub(crate) fn recycle_sent(self: &Arc<Self>, bytes: Bytes) {
        self.keep(bytes);
    }

    fn keep(self: &Arc<Self>, bytes: Bytes) {
        let Ok(mut buf) = bytes.try_into_mut() else {
            return;
        };
        // The whole allocation, from its start, whatever part of it `bytes` was.
        buf.clear();
        let whole = Vec::<u8>::from(buf);
        if whole.capacity() < SPARE_MIN {
            return;
        }
        // Back to a `BytesMut` without a copy (it is the only handle).
        let Ok(buf) = Bytes::from(whole).try_into_mut() else {
            return;
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut slot = self.slot.lock();
            if slot
                .as_ref()
                .is_some_and(|(kept, _)| kept.capacity() > buf.capacity())
            {
                return;
            }
            *slot = Some((buf, generation));
        }
        let me: Weak<Self> = Arc::downgrade(self);
        super::runtime::handle().spawn(async move {
            tokio::time::sleep(SPARE_FOR).await;
            if let Some(me) = me.upgrade() {
                let mut slot = me.slot.lock();
                if slot.as_ref().is_some_and(|(_, g)| *g == generation) {
                    *slot = None;
                }
            }
        });
    }

    /// A buffer for a message of `total` bytes (header included) whose first bytes
    /// are `partial`: the spare, holding `partial`, if it is large enough.
    pub(crate) fn take_for(&self, total: usize, partial: &[u8]) -> Option<BytesMut> {
        let mut buf = {
            let mut slot = self.slot.lock();
            // Its capacity is what followed the old message's header and the head
            // of its envelope (some bytes); they are before it, in the same
            // allocation, and `reserve` takes them back (a message a little larger
            // than the allocation gets a new one there).
            if slot
                .as_ref()
                .is_none_or(|(kept, _)| kept.capacity() + HEAD_ROOM < total)
            {
                return None;
            }
            slot.take()?.0
        };
        buf.reserve(total);
        buf.extend_from_slice(partial);
        Some(buf)
    }

    /// The spare as an empty vector, if it holds at least `min` bytes: for encoding
    /// a large message into memory whose pages are already there
    /// (`codec::encode`).
    pub(crate) fn take_vec(&self, min: usize) -> Option<Vec<u8>> {
        let buf = {
            let mut slot = self.slot.lock();
            if slot.as_ref().is_none_or(|(kept, _)| kept.capacity() < min) {
                return None;
            }
            slot.take()?.0
        };
        Some(Vec::from(buf))
    }

    /// Whether a spare buffer is kept now (for tests).
    #[cfg(test)]
    pub(crate) fn is_kept(&self) -> bool {
        self.slot.lock().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_message_given_back_holds_the_next_one_in_the_same_memory() {
        let mut frame = BytesMut::with_capacity(4 + (2 << 20));
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&vec![7u8; 2 << 20]);
        let start = frame.as_ptr() as usize;
        let header = frame.split_to(4);
        let payload = frame.split().freeze();
        // What the reader keeps goes (see `reader_loop`).
        drop(frame);
        let spare = Arc::new(SpareBuffer::default());
        // Held elsewhere too: not kept.
        let other = payload.clone();
        spare.recycle(payload);
        assert!(!spare.is_kept());
        drop(header);
        spare.recycle(other);
        assert!(spare.is_kept());
        let buf = spare.take_for(4 + (2 << 20), b"abcd").unwrap();
        assert_eq!(&buf[..], b"abcd");
        assert_eq!(
            buf.as_ptr() as usize,
            start,
            "the same allocation, from its start"
        );
        assert!(buf.capacity() >= 4 + (2 << 20));
        assert!(!spare.is_kept());
        // Given back as written (advanced to its end), and taken for an encoding.
        let mut sent = Bytes::from(vec![1u8; 3 << 20]);
        let at = sent.as_ptr() as usize;
        bytes::Buf::advance(&mut sent, 3 << 20);
        spare.recycle_sent(sent);
        assert!(spare.take_vec(4 << 20).is_none(), "too small for that");
        let v = spare.take_vec(1 << 20).unwrap();
        assert!(v.is_empty() && v.capacity() >= 3 << 20);
        assert_eq!(v.as_ptr() as usize, at);
        assert!(!spare.is_kept());
        // Small messages and messages larger than the spare are not its business.
        spare.recycle(Bytes::from(vec![0u8; 10]));
        assert!(!spare.is_kept());
        assert!(spare.take_for(1 << 30, b"").is_none());
    }

    #[test]
    fn a_large_encoding_for_a_node_moves_into_its_spare_and_a_small_one_does_not() {
        let c = crate::Cluster::new();
        let n = c.node();
        let given = vec![0u8; 8 << 20];
        let at = given.as_ptr() as usize;
        n.spare.recycle_sent(Bytes::from(given));
        // Small: a vector of its own, and the spare stays.
        let small = crate::codec::with_target(n, 2, || crate::codec::encode(&7u64)).unwrap();
        assert_ne!(small.as_ptr() as usize, at);
        assert!(n.spare.is_kept());
        // Outside a message for the node: not its spare's business.
        let big = crate::codec::Bulk(vec![3u8; 4 << 20]);
        let fresh = crate::codec::encode(&big).unwrap();
        assert_ne!(fresh.as_ptr() as usize, at);
        assert!(n.spare.is_kept());
        // A large one for the node: in the spare's memory, from its start.
        let v = crate::codec::with_target(n, 2, || crate::codec::encode(&big)).unwrap();
        assert_eq!(v.as_ptr() as usize, at);
        assert!(!n.spare.is_kept());
        assert_eq!(
            crate::codec::decode::<crate::codec::Bulk<u8>>(&v).unwrap(),
            big
        );
    }
}
