//! Durable forwarding: a write-ahead buffer on disk with one cursor per destination, and the
//! senders that drain it (Prometheus remote write 1.0 for metrics, OTLP/HTTP for spans).
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
pub use sender::{
    Forwarder, HubOptions, HubStats, SendOptions, AGENT_HEADER, CLUSTER_HEADER, ITEMS_HEADER,
    OLDEST_HEADER,
};
