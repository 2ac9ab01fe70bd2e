//! `meshlens demo`.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`meshlens demo` is not available in this build yet")
}
