//! Test helpers: a real ZooKeeper and two `clickhouse-server` processes on loopback, forming
//! a 2-shard cluster, started as plain processes in a temporary directory and killed on drop.
//!
//! Start-up order matters with ClickHouse 18.16: if ZooKeeper is not serving when the
//! server starts, the first `ON CLUSTER` query can kill the server. So ZooKeeper must grant a
//! real session (a ConnectRequest answered with a session id, not just an open port) before
//! any ClickHouse starts, and each ClickHouse must answer `/ping` and read ZooKeeper's root
//! before the cluster is handed out.
//!
//! [`CurrentServer`] is a current ClickHouse release as one server: its engine embedded by
//! the `chdb-core` Python package, behind a small HTTP front (`tests/chdb_http_server.py`).
//!
//! When `clickhouse-server` is not installed, [`TestCluster::start`] returns `Ok(None)` and
//! tests skip with a message; with `CI=true` it is an error instead, so CI cannot skip them
//! silently.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The ClickHouse server binary Debian installs.
pub const CLICKHOUSE_SERVER: &str = "/usr/sbin/clickhouse-server";
/// Debian's ZooKeeper jar; its manifest's class path names the other jars.
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// Keeps ZooKeeper's logging quiet without a log4j config.
const SLF4J_NOP_JAR: &str = "/usr/share/java/slf4j-nop.jar";
/// The cluster name in the generated `remote_servers`.
pub const CLUSTER: &str = "meshlens_test";

#[derive(Debug, thiserror::Error)]
pub enum TestEnvError {
    #[error("{0} is not installed (CI=true: the ClickHouse tests must run)")]
    Missing(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not become ready within {secs} s: {detail}")]
    NotReady {
        what: String,
        secs: u64,
        detail: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestEnvError {
    let what = what.into();
    move |source| TestEnvError::Io { what, source }
}

/// Whether tests must not skip (CI sets `CI=true`).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `n` distinct free loopback ports. All listeners are held until every port is chosen,
/// so no two are the same; another process could still take one before it is used.
pub fn free_ports(n: usize) -> Result<Vec<u16>, TestEnvError> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port")))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(io("reading a free port"))
        })
        .collect()
}

