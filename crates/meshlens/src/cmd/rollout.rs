//! `meshlens rollout`: progressive delivery through the mesh directory `meshlens proxy`
//! watches (Flagger's model, see `meshlens_verify::rollout`). The judge is the server's
//! `GET /api/v1/verify`; events go to stdout and to the server's `POST /api/v1/events`.
//! Exit codes: 0 promoted, 1 rolled back or halted, 2 usage error or mesh directory unusable.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use meshlens_verify::events::{Event, EventError, EventSink, NewEvent};
use meshlens_verify::http::HttpClient;
use meshlens_verify::meshedit::MeshDir;
use meshlens_verify::rollout::http::{HttpEventSink, HttpJudge};
use meshlens_verify::rollout::{self, Outcome, RolloutError, RolloutReport, RolloutSpec, Webhook};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The mesh directory the proxies watch; the VirtualService routing --service is edited.
    #[arg(long)]
    mesh: PathBuf,
    /// The service (a host of the VirtualService, and the judge's service).
    #[arg(long)]
    service: String,
    /// The stable subset (DestinationRule subset, also the judge's baseline version).
    #[arg(long)]
    stable: String,
    /// The canary subset (also the judge's canary version).
    #[arg(long)]
    canary: String,
    /// Canary weight added after each passing check, percent.
    #[arg(long, default_value_t = 10)]
    step: u32,
    /// Canary weight at which a passing check promotes, percent.
    #[arg(long, default_value_t = 50)]
    max: u32,
    /// Time between a weight change and its check (e.g. 30s, 1m).
    #[arg(long, default_value = "1m")]
    interval: String,
    /// Failed (or inconclusive) checks that roll back.
    #[arg(long, default_value_t = 2)]
    threshold: u32,
    /// `URL` (every phase) or `PHASE=URL`, PHASE one of pre-rollout, rollout, post-rollout;
    /// repeatable, called in order. A non-2xx answer halts.
    #[arg(long = "webhook", value_name = "[PHASE=]URL")]
    webhooks: Vec<String>,
    /// How long a webhook may take to answer.
    #[arg(long, default_value = "10s")]
    webhook_timeout: String,
    /// The meshlens server: judge (GET /api/v1/verify) and event log (POST /api/v1/events).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    server: String,
    /// Namespace of the service (default: the VirtualService's).
    #[arg(long)]
    namespace: Option<String>,
    /// The judge's window (default: the server's, 10m).
    #[arg(long)]
    window: Option<String>,
    /// Fewer requests than this for either version makes a check inconclusive (the server's
    /// default: 50).
    #[arg(long)]
    min_requests: Option<u64>,
    /// `text`: one line per event; `json`: one event object per line, then the report.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

const USAGE: i32 = 2;

pub fn run(args: Args) -> anyhow::Result<()> {
    let code = match spec(&args) {
        Err(msg) => {
            eprintln!("meshlens rollout: {msg}");
            USAGE
        }
        Ok(spec) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(drive(&args, spec))
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn duration(flag: &str, v: &str) -> Result<Duration, String> {
    meshlens_model::parse_duration(v).map_err(|e| format!("--{flag} {v:?}: {e}"))
}

fn spec(args: &Args) -> Result<RolloutSpec, String> {
    let mut s = RolloutSpec::new(&args.service, &args.stable, &args.canary);
    s.namespace = args.namespace.clone();
    s.step = args.step;
    s.max = args.max;
    s.threshold = args.threshold;
    s.interval = duration("interval", &args.interval)?;
    s.webhook_timeout = duration("webhook-timeout", &args.webhook_timeout)?;
    for w in &args.webhooks {
        s.webhooks
            .push(Webhook::parse(w).map_err(|e| format!("--webhook: {e}"))?);
    }
    if let Some(w) = &args.window {
        duration("window", w)?;
    }
    if !(args.server.starts_with("http://") || args.server.starts_with("https://")) {
        return Err(format!(
            "--server {:?}: expected an http:// or https:// URL",
            args.server
        ));
    }
    s.check().map_err(|e| e.to_string())?;
    Ok(s)
}

async fn drive(args: &Args, spec: RolloutSpec) -> i32 {
    let client = match HttpClient::https() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meshlens rollout: {e}");
            return USAGE;
        }
    };
    let mut judge = HttpJudge::new(client.clone(), &args.server);
    if let Some(w) = &args.window {
        judge.params.push(("window".into(), w.clone()));
    }
    if let Some(n) = args.min_requests {
        judge.params.push(("min_requests".into(), n.to_string()));
    }
    let printer = Printer {
        json: args.output == Output::Json,
        server: HttpEventSink::start(client.clone(), &args.server),
    };
    let mesh = MeshDir::new(&args.mesh);
    let result = rollout::run(&mesh, &spec, &judge, &client, &printer).await;
    if let Some(s) = printer.server {
        s.close(Duration::from_secs(10)).await;
    }
    match result {
        Ok(report) => {
            print_report(&report, args.output == Output::Json);
            report.outcome.exit_code()
        }
        Err(e) => {
            let what = match &e {
                RolloutError::Usage(_) => "",
                _ => "mesh directory: ",
            };
            eprintln!("meshlens rollout: {what}{e}");
            USAGE
        }
    }
}

fn print_report(r: &RolloutReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    let line = match &r.outcome {
        Outcome::Promoted => format!(
            "promoted: {} takes 100 % of {} after {} checks ({} failed)",
            r.canary, r.service, r.checks, r.failed_checks
        ),
        Outcome::RolledBack { reason } => format!(
            "rolled back: {} takes 100 % of {} again: {reason}",
            r.stable, r.service
        ),
        Outcome::Halted { reason } => format!("halted before any change: {reason}"),
        Outcome::Stopped { reason, .. } => format!("stopped: {reason}"),
    };
    println!("{line}");
}

/// Prints every event (stdout is the operator's record even when the server is away) and
/// forwards it to the server.
struct Printer {
    json: bool,
    server: Option<HttpEventSink>,
}

impl EventSink for Printer {
    fn record(&self, new: NewEvent) -> Result<Event, EventError> {
        if self.json {
            println!("{}", serde_json::to_string(&new).unwrap_or_default());
        } else {
            let kind = new
                .kind
                .map(|k| format!("{k:?}").to_lowercase())
                .unwrap_or_default();
            println!("{} {kind:<7} {}", clock(new.time_ms), new.title);
        }
        let _ = std::io::stdout().flush();
        match &self.server {
            Some(s) => s.record(new),
            None => Ok(Event {
                id: 0,
                kind: new.kind.ok_or(EventError::NoKind)?,
                severity: new.severity,
                time_ms: new.time_ms.unwrap_or(0),
                service: new.service,
                title: new.title,
                detail: new.detail,
                undo: new.undo,
            }),
        }
    }
}

/// `HH:MM:SS` (UTC) of a time in ms, for the text lines.
fn clock(ms: Option<i64>) -> String {
    let ms = ms.unwrap_or_else(meshlens_model::time::now_ms);
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
