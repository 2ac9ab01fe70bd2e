//! The Config view's API end to end on a real listener: objects with their validation
//! status, previews (diff, added findings), apply refused without `--mesh-write`, and with
//! it: the file written, a config event listed, undo byte for byte (also after a restart),
//! conflicts and bad bodies.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use meshlens_server::{start, RunningServer, ServerOptions};
use serde_json::{json, Value};

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: http-lb
  namespace: default
spec:
  hosts: [http-lb]
  http:
  - route:
    - destination: {host: http-lb, subset: v1}
      weight: 90
    - destination: {host: http-lb, subset: v2}
      weight: 10
";

const DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: http-lb, namespace: default}
spec:
  host: http-lb
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

const SE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: http-lb, namespace: default}
spec:
  hosts: [http-lb]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, labels: {version: v1}}
  - {address: 127.0.0.2, labels: {version: v2}}
";

/// A route whose subset no DestinationRule defines (a warning), and one whose fault
/// percentage is out of range (an error).
const OTHERS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ghost, namespace: shop}
spec:
  hosts: [ghost.example.com]
  http:
  - route:
    - destination: {host: http-lb, subset: v9}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: shop}
spec:
  hosts: [broken.example.com]
  http:
  - fault:
      abort: {httpStatus: 503, percentage: {value: 150}}
    route:
    - destination: {host: http-lb}
";

fn mesh_text() -> String {
    format!("# the demo's rules\n{DR}---\n{VS}---\n{SE}")
}

/// One HTTP/1.1 exchange with a JSON body; (status, JSON answer).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let json = [("Content-Type", "application/json")];
    let (status, body) = support::http(addr, method, path, &json, body);
    let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, v)
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    http(addr, "POST", path, body.to_string().as_bytes())
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
    mesh: PathBuf,
    data: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let mesh = tmp.path().join("mesh");
        std::fs::create_dir_all(mesh.join("more")).unwrap();
        std::fs::write(mesh.join("mesh.yaml"), mesh_text()).unwrap();
        std::fs::write(mesh.join("more/others.yaml"), OTHERS).unwrap();
        // A tenant's file: not this global API's.
        std::fs::write(
            tmp.path().join("team-a.yaml"),
            VS.replace("name: http-lb\n", "name: team-only\n"),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Fixture {
            rt,
            data: tmp.path().join("data"),
            mesh,
            _tmp: tmp,
        }
    }

    fn start(&self, write: bool, with_mesh: bool) -> RunningServer {
        let tenant_file = format!(
            "team-a={}",
            self.mesh.with_file_name("team-a.yaml").display()
        );
        let opts = ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            otlp_grpc_listen: None,
            data_dir: self.data.clone(),
            mesh_config: if with_mesh {
                vec![self.mesh.clone(), PathBuf::from(tenant_file)]
            } else {
                Vec::new()
            },
            mesh_write: write,
            anomaly_interval: None,
            ..ServerOptions::default()
        };
        self.rt.block_on(start(opts)).unwrap()
    }

    fn stop(&self, s: RunningServer) {
        self.rt.block_on(s.shutdown());
    }

    fn file(&self, rel: &str) -> String {
        std::fs::read_to_string(self.mesh.join(rel)).unwrap()
    }
}

fn object<'a>(list: &'a Value, kind: &str, ns: &str, name: &str) -> &'a Value {
    list["data"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == kind && o["namespace"] == ns && o["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {ns}/{name} in {list:#}"))
}

fn weights(a: u32, b: u32) -> String {
    VS.replace("weight: 90", &format!("weight: {a}"))
        .replace("weight: 10", &format!("weight: {b}"))
}

fn with_bad_fault() -> String {
    VS.replace(
        "  - route:",
        "  - fault:\n      abort: {httpStatus: 503, percentage: {value: 150}}\n    route:",
    )
}

