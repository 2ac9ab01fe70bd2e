//! Compressed sample chunks.
//!
//! Timestamps: delta-of-delta with Gorilla's variable-width buckets. Values: Gorilla XOR,
//! except that a chunk whose values are all integers times 10^-d for a small d (counters,
//! byte gauges, exporters' rounded gauges) stores them as scaled integers with
//! delta-of-delta, which takes one or two bits a sample for steady counters. The encoder picks
//! per chunk; the byte format is in `docs/format/chunks.md`.

pub mod appender;
pub mod bits;

use bits::{BitReader, BitWriter};
use meshlens_model::Sample;

const ENC_XOR: u8 = 1;
const ENC_DECIMAL: u8 = 2;

/// An encoded, immutable chunk: `[encoding u8][count u16 BE][payload]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub min_t: i64,
    pub max_t: i64,
}

impl Chunk {
    pub fn num_samples(&self) -> usize {
        if self.bytes.len() < 3 {
            return 0;
        }
        u16::from_be_bytes([self.bytes[1], self.bytes[2]]) as usize
    }

    pub fn decode(&self) -> Result<Vec<Sample>, ChunkError> {
        decode(&self.bytes)
    }

    /// Appends the samples within `[mint, maxt]` to `buf`; see [`decode_range_into`].
    pub fn decode_range_into(
        &self,
        mint: i64,
        maxt: i64,
        buf: &mut Vec<Sample>,
    ) -> Result<usize, ChunkError> {
        decode_range_into(&self.bytes, mint, maxt, buf)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk truncated after {0} samples")]
    Truncated(usize),
    #[error("unknown chunk encoding {0}")]
    UnknownEncoding(u8),
    #[error("chunk malformed at sample {0}")]
    Malformed(usize),
}

/// Encodes samples (sorted by time, at most 65535) into one chunk.
pub fn encode(samples: &[Sample]) -> Chunk {
    let min_t = samples.first().map_or(0, |s| s.t);
    let max_t = samples.last().map_or(0, |s| s.t);
    let mut bytes = Vec::with_capacity(samples.len() * 2 + 16);
    encode_into(samples, &mut bytes);
    // Chunks live long in the head: drop the encoder's spare capacity.
    bytes.shrink_to_fit();
    Chunk {
        bytes,
        min_t,
        max_t,
    }
}

/// Appends the bytes of [`encode`]'s chunk of `samples` to `out`.
pub(crate) fn encode_into(samples: &[Sample], out: &mut Vec<u8>) {
    assert!(samples.len() <= u16::MAX as usize, "chunk too large");
    let mut bytes = std::mem::take(out);
    match decimal_scale(samples) {
        Some(d) => {
            bytes.push(ENC_DECIMAL);
            bytes.extend_from_slice(&(samples.len() as u16).to_be_bytes());
            bytes.push(d);
            let mut w = BitWriter::from_parts(bytes, 0);
            write_times(&mut w, samples);
            let scale = 10f64.powi(i32::from(d));
            let ints: Vec<i64> = samples
                .iter()
                .map(|s| (s.v * scale).round() as i64)
                .collect();
            write_dod(&mut w, &ints);
            bytes = w.bytes;
        }
        None => {
            bytes.push(ENC_XOR);
            bytes.extend_from_slice(&(samples.len() as u16).to_be_bytes());
            let mut w = BitWriter::from_parts(bytes, 0);
            write_times(&mut w, samples);
            write_xor(&mut w, samples);
            bytes = w.bytes;
        }
    }
    *out = bytes;
}

/// The smallest d in 0..=6 such that every value is exactly an integer times 10^-d that fits
/// comfortably in an i64, or None.
pub(crate) fn decimal_scale(samples: &[Sample]) -> Option<u8> {
    'scales: for d in 0u8..=6 {
        for s in samples {
            match scaled_int(s.v, d) {
                Scaled::Exact(_) => {}
                Scaled::Inexact => continue 'scales,
                Scaled::Never => return None,
            }
        }
        return Some(d);
    }
    None
}

/// What `v` is as an integer times 10^-d.
pub(crate) enum Scaled {
    /// Exactly this integer times 10^-d (dividing it by 10^d gives `v` back bit for bit).
    Exact(i64),
    /// Not at this d; maybe at a larger one.
    Inexact,
    /// At no d: not finite, -0.0, or too large.
    Never,
}

