//! Durable forwarding: a write-ahead buffer on disk with one cursor per destination, and the
//! senders that drain it (Prometheus remote write for metrics, 1.0 or 2.0, OTLP/HTTP for
//! spans). Metric records are 1.0 `WriteRequest`s whatever the hubs speak: a sender set to
//! 2.0 transcodes each batch as it sends it. A series' created timestamp, which 1.0 cannot
//! say, rides in a private field of its 1.0 `TimeSeries`
//! ([`BUFFER_CREATED_FIELD`](meshlens_ingest::remote_write::BUFFER_CREATED_FIELD)) that the
//! 2.0 transcoding turns into `created_timestamp`: records without it (written by an older
//! agent) read as having none, and 1.0 receivers skip it as an unknown field, so the record
//! format needs no new version.
//!
//! A writer's data is acknowledged once `Buffer::append` returns: it is then on disk and
//! fsynced. Each destination (a hub) reads the buffer from its own cursor, so a hub that was
//! down catches up from where it stopped, in order, while the others stay current.

mod buffer;
mod sender;

pub use buffer::{
    AppendError, Batch, Buffer, BufferOptions, BufferStats, DestinationStats, Dropped,
    ForwardError, Kind,
};
pub use meshlens_ingest::remote_write::ProtobufMessage;
pub use sender::{
    Forwarder, HubOptions, HubStats, SendOptions, AGENT_HEADER, CLUSTER_HEADER, ITEMS_HEADER,
    OLDEST_HEADER,
};
