//! The proxy alone, as a sidecar ships it: the same flags as `meshlens proxy`, in a binary
//! that holds only the data plane's code, so an idle sidecar keeps few pages resident.

#[path = "../logging.rs"]
mod logging;
#[path = "../cmd/proxy.rs"]
mod proxy;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "meshlens-proxy",
    version,
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