#[inline]
pub(crate) fn scaled_int(v: f64, d: u8) -> Scaled {
    if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
        return Scaled::Never;
    }
    let scale = 10f64.powi(i32::from(d));
    let scaled = v * scale;
    if scaled.abs() >= 9.0e15 {
        return Scaled::Never;
    }
    let r = scaled.round();
    if r / scale != v {
        return Scaled::Inexact;
    }
    Scaled::Exact(r as i64)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Gorilla-style buckets for a signed delta-of-delta, zigzag-coded: '0' is zero, then
/// '10'+7 bits, '110'+9, '1110'+12, '11110'+20, and '11111'+64 raw bits.
const DOD_BUCKETS: [u8; 4] = [7, 9, 12, 20];

pub(crate) fn write_dod_value(w: &mut BitWriter, dod: i64) {
    if dod == 0 {
        w.write_bit(false);
        return;
    }
    let z = zigzag(dod);
    for (i, bits) in DOD_BUCKETS.iter().enumerate() {
        if z < (1u64 << bits) {
            let ones = i as u8 + 1;
            // `ones` one-bits followed by a zero.
            w.write_bits(((1u64 << ones) - 1) << 1, ones + 1);
            w.write_bits(z, *bits);
            return;
        }
    }
    w.write_bits(0b11111, 5);
    w.write_bits(dod as u64, 64);
}

fn write_times(w: &mut BitWriter, samples: &[Sample]) {
    let mut ints = Vec::with_capacity(samples.len());
    ints.extend(samples.iter().map(|s| s.t));
    write_dod(w, &ints);
}

/// First value raw (64 bits), second as a zigzag delta (64 bits max via dod buckets), then
/// delta-of-deltas.
pub(crate) fn write_dod(w: &mut BitWriter, vals: &[i64]) {
    let mut prev = 0i64;
    let mut prev_delta = 0i64;
    for (i, &v) in vals.iter().enumerate() {
        match i {
            0 => w.write_bits(v as u64, 64),
            _ => {
                let delta = v.wrapping_sub(prev);
                let dod = delta.wrapping_sub(prev_delta);
                write_dod_value(w, dod);
                prev_delta = delta;
            }
        }
        prev = v;
    }
}

/// XOR-encoder state between values (Gorilla).
#[derive(Clone, Copy, Debug)]
pub(crate) struct XorState {
    prev: u64,
    lead: u8,
    trail: u8,
}

impl XorState {
    pub(crate) fn new() -> Self {
        XorState {
            prev: 0,
            lead: u8::MAX,
            trail: 0,
        }
    }

    /// Writes one value; the first of a stream (`first`) goes out raw.
    pub(crate) fn write(&mut self, w: &mut BitWriter, v: f64, first: bool) {
        let bits = v.to_bits();
        if first {
            w.write_bits(bits, 64);
            self.prev = bits;
            return;
        }
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        let l = (x.leading_zeros() as u8).min(31);
        let t = x.trailing_zeros() as u8;
        if self.lead != u8::MAX && l >= self.lead && t >= self.trail {
            w.write_bit(false);
            w.write_bits(x >> self.trail, 64 - self.lead - self.trail);
        } else {
            self.lead = l;
            self.trail = t;
            w.write_bit(true);
            w.write_bits(u64::from(l), 5);
            let sig = 64 - l - t;
            // 64 significant bits are written as 0 in 6 bits.
            w.write_bits(u64::from(sig & 63), 6);
            w.write_bits(x >> t, sig);
        }
    }
}

fn write_xor(w: &mut BitWriter, samples: &[Sample]) {
    let mut st = XorState::new();
    for (i, s) in samples.iter().enumerate() {
        st.write(w, s.v, i == 0);
    }
}

/// Zig-zag widths of the delta-of-delta buckets, one byte each, indexed by the count of
/// leading one bits of the prefix (0 = the value is zero; 5, the raw case, is handled
/// apart): 0, 7, 9, 12, 20. Packed in a word so the lookup is a shift, not a load.
const DOD_PAYLOAD: u64 = 0x14_0C_09_07_00;

