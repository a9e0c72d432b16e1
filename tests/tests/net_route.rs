//! Routes and policy rules through rtnetlink: every kind keepalived's
//! `virtual_routes`/`virtual_rules` can ask for, the `proto keepalived`
//! mark, idempotence, listing by the mark, stale cleanup after a "kill -9",
//! and the error for a route over a missing interface. Each test works in
//! namespaces of its own lab only.

use std::net::IpAddr;

use anyhow::{Context, Result, ensure};
use xvrrpd::net::route::{
    MARK_PROTOCOL, NextHopSpec, Outcome, RT_SCOPE_LINK, RouteError, RouteKind, RouteManager,
    RouteSpec, RuleActionSpec, RuleSpec,
};
use xvrrpd_tests::{Host, Lab};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test literal is an address")
}

/// A lab host with IPv4 and IPv6 addresses on its veth `eth0`.
fn host(lab: &mut Lab) -> Result<(Host, u32)> {
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let ifindex = a.ifindex()?;
    Ok((a, ifindex))
}

fn out(host: &Host, args: &[&str]) -> Result<String> {
    Ok(String::from_utf8_lossy(&host.exec(args)?.stdout).into_owned())
}

/// Every route of both families in every table, as `ip route` prints them.
fn route_text(host: &Host) -> Result<String> {
    Ok(format!(
        "{}{}",
        out(host, &["ip", "-4", "route", "show", "table", "all"])?,
        out(host, &["ip", "-6", "route", "show", "table", "all"])?
    ))
}

fn rule_text(host: &Host) -> Result<String> {
    Ok(format!(
        "{}{}",
        out(host, &["ip", "-4", "rule", "show"])?,
        out(host, &["ip", "-6", "rule", "show"])?
    ))
}

/// The route entries for `dst` (a line, and the `nexthop` lines under it);
/// more than one when routes share the destination.
fn route_blocks(text: &str, dst: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with(char::is_whitespace) {
            continue;
        }
        // The destination is the first word, or the second after a type.
        if l.split_whitespace().take(2).any(|w| w == dst) {
            let mut b = l.to_string();
            for more in lines[i + 1..]
                .iter()
                .take_while(|m| m.starts_with(char::is_whitespace))
            {
                b.push('\n');
                b.push_str(more);
            }
            blocks.push(b);
        }
    }
    blocks
}

/// `proto keepalived`, or the number where iproute2 has no rt_protos.
fn has_mark(text: &str) -> bool {
    text.contains("proto keepalived") || text.contains(&format!("proto {MARK_PROTOCOL}"))
}

/// The route xvrrpd is asked for, and what `ip route` must show for it.
struct Case {
    spec: RouteSpec,
    dst: &'static str,
    shows: &'static [&'static str],
}

fn via(dst: &str, len: u8, gw: &str) -> RouteSpec {
    let mut r = RouteSpec::new(ip(dst), len);
    r.gateway = Some(ip(gw));
    r
}

