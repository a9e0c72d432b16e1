//! `global_defs`: the defaults every instance starts from.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    str::FromStr,
    time::Duration,
};

use super::{
    super::{
        UnsupportedKind,
        model::{GlobalDefs, ScriptUser},
        tree::Node,
    },
    Builder,
    keywords::{Shape, TIMER_MAX_SEC, Table, unchecked},
};

impl Builder<'_> {
    /// Several `global_defs` blocks add up, as in keepalived.
    pub(super) fn global_defs(&mut self, n: &Node) {
        if !self.shape(n, Shape::Block) {
            return;
        }
        let mut g = std::mem::take(&mut self.cfg.global_defs);
        self.read_block(&GLOBAL_DEFS, &mut g, n.children());
        self.default_lower_prio_garp(&mut g);
        self.cfg.global_defs = g;
    }

    fn mcast_group<A: Multicast>(&mut self, n: &Node, family: &str, group: &str) -> Option<A> {
        let t = self.word(n, "address")?;
        match A::from_str(&t.text) {
            Ok(a) if a.is_multicast() => Some(a),
            _ => {
                self.d
                    .error(
                        &t.loc,
                        format!(
                            "{} '{}' is not an {family} multicast address",
                            n.name(),
                            t.text
                        ),
                    )
                    .hint(format!("the VRRP group is {group}"));
                None
            }
        }
    }

    fn script_user(&mut self, n: &Node) -> Option<ScriptUser> {
        let u = self.arg(n, 0, "user name")?.clone();
        self.extra(n, 2);
        if !self.host.user_exists(&u.text) {
            self.d
                .error(&u.loc, format!("script_user '{}' does not exist", u.text))
                .hint("create the user or name an existing one (often root)");
        }
        let group = n.args.get(1);
        if let Some(g) = group
            && !self.host.group_exists(&g.text)
        {
            self.d
                .error(
                    &g.loc,
                    format!("script_user group '{}' does not exist", g.text),
                )
                .hint("name an existing group, or leave it out to use the user's group");
        }
        Some(ScriptUser {
            user: u.text,
            group: group.map(|g| g.text.clone()),
        })
    }
}

/// The VRRP group addresses, checked the same way for both families.
trait Multicast: FromStr {
    fn is_multicast(&self) -> bool;
}

impl Multicast for Ipv4Addr {
    fn is_multicast(&self) -> bool {
        Ipv4Addr::is_multicast(self)
    }
}

impl Multicast for Ipv6Addr {
    fn is_multicast(&self) -> bool {
        Ipv6Addr::is_multicast(self)
    }
}

/// One GARP/NA burst of one message, no second burst.
fn min_garp(b: &mut Builder<'_>, g: &mut GlobalDefs, n: &Node) {
    let Some(on) = b.flag(n) else {
        return;
    };
    g.vrrp_min_garp = on;
    if on {
        g.vrrp_garp_master_repeat = 1;
        g.vrrp_garp_master_delay = Duration::ZERO;
        g.vrrp_garp_lower_prio_repeat = 1;
        g.vrrp_garp_lower_prio_delay = Duration::ZERO;
        b.lp_delay_set = true;
        b.lp_repeat_set = true;
    }
}

fn v3_checksum_as_v2(b: &mut Builder<'_>, g: &mut GlobalDefs, n: &Node) {
    if let Some(on) = b.flag(n) {
        g.v3_checksum_as_v2 = on;
        b.d.note(&n.key.loc, "'v3_checksum_as_v2' is an xvrrpd extension")
            .hint("keepalived reports it as an unknown keyword");
    }
}

