//! `virtual_routes` and `virtual_rules` on a load balancer's pair: the
//! master has them, the backup not; one deleted by someone else comes back
//! (unless `no_track`); kill -9 of the master leaves its routes, which its
//! restart removes before anything else; SIGTERM removes them; every route
//! xvrrpd installs says `proto keepalived`. `XVRRPD_LAB_DAEMON=keepalived`:
//! the same file under keepalived, for the parts keepalived does too.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use xvrrpd_tests::{
    kconf::Instance,
    retry::lab_test,
    scenario::Cluster,
    vrrp_lab::{scenario_daemon, xvrrpd_only},
};

/// `ip -n NS [-6] route show table all` and `ip -n NS [-6] rule`, as text.
fn ip_show(ns: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(["-n", ns]).args(args).output()?;
    ensure!(
        out.status.success(),
        "ip -n {ns} {args:?}: {:?}",
        out.status
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn routes(ns: &str) -> Result<String> {
    Ok(ip_show(ns, &["route", "show", "table", "all"])?
        + &ip_show(ns, &["-6", "route", "show", "table", "all"])?)
}

fn rules(ns: &str) -> Result<String> {
    Ok(ip_show(ns, &["rule"])? + &ip_show(ns, &["-6", "rule"])?)
}

/// The routes and rules of the instance, and how each shows in `ip`.
const ROUTES: [&str; 4] = [
    "198.51.100.0/24 via 192.0.2.1 dev eth0",
    "203.0.113.0/24 dev eth0",
    "blackhole 198.18.0.0/15",
    "default via 192.0.2.50 dev eth0",
];
const UNTRACKED: &str = "192.0.2.128/25 via 192.0.2.2 dev eth0";
const RULE: &str = "from 192.0.2.100 lookup 100";

/// Whether every route and the rule are on `ns` (`present`) or none is.
fn has_all(ns: &str, present: bool) -> Result<bool> {
    let (r, l) = (routes(ns)?, rules(ns)?);
    let each = ROUTES
        .iter()
        .map(|want| r.lines().any(|line| line.starts_with(want)))
        .chain(std::iter::once(l.contains(RULE)));
    Ok(if present {
        each.clone().all(|x| x)
    } else {
        !each.clone().any(|x| x)
    })
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(());
        }
        ensure!(Instant::now() < end, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn virtual_routes_and_rules_follow_the_master() -> Result<()> {
    lab_test("virtual_routes_and_rules_follow_the_master", || {
        let d = scenario_daemon();
        let mut inst = Instance::new("VI_R", 81, &["192.0.2.100/24"]);
        inst.extra.extend(
            [
                "virtual_routes {",
                "    198.51.100.0/24 via 192.0.2.1 dev eth0",
                "    src 192.0.2.100 to 203.0.113.0/24 dev eth0",
                "    blackhole 198.18.0.0/15",
                "    0.0.0.0/0 via 192.0.2.50 dev eth0 table 100",
                "    192.0.2.128/25 via 192.0.2.2 dev eth0 no_track",
                "}",
                "virtual_rules {",
                "    from 192.0.2.100 table 100",
                "}",
            ]
            .map(String::from),
        );
        let mut c = Cluster::new(
            "routes",
            inst,
            &[("r1", d, 150), ("r2", d, 100)],
            false,
            |_, _| Ok(()),
        )?;
        let (ns1, ns2) = (
            c.router("r1").host.ns.clone(),
            c.router("r2").host.ns.clone(),
        );
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        wait_for("r1's routes and rule", Duration::from_secs(5), || {
            has_all(&ns1, true)
        })
        .with_context(|| {
            format!(
                "r1: {}{}",
                routes(&ns1).unwrap_or_default(),
                rules(&ns1).unwrap_or_default()
            )
        })?;
        ensure!(
            has_all(&ns2, false)?,
            "r2 (backup) has routes: {}",
            routes(&ns2)?
        );
        if xvrrpd_only(d, "proto keepalived on every route") {
            let r = routes(&ns1)?;
            for want in ROUTES {
                let line = r.lines().find(|l| l.starts_with(want)).unwrap_or_default();
                ensure!(line.contains("proto keepalived"), "not marked: {line}");
            }
        }

        // Deleted by someone else: back, but for the untracked one, and with
        // no transition. (keepalived 2.2.7 instead leaves MASTER, sends a
        // priority-0 advert and comes back, re-adding everything.)
        if xvrrpd_only(d, "putting back deleted routes and rules without a flap") {
            let ip = |args: &[&str]| -> Result<()> {
                let out = Command::new("ip").args(["-n", &ns1]).args(args).output()?;
                ensure!(
                    out.status.success(),
                    "ip {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Ok(())
            };
            let transitions = c.router("r1").fifo_lines().len();
            ip(&["route", "del", "198.51.100.0/24"])?;
            ip(&["route", "del", "default", "table", "100"])?;
            ip(&["rule", "del", "from", "192.0.2.100", "table", "100"])?;
            ip(&["route", "del", "192.0.2.128/25"])?;
            wait_for(
                "the deleted routes and rule back",
                Duration::from_secs(3),
                || has_all(&ns1, true),
            )?;
            std::thread::sleep(Duration::from_millis(300));
            ensure!(
                !routes(&ns1)?.lines().any(|l| l.starts_with(UNTRACKED)),
                "the no_track route came back"
            );
            ensure!(
                c.router("r1").fifo_lines().len() == transitions,
                "r1 changed state while putting routes back: {:?}",
                c.router("r1").fifo_lines()
            );
        }

        // kill -9: r2 takes over with the routes; r1's restart removes
        // what its dead run left, then takes back over and r2 lets go.
        println!("{}", c.crash("r1", "r2")?.summary());
        wait_for(
            "r2's routes after the crash",
            Duration::from_secs(5),
            || has_all(&ns2, true),
        )?;
        println!("{}", c.rejoin("r1", "r2")?.summary());
        wait_for(
            "r1's routes after its return",
            Duration::from_secs(5),
            || has_all(&ns1, true),
        )?;
        wait_for(
            "r2 without routes after r1's return",
            Duration::from_secs(5),
            || has_all(&ns2, false),
        )?;

        // SIGTERM: r1 removes them, r2 installs them.
        println!("{}", c.terminate("r1", "r2")?.summary());
        wait_for(
            "r1 without routes after SIGTERM",
            Duration::from_secs(5),
            || has_all(&ns1, false),
        )?;
        wait_for(
            "r2's routes after r1 stopped",
            Duration::from_secs(5),
            || has_all(&ns2, true),
        )?;
        c.finish()
    })
}

/// `static_ipaddress`, `static_routes` and `static_rules` are set at start
/// whatever the VRRP state (here on the backup too), put back when deleted,
/// and removed at stop.
#[test]
fn static_addresses_routes_and_rules_live_with_the_daemon() -> Result<()> {
    lab_test(
        "static_addresses_routes_and_rules_live_with_the_daemon",
        || {
            let d = scenario_daemon();
            let inst = Instance::new("VI_S", 82, &["192.0.2.100/24"]);
            let mut c = Cluster::new(
                "statics",
                inst,
                &[("r1", d, 150), ("r2", d, 100)],
                false,
                |r, cfg| {
                    if r.name == "r2" {
                        cfg.global.top.extend(
                            [
                                "static_ipaddress {",
                                "    198.51.100.7/24 dev eth0",
                                "}",
                                "static_routes {",
                                "    203.0.113.0/24 via 198.51.100.1 dev eth0",
                                "}",
                                "static_rules {",
                                "    from 198.51.100.7 table 200 preference 300",
                                "}",
                            ]
                            .map(String::from),
                        );
                    }
                    Ok(())
                },
            )?;
            let ns2 = c.router("r2").host.ns.clone();
            let present = |ns: &str| -> Result<(bool, bool, bool)> {
                let addr = ip_show(ns, &["-br", "addr", "show", "dev", "eth0"])?;
                Ok((
                    addr.contains("198.51.100.7/24"),
                    routes(ns)?
                        .lines()
                        .any(|l| l.starts_with("203.0.113.0/24 via 198.51.100.1")),
                    rules(ns)?.contains("300:\tfrom 198.51.100.7 lookup 200"),
                ))
            };
            c.start_all()?;
            c.expect_master("r1", Duration::from_secs(10))?;
            wait_for(
                "r2's static address, route and rule",
                Duration::from_secs(5),
                || Ok(present(&ns2)? == (true, true, true)),
            )
            .with_context(|| format!("{:?}", present(&ns2)))?;
            if xvrrpd_only(d, "putting back a deleted static route") {
                let out = Command::new("ip")
                    .args(["-n", &ns2, "route", "del", "203.0.113.0/24"])
                    .output()?;
                ensure!(out.status.success(), "ip route del: {:?}", out.status);
                wait_for("the static route back", Duration::from_secs(3), || {
                    Ok(present(&ns2)?.1)
                })?;
            }
            c.router_mut("r2").sigterm()?;
            wait_for(
                "r2's statics removed at stop",
                Duration::from_secs(5),
                || Ok(present(&ns2)? == (false, false, false)),
            )
            .with_context(|| format!("{:?}", present(&ns2)))?;
            c.finish()
        },
    )
}

/// `promote_secondaries`: on for the instance's interface while the daemon
/// runs (the other addresses of a subnet survive when its primary goes),
/// back off after it stops.
#[test]
fn promote_secondaries_is_on_while_the_daemon_runs() -> Result<()> {
    lab_test("promote_secondaries_is_on_while_the_daemon_runs", || {
        let d = scenario_daemon();
        // The VIP shares a subnet whose primary is not the advert source.
        let mut inst = Instance::new("VI_P", 83, &["203.0.113.100/24"]);
        inst.extra.push("promote_secondaries".into());
        let mut c = Cluster::new("promote", inst, &[("r1", d, 150)], false, |_, _| Ok(()))?;
        let ns = c.router("r1").host.ns.clone();
        let out = Command::new("ip")
            .args(["-n", &ns, "addr", "add", "203.0.113.1/24", "dev", "eth0"])
            .output()?;
        ensure!(out.status.success(), "ip addr add: {:?}", out.status);
        let setting = || -> Result<String> {
            let out = Command::new("ip")
                .args(["netns", "exec", &ns, "cat"])
                .arg("/proc/sys/net/ipv4/conf/eth0/promote_secondaries")
                .output()?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        ensure!(setting()? == "0", "promote_secondaries on before the start");
        c.start_all()?;
        c.router("r1")
            .wait_state("VI_P", "MASTER", Duration::from_secs(10))?;
        ensure!(
            setting()? == "1",
            "promote_secondaries is {} while running",
            setting()?
        );
        // The subnet's primary goes; the VIP (a secondary) is promoted, not lost.
        let out = Command::new("ip")
            .args(["-n", &ns, "addr", "del", "203.0.113.1/24", "dev", "eth0"])
            .output()?;
        ensure!(out.status.success(), "ip addr del: {:?}", out.status);
        std::thread::sleep(Duration::from_millis(200));
        let addrs = ip_show(&ns, &["-br", "addr", "show", "dev", "eth0"])?;
        ensure!(
            addrs.contains("203.0.113.100/24"),
            "the VIP went with the primary: {addrs}"
        );
        c.router_mut("r1").sigterm()?;
        wait_for(
            "promote_secondaries back off",
            Duration::from_secs(5),
            || Ok(setting()? == "0"),
        )?;
        c.finish()
    })
}

/// A reload that changes a running master's routes and rules removes the
/// ones it no longer has and adds the new ones, with no transition.
#[test]
fn a_reload_changes_a_masters_routes_in_place() -> Result<()> {
    lab_test("a_reload_changes_a_masters_routes_in_place", || {
        let d = xvrrpd_tests::kconf::Daemon::Xvrrpd;
        let mut inst = Instance::new("VI_L", 84, &["192.0.2.100/24"]);
        inst.extra.extend(
            [
                "virtual_routes {",
                "    198.51.100.0/24 via 192.0.2.1 dev eth0",
                "}",
                "virtual_rules {",
                "    from 192.0.2.100 table 100 preference 200",
                "}",
            ]
            .map(String::from),
        );
        let mut c = Cluster::new(
            "reloadroutes",
            inst,
            &[("r1", d, 150)],
            false,
            |_, _| Ok(()),
        )?;
        let ns = c.router("r1").host.ns.clone();
        c.start_all()?;
        c.router("r1")
            .wait_state("VI_L", "MASTER", Duration::from_secs(10))?;
        wait_for("the first route and rule", Duration::from_secs(5), || {
            Ok(routes(&ns)?.contains("198.51.100.0/24 via 192.0.2.1")
                && rules(&ns)?.contains("200:\tfrom 192.0.2.100 lookup 100"))
        })?;
        let mut cfg = c.router("r1").config().context("r1 has no config")?.clone();
        let i = &mut cfg.instances[0];
        i.extra = [
            "virtual_routes {",
            "    203.0.113.0/24 via 192.0.2.1 dev eth0",
            "}",
            "virtual_rules {",
            "    from 192.0.2.100 table 101 preference 201",
            "}",
        ]
        .map(String::from)
        .to_vec();
        let lines = c.router("r1").fifo_lines().len();
        c.router_mut("r1").write_config(&cfg)?;
        c.router_mut("r1").sighup()?;
        wait_for(
            "the new route and rule, the old ones gone",
            Duration::from_secs(5),
            || {
                let (r, l) = (routes(&ns)?, rules(&ns)?);
                Ok(r.contains("203.0.113.0/24 via 192.0.2.1")
                    && !r.contains("198.51.100.0/24")
                    && l.contains("201:\tfrom 192.0.2.100 lookup 101")
                    && !l.contains("lookup 100"))
            },
        )
        .with_context(|| {
            format!(
                "{}{}",
                routes(&ns).unwrap_or_default(),
                rules(&ns).unwrap_or_default()
            )
        })?;
        ensure!(
            c.router("r1").fifo_lines().len() == lines,
            "r1 changed state on the reload"
        );
        c.finish()
    })
}
