#![no_main]
use libfuzzer_sys::fuzz_target;

// OTLP/HTTP JSON bodies (`application/json` on /v1/traces).
fuzz_target!(|data: &[u8]| {
    let _ = meshlens_ingest::otlp::decode_json(data);
});
