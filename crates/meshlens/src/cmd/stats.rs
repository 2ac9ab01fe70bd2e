//! `meshlens stats` (being built).

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`meshlens stats` is not available in this build yet")
}
