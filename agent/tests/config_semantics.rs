//! keepalived's parsing rules and defaults, one at a time.

use std::time::Duration;

use xvrrpd::config::{FixedHost, Report, Severity, State, analyze_source, load_with};

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
    for kw in [
        "dynamic_interfaces",
        "vrrp_iptables",
        "reload_time_file /x",
        "vrrp_garp_extra_if 5",
    ] {
        let r = check(&format!("global_defs {{\n {kw}\n}}\n{MIN}"));
        assert_eq!(r.exit_code(), 1, "{kw}: {:?}", r.diagnostics);
        assert!(
            r.unsupported.iter().any(|u| kw.starts_with(&u.keyword)),
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
