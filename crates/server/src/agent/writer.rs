//! The agent's storage: writers that stamp the cluster onto series and spans and append
//! them to the forwarding buffer, so the scrape loops and the trace-api ingest handlers run
//! unchanged over it. A write returns once the buffer has fsynced the record.

use std::collections::HashMap;
use std::sync::Arc;

use meshlens_forward::{AppendError, Buffer, ForwardError, Kind};
use meshlens_ingest::remote_write;
use meshlens_model::{
    AppendOutcome, DependencyLink, ExemplarOutcome, HistogramSample, Labels, MetricMetadata,
    MetricWriter, RejectReason, SeriesExemplars, SeriesHistograms, Span, SpanReader, SpanWriter,
    StorageError, TimeSeries, TraceId, TraceQuery,
};
use parking_lot::Mutex;

/// The label (Prometheus, Istio) and Zipkin tag naming a series' or span's cluster.
pub const CLUSTER_LABEL: &str = "cluster";
/// The OpenTelemetry resource attribute naming the cluster, stamped on OTLP spans.
pub const OTLP_CLUSTER_ATTRIBUTE: &str = "k8s.cluster.name";
/// Tags that already name a span's cluster; a span with any of them is left as sent.
const SPAN_CLUSTER_TAGS: [&str; 3] = [CLUSTER_LABEL, OTLP_CLUSTER_ATTRIBUTE, "istio.cluster_id"];

/// How long metadata that did not change goes without being forwarded again, so a hub
/// that lost it (or joined later) gets it back without every scrape repeating it.
const METADATA_RESEND_MS: i64 = 10 * 60 * 1000;

/// The labels every forwarded series gets where it lacks them: `cluster` first, then the
/// config's `global.external_labels` (as a Prometheus agent applies them to remote write).
#[derive(Clone, Debug, Default)]
pub struct Stamp {
    /// Sorted by name, as the stamped encoder merges them into each series' sorted labels.
    sorted: Vec<(String, String)>,
}

impl Stamp {
    pub fn new<'a>(
        cluster: &str,
        external: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Stamp {
        let mut labels = vec![(CLUSTER_LABEL.to_string(), cluster.to_string())];
        for (k, v) in external {
            if k != CLUSTER_LABEL && !v.is_empty() {
                labels.push((k.clone(), v.clone()));
            }
        }
        labels.sort();
        Stamp { sorted: labels }
    }
}

/// What one metric write did (float samples, or native histogram samples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub samples: u64,
    /// Samples of series whose labels a hub would refuse (or histograms it would refuse),
    /// left out.
    pub invalid: u64,
    /// The first such series, for the error message.
    pub first_invalid: Option<usize>,
}

impl Written {
    /// Whether series `i` with `n` samples goes to the hubs: empty series are passed over,
    /// and those whose labels a hub would refuse are counted (the first remembered).
    fn admits(&mut self, i: usize, labels: &Labels, n: usize) -> bool {
        if n == 0 {
            return false;
        }
        if labels.metric_name().is_none() || labels.validate().is_err() {
            self.invalid += n as u64;
            self.first_invalid.get_or_insert(i);
            return false;
        }
        true
    }

    /// As a storage engine reports an append: written samples accepted, the rest refused
    /// for their labels.
    fn outcome(&self) -> AppendOutcome {
        let mut o = AppendOutcome {
            accepted: self.samples,
            ..Default::default()
        };
        o.add_rejected(RejectReason::InvalidLabels, self.invalid);
        o
    }
}

/// Appends metric records (`Kind::Metrics`, an uncompressed remote-write request each).
pub struct BufferMetricWriter {
    buffer: Arc<Buffer>,
    stamp: Stamp,
    metadata: Mutex<MetadataState>,
}

#[derive(Default)]
struct MetadataState {
    /// Given by scrapes since the last record; sent with the next one.
    pending: HashMap<String, MetricMetadata>,
    /// What was last forwarded per family, and when (unix ms).
    sent: HashMap<String, (MetricMetadata, i64)>,
}

