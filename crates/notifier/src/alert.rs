//! The alert as handed over by the rule engine, and its wire form: Alertmanager's v2
//! `PostableAlerts` JSON.

use meshlens_model::time::rfc3339_ms;
use meshlens_model::Labels;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// One alert to deliver. A resolved alert carries an `ends_at_ms` in the past; a firing one
/// usually an `ends_at_ms` a few resend intervals ahead (so Alertmanager resolves it itself if
/// the rule engine goes away), or none.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at_ms: i64,
    pub ends_at_ms: Option<i64>,
    pub generator_url: String,
}

impl Alert {
    /// Resolved at `now_ms`: it has an end that is not after `now_ms`.
    pub fn resolved_at(&self, now_ms: i64) -> bool {
        self.ends_at_ms.is_some_and(|e| e <= now_ms)
    }
}

/// A label set as a JSON object.
struct LabelSet<'a>(&'a Labels);

impl Serialize for LabelSet<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for l in self.0.iter() {
            m.serialize_entry(&l.name, &l.value)?;
        }
        m.end()
    }
}

#[derive(serde::Serialize)]
struct Postable<'a> {
    labels: LabelSet<'a>,
    annotations: LabelSet<'a>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
}

/// The body of `POST /api/v2/alerts`: `[{labels, annotations, startsAt, endsAt?,
/// generatorURL?}]`, times in RFC 3339 UTC.
pub(crate) fn encode(alerts: &[Alert]) -> Result<Vec<u8>, serde_json::Error> {
    let wire: Vec<Postable<'_>> = alerts
        .iter()
        .map(|a| Postable {
            labels: LabelSet(&a.labels),
            annotations: LabelSet(&a.annotations),
            starts_at: rfc3339_ms(a.starts_at_ms),
            ends_at: a.ends_at_ms.map(rfc3339_ms),
            generator_url: &a.generator_url,
        })
        .collect();
    serde_json::to_vec(&wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_alertmanagers_shape() {
        let alerts = [
            Alert {
                labels: Labels::from_pairs([("alertname", "Up"), ("job", "a\"b")]),
                annotations: Labels::from_pairs([("summary", "down")]),
                starts_at_ms: 1_700_000_000_123,
                ends_at_ms: Some(1_700_000_060_000),
                generator_url: "http://x/graph?g0.expr=up".into(),
            },
            Alert {
                labels: Labels::from_pairs([("alertname", "B")]),
                annotations: Labels::empty(),
                starts_at_ms: 0,
                ends_at_ms: None,
                generator_url: String::new(),
            },
        ];
        let v: serde_json::Value = serde_json::from_slice(&encode(&alerts).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {
                    "labels": {"alertname": "Up", "job": "a\"b"},
                    "annotations": {"summary": "down"},
                    "startsAt": "2023-11-14T22:13:20.123Z",
                    "endsAt": "2023-11-14T22:14:20Z",
                    "generatorURL": "http://x/graph?g0.expr=up"
                },
                {"labels": {"alertname": "B"}, "annotations": {}, "startsAt": "1970-01-01T00:00:00Z"}
            ])
        );
        assert!(alerts[0].resolved_at(1_700_000_060_000));
        assert!(!alerts[0].resolved_at(1_700_000_059_999));
        assert!(!alerts[1].resolved_at(i64::MAX));
    }
}
