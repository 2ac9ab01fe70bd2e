//! Immutable on-disk blocks: `<data>/<id>/{meta.json, index, chunks}`.
//!
//! A block is written to `<id>.tmp`, synced, then renamed, so a crash never leaves a half
//! block under a real name. On open the index (series, chunk references, postings) is read
//! into memory and the chunks file is memory-mapped; chunk checksums are verified on read.
//! Byte layouts: `docs/format/{index,chunks,meta}.md`.
//!
//! Native-histogram samples, when a block has any, are in a fourth file, `histograms`
//! (blocks without it hold floats only); its series are the index's, by position:
//!
//! ```text
//! "MLH1"
//! chunks     per chunk: its bytes (`crate::histogram`'s chunk form), crc32 LE of them
//! index      uvarint count of series with histograms, then per series: index of the
//!            series in the block uvarint (delta from the previous one's + 1), uvarint
//!            count of chunks, per chunk: min_t varint (delta from the previous chunk's
//!            max_t, the first from 0), max_t - min_t uvarint, offset uvarint (delta from
//!            the previous chunk's), length uvarint
//! footer     index offset u64 LE, crc32 LE of the index bytes
//! ```

mod histograms;
mod index;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use meshlens_model::{HistogramSample, LabelMatcher, Labels, Sample};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::budget::SampleBudget;
use crate::chunk;
use crate::postings::Postings;

pub use index::ChunkRef;

