//! `meshlens verify`: asks a server's canary judge (`GET /api/v1/verify`) and exits for CI:
//! 0 pass, 1 fail, 3 inconclusive, 2 usage error or server unreachable.

use std::io::Write as _;

use meshlens_verify::collect::{render_text, Report};
use meshlens_verify::judge::Verdict;

use crate::httpc::{self, urlencode};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SourceArg {
    Auto,
    Metrics,
    Traces,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    server: String,
    /// The service (Istio's destination_service_name or destination_app; the span service).
    #[arg(long)]
    service: String,
    /// The version running now (destination_version / the span tag service.version).
    #[arg(long)]
    baseline: String,
    /// The new version.
    #[arg(long)]
    canary: String,
    #[arg(long)]
    namespace: Option<String>,
    /// How far back from --end to judge.
    #[arg(long, default_value = "10m")]
    window: String,
    /// One value per metric per step.
    #[arg(long, default_value = "30s")]
    step: String,
    /// End of the window (Unix seconds or RFC 3339); now by default.
    #[arg(long)]
    end: Option<String>,
    /// Fewer requests than this for either version is inconclusive (exit 3).
    #[arg(long, default_value_t = 50)]
    min_requests: u64,
    #[arg(long, value_enum, default_value = "auto")]
    source: SourceArg,
    /// An extra metric, NAME=PROMQL, with `$version` replaced by each version (repeatable).
    #[arg(long = "metric", value_name = "NAME=EXPR")]
    metrics: Vec<String>,
    /// Which way an extra metric must not move, NAME:increase|decrease|either (default either).
    #[arg(long = "metric-direction", value_name = "NAME:DIRECTION")]
    metric_directions: Vec<String>,
    /// Sent as X-Scope-OrgID, for a server with --multitenancy.
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

/// Exit code for usage errors and an unreachable or failing server.
const USAGE: i32 = 2;

pub fn run(args: Args) -> anyhow::Result<()> {
    let code = match call(&args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("meshlens verify: {msg}");
            USAGE
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn url(args: &Args) -> String {
    let base = args.server.trim_end_matches('/');
    let source = match args.source {
        SourceArg::Auto => "auto",
        SourceArg::Metrics => "metrics",
        SourceArg::Traces => "traces",
    };
    let mut params: Vec<(&str, String)> = vec![
        ("service", args.service.clone()),
        ("baseline", args.baseline.clone()),
        ("canary", args.canary.clone()),
        ("window", args.window.clone()),
        ("step", args.step.clone()),
        ("min_requests", args.min_requests.to_string()),
        ("source", source.to_string()),
    ];
    params.extend(args.namespace.iter().map(|n| ("namespace", n.clone())));
    params.extend(args.end.iter().map(|e| ("end", e.clone())));
    params.extend(args.metrics.iter().map(|m| ("metric", m.clone())));
    params.extend(
        args.metric_directions
            .iter()
            .map(|m| ("metric_direction", m.clone())),
    );
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    format!("{base}/api/v1/verify?{}", query.join("&"))
}

/// The exit code for the server's verdict, or the message for a usage or server problem.
fn call(args: &Args) -> Result<i32, String> {
    httpc::split_url(&args.server).map_err(|e| format!("--server: {e}"))?;
    let url = url(args);
    let client = httpc::Client::new().map_err(|e| format!("{e:#}"))?;
    let headers: Vec<(&str, &str)> = args
        .tenant
        .as_deref()
        .map(|t| vec![("X-Scope-OrgID", t)])
        .unwrap_or_default();
    let r = client
        .request("GET", &url, &headers, &[])
        .map_err(|e| format!("cannot reach the server at {}: {e:#}", args.server))?;
    if r.status != 200 {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let msg = body["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_string());
        return Err(format!(
            "the server at {} answered {}: {msg}",
            args.server, r.status
        ));
    }
    let report: Report = serde_json::from_slice(&r.body).map_err(|e| {
        format!(
            "the server at {} did not answer a verification report: {e}",
            args.server
        )
    })?;
    match args.output {
        Output::Json => println!("{}", String::from_utf8_lossy(&r.body).trim_end()),
        Output::Text => print!("{}", render_text(&report)),
    }
    Ok(match report.verdict {
        Verdict::Pass => 0,
        Verdict::Fail => 1,
        Verdict::Inconclusive => 3,
    })
}
