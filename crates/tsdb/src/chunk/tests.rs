use super::*;
use proptest::prelude::*;

fn round_trip(samples: &[Sample]) {
    let c = encode(samples);
    let back = c.decode().unwrap();
    assert_eq!(back.len(), samples.len());
    for (a, b) in samples.iter().zip(&back) {
        assert_eq!(a.t, b.t);
        assert_eq!(a.v.to_bits(), b.v.to_bits(), "value {} vs {}", a.v, b.v);
    }
}

#[test]
fn counters_use_the_decimal_encoding_and_are_small() {
    let samples: Vec<Sample> = (0..240)
        .map(|i| Sample::new(1_700_000_000_000 + i * 15_000, (i * 37) as f64))
        .collect();
    let c = encode(&samples);
    assert_eq!(c.bytes[0], ENC_DECIMAL);
    round_trip(&samples);
    assert!(c.bytes.len() < 240 / 2, "{} bytes", c.bytes.len());
}

#[test]
fn gauges_with_two_decimals_round_trip_exactly() {
    let samples: Vec<Sample> = (0..120)
        .map(|i| Sample::new(i * 15_000 + (i % 3), ((i * 7919) % 1000) as f64 / 100.0))
        .collect();
    round_trip(&samples);
    assert_eq!(encode(&samples).bytes[0], ENC_DECIMAL);
}

#[test]
fn special_values_use_xor_and_keep_their_bits() {
    let samples = vec![
        Sample::new(0, 1.5),
        Sample::new(1, f64::NAN),
        Sample::new(2, meshlens_model::STALE_NAN),
        Sample::new(3, f64::INFINITY),
        Sample::new(4, -0.0),
        Sample::new(i64::MAX, f64::MIN_POSITIVE),
    ];
    assert_eq!(encode(&samples).bytes[0], ENC_XOR);
    round_trip(&samples);
}

#[test]
fn truncated_chunks_are_errors_not_panics() {
    let samples: Vec<Sample> = (0..50)
        .map(|i| Sample::new(i * 1000, i as f64 * 0.1))
        .collect();
    let c = encode(&samples);
    for cut in 0..c.bytes.len() {
        let _ = decode(&c.bytes[..cut]);
    }
    assert!(decode(&[9, 0, 1]).is_err());
}

proptest! {
    #[test]
    fn arbitrary_samples_round_trip(
        mut ts in proptest::collection::vec(any::<i64>(), 1..300),
        vs in proptest::collection::vec(any::<u64>(), 300),
    ) {
        ts.sort_unstable();
        let samples: Vec<Sample> = ts.iter().zip(&vs).map(|(t, v)| Sample::new(*t, f64::from_bits(*v))).collect();
        round_trip(&samples);
    }

    #[test]
    fn realistic_series_round_trip(
        start in -1_000_000_000_000i64..2_000_000_000_000,
        jitter in proptest::collection::vec(-50i64..50, 1..300),
        steps in proptest::collection::vec(-1000i64..1000, 300),
        decimals in 0u32..4,
    ) {
        let mut v = 0i64;
        let samples: Vec<Sample> = jitter.iter().enumerate().map(|(i, j)| {
            v += steps[i];
            Sample::new(start + i as i64 * 15_000 + j, v as f64 / 10f64.powi(decimals as i32))
        }).collect();
        let mut sorted = samples.clone();
        sorted.sort_by_key(|s| s.t);
        round_trip(&sorted);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&b);
    }
}

/// The straightforward decoder the word-at-a-time one replaced: bit by bit, into separate
/// vectors. Kept as the reference the fast decoder must agree with, on any input.
mod reference {
    use super::super::{ChunkError, DOD_BUCKETS, ENC_DECIMAL, ENC_XOR};
    use meshlens_model::Sample;

    struct Bits<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl Bits<'_> {
        fn bit(&mut self) -> Option<bool> {
            let byte = *self.bytes.get(self.pos / 8)?;
            let bit = byte & (0x80 >> (self.pos % 8)) != 0;
            self.pos += 1;
            Some(bit)
        }

