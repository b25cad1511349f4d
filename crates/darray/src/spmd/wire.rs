//! What a message travels as: a [`Chunk`] of its encoded bytes.
//!
//! A large message is cut into fragments of [`fragment_size`] bytes, each its own
//! delivery: the receiver copies one fragment while the next is on the wire, instead
//! of every copy of the whole waiting for the one before. The fragments of one
//! message all borrow its one encoded buffer (a root broadcasting to many receivers
//! encodes once and copies nothing per receiver, not even into the fragment's
//! message: `codec::serialize_shared` splices it in). A fragment that arrives in a large
//! message of its own is kept in that message's memory (`codec::shared_bytes`), so a
//! message that is one fragment is never copied before it is decoded.

use std::ops::Range;
use std::sync::OnceLock;

use bytes::Bytes;
use cohort_cluster::codec;

use serde::de::Deserializer;
use serde::{Deserialize, Serialize, Serializer};

/// The bytes of one fragment: a range of the sender's buffer going out, the
/// received bytes coming in — a slice of the large message they came in, without a
/// copy (`codec::shared_bytes`), or a copy of a small one.
#[derive(Debug)]
pub(crate) enum Chunk {
    Out { buf: Bytes, range: Range<usize> },
    In(Bytes),
}

impl Chunk {
    pub(crate) fn into_bytes(self) -> Bytes {
        match self {
            Chunk::In(b) => b,
            Chunk::Out { buf, range } => buf.slice(range),
        }
    }
}

impl Serialize for Chunk {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Written from the sender's buffer where it is, not copied into the
            // message (every fragment shares the one encoding).
            Chunk::Out { buf, range } => codec::serialize_shared(&buf.slice(range.clone()), s),
            Chunk::In(v) => s.serialize_bytes(v),
        }
    }
}

impl<'de> Deserialize<'de> for Chunk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Chunk, D::Error> {
        // A slice of the large message it came in, or a copy of a small one.
        codec::SharedBytes::deserialize(d).map(|b| Chunk::In(b.0))
    }
}

/// The default largest fragment: 8 MiB. Each fragment is a message of its own,
/// read into memory of its own and copied once into the whole; smaller fragments
/// overlap more of that copy with the wire, but each costs a fresh buffer and a
/// hand-off. A 64 MiB broadcast between two workers ran at 0.78–0.83 GiB/s with
/// 1 MiB fragments, 0.84 with 4 MiB, 0.90–0.98 with 8 and 16 MiB, and 0.65–0.87 as one
/// message (`docs/performance.md`, "Huge pages for fresh buffers").
pub(crate) const DEFAULT_FRAGMENT: usize = 8 << 20;

/// The largest fragment, from `COHORT_SPMD_FRAGMENT` (bytes; default
/// [`DEFAULT_FRAGMENT`]; at least 4 KiB).
pub(crate) fn fragment_size() -> usize {
    static F: OnceLock<usize> = OnceLock::new();
    *F.get_or_init(|| {
        std::env::var("COHORT_SPMD_FRAGMENT")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(DEFAULT_FRAGMENT)
            .max(4096)
    })
}
