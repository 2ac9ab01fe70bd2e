//! The scenarios of Prometheus's `template/template_test.go` (v2.42), with its expected
//! strings. Prometheus runs those with arbitrary data as dot and no `$labels`
//! definitions; here every template runs as an alert annotation, so list inputs come from
//! `query` results or literals, and error columns are those tests' columns plus 112, the
//! length of the definitions Prometheus prepends to alert templates.

use std::collections::BTreeMap;

use meshlens_template::{expand, QueryFn, Sample, Template, TemplateData, TemplateError};

/// Query fixture: `metric` has two series out of order, `in` has the values given to
/// [`run_with`], `missing` and anything else nothing, `fail` errors.
struct Fixture(Vec<f64>);

fn sample(pairs: &[(&str, &str)], value: f64) -> Sample {
    let labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Sample { labels, value }
}

impl QueryFn for Fixture {
    fn query(&self, q: &str) -> Result<Vec<Sample>, String> {
        Ok(match q {
            "metric" | "metric{instance='a'}" => vec![
                sample(&[("__name__", "metric"), ("instance", "b")], 21.0),
                sample(&[("__name__", "metric"), ("instance", "a")], 11.0),
            ],
            "metric{__value__='a'}" => {
                vec![sample(&[("__name__", "metric"), ("__value__", "a")], 11.0)]
            }
            "1.5" => vec![sample(&[], 1.5)],
            "in" => self.0.iter().map(|&v| sample(&[], v)).collect(),
            "fail" => return Err("query failed".into()),
            _ => Vec::new(),
        })
    }
}

fn run_with(text: &str, inputs: &[f64]) -> String {
    let labels = BTreeMap::from([("instance".to_string(), "a".to_string())]);
    let external = BTreeMap::new();
    let fixture = Fixture(inputs.to_vec());
    let data = TemplateData {
        labels: &labels,
        external_labels: &external,
        external_url: "http://testhost:9090/path/prefix",
        value: 0.0,
        query: Some(&fixture),
    };
    expand("test", text, &data)
}

fn run(text: &str) -> String {
    run_with(text, &[])
}

fn exec_error(col: usize, at: &str, msg: &str) -> String {
    format!(
        "<error expanding template: error executing template test: template: test:1:{}: executing \"test\" at <{at}>: {msg}>",
        col + 112
    )
}

#[test]
fn plain_values_and_args() {
    assert_eq!(run("plain text"), "plain text");
    assert_eq!(run("{{ 1 }}"), "1");
    assert_eq!(run("{{ \"<b>\" }}"), "<b>");
    assert_eq!(
        run("{{define \"x\"}}{{.arg0}} {{.arg1}}{{end}}{{template \"x\" (args 1 \"2\")}}"),
        "1 2"
    );
}

#[test]
fn parse_errors() {
    let err = Template::parse("test", "{{ \u{a0}}}").err();
    assert_eq!(
        err.as_ref().map(TemplateError::to_string).as_deref(),
        Some("error parsing template test: template: test:1: unrecognized character in action: U+00A0")
    );
    assert_eq!(
        run("{{"),
        "<error expanding template: error parsing template test: template: test:1: unclosed action>"
    );
    assert!(matches!(err, Some(TemplateError::Parse { line: 1, .. })));
}

#[test]
fn query_functions() {
    assert_eq!(run("{{ query \"1.5\" | first | value }}"), "1.5");
    assert_eq!(
        run("{{ query \"metric{instance='a'}\" | first | value }}"),
        "21"
    );
    assert_eq!(
        run("{{ query \"metric{instance='a'}\" | first | label \"instance\" }}"),
        "b"
    );
    assert_eq!(
        run("{{ query \"metric{__value__='a'}\" | first | strvalue }}"),
        "a"
    );
    assert_eq!(
        run("{{ query \"metric{instance='a'}\" | first | label \"foo\" }}"),
        ""
    );
    assert_eq!(
        run("{{ $x := query \"metric\" | first }}{{ $x.Labels.foo }}"),
        ""
    );
    assert_eq!(
        run("{{ range query \"metric\" | sortByLabel \"instance\" }}{{.Labels.instance}}:{{.Value}}: {{end}}"),
        "a:11: b:21: "
    );
    assert_eq!(
        run("{{ query \"missing\" | first }}"),
        exec_error(
            21,
            "first",
            "error calling first: first() called on vector with no elements"
        )
    );
    assert_eq!(
        run("{{ (query \"missing\").banana }}"),
        exec_error(
            10,
            "\"missing\"",
            "can't evaluate field banana in type template.queryResult"
        )
    );
    assert_eq!(
        run("{{ query \"fail\" }}"),
        exec_error(3, "query \"fail\"", "error calling query: query failed")
    );
}

