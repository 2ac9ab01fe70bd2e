//! Samples and Prometheus's staleness marker.

/// One float sample: a timestamp in milliseconds since the Unix epoch and a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

impl Sample {
    pub fn new(t: i64, v: f64) -> Self {
        Sample { t, v }
    }
}

/// The bit pattern Prometheus writes to mark a series stale. It is a NaN, so it must be
/// compared by bits, never by value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A float as Prometheus prints values (Go's `FormatFloat(v, 'f', -1, 64)` with `+Inf`,
/// `-Inf` and `NaN`).
pub fn format_value(v: f64) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write_value(&mut s, v);
    s
}

/// [`format_value`] into any writer, for encoders that put many values into one buffer
/// and should not allocate a string per value.
pub fn write_value<W: std::fmt::Write + ?Sized>(w: &mut W, v: f64) -> std::fmt::Result {
    if v.is_nan() {
        w.write_str("NaN")
    } else if v == f64::INFINITY {
        w.write_str("+Inf")
    } else if v == f64::NEG_INFINITY {
        w.write_str("-Inf")
    } else {
        write!(w, "{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_nan_is_distinct_from_plain_nan() {
        assert!(is_stale_nan(STALE_NAN));
        assert!(!is_stale_nan(f64::NAN));
        assert!(STALE_NAN.is_nan());
    }
}
