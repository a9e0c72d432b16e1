//! keepalived's parsing rules and defaults, one at a time.

use std::time::Duration;

use xvrrpd::config::{
    Family, FixedHost, Prefix, Report, RouteType, Rule, RuleAction, Severity, State,
    UnsupportedKind, analyze_source, load_with,
};

fn host() -> FixedHost {
    FixedHost {
        interfaces: ["eth0".to_string(), "eth1".to_string()].into(),
        users: ["root".to_string()].into(),
        groups: ["root".to_string()].into(),
        scripts: ["/usr/bin/pgrep".to_string()].into(),
        config_id: Some("node-a".to_string()),
    }
}

fn check(text: &str) -> Report {
    analyze_source(text.as_bytes(), "keepalived.conf", &host())
}

fn errors(r: &Report) -> Vec<String> {
    r.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect()
}

const MIN: &str = "vrrp_instance V {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  10.0.0.1/24\n }\n}\n";

#[test]
fn defaults_are_keepalived_defaults() {
    let r = check(MIN);
    assert!(errors(&r).is_empty(), "{:?}", r.diagnostics);
    let v = &r.config.vrrp_instance[0];
    assert_eq!(v.state, State::Backup);
    assert_eq!(v.priority, 100);
    assert_eq!(v.advert_int, Duration::from_secs(1));
    assert_eq!(v.version, 2);
    assert!(v.accept);
    assert_eq!(v.garp_master_delay, Duration::from_secs(5));
    assert_eq!(v.garp_master_repeat, 5);
    assert_eq!(v.down_timer_adverts, 3);
    assert_eq!(v.virtual_ipaddress[0].dev.as_deref(), Some("eth0"));
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn errors_carry_file_line_column_and_hint() {
    let r = check(&MIN.replace("virtual_router_id 9", "virtual_router_id 300"));
    let e = errors(&r);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "keepalived.conf:3:20: error: virtual_router_id 300 is out of range 1..255 (hint: "
        ),
        "{}",
        e[0]
    );
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn comments_quotes_and_brace_placement() {
    let text = "vrrp_script c # comment\n{\n script \"/usr/bin/pgrep -f 'a # b'\" ! x\n}\n\
                global_defs { enable_script_security\n script_user root }\n\
                vrrp_instance V\n{\n interface eth0 # c\n virtual_router_id 9\n track_script { c }\n virtual_ipaddress { 10.0.0.1 }\n}\n";
    let r = check(text);
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    assert_eq!(
        r.config.vrrp_script[0].script.argv,
        ["/usr/bin/pgrep", "-f", "a # b"]
    );
}

