//! Bit-level writer and reader for chunk encodings.

#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    pub bytes: Vec<u8>,
    /// Bits still free in the last byte (0..=7); 0 means a new byte is needed.
    free: u8,
    /// The last byte of `bytes` as written so far. Writes merge into this copy and only
    /// store the result: a head series' buffer is usually out of cache when its next sample
    /// comes, and a read-modify-write of the byte there would stall on the load (a third
    /// of the append path's time), while a store does not.
    last: u8,
}

impl BitWriter {
    pub fn from_parts(bytes: Vec<u8>, free: u8) -> Self {
        let last = if free > 0 {
            bytes.last().copied().unwrap_or(0)
        } else {
            0
        };
        BitWriter { bytes, free, last }
    }

    #[inline]
    fn start_byte(&mut self) {
        self.bytes.push(0);
        self.free = 8;
        self.last = 0;
    }

    #[inline]
    fn store_last(&mut self) {
        if let Some(b) = self.bytes.last_mut() {
            *b = self.last;
        }
    }

    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.start_byte();
        }
        self.free -= 1;
        if bit {
            self.last |= 1 << self.free;
            self.store_last();
        }
    }

    /// Writes the low `n` bits of `v`, most significant first.
    #[inline]
    pub fn write_bits(&mut self, v: u64, n: u8) {
        let mut n = n;
        while n > 0 {
            if self.free == 0 {
                self.start_byte();
            }
            let take = n.min(self.free);
            let shift = n - take;
            let part = ((v >> shift) & ((1u64 << take) - 1)) as u8;
            self.free -= take;
            self.last |= part << self.free;
            self.store_last();
            n -= take;
        }
    }
}

/// Reads a bit stream most significant bit first, a 64-bit word at a time: the next unread
/// bits sit left-aligned in `window`, refilled with one unaligned big-endian load, so a read
/// of up to 56 bits is a shift and a mask instead of a loop over bytes and bits.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// The next byte not yet claimed by `window`.
    next: usize,
    /// Unread bits, left-aligned. Bits past `avail` are either zero or the stream's own
    /// next bits, so OR-ing the same bytes in again on refill is harmless.
    window: u64,
    /// Valid bits in `window` (0..=63).
    avail: u32,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let mut r = BitReader {
            data,
            next: 0,
            window: 0,
            avail: 0,
        };
        r.refill();
        r
    }

    /// A reader starting `bit` bits into `data`.
    pub fn at(data: &'a [u8], bit: usize) -> Self {
        let mut r = BitReader {
            data,
            next: (bit / 8).min(data.len()),
            window: 0,
            avail: 0,
        };
        r.refill();
        let skip = (bit % 8) as u32;
        if skip <= r.avail {
            r.consume(skip);
        }
        r
    }

    /// Bits read so far.
    pub fn position(&self) -> usize {
        self.next * 8 - self.avail as usize
    }

    /// Tops `window` up to at least 56 valid bits, or to the end of the data.
    #[inline(always)]
    pub fn refill(&mut self) {
        match self
            .data
            .get(self.next..self.next + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
        {
            Some(word) => {
                self.window |= u64::from_be_bytes(word) >> self.avail;
                let take = (63 - self.avail) >> 3;
                self.next += take as usize;
                self.avail += take << 3;
            }
            None => self.refill_tail(),
        }
    }

    /// The last few bytes, one at a time.
    #[cold]
    fn refill_tail(&mut self) {
        while self.avail <= 56 {
            let Some(&b) = self.data.get(self.next) else {
                return;
            };
            self.window |= u64::from(b) << (56 - self.avail);
            self.next += 1;
            self.avail += 8;
        }
    }

    /// Bits available without a refill.
    #[inline(always)]
    pub fn avail(&self) -> u32 {
        self.avail
    }

    /// The next 64 bits, left-aligned, without consuming them; only the first `avail()` are
    /// meaningful (the rest are zero or stream bits not yet counted).
    #[inline(always)]
    pub fn peek(&self) -> u64 {
        self.window
    }

    /// Consumes `n` (at most 63) bits already checked to be available.
    #[inline(always)]
    pub fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.avail);
        self.window <<= n;
        self.avail -= n;
    }

    /// Reads `n` bits (0..=64) as an unsigned number; None past the end of the data.
    #[inline(always)]
    pub fn read_bits(&mut self, n: u32) -> Option<u64> {
        if n > 56 {
            // More than one refill guarantees: in two reads.
            let hi = self.read_short(n - 32)?;
            let lo = self.read_short(32)?;
            return Some(hi << 32 | lo);
        }
        self.read_short(n)
    }

    /// Reads `n` bits, at most 56.
    #[inline(always)]
    fn read_short(&mut self, n: u32) -> Option<u64> {
        debug_assert!(n <= 56);
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return None;
            }
        }
        // Two shifts so that n = 0 yields 0 instead of overflowing a shift by 64.
        let v = (self.window >> 1) >> (63 - n);
        self.consume(n);
        Some(v)
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: a bit at a time into a plain byte vector.
    fn reference(writes: &[(u64, u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = 0usize;
        for &(v, n) in writes {
            for i in (0..n).rev() {
                if pos.is_multiple_of(8) {
                    out.push(0);
                }
                if (v >> i) & 1 == 1 {
                    *out.last_mut().unwrap() |= 0x80 >> (pos % 8);
                }
                pos += 1;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn writes_match_the_bitwise_reference(
            writes in proptest::collection::vec((any::<u64>(), 0u8..=64), 0..40),
            split in 0usize..40,
        ) {
            // Written in two halves, the second resumed with `from_parts` as `encode` does.
            let split = split.min(writes.len());
            let mut w = BitWriter::default();
            for &(v, n) in &writes[..split] {
                if n == 1 { w.write_bit(v & 1 == 1) } else { w.write_bits(v, n) }
            }
            let free = w.free;
            let mut w = BitWriter::from_parts(w.bytes, free);
            for &(v, n) in &writes[split..] {
                w.write_bits(v, n);
            }
            prop_assert_eq!(w.bytes, reference(&writes));
        }
    }
}
