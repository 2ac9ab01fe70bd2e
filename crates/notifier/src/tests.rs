//! The queue's rules, checked without a sender: started outside a runtime, the notifier only
//! queues, so what `send` did is exactly what the queue holds.

use super::*;

fn alert(name: &str, extra: &[(&str, &str)]) -> Alert {
    let mut pairs = vec![("alertname", name)];
    pairs.extend_from_slice(extra);
    Alert {
        labels: Labels::from_pairs(pairs),
        annotations: Labels::empty(),
        starts_at_ms: 1,
        ends_at_ms: None,
        generator_url: String::new(),
    }
}

fn queued(n: &Notifier) -> Vec<Labels> {
    n.shared
        .queue
        .lock()
        .alerts
        .iter()
        .map(|a| a.labels.clone())
        .collect()
}

fn metric(n: &Notifier, name: &str) -> String {
    let mut out = String::new();
    n.render_metrics(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn external_labels_fill_only_missing_ones_then_relabel_runs() {
    let relabel: RelabelFn = Arc::new(|l: Labels| {
        if l.get("severity") == Some("debug") {
            return None;
        }
        let mut b = l.builder();
        b.del("tmp");
        Some(b.build())
    });
    let n = Notifier::start(NotifierOptions {
        queue_capacity: 10,
        external_labels: Labels::from_pairs([("cluster", "eu"), ("tmp", "x")]),
        relabel: Some(relabel),
    });
    n.send(vec![
        alert("A", &[("cluster", "us")]),
        alert("B", &[("severity", "debug")]),
        alert("C", &[]),
    ]);
    assert_eq!(
        queued(&n),
        [
            Labels::from_pairs([("alertname", "A"), ("cluster", "us")]),
            Labels::from_pairs([("alertname", "C"), ("cluster", "eu")]),
        ]
    );
    // Relabel-dropped alerts are not queue drops.
    assert_eq!(metric(&n, "prometheus_notifications_dropped_total"), "0");
    assert_eq!(metric(&n, "prometheus_notifications_queue_length"), "2");

    // Replaced options apply to later sends only.
    n.set_options(Labels::from_pairs([("region", "r1")]), None);
    n.send(vec![alert("D", &[])]);
    assert_eq!(
        queued(&n)[2],
        Labels::from_pairs([("alertname", "D"), ("region", "r1")])
    );
}

#[test]
fn alerts_left_without_labels_are_not_queued() {
    let n = Notifier::start(NotifierOptions {
        relabel: Some(Arc::new(|_| Some(Labels::empty()))),
        ..Default::default()
    });
    n.send(vec![alert("A", &[])]);
    assert!(queued(&n).is_empty());
    let n = Notifier::start(NotifierOptions::default());
    n.send(vec![Alert {
        labels: Labels::empty(),
        ..alert("x", &[])
    }]);
    assert!(queued(&n).is_empty());
}

#[test]
fn a_full_queue_drops_the_oldest_and_counts() {
    let n = Notifier::start(NotifierOptions {
        queue_capacity: 3,
        ..Default::default()
    });
    let names = |n: &Notifier| -> Vec<String> {
        queued(n)
            .iter()
            .map(|l| l.get("alertname").unwrap_or("").to_string())
            .collect()
    };
    n.send(vec![alert("a", &[]), alert("b", &[])]);
    n.send(vec![alert("c", &[]), alert("d", &[])]);
    assert_eq!(names(&n), ["b", "c", "d"]);
    assert_eq!(metric(&n, "prometheus_notifications_dropped_total"), "1");
    // A batch larger than the whole queue keeps its newest alerts.
    n.send((0..5).map(|i| alert(&format!("n{i}"), &[])).collect());
    assert_eq!(names(&n), ["n2", "n3", "n4"]);
    assert_eq!(metric(&n, "prometheus_notifications_dropped_total"), "6");
    assert_eq!(metric(&n, "prometheus_notifications_queue_capacity"), "3");
}

#[test]
fn zero_capacity_drops_everything() {
    let n = Notifier::start(NotifierOptions {
        queue_capacity: 0,
        ..Default::default()
    });
    n.send(vec![alert("a", &[]), alert("b", &[])]);
    assert!(queued(&n).is_empty());
    assert_eq!(metric(&n, "prometheus_notifications_dropped_total"), "2");
}

#[test]
fn sets_with_bad_version_are_left_out_and_bad_tls_is_kept() {
    let n = Notifier::start(NotifierOptions::default());
    n.set_alertmanagers(vec![
        AlertmanagerSet {
            api_version: "v1".into(),
            addresses: vec!["a:1".into()],
            ..Default::default()
        },
        AlertmanagerSet {
            addresses: vec!["b:1".into(), "b:1".into(), "c:1/x".into()],
            tls: AmTls {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    ]);
    assert_eq!(n.active_alertmanagers(), ["http://b:1/api/v2/alerts"]);
    assert_eq!(
        metric(&n, "prometheus_notifications_alertmanagers_discovered"),
        "1"
    );
    let mut out = String::new();
    n.render_metrics(&mut out);
    assert!(out.contains(
        "prometheus_notifications_errors_total{alertmanager=\"http://b:1/api/v2/alerts\"} 0"
    ));
}
