//! The forwarder's series in the text exposition format.

use meshlens_model::escape_label_value as escape;
use std::fmt::Write;

use super::HubStats;
use crate::{BufferStats, Kind};

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub(crate) fn render(b: &BufferStats, hubs: &[HubStats], out: &mut String) {
    family(
        out,
        "meshlens_forward_buffer_bytes",
        "gauge",
        "Bytes of the forwarding buffer on disk.",
    );
    let _ = writeln!(out, "meshlens_forward_buffer_bytes {}", b.total_bytes);
    family(
        out,
        "meshlens_forward_buffer_segments",
        "gauge",
        "Segment files of the forwarding buffer.",
    );
    let _ = writeln!(out, "meshlens_forward_buffer_segments {}", b.segments);

    let dest = |url: &str| b.destinations.iter().find(|d| d.name == url);
    let per_hub =
        |out: &mut String, name: &str, kind: &str, help: &str, v: &dyn Fn(&HubStats) -> String| {
            family(out, name, kind, help);
            for h in hubs {
                let _ = writeln!(out, "{name}{{hub=\"{}\"}} {}", escape(&h.url), v(h));
            }
        };
    per_hub(
        out,
        "meshlens_forward_buffered_bytes",
        "gauge",
        "Bytes buffered and not yet sent to the hub.",
        &|h| dest(&h.url).map_or(0, |d| d.buffered_bytes).to_string(),
    );
    per_hub(
        out,
        "meshlens_forward_lag_seconds",
        "gauge",
        "Age of the oldest record not yet sent to the hub; 0 when caught up.",
        &|h| dest(&h.url).map_or(0.0, |d| d.lag_seconds).to_string(),
    );
    per_hub(
        out,
        "meshlens_forward_sent_samples_total",
        "counter",
        "Samples (float and native histogram) the hub acknowledged.",
        &|h| h.sent_samples.to_string(),
    );
    per_hub(
        out,
        "meshlens_forward_sent_spans_total",
        "counter",
        "Spans the hub acknowledged.",
        &|h| h.sent_spans.to_string(),
    );
    per_hub(
        out,
        "meshlens_forward_sent_requests_total",
        "counter",
        "Requests the hub acknowledged.",
        &|h| h.sent_requests.to_string(),
    );
    per_hub(
        out,
        "meshlens_forward_retries_total",
        "counter",
        "Requests to the hub that failed and were retried.",
        &|h| h.retries.to_string(),
    );

    per_hub(
        out,
        "meshlens_forward_unwritten_samples_total",
        "counter",
        "Samples of acknowledged requests that the hub's X-Prometheus-Remote-Write-Samples-Written and -Histograms-Written counts say it did not write.",
        &|h| h.unwritten_samples.to_string(),
    );
    let name = "meshlens_forward_remote_write_message_info";
    family(
        out,
        name,
        "gauge",
        "The remote-write message metrics are sent to the hub as.",
    );
    for h in hubs {
        let _ = writeln!(
            out,
            "{name}{{hub=\"{}\",proto=\"{}\"}} 1",
            escape(&h.url),
            h.protobuf_message.as_str()
        );
    }
    let name = "meshlens_forward_dropped_total";
    family(out, name, "counter",
        "Samples and spans never sent to the hub: refused by it (rejected), deleted from a full buffer (full), older than max_age (max_age), unreadable (corrupt).");
    for h in hubs {
        let d = dest(&h.url).cloned().unwrap_or_default();
        for (reason, n) in [
            ("rejected", h.rejected.items),
            ("full", d.dropped_full.items),
            ("max_age", d.dropped_max_age.items),
            ("corrupt", d.dropped_corrupt.items),
        ] {
            let _ = writeln!(
                out,
                "{name}{{hub=\"{}\",reason=\"{reason}\"}} {n}",
                escape(&h.url)
            );
        }
    }

    family(
        out,
        "meshlens_forward_appended_records_total",
        "counter",
        "Records appended to the forwarding buffer.",
    );
    for (k, n) in [
        (Kind::Metrics, b.appended_metrics_records),
        (Kind::Spans, b.appended_spans_records),
    ] {
        let _ = writeln!(
            out,
            "meshlens_forward_appended_records_total{{kind=\"{}\"}} {n}",
            k.as_str()
        );
    }
    family(
        out,
        "meshlens_forward_appended_items_total",
        "counter",
        "Samples (kind=\"metrics\") and spans (kind=\"spans\") acknowledged to writers once durable.",
    );
    for (k, n) in [
        (Kind::Metrics, b.appended_metrics_items),
        (Kind::Spans, b.appended_spans_items),
    ] {
        let _ = writeln!(
            out,
            "meshlens_forward_appended_items_total{{kind=\"{}\"}} {n}",
            k.as_str()
        );
    }
    family(
        out,
        "meshlens_forward_refused_records_total",
        "counter",
        "Appends refused because the buffer was full.",
    );
    let _ = writeln!(
        out,
        "meshlens_forward_refused_records_total {}",
        b.refused_records
    );
    family(
        out,
        "meshlens_forward_buffer_fsyncs_total",
        "counter",
        "fdatasyncs of the forwarding buffer's group commit.",
    );
    let _ = writeln!(out, "meshlens_forward_buffer_fsyncs_total {}", b.fsyncs);
}
