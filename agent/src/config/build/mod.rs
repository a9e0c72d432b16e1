//! The keyword tree → the typed model, validated and defaulted as keepalived
//! does. Where keepalived reports a value and carries on with a default, the
//! report here is an error (the file does not run as written); where it only
//! warns, so does this.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
    time::Duration,
};

use super::{
    Unsupported, UnsupportedKind,
    diag::{Diags, Loc},
    host::{Host, ScriptStatus},
    lexer::Token,
    model::*,
    tree::Node,
};

/// keepalived's TIMER_MAX_SEC: the upper bound of preempt_delay.
const TIMER_MAX_SEC: u64 = 1000;

pub(crate) struct Builder<'a> {
    host: &'a dyn Host,
    d: &'a mut Diags,
    pub(crate) unsupported: Vec<Unsupported>,
    pub(crate) cfg: Config,
    globals_seen: bool,
    /// vrrp_garp_lower_prio_{delay,repeat} given: otherwise they follow the master values.
    lp_delay_set: bool,
    lp_repeat_set: bool,
    inst_meta: Vec<InstMeta>,
    group_meta: Vec<GroupMeta>,
    script_locs: HashMap<String, Loc>,
    /// Every script to check against the machine: (where, what, script, is a vrrp_script).
    scripts: Vec<(Loc, String, Script, bool)>,
}

/// What the cross-checks need about an instance beyond the model.
struct InstMeta {
    loc: Loc,
    explicit_accept: Option<bool>,
    track_script: Vec<PendingRef>,
    track_file: Vec<PendingRef>,
    track_process: Vec<PendingRef>,
    interface_loc: Option<Loc>,
    vrid_set: bool,
    /// A virtual_router_id line was there, valid or not (one error is enough).
    vrid_line: bool,
    strict_loc: Option<Loc>,
}

struct GroupMeta {
    loc: Loc,
    members: Vec<(String, Loc)>,
    track_script: Vec<PendingRef>,
    track_file: Vec<PendingRef>,
    track_process: Vec<PendingRef>,
    tracking_weight: bool,
}

/// A track_* line before its name is looked up.
struct PendingRef {
    name: String,
    loc: Loc,
    weight: Option<i32>,
    reverse: Option<bool>,
}

enum Kw {
    Block,
    Leaf,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(host: &'a dyn Host, d: &'a mut Diags) -> Self {
        Self {
            host,
            d,
            unsupported: Vec::new(),
            cfg: Config::default(),
            globals_seen: false,
            lp_delay_set: false,
            lp_repeat_set: false,
            inst_meta: Vec::new(),
            group_meta: Vec::new(),
            script_locs: HashMap::new(),
            scripts: Vec::new(),
        }
    }

    pub(crate) fn run(mut self, top: &[Node]) -> (Config, Vec<Unsupported>) {
        for n in top {
            self.top(n);
        }
        self.resolve();
        (self.cfg, self.unsupported)
    }

    // ---- small readers -------------------------------------------------

    fn shape(&mut self, n: &Node, kw: Kw) -> bool {
        match (kw, &n.block) {
            (Kw::Block, None) => {
                self.d
                    .error(&n.key.loc, format!("missing '{{' after '{}'", n.name()))
                    .hint("a block opens with '{' on the keyword's line or the next one");
                false
            }
            (Kw::Leaf, Some(b)) => {
                self.d
                    .error(&b.open, format!("'{}' does not take a block", n.name()))
                    .hint("remove the braces, or check for a misspelt keyword");
                false
            }
            _ => true,
        }
    }

