//! Reads across tenants (`X-Scope-OrgID: a|b`, Mimir's federation convention): the storage
//! traits over several tenants' stores at once, so every API serves a federated read without
//! knowing it.
//!
//! Metrics gain a `__tenant_id__` label naming the tenant each series came from, as Mimir's
//! federated queries do; a matcher on `__tenant_id__` selects tenants and is not passed down.
//! Spans carry no such tag: trace ids are random, so traces of different tenants do not meet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use meshlens_model::{
    DependencyLink, LabelMatcher, Labels, MetricMetadata, MetricReader, Sample, SeriesCursor,
    SeriesSamples, Span, SpanReader, SpanWriter, StorageError, TimeSeries, TraceId, TraceQuery,
};

/// The label naming a series' tenant in federated reads.
pub const TENANT_LABEL: &str = "__tenant_id__";

/// One tenant's metrics, named.
pub type TenantMetrics = (String, Arc<dyn MetricReader>);

/// Metrics of several tenants, each series labelled with its tenant.
pub struct FederatedMetrics {
    pub tenants: Vec<TenantMetrics>,
}

impl FederatedMetrics {
    /// The tenants that the `__tenant_id__` matchers admit, and the remaining matchers.
    fn plan(&self, matchers: &[LabelMatcher]) -> (Vec<&TenantMetrics>, Vec<LabelMatcher>) {
        let (on_tenant, rest): (Vec<_>, Vec<_>) = matchers
            .iter()
            .cloned()
            .partition(|m| m.name == TENANT_LABEL);
        let chosen = self
            .tenants
            .iter()
            .filter(|(id, _)| on_tenant.iter().all(|m| m.matches(id)))
            .collect();
        (chosen, rest)
    }
}

/// Exemplars of several tenants, each series labelled with its tenant as in
/// [`FederatedMetrics`].
pub struct FederatedExemplars {
    pub tenants: Vec<(String, Arc<dyn meshlens_model::ExemplarReader>)>,
}

impl meshlens_model::ExemplarReader for FederatedExemplars {
    fn select_exemplars(
        &self,
        matcher_sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<meshlens_model::SeriesExemplars>, StorageError> {
        let mut out = Vec::new();
        for (id, r) in &self.tenants {
            // Per tenant: the sets that admit it, without their tenant matchers.
            let sets: Vec<Vec<LabelMatcher>> = matcher_sets
                .iter()
                .filter(|set| {
                    set.iter()
                        .filter(|m| m.name == TENANT_LABEL)
                        .all(|m| m.matches(id))
                })
                .map(|set| {
                    set.iter()
                        .filter(|m| m.name != TENANT_LABEL)
                        .cloned()
                        .collect()
                })
                .collect();
            if sets.is_empty() {
                continue;
            }
            for mut s in r.select_exemplars(&sets, mint, maxt)? {
                s.series = with_tenant(&s.series, id);
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.series.cmp(&b.series));
        Ok(out)
    }
}

fn with_tenant(labels: &Labels, tenant: &str) -> Labels {
    let mut b = labels.builder();
    b.set(TENANT_LABEL, tenant);
    b.build()
}

/// A tenant's lazy series, labelled with its tenant.
struct TenantCursor<'a> {
    inner: Box<dyn SeriesCursor + 'a>,
    labels: Labels,
}

impl SeriesCursor for TenantCursor<'_> {
    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn decode_into(&self, buf: &mut Vec<Sample>) -> Result<usize, StorageError> {
        self.inner.decode_into(buf)
    }

    fn histograms(&self) -> &[meshlens_model::HistogramSample] {
        self.inner.histograms()
    }
}

impl MetricReader for FederatedMetrics {
    /// Each admitted tenant's cursors, relabelled; decoding stays with the tenant's store.
    fn select_lazy<'a>(
        &'a self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Box<dyn SeriesCursor + 'a>>, StorageError> {
        let (tenants, rest) = self.plan(matchers);
        let mut out: Vec<Box<dyn SeriesCursor + 'a>> = Vec::new();
        for (id, r) in tenants {
            for inner in r.select_lazy(&rest, mint, maxt)? {
                let labels = with_tenant(inner.labels(), id);
                out.push(Box::new(TenantCursor { inner, labels }));
            }
        }
        out.sort_by(|a, b| a.labels().cmp(b.labels()));
        Ok(out)
    }

    fn select(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        self.select_limited(matchers, mint, maxt, usize::MAX)
    }