impl BufferMetricWriter {
    pub fn new(buffer: Arc<Buffer>, stamp: Stamp) -> BufferMetricWriter {
        BufferMetricWriter {
            buffer,
            stamp,
            metadata: Mutex::new(MetadataState::default()),
        }
    }

    /// Stamps and appends one batch as one record; returns once it is durable. Series with
    /// labels a hub would refuse are left out and counted (a hub answers a batch holding
    /// one with 400, and the forwarder would drop the whole batch).
    pub fn write(
        &self,
        series: &[TimeSeries],
        metadata: Vec<MetricMetadata>,
    ) -> Result<Written, AppendError> {
        self.write_with_created(series, &[], metadata)
    }

    /// [`Self::write`] with each series' created timestamp (`created[i]` is `series[i]`'s;
    /// 0 or missing: none), kept in the record for the senders that speak remote write 2.0
    /// (1.0 has no field for it). Forwarded whenever known, as a Prometheus agent does: a
    /// hub's own `created-timestamp-zero-ingestion` decides whether it becomes a zero.
    pub fn write_with_created(
        &self,
        series: &[TimeSeries],
        created: &[i64],
        mut metadata: Vec<MetricMetadata>,
    ) -> Result<Written, AppendError> {
        let mut out = Written::default();
        let mut kept: Vec<&TimeSeries> = Vec::with_capacity(series.len());
        let mut kept_created: Vec<i64> = Vec::new();
        for (i, ts) in series.iter().enumerate() {
            if !out.admits(i, &ts.labels, ts.samples.len()) {
                continue;
            }
            out.samples += ts.samples.len() as u64;
            kept.push(ts);
            if !created.is_empty() {
                kept_created.push(created.get(i).copied().unwrap_or(0));
            }
        }
        let pending: Vec<MetricMetadata> = {
            let mut m = self.metadata.lock();
            m.pending.drain().map(|(_, v)| v).collect()
        };
        let from_scrapes = pending.len();
        metadata.extend(pending.iter().cloned());
        if kept.is_empty() && metadata.is_empty() {
            return Ok(out);
        }
        let payload = remote_write::encode_protobuf_stamped_created(
            &kept,
            &kept_created,
            &metadata,
            &self.stamp.sorted,
        );
        let items = u32::try_from(out.samples).unwrap_or(u32::MAX);
        self.buffer.append(Kind::Metrics, items, &payload)?;
        if from_scrapes > 0 {
            let now = meshlens_model::time::now_ms();
            let mut m = self.metadata.lock();
            for md in pending {
                m.sent.insert(md.metric_family.clone(), (md, now));
            }
        }
        Ok(out)
    }
}

impl BufferMetricWriter {
    /// Stamps and appends native histogram samples as one record (series of their own,
    /// without float samples), counted as items beside float samples; returns once it is
    /// durable. Series with labels a hub would refuse are left out and counted, as by
    /// [`Self::write`]; so is a histogram whose parts disagree (a hub's reader refuses it),
    /// counted with them, as the outcome has no reason of its own for it.
    pub fn write_histograms(&self, batch: &[SeriesHistograms]) -> Result<Written, AppendError> {
        self.write_histograms_with_created(batch, &[])
    }

