//! `meshlens query EXPR`: runs an instant query against a server and prints a table.

use anyhow::{bail, Context};
use serde_json::Value;

use crate::httpc;

#[derive(clap::Args)]
pub struct Args {
    /// A PromQL expression.
    expr: String,
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    server: String,
    /// Evaluation time (Unix seconds or RFC 3339); default now.
    #[arg(long)]
    time: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut url = format!(
        "{}/api/v1/query?query={}",
        args.server.trim_end_matches('/'),
        encode(&args.expr)
    );
    if let Some(t) = &args.time {
        url.push_str(&format!("&time={}", encode(t)));
    }
    let resp = httpc::get(&url)?;
    let v: Value = serde_json::from_slice(&resp.body)
        .with_context(|| format!("server answered {}: not JSON", resp.status))?;
    if v["status"] != "success" {
        bail!(
            "{}: {}",
            v["errorType"].as_str().unwrap_or("error"),
            v["error"].as_str().unwrap_or("unknown error")
        );
    }
    let data = &v["data"];
    match data["resultType"].as_str() {
        Some("vector") => {
            let rows: Vec<(String, String)> = data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        metric(&r["metric"]),
                        r["value"][1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
            println!("{:<w$}  VALUE", "SERIES");
            for (m, val) in rows {
                println!("{m:<w$}  {val}");
            }
        }
        Some("matrix") => {
            for r in data["result"].as_array().into_iter().flatten() {
                println!("{}", metric(&r["metric"]));
                for p in r["values"].as_array().into_iter().flatten() {
                    println!("  {}  {}", p[0], p[1].as_str().unwrap_or(""));
                }
            }
        }
        _ => println!("{}", data["result"]),
    }
    Ok(())
}

fn metric(m: &Value) -> String {
    let name = m["__name__"].as_str().unwrap_or("").to_string();
    let labels: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
        .collect();
    format!("{name}{{{}}}", labels.join(", "))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
