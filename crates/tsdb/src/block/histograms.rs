//! A block's `histograms` file: native-histogram chunks and their references per series
//! (layout in the parent module's docs). Reads check each chunk's checksum, as float
//! chunks' are.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use meshlens_model::HistogramSample;

use super::index::{put_chunk_refs, read_chunk_refs};
use super::{io_err, Block, BlockError, BlockSeries, ChunkRef};
use crate::histogram;
use crate::varint::{put_uvarint, Reader};

pub const FILE: &str = "histograms";
const MAGIC: &[u8; 4] = b"MLH1";
/// Histogram samples per chunk in blocks.
pub const HIST_CHUNK_SAMPLES: usize = 120;

/// Builds the file as series are written.
pub struct Writer {
    buf: Vec<u8>,
    pub samples: u64,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            buf: MAGIC.to_vec(),
            samples: 0,
        }
    }
}

impl Writer {
    /// Writes one series' histogram samples (sorted by time) as chunks; returns their
    /// references.
    pub fn add(&mut self, samples: &[HistogramSample]) -> Vec<ChunkRef> {
        let mut refs = Vec::new();
        for part in samples.chunks(HIST_CHUNK_SAMPLES) {
            let c = histogram::encode_chunk(part);
            refs.push(ChunkRef {
                min_t: c.min_t,
                max_t: c.max_t,
                offset: self.buf.len() as u64,
                len: c.bytes.len() as u32,
            });
            self.buf.extend_from_slice(&c.bytes);
            self.buf
                .extend_from_slice(&crc32fast::hash(&c.bytes).to_le_bytes());
        }
        self.samples += samples.len() as u64;
        refs
    }

    /// The whole file, with the index of `series`' histogram chunks; None when no series
    /// has any (the block then has no such file).
    pub fn finish(mut self, series: &[BlockSeries]) -> Option<Vec<u8>> {
        if self.samples == 0 {
            return None;
        }
        let index_at = self.buf.len() as u64;
        let mut index = Vec::new();
        let with: Vec<(usize, &BlockSeries)> = series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.hchunks.is_empty())
            .collect();
        put_uvarint(&mut index, with.len() as u64);
        let mut next = 0usize;
        for (i, s) in with {
            put_uvarint(&mut index, (i - next) as u64);
            next = i + 1;
            put_chunk_refs(&mut index, &s.hchunks);
        }
        self.buf.extend_from_slice(&index);
        self.buf.extend_from_slice(&index_at.to_le_bytes());
        self.buf
            .extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
        Some(self.buf)
    }
}

