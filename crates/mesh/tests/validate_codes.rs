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
