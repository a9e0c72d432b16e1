//! The typed, validated configuration. Field names are keepalived's keywords;
//! every value is already defaulted the way keepalived defaults it, and
//! references (track_script → vrrp_script, sync group members) are resolved.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use serde::{Serialize, Serializer};

/// Serializes a duration as seconds (keepalived writes times in seconds).
pub(crate) fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

#[derive(Serialize, PartialEq, Eq, Clone, Debug, Default)]
pub struct Config {
    pub global_defs: GlobalDefs,
    pub vrrp_script: Vec<VrrpScript>,
    pub vrrp_track_file: Vec<TrackFile>,
    pub vrrp_track_process: Vec<TrackProcess>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bfd_instance: Vec<BfdInstance>,
    pub vrrp_instance: Vec<VrrpInstance>,
    pub vrrp_sync_group: Vec<SyncGroup>,
}

impl Config {
    pub fn instance(&self, name: &str) -> Option<&VrrpInstance> {
        self.vrrp_instance.iter().find(|i| i.name == name)
    }

    pub fn script(&self, name: &str) -> Option<&VrrpScript> {
        self.vrrp_script.iter().find(|s| s.name == name)
    }
}

/// A FIFO keepalived writes notify events to (`notify_fifo`, `vrrp_notify_fifo`).
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct Fifo {
    pub path: String,
    pub user: Option<String>,
    pub group: Option<String>,
}

/// A command keepalived runs: notify scripts, `vrrp_script` scripts.
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct Script {
    /// The command as written.
    pub command: String,
    /// The command split into words, as keepalived passes them to execve.
    pub argv: Vec<String>,
    /// `username [groupname]` after the command; None = global `script_user`.
    pub user: Option<String>,
    pub group: Option<String>,
}

#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct ScriptUser {
    pub user: String,
    pub group: Option<String>,
}

#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct GlobalDefs {
    /// None = the host name (keepalived's default).
    pub router_id: Option<String>,
    /// `vmac_prefix`: default VMAC names are PREFIX.VRID (`vrrp`).
    pub vmac_prefix: Option<String>,
    /// `vmac_addr_prefix`: the same for `use_vmac_addr`'s VMACs (default:
    /// `vmac_prefix`).
    pub vmac_addr_prefix: Option<String>,
    /// `vrrp_garp_extra_if`: the instances' default `garp_extra_if`.
    pub vrrp_garp_extra_if: Option<GarpExtraIf>,
    pub vrrp_version: u8,
    pub vrrp_mcast_group4: Ipv4Addr,
    pub vrrp_mcast_group6: Ipv6Addr,
    #[serde(serialize_with = "secs")]
    pub vrrp_garp_master_delay: Duration,
    pub vrrp_garp_master_repeat: u32,
    #[serde(serialize_with = "secs")]
    pub vrrp_garp_lower_prio_delay: Duration,
    pub vrrp_garp_lower_prio_repeat: u32,
    /// Zero: no periodic refresh.
    #[serde(serialize_with = "secs")]
    pub vrrp_garp_master_refresh: Duration,
    pub vrrp_garp_master_refresh_repeat: u32,
    #[serde(serialize_with = "secs")]
    pub vrrp_garp_interval: Duration,
    #[serde(serialize_with = "secs")]
    pub vrrp_gna_interval: Duration,
    pub vrrp_min_garp: bool,
    pub vrrp_lower_prio_no_advert: bool,
    pub vrrp_higher_prio_send_advert: bool,
    /// Default of each instance's `notify_priority_changes`.
    pub vrrp_notify_priority_changes: bool,
    pub vrrp_skip_check_adv_addr: bool,
    pub vrrp_strict: bool,
    pub vrrp_check_unicast_src: bool,
    #[serde(serialize_with = "secs")]
    pub vrrp_startup_delay: Duration,
    pub vrrp_down_timer_adverts: u32,
    /// xvrrpd extension: VRRPv3 over IPv4 checksummed without the pseudo-header
    /// (RFC 9568). Default false: keepalived's form, with it.
    pub v3_checksum_as_v2: bool,
    pub notify_fifo: Option<Fifo>,
    pub notify_fifo_script: Option<Script>,
    pub vrrp_notify_fifo: Option<Fifo>,
    pub vrrp_notify_fifo_script: Option<Script>,
    pub script_user: Option<ScriptUser>,
    pub enable_script_security: bool,
    /// `startup_script`: run (and waited for, at most its timeout) before
    /// the instances start.
    pub startup_script: Option<Script>,
    #[serde(serialize_with = "secs")]
    pub startup_script_timeout: Duration,
    /// `shutdown_script`: run after the instances stopped.
    pub shutdown_script: Option<Script>,
    #[serde(serialize_with = "secs")]
    pub shutdown_script_timeout: Duration,
    /// Top-level `static_ipaddress`, `static_routes`, `static_rules`: set
    /// at start whatever the VRRP state, removed at stop.
    pub static_ipaddress: Vec<VirtualAddress>,
    pub static_routes: Vec<Route>,
    pub static_rules: Vec<Rule>,
    /// `fifo_write_vrrp_states_on_reload`: after a reload, the FIFOs get
    /// the state of every group and instance that went on.
    pub fifo_write_vrrp_states_on_reload: bool,
    /// `umask`: the file mode creation mask the daemon runs with.
    pub umask: Option<u32>,
    /// `net_namespace NAME`: the daemon runs in `/run/netns/NAME`.
    pub net_namespace: Option<String>,
    /// `instance NAME`: names this daemon's control socket and pid file, so
    /// several daemons can run in one namespace.
    pub instance: Option<String>,
}