/// Reads one delta-of-delta: the prefix is counted with one `leading_zeros` on the word and
/// the payload taken with two shifts, so the common buckets cost no per-bit branches.
#[inline(always)]
pub(crate) fn read_dod_value(r: &mut BitReader) -> Option<i64> {
    if r.avail() < 25 {
        r.refill();
    }
    let w = r.peek();
    let ones = (!w).leading_zeros();
    if ones >= 5 {
        // By value, so that the reader's address is never taken and its state stays in
        // registers through the decoding loops.
        let (back, v) = read_dod_raw(r.clone());
        *r = back;
        return v;
    }
    let prefix = ones + 1;
    let payload = ((DOD_PAYLOAD >> (ones * 8)) & 0xFF) as u32;
    let total = prefix + payload;
    if total > r.avail() {
        return None;
    }
    let z = ((w << prefix) >> 1) >> (63 - payload);
    r.consume(total);
    Some(unzigzag(z))
}

#[cold]
#[inline(never)]
fn read_dod_raw(mut r: BitReader<'_>) -> (BitReader<'_>, Option<i64>) {
    let v = r
        .read_bits(5)
        .and_then(|_| r.read_bits(64))
        .map(|v| v as i64);
    (r, v)
}

/// Delta-of-delta integers (timestamps, decimal values): the first raw, then one dod each.
#[derive(Default)]
struct DodDecoder {
    prev: i64,
    delta: i64,
}

impl DodDecoder {
    #[inline(always)]
    fn first(&mut self, r: &mut BitReader) -> Option<i64> {
        self.prev = r.read_bits(64)? as i64;
        Some(self.prev)
    }

    #[inline(always)]
    fn next(&mut self, r: &mut BitReader) -> Option<i64> {
        self.delta = self.delta.wrapping_add(read_dod_value(r)?);
        self.prev = self.prev.wrapping_add(self.delta);
        Some(self.prev)
    }
}

/// Gorilla XOR values, the reading side of [`XorState`].
#[derive(Default)]
pub(crate) struct XorDecoder {
    prev: u64,
    lead: u32,
    trail: u32,
}

impl XorDecoder {
    #[inline(always)]
    pub(crate) fn first(&mut self, r: &mut BitReader) -> Option<u64> {
        self.prev = r.read_bits(64)?;
        Some(self.prev)
    }

    #[inline(always)]
    pub(crate) fn next(&mut self, r: &mut BitReader) -> Option<u64> {
        if r.avail() < 13 {
            r.refill();
        }
        let w = r.peek();
        if w >> 63 == 0 {
            // '0': the same value again.
            if r.avail() < 1 {
                return None;
            }
            r.consume(1);
            return Some(self.prev);
        }
        if (w >> 62) & 1 == 1 {
            // '11': new leading-zero count (5 bits) and significant-bit count (6 bits).
            if r.avail() < 13 {
                return None;
            }
            self.lead = ((w >> 57) & 31) as u32;
            let sig = match ((w >> 51) & 63) as u32 {
                0 => 64,
                s => s,
            };
            self.trail = 64u32.saturating_sub(self.lead + sig);
            r.consume(13);
        } else {
            // '10': the previous window.
            if r.avail() < 2 {
                return None;
            }
            r.consume(2);
        }
        let sig = 64 - self.lead - self.trail;
        let x = r.read_bits(sig)?;
        self.prev ^= x << self.trail;
        Some(self.prev)
    }
}

/// How a chunk's values are stored after its timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Values {
    Xor,
    /// Integers times 10^-d, delta-of-delta coded, with d.
    Decimal(u8),
}

/// Where the values are: after the timestamps in the same stream, or in their own.
enum ValueStream<'b> {
    AfterTimes,
    Separate(&'b [u8]),
}

