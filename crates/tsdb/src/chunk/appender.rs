//! The head's open chunk: samples compressed as they arrive (delta-of-delta timestamps and
//! values in two bit streams), so a series' newest samples cost a byte or two each instead
//! of sixteen. When the chunk closes it is re-encoded with [`super::encode`].
//!
//! Values are written in the closed chunks' decimal encoding (integers times 10^-d,
//! delta-of-delta) while every value so far is one, as counters and exporters' rounded
//! gauges are: about a third of the bytes XOR takes for them, and the open chunk is a large
//! part of a head series' memory. The first value that does not fit re-encodes the values
//! once, at a larger d or as XOR, which then stays for the rest of the chunk.

use meshlens_model::Sample;

use super::bits::BitWriter;
use super::{
    decimal_scale, decode_split_range_into, scaled_int, write_dod, write_dod_value, ChunkError,
    Scaled, Values, XorState,
};

#[derive(Clone, Debug)]
pub struct Appender {
    times: BitWriter,
    values: BitWriter,
    n: u16,
    // The first sample's time is the time stream's first 8 bytes (see `first_t`).
    prev_t: i64,
    prev_delta: i64,
    enc: ValueEnc,
}

/// How the open chunk's values are being written.
#[derive(Clone, Copy, Debug)]
enum ValueEnc {
    /// Integers times 10^-d, delta-of-delta: the previous integer and delta.
    Decimal {
        d: u8,
        prev: i64,
        delta: i64,
    },
    Xor(XorState),
}

impl ValueEnc {
    fn kind(&self) -> Values {
        match *self {
            ValueEnc::Decimal { d, .. } => Values::Decimal(d),
            ValueEnc::Xor(_) => Values::Xor,
        }
    }
}

impl Default for Appender {
    fn default() -> Self {
        Appender {
            times: BitWriter::default(),
            values: BitWriter::default(),
            n: 0,
            prev_t: 0,
            prev_delta: 0,
            enc: ValueEnc::Decimal {
                d: 0,
                prev: 0,
                delta: 0,
            },
        }
    }
}

impl Appender {
    /// An empty appender whose buffers have room for half of what `prev` holds: the next
    /// chunk of a series is usually alike, so its buffers regrow once, at half way, to
    /// about `prev`'s size (not step by step, each step a copy and a freed block), and an
    /// open chunk, on average half full, holds little spare room.
    pub fn sized_like(prev: &Appender) -> Appender {
        let room = |n: usize| n / 2 + 1;
        let mut a = Appender::default();
        a.times.bytes.reserve_exact(room(prev.times.bytes.len()));
        a.values.bytes.reserve_exact(room(prev.values.bytes.len()));
        a
    }

    /// Appends a sample; timestamps must not decrease (the head checks order).
    pub fn append(&mut self, t: i64, v: f64) {
        if self.n == 0 {
            self.times.write_bits(t as u64, 64);
        } else {
            let delta = t.wrapping_sub(self.prev_t);
            write_dod_value(&mut self.times, delta.wrapping_sub(self.prev_delta));
            self.prev_delta = delta;
        }
        self.write_value(t, v);
        self.prev_t = t;
        self.n += 1;
    }

    /// Writes the value of the sample being appended (`t` is its time, for a re-encode).
    #[inline]
    fn write_value(&mut self, t: i64, v: f64) {
        match &mut self.enc {
            ValueEnc::Xor(x) => x.write(&mut self.values, v, self.n == 0),
            ValueEnc::Decimal { d, prev, delta } => {
                let int = match scaled_int(v, *d) {
                    Scaled::Exact(i) => i,
                    _ => return self.reencode_values(t, v),
                };
                if self.n == 0 {
                    self.values.write_bits(int as u64, 64);
                    *delta = 0;
                } else {
                    let dl = int.wrapping_sub(*prev);
                    write_dod_value(&mut self.values, dl.wrapping_sub(*delta));
                    *delta = dl;
                }
                *prev = int;
            }
        }
    }

