//! `meshlens bench tsdb-write`.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("this benchmark is not available in this build yet")
}
