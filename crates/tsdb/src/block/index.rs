//! The block index: a symbol table, the series with their chunk references, and postings.
//! Layout in `docs/format/index.md`.

use std::collections::{BTreeMap, BTreeSet};

use meshlens_model::{Label, Labels};
use roaring::RoaringBitmap;

use super::BlockSeries;
use crate::postings::Postings;
use crate::varint::{put_str, put_uvarint, put_varint, Reader};

const MAGIC: &[u8; 4] = b"MLX1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub min_t: i64,
    pub max_t: i64,
    pub offset: u64,
    pub len: u32,
}

/// Writes a series' chunk references: their count, then per chunk its min time (from the
/// previous chunk's max), its time span, its offset (from the previous chunk's) and length.
pub fn put_chunk_refs(out: &mut Vec<u8>, chunks: &[ChunkRef]) {
    put_uvarint(out, chunks.len() as u64);
    let (mut prev_max, mut prev_off) = (0i64, 0u64);
    for c in chunks {
        put_varint(out, c.min_t.wrapping_sub(prev_max));
        put_uvarint(out, c.max_t.wrapping_sub(c.min_t) as u64);
        put_uvarint(out, c.offset - prev_off);
        put_uvarint(out, u64::from(c.len));
        prev_max = c.max_t;
        prev_off = c.offset;
    }
}

/// Reads what [`put_chunk_refs`] wrote; the caller checks the references against its file.
pub fn read_chunk_refs(r: &mut Reader) -> Result<Vec<ChunkRef>, String> {
    let short = || "index truncated".to_string();
    let nc = r.uvarint().ok_or_else(short)? as usize;
    let mut chunks = Vec::with_capacity(nc.min(1 << 16));
    let (mut prev_max, mut prev_off) = (0i64, 0u64);
    for _ in 0..nc {
        let min_t = prev_max.wrapping_add(r.varint().ok_or_else(short)?);
        let max_t = min_t.wrapping_add(r.uvarint().ok_or_else(short)? as i64);
        let offset = prev_off
            .checked_add(r.uvarint().ok_or_else(short)?)
            .ok_or("chunk offset out of range")?;
        let len = u32::try_from(r.uvarint().ok_or_else(short)?).map_err(|_| "chunk too long")?;
        chunks.push(ChunkRef {
            min_t,
            max_t,
            offset,
            len,
        });
        prev_max = max_t;
        prev_off = offset;
    }
    Ok(chunks)
}

pub fn encode(series: &[BlockSeries]) -> Vec<u8> {
    let mut symbols = BTreeSet::new();
    for s in series {
        for l in &s.labels {
            symbols.insert(l.name.as_str());
            symbols.insert(l.value.as_str());
        }
    }
    let symbols: Vec<&str> = symbols.into_iter().collect();
    let sym_idx: BTreeMap<&str, u64> = symbols
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u64))
        .collect();
    let mut out = MAGIC.to_vec();
    put_uvarint(&mut out, symbols.len() as u64);
    for s in &symbols {
        put_str(&mut out, s);
    }
    put_uvarint(&mut out, series.len() as u64);
    let mut postings: BTreeMap<(u64, u64), Vec<u32>> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        put_uvarint(&mut out, s.labels.len() as u64);
        for l in &s.labels {
            let (n, v) = (sym_idx[l.name.as_str()], sym_idx[l.value.as_str()]);
            put_uvarint(&mut out, n);
            put_uvarint(&mut out, v);
            postings.entry((n, v)).or_default().push(i as u32);
        }
        put_chunk_refs(&mut out, &s.chunks);
    }
    put_uvarint(&mut out, postings.len() as u64);
    for ((n, v), ids) in &postings {
        put_uvarint(&mut out, *n);
        put_uvarint(&mut out, *v);
        put_uvarint(&mut out, ids.len() as u64);
        let mut prev = 0u32;
        for id in ids {
            put_uvarint(&mut out, u64::from(id - prev));
            prev = *id;
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

pub fn decode(bytes: &[u8]) -> Result<(Vec<BlockSeries>, Postings), String> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err("bad magic".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().map_err(|_| "short")?) {
        return Err("index checksum mismatch".into());
    }
    let short = || "index truncated".to_string();
    let mut r = Reader::new(&body[4..]);
    let nsym = r.uvarint().ok_or_else(short)? as usize;
    let mut symbols = Vec::with_capacity(nsym.min(1 << 20));
    for _ in 0..nsym {
        symbols.push(r.str().ok_or_else(short)?.to_string());
    }
    let sym = |i: u64| {
        symbols
            .get(i as usize)
            .cloned()
            .ok_or_else(|| format!("symbol {i} out of range"))
    };
    let nseries = r.uvarint().ok_or_else(short)? as usize;
    let mut series = Vec::with_capacity(nseries.min(1 << 24));
    for _ in 0..nseries {
        let nl = r.uvarint().ok_or_else(short)? as usize;
        let mut labels = Vec::with_capacity(nl.min(128));
        for _ in 0..nl {
            let n = sym(r.uvarint().ok_or_else(short)?)?;
            let v = sym(r.uvarint().ok_or_else(short)?)?;
            labels.push(Label::new(n, v));
        }
        let chunks = read_chunk_refs(&mut r)?;
        series.push(BlockSeries {
            labels: Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value))),
            chunks,
            hchunks: Vec::new(),
        });
    }
    let mut postings = Postings::default();
    let np = r.uvarint().ok_or_else(short)? as usize;
    for _ in 0..np {
        let n = sym(r.uvarint().ok_or_else(short)?)?;
        let v = sym(r.uvarint().ok_or_else(short)?)?;
        let count = r.uvarint().ok_or_else(short)? as usize;
        let mut set = RoaringBitmap::new();
        let mut id = 0u32;
        for _ in 0..count {
            id = id
                .checked_add(
                    u32::try_from(r.uvarint().ok_or_else(short)?)
                        .map_err(|_| "posting out of range")?,
                )
                .ok_or("posting out of range")?;
            if id as usize >= series.len() {
                return Err(format!("posting {id} beyond {} series", series.len()));
            }
            set.insert(id);
        }
        postings.insert_raw(&n, &v, set);
    }
    Ok((series, postings))
}
