//! The proxy alone, as a sidecar ships it: the same flags as `meshlens proxy`, in a binary
//! that holds only the data plane's code, so an idle sidecar keeps few pages resident.

#[path = "../logging.rs"]
mod logging;
#[path = "../cmd/proxy.rs"]
mod proxy;

use clap::Parser;

/// Every proxied request allocates a dozen or so small and a few multi-kilobyte blocks
/// (request futures, read buffers) and frees them on another path: under
/// `bench/proxy-instructions` glibc spent about 300 instructions on each such pair, and
/// mimalloc's thread-local free lists cut the request path by 11 %. Built without
/// transparent huge pages (`no_thp`): with them every thread's first arena page grew to
/// 2 MiB resident, 17 MiB idle instead of 10.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