fn codes(findings: &Value) -> Vec<String> {
    findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn list_and_preview_without_write() {
    let fx = Fixture::new();
    let server = fx.start(false, true);
    let addr = server.addr();

    let (st, list) = http(addr, "GET", "/api/v1/mesh/objects", b"");
    assert_eq!(st, 200, "{list}");
    assert_eq!(list["data"]["writable"], false);
    assert_eq!(list["data"]["dirs"], json!([fx.mesh.display().to_string()]));
    let objects = list["data"]["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 5, "{list:#}");
    assert!(
        !objects.iter().any(|o| o["name"] == "team-only"),
        "a tenant's file is listed"
    );
    let vs = object(&list, "VirtualService", "default", "http-lb");
    assert_eq!(vs["validation"], "valid", "{vs:#}");
    assert_eq!(vs["file"], "mesh.yaml");
    assert_eq!(vs["line"], 11, "{vs:#}");
    assert_eq!(vs["yaml"].as_str().unwrap(), VS);
    let dr = object(&list, "DestinationRule", "default", "http-lb");
    assert_eq!(
        (dr["line"].as_u64(), &dr["validation"]),
        (Some(1), &json!("valid"))
    );
    let ghost = object(&list, "VirtualService", "shop", "ghost");
    assert_eq!(ghost["validation"], "warning", "{ghost:#}");
    assert_eq!(
        ghost["file"],
        format!("more{}others.yaml", std::path::MAIN_SEPARATOR)
    );
    assert!(
        codes(&ghost["findings"]).contains(&"KIA1107".to_string()),
        "{ghost:#}"
    );
    let broken = object(&list, "VirtualService", "shop", "broken");
    assert_eq!(broken["validation"], "error", "{broken:#}");
    assert!(codes(&broken["findings"]).contains(&"ML0005".to_string()));
    assert_eq!(broken["line"], 10);

    // A weight change: a diff, valid, not writable.
    let (st, p) = post(
        addr,
        "/api/v1/mesh/preview",
        &json!({"yaml": weights(60, 40)}),
    );
    assert_eq!(st, 200, "{p}");
    let diff = p["data"]["diff"].as_str().unwrap();
    assert!(
        diff.contains("-      weight: 90\n") && diff.contains("+      weight: 60\n"),
        "{diff}"
    );
    assert!(diff.contains("+      weight: 40\n"), "{diff}");
    assert_eq!(p["data"]["file"], "mesh.yaml");
    assert_eq!(p["data"]["valid"], true);
    assert_eq!(p["data"]["addedErrors"], json!([]));
    assert_eq!(p["data"]["writable"], false);

    // An invalid edit: the error it adds is named.
    let (st, p) = post(
        addr,
        "/api/v1/mesh/preview",
        &json!({"yaml": with_bad_fault()}),
    );
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["data"]["valid"], false);
    assert_eq!(codes(&p["data"]["addedErrors"]), ["ML0005"], "{p:#}");
    assert_eq!(p["data"]["addedErrors"][0]["object"]["name"], "http-lb");

    // A new object goes to the named file (or one named after it).
    let se = SE
        .replace("name: http-lb", "name: ext")
        .replace("[http-lb]", "[ext.example.com]");
    let (st, p) = post(
        addr,
        "/api/v1/mesh/preview",
        &json!({"yaml": se, "file": "new/ext.yaml"}),
    );
    assert_eq!(st, 200, "{p}");
    assert_eq!(
        (&p["data"]["file"], &p["data"]["created"]),
        (&json!("new/ext.yaml"), &json!(true))
    );
    let (_, p) = post(addr, "/api/v1/mesh/preview", &json!({"yaml": se}));
    assert_eq!(p["data"]["file"], "serviceentry-default-ext.yaml", "{p}");

    // Apply is refused without --mesh-write, and nothing is written.
    let (st, r) = post(
        addr,
        "/api/v1/mesh/apply",
        &json!({"yaml": weights(60, 40)}),
    );
    assert_eq!(st, 403, "{r}");
    assert_eq!(r["errorType"], "forbidden");
    assert!(r["error"].as_str().unwrap().contains("--mesh-write"), "{r}");
    let (st, r) = post(addr, "/api/v1/mesh/changes/c-1/undo", &json!({}));
    assert_eq!((st, &r["errorType"]), (403, &json!("forbidden")));
    assert_eq!(fx.file("mesh.yaml"), mesh_text());
    assert!(!fx.mesh.join("new").exists());

    bad_bodies(addr);
    fx.stop(server);

    // No --mesh at all: the preview says what is missing.
    let server = fx.start(false, false);
    let (st, r) = post(server.addr(), "/api/v1/mesh/preview", &json!({"yaml": VS}));
    assert_eq!(st, 400, "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("no mesh directory"),
        "{r}"
    );
    let (st, list) = http(server.addr(), "GET", "/api/v1/mesh/objects", b"");
    assert_eq!((st, &list["data"]["objects"]), (200, &json!([])));
    fx.stop(server);
}

/// Each bad body is a 400 bad_data naming its problem.
fn bad_bodies(addr: SocketAddr) {
    let two = format!("{VS}---\n{DR}");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"yaml: x".to_vec(), "not JSON"),
        (b"[1]".to_vec(), "JSON object"),
        (b"{}".to_vec(), "no \"yaml\""),
        (json!({"yaml": ""}).to_string().into_bytes(), "empty"),
        (
            json!({"yaml": 5}).to_string().into_bytes(),
            "must be a string",
        ),
        (json!({"yaml": two}).to_string().into_bytes(), "2 objects"),
        (
            json!({"yaml": "kind: VirtualService\nmetadata:\n  name: a\n spec: [\n"})
                .to_string()
                .into_bytes(),
            "line",
        ),
        (
            json!({"yaml": "kind: VirtualService\nspec: {}\n"})
                .to_string()
                .into_bytes(),
            "metadata.name",
        ),
        (
            json!({"yaml": VS, "file": "../escape.yaml"})
                .to_string()
                .into_bytes(),
            "outside",
        ),
        (
            json!({"yaml": VS.replace("http-lb\n", "new-one\n"), "file": "/etc/x.yaml"})
                .to_string()
                .into_bytes(),
            "outside",
        ),
        (
            json!({"yaml": VS, "file": "notes.txt"})
                .to_string()
                .into_bytes(),
            ".yaml",
        ),
    ];
    for (body, want) in cases {
        let (st, r) = http(addr, "POST", "/api/v1/mesh/preview", &body);
        let shown = String::from_utf8_lossy(&body);
        assert_eq!(st, 400, "{shown}: {r}");
        assert_eq!(r["errorType"], "bad_data", "{shown}: {r}");
        let msg = r["error"].as_str().unwrap();
        assert!(msg.contains(want), "{shown}: {msg:?} lacks {want:?}");
    }
}