/// A child process killed (SIGKILL) and reaped on drop.
struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, name: &str, log: PathBuf) -> Result<Proc, TestEnvError> {
        let out = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out.try_clone().map_err(io("cloning a log file handle"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().map_err(io(format!("starting {name}")))?;
        Ok(Proc {
            child,
            name: name.to_string(),
            log,
        })
    }

    /// Fails when the process has exited, with the tail of its log.
    fn check_alive(&mut self) -> Result<(), TestEnvError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(TestEnvError::NotReady {
                what: self.name.clone(),
                secs: 0,
                detail: format!("exited with {status}; log tail:\n{}", self.log_tail()),
            }),
            Err(e) => Err(io(format!("waiting for {}", self.name))(e)),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` every 100 ms until it holds, `proc` dies, or `limit` passes.
fn wait_for(
    proc: &mut Proc,
    limit: Duration,
    mut ready: impl FnMut() -> Result<(), String>,
) -> Result<(), TestEnvError> {
    let start = Instant::now();
    loop {
        proc.check_alive()?;
        let last = match ready() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if start.elapsed() > limit {
            return Err(TestEnvError::NotReady {
                what: proc.name.clone(),
                secs: limit.as_secs(),
                detail: format!("{last}; log tail:\n{}", proc.log_tail()),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Opens and closes a real ZooKeeper session (jute-encoded ConnectRequest, then
/// closeSession): proof that the server is serving, not just listening.
pub fn zookeeper_session(addr: SocketAddr) -> Result<u64, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut req = Vec::new();
    req.extend_from_slice(&0i32.to_be_bytes()); // protocol version
    req.extend_from_slice(&0i64.to_be_bytes()); // last zxid seen
    req.extend_from_slice(&10_000i32.to_be_bytes()); // session timeout, ms
    req.extend_from_slice(&0i64.to_be_bytes()); // session id: new
    req.extend_from_slice(&16i32.to_be_bytes()); // password: 16 zero bytes
    req.extend_from_slice(&[0u8; 16]);
    let mut frame = (req.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&req);
    s.write_all(&frame).map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .map_err(|e| format!("no ConnectResponse: {e}"))?;
    let len = i32::from_be_bytes(len);
    if !(16..=1024).contains(&len) {
        return Err(format!("ConnectResponse of {len} bytes"));
    }
    let mut resp = vec![0u8; len as usize];
    s.read_exact(&mut resp).map_err(|e| e.to_string())?;
    let timeout = i32::from_be_bytes([resp[4], resp[5], resp[6], resp[7]]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&resp[8..16]);
    let session = u64::from_be_bytes(id);
    if timeout <= 0 || session == 0 {
        return Err("ZooKeeper refused the session".into());
    }
    // closeSession: xid 1, op -11; the answer does not matter.
    let mut close = 8i32.to_be_bytes().to_vec();
    close.extend_from_slice(&1i32.to_be_bytes());
    close.extend_from_slice(&(-11i32).to_be_bytes());
    let _ = s.write_all(&close);
    Ok(session)
}

/// A standalone ZooKeeper on a free loopback port.
pub struct ZooKeeper {
    proc: Proc,
    pub port: u16,
}

impl ZooKeeper {
    pub fn start(dir: &Path, port: u16) -> Result<ZooKeeper, TestEnvError> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(io("creating ZooKeeper's data dir"))?;
        let cfg = dir.join("zoo.cfg");
        let text = format!(
            "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\n\
             clientPortAddress=127.0.0.1\nadmin.enableServer=false\nmaxClientCnxns=200\n",
            data.display()
        );
        std::fs::write(&cfg, text).map_err(io("writing zoo.cfg"))?;
        let mut cmd = Command::new("java");
        cmd.arg("-Xmx256m")
            .arg("-cp")
            .arg(format!("{ZOOKEEPER_JAR}:{SLF4J_NOP_JAR}"))
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&cfg);
        let mut proc = Proc::spawn(cmd, "zookeeper", dir.join("zookeeper.log"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for(&mut proc, Duration::from_secs(60), || {
            zookeeper_session(addr).map(drop)
        })?;
        Ok(ZooKeeper { proc, port })
    }

    /// The log's last lines, for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }
}

/// One `clickhouse-server` process.
pub struct ClickHouseNode {
    /// None while killed (see [`ClickHouseNode::kill`]).
    proc: Option<Proc>,
    /// The node's number in the cluster, from 1.
    n: usize,
    pub http_port: u16,
    pub tcp_port: u16,
    pub dir: PathBuf,
}

impl ClickHouseNode {
    pub fn http_base(&self) -> String {
        format!("http://127.0.0.1:{}/", self.http_port)
    }

    /// Runs SQL over HTTP with no client of ours in between (for checks on one shard).
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        http_post(self.http_port, "/", sql)
    }

    /// The server log's last lines, for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.as_ref().map(Proc::log_tail).unwrap_or_default()
    }

    /// SIGKILLs the server, as a crash would; its data stays in its directory.
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// Starts the server again on the same ports and data, and waits until it serves.
    pub fn restart(&mut self) -> Result<(), TestEnvError> {
        self.kill();
        self.proc = Some(spawn_server(&self.dir, self.n, self.http_port)?);
        Ok(())
    }
}

/// A minimal HTTP/1.0 POST, so readiness checks do not depend on the client under test.
fn http_post(port: u16, path: &str, body: &str) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        Ok(body.to_string())
    } else {
        Err(format!(
            "{}: {}",
            head.lines().next().unwrap_or(""),
            body.trim()
        ))
    }
}

/// ZooKeeper plus two ClickHouse servers declaring a 2-shard cluster named [`CLUSTER`].
pub struct TestCluster {
    // Field order is drop order: servers stop before ZooKeeper, the directory goes last.
    pub nodes: Vec<ClickHouseNode>,
    pub zookeeper: ZooKeeper,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts the cluster; `Ok(None)` when ClickHouse is not installed outside CI.
    pub fn start() -> Result<Option<TestCluster>, TestEnvError> {
        for bin in [CLICKHOUSE_SERVER, ZOOKEEPER_JAR] {
            if !Path::new(bin).exists() {
                if is_ci() {
                    return Err(TestEnvError::Missing(bin.to_string()));
                }
                eprintln!(
                    "skipping: {bin} is not installed (apt-get install clickhouse-server zookeeper; \
                     see .ci/apt/clickhouse.txt)"
                );
                return Ok(None);
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("meshlens-ch-")
            .tempdir()
            .map_err(io("creating the cluster's temp dir"))?;
        let ports = free_ports(7)?;
        let zk_dir = dir.path().join("zk");
        std::fs::create_dir_all(&zk_dir).map_err(io("creating zk dir"))?;
        let zookeeper = ZooKeeper::start(&zk_dir, ports[0])?;
        let tcp_ports = [ports[2], ports[5]];
        let mut nodes = Vec::new();
        for (i, p) in [
            [ports[1], ports[2], ports[3]],
            [ports[4], ports[5], ports[6]],
        ]
        .into_iter()
        .enumerate()
        {
            let node_dir = dir.path().join(format!("ch{}", i + 1));
            nodes.push(start_node(&node_dir, i + 1, p, &tcp_ports, zookeeper.port)?);
        }
        Ok(Some(TestCluster {
            nodes,
            zookeeper,
            dir,
        }))
    }

    /// The `--storage` address of one node, with the cluster.
    pub fn storage_url(&self, node: usize, database: &str) -> String {
        format!(
            "clickhouse://127.0.0.1:{}/{database}?cluster={CLUSTER}",
            self.nodes[node].http_port
        )
    }

    /// The `--storage` address of one node as a single server (no cluster).
    pub fn single_url(&self, node: usize, database: &str) -> String {
        format!(
            "clickhouse://127.0.0.1:{}/{database}",
            self.nodes[node].http_port
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn start_node(
    dir: &Path,
    n: usize,
    [http, tcp, interserver]: [u16; 3],
    cluster_tcp: &[u16; 2],
    zk_port: u16,
) -> Result<ClickHouseNode, TestEnvError> {
    std::fs::create_dir_all(dir.join("data")).map_err(io("creating ClickHouse's dir"))?;
    let d = dir.display();
    let shards: String = cluster_tcp
        .iter()
        .map(|p| {
            format!("<shard><replica><host>127.0.0.1</host><port>{p}</port></replica></shard>")
        })
        .collect();
    let config = format!(
        r#"<?xml version="1.0"?>
<yandex>
  <logger><level>information</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><size>50M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <interserver_http_port>{interserver}</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers>
  <zookeeper><node><host>127.0.0.1</host><port>{zk_port}</port></node><session_timeout_ms>30000</session_timeout_ms></zookeeper>
  <macros><shard>shard{n}</shard><replica>replica{n}</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
</yandex>
"#
    );
    let users = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#;
    let config_path = dir.join("config.xml");
    std::fs::write(&config_path, config).map_err(io("writing config.xml"))?;
    std::fs::write(dir.join("users.xml"), users).map_err(io("writing users.xml"))?;
    Ok(ClickHouseNode {
        proc: Some(spawn_server(dir, n, http)?),
        n,
        http_port: http,
        tcp_port: tcp,
        dir: dir.to_path_buf(),
    })
}

/// Runs `clickhouse-server` on the config in `dir` and waits until it serves queries and
/// holds its ZooKeeper session.
fn spawn_server(dir: &Path, n: usize, http: u16) -> Result<Proc, TestEnvError> {
    let mut cmd = Command::new(CLICKHOUSE_SERVER);
    cmd.arg(format!(
        "--config-file={}",
        dir.join("config.xml").display()
    ))
    .current_dir(dir);
    let mut proc = Proc::spawn(
        cmd,
        &format!("clickhouse-server {n}"),
        dir.join("stdout.log"),
    )?;
    proc.log = dir.join("server.log");
    // Generous: a loaded CI machine can take tens of seconds to start both servers.
    wait_for(&mut proc, Duration::from_secs(120), || {
        http_post(http, "/", "SELECT 1").map(drop)
    })?;
    // The server's own ZooKeeper session, before anything sends it `ON CLUSTER` DDL.
    wait_for(&mut proc, Duration::from_secs(60), || {
        http_post(
            http,
            "/",
            "SELECT count() FROM system.zookeeper WHERE path = '/'",
        )
        .map(drop)
    })?;
    Ok(proc)
}

/// The helper that serves ClickHouse's HTTP interface over chDB (see the script's header).
pub const CHDB_SERVER_SCRIPT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chdb_http_server.py");
/// The Python interpreter that runs it (`MESHLENS_PYTHON` overrides).
fn python() -> String {
    std::env::var("MESHLENS_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// A current ClickHouse release (the engine of the pinned `chdb-core`, see
/// `.ci/pip/clickhouse.txt`) behind its HTTP interface, as one server without a cluster:
/// the SQL meshlens sends must run on current releases too, not only on Debian's 18.16.
///
/// It is a Python process holding one chDB session over a data directory; it exits when
/// its stdin (held here) closes, and is killed on drop.
pub struct CurrentServer {
    // Field order is drop order: the process stops before its directory goes.
    proc: Proc,
    _stdin: std::process::ChildStdin,
    pub http_port: u16,
    /// `SELECT version()` as the server answers it.
    pub version: String,
    dir: tempfile::TempDir,
}

impl CurrentServer {
    /// Starts the server; `Ok(None)` after a message when python3 or chdb-core is missing
    /// outside CI (with `CI=true` that is an error).
    pub fn start() -> Result<Option<CurrentServer>, TestEnvError> {
        let probe = Command::new(python())
            .args(["-c", "import chdb.session"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let missing = match probe {
            Err(e) => Some(format!("{} ({e})", python())),
            Ok(o) if !o.status.success() => Some(format!(
                "the chdb-core Python package ({})",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("import failed")
            )),
            Ok(_) => None,
        };
        if let Some(what) = missing {
            if is_ci() {
                return Err(TestEnvError::Missing(what));
            }
            eprintln!(
                "skipping the current-release ClickHouse run: {what} is missing \
                 (pip install -r .ci/pip/clickhouse.txt)"
            );
            return Ok(None);
        }
        let dir = tempfile::Builder::new()
            .prefix("meshlens-chdb-")
            .tempdir()
            .map_err(io("creating the chDB server's temp dir"))?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(io("creating chDB's data dir"))?;
        let log = dir.path().join("server.log");
        let err = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let mut cmd = Command::new(python());
        cmd.arg(CHDB_SERVER_SCRIPT)
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err);
        let mut child = cmd.spawn().map_err(io("starting the chDB server"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut proc = Proc {
            child,
            name: "chDB HTTP server".into(),
            log,
        };
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err(TestEnvError::NotReady {
                what: proc.name.clone(),
                secs: 0,
                detail: "no stdio pipes".into(),
            });
        };
        // The port line comes from a reader thread, so a hung start is bounded.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(r.map(|_| line));
        });
        let limit = Duration::from_secs(120);
        let start = Instant::now();
        let line = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(line)) => break line,
                Ok(Err(e)) => return Err(io("reading the chDB server's port")(e)),
                Err(_) => {
                    proc.check_alive()?;
                    if start.elapsed() > limit {
                        return Err(TestEnvError::NotReady {
                            what: proc.name.clone(),
                            secs: limit.as_secs(),
                            detail: format!("no port printed; log tail:\n{}", proc.log_tail()),
                        });
                    }
                }
            }
        };
        let http_port: u16 = match line.trim().parse() {
            Ok(p) => p,
            Err(_) => {
                // The process may have died before printing: its log says why.
                let _ = proc.check_alive();
                return Err(TestEnvError::NotReady {
                    what: proc.name.clone(),
                    secs: 0,
                    detail: format!(
                        "printed {:?} instead of a port; log tail:\n{}",
                        line.trim(),
                        proc.log_tail()
                    ),
                });
            }
        };
        let mut version = String::new();
        wait_for(&mut proc, Duration::from_secs(60), || {
            version = http_post(http_port, "/", "SELECT version()")?
                .trim()
                .to_string();
            Ok(())
        })?;
        Ok(Some(CurrentServer {
            proc,
            _stdin: stdin,
            http_port,
            version,
            dir,
        }))
    }

    /// The `--storage` address of this server (no cluster).
    pub fn storage_url(&self, database: &str) -> String {
        format!("clickhouse://127.0.0.1:{}/{database}", self.http_port)
    }

    /// Runs SQL over HTTP with no client of ours in between.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        http_post(self.http_port, "/", sql)
    }

    /// The helper's log's last lines, for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes spans as a meshlens before schema step 3 did: rows into `spans` alone, no `trace_index`
/// rows. What the upgrade test stages before starting the current schema over them.
pub fn write_spans_unindexed(
    client: &crate::Client,
    schema: &crate::Schema,
    spans: &[meshlens_model::Span],
) -> Result<(), crate::ClickHouseError> {
    let columns = crate::spans::COLUMNS;
    client.insert(
        &format!(
            "INSERT INTO {} ({columns}) FORMAT RowBinary",
            schema.table("spans")
        ),
        crate::spans::encode_rows(spans),
        &schema.insert_settings(),
    )
}
