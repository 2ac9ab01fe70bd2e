//! `meshlens slo FILE [-o OUT]`: turns an SLO file into a Prometheus rule file of
//! multi-window, multi-burn-rate alerts (printed, or written to OUT).

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The SLO file (`slos:` with `service`, `namespace`, `objective`, `latency`, `window`).
    file: PathBuf,
    /// Write the rule file here instead of standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let name = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {name}"))?;
    let slos = meshlens_slo::parse_slo_file(&text, &name)?;
    let rules = meshlens_slo::rules_yaml(&slos);
    match args.output {
        Some(out) => {
            std::fs::write(&out, rules).with_context(|| format!("writing {}", out.display()))?
        }
        None => print!("{rules}"),
    }
    Ok(())
}
