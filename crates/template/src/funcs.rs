//! The function table (Go builtins plus Prometheus's `template.go` functions, as in 2.42)
//! with each function's Go parameter types, and the Prometheus functions themselves.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::rc::Rc;

use crate::builtins::{self, NIL_DEREF};
use crate::timefmt::GoTime;
use crate::value::{ArgMap, Value, MAX_ARGS_DEPTH};
use crate::TemplateData;

/// A Go parameter type, as far as argument checking needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum P {
    /// `interface{}` or `reflect.Value`: anything.
    Any,
    /// `string`
    Str,
    /// `template.queryResult`
    Samples,
    /// `*template.sample`
    Sample,
}

impl P {
    pub fn go_name(self) -> &'static str {
        match self {
            P::Any => "interface {}",
            P::Str => "string",
            P::Samples => "template.queryResult",
            P::Sample => "*template.sample",
        }
    }
}

/// Parameters of a function; with `variadic`, the last one repeats.
pub(crate) struct Sig {
    pub params: &'static [P],
    pub variadic: bool,
}

const fn sig(params: &'static [P], variadic: bool) -> Sig {
    Sig { params, variadic }
}

/// The signature of a defined function, `None` for an unknown name.
pub(crate) fn lookup(name: &str) -> Option<Sig> {
    use P::*;
    Some(match name {
        // Go builtins.
        "and" | "or" | "print" | "println" | "html" | "js" | "urlquery" | "args" => {
            if matches!(name, "and" | "or") {
                sig(&[Any, Any], true)
            } else {
                sig(&[Any], true)
            }
        }
        "not" | "len" => sig(&[Any], false),
        "index" | "slice" | "eq" | "call" => sig(&[Any, Any], true),
        "printf" => sig(&[Str, Any], true),
        "ne" | "lt" | "le" | "gt" | "ge" => sig(&[Any, Any], false),
        // Prometheus.
        "query" | "safeHtml" | "title" | "toUpper" | "toLower" | "graphLink" | "tableLink"
        | "stripPort" | "stripDomain" | "parseDuration" => sig(&[Str], false),
        "first" => sig(&[Samples], false),
        "label" => sig(&[Str, Sample], false),
        "value" | "strvalue" => sig(&[Sample], false),
        "reReplaceAll" => sig(&[Str, Str, Str], false),
        "match" => sig(&[Str, Str], false),
        "sortByLabel" => sig(&[Str, Samples], false),
        "humanize" | "humanize1024" | "humanizeDuration" | "humanizePercentage"
        | "humanizeTimestamp" | "toTime" => sig(&[Any], false),
        "pathPrefix" | "externalURL" => sig(&[], false),
        _ => return None,
    })
}

fn s<'v>(args: &'v [Value], i: usize) -> &'v str {
    args.get(i).and_then(Value::as_str).unwrap_or("")
}

fn sample(args: &[Value], i: usize) -> Result<Rc<crate::Sample>, String> {
    match args.get(i) {
        Some(Value::Sample(s)) => Ok(s.clone()),
        _ => Err(NIL_DEREF.into()),
    }
}

/// Compiled patterns of one execution, so `reReplaceAll` and `match` inside a `range`
/// compile once. Small, and emptied when full.
#[derive(Default)]
pub(crate) struct RegexCache(HashMap<String, Result<regex::Regex, regex::Error>>);

impl RegexCache {
    const MAX: usize = 16;

    fn get(&mut self, pattern: &str) -> Result<regex::Regex, regex::Error> {
        if let Some(r) = self.0.get(pattern) {
            return r.clone();
        }
        let r = regex::Regex::new(pattern);
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(pattern.to_string(), r.clone());
        r
    }
}

