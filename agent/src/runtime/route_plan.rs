//! `virtual_routes`/`virtual_rules` and `static_routes`/`static_rules`
//! resolved against the host: interface names to indexes, table, scope and
//! protocol names to numbers (iproute2's files), into what
//! [`crate::net::route`] installs. Part of the plan: nothing here touches
//! the host beyond reading names.

use crate::{
    config::{
        Iproute2Name, iproute2_number,
        model::{self, RouteType, RuleAction},
    },
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

/// `name` resolved as the reader accepted it (see
/// [`crate::config::iproute2_number`]), within `max`.
fn number(kind: Iproute2Name, name: &str, max: u64) -> Result<u64, String> {
    iproute2_number(kind, name)
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("{kind:?} {name} is not a number nor in iproute2's files"))
}

fn table_id(name: &str) -> Result<u32, String> {
    number(Iproute2Name::Table, name, u64::from(u32::MAX)).map(|n| n as u32)
}

fn protocol_id(name: &str) -> Result<u8, String> {
    number(Iproute2Name::Protocol, name, 255).map(|n| n as u8)
}

fn scope_id(name: &str) -> Result<u8, String> {
    number(Iproute2Name::Scope, name, 255).map(|n| n as u8)
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
    fn names_resolve_as_the_reader_accepted_them() {
        assert_eq!(table_id("main"), Ok(254));
        assert_eq!(table_id("100"), Ok(100));
        assert_eq!(protocol_id("bird"), Ok(12));
        assert_eq!(protocol_id("keepalived"), Ok(18));
        assert_eq!(scope_id("link"), Ok(253));
        assert!(protocol_id("300").is_err());
        assert!(table_id("no-such-table-name").is_err());
    }
}
