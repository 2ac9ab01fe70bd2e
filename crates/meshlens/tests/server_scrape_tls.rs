//! HTTPS scraping (rustls) with `scheme: https` and `tls_config`: a target whose certificate
//! a private CA issued is scraped when that CA is configured (or verification is skipped)
//! and fails with a certificate error when it is not; `server_name` names the certificate's
//! host; a target that demands a client certificate gets one from `cert_file`/`key_file`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, httpc, poll, require_binary, KillOnDrop, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;

/// Writes `ca.pem`, a server certificate for `scrape.test` (`server.pem`, `server.key`) and
/// a client certificate (`client.pem`, `client.key`), all issued by the CA.
fn make_certs(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "meshlens test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, san) in [("server", "scrape.test"), ("client", "scraper")] {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![san.to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// A Python HTTPS target on `port`; with `client_ca`, it refuses clients without a
/// certificate that CA issued.
fn start_target(dir: &Path, port: u16, client_ca: bool) -> KillOnDrop {
    let script = r#"
import http.server, ssl, sys
port, cert, key, client_ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"tls_metric 42\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if client_ca:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(client_ca)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#;
    let ca = if client_ca {
        dir.join("ca.pem").display().to_string()
    } else {
        String::new()
    };
    let child = KillOnDrop(
        Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .arg(dir.join("server.pem"))
            .arg(dir.join("server.key"))
            .arg(ca)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // The target must be listening before the first scrape, or that scrape fails for the
    // wrong reason.
    poll(Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    child
}

#[test]
fn https_targets_with_and_without_trusted_ca() {
    if !require_binary("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let (port, mtls_port) = (free_port(), free_port());
    let _target = start_target(dir.path(), port, false);
    let _mtls_target = start_target(dir.path(), mtls_port, true);
    let cfg = dir.path().join("meshlens.yml");
    let d = dir.path().display();
    let tls = |extra: &str| format!("{{ca_file: {d}/ca.pem, server_name: scrape.test{extra}}}");
    let client =
        format!(", cert_file: {d}/client.pem, key_file: {d}/client.key, min_version: TLS13");
    let jobs = [
        ("trusted", tls(""), port),
        (
            "skip_verify",
            "{insecure_skip_verify: true}".to_string(),
            port,
        ),
        ("untrusted", "{server_name: scrape.test}".to_string(), port),
        ("mtls", tls(&client), mtls_port),
        ("mtls_without_cert", tls(""), mtls_port),
    ];
    let mut yaml =
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\nscrape_configs:\n".to_string();
    for (job, tls, port) in &jobs {
        yaml.push_str(&format!(
            "  - job_name: {job}\n    scheme: https\n    tls_config: {tls}\n    \
             static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ));
    }
    std::fs::write(&cfg, yaml).unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    let by_job = poll(Duration::from_secs(60), || {
        let r = httpc::get(&server.url("/api/v1/targets")).ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        let targets = v["data"]["activeTargets"].as_array()?.clone();
        let health = |job: &str| {
            targets
                .iter()
                .find(|t| t["scrapePool"] == job)
                .map(|t| t["health"].clone())
        };
        let settled = targets.len() == 5
            && health("trusted")? == "up"
            && health("skip_verify")? == "up"
            && health("untrusted")? == "down"
            && health("mtls")? == "up"
            && health("mtls_without_cert")? == "down";
        settled.then(|| {
            targets
                .into_iter()
                .map(|t| (t["scrapePool"].as_str().unwrap().to_string(), t))
                .collect::<std::collections::BTreeMap<_, _>>()
        })
    });
    assert_eq!(by_job["trusted"]["health"], "up", "{}", by_job["trusted"]);
    assert_eq!(
        by_job["skip_verify"]["health"], "up",
        "{}",
        by_job["skip_verify"]
    );
    assert_eq!(by_job["untrusted"]["health"], "down");
    let err = by_job["untrusted"]["lastError"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(err.contains("certificate"), "{err}");
    assert!(by_job["trusted"]["scrapeUrl"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    for job in ["trusted", "mtls"] {
        let v = server.query(&format!("tls_metric{{job=\"{job}\"}}"), None);
        assert_eq!(v["data"]["result"][0]["value"][1], "42", "{job}: {v}");
    }
    assert_ne!(by_job["mtls_without_cert"]["lastError"], "");
}
