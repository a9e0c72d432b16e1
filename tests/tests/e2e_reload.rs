//! SIGHUP reloads (issue #5): an unchanged instance does not flap (no
//! transition, no GARP, adverts go on, the VIP stays), a changed one
//! takes its new settings, and a config that does not load leaves the old
//! one running.
//!
//! r1 (150) and r2 (100) run two instances, VI_1 (VRID 51, 192.0.2.100)
//! and VI_2 (VRID 52, 198.51.100.100), VRRPv3 at 10 ms, with the delayed
//! second GARP burst off (`vrrp_garp_master_delay 0`) so any GARP after a
//! reload is the reload's. With `XVRRPD_LAB_DAEMON=keepalived` these are
//! expected to fail where keepalived itself flaps or drops a broken config:
//! that is the behaviour xvrrpd improves on (PROTOCOL.md).

use std::{net::IpAddr, time::Duration};

use anyhow::Result;
use xvrrpd_tests::{
    analysis::{adverts, announcements, check_sole_advertiser, held_throughout, max_advert_gap},
    clock::{Stamp, ms},
    kconf::Instance,
    kconf::RouterConfig,
    retry::lab_test,
    scenario::Cluster,
    vrrp_lab::{scenario_daemon, xvrrpd_only},
};

const VIP1: &str = "192.0.2.100";
const VIP2: &str = "198.51.100.100";

fn two_instances(test: &str) -> Result<Cluster> {
    let d = scenario_daemon();
    let mut c = Cluster::new(
        test,
        Instance::new("VI_1", 51, &["192.0.2.100/24"]),
        &[("r1", d, 150), ("r2", d, 100)],
        false,
        |_, cfg| {
            let mut vi2 = cfg.instances[0].clone();
            vi2.name = "VI_2".into();
            vi2.vrid = 52;
            vi2.vips = vec!["198.51.100.100/24".into()];
            cfg.instances.push(vi2);
            cfg.global.extra.push("vrrp_garp_master_delay 0".into());
            Ok(())
        },
    )?;
    c.start_all()?;
    c.expect_master("r1", Duration::from_secs(10))?;
    let vip2: IpAddr = VIP2.parse().unwrap();
    assert!(
        c.router("r1").wait_vip(vip2, true, Duration::from_secs(2)),
        "r1 does not hold VI_2's VIP"
    );
    // Let the GARP bursts of the election pass.
    std::thread::sleep(Duration::from_millis(300));
    Ok(c)
}

/// No sign of a flap of `inst` (VRID, VIP) on r1 in `[from, to]`: no FIFO
/// line, no GARP, no priority-0 advert, adverts every interval, the VIP
/// held all along, and nobody else advertising.
fn check_no_flap(
    c: &Cluster,
    inst: &str,
    vrid: u8,
    vip: &str,
    from: Stamp,
    to: Stamp,
) -> Result<()> {
    let vip: IpAddr = vip.parse().unwrap();
    let r1 = c.router("r1");
    let lines: Vec<String> = r1
        .fifo_lines()
        .into_iter()
        .filter(|l| l.name == inst && l.at.mono_ns >= from.mono_ns)
        .map(|l| l.raw)
        .collect();
    assert!(
        lines.is_empty(),
        "{inst} went through transitions on reload: {lines:?}"
    );
    let events = c.wire()?;
    let garps = announcements(&events, vip, r1.mac, from.rt_ns, to.rt_ns);
    assert!(
        garps.is_empty(),
        "{inst}: r1 sent {} gratuitous ARP(s) for {vip} after the reload (first {} after SIGHUP)",
        garps.len(),
        ms(garps[0] as i128 - from.rt_ns as i128)
    );
    let ads = adverts(&events, vrid, false);
    if let Some(z) = ads
        .iter()
        .find(|a| a.mac == r1.mac && a.priority == 0 && a.t_ns >= from.rt_ns)
    {
        panic!(
            "{inst}: r1 sent a priority-0 advert {} after SIGHUP",
            ms(z.t_ns as i128 - from.rt_ns as i128)
        );
    }
    check_sole_advertiser(&ads, r1.mac, from.rt_ns, to.rt_ns, c.lab.origin.rt_ns)?;
    let gap = max_advert_gap(&ads, r1.mac, from.rt_ns, to.rt_ns).unwrap_or(u64::MAX);
    // Two intervals and a little: one late advert is no flap, a missing
    // one would make the backups start counting.
    assert!(
        gap <= 25_000_000,
        "{inst}: r1's adverts stopped for {} around the reload",
        ms(gap as i128)
    );
    assert!(
        held_throughout(&r1.watch.held(vip), from.mono_ns, to.mono_ns),
        "{inst}: r1 did not hold {vip} throughout the reload: {:?}",
        r1.watch.held(vip)
    );
    Ok(())
}

