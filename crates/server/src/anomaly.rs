//! The anomaly evaluator: every `--anomaly.interval`, each service's RED signals over the
//! scrape tenant (Istio's series, reporter="destination", by `destination_canonical_service`:
//! the app as Kiali names it, whatever host the request was addressed to) feed one
//! [`Detector`] each. Scores are written as `meshlens_anomaly_score{service,signal}`
//! (so rules can alert on them), episodes become Anomaly events (start and end), and
//! `GET /api/v1/anomalies` lists what is anomalous now and recently.
//!
//! Each tick evaluates a range query from the last evaluated step to now, so a late tick
//! catches up, and the first tick (or the first sight of a service) replays the stored past
//! (up to the model's capacity) to warm the model: a restart does not restart the warm-up.
//! Replayed episodes go to the history; only one still open after the replay is announced.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meshlens_model::{Labels, Sample, TimeSeries};
use meshlens_promql::{Engine, Value};
use meshlens_verify::anomaly::{Detector, Direction, Episode, Options, Transition, THRESHOLD};
use meshlens_verify::events::{EventKind, EventLog, EventQuery, EventSink, NewEvent, Severity};
use parking_lot::Mutex;
use serde_json::json;

use crate::api::GlobalState;
use crate::tenants::TenantStack;

/// The score series' name.
pub const SCORE_METRIC: &str = "meshlens_anomaly_score";
/// Series tracked at most (services x 3); beyond, new ones are ignored.
const MAX_SERIES: usize = 3000;
/// Episodes kept for the history.
const MAX_HISTORY: usize = 1000;

/// A service's RED signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Requests per second.
    Rate,
    /// Share of 5xx answers (0..1).
    Errors,
    /// 99th percentile latency, ms.
    P99,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Rate, Signal::Errors, Signal::P99];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Rate => "rate",
            Signal::Errors => "errors",
            Signal::P99 => "p99",
        }
    }

    /// The PromQL, per service, over the selector `sel` (without braces).
    fn query(self, sel: &str, range: &str) -> String {
        let by = "sum by (destination_canonical_service)";
        let total = format!("{by} (rate(istio_requests_total{{{sel}}}[{range}]))");
        match self {
            Signal::Rate => total,
            Signal::Errors => format!(
                "({by} (rate(istio_requests_total{{{sel},response_code=~\"5..\"}}[{range}])) or 0 * {total}) / {total}"
            ),
            Signal::P99 => format!(
                "histogram_quantile(0.99, sum by (destination_canonical_service, le) \
                 (rate(istio_request_duration_milliseconds_bucket{{{sel}}}[{range}])))"
            ),
        }
    }

    /// The model per signal: which way is bad and the smallest change that matters.
    fn options(self, interval: Duration) -> Options {
        let step = interval.as_secs_f64().max(0.001);
        let points = |d: f64| (d / step).round() as usize;
        let capacity = points(3.0 * 3600.0).clamp(60, 2880);
        let base = Options {
            capacity,
            adapt_after: points(3600.0).clamp(20, capacity / 2),
            ..Options::default()
        };
        match self {
            Signal::Rate => Options {
                abs_floor: 0.05,
                rel_floor: 0.1,
                ..base
            },
            Signal::Errors => Options {
                abs_floor: 0.02,
                rel_floor: 0.0,
                direction: Direction::Increase,
                ..base
            },
            Signal::P99 => Options {
                abs_floor: 5.0,
                rel_floor: 0.2,
                direction: Direction::Increase,
                ..base
            },
        }
    }
}

/// A start or end, for whoever acts on anomalies (remediation).
#[derive(Clone, Debug)]
pub struct AnomalyChange {
    pub service: String,
    pub signal: Signal,
    pub started: bool,
    pub episode: Episode,
    pub score: f64,
    pub value: f64,
}

struct Tracked {
    det: Detector,
    last_seen: i64,
}

#[derive(Clone, Debug)]
struct Record {
    service: String,
    signal: Signal,
    start: i64,
    end: Option<i64>,
    peak: f64,
}

#[derive(Default)]
struct EvalState {
    series: HashMap<(String, Signal), Tracked>,
    last_eval: Option<i64>,
    history: VecDeque<Record>,
    full_warned: bool,
}

