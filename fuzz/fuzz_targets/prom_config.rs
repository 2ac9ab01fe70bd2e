#![no_main]
use libfuzzer_sys::fuzz_target;

// The Prometheus-compatible config file (`--config.file`, reloaded over HTTP).
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = meshlens_server::config::parse(text, "fuzz.yml");
});