    /// [`Self::write_histograms`] with each series' created timestamp, as
    /// [`Self::write_with_created`].
    pub fn write_histograms_with_created(
        &self,
        batch: &[SeriesHistograms],
        created: &[i64],
    ) -> Result<Written, AppendError> {
        let mut out = Written::default();
        let mut kept: Vec<SeriesHistograms> = Vec::with_capacity(batch.len());
        let mut kept_created: Vec<i64> = Vec::new();
        for (i, s) in batch.iter().enumerate() {
            if !out.admits(i, &s.labels, s.samples.len()) {
                continue;
            }
            let samples: Vec<HistogramSample> = s
                .samples
                .iter()
                .filter(|h| remote_write::check_histogram(&h.h).is_ok())
                .cloned()
                .collect();
            if samples.len() < s.samples.len() {
                out.invalid += (s.samples.len() - samples.len()) as u64;
                out.first_invalid.get_or_insert(i);
            }
            if !samples.is_empty() {
                out.samples += samples.len() as u64;
                if !created.is_empty() {
                    kept_created.push(created.get(i).copied().unwrap_or(0));
                }
                kept.push(SeriesHistograms {
                    labels: s.labels.clone(),
                    samples,
                });
            }
        }
        if kept.is_empty() {
            return Ok(out);
        }
        let refs: Vec<&SeriesHistograms> = kept.iter().collect();
        let mut payload = Vec::new();
        remote_write::encode_histograms_stamped_created(
            &mut payload,
            &refs,
            &kept_created,
            &self.stamp.sorted,
        );
        let items = u32::try_from(out.samples).unwrap_or(u32::MAX);
        self.buffer.append(Kind::Metrics, items, &payload)?;
        Ok(out)
    }

    /// Stamps and appends exemplars as one record of series without samples (a hub stores
    /// a remote-write series' exemplars either way); returns once it is durable. Exemplars a
    /// hub's store would refuse for their labels, or of series a hub would refuse, are left
    /// out and counted, so one bad exemplar never costs the hub the batch.
    pub fn write_exemplars(
        &self,
        batch: &[SeriesExemplars],
    ) -> Result<ExemplarOutcome, AppendError> {
        let mut out = ExemplarOutcome::default();
        let mut kept = Vec::with_capacity(batch.len());
        for s in batch {
            if s.series.metric_name().is_none() || s.series.validate().is_err() {
                out.invalid_labels += s.exemplars.len() as u64;
                out.first_invalid
                    .get_or_insert_with(|| format!("series {}: invalid labels", s.series));
                continue;
            }
            let mut b = s.series.builder();
            for (k, v) in &self.stamp.sorted {
                if s.series.get(k).is_none() {
                    b.set(k.clone(), v.clone());
                }
            }
            let mut exemplars = Vec::with_capacity(s.exemplars.len());
            for e in &s.exemplars {
                match e.check_labels() {
                    Ok(()) => exemplars.push(e.clone()),
                    Err(why) => {
                        out.invalid_labels += 1;
                        out.first_invalid
                            .get_or_insert_with(|| format!("series {}: {why}", s.series));
                    }
                }
            }
            if !exemplars.is_empty() {
                out.accepted += exemplars.len() as u64;
                kept.push(SeriesExemplars {
                    series: b.build(),
                    exemplars,
                });
            }
        }
        if kept.is_empty() {
            return Ok(out);
        }
        let mut payload = Vec::new();
        remote_write::encode_exemplars(&mut payload, &kept);
        // No samples in it: the buffer's and the sender's counts are of samples, which a
        // hub's written count confirms.
        self.buffer.append(Kind::Metrics, 0, &payload)?;
        Ok(out)
    }
}

impl MetricWriter for BufferMetricWriter {
    /// Forwarded to the hubs, which keep them (the agent keeps none itself).
    fn append_exemplars(&self, batch: &[SeriesExemplars]) -> Result<ExemplarOutcome, StorageError> {
        self.write_exemplars(batch).map_err(storage_error)
    }

    fn append(&self, batch: &[TimeSeries]) -> Result<AppendOutcome, StorageError> {
        let w = self.write(batch, Vec::new()).map_err(storage_error)?;
        Ok(w.outcome())
    }

    /// Created timestamps travel with the samples to the hubs (in remote write 2.0).
    fn forwards_created_timestamps(&self) -> bool {
        true
    }

    fn append_with_created(
        &self,
        batch: &[TimeSeries],
        created: &[i64],
    ) -> Result<AppendOutcome, StorageError> {
        let w = self
            .write_with_created(batch, created, Vec::new())
            .map_err(storage_error)?;
        Ok(w.outcome())
    }