/// The evaluator and what it found.
pub struct Anomalies {
    engine: Arc<Engine>,
    stack: Arc<TenantStack>,
    events: Arc<EventLog>,
    step_ms: i64,
    state: Mutex<EvalState>,
    changes: tokio::sync::broadcast::Sender<AnomalyChange>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Anomalies {
    /// Starts evaluating every `interval` (None or zero: never; the API then lists nothing).
    pub fn start(
        interval: Option<Duration>,
        engine: Arc<Engine>,
        stack: Arc<TenantStack>,
        events: Arc<EventLog>,
    ) -> Arc<Anomalies> {
        let interval = interval.filter(|d| !d.is_zero());
        let a = Arc::new(Anomalies {
            engine,
            stack,
            events,
            step_ms: interval.map_or(15_000, |d| (d.as_millis() as i64).max(1)),
            state: Mutex::new(EvalState::default()),
            changes: tokio::sync::broadcast::channel(256).0,
            stop: tokio::sync::watch::channel(false).0,
            task: Mutex::new(None),
        });
        let Some(every) = interval else {
            return a;
        };
        let weak = Arc::downgrade(&a);
        let mut stop = a.stop.subscribe();
        *a.task.lock() = Some(tokio::spawn(async move {
            loop {
                let Some(me) = weak.upgrade() else { return };
                let now = meshlens_model::time::now_ms();
                if let Err(e) = tokio::task::spawn_blocking(move || me.tick(now)).await {
                    tracing::warn!(error = %e, "anomaly evaluation failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }));
        a
    }

    /// Stops the timer and waits for a running evaluation.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().take();
        if let Some(t) = task {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    }

    /// Starts and ends as they happen.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<AnomalyChange> {
        self.changes.subscribe()
    }

    fn range(&self) -> String {
        format!("{}s", (self.step_ms * 2 / 1000).max(60))
    }

    /// One evaluation at `now` (ms): every step since the last one, every signal.
    pub fn tick(&self, now: i64) {
        let step = self.step_ms;
        let end = now - now.rem_euclid(step);
        let first = self.state.lock().last_eval.is_none();
        let start = match self.state.lock().last_eval {
            Some(last) => last + step,
            None => end - (Signal::Rate.options(self.interval()).capacity as i64 - 1) * step,
        };
        if start > end {
            return;
        }
        let mut scores = Vec::new();
        for signal in Signal::ALL {
            let sel = "reporter=\"destination\"";
            let Some(series) = self.query(signal, sel, start, end) else {
                continue;
            };
            for (service, samples) in series {
                let key = (service.clone(), signal);
                let known = self.state.lock().series.contains_key(&key);
                if !known && !first {
                    // A service seen for the first time: warm its model on the stored past.
                    let sel = format!(
                        "{sel},destination_canonical_service=\"{}\"",
                        escape(&service)
                    );
                    let capacity = signal.options(self.interval()).capacity as i64;
                    let from = end - (capacity - 1) * step;
                    if from < start {
                        if let Some(past) = self.query(signal, &sel, from, start - step) {
                            for (_, s) in past {
                                self.feed(&service, signal, &s, true, &mut scores);
                            }
                        }
                    }
                    self.announce_open(&service, signal);
                }
                self.feed(&service, signal, &samples, first, &mut scores);
                if first {
                    self.announce_open(&service, signal);
                }
            }
        }
        self.expire(end);
        self.state.lock().last_eval = Some(end);
        if !scores.is_empty() {
            if let Err(e) = self.stack.metrics_store.append(&scores) {
                tracing::debug!(error = %e, "writing anomaly scores failed");
            }
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.step_ms as u64)
    }

    /// Per service, the samples of `signal` over [start, end].
    fn query(
        &self,
        signal: Signal,
        sel: &str,
        start: i64,
        end: i64,
    ) -> Option<Vec<(String, Vec<Sample>)>> {
        let q = signal.query(sel, &self.range());
        let res = match self.engine.range_query(
            self.stack.metrics_reader.as_ref(),
            &q,
            start,
            end,
            self.step_ms,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(signal = signal.name(), error = %e, "anomaly query failed");
                return None;
            }
        };
        let Value::Matrix(m) = res.value else {
            return None;
        };
        Some(
            m.into_iter()
                .filter_map(|s| {
                    let svc = s.labels.get("destination_canonical_service")?.to_string();
                    Some((svc, s.samples))
                })
                .collect(),
        )
    }

    /// Feeds samples to the series' detector; `replay`: history, no events.
    fn feed(
        &self,
        service: &str,
        signal: Signal,
        samples: &[Sample],
        replay: bool,
        scores: &mut Vec<TimeSeries>,
    ) {
        let mut st = self.state.lock();
        let key = (service.to_string(), signal);
        if !st.series.contains_key(&key) {
            if st.series.len() >= MAX_SERIES {
                if !st.full_warned {
                    st.full_warned = true;
                    tracing::warn!(
                        max = MAX_SERIES,
                        "anomaly detection: too many series; new services are not modelled"
                    );
                }
                return;
            }
            let Ok(det) = Detector::new(signal.options(self.interval())) else {
                return;
            };
            st.series.insert(key.clone(), Tracked { det, last_seen: 0 });
        }
        let mut out = Vec::new();
        let mut changes = Vec::new();
        {
            let tracked = st.series.get_mut(&key).expect("inserted above");
            for s in samples {
                let u = tracked.det.push(s.t, s.v);
                tracked.last_seen = tracked.last_seen.max(s.t);
                if let Some(score) = u.score {
                    out.push(Sample::new(s.t, score));
                }
                if let Some(t) = u.transition {
                    changes.push((t, u.score.unwrap_or(0.0), s.v));
                }
            }
        }
        for (t, score, value) in changes {
            self.transition(&mut st, service, signal, t, score, value, replay);
        }
        drop(st);
        if !out.is_empty() {
            scores.push(TimeSeries {
                labels: Labels::from_pairs([
                    ("__name__", SCORE_METRIC),
                    ("service", service),
                    ("signal", signal.name()),
                ]),
                samples: out,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn transition(
        &self,
        st: &mut EvalState,
        service: &str,
        signal: Signal,
        t: Transition,
        score: f64,
        value: f64,
        replay: bool,
    ) {
        let (started, ep) = match t {
            Transition::Start(ep) => {
                st.history.push_back(Record {
                    service: service.to_string(),
                    signal,
                    start: ep.start,
                    end: None,
                    peak: ep.peak_score,
                });
                while st.history.len() > MAX_HISTORY {
                    st.history.pop_front();
                }
                (true, ep)
            }
            Transition::End(ep) => {
                if let Some(r) = st
                    .history
                    .iter_mut()
                    .rev()
                    .find(|r| r.service == service && r.signal == signal && r.start == ep.start)
                {
                    r.end = ep.end;
                    r.peak = ep.peak_score;
                }
                (false, ep)
            }
        };
        if !replay {
            self.announce(service, signal, started, &ep, score, value);
        }
    }

    /// After a replay: an episode still open is announced (once, across restarts).
    fn announce_open(&self, service: &str, signal: Signal) {
        let open = {
            let st = self.state.lock();
            st.series.get(&(service.to_string(), signal)).and_then(|t| {
                let (_, v, s) = t.det.last()?;
                Some((t.det.episode()?.clone(), s.unwrap_or(0.0), v))
            })
        };
        let Some((ep, score, value)) = open else {
            return;
        };
        let seen = self.events.list(&EventQuery {
            since_ms: Some(ep.start),
            until_ms: Some(ep.start),
            kinds: vec![EventKind::Anomaly],
            service: Some(service.to_string()),
            limit: None,
        });
        if seen.iter().any(|e| e.detail["signal"] == signal.name()) {
            return;
        }
        self.announce(service, signal, true, &ep, score, value);
    }

    fn announce(
        &self,
        service: &str,
        signal: Signal,
        started: bool,
        ep: &Episode,
        score: f64,
        value: f64,
    ) {
        let name = signal.name();
        let event = if started {
            NewEvent {
                kind: Some(EventKind::Anomaly),
                severity: Severity::Warning,
                time_ms: Some(ep.start),
                service: Some(service.to_string()),
                title: format!("Anomaly in {name} of {service} (score {score:.2})"),
                detail: json!({"phase": "start", "signal": name, "score": score, "value": value,
                    "threshold": THRESHOLD, "start": ep.start, "declared": ep.declared}),
                undo: None,
            }
        } else {
            NewEvent {
                kind: Some(EventKind::Anomaly),
                severity: Severity::Info,
                time_ms: ep.end,
                service: Some(service.to_string()),
                title: format!("Anomaly in {name} of {service} ended"),
                detail: json!({"phase": "end", "signal": name, "start": ep.start, "end": ep.end,
                    "peakScore": ep.peak_score, "threshold": THRESHOLD}),
                undo: None,
            }
        };
        if let Err(e) = self.events.record(event) {
            tracing::warn!(error = %e, "recording an anomaly event failed");
        }
        let _ = self.changes.send(AnomalyChange {
            service: service.to_string(),
            signal,
            started,
            episode: ep.clone(),
            score,
            value,
        });
    }

    /// Series without data for 5 steps end their episode; after a day they are dropped.
    fn expire(&self, end: i64) {
        let step = self.step_ms;
        let mut st = self.state.lock();
        let mut ended = Vec::new();
        for ((service, signal), t) in st.series.iter_mut() {
            if t.last_seen < end - 5 * step {
                if let Some(ep) = t.det.close(t.last_seen + step) {
                    ended.push((service.clone(), *signal, ep));
                }
            }
        }
        st.series.retain(|_, t| t.last_seen >= end - 86_400_000);
        for (service, signal, ep) in ended {
            self.transition(
                &mut st,
                &service,
                signal,
                Transition::End(ep),
                0.0,
                f64::NAN,
                false,
            );
        }
    }

    /// The API's data: open episodes, and episodes since `since` (newest first).
    pub fn snapshot(&self, since: Option<i64>, service: Option<&str>) -> serde_json::Value {
        let st = self.state.lock();
        let wanted = |s: &str| service.is_none_or(|w| w == s);
        let mut current: Vec<serde_json::Value> = st
            .series
            .iter()
            .filter(|((svc, _), _)| wanted(svc))
            .filter_map(|((svc, signal), t)| {
                let ep = t.det.episode()?;
                let (_, value, score) = t.det.last()?;
                Some(json!({"service": svc, "signal": signal.name(),
                    "score": finite(score.unwrap_or(ep.peak_score)), "value": finite(value),
                    "since": ep.start}))
            })
            .collect();
        current.sort_by(|a, b| {
            (a["service"].as_str(), a["signal"].as_str())
                .cmp(&(b["service"].as_str(), b["signal"].as_str()))
        });
        let history: Vec<serde_json::Value> = st
            .history
            .iter()
            .rev()
            .filter(|r| wanted(&r.service))
            .filter(|r| since.is_none_or(|t| r.end.is_none_or(|e| e >= t) || r.start >= t))
            .map(|r| {
                json!({"service": r.service, "signal": r.signal.name(), "start": r.start,
                    "end": r.end, "peakScore": finite(r.peak)})
            })
            .collect();
        json!({"threshold": THRESHOLD, "current": current, "history": history})
    }
}

fn finite(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else {
        serde_json::Value::Null
    }
}

/// A label value inside a PromQL double-quoted string.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `GET /api/v1/anomalies[?since=&service=]`.
pub(crate) async fn list(
    State(s): State<Arc<GlobalState>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let mut since = None;
    let mut service = None;
    for (k, v) in &params {
        match k.as_str() {
            "since" => match meshlens_model::time::parse_time(v) {
                Some(t) => since = Some(t),
                None => {
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"status": "error", "errorType": "bad_data",
                            "error": format!("invalid parameter \"since\": {v:?} is not a time (RFC 3339 or Unix seconds)")})),
                    )
                        .into_response()
                }
            },
            "service" if !v.is_empty() => service = Some(v.clone()),
            _ => {}
        }
    }
    crate::api::success(s.anomalies.snapshot(since, service.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_escape() {
        for s in Signal::ALL {
            let sel = format!(
                "reporter=\"destination\",destination_canonical_service=\"{}\"",
                escape("a\"b\\c")
            );
            let q = s.query(&sel, "60s");
            meshlens_promql::parse(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    }
}
