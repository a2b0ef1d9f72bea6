//! A fast, per-process seeded hasher for the trie's token maps (pure Rust).
//!
//! The default SipHash costs more than the rest of a trie step on short
//! tokens. Tokens come from the application's own subscription patterns, so
//! a multiply-fold hash seeded once per process (in the spirit of foldhash)
//! is enough: the seed still keeps the layout unpredictable from outside.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

const K: u64 = 0x9e37_79b9_7f4a_7c15;

fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| RandomState::new().hash_one(0x00C0_FFEE_u64) | 1)
}

/// Builds `FoldHasher`s sharing the process seed.
#[derive(Clone, Copy, Debug)]
pub struct FoldState(u64);

impl Default for FoldState {
    fn default() -> Self {
        Self(seed())
    }
}

impl BuildHasher for FoldState {
    type Hasher = FoldHasher;
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            h: self.0,
            // Kept in the hasher: reading the `OnceLock` in `finish` showed in profiles.
            last: self.0.rotate_left(32) | 1,
        }
    }
}

/// Word-at-a-time multiply-fold hashing.
pub struct FoldHasher {
    h: u64,
    last: u64,
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.h;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = fold(h ^ u64::from_le_bytes(w), K);
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        // The length goes in too, so "a" and "a\0" differ.
        self.h = fold(h ^ u64::from_le_bytes(w), K ^ (bytes.len() as u64));
    }

    fn write_u64(&mut self, n: u64) {
        self.h = fold(self.h ^ n, K);
    }

    fn write_u8(&mut self, n: u8) {
        self.h = fold(self.h ^ u64::from(n), K);
    }

    fn finish(&self) -> u64 {
        fold(self.h, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_near_keys_differ() {
        let s = FoldState::default();
        assert_eq!(s.hash_one("shop42"), s.hash_one("shop42"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            seen.insert(s.hash_one(format!("shop{i}")) >> 57);
        }
        assert_eq!(seen.len(), 128, "top bits (hashbrown's tags) are all used");
        assert_ne!(s.hash_one("a"), s.hash_one("a\0"));
    }
}
