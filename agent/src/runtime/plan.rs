//! From the keepalived model to what the event loop runs: one
//! [`InstancePlan`] per `vrrp_instance` (state-machine config, VIPs, advert
//! destination, datapath entry), the trackers with stable ids, the notify
//! scripts. Resolving interfaces and addresses is the only I/O here.

use std::{
    collections::{BTreeMap, HashMap},
    ffi::OsString,
    net::IpAddr,
    path::PathBuf,
    time::Duration,
};

use thiserror::Error;
use xvrrpd_common::{
    FAMILY_IPV4, FAMILY_IPV6, VRID_FLAG_CHECK_TTL, VRID_FLAG_OLD_CHECKSUM, VridConfig, VridKey,
};

use super::route_plan::{self, PlannedRoute, PlannedRule};
use crate::{
    bfd::session::SessionConfig,
    config::model::{self, Config, VirtualAddress, VrrpInstance},
    datapath::{VridSpec, send::AdvertDest},
    net::{
        addr::{Scope, Vip, ipv4_broadcast},
        link,
        vmac::{IPVLAN_F_PRIVATE, IPVLAN_F_VEPA, VmacKind, VmacSpec, rfc_mac},
    },
    notify::NotifyScripts,
    packet::{Auth, V3Ipv4Checksum, Version},
    script::{
        command::{RunAs, ScriptCommand, UserSpec, default_script_user},
        security::{CheckedScript, check_notify_script, check_script},
    },
    tracker::bfd::BfdSessionConfig,
    vrrp::{
        Family, GarpConfig, InitialState, RouterConfig, TrackState, TrackerConfig, TrackerId,
        TrackerKind,
    },
};

/// A configuration read and planned off the loop.
pub struct NewConfig {
    pub config: crate::config::Config,
    pub plan: Plan,
    pub ids: TrackerIds,
    /// VMACs made for it (not taken over): removed if it is refused.
    pub made_vmacs: Vec<String>,
}

/// What the off-loop reader hands back: a new configuration, or why the
/// file cannot be used.
pub type PreparedConfig = Result<Box<NewConfig>, String>;

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("instance {instance}: interface {ifname}: {source}")]
    Interface {
        instance: String,
        ifname: String,
        #[source]
        source: link::LinkError,
    },
    #[error("instance {0} has no interface")]
    NoInterface(String),
    #[error("instance {instance}: {why}")]
    Unicast { instance: String, why: String },
    #[error("{what}: {message}")]
    Script { what: String, message: String },
    #[error("{0}")]
    Route(String),
}

/// Stable ids for tracked objects across reloads: the same object keeps its id.
#[derive(Default, Debug, Clone)]
pub struct TrackerIds {
    ids: HashMap<String, u32>,
}

impl TrackerIds {
    pub fn id(&mut self, key: &str) -> TrackerId {
        let next = self.ids.len() as u32 + 1;
        TrackerId(*self.ids.entry(key.to_string()).or_insert(next))
    }
}

#[derive(Clone, Debug)]
pub struct InstancePlan {
    pub name: String,
    pub ifname: String,
    pub ifindex: u32,
    pub router: RouterConfig,
    pub vips: Vec<Vip>,
    /// `virtual_ipaddress_excluded`: moved with the VIPs, never advertised.
    pub excluded: Vec<Vip>,
    /// VIPs marked `no_track`: not added back when someone deletes them.
    pub no_track: Vec<IpAddr>,
    pub source: IpAddr,
    pub dest: AdvertDest,
    pub checksum: V3Ipv4Checksum,
    /// A peer's advert with keepalived 1.3.5's unicast checksum switches
    /// this instance's adverts to it (keepalived's detection, the default
    /// for unicast VRRPv3 over IPv4).
    pub detect_old_checksum: bool,
    pub vrid: VridSpec,
    pub notify: NotifyScripts,
    /// `notify_priority_changes`: effective priority changes go to the FIFOs.
    pub notify_priority_changes: bool,
    /// `notify_deleted`: removed by a reload, it notifies DELETED, not FAULT.
    pub notify_deleted: bool,
    pub sync_group: Option<String>,
    /// Tracked objects of this instance, with names for status.
    pub tracker_names: Vec<(TrackerId, String, &'static str)>,
    /// Set when the source address is chosen from the interface: the
    /// tracker that is down while the interface has none.
    pub source_tracker: Option<TrackerId>,
    /// `track_src_ip`: the tracker that is down while the configured source
    /// address is on no interface.
    pub src_ip_tracker: Option<TrackerId>,
    /// TTL / hop limit of unicast adverts (`unicast_ttl`, default 255).
    pub unicast_ttl: u8,
    /// `promote_secondaries` on its interface while xvrrpd runs.
    pub promote_secondaries: bool,
    /// `virtual_routes` / `virtual_rules`: installed with the VIPs.
    pub routes: Vec<PlannedRoute>,
    pub rules: Vec<PlannedRule>,
    /// `use_vmac`: the macvlan its VIPs go on.
    pub vmac: Option<VmacPlan>,
    /// `use_vmac_addr`: the macvlans its other addresses go on.
    pub addr_vmacs: Vec<VmacPlan>,
    /// `garp_extra_if`: the addresses announced periodically.
    pub garp_extra_if: Vec<IpAddr>,
    /// Where its adverts leave: the VMAC, unless `vmac_xmit_base` or no
    /// VMAC (then `ifindex`). Adverts are always received on `ifindex`,
    /// where the datapath sits, in front of the macvlan.
    pub advert_ifindex: u32,
}

/// An instance's VMAC, made before the plan is built ([`vmac_specs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmacPlan {
    pub spec: VmacSpec,
    pub ifindex: u32,
    pub xmit_base: bool,
    /// Its base's MAC, which its IGMP/MLD reports leave with (a macvlan's;
    /// `None` for an ipvlan, or when the kernel did not say).
    pub base_mac: Option<[u8; 6]>,
}

impl InstancePlan {
    /// Where its GARPs/NAs leave, and whose MAC its VIPs are claimed with:
    /// the VMAC, else its interface.
    pub fn announce_ifindex(&self) -> u32 {
        self.vmac.as_ref().map_or(self.ifindex, |m| m.ifindex)
    }

    /// The interface a VIP (or excluded address) of this instance lives on.
    pub fn vip_ifindex(&self, addr: IpAddr) -> u32 {
        self.vips
            .iter()
            .chain(&self.excluded)
            .find(|v| v.addr == addr)
            .map_or(self.announce_ifindex(), |v| v.ifindex)
    }

    /// Every interface its addresses are announced on.
    pub fn announce_ifindexes(&self) -> Vec<u32> {
        let mut out = vec![self.announce_ifindex()];
        for v in self.vips.iter().chain(&self.excluded) {
            if !out.contains(&v.ifindex) {
                out.push(v.ifindex);
            }
        }
        out
    }

