//! `meshlens stats`: Clover-style traffic statistics from a server's `/api/v1/stats`, as
//! terminal tables (top N rows each).

use std::fmt::Write as _;

use serde_json::Value;

use crate::httpc::{self, urlencode};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    server: String,
    /// How far back from --end, e.g. 15m, 1h.
    #[arg(long, default_value = "1h")]
    window: String,
    /// End of the window (Unix seconds or RFC 3339); now by default.
    #[arg(long)]
    end: Option<String>,
    #[arg(long)]
    cluster: Option<String>,
    #[arg(long)]
    service: Option<String>,
    /// Rows per table.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/');
    let url = format!("{base}/api/v1/stats?window={}", urlencode(&args.window));
    let body = httpc::get_api_json(
        "stats",
        url,
        &[
            ("end", &args.end),
            ("cluster", &args.cluster),
            ("service", &args.service),
        ],
    )?;
    print!("{}", render(&body, args.top));
    Ok(())
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// One titled table: columns are (header, JSON field), numbers right-aligned.
fn section(out: &mut String, title: &str, rows: &[Value], cols: &[(&str, &str)], top: usize) {
    let _ = writeln!(out, "\n{title}");
    let mut cells: Vec<Vec<String>> = vec![cols.iter().map(|c| c.0.to_string()).collect()];
    for r in rows.iter().take(top) {
        cells.push(cols.iter().map(|c| s(&r[c.1])).collect());
    }
    let mut w = vec![0; cols.len()];
    for r in &cells {
        for (w, c) in w.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for (i, r) in cells.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&w)
            .enumerate()
            .map(|(j, (c, w))| {
                let numeric = i > 0 && rows[i - 1][cols[j].1].is_number();
                if numeric {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
    }
    if rows.len() > top {
        let _ = writeln!(out, "  ({} more)", rows.len() - top);
    }
}

fn render(b: &Value, top: usize) -> String {
    let t = &b["totals"];
    let mut out = format!(
        "traces {}  spans {}  requests {}\n",
        s(&t["traces"]),
        s(&t["spans"]),
        s(&t["requests"])
    );
    let count = [("KEY", "key"), ("COUNT", "count")];
    section(
        &mut out,
        "Requests per service",
        list(&b["per_service"]),
        &[("SERVICE", "key"), count[1]],
        top,
    );
    section(
        &mut out,
        "Requests per URL",
        list(&b["per_url"]),
        &[("URL", "key"), count[1]],
        top,
    );
    section(
        &mut out,
        "Requests per service and URL",
        list(&b["per_service_url"]),
        &[("SERVICE", "key"), ("URL", "sub"), count[1]],
        top,
    );
    section(
        &mut out,
        "Requests per status code",
        list(&b["per_status"]),
        &[("STATUS", "key"), count[1]],
        top,
    );
    section(
        &mut out,
        "Requests per URL and status code",
        list(&b["per_url_status"]),
        &[("URL", "key"), ("STATUS", "sub"), count[1]],
        top,
    );
    let agents: Vec<Value> = list(&b["user_agents"])
        .iter()
        .map(|u| {
            let mut u = u.clone();
            u["pct"] = Value::String(format!(
                "{:.1}%",
                u["share"].as_f64().unwrap_or(0.0) * 100.0
            ));
            u
        })
        .collect();
    section(
        &mut out,
        "User agents",
        &agents,
        &[("USER AGENT", "key"), count[1], ("SHARE", "pct")],
        top,
    );
    section(
        &mut out,
        "Response times per service (ms)",
        list(&b["response_times"]),
        &[
            ("SERVICE", "service"),
            ("COUNT", "count"),
            ("MIN", "min_ms"),
            ("AVG", "avg_ms"),
            ("MAX", "max_ms"),
            ("P50", "p50_ms"),
            ("P90", "p90_ms"),
            ("P99", "p99_ms"),
        ],
        top,
    );
    section(
        &mut out,
        "Requests per cluster",
        list(&b["per_cluster"]),
        &[("CLUSTER", "key"), count[1]],
        top,
    );
    let d = &b["distinct"];
    let _ = writeln!(
        out,
        "\ndistinct: {} URLs, {} user agents, {} status codes ({}), {} operations",
        list(&d["urls"]).len(),
        list(&d["user_agents"]).len(),
        list(&d["status_codes"]).len(),
        list(&d["status_codes"])
            .iter()
            .map(s)
            .collect::<Vec<_>>()
            .join(" "),
        list(&d["operations"]).len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tables() {
        let b = serde_json::json!({
            "totals": {"traces": 2, "spans": 5, "requests": 3},
            "per_service": [{"key": "frontend", "count": 2}, {"key": "backend", "count": 1}],
            "user_agents": [{"key": "curl/8", "count": 3, "share": 1.0}],
            "response_times": [{"service": "frontend", "count": 2, "min_ms": 1.0, "avg_ms": 1.5,
                "max_ms": 2.0, "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 2.0}],
            "distinct": {"urls": ["/a"], "user_agents": ["curl/8"], "status_codes": ["200"], "operations": []}
        });
        let out = render(&b, 1);
        assert!(
            out.contains("frontend") && out.contains("(1 more)"),
            "{out}"
        );
        assert!(
            out.contains("100.0%") && out.contains("status codes (200)"),
            "{out}"
        );
    }
}
