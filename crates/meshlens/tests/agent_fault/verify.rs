//! Reading back what a hub (or Prometheus) holds, in forms that compare exactly.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{httpc, urlencode};
use serde_json::Value;

/// Series (labels as sorted text) → (timestamp ms, value as the API printed it).
pub type Matrix = BTreeMap<String, Vec<(i64, String)>>;

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn get_json(client: &httpc::Client, url: &str) -> Value {
    let r = client.get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| {
        panic!(
            "GET {url}: {} not JSON: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    });
    assert_eq!(r.status, 200, "GET {url}: {v}");
    v
}

fn labels_of(metric: &Value, drop: Option<&str>) -> BTreeMap<String, String> {
    metric
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| Some(k.as_str()) != drop)
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `query` (a range selector) at `at_ms` against `base` and returns its matrix, with the
/// label `drop` (if any) removed from every series.
pub fn matrix(base: &str, query: &str, at_ms: i64, drop: Option<&str>) -> Matrix {
    let client = httpc::Client::new().unwrap();
    let url = format!(
        "{base}/api/v1/query?query={}&time={}",
        urlencode(query),
        secs(at_ms)
    );
    let v = get_json(&client, &url);
    assert_eq!(v["data"]["resultType"], "matrix", "{query}: {v}");
    let mut out = Matrix::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let points = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                    p[1].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        out.insert(format!("{:?}", labels_of(&s["metric"], drop)), points);
    }
    out
}

/// `/api/v1/series` for one matcher over `[start_ms, end_ms]`.
pub fn series(
    base: &str,
    matcher: &str,
    start_ms: i64,
    end_ms: i64,
) -> Vec<BTreeMap<String, String>> {
    let client = httpc::Client::new().unwrap();
    let url = format!(
        "{base}/api/v1/series?match[]={}&start={}&end={}",
        urlencode(matcher),
        secs(start_ms),
        secs(end_ms)
    );
    let v = get_json(&client, &url);
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{url}: {v}"))
        .iter()
        .map(|m| labels_of(m, None))
        .collect()
}

/// Samples in a matrix, all series together.
pub fn sample_count(m: &Matrix) -> usize {
    m.values().map(Vec::len).sum()
}

/// The first few differences between two matrices, for a failure message.
pub fn diff(a: &Matrix, b: &Matrix) -> String {
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(_), None) => out.push(format!("only in the first: {k}")),
            (None, Some(_)) => out.push(format!("only in the second: {k}")),
            (Some(x), Some(y)) if x != y => {
                let xs: BTreeSet<_> = x.iter().collect();
                let ys: BTreeSet<_> = y.iter().collect();
                let only_x: Vec<_> = xs.difference(&ys).take(3).collect();
                let only_y: Vec<_> = ys.difference(&xs).take(3).collect();
                out.push(format!(
                    "{k}: {} vs {} points; only first {only_x:?}; only second {only_y:?}",
                    x.len(),
                    y.len()
                ));
            }
            _ => {}
        }
        if out.len() >= 8 {
            break;
        }
    }
    out.join("\n")
}

/// Checks every acknowledged trace on a hub: all spans there, each tagged with cluster `east`
/// (`cluster` from Zipkin, `k8s.cluster.name` from OTLP). Returns the traces found whole
/// and a description of the first few that were not.
pub fn traces_found(
    base: &str,
    ids: &[(String, &'static str)],
    spans_per_trace: usize,
) -> (usize, Vec<String>) {
    let client = httpc::Client::new().unwrap();
    let mut found = 0;
    let mut bad = Vec::new();
    for (id, proto) in ids {
        let r = client.get(&format!("{base}/api/v2/trace/{id}"));
        let problem = match r {
            Err(e) => Some(format!("{e}")),
            Ok(r) if r.status != 200 => Some(format!("status {}", r.status)),
            Ok(r) => {
                let spans: Vec<Value> = serde_json::from_slice(&r.body).unwrap_or_default();
                let untagged = spans
                    .iter()
                    .filter(|s| {
                        s["tags"]["cluster"] != "east" && s["tags"]["k8s.cluster.name"] != "east"
                    })
                    .count();
                if spans.len() != spans_per_trace {
                    Some(format!("{} of {spans_per_trace} spans", spans.len()))
                } else if untagged > 0 {
                    Some(format!(
                        "{untagged} spans without cluster east: {}",
                        spans[0]["tags"]
                    ))
                } else {
                    None
                }
            }
        };
        match problem {
            None => found += 1,
            Some(p) if bad.len() < 5 => bad.push(format!("{id} ({proto}): {p}")),
            Some(_) => {}
        }
    }
    (found, bad)
}

/// The samples of one metric in an exposition text: (labels text, value).
pub fn samples_of(metrics: &str, name: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The agent's figures for one hub (lines of its /metrics naming the hub's address).
pub fn agent_lines_for(metrics: &str, hub_addr: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("meshlens_forward_") && l.contains(hub_addr))
        .map(str::to_string)
        .collect()
}
