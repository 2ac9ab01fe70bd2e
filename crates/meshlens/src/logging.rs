//! Logs to standard error, filtered by `MESHLENS_LOG` (default `info`), coloured only on a
//! terminal: the same for the `meshlens` binary and the `meshlens-proxy` sidecar.

pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHLENS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
