//! Routes and policy rules through rtnetlink, for keepalived's
//! `virtual_routes`, `virtual_rules`, `static_routes` and `static_rules`.
//!
//! # The marker
//!
//! Every route and rule xvrrpd installs carries the routing protocol
//! [`MARK_PROTOCOL`] (18, which iproute2's `rt_protos` calls `keepalived`,
//! so `ip route` shows `proto keepalived`), unless the configuration names
//! another. A start after `kill -9` lists and removes them with
//! [`RouteManager::remove_stale_marked`]. What the mark cannot do, said
//! plainly:
//!
//! * it says "installed by a keepalived-like daemon": a keepalived, or a
//!   second xvrrpd, in the same network namespace uses the same number and
//!   its routes and rules are taken for ours;
//! * routes and rules given another `protocol` in the configuration are not
//!   found by the mark;
//! * rules carry a protocol only on kernels ≥ 4.17 (`FRA_PROTOCOL`). Older
//!   kernels drop it: rules there cannot be listed by the mark at all, and a
//!   stale rule stays until removed by hand (`ip rule del …`).
//!
//! # Kernel behaviour worth knowing
//!
//! * Routes are added the way keepalived and `ip route prepend` add them:
//!   `NLM_F_CREATE` without `EXCL`, `REPLACE` or `APPEND`. An identical
//!   route already there is `EEXIST` ([`Outcome::AlreadyThere`]). An IPv4
//!   route with the same destination, TOS and metric but another next hop
//!   goes in front of the existing one; the same for IPv6 becomes another
//!   ECMP next hop of it.
//! * Rules are added with `NLM_F_CREATE | NLM_F_EXCL`, as `ip rule add`
//!   does: the kernel reports `EEXIST` only then. It compares every selector
//!   and the priority, but not `not` (`FIB_RULE_INVERT`): `not from X` and
//!   `from X` at one priority are "the same rule" to it, on add and on
//!   delete. A rule without a priority gets one from the kernel, so the
//!   kernel never finds it a duplicate; [`RouteManager::add_rules`] looks for
//!   an equal rule itself in that case.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use netlink_packet_core::Parseable;
use netlink_packet_route::{
    AddressFamily,
    route::{
        RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
        RouteNextHop, RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
    },
    rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage},
};
use thiserror::Error;
use tokio::sync::Mutex;

use super::nl::{
    NLM_F_CREATE, NLM_F_EXCL, NlError, NlSocket, RTM_DELROUTE, RTM_DELRULE, RTM_GETROUTE,
    RTM_GETRULE, RTM_NEWROUTE, RTM_NEWRULE,
};

/// Routes and rules xvrrpd installs carry this protocol (iproute2's
/// rt_protos calls 18 "keepalived").
pub const MARK_PROTOCOL: u8 = 18;

/// The main routing table (`RT_TABLE_MAIN`).
pub const RT_TABLE_MAIN: u32 = 254;
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_LINK: u8 = 253;
pub const RT_SCOPE_HOST: u8 = 254;
const RT_SCOPE_NOWHERE: u8 = 255;
/// The metric the kernel gives an IPv6 route added without one.
const IP6_RT_PRIO_USER: u32 = 1024;
/// Interface names are at most 15 bytes (`IFNAMSIZ` - 1).
const IFNAME_MAX: usize = 15;

/// Acks are small; a burst of a few hundred changes fits easily.
const RCVBUF: usize = 1 << 20;

/// The route type (`ip route add TYPE …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
}

impl RouteKind {
    fn route_type(&self) -> RouteType {
        match self {
            RouteKind::Unicast => RouteType::Unicast,
            RouteKind::Blackhole => RouteType::BlackHole,
            RouteKind::Unreachable => RouteType::Unreachable,
            RouteKind::Prohibit => RouteType::Prohibit,
            RouteKind::Throw => RouteType::Throw,
        }
    }

    fn from_route_type(t: RouteType) -> Option<Self> {
        Some(match t {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::BlackHole => RouteKind::Blackhole,
            RouteType::Unreachable => RouteKind::Unreachable,
            RouteType::Prohibit => RouteKind::Prohibit,
            RouteType::Throw => RouteKind::Throw,
            _ => return None,
        })
    }

    fn word(&self) -> &'static str {
        match self {
            RouteKind::Unicast => "unicast",
            RouteKind::Blackhole => "blackhole",
            RouteKind::Unreachable => "unreachable",
            RouteKind::Prohibit => "prohibit",
            RouteKind::Throw => "throw",
        }
    }
}

/// One next hop of a multipath route (`nexthop via … dev … weight …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHopSpec {
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// 1..=256, as `ip route` takes it; on the wire `rtnh_hops` = weight - 1.
    pub weight: u16,
    pub onlink: bool,
}

impl NextHopSpec {
    fn next_hop(&self) -> RouteNextHop {
        let mut nh = RouteNextHop::default();
        // Weights outside 1..=256 are refused by `validate`; clamp for
        // removals, which are not validated.
        nh.hops = u8::try_from(self.weight.saturating_sub(1)).unwrap_or(u8::MAX);
        nh.interface_index = self.oif.unwrap_or(0);
        if self.onlink {
            nh.flags = RouteNextHopFlags::Onlink;
        }
        if let Some(g) = self.gateway {
            nh.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(g)));
        }
        nh
    }

    fn parse(nh: &RouteNextHop) -> Option<Self> {
        let mut gateway = None;
        for a in &nh.attributes {
            match a {
                RouteAttribute::Gateway(g) => gateway = Some(ip_of(g)?),
                // Next hops in another family or tunnelled: not ours.
                RouteAttribute::Via(_) | RouteAttribute::Encap(_) | RouteAttribute::NhId(_) => {
                    return None;
                }
                _ => {}
            }
        }
        Some(NextHopSpec {
            gateway,
            oif: (nh.interface_index != 0).then_some(nh.interface_index),
            weight: u16::from(nh.hops) + 1,
            onlink: nh.flags.contains(RouteNextHopFlags::Onlink),
        })
    }
}

/// One route, as keepalived's `virtual_routes` / `static_routes` describe
/// it after names are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub kind: RouteKind,
    /// The destination; its family is the route's.
    pub dst: IpAddr,
    pub dst_len: u8,
    /// Preferred source address (`src`, `RTA_PREFSRC`).
    pub src: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// [`RT_TABLE_MAIN`] unless configured; 0 also means main.
    pub table: u32,
    /// `RT_SCOPE_*`: universe (0) for routes via a gateway, link (253) for
    /// on-link routes, as `ip route` picks ([`RouteSpec::ip_route_scope`]).
    pub scope: u8,
    /// Metric (`RTA_PRIORITY`). IPv6 routes without one get 1024.
    pub priority: Option<u32>,
    /// [`MARK_PROTOCOL`] unless the configuration names another.
    pub protocol: u8,
    pub tos: u8,
    /// `mtu` (`RTA_METRICS` / `RTAX_MTU`).
    pub mtu: Option<u32>,
    /// `onlink`: the gateway is on the link even without a matching subnet.
    pub onlink: bool,
    /// ECMP next hops (`RTA_MULTIPATH`); when not empty, `gateway` and
    /// `oif` are `None`.
    pub multipath: Vec<NextHopSpec>,
}