/// Calls function `name` (already checked to exist and arguments to fit its signature).
pub(crate) fn call<'a>(
    name: &str,
    args: Vec<Value<'a>>,
    data: &'a TemplateData<'a>,
    regexes: &mut RegexCache,
) -> Result<Value<'a>, String> {
    let num = |i: usize| args.get(i).cloned().unwrap_or(Value::Nil);
    Ok(match name {
        "query" => {
            let q = data.query.ok_or("query function not available")?;
            let res = q.query(s(&args, 0))?;
            Value::Samples(Rc::new(res.into_iter().map(Rc::new).collect()))
        }
        "first" => match args.first() {
            Some(Value::Samples(v)) if !v.is_empty() => Value::Sample(v[0].clone()),
            _ => return Err("first() called on vector with no elements".into()),
        },
        "label" => {
            let smp = sample(&args, 1)?;
            Value::str(smp.labels.get(s(&args, 0)).map_or("", String::as_str))
        }
        "value" => Value::Float(sample(&args, 0)?.value),
        "strvalue" => Value::str(
            sample(&args, 0)?
                .labels
                .get("__value__")
                .map_or("", String::as_str),
        ),
        "args" => {
            let depth = 1 + args
                .iter()
                .map(|v| match v {
                    Value::Args(m) => m.depth,
                    _ => 0,
                })
                .max()
                .unwrap_or(0);
            if depth > MAX_ARGS_DEPTH {
                return Err(format!("args nested deeper than {MAX_ARGS_DEPTH}"));
            }
            let map: BTreeMap<String, Value<'a>> = args
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("arg{i}"), v.clone()))
                .collect();
            Value::Args(Rc::new(ArgMap { depth, map }))
        }
        "reReplaceAll" => {
            let pattern = s(&args, 0);
            let re = regexes.get(pattern).map_err(|e| {
                let why = regex_error(&e, pattern);
                format!("regexp: Compile({}): {why}", go_regexp_quote(pattern))
            })?;
            Value::str(&replace_all_bounded(&re, s(&args, 2), s(&args, 1)))
        }
        "match" => {
            let re = regexes
                .get(s(&args, 0))
                .map_err(|e| regex_error(&e, s(&args, 0)))?;
            Value::Bool(re.is_match(s(&args, 1)))
        }
        "safeHtml" => Value::Html(Rc::from(s(&args, 0))),
        "title" => Value::str(&title(s(&args, 0))),
        "toUpper" => Value::str(&map_chars(s(&args, 0), char::to_uppercase)),
        "toLower" => Value::str(&map_chars(s(&args, 0), char::to_lowercase)),
        "graphLink" => Value::str(&link(s(&args, 0), 0)),
        "tableLink" => Value::str(&link(s(&args, 0), 1)),
        "sortByLabel" => {
            let label = s(&args, 0);
            let mut v: Vec<Rc<crate::Sample>> = match args.get(1) {
                Some(Value::Samples(v)) => v.as_ref().clone(),
                _ => Vec::new(),
            };
            v.sort_by(|a, b| {
                let get = |x: &crate::Sample| x.labels.get(label).cloned().unwrap_or_default();
                get(a).cmp(&get(b))
            });
            Value::Samples(Rc::new(v))
        }
        "stripPort" => Value::str(&strip_port(s(&args, 0))),
        "stripDomain" => Value::str(&strip_domain(s(&args, 0))),
        "humanize" => Value::str(&crate::humanize::humanize(to_float(&num(0))?)),
        "humanize1024" => Value::str(&crate::humanize::humanize1024(to_float(&num(0))?)),
        "humanizeDuration" => Value::str(&crate::humanize::duration(to_float(&num(0))?)),
        "humanizePercentage" => Value::str(&crate::humanize::percentage(to_float(&num(0))?)),
        "humanizeTimestamp" => {
            let v = to_float(&num(0))?;
            if v.is_nan() || v.is_infinite() {
                Value::str(&crate::float::format(v, 'g', Some(4)))
            } else {
                Value::str(&GoTime::from_seconds(v)?.to_string())
            }
        }
        "toTime" => {
            let v = to_float(&num(0))?;
            if v.is_nan() || v.is_infinite() {
                return Err("value is NaN or Inf".into());
            }
            Value::Time(GoTime::from_seconds(v)?)
        }
        "pathPrefix" => Value::str(url_path(data.external_url)),
        "externalURL" => Value::str(data.external_url),
        "parseDuration" => Value::Float(crate::humanize::parse_duration(s(&args, 0))?),
        _ => return builtins::call(name, args),
    })
}

/// `Regex::replace_all`, but stopping once the result passes the output limit (the
/// caller then refuses the value): an empty-matching pattern with a long replacement
/// would otherwise build a huge string first.
fn replace_all_bounded(re: &regex::Regex, text: &str, rep: &str) -> String {
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        out.push_str(&text[last..m.start()]);
        caps.expand(rep, &mut out);
        last = m.end();
        if out.len() > crate::exec::MAX_OUTPUT {
            return out;
        }
    }
    out.push_str(&text[last..]);
    out
}

/// Prometheus's `convertToFloat`.
fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => crate::humanize::parse_float(s),
        v => Err(format!("can't convert {} to float", v.type_name())),
    }
}

/// Go's `regexp` quoting of a pattern in its panic message.
fn go_regexp_quote(p: &str) -> String {
    if crate::quote::can_backquote(p) {
        format!("`{p}`")
    } else {
        crate::quote::go_quote(p)
    }
}

