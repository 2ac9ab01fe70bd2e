//! `meshlens bench …`: load generators and engine benchmarks driven by the `bench/` scripts.

mod istio_mesh;
mod labels;
mod remote_write;
mod spans;
mod tsdb_write;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    which: Which,
}

#[derive(clap::Subcommand)]
enum Which {
    /// The TSDB append path alone, fed the same label file as `promtool tsdb bench write`.
    TsdbWrite(tsdb_write::Args),
    /// A remote-write load generator with realistic counters and gauges.
    RemoteWrite(remote_write::Args),
    /// Span ingest and query load against a server.
    Spans(spans::Args),
    /// A whole mesh's Istio metrics (both reporters, two pods per workload), remote-written.
    IstioMesh(istio_mesh::Args),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.which {
        Which::TsdbWrite(a) => tsdb_write::run(a),
        Which::RemoteWrite(a) => remote_write::run(a),
        Which::Spans(a) => spans::run(a),
        Which::IstioMesh(a) => istio_mesh::run(a),
    }
}