fn route_cases(ifindex: u32) -> Vec<Case> {
    let mut cases = Vec::new();
    cases.push(Case {
        spec: via("10.1.0.0", 16, "192.0.2.1"),
        dst: "10.1.0.0/16",
        shows: &["via 192.0.2.1 dev eth0"],
    });
    let mut dev = RouteSpec::new(ip("10.2.0.0"), 16);
    dev.oif = Some(ifindex);
    dev.scope = RT_SCOPE_LINK;
    cases.push(Case {
        spec: dev,
        dst: "10.2.0.0/16",
        shows: &["dev eth0", "scope link"],
    });
    let mut bh = RouteSpec::new(ip("10.3.0.0"), 16);
    bh.kind = RouteKind::Blackhole;
    cases.push(Case {
        spec: bh,
        dst: "10.3.0.0/16",
        shows: &["blackhole 10.3.0.0/16"],
    });
    let mut t100 = via("10.4.0.0", 16, "192.0.2.1");
    t100.table = 100;
    cases.push(Case {
        spec: t100,
        dst: "10.4.0.0/16",
        shows: &["table 100"],
    });
    let mut metric = via("10.5.0.0", 16, "192.0.2.1");
    metric.table = 1000;
    metric.priority = Some(50);
    cases.push(Case {
        spec: metric,
        dst: "10.5.0.0/16",
        shows: &["table 1000", "metric 50"],
    });
    let mut src = via("10.6.0.0", 16, "192.0.2.1");
    src.src = Some(ip("192.0.2.11"));
    cases.push(Case {
        spec: src,
        dst: "10.6.0.0/16",
        shows: &["src 192.0.2.11"],
    });
    let mut mp = RouteSpec::new(ip("10.7.0.0"), 16);
    mp.multipath = vec![
        NextHopSpec {
            gateway: Some(ip("192.0.2.1")),
            oif: None,
            weight: 1,
            onlink: false,
        },
        NextHopSpec {
            gateway: Some(ip("192.0.2.2")),
            oif: Some(ifindex),
            weight: 3,
            onlink: false,
        },
    ];
    cases.push(Case {
        spec: mp,
        dst: "10.7.0.0/16",
        shows: &[
            "nexthop via 192.0.2.1 dev eth0 weight 1",
            "nexthop via 192.0.2.2 dev eth0 weight 3",
        ],
    });
    let mut onlink = via("10.8.0.0", 16, "198.51.100.1");
    onlink.oif = Some(ifindex);
    onlink.onlink = true;
    onlink.mtu = Some(1400);
    cases.push(Case {
        spec: onlink,
        dst: "10.8.0.0/16",
        shows: &["via 198.51.100.1 dev eth0", "onlink", "mtu 1400"],
    });
    let mut default = via("0.0.0.0", 0, "192.0.2.1");
    default.table = 100;
    cases.push(Case {
        spec: default,
        dst: "default",
        shows: &["default via 192.0.2.1 dev eth0 table 100"],
    });
    cases.push(Case {
        spec: via("2001:db8:1::", 48, "2001:db8::1"),
        dst: "2001:db8:1::/48",
        shows: &["via 2001:db8::1 dev eth0", "metric 1024"],
    });
    let mut unreach = RouteSpec::new(ip("2001:db8:2::"), 48);
    unreach.kind = RouteKind::Unreachable;
    unreach.priority = Some(10);
    cases.push(Case {
        spec: unreach,
        dst: "2001:db8:2::/48",
        shows: &["unreachable 2001:db8:2::/48", "metric 10"],
    });
    let mut mp6 = RouteSpec::new(ip("2001:db8:3::"), 48);
    mp6.table = 200;
    mp6.multipath = ["2001:db8::1", "2001:db8::2"]
        .iter()
        .map(|g| NextHopSpec {
            gateway: Some(ip(g)),
            oif: Some(ifindex),
            weight: 1,
            onlink: false,
        })
        .collect();
    cases.push(Case {
        spec: mp6,
        dst: "2001:db8:3::/48",
        shows: &[
            "table 200",
            "nexthop via 2001:db8::1 dev eth0",
            "nexthop via 2001:db8::2 dev eth0",
        ],
    });
    cases
}

