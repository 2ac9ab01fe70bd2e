//! `GET /api/v1/verify`: the canary judge over one tenant's metrics and spans. Answers the
//! report (pass, fail and inconclusive alike are 200); usage errors are 400 `bad_data`
//! naming the parameter. The run reads storage for a while, so it goes to the blocking pool.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use meshlens_analysis_api::{error_envelope, run_blocking};
use meshlens_model::{MetricReader, SeriesSamples, SpanReader};
use meshlens_promql::{Engine, Value};
use meshlens_verify::collect::{parse_request, verify, QueryError, RangeQuery, VerifyError};
use meshlens_verify::judge::JudgeOptions;

/// What the judge reads: the tenant's storage and the shared PromQL engine.
pub struct VerifyState {
    pub metrics: Arc<dyn MetricReader>,
    pub spans: Arc<dyn SpanReader>,
    pub engine: Arc<Engine>,
}

pub fn router(state: Arc<VerifyState>) -> Router {
    Router::new()
        .route("/api/v1/verify", get(handle))
        .with_state(state)
}

/// The collectors' range queries, through the engine (its limits and timeout apply).
struct EngineQuery<'a> {
    engine: &'a Engine,
    storage: &'a dyn MetricReader,
}

fn query_error(e: meshlens_promql::PromqlError) -> QueryError {
    QueryError {
        message: e.to_string(),
        status: e.http_status(),
    }
}

impl RangeQuery for EngineQuery<'_> {
    fn check(&self, query: &str) -> Result<(), QueryError> {
        meshlens_promql::parse(query)
            .map(|_| ())
            .map_err(query_error)
    }

    fn range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<SeriesSamples>, QueryError> {
        let res = self
            .engine
            .range_query(self.storage, query, start_ms, end_ms, step_ms)
            .map_err(query_error)?;
        Ok(match res.value {
            Value::Matrix(m) => m,
            _ => Vec::new(),
        })
    }
}

async fn handle(
    State(st): State<Arc<VerifyState>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let req = match parse_request(&params, meshlens_model::time::now_ms()) {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    let work = move || {
        let q = EngineQuery {
            engine: &st.engine,
            storage: &*st.metrics,
        };
        verify(&req, &q, &*st.spans, &JudgeOptions::default())
    };
    run_blocking("verification", work, VerifyError::http_status).await
}

fn error(e: &VerifyError) -> Response {
    error_envelope(e.http_status(), &e.to_string())
}
