//! blackbox_exporter's `tcp` prober without query/response steps: resolve, connect and,
//! with TLS, complete a verified handshake and report the peer's certificates.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::TlsSettings;
use crate::measured::Measured;
use crate::resolve::choose_ip;
use crate::target::parse_host_port;
use crate::tls;

/// Runs the probe; `true` when the connection (and handshake) succeeded.
pub(crate) async fn probe_tcp(
    target: &str,
    tls_settings: Option<&TlsSettings>,
    m: &mut Measured,
) -> bool {
    m.set("probe_failed_due_to_regex", 0.0);
    let (host, port) = match parse_host_port(target) {
        Ok(hp) => hp,
        Err(e) => {
            tracing::debug!(target, error = %e, "probe target is not host:port");
            return false;
        }
    };
    let ip = match choose_ip(&host, m).await.0 {
        Ok(ip) => ip,
        Err(e) => {
            tracing::debug!(target, error = %e, "probe target did not resolve");
            return false;
        }
    };
    let tcp = match TcpStream::connect((ip, port)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(target, error = %e, "probe could not connect");
            return false;
        }
    };
    let Some(settings) = tls_settings else {
        return true;
    };
    let client = match tls::client(settings, &[]) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(target, error = %e, "probe TLS settings unusable");
            return false;
        }
    };
    let name = settings.server_name.as_deref().unwrap_or(&host);
    match tls::handshake(&client, name, tcp).await {
        Ok((mut stream, state)) => {
            tls::record(m, &state);
            // A polite close_notify; the probe has already succeeded either way.
            let _ = stream.shutdown().await;
            true
        }
        Err(e) => {
            tracing::debug!(target, error = %e, "probe TLS handshake failed");
            false
        }
    }
}
