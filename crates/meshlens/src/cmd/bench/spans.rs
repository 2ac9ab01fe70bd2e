//! `meshlens bench spans`: loads a server with generated Istio-like traces over OTLP/HTTP
//! (protobuf) and Zipkin v2 JSON on loopback, then measures trace-by-id and search latency
//! over everything stored. `bench/spans` wraps it with the server's memory and disk figures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use meshlens_ingest::{otlp, zipkin};
use meshlens_model::Span;
use meshlens_testdata::generate_spans_at;

use crate::httpc::{self, urlencode};

#[derive(clap::Args)]
pub struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    url: String,
    /// Spans to store in all (about 5.8 spans per trace).
    #[arg(long, default_value_t = 5_000_000)]
    spans: usize,
    /// Concurrent connections sending.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Spans per request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Trace-by-id lookups to time.
    #[arg(long, default_value_t = 2000)]
    lookups: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The server's process id (same host): adds its CPU time per span while ingesting,
    /// read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// User + system CPU seconds of process `pid` so far, from /proc/<pid>/stat.
fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(f.get(i).context("short /proc stat")?.parse::<f64>()?)
    };
    // In USER_HZ ticks, which Linux fixes at 100 for user space on every architecture.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    OtlpProtobuf,
    ZipkinJson,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::OtlpProtobuf => "OTLP/HTTP protobuf",
            Protocol::ZipkinJson => "Zipkin v2 JSON",
        }
    }

    fn path_and_type(self) -> (&'static str, &'static str) {
        match self {
            Protocol::OtlpProtobuf => ("/v1/traces", "application/x-protobuf"),
            Protocol::ZipkinJson => ("/api/v2/spans", "application/json"),
        }
    }

    fn encode(self, spans: &[Span]) -> Vec<u8> {
        match self {
            Protocol::OtlpProtobuf => otlp::encode_request(spans),
            Protocol::ZipkinJson => zipkin::encode_json(spans).into_bytes(),
        }
    }
}

#[derive(Default)]
struct Totals {
    spans: usize,
    bytes: usize,
    seconds: f64,
    server_cpu: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_string();
    let host = httpc::split_url(&format!("{base}/"))?.0;
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
    // Traces spread over the last hour, in chunks small enough to encode ahead of sending.
    let chunk_traces = 50_000;
    let mut sample_ids = Vec::new();
    let mut totals = [Totals::default(), Totals::default()];
    let (mut sent, mut chunk) = (0usize, 0u64);
    let hour = 3_600_000_000u64;
    let traces_total = (args.spans / 6).max(1) as u64;
    while sent < args.spans {
        let protocol = if chunk % 2 == 0 {
            Protocol::OtlpProtobuf
        } else {
            Protocol::ZipkinJson
        };
        let slot = hour * (chunk * chunk_traces as u64).min(traces_total) / traces_total;
        let start = now_us - hour + slot;
        let spans = generate_spans_at(
            chunk_traces,
            args.seed.wrapping_add(chunk),
            start,
            start + hour * chunk_traces as u64 / traces_total,
        );
        let spans = &spans[..spans.len().min(args.spans - sent)];
        sample_ids.extend(spans.iter().step_by(997).map(|s| s.trace_id.to_string()));
        let bodies: Vec<Vec<u8>> = spans
            .chunks(args.batch)
            .map(|b| protocol.encode(b))
            .collect();
        let t = &mut totals[(protocol == Protocol::ZipkinJson) as usize];
        let cpu0 = args.server_pid.map(process_cpu_seconds).transpose()?;
        let started = Instant::now();
        send_all(&host, protocol, &bodies, args.concurrency)?;
        t.seconds += started.elapsed().as_secs_f64();
        if let (Some(pid), Some(c0)) = (args.server_pid, cpu0) {
            t.server_cpu += process_cpu_seconds(pid)? - c0;
        }
        t.spans += spans.len();
        t.bytes += bodies.iter().map(Vec::len).sum::<usize>();
        sent += spans.len();
        chunk += 1;
        eprint!("\rstored {sent} of {} spans", args.spans);
    }
    eprintln!();
    println!(
        "## Ingest ({} connections, {} spans per request)",
        args.concurrency, args.batch
    );
    println!(
        "| protocol | spans | bytes per span on the wire | spans/s | server CPU µs per span |"
    );
    println!("|---|---|---|---|---|");
    for (p, t) in [Protocol::OtlpProtobuf, Protocol::ZipkinJson]
        .iter()
        .zip(&totals)
    {
        let cpu = match args.server_pid {
            Some(_) => format!("{:.2}", t.server_cpu * 1e6 / t.spans.max(1) as f64),
            None => "-".to_string(),
        };
        println!(
            "| {} | {} | {:.0} | {:.0} | {cpu} |",
            p.name(),
            t.spans,
            t.bytes as f64 / t.spans.max(1) as f64,
            t.spans as f64 / t.seconds.max(1e-9)
        );
    }

