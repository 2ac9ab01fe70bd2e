#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Both the raw body and a well-formed snappy frame around arbitrary protobuf bytes.
    let _ = meshlens_ingest::remote_write::decode_with_limit(data, 1 << 24);
    if let Ok(framed) = snap::raw::Encoder::new().compress_vec(data) {
        let _ = meshlens_ingest::remote_write::decode_with_limit(&framed, 1 << 24);
    }
});
