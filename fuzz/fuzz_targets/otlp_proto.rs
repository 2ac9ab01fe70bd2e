#![no_main]
use libfuzzer_sys::fuzz_target;

// OTLP/HTTP protobuf bodies and the message inside OTLP/gRPC frames.
fuzz_target!(|data: &[u8]| {
    let _ = meshlens_ingest::otlp::decode_proto(data);
});
