//! Choosing a partition for a record, as Kafka's Java client does.
//!
//! - keyed records: `toPositive(murmur2(key)) % partitions`, bit-exact with
//!   the Java and librdkafka (`murmur2_random`) clients, so a key lands on the
//!   same partition whichever client wrote it;
//! - unkeyed records: sticky partitioning: stay on one partition until a
//!   batch for it is sent, then pick another, so batches fill up instead of
//!   spreading one record per partition.

use crate::env::rng::WeirRng;

/// Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2): 32-bit
/// MurmurHash2 with seed 0x9747b28c, little-endian words.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which would
/// overflow on i32::MIN and differ from Java).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition for a keyed record.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) % partitions
}

/// Sticky choice for unkeyed records, per topic.
pub struct StickyPartitioner {
    rng: WeirRng,
    current: std::collections::BTreeMap<String, i32>,
}

impl StickyPartitioner {
    pub fn new(rng: WeirRng) -> Self {
        StickyPartitioner {
            rng,
            current: Default::default(),
        }
    }

    /// The partition unkeyed records for `topic` currently stick to.
    pub fn partition(&mut self, topic: &str, partitions: i32) -> i32 {
        assert!(partitions > 0, "a topic has at least one partition");
        if let Some(&p) = self.current.get(topic) {
            if p < partitions {
                return p;
            }
        }
        let p = self.rng.range_u64(0, partitions as u64) as i32;
        self.current.insert(topic.to_string(), p);
        p
    }

    /// A batch for `topic`/`partition` was closed: move unkeyed records to a
    /// different partition (when there is one), as Kafka does on batch send.
    pub fn on_batch_closed(&mut self, topic: &str, partition: i32, partitions: i32) {
        if self.current.get(topic) != Some(&partition) {
            return;
        }
        let next = if partitions <= 1 {
            0
        } else {
            // Uniform over the other partitions.
            let step = self.rng.range_u64(1, partitions as u64) as i32;
            (partition + step) % partitions
        };
        self.current.insert(topic.to_string(), next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_utils_test() {
        // Vectors from Apache Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn to_positive_clears_sign_bit_only() {
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(5), 5);
    }

    #[test]
    fn keyed_partition_is_stable_and_in_range() {
        for n in 1..20 {
            let p = partition_for_key(b"foobar", n);
            assert!((0..n).contains(&p));
            assert_eq!(p, partition_for_key(b"foobar", n));
        }
        // (-790332482 & 0x7fffffff) % 10 = 1357151166 % 10
        assert_eq!(partition_for_key(b"foobar", 10), 6);
    }

    #[test]
    fn sticky_stays_until_batch_closed_then_moves() {
        let mut s = StickyPartitioner::new(WeirRng::from_seed(3));
        let first = s.partition("t", 8);
        for _ in 0..100 {
            assert_eq!(s.partition("t", 8), first);
        }
        s.on_batch_closed("t", (first + 1) % 8, 8);
        assert_eq!(
            s.partition("t", 8),
            first,
            "another partition's batch does not move it"
        );
        s.on_batch_closed("t", first, 8);
        assert_ne!(s.partition("t", 8), first);
        let mut one = StickyPartitioner::new(WeirRng::from_seed(3));
        assert_eq!(one.partition("x", 1), 0);
        one.on_batch_closed("x", 0, 1);
        assert_eq!(one.partition("x", 1), 0);
    }
}
