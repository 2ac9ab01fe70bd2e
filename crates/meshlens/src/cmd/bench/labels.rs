//! Label sets for the metric benchmarks: generated node-exporter-like and Istio-like
//! series, and the label files `promtool tsdb bench write` reads and writes.

use std::path::Path;

use meshlens_model::Labels;

/// `n` realistic label sets, sorted and distinct: half node-exporter CPU series, half
/// Istio request series.
pub fn generate_labels(n: usize) -> Vec<Labels> {
    let mut out = Vec::with_capacity(n);
    let modes = [
        "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
    ];
    let codes = ["200", "201", "204", "301", "400", "404", "500", "503"];
    let services = [
        "productpage",
        "reviews",
        "ratings",
        "details",
        "gateway",
        "cart",
        "checkout",
        "payments",
        "search",
        "auth",
    ];
    let mut i = 0usize;
    while out.len() < n {
        let host = i / 200;
        let instance = format!("10.{}.{}.{}:9100", host / 250, host % 250, 1 + i % 7);
        let pick = i % 4;
        let l = if pick < 2 {
            Labels::from_pairs([
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("job", "node".to_string()),
                ("instance", instance),
                ("cpu", (i % 16).to_string()),
                ("mode", modes[(i / 16) % modes.len()].to_string()),
            ])
        } else {
            let src = services[i % services.len()];
            let dst = services[(i / 10 + 3) % services.len()];
            Labels::from_pairs([
                (
                    "__name__",
                    if pick == 2 {
                        "istio_requests_total"
                    } else {
                        "istio_request_duration_milliseconds_bucket"
                    }
                    .to_string(),
                ),
                ("job", "kubernetes-pods".to_string()),
                ("instance", instance),
                ("namespace", format!("ns-{}", i % 5)),
                (
                    "reporter",
                    if i.is_multiple_of(2) {
                        "source"
                    } else {
                        "destination"
                    }
                    .to_string(),
                ),
                ("source_workload", format!("{src}-v{}", 1 + i % 3)),
                (
                    "destination_workload",
                    format!("{dst}-v{}", 1 + (i / 3) % 3),
                ),
                (
                    "destination_service",
                    format!("{dst}.ns-{}.svc.cluster.local", i % 5),
                ),
                ("response_code", codes[(i / 7) % codes.len()].to_string()),
                ("request_protocol", "http".to_string()),
                (
                    "le",
                    ["1", "5", "10", "25", "50", "100", "250", "+Inf"][(i / 11) % 8].to_string(),
                ),
            ])
        };
        i += 1;
        out.push(l);
    }
    out.sort();
    out.dedup();
    out
}

/// One JSON object per line, the layout `promtool tsdb bench write` reads.
pub fn labels_to_json(labels: &[Labels]) -> String {
    let mut out = String::new();
    for l in labels {
        let obj: serde_json::Map<String, serde_json::Value> = l
            .iter()
            .map(|x| (x.name.clone(), serde_json::Value::String(x.value.clone())))
            .collect();
        out.push_str(&serde_json::Value::Object(obj).to_string());
        out.push('\n');
    }
    out
}

/// Reads a label file: a JSON array of objects, or one object per line.
pub fn read_labels(path: &Path) -> Result<Vec<Labels>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let parse_obj = |v: serde_json::Value| -> Result<Labels, String> {
        let obj = v
            .as_object()
            .ok_or("each label set must be a JSON object")?;
        Ok(Labels::from_pairs(obj.iter().map(|(k, v)| {
            (k.clone(), v.as_str().unwrap_or("").to_string())
        })))
    };
    if text.trim_start().starts_with('[') {
        let v: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        v.into_iter().map(parse_obj).collect()
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .map_err(|e| e.to_string())
                    .and_then(parse_obj)
            })
            .collect()
    }
}