/// Decodes `n` samples (timestamps from `times`, then values) and appends those in
/// `[mint, maxt]` to `buf`; returns how many. On error `buf` is left as it was.
fn decode_streams(
    times: &[u8],
    values: ValueStream,
    kind: Values,
    n: usize,
    (mint, maxt): (i64, i64),
    buf: &mut Vec<Sample>,
) -> Result<usize, ChunkError> {
    let start = buf.len();
    if n == 0 {
        return Ok(0);
    }
    // Zero-filled first, so that the loops below only write through a slice (no capacity
    // checks, no calls that would force the reader's state out of registers).
    buf.resize(start + n, Sample::new(0, 0.0));
    let times_end = match read_times(times, &mut buf[start..]) {
        Ok(bits) => bits,
        Err(e) => {
            buf.truncate(start);
            return Err(e);
        }
    };
    // Timestamps in a chunk increase, so the wanted ones are one run [lo, hi); values
    // after `hi` are never decoded, values before `lo` decoded and dropped.
    let got = &buf[start..];
    let lo = got.partition_point(|s| s.t < mint);
    let hi = got.partition_point(|s| s.t <= maxt).max(lo);
    if lo == hi {
        buf.truncate(start);
        return Ok(0);
    }
    buf.truncate(start + hi);
    let (data, bit) = match values {
        ValueStream::AfterTimes => (times, times_end),
        ValueStream::Separate(v) => (v, 0),
    };
    let out = &mut buf[start..];
    let res = match kind {
        Values::Xor => read_xor_values(data, bit, out),
        Values::Decimal(d) => read_decimal_values(data, bit, d, out),
    };
    if let Err(e) = res {
        buf.truncate(start);
        return Err(e);
    }
    if lo > 0 {
        buf.drain(start..start + lo);
    }
    Ok(hi - lo)
}

// Each loop below builds its own `BitReader`, a local whose state then lives in registers
// for the whole loop.

/// Sets the timestamps of `out`'s samples; returns the bits read.
fn read_times(data: &[u8], out: &mut [Sample]) -> Result<usize, ChunkError> {
    let mut r = BitReader::new(data);
    let mut ts = DodDecoder::default();
    let Some((first, rest)) = out.split_first_mut() else {
        return Ok(0);
    };
    first.t = ts.first(&mut r).ok_or(ChunkError::Truncated(0))?;
    let mut i = 0;
    while i < rest.len() {
        if r.avail() < 25 {
            r.refill();
        }
        // A run of '0' bits is a run of samples at the same interval (the usual scrape):
        // counted with one instruction and written without reading them bit by bit.
        let zeros = r.peek().leading_zeros().min(r.avail()) as usize;
        if zeros > 0 {
            let run = zeros.min(rest.len() - i);
            for s in &mut rest[i..i + run] {
                ts.prev = ts.prev.wrapping_add(ts.delta);
                s.t = ts.prev;
            }
            r.consume(run as u32);
            i += run;
            continue;
        }
        rest[i].t = ts.next(&mut r).ok_or(ChunkError::Truncated(i + 1))?;
        i += 1;
    }
    Ok(r.position())
}

fn read_xor_values(data: &[u8], bit: usize, out: &mut [Sample]) -> Result<(), ChunkError> {
    let mut r = BitReader::at(data, bit);
    let mut d = XorDecoder::default();
    let Some((first, rest)) = out.split_first_mut() else {
        return Ok(());
    };
    first.v = f64::from_bits(d.first(&mut r).ok_or(ChunkError::Truncated(0))?);
    for (i, s) in (1..).zip(rest) {
        s.v = f64::from_bits(d.next(&mut r).ok_or(ChunkError::Truncated(i))?);
    }
    Ok(())
}

fn read_decimal_values(
    data: &[u8],
    bit: usize,
    d: u8,
    out: &mut [Sample],
) -> Result<(), ChunkError> {
    let mut r = BitReader::at(data, bit);
    let mut dec = DodDecoder::default();
    let Some((first, rest)) = out.split_first_mut() else {
        return Ok(());
    };
    let int = dec.first(&mut r).ok_or(ChunkError::Truncated(0))?;
    if d == 0 {
        // Plain integers: no division (x / 1.0 == x exactly).
        first.v = int as f64;
        for (i, s) in (1..).zip(rest) {
            s.v = dec.next(&mut r).ok_or(ChunkError::Truncated(i))? as f64;
        }
    } else {
        // The integers first (parked in the values' bits), then divided in a second pass:
        // the divisions no longer wait on the bit reader, and come in pairs.
        first.v = f64::from_bits(int as u64);
        for (i, s) in (1..).zip(rest) {
            s.v = f64::from_bits(dec.next(&mut r).ok_or(ChunkError::Truncated(i))? as u64);
        }
        divide_parked(out, 10f64.powi(i32::from(d)));
    }
    Ok(())
}

