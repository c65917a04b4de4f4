//! The two pools behind the allocator: a bitmap over a contiguous range of offsets,
//! with upstream's split into a static band (low offsets, preferred for explicit
//! requests) and a dynamic band (random allocation looks there first).

/// A small, seedable PRNG (SplitMix64). Allocation only needs spread, not secrecy, and
/// a seed makes tests deterministic.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A seed that differs between processes, from std's randomly keyed hasher.
    pub(crate) fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        Rng(h.finish())
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n`; `n` must be positive.
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n)) as u32
    }
}

/// A set of allocated offsets in `0..size`.
#[derive(Debug, Clone)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
    size: u32,
    count: u32,
    /// Offsets below this are the static band.
    static_band: u32,
}

impl Bitmap {
    pub(crate) fn new(size: u32, static_band: u32) -> Self {
        Bitmap { words: vec![0; size.div_ceil(64) as usize], size, count: 0, static_band }
    }

    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    pub(crate) fn used(&self) -> u32 {
        self.count
    }

    pub(crate) fn has(&self, at: u32) -> bool {
        at < self.size && self.words[(at / 64) as usize] & (1 << (at % 64)) != 0
    }

    /// Marks `at`; false if it was already taken (or out of range).
    pub(crate) fn set(&mut self, at: u32) -> bool {
        if at >= self.size || self.has(at) {
            return false;
        }
        self.words[(at / 64) as usize] |= 1 << (at % 64);
        self.count += 1;
        true
    }

    /// Frees `at`; false if it was not taken.
    pub(crate) fn clear(&mut self, at: u32) -> bool {
        if !self.has(at) {
            return false;
        }
        self.words[(at / 64) as usize] &= !(1 << (at % 64));
        self.count -= 1;
        true
    }

    pub(crate) fn reset(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.count = 0;
    }

    /// Upstream's random scan with offset: a random start in the dynamic band, scanning
    /// forward with wrap-around; only when that band is full, the same in the static band.
    pub(crate) fn allocate_next(&mut self, rng: &mut Rng) -> Option<u32> {
        if self.count >= self.size {
            return None;
        }
        let bands = [(self.static_band, self.size), (0, self.static_band)];
        for (lo, hi) in bands {
            let len = hi.saturating_sub(lo);
            if len == 0 {
                continue;
            }
            let start = rng.below(len);
            for i in 0..len {
                let at = lo + (start + i) % len;
                if self.set(at) {
                    return Some(at);
                }
            }
        }
        None
    }
}

/// Upstream's service-IP static band: min(max(16, size/16), 256) addresses, none for
/// ranges smaller than 16 (KEP-3070).
pub(crate) fn ip_static_band(cidr_size: u64) -> u32 {
    if cidr_size < 16 {
        0
    } else {
        (cidr_size / 16).clamp(16, 256) as u32
    }
}

/// Upstream's NodePort static band: min(max(16, size/32), 128) ports, none for ranges
/// of 16 or fewer (KEP-3668).
pub(crate) fn port_static_band(range_size: u32) -> u32 {
    if range_size <= 16 {
        0
    } else {
        (range_size / 32).clamp(16, 128)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_match_upstream() {
        assert_eq!(ip_static_band(1 << 20), 256); // /12
        assert_eq!(ip_static_band(256), 16); // /24
        assert_eq!(ip_static_band(8), 0);
        assert_eq!(port_static_band(2768), 86); // 30000-32767
    }

    #[test]
    fn dynamic_band_first_then_static() {
        let mut b = Bitmap::new(20, 16);
        let mut rng = Rng::new(7);
        let mut got: Vec<u32> = (0..4).filter_map(|_| b.allocate_next(&mut rng)).collect();
        got.sort_unstable();
        assert_eq!(got, vec![16, 17, 18, 19]);
        assert!(b.allocate_next(&mut rng).is_some_and(|a| a < 16));
        for _ in 0..15 {
            assert!(b.allocate_next(&mut rng).is_some());
        }
        assert_eq!(b.allocate_next(&mut rng), None);
        assert!(b.clear(3) && !b.clear(3));
        assert_eq!(b.allocate_next(&mut rng), Some(3));
    }
}
