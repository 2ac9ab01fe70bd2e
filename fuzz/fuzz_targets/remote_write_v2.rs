#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Protobuf bytes read as a 2.0 request (symbols, label references), and as a body.
    let _ = meshlens_ingest::remote_write::v2::parse(data);
    let _ = meshlens_ingest::remote_write::v2::decode_with_limit(data, 1 << 24);
    if let Ok(framed) = snap::raw::Encoder::new().compress_vec(data) {
        let _ = meshlens_ingest::remote_write::v2::decode_with_limit(&framed, 1 << 24);
    }
});