static GLOBAL_DEFS: Table<GlobalDefs> = Table {
    context: "global_defs",
    unknown_leaf: false,
    keywords: &[
        unchecked(
            &["vrrp_garp_extra_if", "vrrp_vmac_garp_intvl"],
            |b, g, n| {
                if let Some(v) = b.garp_extra_if(n, 1, "vrrp_garp_extra_if") {
                    g.vrrp_garp_extra_if = v;
                }
            },
        ),
        unchecked(&["vmac_prefix"], |b, g, n| {
            if let Some(t) = b.word(n, "prefix") {
                g.vmac_prefix = Some(t.text);
            }
        }),
        unchecked(&["vmac_addr_prefix"], |b, g, n| {
            if let Some(t) = b.word(n, "prefix") {
                g.vmac_addr_prefix = Some(t.text);
            }
        }),
        unchecked(&["router_id"], |b, g, n| {
            if let Some(t) = b.word(n, "name") {
                g.router_id = Some(t.text);
            }
        }),
        unchecked(&["startup_script", "shutdown_script"], |b, g, n| {
            let slot = if n.name() == "startup_script" {
                &mut g.startup_script
            } else {
                &mut g.shutdown_script
            };
            if slot.is_some() {
                b.d.error(
                    &n.key.loc,
                    format!("{} already specified - ignoring this one", n.name()),
                )
                .hint("keep one startup_script and one shutdown_script");
                return;
            }
            *slot = b.script(n, "global_defs", false);
        }),
        unchecked(
            &["startup_script_timeout", "shutdown_script_timeout"],
            |b, g, n| {
                if let Some(secs) = b.uint(n, 1, 1000) {
                    let t = Duration::from_secs(secs);
                    if n.name() == "startup_script_timeout" {
                        g.startup_script_timeout = t;
                    } else {
                        g.shutdown_script_timeout = t;
                    }
                }
            },
        ),
        unchecked(&["fifo_write_vrrp_states_on_reload"], |b, g, n| {
            b.set_on(n, &mut g.fifo_write_vrrp_states_on_reload)
        }),
        unchecked(&["umask"], umask),
        unchecked(UNSUPPORTED_GLOBALS, |b, _, n| b.not_supported(n)),
        unchecked(&["vrrp_version"], |b, g, n| {
            b.set_uint(n, 2, 3, &mut g.vrrp_version)
        }),
        unchecked(&["vrrp_mcast_group4"], |b, g, n| {
            if let Some(a) = b.mcast_group(n, "IPv4", "224.0.0.18") {
                g.vrrp_mcast_group4 = a;
            }
        }),
        unchecked(&["vrrp_mcast_group6"], |b, g, n| {
            if let Some(a) = b.mcast_group(n, "IPv6", "ff02::12") {
                g.vrrp_mcast_group6 = a;
            }
        }),
        unchecked(&["vrrp_garp_master_delay"], |b, g, n| {
            b.set_whole_secs(n, &mut g.vrrp_garp_master_delay);
        }),
        unchecked(&["vrrp_garp_lower_prio_delay"], |b, g, n| {
            if b.set_whole_secs(n, &mut g.vrrp_garp_lower_prio_delay) {
                b.lp_delay_set = true;
            }
        }),
        unchecked(&["vrrp_garp_master_refresh"], |b, g, n| {
            b.set_whole_secs(n, &mut g.vrrp_garp_master_refresh);
        }),
        unchecked(&["vrrp_garp_master_repeat"], |b, g, n| {
            b.set_repeat(n, &mut g.vrrp_garp_master_repeat);
        }),
        unchecked(&["vrrp_garp_lower_prio_repeat"], |b, g, n| {
            if b.set_repeat(n, &mut g.vrrp_garp_lower_prio_repeat) {
                b.lp_repeat_set = true;
            }
        }),
        unchecked(&["vrrp_garp_master_refresh_repeat"], |b, g, n| {
            b.set_repeat(n, &mut g.vrrp_garp_master_refresh_repeat);
        }),
        unchecked(&["vrrp_garp_interval"], |b, g, n| {
            b.set_secs(n, 0.0, 2147.0, &mut g.vrrp_garp_interval);
        }),
        unchecked(&["vrrp_gna_interval"], |b, g, n| {
            b.set_secs(n, 0.0, 2147.0, &mut g.vrrp_gna_interval);
        }),
        unchecked(&["vrrp_min_garp"], min_garp),
        unchecked(&["vrrp_lower_prio_no_advert"], |b, g, n| {
            b.set_flag(n, &mut g.vrrp_lower_prio_no_advert)
        }),
        unchecked(&["vrrp_notify_priority_changes"], |b, g, n| {
            b.set_flag(n, &mut g.vrrp_notify_priority_changes)
        }),
        unchecked(&["vrrp_higher_prio_send_advert"], |b, g, n| {
            b.set_flag(n, &mut g.vrrp_higher_prio_send_advert)
        }),
        unchecked(&["vrrp_skip_check_adv_addr"], |b, g, n| {
            b.set_flag(n, &mut g.vrrp_skip_check_adv_addr)
        }),
        unchecked(&["vrrp_strict"], |b, g, n| b.set_on(n, &mut g.vrrp_strict)),
        unchecked(&["vrrp_check_unicast_src"], |b, g, n| {
            b.set_on(n, &mut g.vrrp_check_unicast_src)
        }),
        unchecked(&["vrrp_startup_delay"], |b, g, n| {
            b.set_secs(n, 0.0, TIMER_MAX_SEC as f64, &mut g.vrrp_startup_delay);
        }),
        unchecked(&["vrrp_down_timer_adverts"], |b, g, n| {
            b.set_uint(n, 1, 100, &mut g.vrrp_down_timer_adverts)
        }),
        unchecked(&["v3_checksum_as_v2"], v3_checksum_as_v2),
        unchecked(&["notify_fifo"], |b, g, n| g.notify_fifo = b.fifo(n)),
        unchecked(&["vrrp_notify_fifo"], |b, g, n| {
            g.vrrp_notify_fifo = b.fifo(n)
        }),
        unchecked(&["notify_fifo_script"], |b, g, n| {
            g.notify_fifo_script = b.script(n, "notify_fifo_script", false)
        }),
        unchecked(&["vrrp_notify_fifo_script"], |b, g, n| {
            g.vrrp_notify_fifo_script = b.script(n, "vrrp_notify_fifo_script", false)
        }),
        unchecked(&["script_user"], |b, g, n| {
            if let Some(u) = b.script_user(n) {
                g.script_user = Some(u);
            }
        }),
        unchecked(&["enable_script_security"], |b, g, n| {
            b.set_on(n, &mut g.enable_script_security)
        }),
        unchecked(MAIL, |b, _, n| {
            b.unsupported(
                n,
                UnsupportedKind::Ignored,
                "is ignored: xvrrpd sends no mail (use notify scripts or the notify FIFO)",
            )
        }),
        unchecked(IGNORED_GLOBALS, |b, _, n| b.ignored(n)),
    ],
};