fn events(addr: SocketAddr) -> Vec<Value> {
    let (st, r) = http(addr, "GET", "/api/v1/events?kind=config", b"");
    assert_eq!(st, 200, "{r}");
    r["data"].as_array().unwrap().clone()
}

#[test]
fn apply_records_an_event_and_undo_restores_byte_for_byte() {
    let fx = Fixture::new();
    let server = fx.start(true, true);
    let addr = server.addr();
    let original = fx.file("mesh.yaml");
    let (_, list) = http(addr, "GET", "/api/v1/mesh/objects", b"");
    assert_eq!(list["data"]["writable"], true);

    // Invalid: 422 with the findings, nothing written.
    let (st, r) = post(
        addr,
        "/api/v1/mesh/apply",
        &json!({"yaml": with_bad_fault()}),
    );
    assert_eq!(st, 422, "{r}");
    assert_eq!(codes(&r["data"]["addedErrors"]), ["ML0005"], "{r}");
    assert!(r["error"].as_str().unwrap().contains("ML0005"), "{r}");
    assert_eq!(fx.file("mesh.yaml"), original);
    // Bad bodies are refused before anything is planned.
    let (st, r) = http(addr, "POST", "/api/v1/mesh/apply", b"{\"yaml\":");
    assert_eq!((st, &r["errorType"]), (400, &json!("bad_data")), "{r}");

    let (st, r) = post(
        addr,
        "/api/v1/mesh/apply",
        &json!({"yaml": weights(50, 50)}),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["data"]["id"], "c-1");
    assert!(r["data"]["diff"]
        .as_str()
        .unwrap()
        .contains("+      weight: 50\n"));
    let written = fx.file("mesh.yaml");
    assert!(
        written.contains("weight: 50") && !written.contains("weight: 90"),
        "{written}"
    );
    assert!(written.starts_with("# the demo's rules\n") && written.contains("kind: ServiceEntry"));
    let ev = &r["data"]["event"];
    assert_eq!(ev["kind"], "config");
    assert_eq!(ev["title"], "VirtualService default/http-lb changed");
    assert_eq!(ev["undo"], "c-1");
    assert_eq!(ev["service"], "http-lb");
    let listed = events(addr);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], ev["id"]);
    assert_eq!(listed[0]["detail"]["file"], "mesh.yaml");
    assert_eq!(listed[0]["detail"]["object"]["name"], "http-lb");
    assert!(listed[0]["detail"]["diff"]
        .as_str()
        .unwrap()
        .contains("-      weight: 90"));

    // The same object again: nothing to write.
    let (st, r) = post(
        addr,
        "/api/v1/mesh/apply",
        &json!({"yaml": weights(50, 50)}),
    );
    assert_eq!(st, 400, "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("nothing to write"),
        "{r}"
    );

    // A new object in a new file.
    let se = SE
        .replace("name: http-lb", "name: ext")
        .replace("[http-lb]", "[ext.example.com]");
    let (st, r) = post(
        addr,
        "/api/v1/mesh/apply",
        &json!({"yaml": se, "file": "new/ext.yaml"}),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["data"]["id"], "c-2");
    assert_eq!(
        r["data"]["event"]["title"],
        "ServiceEntry default/ext created"
    );
    assert_eq!(fx.file("new/ext.yaml"), se);

    // Undo restores the file byte for byte, once.
    let (st, r) = post(addr, "/api/v1/mesh/changes/c-1/undo", &json!({}));
    assert_eq!(st, 200, "{r}");
    assert_eq!(fx.file("mesh.yaml"), original);
    assert!(
        r["data"]["diff"]
            .as_str()
            .unwrap()
            .contains("+      weight: 90\n"),
        "{r}"
    );
    assert_eq!(
        r["data"]["event"]["title"],
        "VirtualService default/http-lb change c-1 undone"
    );
    let (st, r) = post(addr, "/api/v1/mesh/changes/c-1/undo", &json!({}));
    assert_eq!((st, &r["errorType"]), (409, &json!("conflict")), "{r}");
    let (st, r) = post(addr, "/api/v1/mesh/changes/c-99/undo", &json!({}));
    assert_eq!((st, &r["errorType"]), (404, &json!("not_found")), "{r}");
    let titles: Vec<String> = events(addr)
        .iter()
        .map(|e| e["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        titles,
        [
            "VirtualService default/http-lb change c-1 undone",
            "ServiceEntry default/ext created",
            "VirtualService default/http-lb changed"
        ]
    );

    // A file edited by hand since the change: undo is a conflict and writes nothing.
    let (st, r) = post(
        addr,
        "/api/v1/mesh/apply",
        &json!({"yaml": weights(70, 30)}),
    );
    assert_eq!((st, &r["data"]["id"]), (200, &json!("c-3")), "{r}");
    let by_hand = fx
        .file("mesh.yaml")
        .replace("weight: 70", "weight: 80")
        .replace("weight: 30", "weight: 20");
    std::fs::write(fx.mesh.join("mesh.yaml"), &by_hand).unwrap();
    let (st, r) = post(addr, "/api/v1/mesh/changes/c-3/undo", &json!({}));
    assert_eq!(st, 409, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("mesh.yaml changed since mesh change c-3"),
        "{r}"
    );
    assert_eq!(fx.file("mesh.yaml"), by_hand);
    fx.stop(server);

    // The changes outlive a restart: c-2 (a created file) still undoes, and ids go on.
    assert!(fx.data.join("mesh-changes.jsonl").exists());
    let server = fx.start(true, true);
    let addr = server.addr();
    let (st, r) = post(addr, "/api/v1/mesh/changes/c-2/undo", &json!({}));
    assert_eq!(st, 200, "{r}");
    assert!(!Path::new(&fx.mesh.join("new/ext.yaml")).exists());
    let (st, r) = post(
        addr,
        "/api/v1/mesh/apply",
        &json!({"yaml": weights(90, 10).replace("weight: 90", "weight: 95").replace("weight: 10", "weight: 5")}),
    );
    assert_eq!((st, &r["data"]["id"]), (200, &json!("c-4")), "{r}");
    let (st, r) = http(addr, "GET", "/api/v1/mesh/changes", b"");
    assert_eq!(st, 200);
    let undone: Vec<(String, bool)> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["undone"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        undone,
        [
            ("c-4".into(), false),
            ("c-3".into(), false),
            ("c-2".into(), true),
            ("c-1".into(), true)
        ]
    );
    fx.stop(server);
}
