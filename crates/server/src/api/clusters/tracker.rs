//! What the hub knows of each forwarding agent, from the `X-Meshlens-*` headers of the
//! requests it accepted: when it was last heard from, how far behind it is, and how much it
//! sends per second over the last minute.
//!
//! Every method takes the time as an argument (milliseconds since the epoch), so the window
//! arithmetic is tested with a made-up clock; the HTTP layer passes the wall clock.

use meshlens_model::escape_label_value as escape;
use std::collections::HashMap;
use std::fmt::Write;

use parking_lot::Mutex;

/// Rates are over this much of the recent past…
pub const WINDOW_MS: i64 = 60_000;
/// …kept in buckets of this size.
pub const BUCKET_MS: i64 = 5_000;
const BUCKETS: usize = (WINDOW_MS / BUCKET_MS) as usize;
/// An agent unheard of for this long is shown as stale (its figures are old).
pub const STALE_MS: i64 = 15 * 60_000;
/// An agent unheard of for this long is forgotten.
pub const FORGET_MS: i64 = 24 * 3_600_000;
/// Agents tracked at most: headers are sender-chosen, memory must not be.
pub const MAX_AGENTS: usize = 10_000;

/// Who sent a request: the tenant it wrote to, the agent's cluster and id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentKey {
    pub tenant: String,
    pub cluster: String,
    pub agent: String,
}

/// What a forwarded request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKind {
    Samples,
    Spans,
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// `time / BUCKET_MS` of the bucket's start; a ring slot holding another is stale.
    slot: i64,
    samples: u64,
    spans: u64,
}

struct AgentState {
    first_seen_ms: i64,
    last_seen_ms: i64,
    /// As measured at the latest request that said when its oldest record was buffered.
    lag_seconds: Option<f64>,
    ring: [Bucket; BUCKETS],
}

/// One agent's figures at a moment.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentView {
    pub key: AgentKey,
    pub last_seen_ms: i64,
    pub seconds_since_seen: f64,
    pub lag_seconds: Option<f64>,
    pub samples_per_second: f64,
    pub spans_per_second: f64,
    /// Not heard of for [`STALE_MS`].
    pub stale: bool,
}

#[derive(Default)]
pub struct ClusterTracker {
    agents: Mutex<HashMap<AgentKey, AgentState>>,
}

impl ClusterTracker {
    /// Notes an accepted request of `items` samples or spans whose oldest record was
    /// buffered at `oldest_ms` (lag = now - oldest, never negative).
    pub fn record(
        &self,
        now_ms: i64,
        key: AgentKey,
        kind: ItemKind,
        items: u64,
        oldest_ms: Option<i64>,
    ) {
        let mut agents = self.agents.lock();
        if !agents.contains_key(&key) {
            if agents.len() >= MAX_AGENTS {
                agents.retain(|_, a| now_ms - a.last_seen_ms < FORGET_MS);
                if agents.len() >= MAX_AGENTS {
                    tracing::debug!(cluster = %key.cluster, agent = %key.agent, "too many agents tracked; not tracking another");
                    return;
                }
            }
            agents.insert(
                key.clone(),
                AgentState {
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                    lag_seconds: None,
                    ring: [Bucket::default(); BUCKETS],
                },
            );
        }
        let Some(a) = agents.get_mut(&key) else {
            return;
        };
        a.last_seen_ms = a.last_seen_ms.max(now_ms);
        if let Some(oldest) = oldest_ms {
            a.lag_seconds = Some(now_ms.saturating_sub(oldest).max(0) as f64 / 1000.0);
        }
        let slot = now_ms.div_euclid(BUCKET_MS);
        let b = &mut a.ring[slot.rem_euclid(BUCKETS as i64) as usize];
        if b.slot != slot {
            *b = Bucket {
                slot,
                ..Bucket::default()
            };
        }
        match kind {
            ItemKind::Samples => b.samples = b.samples.saturating_add(items),
            ItemKind::Spans => b.spans = b.spans.saturating_add(items),
        }
    }

