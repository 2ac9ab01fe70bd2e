//! The span model (Zipkin v2's, which OTLP maps onto) and the span storage contract.
//!
//! Contract: `SpanWriter::write` returning `Ok` means the spans are durable. A trace is
//! whatever spans share its id; readers group by id.

use std::collections::BTreeMap;
use std::fmt;

use crate::aggregate::{SpanAggregation, SpanGroup};
use crate::projection::SpanPart;
use crate::span_ref::SpanRef;
use crate::StorageError;

/// A trace id as sent: 64-bit (16 hex digits) or 128-bit (32 hex digits). Both are kept as
/// sent, like the Zipkin server does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId {
    pub high: u64,
    pub low: u64,
    pub is_128: bool,
}

impl TraceId {
    /// Parses 1 to 32 hex digits (Zipkin pads shorter ids); more than 16 means 128-bit.
    pub fn parse_hex(s: &str) -> Option<TraceId> {
        if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        if s.len() > 16 {
            let split = s.len() - 16;
            Some(TraceId {
                high: u64::from_str_radix(&s[..split], 16).ok()?,
                low: u64::from_str_radix(&s[split..], 16).ok()?,
                is_128: true,
            })
        } else {
            Some(TraceId {
                high: 0,
                low: u64::from_str_radix(s, 16).ok()?,
                is_128: false,
            })
        }
    }

    pub fn from_bytes(b: &[u8]) -> Option<TraceId> {
        match b.len() {
            8 => Some(TraceId {
                high: 0,
                low: u64::from_be_bytes(b.try_into().ok()?),
                is_128: false,
            }),
            16 => Some(TraceId {
                high: u64::from_be_bytes(b[..8].try_into().ok()?),
                low: u64::from_be_bytes(b[8..].try_into().ok()?),
                is_128: true,
            }),
            _ => None,
        }
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_128 {
            write!(f, "{:016x}{:016x}", self.high, self.low)
        } else {
            write!(f, "{:016x}", self.low)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Client,
    Server,
    Producer,
    Consumer,
}

impl SpanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Client => "CLIENT",
            SpanKind::Server => "SERVER",
            SpanKind::Producer => "PRODUCER",
            SpanKind::Consumer => "CONSUMER",
        }
    }

    pub fn parse(s: &str) -> Option<SpanKind> {
        match s {
            "CLIENT" => Some(SpanKind::Client),
            "SERVER" => Some(SpanKind::Server),
            "PRODUCER" => Some(SpanKind::Producer),
            "CONSUMER" => Some(SpanKind::Consumer),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub service_name: Option<String>,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Annotation {
    /// Microseconds since the epoch.
    pub timestamp: u64,
    pub value: String,
}

/// A Zipkin v2 span. Times are microseconds since the epoch; ids are kept numeric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub trace_id: TraceId,
    pub id: u64,
    pub parent_id: Option<u64>,
    pub name: Option<String>,
    pub kind: Option<SpanKind>,
    pub timestamp: Option<u64>,
    pub duration: Option<u64>,
    pub local_endpoint: Option<Endpoint>,
    pub remote_endpoint: Option<Endpoint>,
    pub annotations: Vec<Annotation>,
    pub tags: BTreeMap<String, String>,
    pub debug: bool,
    pub shared: bool,
}

impl Span {
    pub fn local_service(&self) -> Option<&str> {
        self.local_endpoint.as_ref()?.service_name.as_deref()
    }

    pub fn remote_service(&self) -> Option<&str> {
        self.remote_endpoint.as_ref()?.service_name.as_deref()
    }
}

/// A search, with the Zipkin API's parameters. Times in milliseconds, durations in
/// microseconds, as that API has them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceQuery {
    pub service_name: Option<String>,
    pub remote_service_name: Option<String>,
    pub span_name: Option<String>,
    /// `key` (tag key or annotation value present) or `key=value` terms, all required.
    pub annotation_query: Vec<(String, Option<String>)>,
    pub min_duration: Option<u64>,
    pub max_duration: Option<u64>,
    pub end_ts: i64,
    pub lookback: i64,
    pub limit: usize,
}

/// One edge of the dependency graph (Zipkin's DependencyLink).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DependencyLink {
    pub parent: String,
    pub child: String,
    pub call_count: u64,
    pub error_count: u64,
}

/// When a trace started, as Zipkin orders search results: its root span's timestamp, else
/// its earliest (microseconds; 0 when no span has one).
pub fn trace_start(spans: &[Span]) -> u64 {
    spans
        .iter()
        .find(|s| s.parent_id.is_none() && s.timestamp.is_some())
        .and_then(|s| s.timestamp)
        .or_else(|| spans.iter().filter_map(|s| s.timestamp).min())
        .unwrap_or(0)
}

