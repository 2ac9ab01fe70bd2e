//! The fault test's processes (hubs, the agent): each is restarted on the address it first
//! got, since the agent's `--hub` URLs and the writers' target must stay valid across faults.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{wait_ready, BIN};

/// A `meshlens` subcommand that prints `<marker>ADDR` on stdout once it serves.
pub struct Proc {
    name: &'static str,
    args: Vec<String>,
    marker: &'static str,
    /// Its stderr, appended to across restarts, named in every failure.
    pub log: PathBuf,
    child: Option<Child>,
    /// host:port, fixed after the first start.
    pub addr: String,
}

impl Proc {
    /// Starts `meshlens <args> --listen 127.0.0.1:0` and waits until it answers /-/ready.
    pub fn start(
        name: &'static str,
        args: Vec<String>,
        marker: &'static str,
        log: PathBuf,
    ) -> Proc {
        let mut p = Proc {
            name,
            args,
            marker,
            log,
            child: None,
            addr: "127.0.0.1:0".into(),
        };
        p.restart();
        p
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts it again on the same address. The port may briefly stay taken (a connection
    /// that grabbed it as its local port), so a failed bind is retried for a minute.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.spawn_once() {
                Ok((child, addr)) => {
                    self.child = Some(child);
                    self.addr = addr;
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!(
                        "{} did not start on {} ({e}); retrying",
                        self.name, self.addr
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("{}: {e}; its log: {}", self.name, self.log.display()),
            }
        }
        wait_ready(&self.url(""), Duration::from_secs(60));
    }

    fn spawn_once(&self) -> Result<(Child, String), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let mut child = Command::new(BIN)
            .args(&self.args)
            .args(["--listen", &self.addr])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning {BIN}: {e}"))?;
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // Keeps draining after the address line, so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some((_, a)) = line.split_once(self.marker) {
                        return Ok((child, a.trim().to_string()));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    return Err(format!(
                        "it ended ({status:?}) without printing its address"
                    ));
                }
            }
        }
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// SIGTERM, then waits for it to exit (bounded: SIGKILL after two minutes).
    pub fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(120);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                eprintln!("{} ignored SIGTERM for 2 min; killing it", self.name);
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `meshlens server` with its own data dir, no OTLP/gRPC listener (two hubs would clash on it).
pub fn hub(name: &'static str, dir: &std::path::Path) -> Proc {
    let data = dir.join(name);
    Proc::start(
        name,
        vec![
            "server".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--otlp-grpc-listen".into(),
            "off".into(),
        ],
        "meshlens server listening on http://",
        dir.join(format!("{name}.log")),
    )
}

/// `meshlens agent` for cluster `east`, forwarding to `hubs`, scraping per `config`.
pub fn agent(dir: &std::path::Path, hubs: &[&str], config: &std::path::Path) -> Proc {
    let mut args: Vec<String> = vec!["agent".into(), "--cluster".into(), "east".into()];
    for h in hubs {
        args.extend(["--hub".into(), format!("http://{h}")]);
    }
    args.extend([
        "--data-dir".into(),
        dir.join("agent").display().to_string(),
        "--config".into(),
        config.display().to_string(),
        "--otlp-grpc-listen".into(),
        "off".into(),
    ]);
    Proc::start(
        "agent",
        args,
        "meshlens agent listening on http://",
        dir.join("agent.log"),
    )
}
