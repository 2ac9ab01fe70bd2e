#![no_main]
use libfuzzer_sys::fuzz_target;

// Istio YAML as `meshlens validate` and the server's validations read it: load, then every
// check over what loaded.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = meshlens_mesh::MeshConfig::parse_str(text, "fuzz.yaml");
    let report = meshlens_mesh::validate::validate_str(text, "fuzz.yaml");
    let _ = meshlens_mesh::validate::to_json(&report);
});