/// A regex error in Go's wording where the cause maps to one of Go's (unbalanced
/// parentheses); otherwise the regex crate's description after Go's prefix.
fn regex_error(e: &regex::Error, pattern: &str) -> String {
    let text = e.to_string();
    let what = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.trim())
        .to_string();
    let go = match what.as_str() {
        "unclosed group" => format!("missing closing ): `{pattern}`"),
        "unopened group" => format!("unexpected ): `{pattern}`"),
        _ => what,
    };
    format!("error parsing regexp: {go}")
}

/// Per-character case mapping like Go's `unicode.ToUpper`: a character whose mapping is
/// not a single character stays as it is.
fn map_chars<I: Iterator<Item = char>>(s: &str, f: fn(char) -> I) -> String {
    s.chars()
        .map(|c| {
            let mut it = f(c);
            match (it.next(), it.next()) {
                (Some(m), None) => m,
                _ => c,
            }
        })
        .collect()
}

/// Go's deprecated `strings.Title`, which Prometheus still uses.
fn title(s: &str) -> String {
    let is_sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphabetic() || c.is_numeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let out = if is_sep(prev) {
                map_chars(c.encode_utf8(&mut [0; 4]), char::to_uppercase)
            } else {
                c.to_string()
            };
            prev = c;
            out
        })
        .collect()
}

fn link(expr: &str, tab: u8) -> String {
    format!(
        "/graph?g0.expr={}&g0.tab={tab}",
        crate::quote::query_escape(expr)
    )
}

/// Go's `net.SplitHostPort`.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    let i = hp.rfind(':')?;
    let (host, j, k) = if hp.starts_with('[') {
        let end = hp.find(']')?;
        if end + 1 != i {
            return None;
        }
        (&hp[1..end], 1, end + 1)
    } else {
        let host = &hp[..i];
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    if hp[j..].contains('[') || hp[k..].contains(']') {
        return None;
    }
    Some((host, &hp[i + 1..]))
}

fn strip_port(hp: &str) -> String {
    split_host_port(hp).map_or(hp, |(h, _)| h).to_string()
}

fn strip_domain(hp: &str) -> String {
    let (host, port) = split_host_port(hp).unwrap_or((hp, ""));
    if host.parse::<IpAddr>().is_ok() {
        return hp.to_string();
    }
    let host = host.split('.').next().unwrap_or("");
    if port.is_empty() {
        return host.to_string();
    }
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The path of a URL (`url.URL.Path`, without percent-decoding).
fn url_path(u: &str) -> &str {
    let rest = match u.find("://") {
        Some(i) => {
            let after = &u[i + 3..];
            after.find('/').map_or("", |j| &after[j..])
        }
        None => u,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_like_prometheus() {
        // Cases from Prometheus's template tests.
        assert_eq!(strip_port("foo.example.com"), "foo.example.com");
        assert_eq!(strip_port("foo.example.com:12345"), "foo.example.com");
        assert_eq!(strip_port("192.0.2.1:12345"), "192.0.2.1");
        assert_eq!(strip_port("2001:0DB8::1"), "2001:0DB8::1");
        assert_eq!(strip_port("[2001:0DB8::1]:12345"), "2001:0DB8::1");
        assert_eq!(strip_port("[2001:0DB8::1]::12345"), "[2001:0DB8::1]::12345");
        assert_eq!(strip_domain("foo.example.com"), "foo");
        assert_eq!(strip_domain("foo.example.com:12345"), "foo:12345");
        assert_eq!(strip_domain("192.0.2.1"), "192.0.2.1");
        assert_eq!(strip_domain("192.0.2.1:12345"), "192.0.2.1:12345");
        assert_eq!(strip_domain("2001:0DB8::1"), "2001:0DB8::1");
        assert_eq!(strip_domain("[2001:0DB8::1]:12345"), "[2001:0DB8::1]:12345");
        assert_eq!(
            strip_domain("[2001:0DB8::1]::12345"),
            "[2001:0DB8::1]::12345"
        );
    }

    #[test]
    fn text_functions() {
        assert_eq!(title("aa bb CC"), "Aa Bb CC");
        assert_eq!(title("hello_world foo-bar"), "Hello_world Foo-Bar");
        assert_eq!(map_chars("aa bb ß", char::to_uppercase), "AA BB ß");
        assert_eq!(link("up", 0), "/graph?g0.expr=up&g0.tab=0");
        assert_eq!(url_path("http://testhost:9090/path/prefix"), "/path/prefix");
        assert_eq!(url_path("http://h:1"), "");
    }
}