/// Mail settings: xvrrpd sends no mail.
const MAIL: &[&str] = &[
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "email_from",
    "no_email_faults",
];

/// global_defs keywords keepalived acts on and xvrrpd does not (yet): each
/// is a warning, since the file would not run as written.
const UNSUPPORTED_GLOBALS: &[&str] = &[
    // Interfaces that come and go: xvrrpd needs every interface at start.
    "default_interface",
    "dynamic_interfaces",
    "allow_if_changes",
    // Scheduled reloads.
    "reload_time_file",
    "reload_repeat",
    "reload_file",
];

/// `umask NUMBER` (octal with a leading 0, hex with 0x) or `umask
/// IWGRP|IWOTH…`, as keepalived reads it.
fn umask(b: &mut Builder<'_>, g: &mut GlobalDefs, n: &Node) {
    let Some(first) = n.args.first() else {
        b.d.error(&n.key.loc, "umask is missing its value")
            .hint("write it as: umask 0027 (or umask IWGRP|IRWXO)");
        return;
    };
    let all = 0o777u32;
    let value = if first.text.starts_with(|c: char| c.is_ascii_digit()) {
        b.extra(n, 1);
        let t = first.text.as_str();
        let parsed = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            u32::from_str_radix(h, 16).ok()
        } else if t.len() > 1 && t.starts_with('0') {
            u32::from_str_radix(&t[1..], 8).ok()
        } else {
            t.parse().ok()
        };
        parsed.filter(|v| v & !all == 0)
    } else {
        let bits = [
            ("IRUSR", 0o400),
            ("IWUSR", 0o200),
            ("IXUSR", 0o100),
            ("IRGRP", 0o040),
            ("IWGRP", 0o020),
            ("IXGRP", 0o010),
            ("IROTH", 0o004),
            ("IWOTH", 0o002),
            ("IXOTH", 0o001),
        ];
        let text: String = n.args.iter().map(|t| t.text.as_str()).collect();
        text.split('|')
            .map(|w| bits.iter().find(|(name, _)| *name == w).map(|(_, v)| *v))
            .try_fold(0u32, |acc, v| v.map(|v| acc | v))
    };
    match value {
        Some(v) => g.umask = Some(v),
        None => {
            b.d.error(&first.loc, format!("invalid umask value {}", first.text))
                .hint("use an octal mask such as 0027, or bits such as IWGRP|IWOTH");
        }
    }
}

