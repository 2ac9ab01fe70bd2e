//! `meshlens bench istio-mesh`: remote-writes the Istio telemetry of a whole mesh, as
//! Prometheus would have scraped it, into any receiver (meshlens, Prometheus,
//! VictoriaMetrics), so the service graph and Kiali's queries can be compared on the same
//! data (`bench/graph-vs-kiali`).
//!
//! The mesh: N services in namespaces of 25, one workload `v1` with two pods each, ~8
//! callees per service, both reporters on every call (the caller's pods and the callee's),
//! Istio's standard labels, the request counter and the 20-bucket duration histogram per
//! response code. Samples are 60 s apart and end now. Samples go out in time slices of at
//! most 30 minutes, every series' slice before the next: Prometheus without out-of-order
//! ingestion refuses samples an hour older than the newest it holds.

mod mesh;
mod wire;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use meshlens_ingest::remote_write::compress;

use crate::httpc;
use mesh::{Instance, Shape};

#[derive(clap::Args)]
pub struct Args {
    /// The receiver, e.g. http://127.0.0.1:9090/api/v1/write.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 500)]
    services: usize,
    /// Callees per service.
    #[arg(long, default_value_t = 8)]
    edges_per_service: usize,
    #[arg(long, default_value_t = 25)]
    services_per_namespace: usize,
    /// Pods per workload.
    #[arg(long, default_value_t = 2)]
    pods: usize,
    #[arg(long, default_value_t = 60)]
    scrape_s: u64,
    /// Samples per series, `scrape_s` apart, the last at the current minute (63 at 60 s:
    /// an hour and the two scrapes before it, so a 1 h rate has its whole window).
    #[arg(long, default_value_t = 63)]
    samples_per_series: usize,
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Series per request.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

const HEADERS: [(&str, &str); 4] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ("User-Agent", "meshlens-bench"),
];

/// Longest time slice sent before the next one starts (see the module comment).
const SLICE_MS: i64 = 30 * 60_000;

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.services < 2 || args.pods == 0 || args.samples_per_series == 0 {
        bail!("need --services >= 2, --pods >= 1 and --samples-per-series >= 1");
    }
    if args.scrape_s == 0 || args.edges_per_service == 0 || args.services_per_namespace == 0 {
        bail!("--scrape-s, --edges-per-service and --services-per-namespace must be >= 1");
    }
    let shape = Shape {
        services: args.services,
        edges_per_service: args.edges_per_service,
        services_per_namespace: args.services_per_namespace,
        pods: args.pods,
    };
    let edges = shape.edges().len();
    let mut instances = mesh::instances(&shape, args.seed);
    let series: usize = instances.iter().map(Instance::series).sum();
    let step_ms = args.scrape_s as i64 * 1000;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let end = now - now % step_ms;
    let times: Vec<i64> = (0..args.samples_per_series as i64)
        .map(|i| end - (args.samples_per_series as i64 - 1 - i) * step_ms)
        .collect();
    println!(
        "services={} namespaces={} edges={edges} pods_per_workload={} series={series} samples_per_series={}",
        args.services,
        shape.namespaces(),
        args.pods,
        args.samples_per_series
    );
    println!("end_s={}", end / 1000);
    let (origin, path) = httpc::split_url(&args.url)?;
    let workers = args.concurrency.max(1);
    let per_worker = instances.len().div_ceil(workers).max(1);
    let slice_steps = (SLICE_MS / step_ms).max(1) as usize;
    let started = Instant::now();
    let (mut ok, mut failed) = (0u64, 0u64);
    for slice in times.chunks(slice_steps) {
        let results: Vec<anyhow::Result<(u64, u64)>> = std::thread::scope(|s| {
            let handles: Vec<_> = instances
                .chunks_mut(per_worker)
                .map(|mine| {
                    let to = Target {
                        origin: &origin,
                        path: &path,
                        batch: args.batch.max(1),
                    };
                    s.spawn(move || send(to, mine, slice, args.scrape_s))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("sender panicked")))
                })
                .collect()
        });
        for r in results {
            let (a, f) = r?;
            ok += a;
            failed += f;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent_samples={} failed_samples={failed} seconds={secs:.3}",
        ok + failed
    );
    println!("samples_per_second={:.0}", ok as f64 / secs);
    if failed > 0 {
        bail!("the receiver refused {failed} samples");
    }
    Ok(())
}

