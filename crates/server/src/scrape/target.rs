//! Turning discovered groups into scrape targets, as Prometheus does: default labels, target
//! relabeling, `__`-prefixed labels dropped, `instance` defaulting to the address.

use std::collections::BTreeMap;
use std::time::Duration;

use meshlens_model::Labels;

use crate::config::{format_duration, relabel, ScrapeConfig};
use crate::discovery::TargetGroup;

#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub job: String,
    pub discovered: Labels,
    /// The labels attached to every scraped sample.
    pub labels: Labels,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Target {
    /// Identity across discovery rounds: the same job, URL and labels are the same target.
    pub fn key(&self) -> u64 {
        let mut b = self.labels.builder();
        b.set("__url__", self.url.clone());
        b.set("__job__", self.job.clone());
        b.build().stable_hash()
    }
}

/// Targets of one job, and the discovered label sets that relabeling dropped.
pub fn build(sc: &ScrapeConfig, groups: &[TargetGroup]) -> (Vec<Target>, Vec<Labels>) {
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    for g in groups {
        for addr in &g.targets {
            let mut b = Labels::empty().builder();
            for (k, v) in &g.labels {
                b.set(k.clone(), v.clone());
            }
            b.set("__address__", addr.clone());
            b.set("job", sc.job_name.clone());
            b.set("__metrics_path__", sc.metrics_path.clone());
            b.set("__scheme__", sc.scheme.clone());
            b.set("__scrape_interval__", format_duration(sc.scrape_interval));
            b.set("__scrape_timeout__", format_duration(sc.scrape_timeout));
            for (k, v) in &sc.params {
                if let Some(first) = v.first() {
                    b.set(format!("__param_{k}"), first.clone());
                }
            }
            let discovered = b.build();
            let Some(relabeled) = relabel::process(&discovered, &sc.relabel_configs) else {
                dropped.push(discovered);
                continue;
            };
            match finish(sc, discovered.clone(), &relabeled) {
                Some(t) => active.push(t),
                None => dropped.push(discovered),
            }
        }
    }
    (active, dropped)
}

fn finish(sc: &ScrapeConfig, discovered: Labels, l: &Labels) -> Option<Target> {
    let addr = l.get("__address__")?.to_string();
    if addr.is_empty() || addr.contains('/') {
        return None;
    }
    let scheme = l.get("__scheme__").unwrap_or("http").to_string();
    let addr = if addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr
    } else {
        format!("{addr}:{}", if scheme == "https" { 443 } else { 80 })
    };
    let path = l.get("__metrics_path__").unwrap_or("/metrics");
    let mut params: BTreeMap<String, Vec<String>> = sc.params.clone();
    for lab in l {
        if let Some(p) = lab.name.strip_prefix("__param_") {
            params.insert(p.to_string(), vec![lab.value.clone()]);
        }
    }
    let mut url = format!("{scheme}://{addr}{path}");
    let query: Vec<String> = params
        .iter()
        .flat_map(|(k, vs)| {
            vs.iter()
                .map(move |v| format!("{}={}", encode(k), encode(v)))
        })
        .collect();
    if !query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&query.join("&"));
    }
    let interval = l
        .get("__scrape_interval__")
        .and_then(|v| crate::config::parse_duration(v).ok())
        .unwrap_or(sc.scrape_interval);
    let timeout = l
        .get("__scrape_timeout__")
        .and_then(|v| crate::config::parse_duration(v).ok())
        .unwrap_or(sc.scrape_timeout);
    let mut b = l.builder();
    b.retain(|x| !x.name.starts_with("__"));
    if b.get("instance").is_none() {
        b.set("instance", addr.clone());
    }
    Some(Target {
        job: sc.job_name.clone(),
        discovered,
        labels: b.build(),
        url,
        interval,
        timeout,
    })
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn builds_targets_with_defaults_and_relabeling() {
        let yaml = r#"
scrape_configs:
  - job_name: api
    params: {format: [prometheus]}
    static_configs:
      - targets: ["a:9100", "b"]
        labels: {env: prod}
    relabel_configs:
      - source_labels: [__address__]
        regex: "b.*"
        action: drop
"#;
        let (cfg, _) = config::parse(yaml, "t").unwrap();
        let sc = &cfg.scrape_configs[0];
        let (active, dropped) = build(sc, &crate::discovery::static_groups(sc));
        assert_eq!(active.len(), 1);
        assert_eq!(dropped.len(), 1);
        let t = &active[0];
        assert_eq!(t.url, "http://a:9100/metrics?format=prometheus");
        assert_eq!(t.labels.get("instance"), Some("a:9100"));
        assert_eq!(t.labels.get("job"), Some("api"));
        assert_eq!(t.labels.get("env"), Some("prod"));
        assert_eq!(t.labels.get("__address__"), None);
    }
}
