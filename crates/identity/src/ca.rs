//! The mesh CA: a self-signed ECDSA P-256 root kept in a directory, and the short-lived
//! workload certificates it signs, written under Istio's file names so that the proxy (and any
//! Istio tooling) reads them as it reads a mounted `istio-certs` volume.
//!
//! The CA directory holds `root-cert.pem`, `ca-key.pem` and `ca.json` (the trust domain). The
//! root is signed once at `init`; `issue` rebuilds the issuer from the key and the trust
//! domain alone (rcgen signs with the issuer's name and key, which is all a chain needs), so no
//! X.509 parser is needed to load the CA back.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::spiffe::{check_trust_domain, SpiffeId};
use crate::IdentityError;

pub const ROOT_CERT: &str = "root-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const CA_META: &str = "ca.json";
/// Istio's workload certificate files (`/etc/certs` in the sidecar).
pub const CERT_CHAIN: &str = "cert-chain.pem";
pub const KEY: &str = "key.pem";

/// Istio's default workload certificate lifetime.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The root's lifetime (Istio's self-signed root also lives ten years).
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Leaves start slightly in the past so that a peer whose clock is a little behind accepts them.
const BACKDATE: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
struct CaMeta {
    trust_domain: String,
}

/// A loaded CA, ready to sign workload certificates.
pub struct Ca {
    trust_domain: String,
    /// The root rebuilt from its key (same subject and key as the file's; see the module doc).
    issuer: rcgen::Certificate,
    key: KeyPair,
    root_pem: String,
}

