//! The proxy alone, as a sidecar ships it: the same flags as `meshlens proxy`, in a binary
//! that holds only the data plane's code, so an idle sidecar keeps few pages resident.

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHLENS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    proxy::run(Cli::parse().args)
}
