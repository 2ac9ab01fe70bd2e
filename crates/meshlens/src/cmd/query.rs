//! `meshlens query`.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`meshlens query` is not available in this build yet")
}
