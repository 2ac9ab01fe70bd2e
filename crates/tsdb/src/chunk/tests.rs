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
