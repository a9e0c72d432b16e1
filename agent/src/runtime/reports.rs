//! What the daemon tells: the transition history with each take-over's
//! timeline, one log line per transition, and the status report.

use std::collections::BTreeMap;

use tracing::info;
use xvrrpd_common::Counter;

use super::{
    daemon::{Daemon, InstanceId, Unit},
    effects::{Done, Report},
};
use crate::{
    control::status::{self, InstanceStatus, StatusReport, TransitionRecord},
    packet::V3Ipv4Checksum,
    vrrp::{Family, State, TrackState, Transition},
};

/// Transitions kept per instance for status.
const HISTORY: usize = 16;

fn family_word(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

impl Daemon {
    pub(super) fn record_transition(&mut self, inst: InstanceId, t: &Transition) {
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        i.counters.transitions += 1;
        if i.history.len() == HISTORY {
            i.history.pop_front();
        }
        i.history.push_back(TransitionRecord {
            from: t.from,
            to: t.to,
            reason: t.reason,
            at_ns: t.at_ns,
            last_advert_ns: t.last_advert_ts_ns,
            deadline_ns: t.deadline_ns,
            fired_at_ns: t.fired_at_ns,
            vips_done_ns: None,
            first_garp_ns: None,
            priority: t.priority,
            master_address: t.master_addr.map(|a| a.to_string()),
            master_priority: t.master_priority,
        });
    }

    /// Logs the instance's pending transition line now.
    pub(super) fn flush_log(&mut self, inst: InstanceId) {
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        let Some((at, _)) = i.pending_log.take() else {
            return;
        };
        if let Some(t) = i.history.iter().rev().find(|t| t.at_ns == at) {
            info!("{}", t.log_line(&i.plan.name));
            self.events
                .publish(crate::control::events::EventKind::Transition {
                    instance: i.plan.name.clone(),
                    transition: t.clone(),
                });
        }
    }

    /// An effect finished: its time goes into the transition's timeline.
    pub(super) fn on_report(&mut self, r: Report) {
        self.effects_in_flight = self.effects_in_flight.saturating_sub(1);
        let Some(inst) = self
            .instances
            .iter()
            .position(|i| i.plan.name == r.instance)
        else {
            return;
        };
        let i = &mut self.instances[inst];
        let Some(t) = i
            .history
            .iter_mut()
            .rev()
            .find(|t| t.at_ns == r.transition_at_ns)
        else {
            return;
        };
        match r.done {
            Done::Vips => {
                if t.vips_done_ns.is_none() {
                    t.vips_done_ns = Some(r.at_ns);
                    if t.to == State::Master
                        && let Some(d) = t.deadline_ns
                    {
                        i.metrics.failover_vips_added(d, r.at_ns);
                    }
                }
            }
            Done::Gratuitous(Some(first)) => {
                if t.first_garp_ns.is_none() {
                    t.first_garp_ns = Some(first);
                    if let Some(d) = t.deadline_ns {
                        i.metrics.failover_first_garp(d, first);
                    }
                }
            }
            Done::Gratuitous(None) | Done::Routes => {}
        }
        if let Some((at, n)) = &mut i.pending_log
            && *at == r.transition_at_ns
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.flush_log(inst);
            }
        }
    }

    pub(super) fn status(&self) -> StatusReport {
        let counters = self.datapath.counters();
        let datapath_counters: BTreeMap<String, u64> = Counter::ALL
            .iter()
            .map(|&c| (c.name().to_string(), counters[c as usize]))
            .collect();
        StatusReport {
            schema: status::SCHEMA_VERSION,
            daemon: self.daemon_status(),
            instances: (0..self.instances.len())
                .map(|n| self.instance_status(n))
                .collect(),
            sync_groups: self.sync_group_status(),
            datapath_counters,
        }
    }

    fn daemon_status(&self) -> status::DaemonStatus {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|r| r.trim().to_string())
            .unwrap_or_default();
        status::DaemonStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            config_file: self.opts.config.display().to_string(),
            datapath: match self.datapath.kind() {
                crate::datapath::DatapathKind::Ebpf => "ebpf".into(),
                crate::datapath::DatapathKind::RawSocket => "raw-socket".into(),
            },
            datapath_fallback_reason: self.datapath.fallback_reason.clone(),
            attachments: self
                .datapath
                .attachments()
                .into_iter()
                .map(|(interface, mode)| status::Attachment {
                    interface,
                    mode: serde_json::to_value(mode)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                })
                .collect(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            reloads: self.reloads,
            kernel: Some(status::KernelStatus {
                // The rule `VipManager` chose its marker by, on the same text.
                vip_marker: match crate::net::addr::MarkerMode::for_kernel_release(&release) {
                    crate::net::addr::MarkerMode::IfaProto => "ifa-proto",
                    crate::net::addr::MarkerMode::Lifetime => "valid-lifetime",
                }
                .into(),
                release,
                down_timers: if self.datapath.kernel_timers() {
                    "bpf-timer"
                } else {
                    "agent"
                }
                .into(),
            }),
        }
    }

    fn instance_status(&self, n: InstanceId) -> InstanceStatus {
        let i = &self.instances[n];
        let r = self.router(n);
        let state = r.map(|r| r.state()).unwrap_or(State::Initialize);
        let (master_address, master_priority) = match r {
            Some(r) if state == State::Master => {
                (Some(i.plan.source.to_string()), Some(r.priority()))
            }
            Some(r) => {
                let (addr, prio) = r.master();
                (addr.map(|a| a.to_string()), prio)
            }
            None => (None, None),
        };
        let trackers = i
            .plan
            .tracker_names
            .iter()
            .map(|(id, name, kind)| {
                let cfg = i.plan.router.trackers.iter().find(|t| t.id == *id);
                status::TrackerStatus {
                    name: name.clone(),
                    kind: (*kind).into(),
                    state: match r.and_then(|r| r.tracker_state(*id)) {
                        Some(TrackState::Up) => "up".into(),
                        Some(TrackState::Down) => "down".into(),
                        Some(TrackState::Value(v)) => v.to_string(),
                        None => "unknown".into(),
                    },
                    weight: cfg.map(|t| t.weight).unwrap_or(0),
                    reverse: cfg.is_some_and(|t| t.reverse),
                }
            })
            .collect();
        InstanceStatus {
            name: i.plan.name.clone(),
            state: state.keepalived_name().into(),
            interface: i.plan.ifname.clone(),
            vrid: i.plan.router.vrid,
            family: family_word(i.plan.router.family).into(),
            version: i.plan.router.version.number(),
            base_priority: r.map(|r| r.base_priority()).unwrap_or(0),
            effective_priority: r.map(|r| r.priority()).unwrap_or(0),
            master_address,
            master_priority,
            advert_int_cs: r.map(|r| r.master_adver_int_cs()).unwrap_or(0),
            master_down_interval_ns: r.map(|r| r.master_down_ns()).unwrap_or(0),
            down_timer: self.down_timer_owner(n).map(Into::into),
            advert_checksum: match i.outlet.checksum() {
                V3Ipv4Checksum::PseudoHeader => None,
                V3Ipv4Checksum::OldUnicast => Some("old-unicast".into()),
                V3Ipv4Checksum::Plain => Some("message-only".into()),
            },
            vips: i
                .plan
                .vips
                .iter()
                .map(|v| format!("{}/{}", v.addr, v.prefix_len))
                .collect(),
            trackers,
            counters: i.counters.clone(),
            transitions: i.history.iter().cloned().collect(),
        }
    }

    fn sync_group_status(&self) -> Vec<status::SyncGroupStatus> {
        self.units
            .iter()
            .enumerate()
            .filter_map(|(u, unit)| match unit {
                Unit::Group(g) => Some(status::SyncGroupStatus {
                    name: g.name().to_string(),
                    state: g.state().keepalived_name().into(),
                    members: self
                        .instances
                        .iter()
                        .filter(|i| i.unit == u)
                        .map(|i| i.plan.name.clone())
                        .collect(),
                }),
                Unit::Single(_) => None,
            })
            .collect()
    }
}