    /// What must match for a reload to update this instance in place.
    pub fn identity(&self) -> (String, u32, Family, u8, Vec<VmacPlan>) {
        (
            self.name.clone(),
            self.ifindex,
            self.router.family,
            self.router.vrid,
            self.vmacs().cloned().collect(),
        )
    }

    /// Every VMAC it runs: its own, then its addresses'.
    pub fn vmacs(&self) -> impl Iterator<Item = &VmacPlan> {
        self.vmac.iter().chain(&self.addr_vmacs)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScriptPlan {
    pub id: TrackerId,
    pub name: String,
    pub argv: Vec<OsString>,
    pub interval: Duration,
    pub timeout: Option<Duration>,
    pub rise: u32,
    pub fall: u32,
    pub init_fail: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FilePlan {
    pub id: TrackerId,
    pub name: String,
    pub path: PathBuf,
    pub init: Option<(i32, bool)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProcessPlan {
    pub id: TrackerId,
    pub name: String,
    pub process: String,
    pub params: Vec<String>,
    pub param_match: Option<String>,
    pub full_command: bool,
    pub quorum: u32,
    pub quorum_max: u32,
    pub fork_delay: Duration,
    pub terminate_delay: Duration,
}

#[derive(Clone, Debug)]
pub struct GroupPlan {
    pub name: String,
    /// Indices into `Plan::instances`.
    pub members: Vec<usize>,
    pub notify: NotifyScripts,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub instances: Vec<InstancePlan>,
    pub groups: Vec<GroupPlan>,
    pub scripts: Vec<(ScriptPlan, CheckedScript)>,
    pub files: Vec<FilePlan>,
    pub processes: Vec<ProcessPlan>,
    /// `bfd_instance`s whose events reach VRRP.
    pub bfds: Vec<BfdSessionConfig>,
    /// Interface trackers: id → ifindex.
    pub interfaces: BTreeMap<u32, u32>,
    pub startup_delay: Duration,
    pub default_run_as: RunAs,
    pub script_security: bool,
    /// `static_ipaddress` / `static_routes` / `static_rules`: set at start,
    /// whatever the VRRP states, and removed at stop.
    pub static_vips: Vec<Vip>,
    pub static_routes: Vec<PlannedRoute>,
    pub static_rules: Vec<PlannedRule>,
    /// `startup_script` / `shutdown_script` with their timeouts.
    pub startup_script: Option<(CheckedScript, Duration)>,
    pub shutdown_script: Option<(CheckedScript, Duration)>,
    pub warnings: Vec<String>,
}

impl Plan {
    /// A plan that runs nothing.
    pub fn empty(default_run_as: RunAs, script_security: bool, startup_delay: Duration) -> Plan {
        Plan {
            instances: Vec::new(),
            groups: Vec::new(),
            scripts: Vec::new(),
            files: Vec::new(),
            processes: Vec::new(),
            bfds: Vec::new(),
            interfaces: BTreeMap::new(),
            startup_delay,
            default_run_as,
            script_security,
            static_vips: Vec::new(),
            static_routes: Vec::new(),
            static_rules: Vec::new(),
            startup_script: None,
            shutdown_script: None,
            warnings: Vec::new(),
        }
    }

    /// This plan with no instance, group or tracker: what runs before the
    /// first configuration is applied.
    pub fn nothing_running(&self) -> Plan {
        Plan::empty(
            self.default_run_as.clone(),
            self.script_security,
            self.startup_delay,
        )
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn scope_of(s: Option<&str>) -> Scope {
    match s {
        Some("site") => Scope::Site,
        Some("link") => Scope::Link,
        Some("host") => Scope::Host,
        Some("nowhere") => Scope::Nowhere,
        Some(other) => other
            .parse::<u8>()
            .map(Scope::Other)
            .unwrap_or(Scope::Global),
        None => Scope::Global,
    }
}

fn vip_of(v: &VirtualAddress, default_ifindex: u32, instance: &str) -> Result<Vip, PlanError> {
    let ifindex = match &v.dev {
        Some(dev) => link::ifindex_by_name(dev).map_err(|source| PlanError::Interface {
            instance: instance.to_string(),
            ifname: dev.to_string(),
            source,
        })?,
        None => default_ifindex,
    };
    let mut vip = Vip::new(ifindex, v.address, v.prefix_len);
    vip.peer = v.peer;
    vip.broadcast = match (v.brd, v.address) {
        (Some(b), _) => Some(b),
        // keepalived sets the broadcast address for IPv4 VIPs with a prefix.
        (None, IpAddr::V4(a)) if v.prefix_len < 31 && v.peer.is_none() => {
            Some(ipv4_broadcast(a, v.prefix_len))
        }
        _ => None,
    };
    vip.scope = scope_of(v.scope.as_deref());
    vip.label = v.label.clone();
    vip.preferred_lft = match v.preferred_lft {
        Some(model::PreferredLft::Seconds(s)) => Some(s),
        _ => None,
    };
    Ok(vip)
}

/// Resolves scripts' users and checks them as keepalived does.
struct ScriptChecker {
    default: RunAs,
    security: bool,
    warnings: Vec<String>,
}

impl ScriptChecker {
    fn run_as(&self, s: &model::Script) -> Result<RunAs, String> {
        match &s.user {
            Some(user) => RunAs::resolve(
                &UserSpec {
                    user: user.clone(),
                    group: s.group.clone(),
                },
                true,
            )
            .map_err(|e| e.to_string()),
            None => Ok(self.default.clone()),
        }
    }

    fn checked(&mut self, s: &model::Script, notify: bool) -> Result<CheckedScript, String> {
        let run_as = self.run_as(s)?;
        let cmd = if s.argv.is_empty() {
            ScriptCommand::parse(&s.command).map_err(|e| e.to_string())?
        } else {
            ScriptCommand::from_argv(s.argv.iter())
        };
        let res = if notify {
            check_notify_script(&cmd, &run_as, self.security)
        } else {
            check_script(&cmd, &run_as, self.security)
        };
        let checked = res.map_err(|e| e.to_string())?;
        self.warnings.extend(checked.warnings.iter().cloned());
        Ok(checked)
    }

    fn notify_set(
        &mut self,
        owner: &str,
        scripts: [&Option<model::Script>; 7],
    ) -> Result<NotifyScripts, PlanError> {
        let mut out = NotifyScripts::default();
        let slots: [&mut Option<CheckedScript>; 7] = [
            &mut out.master,
            &mut out.backup,
            &mut out.fault,
            &mut out.stop,
            &mut out.notify,
            &mut out.deleted,
            &mut out.master_rx_lower_pri,
        ];
        for (slot, script) in slots.into_iter().zip(scripts) {
            if let Some(s) = script {
                *slot = Some(self.checked(s, true).map_err(|message| PlanError::Script {
                    what: format!("{owner}: notify script {}", s.command),
                    message,
                })?);
            }
        }
        Ok(out)
    }
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

type TrackerPlans = (
    Vec<(ScriptPlan, CheckedScript)>,
    Vec<FilePlan>,
    Vec<ProcessPlan>,
);

/// Builds the plan; `ids` keeps tracker ids stable across reloads.
/// The VMACs the configuration's instances need, by instance name: named
/// as configured, or `vrrp.VRID` as keepalived names them (`vrrp1.VRID`, …
/// when another instance has that name already). They must exist before
/// [`build`] runs.
pub fn vmac_specs(config: &Config) -> Result<Vec<(String, VmacSpec, VmacRole)>, PlanError> {
    let mut taken: Vec<String> = config
        .vrrp_instance
        .iter()
        .filter_map(|i| match (&i.use_vmac, &i.use_ipvlan) {
            (_, Some(u)) => u.interface.clone(),
            (Some(u), None) => u.interface.clone(),
            (None, None) => None,
        })
        .collect();
    let mut out = Vec::new();
    for inst in &config.vrrp_instance {
        if let Some(u) = &inst.use_ipvlan {
            out.push((
                inst.name.clone(),
                ipvlan_spec(config, inst, u, &mut taken)?,
                VmacRole::Own,
            ));
            continue;
        }
        let Some(u) = &inst.use_vmac else {
            continue;
        };
        let base = instance_ifindex(inst)?;
        let vrid = inst.virtual_router_id;
        let name = match &u.interface {
            Some(n) => n.clone(),
            None => free_vmac_name(
                config.global_defs.vmac_prefix.as_deref().unwrap_or("vrrp"),
                vrid,
                &mut taken,
            ),
        };
        let mac = match &u.mac {
            Some(text) => parse_mac(text).ok_or_else(|| PlanError::Interface {
                instance: inst.name.clone(),
                ifname: name.clone(),
                source: link::LinkError::NoSuchName(format!("MAC {text}")),
            })?,
            None => rfc_mac(vrid, inst.family == model::Family::Inet6),
        };
        out.push((
            inst.name.clone(),
            VmacSpec {
                name,
                base,
                kind: VmacKind::Macvlan { mac },
                group: u.group,
            },
            VmacRole::Own,
        ));
    }
    // `use_vmac_addr` (or a VIP's own `use_vmac`): one VMAC per base
    // interface and family its other addresses need, named from
    // `vmac_addr_prefix`, with the RFC MAC of the address's family (or the
    // instance's configured MAC), as keepalived makes them.
    let g = &config.global_defs;
    let addr_prefix = (g.vmac_addr_prefix.as_deref())
        .or(g.vmac_prefix.as_deref())
        .unwrap_or("vrrp");
    for inst in &config.vrrp_instance {
        let mut needed: Vec<VmacRole> = Vec::new();
        for v in inst
            .virtual_ipaddress
            .iter()
            .chain(&inst.virtual_ipaddress_excluded)
        {
            if let Some(role) = addr_vmac_role(inst, v)
                && !needed.contains(&role)
            {
                needed.push(role);
            }
        }
        for role in needed {
            let VmacRole::Addresses {
                base: base_name,
                v6,
            } = &role
            else {
                continue;
            };
            let v6 = *v6;
            let base = link::ifindex_by_name(base_name).map_err(|source| PlanError::Interface {
                instance: inst.name.clone(),
                ifname: base_name.clone(),
                source,
            })?;
            let name = free_vmac_name(addr_prefix, inst.virtual_router_id, &mut taken);
            let configured = inst.use_vmac.as_ref().and_then(|u| u.mac.as_deref());
            let mac = configured
                .and_then(parse_mac)
                .unwrap_or_else(|| rfc_mac(inst.virtual_router_id, v6));
            out.push((
                inst.name.clone(),
                VmacSpec {
                    name,
                    base,
                    kind: VmacKind::Macvlan { mac },
                    group: None,
                },
                role,
            ));
        }
    }
    Ok(out)
}

/// `use_ipvlan`: named as a VMAC would be, on the instance's interface,
/// with its address at the prefix given (a host address when none is).
fn ipvlan_spec(
    config: &Config,
    inst: &VrrpInstance,
    u: &model::UseIpvlan,
    taken: &mut Vec<String>,
) -> Result<VmacSpec, PlanError> {
    let base = instance_ifindex(inst)?;
    let name = match &u.interface {
        Some(n) => n.clone(),
        None => free_vmac_name(
            config.global_defs.vmac_prefix.as_deref().unwrap_or("vrrp"),
            inst.virtual_router_id,
            taken,
        ),
    };
    let flags = match u.mode {
        model::IpvlanMode::Bridge => 0,
        model::IpvlanMode::Private => IPVLAN_F_PRIVATE,
        model::IpvlanMode::Vepa => IPVLAN_F_VEPA,
    };
    let address = u.address.map(|a| {
        (
            a,
            u.prefix_len.unwrap_or(if a.is_ipv4() { 32 } else { 128 }),
        )
    });
    Ok(VmacSpec {
        name,
        base,
        kind: VmacKind::Ipvlan { flags, address },
        group: u.group,
    })
}

/// The index of the instance's `interface` (a VMAC's or ipvlan's base).
fn instance_ifindex(inst: &VrrpInstance) -> Result<u32, PlanError> {
    let ifname = inst
        .interface
        .clone()
        .ok_or_else(|| PlanError::NoInterface(inst.name.clone()))?;
    link::ifindex_by_name(&ifname).map_err(|source| PlanError::Interface {
        instance: inst.name.clone(),
        ifname,
        source,
    })
}

/// What a VMAC of [`vmac_specs`] is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmacRole {
    /// The instance's own (`use_vmac`): its adverts and the VIPs on its
    /// interface.
    Own,
    /// Its addresses of one family on interface `base` (`use_vmac_addr`).
    Addresses { base: String, v6: bool },
}

/// The VMAC an address needs for itself, as keepalived decides it: one on
/// another interface than the instance's, or of the other family, with
/// `use_vmac_addr` on the instance or `use_vmac` on the address. `None`: it
/// goes where it would without.
fn addr_vmac_role(inst: &VrrpInstance, v: &VirtualAddress) -> Option<VmacRole> {
    if !inst.use_vmac_addr && !v.flags.iter().any(|f| f == "use_vmac") {
        return None;
    }
    let own_family = v.address.is_ipv6() == (inst.family == model::Family::Inet6);
    let elsewhere = v
        .dev
        .as_deref()
        .is_some_and(|d| Some(d) != inst.interface.as_deref());
    if !elsewhere && own_family {
        return None;
    }
    Some(VmacRole::Addresses {
        base: v.dev.clone().or_else(|| inst.interface.clone())?,
        v6: v.address.is_ipv6(),
    })
}

/// `PREFIX.VRID`, or `PREFIXn.VRID` when taken, cut to fit IFNAMSIZ as
/// keepalived cuts it.
fn free_vmac_name(prefix: &str, vrid: u8, taken: &mut Vec<String>) -> String {
    let fit = |tail: String| -> String {
        let room = (libc::IFNAMSIZ - 1).saturating_sub(tail.len());
        let cut: String = prefix.chars().take(room).collect();
        format!("{cut}{tail}")
    };
    let name = std::iter::once(fit(format!(".{vrid}")))
        .chain((1..).map(|n| fit(format!("{n}.{vrid}"))))
        .find(|n| !taken.contains(n))
        .unwrap_or_default();
    taken.push(name.clone());
    name
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = text
        .split(':')
        .map(|o| u8::from_str_radix(o, 16).ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

/// The interface each unicast instance without `interface` runs on, as
/// the kernel routes to its peers now (in its `vrf`'s table when given):
/// they must all leave by one interface, the one its adverts are received
/// on, with that interface's address as its source unless one is
/// configured, as any instance.
/// `None` when every instance names its interface.
pub async fn resolve_interfaceless(config: &Config) -> Result<Option<Config>, PlanError> {
    if config.vrrp_instance.iter().all(|i| i.interface.is_some()) {
        return Ok(None);
    }
    let mut out = config.clone();
    for inst in out
        .vrrp_instance
        .iter_mut()
        .filter(|i| i.interface.is_none())
    {
        let why = |why: String| PlanError::Unicast {
            instance: inst.name.clone(),
            why,
        };
        let vrf = match &inst.vrf {
            Some(name) => Some(link::ifindex_by_name(name).map_err(|e| why(format!("vrf: {e}")))?),
            None => None,
        };
        let mut via: Option<(u32, IpAddr)> = None;
        for peer in &inst.unicast_peer {
            let oif = link::route_to(peer.address, vrf)
                .await
                .map_err(|e| why(format!("no interface given, and {e}")))?;
            match via {
                None => via = Some((oif, peer.address)),
                Some((first, first_peer)) if first != oif => {
                    let name = |i| link::ifname_by_index(i).unwrap_or_else(|_| i.to_string());
                    return Err(why(format!(
                        "no interface given, and its peers are routed through different \
                         interfaces ({first_peer} through {}, {} through {}): xvrrpd runs an \
                         instance on one interface; name it with `interface`",
                        name(first),
                        peer.address,
                        name(oif)
                    )));
                }
                Some(_) => {}
            }
        }
        let Some((oif, _)) = via else {
            return Err(PlanError::NoInterface(inst.name.clone()));
        };
        let ifname = link::ifname_by_index(oif).map_err(|e| why(e.to_string()))?;
        tracing::info!(
            "{}: no interface given: runs on {ifname}, where the route to its peers leaves{}",
            inst.name,
            inst.vrf
                .as_deref()
                .map(|v| format!(" (VRF {v})"))
                .unwrap_or_default()
        );
        inst.interface = Some(ifname);
    }
    Ok(Some(out))
}

pub async fn build(config: &Config, ids: &mut TrackerIds) -> Result<Plan, PlanError> {
    let resolved = resolve_interfaceless(config).await?;
    let config = resolved.as_ref().unwrap_or(config);
    let vmacs = vmac_specs(config)?;
    let g = &config.global_defs;
    let configured_user = g.script_user.as_ref().map(|u| UserSpec {
        user: u.user.clone(),
        group: u.group.clone(),
    });
    let default = default_script_user(configured_user.as_ref(), g.enable_script_security, true)
        .map_err(|e| PlanError::Script {
            what: "script_user".into(),
            message: e.to_string(),
        })?;
    let mut checker = ScriptChecker {
        default: default.run_as.clone(),
        security: g.enable_script_security,
        warnings: Vec::new(),
    };
    let uses_scripts = !config.vrrp_script.is_empty()
        || config
            .vrrp_instance
            .iter()
            .any(|i| i.notify.is_some() || i.notify_master.is_some() || i.notify_backup.is_some());
    if uses_scripts {
        checker.warnings.extend(default.warnings.iter().cloned());
    }

    let (scripts, files, processes) = tracker_plans(config, ids, &mut checker)?;
    let mut interfaces = BTreeMap::new();
    let mut instances = Vec::new();
    for inst in &config.vrrp_instance {
        let made = |spec: &VmacSpec| -> Result<VmacPlan, PlanError> {
            Ok(VmacPlan {
                ifindex: link::ifindex_by_name(&spec.name).map_err(|source| {
                    PlanError::Interface {
                        instance: inst.name.clone(),
                        ifname: spec.name.clone(),
                        source,
                    }
                })?,
                spec: spec.clone(),
                xmit_base: inst.vmac_xmit_base,
                base_mac: None,
            })
        };
        let mut vmac = None;
        let mut addr_vmacs = Vec::new();
        for (_, spec, role) in vmacs.iter().filter(|(n, ..)| *n == inst.name) {
            let mut m = made(spec)?;
            if !spec.kind.is_ipvlan() {
                m.base_mac = link::link_state(spec.base).await.ok().and_then(|l| l.mac);
            }
            match role {
                VmacRole::Own => vmac = Some(m),
                VmacRole::Addresses { .. } => addr_vmacs.push((m, role.clone())),
            }
        }
        let plan = instance_plan(
            config,
            inst,
            ids,
            &mut interfaces,
            (&scripts, &files, &processes),
            &mut checker,
            (vmac, addr_vmacs),
        )
        .await?;
        instances.push(plan);
    }
    let groups = group_plans(config, &instances, &mut checker)?;
    let mut daemon_script = |s: &Option<model::Script>, timeout: Duration, what: &str| {
        s.as_ref()
            .map(|s| {
                checker
                    .checked(s, true)
                    .map(|c| (c, timeout))
                    .map_err(|message| PlanError::Script {
                        what: format!("{what} {}", s.command),
                        message,
                    })
            })
            .transpose()
    };
    let startup_script = daemon_script(
        &g.startup_script,
        g.startup_script_timeout,
        "startup_script",
    )?;
    let shutdown_script = daemon_script(
        &g.shutdown_script,
        g.shutdown_script_timeout,
        "shutdown_script",
    )?;
    let static_vips = g
        .static_ipaddress
        .iter()
        .map(|v| {
            let ifindex = match &v.dev {
                Some(_) => 0,
                None => {
                    return Err(PlanError::Route(format!(
                        "static_ipaddress {}: needs `dev IFNAME`",
                        v.address
                    )));
                }
            };
            vip_of(v, ifindex, "static_ipaddress")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (static_routes, static_rules) =
        route_plan::resolve("static_routes", &g.static_routes, &g.static_rules)
            .map_err(PlanError::Route)?;
    let mut warnings = checker.warnings;
    if let Some(summary) = crate::script::security::security_summary(
        g.enable_script_security,
        scripts.iter().map(|(_, c)| c),
    ) {
        warnings.push(summary);
    }
    Ok(Plan {
        instances,
        groups,
        scripts,
        files,
        processes,
        bfds: bfd_plans(config, ids),
        interfaces,
        startup_delay: g.vrrp_startup_delay,
        default_run_as: checker.default,
        script_security: g.enable_script_security,
        static_vips,
        static_routes,
        static_rules,
        startup_script,
        shutdown_script,
        warnings,
    })
}

/// The health checks of the configuration, each with its stable id.
fn tracker_plans(
    config: &Config,
    ids: &mut TrackerIds,
    checker: &mut ScriptChecker,
) -> Result<TrackerPlans, PlanError> {
    let mut scripts = Vec::new();
    for s in &config.vrrp_script {
        let checked = checker
            .checked(&s.script, false)
            .map_err(|message| PlanError::Script {
                what: format!("vrrp_script {}", s.name),
                message,
            })?;
        scripts.push((
            ScriptPlan {
                id: ids.id(&format!("script:{}", s.name)),
                name: s.name.clone(),
                argv: checked.argv.clone(),
                interval: s.interval,
                timeout: s.timeout,
                rise: s.rise,
                fall: s.fall,
                init_fail: s.init_fail,
            },
            checked,
        ));
    }
    let files: Vec<FilePlan> = config
        .vrrp_track_file
        .iter()
        .map(|f| FilePlan {
            id: ids.id(&format!("file:{}", f.name)),
            name: f.name.clone(),
            path: PathBuf::from(&f.file),
            init: f
                .init_file
                .map(|(v, o)| (v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32, o)),
        })
        .collect();

    let processes: Vec<ProcessPlan> = config
        .vrrp_track_process
        .iter()
        .map(|p| ProcessPlan {
            id: ids.id(&format!("process:{}", p.name)),
            name: p.name.clone(),
            process: p.process.clone(),
            params: p.params.clone(),
            param_match: p.param_match.clone(),
            full_command: p.full_command,
            quorum: p.quorum,
            quorum_max: p.quorum_max,
            fork_delay: p.fork_delay.unwrap_or_default(),
            terminate_delay: p.terminate_delay.unwrap_or_default(),
        })
        .collect();
    Ok((scripts, files, processes))
}

/// The BFD sessions, each with its stable id (one per `bfd_instance`
/// whose events reach VRRP, tracked or not, as keepalived runs them all).
fn bfd_plans(config: &Config, ids: &mut TrackerIds) -> Vec<BfdSessionConfig> {
    config
        .bfd_instance
        .iter()
        .filter(|b| b.vrrp)
        .map(|b| BfdSessionConfig {
            id: ids.id(&format!("bfd:{}", b.name)),
            name: b.name.clone(),
            neighbor: b.neighbor_ip,
            source: b.source_ip,
            session: SessionConfig {
                desired_min_tx_us: b.min_tx_us,
                required_min_rx_us: b.min_rx_us,
                idle_tx_us: b.idle_tx_us,
                detect_mult: b.multiplier,
                passive: b.passive,
            },
            ttl: b.ttl,
            max_hops: b.max_hops,
            multihop: b.multihop,
        })
        .collect()
}

/// The sync groups that have at least one configured member.
fn group_plans(
    config: &Config,
    instances: &[InstancePlan],
    checker: &mut ScriptChecker,
) -> Result<Vec<GroupPlan>, PlanError> {
    let mut groups = Vec::new();
    for sg in &config.vrrp_sync_group {
        let members: Vec<usize> = sg
            .group
            .iter()
            .filter_map(|m| instances.iter().position(|i: &InstancePlan| &i.name == m))
            .collect();
        if members.is_empty() {
            continue;
        }
        let notify = checker.notify_set(
            &format!("vrrp_sync_group {}", sg.name),
            [
                &sg.notify_master,
                &sg.notify_backup,
                &sg.notify_fault,
                &sg.notify_stop,
                &sg.notify,
                &None,
                &None,
            ],
        )?;
        groups.push(GroupPlan {
            name: sg.name.clone(),
            members,
            notify,
        });
    }
    Ok(groups)
}

async fn instance_plan(
    config: &Config,
    inst: &VrrpInstance,
    ids: &mut TrackerIds,
    interfaces: &mut BTreeMap<u32, u32>,
    (scripts, files, processes): (&[(ScriptPlan, CheckedScript)], &[FilePlan], &[ProcessPlan]),
    checker: &mut ScriptChecker,
    (vmac, addr_vmacs): (Option<VmacPlan>, Vec<(VmacPlan, VmacRole)>),
) -> Result<InstancePlan, PlanError> {
    let g = &config.global_defs;
    let ifname = inst
        .interface
        .clone()
        .ok_or_else(|| PlanError::NoInterface(inst.name.clone()))?;
    let if_err = |source| PlanError::Interface {
        instance: inst.name.clone(),
        ifname: ifname.clone(),
        source,
    };
    let ifindex = link::ifindex_by_name(&ifname).map_err(if_err)?;
    let family = match inst.family {
        model::Family::Inet => Family::V4,
        model::Family::Inet6 => Family::V6,
    };
    let version = if inst.version == 2 {
        Version::V2
    } else {
        Version::V3
    };
    // With no usable source address yet (interface still coming up, IPv6
    // DAD running) the instance waits in FAULT, as keepalived does, instead
    // of keeping the daemon from starting: a "source" tracker with weight 0
    // holds it there until the address appears.
    // `use_ipvlan`'s address is the source unless one is configured
    // (keepalived).
    let ipvlan_address = vmac.as_ref().and_then(|m| match m.spec.kind {
        VmacKind::Ipvlan { address, .. } => address.map(|(a, _)| a),
        VmacKind::Macvlan { .. } => None,
    });
    let configured_source = inst.unicast_src_ip.or(inst.mcast_src_ip).or(ipvlan_address);
    let source = match configured_source {
        Some(a) => Some(a),
        None => {
            let addrs = link::interface_addrs(ifindex).await.map_err(if_err)?;
            auto_source(family, &addrs)
        }
    };
    let source_tracker = configured_source
        .is_none()
        .then(|| ids.id(&format!("source:{ifindex}:{}", family_name(family))));
    let src_ip_tracker = match configured_source {
        Some(a) if inst.track_src_ip => {
            // Every interface: a unicast source may live on another one.
            let present = link::interface_addrs(0)
                .await
                .map_err(if_err)?
                .iter()
                .any(|x| x.addr == a);
            Some((ids.id(&format!("src-ip:{a}")), present))
        }
        _ => None,
    };
    let source = source.unwrap_or(match family {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    });
    // With a VMAC, the addresses on the instance's interface go on the
    // VMAC; those on other interfaces stay there (keepalived).
    // `use_vmac_addr`: those elsewhere, or of the other family, on their
    // own VMACs.
    let vip_ifindex = vmac.as_ref().map_or(ifindex, |m| m.ifindex);
    let place = |v: &VirtualAddress| -> Result<Vip, PlanError> {
        if let Some(role) = addr_vmac_role(inst, v)
            && let Some((m, _)) = addr_vmacs.iter().find(|(_, r)| *r == role)
        {
            let mut on = v.clone();
            on.dev = None;
            return vip_of(&on, m.ifindex, &inst.name);
        }
        // With a VMAC, the addresses on the instance's interface go on the
        // VMAC (keepalived 2.2.7 puts the other family's there too); those
        // on other interfaces stay there.
        let mut v = v.clone();
        if vmac.is_some() && v.dev.as_deref().is_none_or(|d| d == ifname) {
            v.dev = None;
        }
        vip_of(&v, vip_ifindex, &inst.name)
    };
    let vips = inst
        .virtual_ipaddress
        .iter()
        .map(place)
        .collect::<Result<Vec<_>, _>>()?;
    let excluded = inst
        .virtual_ipaddress_excluded
        .iter()
        .map(place)
        .collect::<Result<Vec<_>, _>>()?;

    let mut router = router_config(inst, g, version, family, source, &vips);
    // keepalived: the addresses on other interfaces with `all`, else only
    // those on `use_vmac_addr`'s VMACs.
    let own = vmac.as_ref().map_or(ifindex, |m| m.ifindex);
    let garp_extra_if: Vec<IpAddr> = match inst.garp_extra_if {
        Some(x) if !g.vrrp_min_garp => vips
            .iter()
            .chain(&excluded)
            .filter(|v| {
                if x.all {
                    v.ifindex != own
                } else {
                    addr_vmacs.iter().any(|(m, _)| m.ifindex == v.ifindex)
                }
            })
            .map(|v| v.addr)
            .collect(),
        _ => Vec::new(),
    };
    if let Some(x) = inst.garp_extra_if
        && !garp_extra_if.is_empty()
    {
        router.garp.extra_if_ns = duration_ns(x.interval);
    }
    let unicast = !router.unicast_peers.is_empty();
    let (trackers, names) = instance_trackers(
        config,
        inst,
        ids,
        interfaces,
        (scripts, files, processes),
        (&ifname, vmac.as_ref().map(|m| m.spec.name.as_str()), family),
        (
            source,
            source_tracker,
            src_ip_tracker.map(|(id, _)| id),
            src_ip_tracker.is_some_and(|(_, present)| present),
        ),
    )
    .await;
    router.trackers = trackers;

    let (routes, rules) = route_plan::resolve(
        &format!("vrrp_instance {}", inst.name),
        &inst.virtual_routes,
        &inst.virtual_rules,
    )
    .map_err(PlanError::Route)?;
    let mut vrid = vrid_spec(g, inst, (&ifname, ifindex), &router);
    // A macvlan's adverts reach the IP layer on the macvlan; an ipvlan's
    // base hands them to its own stack first.
    vrid.vmac_ifindex = vmac
        .as_ref()
        .filter(|m| !m.spec.kind.is_ipvlan())
        .map(|m| m.ifindex);
    let group_addr = vrid.group;
    let notify = checker.notify_set(
        &format!("vrrp_instance {}", inst.name),
        [
            &inst.notify_master,
            &inst.notify_backup,
            &inst.notify_fault,
            &inst.notify_stop,
            &inst.notify,
            &inst.notify_deleted_script,
            &inst.notify_master_rx_lower_pri,
        ],
    )?;
    Ok(InstancePlan {
        name: inst.name.clone(),
        notify_deleted: inst.notify_deleted,
        notify_priority_changes: inst.notify_priority_changes,
        ifname: ifname.clone(),
        ifindex,
        vrid,
        dest: if unicast {
            AdvertDest::Unicast(router.unicast_peers.clone())
        } else {
            AdvertDest::Multicast(group_addr)
        },
        checksum: if g.v3_checksum_as_v2 && version == Version::V3 && family == Family::V4 {
            V3Ipv4Checksum::Plain
        } else if old_checksum_applies(&router)
            && inst.old_unicast_checksum == model::OldUnicastChecksum::Always
        {
            V3Ipv4Checksum::OldUnicast
        } else {
            V3Ipv4Checksum::PseudoHeader
        },
        detect_old_checksum: !g.v3_checksum_as_v2
            && old_checksum_applies(&router)
            && inst.old_unicast_checksum == model::OldUnicastChecksum::Detect,
        router,
        no_track: inst
            .virtual_ipaddress
            .iter()
            .chain(&inst.virtual_ipaddress_excluded)
            .filter(|v| v.no_track)
            .map(|v| v.address)
            .collect(),
        vips,
        excluded,
        source,
        notify,
        sync_group: inst.sync_group.clone(),
        tracker_names: names,
        source_tracker,
        src_ip_tracker: src_ip_tracker.map(|(id, _)| id),
        unicast_ttl: inst.unicast_ttl.unwrap_or(xvrrpd_common::VRRP_TTL),
        promote_secondaries: inst.promote_secondaries,
        routes,
        rules,
        // IPv6 adverts always leave from the base: from the VMAC they would
        // need a link-local address there, one more address whose groups a
        // backup would report (see the datapath's VMAC report filter).
        // An ipvlan's adverts leave from its base too: the same bytes on
        // the wire (the ipvlan has the base's MAC, the source is its
        // address), without the ipvlan's deferred multicast transmit.
        advert_ifindex: vmac
            .as_ref()
            .filter(|m| !m.xmit_base && family == Family::V4 && !m.spec.kind.is_ipvlan())
            .map_or(ifindex, |m| m.ifindex),
        vmac,
        addr_vmacs: addr_vmacs.into_iter().map(|(m, _)| m).collect(),
        garp_extra_if,
    })
}

/// keepalived 1.3.5's checksum differs from today's only for VRRPv3 over
/// IPv4 unicast: the group stood in the pseudo-header for the peer.
fn old_checksum_applies(router: &RouterConfig) -> bool {
    !router.unicast_peers.is_empty() && router.version == Version::V3 && router.family == Family::V4
}

/// The datapath entry of an instance: what the kernel checks its adverts
/// against, and the multicast group it joins.
fn vrid_spec(
    g: &model::GlobalDefs,
    inst: &VrrpInstance,
    (ifname, ifindex): (&str, u32),
    router: &RouterConfig,
) -> VridSpec {
    let unicast = !router.unicast_peers.is_empty();
    let (key_family, global_group) = match router.family {
        Family::V4 => (FAMILY_IPV4, IpAddr::V4(g.vrrp_mcast_group4)),
        Family::V6 => (FAMILY_IPV6, IpAddr::V6(g.vrrp_mcast_group6)),
    };
    let group_addr = inst.mcast_dst_ip.unwrap_or(global_group);
    let mut vcfg = VridConfig {
        flags: if unicast { 0 } else { VRID_FLAG_CHECK_TTL },
        auth_type: router.auth.type_code(),
        v2_interval_s: 0,
        _pad: [0; 5],
        auth_data: router.auth.data(),
    };
    if router.version == Version::V2 {
        vcfg.v2_interval_s = u8::try_from(inst.advert_int_centis / 100).unwrap_or(0);
    }
    if old_checksum_applies(router) && inst.old_unicast_checksum != model::OldUnicastChecksum::Never
    {
        vcfg.flags |= VRID_FLAG_OLD_CHECKSUM;
    }
    VridSpec {
        ifname: ifname.to_string(),
        key: VridKey::new(ifindex, key_family, inst.virtual_router_id),
        cfg: vcfg,
        group: group_addr,
        vmac_ifindex: None,
    }
}

/// The state machine's configuration of one instance.
fn router_config(
    inst: &VrrpInstance,
    g: &model::GlobalDefs,
    version: Version,
    family: Family,
    source: IpAddr,
    vips: &[Vip],
) -> RouterConfig {
    let unicast = !inst.unicast_peer.is_empty();
    let mut router = RouterConfig::new(
        inst.name.clone(),
        inst.virtual_router_id,
        version,
        inst.priority,
        source,
        vips.iter().map(|v| v.addr).collect(),
    );
    router.family = family;
    router.advert_int_cs = inst.advert_int_centis;
    router.initial_state = match inst.state {
        model::State::Master => InitialState::Master,
        model::State::Backup => InitialState::Backup,
    };
    router.nopreempt = inst.nopreempt;
    router.preempt_delay_ns = duration_ns(inst.preempt_delay);
    router.accept = inst.accept;
    router.lower_prio_no_advert = inst.lower_prio_no_advert;
    // A master that steps down for a higher priority tells it so with one
    // advert of its own: after a split brain the owner then hears a lower
    // priority and re-announces the VIPs, whichever advert crosses first.
    // keepalived leaves this off unless `higher_prio_send_advert`; strict
    // mode keeps the RFC's silence.
    router.higher_prio_send_advert = inst.higher_prio_send_advert || !inst.strict_mode;
    router.down_timer_adverts = inst.down_timer_adverts;
    router.auth = match &inst.authentication {
        Some(a) if version == Version::V2 => match a.auth_type {
            model::AuthType::Pass => Auth::pass(a.auth_pass.as_deref().unwrap_or("")),
            model::AuthType::Ah => Auth::Ah([0; 8]),
        },
        _ => Auth::None,
    };
    router.strict = inst.strict_mode;
    router.garp = if g.vrrp_min_garp {
        GarpConfig::min_garp()
    } else {
        GarpConfig {
            master_delay_ns: duration_ns(inst.garp_master_delay),
            master_repeat: inst.garp_master_repeat,
            master_refresh_ns: duration_ns(inst.garp_master_refresh),
            master_refresh_repeat: inst.garp_master_refresh_repeat,
            lower_prio_delay_ns: duration_ns(inst.garp_lower_prio_delay),
            lower_prio_repeat: inst.garp_lower_prio_repeat,
            interval_ns: duration_ns(g.vrrp_garp_interval),
            na_interval_ns: duration_ns(g.vrrp_gna_interval),
            // Set by `instance_plan`, which knows the VIPs' interfaces.
            extra_if_ns: 0,
        }
    };
    router.skip_check_adv_addr = inst.skip_check_adv_addr;
    router.check_unicast_src = inst.check_unicast_src;
    router.unicast_peers = inst.unicast_peer.iter().map(|p| p.address).collect();
    router.check_ttl = !unicast;

    router
}

/// The objects an instance tracks (its interface, others, its source
/// address, scripts, files, processes, its sync group's), with names for
/// status; interface trackers are also entered in `interfaces`.
async fn instance_trackers(
    config: &Config,
    inst: &VrrpInstance,
    ids: &mut TrackerIds,
    interfaces: &mut BTreeMap<u32, u32>,
    (scripts, files, processes): (&[(ScriptPlan, CheckedScript)], &[FilePlan], &[ProcessPlan]),
    (ifname, vmac, family): (&str, Option<&str>, Family),
    (source, source_tracker, src_ip_tracker, src_ip_present): (
        IpAddr,
        Option<TrackerId>,
        Option<TrackerId>,
        bool,
    ),
) -> (Vec<TrackerConfig>, Vec<(TrackerId, String, &'static str)>) {
    let mut names = Vec::new();
    let mut trackers = Vec::new();
    let binary = |id: TrackerId, weight: i32, reverse: bool, initial: TrackState| TrackerConfig {
        id,
        kind: TrackerKind::Binary,
        weight,
        reverse,
        initial,
    };
    // The instance's own interface puts it in FAULT when down, unless
    // `dont_track_primary`.
    let mut tracked_ifaces: Vec<(String, i32, bool)> = Vec::new();
    if !inst.dont_track_primary {
        tracked_ifaces.push((ifname.to_string(), 0, false));
    }
    // Its VMAC too: the VIPs and adverts live there (keepalived tracks it
    // as the instance's interface).
    if let Some(v) = vmac {
        tracked_ifaces.push((v.to_string(), 0, false));
    }
    let group = config
        .vrrp_sync_group
        .iter()
        .find(|sg| sg.group.iter().any(|m| m == &inst.name));
    let group_ifaces = group.map(|sg| sg.track_interface.as_slice()).unwrap_or(&[]);
    for t in inst.track_interface.iter().chain(group_ifaces) {
        tracked_ifaces.push((t.name.clone(), t.weight, t.weight_reverse));
    }
    for (name, weight, reverse) in tracked_ifaces {
        let Ok(idx) = link::ifindex_by_name(&name) else {
            // keepalived: a tracked interface that does not exist is down.
            let id = ids.id(&format!("iface-missing:{name}"));
            trackers.push(binary(id, weight, reverse, TrackState::Down));
            names.push((id, name, "interface"));
            continue;
        };
        let id = ids.id(&format!("iface:{idx}"));
        interfaces.insert(id.0, idx);
        let up = link::link_state(idx).await.map(|l| l.up).unwrap_or(false);
        trackers.push(binary(
            id,
            weight,
            reverse,
            if up { TrackState::Up } else { TrackState::Down },
        ));
        names.push((id, name, "interface"));
    }
    if let Some(id) = source_tracker {
        let up = !source.is_unspecified();
        trackers.push(binary(
            id,
            0,
            false,
            if up { TrackState::Up } else { TrackState::Down },
        ));
        names.push((
            id,
            format!("{} address on {ifname}", family_name(family)),
            "source",
        ));
    }
    if let Some(id) = src_ip_tracker {
        let state = if src_ip_present {
            TrackState::Up
        } else {
            TrackState::Down
        };
        trackers.push(binary(id, 0, false, state));
        names.push((id, source.to_string(), "source"));
    }
    // keepalived: `unicast_fault_no_peer` without peers is a configuration
    // fault; the instance stays in FAULT rather than fall back to multicast.
    if inst.unicast_fault_no_peer && inst.unicast_peer.is_empty() {
        let id = ids.id(&format!("no-unicast-peer:{}", inst.name));
        trackers.push(binary(id, 0, false, TrackState::Down));
        names.push((id, "unicast peers (none configured)".into(), "config"));
    }
    let group_scripts = group.map(|sg| sg.track_script.as_slice()).unwrap_or(&[]);
    for r in inst.track_script.iter().chain(group_scripts) {
        if let Some((sp, _)) = scripts.iter().find(|(s, _)| s.name == r.name) {
            let init = crate::tracker::script::RiseFall::new(sp.rise, sp.fall, sp.init_fail)
                .initial_state();
            let initial = init.unwrap_or(TrackState::Up);
            trackers.push(binary(sp.id, r.weight, r.weight_reverse, initial));
            names.push((sp.id, r.name.clone(), "script"));
        }
    }
    let group_files = group.map(|sg| sg.track_file.as_slice()).unwrap_or(&[]);
    for r in inst.track_file.iter().chain(group_files) {
        if let Some(fp) = files.iter().find(|f| f.name == r.name) {
            trackers.push(TrackerConfig {
                id: fp.id,
                kind: TrackerKind::Value,
                weight: r.weight,
                reverse: r.weight_reverse,
                initial: TrackState::Value(0),
            });
            names.push((fp.id, r.name.clone(), "file"));
        }
    }
    // Down until the session comes up, as keepalived starts them.
    let group_bfds = group.map(|sg| sg.track_bfd.as_slice()).unwrap_or(&[]);
    for r in inst.track_bfd.iter().chain(group_bfds) {
        let id = ids.id(&format!("bfd:{}", r.name));
        trackers.push(binary(id, r.weight, r.weight_reverse, TrackState::Down));
        names.push((id, r.name.clone(), "bfd"));
    }
    let group_procs = group.map(|sg| sg.track_process.as_slice()).unwrap_or(&[]);
    for r in inst.track_process.iter().chain(group_procs) {
        if let Some(pp) = processes.iter().find(|p| p.name == r.name) {
            trackers.push(binary(pp.id, r.weight, r.weight_reverse, TrackState::Up));
            names.push((pp.id, r.name.clone(), "process"));
        }
    }
    (trackers, names)
}

/// The advert source xvrrpd picks when none is configured: the interface's
/// primary IPv4 address, or its IPv6 link-local address (RFC 9568 §5.1.2.1).
pub fn auto_source(family: Family, addrs: &[crate::net::addr::AddrInfo]) -> Option<IpAddr> {
    match family {
        Family::V4 => link::primary_ipv4(addrs).map(IpAddr::V4),
        Family::V6 => link::ipv6_link_local(addrs).map(IpAddr::V6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SystemHost, analyze_source};

    fn specs(text: &str) -> Vec<(String, VmacSpec, VmacRole)> {
        let r = analyze_source(text.as_bytes(), "t.conf", &SystemHost);
        assert!(!r.has_errors(), "{:?}", r.diagnostics);
        vmac_specs(&r.config).expect("specs")
    }

    #[test]
    fn vmac_names_follow_keepalived() {
        // `lo` exists everywhere; nothing is created here.
        let s = specs(
            "global_defs {\n vmac_prefix averyveryverylongprefix\n}\n\
             vrrp_instance A {\n interface lo\n use_vmac\n virtual_router_id 7\n \
             virtual_ipaddress {\n 10.0.0.1/24\n }\n}\n\
             vrrp_instance C {\n interface lo\n use_vmac averyveryvery.7 02:00:00:00:07:\n \
             virtual_router_id 9\n virtual_ipaddress {\n 10.0.2.1/24\n }\n}\n",
        );
        let names: Vec<&str> = s.iter().map(|(_, v, _)| v.name.as_str()).collect();
        // Cut to 15 characters; a name another instance has gets a number.
        assert_eq!(names, ["averyveryver1.7", "averyveryvery.7"]);
        assert_eq!(s[0].1.kind, mac([0, 0, 0x5e, 0, 1, 7]));
        assert_eq!(s[1].1.kind, mac([2, 0, 0, 0, 7, 9]));
    }

    #[test]
    fn use_vmac_addr_gives_the_other_family_a_vmac_of_its_own() {
        let s = specs(
            "global_defs {\n vmac_addr_prefix addr\n}\n\
             vrrp_instance A {\n interface lo\n use_vmac\n use_vmac_addr\n \
             virtual_router_id 7\n virtual_ipaddress {\n 10.0.0.1/24\n }\n \
             virtual_ipaddress_excluded {\n 10.0.1.1/24\n 2001:db8::1/64\n \
             2001:db8::2/64\n }\n}\n\
             vrrp_instance B {\n interface lo\n virtual_router_id 8\n \
             virtual_ipaddress {\n 10.0.2.1/24\n }\n \
             virtual_ipaddress_excluded {\n 2001:db8::8/64\n }\n}\n",
        );
        let got: Vec<(&str, &str, VmacRole, VmacKind)> = s
            .iter()
            .map(|(i, v, r)| (i.as_str(), v.name.as_str(), r.clone(), v.kind))
            .collect();
        // The IPv4 ones go on A's own VMAC; both IPv6 ones share one of the
        // IPv6 MAC; B has neither keyword and gets none.
        assert_eq!(
            got,
            [
                ("A", "vrrp.7", VmacRole::Own, mac([0, 0, 0x5e, 0, 1, 7])),
                (
                    "A",
                    "addr.7",
                    VmacRole::Addresses {
                        base: "lo".into(),
                        v6: true
                    },
                    mac([0, 0, 0x5e, 0, 2, 7])
                ),
            ]
        );
    }

    fn mac(mac: [u8; 6]) -> VmacKind {
        VmacKind::Macvlan { mac }
    }

    #[test]
    fn use_ipvlan_is_named_like_a_vmac_and_carries_its_address() {
        let s = specs(
            "vrrp_instance A {\n interface lo\n use_ipvlan 10.0.0.11/24 private\n \
             virtual_router_id 7\n virtual_ipaddress {\n 10.0.0.1/24\n }\n}\n\
             vrrp_instance B {\n interface lo\n use_vmac\n use_ipvlan lb8 10.0.2.12\n \
             virtual_router_id 8\n virtual_ipaddress {\n 10.0.2.1/24\n }\n}\n",
        );
        let got: Vec<(&str, &str, VmacRole, VmacKind)> = s
            .iter()
            .map(|(i, v, r)| (i.as_str(), v.name.as_str(), r.clone(), v.kind))
            .collect();
        // B's ipvlan wins over its use_vmac (as in keepalived); a host
        // address when no prefix is given.
        assert_eq!(
            got,
            [
                (
                    "A",
                    "vrrp.7",
                    VmacRole::Own,
                    VmacKind::Ipvlan {
                        flags: IPVLAN_F_PRIVATE,
                        address: Some(("10.0.0.11".parse().expect("ip"), 24))
                    }
                ),
                (
                    "B",
                    "lb8",
                    VmacRole::Own,
                    VmacKind::Ipvlan {
                        flags: 0,
                        address: Some(("10.0.2.12".parse().expect("ip"), 32))
                    }
                ),
            ]
        );
    }
}
