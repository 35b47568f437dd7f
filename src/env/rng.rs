//! Randomness. Production seeds a ChaCha stream from the OS once; the
//! simulator seeds it from madsim's seeded rng, so a run replays from its seed.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// A seedable random stream. Components that need randomness take one of these
/// (or a seed) as a parameter instead of reaching for a global.
pub struct WeirRng(ChaCha8Rng);

impl WeirRng {
    /// A stream fixed by `seed`: the same seed gives the same numbers.
    pub fn from_seed(seed: u64) -> Self {
        WeirRng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A stream seeded from the environment: OS entropy in production,
    /// madsim's seeded rng in the simulator.
    pub fn from_env() -> Self {
        Self::from_seed(env_seed())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// Uniform in `lo..hi` (`hi` exclusive); `lo` when the range is empty.
    pub fn range_u64(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }

    /// True with probability `p` (0.0..=1.0).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[cfg(madsim)]
fn env_seed() -> u64 {
    madsim::rand::random::<u64>()
}

#[cfg(not(madsim))]
fn env_seed() -> u64 {
    // Mix the clock, the pid and a stack address: enough entropy for producer
    // ids and sticky partition choice, which need distinctness, not secrecy.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    let addr = &local as *const u8 as u64;
    let mut x = t ^ (std::process::id() as u64).rotate_left(32) ^ addr.rotate_left(17);
    // splitmix64 finaliser so nearby inputs give unrelated seeds
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = WeirRng::from_seed(7);
        let mut b = WeirRng::from_seed(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn range_stays_in_bounds() {
        let mut r = WeirRng::from_seed(1);
        for _ in 0..1000 {
            let v = r.range_u64(10, 20);
            assert!((10..20).contains(&v));
        }
        assert_eq!(r.range_u64(5, 5), 5);
    }
}
