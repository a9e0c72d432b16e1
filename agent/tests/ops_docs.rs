//! The operator docs name every metric and every status JSON field, so a
//! field added to the code without documentation fails here.

use std::{collections::BTreeMap, path::PathBuf};

use serde_json::Value;
use xvrrpd::{
    control::{
        metrics::METRIC_NAMES,
        status::{
            Attachment, DaemonStatus, InstanceCounters, InstanceStatus, KernelStatus,
            SCHEMA_VERSION, StatusReport, SyncGroupStatus, TrackerStatus, TransitionRecord,
        },
    },
    vrrp::{DiscardReason, Reason, State},
};

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A report with every optional field set and every list non-empty.
fn full_report() -> StatusReport {
    StatusReport {
        schema: SCHEMA_VERSION,
        daemon: DaemonStatus {
            pid: 1,
            version: "0.1.0".into(),
            config_file: "/etc/keepalived/keepalived.conf".into(),
            datapath: "ebpf".into(),
            datapath_fallback_reason: Some("x".into()),
            attachments: vec![Attachment {
                interface: "eth0".into(),
                mode: "xdp-native".into(),
            }],
            uptime_s: 1.0,
            reloads: 0,
            kernel: Some(KernelStatus {
                release: "6.1.0-57-amd64".into(),
                down_timers: "bpf-timer".into(),
                vip_marker: "ifa-proto".into(),
            }),
        },
        instances: vec![InstanceStatus {
            name: "VI_1".into(),
            state: "MASTER".into(),
            interface: "eth0".into(),
            vrid: 1,
            family: "ipv4".into(),
            version: 3,
            base_priority: 100,
            effective_priority: 100,
            master_address: Some("192.0.2.1".into()),
            master_priority: Some(100),
            advert_int_cs: 100,
            master_down_interval_ns: 1,
            down_timer: Some("kernel".into()),
            advert_checksum: None,
            vips: vec!["192.0.2.10".into()],
            trackers: vec![TrackerStatus {
                name: "t".into(),
                kind: "script".into(),
                state: "up".into(),
                weight: 0,
                reverse: false,
            }],
            counters: InstanceCounters {
                discarded: BTreeMap::from([("bad_ttl".to_string(), 1)]),
                ..InstanceCounters::default()
            },
            transitions: vec![TransitionRecord {
                from: State::Backup,
                to: State::Master,
                reason: Reason::MasterDown,
                at_ns: 1,
                last_advert_ns: Some(1),
                deadline_ns: Some(1),
                fired_at_ns: Some(1),
                vips_done_ns: Some(1),
                first_garp_ns: Some(1),
                priority: 100,
                master_address: Some("192.0.2.2".into()),
                master_priority: Some(150),
            }],
        }],
        sync_groups: vec![SyncGroupStatus {
            name: "G".into(),
            state: "MASTER".into(),
            members: vec!["VI_1".into()],
        }],
        datapath_counters: BTreeMap::new(),
    }
}

/// Every object key in the JSON, with the path it was found at.
fn keys(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                // Map-valued fields (counters by reason) have data as keys.
                if !matches!(
                    path.rsplit('.').next(),
                    Some("discarded" | "datapath_counters")
                ) {
                    out.push((k.clone(), path.to_string()));
                }
                keys(child, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| keys(c, path, out)),
        _ => {}
    }
}

#[test]
fn status_json_doc_names_every_field() {
    let json = serde_json::to_value(full_report()).expect("serializes");
    let mut found = Vec::new();
    keys(&json, "", &mut found);
    assert!(found.len() > 40, "walked the whole report: {found:?}");
    let text = doc("status-json.md");
    let missing: Vec<String> = found
        .iter()
        .filter(|(k, _)| !text.contains(&format!("| `{k}` |")))
        .map(|(k, p)| format!("{p}.{k}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/status-json.md has no table row for {missing:?}"
    );
    assert!(text.contains(&format!("currently `{SCHEMA_VERSION}`")));
}

#[test]
fn status_json_doc_lists_every_discard_reason() {
    let text = doc("status-json.md");
    for label in DiscardReason::LABELS {
        assert!(
            text.contains(&format!("`{label}`")),
            "docs/status-json.md does not list the discard reason {label}"
        );
    }
}

#[test]
fn transition_records_read_back_with_keepalived_state_names() {
    let report = full_report();
    let json = serde_json::to_value(&report).expect("serializes");
    let t = &json["instances"][0]["transitions"][0];
    assert_eq!(t["from"], "BACKUP");
    assert_eq!(t["to"], "MASTER");
    assert_eq!(t["reason"], "MasterDown");
    let back: StatusReport = serde_json::from_value(json).expect("reads back");
    assert_eq!(back, report);
}

#[test]
fn metrics_doc_names_every_metric() {
    let text = doc("metrics.md");
    for name in METRIC_NAMES {
        assert!(
            text.contains(&format!("| `{name}` |")),
            "docs/metrics.md has no row for {name}"
        );
    }
}

#[test]
fn status_json_doc_lists_every_datapath_counter() {
    let text = doc("status-json.md");
    for c in xvrrpd_common::Counter::ALL {
        assert!(
            text.contains(&format!("| `{}` |", c.name())),
            "docs/status-json.md does not explain datapath counter {}",
            c.name()
        );
    }
}
