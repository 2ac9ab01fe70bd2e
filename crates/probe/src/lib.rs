//! Blackbox probes: HTTP, TCP and TLS-certificate checks that produce blackbox_exporter's
//! series, so alert rules and dashboards written for it work unchanged.
//!
//! - [`parse_probes`] / [`parse_probes_file`]: the `probes:` config (blackbox's module fields
//!   inline in each probe), every unknown field an error naming its path.
//! - [`probe_once`]: one probe of one target, as the series blackbox's `/probe` would return
//!   for it, labelled `job` (the probe's name), `instance` (the target) and the config labels.
//! - [`ProbeManager`]: one timer per target writing those series into a
//!   [`MetricWriter`](meshlens_model::MetricWriter), with staleness markers for series that
//!   disappear, and reloads that leave unchanged targets' timers alone.
//!
//! Design decision: the probers mirror blackbox_exporter 0.23's code paths, not only its metric
//! names: a series exists once blackbox would have registered it, a failed probe keeps what
//! it measured, and a TLS verification failure reports no certificate series, so a rule such
//! as `probe_ssl_earliest_cert_expiry - time() < 86400 * 14` behaves exactly as it does on
//! blackbox. A differential test against the real blackbox_exporter holds us to it.
//!
//! Config shape (module `tcp` takes `tcp: {tls: true}` and the `tls:` block; module `tls` is
//! blackbox's `tcp` prober with TLS on):
//!
//! ```yaml
//! probes:
//!   - name: shop-home
//!     module: http            # http | tcp | tls
//!     targets: ["https://127.0.0.1:8443/health"]
//!     interval: 15s           # default 30s
//!     timeout: 5s             # default 5s, shorter than interval
//!     labels: {team: web}
//!     http: {valid_status_codes: [200], tls_config: {ca_file: ca.pem}}
//! ```

mod config;
mod duration;
mod http;
mod http_conn;
mod httpdate;
mod manager;
mod measured;
mod resolve;
mod target;
mod tcp;
mod tls;
mod x509;

use std::time::Instant;

pub use config::{
    parse_probes, parse_probes_file, BodyRegex, HttpProbe, ProbeConfig, ProbeConfigError,
    ProbeModule, TcpProbe, TlsSettings,
};
pub use manager::ProbeManager;

use measured::Measured;

/// One probe of one target: blackbox_exporter's series (labels `job`, `instance` = target,
/// plus the config's labels; `__name__` set), each with one sample at `ts_ms`. Never fails:
/// a probe that could not run reports `probe_success 0` and whatever it measured.
pub async fn probe_once(
    cfg: &ProbeConfig,
    target: &str,
    ts_ms: i64,
) -> Vec<meshlens_model::TimeSeries> {
    let start = Instant::now();
    let (success, mut m) = match &cfg.module {
        ProbeModule::Http(h) => {
            let mut run = http::HttpRun::default();
            let ok = within(cfg, target, run.run(h, target)).await;
            (ok, run.into_measured())
        }
        ProbeModule::Tcp(t) => {
            let mut m = Measured::default();
            let tls = t.tls.then_some(&t.tls_config);
            let ok = within(cfg, target, tcp::probe_tcp(target, tls, &mut m)).await;
            (ok, m)
        }
        ProbeModule::Tls(settings) => {
            let mut m = Measured::default();
            let ok = within(cfg, target, tcp::probe_tcp(target, Some(settings), &mut m)).await;
            (ok, m)
        }
    };
    m.set("probe_success", if success { 1.0 } else { 0.0 });
    m.set("probe_duration_seconds", start.elapsed().as_secs_f64());
    m.into_series(cfg, target, ts_ms)
}

/// Runs a prober under the probe's timeout; a timed-out probe has failed, and keeps what it
/// measured because the prober's state lives outside the cancelled future.
async fn within(
    cfg: &ProbeConfig,
    target: &str,
    probe: impl std::future::Future<Output = bool>,
) -> bool {
    match tokio::time::timeout(cfg.timeout, probe).await {
        Ok(ok) => ok,
        Err(_) => {
            tracing::debug!(job = %cfg.name, target, timeout = ?cfg.timeout, "probe timed out");
            false
        }
    }
}