#[test]
fn v2_advert_int_is_rounded_with_a_warning_v3_keeps_centiseconds() {
    let r = check(&MIN.replace(" interface eth0", " interface eth0\n advert_int 2.5"));
    assert_eq!(r.config.vrrp_instance[0].advert_int, Duration::from_secs(3));
    assert_eq!(r.exit_code(), 1);
    let r = check(&MIN.replace(
        " interface eth0",
        " interface eth0\n version 3\n advert_int 0.25",
    ));
    assert_eq!(r.config.vrrp_instance[0].advert_int_centis, 25);
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn nopreempt_needs_backup() {
    let r = check(&MIN.replace(
        " interface eth0",
        " interface eth0\n state MASTER\n nopreempt",
    ));
    assert!(!r.config.vrrp_instance[0].nopreempt);
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn conditional_lines_follow_the_config_id() {
    let r = check(&format!(
        "@node-a global_defs {{ router_id A }}\n@node-b global_defs {{ router_id B }}\n{MIN}"
    ));
    assert_eq!(r.config.global_defs.router_id.as_deref(), Some("A"));
}

#[test]
fn include_is_relative_to_the_including_file_and_globs() {
    let dir = std::env::temp_dir().join(format!("xvrrpd-inc-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub/d")).expect("temp dir");
    std::fs::write(dir.join("main.conf"), "include sub/first.conf\n").expect("write");
    std::fs::write(dir.join("sub/first.conf"), "include d/*.conf\n").expect("write");
    std::fs::write(dir.join("sub/d/v.conf"), MIN).expect("write");
    let loaded = load_with(&dir.join("main.conf"), &host()).expect("loads");
    assert_eq!(loaded.config.vrrp_instance[0].name, "V");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let e = load_with(
        std::path::Path::new("/nonexistent/keepalived.conf"),
        &host(),
    )
    .expect_err("missing file must fail");
    assert_eq!(e.errors().count(), 1);
}

#[test]
fn lvs_blocks_are_notes_and_the_vrrp_part_loads() {
    let r = check(&format!(
        "{MIN}virtual_server 10.0.0.1 80 {{\n real_server 10.0.1.1 80 {{ weight 1 }}\n}}\n"
    ));
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.unsupported.len(), 1);
    assert_eq!(r.unsupported[0].location.line, 8);
}

#[test]
fn umask_reads_numbers_and_bits_as_keepalived_does() {
    let with = |line: &str| check(&format!("global_defs {{\n {line}\n}}\n{MIN}"));
    for (line, want) in [
        ("umask 0027", Some(0o027)),
        ("umask 0x12", Some(0o022)),
        ("umask 18", Some(0o022)),
        ("umask IWGRP|IWOTH", Some(0o022)),
        ("umask IWGRP | IRWXO", None),
        ("umask IWGRP | IXOTH", Some(0o021)),
        ("umask 0999", None),
        ("umask 01000", None),
        ("umask IWGRP|", None),
    ] {
        let r = with(line);
        assert_eq!(r.config.global_defs.umask, want, "{line}");
        assert_eq!(
            errors(&r).is_empty(),
            want.is_some(),
            "{line}: {:?}",
            errors(&r)
        );
    }
}

#[test]
fn unsupported_globals_that_change_behaviour_are_warnings() {
    for kw in ["dynamic_interfaces", "reload_time_file /x"] {
        let r = check(&format!("global_defs {{\n {kw}\n}}\n{MIN}"));
        assert_eq!(r.exit_code(), 1, "{kw}: {:?}", r.diagnostics);
        assert!(
            r.unsupported.iter().any(|u| kw.starts_with(&u.keyword)),
            "{kw}: {:?}",
            r.unsupported
        );
    }
    // Firewall rules for non-accept mode: the datapath enforces it, so a
    // note, not a warning.
    for kw in ["vrrp_iptables", "nftables"] {
        let r = check(&format!("global_defs {{\n {kw}\n}}\n{MIN}"));
        assert_eq!(r.exit_code(), 0, "{kw}: {:?}", r.diagnostics);
        assert!(
            r.unsupported
                .iter()
                .any(|u| u.keyword == kw && u.kind == UnsupportedKind::Ignored),
            "{kw}: {:?}",
            r.unsupported
        );
    }
    // keepalived 2.2.7 does not know these: unknown, as there.
    for kw in ["vrrp_owner_ignore_adverts", "notify_fifo_script_user root"] {
        let r = check(&format!("global_defs {{\n {kw}\n}}\n{MIN}"));
        let said: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
        assert!(
            said.iter().any(|d| d.contains("unknown keyword")),
            "{kw}: {said:?}"
        );
    }
}

// ---- virtual_routes / virtual_rules / static_* -----------------------------

/// MIN with `block` inside the instance, after the VIPs.
fn with_instance_block(block: &str) -> Report {
    check(&MIN.replace(" }\n}\n", &format!(" }}\n{block}\n}}\n")))
}

fn said(r: &Report) -> Vec<String> {
    r.diagnostics.iter().map(ToString::to_string).collect()
}

fn routes(lines: &str) -> Report {
    with_instance_block(&format!(" virtual_routes {{\n{lines}\n }}"))
}

fn rules(lines: &str) -> Report {
    with_instance_block(&format!(" virtual_rules {{\n{lines}\n }}"))
}

#[test]
fn route_options_fill_their_fields() {
    // Line 8 of the file: "  src ...".
    let r = routes(
        "  src 10.0.0.1 to 192.0.2.0/24 via 10.0.0.254 dev eth0 scope link table 0x64 metric 5 \
         protocol keepalived tos 0x10 mtu 1400 onlink prepend",
    );
    assert_eq!(r.exit_code(), 0, "{:?}", said(&r));
    assert!(r.unsupported.is_empty(), "{:?}", r.unsupported);
    let rt = &r.config.vrrp_instance[0].virtual_routes[0];
    assert_eq!(rt.route_type, RouteType::Unicast);
    assert_eq!(
        rt.to,
        Prefix {
            address: "192.0.2.0".parse().expect("ip"),
            prefix_len: 24
        }
    );
    assert_eq!(rt.src, Some("10.0.0.1".parse().expect("ip")));
    assert_eq!(rt.via, Some("10.0.0.254".parse().expect("ip")));
    assert_eq!(rt.or_via, None);
    assert_eq!(rt.dev.as_deref(), Some("eth0"));
    assert_eq!(rt.scope.as_deref(), Some("link"));
    // Numbers are kept in decimal, names as written.
    assert_eq!(rt.table.as_deref(), Some("100"));
    assert_eq!(rt.metric, Some(5));
    assert_eq!(rt.protocol.as_deref(), Some("keepalived"));
    assert_eq!(rt.tos, Some(16));
    assert_eq!(rt.mtu, Some(1400));
    assert!(rt.onlink && !rt.no_track && rt.nexthops.is_empty());
    assert!(rt.text.starts_with("src 10.0.0.1 to 192.0.2.0/24 via"));
    assert!(rt.text.ends_with("onlink prepend"));
}

#[test]
fn route_types_destinations_and_families() {
    let r = routes(
        "  blackhole 192.0.2.0/24 no_track\n  unreachable 198.51.100.0/24 no_track\n  \
         prohibit 203.0.113.0/24 no_track\n  throw 10.9.0.0/16 no_track\n  \
         default via 10.0.0.254 dev eth0\n  default dev eth0 table main inet6\n  \
         192.0.2.7 dev eth0\n  2001:db8::7   dev   eth0\n  \
         10.8.0.0/16 dev eth0 metric 7 preference 9",
    );
    assert_eq!(r.exit_code(), 0, "{:?}", said(&r));
    let v = &r.config.vrrp_instance[0].virtual_routes;
    let types: Vec<RouteType> = v.iter().map(|r| r.route_type).collect();
    assert_eq!(
        types[..5],
        [
            RouteType::Blackhole,
            RouteType::Unreachable,
            RouteType::Prohibit,
            RouteType::Throw,
            RouteType::Unicast
        ]
    );
    let to: Vec<String> = v
        .iter()
        .map(|r| format!("{}/{}", r.to.address, r.to.prefix_len))
        .collect();
    assert_eq!(
        to,
        [
            "192.0.2.0/24",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "10.9.0.0/16",
            "0.0.0.0/0",
            "::/0",
            "192.0.2.7/32",
            "2001:db8::7/128",
            "10.8.0.0/16"
        ]
    );
    // The text is the words joined by one space.
    assert_eq!(v[7].text, "2001:db8::7 dev eth0");
    // metric, priority, preference: one field, the last wins.
    assert_eq!(v[8].metric, Some(9));
    // An instance route's dev is what was written, nothing else.
    assert_eq!(v[0].dev, None);
}

#[test]
fn nexthops_and_or() {
    let r = routes(
        "  10.1.0.0/16 no_track nexthop via 10.0.0.2 dev eth0 weight 256 onlink nexthop via inet 10.0.0.3\n  \
         10.2.0.0/16 via 10.0.0.2 or 10.0.0.3 dev eth0",
    );
    let v = &r.config.vrrp_instance[0].virtual_routes;
    assert_eq!(v.len(), 2, "{:?}", said(&r));
    let nh = &v[0].nexthops;
    assert_eq!(nh.len(), 2);
    assert_eq!(nh[0].via, Some("10.0.0.2".parse().expect("ip")));
    assert_eq!(nh[0].dev.as_deref(), Some("eth0"));
    assert_eq!(nh[0].weight, Some(256));
    assert!(nh[0].onlink);
    assert_eq!(nh[1].via, Some("10.0.0.3".parse().expect("ip")));
    assert_eq!(
        (nh[1].dev.as_deref(), nh[1].weight, nh[1].onlink),
        (None, None, false)
    );
    assert_eq!(v[1].via, Some("10.0.0.2".parse().expect("ip")));
    assert_eq!(v[1].or_via, Some("10.0.0.3".parse().expect("ip")));
    // keepalived calls "or" deprecated: a warning, and the route is kept.
    assert_eq!(
        said(&r),
        [
            "keepalived.conf:9:28: warning: \"or\" for routes is deprecated (hint: write 'nexthop via A nexthop via B'; keepalived warns the same)"
        ]
    );
    // After the nexthops only nexthops.
    let r = routes("  10.1.0.0/16 dev eth0 nexthop via 10.0.0.2 metric 5");
    assert!(
        errors(&r)[0].starts_with(
            "keepalived.conf:8:45: error: route has trailing nonsense after nexthops - 'metric'"
        ),
        "{:?}",
        errors(&r)
    );
    assert!(r.config.vrrp_instance[0].virtual_routes.is_empty());
    let r = routes("  10.1.0.0/16 dev eth0 nexthop via 10.0.0.2 weight 0");
    assert!(
        errors(&r)[0].contains("8:52: error: invalid weight '0'"),
        "{:?}",
        errors(&r)
    );
}

#[test]
fn the_man_page_examples_parse() {
    // keepalived.conf(5), vrrp_instance: virtual_routes and virtual_rules.
    let r = with_instance_block(
        " virtual_routes {\n\
         \x20 src 192.168.100.1 to 192.168.109.0/24 via 192.168.200.254 dev eth1\n\
         \x20 192.168.110.0/24 via 192.168.200.254 dev eth1\n\
         \x20 192.168.111.0/24 dev eth2 no_track\n\
         \x20 192.168.112.0/24 via 192.168.100.254\n\
         \x20 192.168.113.0/24 via 192.168.200.254 or 192.168.100.254 dev eth1\n\
         \x20 blackhole 192.168.114.0/24\n\
         \x20 0.0.0.0/0 gw 192.168.0.1 table 100  # To set a default gateway into table 100.\n\
         }\n virtual_rules {\n\
         \x20 from 192.168.2.0/24 table 1\n\
         \x20 to 192.168.2.0/24 table 1 no_track\n }",
    );
    assert!(errors(&r).is_empty(), "{:?}", errors(&r));
    let v = &r.config.vrrp_instance[0];
    assert_eq!(v.virtual_routes.len(), 7);
    assert_eq!(v.virtual_rules.len(), 2);
    // What keepalived -t reports on them, xvrrpd warns about: eth2 does not
    // exist here, "or" and "gw" are deprecated, routes without dev are not
    // tracked, rules without a preference get keepalived's.
    let w = said(&r);
    for (at, what) in [
        (
            "10:24",
            "interface eth2 for a route of vrrp_instance V doesn't exist",
        ),
        (
            "11:3",
            "cannot track route 192.168.112.0/24 with no interface specified",
        ),
        ("12:40", "\"or\" for routes is deprecated"),
        (
            "13:3",
            "cannot track route 192.168.114.0/24 with no interface specified",
        ),
        ("14:13", "\"gw\" for routes is deprecated"),
        (
            "14:3",
            "cannot track route 0.0.0.0/0 with no interface specified",
        ),
        (
            "17:3",
            "rule has no preference specified - setting to 16384",
        ),
        (
            "18:3",
            "rule has no preference specified - setting to 16383",
        ),
    ] {
        let want = format!("keepalived.conf:{at}: warning: {what}");
        assert!(w.iter().any(|d| d.starts_with(&want)), "{want}\n{w:#?}");
    }
    assert!(v.virtual_routes[3].no_track && !v.virtual_routes[1].no_track);
    assert_eq!(v.virtual_routes[5].route_type, RouteType::Blackhole);
    assert_eq!(v.virtual_routes[6].table.as_deref(), Some("100"));
    assert_eq!(v.virtual_rules[0].priority, Some(16384));
    assert_eq!(
        v.virtual_rules[1].action,
        RuleAction::Table("1".to_string())
    );
    assert!(v.virtual_rules[1].no_track);
}

#[test]
fn route_options_keepalived_has_and_xvrrpd_not_are_warnings() {
    let r = routes(
        "  192.168.200.0/24 dev eth0 table 6909 tos 0x04 protocol bird no_track scope link priority 12 \
         mtu lock 1000 hoplimit 100 advmss 101 rtt 102 rttvar 103 reordering 104 window 105 cwnd 106 \
         ssthresh lock 107 rto_min 108ms initcwnd 109 initrwnd 110 vrf blue features ecn add quickack 1 \
         congctl lock cubic fastopen_no_cookie 1 encap ip id 5 dst 1.2.3.4 append",
    );
    assert!(errors(&r).is_empty(), "{:?}", errors(&r));
    let rt = &r.config.vrrp_instance[0].virtual_routes[0];
    assert_eq!(
        (rt.mtu, rt.metric, rt.tos, rt.protocol.as_deref()),
        (Some(1000), Some(12), Some(4), Some("bird"))
    );
    let names: Vec<&str> = r.unsupported.iter().map(|u| u.keyword.as_str()).collect();
    assert_eq!(
        names,
        [
            "mtu lock",
            "hoplimit",
            "advmss",
            "rtt",
            "rttvar",
            "reordering",
            "window",
            "cwnd",
            "ssthresh",
            "rto_min",
            "initcwnd",
            "initrwnd",
            "vrf",
            "features",
            "add",
            "quickack",
            "congctl",
            "fastopen_no_cookie",
            "encap",
            "append"
        ]
    );
    assert!(
        said(&r).contains(&"keepalived.conf:8:109: warning: 'hoplimit' is not supported by xvrrpd: the route is installed without it (hint: remove it, or keep this line with keepalived)".to_string()),
        "{:#?}",
        said(&r)
    );
    assert_eq!(r.exit_code(), 1);
    // IPv6-only ones on an IPv6 route.
    let r = routes("  2001:db8::/32 dev eth0 pref high expires 100 from 2001:db8:1::/48");
    assert!(errors(&r).is_empty(), "{:?}", said(&r));
    assert_eq!(r.unsupported.len(), 3);
    // ... and refused on an IPv4 one.
    let r = routes("  10.0.0.0/8 dev eth0 pref high");
    assert_eq!(
        errors(&r),
        [
            "keepalived.conf:8:23: error: 'pref' is only valid for IPv6 (hint: remove it, or make this an IPv6 route)"
        ]
    );
    // A route type the model has no place for: the route is left out.
    let r = routes("  local 10.0.0.0/8 dev eth0");
    assert!(r.config.vrrp_instance[0].virtual_routes.is_empty());
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn route_errors_drop_the_line_with_its_place() {
    for (line, want) in [
        (
            "  10.1.0.0/16 dev eth0 metrc 10",
            "keepalived.conf:8:24: error: unknown route keyword 'metrc'",
        ),
        (
            "  src 10.0.0.1 to 2001:db8::/32 dev eth0",
            "keepalived.conf:8:19: error: cannot mix IPv4 and IPv6 addresses in a route: '2001:db8::/32' is IPv6, the route is IPv4",
        ),
        (
            "  10.1.0.0/16 via fe80::1 dev eth0",
            "keepalived.conf:8:19: error: cannot mix IPv4 and IPv6 addresses in a route",
        ),
        (
            "  inet6 default dev eth0",
            "keepalived.conf:8:9: error: keepalived 2.2.7 skips the word after 'inet6': 'default' would be ignored",
        ),
        (
            "  via 10.0.0.2 default dev eth0",
            "keepalived.conf:8:16: error: keepalived 2.2.7 refuses 'default' once an address has set the route's family",
        ),
        (
            "  src 10.0.0.1 dev eth0",
            "keepalived.conf:8:3: error: route must have a destination",
        ),
        (
            "  to blackhole 10.0.0.0/8",
            "keepalived.conf:8:6: error: 'blackhole' is not an address prefix (hint: a route type comes first, without 'to': blackhole PREFIX)",
        ),
        (
            "  10.0.0.0/33 dev eth0",
            "keepalived.conf:8:3: error: invalid prefix length in '10.0.0.0/33'",
        ),
        (
            "  10.0.0.0/8 dev eth0 table nosuchtable",
            "keepalived.conf:8:29: error: routing table 'nosuchtable' not found for route",
        ),
        (
            "  10.0.0.0/8 dev eth0 scope bogus",
            "keepalived.conf:8:29: error: scope 'bogus' not found for route",
        ),
        (
            "  10.0.0.0/8 dev eth0 metric -1",
            "keepalived.conf:8:30: error: invalid metric '-1'",
        ),
        (
            "  10.0.0.0/8 dev eth0 tos 256",
            "keepalived.conf:8:27: error: TOS value '256' not found for TOS",
        ),
        (
            "  10.0.0.0/8 dev eth0 mtu",
            "keepalived.conf:8:23: error: 'mtu' needs a value",
        ),
        (
            "  10.0.0.0/8 dev eth0 as to 10.9.9.9",
            "keepalived.conf:8:23: error: \"as to\" is for MPLS routes only",
        ),
        (
            "  10.0.0.0/8 dev eth0 features sack",
            "keepalived.conf:8:32: error: feature 'sack' not supported",
        ),
        (
            "  10.0.0.0/8 dev eth0 track_group G",
            "keepalived.conf:8:23: error: unknown route keyword 'track_group'",
        ),
    ] {
        let r = routes(line);
        let e = errors(&r);
        assert_eq!(e.len(), 1, "{line}: {e:?}");
        assert!(e[0].starts_with(want), "{line}:\n{}\n{want}", e[0]);
        assert!(
            r.config.vrrp_instance[0].virtual_routes.is_empty(),
            "{line}"
        );
    }
}

#[test]
fn route_tracking_follows_keepalived() {
    // No dev: keepalived cannot track it, says so, and does not.
    let r = routes("  10.1.0.0/16 via 10.0.0.2");
    let rt = &r.config.vrrp_instance[0].virtual_routes[0];
    assert!(rt.no_track && rt.dev.is_none());
    assert_eq!(r.exit_code(), 1);
    // A tracked route gets keepalived's protocol; with no_track it keeps its own.
    let r = routes("  10.1.0.0/16 dev eth0 protocol bird");
    assert_eq!(r.config.vrrp_instance[0].virtual_routes[0].protocol, None);
    assert!(said(&r)[0].starts_with(
        "keepalived.conf:8:33: warning: route cannot be tracked if protocol is not keepalived (18)"
    ));
    let r = routes("  10.1.0.0/16 dev eth0 protocol bird no_track");
    assert_eq!(r.exit_code(), 0);
    assert_eq!(
        r.config.vrrp_instance[0].virtual_routes[0]
            .protocol
            .as_deref(),
        Some("bird")
    );
    // Interfaces that do not exist: a warning, as elsewhere.
    let r = routes("  10.1.0.0/16 dev eth9\n  10.2.0.0/16 no_track nexthop dev eth8");
    assert_eq!(
        said(&r),
        [
            "keepalived.conf:8:19: warning: interface eth9 for a route of vrrp_instance V doesn't exist (hint: check the name with `ip link`; keepalived warns the same way)",
            "keepalived.conf:9:36: warning: interface eth8 for a route of vrrp_instance V doesn't exist (hint: check the name with `ip link`; keepalived warns the same way)"
        ]
    );
    assert_eq!(r.config.vrrp_instance[0].virtual_routes.len(), 2);
}

#[test]
fn rule_options_fill_their_fields() {
    let r = rules(
        "  not from 10.0.0.0/8 to 192.0.2.0/24 iif eth0 oif eth1 tos CS1 fwmark 0x10/0xff lookup 0x64 order 7\n  \
         from all to 2001:db8::/32 goto 100 priority 50 no_track\n  \
         fwmark 1 type blackhole preference 60\n  fwmark 2 unreachable preference 61\n  \
         fwmark 3 prohibit preference 62\n  dev eth0 nop preference 63\n  \
         from 192.0.2.1 table main priority 64",
    );
    assert_eq!(r.exit_code(), 0, "{:?}", said(&r));
    let v = &r.config.vrrp_instance[0].virtual_rules;
    let u = &v[0];
    assert_eq!(u.family, Family::Inet);
    assert!(u.invert && !u.no_track);
    assert_eq!(
        u.from,
        Some(Prefix {
            address: "10.0.0.0".parse().expect("ip"),
            prefix_len: 8
        })
    );
    assert_eq!(u.to.map(|p| p.prefix_len), Some(24));
    assert_eq!(u.iif.as_deref(), Some("eth0"));
    assert_eq!(u.oif.as_deref(), Some("eth1"));
    // CS1 from /etc/iproute2/rt_dsfield when there is one.
    if std::path::Path::new("/etc/iproute2/rt_dsfield").exists() {
        assert_eq!(u.tos, Some(0x20));
    }
    assert_eq!((u.fwmark, u.fwmask), (Some(16), Some(255)));
    assert_eq!(u.priority, Some(7));
    assert_eq!(u.action, RuleAction::Table("100".to_string()));
    assert_eq!(v[1].family, Family::Inet6);
    assert_eq!(v[1].from, None);
    assert_eq!(v[1].action, RuleAction::Goto(100));
    assert!(v[1].no_track);
    let actions: Vec<&RuleAction> = v[2..].iter().map(|u| &u.action).collect();
    assert_eq!(
        actions,
        [
            &RuleAction::Blackhole,
            &RuleAction::Unreachable,
            &RuleAction::Prohibit,
            &RuleAction::Nop,
            &RuleAction::Table("main".to_string())
        ]
    );
    assert_eq!(v[3].fwmask, None);
    assert_eq!(v[5].iif.as_deref(), Some("eth0"));
    assert_eq!(v[6].from.map(|p| p.prefix_len), Some(32));
    assert_eq!(v[6].text, "from 192.0.2.1 table main priority 64");
}

#[test]
fn rules_without_preference_get_keepalived_s_per_family() {
    let r = check(&format!(
        "static_rules {{\n from 10.1.0.0/16 table 1\n}}\n{}",
        MIN.replace(
            " }\n}\n",
            " }\n virtual_rules {\n  from 10.2.0.0/16 table 2\n  to 2001:db8::/32 table 2\n  from all table 3 inet6\n }\n}\n"
        )
    ));
    let prio = |u: &Rule| u.priority;
    assert_eq!(
        r.config
            .global_defs
            .static_rules
            .iter()
            .map(prio)
            .collect::<Vec<_>>(),
        [Some(16384)]
    );
    assert_eq!(
        r.config.vrrp_instance[0]
            .virtual_rules
            .iter()
            .map(prio)
            .collect::<Vec<_>>(),
        [Some(16383), Some(16384), Some(16383)]
    );
    assert_eq!(r.count(Severity::Warning), 4, "{:?}", said(&r));
    assert!(errors(&r).is_empty());
}

#[test]
fn rule_errors_and_unsupported_selectors() {
    for (line, want) in [
        (
            "  from 10.0.0.0/8 table 1 pref 5",
            "keepalived.conf:8:27: error: unknown rule option 'pref'",
        ),
        (
            "  from 10.0.0.0/8 to 2001:db8::/32 table 1 priority 5",
            "keepalived.conf:8:22: error: cannot mix IPv4 and IPv6 addresses in a rule",
        ),
        (
            "  from 10.0.0.0/8 to all table 1 priority 5",
            "keepalived.conf:8:22: error: keepalived 2.2.7 refuses 'all' once an address has set the rule's family",
        ),
        (
            "  fwmark 5 priority 10",
            "keepalived.conf:8:3: error: no action specified for rule",
        ),
        (
            "  fwmark 5 table 5 nop priority 10",
            "keepalived.conf:8:20: error: cannot specify more than one of table/nop/goto",
        ),
        (
            "  fwmark 5 throw priority 10",
            "keepalived.conf:8:12: error: invalid rule action 'throw'",
        ),
        (
            "  fwmark 5 goto 20 priority 30",
            "keepalived.conf:8:3: error: invalid rule - preference 30 >= goto target 20",
        ),
        (
            "  fwmark 5 goto 20",
            "keepalived.conf:8:3: error: invalid rule - goto target 20 specified without preference",
        ),
        (
            "  fwmark 5 table 0 priority 10",
            "keepalived.conf:8:18: error: table 0 is not valid for a rule",
        ),
        (
            "  fwmark -5 table 1 priority 10",
            "keepalived.conf:8:10: error: invalid rule fwmark '-5'",
        ),
        (
            "  fwmark 5 realms 3 blackhole priority 10",
            "keepalived.conf:8:12: error: 'realms' specified for a non-table action",
        ),
        (
            "  fwmark 5 dport 30 table 1 priority 10",
            "keepalived.conf:8:18: error: invalid dport range '30'",
        ),
        (
            "  fwmark 5 table 1 priority 10 track_group G",
            "keepalived.conf:8:32: error: unknown rule option 'track_group'",
        ),
        (
            "  family inet fwmark 5 table 1 priority 10",
            "keepalived.conf:8:3: error: unknown rule option 'family'",
        ),
    ] {
        let r = rules(line);
        let e = errors(&r);
        assert_eq!(e.len(), 1, "{line}: {e:?}");
        assert!(e[0].starts_with(want), "{line}:\n{}\n{want}", e[0]);
        assert!(r.config.vrrp_instance[0].virtual_rules.is_empty(), "{line}");
        // Nothing about a line that is dropped anyway.
        assert!(r.unsupported.is_empty(), "{line}");
    }
    let r = rules(
        "  fwmark 5 uidrange 100-200 ipproto udp sport 10-20 dport 30-30 sup_pl 0 tunnel-id 4 realms 3 table 3 priority 10",
    );
    assert!(errors(&r).is_empty(), "{:?}", said(&r));
    // Without its selectors the rule would match more than written: it is
    // not installed at all.
    assert!(r.config.vrrp_instance[0].virtual_rules.is_empty());
    let names: Vec<&str> = r.unsupported.iter().map(|u| u.keyword.as_str()).collect();
    assert_eq!(
        names,
        [
            "uidrange",
            "ipproto",
            "sport",
            "dport",
            "sup_pl",
            "tunnel-id",
            "realms"
        ]
    );
    assert!(
        said(&r)[0].starts_with("keepalived.conf:8:12: warning: 'uidrange' is not supported by xvrrpd: without it this rule would match more than written, so it is not installed"),
        "{:?}",
        said(&r)
    );
    // l3mdev is the rule's action: without it there is no rule.
    let r = rules("  fwmark 5 l3mdev priority 10");
    assert!(r.config.vrrp_instance[0].virtual_rules.is_empty());
    assert_eq!(r.exit_code(), 1);
    // A missing interface is a warning.
    let r = rules("  iif eth9 table 1 priority 10");
    assert_eq!(r.exit_code(), 1);
    assert!(said(&r)[0].starts_with(
        "keepalived.conf:8:7: warning: interface eth9 for a rule of vrrp_instance V doesn't exist"
    ));
}

#[test]
fn static_blocks_are_read_into_global_defs() {
    let r = check(&format!(
        "static_ipaddress {{\n 192.168.1.1/24 dev eth1 scope global\n 192.168.1.2/24\n}}\n\
         static_routes {{\n 192.168.2.0/24 via 192.168.1.100 dev eth1\n}}\n\
         static_rules {{\n from 192.168.2.0/24 table 1 priority 100\n}}\n\
         static_routes {{\n 192.168.3.0/24 dev eth1\n}}\n{MIN}"
    ));
    assert_eq!(r.exit_code(), 0, "{:?}", said(&r));
    assert!(r.unsupported.is_empty(), "{:?}", r.unsupported);
    let g = &r.config.global_defs;
    assert_eq!(g.static_ipaddress.len(), 2);
    assert_eq!(g.static_ipaddress[0].dev.as_deref(), Some("eth1"));
    assert_eq!(g.static_ipaddress[0].scope.as_deref(), Some("global"));
    // No dev: keepalived's default interface.
    assert_eq!(g.static_ipaddress[1].dev.as_deref(), Some("eth0"));
    // Two blocks add up.
    assert_eq!(g.static_routes.len(), 2);
    assert_eq!(g.static_routes[1].to.prefix_len, 24);
    assert_eq!(g.static_rules[0].priority, Some(100));
    // track_group is for static lines only, and not supported: a warning.
    let r = check(&format!(
        "static_ipaddress {{\n 192.168.1.1/24 dev eth1 track_group G\n 192.168.1.3/24 dev eth1 use_vmac\n}}\n\
         static_routes {{\n 192.168.2.0/24 dev eth1 track_group G\n}}\n\
         static_rules {{\n from 192.168.2.0/24 table 1 priority 100 track_group G\n}}\n{MIN}"
    ));
    let w = said(&r);
    assert!(w.iter().any(|d| d.starts_with("keepalived.conf:2:26: warning: 'track_group' is not supported by xvrrpd: the address is configured without it")), "{w:#?}");
    assert!(w.iter().any(|d| d.starts_with("keepalived.conf:6:26: warning: 'track_group' is not supported by xvrrpd: the route is installed without it")), "{w:#?}");
    assert!(w.iter().any(|d| d.starts_with("keepalived.conf:9:43: warning: 'track_group' is not supported by xvrrpd: the rule is installed without it")), "{w:#?}");
    assert_eq!(
        errors(&r),
        [
            "keepalived.conf:3:26: error: unknown configuration entry 'use_vmac' for a static address (hint: use_vmac applies to virtual_ipaddress only; keepalived says the same)"
        ]
    );
    assert_eq!(r.config.global_defs.static_routes.len(), 1);
    assert_eq!(r.config.global_defs.static_rules.len(), 1);
}

#[test]
fn static_address_without_dev_needs_the_default_interface() {
    let host = FixedHost {
        interfaces: ["eth1".to_string()].into(),
        ..host()
    };
    let text = "static_ipaddress {\n 192.168.1.2/24\n}\n";
    let r = analyze_source(text.as_bytes(), "keepalived.conf", &host);
    assert_eq!(
        errors(&r),
        [
            "keepalived.conf:2:2: error: static address 192.168.1.2/24 has no dev, and the default interface eth0 does not exist (hint: add: dev IF (keepalived puts it on eth0, or stops))"
        ]
    );
}