    fn append_histograms_with_created(
        &self,
        batch: &[SeriesHistograms],
        created: &[i64],
    ) -> Result<AppendOutcome, StorageError> {
        let w = self
            .write_histograms_with_created(batch, created)
            .map_err(storage_error)?;
        Ok(w.outcome())
    }

    /// Forwarded to the hubs as remote-write native histograms.
    fn append_histograms(&self, batch: &[SeriesHistograms]) -> Result<AppendOutcome, StorageError> {
        let w = self.write_histograms(batch).map_err(storage_error)?;
        Ok(w.outcome())
    }

    /// Keeps new or changed metadata for the next record rather than writing a record of
    /// its own: scrape loops call this on the async runtime, where a blocking fsync must
    /// not happen.
    fn append_metadata(&self, metadata: &[MetricMetadata]) -> Result<(), StorageError> {
        let now = meshlens_model::time::now_ms();
        let mut m = self.metadata.lock();
        for md in metadata {
            let fresh = match m.sent.get(&md.metric_family) {
                Some((old, at)) => old != md || now - at >= METADATA_RESEND_MS,
                None => true,
            };
            if fresh {
                m.pending.insert(md.metric_family.clone(), md.clone());
            }
        }
        Ok(())
    }
}

/// Appends span records (`Kind::Spans`, an uncompressed OTLP export request each), adding
/// `tag` = cluster to spans that name no cluster.
pub struct BufferSpanWriter {
    buffer: Arc<Buffer>,
    cluster: String,
    tag: &'static str,
}

impl BufferSpanWriter {
    /// `tag`: `cluster` for Zipkin ingest, `k8s.cluster.name` for OTLP ingest.
    pub fn new(buffer: Arc<Buffer>, cluster: &str, tag: &'static str) -> BufferSpanWriter {
        BufferSpanWriter {
            buffer,
            cluster: cluster.to_string(),
            tag,
        }
    }
}

fn names_cluster(s: &Span) -> bool {
    SPAN_CLUSTER_TAGS.iter().any(|t| s.tags.contains_key(*t))
}

impl SpanWriter for BufferSpanWriter {
    fn write(&self, spans: &[Span]) -> Result<(), StorageError> {
        if spans.is_empty() {
            return Ok(());
        }
        let payload = if spans.iter().all(names_cluster) {
            meshlens_ingest::otlp::encode_request(spans)
        } else {
            let stamped: Vec<Span> = spans
                .iter()
                .map(|s| {
                    let mut s = s.clone();
                    if !names_cluster(&s) {
                        s.tags.insert(self.tag.to_string(), self.cluster.clone());
                    }
                    s
                })
                .collect();
            meshlens_ingest::otlp::encode_request(&stamped)
        };
        let items = u32::try_from(spans.len()).unwrap_or(u32::MAX);
        self.buffer
            .append(Kind::Spans, items, &payload)
            .map_err(storage_error)
    }
}

/// Whether the buffer refused a record for being larger than it could ever hold (a sender
/// must not retry it), rather than for a failing disk.
pub fn too_large(e: &AppendError) -> bool {
    match e {
        AppendError::Io(ForwardError::Io { source, .. }) => {
            source.kind() == std::io::ErrorKind::InvalidInput
        }
        _ => false,
    }
}

/// A full buffer is the one failure senders should retry soon (503, gRPC UNAVAILABLE);
/// a closed one means the agent is stopping (503 too); a record larger than the buffer is
/// the request's fault (400); disk errors are 500.
pub fn storage_error(e: AppendError) -> StorageError {
    if too_large(&e) {
        return StorageError::InvalidRequest {
            reason: e.to_string(),
        };
    }
    match e {
        AppendError::Full { .. } => StorageError::Unavailable {
            reason: e.to_string(),
        },
        AppendError::Closed => StorageError::Closed,
        AppendError::Io(inner) => StorageError::io(
            "appending to the forwarding buffer",
            std::io::Error::other(inner),
        ),
    }
}

/// The agent keeps no spans to read; the trace-api state wants a reader, and only its
/// ingest routes are served, so this is never asked.
pub struct NoSpans;

