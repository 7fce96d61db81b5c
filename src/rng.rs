//! A small, fast, seedable random generator whose whole state can be saved and restored.
//!
//! Reproducibility matters more here than cryptographic strength: dropout masks, weight
//! initialisation and data shuffling all draw from [`Rng64`], and a checkpoint stores its
//! four state words so that a resumed run continues exactly where it stopped.
//! The algorithm is xoshiro256++ (Blackman and Vigna), seeded through SplitMix64.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::convert::Infallible;

/// xoshiro256++ generator. Implements `rand_core`'s traits, so `rand` and `rand_distr`
/// distributions sample from it directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng64 {
    s: [u64; 4],
}

impl Rng64 {
    /// A generator seeded from one 64-bit number (expanded with SplitMix64).
    pub fn seed(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng64 {
            s: [next(), next(), next(), next()],
        }
    }

    /// The full internal state, for checkpoints.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// Restores a generator from [`Rng64::state`]. An all-zero state (which xoshiro cannot
    /// leave) is replaced by the state of `Rng64::seed(0)`.
    pub fn from_state(s: [u64; 4]) -> Self {
        if s == [0; 4] {
            Rng64::seed(0)
        } else {
            Rng64 { s }
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform sample in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform index in `0..n`, by rejection so that it has no modulo bias. `n = 0` (an
    /// empty range) gives 0 without drawing, rather than dividing by zero.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let r = self.next_u64();
            if r < zone {
                return (r % n) as usize;
            }
        }
    }

    /// A new generator whose stream is independent of this one (for handing to a sub-task).
    pub fn fork(&mut self) -> Rng64 {
        Rng64::seed(self.next_u64())
    }
}

impl rand::TryRng for Rng64 {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next_u64() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.iter_mut().zip(bytes).for_each(|(d, b)| *d = b);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_continues_the_stream() {
        let mut a = Rng64::seed(42);
        for _ in 0..10 {
            a.next_u64();
        }
        let mut b = Rng64::from_state(a.state());
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
    }

    #[test]
    fn different_seeds_differ_and_uniform_is_in_range() {
        let mut a = Rng64::seed(1);
        let mut b = Rng64::seed(2);
        assert_ne!(a.next_u64(), b.next_u64());
        let mut mean = 0.0;
        for _ in 0..10_000 {
            let u = a.uniform();
            assert!((0.0..1.0).contains(&u));
            mean += u / 10_000.0;
        }
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn below_an_empty_range_is_zero_not_a_division_by_zero() {
        // `u64::MAX % 0` panicked.
        let mut r = Rng64::seed(3);
        let before = r.clone();
        assert_eq!(r.below(0), 0);
        assert_eq!(r, before, "nothing drawn");
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn below_covers_its_range() {
        let mut r = Rng64::seed(3);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[r.below(7)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn works_with_rand_distr() {
        use rand::RngExt;
        use rand_distr::{Distribution, Normal};
        let mut r = Rng64::seed(5);
        let n = Normal::new(0.0, 1.0).unwrap();
        let xs: Vec<f64> = (0..2000).map(|_| n.sample(&mut r)).collect();
        let mean = xs.iter().sum::<f64>() / 2000.0;
        assert!(mean.abs() < 0.1);
        let _: f32 = r.random();
    }
}
