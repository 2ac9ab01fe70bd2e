//! Delivery against scriptable fake Alertmanagers: batching, fan-out to every set, headers
//! and credentials, failing and hung Alertmanagers, queue overflow, draining on stop.

mod common;

use std::time::Duration;

use common::{alert, closed_port, eventually, metric, FakeAm};
use meshlens_model::Labels;
use meshlens_notifier::{AlertmanagerSet, AmAuth, AmSecret, Notifier, NotifierOptions};

fn set(addresses: &[&str]) -> AlertmanagerSet {
    AlertmanagerSet {
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

fn names(req: &common::Request) -> Vec<String> {
    req.alerts()
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap_or("").to_string())
        .collect()
}

fn url(addr: &str) -> String {
    format!("http://{addr}/api/v2/alerts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_64_reach_every_alertmanager_of_every_set_with_credentials() {
    let (a, b, c) = (
        FakeAm::start(200, false),
        FakeAm::start(200, false),
        FakeAm::start(200, false),
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    let n = Notifier::start(NotifierOptions {
        external_labels: Labels::from_pairs([("cluster", "eu-1")]),
        ..Default::default()
    });
    n.set_alertmanagers(vec![
        AlertmanagerSet {
            path_prefix: "/am/".into(),
            auth: AmAuth::Authorization {
                kind: "Bearer".into(),
                credentials: AmSecret::File(token),
            },
            ..set(&[&a.addr, &b.addr])
        },
        AlertmanagerSet {
            auth: AmAuth::Basic {
                username: "alice".into(),
                password: AmSecret::Inline("pw".into()),
            },
            ..set(&[&c.addr])
        },
    ]);
    assert_eq!(
        n.active_alertmanagers(),
        [
            format!("http://{}/am/api/v2/alerts", a.addr),
            format!("http://{}/am/api/v2/alerts", b.addr),
            url(&c.addr),
        ]
    );
    n.send((0..150).map(|i| alert(&format!("A{i}"), &[])).collect());
    for (am, path, auth) in [
        (&a, "/am/api/v2/alerts", "Bearer tok-123"),
        (&b, "/am/api/v2/alerts", "Bearer tok-123"),
        // base64("alice:pw")
        (&c, "/api/v2/alerts", "Basic YWxpY2U6cHc="),
    ] {
        let mut all = Vec::new();
        for expected in [64, 64, 22] {
            let req = am.next();
            assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", path));
            assert_eq!(req.header("content-type"), Some("application/json"));
            assert_eq!(req.header("authorization"), Some(auth));
            assert!(req
                .header("user-agent")
                .is_some_and(|u| u.starts_with("meshlens/")));
            let alerts = req.alerts();
            assert_eq!(alerts.len(), expected);
            assert!(alerts.iter().all(|x| x["labels"]["cluster"] == "eu-1"));
            assert!(alerts.iter().all(|x| x.get("endsAt").is_none()));
            all.extend(names(&req));
        }
        let want: Vec<String> = (0..150).map(|i| format!("A{i}")).collect();
        assert_eq!(all, want, "in order, once each");
    }
    let sent_c = format!(
        "prometheus_notifications_sent_total{{alertmanager=\"{}\"}}",
        url(&c.addr)
    );
    eventually("sent_total to reach 150", || {
        metric(&n, &sent_c) == Some(150.0)
    })
    .await;
    assert_eq!(
        metric(&n, "prometheus_notifications_dropped_total"),
        Some(0.0)
    );
    assert_eq!(
        metric(&n, "prometheus_notifications_alertmanagers_discovered"),
        Some(3.0)
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_alertmanager_counts_errors_and_drops_only_when_none_accepted() {
    let good = FakeAm::start(200, false);
    let bad_status = FakeAm::start(500, false);
    let closed = format!("127.0.0.1:{}", closed_port());
    let n = Notifier::start(NotifierOptions::default());
    n.set_alertmanagers(vec![set(&[&closed, &bad_status.addr]), set(&[&good.addr])]);
    n.send(vec![alert("A", &[]), alert("B", &[])]);
    assert_eq!(names(&good.next()), ["A", "B"]);
    let errors = |addr: &str| {
        format!(
            "prometheus_notifications_errors_total{{alertmanager=\"{}\"}}",
            url(addr)
        )
    };
    eventually("both failures counted", || {
        metric(&n, &errors(&closed)) == Some(1.0)
            && metric(&n, &errors(&bad_status.addr)) == Some(1.0)
    })
    .await;
    assert_eq!(metric(&n, &errors(&good.addr)), Some(0.0));
    assert_eq!(
        metric(&n, "prometheus_notifications_dropped_total"),
        Some(0.0)
    );

    // With only failing Alertmanagers left, the batch is dropped and counted.
    n.set_alertmanagers(vec![set(&[&closed, &bad_status.addr])]);
    n.send(vec![alert("C", &[]), alert("D", &[]), alert("E", &[])]);
    eventually("the batch counted as dropped", || {
        metric(&n, "prometheus_notifications_dropped_total") == Some(3.0)
    })
    .await;
    assert_eq!(metric(&n, &errors(&closed)), Some(2.0));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_alertmanager_never_blocks_send_and_a_full_queue_drops_the_oldest() {
    let am = FakeAm::start(200, true);
    let n = Notifier::start(NotifierOptions {
        queue_capacity: 5,
        ..Default::default()
    });
    n.set_alertmanagers(vec![AlertmanagerSet {
        timeout: Duration::from_secs(3600),
        ..set(&[&am.addr])
    }]);
    // Eight alerts into a queue of five: the three oldest go at once.
    n.send((0..8).map(|i| alert(&format!("a{i}"), &[])).collect());
    assert_eq!(
        metric(&n, "prometheus_notifications_dropped_total"),
        Some(3.0)
    );
    assert_eq!(names(&am.next()), ["a3", "a4", "a5", "a6", "a7"]);
    // The sender now waits on the hung Alertmanager; send still only queues.
    n.send((0..4).map(|i| alert(&format!("b{i}"), &[])).collect());
    n.send((0..3).map(|i| alert(&format!("c{i}"), &[])).collect());
    assert_eq!(
        metric(&n, "prometheus_notifications_queue_length"),
        Some(5.0)
    );
    assert_eq!(
        metric(&n, "prometheus_notifications_dropped_total"),
        Some(5.0)
    );
    am.release();
    assert_eq!(names(&am.next()), ["b2", "b3", "c0", "c1", "c2"]);
    eventually("the queue to empty", || {
        metric(&n, "prometheus_notifications_queue_length") == Some(0.0)
    })
    .await;
    assert_eq!(
        metric(&n, "prometheus_notifications_dropped_total"),
        Some(5.0)
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_set_timeout_ends_a_hung_request_as_an_error() {
    let am = FakeAm::start(200, true);
    let n = Notifier::start(NotifierOptions::default());
    n.set_alertmanagers(vec![AlertmanagerSet {
        timeout: Duration::from_millis(300),
        ..set(&[&am.addr])
    }]);
    n.send(vec![alert("A", &[])]);
    let errors = format!(
        "prometheus_notifications_errors_total{{alertmanager=\"{}\"}}",
        url(&am.addr)
    );
    eventually("the timeout counted", || metric(&n, &errors) == Some(1.0)).await;
    assert_eq!(names(&am.next()), ["A"]);
    eventually("the batch dropped", || {
        metric(&n, "prometheus_notifications_dropped_total") == Some(1.0)
    })
    .await;
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_delivers_what_is_queued_then_refuses() {
    let am = FakeAm::start(200, true);
    let n = Notifier::start(NotifierOptions::default());
    n.set_alertmanagers(vec![set(&[&am.addr])]);
    n.send(vec![alert("A", &[])]);
    assert_eq!(names(&am.next()), ["A"]);
    n.send(vec![alert("B", &[]), alert("C", &[])]);
    // `join!` polls `stop` first, so the notifier is stopping before the release.
    tokio::join!(n.stop(), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        am.release();
    });
    let drained = am
        .requests
        .try_recv()
        .expect("B and C posted before stop returned");
    assert_eq!(names(&drained), ["B", "C"]);
    assert_eq!(
        metric(&n, "prometheus_notifications_dropped_total"),
        Some(0.0)
    );
    n.send(vec![alert("late", &[])]);
    assert_eq!(
        metric(&n, "prometheus_notifications_dropped_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&n, "prometheus_notifications_queue_length"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_gives_up_on_a_hung_alertmanager_and_counts_what_is_lost() {
    let am = FakeAm::start(200, true);
    let n = Notifier::start(NotifierOptions::default());
    // Drain limit: the timeout and a second. Whichever of A's timeout, B and C's post or
    // the abort comes first, all three alerts end up counted as dropped.
    n.set_alertmanagers(vec![AlertmanagerSet {
        timeout: Duration::from_secs(1),
        ..set(&[&am.addr])
    }]);
    n.send(vec![alert("A", &[])]);
    assert_eq!(names(&am.next()), ["A"]);
    n.send(vec![alert("B", &[]), alert("C", &[])]);
    n.stop().await;
    assert_eq!(
        metric(&n, "prometheus_notifications_dropped_total"),
        Some(3.0)
    );
    assert_eq!(
        metric(&n, "prometheus_notifications_queue_length"),
        Some(0.0)
    );
}
