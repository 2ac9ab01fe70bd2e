//! The proxy alone, as a sidecar ships it: the same flags as `meshlens proxy`, in a binary
//! that holds only the data plane's code, so an idle sidecar keeps few pages resident.

#[path = "../logging.rs"]
mod logging;
#[path = "../cmd/proxy.rs"]
mod proxy;

use clap::Parser;

/// No `--version` flag of its own: `--version` is the workload's version, as in
/// `meshlens proxy`.
#[derive(Parser)]
#[command(
    name = "meshlens-proxy",
    about = "The meshlens sidecar / ingress proxy"
)]
struct Cli {
    #[command(flatten)]
    args: proxy::Args,
}

fn main() -> anyhow::Result<()> {
    logging::init();
    proxy::run(Cli::parse().args)
}

#[cfg(test)]
mod tests {
    /// clap's own checks of the command (duplicate flags and the like).
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
