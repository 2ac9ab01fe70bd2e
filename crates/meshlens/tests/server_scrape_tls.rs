//! HTTPS scraping with `scheme: https` and `tls_config`: a target with a self-signed
//! certificate is scraped when its CA is configured (or verification is skipped) and fails
//! with a certificate error when it is not.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, httpc, poll, require_binary, KillOnDrop, Server};
use serde_json::Value;

#[test]
fn https_targets_with_and_without_trusted_ca() {
    if !require_binary("openssl") || !require_binary("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl could not make a certificate");
    let port = free_port();
    let script = format!(
        r#"
import http.server, ssl
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
s = http.server.HTTPServer(("127.0.0.1", {port}), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("{cert}", "{key}")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#,
        cert = cert.display(),
        key = key.display()
    );
    let _target = KillOnDrop(
        Command::new("python3")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The target must be listening before the first scrape, or that scrape fails for the
    // wrong reason.
    poll(Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let cfg = dir.path().join("meshlens.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\nscrape_configs:\n\
             \x20 - job_name: trusted\n    scheme: https\n    tls_config: {{ca_file: {cert}}}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n\
             \x20 - job_name: skip_verify\n    scheme: https\n    tls_config: {{insecure_skip_verify: true}}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n\
             \x20 - job_name: untrusted\n    scheme: https\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            cert = cert.display()
        ),
    )
    .unwrap();
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
        let settled = targets.len() == 3
            && health("trusted")? == "up"
            && health("skip_verify")? == "up"
            && health("untrusted")? == "down";
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
    let v = server.query("tls_metric{job=\"trusted\"}", None);
    assert_eq!(v["data"]["result"][0]["value"][1], "42", "{v}");
}