#[test]
fn routes_of_every_kind_are_added_marked_listed_and_removed() -> Result<()> {
    let mut lab = Lab::new()?;
    let (a, ifindex) = host(&mut lab)?;
    // Someone else's route: never listed or touched.
    a.exec(&["ip", "route", "add", "10.99.0.0/16", "via", "192.0.2.1"])?;
    let cases = route_cases(ifindex);
    let specs: Vec<RouteSpec> = cases.iter().map(|c| c.spec.clone()).collect();

    let (added, again, listed) = a.block_on_in({
        let specs = specs.clone();
        move || async move {
            let m = RouteManager::new()?;
            let added = m.add_routes(&specs).await;
            let again = m.add_routes(&specs).await;
            Ok((added, again, m.list_marked_routes().await?))
        }
    })?;
    for (c, r) in cases.iter().zip(&added) {
        ensure!(matches!(r, Ok(Outcome::Done)), "adding {}: {r:?}", c.spec);
    }
    for (c, r) in cases.iter().zip(&again) {
        ensure!(
            matches!(r, Ok(Outcome::AlreadyThere)),
            "adding {} again: {r:?}",
            c.spec
        );
    }

    let text = route_text(&a)?;
    for c in &cases {
        let blocks = route_blocks(&text, c.dst);
        ensure!(blocks.len() == 1, "{}: {blocks:?} in\n{text}", c.dst);
        let b = &blocks[0];
        ensure!(has_mark(b), "{} lacks the mark:\n{b}", c.dst);
        for want in c.shows {
            ensure!(b.contains(want), "`{want}` not in:\n{b}");
        }
    }
    ensure!(
        !route_blocks(&text, "10.99.0.0/16")
            .iter()
            .any(|b| has_mark(b)),
        "someone else's route is marked:\n{text}"
    );

    // The list holds exactly the routes added: none of the kernel's, nor
    // the other one.
    ensure!(
        listed.len() == specs.len(),
        "listed {} routes, added {}: {listed:#?}",
        listed.len(),
        specs.len()
    );
    for s in &specs {
        let n = listed.iter().filter(|l| s.same_route(l)).count();
        ensure!(n == 1, "{s} matches {n} listed routes: {listed:#?}");
    }
    ensure!(listed.iter().all(|l| l.protocol == MARK_PROTOCOL));

    let (removed, gone) = a.block_on_in({
        let specs = specs.clone();
        move || async move {
            let m = RouteManager::new()?;
            Ok((m.remove_routes(&specs).await, m.remove_routes(&specs).await))
        }
    })?;
    for (c, r) in cases.iter().zip(&removed) {
        ensure!(matches!(r, Ok(Outcome::Done)), "removing {}: {r:?}", c.spec);
    }
    for (c, r) in cases.iter().zip(&gone) {
        ensure!(
            matches!(r, Ok(Outcome::AlreadyGone)),
            "removing {} again: {r:?}",
            c.spec
        );
    }
    let text = route_text(&a)?;
    ensure!(!has_mark(&text), "marked routes left:\n{text}");
    ensure!(
        route_blocks(&text, "10.99.0.0/16").len() == 1,
        "someone else's route went:\n{text}"
    );
    Ok(())
}

#[test]
fn prepended_routes_stack_as_the_kernel_keeps_them_and_go_one_by_one() -> Result<()> {
    let mut lab = Lab::new()?;
    let (a, _) = host(&mut lab)?;
    let routes = vec![
        via("10.1.0.0", 16, "192.0.2.1"),
        via("10.1.0.0", 16, "192.0.2.2"),
        via("2001:db8:1::", 48, "2001:db8::1"),
        via("2001:db8:1::", 48, "2001:db8::2"),
    ];
    let (added, listed) = a.block_on_in({
        let routes = routes.clone();
        move || async move {
            let m = RouteManager::new()?;
            let added = m.add_routes(&routes).await;
            Ok((added, m.list_marked_routes().await?))
        }
    })?;
    for r in &added {
        ensure!(matches!(r, Ok(Outcome::Done)), "{r:?}");
    }
    let text = route_text(&a)?;
    // IPv4: two routes, the later one first (prepended).
    let b4 = route_blocks(&text, "10.1.0.0/16");
    ensure!(
        b4.len() == 2 && b4[0].contains("via 192.0.2.2") && b4[1].contains("via 192.0.2.1"),
        "IPv4: {b4:?}"
    );
    // IPv6: one route with two ECMP next hops.
    let b6 = route_blocks(&text, "2001:db8:1::/48");
    ensure!(
        b6.len() == 1
            && b6[0].contains("nexthop via 2001:db8::1")
            && b6[0].contains("nexthop via 2001:db8::2"),
        "IPv6: {b6:?}"
    );
    ensure!(listed.len() == 3, "listed: {listed:#?}");

    // Removing the first of each takes that next hop only.
    let removed = a.block_on_in({
        let first = vec![routes[0].clone(), routes[2].clone()];
        move || async move { Ok(RouteManager::new()?.remove_routes(&first).await) }
    })?;
    for r in &removed {
        ensure!(matches!(r, Ok(Outcome::Done)), "{r:?}");
    }
    let text = route_text(&a)?;
    let b4 = route_blocks(&text, "10.1.0.0/16");
    ensure!(
        b4.len() == 1 && b4[0].contains("via 192.0.2.2"),
        "IPv4 after removing via .1: {b4:?}"
    );
    let b6 = route_blocks(&text, "2001:db8:1::/48");
    ensure!(
        b6.len() == 1 && b6[0].contains("via 2001:db8::2") && !b6[0].contains("2001:db8::1 "),
        "IPv6 after removing via ::1: {b6:?}"
    );
    Ok(())
}

