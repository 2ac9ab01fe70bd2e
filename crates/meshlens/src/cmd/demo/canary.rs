//! `meshlens demo --canary[=bad|good]`: a progressive rollout of http-lb v2 over the demo's
//! own mesh, run by the same engine as `meshlens rollout`. After a minute of the demo's usual
//! 95/5 split (the judge's baseline), the canary gets 10 %, then 10 % more every interval up
//! to 50 %, while the server's judge compares v2 with v1 over the last two intervals. With
//! `bad` (the default), v2's inbound proxy gets a latency and error fault after the first
//! passing check, so the next checks fail and the rollout rolls back to 100 % v1; with `good`,
//! v2 stays healthy and is promoted.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use meshlens_verify::events::{EventKind, EventSink, NewEvent, Severity};
use meshlens_verify::http::{HttpClient, Plain};
use meshlens_verify::meshedit::MeshDir;
use meshlens_verify::rollout::http::{HttpEventSink, HttpJudge};
use meshlens_verify::rollout::{BoxFuture, Judge, JudgeAnswer, JudgeRequest, RolloutSpec};
use serde_yaml_ng::Value;

/// Which canary the demo rolls out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CanaryMode {
    /// v2 degrades partway (latency and errors) and is rolled back automatically.
    Bad,
    /// v2 stays healthy and is promoted.
    Good,
}

/// The canary weight after whose check the bad canary degrades.
const DEGRADE_AFTER_WEIGHT: u32 = 10;

/// Runs the rollout in the background; its steps, verdicts and outcome go to the server's
/// event timeline and to stdout.
pub fn spawn(
    mode: CanaryMode,
    interval: Duration,
    demo_dir: &Path,
    server_url: &str,
) -> tokio::task::JoinHandle<()> {
    let mesh = MeshDir::new(demo_dir.join("mesh").join("outbound"));
    let v2_inbound = MeshDir::new(demo_dir.join("mesh").join("inbound-http-lb-v2"));
    let server = server_url.to_string();
    tokio::spawn(async move {
        let Some(events) = HttpEventSink::start(HttpClient::plain(), &server) else {
            return;
        };
        let mut spec = RolloutSpec::new("http-lb", "v1", "v2");
        spec.interval = interval;
        let mut http_judge = HttpJudge::new(HttpClient::plain(), &server);
        // Two intervals, in six points per version: enough for the Mann-Whitney test to
        // reach 98 %, and recent enough that a canary degrading is failed before it reaches
        // the maximum weight (with intervals of 30 s or more; the demo scrapes every 5 s).
        let window = (interval * 2).max(Duration::from_secs(60));
        http_judge.params = vec![
            ("window".into(), format!("{}s", window.as_secs())),
            (
                "step".into(),
                format!("{}s", (window.as_secs() / 6).max(10)),
            ),
            ("min_requests".into(), "20".into()),
        ];
        let judge = DemoJudge {
            inner: http_judge,
            mode,
            v2_inbound,
            events: &events,
            degraded: AtomicBool::new(false),
        };
        // The judge's baseline, and long enough for the anomaly models to warm up first.
        let baseline = window.max(Duration::from_secs(90));
        println!(
            "demo canary: {}s of the 95/5 split first, as a baseline",
            baseline.as_secs()
        );
        tokio::time::sleep(baseline).await;
        println!(
            "demo canary: rolling out http-lb v2 ({mode:?}): +{}% every {}s up to {}%, rollback after {} failed checks",
            spec.step,
            interval.as_secs(),
            spec.max,
            spec.threshold
        );
        let hooks = HttpClient::plain();
        match meshlens_verify::rollout::run(&mesh, &spec, &judge, &hooks, &events).await {
            Ok(report) => println!(
                "demo canary: {} (weights now {}; {} checks, {} failed)",
                serde_json::to_value(&report.outcome)
                    .ok()
                    .and_then(|v| v["outcome"].as_str().map(String::from))
                    .unwrap_or_default(),
                serde_json::to_string(&report.weights).unwrap_or_default(),
                report.checks,
                report.failed_checks
            ),
            Err(e) => eprintln!("demo canary: the rollout could not start: {e}"),
        }
        events.close(Duration::from_secs(5)).await;
    })
}

/// The server's judge; for the bad canary it also degrades v2 after a passing check at
/// [`DEGRADE_AFTER_WEIGHT`], as a release that goes wrong under more traffic.
struct DemoJudge<'a> {
    inner: HttpJudge<Plain>,
    mode: CanaryMode,
    v2_inbound: MeshDir,
    events: &'a HttpEventSink,
    degraded: AtomicBool,
}

impl Judge for DemoJudge<'_> {
    fn judge<'a>(&'a self, req: &'a JudgeRequest) -> BoxFuture<'a, Result<JudgeAnswer, String>> {
        Box::pin(async move {
            let answer = self.inner.judge(req).await;
            if self.mode == CanaryMode::Bad
                && req.weight >= DEGRADE_AFTER_WEIGHT
                && !self.degraded.swap(true, Ordering::SeqCst)
            {
                match degrade(&self.v2_inbound) {
                    Ok(diff) => {
                        println!("demo canary: http-lb v2 degrades now (400 ms delay, 20 % 503s)");
                        let _ = self.events.record(NewEvent {
                            kind: Some(EventKind::Config),
                            severity: Severity::Warning,
                            service: Some("http-lb".into()),
                            title:
                                "demo: fault injected into http-lb v2 (400 ms delay, 20 % aborts)"
                                    .into(),
                            detail: serde_json::json!({"version": "v2", "diff": diff}),
                            ..Default::default()
                        });
                    }
                    Err(e) => eprintln!("demo canary: could not degrade v2: {e}"),
                }
            }
            answer
        })
    }
}

/// Adds a fault to v2's inbound route: every request delayed, a fifth aborted with 503.
fn degrade(inbound: &MeshDir) -> Result<String, String> {
    let vs = inbound
        .objects()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|o| o.kind == "VirtualService")
        .ok_or("v2's inbound proxy has no VirtualService")?;
    let mut v = vs.value.clone();
    let fault: Value = serde_yaml_ng::from_str(
        "{delay: {fixedDelay: 400ms, percentage: {value: 100}}, abort: {httpStatus: 503, percentage: {value: 20}}}",
    )
    .map_err(|e| e.to_string())?;
    let Some(routes) = v["spec"]["http"].as_sequence_mut() else {
        return Err("v2's inbound VirtualService has no http routes".into());
    };
    for r in routes {
        r["fault"] = fault.clone();
    }
    let yaml = serde_yaml_ng::to_string(&v).map_err(|e| e.to_string())?;
    let plan = inbound
        .plan_replace(&vs, &yaml)
        .map_err(|e| e.to_string())?;
    inbound.apply(&plan).map_err(|e| e.to_string())?;
    Ok(plan.diff)
}
