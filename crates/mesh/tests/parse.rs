//! Parsing Istio YAML: document forms, versions, and where errors are reported.

use std::path::Path;

use meshlens_mesh::MeshConfig;

const MULTI: &str = r#"# bookinfo routing
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
      uri: {prefix: /api}
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 100}}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v3}
      weight: 10
    timeout: 0.5s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m}
    connectionPool:
      tcp: {maxConnections: 100}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 1000}
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - address: 10.0.0.1
    labels: {version: v1}
    ports: {http: 8080}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
"#;

#[test]
fn multi_document_file_with_all_versions() {
    let cfg = MeshConfig::parse_str(MULTI, "bookinfo.yaml").unwrap();
    assert_eq!(cfg.virtual_services.len(), 1);
    assert_eq!(cfg.destination_rules.len(), 1);
    assert_eq!(cfg.service_entries.len(), 1);
    assert_eq!(cfg.ignored.len(), 1);
    assert_eq!(cfg.ignored[0].kind, "ConfigMap");

    let vs = &cfg.virtual_services[0];
    assert_eq!(vs.source.line, 2, "first line after the comment");
    assert_eq!(vs.namespace(), "bookinfo");
    assert_eq!(vs.spec.http.len(), 2);
    let m = &vs.spec.http[0].matches[0];
    assert_eq!(m.headers["end-user"].exact.as_deref(), Some("jason"));
    assert_eq!(m.uri.as_ref().unwrap().prefix.as_deref(), Some("/api"));
    let r = &vs.spec.http[1];
    assert_eq!(r.route[0].weight, Some(90));
    assert_eq!(r.timeout.as_ref().unwrap().value.as_millis(), 500);
    assert_eq!(r.retries.as_ref().unwrap().attempts, 3);

    let dr = &cfg.destination_rules[0];
    assert_eq!(dr.source.line, 26);
    assert_eq!(dr.namespace(), "default");
    let tp = dr.spec.traffic_policy.as_ref().unwrap();
    let od = tp.outlier_detection.as_ref().unwrap();
    assert_eq!(od.consecutive_5xx_errors, Some(7));
    assert_eq!(od.base_ejection_time.as_ref().unwrap().value.as_secs(), 900);
    let http = tp.connection_pool.as_ref().unwrap().http.as_ref().unwrap();
    assert_eq!(http.http1_max_pending_requests, Some(10));

    let se = &cfg.service_entries[0];
    assert_eq!(se.spec.endpoints[0].ports["http"], 8080);
    assert_eq!(se.spec.endpoints[0].labels["version"], "v1");
}

#[test]
fn kubectl_list_items_get_their_own_lines() {
    let text = r#"apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1beta1
  kind: Gateway
  metadata:
    name: gw
  spec:
    selector: {istio: ingressgateway}
    servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: ["*"]
- apiVersion: networking.istio.io/v1beta1
  kind: WorkloadEntry
  metadata:
    name: vm1
  spec:
    address: 10.0.0.9
    labels: {app: ratings, version: v2}
metadata:
  resourceVersion: ""
"#;
    let cfg = MeshConfig::parse_str(text, "list.yaml").unwrap();
    assert_eq!(cfg.gateways.len(), 1);
    assert_eq!(cfg.gateways[0].source.line, 4);
    assert_eq!(cfg.gateways[0].spec.servers[0].hosts, vec!["*"]);
    assert_eq!(cfg.workload_entries[0].source.line, 13);
    assert_eq!(cfg.workload_entries[0].spec.labels["version"], "v2");
}

#[test]
fn type_error_names_file_and_absolute_line() {
    let text = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a}\n---\n# second\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b}\nspec:\n  hosts: [a]\n  http:\n  - timeout: soon\n";
    let errs = MeshConfig::parse_str(text, "bad.yaml").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].file, Path::new("bad.yaml"));
    assert_eq!(errs[0].line, 12, "{}", errs[0]);
    assert!(errs[0].reason.contains("invalid duration"), "{}", errs[0]);
    assert!(!errs[0].reason.contains("at line"), "{}", errs[0]);
}

#[test]
fn syntax_error_line_is_offset_to_its_document() {
    let text = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a}\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: [b\n";
    let errs = MeshConfig::parse_str(text, "syntax.yaml").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].line >= 7, "{}", errs[0]);
}

#[test]
fn unsupported_version_and_missing_kind_are_errors() {
    let text =
        "apiVersion: networking.istio.io/v2\nkind: Gateway\nmetadata: {name: a}\n---\nfoo: bar\n";
    let errs = MeshConfig::parse_str(text, "v.yaml").unwrap_err();
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].line, 1);
    assert!(errs[0].reason.contains("unsupported version"));
    assert_eq!(errs[1].line, 5);
}

#[test]
fn load_dir_reads_yaml_files_and_reports_all_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), MULTI).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/b.yml"),
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {address: 1.2.3.4}\n",
    )
    .unwrap();
    let cfg = MeshConfig::load_dir(dir.path()).unwrap();
    assert_eq!(cfg.len(), 4);

    std::fs::write(dir.path().join("c.yaml"), "kind: [").unwrap();
    std::fs::write(
        dir.path().join("d.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: x}\nspec:\n  host: x\n  subsets: 3\n",
    )
    .unwrap();
    let errs = MeshConfig::load_dir(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].file.ends_with("c.yaml"));
    assert!(errs[1].file.ends_with("d.yaml"));
    assert_eq!(errs[1].line, 6, "{}", errs[1]);
    assert!(errs[1].to_string().contains("d.yaml:6:"));
}
