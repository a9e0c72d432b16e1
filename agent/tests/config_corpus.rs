//! The keepalived.conf corpus under tests/configs/: every valid file loads
//! and dumps exactly its NAME.expected.json; every broken file is refused
//! with exactly the errors in NAME.expected.
//!
//! Set XVRRPD_BLESS=1 to rewrite the expected files from the current output
//! (then read every changed file before committing it).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use xvrrpd::config::{FixedHost, Severity, analyze};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/configs")
}

fn list(file: &str) -> BTreeSet<String> {
    std::fs::read_to_string(corpus().join(file))
        .expect("corpus list file")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// The machine the expected models were made against (the agreement test
/// gives keepalived the same interfaces).
fn host() -> FixedHost {
    FixedHost {
        interfaces: list("INTERFACES"),
        users: ["root".to_string()].into(),
        groups: ["root".to_string()].into(),
        scripts: list("SCRIPTS"),
        config_id: None,
    }
}

fn confs(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus().join(dir))
        .expect("corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    v.sort();
    v
}

fn bless() -> bool {
    std::env::var_os("XVRRPD_BLESS").is_some()
}

#[test]
fn valid_configs_match_their_expected_models() {
    let files = confs("valid");
    assert!(
        files.len() >= 30,
        "the corpus needs at least 30 valid configs"
    );
    let mut failures = Vec::new();
    for f in &files {
        let r = analyze(f, &host());
        let errors: Vec<String> = r
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        if !errors.is_empty() {
            failures.push(format!(
                "{}: unexpected errors:\n  {}",
                f.display(),
                errors.join("\n  ")
            ));
            continue;
        }
        let got = serde_json::to_string_pretty(&r.to_json()).expect("json") + "\n";
        let exp_path = f.with_extension("expected.json");
        if bless() {
            std::fs::write(&exp_path, &got).expect("write expected");
            continue;
        }
        match std::fs::read_to_string(&exp_path) {
            Ok(want) if want == got => {}
            Ok(_) => failures.push(format!(
                "{}: dump differs from {} (XVRRPD_BLESS=1 rewrites it; check the diff by hand)",
                f.display(),
                exp_path.display()
            )),
            Err(e) => failures.push(format!("{}: {e}", exp_path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn broken_configs_fail_with_their_expected_errors() {
    let files = confs("broken");
    assert!(
        files.len() >= 10,
        "the broken corpus needs at least 10 configs"
    );
    let mut failures = Vec::new();
    for f in &files {
        let r = analyze(f, &host());
        let got: String = r
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| format!("{d}\n"))
            .collect();
        if got.is_empty() {
            failures.push(format!("{}: loaded without errors", f.display()));
            continue;
        }
        let exp_path = f.with_extension("expected");
        if bless() {
            std::fs::write(&exp_path, &got).expect("write expected");
            continue;
        }
        match std::fs::read_to_string(&exp_path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{}:\n--- expected\n{want}--- got\n{got}",
                f.display()
            )),
            Err(e) => failures.push(format!("{}: {e}", exp_path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