/// Where a sender posts, and how many series go in one request.
#[derive(Clone, Copy)]
struct Target<'a> {
    origin: &'a str,
    path: &'a str,
    batch: usize,
}

/// Sends one time slice of `mine`'s series; returns (accepted, refused) samples.
fn send(
    to: Target<'_>,
    mine: &mut [Instance],
    times: &[i64],
    scrape_s: u64,
) -> anyhow::Result<(u64, u64)> {
    let mut out = Sender {
        conn: httpc::Conn::open(to.origin)?,
        to,
        ok: 0,
        failed: 0,
    };
    let (mut body, mut scratch) = (Vec::new(), Vec::new());
    let mut in_body = 0usize;
    let mut values: Vec<Vec<(i64, f64)>> = Vec::new();
    for inst in mine.iter_mut() {
        values.resize_with(inst.series(), Vec::new);
        values.iter_mut().for_each(Vec::clear);
        for &t in times {
            for (k, v) in inst.advance(scrape_s).iter().enumerate() {
                values[k].push((t, *v));
            }
        }
        for (k, samples) in values.iter().enumerate() {
            let (name, le, code) = inst.series_id(k);
            let (bucket, other);
            let extra: &[(&str, &str)] = match le {
                Some(le) => {
                    bucket = [("__name__", name), ("le", le), ("response_code", code)];
                    &bucket
                }
                None => {
                    other = [("__name__", name), ("response_code", code)];
                    &other
                }
            };
            wire::put_series(&mut body, &mut scratch, inst.labels(), extra, samples);
            in_body += 1;
            if in_body >= to.batch {
                out.post(&body, (in_body * times.len()) as u64)?;
                body.clear();
                in_body = 0;
            }
        }
    }
    if in_body > 0 {
        out.post(&body, (in_body * times.len()) as u64)?;
    }
    Ok((out.ok, out.failed))
}

/// One sender's connection and its tally of accepted and refused samples.
struct Sender<'a> {
    conn: httpc::Conn,
    to: Target<'a>,
    ok: u64,
    failed: u64,
}

