//! dist/xvrrpd.service: the directives the daemon relies on, capabilities
//! that match control::privileges, and `systemd-analyze verify`.
//!
//! `systemd-analyze verify` checks that every Exec*= binary exists, so it
//! runs on a copy whose /usr/sbin/xvrrpd is this build's binary; man pages
//! are not checked (`--man=no`) because they are installed by the package.
//! It does not need systemd to be running (PID 1 is not systemd in the
//! containers this is developed in).

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use xvrrpd::control::privileges::{KEPT, STARTUP_ONLY};

fn unit_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist/xvrrpd.service")
}

fn unit() -> String {
    std::fs::read_to_string(unit_path()).expect("dist/xvrrpd.service is readable")
}

/// Values of `key=` lines, comments skipped.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

fn one<'a>(text: &'a str, key: &str) -> &'a str {
    let v = values(text, key);
    assert_eq!(v.len(), 1, "{key}= must appear once, found {v:?}");
    v[0]
}

#[test]
fn the_unit_has_what_the_daemon_relies_on() {
    let u = unit();
    assert_eq!(one(&u, "Type"), "notify");
    assert_eq!(
        one(&u, "ExecStart"),
        "/usr/sbin/xvrrpd run -f /etc/keepalived/keepalived.conf"
    );
    assert_eq!(one(&u, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(
        one(&u, "ExecStopPost"),
        "/usr/sbin/xvrrpd cleanup -f /etc/keepalived/keepalived.conf"
    );
    assert_eq!(one(&u, "Restart"), "on-failure");
    // Half of it between pets: a backup hearing healthy masters wakes for
    // it less than once per down interval.
    assert_eq!(one(&u, "WatchdogSec"), "20s");
    assert_eq!(one(&u, "RuntimeDirectory"), "xvrrpd");
    // The control socket, and the datapath's pins (optional: no bpffs, no pins).
    assert_eq!(one(&u, "ReadWritePaths"), "/run/xvrrpd -/sys/fs/bpf");
    assert_eq!(one(&u, "LimitMEMLOCK"), "infinity");
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("SystemCallArchitectures", "native"),
        (
            "RestrictAddressFamilies",
            "AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET",
        ),
    ] {
        assert_eq!(one(&u, k), v, "{k}");
    }
    // The control socket's default lives in the runtime directory.
    assert!(xvrrpd::cli::DEFAULT_CONTROL_SOCKET.starts_with("/run/xvrrpd/"));
}

#[test]
fn unit_capabilities_are_what_startup_and_the_drop_expect() {
    let u = unit();
    let expected: BTreeSet<String> = KEPT
        .iter()
        .chain(STARTUP_ONLY.iter())
        .map(|c| c.to_string())
        .collect();
    for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        let got: BTreeSet<String> = one(&u, key)
            .split_ascii_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(got, expected, "{key}");
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        analyze.as_ref().is_ok_and(|o| o.status.success()),
        "systemd-analyze is needed to verify dist/xvrrpd.service: apt-get install systemd"
    );
    let dir = std::env::temp_dir().join(format!("xvrrpd-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let copy = dir.join("xvrrpd.service");
    let text = unit().replace("/usr/sbin/xvrrpd", env!("CARGO_BIN_EXE_xvrrpd"));
    std::fs::write(&copy, text).expect("write the copy");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("run systemd-analyze verify");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Warnings (unknown keys, bad values) do not fail the command: catch them.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("xvrrpd.service"))
        .collect();
    assert!(ours.is_empty(), "warnings about the unit: {ours:#?}");
}