/// A rule xvrrpd is asked for, its priority, and what `ip rule` must show.
struct RuleCase {
    spec: RuleSpec,
    shows: &'static [&'static str],
}

fn rule(v6: bool, priority: Option<u32>, action: RuleActionSpec) -> RuleSpec {
    let mut r = RuleSpec::lookup(v6, 0);
    r.priority = priority;
    r.action = action;
    r
}

fn rule_cases() -> Vec<RuleCase> {
    let mut v = Vec::new();
    let mut from = rule(false, Some(100), RuleActionSpec::Table(100));
    from.src = Some((ip("192.0.2.0"), 24));
    v.push(RuleCase {
        spec: from,
        shows: &["100:", "from 192.0.2.0/24 lookup 100"],
    });
    let mut not_to = rule(false, Some(110), RuleActionSpec::Table(1000));
    not_to.invert = true;
    not_to.dst = Some((ip("198.51.100.0"), 24));
    v.push(RuleCase {
        spec: not_to,
        shows: &["110:", "not ", "to 198.51.100.0/24", "lookup 1000"],
    });
    let mut mark = rule(false, Some(120), RuleActionSpec::Table(200));
    mark.fwmark = Some(0x10);
    mark.fwmask = Some(0xff);
    v.push(RuleCase {
        spec: mark,
        shows: &["120:", "fwmark 0x10/0xff", "lookup 200"],
    });
    let mut iif = rule(false, Some(130), RuleActionSpec::Table(100));
    iif.iif = Some("eth0".into());
    iif.tos = 0x10;
    v.push(RuleCase {
        spec: iif,
        shows: &["130:", "iif eth0", "tos 0x10", "lookup 100"],
    });
    v.push(RuleCase {
        spec: rule(false, Some(140), RuleActionSpec::Goto(150)),
        shows: &["140:", "goto 150"],
    });
    v.push(RuleCase {
        spec: rule(false, Some(150), RuleActionSpec::Nop),
        shows: &["150:", "nop"],
    });
    let mut bh = rule(false, Some(160), RuleActionSpec::Blackhole);
    bh.fwmark = Some(7);
    v.push(RuleCase {
        spec: bh,
        shows: &["160:", "fwmark 0x7", "blackhole"],
    });
    // No priority: the kernel picks one.
    let mut nopref = rule(false, None, RuleActionSpec::Table(400));
    nopref.src = Some((ip("10.0.0.0"), 8));
    v.push(RuleCase {
        spec: nopref,
        shows: &["from 10.0.0.0/8 lookup 400"],
    });
    let mut v6 = rule(true, Some(100), RuleActionSpec::Table(100));
    v6.src = Some((ip("2001:db8::"), 64));
    v6.dst = Some((ip("2001:db8:1::"), 48));
    v.push(RuleCase {
        spec: v6,
        shows: &["100:", "from 2001:db8::/64 to 2001:db8:1::/48 lookup 100"],
    });
    let mut oif6 = rule(true, Some(170), RuleActionSpec::Unreachable);
    oif6.oif = Some("eth0".into());
    v.push(RuleCase {
        spec: oif6,
        shows: &["170:", "oif eth0", "unreachable"],
    });
    v
}

