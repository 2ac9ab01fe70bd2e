//! From the raw YAML to [`RuleFile`], with promtool's checks and messages.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use meshlens_model::labels::{is_valid_label_name, is_valid_metric_name};
use meshlens_model::METRIC_NAME;

use super::locate::{Locator, Pos};
use super::raw::{strings, RawGroup, RawRule, Scalar};
use super::{GroupSpec, RuleFile, RuleFileError, RuleSpec};
use crate::duration::parse_duration;

struct Errors<'a> {
    file: &'a str,
    list: Vec<RuleFileError>,
    /// The first value, in document order, that Go's YAML decoder refuses (a bad
    /// duration): promtool reports it alone, without position, and validates nothing else.
    decode: Option<(Pos, String)>,
}

impl Errors<'_> {
    fn group(&mut self, pos: Pos, group: Option<&str>, reason: String) {
        self.list.push(RuleFileError {
            file: self.file.to_string(),
            line: pos.line,
            col: pos.col,
            group: group.map(str::to_string),
            rule_index: None,
            rule_name: String::new(),
            also_at: None,
            positioned: true,
            reason,
        });
    }

    fn decode(&mut self, pos: Pos, reason: String) {
        let first = match &self.decode {
            Some((p, _)) => (pos.line, pos.col) < (p.line, p.col),
            None => true,
        };
        if first {
            self.decode = Some((pos, reason));
        }
    }

    /// A duration as Go's decoder reads `model.Duration`: null is zero, an empty string
    /// is an error.
    fn duration(&mut self, pos: Pos, v: Option<Scalar>) -> Option<Duration> {
        let s = v?.0;
        match parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.decode(pos, e);
                None
            }
        }
    }
}

/// Rule-level error reporting for one rule.
struct RuleCtx<'a, 'b> {
    errs: &'a mut Errors<'b>,
    loc: &'a Locator,
    group: &'a str,
    g: usize,
    r: usize,
    name: String,
}

impl RuleCtx<'_, '_> {
    fn push(&mut self, pos: Pos, reason: String) {
        self.errs.list.push(RuleFileError {
            file: self.errs.file.to_string(),
            line: pos.line,
            col: pos.col,
            group: Some(self.group.to_string()),
            rule_index: Some(self.r + 1),
            rule_name: self.name.clone(),
            also_at: None,
            positioned: true,
            reason,
        });
    }

    /// A problem promtool reports without a position (its check keeps no YAML node).
    fn unpositioned(&mut self, field: &str, key: &str, reason: String) {
        self.at_key(field, key, reason);
        if let Some(e) = self.errs.list.last_mut() {
            e.positioned = false;
        }
    }

    /// A missing or empty field: where its value is, or promtool's `0:0` when absent.
    fn at_value_or_zero(&mut self, field: &str, reason: String) {
        let pos = self
            .loc
            .rule_value(self.g, self.r, field)
            .unwrap_or_default();
        self.push(pos, reason);
    }

    fn at_field(&mut self, field: &str, reason: String) {
        let pos = self.loc.rule_field(self.g, self.r, field);
        self.push(pos, reason);
    }

    fn at_key(&mut self, field: &str, key: &str, reason: String) {
        let pos = self.loc.rule_map_key(self.g, self.r, field, key);
        self.push(pos, reason);
    }

    fn duration(&mut self, field: &str, v: Option<Scalar>) -> Duration {
        let pos = self.loc.rule_field(self.g, self.r, field);
        self.errs.duration(pos, v).unwrap_or_default()
    }
}

