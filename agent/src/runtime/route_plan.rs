//! `virtual_routes`/`virtual_rules` and `static_routes`/`static_rules`
//! resolved against the host: interface names to indexes, table, scope and
//! protocol names to numbers (iproute2's files), into what
//! [`crate::net::route`] installs. Part of the plan: nothing here touches
//! the host beyond reading names.

use std::path::Path;

use crate::{
    config::model::{self, RouteType, RuleAction},
    net::{
        link,
        route::{MARK_PROTOCOL, NextHopSpec, RouteKind, RouteSpec, RuleActionSpec, RuleSpec},
    },
};

/// A route as it runs: what is installed, and how the file said it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRoute {
    pub spec: RouteSpec,
    pub text: String,
    /// Not put back when someone else deletes it.
    pub no_track: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRule {
    pub spec: RuleSpec,
    pub text: String,
    pub no_track: bool,
}

const RT_TABLE_MAIN: u32 = 254;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;

/// Where iproute2 keeps its name files: /etc first, then the distribution's
/// defaults (iproute2 6.x moved them to /usr/share).
const IPROUTE2_DIRS: [&str; 3] = ["/etc/iproute2", "/usr/share/iproute2", "/usr/lib/iproute2"];

/// `NAME` → number from iproute2's `file` (`rt_tables`, `rt_protos`,
/// `rt_scopes`), or the built-ins iproute2 knows without a file.
fn named_number(file: &str, name: &str, builtin: &[(&str, u32)]) -> Option<u32> {
    if let Ok(n) = parse_number(name) {
        return Some(n);
    }
    if let Some((_, n)) = builtin.iter().find(|(b, _)| *b == name) {
        return Some(*n);
    }
    IPROUTE2_DIRS.iter().find_map(|dir| {
        let text = std::fs::read_to_string(Path::new(dir).join(file)).ok()?;
        lookup_in(&text, name)
    })
}

/// `0x`-hex or decimal, as iproute2 reads numbers.
fn parse_number(s: &str) -> Result<u32, std::num::ParseIntError> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
}

/// `NUMBER NAME` lines of an iproute2 name file.
fn lookup_in(text: &str, name: &str) -> Option<u32> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?, w.next()?))
        })
        .find(|(_, n)| *n == name)
        .and_then(|(num, _)| parse_number(num).ok())
}

fn table_id(name: &str) -> Result<u32, String> {
    named_number(
        "rt_tables",
        name,
        &[("unspec", 0), ("default", 253), ("main", 254), ("local", 255)],
    )
    .ok_or_else(|| {
        format!("table {name} is not a number nor in iproute2's rt_tables: add it there or use its number")
    })
}

fn protocol_id(name: &str) -> Result<u8, String> {
    let n = named_number(
        "rt_protos",
        name,
        &[
            ("unspec", 0),
            ("redirect", 1),
            ("kernel", 2),
            ("boot", 3),
            ("static", 4),
            ("gated", 8),
            ("ra", 9),
            ("mrt", 10),
            ("zebra", 11),
            ("bird", 12),
            ("dnrouted", 13),
            ("xorp", 14),
            ("ntk", 15),
            ("dhcp", 16),
            ("keepalived", 18),
            ("babel", 42),
            ("bgp", 186),
            ("isis", 187),
            ("ospf", 188),
            ("rip", 189),
            ("eigrp", 192),
        ],
    )
    .ok_or_else(|| format!("protocol {name} is not a number nor in iproute2's rt_protos"))?;
    u8::try_from(n).map_err(|_| format!("protocol {name} is out of range 0..255"))
}

fn scope_id(name: &str) -> Result<u8, String> {
    let n = named_number(
        "rt_scopes",
        name,
        &[
            ("global", 0),
            ("universe", 0),
            ("site", 200),
            ("link", 253),
            ("host", 254),
            ("nowhere", 255),
        ],
    )
    .ok_or_else(|| format!("scope {name} is not a number nor in iproute2's rt_scopes"))?;
    u8::try_from(n).map_err(|_| format!("scope {name} is out of range 0..255"))
}

fn ifindex(name: &str) -> Result<u32, String> {
    link::ifindex_by_name(name).map_err(|e| e.to_string())
}