#[test]
fn sighup_with_unchanged_and_changed_instances() -> Result<()> {
    lab_test("sighup_with_unchanged_and_changed_instances", || {
        let mut c = two_instances("reload")?;
        let d = c.routers[0].daemon;

        // Unchanged config.
        let hup = c.router_mut("r1").sighup()?;
        c.lab.mark_at("SIGHUP r1 (unchanged)", hup);
        std::thread::sleep(Duration::from_secs(1));
        assert!(c.router_mut("r1").is_running(), "r1 exited on SIGHUP");
        let now = Stamp::now();
        check_no_flap(&c, "VI_1", 51, VIP1, hup, now)?;
        check_no_flap(&c, "VI_2", 52, VIP2, hup, now)?;
        if xvrrpd_only(d, "the reload counter in the status report") {
            let rep = c.router("r1").status()?;
            assert_eq!(rep.daemon.reloads, 1, "status: reloads after one SIGHUP");
        }

        // VI_2's priority drops to 90 on r1: VI_2 moves to r2, VI_1 stays.
        let mut cfg: RouterConfig = c.router("r1").config().unwrap().clone();
        cfg.instances[1].priority = 90;
        c.router_mut("r1").write_config(&cfg)?;
        let hup = c.router_mut("r1").sighup()?;
        c.lab.mark_at("SIGHUP r1 (VI_2 at 90)", hup);
        let vip2: IpAddr = VIP2.parse().unwrap();
        assert!(
            c.router("r2").wait_vip(vip2, true, Duration::from_secs(2)),
            "r2 did not take VI_2 after r1's reload lowered its priority to 90"
        );
        assert!(
            c.router("r1").wait_vip(vip2, false, Duration::from_secs(1)),
            "r1 kept VI_2's VIP after r2 took over"
        );
        std::thread::sleep(Duration::from_millis(300));
        let now = Stamp::now();
        check_no_flap(&c, "VI_1", 51, VIP1, hup, now)?;
        let ads2 = adverts(&c.wire()?, 52, false);
        assert!(
            ads2.iter()
                .any(|a| a.mac == c.router("r1").mac && a.priority == 90 && a.t_ns >= hup.rt_ns),
            "r1 never advertised VI_2 at its new priority 90"
        );
        c.router("r2")
            .wait_state("VI_2", "MASTER", Duration::from_secs(1))?;
        c.finish()
    })
}

#[test]
fn a_config_that_does_not_load_leaves_the_old_one_running() -> Result<()> {
    lab_test(
        "a_config_that_does_not_load_leaves_the_old_one_running",
        || {
            let mut c = two_instances("reload-bad")?;
            let good = std::fs::read_to_string(&c.router("r1").config_path).unwrap();
            // An out-of-range VRID and a block left open.
            let bad = good.replacen("virtual_router_id 51", "virtual_router_id 300", 1)
                + "\nvrrp_instance VI_9 {\n    interface eth0\n";
            c.router_mut("r1").write_config_text(&bad)?;
            let hup = c.router_mut("r1").sighup()?;
            c.lab.mark_at("SIGHUP r1 (broken config)", hup);
            std::thread::sleep(Duration::from_secs(1));
            assert!(
                c.router_mut("r1").is_running(),
                "r1 exited on a SIGHUP with a broken config; log {}",
                c.router("r1").log_path.display()
            );
            let now = Stamp::now();
            check_no_flap(&c, "VI_1", 51, VIP1, hup, now)?;
            check_no_flap(&c, "VI_2", 52, VIP2, hup, now)?;
            let d = c.routers[0].daemon;
            if xvrrpd_only(d, "the status report after a failed reload") {
                let rep = c.router("r1").status()?;
                let names: Vec<(&str, &str, u8)> = rep
                    .instances
                    .iter()
                    .map(|i| (i.name.as_str(), i.state.as_str(), i.vrid))
                    .collect();
                assert_eq!(
                    names,
                    vec![("VI_1", "MASTER", 51), ("VI_2", "MASTER", 52)],
                    "status after the failed reload"
                );
            }
            // The file fixed, a reload is clean again.
            c.router_mut("r1").write_config_text(&good)?;
            let hup = c.router_mut("r1").sighup()?;
            std::thread::sleep(Duration::from_millis(500));
            check_no_flap(&c, "VI_1", 51, VIP1, hup, Stamp::now())?;
            c.finish()
        },
    )
}

/// A reload that changes only `virtual_ipaddress_excluded` (addresses that
/// move with the VIPs but are not advertised) adds them on the master and
/// removes them again, without a flap.
#[test]
fn a_reload_moves_excluded_addresses_on_the_master() -> Result<()> {
    lab_test("a_reload_moves_excluded_addresses_on_the_master", || {
        let mut c = two_instances("reload-excluded")?;
        let extra: IpAddr = "192.0.2.150".parse()?;
        let mut cfg: RouterConfig = c.router("r1").config().unwrap().clone();
        cfg.instances[0]
            .extra
            .push("virtual_ipaddress_excluded {\n        192.0.2.150/24\n    }".into());
        c.router_mut("r1").write_config(&cfg)?;
        let hup = c.router_mut("r1").sighup()?;
        c.lab.mark_at("SIGHUP r1 (an excluded address added)", hup);
        assert!(
            c.router("r1").wait_vip(extra, true, Duration::from_secs(2)),
            "r1 (master) did not add the excluded address its reload configured"
        );
        cfg.instances[0].extra.pop();
        c.router_mut("r1").write_config(&cfg)?;
        let hup2 = c.router_mut("r1").sighup()?;
        c.lab
            .mark_at("SIGHUP r1 (the excluded address removed)", hup2);
        assert!(
            c.router("r1")
                .wait_vip(extra, false, Duration::from_secs(2)),
            "r1 kept the excluded address its reload no longer configures"
        );
        assert!(
            !c.router("r2").has_vip(extra),
            "the backup r2 took the excluded address"
        );
        std::thread::sleep(Duration::from_millis(300));
        check_no_flap(&c, "VI_1", 51, VIP1, hup, Stamp::now())?;
        c.finish()
    })
}
