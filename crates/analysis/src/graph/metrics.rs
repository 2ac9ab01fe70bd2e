//! The graph from Istio's standard metrics, through the PromQL engine.
//!
//! Three instant queries at the window's end, each `sum by (<every identity label>)
//! (increase(<metric>[window]))`: requests (by response code and mTLS policy), duration
//! buckets (by `le`) and TCP bytes. Grouping by every identity label once, then folding in
//! Rust per graph type ([`super::fold`]), serves all four graph types with the same queries;
//! quantiles are Prometheus's `histogram_quantile` algorithm applied to the folded buckets,
//! which equals `histogram_quantile(q, sum by (le, <edge labels>) (increase(...)))` at a
//! third of the storage reads of three separate quantile queries.

use meshlens_model::{Labels, MetricReader};
use meshlens_promql::{Engine, Value};

use super::fold::{fold, Figure, Group, IDENTITY};
use super::{EdgeMap, GraphQuery};
use crate::AnalysisError;

fn query(
    engine: &Engine,
    storage: &dyn MetricReader,
    q: &GraphQuery,
    by: &str,
    metric: &str,
) -> Result<Vec<(Labels, f64)>, AnalysisError> {
    let text = format!(
        "sum by ({}{by}) (increase({metric}[{}ms]))",
        IDENTITY.join(", "),
        q.window_ms
    );
    let res = engine
        .instant_query(storage, &text, q.end_ms)
        .map_err(|source| AnalysisError::Promql {
            query: text.clone(),
            source,
        })?;
    Ok(match res.value {
        Value::Vector(v) => v
            .into_iter()
            .filter(|s| s.v.is_finite())
            .map(|s| (s.labels, s.v))
            .collect(),
        _ => Vec::new(),
    })
}

pub(crate) fn edges(
    storage: &dyn MetricReader,
    engine: &Engine,
    q: &GraphQuery,
) -> Result<EdgeMap, AnalysisError> {
    // The queries are independent: run them side by side (the bucket query, ten times the
    // series of the others, dominates).
    let [requests, buckets, sent, received] = std::thread::scope(|s| {
        let run = |by: &'static str, metric: &'static str| {
            s.spawn(move || query(engine, storage, q, by, metric))
        };
        let handles = [
            run(
                ", response_code, connection_security_policy",
                "istio_requests_total",
            ),
            run(", le", "istio_request_duration_milliseconds_bucket"),
            run("", "istio_tcp_sent_bytes_total"),
            run("", "istio_tcp_received_bytes_total"),
        ];
        handles.map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    });
    let (requests, buckets, sent, received) = (requests?, buckets?, sent?, received?);

    // One group per answer row, in the order the folding has always seen them.
    let mut groups = Vec::with_capacity(requests.len() + buckets.len() + sent.len());
    for (l, v) in &requests {
        let figure = Figure::Requests {
            code: l.get("response_code").unwrap_or("0"),
            mtls: l.get("connection_security_policy") == Some("mutual_tls"),
        };
        groups.push(Group {
            labels: l,
            figures: vec![(figure, *v)],
        });
    }
    for (l, v) in &buckets {
        let Some(le) = l.get("le").and_then(|s| s.parse::<f64>().ok()) else {
            continue;
        };
        groups.push(Group {
            labels: l,
            figures: vec![(Figure::Bucket { le }, *v)],
        });
    }
    for (series, figure) in [(&sent, Figure::TcpSent), (&received, Figure::TcpReceived)] {
        for (l, v) in series {
            groups.push(Group {
                labels: l,
                figures: vec![(figure, *v)],
            });
        }
    }
    Ok(fold(&groups, q.graph_type))
}