/// global_defs keywords keepalived knows that change nothing for xvrrpd.
const IGNORED_GLOBALS: &[&str] = &[
    // Firewall rules for non-accept mode: the eBPF datapath drops what is
    // sent to such a master's VIPs itself.
    "vrrp_iptables",
    "vrrp_ipsets",
    "nftables",
    "nftables_priority",
    "nftables_counters",
    "nftables_ifindex",
    "vrrp_cpu_affinity",
    "checker_cpu_affinity",
    "bfd_cpu_affinity",
    "vrrp_rlimit_rtime",
    "checker_rlimit_rtime",
    "bfd_rlimit_rtime",
    "lvs_flush_onstop",
    "lvs_process_name",
    "process_monitor_rcv_bufs",
    "process_monitor_rcv_bufs_force",
    // xvrrpd always checks a new file whole before it applies any of it.
    "reload_check_config",
    "include_check",
    "vrrp_no_swap",
    "vrrp_priority",
    "vrrp_rt_priority",
    "vrrp_rlimit_rttime",
    "vrrp_rx_bufs_policy",
    "vrrp_rx_bufs_multiplier",
    "max_auto_priority",
    "min_auto_priority_delay",
    "process_names",
    "process_name",
    "vrrp_process_name",
    "checker_process_name",
    "bfd_process_name",
    "checker_priority",
    "checker_no_swap",
    "checker_rt_priority",
    "checker_rlimit_rttime",
    "checker_log_all_failures",
    "bfd_priority",
    "bfd_no_swap",
    "bfd_rt_priority",
    "bfd_rlimit_rttime",
    "lvs_sync_daemon",
    "lvs_timeouts",
    "lvs_flush",
    "lvs_flush_on_stop",
    "lvs_notify_fifo",
    "lvs_notify_fifo_script",
    "lvs_id",
    "enable_snmp_vrrp",
    "enable_snmp_keepalived",
    "enable_snmp_checker",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_traps",
    "snmp_socket",
    "enable_dbus",
    "dbus_service_name",
    "nftables_ipvs",
    "nftables_ipvs_priority",
    "nftables_ipvs_start_fwmark",
    "disable_local_igmp",
    "log_unknown_vrids",
    "vrrp_netlink_cmd_rcv_bufs",
    "vrrp_netlink_cmd_rcv_bufs_force",
    "vrrp_netlink_monitor_rcv_bufs",
    "vrrp_netlink_monitor_rcv_bufs_force",
    "lvs_netlink_cmd_rcv_bufs",
    "lvs_netlink_cmd_rcv_bufs_force",
    "lvs_netlink_monitor_rcv_bufs",
    "lvs_netlink_monitor_rcv_bufs_force",
    "rs_init_notifies",
    "no_checker_emails",
    "random_seed",
    "data_use_instance",
    "tmp_config_directory",
    "config_save_dir",
];

/// The names of this block's keywords (see `keyword_catalog`).
pub(super) fn keyword_names() -> Vec<&'static str> {
    GLOBAL_DEFS.names().collect()
}
