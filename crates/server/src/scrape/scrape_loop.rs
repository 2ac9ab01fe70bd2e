//! One target's scrape loop: fetch, parse, relabel, attach target labels, track staleness,
//! append, report `up` and friends, keep the target's health for `/api/v1/targets`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use meshlens_ingest::exposition::{self, ParsedScrape};
use meshlens_model::{
    Exemplar, HistogramSample, Labels, MetricWriter, RawSeries, Sample, SeriesExemplars,
    SeriesHistograms, TimeSeries, STALE_NAN,
};
use parking_lot::RwLock;
use tokio::sync::watch;

use super::fetch::{self, HttpClient};
use super::target::Target;
use crate::config::{relabel, ScrapeConfig};
use crate::self_metrics::SelfMetrics;

#[derive(Clone, Debug, Default)]
pub struct Health {
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Duration,
    /// "up", "down" or "unknown".
    pub health: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Running,
    /// The target left discovery: its series get staleness markers.
    TargetGone,
    /// The server is shutting down: nothing more is written.
    Shutdown,
}

pub struct ScrapeLoop {
    pub target: Target,
    pub config: Arc<ScrapeConfig>,
    pub writer: Arc<dyn MetricWriter>,
    pub health: Arc<RwLock<Health>>,
    pub metrics: Arc<SelfMetrics>,
    pub client: HttpClient,
    /// Series of the previous successful scrape, by label hash.
    previous: HashMap<u64, Labels>,
    /// The exemplars of the scrape being stored (filled by `prepare`).
    exemplars: Vec<SeriesExemplars>,
    /// The native histograms of the scrape being stored (filled by `prepare`).
    histograms: Vec<SeriesHistograms>,
    /// `created-timestamp-zero-ingestion`: created timestamps become zero samples.
    created_zeros: bool,
    /// The created-timestamp zeros of the scrape being stored (filled by `prepare`), floats
    /// and native histograms; stored before the scrape's samples.
    float_zeros: Vec<TimeSeries>,
    histogram_zeros: Vec<SeriesHistograms>,
    /// The writer forwards created timestamps (an agent): they are read whatever
    /// `created_zeros` says and go with the samples instead of becoming zeros here.
    forward_created: bool,
    /// With `forward_created`: the created timestamp (0: none) of each series of the batch
    /// being built (those after its end have none) and of each of `histograms`.
    created: Vec<i64>,
    histograms_created: Vec<i64>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl ScrapeLoop {
    pub fn new(
        target: Target,
        config: Arc<ScrapeConfig>,
        writer: Arc<dyn MetricWriter>,
        metrics: Arc<SelfMetrics>,
        client: HttpClient,
        created_zeros: bool,
    ) -> (Self, Arc<RwLock<Health>>) {
        let health = Arc::new(RwLock::new(Health {
            health: "unknown",
            ..Default::default()
        }));
        let forward_created = writer.forwards_created_timestamps();
        (
            ScrapeLoop {
                target,
                config,
                writer,
                health: health.clone(),
                metrics,
                client,
                previous: HashMap::new(),
                exemplars: Vec::new(),
                histograms: Vec::new(),
                created_zeros,
                float_zeros: Vec::new(),
                histogram_zeros: Vec::new(),
                forward_created,
                created: Vec::new(),
                histograms_created: Vec::new(),
            },
            health,
        )
    }

    pub async fn run(mut self, mut stop: watch::Receiver<Stop>) {
        let interval = self.target.interval.max(Duration::from_millis(10));
        // Spread targets over the interval, deterministically per target.
        let offset =
            Duration::from_millis(self.target.key() % (interval.as_millis() as u64).max(1));
        tokio::select! {
            _ = tokio::time::sleep(offset.min(Duration::from_secs(5))) => {}
            _ = stop.changed() => {}
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *stop.borrow() != Stop::Running {
                break;
            }
            tokio::select! {
                _ = ticker.tick() => self.scrape_once().await,
                _ = stop.changed() => {}
            }
        }
        if *stop.borrow() == Stop::TargetGone {
            self.mark_gone().await;
        }
    }

    pub async fn scrape_once(&mut self) {
        let start = Instant::now();
        let t = now_ms();
        let result = fetch::fetch(
            &self.client,
            &self.target.url,
            &self.config.auth,
            self.target.timeout,
            self.config.histograms.native,
        )
        .await
        .and_then(|f| {
            let format = exposition::format_from_content_type(f.content_type.as_deref());
            let opts = exposition::ParseOptions {
                classic_histograms: self.config.histograms.classic,
                created_timestamps: self.created_zeros || self.forward_created,
                // Forwarded, `_created` lines stay series too: the hubs decide.
                keep_created_series: self.forward_created,
            };
            exposition::parse_with(&f.body, format, opts).map_err(|e| e.to_string())
        });
        let (mut batch, scraped, post_relabel, added, error) = match result {
            Ok(parsed) => match self.prepare(parsed, t) {
                Ok(r) => (r.0, r.1, r.2, r.3, None),
                Err(e) => {
                    // Nothing of a failed scrape is stored.
                    self.exemplars.clear();
                    self.histograms.clear();
                    self.float_zeros.clear();
                    self.histogram_zeros.clear();
                    self.created.clear();
                    self.histograms_created.clear();
                    (self.stale_all(t), 0, 0, 0, Some(e))
                }
            },
            Err(e) => (self.stale_all(t), 0, 0, 0, Some(e)),
        };
        let elapsed = start.elapsed();
        let up = if error.is_none() { 1.0 } else { 0.0 };
        batch.extend(self.report(t, up, elapsed, scraped, post_relabel, added));
        let writer = self.writer.clone();
        let exemplars = std::mem::take(&mut self.exemplars);
        let histograms = std::mem::take(&mut self.histograms);
        let float_zeros = std::mem::take(&mut self.float_zeros);
        let histogram_zeros = std::mem::take(&mut self.histogram_zeros);
        let created = std::mem::take(&mut self.created);
        let histograms_created = std::mem::take(&mut self.histograms_created);
        let forward_created = self.forward_created;
        let appended = tokio::task::spawn_blocking(move || {
            store_created_zeros(writer.as_ref(), &float_zeros, &histogram_zeros);
            let mut samples = if forward_created {
                writer.append_with_created(&batch, &created)?
            } else {
                writer.append(&batch)?
            };
            // A storage that keeps floats only refuses histograms; the scrape still counts.
            // Histogram samples count as samples, as Prometheus counts them.
            if !histograms.is_empty() {
                let appended = if forward_created {
                    writer.append_histograms_with_created(&histograms, &histograms_created)
                } else {
                    writer.append_histograms(&histograms)
                };
                match appended {
                    Ok(h) => samples.merge(&h),
                    Err(meshlens_model::StorageError::InvalidRequest { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            // Exemplars after their samples; a refused exemplar never fails the scrape.
            let ex = match exemplars.is_empty() {
                true => None,
                false => Some(writer.append_exemplars(&exemplars)),
            };
            Ok::<_, meshlens_model::StorageError>((samples, ex))
        })
        .await;
        let job = self.target.job.clone();
        let mut error = error;
        match appended {
            Ok(Ok((o, ex))) => {
                match ex {
                    Some(Ok(ex)) => {
                        crate::self_metrics::count_exemplar_refusals(&self.metrics, "scrape", &ex);
                        if let Some(why) = &ex.first_invalid {
                            tracing::debug!(
                                target_url = %crate::config::redact_url(&self.target.url),
                                reason = %why,
                                "exemplar refused"
                            );
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "storing exemplars failed"),
                    None => {}
                }
                self.metrics
                    .samples_ingested
                    .add(&[("source", "scrape")], o.accepted);
                for r in meshlens_model::RejectReason::ALL {
                    if o.count(r) > 0 {
                        self.metrics
                            .samples_rejected
                            .add(&[("source", "scrape"), ("reason", r.as_str())], o.count(r));
                    }
                }
            }
            Ok(Err(e)) => error = error.or(Some(format!("storing samples: {e}"))),
            Err(e) => error = error.or(Some(format!("storing samples: {e}"))),
        }
        let result = if error.is_some() { "error" } else { "ok" };
        self.metrics
            .scrapes
            .add(&[("job", &job), ("result", result)], 1);
        let mut h = self.health.write();
        h.last_scrape = Some(SystemTime::now());
        h.last_duration = elapsed;
        match error {
            Some(e) => {
                tracing::debug!(
                    target_url = %crate::config::redact_url(&self.target.url),
                    error = %e,
                    "scrape failed"
                );
                h.last_error = e;
                h.health = "down";
            }
            None => {
                h.last_error.clear();
                h.health = "up";
            }
        }
    }

    /// Builds the batch from a parsed scrape: returns (batch, scraped, post-relabel, added).
    fn prepare(
        &mut self,
        parsed: ParsedScrape,
        t: i64,
    ) -> Result<(Vec<TimeSeries>, u64, u64, u64), String> {
        let scraped = (parsed.samples.len() + parsed.histograms.len()) as u64;
        let mut batch = Vec::with_capacity(parsed.samples.len());
        let mut current: HashMap<u64, Labels> = HashMap::with_capacity(parsed.samples.len());
        for s in parsed.histograms {
            let Some((labels, ts)) = self.place(&s.labels, s.timestamp_ms, t) else {
                continue;
            };
            let h = fit_histogram(s.h, &self.config.histograms)?;
            current.insert(labels.stable_hash(), labels.clone());
            let sample = HistogramSample { t: ts, h };
            if let Some(zero) = s
                .created_ms
                .filter(|_| self.created_zeros)
                .and_then(|ct| meshlens_ingest::created::histogram_zero(ct, &sample))
            {
                self.histogram_zeros.push(SeriesHistograms {
                    labels: labels.clone(),
                    samples: vec![zero],
                });
            }
            if self.forward_created {
                self.histograms_created.push(s.created_ms.unwrap_or(0));
            }
            if !s.exemplars.is_empty() {
                self.exemplars.push(SeriesExemplars {
                    series: labels.clone(),
                    exemplars: s
                        .exemplars
                        .into_iter()
                        .map(|e| Exemplar {
                            labels: e.labels,
                            value: e.value,
                            t: e.timestamp_ms.unwrap_or(ts),
                        })
                        .collect(),
                });
            }
            self.histograms.push(SeriesHistograms {
                labels,
                samples: vec![sample],
            });
        }
        for s in parsed.samples {
            let Some((labels, ts)) = self.place(&s.labels, s.timestamp_ms, t) else {
                continue;
            };
            current.insert(labels.stable_hash(), labels.clone());
            if let Some(zero) = s
                .created_ms
                .filter(|_| self.created_zeros)
                .and_then(|ct| meshlens_ingest::created::float_zero(ct, ts))
            {
                self.float_zeros.push(TimeSeries {
                    labels: labels.clone(),
                    samples: vec![zero],
                });
            }
            if let Some(e) = s.exemplar {
                self.exemplars.push(SeriesExemplars {
                    series: labels.clone(),
                    exemplars: vec![Exemplar {
                        labels: e.labels,
                        value: e.value,
                        t: e.timestamp_ms.unwrap_or(ts),
                    }],
                });
            }
            if self.forward_created {
                self.created.push(s.created_ms.unwrap_or(0));
            }
            batch.push(TimeSeries {
                labels,
                samples: vec![Sample::new(ts, s.value)],
            });
        }
        let kept = batch.len() + self.histograms.len();
        if self.config.sample_limit > 0 && kept > self.config.sample_limit {
            self.exemplars.clear();
            self.histograms.clear();
            self.float_zeros.clear();
            self.histogram_zeros.clear();
            self.created.clear();
            self.histograms_created.clear();
            return Err(format!(
                "sample limit exceeded: {kept} > {}",
                self.config.sample_limit
            ));
        }
        let post = kept as u64;
        let added = current
            .keys()
            .filter(|k| !self.previous.contains_key(k))
            .count() as u64;
        for (k, l) in &self.previous {
            if !current.contains_key(k) {
                batch.push(TimeSeries {
                    labels: l.clone(),
                    samples: vec![Sample::new(t, STALE_NAN)],
                });
            }
        }
        if !parsed.metadata.is_empty() {
            let _ = self.writer.append_metadata(&parsed.metadata);
        }
        self.previous = current;
        Ok((batch, scraped, post, added))
    }

    /// A scraped series' stored labels (metric relabeling, then the target's labels) and
    /// time (its own with `honor_timestamps`, else the scrape's); None when relabeling drops
    /// it.
    fn place(&self, labels: &Labels, timestamp_ms: Option<i64>, t: i64) -> Option<(Labels, i64)> {
        let labels = relabel::process(labels, &self.config.metric_relabel_configs)?;
        let ts = match (self.config.honor_timestamps, timestamp_ms) {
            (true, Some(ts)) => ts,
            _ => t,
        };
        Some((self.attach_target_labels(labels), ts))
    }

    fn attach_target_labels(&self, labels: Labels) -> Labels {
        let mut b = labels.builder();
        for tl in &self.target.labels {
            let existing = b.get(&tl.name).map(str::to_string);
            match existing {
                Some(_) if self.config.honor_labels => {}
                Some(v) => {
                    let mut name = format!("exported_{}", tl.name);
                    while b.get(&name).is_some() {
                        name = format!("exported_{name}");
                    }
                    b.set(name, v);
                    b.set(tl.name.clone(), tl.value.clone());
                }
                None => {
                    b.set(tl.name.clone(), tl.value.clone());
                }
            }
        }
        b.build()
    }

    /// Staleness markers for every series of the previous scrape (after a failed scrape).
    fn stale_all(&mut self, t: i64) -> Vec<TimeSeries> {
        self.previous
            .drain()
            .map(|(_, labels)| TimeSeries {
                labels,
                samples: vec![Sample::new(t, STALE_NAN)],
            })
            .collect()
    }

    fn report(
        &self,
        t: i64,
        up: f64,
        d: Duration,
        scraped: u64,
        post: u64,
        added: u64,
    ) -> Vec<TimeSeries> {
        [
            ("up", up),
            ("scrape_duration_seconds", d.as_secs_f64()),
            ("scrape_samples_scraped", scraped as f64),
            ("scrape_samples_post_metric_relabeling", post as f64),
            ("scrape_series_added", added as f64),
        ]
        .into_iter()
        .map(|(name, v)| self.report_series(name, t, v))
        .collect()
    }

    fn report_series(&self, name: &str, t: i64, v: f64) -> TimeSeries {
        let mut b = self.target.labels.builder();
        b.set("__name__", name);
        TimeSeries {
            labels: b.build(),
            samples: vec![Sample::new(t, v)],
        }
    }

    async fn mark_gone(&mut self) {
        let t = now_ms();
        let mut batch = self.stale_all(t);
        for name in [
            "up",
            "scrape_duration_seconds",
            "scrape_samples_scraped",
            "scrape_samples_post_metric_relabeling",
            "scrape_series_added",
        ] {
            batch.push(self.report_series(name, t, STALE_NAN));
        }
        let writer = self.writer.clone();
        let _ = tokio::task::spawn_blocking(move || writer.append(&batch)).await;
    }
}

/// Stores a scrape's created-timestamp zeros before its samples, as Prometheus appends
/// each zero just before its sample. A zero never fails the scrape (Prometheus only logs a
/// failed one): the storage skips those at or before a series' newest sample, which is
/// every scrape's case after the first, and one that does not take zeros stores none.
fn store_created_zeros(
    writer: &dyn MetricWriter,
    floats: &[TimeSeries],
    histograms: &[SeriesHistograms],
) {
    if floats.is_empty() && histograms.is_empty() {
        return;
    }
    let pairs: Vec<Vec<(&str, &str)>> = floats
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect()
        })
        .collect();
    let raw: Vec<RawSeries<'_>> = floats
        .iter()
        .zip(&pairs)
        .map(|(s, labels)| RawSeries {
            labels,
            samples: &s.samples,
        })
        .collect();
    match writer.append_created_zeros(&raw, histograms) {
        Ok(o) => tracing::trace!(
            stored = o.accepted,
            skipped = o.rejected(),
            "scrape created-timestamp zeros"
        ),
        Err(e) => tracing::debug!(error = %e, "scrape created-timestamp zeros not stored"),
    }
}

/// A scraped native histogram within the scrape config's limits: its resolution reduced
/// until it has at most `bucket_limit` buckets and its bucket bounds grow by at least
/// `min_bucket_factor`, as Prometheus does; a histogram still over the limit at the lowest
/// resolution fails the scrape.
fn fit_histogram(
    h: std::sync::Arc<meshlens_model::FloatHistogram>,
    limits: &crate::config::HistogramScrape,
) -> Result<std::sync::Arc<meshlens_model::FloatHistogram>, String> {
    use meshlens_model::histogram::EXPONENTIAL_SCHEMA_MIN;
    if h.uses_custom_buckets() {
        return Ok(h);
    }
    let buckets =
        |h: &meshlens_model::FloatHistogram| h.positive_buckets.len() + h.negative_buckets.len();
    // The growth factor of schema s is 2^(2^-s).
    let too_fine = |schema: i32| {
        limits.min_bucket_factor > 1.0 && 2f64.powf(2f64.powi(-schema)) < limits.min_bucket_factor
    };
    let over = |h: &meshlens_model::FloatHistogram| {
        (limits.bucket_limit > 0 && buckets(h) > limits.bucket_limit) || too_fine(h.schema)
    };
    if !over(&h) {
        return Ok(h);
    }
    let mut h = (*h).clone();
    while over(&h) && h.schema > EXPONENTIAL_SCHEMA_MIN {
        h.reduce_resolution(h.schema - 1)
            .map_err(|e| format!("reducing a native histogram's resolution: {e}"))?;
    }
    if limits.bucket_limit > 0 && buckets(&h) > limits.bucket_limit {
        return Err(format!(
            "native histogram bucket limit exceeded: {} buckets at the lowest resolution, limit {}",
            buckets(&h),
            limits.bucket_limit
        ));
    }
    Ok(std::sync::Arc::new(h))
}
