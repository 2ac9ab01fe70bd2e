//! Remote write's protobuf `WriteRequest`, written straight from borrowed label strings:
//! a 500-service mesh is half a million series of 30 labels each, and building a `Labels`
//! per series and request would cost the generator more than the receivers it measures.

/// Appends one `TimeSeries` (field 1 of `WriteRequest`) to `out`: the labels of `base` and
/// `extra` merged in name order (both must be sorted, names distinct), then the samples.
/// `scratch` is reused between calls so a request costs no allocation per series.
pub fn put_series(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    base: &[(String, String)],
    extra: &[(&str, &str)],
    samples: &[(i64, f64)],
) {
    scratch.clear();
    let (mut i, mut j) = (0, 0);
    while i < base.len() || j < extra.len() {
        let take_base = j == extra.len() || (i < base.len() && base[i].0.as_str() < extra[j].0);
        let (name, value) = if take_base {
            i += 1;
            (base[i - 1].0.as_str(), base[i - 1].1.as_str())
        } else {
            j += 1;
            extra[j - 1]
        };
        // Label { string name = 1; string value = 2; }
        let len = 2
            + varint_len(name.len() as u64)
            + name.len()
            + varint_len(value.len() as u64)
            + value.len();
        scratch.push(0x0a);
        put_varint(scratch, len as u64);
        put_bytes(scratch, 0x0a, name.as_bytes());
        put_bytes(scratch, 0x12, value.as_bytes());
    }
    for &(t, v) in samples {
        // Sample { double value = 1; int64 timestamp = 2; }
        let len = 1 + 8 + 1 + varint_len(t as u64);
        scratch.push(0x12);
        put_varint(scratch, len as u64);
        scratch.push(0x09);
        scratch.extend_from_slice(&v.to_le_bytes());
        scratch.push(0x10);
        put_varint(scratch, t as u64);
    }
    put_bytes(out, 0x0a, scratch);
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}
