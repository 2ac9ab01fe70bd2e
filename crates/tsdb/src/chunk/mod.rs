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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk truncated after {0} samples")]
    Truncated(usize),
    #[error("unknown chunk encoding {0}")]
    UnknownEncoding(u8),
}

/// Encodes samples (sorted by time, at most 65535) into one chunk.
pub fn encode(samples: &[Sample]) -> Chunk {
    assert!(samples.len() <= u16::MAX as usize, "chunk too large");
    let min_t = samples.first().map_or(0, |s| s.t);
    let max_t = samples.last().map_or(0, |s| s.t);
    let mut bytes = Vec::with_capacity(samples.len() * 2 + 16);
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
    // Chunks live long in the head: drop the encoder's spare capacity.
    bytes.shrink_to_fit();
    Chunk {
        bytes,
        min_t,
        max_t,
    }
}

/// The smallest d in 0..=6 such that every value is exactly an integer times 10^-d that fits
/// comfortably in an i64, or None.
fn decimal_scale(samples: &[Sample]) -> Option<u8> {
    'scales: for d in 0u8..=6 {
        let scale = 10f64.powi(i32::from(d));
        for s in samples {
            let v = s.v;
            if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
                return None;
            }
            let scaled = v * scale;
            if scaled.abs() >= 9.0e15 {
                return None;
            }
            let r = scaled.round();
            if r / scale != v {
                continue 'scales;
            }
        }
        return Some(d);
    }
    None
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

fn read_dod_value(r: &mut BitReader) -> Option<i64> {
    let mut ones = 0usize;
    while ones < 5 && r.read_bit()? {
        ones += 1;
    }
    match ones {
        0 => Some(0),
        5 => Some(r.read_bits(64)? as i64),
        k => Some(unzigzag(r.read_bits(DOD_BUCKETS[k - 1])?)),
    }
}

fn write_times(w: &mut BitWriter, samples: &[Sample]) {
    let mut ints = Vec::with_capacity(samples.len());
    ints.extend(samples.iter().map(|s| s.t));
    write_dod(w, &ints);
}

/// First value raw (64 bits), second as a zigzag delta (64 bits max via dod buckets), then
/// delta-of-deltas.
fn write_dod(w: &mut BitWriter, vals: &[i64]) {
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

pub(crate) fn read_dod(r: &mut BitReader, n: usize, out: &mut Vec<i64>) -> Result<(), ChunkError> {
    let mut prev = 0i64;
    let mut prev_delta = 0i64;
    for i in 0..n {
        let v = if i == 0 {
            r.read_bits(64).ok_or(ChunkError::Truncated(i))? as i64
        } else {
            let dod = read_dod_value(r).ok_or(ChunkError::Truncated(i))?;
            let delta = prev_delta.wrapping_add(dod);
            prev_delta = delta;
            prev.wrapping_add(delta)
        };
        out.push(v);
        prev = v;
    }
    Ok(())
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

pub(crate) fn read_xor(r: &mut BitReader, n: usize, out: &mut Vec<f64>) -> Result<(), ChunkError> {
    let mut prev = 0u64;
    let mut lead = 0u8;
    let mut trail = 0u8;
    for i in 0..n {
        let err = || ChunkError::Truncated(i);
        if i == 0 {
            prev = r.read_bits(64).ok_or_else(err)?;
        } else if r.read_bit().ok_or_else(err)? {
            if r.read_bit().ok_or_else(err)? {
                lead = r.read_bits(5).ok_or_else(err)? as u8;
                let mut sig = r.read_bits(6).ok_or_else(err)? as u8;
                if sig == 0 {
                    sig = 64;
                }
                trail = 64u8.saturating_sub(lead + sig);
            }
            let sig = 64 - lead - trail;
            let x = r.read_bits(sig).ok_or_else(err)?;
            prev ^= x << trail;
        }
        out.push(f64::from_bits(prev));
    }
    Ok(())
}

/// Decodes a chunk's bytes.
pub fn decode(bytes: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    if bytes.len() < 3 {
        return Err(ChunkError::Truncated(0));
    }
    let enc = bytes[0];
    let n = u16::from_be_bytes([bytes[1], bytes[2]]) as usize;
    let mut ts = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    match enc {
        ENC_XOR => {
            let mut r = BitReader::new(&bytes[3..]);
            read_dod(&mut r, n, &mut ts)?;
            let mut vs = Vec::with_capacity(n);
            read_xor(&mut r, n, &mut vs)?;
            out.extend(ts.into_iter().zip(vs).map(|(t, v)| Sample::new(t, v)));
        }
        ENC_DECIMAL => {
            let d = *bytes.get(3).ok_or(ChunkError::Truncated(0))?;
            let mut r = BitReader::new(&bytes[4..]);
            read_dod(&mut r, n, &mut ts)?;
            let mut vs = Vec::with_capacity(n);
            read_dod(&mut r, n, &mut vs)?;
            let scale = 10f64.powi(i32::from(d));
            out.extend(
                ts.into_iter()
                    .zip(vs)
                    .map(|(t, v)| Sample::new(t, v as f64 / scale)),
            );
        }
        other => return Err(ChunkError::UnknownEncoding(other)),
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
