//! What every rule needs to evaluate: its query as an instant vector, and templates with
//! Prometheus's `$labels` / `$value` conveniences and a `query` function.

use std::collections::BTreeMap;

use meshlens_model::{Labels, MetricReader};
use meshlens_promql::{Engine, Value, VectorSample};
use meshlens_template::{QueryFn, Sample, Template, TemplateData};

fn template_name(alert: &str) -> String {
    format!("__alert_{alert}")
}

/// Whether an alert's label or annotation template parses, with promtool's message.
pub(crate) fn check_template(alert: &str, text: &str) -> Result<(), String> {
    Template::parse(&template_name(alert), text)
        .map(|_| ())
        .map_err(|e| e.go_message())
}

/// A label or annotation template of an alerting rule, parsed once. Prometheus prepends
/// `$labels`, `$externalLabels`, `$externalURL` and `$value` definitions (the template
/// crate does too, so error columns match).
pub(crate) enum AlertTemplate {
    /// No action: the text is the output.
    Plain(String),
    Parsed(Box<Template>),
    /// Renders as this error text on every alert, as Prometheus does.
    Broken(String),
}

impl AlertTemplate {
    pub fn new(alert: &str, text: &str) -> AlertTemplate {
        if !text.contains("{{") {
            return AlertTemplate::Plain(text.to_string());
        }
        match Template::parse(&template_name(alert), text) {
            Ok(t) => AlertTemplate::Parsed(Box::new(t)),
            Err(e) => AlertTemplate::Broken(format!("<error expanding template: {e}>")),
        }
    }

    /// The text for one alert; a failure becomes the error text, as Prometheus renders it.
    pub fn expand(&self, data: &TemplateData<'_>) -> String {
        match self {
            AlertTemplate::Plain(s) | AlertTemplate::Broken(s) => s.clone(),
            AlertTemplate::Parsed(t) => t
                .execute(data)
                .unwrap_or_else(|e| format!("<error expanding template: {e}>")),
        }
    }
}

/// A rule's expression, parsed once when the rule is loaded rather than at every evaluation.
pub(crate) struct ParsedExpr(Result<promql_parser::parser::Expr, String>);

impl ParsedExpr {
    pub fn new(text: &str) -> ParsedExpr {
        ParsedExpr(meshlens_promql::parse(text).map_err(|e| e.to_string()))
    }
}

/// A rule's query at one timestamp: a vector, or a scalar as one sample without labels.
pub(crate) fn query_vector(
    engine: &Engine,
    reader: &dyn MetricReader,
    expr: &ParsedExpr,
    ts_ms: i64,
) -> Result<Vec<VectorSample>, String> {
    let expr = expr.0.as_ref().map_err(Clone::clone)?;
    let res = engine
        .instant_query_expr(reader, expr, ts_ms)
        .map_err(|e| e.to_string())?;
    match res.value {
        Value::Vector(v) => Ok(v),
        Value::Scalar { t, v } => Ok(vec![VectorSample {
            labels: Labels::empty(),
            t,
            v,
            h: None,
        }]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

/// The `query` template function: an instant query at the evaluation time.
pub(crate) struct TemplateQuery<'a> {
    pub engine: &'a Engine,
    pub reader: &'a dyn MetricReader,
    pub ts_ms: i64,
}

impl QueryFn for TemplateQuery<'_> {
    fn query(&self, q: &str) -> Result<Vec<Sample>, String> {
        let v = query_vector(self.engine, self.reader, &ParsedExpr::new(q), self.ts_ms)?;
        Ok(v.into_iter()
            .map(|s| Sample {
                labels: to_map(&s.labels),
                value: s.v,
            })
            .collect())
    }
}

pub(crate) fn to_map(labels: &Labels) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}