/// A freshly signed workload certificate, not yet written anywhere.
#[derive(Debug, Clone)]
pub struct Issued {
    pub id: SpiffeId,
    pub cert_pem: String,
    pub key_pem: String,
    pub root_pem: String,
    pub serial: Vec<u8>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The root's subject: a fixed name within the trust domain, so that it can be rebuilt.
fn root_params(trust_domain: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    dn.push(DnType::CommonName, "meshlens mesh root CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn random_serial() -> Vec<u8> {
    let mut s: [u8; 16] = rand::random();
    // Positive and of a fixed length once DER-encoded.
    s[0] = (s[0] & 0x7f) | 0x10;
    s.to_vec()
}

fn to_offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

/// Writes `text` to `path` through a temporary file and a rename, so that a watcher never
/// reads half a file. `private` files are readable by their owner only.
pub(crate) fn write_atomic(path: &Path, text: &str, private: bool) -> Result<(), IdentityError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{}.tmp", name.unwrap_or_default()));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

impl Ca {
    /// Creates a new CA in `dir` (made if missing). Refuses when any CA file is already there:
    /// a new root would orphan every certificate the old one signed.
    pub fn init(dir: &Path, trust_domain: &str) -> Result<Ca, IdentityError> {
        check_trust_domain(trust_domain)?;
        for name in [ROOT_CERT, CA_KEY, CA_META] {
            let p = dir.join(name);
            if p.exists() {
                return Err(IdentityError::CaExists {
                    dir: dir.to_path_buf(),
                    file: p,
                });
            }
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let key = KeyPair::generate()?;
        let mut params = root_params(trust_domain);
        let now = SystemTime::now();
        params.not_before = to_offset(now - BACKDATE);
        params.not_after = to_offset(now + ROOT_TTL);
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        let root = params.self_signed(&key)?;
        let root_pem = root.pem();
        let meta = serde_json::to_string_pretty(&CaMeta {
            trust_domain: trust_domain.to_string(),
        })
        .expect("a struct of strings serializes");
        // The key first: a directory with a root but no key would look like a CA.
        write_atomic(&dir.join(CA_KEY), &key.serialize_pem(), true)?;
        write_atomic(&dir.join(ROOT_CERT), &root_pem, false)?;
        write_atomic(&dir.join(CA_META), &(meta + "\n"), false)?;
        Ca::from_parts(
            trust_domain.to_string(),
            key,
            root_pem,
            &dir.join(ROOT_CERT),
        )
    }

    /// Loads the CA kept in `dir`.
    pub fn load(dir: &Path) -> Result<Ca, IdentityError> {
        let read = |name: &str| {
            let p = dir.join(name);
            match std::fs::read_to_string(&p) {
                Ok(t) => Ok(t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(IdentityError::NoCa {
                    dir: dir.to_path_buf(),
                    missing: p,
                }),
                Err(e) => Err(io_err(&p)(e)),
            }
        };
        let meta_path = dir.join(CA_META);
        let meta: CaMeta =
            serde_json::from_str(&read(CA_META)?).map_err(|e| IdentityError::BadFile {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?;
        check_trust_domain(&meta.trust_domain)?;
        let key_path = dir.join(CA_KEY);
        let key = KeyPair::from_pem(&read(CA_KEY)?).map_err(|e| IdentityError::BadFile {
            path: key_path,
            reason: e.to_string(),
        })?;
        let root_pem = read(ROOT_CERT)?;
        Ca::from_parts(meta.trust_domain, key, root_pem, &dir.join(ROOT_CERT))
    }

    /// Rebuilds the issuer and checks it is the root on file (same subject and key).
    fn from_parts(
        trust_domain: String,
        key: KeyPair,
        root_pem: String,
        root_path: &Path,
    ) -> Result<Ca, IdentityError> {
        let issuer = root_params(&trust_domain).self_signed(&key)?;
        let bad = |reason: String| IdentityError::BadFile {
            path: root_path.to_path_buf(),
            reason,
        };
        let on_file = CertificateDer::from_pem_slice(root_pem.as_bytes())
            .map_err(|e| bad(format!("no PEM certificate: {e}")))?;
        let on_file =
            webpki::EndEntityCert::try_from(&on_file).map_err(|e| bad(format!("{e:?}")))?;
        let rebuilt = webpki::EndEntityCert::try_from(issuer.der())
            .map_err(|e| bad(format!("rebuilt root: {e:?}")))?;
        if on_file.subject() != rebuilt.subject()
            || on_file.subject_public_key_info().as_ref()
                != rebuilt.subject_public_key_info().as_ref()
        {
            return Err(bad(format!(
                "does not match {CA_KEY} and the trust domain {trust_domain:?} in {CA_META}"
            )));
        }
        Ok(Ca {
            trust_domain,
            issuer,
            key,
            root_pem,
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Signs a certificate for `ns`/`sa` valid from now for `ttl`.
    pub fn issue(&self, ns: &str, sa: &str, ttl: Duration) -> Result<Issued, IdentityError> {
        if ttl.is_zero() {
            return Err(IdentityError::Ttl);
        }
        let now = SystemTime::now();
        self.issue_between(ns, sa, now - BACKDATE, now + ttl)
    }

    /// Signs a certificate for `ns`/`sa` valid over `[not_before, not_after]` (tests use it
    /// for certificates that are already expired).
    pub fn issue_between(
        &self,
        ns: &str,
        sa: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, IdentityError> {
        let id = SpiffeId::new(self.trust_domain.clone(), ns, sa)?;
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        // Istio's workload certificates have an empty subject; the URI SAN is the identity.
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        p.not_before = to_offset(not_before);
        p.not_after = to_offset(not_after);
        let cert = p.signed_by(&key, &self.issuer, &self.key)?;
        Ok(Issued {
            id,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            root_pem: self.root_pem.clone(),
            serial,
            not_before,
            not_after,
        })
    }
}

impl Issued {
    /// Writes `cert-chain.pem`, `key.pem` and `root-cert.pem` into `dir` (made if missing) and
    /// returns their paths. The key goes last and each file is replaced whole, so a watcher
    /// sees either the old pair or, once the key is in, the new one (see
    /// [`crate::CertSource`], which also rejects a certificate that does not match its key).
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, IdentityError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let files = [
            (ROOT_CERT, &self.root_pem, false),
            (CERT_CHAIN, &self.cert_pem, false),
            (KEY, &self.key_pem, true),
        ];
        let mut written = Vec::new();
        for (name, text, private) in files {
            let p = dir.join(name);
            write_atomic(&p, text, private)?;
            written.push(p);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_to_overwrite_and_load_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(dir.path(), "example.org").unwrap();
        assert_eq!(ca.trust_domain(), "example.org");
        assert!(matches!(
            Ca::init(dir.path(), "example.org"),
            Err(IdentityError::CaExists { .. })
        ));
        let loaded = Ca::load(dir.path()).unwrap();
        assert_eq!(loaded.root_pem(), ca.root_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the CA key is readable by others");
        }
    }

    #[test]
    fn load_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        match Ca::load(dir.path()) {
            Err(IdentityError::NoCa { missing, .. }) => {
                assert!(missing.ends_with(CA_META), "{missing:?}")
            }
            other => panic!("expected NoCa, got {:?}", other.err()),
        }
    }

    #[test]
    fn load_rejects_a_key_of_another_ca() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        Ca::init(a.path(), "cluster.local").unwrap();
        Ca::init(b.path(), "cluster.local").unwrap();
        std::fs::copy(b.path().join(CA_KEY), a.path().join(CA_KEY)).unwrap();
        assert!(matches!(
            Ca::load(a.path()),
            Err(IdentityError::BadFile { .. })
        ));
    }

    #[test]
    fn issued_leaf_chains_to_the_root_and_names_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(dir.path(), "cluster.local").unwrap();
        let issued = ca.issue("shop", "cart", DEFAULT_TTL).unwrap();
        assert_eq!(
            issued.id.to_string(),
            "spiffe://cluster.local/ns/shop/sa/cart"
        );
        let out = dir.path().join("out");
        let files = issued.write(&out).unwrap();
        assert_eq!(files.len(), 3);
        for f in [CERT_CHAIN, KEY, ROOT_CERT] {
            assert!(out.join(f).is_file(), "{f} missing");
        }

        let leaf = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let root = CertificateDer::from_pem_slice(issued.root_pem.as_bytes()).unwrap();
        let anchor = webpki::anchor_from_trusted_cert(&root).unwrap();
        let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
        let now = rustls_pki_types::UnixTime::now();
        for usage in [
            webpki::KeyUsage::server_auth(),
            webpki::KeyUsage::client_auth(),
        ] {
            ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                std::slice::from_ref(&anchor),
                &[],
                now,
                usage,
                None,
                None,
            )
            .unwrap();
        }
        let uris: Vec<&str> = ee.valid_uri_names().collect();
        assert_eq!(uris, ["spiffe://cluster.local/ns/shop/sa/cart"]);
        assert_eq!(crate::serial_of(&leaf).unwrap(), issued.serial);
    }

    #[test]
    fn zero_ttl_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(dir.path(), "cluster.local").unwrap();
        assert!(matches!(
            ca.issue("a", "b", Duration::ZERO),
            Err(IdentityError::Ttl)
        ));
        assert!(matches!(
            ca.issue("a/b", "c", DEFAULT_TTL),
            Err(IdentityError::Spiffe(_))
        ));
        assert!(matches!(
            Ca::init(&dir.path().join("x"), "Bad Domain"),
            Err(IdentityError::Spiffe(_))
        ));
    }
}
