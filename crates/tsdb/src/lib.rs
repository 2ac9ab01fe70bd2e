//! The embedded time-series engine: a checksummed WAL, an in-memory head of compressed
//! chunks with a postings index, immutable on-disk blocks, compaction and retention.
//!
//! Main types: [`Tsdb`] (implements `MetricWriter`, `MetricReader` and `ExemplarReader`),
//! [`TsdbOptions`]. Exemplars live in a bounded ring beside the head, logged to the WAL.
//! Native-histogram (float histogram) samples live beside a series' floats: in the head as
//! a sorted list per series (none for float-only series), in the WAL as their own record
//! type, in blocks as a `histograms` file of histogram chunks (formats: `wal` and `block`
//! module docs, `histogram` for one histogram's bytes).
//!
//! Durability: an append returns after its WAL records are written and, with the default
//! [`FsyncPolicy::EveryAppend`], fdatasync'ed; concurrent appends share one fsync (group
//! commit). Key design decision: blocks may overlap in time (late samples within the
//! out-of-order window, a head flushed at shutdown); reads merge and de-duplicate, and
//! compaction folds overlapping blocks together, so no sample is refused merely because a
//! block was cut. On-disk formats: `docs/format/`.

mod block;
mod budget;
mod chunk;
mod db;
mod exemplars;
mod head;
mod histogram;
mod postings;
mod varint;
mod wal;

pub use block::BlockMeta;
pub use chunk::{
    decode as decode_chunk, decode_range_into as decode_chunk_into, encode as encode_chunk, Chunk,
    ChunkError,
};
pub use db::{ExemplarStats, FsyncPolicy, SeriesHandle, Tsdb, TsdbError, TsdbOptions, TsdbStats};
pub use meshlens_model::HeadCardinality;