impl RouteSpec {
    /// A unicast route in the main table with the mark, scope universe and
    /// nothing else set.
    pub fn new(dst: IpAddr, dst_len: u8) -> Self {
        RouteSpec {
            kind: RouteKind::Unicast,
            dst,
            dst_len,
            src: None,
            gateway: None,
            oif: None,
            table: RT_TABLE_MAIN,
            scope: RT_SCOPE_UNIVERSE,
            priority: None,
            protocol: MARK_PROTOCOL,
            tos: 0,
            mtu: None,
            onlink: false,
            multipath: Vec::new(),
        }
    }

    /// The scope `ip route add` would give this route when none is named:
    /// link for a unicast route without any gateway, universe otherwise.
    pub fn ip_route_scope(&self) -> u8 {
        let has_gateway =
            self.gateway.is_some() || self.multipath.iter().any(|h| h.gateway.is_some());
        if self.kind == RouteKind::Unicast && !has_gateway {
            RT_SCOPE_LINK
        } else {
            RT_SCOPE_UNIVERSE
        }
    }

    fn is_v6(&self) -> bool {
        self.dst.is_ipv6()
    }

    fn family(&self) -> AddressFamily {
        if self.is_v6() {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        }
    }

    /// The table the kernel puts the route in (0 means main).
    fn effective_table(&self) -> u32 {
        if self.table == 0 {
            RT_TABLE_MAIN
        } else {
            self.table
        }
    }

    /// The metric the kernel gives the route: IPv6 routes without one get
    /// 1024; IPv4 ones keep 0.
    fn effective_priority(&self) -> u32 {
        match self.priority.unwrap_or(0) {
            0 if self.is_v6() => IP6_RT_PRIO_USER,
            p => p,
        }
    }

    /// Every interface index the route names (for an ENODEV error).
    fn ifindexes(&self) -> Vec<u32> {
        self.oif
            .into_iter()
            .chain(self.multipath.iter().filter_map(|h| h.oif))
            .collect()
    }

    /// What the kernel tells routes apart by: for matching a deletion notice
    /// to a configured route.
    ///
    /// Family, table, destination and prefix length, TOS, metric (with the
    /// kernel's IPv6 default of 1024) and type: the kernel keeps a
    /// blackhole and a unicast route to one destination side by side. For
    /// IPv6 the next hop of a single-path route is part of its identity too
    /// (routes that differ only in it become ECMP siblings, and each can be
    /// deleted alone): the gateway must be equal, and the interface when
    /// both name one (a notice always names it, a configuration may leave
    /// it to the kernel). When either is multipath, hops are not compared:
    /// a notice may carry the whole route or the one hop that went.
    pub fn same_route(&self, other: &RouteSpec) -> bool {
        let key = self.is_v6() == other.is_v6()
            && self.kind == other.kind
            && self.effective_table() == other.effective_table()
            && self.dst == other.dst
            && self.dst_len == other.dst_len
            && self.tos == other.tos
            && self.effective_priority() == other.effective_priority();
        if !key || !self.is_v6() || !self.multipath.is_empty() || !other.multipath.is_empty() {
            return key;
        }
        self.gateway == other.gateway
            && match (self.oif, other.oif) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// Checks what the kernel would refuse, or take differently from what
    /// is written (it masks IPv6 host bits silently).
    pub fn validate(&self) -> Result<(), RouteError> {
        let bad = |why: String| RouteError::InvalidRoute {
            route: Box::new(self.clone()),
            why,
        };
        let v6 = self.is_v6();
        let max = if v6 { 128 } else { 32 };
        if self.dst_len > max {
            return Err(bad(format!(
                "prefix length {} is above {max}",
                self.dst_len
            )));
        }
        if masked(self.dst, self.dst_len) != self.dst {
            return Err(bad(format!(
                "the destination has host bits set; the network is {}/{}",
                masked(self.dst, self.dst_len),
                self.dst_len
            )));
        }
        let other_family = |a: &IpAddr| a.is_ipv6() != v6;
        if self.src.as_ref().is_some_and(other_family) {
            return Err(bad("src is of the other address family".into()));
        }
        if self.gateway.as_ref().is_some_and(other_family) {
            return Err(bad("the gateway is of the other address family".into()));
        }
        if v6 && self.tos != 0 {
            return Err(bad("IPv6 routes have no tos".into()));
        }
        if !self.multipath.is_empty() {
            if self.gateway.is_some() || self.oif.is_some() {
                return Err(bad(
                    "a multipath route names its gateways and interfaces in its next hops".into(),
                ));
            }
            for h in &self.multipath {
                if h.gateway.as_ref().is_some_and(other_family) {
                    return Err(bad("a next hop is of the other address family".into()));
                }
                if h.gateway.is_none() && h.oif.is_none() {
                    return Err(bad("a next hop has neither gateway nor interface".into()));
                }
                if !(1..=256).contains(&h.weight) {
                    return Err(bad(format!("next hop weight {} is not 1..256", h.weight)));
                }
            }
        }
        match self.kind {
            RouteKind::Unicast => {
                if self.gateway.is_none() && self.oif.is_none() && self.multipath.is_empty() {
                    return Err(bad("a unicast route needs a gateway or an interface".into()));
                }
            }
            _ => {
                if self.gateway.is_some() || !self.multipath.is_empty() {
                    return Err(bad(format!("a {} route has no next hop", self.kind.word())));
                }
            }
        }
        Ok(())
    }

    fn header(&self) -> RouteHeader {
        RouteHeader {
            address_family: self.family(),
            destination_prefix_length: self.dst_len,
            tos: self.tos,
            // Tables above 255 go in RTA_TABLE, with RT_TABLE_UNSPEC here,
            // as iproute2 sends them.
            table: u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC),
            protocol: RouteProtocol::from(self.protocol),
            kind: self.kind.route_type(),
            flags: if self.onlink {
                RouteFlags::Onlink
            } else {
                RouteFlags::empty()
            },
            ..RouteHeader::default()
        }
    }

    /// The next-hop attributes, shared by add and delete: on delete they
    /// pick this route among others to the same destination.
    fn push_next_hops(&self, a: &mut Vec<RouteAttribute>) {
        if let Some(g) = self.gateway {
            a.push(RouteAttribute::Gateway(RouteAddress::from(g)));
        }
        if let Some(o) = self.oif {
            a.push(RouteAttribute::Oif(o));
        }
        if !self.multipath.is_empty() {
            a.push(RouteAttribute::MultiPath(
                self.multipath.iter().map(NextHopSpec::next_hop).collect(),
            ));
        }
    }

    fn message(&self) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header = self.header();
        m.header.scope = RouteScope::from(self.scope);
        let a = &mut m.attributes;
        a.push(RouteAttribute::Destination(RouteAddress::from(self.dst)));
        if self.table > 255 {
            a.push(RouteAttribute::Table(self.table));
        }
        if let Some(s) = self.src {
            a.push(RouteAttribute::PrefSource(RouteAddress::from(s)));
        }
        if let Some(p) = self.priority {
            a.push(RouteAttribute::Priority(p));
        }
        if let Some(mtu) = self.mtu {
            a.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        self.push_next_hops(a);
        m
    }

