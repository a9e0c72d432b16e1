//! The status report: what `xvrrpd status` prints and `--json` emits.
//!
//! The JSON form is a stable interface (documented in docs/status-json.md):
//! fields are only ever added; `schema` changes if one is removed or renamed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::vrrp::{Reason, State};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub schema: u32,
    pub daemon: DaemonStatus,
    pub instances: Vec<InstanceStatus>,
    #[serde(default)]
    pub sync_groups: Vec<SyncGroupStatus>,
    /// Datapath counters by reason (kernel counters on the eBPF path).
    pub datapath_counters: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DaemonStatus {
    pub pid: u32,
    pub version: String,
    pub config_file: String,
    /// `ebpf` or `raw-socket`.
    pub datapath: String,
    /// Why eBPF is not in use, when it is not.
    pub datapath_fallback_reason: Option<String>,
    pub attachments: Vec<Attachment>,
    pub uptime_s: f64,
    pub reloads: u64,
    /// What the running kernel gave the daemon. Absent in reports from
    /// older daemons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelStatus>,
}

/// The kernel-dependent paths the daemon settled on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KernelStatus {
    /// `uname -r`.
    pub release: String,
    /// Who runs master-down timers that the datapath keeps: `bpf-timer`
    /// (the kernel, ≥ 5.15) or `agent` (the daemon's own timer).
    pub down_timers: String,
    /// How added VIPs are marked as the daemon's: `ifa-proto` (≥ 5.18) or
    /// `valid-lifetime`.
    pub vip_marker: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    pub interface: String,
    /// `xdp-native`, `xdp-generic` or `tc`.
    pub mode: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InstanceStatus {
    pub name: String,
    /// keepalived's words: `MASTER`, `BACKUP`, `FAULT`, `STOP`.
    pub state: String,
    pub interface: String,
    pub vrid: u8,
    /// `ipv4` or `ipv6`.
    pub family: String,
    pub version: u8,
    pub base_priority: u8,
    pub effective_priority: u8,
    /// The current master as last seen (ourselves when master).
    pub master_address: Option<String>,
    pub master_priority: Option<u8>,
    /// The advert interval in use (a VRRPv3 backup adopts the master's).
    pub advert_int_cs: u16,
    pub master_down_interval_ns: u64,
    /// Who watches the master-down timer of a backup: `kernel` (the
    /// datapath keeps the master's adverts and times them), `agent-kept`
    /// (the datapath keeps them, the daemon's own timer reads their time at
    /// the deadline), `agent` (every advert reaches the daemon); absent
    /// when no down timer runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_timer: Option<String>,
    /// The VRRPv3/IPv4 checksum its adverts carry when not the standard
    /// one: `old-unicast` (keepalived 1.3.5's, configured or detected from
    /// a peer) or `message-only` (`v3_checksum_as_v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advert_checksum: Option<String>,
    pub vips: Vec<String>,
    pub trackers: Vec<TrackerStatus>,
    pub counters: InstanceCounters,
    /// Most recent last.
    pub transitions: Vec<TransitionRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrackerStatus {
    pub name: String,
    /// `interface`, `script`, `file`, `process`.
    pub kind: String,
    /// `up`, `down`, or the file's value.
    pub state: String,
    pub weight: i32,
    pub reverse: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct InstanceCounters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    /// VIPs someone else deleted while master, added back.
    #[serde(default)]
    pub vips_restored: u64,
    /// Adverts the state machine discarded, by reason.
    pub discarded: BTreeMap<String, u64>,
    pub transitions: u64,
    /// Claims of our VIPs by other MACs seen as master (conflict guard).
    #[serde(default)]
    pub vip_claims: u64,
    /// Of those, the ones answered with a re-announce.
    #[serde(default)]
    pub vip_reannounced: u64,
    /// The MAC of the last claimant, `aa:bb:cc:dd:ee:ff`.
    #[serde(default)]
    pub last_claimant: Option<String>,
}

/// One state change and the times of its effects, in CLOCK_MONOTONIC ns.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TransitionRecord {
    /// keepalived's state names in JSON (`MASTER`, `BACKUP`, `FAULT`, `STOP`).
    #[serde(with = "keepalived_state")]
    pub from: State,
    #[serde(with = "keepalived_state")]
    pub to: State,
    pub reason: Reason,
    pub at_ns: u64,
    /// Kernel receive time of the last advert from the master.
    pub last_advert_ns: Option<u64>,
    /// The deadline of the timer that caused it.
    pub deadline_ns: Option<u64>,
    /// When that timer was handled.
    pub fired_at_ns: Option<u64>,
    /// When the VIPs were in place (taking over) or gone (giving up).
    pub vips_done_ns: Option<u64>,
    /// When the first gratuitous ARP / NA left.
    pub first_garp_ns: Option<u64>,
    pub priority: u8,
    pub master_address: Option<String>,
    /// The master's priority as last seen (0: it left).
    #[serde(default)]
    pub master_priority: Option<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SyncGroupStatus {
    pub name: String,
    pub state: String,
    pub members: Vec<String>,
}

fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1000.0)
}

