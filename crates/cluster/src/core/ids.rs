//! A map for this process's own sequential ids (call ids, running-call numbers): a
//! multiplicative hash instead of SipHash. The keys are numbers this process hands
//! out itself, in order, so no peer can choose them to collide, and SipHash's cost
//! showed in every call's profile.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing: one multiply spreads sequential ids over all bits.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` keyed by ids this process makes.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        let mut m: IdMap<u64, u64> = IdMap::default();
        for i in 0..10_000 {
            m.insert(i, i);
        }
        assert_eq!(m.len(), 10_000);
        assert!((0..10_000).all(|i| m.get(&i) == Some(&i)));
        // Low bits (the bucket index) differ for neighbours.
        let h = |n: u64| {
            let mut s = IdHasher::default();
            s.write_u64(n);
            s.finish() & 0xff
        };
        let distinct: std::collections::HashSet<u64> = (0..256).map(h).collect();
        assert!(distinct.len() > 200, "{}", distinct.len());
    }
}
