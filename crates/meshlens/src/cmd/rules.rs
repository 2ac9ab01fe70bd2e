//! `meshlens test rules FILE...`, `meshlens check rules FILE...` and `meshlens check config
//! FILE...`: promtool's commands of the same names, with its output and exit codes (0 ok,
//! 1 failed, 3 lint findings with `--lint-fatal`), so CI scripts switch tools unchanged.

use std::io::Write;
use std::time::Duration;

use meshlens_rules::check::{self, ConfigInfo, LintConfig, DEFAULT_LINT};
use meshlens_rules::unittest;

#[derive(clap::Args)]
pub struct TestArgs {
    /// promtool's feature flags, comma-separated and repeatable: `promql-delayed-name-removal`
    /// keeps `__name__` until a query's result is complete. Unknown names get a warning.
    #[arg(long = "enable-feature", value_name = "FEATURE,...", global = true)]
    enable_feature: Vec<String>,
    #[command(subcommand)]
    command: TestCommand,
}

#[derive(clap::Subcommand)]
enum TestCommand {
    /// Run promtool-format rule unit tests (input_series, alert_rule_test, promql_expr_test).
    ///
    /// Queries use Prometheus 2's range windows by default, as promtool 2.x does: a range
    /// selector `x[5m]` at time t holds the samples in [t-5m, t] and the lookback sees a
    /// sample exactly 5m old, so the same files pass or fail with both tools.
    Rules {
        /// Evaluate with Prometheus 3's left-open windows (t-5m, t], as `meshlens server`
        /// does: a sample exactly at a window's start no longer counts.
        #[arg(long = "promql.left-open-ranges")]
        left_open_ranges: bool,
        /// Unit-test files.
        files: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(subcommand)]
    command: CheckCommand,
}

#[derive(clap::Args)]
struct LintArgs {
    /// Lints to run, comma-separated: all, none, duplicate-rules (promtool's), and
    /// meshlens's alert-without-for, short-rate-window, dropped-labels.
    #[arg(long, default_value = DEFAULT_LINT)]
    lint: String,
    /// Exit with 3 when a lint finds something.
    #[arg(long)]
    lint_fatal: bool,
    /// The scrape interval rate() windows are compared with (4× it at least). Default:
    /// Prometheus's default global scrape_interval.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    scrape_interval: Duration,
}

#[derive(clap::Subcommand)]
enum CheckCommand {
    /// Validate rule files as promtool does, plus meshlens's lints (as warnings).
    Rules {
        #[command(flatten)]
        lint: LintArgs,
        /// Rule files.
        files: Vec<String>,
    },
    /// Validate Prometheus config files and every rule file their rule_files name.
    Config {
        #[command(flatten)]
        lint: LintArgs,
        /// Config files.
        files: Vec<String>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    meshlens_rules::parse_duration(s)
}

pub fn run_test(args: TestArgs) -> anyhow::Result<()> {
    let TestCommand::Rules {
        files,
        left_open_ranges,
    } = args.command;
    check_files("test-rule-file", &files);
    let features = super::features::Features::parse(&args.enable_feature);
    for f in &features.unknown {
        // promtool's words (on stdout, where it prints them).
        println!("  WARNING: Unknown feature passed to --enable-feature: {f}");
    }
    let opts = unittest::TestOptions {
        closed_ranges: !left_open_ranges,
        delayed_name_removal: features.delayed_name_removal,
    };
    // Rule evaluation logs its failures; here they are the test's output already.
    let code = quiet(|| {
        unittest::run_files(
            &files,
            &opts,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )
    })?;
    exit(code)
}

/// Runs `f` with logging off on this thread, so stderr holds only promtool's output.
fn quiet<T>(f: impl FnOnce() -> T) -> T {
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), f)
}

pub fn run_check(args: CheckArgs) -> anyhow::Result<()> {
    let (lint_args, files, config) = match args.command {
        CheckCommand::Rules { lint, files } => (lint, files, false),
        CheckCommand::Config { lint, files } => (lint, files, true),
    };
    check_files(if config { "config-files" } else { "rule-files" }, &files);
    let (lint, unknown) = LintConfig::parse(
        &lint_args.lint,
        lint_args.lint_fatal,
        lint_args.scrape_interval,
    );
    let code = quiet(|| -> std::io::Result<i32> {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for u in unknown {
            writeln!(out, "WARNING: unknown lint option {u}")?;
        }
        if config {
            let parsed: Vec<(String, Result<ConfigInfo, String>)> =
                files.iter().map(|f| (f.clone(), read_config(f))).collect();
            check::check_configs(&parsed, &lint, &mut out, &mut err)
        } else {
            check::check_rules(&files, &lint, &mut out, &mut err)
        }
    })?;
    exit(code)
}

/// A config file's `rule_files`, read with the server's own parser.
fn read_config(file: &str) -> Result<ConfigInfo, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("open {file}: {e}"))?;
    let (cfg, warnings) = meshlens_server::config::parse(&text, file).map_err(|e| e.to_string())?;
    if let Some(k) = check::unknown_prometheus_keys(&text).first() {
        return Err(format!(
            "parsing YAML file {file}: yaml: unmarshal errors:\n  field {k} not found in type config.plain"
        ));
    }
    Ok(ConfigInfo {
        rule_files: cfg.rule_files,
        warnings,
    })
}

/// promtool's argument checks (kingpin's `ExistingFiles`): at least one file, each an
/// existing file; otherwise an error and exit 1, before anything runs.
fn check_files(what: &str, files: &[String]) {
    let problem = if files.is_empty() {
        Some(format!("required argument '{what}' not provided"))
    } else {
        files.iter().find_map(|f| match std::fs::metadata(f) {
            Err(_) => Some(format!("path '{f}' does not exist")),
            Ok(m) if m.is_dir() => Some(format!("'{f}' is a directory")),
            Ok(_) => None,
        })
    };
    if let Some(p) = problem {
        eprintln!("meshlens: error: {p}, try --help");
        std::process::exit(1);
    }
}

/// Exits with promtool's code once everything printed is flushed.
fn exit(code: i32) -> anyhow::Result<()> {
    std::io::stdout().flush()?;
    std::io::stderr().flush()?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
