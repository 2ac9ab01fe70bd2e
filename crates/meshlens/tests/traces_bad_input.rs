//! Bad span input gets a clear 4xx that says what is wrong, and never disturbs what is stored.

mod common;

use std::io::Write;

use common::{get_json, httpc, Server};

fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut conn = httpc::Conn::open(&server.addr).unwrap();
    let r = conn.request("POST", path, headers, body).unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// (path, headers, body, expected status, what the message must mention).
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);

const GOOD: &str = r#"[{"traceId":"00000000000000aa","id":"0000000000000001","name":"keep me",
  "timestamp":TS,"duration":5,"localEndpoint":{"serviceName":"kept"}}]"#;

#[test]
fn bad_span_input_is_refused_clearly_and_stored_data_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--otlp-grpc-listen", "off"]);
    let json = [("Content-Type", "application/json")];
    let ts = (meshlens_model::time::now_ms() * 1000).to_string();
    let (status, _) = post(
        &server,
        "/api/v2/spans",
        &json,
        GOOD.replace("TS", &ts).as_bytes(),
    );
    assert_eq!(status, 202);

    let cases: Vec<Case> = vec![
        (
            "/api/v2/spans",
            json.to_vec(),
            b"[{\"traceId\":".to_vec(),
            400,
            "malformed JSON",
        ),
        (
            "/api/v2/spans",
            json.to_vec(),
            br#"[{"traceId":"xyz","id":"1"}]"#.to_vec(),
            400,
            "span 0: traceId",
        ),
        (
            "/api/v2/spans",
            json.to_vec(),
            br#"[{"traceId":"01","id":"00000000000000000001"}]"#.to_vec(),
            400,
            "span 0: id",
        ),
        (
            "/api/v2/spans",
            vec![("Content-Type", "application/x-protobuf")],
            vec![0x0a, 0xff, 0xff],
            400,
            "protobuf",
        ),
        (
            "/api/v2/spans",
            vec![("Content-Type", "application/x-thrift")],
            b"x".to_vec(),
            415,
            "Content-Type",
        ),
        (
            "/api/v2/spans",
            vec![
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
            ],
            b"not gzip".to_vec(),
            400,
            "gzip",
        ),
        (
            "/v1/traces",
            vec![("Content-Type", "application/x-protobuf")],
            vec![0x0a, 0xff, 0xff],
            400,
            "protobuf",
        ),
        (
            "/v1/traces",
            json.to_vec(),
            b"{\"resourceSpans\": 3}".to_vec(),
            400,
            "resourceSpans",
        ),
        (
            "/v1/traces",
            vec![("Content-Type", "text/plain")],
            b"x".to_vec(),
            415,
            "Content-Type",
        ),
    ];
    for (path, headers, body, want, says) in cases {
        let (status, msg) = post(&server, path, &headers, &body);
        assert_eq!(status, want, "{path} {body:?}: {msg}");
        assert!(
            msg.contains(says),
            "{path}: {msg:?} should mention {says:?}"
        );
    }

    // Over-size: more than the 16 MiB default body limit.
    let big = vec![b' '; 17 << 20];
    let (status, _) = post(&server, "/api/v2/spans", &json, &big);
    assert_eq!(status, 413);
    // A gzip bomb: small on the wire, over the decompressed limit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 80 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    let (status, msg) = post(
        &server,
        "/api/v2/spans",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &bomb,
    );
    assert_eq!(status, 413, "{msg}");

    // OTLP partial success: the span with a bad id is refused and counted, the other kept.
    let otlp = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"partial"}}}}]}},
        "scopeSpans":[{{"spans":[
          {{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"ok","startTimeUnixNano":"{ts}000","endTimeUnixNano":"{ts}500"}},
          {{"traceId":"0102","spanId":"0102030405060708","name":"bad"}}]}}]}}]}}"#
    );
    let (status, body) = post(&server, "/v1/traces", &json, otlp.as_bytes());
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1");
    assert!(v["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("spans[1].traceId"));

    // Bad query parameters.
    for (url, want) in [
        ("/api/v2/trace/not-hex", 400),
        ("/api/v2/trace/00000000000000000000000000000000ff", 400),
        ("/api/v2/trace/00000000000000ab", 404),
        ("/api/v2/traces?limit=ten", 400),
        ("/api/v2/spans", 400),
        ("/api/v2/traceMany?traceIds=zz", 400),
        ("/api/v2/dependencies", 400),
        ("/api/traces?limit=5", 400),
        ("/api/traces?service=kept&minDuration=fast", 400),
    ] {
        let r = httpc::get(&server.url(url)).unwrap();
        assert_eq!(
            r.status,
            want,
            "{url}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    // What was stored before all of that is intact.
    let t = get_json(&server.url("/api/v2/trace/00000000000000aa"));
    assert_eq!(t[0]["name"], "keep me");
    let p = get_json(&server.url("/api/v2/trace/0102030405060708090a0b0c0d0e0f10"));
    assert_eq!(p[0]["name"], "ok");
    let services = get_json(&server.url("/api/v2/services"));
    assert_eq!(services, serde_json::json!(["kept", "partial"]));
}
