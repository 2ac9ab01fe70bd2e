//! A corpus modelled on Istio's own samples (Bookinfo, httpbin, helloworld) in
//! `testdata/istio-samples/`, validated in the combinations Istio's tasks apply them. Kiali
//! reports no error on these, so neither may we; a few broken variants (one edit each) prove
//! the checks still bite. Also one regression test per bug the corpus found, named after it.

use std::path::{Path, PathBuf};

use meshlens_mesh::validate::input::Inputs;
use meshlens_mesh::validate::{to_text, validate_inputs, Options, Report, Severity};

fn sample(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/istio-samples")
        .join(rel)
}

fn read(rel: &str) -> String {
    let p = sample(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Validates files by their corpus-relative names, with `edit` applied to the text of the
/// file named first in it (it must change something, so a stale edit cannot pass silently).
fn run_edited(files: &[&str], edit: Option<(&str, &str, &str)>) -> Report {
    let mut inp = Inputs::default();
    for f in files {
        let mut text = read(f);
        if let Some((target, from, to)) = edit.filter(|e| e.0 == *f) {
            assert!(text.contains(from), "{target} lacks {from:?}");
            text = text.replacen(from, to, 1);
        }
        inp.read_str(&text, Path::new(f));
    }
    if let Some((target, ..)) = edit {
        assert!(files.contains(&target), "edit of {target}, not in the run");
    }
    validate_inputs(&inp, &Options::default())
}

fn run(files: &[&str]) -> Report {
    run_edited(files, None)
}

const PLATFORM: &str = "bookinfo/platform/bookinfo.yaml";
const GATEWAY: &str = "bookinfo/networking/bookinfo-gateway.yaml";
const DR_ALL: &str = "bookinfo/networking/destination-rule-all.yaml";
const DR_ALL_MTLS: &str = "bookinfo/networking/destination-rule-all-mtls.yaml";
const VS_ALL_V1: &str = "bookinfo/networking/virtual-service-all-v1.yaml";
const EGRESS: &str = "bookinfo/networking/egress-rule-google-apis.yaml";

/// Each set is applied together by one of Istio's tasks.
const SCENARIOS: &[(&str, &[&str])] = &[
    ("bookinfo", &[PLATFORM, GATEWAY]),
    ("request routing", &[PLATFORM, GATEWAY, DR_ALL, VS_ALL_V1]),
    (
        "routing by user",
        &[
            PLATFORM,
            DR_ALL,
            "bookinfo/networking/virtual-service-reviews-test-v2.yaml",
        ],
    ),
    (
        "traffic shifting",
        &[
            PLATFORM,
            GATEWAY,
            DR_ALL,
            "bookinfo/networking/virtual-service-reviews-50-v3.yaml",
        ],
    ),
    (
        "traffic shifting done",
        &[
            PLATFORM,
            DR_ALL,
            "bookinfo/networking/virtual-service-reviews-v3.yaml",
        ],
    ),
    (
        "fault injection delay",
        &[
            PLATFORM,
            DR_ALL,
            "bookinfo/networking/virtual-service-reviews-test-v2.yaml",
            "bookinfo/networking/virtual-service-ratings-test-delay.yaml",
        ],
    ),
    (
        "fault injection abort",
        &[
            PLATFORM,
            DR_ALL,
            "bookinfo/networking/virtual-service-reviews-jason-v2-v3.yaml",
            "bookinfo/networking/virtual-service-ratings-test-abort.yaml",
        ],
    ),
    ("mutual tls", &[PLATFORM, GATEWAY, DR_ALL_MTLS, VS_ALL_V1]),
    ("egress", &[PLATFORM, EGRESS]),
    ("egress alone", &[EGRESS]),
    (
        "httpbin",
        &["httpbin/httpbin.yaml", "httpbin/httpbin-gateway.yaml"],
    ),
    (
        "helloworld",
        &[
            "helloworld/helloworld.yaml",
            "helloworld/helloworld-gateway.yaml",
            "helloworld/helloworld-canary.yaml",
        ],
    ),
];

/// Every corpus file, to check each one also passes on its own (no Kubernetes registry).
fn all_files() -> Vec<String> {
    let root = sample("");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("corpus dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&root).expect("under root");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn assert_clean(name: &str, r: &Report) {
    let bad: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error || f.code == "ML0008")
        .collect();
    assert!(bad.is_empty(), "{name}: {bad:#?}\n{}", to_text(r));
    for n in &r.not_applicable {
        assert!(
            !r.has(n.code),
            "{name}: {} both found and not applicable",
            n.code
        );
    }
}

#[test]
fn istio_sample_scenarios_have_no_errors() {
    for (name, files) in SCENARIOS {
        let r = run(files);
        assert!(r.objects > 0, "{name}: nothing read");
        assert_clean(name, &r);
    }
}

#[test]
fn every_istio_sample_file_alone_has_no_errors() {
    let files = all_files();
    assert!(files.len() >= 15, "corpus incomplete: {files:?}");
    for f in &files {
        assert_clean(f, &run(&[f.as_str()]));
    }
}

#[test]
fn istio_sample_objects_are_all_read() {
    // 4 Services, 4 ServiceAccounts, 6 Deployments, then the Gateway and its VirtualService.
    let r = run(&[PLATFORM, GATEWAY]);
    assert_eq!(r.objects, 16, "{}", to_text(&r));
    assert_eq!(r.files, 2);
}

/// (what is broken, the files, the edit, the code it must raise, in which file).
type Broken = (
    &'static str,
    &'static [&'static str],
    (&'static str, &'static str, &'static str),
    &'static str,
);

const BROKEN: &[Broken] = &[
    (
        "route to a subset no rule defines",
        &[PLATFORM, DR_ALL, VS_ALL_V1],
        (VS_ALL_V1, "subset: v1", "subset: v4"),
        "KIA1107",
    ),
    (
        "gateway renamed under its VirtualService",
        &[PLATFORM, GATEWAY],
        (GATEWAY, "name: bookinfo-gateway", "name: bookinfo-gw"),
        "KIA1102",
    ),
    (
        "rule for a host that does not exist",
        &[PLATFORM, DR_ALL],
        (DR_ALL, "host: reviews", "host: reveiws"),
        "KIA0202",
    ),
    (
        "Service port named outside <protocol>[-suffix]",
        &[PLATFORM],
        (PLATFORM, "name: http", "name: web"),
        "KIA0601",
    ),
    (
        "weights that do not add up",
        &[
            PLATFORM,
            DR_ALL,
            "bookinfo/networking/virtual-service-reviews-50-v3.yaml",
        ],
        (
            "bookinfo/networking/virtual-service-reviews-50-v3.yaml",
            "weight: 50",
            "weight: 20",
        ),
        "ML0001",
    ),
    (
        "routed subset whose labels select no workload",
        &[PLATFORM, DR_ALL, VS_ALL_V1],
        (DR_ALL, "version: v1", "version: v7"),
        "KIA0203",
    ),
    (
        "Istio kind meshlens does not check",
        &["httpbin/httpbin.yaml"],
        (
            "httpbin/httpbin.yaml",
            "apiVersion: v1\nkind: ServiceAccount",
            "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter",
        ),
        "ML0008",
    ),
    (
        "retries longer than the timeout",
        &[
            "helloworld/helloworld.yaml",
            "helloworld/helloworld-canary.yaml",
        ],
        (
            "helloworld/helloworld-canary.yaml",
            "timeout: 10s",
            "timeout: 3s",
        ),
        "ML0006",
    ),
];

#[test]
fn broken_istio_samples_raise_their_codes() {
    for (what, files, edit, code) in BROKEN {
        let r = run_edited(files, Some(*edit));
        let hits: Vec<_> = r.with_code(code).collect();
        assert!(!hits.is_empty(), "{what}: no {code}\n{}", to_text(&r));
        assert!(
            hits.iter().any(|f| f.file == Path::new(edit.0)),
            "{what}: {code} not in {}: {hits:#?}",
            edit.0
        );
        // Each variant is broken by what it names, not by an incidental error elsewhere.
        if hits.iter().any(|f| f.severity == Severity::Error) {
            assert!(r.has_errors());
        }
    }
}

// Regression tests, one per bug found by running the samples.

/// A ServiceEntry port named `https` with `protocol: http` is valid Istio: the protocol field
/// decides, and its names are free-form.
#[test]
fn service_entry_port_names_are_not_kia0601() {
    let r = run(&[PLATFORM, EGRESS]);
    assert!(!r.has("KIA0601"), "{}", to_text(&r));
    let r = run(&[EGRESS]);
    assert!(!r.has("KIA0601"), "{}", to_text(&r));
    // Still listed as not applicable without Services, and never both.
    assert!(r.not_applicable.iter().any(|n| n.code == "KIA0601"));
}

/// Without Kubernetes Services, KIA0601 is listed as not applicable; a code with findings
/// must never be listed so.
#[test]
fn not_applicable_never_lists_a_reported_code() {
    let se_only = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db.internal
  subsets: [{name: v2, labels: {version: v2}}]
";
    let r = meshlens_mesh::validate::validate_str(se_only, "db.yaml");
    // KIA0203 runs on ServiceEntry endpoints even with the Kubernetes registry unknown.
    assert!(r.has("KIA0203"), "{}", to_text(&r));
    assert!(!r.not_applicable.iter().any(|n| n.code == "KIA0203"));
    assert!(r.not_applicable.iter().any(|n| n.code == "KIA0202"));
}

/// ServiceAccounts (and other ordinary Kubernetes kinds) are skipped without a warning.
#[test]
fn service_accounts_are_not_ml0008() {
    let r = run(&[PLATFORM]);
    assert!(!r.has("ML0008"), "{}", to_text(&r));
    let ordinary = [
        ("v1", "ServiceAccount"),
        ("v1", "Secret"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "Endpoints"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("batch/v1", "CronJob"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("networking.k8s.io/v1", "Ingress"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("cert-manager.io/v1", "Certificate"),
    ];
    let text: String = ordinary
        .iter()
        .map(|(api, kind)| format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: x}}\n---\n"))
        .collect();
    let r = meshlens_mesh::validate::validate_str(&text, "k8s.yaml");
    assert!(r.findings.is_empty(), "{}", to_text(&r));
    assert_eq!(r.objects, ordinary.len());
    // Istio kinds meshlens does not check still get ML0008.
    for (api, kind) in [
        ("telemetry.istio.io/v1", "Telemetry"),
        ("networking.istio.io/v1alpha3", "EnvoyFilter"),
        ("extensions.istio.io/v1alpha1", "WasmPlugin"),
    ] {
        let r = meshlens_mesh::validate::validate_str(
            &format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: x}}\n"),
            "istio.yaml",
        );
        assert_eq!(r.with_code("ML0008").count(), 1, "{kind}: {}", to_text(&r));
    }
}

/// Bookinfo's `destination-rule-all.yaml` defines ratings v2, v2-mysql … before their
/// Deployments exist: Kiali lowers KIA0203 on subsets no route uses, and so do we.
#[test]
fn unrouted_subset_without_workloads_is_not_an_error() {
    let r = run(&[PLATFORM, DR_ALL, VS_ALL_V1]);
    let unrouted: Vec<_> = r.with_code("KIA0203").collect();
    assert_eq!(unrouted.len(), 4, "{}", to_text(&r));
    assert!(unrouted.iter().all(|f| f.severity == Severity::Info));
    // Routing to one of them makes it an error again.
    let vs = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-v2}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings, subset: v2-mysql}
";
    let mut inp = Inputs::default();
    for f in [PLATFORM, DR_ALL] {
        inp.read_str(&read(f), Path::new(f));
    }
    inp.read_str(vs, Path::new("ratings-v2.yaml"));
    let r = validate_inputs(&inp, &Options::default());
    let errors: Vec<_> = r
        .with_code("KIA0203")
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{}", to_text(&r));
    assert!(errors[0].message.contains("v2-mysql of ratings"));
    // A tcp route counts too.
    let tcp = vs.replace("  http:\n", "  tcp:\n");
    let mut inp = Inputs::default();
    for f in [PLATFORM, DR_ALL] {
        inp.read_str(&read(f), Path::new(f));
    }
    inp.read_str(&tcp, Path::new("ratings-v2.yaml"));
    let r = validate_inputs(&inp, &Options::default());
    assert!(r.has_errors(), "{}", to_text(&r));
}
