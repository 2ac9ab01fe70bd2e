//! The buffer's public types: options, errors, figures and batches.

use std::path::PathBuf;
use std::time::Duration;

/// What a record holds; the payload is the uncompressed protobuf of the sender's wire format,
/// so consecutive records of one kind concatenate into one request. The buffer never looks
/// inside: a writer and its reader agree on the format (the server's ClickHouse buffer keeps
/// spans as a Zipkin proto3 `ListOfSpans`, which concatenates the same way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A remote-write 1.0 `WriteRequest` (series may carry a created timestamp in
    /// `meshlens_ingest::remote_write::BUFFER_CREATED_FIELD`).
    Metrics,
    /// An OTLP `ExportTraceServiceRequest`.
    Spans,
}

impl Kind {
    /// The `kind` label value in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Metrics => "metrics",
            Kind::Spans => "spans",
        }
    }
}

#[derive(Clone, Debug)]
pub struct BufferOptions {
    pub dir: PathBuf,
    /// Total bytes on disk; 0: no limit.
    pub max_size_bytes: u64,
    /// Records older than this are dropped for destinations that have not sent them; zero: no limit.
    pub max_age: Duration,
    /// When full, drop the oldest records (counted) instead of refusing new ones.
    pub drop_oldest: bool,
    /// Size at which a new segment file is started (at most 1 GiB, and at most a quarter of
    /// `max_size_bytes` when that is under twice this, so dropping frees space gradually).
    pub segment_bytes: u64,
    /// fdatasync before acknowledging (off only for benchmarks).
    pub fsync: bool,
}

impl Default for BufferOptions {
    fn default() -> Self {
        BufferOptions {
            dir: PathBuf::from("buffer"),
            max_size_bytes: 1 << 30,
            max_age: Duration::from_secs(2 * 3600),
            drop_oldest: false,
            segment_bytes: 16 << 20,
            fsync: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("the forwarding buffer is full ({size} of {limit} bytes); retry later")]
    Full { size: u64, limit: u64 },
    #[error("the forwarding buffer cannot be written: {0}")]
    Io(#[from] ForwardError),
    #[error("the forwarding buffer is closed")]
    Closed,
}

/// Records (and the samples or spans in them) a destination lost for one reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub records: u64,
    pub items: u64,
}

/// One destination's view of the buffer.
#[derive(Clone, Debug, Default)]
pub struct DestinationStats {
    pub name: String,
    /// The next sequence number it will be sent.
    pub next_seq: u64,
    /// Records and bytes (headers included) not yet sent to it.
    pub buffered_records: u64,
    pub buffered_bytes: u64,
    /// Now minus when its oldest unsent record was buffered; 0 when caught up.
    pub lag_seconds: f64,
    /// Deleted unsent because the buffer was full (`drop_oldest`).
    pub dropped_full: Dropped,
    /// Skipped unsent because older than `max_age`.
    pub dropped_max_age: Dropped,
    /// Skipped because the record read back did not match its checksum.
    pub dropped_corrupt: Dropped,
}

/// Figures for `/metrics`, per destination where named.
#[derive(Clone, Debug, Default)]
pub struct BufferStats {
    pub total_bytes: u64,
    pub segments: usize,
    /// The sequence number the next record gets.
    pub next_seq: u64,
    pub appended_records: u64,
    pub appended_metrics_records: u64,
    pub appended_spans_records: u64,
    /// Samples and spans in the appended records: what writers were acknowledged.
    pub appended_metrics_items: u64,
    pub appended_spans_items: u64,
    /// Appends answered with [`AppendError::Full`].
    pub refused_records: u64,
    /// `fdatasync`s of the group commit (fewer than appends when appenders share them).
    pub fsyncs: u64,
    pub destinations: Vec<DestinationStats>,
}

/// Consecutive records of one kind for one destination, their payloads concatenated
/// (so they form one request).
#[derive(Clone, Debug)]
pub struct Batch {
    pub kind: Kind,
    pub first_seq: u64,
    /// Commit this once the destination has the batch.
    pub next_seq: u64,
    pub records: u32,
    /// Samples or spans.
    pub items: u64,
    /// Unix ms at which the batch's first record was buffered.
    pub oldest_ms: i64,
    pub payload: Vec<u8>,
}