    /// Every agent's figures at `now_ms`, sorted by key; agents unheard of for
    /// [`FORGET_MS`] are dropped first.
    pub fn snapshot(&self, now_ms: i64) -> Vec<AgentView> {
        let mut agents = self.agents.lock();
        agents.retain(|_, a| now_ms - a.last_seen_ms < FORGET_MS);
        let mut out: Vec<AgentView> = agents
            .iter()
            .map(|(k, a)| {
                let (samples, spans) = a.rates(now_ms);
                AgentView {
                    key: k.clone(),
                    last_seen_ms: a.last_seen_ms,
                    seconds_since_seen: (now_ms - a.last_seen_ms).max(0) as f64 / 1000.0,
                    lag_seconds: a.lag_seconds,
                    samples_per_second: samples,
                    spans_per_second: spans,
                    stale: now_ms - a.last_seen_ms >= STALE_MS,
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// `meshlens_cluster_agent_last_seen_timestamp_seconds` and
    /// `meshlens_cluster_agent_lag_seconds`, by cluster and agent (and tenant, when
    /// `with_tenant`).
    pub fn render_metrics(&self, now_ms: i64, with_tenant: bool, out: &mut String) {
        let agents = self.snapshot(now_ms);
        let labels = |k: &AgentKey| {
            let mut l = format!(
                "cluster=\"{}\",agent=\"{}\"",
                escape(&k.cluster),
                escape(&k.agent)
            );
            if with_tenant {
                let _ = write!(l, ",tenant=\"{}\"", escape(&k.tenant));
            }
            l
        };
        let name = "meshlens_cluster_agent_last_seen_timestamp_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} When the hub last accepted a request from the agent.\n# TYPE {name} gauge"
        );
        for a in &agents {
            let _ = writeln!(
                out,
                "{name}{{{}}} {}",
                labels(&a.key),
                a.last_seen_ms as f64 / 1000.0
            );
        }
        let name = "meshlens_cluster_agent_lag_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} How long the oldest record of the agent's latest request waited in its buffer.\n# TYPE {name} gauge"
        );
        for a in &agents {
            if let Some(lag) = a.lag_seconds {
                let _ = writeln!(out, "{name}{{{}}} {lag}", labels(&a.key));
            }
        }
    }
}

impl AgentState {
    /// Samples and spans per second over the window ending at `now_ms`: the current,
    /// partial bucket plus the full ones before it, divided by the time they cover (less
    /// for an agent first heard of within the window).
    fn rates(&self, now_ms: i64) -> (f64, f64) {
        let cur = now_ms.div_euclid(BUCKET_MS);
        let (mut samples, mut spans) = (0u64, 0u64);
        for b in &self.ring {
            if b.slot <= cur && b.slot > cur - BUCKETS as i64 {
                samples = samples.saturating_add(b.samples);
                spans = spans.saturating_add(b.spans);
            }
        }
        let covered = (BUCKETS as i64 - 1) * BUCKET_MS + now_ms.rem_euclid(BUCKET_MS);
        let span_ms = covered.min(now_ms - self.first_seen_ms).max(1_000);
        let secs = span_ms as f64 / 1000.0;
        (samples as f64 / secs, spans as f64 / secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000; // a multiple of BUCKET_MS

    fn key(cluster: &str, agent: &str) -> AgentKey {
        AgentKey {
            tenant: "anonymous".into(),
            cluster: cluster.into(),
            agent: agent.into(),
        }
    }

    fn one(t: &ClusterTracker, now: i64) -> AgentView {
        let v = t.snapshot(now);
        assert_eq!(v.len(), 1, "{v:?}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn rates_over_the_last_minute() {
        let t = ClusterTracker::default();
        // 100 samples and 10 spans every second for two minutes.
        for s in 0..120 {
            let now = T0 + s * 1000;
            t.record(now, key("east", "a"), ItemKind::Samples, 100, None);
            t.record(now, key("east", "a"), ItemKind::Spans, 10, None);
        }
        // At T0 + 120 s, the window holds seconds 65..=119 (11 full buckets) plus the
        // empty current bucket: 55 s.
        let v = one(&t, T0 + 120_000);
        assert_eq!(v.samples_per_second, 100.0);
        assert_eq!(v.spans_per_second, 10.0);
        // Mid-bucket: the same 55 requests over 57.5 s of window (the agent has been idle
        // since second 119, so the rate dips below 100).
        let v = one(&t, T0 + 122_500);
        assert_eq!(v.samples_per_second, 100.0 * 55.0 / 57.5);
        assert_eq!(v.seconds_since_seen, 3.5);
        assert!(!v.stale);
    }

    #[test]
    fn a_new_agent_rate_is_over_the_time_since_it_appeared() {
        let t = ClusterTracker::default();
        t.record(T0, key("east", "a"), ItemKind::Samples, 50, None);
        t.record(T0 + 10_000, key("east", "a"), ItemKind::Samples, 50, None);
        assert_eq!(one(&t, T0 + 10_000).samples_per_second, 10.0);
        // Under a second old: counted over one second, not divided by zero.
        let t = ClusterTracker::default();
        t.record(T0, key("east", "a"), ItemKind::Spans, 7, None);
        assert_eq!(one(&t, T0).spans_per_second, 7.0);
    }

    #[test]
    fn the_window_expires() {
        let t = ClusterTracker::default();
        for s in 0..30 {
            t.record(T0 + s * 1000, key("east", "a"), ItemKind::Samples, 10, None);
        }
        assert!(one(&t, T0 + 30_000).samples_per_second > 0.0);
        // 60 s after the last request, its bucket has left the window.
        let v = one(&t, T0 + 29_000 + WINDOW_MS);
        assert_eq!(v.samples_per_second, 0.0);
        // A later request reuses ring slots without counting what they held before.
        t.record(T0 + 200_000, key("east", "a"), ItemKind::Samples, 55, None);
        assert_eq!(one(&t, T0 + 200_000).samples_per_second, 1.0);
    }

    #[test]
    fn lag_is_now_minus_oldest_and_never_negative() {
        let t = ClusterTracker::default();
        t.record(T0, key("east", "a"), ItemKind::Samples, 1, Some(T0 - 2_500));
        assert_eq!(one(&t, T0 + 1_000).lag_seconds, Some(2.5));
        // A request without a usable oldest keeps the last measurement.
        t.record(T0 + 1_000, key("east", "a"), ItemKind::Samples, 1, None);
        assert_eq!(one(&t, T0 + 1_000).lag_seconds, Some(2.5));
        // A sender's clock ahead of ours: no negative lag.
        t.record(
            T0 + 2_000,
            key("east", "a"),
            ItemKind::Samples,
            1,
            Some(T0 + 9_000),
        );
        assert_eq!(one(&t, T0 + 2_000).lag_seconds, Some(0.0));
        t.record(T0, key("west", "b"), ItemKind::Spans, 1, None);
        assert_eq!(t.snapshot(T0)[1].lag_seconds, None);
    }

    #[test]
    fn stale_then_forgotten() {
        let t = ClusterTracker::default();
        t.record(T0, key("east", "a"), ItemKind::Samples, 1, Some(T0));
        t.record(T0 + STALE_MS, key("west", "b"), ItemKind::Samples, 1, None);
        let v = t.snapshot(T0 + STALE_MS);
        assert!(v[0].stale && !v[1].stale, "{v:?}");
        assert_eq!(v[0].seconds_since_seen, 900.0);
        let v = t.snapshot(T0 + FORGET_MS);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].key.cluster, "west");
    }

    #[test]
    fn agents_are_keyed_by_tenant_cluster_and_id() {
        let t = ClusterTracker::default();
        t.record(T0, key("east", "a"), ItemKind::Samples, 1, None);
        t.record(T0, key("east", "b"), ItemKind::Samples, 1, None);
        t.record(T0, key("west", "a"), ItemKind::Samples, 1, None);
        let mut other = key("east", "a");
        other.tenant = "team-b".into();
        t.record(T0, other, ItemKind::Samples, 1, None);
        let keys: Vec<String> = t
            .snapshot(T0)
            .iter()
            .map(|v| format!("{}/{}/{}", v.key.tenant, v.key.cluster, v.key.agent))
            .collect();
        assert_eq!(
            keys,
            [
                "anonymous/east/a",
                "anonymous/east/b",
                "anonymous/west/a",
                "team-b/east/a"
            ]
        );
    }

    #[test]
    fn the_number_of_agents_is_capped() {
        let t = ClusterTracker::default();
        for i in 0..MAX_AGENTS {
            t.record(T0, key("c", &i.to_string()), ItemKind::Samples, 1, None);
        }
        t.record(T0, key("c", "one-too-many"), ItemKind::Samples, 1, None);
        assert_eq!(t.snapshot(T0).len(), MAX_AGENTS);
        // Known agents still count; forgotten ones make room.
        t.record(T0 + 1, key("c", "0"), ItemKind::Samples, 1, None);
        t.record(T0 + FORGET_MS, key("c", "new"), ItemKind::Samples, 1, None);
        let v = t.snapshot(T0 + FORGET_MS);
        let agents: Vec<&str> = v.iter().map(|a| a.key.agent.as_str()).collect();
        assert_eq!(agents, ["0", "new"]);
    }

    #[test]
    fn metrics_exposition() {
        let t = ClusterTracker::default();
        t.record(
            T0,
            key("east", "h:1"),
            ItemKind::Samples,
            1,
            Some(T0 - 1_500),
        );
        t.record(T0, key("we\"st", "h:2"), ItemKind::Spans, 1, None);
        let mut out = String::new();
        t.render_metrics(T0 + 500, false, &mut out);
        assert!(out.contains(
            "meshlens_cluster_agent_last_seen_timestamp_seconds{cluster=\"east\",agent=\"h:1\"} 1700000000\n"
        ), "{out}");
        assert!(out.contains(
            "meshlens_cluster_agent_last_seen_timestamp_seconds{cluster=\"we\\\"st\",agent=\"h:2\"} 1700000000\n"
        ), "{out}");
        assert!(
            out.contains(
                "meshlens_cluster_agent_lag_seconds{cluster=\"east\",agent=\"h:1\"} 1.5\n"
            ),
            "{out}"
        );
        assert!(
            !out.contains("lag_seconds{cluster=\"we"),
            "no lag known: {out}"
        );
        assert!(out.contains("# TYPE meshlens_cluster_agent_lag_seconds gauge\n"));
        let mut out = String::new();
        t.render_metrics(T0, true, &mut out);
        assert!(out.contains("{cluster=\"east\",agent=\"h:1\",tenant=\"anonymous\"}"));
    }
}
