//! `/federate`: the latest sample of every series matching `match[]`, in the text format.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use meshlens_model::is_stale_nan;

use crate::params::{now_ms, Params};
use crate::{ApiError, PromApiState};

pub async fn federate(State(s): State<Arc<PromApiState>>, p: Params) -> Result<Response, ApiError> {
    let raw = p.all("match[]");
    if raw.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let sets = raw
        .into_iter()
        .map(|m| meshlens_promql::series_selector(m).map_err(|e| ApiError::param("match[]", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let now = now_ms();
    let lookback = s.engine.options().lookback_delta_ms;
    let state = s.clone();
    let body = crate::blocking(move || -> Result<String, ApiError> {
        let mut latest = std::collections::BTreeMap::new();
        for m in &sets {
            for series in state.storage.select(m, now - lookback, now)? {
                if let Some(last) = series.samples.last().filter(|x| !is_stale_nan(x.v)) {
                    latest.insert(series.labels, *last);
                }
            }
        }
        let mut out = String::new();
        let mut current = String::new();
        for (labels, sample) in latest {
            let name = labels.metric_name().unwrap_or("").to_string();
            if name != current {
                out.push_str(&format!("# TYPE {name} untyped\n"));
                current = name;
            }
            meshlens_ingest::exposition::write_sample(&mut out, &labels, sample.v, Some(sample.t));
        }
        Ok(out)
    })
    .await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
