#![no_main]
use libfuzzer_sys::fuzz_target;

// The web config file (`--web.config.file`: TLS, basic auth users, HTTP headers), as
// Prometheus's exporter-toolkit defines it.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = meshlens_access::webconfig::parse(text, std::path::Path::new("/nonexistent"));
});
