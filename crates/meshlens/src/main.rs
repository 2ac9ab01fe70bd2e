//! The meshlens command line: a thin layer over the library crates. Each subcommand lives in
//! its own module under `cmd/` and turns library errors into messages with context.

mod cmd;
mod footprint;
mod httpc;
mod logging;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "meshlens",
    version,
    about = "One binary for metrics, traces, the service graph and the data plane of a service mesh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the server's flag set costs nothing worth boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the hub: scrape, remote_write, trace ingest, storage and the query APIs.
    Server(cmd::server::Args),
    /// Run a per-cluster agent: collect, stamp the cluster, buffer durably, forward to hubs.
    Agent(cmd::agent::Args),
    /// Backfill history into a data directory.
    Import(cmd::import::Args),
    /// Run a PromQL query against a server and print the result.
    Query(cmd::query::Args),
    /// Run the sidecar / ingress proxy with Istio routing rules.
    Proxy(cmd::proxy::Args),
    /// The mesh CA: `ca init` makes a root, `ca issue --ns NS --sa SA` a workload certificate.
    Ca(cmd::ca::Args),
    /// Start a server, a proxied demo mesh and a load generator on loopback.
    Demo(cmd::demo::Args),
    /// Search traces and show one as a waterfall.
    Traces(cmd::traces::Args),
    /// The service graph (from metrics or traces) as a table of edges or Graphviz dot.
    Graph(cmd::graph::Args),
    /// Clover-style traffic statistics: URLs, services, status codes, user agents.
    Stats(cmd::stats::Args),
    /// Check Istio (and Kubernetes) YAML for mistakes, with Kiali's codes.
    Validate(cmd::validate::Args),
    /// Judge a canary version against its baseline (exit 0 pass, 1 fail, 3 inconclusive).
    Verify(cmd::verify::Args),
    /// Shift traffic to a canary step by step, judging it each interval (Flagger's model).
    Rollout(cmd::rollout::Args),
    /// List remediation actions, or undo one (`remediation undo ID`).
    Remediation(cmd::remediation::Args),
    /// Generate multi-window, multi-burn-rate SLO alerting rules for mesh services.
    Slo(cmd::slo::Args),
    /// Run rule unit tests: `test rules FILE...` (promtool's format, output and exit codes).
    Test(cmd::rules::TestArgs),
    /// Validate `rules FILE...` or `config FILE...` as promtool does, with extra lints.
    Check(cmd::rules::CheckArgs),
    /// Load generators and engine benchmarks used by the bench/ scripts.
    Bench(cmd::bench::Args),
}

fn main() -> anyhow::Result<()> {
    logging::init();
    let cli = Cli::parse();
    match cli.command {
        Command::Server(a) => cmd::server::run(a),
        Command::Agent(a) => cmd::agent::run(a),
        Command::Import(a) => cmd::import::run(a),
        Command::Query(a) => cmd::query::run(a),
        Command::Proxy(a) => {
            exec_sidecar_binary();
            cmd::proxy::run(a)
        }
        Command::Ca(a) => cmd::ca::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Traces(a) => cmd::traces::run(a),
        Command::Graph(a) => cmd::graph::run(a),
        Command::Stats(a) => cmd::stats::run(a),
        Command::Validate(a) => cmd::validate::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Rollout(a) => cmd::rollout::run(a),
        Command::Remediation(a) => cmd::remediation::run(a),
        Command::Slo(a) => cmd::slo::run(a),
        Command::Test(a) => cmd::rules::run_test(a),
        Command::Check(a) => cmd::rules::run_check(a),
        Command::Bench(a) => cmd::bench::run(a),
    }
}

/// `meshlens proxy` becomes `meshlens-proxy` (built beside this binary) with the same flags
/// and the same process id: a sidecar then keeps only the data plane's code resident, 8 MiB
/// idle instead of 14. Without it (or with `MESHLENS_PROXY_EXEC=0`) the proxy runs here.
fn exec_sidecar_binary() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("MESHLENS_PROXY_EXEC").is_some_and(|v| v == "0") {
            return;
        }
        let Some(sidecar) = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("meshlens-proxy")))
            .filter(|p| p.is_file())
        else {
            return;
        };
        // No global flags: everything after `proxy` belongs to it.
        let err = std::process::Command::new(&sidecar)
            .args(std::env::args_os().skip(2))
            .exec();
        tracing::debug!(path = %sidecar.display(), error = %err, "running the proxy in this process");
    }
}