/// A duration for a log line: ms from one millisecond on, else µs.
fn us_or_ms(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{} µs", ns / 1000)
    }
}

/// A [`State`] as the word keepalived's notify scripts and FIFO use.
mod keepalived_state {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::vrrp::State;

    pub fn serialize<S: Serializer>(state: &State, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(state.keepalived_name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<State, D::Error> {
        let name = String::deserialize(d)?;
        State::from_keepalived_name(&name)
            .ok_or_else(|| D::Error::custom(format!("unknown state {name:?}")))
    }
}

impl TransitionRecord {
    /// One line per transition: what happened, why, and how long each step took.
    pub fn log_line(&self, instance: &str) -> String {
        let t = self;
        let mut line = format!(
            "{instance}: {} → {}",
            t.from.keepalived_name(),
            t.to.keepalived_name()
        );
        let master = t.master_address.as_deref().unwrap_or("the master");
        match (t.reason, t.last_advert_ns, t.deadline_ns, t.fired_at_ns) {
            (Reason::MasterDown, _, Some(deadline), Some(fired))
                if t.master_priority.is_some_and(|p| p < t.priority && p > 0) =>
            {
                line.push_str(&format!(
                    ": preempts {master} (priority {} < {}) (deadline +{})",
                    t.master_priority.unwrap_or(0),
                    t.priority,
                    us_or_ms(fired.saturating_sub(deadline))
                ))
            }
            (Reason::MasterDown, Some(last), Some(deadline), Some(fired))
                if t.master_priority == Some(0) =>
            {
                line.push_str(&format!(
                    ": {master} left (priority 0) {} ago (deadline +{})",
                    us_or_ms(fired.saturating_sub(last)),
                    us_or_ms(fired.saturating_sub(deadline))
                ))
            }
            (Reason::MasterDown, Some(last), Some(deadline), Some(fired)) => {
                line.push_str(&format!(
                    ": no advert from {master} for {} (deadline +{})",
                    us_or_ms(fired.saturating_sub(last)),
                    us_or_ms(fired.saturating_sub(deadline))
                ))
            }
            (reason, ..) => line.push_str(&format!(": {reason:?}")),
        }
        if let Some(v) = t.vips_done_ns {
            let verb = if t.to == State::Master {
                "added"
            } else {
                "removed"
            };
            line.push_str(&format!(
                "; VIPs {verb} in {}",
                us_or_ms(v.saturating_sub(t.at_ns))
            ));
        }
        if let Some(g) = t.first_garp_ns {
            line.push_str(&format!(
                "; GARP sent after {}",
                us_or_ms(g.saturating_sub(t.at_ns))
            ));
        }
        line
    }

    /// One line: what happened and how long each step took.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} → {} ({:?})",
            self.from.keepalived_name(),
            self.to.keepalived_name(),
            self.reason
        );
        if let (Some(d), Some(f)) = (self.deadline_ns, self.fired_at_ns) {
            s.push_str(&format!(
                ", timer {} after its deadline",
                us(f.saturating_sub(d))
            ));
        }
        if let Some(v) = self.vips_done_ns {
            s.push_str(&format!(
                ", VIPs after {}",
                us(v.saturating_sub(self.at_ns))
            ));
        }
        if let Some(g) = self.first_garp_ns {
            s.push_str(&format!(
                ", first GARP after {}",
                us(g.saturating_sub(self.at_ns))
            ));
        }
        s
    }
}

impl StatusReport {
    /// The human form: one table of instances, then the recent transitions.
    pub fn render_table(&self) -> String {
        self.render_table_at(None)
    }