impl SpanReader for NoSpans {
    fn trace(&self, _id: &TraceId) -> Result<Vec<Span>, StorageError> {
        Ok(Vec::new())
    }
    fn find_traces(&self, _q: &TraceQuery) -> Result<Vec<Vec<Span>>, StorageError> {
        Ok(Vec::new())
    }
    fn service_names(&self) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn remote_service_names(&self, _service: &str) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn span_names(&self, _service: &str) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn dependencies(
        &self,
        _end_ts: i64,
        _lookback: i64,
    ) -> Result<Vec<DependencyLink>, StorageError> {
        Ok(Vec::new())
    }
    fn scan(
        &self,
        _start_us: u64,
        _end_us: u64,
        _visit: &mut dyn FnMut(&Span),
    ) -> Result<(), StorageError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlens_ingest::remote_write::WriteRequest;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    impl Stamp {
        /// The labels a series gets when encoded with this stamp.
        fn apply(&self, labels: &Labels) -> Labels {
            let ts = TimeSeries {
                labels: labels.clone(),
                samples: vec![meshlens_model::Sample::new(1, 1.0)],
            };
            let raw = remote_write::encode_protobuf_stamped(&[&ts], &[], &self.sorted);
            let req = remote_write::decode(&remote_write::compress(&raw)).unwrap();
            req.timeseries[0].labels.clone()
        }
    }

    #[test]
    fn stamp_adds_only_missing_labels() {
        let ext = [("region".to_string(), "eu".to_string())];
        let s = Stamp::new("east", ext.iter().map(|(k, v)| (k, v)));
        let got = s.apply(&labels(&[("__name__", "up")]));
        assert_eq!(got.get("cluster"), Some("east"));
        assert_eq!(got.get("region"), Some("eu"));
        let got = s.apply(&labels(&[("__name__", "up"), ("cluster", "x")]));
        assert_eq!(got.get("cluster"), Some("x"));
        assert_eq!(got.get("region"), Some("eu"));
        let full = labels(&[("__name__", "up"), ("cluster", "x"), ("region", "us")]);
        assert_eq!(s.apply(&full), full);
    }

    #[test]
    fn external_cluster_label_does_not_override_the_flag() {
        let ext = [("cluster".to_string(), "other".to_string())];
        let s = Stamp::new("east", ext.iter().map(|(k, v)| (k, v)));
        let got = s.apply(&labels(&[("__name__", "up")]));
        assert_eq!(got.get("cluster"), Some("east"));
    }

    fn buffer(dir: &std::path::Path) -> Arc<Buffer> {
        let opts = meshlens_forward::BufferOptions {
            dir: dir.to_path_buf(),
            fsync: false,
            ..Default::default()
        };
        Buffer::open(opts, &["hub".to_string()]).unwrap()
    }

    fn series(pairs: &[(&str, &str)]) -> TimeSeries {
        TimeSeries {
            labels: labels(pairs),
            samples: vec![meshlens_model::Sample::new(1000, 1.0)],
        }
    }

    fn metadata(family: &str) -> MetricMetadata {
        MetricMetadata {
            metric_family: family.into(),
            kind: "counter".into(),
            help: "help".into(),
            unit: String::new(),
        }
    }

    /// The next record the hub would be sent, decoded.
    fn next_metrics(b: &Buffer) -> (u64, WriteRequest) {
        let batch = b.read_batch("hub", 1 << 20).unwrap().expect("a record");
        assert_eq!(batch.kind, Kind::Metrics);
        b.commit("hub", batch.next_seq).unwrap();
        let req = remote_write::decode(&remote_write::compress(&batch.payload)).unwrap();
        (batch.items, req)
    }