/// The route `r` as the kernel takes it.
pub fn route(r: &model::Route) -> Result<PlannedRoute, String> {
    let kind = match r.route_type {
        RouteType::Unicast => RouteKind::Unicast,
        RouteType::Blackhole => RouteKind::Blackhole,
        RouteType::Unreachable => RouteKind::Unreachable,
        RouteType::Prohibit => RouteKind::Prohibit,
        RouteType::Throw => RouteKind::Throw,
    };
    let oif = r.dev.as_deref().map(ifindex).transpose()?;
    let multipath = r
        .nexthops
        .iter()
        .map(|h| {
            Ok(NextHopSpec {
                gateway: h.via,
                oif: h.dev.as_deref().map(ifindex).transpose()?,
                weight: h.weight.unwrap_or(1),
                onlink: h.onlink,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    // `ip route`'s default: a unicast route with no gateway is on-link.
    let has_gateway = r.via.is_some() || multipath.iter().any(|h| h.gateway.is_some());
    let scope = match &r.scope {
        Some(s) => scope_id(s)?,
        None if kind == RouteKind::Unicast && !has_gateway => RT_SCOPE_LINK,
        None => RT_SCOPE_UNIVERSE,
    };
    Ok(PlannedRoute {
        spec: RouteSpec {
            kind,
            dst: r.to.address,
            dst_len: r.to.prefix_len,
            src: r.src,
            gateway: r.via,
            oif,
            table: r
                .table
                .as_deref()
                .map(table_id)
                .transpose()?
                .unwrap_or(RT_TABLE_MAIN),
            scope,
            priority: r.metric,
            protocol: r
                .protocol
                .as_deref()
                .map(protocol_id)
                .transpose()?
                .unwrap_or(MARK_PROTOCOL),
            tos: r.tos.unwrap_or(0),
            mtu: r.mtu,
            onlink: r.onlink,
            multipath,
        },
        text: r.text.clone(),
        no_track: r.no_track,
    })
}

/// The rule `r` as the kernel takes it.
pub fn rule(r: &model::Rule) -> Result<PlannedRule, String> {
    let action = match &r.action {
        RuleAction::Table(t) => RuleActionSpec::Table(table_id(t)?),
        RuleAction::Goto(n) => RuleActionSpec::Goto(*n),
        RuleAction::Blackhole => RuleActionSpec::Blackhole,
        RuleAction::Unreachable => RuleActionSpec::Unreachable,
        RuleAction::Prohibit => RuleActionSpec::Prohibit,
        RuleAction::Nop => RuleActionSpec::Nop,
    };
    let prefix = |p: &Option<model::Prefix>| p.map(|p| (p.address, p.prefix_len));
    Ok(PlannedRule {
        spec: RuleSpec {
            v6: r.family == model::Family::Inet6,
            invert: r.invert,
            src: prefix(&r.from),
            dst: prefix(&r.to),
            iif: r.iif.clone(),
            oif: r.oif.clone(),
            tos: r.tos.unwrap_or(0),
            fwmark: r.fwmark,
            fwmask: r.fwmask,
            priority: r.priority,
            action,
            protocol: MARK_PROTOCOL,
        },
        text: r.text.clone(),
        no_track: r.no_track,
    })
}

/// Every route and rule of `routes` / `rules`, or the first that cannot
/// be resolved, named with its line.
pub fn resolve(
    owner: &str,
    routes: &[model::Route],
    rules: &[model::Rule],
) -> Result<(Vec<PlannedRoute>, Vec<PlannedRule>), String> {
    let rs = routes
        .iter()
        .map(|r| route(r).map_err(|e| format!("{owner}: route `{}`: {e}", r.text)))
        .collect::<Result<Vec<_>, _>>()?;
    let ls = rules
        .iter()
        .map(|r| rule(r).map_err(|e| format!("{owner}: rule `{}`: {e}", r.text)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rs, ls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iproute2_name_files_are_read_as_iproute2_does() {
        let text = "# comment\n255\tlocal\n254 main\n100   lb # the LB's table\n0x65 hex\n";
        assert_eq!(lookup_in(text, "lb"), Some(100));
        assert_eq!(lookup_in(text, "main"), Some(254));
        assert_eq!(lookup_in(text, "hex"), Some(101));
        assert_eq!(lookup_in(text, "comment"), None);
        assert_eq!(table_id("main"), Ok(254));
        assert_eq!(table_id("100"), Ok(100));
        assert_eq!(protocol_id("bird"), Ok(12));
        assert_eq!(scope_id("link"), Ok(253));
        assert!(protocol_id("300").is_err());
    }
}