        fn bits(&mut self, n: u8) -> Option<u64> {
            let mut v = 0u64;
            for _ in 0..n {
                v = (v << 1) | u64::from(self.bit()?);
            }
            Some(v)
        }
    }

    fn unzigzag(v: u64) -> i64 {
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    fn dod(r: &mut Bits) -> Option<i64> {
        let mut ones = 0usize;
        while ones < 5 && r.bit()? {
            ones += 1;
        }
        match ones {
            0 => Some(0),
            5 => Some(r.bits(64)? as i64),
            k => Some(unzigzag(r.bits(DOD_BUCKETS[k - 1])?)),
        }
    }

    fn ints(r: &mut Bits, n: usize) -> Result<Vec<i64>, ChunkError> {
        let (mut out, mut prev, mut delta) = (Vec::new(), 0i64, 0i64);
        for i in 0..n {
            let v = if i == 0 {
                r.bits(64).ok_or(ChunkError::Truncated(i))? as i64
            } else {
                delta = delta.wrapping_add(dod(r).ok_or(ChunkError::Truncated(i))?);
                prev.wrapping_add(delta)
            };
            out.push(v);
            prev = v;
        }
        Ok(out)
    }

    fn xor(r: &mut Bits, n: usize) -> Result<Vec<f64>, ChunkError> {
        let (mut out, mut prev, mut lead, mut trail) = (Vec::new(), 0u64, 0u8, 0u8);
        for i in 0..n {
            let err = || ChunkError::Truncated(i);
            if i == 0 {
                prev = r.bits(64).ok_or_else(err)?;
            } else if r.bit().ok_or_else(err)? {
                if r.bit().ok_or_else(err)? {
                    lead = r.bits(5).ok_or_else(err)? as u8;
                    let mut sig = r.bits(6).ok_or_else(err)? as u8;
                    if sig == 0 {
                        sig = 64;
                    }
                    trail = 64u8.saturating_sub(lead + sig);
                }
                let x = r.bits(64 - lead - trail).ok_or_else(err)?;
                prev ^= x << trail;
            }
            out.push(f64::from_bits(prev));
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Vec<Sample>, ChunkError> {
        if bytes.len() < 3 {
            return Err(ChunkError::Truncated(0));
        }
        let n = u16::from_be_bytes([bytes[1], bytes[2]]) as usize;
        let (ts, vs) = match bytes[0] {
            ENC_XOR => {
                let mut r = Bits {
                    bytes: &bytes[3..],
                    pos: 0,
                };
                (ints(&mut r, n)?, xor(&mut r, n)?)
            }
            ENC_DECIMAL => {
                let d = *bytes.get(3).ok_or(ChunkError::Truncated(0))?;
                let mut r = Bits {
                    bytes: &bytes[4..],
                    pos: 0,
                };
                let ts = ints(&mut r, n)?;
                let scale = 10f64.powi(i32::from(d));
                let vs = ints(&mut r, n)?.into_iter().map(|v| v as f64 / scale);
                (ts, vs.collect())
            }
            other => return Err(ChunkError::UnknownEncoding(other)),
        };
        Ok(ts
            .into_iter()
            .zip(vs)
            .map(|(t, v)| Sample::new(t, v))
            .collect())
    }
}

fn same_bits(a: &[Sample], b: &[Sample]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.t == y.t && x.v.to_bits() == y.v.to_bits())
}

/// A realistic series: scrape interval with jitter, counters or gauges, with NaN, ±Inf,
/// stale markers and -0.0 sprinkled in when `specials`.
fn jittered(
    start: i64,
    jitter: &[i64],
    steps: &[i64],
    decimals: u32,
    specials: bool,
) -> Vec<Sample> {
    let mut v = 0i64;
    let mut t = start;
    jitter
        .iter()
        .zip(steps)
        .enumerate()
        .map(|(i, (j, step))| {
            v += step;
            t += 15_000 + j;
            let value = match (specials, i % 11) {
                (true, 3) => f64::NAN,
                (true, 5) => meshlens_model::STALE_NAN,
                (true, 7) => f64::INFINITY,
                (true, 8) => f64::NEG_INFINITY,
                (true, 9) => -0.0,
                _ => v as f64 / 10f64.powi(decimals as i32),
            };
            Sample::new(t, value)
        })
        .collect()
}

#[test]
fn stale_markers_and_infinities_keep_their_bits_in_range_reads() {
    let samples = jittered(1_000, &[3; 200], &[1; 200], 0, true);
    let c = encode(&samples);
    let mut buf = vec![Sample::new(-1, 9.0)];
    let n = decode_range_into(&c.bytes, samples[20].t, samples[150].t, &mut buf).unwrap();
    assert_eq!(n, 131);
    assert_eq!(buf[0], Sample::new(-1, 9.0), "what was in the buffer stays");
    assert!(same_bits(&buf[1..], &samples[20..=150]));
    assert!(buf[1..]
        .iter()
        .any(|s| s.v.to_bits() == meshlens_model::STALE_NAN_BITS));
}

#[test]
fn a_failed_range_read_leaves_the_buffer_as_it_was() {
    let samples = jittered(0, &[1; 100], &[5; 100], 1, false);
    let c = encode(&samples);
    let mut buf = vec![Sample::new(1, 1.0)];
    for cut in 3..c.bytes.len() - 1 {
        if decode_range_into(&c.bytes[..cut], i64::MIN, i64::MAX, &mut buf).is_err() {
            assert_eq!(buf, vec![Sample::new(1, 1.0)], "cut at {cut}");
        }
        buf.truncate(1);
    }
}

proptest! {
    #[test]
    fn fast_decoder_agrees_with_the_reference_on_any_bytes(
        enc in prop_oneof![Just(ENC_XOR), Just(ENC_DECIMAL)],
        n in 0u16..40,
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = vec![enc];
        bytes.extend_from_slice(&n.to_be_bytes());
        bytes.extend_from_slice(&body);
        match (decode(&bytes), reference::decode(&bytes)) {
            (Ok(a), Ok(b)) => prop_assert!(same_bits(&a, &b), "{:?} vs {:?}", a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "fast {:?} vs reference {:?}", a, b),
        }
    }

    #[test]
    fn jittered_series_round_trip_and_range_reads_cut_exactly(
        start in -1_000_000_000_000i64..2_000_000_000_000,
        jitter in proptest::collection::vec(-50i64..50, 1..500),
        steps in proptest::collection::vec(-1000i64..1000, 500),
        decimals in 0u32..4,
        specials in any::<bool>(),
        cut in (0usize..500, 0usize..500),
    ) {
        let samples = jittered(start, &jitter, &steps, decimals, specials);
        let c = encode(&samples);
        let back = c.decode().unwrap();
        prop_assert!(same_bits(&back, &samples));
        prop_assert!(same_bits(&back, &reference::decode(&c.bytes).unwrap()));
        let (a, b) = (cut.0 % samples.len(), cut.1 % samples.len());
        let (mint, maxt) = (samples[a.min(b)].t - (a as i64 % 2), samples[a.max(b)].t);
        let want: Vec<Sample> = samples
            .iter()
            .filter(|s| s.t >= mint && s.t <= maxt)
            .copied()
            .collect();
        let mut buf = Vec::new();
        let n = c.decode_range_into(mint, maxt, &mut buf).unwrap();
        prop_assert_eq!(n, want.len());
        prop_assert!(same_bits(&buf, &want));
    }
}
