//! One description of a router's VRRP setup, written out as keepalived.conf
//! for either daemon.
//!
//! xvrrpd reads keepalived's syntax, so both daemons get the same text;
//! [`RouterConfig::render`] refuses what the chosen daemon does not have
//! (keepalived 2.2.7 has no `v3_checksum_as_v2`, and rounds a VRRPv2
//! `advert_int` to whole seconds) instead of writing a file that would
//! silently mean something else.

use std::{fmt::Write as _, net::IpAddr, path::PathBuf, time::Duration};

use anyhow::{Result, bail};

/// Which daemon a lab router runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Daemon {
    Xvrrpd,
    Keepalived,
}

impl Daemon {
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Xvrrpd => "xvrrpd",
            Daemon::Keepalived => "keepalived",
        }
    }

    /// The daemon the e2e scenarios run: xvrrpd, unless
    /// `XVRRPD_LAB_DAEMON=keepalived` asks to run the same scenarios with
    /// keepalived (to check the scenarios themselves).
    pub fn for_scenarios() -> Daemon {
        match std::env::var("XVRRPD_LAB_DAEMON").as_deref() {
            Ok("keepalived") => Daemon::Keepalived,
            Ok("xvrrpd") | Err(_) => Daemon::Xvrrpd,
            Ok(other) => panic!("XVRRPD_LAB_DAEMON={other:?}: use `xvrrpd` or `keepalived`"),
        }
    }
}

impl std::fmt::Display for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `state` at startup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitState {
    Master,
    Backup,
}

/// A `track_script` line.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackScript {
    pub name: String,
    /// `weight N` on the line (overrides the script's own).
    pub weight: Option<i32>,
}

/// The notify scripts of an instance or sync group (full command lines).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Notify {
    pub master: Option<String>,
    pub backup: Option<String>,
    pub fault: Option<String>,
    pub stop: Option<String>,
    /// The generic `notify` script (gets TYPE NAME STATE PRIORITY).
    pub generic: Option<String>,
}

impl Notify {
    fn render(&self, out: &mut String, indent: &str) {
        for (kw, v) in [
            ("notify_master", &self.master),
            ("notify_backup", &self.backup),
            ("notify_fault", &self.fault),
            ("notify_stop", &self.stop),
            ("notify", &self.generic),
        ] {
            if let Some(cmd) = v {
                let _ = writeln!(out, "{indent}{kw} \"{cmd}\"");
            }
        }
    }
}

/// One `vrrp_instance`.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    /// 2 or 3.
    pub version: u8,
    pub advert_int: Duration,
    pub state: InitState,
    /// CIDR strings, e.g. `192.0.2.100/24`; all of one family.
    pub vips: Vec<String>,
    pub unicast_src: Option<String>,
    pub unicast_peers: Vec<String>,
    /// VRRPv2 `authentication { auth_type PASS auth_pass … }`.
    pub auth_pass: Option<String>,
    pub nopreempt: bool,
    pub preempt_delay: Option<Duration>,
    pub track_scripts: Vec<TrackScript>,
    pub track_interfaces: Vec<String>,
    pub notify: Notify,
    /// More lines, written as they are inside the block.
    pub extra: Vec<String>,
}

impl Instance {
    /// VRRPv3, 10 ms adverts, priority 100, state BACKUP, on `eth0`.
    pub fn new(name: &str, vrid: u8, vips: &[&str]) -> Instance {
        Instance {
            name: name.into(),
            interface: "eth0".into(),
            vrid,
            priority: 100,
            version: 3,
            advert_int: Duration::from_millis(10),
            state: InitState::Backup,
            vips: vips.iter().map(|s| s.to_string()).collect(),
            unicast_src: None,
            unicast_peers: Vec::new(),
            auth_pass: None,
            nopreempt: false,
            preempt_delay: None,
            track_scripts: Vec::new(),
            track_interfaces: Vec::new(),
            notify: Notify::default(),
            extra: Vec::new(),
        }
    }

    /// The same instance with another priority.
    pub fn with_priority(&self, priority: u8) -> Instance {
        Instance {
            priority,
            ..self.clone()
        }
    }

    /// The VIPs without their prefix length.
    pub fn vip_addrs(&self) -> Vec<IpAddr> {
        self.vips
            .iter()
            .map(|v| {
                v.split('/')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap_or_else(|e| panic!("VIP {v:?}: {e}"))
            })
            .collect()
    }

    pub fn is_ipv6(&self) -> bool {
        self.vip_addrs().first().is_some_and(|a| a.is_ipv6())
    }

