//! What a message travels as: a [`Chunk`] of its encoded bytes.
//!
//! A large message is cut into fragments of [`fragment_size`] bytes, each its own
//! delivery: the receiver copies one fragment while the next is on the wire, instead
//! of every copy of the whole waiting for the one before. The fragments of one
//! message all borrow its one encoded buffer (a root broadcasting to many receivers
//! encodes once and copies nothing per receiver).

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The bytes of one fragment: a range of the sender's buffer going out, an owned
/// vector coming in.
#[derive(Debug)]
pub(crate) enum Chunk {
    Out {
        buf: Arc<Vec<u8>>,
        range: Range<usize>,
    },
    In(Vec<u8>),
}

impl Chunk {
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            Chunk::In(v) => v,
            Chunk::Out { buf, range } => buf[range].to_vec(),
        }
    }
}

impl Serialize for Chunk {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Chunk::Out { buf, range } => s.serialize_bytes(&buf[range.clone()]),
            Chunk::In(v) => s.serialize_bytes(v),
        }
    }
}

impl<'de> Deserialize<'de> for Chunk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Chunk, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Chunk;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Chunk, E> {
                Ok(Chunk::In(b.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, b: Vec<u8>) -> Result<Chunk, E> {
                Ok(Chunk::In(b))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Chunk, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Chunk::In(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// The largest fragment, from `COHORT_SPMD_FRAGMENT` (bytes; default 1 MiB; at
/// least 4 KiB).
pub(crate) fn fragment_size() -> usize {
    static F: OnceLock<usize> = OnceLock::new();
    *F.get_or_init(|| {
        std::env::var("COHORT_SPMD_FRAGMENT")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1 << 20)
            .max(4096)
    })
}
