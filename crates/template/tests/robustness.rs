//! Bad and hostile templates: parsing and execution never panic, and output, values,
//! work, nesting and stack use stay bounded.

#[path = "oracle/table.rs"]
mod table;

use std::collections::BTreeMap;

use meshlens_template::{expand, QueryFn, Sample, Template, TemplateData, TemplateError};

/// `big` returns 5000 samples, anything else one.
struct Fixture;

impl QueryFn for Fixture {
    fn query(&self, q: &str) -> Result<Vec<Sample>, String> {
        let n = if q == "big" { 5000 } else { 1 };
        Ok((0..n)
            .map(|i| Sample {
                labels: BTreeMap::from([("instance".to_string(), format!("host-{i}"))]),
                value: f64::from(i),
            })
            .collect())
    }
}

fn with_data<T>(f: impl FnOnce(&TemplateData) -> T) -> T {
    let labels: BTreeMap<String, String> = (0..40)
        .map(|i| (format!("label_{i:02}"), "x".repeat(20)))
        .collect();
    let external = BTreeMap::from([("cluster".to_string(), "c".to_string())]);
    let data = TemplateData {
        labels: &labels,
        external_labels: &external,
        external_url: "http://localhost:9090/prefix",
        value: 1.5,
        query: Some(&Fixture),
    };
    f(&data)
}

fn execute(text: &str) -> Result<String, TemplateError> {
    with_data(|d| Template::parse("t", text).and_then(|t| t.execute(d)))
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "{{",
    "}}",
    "{{- ",
    " -}}",
    "(",
    ")",
    "|",
    "$x",
    "$",
    ":=",
    "=",
    "range",
    "if",
    "else",
    "end",
    "define",
    "template",
    "block",
    "with",
    "break",
    "continue",
    "\"a\"",
    "\"%d %s %v %q %x %5.2f %-*d\"",
    "`r`",
    "'c'",
    "'",
    "\"",
    "`",
    ".",
    ".Labels",
    ".Value",
    "$labels",
    "$value",
    ".label_01",
    "1",
    "-1.5e3",
    "0x1p4",
    "9223372036854775807",
    "18446744073709551616",
    "nil",
    "true",
    "printf",
    "print",
    "println",
    "query",
    "\"big\"",
    "first",
    "value",
    "label",
    "args",
    "index",
    "slice",
    "len",
    "eq",
    "lt",
    "and",
    "or",
    "not",
    "html",
    "js",
    "urlquery",
    "humanize",
    "humanizeDuration",
    "humanizeTimestamp",
    "toTime",
    ".Format",
    "reReplaceAll",
    "\"(\"",
    "\"a*\"",
    "match",
    "title",
    "sortByLabel",
    "stripPort",
    "parseDuration",
    "safeHtml",
    ",",
    "/*",
    "*/",
    " ",
    "\n",
    "é",
    "\u{a0}",
    "\u{0}",
    "_",
    "x",
];

