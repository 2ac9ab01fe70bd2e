#![no_main]
use std::io::Write;

use libfuzzer_sys::fuzz_target;

const MAX_DECOMPRESSED: usize = 1 << 20;

// The body of an OTLP/gRPC Export call: the length-prefixed frame, gzip when flagged, and
// the OTLP message inside, as the gRPC listener decodes it.
fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let encoding = match mode & 3 {
        0 => None,
        1 => Some("gzip"),
        2 => Some("identity"),
        _ => Some("snappy"),
    };
    let body = if mode & 4 == 0 {
        // The raw bytes as the whole HTTP/2 body.
        rest.to_vec()
    } else {
        // A well-formed compressed frame around arbitrary bytes, so the gzip path and the
        // OTLP decoder behind it see deep inputs too.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = gz.write_all(rest);
        let Ok(payload) = gz.finish() else { return };
        let mut framed = vec![1];
        framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        framed.extend_from_slice(&payload);
        framed
    };
    if let Ok(message) = meshlens_trace_api::unframe_grpc_message(&body, encoding, MAX_DECOMPRESSED)
    {
        assert!(message.len() <= MAX_DECOMPRESSED.max(body.len()));
        let _ = meshlens_ingest::otlp::decode_proto(&message);
    }
});