/// The `ip rule` line of a case: by priority, or by what it shows when it
/// has none. IPv4 lines come first in `text`, then IPv6.
fn rule_line<'a>(v4: &'a str, v6: &'a str, c: &RuleCase) -> Option<&'a str> {
    let text = if c.spec.v6 { v6 } else { v4 };
    text.lines().find(|l| match c.spec.priority {
        Some(p) => l.starts_with(&format!("{p}:")),
        None => c.shows.iter().all(|w| l.contains(w)),
    })
}

#[test]
fn rules_of_every_kind_are_added_marked_listed_and_removed() -> Result<()> {
    let mut lab = Lab::new()?;
    let (a, _) = host(&mut lab)?;
    // Someone else's rule.
    a.exec(&[
        "ip",
        "rule",
        "add",
        "from",
        "203.0.113.0/24",
        "lookup",
        "300",
        "pref",
        "90",
    ])?;
    let cases = rule_cases();
    let specs: Vec<RuleSpec> = cases.iter().map(|c| c.spec.clone()).collect();
    let (added, again, listed) = a.block_on_in({
        let specs = specs.clone();
        move || async move {
            let m = RouteManager::new()?;
            let added = m.add_rules(&specs).await;
            let again = m.add_rules(&specs).await;
            Ok((added, again, m.list_marked_rules().await?))
        }
    })?;
    for (c, r) in cases.iter().zip(&added) {
        ensure!(matches!(r, Ok(Outcome::Done)), "adding {}: {r:?}", c.spec);
    }
    for (c, r) in cases.iter().zip(&again) {
        ensure!(
            matches!(r, Ok(Outcome::AlreadyThere)),
            "adding {} again: {r:?}",
            c.spec
        );
    }
    let v4 = out(&a, &["ip", "-4", "rule", "show"])?;
    let v6 = out(&a, &["ip", "-6", "rule", "show"])?;
    for c in &cases {
        let line =
            rule_line(&v4, &v6, c).with_context(|| format!("{} missing:\n{v4}{v6}", c.spec))?;
        ensure!(has_mark(line), "{} lacks the mark: {line}", c.spec);
        for want in c.shows {
            ensure!(line.contains(want), "`{want}` not in: {line}");
        }
    }
    // The rule without a priority went in once, though added twice.
    let n = v4.lines().filter(|l| l.contains("lookup 400")).count();
    ensure!(n == 1, "{n} rules `lookup 400`:\n{v4}");

    ensure!(
        listed.len() == specs.len(),
        "listed {} rules, added {}: {listed:#?}",
        listed.len(),
        specs.len()
    );
    for s in &specs {
        let n = listed.iter().filter(|l| s.same_rule(l)).count();
        ensure!(n == 1, "{s} matches {n} listed rules: {listed:#?}");
    }

    let (removed, gone) = a.block_on_in({
        let specs = specs.clone();
        move || async move {
            let m = RouteManager::new()?;
            Ok((m.remove_rules(&specs).await, m.remove_rules(&specs).await))
        }
    })?;
    for (c, r) in cases.iter().zip(&removed) {
        ensure!(matches!(r, Ok(Outcome::Done)), "removing {}: {r:?}", c.spec);
    }
    for (c, r) in cases.iter().zip(&gone) {
        ensure!(
            matches!(r, Ok(Outcome::AlreadyGone)),
            "removing {} again: {r:?}",
            c.spec
        );
    }
    let text = rule_text(&a)?;
    ensure!(!has_mark(&text), "marked rules left:\n{text}");
    ensure!(
        text.contains("90:\tfrom 203.0.113.0/24 lookup 300"),
        "someone else's rule went:\n{text}"
    );
    Ok(())
}

