//! The head's open chunk: samples compressed as they arrive (delta-of-delta timestamps and
//! XOR values in two bit streams), so a series' newest samples cost about two bytes each
//! instead of sixteen. When the chunk closes it is re-encoded with [`super::encode`], which
//! may pick the denser decimal encoding.

use meshlens_model::Sample;

use super::bits::BitWriter;
use super::{decode_split_range_into, write_dod_value, ChunkError, XorState};

#[derive(Clone, Debug)]
pub struct Appender {
    times: BitWriter,
    values: BitWriter,
    n: u16,
    first_t: i64,
    prev_t: i64,
    prev_delta: i64,
    xor: XorState,
}

impl Default for Appender {
    fn default() -> Self {
        Appender {
            times: BitWriter::default(),
            values: BitWriter::default(),
            n: 0,
            first_t: 0,
            prev_t: 0,
            prev_delta: 0,
            xor: XorState::new(),
        }
    }
}

impl Appender {
    /// An empty appender whose buffers have room for about as much as `prev` holds: the
    /// next chunk of a series is usually alike, so its buffers neither regrow step by step
    /// (each step a copy and a freed block) nor keep doubled spare room.
    pub fn sized_like(prev: &Appender) -> Appender {
        let room = |n: usize| n + n / 8 + 1;
        let mut a = Appender::default();
        a.times.bytes.reserve_exact(room(prev.times.bytes.len()));
        a.values.bytes.reserve_exact(room(prev.values.bytes.len()));
        a
    }

    /// Appends a sample; timestamps must not decrease (the head checks order).
    pub fn append(&mut self, t: i64, v: f64) {
        if self.n == 0 {
            self.times.write_bits(t as u64, 64);
            self.first_t = t;
        } else {
            let delta = t.wrapping_sub(self.prev_t);
            write_dod_value(&mut self.times, delta.wrapping_sub(self.prev_delta));
            self.prev_delta = delta;
        }
        self.xor.write(&mut self.values, v, self.n == 0);
        self.prev_t = t;
        self.n += 1;
    }

    pub fn len(&self) -> usize {
        usize::from(self.n)
    }

    /// The address the next value's bits are written to (the value stream's last byte), for
    /// a caller to prefetch before that series' next append; 0 when nothing is written.
    pub fn tail_addr(&self) -> usize {
        match self.values.bytes.len() {
            0 => 0,
            n => self.values.bytes.as_ptr() as usize + n - 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn first_t(&self) -> Option<i64> {
        (self.n > 0).then_some(self.first_t)
    }

    pub fn last_t(&self) -> Option<i64> {
        (self.n > 0).then_some(self.prev_t)
    }

    /// The samples, decoded.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.len());
        // Our own streams always decode; a failure would leave no samples, never panic.
        let _ = self.decode_range_into(i64::MIN, i64::MAX, &mut out);
        out
    }

    /// Appends the samples within `[mint, maxt]` to `buf`, decoding the streams in place.
    pub fn decode_range_into(
        &self,
        mint: i64,
        maxt: i64,
        buf: &mut Vec<Sample>,
    ) -> Result<usize, ChunkError> {
        decode_split_range_into(
            &self.times.bytes,
            &self.values.bytes,
            self.len(),
            mint,
            maxt,
            buf,
        )
    }

    /// Whether a sample falls in `[mint, maxt]`: from the first and last timestamps alone,
    /// unless the range lies strictly between them.
    pub fn has_sample_in(&self, mint: i64, maxt: i64) -> bool {
        let (Some(first), Some(last)) = (self.first_t(), self.last_t()) else {
            return false;
        };
        if first > maxt || last < mint {
            return false;
        }
        if (mint..=maxt).contains(&first) || (mint..=maxt).contains(&last) {
            return true;
        }
        let mut scratch = Vec::new();
        self.decode_range_into(mint, maxt, &mut scratch)
            .is_ok_and(|n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn appended_samples_decode_exactly(
            mut ts in proptest::collection::vec(any::<i64>(), 1..200),
            vs in proptest::collection::vec(any::<u64>(), 200),
        ) {
            ts.sort_unstable();
            let mut a = Appender::default();
            for (t, v) in ts.iter().zip(&vs) {
                a.append(*t, f64::from_bits(*v));
            }
            let back = a.samples();
            prop_assert_eq!(back.len(), ts.len());
            for ((t, v), s) in ts.iter().zip(&vs).zip(&back) {
                prop_assert_eq!(*t, s.t);
                prop_assert_eq!(*v, s.v.to_bits());
            }
        }

        #[test]
        fn range_reads_of_the_open_chunk_cut_exactly(
            mut ts in proptest::collection::vec(-1_000_000i64..1_000_000, 1..200),
            mint in -1_100_000i64..1_100_000,
            len in 0i64..1_000_000,
        ) {
            ts.sort_unstable();
            ts.dedup();
            let mut a = Appender::default();
            for (i, t) in ts.iter().enumerate() {
                a.append(*t, i as f64 * 0.5);
            }
            let maxt = mint + len;
            let mut buf = Vec::new();
            let n = a.decode_range_into(mint, maxt, &mut buf).unwrap();
            let want: Vec<Sample> = a
                .samples()
                .into_iter()
                .filter(|s| s.t >= mint && s.t <= maxt)
                .collect();
            prop_assert_eq!(n, want.len());
            prop_assert_eq!(&buf, &want);
            prop_assert_eq!(a.has_sample_in(mint, maxt), !want.is_empty());
        }
    }
}