/// Maps a block's `histograms` file, when there is one, and fills in `series`' histogram
/// chunk references from its index, checked against the file and the series.
pub fn open(dir: &Path, series: &mut [BlockSeries]) -> Result<Option<Mmap>, BlockError> {
    let path = dir.join(FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    // SAFETY: block files are immutable once renamed into place; nothing writes them.
    let data = unsafe { Mmap::map(&file) }.map_err(io_err(&path))?;
    decode_index(&data, series).map_err(|reason| BlockError::Corrupt {
        path: path.clone(),
        reason,
    })?;
    Ok(Some(data))
}

fn decode_index(data: &[u8], series: &mut [BlockSeries]) -> Result<(), String> {
    if data.len() < MAGIC.len() + 12 || &data[..4] != MAGIC {
        return Err("bad magic".into());
    }
    let footer = data.len() - 12;
    let index_at = u64::from_le_bytes(data[footer..footer + 8].try_into().unwrap_or_default());
    let crc = u32::from_le_bytes(data[footer + 8..].try_into().unwrap_or_default());
    let index_at = usize::try_from(index_at)
        .ok()
        .filter(|&at| (4..=footer).contains(&at))
        .ok_or("index offset out of range")?;
    let index = &data[index_at..footer];
    if crc32fast::hash(index) != crc {
        return Err("index checksum mismatch".into());
    }
    let short = || "index truncated".to_string();
    let mut r = Reader::new(index);
    let n = r.uvarint().ok_or_else(short)?;
    let mut next = 0usize;
    for _ in 0..n {
        let skip = usize::try_from(r.uvarint().ok_or_else(short)?).map_err(|_| short())?;
        let i = next.checked_add(skip).ok_or("series index out of range")?;
        let s = series
            .get_mut(i)
            .ok_or_else(|| format!("series {i} beyond the index"))?;
        next = i + 1;
        let chunks = read_chunk_refs(&mut r)?;
        let mut prev: Option<&ChunkRef> = None;
        for c in &chunks {
            if c.offset < 4 || c.offset + u64::from(c.len) + 4 > index_at as u64 {
                return Err(format!(
                    "chunk reference {}+{} beyond the chunks",
                    c.offset, c.len
                ));
            }
            if c.max_t < c.min_t || prev.is_some_and(|p| c.min_t <= p.max_t) {
                return Err(format!(
                    "histogram chunks of {} overlap or are out of order",
                    s.labels
                ));
            }
            prev = Some(c);
        }
        s.hchunks = chunks;
    }
    if !r.is_empty() {
        return Err("trailing bytes after the index".into());
    }
    Ok(())
}

impl Block {
    /// Histogram chunks of series `idx` overlapping `[mint, maxt]`, in time order.
    pub(super) fn overlapping_hchunks(&self, idx: u32, mint: i64, maxt: i64) -> &[ChunkRef] {
        let Some(s) = self.series.get(idx as usize) else {
            return &[];
        };
        let first = s.hchunks.partition_point(|c| c.max_t < mint);
        let len = s.hchunks[first..].partition_point(|c| c.min_t <= maxt);
        &s.hchunks[first..first + len]
    }

    /// Whether the block has a `histograms` file (some series with histograms).
    pub(crate) fn has_histogram_file(&self) -> bool {
        self.hdata.is_some()
    }

    /// Whether series `idx` has native-histogram samples here at all.
    pub(crate) fn has_histograms(&self, idx: u32) -> bool {
        // The block first: float-only blocks answer without touching the series' entry.
        self.hdata.is_some()
            && self
                .series
                .get(idx as usize)
                .is_some_and(|s| !s.hchunks.is_empty())
    }

    /// Appends series `idx`'s native-histogram samples in `[mint, maxt]` to `buf`, in time
    /// order; returns how many.
    pub(crate) fn histograms_into(
        &self,
        idx: u32,
        mint: i64,
        maxt: i64,
        buf: &mut Vec<HistogramSample>,
    ) -> Result<usize, BlockError> {
        let chunks = self.overlapping_hchunks(idx, mint, maxt);
        if chunks.is_empty() {
            return Ok(0);
        }
        let corrupt = |reason: String| BlockError::Corrupt {
            path: self.dir.join(FILE),
            reason,
        };
        let data = self
            .hdata
            .as_deref()
            .ok_or_else(|| corrupt("histogram chunks referenced but no file".into()))?;
        let mut n = 0;
        for c in chunks {
            let start = c.offset as usize;
            let end = start + c.len as usize;
            let (Some(bytes), Some(crc)) = (data.get(start..end), data.get(end..end + 4)) else {
                return Err(corrupt(format!("chunk at {start} beyond the file")));
            };
            let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
            if crc32fast::hash(bytes) != crc {
                return Err(corrupt(format!("checksum mismatch in chunk at {start}")));
            }
            n += histogram::decode_chunk_into(bytes, mint, maxt, buf)
                .map_err(|e| corrupt(format!("chunk at {start}: {e}")))?;
        }
        Ok(n)
    }

    /// Every native-histogram sample of series `idx` in `[mint, maxt]`.
    pub fn histograms(
        &self,
        idx: u32,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<HistogramSample>, BlockError> {
        let mut out = Vec::new();
        self.histograms_into(idx, mint, maxt, &mut out)?;
        Ok(out)
    }
}
