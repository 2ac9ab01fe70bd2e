//! Values during execution. Each variant stands for the Go type Prometheus's template
//! engine would hold, because Go's rules (printing, comparisons, argument checks, error
//! messages naming types) depend on those types.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::timefmt::GoTime;
use crate::{Sample, TemplateData};

/// Go's `fmt` name of the alert data struct (`.` at the top level).
pub(crate) const DATA_TYPE: &str = "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }";

/// A `map[string]string`: borrowed from the caller, or the labels of a query sample.
#[derive(Clone, Debug)]
pub(crate) enum StrMap<'a> {
    Borrowed(&'a BTreeMap<String, String>),
    OfSample(Rc<Sample>),
}

impl StrMap<'_> {
    pub fn map(&self) -> &BTreeMap<String, String> {
        match self {
            StrMap::Borrowed(m) => m,
            StrMap::OfSample(s) => &s.labels,
        }
    }
}

/// The result of `args`: a `map[string]interface {}`, with its nesting depth kept so
/// that nesting (and with it printing and dropping) stays bounded.
#[derive(Debug)]
pub(crate) struct ArgMap<'a> {
    pub depth: u32,
    pub map: BTreeMap<String, Value<'a>>,
}

/// Deepest nesting of `args` maps inside each other.
pub(crate) const MAX_ARGS_DEPTH: u32 = 32;

/// A value of the Go type named in each comment.
#[derive(Clone, Debug)]
pub(crate) enum Value<'a> {
    /// No value (an invalid `reflect.Value`, or a nil `interface{}`).
    Nil,
    /// `bool`
    Bool(bool),
    /// `int`
    Int(i64),
    /// `float64`
    Float(f64),
    /// `string`
    Str(Rc<str>),
    /// `template.HTML` (from `safeHtml`)
    Html(Rc<str>),
    /// `map[string]string`
    StrMap(StrMap<'a>),
    /// `map[string]interface {}` (from `args`)
    Args(Rc<ArgMap<'a>>),
    /// `template.queryResult`
    Samples(Rc<Vec<Rc<Sample>>>),
    /// `*template.sample`
    Sample(Rc<Sample>),
    /// `*time.Time` (from `toTime`)
    Time(GoTime),
    /// The alert data struct.
    Data(&'a TemplateData<'a>),
}

/// Go's `reflect.Kind` classes that builtins dispatch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GoKind {
    Invalid,
    Bool,
    Int,
    Float,
    String,
    Map,
    Slice,
    Ptr,
    Struct,
}

impl<'a> Value<'a> {
    pub fn str(s: &str) -> Value<'a> {
        Value::Str(Rc::from(s))
    }

    pub fn kind(&self) -> GoKind {
        match self {
            Value::Nil => GoKind::Invalid,
            Value::Bool(_) => GoKind::Bool,
            Value::Int(_) => GoKind::Int,
            Value::Float(_) => GoKind::Float,
            Value::Str(_) | Value::Html(_) => GoKind::String,
            Value::StrMap(_) | Value::Args(_) => GoKind::Map,
            Value::Samples(_) => GoKind::Slice,
            Value::Sample(_) | Value::Time(_) => GoKind::Ptr,
            Value::Data(_) => GoKind::Struct,
        }
    }

    /// Go's `reflect.Type.String()`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Html(_) => "template.HTML",
            Value::StrMap(_) => "map[string]string",
            Value::Args(_) => "map[string]interface {}",
            Value::Samples(_) => "template.queryResult",
            Value::Sample(_) => "*template.sample",
            Value::Time(_) => "*time.Time",
            Value::Data(_) => DATA_TYPE,
        }
    }

    /// The text of a string-kinded value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Html(s) => Some(s),
            _ => None,
        }
    }

    /// Go's `isTrue`: the truth of `if`, `with`, `and`, `or`, `not`.
    pub fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) | Value::Html(s) => !s.is_empty(),
            Value::StrMap(m) => !m.map().is_empty(),
            Value::Args(m) => !m.map.is_empty(),
            Value::Samples(v) => !v.is_empty(),
            Value::Sample(_) | Value::Time(_) | Value::Data(_) => true,
        }
    }

    /// Go's `%v` into `out`. `top` is true for the outermost operand, where a pointer to
    /// a struct prints as `&{...}` (inside containers Go prints an address; we print the
    /// contents, since an address means nothing here).
    pub fn write_v(&self, out: &mut String, top: bool) {
        // Whatever is written past the output limit is refused later anyway.
        if out.len() > crate::exec::MAX_OUTPUT {
            return;
        }
        match self {
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&crate::float::format_v(*f)),
            Value::Str(s) | Value::Html(s) => out.push_str(s),
            Value::StrMap(m) => write_str_map(out, m.map()),
            Value::Args(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.map.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write_v(out, false);
                }
                out.push(']');
            }
            Value::Samples(v) => {
                out.push('[');
                for (i, s) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push('&');
                    write_sample(out, s);
                }
                out.push(']');
            }
            Value::Sample(s) => {
                if top {
                    out.push('&');
                }
                write_sample(out, s);
            }
            Value::Time(t) => out.push_str(&t.to_string()),
            Value::Data(d) => {
                out.push('{');
                write_str_map(out, d.labels);
                out.push(' ');
                write_str_map(out, d.external_labels);
                out.push(' ');
                out.push_str(d.external_url);
                out.push(' ');
                out.push_str(&crate::float::format_v(d.value));
                out.push('}');
            }
        }
    }

    /// `%v` as a new string (top-level rules).
    pub fn to_v(&self) -> String {
        let mut s = String::new();
        self.write_v(&mut s, true);
        s
    }

    /// What the template writes for an action's value: pointers are dereferenced first,
    /// and a missing value prints as `<no value>`.
    pub fn write_printed(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<no value>"),
            Value::Sample(s) => write_sample(out, s),
            v => v.write_v(out, true),
        }
    }
}

fn write_str_map(out: &mut String, m: &BTreeMap<String, String>) {
    out.push_str("map[");
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(k);
        out.push(':');
        out.push_str(v);
    }
    out.push(']');
}

fn write_sample(out: &mut String, s: &Sample) {
    out.push('{');
    write_str_map(out, &s.labels);
    out.push(' ');
    out.push_str(&crate::float::format_v(s.value));
    out.push('}');
}
