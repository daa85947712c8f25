//! The mutator of the stable driver: a seeded xorshift generator and
//! coverage-free byte mutations in the style of libFuzzer's and AFL's
//! (bit flips, random and interesting bytes, inserts of random or repeated
//! bytes, deletes, truncations, copies of a chunk within the input, splices
//! of two corpus inputs, interesting values written over what may be a
//! length field, small arithmetic, and the target's dictionary tokens).
//! Everything is a pure function of the seed: the same seed gives the same
//! inputs, in the same order.

/// xorshift64* (Vigna): small, fast, and good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator; seed 0 is replaced by a fixed non-zero constant (xorshift needs one bit set).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 32) as u8
    }

    /// A length biased towards small values (most mutations touch a few bytes).
    fn small_len(&mut self, max: usize) -> usize {
        let cap = match self.below(4) {
            0 => max,
            1 => 64,
            _ => 8,
        };
        1 + self.below(cap.min(max).max(1))
    }
}

/// FNV-1a, 64 bits: input names and per-target seeds.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Values that break length and count fields: boundaries of every width.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    12,
    16,
    20,
    28,
    32,
    64,
    100,
    127,
    128,
    255,
    256,
    512,
    1000,
    1024,
    4096,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x10_0000,
    0x100_0000,
    0x100_0004,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fff0,
    0xffff_fffc,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0xffff_ffff_ffff_ffff,
];

/// Mutates inputs for one target.
#[derive(Debug)]
pub struct Mutator<'a> {
    pub rng: Rng,
    /// Longest input produced.
    pub max_len: usize,
    /// Tokens of the target's input language (keywords, magic numbers, JSON pieces).
    pub dictionary: &'a [&'a [u8]],
}

