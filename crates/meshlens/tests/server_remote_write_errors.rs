//! Remote write bad input: clear errors with the right status, nothing stored is disturbed.

mod common;

use common::{httpc, Server};
use meshlens_model::{Labels, Sample, TimeSeries};

fn series(name: &str, t: i64, v: f64) -> TimeSeries {
    TimeSeries {
        labels: Labels::from_pairs([("__name__", name)]),
        samples: vec![Sample::new(t, v)],
    }
}

#[test]
fn bad_requests_get_clear_errors_and_do_not_disturb_storage() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--out-of-order-window", "1m"]);
    let mut conn = httpc::Conn::open(&server.addr).unwrap();
    let t0 = 1_700_000_000_000;
    let r = server
        .remote_write(&mut conn, vec![series("kept", t0, 1.0)])
        .unwrap();
    assert_eq!(r.status, 204);

    let r = conn
        .request(
            "POST",
            "/api/v1/write",
            &[("Content-Encoding", "snappy")],
            b"\x00\x01garbage",
        )
        .unwrap();
    assert_eq!(r.status, 400);
    let msg = String::from_utf8_lossy(&r.body).to_string();
    assert!(msg.contains("snappy") || msg.contains("protobuf"), "{msg}");

    let huge = vec![7u8; 40 << 20];
    let r = conn.request(
        "POST",
        "/api/v1/write",
        &[("Content-Encoding", "snappy")],
        &huge,
    );
    // The server refuses the body (413) and may close the connection while we still send.
    if let Ok(r) = r {
        assert_eq!(r.status, 413);
    }
    let mut conn = httpc::Conn::open(&server.addr).unwrap();

    let bad = TimeSeries {
        labels: Labels::from_pairs([("__name__", "x"), ("bad-label", "v")]),
        samples: vec![Sample::new(t0, 1.0)],
    };
    let r = server
        .remote_write(&mut conn, vec![series("ok", t0, 1.0), bad])
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("timeseries[1]"));

    // Too old for the out-of-order window: 400 saying how many; the valid rest is stored.
    let r = server
        .remote_write(
            &mut conn,
            vec![
                series("kept", t0 + 600_000, 2.0),
                series("kept", t0 + 700_000, 3.0),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 204);
    let r = server
        .remote_write(
            &mut conn,
            vec![
                series("kept", t0, 9.0),
                series("kept", t0 + 10, 9.0),
                series("fresh", t0, 4.0),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 400);
    let msg = String::from_utf8_lossy(&r.body).to_string();
    assert!(msg.starts_with("2 of 3 samples refused"), "{msg}");
    assert!(msg.contains("out of order"), "{msg}");

    let v = server.query("kept[1h]", Some((t0 + 700_000) as f64 / 1000.0));
    let values = v["data"]["result"][0]["values"].as_array().unwrap().clone();
    assert_eq!(values.len(), 3, "{v}");
    assert_eq!(values[0][1], "1");
    let v = server.query("fresh", Some(t0 as f64 / 1000.0));
    assert_eq!(v["data"]["result"][0]["value"][1], "4");
}