    /// What `ip route del` sends for this route, plus the protocol, so that
    /// only a route with our mark goes.
    ///
    /// Scope "nowhere" tells the kernel not to compare scopes. Metrics are
    /// left out (the kernel then does not compare them). IPv4 cannot ask
    /// for "metric 0" exactly: without a metric the kernel takes the first
    /// route of that destination and TOS with a matching next hop.
    fn delete_message(&self) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header = self.header();
        m.header.scope = RouteScope::from(RT_SCOPE_NOWHERE);
        let a = &mut m.attributes;
        a.push(RouteAttribute::Destination(RouteAddress::from(self.dst)));
        if self.table > 255 {
            a.push(RouteAttribute::Table(self.table));
        }
        if let Some(s) = self.src {
            a.push(RouteAttribute::PrefSource(RouteAddress::from(s)));
        }
        // IPv6 without a metric would match any metric: name the one the
        // kernel gave the route.
        if self.priority.is_some() || self.is_v6() {
            a.push(RouteAttribute::Priority(self.effective_priority()));
        }
        self.push_next_hops(a);
        m
    }
}

/// iproute2's name of a scope other than universe.
fn scope_word(scope: u8) -> Option<String> {
    match scope {
        RT_SCOPE_UNIVERSE => None,
        200 => Some("site".into()),
        RT_SCOPE_LINK => Some("link".into()),
        RT_SCOPE_HOST => Some("host".into()),
        RT_SCOPE_NOWHERE => Some("nowhere".into()),
        n => Some(n.to_string()),
    }
}

/// `ip route` syntax, with interface indexes instead of names.
impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind != RouteKind::Unicast {
            write!(f, "{} ", self.kind.word())?;
        }
        write!(f, "{}/{}", self.dst, self.dst_len)?;
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(o) = self.oif {
            write!(f, " ifindex {o}")?;
        }
        if let Some(s) = self.src {
            write!(f, " src {s}")?;
        }
        if self.effective_table() != RT_TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        if let Some(p) = self.priority {
            write!(f, " metric {p}")?;
        }
        if self.tos != 0 {
            write!(f, " tos 0x{:02x}", self.tos)?;
        }
        if let Some(w) = scope_word(self.scope) {
            write!(f, " scope {w}")?;
        }
        if let Some(m) = self.mtu {
            write!(f, " mtu {m}")?;
        }
        if self.onlink {
            write!(f, " onlink")?;
        }
        if self.protocol != MARK_PROTOCOL {
            write!(f, " proto {}", self.protocol)?;
        }
        for h in &self.multipath {
            write!(f, " nexthop")?;
            if let Some(g) = h.gateway {
                write!(f, " via {g}")?;
            }
            if let Some(o) = h.oif {
                write!(f, " ifindex {o}")?;
            }
            write!(f, " weight {}", h.weight)?;
            if h.onlink {
                write!(f, " onlink")?;
            }
        }
        Ok(())
    }
}

/// What a rule does when it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleActionSpec {
    /// `lookup TABLE`.
    Table(u32),
    /// `goto PRIORITY`: continue at the rule with that priority.
    Goto(u32),
    Blackhole,
    Unreachable,
    Prohibit,
    Nop,
}

impl RuleActionSpec {
    fn action(&self) -> RuleAction {
        match self {
            RuleActionSpec::Table(_) => RuleAction::ToTable,
            RuleActionSpec::Goto(_) => RuleAction::Goto,
            RuleActionSpec::Blackhole => RuleAction::Blackhole,
            RuleActionSpec::Unreachable => RuleAction::Unreachable,
            RuleActionSpec::Prohibit => RuleAction::Prohibit,
            RuleActionSpec::Nop => RuleAction::Nop,
        }
    }
}

/// One policy rule, as keepalived's `virtual_rules` / `static_rules`
/// describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    /// An IPv6 rule (`ip -6 rule`).
    pub v6: bool,
    /// `not` (`FIB_RULE_INVERT`).
    pub invert: bool,
    /// `from PREFIX`; a length of 0 is `from all`.
    pub src: Option<(IpAddr, u8)>,
    /// `to PREFIX`.
    pub dst: Option<(IpAddr, u8)>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub tos: u8,
    pub fwmark: Option<u32>,
    /// Without a mask the kernel compares the whole mark.
    pub fwmask: Option<u32>,
    /// `priority`; without one the kernel picks one below the first rule
    /// after `local`.
    pub priority: Option<u32>,
    pub action: RuleActionSpec,
    /// `FRA_PROTOCOL` (kernel ≥ 4.17): [`MARK_PROTOCOL`].
    pub protocol: u8,
}

impl RuleSpec {
    /// `from all lookup TABLE` with the mark.
    pub fn lookup(v6: bool, table: u32) -> Self {
        RuleSpec {
            v6,
            invert: false,
            src: None,
            dst: None,
            iif: None,
            oif: None,
            tos: 0,
            fwmark: None,
            fwmask: None,
            priority: None,
            action: RuleActionSpec::Table(table),
            protocol: MARK_PROTOCOL,
        }
    }

    /// `(mark, mask)` as the kernel keeps them: a mark without a mask is
    /// compared whole.
    fn effective_mark(&self) -> (u32, u32) {
        let mark = self.fwmark.unwrap_or(0);
        let mask = self.fwmask.unwrap_or(if mark != 0 { u32::MAX } else { 0 });
        (mark, mask)
    }

    /// Every selector, the action and the priority, as the kernel keeps
    /// them: `from` with length 0 is no `from`, a mark without a mask has
    /// the full mask, and a missing priority (the kernel picks one) matches
    /// any. The protocol is not compared: kernels before 4.17 do not report
    /// it.
    pub fn same_rule(&self, other: &RuleSpec) -> bool {
        let prefix = |p: &Option<(IpAddr, u8)>| p.filter(|(_, len)| *len > 0);
        let name = |n: &Option<String>| n.clone().filter(|s| !s.is_empty());
        self.v6 == other.v6
            && self.invert == other.invert
            && prefix(&self.src) == prefix(&other.src)
            && prefix(&self.dst) == prefix(&other.dst)
            && name(&self.iif) == name(&other.iif)
            && name(&self.oif) == name(&other.oif)
            && self.tos == other.tos
            && self.effective_mark() == other.effective_mark()
            && match (self.priority, other.priority) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
            && self.action == other.action
    }