pub trait SpanWriter: Send + Sync {
    fn write(&self, spans: &[Span]) -> Result<(), StorageError>;
    /// Writes spans borrowed from a request body. Engines that encode spans themselves
    /// override it to skip building owned spans; the default builds them.
    fn write_refs(&self, spans: &[SpanRef<'_>]) -> Result<(), StorageError> {
        let owned: Vec<Span> = spans.iter().map(SpanRef::to_span).collect();
        self.write(&owned)
    }
}

pub trait SpanReader: Send + Sync {
    /// All spans of one trace, empty when unknown.
    fn trace(&self, id: &TraceId) -> Result<Vec<Span>, StorageError>;
    /// Traces with at least one span matching the query, newest first, at most `limit`.
    fn find_traces(&self, q: &TraceQuery) -> Result<Vec<Vec<Span>>, StorageError>;
    fn service_names(&self) -> Result<Vec<String>, StorageError>;
    fn remote_service_names(&self, service: &str) -> Result<Vec<String>, StorageError>;
    fn span_names(&self, service: &str) -> Result<Vec<String>, StorageError>;
    /// Links between services from spans in `[end_ts - lookback, end_ts]` (milliseconds).
    fn dependencies(&self, end_ts: i64, lookback: i64)
        -> Result<Vec<DependencyLink>, StorageError>;
    /// Visits every stored span whose timestamp lies in `[start_us, end_us]` (microseconds),
    /// in no particular order; the analyses (statistics, graphs from traces) build on this.
    fn scan(
        &self,
        start_us: u64,
        end_us: u64,
        visit: &mut dyn FnMut(&Span),
    ) -> Result<(), StorageError>;
    /// The store as parts that can be scanned in parallel by projection scans
    /// (`crate::projection`), together holding every span in `[start_us, end_us]`. The
    /// default cuts the window into time slices read through `scan`; engines override it to
    /// read only the projected columns and to keep pre-aggregates of immutable parts.
    fn parts(
        &self,
        start_us: u64,
        end_us: u64,
    ) -> Result<Vec<Box<dyn SpanPart + '_>>, StorageError> {
        Ok(crate::projection::time_slices(self, start_us, end_us))
    }
    /// Runs an aggregation where the spans are (see `crate::aggregate`), or `None` when the
    /// store cannot, and the caller then reads the spans (`parts`) and aggregates itself.
    /// Groups come in any order. A store that keeps a retried write once counts it once.
    fn aggregate(&self, _a: &SpanAggregation) -> Result<Option<Vec<SpanGroup>>, StorageError> {
        Ok(None)
    }
    /// Pairs the calls between services where the spans are (see `crate::calls`), or
    /// `None` when the store cannot, and the caller then reads the spans (`scan`) and pairs
    /// them itself. Groups come in any order, each group at most once.
    fn aggregate_calls(
        &self,
        _a: &crate::calls::CallAggregation,
    ) -> Result<Option<Vec<crate::calls::CallGroup>>, StorageError> {
        Ok(None)
    }
    /// Tag keys seen in stored spans (Zipkin's autocompleteKeys), sorted.
    fn autocomplete_keys(&self) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    /// Values seen for one tag key (Zipkin's autocompleteValues), sorted.
    fn autocomplete_values(&self, _key: &str) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

/// The answer of a store's own aggregation, as [`SpanReader::aggregate`] gives it.
pub type AggregateFn<'a> =
    dyn Fn(&SpanAggregation) -> Result<Option<Vec<SpanGroup>>, StorageError> + Send + Sync + 'a;

/// A store seen through `SpanReader`'s required methods only, as a store without projection
/// scans or aggregations of its own would offer them: the analyses' fallback paths (time
/// slices over `scan`, aggregation in meshlens) run over any store through it, so tests and
/// benchmarks can compare those paths with the store's own. With `aggregate` set, that is
/// the store's aggregation instead of none.
pub struct RequiredOnly<'a> {
    pub store: &'a dyn SpanReader,
    pub aggregate: Option<&'a AggregateFn<'a>>,
}

impl<'a> RequiredOnly<'a> {
    pub fn new(store: &'a dyn SpanReader) -> Self {
        RequiredOnly {
            store,
            aggregate: None,
        }
    }
}

impl SpanReader for RequiredOnly<'_> {
    fn trace(&self, id: &TraceId) -> Result<Vec<Span>, StorageError> {
        self.store.trace(id)
    }
    fn find_traces(&self, q: &TraceQuery) -> Result<Vec<Vec<Span>>, StorageError> {
        self.store.find_traces(q)
    }
    fn service_names(&self) -> Result<Vec<String>, StorageError> {
        self.store.service_names()
    }
    fn remote_service_names(&self, service: &str) -> Result<Vec<String>, StorageError> {
        self.store.remote_service_names(service)
    }
    fn span_names(&self, service: &str) -> Result<Vec<String>, StorageError> {
        self.store.span_names(service)
    }
    fn dependencies(
        &self,
        end_ts: i64,
        lookback: i64,
    ) -> Result<Vec<DependencyLink>, StorageError> {
        self.store.dependencies(end_ts, lookback)
    }
    fn scan(
        &self,
        start_us: u64,
        end_us: u64,
        visit: &mut dyn FnMut(&Span),
    ) -> Result<(), StorageError> {
        self.store.scan(start_us, end_us, visit)
    }
    fn aggregate(&self, a: &SpanAggregation) -> Result<Option<Vec<SpanGroup>>, StorageError> {
        match self.aggregate {
            Some(f) => f(a),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_keep_their_width() {
        let a = TraceId::parse_hex("463ac35c9f6413ad").unwrap();
        assert_eq!(a.to_string(), "463ac35c9f6413ad");
        let b = TraceId::parse_hex("463ac35c9f6413ad48485a3953bb6124").unwrap();
        assert_eq!(b.to_string(), "463ac35c9f6413ad48485a3953bb6124");
        assert!(TraceId::parse_hex("xyz").is_none());
        assert_eq!(
            TraceId::parse_hex("1").unwrap().to_string(),
            "0000000000000001"
        );
    }
}
