//! The by-id map's hasher: our own sequential ids are not attacker-chosen,
//! so one multiply replaces SipHash.

use std::hash::{BuildHasher, Hasher};

/// A fast hasher for our own sequential `u64` ids (not attacker-chosen):
/// one multiply spreads them over shards.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IdHash;

/// The low bits of a hash that are the id itself.
const ID_BITS: u64 = (1 << 48) - 1;

#[derive(Debug, Default)]
pub(crate) struct IdHasher(u64);

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Fibonacci hashing: the product's high bits mix every bit of the
        // id. (A fold of the 128-bit product's high half into it changed
        // only bits that the id then replaces, for ids below 2^48.)
        let mixed = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // Mixed high bits pick the shard and the bucket tag; the id itself
        // in the low bits picks the bucket, so that ids tracked one after
        // the other land in nearby buckets (fewer cache misses in churn).
        (mixed & !ID_BITS) | (self.0 & ID_BITS)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hasher};

    use super::{ID_BITS, IdHash};

    fn hash(id: u64) -> u64 {
        let mut h = IdHash.build_hasher();
        h.write_u64(id);
        h.finish()
    }

    #[test]
    fn the_low_bits_are_the_id_so_consecutive_ids_sit_in_nearby_buckets() {
        for id in (0..4096).chain([ID_BITS - 1, ID_BITS]) {
            assert_eq!(hash(id) & ID_BITS, id, "id {id}");
        }
    }

    #[test]
    fn the_high_bits_spread_consecutive_ids_over_shards() {
        let tops: HashSet<u64> = (1..=1024).map(|id| hash(id) >> 48).collect();
        // 1,024 ids into 65,536 values: a few collisions at most.
        assert!(tops.len() > 1000, "{} distinct", tops.len());
    }

    #[test]
    fn the_high_bits_are_balanced() {
        // Each bit of the shard and bucket tag a fair coin over consecutive
        // ids, or the shards and tags would crowd.
        let ones: u32 = (1..=4096).map(|id| (hash(id) >> 48).count_ones()).sum();
        let mean = f64::from(ones) / 4096.0;
        assert!((7.5..=8.5).contains(&mean), "mean set bits {mean} of 16");
    }

    #[test]
    fn byte_keys_hash_apart() {
        let hashes: HashSet<u64> = (0u16..1024)
            .map(|n| {
                let mut h = IdHash.build_hasher();
                h.write(&n.to_le_bytes());
                h.finish()
            })
            .collect();
        assert_eq!(hashes.len(), 1024);
    }
}