    /// Checks what the kernel would refuse.
    pub fn validate(&self) -> Result<(), RouteError> {
        let bad = |why: String| RouteError::InvalidRule {
            rule: Box::new(self.clone()),
            why,
        };
        let max = if self.v6 { 128 } else { 32 };
        for (word, p) in [("from", &self.src), ("to", &self.dst)] {
            if let Some((a, len)) = p {
                if a.is_ipv6() != self.v6 {
                    return Err(bad(format!("`{word}` is of the other address family")));
                }
                if *len > max {
                    return Err(bad(format!("`{word}` prefix length {len} is above {max}")));
                }
            }
        }
        for (word, n) in [("iif", &self.iif), ("oif", &self.oif)] {
            if let Some(n) = n
                && (n.is_empty() || n.len() > IFNAME_MAX || n.as_bytes().contains(&0))
            {
                return Err(bad(format!(
                    "`{word}` must be an interface name of 1 to 15 bytes"
                )));
            }
        }
        match self.action {
            RuleActionSpec::Table(0) => {
                return Err(bad("table 0 is not a routing table".into()));
            }
            RuleActionSpec::Goto(target) => {
                if let Some(p) = self.priority
                    && target <= p
                {
                    return Err(bad(format!(
                        "goto {target} must jump to a later rule than its own priority {p}"
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The same for add and delete: on delete the kernel compares every
    /// selector given (and the protocol, so only a rule with our mark
    /// goes), but not the invert flag.
    fn message(&self) -> RuleMessage {
        let mut m = RuleMessage::default();
        let h = &mut m.header;
        h.family = if self.v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        h.tos = self.tos;
        h.action = self.action.action();
        if self.invert {
            h.flags = RuleFlags::Invert;
        }
        let a = &mut m.attributes;
        // A zero-length prefix is "all": the kernel reads no address then.
        if let Some((ip, len)) = self.src.filter(|(_, l)| *l > 0) {
            h.src_len = len;
            a.push(RuleAttribute::Source(ip));
        }
        if let Some((ip, len)) = self.dst.filter(|(_, l)| *l > 0) {
            h.dst_len = len;
            a.push(RuleAttribute::Destination(ip));
        }
        if let Some(n) = &self.iif {
            a.push(RuleAttribute::Iifname(n.clone()));
        }
        if let Some(n) = &self.oif {
            a.push(RuleAttribute::Oifname(n.clone()));
        }
        if let Some(v) = self.fwmark {
            a.push(RuleAttribute::FwMark(v));
        }
        if let Some(v) = self.fwmask {
            a.push(RuleAttribute::FwMask(v));
        }
        if let Some(p) = self.priority {
            a.push(RuleAttribute::Priority(p));
        }
        match self.action {
            RuleActionSpec::Table(t) => match u8::try_from(t) {
                Ok(t) => h.table = t,
                // As iproute2: RT_TABLE_UNSPEC in the header, the id in
                // FRA_TABLE.
                Err(_) => a.push(RuleAttribute::Table(t)),
            },
            RuleActionSpec::Goto(target) => a.push(RuleAttribute::Goto(target)),
            _ => {}
        }
        a.push(RuleAttribute::Protocol(RouteProtocol::from(self.protocol)));
        m
    }
}

/// `ip rule` syntax.
impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.invert {
            write!(f, "not ")?;
        }
        match self.src.filter(|(_, l)| *l > 0) {
            Some((a, l)) => write!(f, "from {a}/{l}")?,
            None => write!(f, "from all")?,
        }
        if let Some((a, l)) = self.dst.filter(|(_, l)| *l > 0) {
            write!(f, " to {a}/{l}")?;
        }
        if let Some(n) = &self.iif {
            write!(f, " iif {n}")?;
        }
        if let Some(n) = &self.oif {
            write!(f, " oif {n}")?;
        }
        if self.tos != 0 {
            write!(f, " tos 0x{:02x}", self.tos)?;
        }
        if let Some(m) = self.fwmark {
            write!(f, " fwmark 0x{m:x}")?;
        }
        if let Some(m) = self.fwmask {
            write!(f, "/0x{m:x}")?;
        }
        if let Some(p) = self.priority {
            write!(f, " priority {p}")?;
        }
        match &self.action {
            RuleActionSpec::Table(t) => write!(f, " lookup {t}")?,
            RuleActionSpec::Goto(t) => write!(f, " goto {t}")?,
            RuleActionSpec::Blackhole => write!(f, " blackhole")?,
            RuleActionSpec::Unreachable => write!(f, " unreachable")?,
            RuleActionSpec::Prohibit => write!(f, " prohibit")?,
            RuleActionSpec::Nop => write!(f, " nop")?,
        }
        if self.protocol != MARK_PROTOCOL {
            write!(f, " proto {}", self.protocol)?;
        }
        if self.v6 {
            write!(f, " (IPv6)")?;
        }
        Ok(())
    }
}

/// What an add or a removal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Add: the kernel already had it (EEXIST). It may not carry our mark.
    AlreadyThere,
    /// Remove: it was not there (ESRCH / ENOENT, or its interface is gone).
    AlreadyGone,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    #[error("invalid route {route}: {why}; fix it in the configuration")]
    InvalidRoute { route: Box<RouteSpec>, why: String },
    #[error("invalid rule {rule}: {why}; fix it in the configuration")]
    InvalidRule { rule: Box<RuleSpec>, why: String },
    #[error(
        "cannot add route {route}: the interface it names (ifindex {}) does not exist (ENODEV); it was removed or renumbered: recreate it, or fix the route's `dev` and reload",
        join(.ifindexes)
    )]
    NoSuchInterface {
        route: Box<RouteSpec>,
        ifindexes: Vec<u32>,
    },
    #[error("cannot add route {route}: {source}")]
    AddRoute {
        route: Box<RouteSpec>,
        source: NlError,
    },
    #[error("cannot remove route {route}: {source}")]
    RemoveRoute {
        route: Box<RouteSpec>,
        source: NlError,
    },
    #[error("cannot add rule {rule}: {source}")]
    AddRule {
        rule: Box<RuleSpec>,
        source: NlError,
    },
    #[error("cannot remove rule {rule}: {source}")]
    RemoveRule {
        rule: Box<RuleSpec>,
        source: NlError,
    },
    #[error("cannot list routes: {0}")]
    ListRoutes(NlError),
    #[error("cannot list rules: {0}")]
    ListRules(NlError),
    #[error(
        "{failed} marked routes or rules a previous run left could not be removed (remove them by hand with `ip route`/`ip rule`); the first: {first}"
    )]
    StaleLeft {
        failed: usize,
        first: Box<RouteError>,
    },
    #[error("{0}")]
    Netlink(NlError),
    #[error("the thread that installs routes and rules stopped: restart xvrrpd")]
    WorkerGone,
}

