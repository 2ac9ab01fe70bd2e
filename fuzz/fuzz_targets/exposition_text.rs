#![no_main]
use libfuzzer_sys::fuzz_target;
use meshlens_ingest::exposition::{parse, Format};

fuzz_target!(|data: &[u8]| {
    let _ = parse(data, Format::PrometheusText);
});