    /// Rewrites the value stream with `v` (at time `t`) added, in the densest encoding that
    /// holds every value: a larger d, or XOR. At most 7 times per chunk (d only grows).
    #[cold]
    fn reencode_values(&mut self, t: i64, v: f64) {
        let mut all = self.samples();
        all.push(Sample::new(t, v));
        let mut w = BitWriter::default();
        w.bytes.reserve(self.values.bytes.capacity());
        self.enc = match decimal_scale(&all) {
            Some(d) => {
                let ints: Vec<i64> = all
                    .iter()
                    .map(|s| match scaled_int(s.v, d) {
                        Scaled::Exact(i) => i,
                        // decimal_scale checked every value at d.
                        _ => 0,
                    })
                    .collect();
                write_dod(&mut w, &ints);
                let last = ints[ints.len() - 1];
                let delta = match ints.len() {
                    0 | 1 => 0,
                    n => last.wrapping_sub(ints[n - 2]),
                };
                ValueEnc::Decimal {
                    d,
                    prev: last,
                    delta,
                }
            }
            None => {
                let mut x = XorState::new();
                for (i, s) in all.iter().enumerate() {
                    x.write(&mut w, s.v, i == 0);
                }
                ValueEnc::Xor(x)
            }
        };
        self.values = w;
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
        if self.n == 0 {
            return None;
        }
        // The stream starts with the first time's 64 bits, most significant first.
        let first: [u8; 8] = self.times.bytes.get(..8)?.try_into().ok()?;
        Some(i64::from_be_bytes(first))
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
            self.enc.kind(),
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

    /// Counters and rounded gauges stay in the decimal encoding: far fewer bytes than XOR.
    #[test]
    fn decimal_values_take_fewer_bytes_than_xor() {
        let mut a = Appender::default();
        let mut xor = BitWriter::default();
        let mut x = XorState::new();
        let mut v = 1_234_567.0;
        for i in 0..120 {
            v += f64::from((i * 7919) % 40);
            a.append(i64::from(i) * 15_000, v);
            x.write(&mut xor, v, i == 0);
        }
        assert!(matches!(a.enc, ValueEnc::Decimal { d: 0, .. }));
        assert!(a.values.bytes.len() < xor.bytes.len());
        assert_eq!(a.samples().len(), 120);
        assert_eq!(a.samples()[119].v, v);
        a.append(120 * 15_000, v + 0.25);
        assert!(matches!(a.enc, ValueEnc::Decimal { d: 2, .. }));
        a.append(121 * 15_000, 1.0 / 3.0);
        assert!(matches!(a.enc, ValueEnc::Xor(_)));
        let back = a.samples();
        assert_eq!(back[120].v, v + 0.25);
        assert_eq!(back[121].v, 1.0 / 3.0);
    }

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

        /// Decimal values, then now and then one that needs a larger d or XOR (a fraction,
        /// -0.0, NaN, infinity, a huge value): every value comes back bit for bit.
        #[test]
        fn values_switching_encoding_decode_exactly(
            picks in proptest::collection::vec((0u8..12, -100_000i64..100_000), 1..200),
        ) {
            let mut a = Appender::default();
            let mut want = Vec::new();
            for (i, (kind, x)) in picks.iter().enumerate() {
                let v = match kind {
                    0 => 0.1 * *x as f64,
                    1 => -0.0,
                    2 => f64::NAN,
                    3 => f64::INFINITY,
                    4 => 1e300,
                    5 => *x as f64 / 1000.0,
                    6 => *x as f64 / 7.0,
                    _ => *x as f64,
                };
                a.append(i as i64 * 15_000, v);
                want.push(v.to_bits());
            }
            let back: Vec<u64> = a.samples().iter().map(|s| s.v.to_bits()).collect();
            prop_assert_eq!(back, want);
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