fn join(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// Installs and removes routes and rules; one netlink socket, shared behind
/// a lock so the runtime can call it from any task.
pub struct RouteManager {
    sock: Mutex<NlSocket>,
}

impl RouteManager {
    /// Opens the netlink socket. Call inside a tokio runtime with IO (and
    /// time) enabled.
    pub fn new() -> Result<Self, RouteError> {
        let sock = NlSocket::open(&[], RCVBUF).map_err(RouteError::Netlink)?;
        // With it, route dumps return only marked routes: a host with a
        // full BGP table is not copied to us. Filtered here anyway.
        sock.set_strict_check();
        Ok(RouteManager {
            sock: Mutex::new(sock),
        })
    }

    /// Adds each route as keepalived does (`ip route prepend`: create, no
    /// exclusive, replace or append), in one pipelined batch; one result per
    /// route, in order. A route already there is
    /// [`Outcome::AlreadyThere`]; a failure of one does not stop the others.
    pub async fn add_routes(&self, routes: &[RouteSpec]) -> Vec<Result<Outcome, RouteError>> {
        let mut out: Vec<Option<Result<Outcome, RouteError>>> = vec![None; routes.len()];
        let mut idx = Vec::with_capacity(routes.len());
        let mut msgs = Vec::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            match r.validate() {
                Ok(()) => {
                    idx.push(i);
                    msgs.push(r.message());
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let acks = self
            .sock
            .lock()
            .await
            .request_acked(RTM_NEWROUTE, NLM_F_CREATE, &msgs)
            .await;
        for (i, ack) in idx.into_iter().zip(acks) {
            let r = &routes[i];
            out[i] = Some(match ack {
                Ok(()) => Ok(Outcome::Done),
                Err(e) if e.errno() == Some(libc::EEXIST) => Ok(Outcome::AlreadyThere),
                Err(e) if e.errno() == Some(libc::ENODEV) => Err(RouteError::NoSuchInterface {
                    route: Box::new(r.clone()),
                    ifindexes: r.ifindexes(),
                }),
                Err(source) => Err(RouteError::AddRoute {
                    route: Box::new(r.clone()),
                    source,
                }),
            });
        }
        fill(out)
    }

    /// Removes each route (only with its protocol), in one pipelined batch;
    /// one result per route. A route already gone is
    /// [`Outcome::AlreadyGone`].
    pub async fn remove_routes(&self, routes: &[RouteSpec]) -> Vec<Result<Outcome, RouteError>> {
        let msgs: Vec<RouteMessage> = routes.iter().map(RouteSpec::delete_message).collect();
        let acks = self
            .sock
            .lock()
            .await
            .request_acked(RTM_DELROUTE, 0, &msgs)
            .await;
        routes
            .iter()
            .zip(acks)
            .map(|(r, ack)| match ack {
                Ok(()) => Ok(Outcome::Done),
                // ENODEV: the interface is gone, and its routes with it.
                Err(e) if matches!(e.errno(), Some(libc::ESRCH | libc::ENOENT | libc::ENODEV)) => {
                    Ok(Outcome::AlreadyGone)
                }
                Err(source) => Err(RouteError::RemoveRoute {
                    route: Box::new(r.clone()),
                    source,
                }),
            })
            .collect()
    }

    /// Adds each rule (`ip rule add`: create, exclusive), in one pipelined
    /// batch; one result per rule. A rule already there is
    /// [`Outcome::AlreadyThere`]. For a rule without a priority the kernel
    /// cannot tell (it gives each add a new priority), so the rules are
    /// listed first and an equal one with the same protocol counts as there.
    pub async fn add_rules(&self, rules: &[RuleSpec]) -> Vec<Result<Outcome, RouteError>> {
        let mut out: Vec<Option<Result<Outcome, RouteError>>> = vec![None; rules.len()];
        let mut sock = self.sock.lock().await;
        let existing = if rules.iter().any(|r| r.priority.is_none()) {
            match dump_rules(&mut sock).await {
                Ok(e) => e,
                Err(e) => {
                    let e = RouteError::ListRules(e);
                    return rules.iter().map(|_| Err(e.clone())).collect();
                }
            }
        } else {
            Vec::new()
        };
        let mut idx = Vec::with_capacity(rules.len());
        let mut msgs = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            if let Err(e) = r.validate() {
                out[i] = Some(Err(e));
            } else if r.priority.is_none()
                && existing
                    .iter()
                    .any(|x| x.protocol == r.protocol && r.same_rule(x))
            {
                out[i] = Some(Ok(Outcome::AlreadyThere));
            } else {
                idx.push(i);
                msgs.push(r.message());
            }
        }
        let acks = sock
            .request_acked(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, &msgs)
            .await;
        for (i, ack) in idx.into_iter().zip(acks) {
            out[i] = Some(match ack {
                Ok(()) => Ok(Outcome::Done),
                Err(e) if e.errno() == Some(libc::EEXIST) => Ok(Outcome::AlreadyThere),
                Err(source) => Err(RouteError::AddRule {
                    rule: Box::new(rules[i].clone()),
                    source,
                }),
            });
        }
        fill(out)
    }

    /// Removes each rule (only with its protocol, on kernels that keep it),
    /// in one pipelined batch; one result per rule. A rule without a
    /// priority removes the first equal rule the kernel finds.
    pub async fn remove_rules(&self, rules: &[RuleSpec]) -> Vec<Result<Outcome, RouteError>> {
        let msgs: Vec<RuleMessage> = rules.iter().map(RuleSpec::message).collect();
        let acks = self
            .sock
            .lock()
            .await
            .request_acked(RTM_DELRULE, 0, &msgs)
            .await;
        rules
            .iter()
            .zip(acks)
            .map(|(r, ack)| match ack {
                Ok(()) => Ok(Outcome::Done),
                Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::ESRCH)) => {
                    Ok(Outcome::AlreadyGone)
                }
                Err(source) => Err(RouteError::RemoveRule {
                    rule: Box::new(r.clone()),
                    source,
                }),
            })
            .collect()
    }

    /// Every route in every table (both families) whose protocol is
    /// [`MARK_PROTOCOL`]. The kernel's own routes (local table, IPv6
    /// multicast, cached clones) are never listed.
    pub async fn list_marked_routes(&self) -> Result<Vec<RouteSpec>, RouteError> {
        let mut sock = self.sock.lock().await;
        let mut out = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            out.extend(
                dump_routes(&mut sock, family as u8, MARK_PROTOCOL)
                    .await
                    .map_err(RouteError::ListRoutes)?,
            );
        }
        Ok(out)
    }

    /// Every rule (both families) whose protocol is [`MARK_PROTOCOL`].
    /// Kernels before 4.17 keep no protocol on rules: there the list is
    /// always empty.
    pub async fn list_marked_rules(&self) -> Result<Vec<RuleSpec>, RouteError> {
        let mut sock = self.sock.lock().await;
        let mut all = dump_rules(&mut sock).await.map_err(RouteError::ListRules)?;
        all.retain(|r| r.protocol == MARK_PROTOCOL);
        Ok(all)
    }

    /// Startup cleanup: removes every marked route and rule (a previous
    /// run's) and returns what went. When some could not be removed, the
    /// error counts them and names the first; the rest are removed anyway.
    pub async fn remove_stale_marked(&self) -> Result<(Vec<RouteSpec>, Vec<RuleSpec>), RouteError> {
        let routes = self.list_marked_routes().await?;
        let rules = self.list_marked_rules().await?;
        let mut failed = Vec::new();
        let mut gone_routes = Vec::new();
        for (r, res) in routes.iter().zip(self.remove_routes(&routes).await) {
            match res {
                Ok(_) => gone_routes.push(r.clone()),
                Err(e) => failed.push(e),
            }
        }
        let mut gone_rules = Vec::new();
        for (r, res) in rules.iter().zip(self.remove_rules(&rules).await) {
            match res {
                Ok(_) => gone_rules.push(r.clone()),
                Err(e) => failed.push(e),
            }
        }
        match failed.len() {
            0 => Ok((gone_routes, gone_rules)),
            n => Err(RouteError::StaleLeft {
                failed: n,
                first: Box::new(failed.swap_remove(0)),
            }),
        }
    }
}