/// Samples per chunk in blocks: larger than the head's, for better compression.
pub const BLOCK_CHUNK_SAMPLES: usize = 480;
const CHUNKS_MAGIC: &[u8; 4] = b"MLC1";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BlockStats {
    #[serde(rename = "numSamples")]
    pub num_samples: u64,
    #[serde(rename = "numSeries")]
    pub num_series: u64,
    #[serde(rename = "numChunks")]
    pub num_chunks: u64,
    /// Of `num_samples`, how many are native histograms (absent in older blocks: none).
    #[serde(
        rename = "numHistogramSamples",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub num_histogram_samples: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Compaction {
    pub level: u32,
    pub sources: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BlockMeta {
    pub id: String,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// Inclusive (unlike Prometheus's exclusive maxTime): the newest sample's timestamp.
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    pub stats: BlockStats,
    pub compaction: Compaction,
    pub version: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BlockError + '_ {
    move |source| BlockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct BlockSeries {
    pub labels: Labels,
    pub chunks: Vec<ChunkRef>,
    /// Chunks of native-histogram samples, in the `histograms` file.
    pub hchunks: Vec<ChunkRef>,
}

/// One series' samples as a block is written from them: floats and native histograms, each
/// sorted by time.
#[derive(Default)]
pub struct SeriesData {
    pub floats: Vec<Sample>,
    pub histograms: Vec<HistogramSample>,
}

pub struct Block {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    pub series: Vec<BlockSeries>,
    postings: Postings,
    data: Mmap,
    /// The `histograms` file, when the block has one.
    hdata: Option<Mmap>,
    pub size_bytes: u64,
}

impl Block {
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let meta_path = dir.join("meta.json");
        let meta: BlockMeta = serde_json::from_slice(
            &fs::read(&meta_path).map_err(io_err(&meta_path))?,
        )
        .map_err(|e| BlockError::Corrupt {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
        let index_path = dir.join("index");
        let index_bytes = fs::read(&index_path).map_err(io_err(&index_path))?;
        let (mut series, postings) =
            index::decode(&index_bytes).map_err(|reason| BlockError::Corrupt {
                path: index_path.clone(),
                reason,
            })?;
        let chunks_path = dir.join("chunks");
        let file = File::open(&chunks_path).map_err(io_err(&chunks_path))?;
        // SAFETY: block files are immutable once renamed into place; nothing writes them.
        let data = unsafe { Mmap::map(&file) }.map_err(io_err(&chunks_path))?;
        if data.get(..4) != Some(CHUNKS_MAGIC.as_slice()) {
            return Err(BlockError::Corrupt {
                path: chunks_path,
                reason: "bad magic".into(),
            });
        }
        let len = data.len() as u64;
        for s in &series {
            for c in &s.chunks {
                if c.offset + u64::from(c.len) + 4 > len {
                    return Err(BlockError::Corrupt {
                        path: chunks_path,
                        reason: format!("chunk reference {}+{} beyond the file", c.offset, c.len),
                    });
                }
            }
            // Reads find a range's chunks by binary search and concatenate them unsorted.
            if s.chunks.windows(2).any(|w| w[1].min_t <= w[0].max_t) {
                return Err(BlockError::Corrupt {
                    path: index_path,
                    reason: format!("chunks of {} overlap or are out of order", s.labels),
                });
            }
        }
        // Reads merge blocks' series lists without sorting them again.
        if series.windows(2).any(|w| w[1].labels <= w[0].labels) {
            return Err(BlockError::Corrupt {
                path: index_path,
                reason: "series are not sorted by labels".into(),
            });
        }
        let hdata = histograms::open(dir, &mut series)?;
        let size_bytes =
            len + index_bytes.len() as u64 + hdata.as_ref().map_or(0, |m| m.len() as u64);
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            series,
            postings,
            data,
            hdata,
            size_bytes,
        })
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time >= mint
    }

    pub fn select_ids(&self, matchers: &[LabelMatcher]) -> RoaringBitmap {
        self.postings.select(matchers)
    }

    pub fn label_values(&self, name: &str, ids: &RoaringBitmap) -> Vec<String> {
        self.postings.values_within(name, ids)
    }

    pub fn label_names(&self, ids: &RoaringBitmap) -> Vec<String> {
        self.postings.names_within(ids)
    }

    /// Samples of series `idx` in `[mint, maxt]`.
    pub fn samples(&self, idx: u32, mint: i64, maxt: i64) -> Result<Vec<Sample>, BlockError> {
        let mut out = Vec::new();
        self.decode_into(idx, mint, maxt, &mut out, &SampleBudget::unlimited())?;
        Ok(out)
    }

    /// The chunks of series `idx` overlapping `[mint, maxt]`, in time order (a series'
    /// chunks never overlap, so the first is found by binary search).
    fn overlapping_chunks(&self, idx: u32, mint: i64, maxt: i64) -> &[ChunkRef] {
        let Some(s) = self.series.get(idx as usize) else {
            return &[];
        };
        let first = s.chunks.partition_point(|c| c.max_t < mint);
        let len = s.chunks[first..].partition_point(|c| c.min_t <= maxt);
        &s.chunks[first..first + len]
    }

    /// The time span of series `idx`'s chunks that overlap `[mint, maxt]`, clipped to it.
    pub(crate) fn bounds_in(&self, idx: u32, mint: i64, maxt: i64) -> Option<(i64, i64)> {
        let chunks = self.overlapping_chunks(idx, mint, maxt);
        let (first, last) = (chunks.first()?, chunks.last()?);
        Some((first.min_t.max(mint), last.max_t.min(maxt)))
    }

    /// Appends series `idx`'s samples in `[mint, maxt]` to `buf` in time order, decoding
    /// only the chunks that overlap the range and spending `budget` chunk by chunk; stops
    /// once it is exceeded. Returns how many samples were appended.
    pub(crate) fn decode_into(
        &self,
        idx: u32,
        mint: i64,
        maxt: i64,
        buf: &mut Vec<Sample>,
        budget: &SampleBudget,
    ) -> Result<usize, BlockError> {
        let mut n = 0;
        for c in self.overlapping_chunks(idx, mint, maxt) {
            let start = c.offset as usize;
            let corrupt = |reason: String| BlockError::Corrupt {
                path: self.dir.join("chunks"),
                reason,
            };
            // `open` checked every reference against the file's length.
            let end = start + c.len as usize;
            let (Some(bytes), Some(crc)) = (self.data.get(start..end), self.data.get(end..end + 4))
            else {
                return Err(corrupt(format!("chunk at {start} beyond the file")));
            };
            let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
            if crc32fast::hash(bytes) != crc {
                return Err(corrupt(format!("checksum mismatch in chunk at {start}")));
            }
            let got = chunk::decode_range_into(bytes, mint, maxt, buf)
                .map_err(|e| corrupt(format!("chunk at {start}: {e}")))?;
            n += got;
            if !budget.spend(got) {
                break;
            }
        }
        Ok(n)
    }

    pub fn has_data_in(&self, idx: u32, mint: i64, maxt: i64) -> bool {
        !self.overlapping_chunks(idx, mint, maxt).is_empty()
            || !self.overlapping_hchunks(idx, mint, maxt).is_empty()
    }
}

/// Writes a block from series sorted by labels. `samples(i)` yields the samples of
/// `labels[i]`, sorted by time; series are fetched one at a time, so only the compressed
/// block is held in memory, never every decoded sample.
pub fn write(
    parent: &Path,
    labels: &[Labels],
    mut samples: impl FnMut(usize) -> Result<SeriesData, BlockError>,
    level: u32,
    sources: Vec<String>,
) -> Result<Option<PathBuf>, BlockError> {
    let id = new_block_id();
    let tmp = parent.join(format!("{id}.tmp"));
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let mut chunks_buf: Vec<u8> = CHUNKS_MAGIC.to_vec();
    let mut index_series = Vec::with_capacity(labels.len());
    let (mut min_t, mut max_t, mut num_samples, mut num_chunks) = (i64::MAX, i64::MIN, 0u64, 0u64);
    let mut hist = histograms::Writer::default();
    for (i, l) in labels.iter().enumerate() {
        let SeriesData {
            floats: samples,
            histograms,
        } = samples(i)?;
        if samples.is_empty() && histograms.is_empty() {
            continue;
        }
        let hchunks = hist.add(&histograms);
        if let (Some(f), Some(l)) = (histograms.first(), histograms.last()) {
            min_t = min_t.min(f.t);
            max_t = max_t.max(l.t);
        }
        num_chunks += hchunks.len() as u64;
        let mut refs = Vec::new();
        for part in samples.chunks(BLOCK_CHUNK_SAMPLES) {
            let c = chunk::encode(part);
            refs.push(ChunkRef {
                min_t: c.min_t,
                max_t: c.max_t,
                offset: chunks_buf.len() as u64,
                len: c.bytes.len() as u32,
            });
            chunks_buf.extend_from_slice(&c.bytes);
            chunks_buf.extend_from_slice(&crc32fast::hash(&c.bytes).to_le_bytes());
            num_chunks += 1;
        }
        if let (Some(f), Some(l)) = (samples.first(), samples.last()) {
            min_t = min_t.min(f.t);
            max_t = max_t.max(l.t);
        }
        num_samples += (samples.len() + histograms.len()) as u64;
        index_series.push(BlockSeries {
            labels: l.clone(),
            chunks: refs,
            hchunks,
        });
    }
    if index_series.is_empty() {
        let _ = fs::remove_dir_all(&tmp);
        return Ok(None);
    }
    let index_bytes = index::encode(&index_series);
    let meta = BlockMeta {
        id: id.clone(),
        min_time: min_t,
        max_time: max_t,
        stats: BlockStats {
            num_samples,
            num_series: index_series.len() as u64,
            num_chunks,
            num_histogram_samples: hist.samples,
        },
        compaction: Compaction {
            level,
            sources: if sources.is_empty() {
                vec![id.clone()]
            } else {
                sources
            },
        },
        version: 1,
    };
    let meta_bytes = serde_json::to_vec_pretty(&meta).unwrap_or_default();
    let hist_bytes = hist.finish(&index_series);
    let files = [
        ("chunks", Some(&chunks_buf)),
        ("index", Some(&index_bytes)),
        (histograms::FILE, hist_bytes.as_ref()),
        ("meta.json", Some(&meta_bytes)),
    ];
    for (name, bytes) in files {
        let Some(bytes) = bytes else { continue };
        let p = tmp.join(name);
        let mut f = File::create(&p).map_err(io_err(&p))?;
        f.write_all(bytes).map_err(io_err(&p))?;
        f.sync_all().map_err(io_err(&p))?;
    }
    let dest = parent.join(&id);
    fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err(parent))?;
    Ok(Some(dest))
}

fn new_block_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!(
        "{now:013x}{:012x}",
        rand::random::<u64>() & 0xffff_ffff_ffff
    )
}
