//! The report's shape: file lines and YAML paths, grouping, JSON, robustness on bad input,
//! and what is skipped without a service registry.

use std::path::PathBuf;

use meshlens_mesh::validate::{to_json, to_text, validate_paths, validate_str, Severity};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/validate")
        .join(rel)
}

const BAD_SUBSET: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
---
# the route
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v9
      weight: 50
";

#[test]
fn finding_names_object_path_file_and_line() {
    let r = validate_str(BAD_SUBSET, "routes.yaml");
    let f = r.with_code("KIA1107").next().expect("KIA1107");
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.object.kind, "VirtualService");
    assert_eq!(f.object.namespace, "bookinfo");
    assert_eq!(f.object.name, "reviews");
    assert_eq!(f.path, "spec.http[0].route[1].destination.subset");
    assert_eq!(f.file, PathBuf::from("routes.yaml"));
    assert_eq!(f.line, 29);
    assert_eq!(r.with_code("KIA1107").count(), 1);
}

#[test]
fn without_kubernetes_manifests_registry_checks_are_not_applicable() {
    let r = validate_str(BAD_SUBSET, "routes.yaml");
    assert!(
        !r.has("KIA1101"),
        "no registry: hosts cannot be called missing"
    );
    assert!(r.not_applicable.iter().any(|n| n.code == "KIA1101"));
    let with = validate_paths(&[fixture("registry.yaml"), fixture("kia1101/bad.yaml")]);
    assert!(!with.not_applicable.iter().any(|n| n.code == "KIA1101"));
}

#[test]
fn json_report_has_counts_and_findings() {
    let r = validate_paths(&[fixture("registry.yaml"), fixture("kia0505/bad.yaml")]);
    let v: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap();
    assert_eq!(v["errors"], 2);
    assert_eq!(v["files"], 2);
    let f = &v["findings"][0];
    for key in [
        "code", "severity", "message", "object", "path", "file", "line",
    ] {
        assert!(!f[key].is_null(), "{key} missing in {f}");
    }
    assert_eq!(v["findings"][0]["severity"], "error");
    assert!(r.has_errors());
}

#[test]
fn text_groups_findings_by_object() {
    let r = validate_paths(&[fixture("registry.yaml"), fixture("kia1106/bad.yaml")]);
    let t = to_text(&r);
    assert!(t.contains("VirtualService bookinfo/reviews ("), "{t}");
    assert!(t.contains("VirtualService bookinfo/reviews-2 ("), "{t}");
    assert!(
        t.contains("  warning KIA1106 spec.hosts[0] (line 21)"),
        "{t}"
    );
    assert!(t.contains("0 errors, 2 warnings"), "{t}");
    assert!(!r.has_errors());
}

#[test]
fn broken_documents_are_findings_and_spare_their_neighbours() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: ns}
spec:
  hosts: [a]
  http:
  - route:
    - destination: {host: a}
      weight: abc
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: ns}
spec:
  hosts: [b]
  http:
  - route:
    - destination: {host: b, subset: nope}
---
key: [unclosed
---
apiVersion: networking.istio.io/v9
kind: Gateway
metadata: {name: g}
";
    let r = validate_str(text, "mixed.yaml");
    let load: Vec<_> = r.with_code("ML0007").collect();
    assert_eq!(load.len(), 3, "{load:#?}");
    assert_eq!(load[0].line, 9, "wrong type at its line: {:?}", load[0]);
    assert!(
        load[0].message.contains("invalid type"),
        "{}",
        load[0].message
    );
    assert!(!load[0].message.contains("column"), "{}", load[0].message);
    assert!(load[1].line >= 19 && load[1].line <= 21, "{:?}", load[1]);
    assert_eq!(load[2].line, 22, "{:?}", load[2]);
    // The good document in between is still validated.
    let sub = r.with_code("KIA1107").next().expect("b still checked");
    assert_eq!((sub.object.name.as_str(), sub.line), ("b", 18));
}

#[test]
fn list_items_and_unreadable_paths() {
    let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata:
    name: a
  spec:
    hosts: [a]
    http:
    - route:
      - destination:
          host: a
        weight: 30
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata:
    name: b
  spec:
    hosts: [a]
";
    let r = validate_str(text, "list.yaml");
    let f = r.with_code("KIA1104").next().expect("KIA1104");
    assert_eq!(f.line, 14);
    let dup: Vec<_> = r.with_code("KIA1106").map(|f| f.line).collect();
    assert_eq!(dup, vec![9, 20]);
    let missing = validate_paths(&[PathBuf::from("/nonexistent/meshlens.yaml")]);
    assert!(missing.has("ML0007") && missing.has_errors());
}

#[test]
fn regex_checks_follow_re2() {
    let vs = |re: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r}}\n\
             spec:\n  hosts: [r]\n  http:\n  - match:\n    - headers:\n        x-user:\n          \
             regex: '{re}'\n    route:\n    - destination: {{host: r}}\n"
        )
    };
    // Look-ahead is not RE2.
    let bad = validate_str(&vs("(?=admin).*"), "re.yaml");
    let f = bad.with_code("ML0003").next().expect("ML0003");
    assert_eq!(f.path, "spec.http[0].match[0].headers.x-user.regex");
    assert_eq!(f.line, 10);
    assert!(!validate_str(&vs("admin-[0-9]+"), "re.yaml").has("ML0003"));
}
