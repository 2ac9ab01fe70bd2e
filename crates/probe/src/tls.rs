//! TLS for the probes (rustls on *ring*, as every meshlens client): the client configuration a
//! probe's TLS settings ask for, the handshake, and blackbox_exporter's certificate series
//! from the peer's chain. As blackbox does, a handshake that fails verification reports no
//! certificate series at all.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use meshlens_access::client_tls::{parse_server_name, read_certs, system_root_certs};
use meshlens_access::{ClientTls, ClientTlsError};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::TlsSettings;
use crate::measured::Measured;
use crate::x509::{hex, parse_cert, CertInfo};

/// Go's zero `time.Time` as Unix seconds: what blackbox reports for an expiry it could not
/// compute (e.g. the last verified chain under `insecure_skip_verify`).
const GO_ZERO_TIME: f64 = -62_135_596_800.0;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading CA file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CA file {path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{0:?} is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

impl From<ClientTlsError> for TlsError {
    fn from(e: ClientTlsError) -> Self {
        match e {
            ClientTlsError::Read { path, source, .. } => TlsError::Read { path, source },
            ClientTlsError::Pem { path, reason, .. } => TlsError::Pem { path, reason },
            ClientTlsError::ServerName(n) => TlsError::ServerName(n),
            ClientTlsError::Rustls(e) => TlsError::Rustls(e),
            // A probe presents no client certificate, so this cannot arise.
            e @ ClientTlsError::CertWithoutKey => {
                TlsError::Rustls(rustls::Error::General(e.to_string()))
            }
        }
    }
}

/// The certificates of a CA file; at least one.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    Ok(read_certs("ca_file", path)?)
}

pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    Ok(parse_server_name(name)?)
}

/// Trusted roots, with their parsed fields for chain expiry.
pub(crate) struct Roots {
    store: Arc<RootCertStore>,
    certs: Vec<(Vec<u8>, CertInfo)>,
}

impl Roots {
    fn from_certs(certs: Vec<CertificateDer<'static>>) -> Roots {
        let parsed = certs
            .iter()
            .filter_map(|c| parse_cert(c).ok().map(|info| (c.to_vec(), info)))
            .collect();
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(certs);
        Roots {
            store: Arc::new(store),
            certs: parsed,
        }
    }
}

/// The system's roots, loaded once per process.
fn native_roots() -> Arc<Roots> {
    static ROOTS: OnceLock<Arc<Roots>> = OnceLock::new();
    ROOTS
        .get_or_init(|| Arc::new(Roots::from_certs(system_root_certs())))
        .clone()
}

/// A probe's client: its rustls config and the roots it trusts (none under
/// `insecure_skip_verify`).
pub(crate) struct Client {
    pub config: Arc<ClientConfig>,
    roots: Option<Arc<Roots>>,
}

/// Builds the client for one probe; `alpn` is what the prober offers (HTTP offers h2, as Go's
/// transport does; the TCP prober offers nothing). The roots are kept here, not only in the
/// rustls config, to follow the verified chain for its expiry.
pub(crate) fn client(settings: &TlsSettings, alpn: &[&[u8]]) -> Result<Client, TlsError> {
    let roots = match (&settings.ca_file, settings.insecure_skip_verify) {
        (_, true) => None,
        (Some(path), false) => Some(Arc::new(Roots::from_certs(read_ca_file(path)?))),
        (None, false) => Some(native_roots()),
    };
    let tls = ClientTls {
        insecure_skip_verify: settings.insecure_skip_verify,
        ..ClientTls::default()
    };
    let store = roots
        .as_ref()
        .map_or_else(|| Arc::new(RootCertStore::empty()), |r| r.store.clone());
    let mut config = tls.client_config_with_roots(store)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Client {
        config: Arc::new(config),
        roots,
    })
}

/// What a finished handshake tells the probe.
pub(crate) struct TlsState {
    version: &'static str,
    peer: Vec<CertificateDer<'static>>,
    roots: Option<Arc<Roots>>,
    pub alpn_h2: bool,
}

/// Runs the handshake over `tcp`, verifying `name`.
pub(crate) async fn handshake(
    client: &Client,
    name: &str,
    tcp: TcpStream,
) -> Result<(TlsStream<TcpStream>, TlsState), String> {
    let sni = server_name(name).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(client.config.clone());
    let stream = connector
        .connect(sni, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let conn = stream.get_ref().1;
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
        Some(rustls::ProtocolVersion::TLSv1_1) => "TLS 1.1",
        Some(rustls::ProtocolVersion::TLSv1_0) => "TLS 1.0",
        _ => "unknown",
    };
    let state = TlsState {
        version,
        peer: conn
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
        roots: client.roots.clone(),
        alpn_h2: conn.alpn_protocol() == Some(b"h2"),
    };
    Ok((stream, state))
}

/// Registers blackbox's certificate series for a completed handshake.
pub(crate) fn record(m: &mut Measured, state: &TlsState) {
    let parsed: Vec<CertInfo> = state
        .peer
        .iter()
        .filter_map(|c| parse_cert(c).ok())
        .collect();
    let earliest = parsed.iter().map(|c| c.not_after).min();
    m.set(
        "probe_ssl_earliest_cert_expiry",
        earliest.map_or(GO_ZERO_TIME, |t| t as f64),
    );
    m.set_with(
        "probe_tls_version_info",
        vec![("version", state.version.to_string())],
        1.0,
    );
    let chain = state
        .roots
        .as_ref()
        .and_then(|roots| chain_expiry(&state.peer, &parsed, roots));
    m.set(
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        chain.map_or(GO_ZERO_TIME, |t| t as f64),
    );
    if let Some(der) = state.peer.first() {
        if let Ok(leaf) = parse_cert(der) {
            let fingerprint = ring::digest::digest(&ring::digest::SHA256, der);
            m.set_with(
                "probe_ssl_last_chain_info",
                vec![
                    ("fingerprint_sha256", hex(fingerprint.as_ref())),
                    ("subject", leaf.subject),
                    ("issuer", leaf.issuer),
                    ("subjectalternative", leaf.dns_names.join(",")),
                ],
                1.0,
            );
        }
    }
}

/// The earliest `notAfter` along the verified path from the leaf: presented certificates up
/// to a trusted root (included, as Go's verified chains include it). One path is followed,
/// where Go takes the latest over every path it verified; they differ only for cross-signed
/// roots.
fn chain_expiry(peer: &[CertificateDer<'_>], parsed: &[CertInfo], roots: &Roots) -> Option<i64> {
    let leaf_der = peer.first()?;
    let leaf = parse_cert(leaf_der).ok()?;
    let mut earliest = leaf.not_after;
    if roots
        .certs
        .iter()
        .any(|(der, _)| der.as_slice() == leaf_der.as_ref())
    {
        return Some(earliest);
    }
    let mut used = vec![false; parsed.len()];
    let mut current = leaf;
    for _ in 0..16 {
        if current.subject_der == current.issuer_der {
            break;
        }
        if let Some((_, root)) = roots
            .certs
            .iter()
            .find(|(_, r)| r.subject_der == current.issuer_der)
        {
            earliest = earliest.min(root.not_after);
            break;
        }
        let next = parsed
            .iter()
            .enumerate()
            .skip(1)
            .find(|(i, c)| !used[*i] && c.subject_der == current.issuer_der);
        match next {
            Some((i, c)) => {
                used[i] = true;
                earliest = earliest.min(c.not_after);
                current = c.clone();
            }
            None => break,
        }
    }
    Some(earliest)
}
