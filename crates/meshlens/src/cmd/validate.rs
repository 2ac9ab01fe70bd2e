//! `meshlens validate -f FILE|DIR ...`: Kiali-style checks over Istio (and Kubernetes) YAML,
//! for CI: findings grouped by object, and a non-zero exit when any is an error.

use std::path::PathBuf;

use anyhow::bail;
use meshlens_mesh::validate;

#[derive(clap::Args)]
pub struct Args {
    /// A YAML file or a directory of them (read recursively); repeatable. Default: `.`.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// `text` (grouped by object) or `json` (the same report as GET /api/v1/validations).
    #[arg(long, short = 'o', default_value = "text", value_parser = ["text", "json"])]
    output: String,
    /// Istio's root namespace, where mesh-wide policies live.
    #[arg(long, default_value = "istio-system")]
    root_namespace: String,
    /// Whether auto mTLS is on; default: read from the istio ConfigMap if given, else on.
    #[arg(long)]
    auto_mtls: Option<bool>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let files = if args.files.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.files
    };
    let opts = validate::Options {
        root_namespace: args.root_namespace,
        auto_mtls: args.auto_mtls,
    };
    let report = validate::validate_paths_with(&files, &opts);
    match args.output.as_str() {
        "json" => println!("{}", validate::to_json(&report)),
        _ => print!("{}", validate::to_text(&report)),
    }
    if report.has_errors() {
        // The report is already printed; the error only sets the exit status for CI.
        bail!("{} error(s) found", report.errors);
    }
    Ok(())
}
