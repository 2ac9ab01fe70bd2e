//! Prometheus's alert-template language: the part of Go's `text/template` that rule files
//! use, with Prometheus's functions (`humanize`, `query`, `reReplaceAll`, …).
//!
//! Output is meant to be byte-for-byte what Prometheus 2.42 renders for the same
//! annotation, including Go's value printing (`{{ $value }}` of 1000000 is `1e+06`),
//! `printf` verbs, and the text of errors, which Prometheus puts into the annotation.
//! Templates are parsed once ([`Template::parse`]) and executed per alert.
//!
//! Not supported (Prometheus rule templates do not reach them): complex numbers, the
//! `call` builtin on real functions, methods other than a few of `time.Time`.

mod ast;
mod builtins;
mod exec;
mod float;
mod funcs;
mod humanize;
mod lex;
mod literal;
mod parse;
mod printf;
mod quote;
mod timefmt;
mod value;

pub use float::format as format_float;
pub use quote::go_quote;

use std::collections::BTreeMap;

/// One sample as template functions see it (`query` results, `$value`).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Runs a PromQL instant query for `query`; returns the vector (or an error string).
pub trait QueryFn {
    fn query(&self, q: &str) -> Result<Vec<Sample>, String>;
}

/// What a template sees: Prometheus's `AlertTemplateData` plus the query hook.
pub struct TemplateData<'a> {
    /// `$labels` / `.Labels`
    pub labels: &'a BTreeMap<String, String>,
    /// `$externalLabels` / `.ExternalLabels`
    pub external_labels: &'a BTreeMap<String, String>,
    /// `$externalURL` / `.ExternalURL`; also what `externalURL` and `pathPrefix` return.
    pub external_url: &'a str,
    /// `$value` / `.Value`
    pub value: f64,
    /// Runs `query`; `None` makes `query` an error.
    pub query: Option<&'a dyn QueryFn>,
}

impl std::fmt::Debug for TemplateData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateData")
            .field("labels", &self.labels)
            .field("external_labels", &self.external_labels)
            .field("external_url", &self.external_url)
            .field("value", &self.value)
            .field("query", &self.query.is_some())
            .finish()
    }
}

/// Why a template could not be parsed or executed. `Display` gives exactly the error
/// text Prometheus's `Expander.Expand` returns (what ends up in an annotation).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The text is not a valid template. `line` counts lines of the template text (the
    /// `$labels`… definitions Prometheus prepends sit on line 1).
    #[error("error parsing template {name}: template: {name}:{line}: {message}")]
    Parse {
        name: String,
        line: usize,
        message: String,
    },
    /// Execution failed at `line:column` (column: 0-based byte offset within the line,
    /// counted in the text with the prepended definitions, as Go reports it) while
    /// executing template `executing`, at the node whose text is `context`.
    #[error(
        "error executing template {name}: template: {name}:{line}:{column}: executing {} at <{context}>: {message}",
        quote::go_quote(executing)
    )]
    Exec {
        name: String,
        line: usize,
        column: usize,
        executing: String,
        context: String,
        message: String,
    },
    /// A resource limit of this implementation was hit (output or value larger than 1 MiB,
    /// too many steps, nesting too deep); Go has no such limits.
    #[error("error executing template {name}: template: {name}: {message}")]
    Limit { name: String, message: String },
}

impl TemplateError {
    /// The Go `text/template` error alone, without Prometheus's "error parsing template
    /// NAME: " prefix: what `promtool check rules` prints for a bad template.
    pub fn go_message(&self) -> String {
        match self {
            TemplateError::Parse {
                name,
                line,
                message,
            } => {
                format!("template: {name}:{line}: {message}")
            }
            TemplateError::Exec {
                name,
                line,
                column,
                executing,
                context,
                message,
            } => format!(
                "template: {name}:{line}:{column}: executing {} at <{context}>: {message}",
                quote::go_quote(executing)
            ),
            TemplateError::Limit { name, message } => format!("template: {name}: {message}"),
        }
    }
}

/// The definitions Prometheus puts in front of every alert template.
const DEFS: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// A parsed alert template (annotation or label value), ready to execute many times.
#[derive(Debug)]
pub struct Template {
    name: String,
    text: String,
    parsed: parse::Parsed,
}

impl Template {
    /// Parses once (so rule files can be checked at load time). `name` is the Go template
    /// name and appears in errors; Prometheus uses `__alert_` followed by the alert name.
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let full = format!("{DEFS}{text}");
        let parsed = parse::parse(name, &full)?;
        Ok(Template {
            name: name.to_string(),
            text: full,
            parsed,
        })
    }

    /// Renders the template for one alert.
    pub fn execute(&self, data: &TemplateData) -> Result<String, TemplateError> {
        exec::execute(&self.name, &self.text, &self.parsed, data)
    }
}

/// Prometheus's behaviour for an annotation: parse + execute; on error returns the string
/// `<error expanding template: ERR>` exactly like Prometheus (rules/alerting.go).
pub fn expand(name: &str, text: &str, data: &TemplateData) -> String {
    if !text.contains("{{") {
        // No action: the output is the text (the prepended definitions print nothing).
        return text.to_string();
    }
    match Template::parse(name, text).and_then(|t| t.execute(data)) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}
