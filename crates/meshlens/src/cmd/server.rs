//! `meshlens server`.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`meshlens server` is not available in this build yet")
}
