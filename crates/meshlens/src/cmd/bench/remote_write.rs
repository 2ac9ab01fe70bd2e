//! `meshlens bench remote-write`: pushes a realistic, reproducible remote-write stream to any
//! receiver (meshlens, Prometheus, VictoriaMetrics) and reports the accepted sample rate.
//!
//! Values are what exporters emit: counters that grow at varying rates (integers, or two
//! decimals for seconds), gauges as random walks rounded to two decimals. Each worker owns a
//! slice of the series and sends them in time order, one sample per series per request.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use meshlens_ingest::remote_write::{encode, WriteRequest};
use meshlens_model::{Labels, Sample, TimeSeries};
use rand::{Rng, SeedableRng};

use crate::httpc;

#[derive(clap::Args)]
pub struct Args {
    /// The receiver, e.g. http://127.0.0.1:9090/api/v1/write.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Samples per series, 15 s apart, ending now (or, with --from-now, starting now).
    #[arg(long, default_value_t = 240)]
    samples_per_series: usize,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Start the samples now and step 1 ms: a live stream, for forwarders (Prometheus's
    /// agent forwards only samples newer than its own start).
    #[arg(long)]
    from_now: bool,
    /// Series per request.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Basic auth as USER:PASSWORD, for receivers behind a web config.
    #[arg(long)]
    user: Option<String>,
    /// Also trust the CA certificates in this PEM file (https receivers).
    #[arg(long)]
    cacert: Option<std::path::PathBuf>,
    /// Send `X-Scope-OrgID: TENANT` (multi-tenant receivers).
    #[arg(long)]
    tenant: Option<String>,
}

/// The request headers every worker sends.
fn headers(args: &Args) -> Vec<(String, String)> {
    use base64::Engine;
    let mut h: Vec<(String, String)> = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ("User-Agent", "meshlens-bench"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(u) = &args.user {
        let token = base64::engine::general_purpose::STANDARD.encode(u);
        h.push(("Authorization".into(), format!("Basic {token}")));
    }
    if let Some(t) = &args.tenant {
        h.push(("X-Scope-OrgID".into(), t.clone()));
    }
    h
}

#[derive(Clone, Copy)]
enum Kind {
    IntCounter(u32),
    SecondsCounter(f64),
    Gauge(f64),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let labels = super::labels::generate_labels(args.series);
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let kinds: Vec<(Kind, f64)> = labels
        .iter()
        .enumerate()
        .map(|(i, _)| match i % 4 {
            0 => (
                Kind::IntCounter(rng.gen_range(0..40)),
                rng.gen_range(0.0..1e6f64).round(),
            ),
            1 => (
                Kind::SecondsCounter(rng.gen_range(0.0..15.0)),
                (rng.gen_range(0.0..1e5f64) * 100.0).round() / 100.0,
            ),
            _ => (
                Kind::Gauge(rng.gen_range(0.01..5.0)),
                (rng.gen_range(0.0..1000.0f64) * 100.0).round() / 100.0,
            ),
        })
        .collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let (start_t, step_ms) = if args.from_now {
        (now, 1)
    } else {
        (
            (now - args.samples_per_series as i64 * 15_000) / 1000 * 1000,
            15_000,
        )
    };
    let (host, path) = httpc::split_url(&args.url)?;
    let headers = headers(&args);
    let receiver = Receiver {
        host: &host,
        path: &path,
        headers: &headers,
        ca_file: args.cacert.as_deref(),
    };
    let workers = args.concurrency.max(1);
    let started = Instant::now();
    let results: Vec<anyhow::Result<(u64, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let mine: Vec<(Labels, Kind, f64)> = labels
                    .iter()
                    .zip(&kinds)
                    .enumerate()
                    .filter(|(i, _)| i % workers == w)
                    .map(|(_, (l, (k, v)))| (l.clone(), *k, *v))
                    .collect();
                let seed = args.seed + w as u64;
                let (samples, batch) = (args.samples_per_series, args.batch);
                scope.spawn(move || {
                    send_worker(receiver, mine, samples, batch, (start_t, step_ms), seed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))
            })
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let (mut accepted, mut failed) = (0u64, 0u64);
    for r in results {
        let (a, f) = r?;
        accepted += a;
        failed += f;
    }
    println!(
        "series={} samples_per_series={} concurrency={workers}",
        args.series, args.samples_per_series
    );
    println!(
        "sent_samples={} failed_samples={failed} seconds={secs:.3}",
        accepted + failed
    );
    println!("samples_per_second={:.0}", accepted as f64 / secs);
    Ok(())
}

/// Where and how the workers send.
#[derive(Clone, Copy)]
struct Receiver<'a> {
    host: &'a str,
    path: &'a str,
    headers: &'a [(String, String)],
    ca_file: Option<&'a std::path::Path>,
}

fn send_worker(
    to: Receiver<'_>,
    mut series: Vec<(Labels, Kind, f64)>,
    samples: usize,
    batch: usize,
    (start_t, step_ms): (i64, i64),
    seed: u64,
) -> anyhow::Result<(u64, u64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (host, path) = (to.host, to.path);
    let mut conn = httpc::Conn::open_trusting(host, to.ca_file)?;
    let (mut ok, mut failed) = (0u64, 0u64);
    let headers: Vec<(&str, &str)> = to
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for step in 0..samples {
        let t = start_t + step as i64 * step_ms;
        for part in series.chunks_mut(batch.max(1)) {
            let ts: Vec<TimeSeries> = part
                .iter_mut()
                .map(|(l, k, v)| {
                    *v = match *k {
                        Kind::IntCounter(r) => *v + f64::from(rng.gen_range(0..=r)),
                        Kind::SecondsCounter(r) => {
                            ((*v + rng.gen_range(0.0..r)) * 100.0).round() / 100.0
                        }
                        Kind::Gauge(s) => ((*v + rng.gen_range(-s..s)) * 100.0).round() / 100.0,
                    };
                    TimeSeries {
                        labels: l.clone(),
                        samples: vec![Sample::new(t, *v)],
                    }
                })
                .collect();
            let n = ts.len() as u64;
            let body = encode(&WriteRequest {
                timeseries: ts,
                ..Default::default()
            });
            let resp = match conn.request("POST", path, &headers, &body) {
                Ok(r) => r,
                Err(_) => {
                    conn = httpc::Conn::open_trusting(host, to.ca_file)?;
                    conn.request("POST", path, &headers, &body)
                        .context("remote write request")?
                }
            };
            if (200..300).contains(&resp.status) {
                ok += n;
            } else {
                failed += n;
                if failed == n {
                    eprintln!(
                        "receiver answered {}: {}",
                        resp.status,
                        String::from_utf8_lossy(&resp.body)
                    );
                }
            }
        }
    }
    Ok((ok, failed))
}