pub(super) fn validate(
    file: &str,
    groups: Vec<RawGroup>,
    loc: &Locator,
) -> Result<RuleFile, Vec<RuleFileError>> {
    let mut errs = Errors {
        file,
        list: Vec::new(),
        decode: None,
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(groups.len());
    for (g, raw) in groups.into_iter().enumerate() {
        let name = raw.name.map(|s| s.0).unwrap_or_default();
        if name.is_empty() {
            errs.group(loc.group_pos(g), None, "Groupname must not be empty".into());
        }
        if !seen.insert(name.clone()) {
            let reason = format!("groupname: {name:?} is repeated in the same file");
            errs.group(loc.group_pos(g), Some(&name), reason);
        }
        let interval = errs
            .duration(loc.group_field(g, "interval"), raw.interval)
            .filter(|d| !d.is_zero());
        let query_offset = errs.duration(loc.group_field(g, "query_offset"), raw.query_offset);
        let labels = strings(raw.labels);
        for k in labels.keys() {
            if !is_valid_label_name(k) || k == METRIC_NAME {
                let reason = format!("group {name:?}: invalid label name: {k}");
                errs.group(loc.group_map_key(g, "labels", k), Some(&name), reason);
            }
        }
        let mut rules = Vec::new();
        for (r, raw_rule) in raw.rules.unwrap_or_default().into_iter().enumerate() {
            if let Some(rule) = validate_rule(&mut errs, loc, &name, g, r, raw_rule) {
                rules.push(rule);
            }
        }
        out.push(GroupSpec {
            name,
            file: file.to_string(),
            interval,
            limit: raw.limit.unwrap_or(0),
            query_offset,
            labels,
            rules,
        });
    }
    if let Some((pos, reason)) = errs.decode {
        return Err(vec![RuleFileError {
            file: file.to_string(),
            line: pos.line,
            col: pos.col,
            group: None,
            rule_index: None,
            rule_name: String::new(),
            also_at: None,
            positioned: false,
            reason,
        }]);
    }
    if errs.list.is_empty() {
        Ok(RuleFile {
            path: file.to_string(),
            groups: out,
        })
    } else {
        Err(errs.list)
    }
}

fn validate_rule(
    errs: &mut Errors<'_>,
    loc: &Locator,
    group: &str,
    g: usize,
    r: usize,
    raw: RawRule,
) -> Option<RuleSpec> {
    let record = raw.record.map(|s| s.0).unwrap_or_default();
    let alert = raw.alert.map(|s| s.0).unwrap_or_default();
    let name = if alert.is_empty() { &record } else { &alert };
    let mut cx = RuleCtx {
        errs,
        loc,
        group,
        g,
        r,
        name: name.clone(),
    };
    let before = cx.errs.list.len();
    match (record.is_empty(), alert.is_empty()) {
        (false, false) => {
            cx.at_field(
                "record",
                "only one of 'record' and 'alert' must be set".into(),
            );
            if let Some(e) = cx.errs.list.last_mut() {
                e.also_at = Some(loc.rule_field(g, r, "alert"));
            }
        }
        (true, true) => {
            cx.at_value_or_zero("record", "one of 'record' or 'alert' must be set".into())
        }
        _ => {}
    }
    let expr = raw.expr.map(|s| s.0).unwrap_or_default();
    if expr.is_empty() {
        cx.at_value_or_zero("expr", "field 'expr' must be set in rule".into());
    } else if let Err(e) = meshlens_promql::parse(&expr) {
        cx.at_field("expr", format!("could not parse expression: {e}"));
    }
    let for_ = cx.duration("for", raw.for_);
    let keep_firing_for = cx.duration("keep_firing_for", raw.keep_firing_for);
    let labels = strings(raw.labels);
    let annotations = strings(raw.annotations);
    if !record.is_empty() {
        if !annotations.is_empty() {
            let reason = "invalid field 'annotations' in recording rule".into();
            cx.at_field("record", reason);
        }
        if !for_.is_zero() {
            cx.at_field("record", "invalid field 'for' in recording rule".into());
        }
        if !keep_firing_for.is_zero() {
            let reason = "invalid field 'keep_firing_for' in recording rule".into();
            cx.at_field("record", reason);
        }
        if !is_valid_metric_name(&record) {
            cx.at_field("record", format!("invalid recording rule name: {record}"));
        }
    }
    for k in labels.keys() {
        if !is_valid_label_name(k) || k == METRIC_NAME {
            cx.unpositioned("labels", k, format!("invalid label name: {k}"));
        }
    }
    for k in annotations.keys() {
        if !is_valid_label_name(k) {
            cx.unpositioned("annotations", k, format!("invalid annotation name: {k}"));
        }
    }
    if !alert.is_empty() {
        check_templates(&mut cx, &alert, "labels", "label", &labels);
        check_templates(&mut cx, &alert, "annotations", "annotation", &annotations);
    }
    if cx.errs.list.len() > before {
        return None;
    }
    Some(if alert.is_empty() {
        RuleSpec::Recording {
            record,
            expr,
            labels,
        }
    } else {
        RuleSpec::Alerting {
            alert,
            expr,
            for_,
            keep_firing_for,
            labels,
            annotations,
        }
    })
}

fn check_templates(
    cx: &mut RuleCtx<'_, '_>,
    alert: &str,
    field: &str,
    what: &str,
    map: &BTreeMap<String, String>,
) {
    for (k, text) in map {
        if let Err(e) = crate::eval::check_template(alert, text) {
            cx.unpositioned(field, k, format!("{what} {k:?}: {e}"));
        }
    }
}