    fn arg<'n>(&mut self, n: &'n Node, idx: usize, what: &str) -> Option<&'n Token> {
        let t = n.args.get(idx);
        if t.is_none() {
            self.d
                .error(&n.key.loc, format!("'{}' is missing its {what}", n.name()))
                .hint(format!("write it as: {} <{what}>", n.name()));
        }
        t
    }

    fn extra(&mut self, n: &Node, max: usize) {
        if let Some(t) = n.args.get(max) {
            let rest: Vec<&str> = n.args[max..].iter().map(|t| t.text.as_str()).collect();
            self.d
                .warn(
                    &t.loc,
                    format!(
                        "extra words after '{}' are ignored: {}",
                        n.name(),
                        rest.join(" ")
                    ),
                )
                .hint("keepalived reads one keyword per line; put each setting on its own line");
        }
    }

    fn uint(&mut self, n: &Node, min: u64, max: u64) -> Option<u64> {
        let t = self.arg(n, 0, "value")?.clone();
        self.extra(n, 1);
        match t.text.trim().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            Ok(v) => {
                self.d
                    .error(
                        &t.loc,
                        format!("{} {v} is out of range {min}..{max}", n.name()),
                    )
                    .hint(format!("use a whole number from {min} to {max}"));
                None
            }
            Err(_) => {
                self.d
                    .error(
                        &t.loc,
                        format!("{} '{}' is not a whole number", n.name(), t.text),
                    )
                    .hint(format!("use a whole number from {min} to {max}"));
                None
            }
        }
    }

    fn int_tok(&mut self, t: &Token, what: &str, min: i64, max: i64) -> Option<i32> {
        match t.text.trim().parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => i32::try_from(v).ok(),
            _ => {
                self.d
                    .error(
                        &t.loc,
                        format!("{what} '{}' must be in [{min}, {max}]", t.text),
                    )
                    .hint(format!("use a whole number from {min} to {max}"));
                None
            }
        }
    }

    /// A decimal number of seconds (keepalived's resolution: microseconds).
    fn secs(&mut self, n: &Node, min: f64, max: f64) -> Option<Duration> {
        let t = self.arg(n, 0, "value")?.clone();
        self.extra(n, 1);
        self.secs_tok(&t, n.name(), min, max)
    }

    fn secs_tok(&mut self, t: &Token, what: &str, min: f64, max: f64) -> Option<Duration> {
        let ok = t
            .text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= min && *v <= max && is_decimal(&t.text));
        match ok {
            Some(v) => Some(Duration::from_micros((v * 1e6).round() as u64)),
            None => {
                self.d
                    .error(
                        &t.loc,
                        format!(
                            "{what} '{}' is outside range [{min}, {max}] seconds",
                            t.text
                        ),
                    )
                    .hint("write a number of seconds, e.g. 1 or 0.5");
                None
            }
        }
    }

    /// `KEYWORD [<BOOL>]`: no value means true.
    fn flag(&mut self, n: &Node) -> Option<bool> {
        self.extra(n, 1);
        let Some(t) = n.args.first() else {
            return Some(true);
        };
        match t.text.as_str() {
            "true" | "on" | "yes" => Some(true),
            "false" | "off" | "no" => Some(false),
            _ => {
                self.d
                    .error(
                        &t.loc,
                        format!("{} '{}' is not a boolean", n.name(), t.text),
                    )
                    .hint("use on|off, true|false or yes|no, or nothing for on");
                None
            }
        }
    }

    fn no_args(&mut self, n: &Node) {
        self.extra(n, 0);
    }

    fn ip(&mut self, t: &Token, what: &str) -> Option<IpAddr> {
        match IpAddr::from_str(&t.text) {
            Ok(a) => Some(a),
            Err(_) => {
                self.d
                    .error(&t.loc, format!("{what} '{}' is not an IP address", t.text))
                    .hint("write an IPv4 (192.0.2.1) or IPv6 (2001:db8::1) address");
                None
            }
        }
    }

    fn unsupported(&mut self, n: &Node, kind: UnsupportedKind, reason: &str) {
        let msg = format!("'{}' {reason}", n.name());
        match kind {
            UnsupportedKind::Ignored => {
                self.d.note(&n.key.loc, msg);
            }
            UnsupportedKind::NotSupported => {
                self.d
                    .warn(&n.key.loc, msg)
                    .hint("xvrrpd runs the rest of the configuration without it");
            }
        }
        self.unsupported.push(Unsupported {
            keyword: n.name().to_string(),
            location: n.key.loc.clone(),
            kind,
            reason: reason.to_string(),
        });
    }

    fn unknown(&mut self, n: &Node, ctx: &str) {
        self.d
            .warn(
                &n.key.loc,
                format!("unknown keyword '{}' in {ctx}", n.name()),
            )
            .hint("check the spelling and the block it is in (keepalived reports it too)");
    }

    fn script(&mut self, n: &Node, owner: &str, is_vrrp_script: bool) -> Option<Script> {
        let t = self.arg(n, 0, "command")?.clone();
        let (command, argv, user, group) = if is_vrrp_script {
            // `script` takes the rest of the line as the command and its arguments.
            let words: Vec<&Token> = n.args.iter().collect();
            let command = words
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            let argv = if words.len() == 1 {
                split_command(&words[0].text)
            } else {
                words.iter().map(|w| w.text.clone()).collect()
            };
            (command, argv, None, None)
        } else {
            self.extra(n, 3);
            (
                t.text.clone(),
                split_command(&t.text),
                n.args.get(1).map(|u| u.text.clone()),
                n.args.get(2).map(|g| g.text.clone()),
            )
        };
        if argv.is_empty() {
            self.d
                .error(&t.loc, format!("{} has an empty command", n.name()))
                .hint("give the path of the program to run");
            return None;
        }
        if let Some(u) = &user
            && !self.host.user_exists(u)
        {
            self.d
                .error(
                    &n.args[1].loc,
                    format!("unknown user '{u}' for {}", n.name()),
                )
                .hint("create the user or name an existing one");
        }
        if let Some(g) = &group
            && !self.host.group_exists(g)
        {
            self.d
                .error(
                    &n.args[2].loc,
                    format!("unknown group '{g}' for {}", n.name()),
                )
                .hint("create the group or name an existing one");
        }
        let s = Script {
            command,
            argv,
            user,
            group,
        };
        self.scripts
            .push((t.loc.clone(), owner.to_string(), s.clone(), is_vrrp_script));
        Some(s)
    }

    fn fifo(&mut self, n: &Node) -> Option<Fifo> {
        let p = self.arg(n, 0, "FIFO path")?.text.clone();
        self.extra(n, 3);
        Some(Fifo {
            path: p,
            user: n.args.get(1).map(|t| t.text.clone()),
            group: n.args.get(2).map(|t| t.text.clone()),
        })
    }

    // ---- top level -----------------------------------------------------

    fn top(&mut self, n: &Node) {
        match n.name() {
            "global_defs" => {
                if self.shape(n, Kw::Block) {
                    self.globals_seen = true;
                    for c in n.children() {
                        self.global(c);
                    }
                    let g = &mut self.cfg.global_defs;
                    if !self.lp_delay_set {
                        g.vrrp_garp_lower_prio_delay = g.vrrp_garp_master_delay;
                    }
                    if !self.lp_repeat_set {
                        g.vrrp_garp_lower_prio_repeat = g.vrrp_garp_master_repeat;
                    }
                }
            }
            "vrrp_script" => self.vrrp_script(n),
            "vrrp_track_file" | "track_file" => self.track_file_def(n),
            "vrrp_track_process" => self.track_process_def(n),
            "vrrp_instance" => self.instance(n),
            "vrrp_sync_group" => self.sync_group(n),
            "virtual_server" | "virtual_server_group" | "real_server" | "SSL" => self.unsupported(
                n,
                UnsupportedKind::Ignored,
                "block not handled by xvrrpd (LVS/IPVS); the VRRP part still runs, as with keepalived --vrrp",
            ),
            "static_ipaddress" | "static_routes" | "static_rules" => self.unsupported(
                n,
                UnsupportedKind::NotSupported,
                "is not supported by xvrrpd yet: these addresses/routes are not configured",
            ),
            "garp_group" | "linkbeat_interfaces" | "interface_up_down_delays" | "bfd_instance"
            | "vrrp_track_bfd" => self.unsupported(
                n,
                UnsupportedKind::NotSupported,
                "is not supported by xvrrpd yet",
            ),
            _ => self.unknown(n, "the top level"),
        }
    }

    fn global(&mut self, n: &Node) {
        let g = &mut self.cfg.global_defs;
        let _ = g;
        match n.name() {
            "router_id" => {
                if let Some(t) = self.arg(n, 0, "name") {
                    let v = t.text.clone();
                    self.extra(n, 1);
                    self.cfg.global_defs.router_id = Some(v);
                }
            }
            "vrrp_version" => {
                if let Some(v) = self.uint(n, 2, 3) {
                    self.cfg.global_defs.vrrp_version = v as u8;
                }
            }
            "vrrp_mcast_group4" => {
                if let Some(t) = self.arg(n, 0, "address").cloned() {
                    self.extra(n, 1);
                    match Ipv4Addr::from_str(&t.text) {
                        Ok(a) if a.is_multicast() => self.cfg.global_defs.vrrp_mcast_group4 = a,
                        _ => {
                            self.d
                                .error(
                                    &t.loc,
                                    format!(
                                        "vrrp_mcast_group4 '{}' is not an IPv4 multicast address",
                                        t.text
                                    ),
                                )
                                .hint("the VRRP group is 224.0.0.18");
                        }
                    }
                }
            }
            "vrrp_mcast_group6" => {
                if let Some(t) = self.arg(n, 0, "address").cloned() {
                    self.extra(n, 1);
                    match Ipv6Addr::from_str(&t.text) {
                        Ok(a) if a.is_multicast() => self.cfg.global_defs.vrrp_mcast_group6 = a,
                        _ => {
                            self.d
                                .error(
                                    &t.loc,
                                    format!(
                                        "vrrp_mcast_group6 '{}' is not an IPv6 multicast address",
                                        t.text
                                    ),
                                )
                                .hint("the VRRP group is ff02::12");
                        }
                    }
                }
            }
            "vrrp_garp_master_delay" => {
                if let Some(v) = self.uint(n, 0, u64::from(u32::MAX) / 1_000_000) {
                    self.cfg.global_defs.vrrp_garp_master_delay = Duration::from_secs(v);
                }
            }
            "vrrp_garp_lower_prio_delay" => {
                if let Some(v) = self.uint(n, 0, u64::from(u32::MAX) / 1_000_000) {
                    self.lp_delay_set = true;
                    self.cfg.global_defs.vrrp_garp_lower_prio_delay = Duration::from_secs(v);
                }
            }
            "vrrp_garp_master_refresh" => {
                if let Some(v) = self.uint(n, 0, u64::from(u32::MAX) / 1_000_000) {
                    self.cfg.global_defs.vrrp_garp_master_refresh = Duration::from_secs(v);
                }
            }
            "vrrp_garp_master_repeat"
            | "vrrp_garp_lower_prio_repeat"
            | "vrrp_garp_master_refresh_repeat" => {
                if let Some(v) = self.repeat(n) {
                    let g = &mut self.cfg.global_defs;
                    match n.name() {
                        "vrrp_garp_master_repeat" => g.vrrp_garp_master_repeat = v,
                        "vrrp_garp_lower_prio_repeat" => {
                            g.vrrp_garp_lower_prio_repeat = v;
                            self.lp_repeat_set = true;
                        }
                        _ => g.vrrp_garp_master_refresh_repeat = v,
                    }
                }
            }
            "vrrp_garp_interval" => {
                if let Some(v) = self.secs(n, 0.0, 2147.0) {
                    self.cfg.global_defs.vrrp_garp_interval = v;
                }
            }
            "vrrp_gna_interval" => {
                if let Some(v) = self.secs(n, 0.0, 2147.0) {
                    self.cfg.global_defs.vrrp_gna_interval = v;
                }
            }
            "vrrp_min_garp" => {
                if let Some(v) = self.flag(n) {
                    let g = &mut self.cfg.global_defs;
                    g.vrrp_min_garp = v;
                    if v {
                        // One GARP/NA burst of one message, no second burst.
                        g.vrrp_garp_master_repeat = 1;
                        g.vrrp_garp_master_delay = Duration::ZERO;
                        g.vrrp_garp_lower_prio_repeat = 1;
                        g.vrrp_garp_lower_prio_delay = Duration::ZERO;
                        self.lp_delay_set = true;
                        self.lp_repeat_set = true;
                    }
                }
            }
            "vrrp_lower_prio_no_advert" => {
                if let Some(v) = self.flag(n) {
                    self.cfg.global_defs.vrrp_lower_prio_no_advert = v;
                }
            }
            "vrrp_higher_prio_send_advert" => {
                if let Some(v) = self.flag(n) {
                    self.cfg.global_defs.vrrp_higher_prio_send_advert = v;
                }
            }
            "vrrp_skip_check_adv_addr" => {
                if let Some(v) = self.flag(n) {
                    self.cfg.global_defs.vrrp_skip_check_adv_addr = v;
                }
            }
            "vrrp_strict" => {
                self.no_args(n);
                self.cfg.global_defs.vrrp_strict = true;
            }
            "vrrp_check_unicast_src" => {
                self.no_args(n);
                self.cfg.global_defs.vrrp_check_unicast_src = true;
            }
            "vrrp_startup_delay" => {
                if let Some(v) = self.secs(n, 0.0, TIMER_MAX_SEC as f64) {
                    self.cfg.global_defs.vrrp_startup_delay = v;
                }
            }
            "vrrp_down_timer_adverts" => {
                if let Some(v) = self.uint(n, 1, 100) {
                    self.cfg.global_defs.vrrp_down_timer_adverts = v as u32;
                }
            }
            "v3_checksum_as_v2" => {
                if let Some(v) = self.flag(n) {
                    self.cfg.global_defs.v3_checksum_as_v2 = v;
                    self.d
                        .note(&n.key.loc, "'v3_checksum_as_v2' is an xvrrpd extension")
                        .hint("keepalived reports it as an unknown keyword");
                }
            }
            "notify_fifo" => self.cfg.global_defs.notify_fifo = self.fifo(n),
            "vrrp_notify_fifo" => self.cfg.global_defs.vrrp_notify_fifo = self.fifo(n),
            "notify_fifo_script" => {
                self.cfg.global_defs.notify_fifo_script =
                    self.script(n, "notify_fifo_script", false)
            }
            "vrrp_notify_fifo_script" => {
                self.cfg.global_defs.vrrp_notify_fifo_script =
                    self.script(n, "vrrp_notify_fifo_script", false)
            }
            "script_user" => {
                if let Some(u) = self.arg(n, 0, "user name").cloned() {
                    self.extra(n, 2);
                    if !self.host.user_exists(&u.text) {
                        self.d
                            .error(&u.loc, format!("script_user '{}' does not exist", u.text))
                            .hint("create the user or name an existing one (often root)");
                    }
                    let group = n.args.get(1).cloned();
                    if let Some(g) = &group
                        && !self.host.group_exists(&g.text)
                    {
                        self.d
                            .error(
                                &g.loc,
                                format!("script_user group '{}' does not exist", g.text),
                            )
                            .hint(
                                "name an existing group, or leave it out to use the user's group",
                            );
                    }
                    self.cfg.global_defs.script_user = Some(ScriptUser {
                        user: u.text,
                        group: group.map(|g| g.text),
                    });
                }
            }
            "enable_script_security" => {
                self.no_args(n);
                self.cfg.global_defs.enable_script_security = true;
            }
            "notification_email"
            | "notification_email_from"
            | "smtp_server"
            | "smtp_helo"
            | "smtp_connect_timeout"
            | "smtp_alert"
            | "smtp_alert_vrrp"
            | "smtp_alert_checker"
            | "email_from"
            | "no_email_faults" => self.unsupported(
                n,
                UnsupportedKind::Ignored,
                "is ignored: xvrrpd sends no mail (use notify scripts or the notify FIFO)",
            ),
            k if IGNORED_GLOBALS.contains(&k) => self.unsupported(
                n,
                UnsupportedKind::Ignored,
                "is accepted and ignored: it has no effect on xvrrpd",
            ),
            _ => self.unknown(n, "global_defs"),
        }
    }

    fn repeat(&mut self, n: &Node) -> Option<u32> {
        let v = self.uint(n, 0, i32::MAX as u64)?;
        if v == 0 {
            self.d
                .warn(
                    &n.key.loc,
                    format!("{} must be greater than 0, setting to 1", n.name()),
                )
                .hint("use at least 1");
            return Some(1);
        }
        Some(v as u32)
    }

    // ---- vrrp_script, track files and processes ------------------------

    fn block_name(&mut self, n: &Node) -> Option<String> {
        if !self.shape(n, Kw::Block) {
            return None;
        }
        let name = self.arg(n, 0, "name")?.text.clone();
        self.extra(n, 1);
        Some(name)
    }

    fn vrrp_script(&mut self, n: &Node) {
        let Some(name) = self.block_name(n) else {
            return;
        };
        if self.cfg.script(&name).is_some() {
            self.d
                .error(
                    &n.args[0].loc,
                    format!("vrrp_script '{name}' is defined twice"),
                )
                .hint("give each vrrp_script its own name");
            return;
        }
        let mut s = VrrpScript {
            name: name.clone(),
            script: Script {
                command: String::new(),
                argv: Vec::new(),
                user: None,
                group: None,
            },
            interval: Duration::from_secs(1),
            timeout: None,
            weight: 0,
            weight_reverse: false,
            rise: 1,
            fall: 1,
            init_fail: false,
        };
        let mut have_script = false;
        let mut user: Option<(String, Option<String>)> = None;
        for c in n.children() {
            if !self.shape(c, Kw::Leaf) {
                continue;
            }
            match c.name() {
                "script" => {
                    if let Some(sc) = self.script(c, &format!("vrrp_script {name}"), true) {
                        s.script = sc;
                        have_script = true;
                    }
                }
                "interval" => {
                    if let Some(v) = self.uint(c, 0, u64::from(u32::MAX) / 1_000_000) {
                        if v == 0 {
                            self.d.warn(&c.key.loc, format!("({name}): vrrp script interval must be greater than 0, setting to 1"));
                        }
                        s.interval = Duration::from_secs(v.max(1));
                    }
                }
                "timeout" => {
                    if let Some(v) = self.uint(c, 0, u64::from(u32::MAX) / 1_000_000) {
                        if v == 0 {
                            self.d.warn(&c.key.loc, format!("({name}): vrrp script timeout must be greater than 0, setting to 1"));
                        }
                        s.timeout = Some(Duration::from_secs(v.max(1)));
                    }
                }
                "weight" => {
                    if let Some(t) = self.arg(c, 0, "weight").cloned()
                        && let Some(w) =
                            self.int_tok(&t, &format!("vrrp_script {name} weight"), -253, 253)
                    {
                        s.weight = w;
                    }
                    if let Some(o) = c.args.get(1) {
                        if o.text == "reverse" {
                            s.weight_reverse = true;
                        } else {
                            self.d
                                .error(
                                    &o.loc,
                                    format!("vrrp_script {name} unknown weight option {}", o.text),
                                )
                                .hint("the only option is 'reverse'");
                        }
                    }
                    self.extra(c, 2);
                }
                "rise" | "fall" => {
                    if let Some(v) = self.uint(c, 1, i32::MAX as u64) {
                        if c.name() == "rise" {
                            s.rise = v as u32;
                        } else {
                            s.fall = v as u32;
                        }
                    }
                }
                "user" => {
                    if let Some(u) = self.arg(c, 0, "user name").cloned() {
                        self.extra(c, 2);
                        if !self.host.user_exists(&u.text) {
                            self.d
                                .error(
                                    &u.loc,
                                    format!("unknown user '{}' for vrrp_script {name}", u.text),
                                )
                                .hint("create the user or name an existing one");
                        }
                        user = Some((u.text, c.args.get(1).map(|g| g.text.clone())));
                    }
                }
                "init_fail" => {
                    self.no_args(c);
                    s.init_fail = true;
                }
                _ => self.unknown(c, "vrrp_script"),
            }
        }
        if let Some((u, g)) = user {
            s.script.user = Some(u.clone());
            s.script.group = g.clone();
            if let Some(last) = self
                .scripts
                .iter_mut()
                .rev()
                .find(|x| x.1 == format!("vrrp_script {name}"))
            {
                last.2.user = Some(u);
                last.2.group = g;
            }
        }
        if !have_script {
            self.d
                .error(&n.key.loc, format!("no script set for vrrp_script {name}"))
                .hint("add: script \"/path/to/check args\"");
            return;
        }
        self.script_locs.insert(name, n.args[0].loc.clone());
        self.cfg.vrrp_script.push(s);
    }

    fn track_file_def(&mut self, n: &Node) {
        let Some(name) = self.block_name(n) else {
            return;
        };
        let mut f = TrackFile {
            name: name.clone(),
            file: String::new(),
            weight: 1,
            weight_reverse: false,
            init_file: None,
        };
        for c in n.children() {
            if !self.shape(c, Kw::Leaf) {
                continue;
            }
            match c.name() {
                "file" => {
                    if let Some(t) = self.arg(c, 0, "path") {
                        f.file = t.text.clone();
                        self.extra(c, 1);
                    }
                }
                "weight" => {
                    if let Some(t) = self.arg(c, 0, "weight").cloned()
                        && let Some(w) =
                            self.int_tok(&t, "track_file weight", -2147483647, 2147483647)
                    {
                        f.weight = w;
                    }
                    f.weight_reverse = c.args.get(1).is_some_and(|t| t.text == "reverse");
                    self.extra(c, 2);
                }
                "init_file" => {
                    let mut value = 0;
                    let mut overwrite = false;
                    for a in &c.args {
                        if a.text == "overwrite" {
                            overwrite = true;
                        } else if let Ok(v) = a.text.parse::<i64>() {
                            value = v;
                        } else {
                            self.d
                                .error(&a.loc, format!("init_file: unknown option '{}'", a.text))
                                .hint("write: init_file [VALUE] [overwrite]");
                        }
                    }
                    f.init_file = Some((value, overwrite));
                }
                _ => self.unknown(c, "vrrp_track_file"),
            }
        }
        if f.file.is_empty() {
            self.d
                .error(&n.key.loc, format!("no file set for track file {name}"))
                .hint("add: file \"/path/to/file\"");
            return;
        }
        self.cfg.vrrp_track_file.push(f);
    }

    fn track_process_def(&mut self, n: &Node) {
        let Some(name) = self.block_name(n) else {
            return;
        };
        let mut p = TrackProcess {
            name: name.clone(),
            process: String::new(),
            params: Vec::new(),
            param_match: None,
            weight: 1,
            weight_reverse: false,
            quorum: 1,
            quorum_max: u32::from(u16::MAX),
            fork_delay: None,
            terminate_delay: None,
            full_command: false,
        };
        for c in n.children() {
            if !self.shape(c, Kw::Leaf) {
                continue;
            }
            match c.name() {
                "process" => {
                    if let Some(t) = self.arg(c, 0, "process name") {
                        p.process = t.text.clone();
                        p.params = c.args[1..].iter().map(|t| t.text.clone()).collect();
                        if !p.params.is_empty() {
                            p.full_command = true;
                            p.param_match.get_or_insert_with(|| "exact".to_string());
                        }
                    }
                }
                "param_match" => {
                    self.extra(c, 1);
                    match c.args.first().map(|t| t.text.as_str()) {
                        None => p.param_match = Some("exact".into()),
                        Some(m @ ("initial" | "partial")) => p.param_match = Some(m.into()),
                        Some(other) => {
                            self.d
                                .error(&c.args[0].loc, format!("invalid param_match type {other}"))
                                .hint("use initial or partial");
                        }
                    }
                    p.full_command = true;
                }
                "weight" => {
                    if let Some(t) = self.arg(c, 0, "weight").cloned()
                        && let Some(w) = self.int_tok(&t, "vrrp_track_process weight", -254, 254)
                    {
                        p.weight = w;
                    }
                    p.weight_reverse = c.args.get(1).is_some_and(|t| t.text == "reverse");
                    self.extra(c, 2);
                }
                "quorum" => {
                    if let Some(v) = self.uint(c, 1, 65535) {
                        p.quorum = v as u32;
                    }
                }
                "quorum_max" => {
                    if let Some(v) = self.uint(c, 0, 65535) {
                        p.quorum_max = v as u32;
                        if v == 0 {
                            p.quorum = 0;
                        }
                    }
                }
                "fork_delay" | "terminate_delay" | "delay" => {
                    if let Some(v) = self.secs(c, 0.000001, 3600.0) {
                        if c.name() != "terminate_delay" {
                            p.fork_delay = Some(v);
                        }
                        if c.name() != "fork_delay" {
                            p.terminate_delay = Some(v);
                        }
                    }
                }
                "full_command" => {
                    self.no_args(c);
                    p.full_command = true;
                }
                _ => self.unknown(c, "vrrp_track_process"),
            }
        }
        if p.process.is_empty() {
            self.d
                .error(
                    &n.key.loc,
                    format!("track process '{name}' process name not specified"),
                )
                .hint("add: process NAME");
            return;
        }
        self.cfg.vrrp_track_process.push(p);
    }

    // ---- vrrp_instance -------------------------------------------------

    /// A `track_interface` block (instance or sync group); names that do not
    /// exist on this host are warned about, as keepalived does.
    fn track_interfaces(&mut self, n: &Node) -> Vec<TrackInterface> {
        let mut out = Vec::new();
        for r in self.track_lines(n, "track_interface", 253) {
            if self.host.interface_exists(&r.name) == Some(false) {
                self.d
                    .warn(
                        &r.loc,
                        format!("interface {} for track_interface doesn't exist", r.name),
                    )
                    .hint("check the name with `ip link`");
            }
            out.push(TrackInterface {
                name: r.name,
                weight: r.weight.unwrap_or(0),
                weight_reverse: r.reverse.unwrap_or(false),
            });
        }
        out
    }

    fn track_lines(&mut self, n: &Node, kind: &str, weight_range: i64) -> Vec<PendingRef> {
        let mut out = Vec::new();
        if !self.shape(n, Kw::Block) {
            return out;
        }
        self.extra(n, 0);
        for c in n.children() {
            let mut r = PendingRef {
                name: c.key.text.clone(),
                loc: c.key.loc.clone(),
                weight: None,
                reverse: None,
            };
            let mut i = 0;
            while i < c.args.len() {
                let a = &c.args[i];
                match a.text.as_str() {
                    "weight" => {
                        match c.args.get(i + 1) {
                            Some(w) => {
                                let w = w.clone();
                                r.weight = self.int_tok(
                                    &w,
                                    &format!("{kind} {} weight", r.name),
                                    -weight_range,
                                    weight_range,
                                );
                            }
                            None => {
                                self.d
                                    .error(
                                        &a.loc,
                                        format!("{kind} {}: weight without a value", r.name),
                                    )
                                    .hint("write: NAME weight <number>");
                            }
                        }
                        i += 2;
                    }
                    "reverse" => {
                        r.reverse = Some(true);
                        i += 1;
                    }
                    "noreverse" | "no_reverse" => {
                        r.reverse = Some(false);
                        i += 1;
                    }
                    _ => {
                        self.d
                            .error(
                                &a.loc,
                                format!("{kind} {}: unknown option '{}'", r.name, a.text),
                            )
                            .hint("options are: weight <n>, reverse, noreverse");
                        i += 1;
                    }
                }
            }
            out.push(r);
        }
        out
    }

    fn addresses(&mut self, n: &Node) -> Vec<VirtualAddress> {
        let mut out = Vec::new();
        if !self.shape(n, Kw::Block) {
            return out;
        }
        self.extra(n, 0);
        for c in n.children() {
            if let Some(a) = self.address(c) {
                out.push(a);
            }
        }
        out
    }

    fn address(&mut self, c: &Node) -> Option<VirtualAddress> {
        let t = &c.key;
        let (addr_s, mask_s) = match t.text.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (t.text.as_str(), None),
        };
        let Ok(address) = IpAddr::from_str(addr_s) else {
            self.d
                .error(&t.loc, format!("'{}' is not an IP address", t.text))
                .hint("write ADDRESS[/PREFIX] [dev IF] [label LABEL] ..., one address per line");
            return None;
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match mask_s {
            None => max,
            Some(m) => match m.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => {
                    self.d
                        .error(
                            &t.loc,
                            format!("invalid prefix length '/{m}' in '{}'", t.text),
                        )
                        .hint(format!("the prefix length is 0..{max}"));
                    return None;
                }
            },
        };
        let mut va = VirtualAddress {
            address,
            prefix_len,
            brd: None,
            dev: None,
            scope: None,
            label: None,
            peer: None,
            no_track: false,
            preferred_lft: None,
            flags: Vec::new(),
        };
        let mut i = 0;
        let args = &c.args;
        while i < args.len() {
            let a = &args[i];
            let val = args.get(i + 1).cloned();
            let need = |s: &mut Self, v: &Option<Token>| -> Option<Token> {
                if v.is_none() {
                    s.d.error(&a.loc, format!("'{}' needs a value", a.text))
                        .hint(format!("write: {} <value>", a.text));
                }
                v.clone()
            };
            match a.text.as_str() {
                "brd" | "broadcast" => {
                    if let Some(v) = need(self, &val) {
                        match Ipv4Addr::from_str(&v.text) {
                            Ok(b) if address.is_ipv4() => va.brd = Some(b),
                            _ => {
                                self.d
                                    .error(
                                        &v.loc,
                                        format!("invalid broadcast address '{}'", v.text),
                                    )
                                    .hint("brd takes an IPv4 address, for IPv4 addresses only");
                            }
                        }
                    }
                    i += 2;
                }
                "dev" => {
                    if let Some(v) = need(self, &val) {
                        va.dev = Some(v.text.clone());
                        self.check_interface(&v, "virtual address");
                    }
                    i += 2;
                }
                "scope" => {
                    if let Some(v) = need(self, &val) {
                        if matches!(
                            v.text.as_str(),
                            "site" | "link" | "host" | "nowhere" | "global"
                        ) || v.text.parse::<u8>().is_ok()
                        {
                            va.scope = Some(v.text.clone());
                        } else {
                            self.d
                                .error(&v.loc, format!("invalid scope '{}'", v.text))
                                .hint("scope is site, link, host, nowhere or global");
                        }
                    }
                    i += 2;
                }
                "label" => {
                    if let Some(v) = need(self, &val) {
                        if v.text.len() > 15 {
                            self.d
                                .error(
                                    &v.loc,
                                    format!("label '{}' is longer than 15 characters", v.text),
                                )
                                .hint("Linux limits labels to IFNAMSIZ-1 characters");
                        }
                        va.label = Some(v.text.clone());
                    }
                    i += 2;
                }
                "peer" => {
                    if let Some(v) = need(self, &val) {
                        if mask_s.is_some() {
                            self.d
                                .error(
                                    &v.loc,
                                    "cannot specify an address prefix together with a peer address",
                                )
                                .hint("keepalived takes ADDR peer PEER, both without a prefix");
                        }
                        match IpAddr::from_str(&v.text) {
                            Ok(pa) if pa.is_ipv4() == address.is_ipv4() => va.peer = Some(pa),
                            _ => {
                                self.d
                                    .error(&v.loc, format!("invalid peer address '{}'", v.text))
                                    .hint("peer takes an address of the same family");
                            }
                        }
                    }
                    i += 2;
                }
                "preferred_lft" => {
                    if let Some(v) = need(self, &val) {
                        if v.text == "forever" {
                            va.preferred_lft = Some(PreferredLft::Forever(Forever::Forever));
                        } else if let Ok(s) = v.text.parse::<u32>() {
                            va.preferred_lft = Some(PreferredLft::Seconds(s));
                        } else {
                            self.d
                                .error(&v.loc, format!("invalid preferred_lft '{}'", v.text))
                                .hint("use a number of seconds or 'forever'");
                        }
                    }
                    i += 2;
                }
                "no_track" => {
                    va.no_track = true;
                    i += 1;
                }
                "home" | "-nodad" | "nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin"
                | "use_vmac" => {
                    va.flags.push(a.text.clone());
                    i += 1;
                }
                "track_group" => {
                    self.d.warn(
                        &a.loc,
                        "'track_group' applies only to static addresses; ignored here",
                    );
                    i += 2;
                }
                _ => {
                    self.d
                        .error(&a.loc, format!("unknown configuration entry '{}' for ip address", a.text))
                        .hint("one address per line; options are brd, dev, scope, label, peer, no_track, preferred_lft");
                    i += 1;
                }
            }
        }
        // keepalived deprecates a /128 IPv6 VIP (preferred_lft 0) unless told otherwise.
        if address.is_ipv6() && prefix_len == 128 && va.preferred_lft.is_none() {
            va.preferred_lft = Some(PreferredLft::Seconds(0));
        }
        Some(va)
    }

    fn check_interface(&mut self, t: &Token, what: &str) {
        if self.host.interface_exists(&t.text) == Some(false) {
            self.d
                .warn(
                    &t.loc,
                    format!("interface {} for {what} doesn't exist", t.text),
                )
                .hint("check the name with `ip link`; keepalived warns the same way");
        }
    }

    fn instance(&mut self, n: &Node) {
        let Some(name) = self.block_name(n) else {
            return;
        };
        if self.cfg.instance(&name).is_some() {
            self.d
                .error(
                    &n.args[0].loc,
                    format!("vrrp_instance '{name}' is defined twice"),
                )
                .hint("give each vrrp_instance its own name");
            return;
        }
        let g = self.cfg.global_defs.clone();
        let mut v = VrrpInstance {
            name: name.clone(),
            state: State::Backup,
            interface: None,
            virtual_router_id: 0,
            priority: 100,
            advert_int: Duration::from_secs(1),
            advert_int_centis: 100,
            version: g.vrrp_version,
            family: Family::Inet,
            nopreempt: false,
            preempt_delay: Duration::ZERO,
            virtual_ipaddress: Vec::new(),
            virtual_ipaddress_excluded: Vec::new(),
            unicast_src_ip: None,
            mcast_src_ip: None,
            unicast_peer: Vec::new(),
            authentication: None,
            track_interface: Vec::new(),
            track_script: Vec::new(),
            track_file: Vec::new(),
            track_process: Vec::new(),
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify: None,
            accept: true,
            dont_track_primary: false,
            garp_master_delay: g.vrrp_garp_master_delay,
            garp_master_repeat: g.vrrp_garp_master_repeat,
            garp_lower_prio_delay: g.vrrp_garp_lower_prio_delay,
            garp_lower_prio_repeat: g.vrrp_garp_lower_prio_repeat,
            garp_master_refresh: g.vrrp_garp_master_refresh,
            garp_master_refresh_repeat: g.vrrp_garp_master_refresh_repeat,
            lower_prio_no_advert: g.vrrp_lower_prio_no_advert,
            higher_prio_send_advert: g.vrrp_higher_prio_send_advert,
            skip_check_adv_addr: g.vrrp_skip_check_adv_addr,
            strict_mode: g.vrrp_strict,
            check_unicast_src: g.vrrp_check_unicast_src,
            down_timer_adverts: g.vrrp_down_timer_adverts,
            use_vmac: None,
            virtual_routes: Vec::new(),
            virtual_rules: Vec::new(),
            smtp_alert: false,
            sync_group: None,
        };
        let mut m = InstMeta {
            loc: n.args[0].loc.clone(),
            explicit_accept: None,
            track_script: Vec::new(),
            track_file: Vec::new(),
            track_process: Vec::new(),
            interface_loc: None,
            vrid_set: false,
            vrid_line: false,
            strict_loc: None,
        };
        let mut explicit_version: Option<(u8, Loc)> = None;
        let mut advert: Option<(Duration, Loc)> = None;
        let mut nopreempt_loc = None;
        let mut preempt_delay_loc = None;
        let mut auth_loc = None;
        let (mut lp_delay, mut lp_repeat) = (false, false);
        let owner = format!("vrrp_instance {name}");
        let inst_ctx = "vrrp_instance";
        for c in n.children() {
            let block_kw = matches!(
                c.name(),
                "virtual_ipaddress"
                    | "virtual_ipaddress_excluded"
                    | "unicast_peer"
                    | "authentication"
                    | "track_interface"
                    | "track_script"
                    | "track_file"
                    | "track_process"
                    | "virtual_routes"
                    | "virtual_rules"
                    | "track_bfd"
            );
            if !block_kw && !self.shape(c, Kw::Leaf) {
                continue;
            }
            match c.name() {
                "state" => {
                    if let Some(t) = self.arg(c, 0, "state").cloned() {
                        self.extra(c, 1);
                        match t.text.as_str() {
                            "MASTER" => v.state = State::Master,
                            "BACKUP" => v.state = State::Backup,
                            other => {
                                self.d
                                    .error(&t.loc, format!("({name}) unknown state '{other}'"))
                                    .hint("state is MASTER or BACKUP (upper case)");
                            }
                        }
                    }
                }
                "interface" => {
                    if let Some(t) = self.arg(c, 0, "interface name").cloned() {
                        self.extra(c, 1);
                        v.interface = Some(t.text.clone());
                        m.interface_loc = Some(t.loc.clone());
                        if self.host.interface_exists(&t.text) == Some(false) {
                            self.d
                                .warn(
                                    &t.loc,
                                    format!(
                                        "interface {} for vrrp_instance {name} doesn't exist",
                                        t.text
                                    ),
                                )
                                .hint(
                                    "check the name with `ip link`; keepalived warns the same way",
                                );
                        }
                    }
                }
                "virtual_router_id" => {
                    m.vrid_line = true;
                    if let Some(t) = self.arg(c, 0, "VRID").cloned() {
                        self.extra(c, 1);
                        match t.text.parse::<i64>() {
                            Ok(id) if (1..=255).contains(&id) => {
                                v.virtual_router_id = id as u8;
                                m.vrid_set = true;
                            }
                            Ok(id) => {
                                self.d.error(&t.loc, format!("virtual_router_id {id} is out of range 1..255")).hint("a VRID is 1..255 and must match on every router of the group");
                            }
                            Err(_) => {
                                self.d
                                    .error(
                                        &t.loc,
                                        format!("virtual_router_id '{}' is not a number", t.text),
                                    )
                                    .hint("a VRID is 1..255");
                            }
                        }
                    }
                }
                "priority" => {
                    if let Some(t) = self.arg(c, 0, "priority").cloned() {
                        self.extra(c, 1);
                        match t.text.parse::<i64>() {
                            Ok(p) if (1..=255).contains(&p) => v.priority = p as u8,
                            _ => {
                                self.d.error(&t.loc, format!("({name}) priority '{}' is out of range 1..255", t.text)).hint("use 1..254 (255 only on the router that owns the addresses); keepalived falls back to 100");
                            }
                        }
                    }
                }
                "advert_int" => {
                    if let Some(t) = self.arg(c, 0, "interval").cloned() {
                        self.extra(c, 1);
                        if let Some(d) = self.secs_tok(&t, "advert_int", 0.01, 255.0) {
                            advert = Some((d, t.loc.clone()));
                        }
                    }
                }
                "version" => {
                    if let Some(ver) = self.uint(c, 2, 3) {
                        explicit_version = Some((ver as u8, c.key.loc.clone()));
                    }
                }
                "nopreempt" | "no_preempt" => {
                    self.no_args(c);
                    v.nopreempt = true;
                    nopreempt_loc = Some(c.key.loc.clone());
                }
                "preempt" => {
                    self.no_args(c);
                    v.nopreempt = false;
                    nopreempt_loc = None;
                }
                "preempt_delay" => {
                    if let Some(d) = self.secs(c, 0.0, TIMER_MAX_SEC as f64) {
                        v.preempt_delay = d;
                        preempt_delay_loc = Some(c.key.loc.clone());
                    }
                }
                "virtual_ipaddress" => {
                    let a = self.addresses(c);
                    v.virtual_ipaddress.extend(a);
                }
                "virtual_ipaddress_excluded" => {
                    let a = self.addresses(c);
                    v.virtual_ipaddress_excluded.extend(a);
                }
                "unicast_src_ip" | "mcast_src_ip" => {
                    if let Some(t) = self.arg(c, 0, "address").cloned() {
                        self.extra(c, 1);
                        if let Some(a) = self.ip(&t, c.name()) {
                            if c.name() == "unicast_src_ip" {
                                v.unicast_src_ip = Some(a);
                            } else {
                                v.mcast_src_ip = Some(a);
                            }
                        }
                    }
                }
                "unicast_peer" => {
                    if self.shape(c, Kw::Block) {
                        for p in c.children() {
                            if let Some(peer) = self.peer(p, &mut v) {
                                v.unicast_peer.push(peer);
                            }
                        }
                    }
                }
                "authentication" => {
                    if self.shape(c, Kw::Block) {
                        auth_loc = Some(c.key.loc.clone());
                        v.authentication = self.auth(c, &name);
                    }
                }
                "track_interface" => {
                    let tracked = self.track_interfaces(c);
                    v.track_interface.extend(tracked);
                }
                "track_script" => m
                    .track_script
                    .extend(self.track_lines(c, "track_script", 253)),
                "track_file" => m.track_file.extend(self.track_lines(c, "track_file", 254)),
                "track_process" => {
                    m.track_process
                        .extend(self.track_lines(c, "track_process", 254))
                }
                "notify_master" => {
                    v.notify_master = self.notify(c, &owner, v.notify_master.is_some())
                }
                "notify_backup" => {
                    v.notify_backup = self.notify(c, &owner, v.notify_backup.is_some())
                }
                "notify_fault" => v.notify_fault = self.notify(c, &owner, v.notify_fault.is_some()),
                "notify_stop" => v.notify_stop = self.notify(c, &owner, v.notify_stop.is_some()),
                "notify" => v.notify = self.notify(c, &owner, v.notify.is_some()),
                "accept" => {
                    self.no_args(c);
                    m.explicit_accept = Some(true);
                }
                "no_accept" => {
                    self.no_args(c);
                    m.explicit_accept = Some(false);
                }
                "dont_track_primary" => {
                    self.no_args(c);
                    v.dont_track_primary = true;
                }
                "garp_master_delay" | "garp_lower_prio_delay" | "garp_master_refresh" => {
                    if let Some(s) = self.uint(c, 0, u64::from(u32::MAX) / 1_000_000) {
                        let d = Duration::from_secs(s);
                        match c.name() {
                            "garp_master_delay" => v.garp_master_delay = d,
                            "garp_lower_prio_delay" => {
                                v.garp_lower_prio_delay = d;
                                lp_delay = true;
                            }
                            _ => v.garp_master_refresh = d,
                        }
                    }
                }
                "garp_master_repeat" | "garp_lower_prio_repeat" | "garp_master_refresh_repeat" => {
                    if let Some(r) = self.repeat(c) {
                        match c.name() {
                            "garp_master_repeat" => v.garp_master_repeat = r,
                            "garp_lower_prio_repeat" => {
                                v.garp_lower_prio_repeat = r;
                                lp_repeat = true;
                            }
                            _ => v.garp_master_refresh_repeat = r,
                        }
                    }
                }
                "lower_prio_no_advert" => {
                    if let Some(b) = self.flag(c) {
                        v.lower_prio_no_advert = b;
                    }
                }
                "higher_prio_send_advert" => {
                    if let Some(b) = self.flag(c) {
                        v.higher_prio_send_advert = b;
                    }
                }
                "skip_check_adv_addr" => {
                    if let Some(b) = self.flag(c) {
                        v.skip_check_adv_addr = b;
                    }
                }
                "strict_mode" => {
                    if let Some(b) = self.flag(c) {
                        v.strict_mode = b;
                        m.strict_loc = Some(c.key.loc.clone());
                    }
                }
                "check_unicast_src" => {
                    self.no_args(c);
                    v.check_unicast_src = true;
                }
                "down_timer_adverts" => {
                    if let Some(x) = self.uint(c, 1, 100) {
                        v.down_timer_adverts = x as u32;
                    }
                }
                "use_vmac" => {
                    self.extra(c, 2);
                    let mut u = UseVmac {
                        interface: None,
                        mac: None,
                    };
                    for a in &c.args {
                        if a.text.contains(':') && a.text.len() >= 14 {
                            u.mac = Some(a.text.clone());
                        } else {
                            u.interface = Some(a.text.clone());
                        }
                    }
                    v.use_vmac = Some(u);
                    self.unsupported(c, UnsupportedKind::NotSupported, "is parsed but not supported by xvrrpd yet: addresses go on the physical interface");
                }
                "virtual_routes" | "virtual_rules" => {
                    if self.shape(c, Kw::Block) {
                        let lines: Vec<String> = c
                            .children()
                            .iter()
                            .map(|l| {
                                std::iter::once(l.key.text.as_str())
                                    .chain(l.args.iter().map(|a| a.text.as_str()))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .collect();
                        if c.name() == "virtual_routes" {
                            v.virtual_routes = lines;
                        } else {
                            v.virtual_rules = lines;
                        }
                        self.unsupported(c, UnsupportedKind::NotSupported, "is parsed but not supported by xvrrpd yet: these routes/rules are not installed");
                    }
                }
                "smtp_alert" => {
                    if let Some(b) = self.flag(c) {
                        v.smtp_alert = b;
                    }
                    self.unsupported(
                        c,
                        UnsupportedKind::Ignored,
                        "is ignored: xvrrpd sends no mail",
                    );
                }
                "native_ipv6" => {
                    self.no_args(c);
                    v.family = Family::Inet6;
                    self.d
                        .note(
                            &c.key.loc,
                            "'native_ipv6' is deprecated; the addresses set the family",
                        )
                        .hint("remove it");
                }
                "debug"
                | "notify_priority_changes"
                | "kernel_rx_buf_size"
                | "linkbeat_use_polling" => {
                    self.unsupported(
                        c,
                        UnsupportedKind::Ignored,
                        "is accepted and ignored: it has no effect on xvrrpd",
                    );
                }
                k if UNSUPPORTED_INSTANCE.contains(&k) => {
                    self.unsupported(
                        c,
                        UnsupportedKind::NotSupported,
                        "is not supported by xvrrpd yet",
                    );
                }
                _ => self.unknown(c, inst_ctx),
            }
        }

        // Lower-priority GARP settings follow the master ones unless given.
        if !lp_delay && !self.lp_delay_set {
            v.garp_lower_prio_delay = v.garp_master_delay;
        }
        if !lp_repeat && !self.lp_repeat_set {
            v.garp_lower_prio_repeat = v.garp_master_repeat;
        }

        // Family: the first VIP decides; IPv6 means VRRPv3.
        if let Some(first) = v.virtual_ipaddress.first() {
            v.family = if first.address.is_ipv6() {
                Family::Inet6
            } else {
                Family::Inet
            };
        } else if let Some(a) = v
            .unicast_src_ip
            .or(v.mcast_src_ip)
            .or(v.unicast_peer.first().map(|p| p.address))
        {
            v.family = if a.is_ipv6() {
                Family::Inet6
            } else {
                Family::Inet
            };
        }
        let v6 = v.family == Family::Inet6;
        let vip_locs: Vec<Loc> = n
            .children()
            .iter()
            .filter(|c| c.name() == "virtual_ipaddress")
            .flat_map(|c| c.children().iter().map(|l| l.key.loc.clone()))
            .collect();
        let mut mismatched = Vec::new();
        for (i, a) in v.virtual_ipaddress.iter().enumerate() {
            if a.address.is_ipv6() != v6 {
                mismatched.push((i, a.address));
            }
        }
        for (i, addr) in &mismatched {
            let loc = vip_locs.get(*i).cloned().unwrap_or_else(|| m.loc.clone());
            self.d
                .error(&loc, format!("({name}) address family must match VRRP instance [{addr}]"))
                .hint("one address family per instance: put the other family in its own vrrp_instance or in virtual_ipaddress_excluded");
        }
        if v6
            && v.virtual_ipaddress
                .first()
                .is_some_and(|a| match a.address {
                    IpAddr::V6(x) => (x.segments()[0] & 0xffc0) != 0xfe80,
                    IpAddr::V4(_) => false,
                })
        {
            self.d
                .note(
                    &vip_locs[0],
                    format!("({name}) the first IPv6 address is not link-local"),
                )
                .hint("RFC 5798 wants a link-local address first; keepalived sends it as given");
        }
        for (what, a) in [
            ("unicast_src_ip", v.unicast_src_ip),
            ("mcast_src_ip", v.mcast_src_ip),
        ] {
            if let Some(a) = a
                && a.is_ipv6() != v6
            {
                self.d
                    .error(
                        &m.loc,
                        format!("({name}) {what} {a} is not of the instance's address family"),
                    )
                    .hint("use a source address of the same family as the virtual addresses");
            }
        }
        if v.unicast_peer.iter().any(|p| p.address.is_ipv6() != v6) {
            self.d
                .error(
                    &m.loc,
                    format!("({name}) unicast peers must be of the instance's address family"),
                )
                .hint("split IPv4 and IPv6 into separate instances");
        }

        // Version.
        v.version = match (explicit_version, v6) {
            (Some((2, loc)), true) => {
                self.d
                    .error(
                        &loc,
                        format!("({name}) vrrp_version 2 conflicts with IPv6 addresses"),
                    )
                    .hint("IPv6 needs VRRPv3: use version 3 or drop the line");
                3
            }
            (Some((ver, _)), _) => ver,
            (None, true) => 3,
            (None, false) => g.vrrp_version,
        };

        // Advert interval: whole seconds on v2, centiseconds (max 40.95 s) on v3.
        if let Some((d, loc)) = advert {
            let micros = d.as_micros() as u64;
            if v.version == 2 {
                if !micros.is_multiple_of(1_000_000) {
                    let rounded = ((micros + 500_000) / 1_000_000).max(1);
                    self.d
                        .warn(&loc, format!("({name}) VRRPv2 advertisement interval {}s must be an integer, rounding to {rounded}s", d.as_secs_f64()))
                        .hint("VRRPv2 carries whole seconds; use version 3 for sub-second adverts");
                    v.advert_int = Duration::from_secs(rounded);
                } else {
                    v.advert_int = d;
                }
            } else if micros > 40_950_000 {
                self.d
                    .warn(&loc, format!("({name}) VRRPv3 advertisement interval {}s is out of range, must be less than 40.96s; using 40.95s", d.as_secs_f64()))
                    .hint("VRRPv3 carries 12 bits of centiseconds");
                v.advert_int = Duration::from_millis(40_950);
            } else if !micros.is_multiple_of(10_000) {
                let cs = ((micros + 5_000) / 10_000).max(1);
                self.d
                    .warn(&loc, format!("({name}) VRRPv3 advertisement interval {}s is not whole centiseconds, rounding to {}s", d.as_secs_f64(), cs as f64 / 100.0))
                    .hint("VRRPv3 carries centiseconds");
                v.advert_int = Duration::from_millis(cs * 10);
            } else {
                v.advert_int = d;
            }
        }
        v.advert_int_centis = u16::try_from(v.advert_int.as_millis() / 10).unwrap_or(u16::MAX);

        if v.state == State::Master {
            if let Some(loc) = nopreempt_loc {
                self.d
                    .warn(
                        &loc,
                        format!(
                            "({name}) nopreempt will not work with initial state MASTER - clearing"
                        ),
                    )
                    .hint("use state BACKUP on every router with nopreempt");
                v.nopreempt = false;
            }
            if let Some(loc) = preempt_delay_loc
                && !v.preempt_delay.is_zero()
            {
                self.d
                    .warn(&loc, format!("({name}) preempt delay will not work with initial state MASTER - clearing"))
                    .hint("use state BACKUP with preempt_delay");
                v.preempt_delay = Duration::ZERO;
            }
        }

        // Accept mode: keepalived's default is on, except in strict mode unless owner.
        v.accept = m
            .explicit_accept
            .unwrap_or(!v.strict_mode || v.priority == 255);
        if v.strict_mode {
            let at = m.strict_loc.clone().unwrap_or_else(|| m.loc.clone());
            if !v.unicast_peer.is_empty() {
                self.d
                    .warn(
                        &at,
                        format!("({name}) strict mode does not support unicast peers"),
                    )
                    .hint("drop vrrp_strict/strict_mode or the unicast_peer block");
            }
            if v.authentication.is_some() {
                self.d
                    .warn(
                        &at,
                        format!("({name}) strict mode does not support authentication - ignoring"),
                    )
                    .hint("drop the authentication block");
                v.authentication = None;
            }
            if !v.preempt_delay.is_zero() {
                self.d
                    .warn(
                        &at,
                        format!("({name}) strict mode does not support preempt_delay - ignoring"),
                    )
                    .hint("drop preempt_delay");
                v.preempt_delay = Duration::ZERO;
            }
            if v.virtual_ipaddress.is_empty() {
                self.d
                    .error(
                        &at,
                        format!("({name}) strict mode requires at least one virtual address"),
                    )
                    .hint("add a virtual_ipaddress block");
            }
        }
        if v.version == 3
            && let (Some(_), Some(loc)) = (&v.authentication, auth_loc)
        {
            self.d
                .warn(
                    &loc,
                    format!("({name}) authentication is not part of VRRPv3 - ignoring"),
                )
                .hint("remove the authentication block, or use version 2");
            v.authentication = None;
        }

        if !m.vrid_set && !m.vrid_line {
            self.d
                .error(
                    &m.loc,
                    format!("({name}) the virtual router id must be set"),
                )
                .hint("add: virtual_router_id 1..255 (the same on every router of this group)");
        }
        if v.interface.is_none() && v.unicast_peer.is_empty() {
            self.d
                .error(&m.loc, format!("({name}) no interface given"))
                .hint("add: interface eth0 (only unicast instances may leave it out)");
        }
        if v.virtual_ipaddress.is_empty() {
            self.d
                .warn(
                    &m.loc,
                    format!("({name}) no VIP specified; at least one is sensible"),
                )
                .hint("add a virtual_ipaddress block");
        }
        // Addresses without `dev` go on the instance's interface.
        if let Some(ifname) = &v.interface {
            for a in v
                .virtual_ipaddress
                .iter_mut()
                .chain(v.virtual_ipaddress_excluded.iter_mut())
            {
                if a.dev.is_none() {
                    a.dev = Some(ifname.clone());
                }
            }
        }
        self.cfg.vrrp_instance.push(v);
        self.inst_meta.push(m);
    }

    fn peer(&mut self, p: &Node, v: &mut VrrpInstance) -> Option<UnicastPeer> {
        let addr = self.ip(&p.key, "unicast_peer")?;
        let mut peer = UnicastPeer {
            address: addr,
            min_ttl: None,
            max_ttl: None,
        };
        let mut i = 0;
        while i < p.args.len() {
            let a = p.args[i].clone();
            match (a.text.as_str(), p.args.get(i + 1).cloned()) {
                ("min_ttl" | "max_ttl", Some(val)) => {
                    match val.text.parse::<u8>() {
                        Ok(x) => {
                            if a.text == "min_ttl" {
                                peer.min_ttl = Some(x);
                            } else {
                                peer.max_ttl = Some(x);
                            }
                            // keepalived: a TTL bound turns on source checking.
                            v.check_unicast_src = true;
                        }
                        Err(_) => {
                            self.d
                                .error(
                                    &val.loc,
                                    format!("{} '{}' must be 0..255", a.text, val.text),
                                )
                                .hint("TTLs are 0..255");
                        }
                    }
                    i += 2;
                }
                _ => {
                    self.d
                        .error(&a.loc, format!("unknown unicast_peer option '{}'", a.text))
                        .hint("write: ADDRESS [min_ttl N] [max_ttl N], one peer per line");
                    i += 1;
                }
            }
        }
        if let (Some(lo), Some(hi)) = (peer.min_ttl, peer.max_ttl)
            && lo > hi
        {
            self.d
                .error(
                    &p.key.loc,
                    format!("unicast_peer {addr}: min_ttl {lo} is above max_ttl {hi}"),
                )
                .hint("swap them");
        }
        Some(peer)
    }

    fn auth(&mut self, c: &Node, name: &str) -> Option<Authentication> {
        let mut ty = None;
        let mut pass = None;
        for a in c.children() {
            if !self.shape(a, Kw::Leaf) {
                continue;
            }
            match a.name() {
                "auth_type" => {
                    if let Some(t) = self.arg(a, 0, "type").cloned() {
                        self.extra(a, 1);
                        match t.text.as_str() {
                            "PASS" => ty = Some(AuthType::Pass),
                            "AH" => ty = Some(AuthType::Ah),
                            other => {
                                self.d
                                    .error(&t.loc, format!("({name}) unknown auth_type '{other}'"))
                                    .hint("auth_type is PASS or AH");
                            }
                        }
                    }
                }
                "auth_pass" => {
                    if let Some(t) = self.arg(a, 0, "password").cloned() {
                        self.extra(a, 1);
                        let mut p = t.text.clone();
                        if p.len() > 8 {
                            self.d
                                .warn(&t.loc, "truncating auth_pass to 8 characters")
                                .hint("VRRPv2 carries 8 bytes of password; only the first 8 count");
                            let mut cut = 8;
                            while !p.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            p.truncate(cut);
                        }
                        pass = Some(p);
                    }
                }
                _ => self.unknown(a, "authentication"),
            }
        }
        match ty {
            Some(auth_type) => Some(Authentication {
                auth_type,
                auth_pass: pass,
            }),
            None => {
                if pass.is_some() {
                    self.d
                        .warn(
                            &c.key.loc,
                            format!("({name}) auth_pass without auth_type - authentication is off"),
                        )
                        .hint("add: auth_type PASS");
                }
                None
            }
        }
    }

    fn notify(&mut self, c: &Node, owner: &str, already: bool) -> Option<Script> {
        if already {
            self.d
                .error(
                    &c.key.loc,
                    format!("{} script already specified - ignoring this one", c.name()),
                )
                .hint("keep one line per notify kind");
            return None;
        }
        self.script(c, owner, false)
    }

    // ---- vrrp_sync_group -------------------------------------------------

    fn sync_group(&mut self, n: &Node) {
        let Some(name) = self.block_name(n) else {
            return;
        };
        let mut g = SyncGroup {
            name: name.clone(),
            group: Vec::new(),
            track_interface: Vec::new(),
            track_script: Vec::new(),
            track_file: Vec::new(),
            track_process: Vec::new(),
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify: None,
            smtp_alert: false,
        };
        let mut m = GroupMeta {
            loc: n.args[0].loc.clone(),
            members: Vec::new(),
            track_script: Vec::new(),
            track_file: Vec::new(),
            track_process: Vec::new(),
            tracking_weight: false,
        };
        let owner = format!("vrrp_sync_group {name}");
        for c in n.children() {
            match c.name() {
                "group" => {
                    if self.shape(c, Kw::Block) {
                        for l in c.children() {
                            m.members.push((l.key.text.clone(), l.key.loc.clone()));
                            for extra in &l.args {
                                m.members.push((extra.text.clone(), extra.loc.clone()));
                            }
                        }
                    }
                }
                "track_interface" => {
                    let tracked = self.track_interfaces(c);
                    g.track_interface.extend(tracked);
                }
                "track_script" => m
                    .track_script
                    .extend(self.track_lines(c, "track_script", 253)),
                "track_file" => m.track_file.extend(self.track_lines(c, "track_file", 254)),
                "track_process" => {
                    m.track_process
                        .extend(self.track_lines(c, "track_process", 254))
                }
                _ if !self.shape(c, Kw::Leaf) => {}
                "notify_master" => {
                    g.notify_master = self.notify(c, &owner, g.notify_master.is_some())
                }
                "notify_backup" => {
                    g.notify_backup = self.notify(c, &owner, g.notify_backup.is_some())
                }
                "notify_fault" => g.notify_fault = self.notify(c, &owner, g.notify_fault.is_some()),
                "notify_stop" => g.notify_stop = self.notify(c, &owner, g.notify_stop.is_some()),
                "notify" => g.notify = self.notify(c, &owner, g.notify.is_some()),
                "smtp_alert" => {
                    if let Some(b) = self.flag(c) {
                        g.smtp_alert = b;
                    }
                    self.unsupported(
                        c,
                        UnsupportedKind::Ignored,
                        "is ignored: xvrrpd sends no mail",
                    );
                }
                "sync_group_tracking_weight" => {
                    self.no_args(c);
                    m.tracking_weight = true;
                }
                "global_tracking" => {
                    self.no_args(c);
                    m.tracking_weight = true;
                    self.d
                        .note(&c.key.loc, "'global_tracking' is deprecated")
                        .hint("use sync_group_tracking_weight, or track_* in the sync group");
                }
                "notify_priority_changes" => self.unsupported(
                    c,
                    UnsupportedKind::Ignored,
                    "is accepted and ignored: it has no effect on xvrrpd",
                ),
                "track_bfd" => self.unsupported(
                    c,
                    UnsupportedKind::NotSupported,
                    "is not supported by xvrrpd yet",
                ),
                _ => self.unknown(c, "vrrp_sync_group"),
            }
        }
        self.cfg.vrrp_sync_group.push(g);
        self.group_meta.push(m);
    }

    // ---- cross-references and machine checks -----------------------------

    fn resolve_refs(&mut self, refs: &[PendingRef], kind: &str, owner: &str) -> Vec<TrackRef> {
        let mut out = Vec::new();
        for r in refs {
            let def = match kind {
                "track_script" => self
                    .cfg
                    .script(&r.name)
                    .map(|s| (s.weight, s.weight_reverse)),
                "track_file" => self
                    .cfg
                    .vrrp_track_file
                    .iter()
                    .find(|f| f.name == r.name)
                    .map(|f| (f.weight, f.weight_reverse)),
                _ => self
                    .cfg
                    .vrrp_track_process
                    .iter()
                    .find(|p| p.name == r.name)
                    .map(|p| (p.weight, p.weight_reverse)),
            };
            let Some((w, rev)) = def else {
                let defn = match kind {
                    "track_script" => "vrrp_script",
                    "track_file" => "vrrp_track_file",
                    _ => "vrrp_track_process",
                };
                let known: Vec<String> = match kind {
                    "track_script" => self
                        .cfg
                        .vrrp_script
                        .iter()
                        .map(|s| s.name.clone())
                        .collect(),
                    "track_file" => self
                        .cfg
                        .vrrp_track_file
                        .iter()
                        .map(|s| s.name.clone())
                        .collect(),
                    _ => self
                        .cfg
                        .vrrp_track_process
                        .iter()
                        .map(|s| s.name.clone())
                        .collect(),
                };
                let hint = if known.is_empty() {
                    format!("define it with {defn} {} {{ ... }}", r.name)
                } else {
                    format!("defined {defn}s: {}", known.join(", "))
                };
                self.d
                    .error(&r.loc, format!("({owner}) {kind} {} not found", r.name))
                    .hint(hint);
                continue;
            };
            out.push(TrackRef {
                name: r.name.clone(),
                weight: r.weight.unwrap_or(w),
                weight_reverse: r.reverse.unwrap_or(rev),
            });
        }
        out
    }

    fn resolve(&mut self) {
        // Track references.
        let metas = std::mem::take(&mut self.inst_meta);
        for (i, m) in metas.iter().enumerate() {
            let owner = self.cfg.vrrp_instance[i].name.clone();
            let ts = self.resolve_refs(&m.track_script, "track_script", &owner);
            let tf = self.resolve_refs(&m.track_file, "track_file", &owner);
            let tp = self.resolve_refs(&m.track_process, "track_process", &owner);
            let v = &mut self.cfg.vrrp_instance[i];
            v.track_script = ts;
            v.track_file = tf;
            v.track_process = tp;
        }
        let gmetas = std::mem::take(&mut self.group_meta);
        for (gi, m) in gmetas.iter().enumerate() {
            let gname = self.cfg.vrrp_sync_group[gi].name.clone();
            let ts = self.resolve_refs(&m.track_script, "track_script", &gname);
            let tf = self.resolve_refs(&m.track_file, "track_file", &gname);
            let tp = self.resolve_refs(&m.track_process, "track_process", &gname);
            let mut members = Vec::new();
            for (mname, loc) in &m.members {
                let Some(idx) = self.cfg.vrrp_instance.iter().position(|v| &v.name == mname) else {
                    self.d
                        .error(loc, format!("virtual router {mname} specified in sync group {gname} doesn't exist"))
                        .hint("list vrrp_instance names in the group block");
                    continue;
                };
                if let Some(other) = &self.cfg.vrrp_instance[idx].sync_group {
                    self.d
                        .error(
                            loc,
                            format!("vrrp_instance {mname} is already in sync group {other}"),
                        )
                        .hint("an instance belongs to one sync group at most");
                    continue;
                }
                self.cfg.vrrp_instance[idx].sync_group = Some(gname.clone());
                if !m.tracking_weight {
                    // keepalived zeroes member tracking weights so the members' priorities stay in step.
                    let v = &mut self.cfg.vrrp_instance[idx];
                    let weighted = v
                        .track_script
                        .iter()
                        .chain(&v.track_file)
                        .chain(&v.track_process)
                        .any(|t| t.weight != 0)
                        || v.track_interface.iter().any(|t| t.weight != 0);
                    if weighted {
                        for t in v
                            .track_script
                            .iter_mut()
                            .chain(v.track_file.iter_mut())
                            .chain(v.track_process.iter_mut())
                        {
                            t.weight = 0;
                        }
                        for t in v.track_interface.iter_mut() {
                            t.weight = 0;
                        }
                        self.d
                            .warn(&metas[idx].loc, format!("({mname}) tracking weights set to 0: the instance is in sync group {gname}"))
                            .hint("track in the sync group instead, or add sync_group_tracking_weight to the group");
                    }
                }
                members.push(mname.clone());
            }
            if members.len() < 2 {
                self.d
                    .warn(&m.loc, format!("sync group {gname} has only {} virtual router(s) - this probably isn't what you want", members.len()))
                    .hint("a sync group ties two or more vrrp_instances together");
            }
            let g = &mut self.cfg.vrrp_sync_group[gi];
            g.group = members;
            g.track_script = ts;
            g.track_file = tf;
            g.track_process = tp;
        }

        // Duplicate VRIDs on one interface and family.
        let mut by_key: BTreeMap<(String, bool, u8), Vec<usize>> = BTreeMap::new();
        for (i, v) in self.cfg.vrrp_instance.iter().enumerate() {
            if let (Some(ifn), true) = (&v.interface, metas[i].vrid_set) {
                by_key
                    .entry((ifn.clone(), v.family == Family::Inet6, v.virtual_router_id))
                    .or_default()
                    .push(i);
            }
        }
        for ((ifn, v6, vrid), idxs) in by_key {
            for (a, &i) in idxs.iter().enumerate() {
                for &j in &idxs[a + 1..] {
                    let (x, y) = (&self.cfg.vrrp_instance[i], &self.cfg.vrrp_instance[j]);
                    let clash = x.unicast_peer.is_empty() && y.unicast_peer.is_empty()
                        || x.unicast_peer
                            .iter()
                            .any(|p| y.unicast_peer.iter().any(|q| q.address == p.address));
                    if clash {
                        let msg = format!(
                            "{} and {} both use VRID {vrid} with {} on interface {ifn}",
                            x.name,
                            y.name,
                            if v6 { "IPv6" } else { "IPv4" }
                        );
                        self.d
                            .error(&metas[j].loc, msg)
                            .hint("give each instance on an interface its own virtual_router_id");
                    }
                }
            }
        }

        self.check_scripts();
    }

    fn check_scripts(&mut self) {
        let g = self.cfg.global_defs.clone();
        let default_user_ok = g.script_user.is_some() || self.host.user_exists("keepalived_script");
        let mut runnable_first: Option<Loc> = None;
        let scripts = std::mem::take(&mut self.scripts);
        for (loc, owner, s, is_vrrp_script) in &scripts {
            let Some(program) = s.argv.first() else {
                continue;
            };
            if g.enable_script_security && s.user.is_none() && !default_user_ok {
                self.d
                    .error(loc, format!("unable to set default user keepalived_script for script of {owner}"))
                    .hint("add `script_user root` (or another user) to global_defs, or create the user keepalived_script");
                if *is_vrrp_script {
                    self.drop_script(owner);
                }
                continue;
            }
            match self.host.script_status(program) {
                ScriptStatus::Ok => {
                    runnable_first.get_or_insert_with(|| loc.clone());
                }
                ScriptStatus::Insecure => {
                    if g.enable_script_security {
                        self.d
                            .warn(loc, format!("unsafe permissions found for script '{program}' of {owner} - disabling"))
                            .hint("make the script and every directory above it writable by root only");
                        if *is_vrrp_script {
                            self.drop_script(owner);
                        }
                    } else {
                        runnable_first.get_or_insert_with(|| loc.clone());
                    }
                }
                ScriptStatus::NotFound | ScriptStatus::NotExecutable => {
                    if *is_vrrp_script {
                        self.d
                            .warn(loc, format!("disabling {owner}: script '{program}' not found or not executable"))
                            .hint("install the program or fix the path; the instances tracking it would never see it succeed");
                    } else {
                        self.d
                            .note(
                                loc,
                                format!(
                                    "{owner}: notify script '{program}' not found or not executable"
                                ),
                            )
                            .hint(
                                "keepalived -t does not report this, but the script will not run",
                            );
                    }
                }
            }
        }
        if let Some(loc) = runnable_first
            && !g.enable_script_security
        {
            self.d
                .warn(&loc, "SECURITY VIOLATION - scripts are being executed but script_security not enabled")
                .hint("add enable_script_security (and script_user root, or create user keepalived_script) to global_defs");
        }
    }

    fn drop_script(&mut self, owner: &str) {
        if let Some(name) = owner.strip_prefix("vrrp_script ") {
            self.cfg.vrrp_script.retain(|s| s.name != name);
            let _ = self.script_locs.remove(name);
        }
    }
}

/// global_defs keywords keepalived knows that change nothing for xvrrpd.
const IGNORED_GLOBALS: &[&str] = &[
    "default_interface",
    "dynamic_interfaces",
    "allow_if_changes",
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
    "vrrp_iptables",
    "vrrp_ipsets",
    "nftables",
    "nftables_priority",
    "nftables_counters",
    "nftables_ifindex",
    "nftables_ipvs",
    "nftables_ipvs_priority",
    "nftables_ipvs_start_fwmark",
    "disable_local_igmp",
    "vrrp_garp_extra_if",
    "vrrp_notify_priority_changes",
    "fifo_write_vrrp_states_on_reload",
    "umask",
    "log_unknown_vrids",
    "vmac_prefix",
    "vmac_addr_prefix",
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "instance",
    "use_pid_dir",
    "linkbeat_use_polling",
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
    "vrrp_startup_delay_ms",
    "random_seed",
    "reload_time_file",
    "reload_repeat",
    "reload_file",
    "startup_script",
    "startup_script_timeout",
    "shutdown_script",
    "shutdown_script_timeout",
    "data_use_instance",
    "tmp_config_directory",
    "config_save_dir",
    "vrrp_owner_ignore_adverts",
    "vrrp_garp_lower_prio_repeat_interval",
    "notify_fifo_script_user",
];

/// vrrp_instance keywords keepalived knows and xvrrpd does not implement.
const UNSUPPORTED_INSTANCE: &[&str] = &[
    "use_vmac_addr",
    "vmac_xmit_base",
    "use_ipvlan",
    "vrf",
    "track_bfd",
    "track_src_ip",
    "mcast_dst_ip",
    "unicast_ttl",
    "unicast_fault_no_peer",
    "promote_secondaries",
    "notify_deleted",
    "notify_master_rx_lower_pri",
    "old_unicast_checksum",
    "garp_extra_if",
    "garp_extra_if_vmac",
];

/// A plain decimal (strtod would also take hex, inf and exponents, which keepalived then rejects or misreads).
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('+').unwrap_or(s);
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.chars().filter(|&c| c == '.').count() <= 1
        && s.chars().any(|c| c.is_ascii_digit())
}

/// Splits a command line into words as keepalived does for scripts: blanks
/// separate, '…' and "…" group, backslash escapes the next character.
pub(crate) fn split_command(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, ' ' | '\t') => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}