impl Default for GlobalDefs {
    fn default() -> Self {
        Self {
            router_id: None,
            vmac_prefix: None,
            vmac_addr_prefix: None,
            vrrp_garp_extra_if: None,
            net_namespace: None,
            instance: None,
            fifo_write_vrrp_states_on_reload: false,
            umask: None,
            static_ipaddress: Vec::new(),
            static_routes: Vec::new(),
            static_rules: Vec::new(),
            startup_script: None,
            startup_script_timeout: Duration::from_secs(10),
            shutdown_script: None,
            shutdown_script_timeout: Duration::from_secs(10),
            vrrp_version: 2,
            vrrp_mcast_group4: Ipv4Addr::new(224, 0, 0, 18),
            vrrp_mcast_group6: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12),
            vrrp_garp_master_delay: Duration::from_secs(5),
            vrrp_garp_master_repeat: 5,
            vrrp_garp_lower_prio_delay: Duration::from_secs(5),
            vrrp_garp_lower_prio_repeat: 5,
            vrrp_garp_master_refresh: Duration::ZERO,
            vrrp_garp_master_refresh_repeat: 1,
            vrrp_garp_interval: Duration::ZERO,
            vrrp_gna_interval: Duration::ZERO,
            vrrp_min_garp: false,
            vrrp_lower_prio_no_advert: false,
            vrrp_higher_prio_send_advert: false,
            vrrp_notify_priority_changes: false,
            vrrp_skip_check_adv_addr: false,
            vrrp_strict: false,
            vrrp_check_unicast_src: false,
            vrrp_startup_delay: Duration::ZERO,
            vrrp_down_timer_adverts: 3,
            v3_checksum_as_v2: false,
            notify_fifo: None,
            notify_fifo_script: None,
            vrrp_notify_fifo: None,
            vrrp_notify_fifo_script: None,
            script_user: None,
            enable_script_security: false,
        }
    }
}

#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct VrrpScript {
    pub name: String,
    pub script: Script,
    #[serde(serialize_with = "secs")]
    pub interval: Duration,
    /// None: keepalived lets the script run for up to `interval`.
    #[serde(serialize_with = "opt_secs")]
    pub timeout: Option<Duration>,
    pub weight: i32,
    pub weight_reverse: bool,
    pub rise: u32,
    pub fall: u32,
    pub init_fail: bool,
}

#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct TrackFile {
    pub name: String,
    pub file: String,
    pub weight: i32,
    pub weight_reverse: bool,
    /// `init_file [VALUE] [overwrite]`: (value, overwrite).
    pub init_file: Option<(i64, bool)>,
}

/// `bfd_instance NAME { ... }`: a BFD session to a neighbour (RFC 5880,
/// 5881; 5883 with `multihop`).
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct BfdInstance {
    pub name: String,
    pub neighbor_ip: IpAddr,
    pub source_ip: Option<IpAddr>,
    /// Required minimum receive interval, µs (`min_rx`, ms in the file).
    pub min_rx_us: u32,
    /// Desired minimum transmit interval once up, µs (`min_tx`).
    pub min_tx_us: u32,
    /// Transmit interval while not up, µs (`idle_tx`, at least 1 s).
    pub idle_tx_us: u32,
    pub multiplier: u8,
    /// Sends nothing until the neighbour has spoken.
    pub passive: bool,
    /// Sent TTL (IPv4, default 255) or hop limit (IPv6, default 64).
    pub ttl: u8,
    /// How far below `ttl` a received TTL may be (255: not checked).
    pub max_hops: i32,
    /// RFC 5883: port 4784.
    pub multihop: bool,
    /// The default weight of `track_bfd` lines naming it.
    pub weight: i32,
    pub weight_reverse: bool,
    /// Its events reach VRRP (not when only `checker` is named).
    pub vrrp: bool,
}

