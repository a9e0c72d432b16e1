//! Any bytes through the keepalived.conf reader, tree and model builder:
//! it may report anything, it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xvrrpd::config::{FixedHost, analyze_source};

fuzz_target!(|data: &[u8]| {
    let host = FixedHost {
        interfaces: ["eth0".to_string()].into(),
        users: ["root".to_string()].into(),
        ..FixedHost::default()
    };
    let report = analyze_source(data, "fuzz.conf", &host);
    // Rendering and dumping are part of what config input reaches.
    for d in &report.diagnostics {
        let _ = d.to_string();
    }
    let _ = report.to_json();
});
