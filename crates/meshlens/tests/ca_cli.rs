//! `meshlens ca init` and `meshlens ca issue` through the built binary, the files judged by
//! `openssl` (skipped when it is not on PATH): the SPIFFE URI name, key usages, the chain to
//! the root, and a validity of about the requested lifetime.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_meshlens");

fn meshlens(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn openssl(args: &[&str]) -> Option<Output> {
    Command::new("openssl").args(args).output().ok()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn ca_init_and_issue_write_istio_files_openssl_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let out = tmp.path().join("certs");

    // No CA yet: a clear error, exit code 1.
    let o = meshlens(&[
        "ca",
        "issue",
        "--ns",
        "shop",
        "--sa",
        "cart",
        "--dir",
        p(&ca),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no CA in"),
        "{}",
        text(&o)
    );

    let o = meshlens(&[
        "ca",
        "init",
        "--dir",
        p(&ca),
        "--trust-domain",
        "example.org",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for f in ["root-cert.pem", "ca-key.pem", "ca.json"] {
        assert!(ca.join(f).is_file(), "{f} not written");
        assert!(stdout.contains(f), "{f} not reported: {stdout}");
    }
    let root_before = std::fs::read(ca.join("root-cert.pem")).unwrap();

    // A second init refuses and leaves the CA alone.
    let o = meshlens(&["ca", "init", "--dir", p(&ca)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(ca.join("root-cert.pem")).unwrap(),
        root_before
    );

    let o = meshlens(&[
        "ca",
        "issue",
        "--ns",
        "shop",
        "--sa",
        "cart",
        "--dir",
        p(&ca),
        "--out",
        p(&out),
        "--ttl",
        "1h",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("spiffe://example.org/ns/shop/sa/cart"),
        "{stdout}"
    );
    for f in ["cert-chain.pem", "key.pem", "root-cert.pem"] {
        assert!(out.join(f).is_file(), "{f} not written");
        assert!(stdout.contains(f), "{f} not reported: {stdout}");
    }
    assert_eq!(
        std::fs::read(out.join("root-cert.pem")).unwrap(),
        root_before
    );

    // A bad lifetime is refused.
    let o = meshlens(&[
        "ca",
        "issue",
        "--ns",
        "shop",
        "--sa",
        "cart",
        "--dir",
        p(&ca),
        "--out",
        p(&out),
        "--ttl",
        "soon",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let chain = out.join("cert-chain.pem");
    let Some(o) = openssl(&["x509", "-noout", "-text", "-in", p(&chain)]) else {
        eprintln!("openssl not on PATH: skipping the openssl checks");
        return;
    };
    assert!(o.status.success(), "{}", text(&o));
    let cert = String::from_utf8_lossy(&o.stdout);
    assert!(
        cert.contains("URI:spiffe://example.org/ns/shop/sa/cart"),
        "{cert}"
    );
    assert!(
        cert.contains("Digital Signature, Key Encipherment"),
        "{cert}"
    );
    assert!(
        cert.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{cert}"
    );
    assert!(cert.contains("ecdsa-with-SHA256"), "{cert}");

    let o = openssl(&["verify", "-CAfile", p(&ca.join("root-cert.pem")), p(&chain)]).unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // Valid for about an hour: still valid in 55 minutes, expired in 65.
    let checkend = |secs: &str| {
        openssl(&["x509", "-noout", "-checkend", secs, "-in", p(&chain)])
            .unwrap()
            .status
            .success()
    };
    assert!(checkend("3300"), "expires before 55 minutes");
    assert!(!checkend("3900"), "still valid after 65 minutes");

    let root = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        p(&ca.join("root-cert.pem")),
    ])
    .unwrap();
    let root = String::from_utf8_lossy(&root.stdout);
    assert!(root.contains("CA:TRUE"), "{root}");
    assert!(
        root.contains("O=example.org") || root.contains("O = example.org"),
        "{root}"
    );
}