#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct TrackProcess {
    pub name: String,
    pub process: String,
    pub params: Vec<String>,
    pub param_match: Option<String>,
    pub weight: i32,
    pub weight_reverse: bool,
    pub quorum: u32,
    pub quorum_max: u32,
    #[serde(serialize_with = "opt_secs")]
    pub fork_delay: Option<Duration>,
    #[serde(serialize_with = "opt_secs")]
    pub terminate_delay: Option<Duration>,
    pub full_command: bool,
}

#[derive(Serialize, PartialEq, Eq, Clone, Copy, Debug)]
pub enum State {
    #[serde(rename = "MASTER")]
    Master,
    #[serde(rename = "BACKUP")]
    Backup,
}

/// Which unicast VRRPv3/IPv4 checksum an instance sends and accepts:
/// today's (the peer in the pseudo-header) or keepalived 1.3.5's (the
/// group 224.0.0.18 in its place), as keepalived decides it.
#[derive(Serialize, PartialEq, Eq, Clone, Copy, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum OldUnicastChecksum {
    /// keepalived's default: today's, until a peer's advert carries the
    /// old one; from then on the old one.
    #[default]
    Detect,
    /// `old_unicast_checksum`: the old one.
    Always,
    /// `old_unicast_checksum never`: today's, and the old one is refused.
    Never,
}

#[derive(Serialize, PartialEq, Eq, Clone, Copy, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Inet,
    Inet6,
}

#[derive(Serialize, PartialEq, Eq, Clone, Copy, Debug)]
pub enum AuthType {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "AH")]
    Ah,
}

#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct Authentication {
    pub auth_type: AuthType,
    /// At most 8 bytes (keepalived truncates longer ones).
    pub auth_pass: Option<String>,
}

#[derive(Serialize, PartialEq, Eq, Clone, Copy, Debug)]
#[serde(untagged)]
pub enum PreferredLft {
    Seconds(u32),
    Forever(Forever),
}

#[derive(Serialize, PartialEq, Eq, Clone, Copy, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Forever {
    Forever,
}

/// One line of `virtual_ipaddress` / `virtual_ipaddress_excluded`.
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct VirtualAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub brd: Option<Ipv4Addr>,
    /// The `dev` given, else the instance's interface.
    pub dev: Option<String>,
    pub scope: Option<String>,
    pub label: Option<String>,
    pub peer: Option<IpAddr>,
    pub no_track: bool,
    pub preferred_lft: Option<PreferredLft>,
    /// Other `ip address` flags given (home, -nodad, mngtmpaddr, noprefixroute, autojoin, use_vmac).
    pub flags: Vec<String>,
}

/// What a route does with what it matches (`ip route`'s route type).
#[derive(Serialize, PartialEq, Eq, Clone, Copy, Debug)]
#[serde(rename_all = "lowercase")]
pub enum RouteType {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
}

/// A destination or selector: an address and its prefix length.
#[derive(Serialize, PartialEq, Eq, Clone, Copy, Debug)]
pub struct Prefix {
    pub address: IpAddr,
    pub prefix_len: u8,
}

/// One next hop of a multipath route (`nexthop via X dev Y weight W onlink`).
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct NextHop {
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    /// 1..256, as `ip route` takes it.
    pub weight: Option<u16>,
    pub onlink: bool,
}

/// One line of `virtual_routes` / `static_routes`, keepalived's syntax
/// (`[src ADDR] [to] PREFIX [via|gw ADDR] [dev IF] [scope S] [table T]
/// [metric|priority|preference N] [protocol P] [onlink] [no_track] …`).
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct Route {
    pub route_type: RouteType,
    pub to: Prefix,
    pub src: Option<IpAddr>,
    pub via: Option<IpAddr>,
    /// `or ADDR`: keepalived's second gateway, tried when `via` is not
    /// reachable.
    pub or_via: Option<IpAddr>,
    pub dev: Option<String>,
    /// `host`, `link`, `global`, `site`, `nowhere` or a number.
    pub scope: Option<String>,
    /// A number, or a name from `/etc/iproute2/rt_tables` (`main`, `local`, …).
    pub table: Option<String>,
    pub metric: Option<u32>,
    /// A number or a name from `/etc/iproute2/rt_protos`.
    pub protocol: Option<String>,
    pub tos: Option<u8>,
    pub mtu: Option<u32>,
    pub onlink: bool,
    pub nexthops: Vec<NextHop>,
    /// Not put back when someone else deletes it.
    pub no_track: bool,
    /// The line as written, for logs and status.
    pub text: String,
}