#[test]
fn query_without_engine_is_an_error() {
    let labels = BTreeMap::new();
    let data = TemplateData {
        labels: &labels,
        external_labels: &labels,
        external_url: "",
        value: 0.0,
        query: None,
    };
    let out = expand("test", "{{ query \"up\" }}", &data);
    assert!(out.starts_with("<error expanding template:"), "{out}");
    assert!(out.contains("error calling query"), "{out}");
}

#[test]
fn strip_port_and_domain() {
    let cases = [
        ("foo.example.com", "foo.example.com", "foo"),
        ("foo.example.com:12345", "foo.example.com", "foo:12345"),
        ("192.0.2.1", "192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:12345", "192.0.2.1", "192.0.2.1:12345"),
        ("2001:0DB8::1", "2001:0DB8::1", "2001:0DB8::1"),
        (
            "[2001:0DB8::1]:12345",
            "2001:0DB8::1",
            "[2001:0DB8::1]:12345",
        ),
        (
            "[2001:0DB8::1]::12345",
            "[2001:0DB8::1]::12345",
            "[2001:0DB8::1]::12345",
        ),
    ];
    for (input, port, domain) in cases {
        assert_eq!(
            run(&format!("{{{{ {input:?} | stripPort }}}}")),
            port,
            "{input}"
        );
        assert_eq!(
            run(&format!("{{{{ {input:?} | stripDomain }}}}")),
            domain,
            "{input}"
        );
    }
}

#[test]
fn regex_functions() {
    assert_eq!(run("{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }}"), "xa");
    assert_eq!(
        run("{{ match \"a+\" \"aa\" }} {{ match \"a+\" \"b\" }}"),
        "true false"
    );
}

#[test]
fn humanize_family() {
    let each = |f: &str| format!("{{{{ range query \"in\" }}}}{{{{ {f} .Value }}}}:{{{{ end }}}}");
    assert_eq!(
        run_with(&each("humanize"), &[0.0, 1.0, 1234567.0, 0.12]),
        "0:1:1.235M:120m:"
    );
    assert_eq!(run("{{ humanize \"0.0\" }}:{{ humanize \"1.0\" }}:{{ humanize \"1234567.0\" }}:{{ humanize \".12\" }}:"), "0:1:1.235M:120m:");
    assert_eq!(run("{{ humanize 0 }}:{{ humanize -1 }}:{{ humanize 1 }}:{{ humanize 1234567 }}:{{ humanize 9223372036854775807 }}"), "0:-1:1:1.235M:9.223E");
    assert_eq!(
        run("{{ humanize \"one\" }}"),
        exec_error(
            3,
            "humanize \"one\"",
            "error calling humanize: strconv.ParseFloat: parsing \"one\": invalid syntax"
        )
    );
    assert_eq!(
        run_with(&each("humanize1024"), &[0.0, 1.0, 1048576.0, 0.12]),
        "0:1:1Mi:0.12:"
    );
    assert_eq!(run("{{ humanize1024 -1 }}:{{ humanize1024 1234567 }}:{{ humanize1024 9223372036854775807 }}"), "-1:1.177Mi:8Ei");
    assert_eq!(
        run_with(
            &each("humanizeDuration"),
            &[
                0.0,
                1.0,
                60.0,
                3600.0,
                86400.0,
                86400.0 + 3600.0,
                -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0),
                899.99
            ]
        ),
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:"
    );
    assert_eq!(
        run_with(
            &each("humanizeDuration"),
            &[0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]
        ),
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"
    );
    assert_eq!(run("{{ humanizeDuration \"60\" }}:{{ humanizeDuration -1 }}:{{ humanizeDuration 1234567 }}"), "1m 0s:-1s:14d 6h 56m 7s");
    let all = "{{ range query \"in\" }}{{ humanize .Value }}:{{ humanize1024 .Value }}:{{ humanizeDuration .Value }}:{{humanizeTimestamp .Value}}:{{ end }}";
    assert_eq!(
        run_with(all, &[f64::INFINITY, f64::NEG_INFINITY, f64::NAN]),
        "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:"
    );
    assert_eq!(
        run("{{ humanize \"+Inf\" }}:{{ humanize1024 \"-Inf\" }}:{{ humanizeDuration \"NaN\" }}"),
        "+Inf:-Inf:NaN"
    );
}