/// Unwraps per-item slots; a slot left empty (never expected) is an
/// overrun.
fn fill(out: Vec<Option<Result<Outcome, RouteError>>>) -> Vec<Result<Outcome, RouteError>> {
    out.into_iter()
        .map(|r| r.unwrap_or(Err(RouteError::Netlink(NlError::Overrun))))
        .collect()
}

/// Dumps the routes of one family. `protocol` goes in the request header:
/// with strict checking the kernel returns only those routes; without, it
/// returns all and they are filtered here.
async fn dump_routes(
    sock: &mut NlSocket,
    family: u8,
    protocol: u8,
) -> Result<Vec<RouteSpec>, NlError> {
    let mut header = [0u8; 12];
    header[0] = family;
    header[5] = protocol;
    let mut out = Vec::new();
    sock.dump(RTM_GETROUTE, &header, |kind, payload| {
        // The protocol byte first: most of a big table is skipped unparsed.
        if kind == RTM_NEWROUTE
            && payload.get(5) == Some(&protocol)
            && let Some(r) = parse_route(payload)
        {
            out.push(r);
        }
    })
    .await?;
    Ok(out)
}

/// Dumps the rules of both families.
async fn dump_rules(sock: &mut NlSocket) -> Result<Vec<RuleSpec>, NlError> {
    let mut out = Vec::new();
    sock.dump(RTM_GETRULE, &[0u8; 12], |kind, payload| {
        if kind == RTM_NEWRULE
            && let Some(r) = parse_rule(payload)
        {
            out.push(r);
        }
    })
    .await?;
    Ok(out)
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

/// `addr` with the bits past `len` cleared.
fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(len.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let bits = u32::from(len.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// Parses an `RTM_NEWROUTE` / `RTM_DELROUTE` payload (after the
/// `nlmsghdr`): a dump entry or a notification.
///
/// `None` for what a [`RouteSpec`] cannot describe, and so what xvrrpd
/// never installs: families other than IPv4/IPv6, local, broadcast,
/// multicast and other types, cached clones (`RTM_F_CLONED`),
/// source-specific (`from`) routes, next-hop objects, other-family (`via
/// inet`) and encapsulated next hops.
pub fn parse_route(payload: &[u8]) -> Option<RouteSpec> {
    let m = RouteMessage::parse(payload).ok()?;
    let h = &m.header;
    let v6 = match h.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    if h.flags.contains(RouteFlags::Cloned) || h.source_prefix_length != 0 {
        return None;
    }
    let kind = RouteKind::from_route_type(h.kind)?;
    let mut r = RouteSpec::new(
        if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        },
        h.destination_prefix_length,
    );
    r.kind = kind;
    r.table = u32::from(h.table);
    r.scope = u8::from(h.scope);
    r.protocol = u8::from(h.protocol);
    r.tos = h.tos;
    r.onlink = h.flags.contains(RouteFlags::Onlink);
    for a in &m.attributes {
        match a {
            // A default route comes without RTA_DST.
            RouteAttribute::Destination(d) => r.dst = ip_of(d)?,
            RouteAttribute::Gateway(g) => r.gateway = Some(ip_of(g)?),
            RouteAttribute::PrefSource(s) => r.src = Some(ip_of(s)?),
            RouteAttribute::Oif(o) => r.oif = Some(*o),
            RouteAttribute::Priority(p) => r.priority = Some(*p),
            RouteAttribute::Table(t) => r.table = *t,
            RouteAttribute::Metrics(ms) => {
                for x in ms {
                    if let RouteMetric::Mtu(v) = x {
                        r.mtu = Some(*v);
                    }
                }
            }
            RouteAttribute::MultiPath(hops) => {
                r.multipath = hops
                    .iter()
                    .map(NextHopSpec::parse)
                    .collect::<Option<Vec<_>>>()?;
            }
            RouteAttribute::Via(_)
            | RouteAttribute::Encap(_)
            | RouteAttribute::NhId(_)
            | RouteAttribute::Source(_) => return None,
            _ => {}
        }
    }
    if r.dst.is_ipv6() != v6 {
        return None;
    }
    Some(r)
}

/// Parses an `RTM_NEWRULE` / `RTM_DELRULE` payload (after the `nlmsghdr`).
///
/// `None` for families other than IPv4/IPv6, and for rules with selectors
/// or actions a [`RuleSpec`] cannot describe (uid ranges, IP protocols,
/// ports, tunnel ids, `l3mdev`, `suppress_*`, realms): xvrrpd never
/// installs those, and leaves them alone.
pub fn parse_rule(payload: &[u8]) -> Option<RuleSpec> {
    let m = RuleMessage::parse(payload).ok()?;
    let h = &m.header;
    let v6 = match h.family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut src = None;
    let mut dst = None;
    let mut r = RuleSpec::lookup(v6, u32::from(h.table));
    r.invert = h.flags.contains(RuleFlags::Invert);
    r.tos = h.tos;
    r.protocol = 0;
    let mut table = u32::from(h.table);
    let mut goto = None;
    for a in &m.attributes {
        match a {
            RuleAttribute::Source(ip) => src = Some(*ip),
            RuleAttribute::Destination(ip) => dst = Some(*ip),
            RuleAttribute::Iifname(n) => r.iif = Some(n.clone()),
            RuleAttribute::Oifname(n) => r.oif = Some(n.clone()),
            RuleAttribute::FwMark(v) => r.fwmark = Some(*v),
            RuleAttribute::FwMask(v) => r.fwmask = Some(*v),
            RuleAttribute::Priority(p) => r.priority = Some(*p),
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Goto(t) => goto = Some(*t),
            RuleAttribute::Protocol(p) => r.protocol = u8::from(*p),
            // The kernel reports "unset" as -1 (always, for the prefix
            // length), and 0 for the others.
            RuleAttribute::SuppressPrefixLen(u32::MAX)
            | RuleAttribute::SuppressIfGroup(u32::MAX)
            | RuleAttribute::TunId(0)
            | RuleAttribute::L3MDev(false) => {}
            RuleAttribute::Realm(_)
            | RuleAttribute::TunId(_)
            | RuleAttribute::SuppressIfGroup(_)
            | RuleAttribute::SuppressPrefixLen(_)
            | RuleAttribute::L3MDev(_)
            | RuleAttribute::UidRange(_)
            | RuleAttribute::IpProtocol(_)
            | RuleAttribute::SourcePortRange(_)
            | RuleAttribute::DestinationPortRange(_) => return None,
            _ => {}
        }
    }
    // The kernel reads (and reports) an address only with a length.
    if h.src_len > 0 {
        r.src = Some((src?, h.src_len));
    }
    if h.dst_len > 0 {
        r.dst = Some((dst?, h.dst_len));
    }
    let wrong_family = |p: &Option<(IpAddr, u8)>| p.is_some_and(|(a, _)| a.is_ipv6() != v6);
    if wrong_family(&r.src) || wrong_family(&r.dst) {
        return None;
    }
    r.action = match h.action {
        RuleAction::ToTable => RuleActionSpec::Table(table),
        RuleAction::Goto => RuleActionSpec::Goto(goto?),
        RuleAction::Nop => RuleActionSpec::Nop,
        RuleAction::Blackhole => RuleActionSpec::Blackhole,
        RuleAction::Unreachable => RuleActionSpec::Unreachable,
        RuleAction::Prohibit => RuleActionSpec::Prohibit,
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test literal is an address")
    }

    fn route_bytes(r: &RouteSpec) -> Vec<u8> {
        let m = r.message();
        let mut buf = vec![0; m.buffer_len()];
        m.emit(&mut buf);
        buf
    }

    fn rule_bytes(r: &RuleSpec) -> Vec<u8> {
        let m = r.message();
        let mut buf = vec![0; m.buffer_len()];
        m.emit(&mut buf);
        buf
    }

    fn routes() -> Vec<RouteSpec> {
        let mut via = RouteSpec::new(ip("10.1.0.0"), 16);
        via.gateway = Some(ip("192.0.2.1"));
        via.oif = Some(3);
        via.src = Some(ip("192.0.2.11"));
        via.priority = Some(50);
        via.mtu = Some(1400);
        via.tos = 0x10;
        let mut dev = RouteSpec::new(ip("198.51.100.0"), 24);
        dev.oif = Some(3);
        dev.scope = RT_SCOPE_LINK;
        let mut bh = RouteSpec::new(ip("203.0.113.0"), 24);
        bh.kind = RouteKind::Blackhole;
        bh.table = 100;
        let mut big = RouteSpec::new(ip("0.0.0.0"), 0);
        big.gateway = Some(ip("192.0.2.1"));
        big.table = 1000;
        big.onlink = true;
        big.protocol = 4;
        let mut mp = RouteSpec::new(ip("10.2.0.0"), 16);
        mp.multipath = vec![
            NextHopSpec {
                gateway: Some(ip("192.0.2.1")),
                oif: Some(3),
                weight: 1,
                onlink: false,
            },
            NextHopSpec {
                gateway: Some(ip("192.0.2.2")),
                oif: None,
                weight: 256,
                onlink: true,
            },
        ];
        let mut v6 = RouteSpec::new(ip("2001:db8:1::"), 48);
        v6.gateway = Some(ip("2001:db8::1"));
        v6.priority = Some(10);
        let mut v6mp = RouteSpec::new(ip("2001:db8:2::"), 48);
        v6mp.kind = RouteKind::Unicast;
        v6mp.multipath = vec![
            NextHopSpec {
                gateway: Some(ip("fe80::1")),
                oif: Some(3),
                weight: 2,
                onlink: false,
            },
            NextHopSpec {
                gateway: Some(ip("fe80::2")),
                oif: Some(4),
                weight: 3,
                onlink: false,
            },
        ];
        let mut thr = RouteSpec::new(ip("2001:db8:3::"), 64);
        thr.kind = RouteKind::Throw;
        thr.table = 300;
        vec![via, dev, bh, big, mp, v6, v6mp, thr]
    }

    #[test]
    fn routes_round_trip_through_their_messages() {
        for r in routes() {
            r.validate().expect("test routes are valid");
            let back = parse_route(&route_bytes(&r)).expect("own message parses");
            assert_eq!(back, r, "round trip of {r}");
        }
    }

    #[test]
    fn route_messages_carry_what_the_kernel_reads() {
        let rs = routes();
        // Table above 255: RT_TABLE_UNSPEC in the header, the id in RTA_TABLE.
        let m = rs[3].message();
        assert_eq!(m.header.table, 0);
        assert!(m.attributes.contains(&RouteAttribute::Table(1000)));
        assert!(m.header.flags.contains(RouteFlags::Onlink));
        let m = rs[2].message();
        assert_eq!(m.header.table, 100);
        assert_eq!(m.header.kind, RouteType::BlackHole);
        assert_eq!(u8::from(m.header.protocol), MARK_PROTOCOL);
        // Weight 256 is rtnh_hops 255.
        let m = rs[4].message();
        let hops = m
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::MultiPath(h) => Some(h.clone()),
                _ => None,
            })
            .expect("RTA_MULTIPATH");
        assert_eq!(
            hops.iter().map(|h| h.hops).collect::<Vec<_>>(),
            vec![0, 255]
        );
        // Deletion: scope nowhere, no metrics, IPv6's default metric named.
        let d = rs[0].delete_message();
        assert_eq!(u8::from(d.header.scope), RT_SCOPE_NOWHERE);
        assert!(
            !d.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Metrics(_)))
        );
        let d = rs[7].delete_message();
        assert!(d.attributes.contains(&RouteAttribute::Priority(1024)));
        let d = rs[2].delete_message();
        assert!(
            !d.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Priority(_)))
        );
    }

    #[test]
    fn what_a_route_spec_cannot_describe_does_not_parse() {
        let mut m = routes()[0].message();
        m.header.flags = RouteFlags::Cloned;
        let mut buf = vec![0; m.buffer_len()];
        m.emit(&mut buf);
        assert_eq!(parse_route(&buf), None, "cached clone");
        let mut m = routes()[0].message();
        m.header.kind = RouteType::Local;
        let mut buf = vec![0; m.buffer_len()];
        m.emit(&mut buf);
        assert_eq!(parse_route(&buf), None, "local route");
        assert_eq!(parse_route(&[2, 0, 0]), None, "truncated");
    }

    #[test]
    fn validation_refuses_what_the_kernel_would() {
        let mut r = RouteSpec::new(ip("10.1.2.0"), 16);
        r.gateway = Some(ip("192.0.2.1"));
        let e = r.validate().expect_err("host bits");
        assert!(e.to_string().contains("10.1.0.0/16"), "{e}");
        r.dst = ip("10.1.0.0");
        assert!(r.validate().is_ok());
        r.gateway = Some(ip("2001:db8::1"));
        assert!(r.validate().is_err(), "family mix");
        r.gateway = None;
        assert!(r.validate().is_err(), "unicast without next hop");
        r.kind = RouteKind::Blackhole;
        assert!(r.validate().is_ok());
        r.gateway = Some(ip("192.0.2.1"));
        assert!(r.validate().is_err(), "blackhole via");
        let mut mp = routes()[4].clone();
        mp.multipath[0].weight = 0;
        assert!(mp.validate().is_err(), "weight 0");
        let mut mp = routes()[4].clone();
        mp.oif = Some(3);
        assert!(mp.validate().is_err(), "oif beside next hops");
        let mut v6 = routes()[5].clone();
        v6.tos = 4;
        assert!(v6.validate().is_err(), "IPv6 tos");
    }

    #[test]
    fn same_route_follows_the_kernels_identity() {
        let rs = routes();
        // A deletion notice: the kernel names the interface and keeps the
        // metric, and says nothing of what the configuration left out.
        let mut notice = rs[0].clone();
        notice.oif = Some(7);
        notice.gateway = Some(ip("192.0.2.99"));
        notice.mtu = None;
        assert!(rs[0].same_route(&notice), "IPv4: next hop not compared");
        notice.priority = None;
        assert!(!rs[0].same_route(&notice), "metric compared");
        let mut other_table = rs[2].clone();
        other_table.table = 101;
        assert!(!rs[2].same_route(&other_table));
        let mut unicast = rs[2].clone();
        unicast.kind = RouteKind::Unicast;
        assert!(!rs[2].same_route(&unicast), "type compared");
        let mut main0 = rs[1].clone();
        main0.table = 0;
        assert!(rs[1].same_route(&main0), "table 0 is main");

        // IPv6: 1024 is the default metric; the gateway is identity, the
        // interface only when both name one.
        let mut v6 = RouteSpec::new(ip("2001:db8:1::"), 48);
        v6.gateway = Some(ip("2001:db8::1"));
        let mut notice = v6.clone();
        notice.priority = Some(1024);
        notice.oif = Some(3);
        assert!(v6.same_route(&notice));
        notice.gateway = Some(ip("2001:db8::2"));
        assert!(!v6.same_route(&notice), "other ECMP sibling");
        let mut pinned = v6.clone();
        pinned.oif = Some(4);
        notice.gateway = v6.gateway;
        assert!(!pinned.same_route(&notice), "other interface");
        // One hop of a multipath route going matches the route.
        let mp = rs[6].clone();
        let mut hop = RouteSpec::new(mp.dst, mp.dst_len);
        hop.gateway = Some(ip("fe80::2"));
        hop.oif = Some(4);
        assert!(mp.same_route(&hop) && hop.same_route(&mp));
        assert!(!rs[5].same_route(&rs[6]));
    }

    fn rules() -> Vec<RuleSpec> {
        let mut from = RuleSpec::lookup(false, 100);
        from.src = Some((ip("192.0.2.0"), 24));
        from.priority = Some(100);
        let mut not_to = RuleSpec::lookup(false, 1000);
        not_to.invert = true;
        not_to.dst = Some((ip("198.51.100.0"), 24));
        not_to.tos = 0x10;
        let mut mark = RuleSpec::lookup(false, 200);
        mark.fwmark = Some(0x10);
        mark.fwmask = Some(0xff);
        mark.iif = Some("eth0".into());
        mark.oif = Some("eth1".into());
        let mut goto = RuleSpec::lookup(false, 0);
        goto.action = RuleActionSpec::Goto(300);
        goto.priority = Some(200);
        let mut v6 = RuleSpec::lookup(true, 100);
        v6.src = Some((ip("2001:db8::"), 64));
        v6.dst = Some((ip("2001:db8:1::"), 48));
        v6.priority = Some(150);
        let mut bh = RuleSpec::lookup(true, 0);
        bh.action = RuleActionSpec::Blackhole;
        bh.fwmark = Some(7);
        let mut others = Vec::new();
        for action in [
            RuleActionSpec::Unreachable,
            RuleActionSpec::Prohibit,
            RuleActionSpec::Nop,
        ] {
            let mut r = RuleSpec::lookup(false, 0);
            r.action = action;
            r.protocol = 4;
            others.push(r);
        }
        let mut all = vec![from, not_to, mark, goto, v6, bh];
        all.extend(others);
        all
    }

    #[test]
    fn rules_round_trip_through_their_messages() {
        for r in rules() {
            r.validate().expect("test rules are valid");
            let back = parse_rule(&rule_bytes(&r)).expect("own message parses");
            assert_eq!(back, r, "round trip of {r}");
        }
        // Table above 255: FRA_TABLE, header table unspec.
        let m = rules()[1].message();
        assert_eq!(m.header.table, 0);
        assert!(m.attributes.contains(&RuleAttribute::Table(1000)));
        assert!(m.header.flags.contains(RuleFlags::Invert));
        assert!(
            m.attributes
                .contains(&RuleAttribute::Protocol(RouteProtocol::KeepAlived))
        );
    }

    #[test]
    fn same_rule_normalises_as_the_kernel_does() {
        let rs = rules();
        // The kernel reports the full mask, the priority it picked, and
        // (before 4.17) no protocol.
        let mut notice = rs[5].clone();
        notice.fwmask = Some(u32::MAX);
        notice.priority = Some(32765);
        notice.protocol = 0;
        assert!(rs[5].same_rule(&notice) && notice.same_rule(&rs[5]));
        notice.fwmask = Some(0xff);
        assert!(!rs[5].same_rule(&notice), "mask compared");
        let mut all = rs[0].clone();
        all.src = Some((ip("0.0.0.0"), 0));
        let mut none = rs[0].clone();
        none.src = None;
        assert!(all.same_rule(&none), "from all");
        assert!(!rs[0].same_rule(&none));
        let mut inverted = rs[0].clone();
        inverted.invert = true;
        assert!(!rs[0].same_rule(&inverted));
        let mut other_prio = rs[0].clone();
        other_prio.priority = Some(101);
        assert!(!rs[0].same_rule(&other_prio));
        let mut other_table = rs[0].clone();
        other_table.action = RuleActionSpec::Table(101);
        assert!(!rs[0].same_rule(&other_table));
        assert!(!rs[4].same_rule(&rs[0]), "family");
    }

    #[test]
    fn rule_validation_refuses_what_the_kernel_would() {
        let mut r = RuleSpec::lookup(false, 100);
        assert!(r.validate().is_ok());
        r.src = Some((ip("2001:db8::"), 64));
        assert!(r.validate().is_err(), "family");
        r.src = None;
        r.iif = Some("a-very-long-interface".into());
        assert!(r.validate().is_err(), "name length");
        r.iif = None;
        r.action = RuleActionSpec::Table(0);
        assert!(r.validate().is_err(), "table 0");
        r.action = RuleActionSpec::Goto(100);
        r.priority = Some(100);
        let e = r.validate().expect_err("backward goto");
        assert!(e.to_string().contains("goto 100"), "{e}");
    }

    #[test]
    fn errors_name_the_route_and_what_to_do() {
        let mut r = RouteSpec::new(ip("10.9.0.0"), 16);
        r.gateway = Some(ip("192.0.2.1"));
        r.oif = Some(42);
        r.table = 100;
        let e = RouteError::NoSuchInterface {
            route: Box::new(r.clone()),
            ifindexes: r.ifindexes(),
        };
        let t = e.to_string();
        assert!(
            t.contains("10.9.0.0/16 via 192.0.2.1 ifindex 42 table 100")
                && t.contains("ifindex 42")
                && t.contains("does not exist"),
            "{t}"
        );
        let t = rules()[2].to_string();
        assert_eq!(
            t, "from all iif eth0 oif eth1 fwmark 0x10/0xff lookup 200",
            "{t}"
        );
    }

    #[test]
    fn masking_clears_host_bits() {
        assert_eq!(masked(ip("10.1.2.3"), 16), ip("10.1.0.0"));
        assert_eq!(masked(ip("10.1.2.3"), 0), ip("0.0.0.0"));
        assert_eq!(masked(ip("10.1.2.3"), 32), ip("10.1.2.3"));
        assert_eq!(masked(ip("2001:db8::1"), 64), ip("2001:db8::"));
        assert_eq!(masked(ip("2001:db8::1"), 128), ip("2001:db8::1"));
    }
}
