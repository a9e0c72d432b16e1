//! The status JSON a running xvrrpd serves is the one docs/status-json.md
//! describes: checked on the daemon's own answer, not on a report built in
//! the test.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{Context, Result};
use serde_json::Value;
use xvrrpd::vrrp::DiscardReason;
use xvrrpd_tests::{
    kconf::{Daemon, Instance},
    retry::lab_test,
    scenario::Cluster,
};

/// r1 runs VRID 51 as VRRPv3, r2 as VRRPv2: each one's state machine
/// discards the other's adverts as `wrong_version`, and `status --json`
/// counts them under the documented name.
#[test]
fn discards_are_counted_under_their_documented_names() -> Result<()> {
    lab_test("discards_are_counted_under_their_documented_names", || {
        let mut c = Cluster::new(
            "status-json",
            Instance::new("VI_1", 51, &["192.0.2.100/24"]),
            &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
            false,
            |node, cfg| {
                if node.name == "r2" {
                    cfg.instances[0].version = 2;
                    cfg.instances[0].advert_int = Duration::from_secs(1);
                }
                Ok(())
            },
        )?;
        c.start_all()?;
        // r2's own down timer (VRRPv2, 1 s, priority 100) runs out after
        // 3.6 s: then both send, and each hears the other's version.
        std::thread::sleep(Duration::from_millis(5000));
        let documented = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/status-json.md"),
        )
        .context("reading docs/status-json.md")?;
        let labels: BTreeSet<&str> = DiscardReason::LABELS.into_iter().collect();
        for name in ["r1", "r2"] {
            let r = c.router(name);
            let out = std::process::Command::new(&r.bin)
                .args(["status", "--json", "--control-socket"])
                .arg(&r.control_socket)
                .output()
                .context("running xvrrpd status --json")?;
            assert!(
                out.status.success(),
                "{name}: xvrrpd status --json failed: {out:?}"
            );
            let json: Value =
                serde_json::from_slice(&out.stdout).context("status --json is not JSON")?;
            let discarded = json["instances"][0]["counters"]["discarded"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            assert!(
                discarded
                    .get("wrong_version")
                    .and_then(Value::as_u64)
                    .is_some_and(|n| n > 0),
                "{name} heard the other version's adverts and counts no wrong_version \
                 discard: {discarded:?}"
            );
            for key in discarded.keys() {
                assert!(
                    labels.contains(key.as_str()) && documented.contains(&format!("`{key}`")),
                    "{name}: status --json counts a discard as {key:?}, which \
                     docs/status-json.md does not list"
                );
            }
            let t = &json["instances"][0]["transitions"][0];
            assert!(
                ["MASTER", "BACKUP", "FAULT", "STOP"].contains(&t["to"].as_str().unwrap_or("")),
                "{name}: a transition's state is not named as keepalived names it: {t}"
            );
        }
        c.finish()?;
        Ok(())
    })
}
