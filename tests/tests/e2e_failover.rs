//! Failover of one VRRP instance between three routers running the real
//! xvrrpd (issue #5), with a client pinging the VIP and the bridge
//! captured: election, kill -9, SIGTERM, link failure.
//!
//! `XVRRPD_LAB_DAEMON=keepalived` runs the same scenarios with keepalived
//! (the checks only xvrrpd promises are then named and left out).
//! Routers: r1 priority 150, r2 100, r3 50; VRRPv3, 10 ms adverts, VIP
//! 192.0.2.100/24.

use std::time::Duration;

use anyhow::Result;
use xvrrpd_tests::{
    kconf::Instance,
    retry::lab_test,
    router::LinkSide,
    scenario::Cluster,
    vrrp_lab::{scenario_daemon, xvrrpd_only},
};

fn three_routers(test: &str) -> Result<Cluster> {
    let d = scenario_daemon();
    let inst = Instance::new("VI_1", 51, &["192.0.2.100/24"]);
    let mut c = Cluster::new(
        test,
        inst,
        &[("r1", d, 150), ("r2", d, 100), ("r3", d, 50)],
        false,
        |_, _| Ok(()),
    )?;
    c.start_all()?;
    c.expect_master("r1", Duration::from_secs(10))?;
    Ok(c)
}

#[test]
fn initial_election_highest_priority_wins() -> Result<()> {
    lab_test("initial_election_highest_priority_wins", || {
        let mut c = three_routers("election")?;
        let d = c.routers[0].daemon;
        if xvrrpd_only(d, "the status report and the VIP marker") {
            c.check_xvrrpd_status("r1")?;
            c.check_vip_marker("r1")?;
        }
        c.finish()
    })
}

#[test]
fn kill9_of_the_master_fails_over_and_restart_removes_the_leftover_vip() -> Result<()> {
    lab_test(
        "kill9_of_the_master_fails_over_and_restart_removes_the_leftover_vip",
        || {
            let mut c = three_routers("kill9")?;
            let d = c.routers[0].daemon;
            let f = c.crash("r1", "r2")?;
            println!("{}", f.summary());
            if xvrrpd_only(d, "the transition timeline in the status report") {
                c.check_xvrrpd_timeline("r2", &f)?;
                c.check_xvrrpd_status("r2")?;
            }
            // r3 stayed a backup all along.
            assert!(
                !c.router("r3").has_vip(c.vip),
                "r3 (priority 50) took the VIP although r2 (100) was there"
            );
            // xvrrpd's warden takes the dead daemon's VIP away once r2 owns
            // it; keepalived leaves it for the restart to remove.
            let warden = xvrrpd_only(d, "the warden removing the dead daemon's VIP");
            if warden {
                anyhow::ensure!(
                    c.router("r1")
                        .wait_vip(c.vip, false, Duration::from_secs(1)),
                    "the killed r1 still holds the VIP 1 s after r2 took over"
                );
            }
            let back = c.rejoin("r1", "r2")?;
            println!("{}", back.summary());
            if !warden {
                let removed = back
                    .leftover_removed_ns
                    .expect("r1 was killed with the VIP: rejoin() checks its removal");
                assert!(
                    removed < 1_000_000_000,
                    "r1 removed the VIP left by its crash only {removed} ns after restarting"
                );
            }
            if xvrrpd_only(d, "the VIP marker after the restart") {
                c.check_vip_marker("r1")?;
            }
            c.finish()
        },
    )
}

#[test]
fn sigterm_hands_over_within_skew() -> Result<()> {
    lab_test("sigterm_hands_over_within_skew", || {
        let mut c = three_routers("sigterm")?;
        let f = c.terminate("r1", "r2")?;
        println!("{}", f.summary());
        let d = c.routers[0].daemon;
        if xvrrpd_only(d, "the status report after the hand-over") {
            c.check_xvrrpd_status("r2")?;
        }
        let back = c.rejoin("r1", "r2")?;
        println!("{}", back.summary());
        c.finish()
    })
}

#[test]
fn link_down_on_the_master_goes_fault_and_fails_over() -> Result<()> {
    lab_test("link_down_on_the_master_goes_fault_and_fails_over", || {
        let mut c = three_routers("linkdown")?;
        // Carrier lost (the bridge port goes down), then back.
        let f = c.link_fail("r1", "r2", LinkSide::Switch)?;
        println!("{}", f.summary());
        let back = c.link_restore("r1", "r2", LinkSide::Switch)?;
        println!("{}", back.summary());
        // The router's own interface goes down, then back.
        let f = c.link_fail("r1", "r2", LinkSide::Host)?;
        println!("{}", f.summary());
        let back = c.link_restore("r1", "r2", LinkSide::Host)?;
        println!("{}", back.summary());
        c.finish()
    })
}