#[test]
fn stale_cleanup_removes_every_marked_route_and_rule_and_nothing_else() -> Result<()> {
    let mut lab = Lab::new()?;
    let (a, ifindex) = host(&mut lab)?;
    a.exec(&["ip", "route", "add", "10.99.0.0/16", "via", "192.0.2.1"])?;
    a.exec(&[
        "ip",
        "route",
        "add",
        "10.98.0.0/16",
        "via",
        "192.0.2.1",
        "proto",
        "bird",
    ])?;
    a.exec(&[
        "ip",
        "rule",
        "add",
        "from",
        "203.0.113.0/24",
        "lookup",
        "300",
        "pref",
        "90",
    ])?;

    // A first daemon installs and dies without removing anything.
    let routes: Vec<RouteSpec> = route_cases(ifindex).into_iter().map(|c| c.spec).collect();
    let rules: Vec<RuleSpec> = rule_cases().into_iter().map(|c| c.spec).collect();
    let (nroutes, nrules) = (routes.len(), rules.len());
    a.block_on_in(move || async move {
        let m = RouteManager::new()?;
        for r in m.add_routes(&routes).await {
            r?;
        }
        for r in m.add_rules(&rules).await {
            r?;
        }
        Ok(())
    })?;

    let (gone_routes, gone_rules, left) = a.block_on_in(|| async {
        let m = RouteManager::new()?;
        let (routes, rules) = m.remove_stale_marked().await?;
        let left = (m.list_marked_routes().await?, m.list_marked_rules().await?);
        Ok((routes, rules, left))
    })?;
    ensure!(
        gone_routes.len() == nroutes && gone_rules.len() == nrules,
        "removed {} routes and {} rules, expected {nroutes} and {nrules}",
        gone_routes.len(),
        gone_rules.len()
    );
    ensure!(
        left.0.is_empty() && left.1.is_empty(),
        "marked after cleanup: {left:#?}"
    );
    let text = route_text(&a)?;
    ensure!(!has_mark(&text), "marked routes left:\n{text}");
    ensure!(route_blocks(&text, "10.99.0.0/16").len() == 1, "{text}");
    ensure!(route_blocks(&text, "10.98.0.0/16").len() == 1, "{text}");
    ensure!(
        route_blocks(&text, "192.0.2.0/24").len() == 1,
        "the connected route went:\n{text}"
    );
    let text = rule_text(&a)?;
    ensure!(!has_mark(&text), "marked rules left:\n{text}");
    for want in [
        "0:\tfrom all lookup local",
        "32766:\tfrom all lookup main",
        "90:\tfrom 203.0.113.0/24 lookup 300",
    ] {
        ensure!(text.contains(want), "`{want}` went:\n{text}");
    }
    Ok(())
}

#[test]
fn a_route_over_a_missing_interface_is_a_typed_error() -> Result<()> {
    let mut lab = Lab::new()?;
    let (a, ifindex) = host(&mut lab)?;
    let mut dev = RouteSpec::new(ip("10.9.0.0"), 16);
    dev.oif = Some(999_999);
    dev.scope = RT_SCOPE_LINK;
    let mut mp = RouteSpec::new(ip("2001:db8:9::"), 48);
    mp.multipath = vec![
        NextHopSpec {
            gateway: Some(ip("2001:db8::1")),
            oif: Some(ifindex),
            weight: 1,
            onlink: false,
        },
        NextHopSpec {
            gateway: Some(ip("2001:db8::2")),
            oif: Some(999_998),
            weight: 1,
            onlink: false,
        },
    ];
    let routes = vec![dev, mp];
    let (added, removed) = a.block_on_in({
        let routes = routes.clone();
        move || async move {
            let m = RouteManager::new()?;
            Ok((m.add_routes(&routes).await, m.remove_routes(&routes).await))
        }
    })?;
    for (r, (res, want)) in routes.iter().zip(added.iter().zip([999_999u32, 999_998])) {
        match res {
            Err(e @ RouteError::NoSuchInterface { route, ifindexes }) => {
                ensure!(**route == *r && ifindexes.contains(&want), "{e:?}");
                let t = e.to_string();
                ensure!(
                    t.contains(&r.dst.to_string())
                        && t.contains(&want.to_string())
                        && t.contains("does not exist"),
                    "unhelpful error: {t}"
                );
            }
            other => anyhow::bail!("adding {r}: expected NoSuchInterface, got {other:?}"),
        }
    }
    for r in &removed {
        ensure!(matches!(r, Ok(Outcome::AlreadyGone)), "{r:?}");
    }
    let text = route_text(&a)?;
    ensure!(!has_mark(&text), "a route went in:\n{text}");
    Ok(())
}