    fn render(&self, daemon: Daemon, out: &mut String) -> Result<()> {
        if !matches!(self.version, 2 | 3) {
            bail!(
                "({}) version {} is not VRRP 2 or 3",
                self.name,
                self.version
            );
        }
        if self.version == 2 && self.advert_int.subsec_nanos() != 0 {
            bail!(
                "({}) VRRPv2 carries whole seconds: advert_int {:?} would be rounded",
                self.name,
                self.advert_int
            );
        }
        if self.version == 2 && self.is_ipv6() {
            bail!("({}) VRRPv2 has no IPv6", self.name);
        }
        if self.auth_pass.is_some() && self.version != 2 {
            bail!("({}) authentication exists only in VRRPv2", self.name);
        }
        let _ = daemon;
        let _ = writeln!(out, "vrrp_instance {} {{", self.name);
        let st = match self.state {
            InitState::Master => "MASTER",
            InitState::Backup => "BACKUP",
        };
        let _ = writeln!(out, "    state {st}");
        // Empty: none (a unicast instance may leave it out).
        if !self.interface.is_empty() {
            let _ = writeln!(out, "    interface {}", self.interface);
        }
        let _ = writeln!(out, "    virtual_router_id {}", self.vrid);
        let _ = writeln!(out, "    priority {}", self.priority);
        let _ = writeln!(out, "    version {}", self.version);
        let _ = writeln!(out, "    advert_int {}", secs_text(self.advert_int));
        if self.nopreempt {
            let _ = writeln!(out, "    nopreempt");
        }
        if let Some(d) = self.preempt_delay {
            let _ = writeln!(out, "    preempt_delay {}", secs_text(d));
        }
        if let Some(p) = &self.auth_pass {
            let _ = writeln!(
                out,
                "    authentication {{\n        auth_type PASS\n        auth_pass {p}\n    }}"
            );
        }
        if let Some(s) = &self.unicast_src {
            let _ = writeln!(out, "    unicast_src_ip {s}");
        }
        if !self.unicast_peers.is_empty() {
            let _ = writeln!(out, "    unicast_peer {{");
            for p in &self.unicast_peers {
                let _ = writeln!(out, "        {p}");
            }
            let _ = writeln!(out, "    }}");
        }
        let _ = writeln!(out, "    virtual_ipaddress {{");
        for v in &self.vips {
            let _ = writeln!(out, "        {v}");
        }
        let _ = writeln!(out, "    }}");
        if !self.track_interfaces.is_empty() {
            let _ = writeln!(out, "    track_interface {{");
            for i in &self.track_interfaces {
                let _ = writeln!(out, "        {i}");
            }
            let _ = writeln!(out, "    }}");
        }
        if !self.track_scripts.is_empty() {
            let _ = writeln!(out, "    track_script {{");
            for t in &self.track_scripts {
                match t.weight {
                    Some(w) => {
                        let _ = writeln!(out, "        {} weight {w}", t.name);
                    }
                    None => {
                        let _ = writeln!(out, "        {}", t.name);
                    }
                }
            }
            let _ = writeln!(out, "    }}");
        }
        self.notify.render(out, "    ");
        for l in &self.extra {
            let _ = writeln!(out, "    {l}");
        }
        let _ = writeln!(out, "}}");
        Ok(())
    }
}

/// A `vrrp_script`.
#[derive(Clone, Debug, PartialEq)]
pub struct VrrpScript {
    pub name: String,
    /// The command line.
    pub script: String,
    /// Whole seconds (keepalived's unit for script intervals).
    pub interval_s: u32,
    pub timeout_s: Option<u32>,
    pub weight: Option<i32>,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
    pub user: Option<String>,
}

impl VrrpScript {
    pub fn new(name: &str, script: &str) -> VrrpScript {
        VrrpScript {
            name: name.into(),
            script: script.into(),
            interval_s: 1,
            timeout_s: None,
            weight: None,
            fall: Some(1),
            rise: Some(1),
            user: None,
        }
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "vrrp_script {} {{", self.name);
        let _ = writeln!(out, "    script \"{}\"", self.script);
        let _ = writeln!(out, "    interval {}", self.interval_s);
        if let Some(t) = self.timeout_s {
            let _ = writeln!(out, "    timeout {t}");
        }
        if let Some(w) = self.weight {
            let _ = writeln!(out, "    weight {w}");
        }
        if let Some(f) = self.fall {
            let _ = writeln!(out, "    fall {f}");
        }
        if let Some(r) = self.rise {
            let _ = writeln!(out, "    rise {r}");
        }
        if let Some(u) = &self.user {
            let _ = writeln!(out, "    user {u}");
        }
        let _ = writeln!(out, "}}");
    }
}

/// A `vrrp_sync_group`.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncGroup {
    pub name: String,
    pub members: Vec<String>,
    pub notify: Notify,
}

impl SyncGroup {
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "vrrp_sync_group {} {{", self.name);
        let _ = writeln!(out, "    group {{");
        for m in &self.members {
            let _ = writeln!(out, "        {m}");
        }
        let _ = writeln!(out, "    }}");
        self.notify.render(out, "    ");
        let _ = writeln!(out, "}}");
    }
}

