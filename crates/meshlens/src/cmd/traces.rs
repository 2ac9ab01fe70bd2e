//! `meshlens traces`: searches traces through a server's Zipkin API and prints them as a
//! table, or one trace as an indented waterfall.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{bail, Context};
use meshlens_ingest::zipkin;
use meshlens_model::{time::rfc3339_ms, Span};

use crate::httpc::{self, urlencode};

#[derive(clap::Args)]
pub struct Args {
    /// Show this trace (16 or 32 hex digits) as a waterfall instead of searching.
    trace_id: Option<String>,
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    server: String,
    /// Traces that pass through this service.
    #[arg(long)]
    service: Option<String>,
    /// ... with a span of this name (in that service).
    #[arg(long)]
    span: Option<String>,
    /// A tag `key` or `key=value` that a span must carry; repeatable.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only spans at least this long (microseconds).
    #[arg(long)]
    min_duration: Option<u64>,
    /// How far back to search, in minutes.
    #[arg(long, default_value_t = 60)]
    lookback_minutes: u64,
    #[arg(long, default_value_t = 10)]
    limit: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/');
    if let Some(id) = &args.trace_id {
        let r = httpc::get(&format!("{base}/api/v2/trace/{id}"))?;
        if r.status != 200 {
            bail!(
                "trace {id}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body).trim()
            );
        }
        let spans = zipkin::decode_json(&r.body).context("the server's answer")?;
        print!("{}", waterfall(&spans, 48));
        return Ok(());
    }
    let mut url = format!(
        "{base}/api/v2/traces?limit={}&lookback={}",
        args.limit,
        args.lookback_minutes * 60_000
    );
    if let Some(s) = &args.service {
        write!(url, "&serviceName={}", urlencode(s))?;
    }
    if let Some(s) = &args.span {
        write!(url, "&spanName={}", urlencode(s))?;
    }
    if !args.tags.is_empty() {
        write!(
            url,
            "&annotationQuery={}",
            urlencode(&args.tags.join(" and "))
        )?;
    }
    if let Some(d) = args.min_duration {
        write!(url, "&minDuration={d}")?;
    }
    let r = httpc::get(&url)?;
    if r.status != 200 {
        bail!(
            "search: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body).trim()
        );
    }
    let traces: Vec<serde_json::Value> =
        serde_json::from_slice(&r.body).context("the server's answer is not a list")?;
    let mut rows = Vec::new();
    for t in traces {
        let spans = zipkin::decode_json(t.to_string().as_bytes())?;
        rows.push(summary(&spans));
    }
    print!("{}", table(&rows));
    Ok(())
}

struct Summary {
    id: String,
    start: String,
    duration_us: u64,
    spans: usize,
    services: usize,
    errors: usize,
    root: String,
}

fn summary(spans: &[Span]) -> Summary {
    let start = spans.iter().filter_map(|s| s.timestamp).min().unwrap_or(0);
    let end = spans
        .iter()
        .filter_map(|s| Some(s.timestamp? + s.duration.unwrap_or(0)))
        .max()
        .unwrap_or(start);
    let mut services: Vec<&str> = spans.iter().filter_map(|s| s.local_service()).collect();
    services.sort_unstable();
    services.dedup();
    let root = spans
        .iter()
        .find(|s| s.parent_id.is_none())
        .or_else(|| spans.iter().min_by_key(|s| s.timestamp))
        .map(label)
        .unwrap_or_default();
    Summary {
        id: spans
            .first()
            .map(|s| s.trace_id.to_string())
            .unwrap_or_default(),
        start: rfc3339_ms((start / 1000) as i64),
        duration_us: end - start,
        spans: spans.len(),
        services: services.len(),
        errors: spans
            .iter()
            .filter(|s| s.tags.contains_key("error"))
            .count(),
        root,
    }
}

fn label(s: &Span) -> String {
    format!(
        "{}: {}",
        s.local_service().unwrap_or("?"),
        s.name.as_deref().unwrap_or("")
    )
}

