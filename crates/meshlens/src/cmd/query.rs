//! `meshlens query EXPR`: runs a query against a server; an instant result prints as a
//! table, a range (`--start`) as a small terminal chart with a legend.

use anyhow::{bail, Context};
use serde_json::Value;

use crate::httpc::{self, urlencode as encode};

#[derive(clap::Args)]
pub struct Args {
    /// A PromQL expression.
    expr: String,
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    server: String,
    /// Evaluation time (Unix seconds or RFC 3339); default now.
    #[arg(long)]
    time: Option<String>,
    /// Run a range query from this time (Unix seconds or RFC 3339).
    #[arg(long)]
    start: Option<String>,
    /// End of the range; default now.
    #[arg(long)]
    end: Option<String>,
    /// Step of the range (a duration such as `1m`, or seconds); default about 60 points.
    #[arg(long)]
    step: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/');
    let url = match &args.start {
        Some(start) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let end = args.end.clone().unwrap_or_else(|| now.to_string());
            let step = match &args.step {
                Some(s) => s.clone(),
                None => {
                    let (s, e) = (
                        start.parse::<f64>().unwrap_or(0.0),
                        end.parse::<f64>().unwrap_or(0.0),
                    );
                    format!("{}", ((e - s) / 60.0).max(1.0).round())
                }
            };
            format!(
                "{base}/api/v1/query_range?query={}&start={}&end={}&step={}",
                encode(&args.expr),
                encode(start),
                encode(&end),
                encode(&step)
            )
        }
        None => {
            let mut url = format!("{base}/api/v1/query?query={}", encode(&args.expr));
            if let Some(t) = &args.time {
                url.push_str(&format!("&time={}", encode(t)));
            }
            url
        }
    };
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
            let series: Vec<(String, Vec<(f64, f64)>)> = data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let points = r["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_str()?.parse::<f64>().ok()?)))
                        .collect();
                    (metric(&r["metric"]), points)
                })
                .collect();
            print!("{}", chart(&series, 72, 12));
        }
        _ => println!("{}", data["result"]),
    }
    Ok(())
}

/// Draws up to eight series as letters on a grid (readable without colour), with a legend
/// giving each series' min, max and last value.
fn chart(series: &[(String, Vec<(f64, f64)>)], width: usize, height: usize) -> String {
    let shown: Vec<&(String, Vec<(f64, f64)>)> =
        series.iter().filter(|s| !s.1.is_empty()).take(8).collect();
    if shown.is_empty() {
        return "no data\n".into();
    }
    let all = shown
        .iter()
        .flat_map(|s| s.1.iter())
        .filter(|p| p.1.is_finite());
    let (mut t0, mut t1, mut lo, mut hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (t, v) in all {
        t0 = t0.min(*t);
        t1 = t1.max(*t);
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let mut grid = vec![vec![' '; width]; height];
    for (i, (_, points)) in shown.iter().enumerate() {
        let mark = (b'a' + i as u8) as char;
        for (t, v) in points.iter().filter(|p| p.1.is_finite()) {
            let x = if t1 > t0 {
                ((t - t0) / (t1 - t0) * (width - 1) as f64).round() as usize
            } else {
                0
            };
            let y = ((v - lo) / (hi - lo) * (height - 1) as f64).round() as usize;
            grid[height - 1 - y.min(height - 1)][x.min(width - 1)] = mark;
        }
    }
    let mut out = String::new();
    for (row, cells) in grid.iter().enumerate() {
        let label = if row == 0 {
            format!("{hi:>12.4}")
        } else if row == height - 1 {
            format!("{lo:>12.4}")
        } else {
            " ".repeat(12)
        };
        out.push_str(&format!("{label} |{}\n", cells.iter().collect::<String>()));
    }
    out.push_str(&format!("{} +{}\n", " ".repeat(12), "-".repeat(width)));
    out.push_str(&format!(
        "{} {:<w$}{}\n",
        " ".repeat(12),
        t0,
        t1,
        w = width.saturating_sub(format!("{t1}").len())
    ));
    for (i, (name, points)) in shown.iter().enumerate() {
        let vals = points.iter().map(|p| p.1);
        let min = vals.clone().fold(f64::NAN, f64::min);
        let max = vals.clone().fold(f64::NAN, f64::max);
        let last = points.last().map_or(f64::NAN, |p| p.1);
        out.push_str(&format!(
            "  {}  {name}  min {min} max {max} last {last}\n",
            (b'a' + i as u8) as char
        ));
    }
    if series.len() > shown.len() {
        out.push_str(&format!(
            "  ({} more series not drawn)\n",
            series.len() - shown.len()
        ));
    }
    out
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
