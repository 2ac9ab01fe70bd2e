//! Test support for the collectors: series held in memory behind the real PromQL engine,
//! and spans held in memory behind the span reader trait.
#![allow(dead_code)]

pub mod gen;

use std::collections::BTreeMap;

use meshlens_model::{
    Endpoint, LabelMatcher, Labels, MetricReader, Sample, SeriesSamples, Span, SpanKind,
    SpanReader, StorageError, TimeSeries, TraceId, TraceQuery,
};
use meshlens_promql::{Engine, EngineOptions, Value};
use meshlens_verify::collect::{QueryError, RangeQuery};

#[derive(Default)]
pub struct MemMetrics {
    pub series: BTreeMap<Labels, Vec<Sample>>,
}

impl MemMetrics {
    pub fn add(&mut self, ts: Vec<TimeSeries>) {
        for s in ts {
            self.series.entry(s.labels).or_default().extend(s.samples);
        }
        for v in self.series.values_mut() {
            v.sort_by_key(|s| s.t);
        }
    }
}

impl MetricReader for MemMetrics {
    fn select(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        Ok(self
            .series
            .iter()
            .filter(|(l, _)| m.iter().all(|x| x.matches(l.get(&x.name).unwrap_or(""))))
            .map(|(l, s)| SeriesSamples {
                labels: l.clone(),
                samples: s
                    .iter()
                    .filter(|x| x.t >= mint && x.t <= maxt)
                    .copied()
                    .collect(),
                histograms: Vec::new(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }

    fn series(&self, m: &[LabelMatcher], a: i64, b: i64) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .select(m, a, b)?
            .into_iter()
            .map(|s| s.labels)
            .collect())
    }

    fn label_names(&self, _: &[LabelMatcher], _: i64, _: i64) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    fn label_values(
        &self,
        _: &str,
        _: &[LabelMatcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

/// The real engine over the in-memory series, as the server wires it; records each query.
pub struct EngineQuery {
    pub engine: Engine,
    pub store: MemMetrics,
    pub seen: parking_lot::Mutex<Vec<String>>,
}

impl EngineQuery {
    pub fn new(store: MemMetrics) -> EngineQuery {
        EngineQuery {
            engine: Engine::new(EngineOptions::default()),
            store,
            seen: Default::default(),
        }
    }
}

fn qe(e: meshlens_promql::PromqlError) -> QueryError {
    QueryError {
        message: e.to_string(),
        status: e.http_status(),
    }
}

impl RangeQuery for EngineQuery {
    fn check(&self, query: &str) -> Result<(), QueryError> {
        meshlens_promql::parse(query).map(|_| ()).map_err(qe)
    }

    fn range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<SeriesSamples>, QueryError> {
        self.seen.lock().push(query.to_string());
        let r = self
            .engine
            .range_query(&self.store, query, start_ms, end_ms, step_ms)
            .map_err(qe)?;
        Ok(match r.value {
            Value::Matrix(m) => m,
            _ => Vec::new(),
        })
    }
}

#[derive(Default)]
pub struct MemSpans(pub Vec<Span>);

impl MemSpans {
    /// A server span of `service` at `ts_ms`, lasting `dur_ms`, with the given tags.
    pub fn push(&mut self, service: &str, ts_us: u64, dur_ms: f64, tags: &[(&str, &str)]) {
        let id = self.0.len() as u64 + 1;
        self.0.push(Span {
            trace_id: TraceId {
                high: 0,
                low: id,
                is_128: false,
            },
            id,
            parent_id: None,
            name: Some("get /".into()),
            kind: Some(SpanKind::Server),
            timestamp: Some(ts_us),
            duration: Some((dur_ms * 1000.0).round().max(1.0) as u64),
            local_endpoint: Some(Endpoint {
                service_name: Some(service.into()),
                ..Default::default()
            }),
            remote_endpoint: None,
            annotations: Vec::new(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            debug: false,
            shared: false,
        });
    }

    /// The generated traffic of one version as spans.
    pub fn add_traffic(&mut self, t: &gen::Traffic, end_ms: i64, window_ms: i64) {
        for (at, reqs) in t.requests(end_ms, window_ms) {
            for (k, (err, lat)) in reqs.iter().enumerate() {
                let ts_us = ((at - gen::SCRAPE_MS) * 1000
                    + (k as i64 + 1) * gen::SCRAPE_MS * 1000 / (reqs.len() as i64 + 1))
                    as u64;
                let code = if *err { "503" } else { "200" };
                self.push(
                    &t.service,
                    ts_us,
                    *lat,
                    &[("service.version", &t.version), ("http.status_code", code)],
                );
            }
        }
    }
}

impl SpanReader for MemSpans {
    fn trace(&self, _: &TraceId) -> Result<Vec<Span>, StorageError> {
        Ok(Vec::new())
    }
    fn find_traces(&self, _: &TraceQuery) -> Result<Vec<Vec<Span>>, StorageError> {
        Ok(Vec::new())
    }
    fn service_names(&self) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn remote_service_names(&self, _: &str) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn span_names(&self, _: &str) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn dependencies(
        &self,
        _: i64,
        _: i64,
    ) -> Result<Vec<meshlens_model::DependencyLink>, StorageError> {
        Ok(Vec::new())
    }
    fn scan(
        &self,
        start_us: u64,
        end_us: u64,
        visit: &mut dyn FnMut(&Span),
    ) -> Result<(), StorageError> {
        for s in &self.0 {
            if s.timestamp.is_some_and(|t| t >= start_us && t <= end_us) {
                visit(s);
            }
        }
        Ok(())
    }
}

pub fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
