//! `xvrrpd check` against `keepalived -t` on the whole corpus (tests/configs).
//!
//! keepalived's verdict: exit 0 is "runs cleanly"; any other exit (4–7, or a
//! crash) is "refused" — keepalived -t exits non-zero for warnings too (an
//! unknown keyword, a missing interface, advert_int rounding, a script run
//! without enable_script_security all give 5 or 6). xvrrpd's verdict: exit 0
//! (notes allowed) against 1 (warnings) or 2 (errors). The two must agree on
//! every file, except the ones listed and explained in
//! tests/configs/DISAGREEMENTS.md; an unlisted disagreement, or a listed file
//! that now agrees, fails the test.
//!
//! Both run against the same machine: a network namespace holding exactly
//! the interfaces in tests/configs/INTERFACES (dummies), and this host's
//! users and script files. keepalived runs there through `ip netns exec`;
//! xvrrpd's checker runs in-process with the same interface list.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use xvrrpd::config::{Host, ScriptStatus, SystemHost, analyze};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

fn list(file: &str) -> Vec<String> {
    std::fs::read_to_string(corpus().join(file))
        .unwrap_or_else(|e| panic!("reading tests/configs/{file}: {e}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn keepalived() -> PathBuf {
    for p in [
        "/usr/sbin/keepalived",
        "/usr/local/sbin/keepalived",
        "/sbin/keepalived",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "keepalived is not installed: this test compares `xvrrpd check` with `keepalived -t`. \
         Install Debian's keepalived package (apt-get install keepalived; `cargo xtask setup` does it)"
    );
}

/// The namespace keepalived sees; deleted on drop.
struct Netns(String);

impl Netns {
    fn new(interfaces: &[String]) -> Self {
        let name = format!("xvk-{}", std::process::id());
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("running ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &name]);
        let ns = Netns(name.clone());
        for (i, ifname) in interfaces.iter().filter(|i| *i != "lo").enumerate() {
            // A veth end stands in for each interface (dummy may not be built
            // into the kernel); its peer stays outside and goes with the netns.
            let outside = format!("xk{i}-{}", std::process::id());
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", ifname, "netns", &name,
            ]);
            ip(&["-n", &name, "link", "set", ifname, "up"]);
        }
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// This machine, seen from inside the namespace: its interfaces are the list.
struct NsHost(BTreeSet<String>);

impl Host for NsHost {
    fn interface_exists(&self, name: &str) -> Option<bool> {
        Some(self.0.contains(name))
    }
    fn user_exists(&self, name: &str) -> bool {
        SystemHost.user_exists(name)
    }
    fn group_exists(&self, name: &str) -> bool {
        SystemHost.group_exists(name)
    }
    fn script_status(&self, program: &str) -> ScriptStatus {
        SystemHost.script_status(program)
    }
    fn config_id(&self) -> Option<String> {
        SystemHost.config_id()
    }
}

/// `| file | keepalived | xvrrpd | reason |` rows of DISAGREEMENTS.md.
fn allowed() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(corpus().join("DISAGREEMENTS.md"))
        .expect("reading tests/configs/DISAGREEMENTS.md");
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let file = cells.first()?.trim_matches('`');
            (file.ends_with(".conf") && cells.len() >= 4)
                .then(|| (file.to_string(), cells[3].to_string()))
        })
        .collect()
}

#[test]
fn xvrrpd_check_agrees_with_keepalived_t() {
    xvrrpd_tests::require_root();
    let keepalived = keepalived();
    let interfaces = list("INTERFACES");
    let missing: Vec<String> = list("SCRIPTS")
        .into_iter()
        .filter(|s| !Path::new(s).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "the corpus expects these programs on the machine: {missing:?} (install them, or edit tests/configs/SCRIPTS)"
    );
    let ns = Netns::new(&interfaces);
    let host = NsHost(interfaces.iter().cloned().collect());
    let allowed = allowed();

    let mut files: Vec<PathBuf> = ["valid", "broken"]
        .iter()
        .flat_map(|d| std::fs::read_dir(corpus().join(d)).expect("corpus dir"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();

    let (mut agree, mut explained, mut problems) = (0, Vec::new(), Vec::new());
    for f in &files {
        let rel = f.strip_prefix(corpus()).unwrap_or(f).display().to_string();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(&keepalived)
            .arg("-t")
            .arg("-f")
            .arg(f)
            .output()
            .expect("running keepalived -t");
        let k_ok = out.status.success();
        let report = analyze(f, &host);
        let x_ok = report.exit_code() == 0;
        let k_said = String::from_utf8_lossy(&out.stderr)
            .trim()
            .replace('\n', " / ");
        let x_said: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match (k_ok == x_ok, allowed.get(&name)) {
            (true, None) => agree += 1,
            (false, Some(reason)) => explained.push(format!("{rel}: {reason}")),
            (true, Some(_)) => problems.push(format!(
                "{rel}: listed in DISAGREEMENTS.md but both now say {}; remove the entry",
                if k_ok { "clean" } else { "refused" }
            )),
            (false, None) => problems.push(format!(
                "{rel}: keepalived -t {} ({:?}: {k_said}), xvrrpd check {} (exit {}: {})",
                if k_ok { "accepts" } else { "refuses" },
                out.status.code(),
                if x_ok { "accepts" } else { "refuses" },
                report.exit_code(),
                x_said.join(" / ")
            )),
        }
    }
    eprintln!(
        "keepalived -t agreement: {agree} of {} files agree; {} known disagreements:",
        files.len(),
        explained.len()
    );
    for e in &explained {
        eprintln!("  {e}");
    }
    assert!(
        problems.is_empty(),
        "unexplained disagreements with keepalived -t:\n  {}",
        problems.join("\n  ")
    );
}
