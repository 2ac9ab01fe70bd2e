//! A mesh CA in a temp directory, issuing workload certificate directories as
//! `meshlens ca issue` writes them (`cert-chain.pem`, `key.pem`, `root-cert.pem`).

use std::path::PathBuf;

use meshlens_identity::{Ca, DEFAULT_TTL};

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(&dir.path().join("ca"), "cluster.local").unwrap();
        Pki { dir, ca }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues `sa` (namespace default) into `name`; returns the directory and the serial.
    pub fn issue(&self, name: &str, sa: &str) -> (PathBuf, Vec<u8>) {
        let out = self.path(name);
        let issued = self.ca.issue("default", sa, DEFAULT_TTL).unwrap();
        issued.write(&out).unwrap();
        (out, issued.serial)
    }
}
