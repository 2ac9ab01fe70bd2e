use super::*;

fn vals(text: &str) -> Vec<Option<f64>> {
    match parse_series_desc(&format!("up {text}")) {
        Ok(d) => d.values,
        Err(e) => panic!("{text:?}: {e}"),
    }
}

fn some(v: &[f64]) -> Vec<Option<f64>> {
    v.iter().map(|x| Some(*x)).collect()
}

#[test]
fn expands_the_documented_examples() {
    assert_eq!(vals("-2+4x3"), some(&[-2.0, 2.0, 6.0, 10.0]));
    assert_eq!(vals("1-2x4"), some(&[1.0, -1.0, -3.0, -5.0, -7.0]));
    assert_eq!(vals("1x4"), some(&[1.0; 5]));
    let v = vals("1 _x3 stale");
    assert_eq!(&v[..4], &[Some(1.0), None, None, None]);
    assert!(v[4].is_some_and(meshlens_model::is_stale_nan));
    assert_eq!(v.len(), 5);
}

#[test]
fn expands_blanks_numbers_and_specials() {
    assert_eq!(vals("_ 1 _"), vec![None, Some(1.0), None]);
    assert_eq!(vals("_x0"), vec![]);
    assert_eq!(vals("3x0"), some(&[3.0]));
    assert_eq!(vals("1e3 2.5E-1 .5"), some(&[1000.0, 0.25, 0.5]));
    assert_eq!(vals("010 09"), some(&[8.0, 9.0]), "Go's ParseInt base 0");
    assert_eq!(vals("+5 -5"), some(&[5.0, -5.0]));
    let v = vals("Inf -Inf +inf NaN");
    assert_eq!(
        &v[..3],
        &some(&[f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY])
    );
    assert!(v[3].is_some_and(|x| x.is_nan() && !meshlens_model::is_stale_nan(x)));
    assert_eq!(
        vals("1+0.1x3"),
        some(&[1.0, 1.1, 1.2000000000000002, 1.3000000000000003])
    );
    assert_eq!(vals("  1   2  "), some(&[1.0, 2.0]));
    assert_eq!(vals(""), vec![]);
    assert_eq!(vals("1e2x1"), some(&[100.0, 100.0]));
}

#[test]
fn parses_metrics_in_every_form() {
    let d = parse_series_desc(r#"http_requests{job="api", code='200',path=`/a"b`,} 1"#).unwrap();
    assert_eq!(
        d.labels,
        Labels::from_pairs([
            ("__name__", "http_requests"),
            ("job", "api"),
            ("code", "200"),
            ("path", "/a\"b")
        ])
    );
    let d = parse_series_desc(r#"{__name__="a:b", x="\n\u00e9\x41"} 1"#).unwrap();
    assert_eq!(
        d.labels,
        Labels::from_pairs([("__name__", "a:b"), ("x", "\néA")])
    );
    assert_eq!(parse_metric("").unwrap(), Labels::empty());
    assert_eq!(parse_metric(" {} ").unwrap(), Labels::empty());
    assert_eq!(
        parse_metric(r#"up {a="b"}"#).unwrap(),
        Labels::from_pairs([("__name__", "up"), ("a", "b")])
    );
    assert_eq!(
        parse_metric("sum").unwrap(),
        Labels::from_pairs([("__name__", "sum")])
    );
}

#[test]
fn refuses_bad_input_with_positions() {
    let e = parse_series_desc(r#"up{a="b"} 1 2 bad"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"1:15: parse error: unexpected identifier "bad" in series values, expected number or "stale""#
    );
    for bad in [
        "up 1+2",
        "up 1x",
        "up 1x2.5",
        "up __",
        "up 1.2.3",
        "up 0x3x",
        "up Infx3",
        "up 1a",
        "up{a=~\"b\"} 1",
        "up{a=\"b\" 1",
        "up{a=\"b 1",
        "up{1=\"b\"} 1",
        "up{a=\"\\q\"} 1",
        "up{a=\"b\"}1",
        "bool 1",
        "up 1 # 2",
        "up 1x99999999999999999999",
        "up 1x5000000",
        "up _x5000001",
    ] {
        assert!(parse_series_desc(bad).is_err(), "{bad:?} must fail");
    }
    assert!(parse_metric("up 1").is_err());
    assert!(parse_metric("up{a=\"b\"} x").is_err());
}

#[test]
fn arbitrary_text_never_panics() {
    let pieces = [
        "up", "{", "}", "a", "=", "\"", "'", "`", "\\", "1", "x", "+", "-", "_", " ", ".", "e",
        "stale", "Inf", ",", "é", "\n", "0", "9",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut s = String::new();
        for _ in 0..(seed % 12) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        let _ = parse_series_desc(&s);
        let _ = parse_metric(&s);
    }
}
