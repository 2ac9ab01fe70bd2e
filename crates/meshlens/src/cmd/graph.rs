//! `meshlens graph`: the service graph from a server's `/api/v1/graph`, as a table of edges
//! or as Graphviz dot (`meshlens graph --format dot | dot -Tsvg > graph.svg`).

use std::fmt::Write as _;

use serde_json::Value;

use crate::httpc::{self, urlencode};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Dot,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    server: String,
    /// workload, app, versionedApp or service.
    #[arg(long = "type", default_value = "workload")]
    graph_type: String,
    /// How far back from --end, e.g. 5m, 1h.
    #[arg(long, default_value = "5m")]
    window: String,
    /// End of the window (Unix seconds or RFC 3339); now by default.
    #[arg(long)]
    end: Option<String>,
    /// metrics (Istio), traces, or both.
    #[arg(long, default_value = "metrics")]
    source: String,
    #[arg(long)]
    namespace: Option<String>,
    #[arg(long)]
    cluster: Option<String>,
    /// Only this node (by name) and its neighbours.
    #[arg(long)]
    focus: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/');
    let url = format!(
        "{base}/api/v1/graph?type={}&window={}&source={}",
        urlencode(&args.graph_type),
        urlencode(&args.window),
        urlencode(&args.source)
    );
    let body = httpc::get_api_json(
        "graph",
        url,
        &[
            ("end", &args.end),
            ("namespace", &args.namespace),
            ("cluster", &args.cluster),
            ("focus", &args.focus),
        ],
    )?;
    print!(
        "{}",
        match args.format {
            Format::Table => table(&body),
            Format::Dot => dot(&body),
        }
    );
    Ok(())
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn pct(v: &Value) -> String {
    num(v).map_or("-".into(), |x| format!("{:.1}%", x * 100.0))
}

fn ms(v: &Value) -> String {
    num(v).map_or("-".into(), |x| format!("{x:.1}ms"))
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn table(g: &Value) -> String {
    let header = [
        "SOURCE", "TARGET", "PROTO", "RPS", "ERR", "P50", "P95", "P99", "MTLS", "HEALTH",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for e in list(&g["edges"]) {
        let rt = &e["responseTimeMs"];
        rows.push(vec![
            e["source"].as_str().unwrap_or("").to_string(),
            e["target"].as_str().unwrap_or("").to_string(),
            e["protocol"].as_str().unwrap_or("").to_string(),
            num(&e["requestRate"]).map_or("-".into(), |x| format!("{x:.2}")),
            pct(&e["errorRate"]),
            ms(&rt["p50"]),
            ms(&rt["p95"]),
            ms(&rt["p99"]),
            pct(&e["mtlsShare"]),
            e["health"].as_str().unwrap_or("").to_string(),
        ]);
    }
    let mut widths = vec![0; header.len()];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if (3..9).contains(&i) {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    if rows.len() == 1 {
        out.push_str("(no traffic in the window)\n");
    }
    let _ = writeln!(
        out,
        "{} nodes, {} edges",
        list(&g["nodes"]).len(),
        list(&g["edges"]).len()
    );
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn color(health: &str) -> &'static str {
    match health {
        "failure" => "red",
        "degraded" => "orange",
        "healthy" => "darkgreen",
        _ => "gray",
    }
}

fn dot(g: &Value) -> String {
    let mut out =
        String::from("digraph meshlens {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
    for n in list(&g["nodes"]) {
        let name = n["name"].as_str().unwrap_or("");
        let label = match n["version"].as_str() {
            Some(v) => format!("{name}\\n{v}\\n{}", n["namespace"].as_str().unwrap_or("")),
            None => format!("{name}\\n{}", n["namespace"].as_str().unwrap_or("")),
        };
        let _ = writeln!(
            out,
            "  {} [label=\"{}\", color={}];",
            quote(n["id"].as_str().unwrap_or("")),
            label.replace('"', "\\\""),
            color(n["health"].as_str().unwrap_or(""))
        );
    }
    for e in list(&g["edges"]) {
        let _ = writeln!(
            out,
            "  {} -> {} [label=\"{} {:.2}rps {}\", color={}];",
            quote(e["source"].as_str().unwrap_or("")),
            quote(e["target"].as_str().unwrap_or("")),
            e["protocol"].as_str().unwrap_or(""),
            num(&e["requestRate"]).unwrap_or(0.0),
            pct(&e["errorRate"]),
            color(e["health"].as_str().unwrap_or(""))
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_table_and_dot() {
        let g = serde_json::json!({
            "nodes": [{"id": "c/ns/a", "name": "a", "namespace": "ns", "health": "healthy"},
                      {"id": "c/ns/b", "name": "b", "namespace": "ns", "health": "failure"}],
            "edges": [{"source": "c/ns/a", "target": "c/ns/b", "protocol": "http",
                       "requestRate": 2.5, "errorRate": 0.2, "health": "failure",
                       "responseTimeMs": {"p50": 1.0, "p95": 2.0, "p99": 3.0}}]
        });
        let t = table(&g);
        assert!(
            t.contains("c/ns/a") && t.contains("2.50") && t.contains("20.0%"),
            "{t}"
        );
        let d = dot(&g);
        assert!(
            d.contains("\"c/ns/a\" -> \"c/ns/b\"") && d.contains("color=red"),
            "{d}"
        );
    }
}