impl Sender<'_> {
    /// Posts one request of `samples` samples (reconnecting once on a dropped connection)
    /// and counts them; the first refusal's answer goes to stderr.
    fn post(&mut self, raw: &[u8], samples: u64) -> anyhow::Result<()> {
        let body = compress(raw);
        let resp = match self.conn.request("POST", self.to.path, &HEADERS, &body) {
            Ok(r) => r,
            Err(_) => {
                self.conn = httpc::Conn::open(self.to.origin)?;
                self.conn
                    .request("POST", self.to.path, &HEADERS, &body)
                    .context("remote write request")?
            }
        };
        if (200..300).contains(&resp.status) {
            self.ok += samples;
            return Ok(());
        }
        if self.failed == 0 {
            eprintln!(
                "receiver answered {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        self.failed += samples;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::mesh::{instances, Shape, BUCKETS, SERIES_PER_CODE};
    use super::wire::put_series;
    use meshlens_ingest::remote_write::{compress, decode};
    use meshlens_model::Labels;

    fn shape(services: usize) -> Shape {
        Shape {
            services,
            edges_per_service: 8,
            services_per_namespace: 25,
            pods: 2,
        }
    }

    #[test]
    fn written_series_decode_to_sorted_istio_labels_and_samples() {
        let mut insts = instances(&shape(20), 1);
        let inst = &mut insts[0];
        let (mut body, mut scratch) = (Vec::new(), Vec::new());
        let mut expected = Vec::new();
        let v0 = inst.advance(60).to_vec();
        let v1 = inst.advance(60).to_vec();
        for k in 0..inst.series() {
            let (name, le, code) = inst.series_id(k);
            let mut extra = vec![("__name__", name)];
            extra.extend(le.map(|le| ("le", le)));
            extra.push(("response_code", code));
            let samples = [(1_000, v0[k]), (61_000, v1[k])];
            put_series(&mut body, &mut scratch, inst.labels(), &extra, &samples);
            let pairs = inst
                .labels()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .chain(extra.iter().copied());
            expected.push((Labels::from_pairs(pairs), samples));
        }
        // Receivers that keep labels as sent (Prometheus 2.42) need them in name order.
        let on_wire = label_names_on_wire(&body);
        assert_eq!(on_wire.len(), expected.len());
        for (names, (labels, _)) in on_wire.iter().zip(&expected) {
            let want: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
            assert_eq!(names, &want);
        }
        let req = decode(&compress(&body)).expect("decodes");
        assert_eq!(req.timeseries.len(), expected.len());
        for (ts, (labels, samples)) in req.timeseries.iter().zip(&expected) {
            assert_eq!(&ts.labels, labels);
            let got: Vec<(i64, f64)> = ts.samples.iter().map(|s| (s.t, s.v)).collect();
            assert_eq!(got, samples.to_vec());
        }
        let first = &req.timeseries[0].labels;
        assert_eq!(first.get("reporter"), Some("source"));
        assert_eq!(first.get("destination_workload"), Some("svc-1-v1"));
        assert_eq!(first.get("source_workload_namespace"), Some("ns-0"));
    }

    /// The label names of each series of a raw `WriteRequest`, in the order sent.
    fn label_names_on_wire(raw: &[u8]) -> Vec<Vec<String>> {
        // Every message walked here holds only length-delimited fields.
        fn fields(mut b: &[u8]) -> Vec<(u8, &[u8])> {
            let mut out = Vec::new();
            while let Some((&tag, rest)) = b.split_first() {
                let (mut len, mut shift, mut i) = (0usize, 0, 0);
                loop {
                    len |= usize::from(rest[i] & 0x7f) << shift;
                    shift += 7;
                    i += 1;
                    if rest[i - 1] < 0x80 {
                        break;
                    }
                }
                out.push((tag >> 3, &rest[i..i + len]));
                b = &rest[i + len..];
            }
            out
        }
        fields(raw)
            .into_iter()
            .map(|(_, ts)| {
                fields(ts)
                    .into_iter()
                    .filter(|(f, _)| *f == 1)
                    .map(|(_, label)| String::from_utf8_lossy(fields(label)[0].1).into_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn histograms_stay_cumulative_and_counters_grow() {
        let mut insts = instances(&shape(30), 2);
        for inst in insts.iter_mut().take(50) {
            let before = inst.advance(60).to_vec();
            let after = inst.advance(60).to_vec();
            for code in after.chunks(SERIES_PER_CODE) {
                let buckets = &code[1..=BUCKETS.len()];
                assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
                assert_eq!(buckets[BUCKETS.len() - 1], code[SERIES_PER_CODE - 1]);
            }
            assert!(before.iter().zip(&after).all(|(b, a)| a >= b));
        }
    }

    #[test]
    fn mesh_has_both_reporters_two_pods_and_outside_callers() {
        let s = shape(50);
        let edges = s.edges();
        // 50 services x 8 callees, plus one outside caller per namespace of 25.
        assert_eq!(edges.len(), 50 * 8 + 2);
        assert!(edges.iter().all(|(a, b)| *a != Some(*b)));
        let insts = instances(&s, 3);
        // Mesh calls: 2 reporters x 2 pods; outside calls: the destination's 2 pods.
        assert_eq!(insts.len(), 400 * 4 + 2 * 2);
        let series: usize = insts.iter().map(|i| i.series()).sum();
        // Every fifth edge has a second response code, in each of its reporting pods.
        let two_codes: usize = edges
            .iter()
            .enumerate()
            .filter(|(e, _)| e % 5 == 0)
            .map(|(_, (src, _))| if src.is_some() { 4 } else { 2 })
            .sum();
        assert_eq!(series, (insts.len() + two_codes) * SERIES_PER_CODE);
    }
}
