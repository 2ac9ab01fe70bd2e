#![no_main]
use libfuzzer_sys::fuzz_target;

// Zipkin v2 proto3 bodies (`application/x-protobuf`) on POST /api/v2/spans.
fuzz_target!(|data: &[u8]| {
    let _ = meshlens_ingest::zipkin::decode_proto(data);
});
