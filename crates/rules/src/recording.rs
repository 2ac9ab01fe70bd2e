//! A recording rule: its expression's result renamed and relabelled, to be stored.

use std::collections::{BTreeMap, HashSet};

use meshlens_model::METRIC_NAME;
use meshlens_promql::VectorSample;

use crate::eval::{query_vector, ParsedExpr};
use crate::EvalContext;

pub(crate) struct RecordingRule {
    pub name: String,
    pub parsed: ParsedExpr,
    /// Group labels overridden by the rule's.
    pub labels: BTreeMap<String, String>,
}

impl RecordingRule {
    /// The samples to store for one evaluation at `ts - offset`.
    pub fn eval(
        &self,
        ctx: &EvalContext<'_>,
        ts: i64,
        offset: i64,
        limit: usize,
    ) -> Result<Vec<VectorSample>, String> {
        let mut v = query_vector(
            ctx.engine,
            ctx.reader,
            &self.parsed,
            ts.saturating_sub(offset),
        )?;
        let mut seen = HashSet::with_capacity(v.len());
        for s in &mut v {
            let mut lb = s.labels.builder();
            lb.set(METRIC_NAME, self.name.as_str());
            for (k, val) in &self.labels {
                lb.set(k.as_str(), val.as_str());
            }
            s.labels = lb.build();
            if !seen.insert(s.labels.clone()) {
                return Err(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .into(),
                );
            }
        }
        if limit > 0 && v.len() > limit {
            return Err(format!("exceeded limit of {limit} with {} series", v.len()));
        }
        Ok(v)
    }
}
