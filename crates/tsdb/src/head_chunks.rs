//! A head series' closed chunks, back to back in one buffer.
//!
//! A head holds a few closed chunks per series (four per 2 h block at a 15 s scrape), each of
//! a couple of hundred bytes. As one allocation per chunk plus a `Vec` of `(bytes, min_t,
//! max_t)` headers they cost about 60 bytes each beyond their data (a 40-byte header and the
//! allocator's per-block overhead); here a chunk costs a header of two varints, about 5
//! bytes, and the series one allocation for all of them.
//!
//! Per chunk: `uvarint(len)`, `uvarint(max_t - min_t)`, then the chunk's `len` bytes as
//! [`crate::chunk::encode`] makes them, which begin with `min_t` (see
//! [`crate::chunk::first_time`]). Chunks are in time order and do not overlap. Each header
//! stands alone, so a chunk is appended, or kept by a cut, without reading the others.

use meshlens_model::Sample;

use crate::chunk::{self, ChunkError};
use crate::varint::{put_uvarint, Reader};

#[derive(Debug, Default)]
pub struct ClosedChunks {
    /// Exactly the chunks' bytes (a boxed slice: two words, not a `Vec`'s three).
    buf: Box<[u8]>,
}

/// One closed chunk, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct ChunkView<'a> {
    pub min_t: i64,
    pub max_t: i64,
    pub bytes: &'a [u8],
}

impl ChunkView<'_> {
    pub fn decode(&self) -> Result<Vec<Sample>, ChunkError> {
        chunk::decode(self.bytes)
    }

    /// Appends the samples within `[mint, maxt]` to `buf`; see [`chunk::decode_range_into`].
    pub fn decode_range_into(
        &self,
        mint: i64,
        maxt: i64,
        buf: &mut Vec<Sample>,
    ) -> Result<usize, ChunkError> {
        chunk::decode_range_into(self.bytes, mint, maxt, buf)
    }
}

/// Reads the headers in turn (see the module doc).
pub struct Iter<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = ChunkView<'a>;

    #[inline]
    fn next(&mut self) -> Option<ChunkView<'a>> {
        if self.r.is_empty() {
            return None;
        }
        // Written by `push` alone: a short or malformed header cannot happen; if it did,
        // iteration would end there rather than panic.
        let len = usize::try_from(self.r.uvarint()?).ok()?;
        let span = self.r.uvarint()?;
        let bytes = self.r.bytes(len)?;
        let min_t = chunk::first_time(bytes)?;
        let max_t = min_t.wrapping_add(span as i64);
        Some(ChunkView {
            min_t,
            max_t,
            bytes,
        })
    }
}

impl ClosedChunks {
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            r: Reader::new(&self.buf),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Appends a chunk (bytes as [`chunk::encode`] makes them, at least one sample, ending
    /// at `max_t`), which must start after every chunk held ends. The buffer grows by
    /// exactly the chunk: series hold few chunks, each closed long after the last.
    pub fn push(&mut self, max_t: i64, bytes: &[u8]) {
        let min_t = chunk::first_time(bytes);
        debug_assert!(min_t.is_some_and(|t| t <= max_t), "a chunk without samples");
        let len = bytes.len() as u64;
        let span = max_t.wrapping_sub(min_t.unwrap_or(max_t)) as u64;
        let mut buf = std::mem::take(&mut self.buf).into_vec();
        buf.reserve_exact(uvarint_len(len) + uvarint_len(span) + bytes.len());
        put_uvarint(&mut buf, len);
        put_uvarint(&mut buf, span);
        buf.extend_from_slice(bytes);
        // Filled to the capacity reserved: no reallocation here.
        self.buf = buf.into_boxed_slice();
    }

    /// Removes the samples before `boundary`, appending them to `out` in time order: chunks
    /// wholly before it leave, a chunk across it is cut in two (its later part
    /// re-encoded), later chunks stay as they are.
    pub fn take_before(&mut self, boundary: i64, out: &mut Vec<Sample>) {
        if self.iter().next().is_none_or(|c| c.min_t >= boundary) {
            return;
        }
        let mut keep = ClosedChunks::default();
        for c in self.iter() {
            if c.max_t < boundary {
                // Our own chunks always decode; a failure would leave samples out.
                let _ = c.decode_range_into(i64::MIN, i64::MAX, out);
            } else if c.min_t >= boundary {
                keep.push(c.max_t, c.bytes);
            } else {
                let all = c.decode().unwrap_or_default();
                let split = all.partition_point(|s| s.t < boundary);
                out.extend_from_slice(&all[..split]);
                let after = &all[split..];
                if let Some(last) = after.last() {
                    let mut bytes = Vec::new();
                    chunk::encode_into(after, &mut bytes);
                    keep.push(last.t, &bytes);
                }
            }
        }
        *self = keep;
    }

    /// The chunks overlapping `[mint, maxt]`.
    pub fn overlapping(&self, mint: i64, maxt: i64) -> impl Iterator<Item = ChunkView<'_>> {
        self.iter()
            .skip_while(move |c| c.max_t < mint)
            .take_while(move |c| c.min_t <= maxt)
    }

