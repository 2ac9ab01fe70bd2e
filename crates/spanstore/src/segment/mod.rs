//! Immutable segment files: trace-grouped, dictionary-coded span blocks compressed with
//! zstd, a raw sorted trace-id array read through mmap (binary search without loading it),
//! and a compressed footer with the block index, per-trace time/duration table, string
//! dictionary and postings. See `docs/format.md` for the byte layout.

mod read;
mod write;

use std::io;
use std::path::{Path, PathBuf};

use crate::SpanStoreError;

pub use read::{Segment, TraceSet};
pub use write::write_segment;

pub const MAGIC: &[u8; 8] = b"MLSPSEG1";
pub const END_MAGIC: &[u8; 8] = b"MLSPEND1";
pub const TRAILER: usize = 8 + 8 + 8 + 4 + 4 + 8;
pub const VERSION: u64 = 1;
/// Uncompressed bytes per block: big enough for zstd to find repeats across traces, small
/// enough that a trace-by-id lookup decompresses little.
pub const BLOCK_TARGET: usize = 128 << 10;
/// A tag value or IP goes into the dictionary when it occurs at least this often; rarer
/// ones are stored inline where zstd still compresses their repeats within a block.
pub const DICT_MIN_COUNT: u32 = 4;
/// Every value of a tag key with at most this many distinct values goes into the
/// dictionary, so low-cardinality keys are fully indexed (exact `key=value` postings and
/// autocomplete after restart).
pub const LOW_CARDINALITY: usize = 1000;
const ZSTD_LEVEL: i32 = 3;

// Postings kinds.
pub const P_SVC: u8 = 0;
pub const P_SVC_NAME: u8 = 1;
pub const P_SVC_REMOTE: u8 = 2;
pub const P_NAME: u8 = 3;
pub const P_REMOTE: u8 = 4;
pub const P_TAG_KEY: u8 = 5;
pub const P_TAG_KV: u8 = 6;
pub const P_ANN: u8 = 7;

pub fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

pub fn parse_seg_name(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")?.parse().ok()
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpanStoreError + 'a {
    move |source| SpanStoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
