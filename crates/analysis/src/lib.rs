//! meshlens-analysis: what meshlens learns from the stored data rather than what it stores.
//!
//! - [`graph`]: the service graph (Kiali's workload / app / versioned app / service graphs)
//!   from Istio's standard metrics through PromQL, from traces (Tempo's client/server
//!   pairing), or both merged; RED figures per edge and Kiali health per node.
//! - [`spanmetrics`]: Tempo's metrics generator (span metrics and service-graph metrics)
//!   run at ingest, writing cumulative counters and histograms into the TSDB.
//! - [`stats`]: OPNFV Clover-style traffic statistics (URLs, services, status codes, user
//!   agents, response times) computed by one scan of the span store.
//! - [`http`]: the `/api/v1/graph` and `/api/v1/stats` endpoints.
//!
//! Design decision: every analysis reads through `MetricReader` / `SpanReader` only, so it
//! runs unchanged over the embedded engines or ClickHouse, and nothing keeps a second copy of
//! the data: a graph or a statistic is a query, not a materialised view.

pub mod graph;
pub mod http;
pub mod params;
pub mod spanmetrics;
pub mod stats;

mod fx;
mod quantile;

pub use graph::{
    build_graph, Edge, Graph, GraphQuery, GraphSource, GraphType, Health, Node, NodeKey,
};
pub use http::{router, AnalysisState};
pub use params::ParamError;
pub use spanmetrics::SpanMetrics;
pub use stats::{compute_stats, Stats, StatsQuery};

use meshlens_model::StorageError;
use meshlens_promql::PromqlError;

/// Why an analysis could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A request parameter is wrong; the HTTP layer answers 400 with this text.
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("query {query:?}: {source}")]
    Promql {
        query: String,
        #[source]
        source: PromqlError,
    },
}

impl AnalysisError {
    /// The HTTP status this error maps to.
    pub fn http_status(&self) -> u16 {
        match self {
            AnalysisError::Param(_) => 400,
            AnalysisError::Storage(StorageError::Closed | StorageError::Unavailable { .. }) => 503,
            AnalysisError::Storage(StorageError::InvalidRequest { .. }) => 400,
            AnalysisError::Storage(_) => 500,
            AnalysisError::Promql { source, .. } => source.http_status(),
        }
    }
}