#[test]
fn humanize_percentage_and_timestamps() {
    assert_eq!(
        run("{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}"),
        "-22.22%:0%:12.35%:123.5%"
    );
    assert_eq!(run("{{ humanizePercentage -1 }}:{{ humanizePercentage 1234567 }}:{{ humanizePercentage 9223372036854775807 }}"), "-100%:1.235e+08%:9.223e+20%");
    assert_eq!(
        run("{{ \"one\" | humanizePercentage }}"),
        exec_error(
            11,
            "humanizePercentage",
            "error calling humanizePercentage: strconv.ParseFloat: parsing \"one\": invalid syntax"
        )
    );
    assert_eq!(
        run("{{ humanizeTimestamp 0 }}:{{ humanizeTimestamp -1 }}:{{ humanizeTimestamp 1234567 }}:{{ humanizeTimestamp 9223372036 }}"),
        "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC"
    );
    assert_eq!(
        run("{{ humanizeTimestamp -9223372036854775808 }}"),
        exec_error(3, "humanizeTimestamp -9223372036854775808", "error calling humanizeTimestamp: -9.223372036854776e+18 cannot be represented as a nanoseconds timestamp since it overflows int64")
    );
    assert_eq!(
        run("{{ 1435065584.128 | humanizeTimestamp }}"),
        "2015-06-23 13:19:44.128 +0000 UTC"
    );
    assert_eq!(
        run("{{ \"1435065584.128\" | humanizeTimestamp }}"),
        "2015-06-23 13:19:44.128 +0000 UTC"
    );
    assert_eq!(
        run("{{ (1435065584.128 | toTime).Format \"2006\" }}"),
        "2015"
    );
    assert_eq!(
        run("{{ (\"1435065584.128\" | toTime).Format \"2006\" }}"),
        "2015"
    );
}

#[test]
fn strings_links_and_urls() {
    assert_eq!(run("{{ \"aa bb CC\" | title }}"), "Aa Bb CC");
    assert_eq!(run("{{ \"aa bb CC\" | toUpper }}"), "AA BB CC");
    assert_eq!(run("{{ \"aA bB CC\" | toLower }}"), "aa bb cc");
    assert_eq!(run("{{ graphLink \"up\" }}"), "/graph?g0.expr=up&g0.tab=0");
    assert_eq!(run("{{ tableLink \"up\" }}"), "/graph?g0.expr=up&g0.tab=1");
    assert_eq!(run("{{ pathPrefix }}"), "/path/prefix");
    assert_eq!(run("{{ externalURL }}"), "http://testhost:9090/path/prefix");
    assert_eq!(
        run("{{ printf \"%0.2f\" (parseDuration \"1h2m10ms\") }}"),
        "3720.01"
    );
    assert_eq!(run("{{ \"<b>\" | safeHtml }}"), "<b>");
}

#[test]
fn alert_variables() {
    let labels = BTreeMap::from([
        ("instance".to_string(), "host:9100".to_string()),
        ("severity".to_string(), "page".to_string()),
    ]);
    let external = BTreeMap::from([("cluster".to_string(), "eu1".to_string())]);
    let data = TemplateData {
        labels: &labels,
        external_labels: &external,
        external_url: "https://prom.example.com",
        value: 1e6,
        query: None,
    };
    let t = Template::parse("__alert_X", "{{ $labels.instance }} {{ .Labels.severity }} {{ $externalLabels.cluster }} {{ $externalURL }} {{ $value }} {{ .Value }}");
    let out = t.and_then(|t| t.execute(&data));
    assert_eq!(
        out.as_deref(),
        Ok("host:9100 page eu1 https://prom.example.com 1e+06 1e+06")
    );
    // A template parses once and renders for many alerts.
    let t = Template::parse("__alert_X", "{{ humanize $value }}").ok();
    let render = |v: f64| {
        let d = TemplateData {
            value: v,
            ..data_like(&data)
        };
        t.as_ref().map(|t| t.execute(&d))
    };
    assert_eq!(render(1234567.0), Some(Ok("1.235M".to_string())));
    assert_eq!(render(0.0012), Some(Ok("1.2m".to_string())));
}

fn data_like<'a>(d: &TemplateData<'a>) -> TemplateData<'a> {
    TemplateData {
        labels: d.labels,
        external_labels: d.external_labels,
        external_url: d.external_url,
        value: d.value,
        query: d.query,
    }
}
