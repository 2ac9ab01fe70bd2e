//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`, `/api/v1/metadata`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use meshlens_model::LabelMatcher;
use serde_json::{json, Value as Json};

use crate::params::{Params, MAX_TIME, MIN_TIME};
use crate::query::labels_json;
use crate::{success, ApiError, PromApiState};

/// Each `match[]` as a list of matchers (an empty list when none are given).
fn match_sets(p: &Params, required: bool) -> Result<Vec<Vec<LabelMatcher>>, ApiError> {
    let raw = p.all("match[]");
    if raw.is_empty() {
        if required {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        return Ok(vec![Vec::new()]);
    }
    raw.into_iter()
        .map(|m| meshlens_promql::series_selector(m).map_err(|e| ApiError::param("match[]", e)))
        .collect()
}

/// The sorted union of `read` over every `match[]` set, on the blocking pool.
async fn union<T: Ord + Send + 'static>(
    s: Arc<PromApiState>,
    sets: Vec<Vec<LabelMatcher>>,
    read: impl Fn(
            &dyn meshlens_model::MetricReader,
            &[LabelMatcher],
        ) -> Result<Vec<T>, meshlens_model::StorageError>
        + Send
        + 'static,
) -> Result<Vec<T>, ApiError> {
    crate::blocking(move || {
        let mut all = std::collections::BTreeSet::new();
        for m in &sets {
            all.extend(read(s.storage.as_ref(), m)?);
        }
        Ok(all.into_iter().collect())
    })
    .await
}

fn range(p: &Params) -> Result<(i64, i64), ApiError> {
    Ok((p.time("start", MIN_TIME)?, p.time("end", MAX_TIME)?))
}

pub async fn series(State(s): State<Arc<PromApiState>>, p: Params) -> Result<Response, ApiError> {
    let sets = match_sets(&p, true)?;
    let (start, end) = range(&p)?;
    let limit = p.limit()?;
    let out = union(s, sets, move |st, m| st.series(m, start, end)).await?;
    let truncated = limit > 0 && out.len() > limit;
    let data: Vec<Json> = out
        .iter()
        .take(if limit > 0 { limit } else { usize::MAX })
        .map(labels_json)
        .collect();
    let mut resp = json!({"status": "success", "data": data});
    if truncated {
        resp["warnings"] = json!(["results truncated due to limit"]);
    }
    Ok(axum::Json(resp).into_response())
}

fn limited(values: Vec<String>, limit: usize) -> Response {
    let truncated = limit > 0 && values.len() > limit;
    let data: Vec<String> = values
        .into_iter()
        .take(if limit > 0 { limit } else { usize::MAX })
        .collect();
    let mut resp = json!({"status": "success", "data": data});
    if truncated {
        resp["warnings"] = json!(["results truncated due to limit"]);
    }
    axum::Json(resp).into_response()
}

pub async fn labels(State(s): State<Arc<PromApiState>>, p: Params) -> Result<Response, ApiError> {
    let sets = match_sets(&p, false)?;
    let (start, end) = range(&p)?;
    let limit = p.limit()?;
    let names = union(s, sets, move |st, m| st.label_names(m, start, end)).await?;
    Ok(limited(names, limit))
}

/// Reverses Prometheus 3's `U__` escaping of label names in URL paths.
pub(crate) fn unescape_label_name(name: &str) -> Option<String> {
    let Some(rest) = name.strip_prefix("U__") else {
        return Some(name.to_string());
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        loop {
            match chars.next() {
                Some('_') => break,
                Some(h) if h.is_ascii_hexdigit() => hex.push(h),
                _ => return None,
            }
        }
        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
    }
    Some(out)
}

pub async fn label_values(
    State(s): State<Arc<PromApiState>>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let name = unescape_label_name(&name)
        .ok_or_else(|| ApiError::bad_data(format!("invalid label name: {name:?}")))?;
    if name.is_empty() {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let sets = match_sets(&p, false)?;
    let (start, end) = range(&p)?;
    let limit = p.limit()?;
    let values = union(s, sets, move |st, m| st.label_values(&name, m, start, end)).await?;
    Ok(limited(values, limit))
}

pub async fn metadata(State(s): State<Arc<PromApiState>>, p: Params) -> Result<Response, ApiError> {
    let limit = p.limit()?;
    let metric = p
        .get("metric")
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let md = s.storage.metadata(metric.as_deref())?;
    let mut out: BTreeMap<String, Json> = BTreeMap::new();
    for m in md {
        if limit > 0 && out.len() >= limit {
            break;
        }
        out.insert(
            m.metric_family.clone(),
            json!([{"type": m.kind, "help": m.help, "unit": m.unit}]),
        );
    }
    Ok(success(json!(out)))
}