    #[test]
    fn metric_records_are_stamped_validated_and_carry_new_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let b = buffer(tmp.path());
        let w = BufferMetricWriter::new(b.clone(), Stamp::new("east", std::iter::empty()));
        w.append_metadata(&[metadata("a_total")]).unwrap();
        let o = w
            .append(&[
                series(&[("__name__", "a_total")]),
                series(&[("__name__", "bad"), ("0x", "y")]),
                series(&[("__name__", "b"), ("cluster", "x")]),
            ])
            .unwrap();
        assert_eq!((o.accepted, o.invalid_labels), (2, 1));
        let (items, req) = next_metrics(&b);
        assert_eq!(items, 2);
        let clusters: Vec<_> = req
            .timeseries
            .iter()
            .map(|t| t.labels.get("cluster").unwrap())
            .collect();
        assert_eq!(clusters, ["east", "x"]);
        assert_eq!(req.metadata, [metadata("a_total")]);

        // Unchanged metadata is not sent again with every scrape; changed metadata is.
        w.append_metadata(&[metadata("a_total")]).unwrap();
        w.append(&[series(&[("__name__", "a_total")])]).unwrap();
        assert!(next_metrics(&b).1.metadata.is_empty());
        let mut changed = metadata("a_total");
        changed.help = "new help".into();
        w.append_metadata(std::slice::from_ref(&changed)).unwrap();
        w.append(&[series(&[("__name__", "a_total")])]).unwrap();
        assert_eq!(next_metrics(&b).1.metadata, [changed]);
    }

    fn histograms(pairs: &[(&str, &str)], h: meshlens_model::FloatHistogram) -> SeriesHistograms {
        SeriesHistograms {
            labels: labels(pairs),
            samples: vec![HistogramSample {
                t: 1000,
                h: Arc::new(h),
            }],
        }
    }

    #[test]
    fn native_histograms_are_stamped_validated_and_counted() {
        use meshlens_model::{BucketSpan, CounterResetHint, FloatHistogram};
        let tmp = tempfile::tempdir().unwrap();
        let b = buffer(tmp.path());
        let ext = [("region".to_string(), "eu".to_string())];
        let w = BufferMetricWriter::new(
            b.clone(),
            Stamp::new("east", ext.iter().map(|(k, v)| (k, v))),
        );
        let good = FloatHistogram {
            schema: 1,
            count: 5.0,
            sum: 12.5,
            zero_count: 1.0,
            zero_threshold: 0.001,
            positive_spans: vec![BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_buckets: vec![1.0, 3.0],
            counter_reset_hint: CounterResetHint::Gauge,
            ..Default::default()
        };
        let mut disagreeing = good.clone();
        disagreeing.positive_buckets.pop();
        let o = w
            .append_histograms(&[
                histograms(&[("__name__", "lat")], good.clone()),
                histograms(&[("__name__", "bad"), ("0x", "y")], good.clone()),
                histograms(&[("__name__", "lat2"), ("cluster", "x")], good.clone()),
                histograms(&[("__name__", "lat3")], disagreeing),
            ])
            .unwrap();
        assert_eq!((o.accepted, o.invalid_labels), (2, 2));
        let (items, req) = next_metrics(&b);
        assert_eq!(items, 2);
        assert!(req.timeseries.is_empty());
        assert_eq!(req.histograms_dropped, 0);
        let got: Vec<_> = req
            .histograms
            .iter()
            .map(|s| {
                (
                    s.labels.get("__name__").unwrap(),
                    s.labels.get("cluster").unwrap(),
                    s.labels.get("region").unwrap(),
                )
            })
            .collect();
        assert_eq!(got, [("lat", "east", "eu"), ("lat2", "x", "eu")]);
        assert_eq!(*req.histograms[0].samples[0].h, good);
        assert_eq!(req.histograms[0].samples[0].t, 1000);
        // Nothing to forward: no record.
        let o = w
            .append_histograms(&[histograms(&[("0x", "y")], good)])
            .unwrap();
        assert_eq!((o.accepted, o.invalid_labels), (0, 1));
        assert!(b.read_batch("hub", 1 << 20).unwrap().is_none());
    }

    #[test]
    fn span_records_get_the_writers_tag_unless_they_name_a_cluster() {
        let tmp = tempfile::tempdir().unwrap();
        let b = buffer(tmp.path());
        let w = BufferSpanWriter::new(b.clone(), "east", OTLP_CLUSTER_ATTRIBUTE);
        let span = |id: u64, tags: &[(&str, &str)]| Span {
            trace_id: TraceId {
                high: 0,
                low: 7,
                is_128: false,
            },
            id,
            parent_id: None,
            name: Some("get".into()),
            kind: None,
            timestamp: Some(1_000_000),
            duration: Some(10),
            local_endpoint: None,
            remote_endpoint: None,
            annotations: Vec::new(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            debug: false,
            shared: false,
        };
        w.write(&[span(1, &[]), span(2, &[("istio.cluster_id", "west")])])
            .unwrap();
        let batch = b.read_batch("hub", 1 << 20).unwrap().expect("a record");
        assert_eq!((batch.kind, batch.items), (Kind::Spans, 2));
        let got = meshlens_ingest::otlp::decode_proto(&batch.payload)
            .unwrap()
            .spans;
        let tag = |id: u64| {
            let s = got.iter().find(|s| s.id == id).unwrap();
            (
                s.tags.get(OTLP_CLUSTER_ATTRIBUTE).cloned(),
                s.tags.get("istio.cluster_id").cloned(),
            )
        };
        assert_eq!(tag(1), (Some("east".into()), None));
        assert_eq!(tag(2), (None, Some("west".into())));
    }

    #[test]
    fn full_buffer_is_a_503() {
        let e = storage_error(AppendError::Full { size: 2, limit: 1 });
        assert_eq!(e.http_status(), 503);
        assert!(e.to_string().contains("full"), "{e}");
        assert_eq!(storage_error(AppendError::Closed).http_status(), 503);
        let huge = AppendError::Io(ForwardError::Io {
            path: "buffer".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "too big"),
        });
        assert!(too_large(&huge));
        assert_eq!(storage_error(huge).http_status(), 400);
        let disk = AppendError::Io(ForwardError::Io {
            path: "buffer".into(),
            source: std::io::Error::other("disk on fire"),
        });
        assert_eq!(storage_error(disk).http_status(), 500);
    }

    #[test]
    fn created_timestamps_stay_with_their_series_in_the_buffer() {
        let tmp = tempfile::tempdir().unwrap();
        let b = buffer(tmp.path());
        let w = BufferMetricWriter::new(b.clone(), Stamp::new("east", std::iter::empty()));
        assert!(w.forwards_created_timestamps());
        // The refused series in the middle takes its created timestamp with it.
        w.append_with_created(
            &[
                series(&[("__name__", "a_total")]),
                series(&[("__name__", "bad"), ("0x", "y")]),
                series(&[("__name__", "b_total")]),
                series(&[("__name__", "c_total")]),
            ],
            &[100, 200, 300],
        )
        .unwrap();
        let batch = b.read_batch("hub", 1 << 20).unwrap().expect("a record");
        b.commit("hub", batch.next_seq).unwrap();
        let req = remote_write::wire::parse(&batch.payload).unwrap();
        let got: Vec<(String, Option<i64>)> = req
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    s.to_labels().metric_name().unwrap().to_string(),
                    req.created_ms(i),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a_total".to_string(), Some(100)),
                ("b_total".to_string(), Some(300)),
                ("c_total".to_string(), None),
            ]
        );
        let h = SeriesHistograms {
            labels: labels(&[("__name__", "lat")]),
            samples: vec![HistogramSample {
                t: 1000,
                h: Arc::new(meshlens_model::FloatHistogram {
                    count: 1.0,
                    zero_count: 1.0,
                    ..Default::default()
                }),
            }],
        };
        w.append_histograms_with_created(&[h], &[50]).unwrap();
        let batch = b.read_batch("hub", 1 << 20).unwrap().expect("a record");
        let req = remote_write::wire::parse(&batch.payload).unwrap();
        assert_eq!(req.created_ms(0), Some(50));
    }
}