impl<'a> Mutator<'a> {
    pub fn new(seed: u64, max_len: usize, dictionary: &'a [&'a [u8]]) -> Mutator<'a> {
        Mutator { rng: Rng::new(seed), max_len: max_len.max(1), dictionary }
    }

    /// A new input from `base`, with 1 to 8 stacked mutations; `other` is
    /// another corpus input for splices.
    pub fn mutate(&mut self, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut v = base.to_vec();
        let most = if self.rng.one_in(3) { 16 } else { 4 };
        let rounds = 1 + self.rng.below(most);
        for _ in 0..rounds {
            self.once(&mut v, other);
        }
        v.truncate(self.max_len);
        v
    }

    fn offset(&mut self, v: &[u8]) -> usize {
        self.rng.below(v.len() + 1)
    }

    /// One mutation, in place.
    pub fn once(&mut self, v: &mut Vec<u8>, other: &[u8]) {
        let r = &mut self.rng;
        if v.is_empty() {
            let n = r.small_len(16);
            v.extend((0..n).map(|_| r.byte()));
            return;
        }
        match r.below(15) {
            // Flip one bit.
            0 => {
                let i = r.below(v.len());
                v[i] ^= 1 << r.below(8);
            }
            // A random byte.
            1 => {
                let i = r.below(v.len());
                v[i] = r.byte();
            }
            // An interesting byte.
            2 => {
                let i = r.below(v.len());
                v[i] = [0u8, 1, 0x7f, 0x80, 0xff, b'\n', b'\\', b'"', b':', b' ', b'0'][r.below(11)];
            }
            // Insert random bytes.
            3 => {
                let at = self.offset(v);
                let n = self.rng.small_len(32);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.byte()).collect();
                v.splice(at..at, bytes);
            }
            // Insert a run of one byte (long runs find quadratic loops).
            4 => {
                let at = self.offset(v);
                let most = if self.rng.one_in(4) { 4096 } else { 64 };
                let n = self.rng.small_len(most);
                let b = if self.rng.one_in(2) { v[self.rng.below(v.len())] } else { self.rng.byte() };
                v.splice(at..at, std::iter::repeat_n(b, n));
            }
            // Delete a range.
            5 => {
                let at = self.rng.below(v.len());
                let n = self.rng.small_len(v.len() - at);
                v.drain(at..at + n);
            }
            // Truncate.
            6 => {
                let n = self.rng.below(v.len());
                v.truncate(n);
            }
            // Copy a chunk of the input over or into another place.
            7 => {
                let from = self.rng.below(v.len());
                let n = self.rng.small_len(v.len() - from);
                let chunk = v[from..from + n].to_vec();
                let at = self.offset(v);
                if self.rng.one_in(2) {
                    v.splice(at..at, chunk);
                } else {
                    let end = (at + n).min(v.len());
                    v.splice(at..end, chunk);
                }
            }
            // Splice with another corpus input: our head and its tail, or a chunk of it inserted.
            8 => {
                if other.is_empty() {
                    return;
                }
                if self.rng.one_in(2) {
                    let cut = self.rng.below(v.len() + 1);
                    let from = self.rng.below(other.len());
                    v.truncate(cut);
                    v.extend_from_slice(&other[from..]);
                } else {
                    let from = self.rng.below(other.len());
                    let n = self.rng.small_len(other.len() - from);
                    let at = self.offset(v);
                    v.splice(at..at, other[from..from + n].iter().copied());
                }
            }
            // An interesting value over a 1/2/4/8-byte field, either byte order,
            // often aligned to 4 (where pcap and pcapng keep their lengths).
            9 | 10 => {
                let width = [1usize, 2, 4, 4, 8][self.rng.below(5)];
                if v.len() < width {
                    return;
                }
                let mut at = self.rng.below(v.len() - width + 1);
                if self.rng.one_in(2) {
                    at -= at % 4;
                }
                let mut val = match self.rng.below(4) {
                    0 => v.len() as u64,
                    1 => (v.len() - at) as u64,
                    _ => INTERESTING[self.rng.below(INTERESTING.len())],
                };
                if self.rng.one_in(4) {
                    val = val.wrapping_add(self.rng.below(9) as u64).wrapping_sub(4);
                }
                // Either way the field's `width` bytes come first.
                let bytes =
                    if self.rng.one_in(2) { val.to_le_bytes() } else { (val << (64 - 8 * width)).to_be_bytes() };
                v[at..at + width].copy_from_slice(&bytes[..width]);
            }
            // Small arithmetic on a byte or a little-endian u16/u32.
            11 => {
                let width = [1usize, 2, 4][self.rng.below(3)];
                if v.len() < width {
                    return;
                }
                let at = self.rng.below(v.len() - width + 1);
                let mut buf = [0u8; 8];
                buf[..width].copy_from_slice(&v[at..at + width]);
                let delta = 1 + self.rng.below(35) as u64;
                let x = u64::from_le_bytes(buf);
                let y = if self.rng.one_in(2) { x.wrapping_add(delta) } else { x.wrapping_sub(delta) };
                v[at..at + width].copy_from_slice(&y.to_le_bytes()[..width]);
            }
            // A dictionary token, inserted or written over.
            12 | 13 => {
                if self.dictionary.is_empty() {
                    return;
                }
                let tok = self.dictionary[self.rng.below(self.dictionary.len())];
                let at = self.offset(v);
                if self.rng.one_in(2) {
                    v.splice(at..at, tok.iter().copied());
                } else {
                    let end = (at + tok.len()).min(v.len());
                    v.splice(at..end, tok.iter().copied());
                }
            }
            // Swap two bytes.
            _ => {
                let (a, b) = (self.rng.below(v.len()), self.rng.below(v.len()));
                v.swap(a, b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs_and_another_seed_others() {
        let base = b"pid=1 comm=curl cookie=2 verdict=pass";
        let dict: &[&[u8]] = &[b"rule=", b"\\x20"];
        let run = |seed| {
            let mut m = Mutator::new(seed, 256, dict);
            (0..500).map(|_| m.mutate(base, b"other input")).collect::<Vec<_>>()
        };
        let (a, b, c) = (run(7), run(7), run(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| v.len() <= 256));
        // It does change things, in many ways.
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 400, "{}", distinct.len());
        assert!(a.iter().any(|v| v.len() > base.len()) && a.iter().any(|v| v.len() < base.len()));
    }

    #[test]
    fn empty_inputs_grow_and_the_generator_spreads() {
        let mut m = Mutator::new(1, 64, &[]);
        assert!(!m.mutate(b"", b"").is_empty());
        let mut r = Rng::new(0);
        let mut seen = [0usize; 10];
        for _ in 0..10_000 {
            seen[r.below(10)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_ne!(fnv1a(b"pcap"), fnv1a(b"pcapng"));
    }
}