    let mut conn = httpc::Conn::open(&host)?;
    // A store that acknowledges before its data is queryable (ClickHouse behind the write
    // buffer) is timed from the last acknowledgement until the last trace sent is found.
    let settle = Instant::now();
    if let Some(last) = sample_ids.last() {
        loop {
            let r = conn.request("GET", &format!("/api/v2/trace/{last}"), &[], b"")?;
            if r.status == 200 && r.body.len() > 2 {
                break;
            }
            if settle.elapsed() > Duration::from_secs(600) {
                bail!("trace {last} was not queryable 600 s after it was acknowledged");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!(
        "\nAll spans queryable {:.2} s after the last was acknowledged.",
        settle.elapsed().as_secs_f64()
    );
    let mut lat = Vec::new();
    for id in sample_ids.iter().cycle().take(args.lookups) {
        let t = Instant::now();
        let r = conn.request("GET", &format!("/api/v2/trace/{id}"), &[], b"")?;
        lat.push(t.elapsed());
        if r.status != 200 {
            bail!("trace {id}: status {}", r.status);
        }
    }
    println!("\n## Queries over {sent} stored spans");
    println!("| query | runs | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    report_latency("trace by id", &mut lat);

    let services = json_get(&mut conn, "/api/v2/services")?;
    let service = services.first().context("no services stored")?.clone();
    let names = json_get(
        &mut conn,
        &format!("/api/v2/spans?serviceName={}", urlencode(&service)),
    )?;
    let name = names.first().cloned().unwrap_or_default();
    let end_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let searches = [
        (
            "service, limit 10, last hour",
            format!(
                "serviceName={}&limit=10&lookback=3600000",
                urlencode(&service)
            ),
        ),
        (
            "service + span name, limit 10",
            format!(
                "serviceName={}&spanName={}&limit=10&lookback=3600000",
                urlencode(&service),
                urlencode(&name)
            ),
        ),
        (
            "tag error, limit 100",
            "annotationQuery=error&limit=100&lookback=3600000".to_string(),
        ),
        (
            "service + minDuration 50ms, limit 20",
            format!(
                "serviceName={}&minDuration=50000&limit=20&lookback=3600000",
                urlencode(&service)
            ),
        ),
        (
            "service + http.status_code=503, limit 10",
            format!(
                "serviceName={}&annotationQuery={}&limit=10&lookback=3600000",
                urlencode(&service),
                urlencode("http.status_code=503")
            ),
        ),
    ];
    for (label, q) in searches {
        let mut lat = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let r = conn.request(
                "GET",
                &format!("/api/v2/traces?{q}&endTs={end_ms}"),
                &[],
                b"",
            )?;
            lat.push(t.elapsed());
            if r.status != 200 {
                bail!("{label}: status {}", r.status);
            }
        }
        report_latency(label, &mut lat);
    }
    Ok(())
}

/// Sends every body, `concurrency` connections pulling from one queue.
fn send_all(
    host: &str,
    protocol: Protocol,
    bodies: &[Vec<u8>],
    concurrency: usize,
) -> anyhow::Result<()> {
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let (path, content_type) = protocol.path_and_type();
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| {
                let mut conn = match httpc::Conn::open(host) {
                    Ok(c) => c,
                    Err(e) => {
                        *failure.lock().unwrap() = Some(e.to_string());
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { return };
                    match conn.request("POST", path, &[("Content-Type", content_type)], body) {
                        Ok(r) if r.status < 300 => {}
                        Ok(r) => {
                            *failure.lock().unwrap() = Some(format!(
                                "{path}: {} {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            ));
                            return;
                        }
                        Err(e) => {
                            *failure.lock().unwrap() = Some(e.to_string());
                            return;
                        }
                    }
                }
            });
        }
    });
    match failure.into_inner().unwrap() {
        Some(e) => bail!("sending spans failed: {e}"),
        None => Ok(()),
    }
}

fn json_get(conn: &mut httpc::Conn, path: &str) -> anyhow::Result<Vec<String>> {
    let r = conn.request("GET", path, &[], b"")?;
    serde_json::from_slice(&r.body).with_context(|| format!("GET {path}"))
}

fn report_latency(label: &str, lat: &mut [Duration]) {
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "| {label} | {} | {:.2} | {:.2} | {:.2} |",
        lat.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*lat.last().unwrap())
    );
}