/// What a rule does when it matches.
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// `table T` (a number or a name).
    Table(String),
    /// `goto PREF`.
    Goto(u32),
    Blackhole,
    Unreachable,
    Prohibit,
    Nop,
}

/// One line of `virtual_rules` / `static_rules`, keepalived's syntax
/// (`[not] [from PREFIX] [to PREFIX] [iif IF] [oif IF] [tos N] [fwmark
/// M[/MASK]] [preference|priority|pref N] table T|goto N|… [no_track]`).
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct Rule {
    /// `inet` or `inet6`: from the addresses, else IPv4 (`family` if given).
    pub family: Family,
    pub invert: bool,
    pub from: Option<Prefix>,
    pub to: Option<Prefix>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub tos: Option<u8>,
    pub fwmark: Option<u32>,
    pub fwmask: Option<u32>,
    pub priority: Option<u32>,
    pub action: RuleAction,
    pub no_track: bool,
    /// The line as written.
    pub text: String,
}

#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct UnicastPeer {
    pub address: IpAddr,
    pub min_ttl: Option<u8>,
    pub max_ttl: Option<u8>,
}

/// A `track_interface` entry.
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct TrackInterface {
    pub name: String,
    /// 0: the instance goes to FAULT when the interface is down.
    pub weight: i32,
    pub weight_reverse: bool,
}

/// A `track_script` / `track_file` / `track_process` entry, resolved against
/// its definition (the weight is the one in force).
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct TrackRef {
    pub name: String,
    pub weight: i32,
    pub weight_reverse: bool,
}

/// `garp_extra_if [all] SECONDS`: while master, a GARP/NA for each VIP on
/// another interface than the instance's, every so often.
#[derive(Serialize, PartialEq, Eq, Clone, Copy, Debug)]
pub struct GarpExtraIf {
    #[serde(serialize_with = "secs")]
    pub interval: Duration,
    /// `all`: on every other interface, not only VMACs.
    pub all: bool,
}

#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct UseVmac {
    /// The macvlan's name; keepalived's `vrrp.VRID` when not given.
    pub interface: Option<String>,
    /// A MAC instead of the RFC's virtual one, as `aa:bb:cc:dd:ee:ff` (five
    /// octets given: the VRID is the sixth).
    pub mac: Option<String>,
    /// `group GROUP`: the macvlan's link group (default: the base's).
    pub group: Option<u32>,
}

/// `use_ipvlan [IFNAME] [ADDRESS[/PREFIX]] [bridge|private|vepa] [group
/// GROUP]`: an L2 ipvlan on the instance's interface carries its VIPs
/// (it shares the base's MAC: no virtual MAC).
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct UseIpvlan {
    /// The ipvlan's name; keepalived's `vrrp.VRID` when not given.
    pub interface: Option<String>,
    /// The ipvlan's own address, also the adverts' source unless one is
    /// configured (required for IPv4, as in keepalived).
    pub address: Option<IpAddr>,
    pub prefix_len: Option<u8>,
    pub mode: IpvlanMode,
    /// `group GROUP`: the ipvlan's link group (default: the base's).
    pub group: Option<u32>,
}

/// The ipvlan's flags: how its slaves reach each other (`bridge`, the
/// kernel's default), or not (`private`), or only through the switch
/// (`vepa`).
#[derive(Serialize, PartialEq, Eq, Clone, Copy, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanMode {
    #[default]
    Bridge,
    Private,
    Vepa,
}

