//! One pair of fixtures per check code: `validate/<code>/bad.yaml` must raise the code and
//! `good.yaml`, a near-identical config, must not. Both are validated together with
//! `validate/registry.yaml` (bookinfo's Services and workloads).

use std::path::PathBuf;

use meshlens_mesh::validate::{validate_paths, Report};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/validate")
        .join(rel)
}

fn run(case: &str, which: &str) -> Report {
    validate_paths(&[
        fixture("registry.yaml"),
        fixture(&format!("{case}/{which}.yaml")),
    ])
}

/// `bad` raises `code` (pointing into the bad file), `good` does not.
fn pair(code: &str) {
    let case = code.to_ascii_lowercase();
    let bad = run(&case, "bad");
    let hits: Vec<_> = bad.with_code(code).collect();
    assert!(!hits.is_empty(), "{code} not raised by bad.yaml:\n{bad:#?}");
    for f in hits {
        assert!(f.file.ends_with(format!("{case}/bad.yaml")), "{f:?}");
        assert!(f.line > 0, "{f:?}");
    }
    let good = run(&case, "good");
    assert!(!good.has(code), "{code} raised by good.yaml:\n{good:#?}");
}

#[test]
fn kia0002() {
    pair("KIA0002");
}

#[test]
fn kia0004() {
    pair("KIA0004");
}

/// KIA0004 on an AuthorizationPolicy (a kind the loader models, unlike Sidecar).
#[test]
fn kia0004_authorization_policy() {
    let bad = run("kia0004-authz", "bad");
    let hits: Vec<_> = bad.with_code("KIA0004").collect();
    assert_eq!(hits.len(), 1, "{bad:#?}");
    assert_eq!(hits[0].object.kind, "AuthorizationPolicy");
    assert_eq!(hits[0].path, "spec.selector");
    assert_eq!(hits[0].line, 7);
    assert!(!run("kia0004-authz", "good").has("KIA0004"));
}

#[test]
fn kia0101() {
    pair("KIA0101");
}

#[test]
fn kia0102() {
    pair("KIA0102");
}

#[test]
fn kia0104() {
    pair("KIA0104");
}

#[test]
fn kia0105() {
    pair("KIA0105");
}

#[test]
fn kia0106() {
    pair("KIA0106");
}

/// The findings point at the offending value, with Kiali's severities.
#[test]
fn authorization_policy_findings_point_at_the_value() {
    let r = run("kia0101", "bad");
    let f = r.with_code("KIA0101").next().unwrap();
    assert_eq!(f.path, "spec.rules[0].from[0].source.namespaces[1]");
    assert_eq!(f.line, 15);
    assert_eq!(f.severity, meshlens_mesh::validate::Severity::Warning);
    assert!(f.message.ends_with("namespace nowhere"), "{f:?}");
    let r = run("kia0106", "bad");
    let f: Vec<_> = r.with_code("KIA0106").collect();
    assert_eq!(f.len(), 1, "{r:#?}");
    assert_eq!(f[0].path, "spec.rules[0].from[0].source.principals[1]");
    assert_eq!(f[0].severity, meshlens_mesh::validate::Severity::Error);
}

/// A misspelt field does not load (it would leave the rule empty, matching everything).
#[test]
fn authorization_policy_that_does_not_parse_is_ml0007_at_its_line() {
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - to:\n    - operation:\n        method: [GET]\n";
    let r = meshlens_mesh::validate::validate_str(text, "ap.yaml");
    let f = r.with_code("ML0007").next().expect("ML0007");
    assert_eq!(f.line, 8, "{f:?}");
    assert!(f.message.contains("unknown field `method`"), "{f:?}");
}

#[test]
fn kia0201() {
    pair("KIA0201");
}

#[test]
fn kia0202() {
    pair("KIA0202");
}

#[test]
fn kia0203() {
    pair("KIA0203");
}

#[test]
fn kia0205() {
    pair("KIA0205");
}

#[test]
fn kia0206() {
    pair("KIA0206");
}

#[test]
fn kia0207() {
    pair("KIA0207");
}

#[test]
fn kia0208() {
    pair("KIA0208");
}

#[test]
fn kia0209() {
    pair("KIA0209");
}

#[test]
fn kia0301() {
    pair("KIA0301");
}

#[test]
fn kia0302() {
    pair("KIA0302");
}

#[test]
fn kia0401() {
    pair("KIA0401");
}

#[test]
fn kia0501() {
    pair("KIA0501");
}

#[test]
fn kia0505() {
    pair("KIA0505");
}

#[test]
fn kia0506() {
    pair("KIA0506");
}

#[test]
fn kia0601() {
    pair("KIA0601");
}

#[test]
fn kia0602() {
    pair("KIA0602");
}

#[test]
fn kia1004() {
    pair("KIA1004");
}

#[test]
fn kia1006() {
    pair("KIA1006");
}

#[test]
fn kia1101() {
    pair("KIA1101");
}

#[test]
fn kia1102() {
    pair("KIA1102");
}

#[test]
fn kia1104() {
    pair("KIA1104");
}

#[test]
fn kia1105() {
    pair("KIA1105");
}

#[test]
fn kia1106() {
    pair("KIA1106");
}

#[test]
fn kia1107() {
    pair("KIA1107");
}

#[test]
fn kia1108() {
    pair("KIA1108");
}

#[test]
fn kia1201() {
    pair("KIA1201");
}

#[test]
fn kia1211() {
    pair("KIA1211");
}

#[test]
fn kia1212() {
    pair("KIA1212");
}

#[test]
fn ml0001() {
    pair("ML0001");
}

#[test]
fn ml0002() {
    pair("ML0002");
}

#[test]
fn ml0003() {
    pair("ML0003");
}

#[test]
fn ml0004() {
    pair("ML0004");
}

#[test]
fn ml0005() {
    pair("ML0005");
}

#[test]
fn ml0006() {
    pair("ML0006");
}

#[test]
fn ml0007() {
    pair("ML0007");
}

#[test]
fn ml0008() {
    pair("ML0008");
}