fn table(rows: &[Summary]) -> String {
    let mut out = format!(
        "{:<32}  {:<24}  {:>10}  {:>5}  {:>8}  {:>6}  ROOT\n",
        "TRACE", "START", "DURATION", "SPANS", "SERVICES", "ERRORS"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<32}  {:<24}  {:>10}  {:>5}  {:>8}  {:>6}  {}",
            r.id,
            r.start,
            human(r.duration_us),
            r.spans,
            r.services,
            r.errors,
            r.root
        );
    }
    if rows.is_empty() {
        out.push_str("(no traces matched)\n");
    }
    out
}

fn human(us: u64) -> String {
    match us {
        0..=999 => format!("{us}us"),
        1_000..=999_999 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// Spans depth-first under their parents, each with a bar placed on the trace's timeline.
pub fn waterfall(spans: &[Span], width: usize) -> String {
    let start = spans.iter().filter_map(|s| s.timestamp).min().unwrap_or(0);
    let end = spans
        .iter()
        .filter_map(|s| Some(s.timestamp? + s.duration.unwrap_or(0)))
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let ids: std::collections::HashSet<u64> = spans.iter().map(|s| s.id).collect();
    let mut children: HashMap<Option<u64>, Vec<&Span>> = HashMap::new();
    for s in spans {
        // A span whose parent was not received is shown as a root.
        let parent = s.parent_id.filter(|p| ids.contains(p) && *p != s.id);
        children.entry(parent).or_default().push(s);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| (s.timestamp.unwrap_or(0), s.id));
    }
    let mut lines = Vec::new();
    let mut stack: Vec<(&Span, usize)> = children
        .get(&None)
        .map(|roots| roots.iter().rev().map(|s| (*s, 0)).collect())
        .unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    while let Some((s, depth)) = stack.pop() {
        if !seen.insert((s.id, s.local_service().map(str::to_string))) {
            continue;
        }
        lines.push((s, depth));
        if let Some(kids) = children.get(&Some(s.id)) {
            for k in kids.iter().rev() {
                if k.id != s.id {
                    stack.push((k, depth + 1));
                }
            }
        }
    }
    let name_width = lines
        .iter()
        .map(|(s, d)| d * 2 + label(s).chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    let total = (end - start) as f64;
    let mut out = format!(
        "trace {}  {}  {} spans\n",
        spans
            .first()
            .map(|s| s.trace_id.to_string())
            .unwrap_or_default(),
        human(end - start),
        spans.len()
    );
    for (s, depth) in lines {
        let name: String = format!("{}{}", "  ".repeat(depth), label(s))
            .chars()
            .take(name_width)
            .collect();
        let from = s.timestamp.unwrap_or(start).saturating_sub(start) as f64;
        let dur = s.duration.unwrap_or(0) as f64;
        let a = ((from / total) * width as f64).floor() as usize;
        let b = (((from + dur) / total) * width as f64).ceil() as usize;
        let b = b.clamp(a + 1, width.max(a + 1));
        let bar: String = (0..width)
            .map(|i| if i >= a && i < b { '█' } else { '·' })
            .collect();
        let error = if s.tags.contains_key("error") {
            "  ERROR"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{name:<name_width$}  {bar}  {:>9}{error}",
            human(s.duration.unwrap_or(0))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waterfall_nests_children_under_parents() {
        let json = br#"[
          {"traceId":"0000000000000001","id":"0000000000000001","name":"get /","timestamp":1000,"duration":1000,"localEndpoint":{"serviceName":"front"}},
          {"traceId":"0000000000000001","id":"0000000000000002","parentId":"0000000000000001","name":"get /api","timestamp":1500,"duration":500,"localEndpoint":{"serviceName":"back"},"tags":{"error":"x"}}
        ]"#;
        let spans = zipkin::decode_json(json).unwrap();
        let w = waterfall(&spans, 10);
        let lines: Vec<&str> = w.lines().collect();
        assert!(lines[0].contains("2 spans"), "{w}");
        assert!(lines[1].starts_with("front: get /"), "{w}");
        assert!(lines[2].starts_with("  back: get /api"), "{w}");
        assert!(lines[2].contains("·····█████"), "{w}");
        assert!(lines[2].ends_with("ERROR"), "{w}");
    }
}