    /// Each tenant gets what the budget has left after the tenants before it.
    fn select_limited(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        max_samples: usize,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let (tenants, rest) = self.plan(matchers);
        let mut out = Vec::new();
        let mut left = max_samples;
        for (id, r) in tenants {
            // A tenant over what is left is the query over its limit: say the query's.
            let found = r
                .select_limited(&rest, mint, maxt, left)
                .map_err(|e| match e {
                    StorageError::TooManySamples { .. } => {
                        StorageError::TooManySamples { limit: max_samples }
                    }
                    e => e,
                })?;
            for mut s in found {
                left = left
                    .checked_sub(s.samples.len() + s.histograms.len())
                    .ok_or(StorageError::TooManySamples { limit: max_samples })?;
                s.labels = with_tenant(&s.labels, id);
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn series(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let (tenants, rest) = self.plan(matchers);
        let mut out = Vec::new();
        for (id, r) in tenants {
            out.extend(
                r.series(&rest, mint, maxt)?
                    .iter()
                    .map(|l| with_tenant(l, id)),
            );
        }
        out.sort();
        Ok(out)
    }

    fn label_names(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let (tenants, rest) = self.plan(matchers);
        let mut names = BTreeSet::new();
        for (_, r) in &tenants {
            names.extend(r.label_names(&rest, mint, maxt)?);
        }
        if !tenants.is_empty() {
            names.insert(TENANT_LABEL.to_string());
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let (tenants, rest) = self.plan(matchers);
        let mut values = BTreeSet::new();
        for (id, r) in tenants {
            if name == TENANT_LABEL {
                if !r.series(&rest, mint, maxt)?.is_empty() {
                    values.insert(id.clone());
                }
            } else {
                values.extend(r.label_values(name, &rest, mint, maxt)?);
            }
        }
        Ok(values.into_iter().collect())
    }

    fn metadata(&self, metric: Option<&str>) -> Result<Vec<MetricMetadata>, StorageError> {
        let mut seen = BTreeMap::new();
        for (_, r) in &self.tenants {
            for m in r.metadata(metric)? {
                seen.entry((m.metric_family.clone(), m.kind.clone(), m.help.clone()))
                    .or_insert(m);
            }
        }
        Ok(seen.into_values().collect())
    }
}

/// Spans of several tenants.
pub struct FederatedSpans {
    pub tenants: Vec<Arc<dyn SpanReader>>,
}

fn union(
    parts: impl Iterator<Item = Result<Vec<String>, StorageError>>,
) -> Result<Vec<String>, StorageError> {
    let mut all = BTreeSet::new();
    for p in parts {
        all.extend(p?);
    }
    Ok(all.into_iter().collect())
}

impl SpanReader for FederatedSpans {
    fn trace(&self, id: &TraceId) -> Result<Vec<Span>, StorageError> {
        let mut out = Vec::new();
        for r in &self.tenants {
            out.extend(r.trace(id)?);
        }
        Ok(out)
    }

    fn find_traces(&self, q: &TraceQuery) -> Result<Vec<Vec<Span>>, StorageError> {
        let mut out = Vec::new();
        for r in &self.tenants {
            out.extend(r.find_traces(q)?);
        }
        // Newest first, as each store answers, then the query's limit over the union.
        let newest = |t: &Vec<Span>| t.iter().filter_map(|s| s.timestamp).max().unwrap_or(0);
        out.sort_by_key(|t| std::cmp::Reverse(newest(t)));
        out.truncate(q.limit);
        Ok(out)
    }

    fn service_names(&self) -> Result<Vec<String>, StorageError> {
        union(self.tenants.iter().map(|r| r.service_names()))
    }

    fn remote_service_names(&self, service: &str) -> Result<Vec<String>, StorageError> {
        union(self.tenants.iter().map(|r| r.remote_service_names(service)))
    }

    fn span_names(&self, service: &str) -> Result<Vec<String>, StorageError> {
        union(self.tenants.iter().map(|r| r.span_names(service)))
    }

    fn dependencies(
        &self,
        end_ts: i64,
        lookback: i64,
    ) -> Result<Vec<DependencyLink>, StorageError> {
        let mut links: BTreeMap<(String, String), DependencyLink> = BTreeMap::new();
        for r in &self.tenants {
            for l in r.dependencies(end_ts, lookback)? {
                let e = links
                    .entry((l.parent.clone(), l.child.clone()))
                    .or_insert_with(|| DependencyLink {
                        parent: l.parent.clone(),
                        child: l.child.clone(),
                        ..Default::default()
                    });
                e.call_count += l.call_count;
                e.error_count += l.error_count;
            }
        }
        Ok(links.into_values().collect())
    }

    fn scan(
        &self,
        start_us: u64,
        end_us: u64,
        visit: &mut dyn FnMut(&Span),
    ) -> Result<(), StorageError> {
        for r in &self.tenants {
            r.scan(start_us, end_us, visit)?;
        }
        Ok(())
    }

    fn autocomplete_keys(&self) -> Result<Vec<String>, StorageError> {
        union(self.tenants.iter().map(|r| r.autocomplete_keys()))
    }

    fn autocomplete_values(&self, key: &str) -> Result<Vec<String>, StorageError> {
        union(self.tenants.iter().map(|r| r.autocomplete_values(key)))
    }
}

/// The write side of a federated view: writes name exactly one tenant.
pub struct NoWrites;

const ONE_TENANT: &str = "a write must name exactly one tenant in X-Scope-OrgID";

impl meshlens_model::MetricWriter for NoWrites {
    fn append(&self, _batch: &[TimeSeries]) -> Result<meshlens_model::AppendOutcome, StorageError> {
        Err(StorageError::InvalidRequest {
            reason: ONE_TENANT.into(),
        })
    }

    fn append_histograms(
        &self,
        _batch: &[meshlens_model::SeriesHistograms],
    ) -> Result<meshlens_model::AppendOutcome, StorageError> {
        Err(StorageError::InvalidRequest {
            reason: ONE_TENANT.into(),
        })
    }
}

impl SpanWriter for NoWrites {
    fn write(&self, _spans: &[Span]) -> Result<(), StorageError> {
        Err(StorageError::InvalidRequest {
            reason: ONE_TENANT.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<SeriesSamples>);

    impl MetricReader for Fixed {
        fn select(
            &self,
            m: &[LabelMatcher],
            _: i64,
            _: i64,
        ) -> Result<Vec<SeriesSamples>, StorageError> {
            Ok(self
                .0
                .iter()
                .filter(|s| {
                    m.iter()
                        .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
                })
                .cloned()
                .collect())
        }
        fn series(&self, m: &[LabelMatcher], a: i64, b: i64) -> Result<Vec<Labels>, StorageError> {
            Ok(self
                .select(m, a, b)?
                .into_iter()
                .map(|s| s.labels)
                .collect())
        }
        fn label_names(
            &self,
            _: &[LabelMatcher],
            _: i64,
            _: i64,
        ) -> Result<Vec<String>, StorageError> {
            Ok(vec!["__name__".into()])
        }
        fn label_values(
            &self,
            _: &str,
            _: &[LabelMatcher],
            _: i64,
            _: i64,
        ) -> Result<Vec<String>, StorageError> {
            Ok(vec![])
        }
    }

    fn one(name: &str) -> Arc<dyn MetricReader> {
        Arc::new(Fixed(vec![SeriesSamples {
            labels: Labels::from_pairs([("__name__", name)]),
            samples: vec![Sample { t: 1, v: 1.0 }],
            histograms: vec![meshlens_model::HistogramSample {
                t: 2,
                h: Arc::new(meshlens_model::FloatHistogram {
                    count: 3.0,
                    sum: 4.0,
                    ..Default::default()
                }),
            }],
        }]))
    }

    #[test]
    fn federated_series_carry_their_tenant_and_tenant_matchers_pick_tenants() {
        let f = FederatedMetrics {
            tenants: vec![("a".into(), one("up")), ("b".into(), one("up"))],
        };
        let all = f
            .select(&[LabelMatcher::equal("__name__", "up")], 0, 10)
            .unwrap();
        let tenants: Vec<_> = all
            .iter()
            .map(|s| s.labels.get(TENANT_LABEL).unwrap())
            .collect();
        assert_eq!(tenants, ["a", "b"]);
        let only_b = f
            .select(&[LabelMatcher::equal(TENANT_LABEL, "b")], 0, 10)
            .unwrap();
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].labels.get(TENANT_LABEL), Some("b"));
        assert!(f
            .label_names(&[], 0, 10)
            .unwrap()
            .contains(&TENANT_LABEL.to_string()));
    }

    #[test]
    fn lazy_federated_series_equal_the_materialised_ones() {
        let f = FederatedMetrics {
            tenants: vec![
                ("b".into(), one("up")),
                ("a".into(), one("up")),
                ("c".into(), one("down")),
            ],
        };
        for m in [
            vec![LabelMatcher::equal("__name__", "up")],
            vec![LabelMatcher::equal(TENANT_LABEL, "b")],
            vec![],
        ] {
            let want = f.select(&m, 0, 10).unwrap();
            let mut buf = Vec::new();
            let got: Vec<SeriesSamples> = f
                .select_lazy(&m, 0, 10)
                .unwrap()
                .iter()
                .map(|c| {
                    buf.clear();
                    c.decode_into(&mut buf).unwrap();
                    SeriesSamples {
                        labels: c.labels().clone(),
                        samples: buf.clone(),
                        histograms: c.histograms().to_vec(),
                    }
                })
                .collect();
            assert_eq!(got, want, "{m:?}");
        }
        // Histograms pass through and count against a limited selection's budget: three
        // series of one float and one histogram each.
        assert!(f.select(&[], 0, 10).unwrap()[0].histograms.len() == 1);
        assert_eq!(f.select_limited(&[], 0, 10, 6).unwrap().len(), 3);
        assert!(matches!(
            f.select_limited(&[], 0, 10, 5),
            Err(StorageError::TooManySamples { limit: 5 })
        ));
    }
}
