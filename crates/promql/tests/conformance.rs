//! Runs the Prometheus project's own PromQL test scripts (../shared/conformance/promql)
//! against the engine and reports the pass count per file. A file may not fall below the
//! pass count recorded in `conformance_baseline.txt`.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

/// `../shared` beside the checkout, or `MESHLENS_SHARED_DIR`.
fn scripts_dir() -> PathBuf {
    std::env::var_os("MESHLENS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("conformance/promql")
}

/// CI must run the conformance material; elsewhere its absence is a loud skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

#[test]
fn prometheus_promql_test_scripts() {
    let dir = scripts_dir();
    if !dir.is_dir() {
        let msg = format!(
            "the PromQL conformance scripts are absent: {} does not exist \
             (set MESHLENS_SHARED_DIR to the directory holding conformance/)",
            dir.display()
        );
        assert!(!in_ci(), "{msg}; CI must run them");
        eprintln!("\n*** SKIPPING: {msg} ***\n");
        return;
    }
    let baseline: BTreeMap<String, usize> = include_str!("conformance_baseline.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some((p.next()?.to_string(), p.next()?.parse().ok()?))
        })
        .collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    let mut total = support::script::Counts::default();
    let mut regressions = Vec::new();
    println!(
        "{:<28} {:>7} {:>7} {:>14}",
        "file", "passed", "failed", "native passed"
    );
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        let out = support::script::run_script(&text);
        let c = out.counts;
        println!(
            "{name:<28} {:>7} {:>7} {:>14}",
            c.passed,
            c.failed,
            format!("{}/{}", c.native_passed, c.native)
        );
        if std::env::var_os("PROMQL_CONFORMANCE_VERBOSE").is_some() {
            for fail in &out.failures {
                println!("    {fail}");
            }
        }
        total.passed += c.passed;
        total.failed += c.failed;
        total.native += c.native;
        total.native_passed += c.native_passed;
        if let Some(&want) = baseline.get(&name) {
            if c.passed < want {
                regressions.push(format!("{name}: {} passed, baseline {want}", c.passed));
            }
        }
    }
    println!(
        "{:<28} {:>7} {:>7} {:>14}",
        "TOTAL",
        total.passed,
        total.failed,
        format!("{}/{}", total.native_passed, total.native)
    );
    assert!(
        regressions.is_empty(),
        "conformance regressions: {regressions:?}"
    );
}
