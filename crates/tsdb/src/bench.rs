//! The engine-alone write benchmark, the counterpart of `promtool tsdb bench write`: label
//! sets from a JSON file, `scrapes` rounds of one sample per series 15 s apart.

use std::path::Path;
use std::time::Instant;

use meshlens_model::{Labels, Sample};
use rand::{Rng, SeedableRng};

use crate::{FsyncPolicy, Tsdb, TsdbError, TsdbOptions};

/// Realistic label sets: node-exporter-like and Istio-like series, in the JSON shape
/// `promtool tsdb bench write` reads (an array of label objects).
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

#[derive(Debug)]
pub struct WriteBenchReport {
    pub series: usize,
    pub samples: u64,
    pub ingest_seconds: f64,
    pub samples_per_second: f64,
    pub bytes_on_disk: u64,
    pub peak_rss_bytes: u64,
}

/// Appends `scrapes` rounds over `labels` in batches of 1,000 series (as a scrape would),
/// with realistic values, then closes the database and measures it.
pub fn write_bench(
    labels: &[Labels],
    scrapes: usize,
    out: &Path,
) -> Result<WriteBenchReport, TsdbError> {
    let _ = std::fs::remove_dir_all(out);
    let db = Tsdb::open(
        out,
        TsdbOptions {
            wal_fsync: FsyncPolicy::Never,
            ..Default::default()
        },
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut values: Vec<f64> = labels
        .iter()
        .map(|_| rng.gen_range(0.0..1000.0f64).round())
        .collect();
    let rates: Vec<f64> = labels
        .iter()
        .map(|_| rng.gen_range(0.0..50.0f64).round())
        .collect();
    let t0 = 1_700_000_000_000i64;
    let start = Instant::now();
    // As promtool does: series are resolved once, then every scrape appends by reference.
    let handles = labels
        .iter()
        .map(|l| db.series_handle(l))
        .collect::<Result<Vec<_>, _>>()?;
    // Like promtool, groups of 1,000 series are appended concurrently, one worker per core.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_worker = handles.len().div_ceil(workers).div_ceil(1000) * 1000;
    let results: Vec<Result<u64, TsdbError>> = std::thread::scope(|scope| {
        let db = &db;
        let jobs: Vec<_> = handles
            .chunks(per_worker.max(1))
            .zip(values.chunks_mut(per_worker.max(1)))
            .zip(rates.chunks(per_worker.max(1)))
            .map(|((hs, vs), rs)| {
                scope.spawn(move || -> Result<u64, TsdbError> {
                    let mut samples = 0u64;
                    let mut batch = Vec::with_capacity(1000);
                    for s in 0..scrapes {
                        let t = t0 + s as i64 * 15_000;
                        for (chunk_i, chunk) in hs.chunks(1000).enumerate() {
                            batch.clear();
                            for (j, h) in chunk.iter().enumerate() {
                                let k = chunk_i * 1000 + j;
                                vs[k] += rs[k];
                                batch.push((h, Sample::new(t, vs[k])));
                            }
                            samples += db.append_handles(&batch)?.accepted;
                        }
                    }
                    Ok(samples)
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or(Ok(0)))
            .collect()
    });
    let mut samples = 0u64;
    for r in results {
        samples += r?;
    }
    let secs = start.elapsed().as_secs_f64();
    db.maintain()?;
    db.close()?;
    Ok(WriteBenchReport {
        series: labels.len(),
        samples,
        ingest_seconds: secs,
        samples_per_second: samples as f64 / secs,
        bytes_on_disk: dir_size(out),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

pub fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// VmHWM of this process, in bytes (0 where /proc is missing).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
