//! Metric and label names as Prometheus 3 builds them from OTLP (underscore escaping with
//! type and unit suffixes; the rules of the OpenTelemetry specification's "OTLP metric points
//! to Prometheus" section and of Prometheus's `otlptranslator`):
//!
//! - the name is split on every character outside `[a-zA-Z0-9:]` and the non-empty pieces
//!   joined by `_` (so `http.server..duration` → `http_server_duration`);
//! - the unit's main part (before `/`) is mapped ([`unit_word`]: `s` → `seconds`, `By` →
//!   `bytes`, `1` → nothing, …) and appended unless the name already has that piece; a
//!   `/x` part becomes `per_` and `x` mapped by [`per_unit_word`] (`s` → `second`); a part
//!   containing `{` or `}` (an annotation such as `{request}`) adds nothing;
//! - a monotonic counter ends in `_total`, a gauge with unit `1` in `_ratio` (each moved to
//!   the end if already present);
//! - a name starting with a digit gets a `_` in front.

/// What kind of metric a name is built for (it decides the `_total` and `_ratio` suffixes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    MonotonicCounter,
    NonMonotonicCounter,
    Histogram,
    ExponentialHistogram,
    Summary,
}

/// The Prometheus word for an OTLP (UCUM) unit; units not listed are kept as sent.
pub fn unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The singular word for the unit after `/` (`By/s` → `per_second`).
pub fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

fn metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// The unit's main and `per_` suffixes, before cleaning.
fn unit_suffixes(unit: &str) -> (String, String) {
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    let main = if main.is_empty() || main.contains(['{', '}']) {
        String::new()
    } else {
        unit_word(main).to_string()
    };
    let per = match parts.next() {
        Some(p) if !p.is_empty() => {
            let p = p.trim();
            if p.is_empty() || p.contains(['{', '}']) {
                String::new()
            } else {
                let w = per_unit_word(p);
                if w.is_empty() {
                    String::new()
                } else {
                    format!("per_{w}")
                }
            }
        }
        _ => String::new(),
    };
    (main, per)
}

/// Invalid characters to `_`, runs of `_` collapsed, a leading `_` dropped.
fn clean_unit(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if metric_char(c) { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    match out.strip_prefix('_') {
        Some(rest) => rest.to_string(),
        None => out,
    }
}

/// The Prometheus name of an OTLP metric, or why it has none.
pub fn metric_name(name: &str, unit: &str, kind: Kind) -> Result<String, String> {
    let mut tokens: Vec<String> = name
        .split(|c: char| !metric_char(c))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let (main, per) = unit_suffixes(unit);
    let (mut main, mut per) = (clean_unit(&main), clean_unit(&per));
    if tokens.contains(&main) {
        main.clear();
    }
    if per == "per_" {
        per.clear();
    } else {
        if let Some(p) = per.strip_suffix('_') {
            per = p.to_string();
        }
        if tokens.contains(&per) {
            per.clear();
        }
    }
    if !per.is_empty() {
        if let Some(m) = main.strip_suffix('_') {
            main = m.to_string();
        }
    }
    for s in [main, per] {
        if !s.is_empty() {
            tokens.push(s);
        }
    }
    let mut move_to_end = |word: &str| {
        tokens.retain(|t| t != word);
        tokens.push(word.to_string());
    };
    if kind == Kind::MonotonicCounter {
        move_to_end("total");
    }
    if unit == "1" && kind == Kind::Gauge {
        move_to_end("ratio");
    }
    let mut out = tokens.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if out.is_empty() {
        return Err(format!("metric name {name:?} has no valid character"));
    }
    if out != name && out.chars().all(|c| c == '_') {
        return Err(format!(
            "metric name {name:?} normalizes to the invalid name {out:?}"
        ));
    }
    Ok(out)
}

/// The Prometheus label name of an attribute key: characters outside `[a-zA-Z0-9]` to `_`
/// (runs collapsed; a `__…__` name keeps its double underscores), `key_` before a leading
/// digit. Empty and all-underscore results are refused.
pub fn label_name(key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("label name is empty".into());
    }
    let (inner, reserved) = match key
        .strip_prefix("__")
        .and_then(|k| k.strip_suffix("__"))
        .filter(|_| key.len() >= 4)
    {
        Some(inner) => (inner, true),
        None => (key, false),
    };
    let mut out = String::with_capacity(key.len() + 4);
    if reserved {
        out.push_str("__");
    }
    let mut prev_underscore = false;
    for c in inner.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_underscore = false;
        } else if !prev_underscore {
            out.push('_');
            prev_underscore = true;
        }
    }
    if reserved {
        out.push_str("__");
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    if out.chars().all(|c| c == '_') {
        return Err(format!(
            "label name {key:?} normalizes to the invalid name {out:?}"
        ));
    }
    Ok(out)
}
