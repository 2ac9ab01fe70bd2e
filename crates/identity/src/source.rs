//! A workload's certificate, key and mesh root read from a directory (Istio's
//! `cert-chain.pem`, `key.pem`, `root-cert.pem`) and re-read when the files change.
//!
//! Handshakes pick the current snapshot when they start (the source is the rustls certificate
//! resolver and the verifiers' trust store), so a rotation applies to new connections while
//! the ones already open keep their session. A half-written or mismatched set of files is
//! logged and ignored: the last good snapshot keeps serving.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::ca::{CERT_CHAIN, KEY, ROOT_CERT};
use crate::{provider, spiffe_of, IdentityError, SpiffeId};

/// One consistent reading of the three files.
#[derive(Debug)]
pub struct Snapshot {
    pub certified: Arc<CertifiedKey>,
    pub roots: Arc<RootCertStore>,
    /// The identity the certificate proves.
    pub id: SpiffeId,
    /// The leaf's serial number (big-endian bytes as in the certificate).
    pub serial: Vec<u8>,
    fingerprint: u64,
}

/// See the module doc.
#[derive(Debug)]
pub struct CertSource {
    dir: PathBuf,
    current: RwLock<Arc<Snapshot>>,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, IdentityError> {
    let p = dir.join(name);
    std::fs::read(&p).map_err(|source| IdentityError::Io { path: p, source })
}

fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

impl CertSource {
    /// Reads the files in `dir`; fails unless all three are there and consistent.
    pub fn load(dir: impl Into<PathBuf>) -> Result<Arc<CertSource>, IdentityError> {
        let dir = dir.into();
        let snap = Self::read_snapshot(&dir)?;
        Ok(Arc::new(CertSource {
            dir,
            current: RwLock::new(Arc::new(snap)),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshot new handshakes use.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    fn read_snapshot(dir: &Path) -> Result<Snapshot, IdentityError> {
        let chain_bytes = read(dir, CERT_CHAIN)?;
        let key_bytes = read(dir, KEY)?;
        let root_bytes = read(dir, ROOT_CERT)?;
        Self::parse(dir, &chain_bytes, &key_bytes, &root_bytes)
    }

    fn parse(
        dir: &Path,
        chain_bytes: &[u8],
        key_bytes: &[u8],
        root_bytes: &[u8],
    ) -> Result<Snapshot, IdentityError> {
        let bad = |name: &str, reason: String| IdentityError::BadFile {
            path: dir.join(name),
            reason,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(CERT_CHAIN, e.to_string()))?;
        if chain.is_empty() {
            return Err(bad(CERT_CHAIN, "no PEM certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_bytes).map_err(|e| bad(KEY, e.to_string()))?;
        let mut roots = RootCertStore::empty();
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(root_bytes) {
            let cert = cert.map_err(|e| bad(ROOT_CERT, e.to_string()))?;
            roots.add(cert).map_err(|e| bad(ROOT_CERT, e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad(ROOT_CERT, "no PEM certificate".into()));
        }
        let id = spiffe_of(&chain[0]).ok_or_else(|| {
            bad(
                CERT_CHAIN,
                "the certificate has no spiffe://TRUST_DOMAIN/ns/NS/sa/SA URI name".into(),
            )
        })?;
        let serial = crate::serial_of(&chain[0])
            .ok_or_else(|| bad(CERT_CHAIN, "the certificate does not parse".into()))?;
        let certified = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| bad(KEY, format!("does not match {CERT_CHAIN}: {e}")))?;
        Ok(Snapshot {
            certified: Arc::new(certified),
            roots: Arc::new(roots),
            id,
            serial,
            fingerprint: fingerprint(&[chain_bytes, key_bytes, root_bytes]),
        })
    }

    /// Re-reads the files; returns whether a new snapshot was taken. On an error the current
    /// snapshot stays.
    pub fn reload(&self) -> Result<bool, IdentityError> {
        let chain = read(&self.dir, CERT_CHAIN)?;
        let key = read(&self.dir, KEY)?;
        let root = read(&self.dir, ROOT_CERT)?;
        if fingerprint(&[&chain, &key, &root]) == self.current.read().fingerprint {
            return Ok(false);
        }
        let snap = Self::parse(&self.dir, &chain, &key, &root)?;
        tracing::info!(dir = %self.dir.display(), id = %snap.id, "workload certificate reloaded");
        *self.current.write() = Arc::new(snap);
        Ok(true)
    }

    /// Polls the files every `interval` until `shutdown` turns true.
    pub fn watch(
        self: &Arc<Self>,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut last_error = String::new();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.changed() => return,
                }
                if *shutdown.borrow() {
                    return;
                }
                match this.reload() {
                    Ok(_) => last_error.clear(),
                    Err(e) => {
                        // Once per distinct error: a rotation in progress is normal.
                        let msg = e.to_string();
                        if msg != last_error {
                            tracing::warn!(error = %msg, "workload certificate not reloaded; the previous one stays");
                            last_error = msg;
                        }
                    }
                }
            }
        })
    }
}

impl ResolvesServerCert for CertSource {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().certified.clone())
    }
}

impl ResolvesClientCert for CertSource {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{Ca, DEFAULT_TTL};

    #[test]
    fn reload_takes_new_files_and_keeps_the_old_on_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(&dir.path().join("ca"), "cluster.local").unwrap();
        let out = dir.path().join("certs");
        let first = ca.issue("ns1", "sa1", DEFAULT_TTL).unwrap();
        first.write(&out).unwrap();
        let src = CertSource::load(&out).unwrap();
        assert_eq!(src.current().serial, first.serial);
        assert_eq!(
            src.current().id.to_string(),
            "spiffe://cluster.local/ns/ns1/sa/sa1"
        );
        assert!(
            !src.reload().unwrap(),
            "unchanged files made a new snapshot"
        );

        let second = ca.issue("ns1", "sa1", DEFAULT_TTL).unwrap();
        second.write(&out).unwrap();
        assert!(src.reload().unwrap());
        assert_eq!(src.current().serial, second.serial);

        // A certificate whose key is not (yet) the one beside it is refused.
        let third = ca.issue("ns1", "sa1", DEFAULT_TTL).unwrap();
        std::fs::write(out.join(CERT_CHAIN), &third.cert_pem).unwrap();
        assert!(src.reload().is_err());
        assert_eq!(src.current().serial, second.serial);
        std::fs::write(out.join(KEY), &third.key_pem).unwrap();
        assert!(src.reload().unwrap());
        assert_eq!(src.current().serial, third.serial);
    }

    #[test]
    fn load_fails_without_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            CertSource::load(dir.path()),
            Err(IdentityError::Io { .. })
        ));
    }
}