#[test]
fn truncated_inputs_never_panic() {
    let extra = [
        "{{ range $i, $e := query \"big\" }}{{ $i }}{{ if eq $i 3 }}{{ break }}{{ end }}{{ end }}",
        "{{ define \"a\" }}{{ .arg0 }}{{ end }}{{ template \"a\" (args (printf \"%5.1f\" 1.5)) }}",
        "{{- /* c */ -}} {{ with $labels.label_01 }}{{ . | toUpper }}{{ else }}none{{ end }}",
    ];
    let seeds = table::CASES.iter().map(|c| c.1).chain(extra);
    let mut runs = 0;
    for seed in seeds {
        for (cut, _) in seed.char_indices() {
            let out = with_data(|d| expand("t", &seed[..cut], d));
            assert!(out.len() <= 1 << 21);
            runs += 1;
        }
    }
    assert!(runs > 1000, "only {runs} runs");
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut errors = 0;
    for _ in 0..20_000 {
        let n = 1 + rng.below(24);
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(PIECES[rng.below(PIECES.len())]);
            if rng.below(3) == 0 {
                text.push(' ');
            }
        }
        match execute(&text) {
            Ok(out) => assert!(out.len() <= 1 << 20),
            Err(e) => {
                errors += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    // The generator must reach both outcomes for the test to mean anything.
    assert!(errors > 0 && errors < 20_000, "{errors} errors");
}

fn limit_message(r: Result<String, TemplateError>) -> String {
    match r {
        Err(TemplateError::Limit { message, .. }) => message,
        other => panic!("expected a limit error, got {other:?}"),
    }
}

#[test]
fn output_is_bounded() {
    let text = format!(
        "{{{{ range query \"big\" }}}}{{{{ range $labels }}}}{}{{{{ end }}}}{{{{ end }}}}",
        "y".repeat(100)
    );
    assert_eq!(
        limit_message(execute(&text)),
        "output exceeds 1048576 bytes"
    );
    // Under the limit is fine.
    let out = execute("{{ range query \"big\" }}{{ .Labels.instance }},{{ end }}");
    assert!(out.is_ok_and(|s| s.starts_with("host-0,host-1,") && s.len() < 1 << 20));
}

#[test]
fn values_are_bounded() {
    let mut text = String::from("{{ $x := \"0123456789\" }}");
    for _ in 0..20 {
        text.push_str("{{ $x = printf \"%s%s\" $x $x }}");
    }
    assert_eq!(limit_message(execute(&text)), "value exceeds 1048576 bytes");
    let blowup = "{{ $x := printf \"%900000d\" 1 }}{{ reReplaceAll \"\" $x $x }}";
    assert_eq!(
        limit_message(execute(blowup)),
        "value exceeds 1048576 bytes"
    );
    let wide = "{{ printf \"%1000000d%1000000d\" 1 2 }}";
    assert!(matches!(execute(wide), Err(TemplateError::Limit { .. })));
}

#[test]
fn work_is_bounded() {
    // Each template calls the next twice: 2^30 calls without output.
    let mut text = String::new();
    for i in 0..30 {
        text.push_str(&format!("{{{{ define \"t{i}\" }}}}{{{{ template \"t{n}\" }}}}{{{{ template \"t{n}\" }}}}{{{{ end }}}}", n = i + 1));
    }
    text.push_str("{{ define \"t30\" }}{{ end }}{{ template \"t0\" }}");
    assert_eq!(
        limit_message(execute(&text)),
        "execution stopped after 1000000 steps"
    );
}

#[test]
fn recursion_is_bounded() {
    let err = execute("{{ define \"a\" }}{{ template \"a\" }}{{ end }}{{ template \"a\" }}");
    match err {
        Err(TemplateError::Exec {
            message, executing, ..
        }) => {
            assert_eq!(message, "exceeded maximum template depth (200)");
            assert_eq!(executing, "a");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn parse_nesting_is_bounded() {
    for text in [
        format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000)),
        format!("{}x{}", "{{ if 1 }}".repeat(5000), "{{ end }}".repeat(5000)),
        format!("{}x", "{{ range $labels }}".repeat(5000)),
    ] {
        match Template::parse("t", &text) {
            Err(TemplateError::Parse { message, .. }) => {
                assert_eq!(message, "max expression depth exceeded")
            }
            other => panic!("{other:?}"),
        }
    }
    // Within the limit, nesting works.
    let text = format!("{{{{ {}1{} }}}}", "(print ".repeat(90), ")".repeat(90));
    assert_eq!(execute(&text).as_deref(), Ok("1"));
}

#[test]
fn args_nesting_is_bounded() {
    let mut text = String::from("{{ $a := args 1 }}");
    for _ in 0..40 {
        text.push_str("{{ $a = args $a $a }}");
    }
    text.push_str("{{ $a }}");
    let err = execute(&text)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.ends_with("error calling args: args nested deeper than 32"),
        "{err}"
    );
}

/// The deepest evaluation allowed (a chain of template calls ending in nested calls)
/// fits in a 1 MiB stack even in debug builds.
#[test]
fn deepest_execution_fits_a_small_stack() {
    let mut text = String::new();
    for i in 0..120 {
        text.push_str(&format!(
            "{{{{ define \"d{i}\" }}}}{{{{ template \"d{}\" }}}}{{{{ end }}}}",
            i + 1
        ));
    }
    let nested = format!("{}1{}", "(print ".repeat(95), ")".repeat(95));
    text.push_str(&format!(
        "{{{{ define \"d120\" }}}}{{{{ print {nested} }}}}{{{{ end }}}}{{{{ template \"d0\" }}}}"
    ));
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || execute(&text).map_err(|e| e.to_string()));
    let result = handle.ok().and_then(|h| h.join().ok());
    let msg = match result {
        Some(Err(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(
        msg.ends_with("exceeded maximum template depth (200)"),
        "{msg}"
    );
}

#[test]
fn templates_are_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Template>();
    assert_send_sync::<TemplateError>();
}