    /// The time span of all chunks, or None when there are none.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let mut it = self.iter();
        let first = it.next()?;
        let last = it.last().unwrap_or(first);
        Some((first.min_t, last.max_t))
    }
}

/// The bytes `put_uvarint` writes for `v`.
fn uvarint_len(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_back_as_pushed() {
        let mut c = ClosedChunks::default();
        assert!(c.is_empty() && c.iter().next().is_none() && c.time_range().is_none());
        let mut want = Vec::new();
        for k in 0..5i64 {
            let samples: Vec<Sample> = (0..120)
                .map(|i| Sample::new(k * 1_800_000 + i * 15_000 - 3_000_000, (k * i) as f64))
                .collect();
            let enc = chunk::encode(&samples);
            assert_eq!(chunk::first_time(&enc.bytes), Some(enc.min_t));
            c.push(enc.max_t, &enc.bytes);
            want.push((enc, samples));
        }
        assert_eq!(c.len(), 5);
        for (got, (enc, samples)) in c.iter().zip(&want) {
            assert_eq!(
                (got.min_t, got.max_t, got.bytes),
                (enc.min_t, enc.max_t, &enc.bytes[..])
            );
            assert_eq!(&got.decode().unwrap(), samples);
        }
        assert_eq!(c.time_range(), Some((want[0].0.min_t, want[4].0.max_t)));
        let mins: Vec<i64> = c
            .overlapping(want[1].0.max_t, want[3].0.min_t)
            .map(|v| v.min_t)
            .collect();
        assert_eq!(mins, [want[1].0.min_t, want[2].0.min_t, want[3].0.min_t]);
        assert_eq!(c.overlapping(i64::MIN, want[0].0.min_t - 1).count(), 0);
        assert_eq!(c.overlapping(want[4].0.max_t + 1, i64::MAX).count(), 0);
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX >> 1, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(uvarint_len(v), b.len(), "{v}");
        }
        // Extreme times survive the span.
        let mut x = ClosedChunks::default();
        let low = [Sample::new(i64::MIN, 1.0), Sample::new(i64::MIN + 5, 2.0)];
        let high = [
            Sample::new(i64::MAX - 9, 0.5),
            Sample::new(i64::MAX, f64::NAN),
        ];
        for s in [&low[..], &high[..]] {
            x.push(s[1].t, &chunk::encode(s).bytes);
        }
        let v: Vec<(i64, i64, usize)> = x
            .iter()
            .map(|c| (c.min_t, c.max_t, c.decode().unwrap().len()))
            .collect();
        assert_eq!(
            v,
            [(i64::MIN, i64::MIN + 5, 2), (i64::MAX - 9, i64::MAX, 2)]
        );
    }
}