    /// [`StatusReport::render_table`], with a `SINCE` column (time in the
    /// state) when the reader's CLOCK_MONOTONIC `now_ns` is given (same
    /// host: the daemon's transition times are on that clock).
    pub fn render_table_at(&self, now_ns: Option<u64>) -> String {
        let d = &self.daemon;
        let mut out = format!(
            "xvrrpd {} pid {} — datapath {}{} — up {:.0} s, {} reload(s)\n\n",
            d.version,
            d.pid,
            d.datapath,
            d.attachments
                .iter()
                .map(|a| format!(" {}:{}", a.interface, a.mode))
                .collect::<String>(),
            d.uptime_s,
            d.reloads
        );
        if let Some(r) = &d.datapath_fallback_reason {
            out.push_str(&format!("eBPF not in use: {r}\n\n"));
        }
        let mut header = vec![
            "INSTANCE",
            "STATE",
            "IFACE",
            "VRID",
            "PRIO",
            "MASTER",
            "INTERVAL",
            "VIPS",
            "ADV IN/OUT",
        ];
        if now_ns.is_some() {
            header.insert(2, "SINCE");
        }
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for i in &self.instances {
            let mut row = vec![
                i.name.clone(),
                i.state.clone(),
                i.interface.clone(),
                format!("{} v{} {}", i.vrid, i.version, i.family),
                if i.base_priority == i.effective_priority {
                    i.effective_priority.to_string()
                } else {
                    format!("{} (base {})", i.effective_priority, i.base_priority)
                },
                match (&i.master_address, i.master_priority) {
                    (Some(a), Some(p)) => format!("{a} ({p})"),
                    (Some(a), None) => a.clone(),
                    _ => "-".into(),
                },
                format!("{} ms", f64::from(i.advert_int_cs) * 10.0),
                i.vips.join(","),
                format!(
                    "{}/{}",
                    i.counters.adverts_received, i.counters.adverts_sent
                ),
            ];
            if let Some(now) = now_ns {
                let since = i
                    .transitions
                    .last()
                    .map(|t| human_duration(now.saturating_sub(t.at_ns)))
                    .unwrap_or_else(|| "-".into());
                row.insert(2, since);
            }
            rows.push(row);
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        for i in &self.instances {
            if !i.trackers.is_empty() {
                let t: Vec<String> = i
                    .trackers
                    .iter()
                    .map(|t| format!("{} {} {} (weight {})", t.kind, t.name, t.state, t.weight))
                    .collect();
                out.push_str(&format!("\n{} trackers: {}", i.name, t.join("; ")));
            }
            if let Some(last) = i.transitions.last() {
                out.push_str(&format!("\n{} last: {}", i.name, last.summary()));
            }
            if let Some(who) = &i.counters.last_claimant {
                out.push_str(&format!(
                    "\n{} VIP claims: {} by other MACs, {} re-announced, last by {who}",
                    i.name, i.counters.vip_claims, i.counters.vip_reannounced
                ));
            }
        }
        let drops: Vec<String> = self
            .datapath_counters
            .iter()
            // Claims are ARP/NA the kernel passed on, not drops; heard
            // adverts are delivered ones the kernel timed for the agent.
            .filter(|(k, v)| {
                **v > 0
                    && !matches!(k.as_str(), "accepted" | "heard" | "down_expired")
                    && !k.starts_with("claim_")
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !drops.is_empty() {
            out.push_str(&format!("\n\ndatapath drops: {}", drops.join(" ")));
        }
        out.push('\n');
        out
    }
}

/// `12 ms`, `3.4 s`, `5 min 07 s`, `2 h 05 min`.
pub fn human_duration(ns: u64) -> String {
    let ms = ns / 1_000_000;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(reason: Reason, master_priority: Option<u8>) -> TransitionRecord {
        TransitionRecord {
            from: State::Backup,
            to: State::Master,
            reason,
            at_ns: 1_000_000_000,
            last_advert_ns: Some(963_700_000),
            deadline_ns: Some(999_766_000),
            fired_at_ns: Some(1_000_000_000),
            vips_done_ns: Some(1_000_369_000),
            first_garp_ns: Some(1_000_432_000),
            priority: 100,
            master_address: Some("192.0.2.11".into()),
            master_priority,
        }
    }

    #[test]
    fn a_take_over_after_silence_reads_as_its_timeline() {
        assert_eq!(
            record(Reason::MasterDown, Some(150)).log_line("VI_1"),
            "VI_1: BACKUP → MASTER: no advert from 192.0.2.11 for 36.3 ms (deadline +234 µs); \
             VIPs added in 369 µs; GARP sent after 432 µs"
        );
    }

    #[test]
    fn priority_zero_and_preemption_are_told_apart() {
        assert!(
            record(Reason::MasterDown, Some(0))
                .log_line("VI_1")
                .contains(": 192.0.2.11 left (priority 0) 36.3 ms ago (deadline +234 µs)")
        );
        assert!(
            record(Reason::MasterDown, Some(50))
                .log_line("VI_1")
                .contains(": preempts 192.0.2.11 (priority 50 < 100) (deadline +234 µs)")
        );
    }

    #[test]
    fn other_reasons_are_named() {
        let mut r = record(Reason::HigherPriority, Some(200));
        r.from = State::Master;
        r.to = State::Backup;
        r.first_garp_ns = None;
        assert_eq!(
            r.log_line("VI_1"),
            "VI_1: MASTER → BACKUP: HigherPriority; VIPs removed in 369 µs"
        );
    }
}