#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct VrrpInstance {
    pub name: String,
    /// Initial state wanted (keepalived default BACKUP).
    pub state: State,
    pub interface: Option<String>,
    /// `vrf NAME`: a unicast instance without `interface` finds its
    /// interface through this VRF's routes.
    pub vrf: Option<String>,
    pub virtual_router_id: u8,
    pub priority: u8,
    #[serde(serialize_with = "secs")]
    pub advert_int: Duration,
    /// The advert interval as it goes on the wire for v3 (1..4095 cs).
    pub advert_int_centis: u16,
    pub version: u8,
    pub family: Family,
    pub nopreempt: bool,
    #[serde(serialize_with = "secs")]
    pub preempt_delay: Duration,
    pub virtual_ipaddress: Vec<VirtualAddress>,
    pub virtual_ipaddress_excluded: Vec<VirtualAddress>,
    pub unicast_src_ip: Option<IpAddr>,
    pub mcast_src_ip: Option<IpAddr>,
    pub unicast_peer: Vec<UnicastPeer>,
    /// `mcast_dst_ip`: this instance's group instead of the global one.
    pub mcast_dst_ip: Option<IpAddr>,
    /// `unicast_ttl`: TTL / hop limit of unicast adverts (default 255).
    pub unicast_ttl: Option<u8>,
    /// `unicast_fault_no_peer`: FAULT, not multicast, with no peers.
    pub unicast_fault_no_peer: bool,
    /// `track_src_ip`: FAULT while the configured source address is gone.
    pub track_src_ip: bool,
    /// `old_unicast_checksum [never]`: the unicast VRRPv3/IPv4 checksum of
    /// keepalived 1.3.5 and before.
    pub old_unicast_checksum: OldUnicastChecksum,
    /// `promote_secondaries`: set on the interface while xvrrpd runs.
    pub promote_secondaries: bool,
    pub authentication: Option<Authentication>,
    pub track_interface: Vec<TrackInterface>,
    pub track_script: Vec<TrackRef>,
    pub track_file: Vec<TrackRef>,
    pub track_process: Vec<TrackRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub track_bfd: Vec<TrackRef>,
    pub notify_master: Option<Script>,
    pub notify_backup: Option<Script>,
    pub notify_fault: Option<Script>,
    pub notify_stop: Option<Script>,
    pub notify: Option<Script>,
    /// `notify_master_rx_lower_pri`: run when a master hears a lower priority.
    pub notify_master_rx_lower_pri: Option<Script>,
    /// `notify_deleted`: a reload that removes the instance notifies DELETED
    /// (keepalived's default: FAULT).
    pub notify_deleted: bool,
    /// The script `notify_deleted` names, if any.
    pub notify_deleted_script: Option<Script>,
    /// Accept mode (keepalived's default: on, unless strict mode).
    pub accept: bool,
    pub dont_track_primary: bool,
    #[serde(serialize_with = "secs")]
    pub garp_master_delay: Duration,
    pub garp_master_repeat: u32,
    #[serde(serialize_with = "secs")]
    pub garp_lower_prio_delay: Duration,
    pub garp_lower_prio_repeat: u32,
    #[serde(serialize_with = "secs")]
    pub garp_master_refresh: Duration,
    pub garp_master_refresh_repeat: u32,
    pub lower_prio_no_advert: bool,
    pub higher_prio_send_advert: bool,
    /// Write MASTER_PRIORITY / BACKUP_PRIORITY lines to the notify FIFOs
    /// when the effective priority changes.
    pub notify_priority_changes: bool,
    pub skip_check_adv_addr: bool,
    pub strict_mode: bool,
    pub check_unicast_src: bool,
    pub down_timer_adverts: u32,
    pub use_vmac: Option<UseVmac>,
    pub use_ipvlan: Option<UseIpvlan>,
    /// `vmac_xmit_base`: adverts go from the base interface, not the VMAC.
    pub vmac_xmit_base: bool,
    /// `use_vmac_addr`: addresses on another interface, or of the other
    /// family, go on VMACs of their own (as a VIP's own `use_vmac` asks).
    pub use_vmac_addr: bool,
    /// `garp_extra_if` (default: `vrrp_garp_extra_if`).
    pub garp_extra_if: Option<GarpExtraIf>,
    pub virtual_routes: Vec<Route>,
    pub virtual_rules: Vec<Rule>,
    pub smtp_alert: bool,
    /// The `vrrp_sync_group` this instance belongs to.
    pub sync_group: Option<String>,
}

#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct SyncGroup {
    pub name: String,
    pub group: Vec<String>,
    pub track_interface: Vec<TrackInterface>,
    pub track_script: Vec<TrackRef>,
    pub track_file: Vec<TrackRef>,
    pub track_process: Vec<TrackRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub track_bfd: Vec<TrackRef>,
    pub notify_master: Option<Script>,
    pub notify_backup: Option<Script>,
    pub notify_fault: Option<Script>,
    pub notify_stop: Option<Script>,
    pub notify: Option<Script>,
    pub smtp_alert: bool,
}