/// `global_defs`.
#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    pub router_id: String,
    /// `vrrp_notify_fifo` (a lab router fills in its own when None).
    pub vrrp_notify_fifo: Option<PathBuf>,
    /// xvrrpd's `v3_checksum_as_v2` (keepalived 2.2.7 has no such option).
    pub v3_checksum_as_v2: bool,
    pub enable_script_security: bool,
    pub script_user: Option<String>,
    pub extra: Vec<String>,
    /// Top-level lines after global_defs (`static_routes { … }`, …).
    pub top: Vec<String>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            router_id: String::new(),
            vrrp_notify_fifo: None,
            v3_checksum_as_v2: false,
            enable_script_security: true,
            script_user: Some("root".into()),
            extra: Vec::new(),
            top: Vec::new(),
        }
    }
}

/// Everything one router runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouterConfig {
    pub global: Global,
    pub scripts: Vec<VrrpScript>,
    pub instances: Vec<Instance>,
    pub sync_groups: Vec<SyncGroup>,
}

impl RouterConfig {
    /// One instance, default globals.
    pub fn single(inst: Instance) -> RouterConfig {
        RouterConfig {
            instances: vec![inst],
            ..RouterConfig::default()
        }
    }

    /// keepalived.conf text for `daemon`.
    pub fn render(&self, daemon: Daemon) -> Result<String> {
        let mut out = String::new();
        let g = &self.global;
        let _ = writeln!(out, "global_defs {{");
        if !g.router_id.is_empty() {
            let _ = writeln!(out, "    router_id {}", g.router_id);
        }
        if let Some(f) = &g.vrrp_notify_fifo {
            let _ = writeln!(out, "    vrrp_notify_fifo {}", f.display());
        }
        // The user first: keepalived checks its default user when it
        // reads enable_script_security.
        if let Some(u) = &g.script_user {
            let _ = writeln!(out, "    script_user {u}");
        }
        if g.enable_script_security {
            let _ = writeln!(out, "    enable_script_security");
        }
        if g.v3_checksum_as_v2 {
            if daemon == Daemon::Keepalived {
                bail!(
                    "keepalived 2.2.7 has no `v3_checksum_as_v2` (it always sends VRRPv3/IPv4 \
                     with the pseudo-header): only xvrrpd can be given it"
                );
            }
            let _ = writeln!(out, "    v3_checksum_as_v2");
        }
        for l in &g.extra {
            let _ = writeln!(out, "    {l}");
        }
        let _ = writeln!(out, "}}\n");
        for l in &g.top {
            let _ = writeln!(out, "{l}");
        }
        for s in &self.scripts {
            s.render(&mut out);
            out.push('\n');
        }
        for i in &self.instances {
            i.render(daemon, &mut out)?;
            out.push('\n');
        }
        for g in &self.sync_groups {
            g.render(&mut out);
            out.push('\n');
        }
        Ok(out)
    }
}

/// Seconds as keepalived writes them: `1`, `0.01`, `2.5`.
pub fn secs_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        return d.as_secs().to_string();
    }
    let s = format!("{:.6}", d.as_secs_f64());
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_v3_instance_and_refuses_keepalived_extensions() {
        let mut i = Instance::new("VI_1", 51, &["192.0.2.100/24"]);
        i.priority = 150;
        i.unicast_src = Some("192.0.2.11".into());
        i.unicast_peers = vec!["192.0.2.12".into()];
        let mut c = RouterConfig::single(i);
        c.global.router_id = "r1".into();
        let t = c.render(Daemon::Keepalived).unwrap();
        assert!(t.contains("advert_int 0.01\n"), "{t}");
        assert!(t.contains("priority 150\n"), "{t}");
        assert!(t.contains("unicast_peer {\n        192.0.2.12\n"), "{t}");
        c.global.v3_checksum_as_v2 = true;
        assert!(c.render(Daemon::Keepalived).is_err());
        assert!(
            c.render(Daemon::Xvrrpd)
                .unwrap()
                .contains("v3_checksum_as_v2")
        );
    }

    #[test]
    fn vrrpv2_needs_whole_seconds() {
        let mut i = Instance::new("VI_1", 51, &["192.0.2.100/24"]);
        i.version = 2;
        assert!(
            RouterConfig::single(i.clone())
                .render(Daemon::Xvrrpd)
                .is_err()
        );
        i.advert_int = Duration::from_secs(1);
        i.auth_pass = Some("secret".into());
        let t = RouterConfig::single(i).render(Daemon::Keepalived).unwrap();
        assert!(t.contains("auth_type PASS"), "{t}");
        assert!(t.contains("advert_int 1\n"), "{t}");
    }

    #[test]
    fn seconds_text() {
        assert_eq!(secs_text(Duration::from_millis(10)), "0.01");
        assert_eq!(secs_text(Duration::from_millis(2500)), "2.5");
        assert_eq!(secs_text(Duration::from_secs(3)), "3");
    }
}