/// Replaces each integer parked in a value's bits by `int as f64 / scale`. Divided, not
/// multiplied by 10^-d, which is inexact: the encoder checked `round(v * 10^d) / 10^d == v`,
/// so only the division gives v back bit for bit. Two at a time with SSE2's packed division
/// where there is one (each lane rounds as the scalar division does): the divider is the
/// slowest part of decoding such values.
fn divide_parked(out: &mut [Sample], scale: f64) {
    let int = |s: &Sample| s.v.to_bits() as i64 as f64;
    let mut pairs = out.chunks_exact_mut(2);
    for p in &mut pairs {
        let (a, b) = divide_two(int(&p[0]), int(&p[1]), scale);
        p[0].v = a;
        p[1].v = b;
    }
    for s in pairs.into_remainder() {
        s.v = int(s) / scale;
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn divide_two(a: f64, b: f64, scale: f64) -> (f64, f64) {
    use std::arch::x86_64::{_mm_cvtsd_f64, _mm_div_pd, _mm_set1_pd, _mm_set_pd, _mm_unpackhi_pd};
    // SAFETY: the intrinsics need SSE2 only, which every x86_64 processor has (it is in the
    // target's baseline); they touch no memory.
    unsafe {
        let q = _mm_div_pd(_mm_set_pd(b, a), _mm_set1_pd(scale));
        (_mm_cvtsd_f64(q), _mm_cvtsd_f64(_mm_unpackhi_pd(q, q)))
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn divide_two(a: f64, b: f64, scale: f64) -> (f64, f64) {
    (a / scale, b / scale)
}

/// The time of a chunk's first sample, read from its bytes without decoding (the time
/// stream starts with it, 64 bits on a byte boundary after the header); None for a chunk
/// without samples or one too short to hold it.
pub(crate) fn first_time(bytes: &[u8]) -> Option<i64> {
    let at = match *bytes.first()? {
        ENC_XOR => 3,
        ENC_DECIMAL => 4,
        _ => return None,
    };
    if u16::from_be_bytes([*bytes.get(1)?, *bytes.get(2)?]) == 0 {
        return None;
    }
    let t: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(i64::from_be_bytes(t))
}

/// Decodes a chunk's bytes.
pub fn decode(bytes: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    let mut out = Vec::new();
    decode_range_into(bytes, i64::MIN, i64::MAX, &mut out)?;
    Ok(out)
}

/// Appends the chunk's samples within `[mint, maxt]` to `buf`, in time order, and returns
/// how many. Decodes straight into `buf` (no intermediate vectors); on error `buf` is left
/// as it was.
pub fn decode_range_into(
    bytes: &[u8],
    mint: i64,
    maxt: i64,
    buf: &mut Vec<Sample>,
) -> Result<usize, ChunkError> {
    let (&enc, rest) = bytes.split_first().ok_or(ChunkError::Truncated(0))?;
    let (count, payload) = rest.split_at_checked(2).ok_or(ChunkError::Truncated(0))?;
    let n = usize::from(u16::from_be_bytes([count[0], count[1]]));
    match enc {
        ENC_XOR => decode_streams(
            payload,
            ValueStream::AfterTimes,
            Values::Xor,
            n,
            (mint, maxt),
            buf,
        ),
        ENC_DECIMAL => {
            let (&d, payload) = payload.split_first().ok_or(ChunkError::Truncated(0))?;
            decode_streams(
                payload,
                ValueStream::AfterTimes,
                Values::Decimal(d),
                n,
                (mint, maxt),
                buf,
            )
        }
        other => Err(ChunkError::UnknownEncoding(other)),
    }
}

/// Appends the samples within `[mint, maxt]` of `n` samples held as two separate streams
/// (the head's open chunk: delta-of-delta timestamps, then values as `kind`).
pub(crate) fn decode_split_range_into(
    times: &[u8],
    values: &[u8],
    kind: Values,
    n: usize,
    mint: i64,
    maxt: i64,
    buf: &mut Vec<Sample>,
) -> Result<usize, ChunkError> {
    decode_streams(
        times,
        ValueStream::Separate(values),
        kind,
        n,
        (mint, maxt),
        buf,
    )
}

#[cfg(test)]
mod tests;
