//! One host with 1,000 instances (issue #12): two xvrrpd routers, 1,000
//! VRRPv3 instances at `advert_int 0.1` with one VIP each, on four VLANs
//! of one NIC (a VRID is 8 bits: 250 per VLAN; see `xvrrpd_tests::scale`).
//! The master is killed: every VIP moves to the backup, once; it comes
//! back: every VIP moves back, once. Nothing flaps on the way.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use xvrrpd_tests::{
    addr_watch,
    kconf::{Daemon, Instance},
    retry::lab_test,
    router::RouterNode,
    scale,
    scenario::Cluster,
};

const N: usize = 1000;
const ADVERT_INT: Duration = Duration::from_millis(100);

/// Waits (bounded) until `r` holds every VIP of `vips` (`present`) or none.
fn wait_all(r: &RouterNode, vips: &[IpAddr], present: bool, timeout: Duration) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        let left = vips.iter().filter(|v| r.has_vip(**v) != present).count();
        if left == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < end,
            "{}: {left} of {} VIPs still {} after {timeout:?}",
            r.name,
            vips.len(),
            if present { "missing" } else { "held" }
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many of `r`'s instances are in `state`, by its status report.
fn in_state(r: &RouterNode, state: &str) -> Result<usize> {
    Ok(r.status()?
        .instances
        .iter()
        .filter(|i| i.state == state)
        .count())
}

/// Every VIP moved exactly as `want` (adds, removes) on `r` since `since`.
fn check_moves(r: &RouterNode, vips: &[IpAddr], since: u64, want: (usize, usize)) -> Result<()> {
    r.watch.check_complete()?;
    let m = addr_watch::moves(&r.watch.events(), since);
    let wrong: Vec<String> = vips
        .iter()
        .filter_map(|v| {
            let got = m.get(v).copied().unwrap_or_default();
            (got != want).then(|| format!("{v}: {} added, {} removed", got.0, got.1))
        })
        .collect();
    ensure!(
        wrong.is_empty(),
        "{}: {} of {} VIPs did not move exactly once ({} added, {} removed wanted), e.g. {:?}",
        r.name,
        wrong.len(),
        vips.len(),
        want.0,
        want.1,
        &wrong[..wrong.len().min(5)]
    );
    Ok(())
}

#[test]
fn a_thousand_instances_fail_over_together_and_back_each_vip_moving_once() -> Result<()> {
    lab_test(
        "a_thousand_instances_fail_over_together_and_back_each_vip_moving_once",
        || {
            let template = Instance::new("VI_1", 1, &["192.0.2.100/24"]);
            let mut c = Cluster::new(
                "many",
                template,
                &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
                false,
                |_, cfg| {
                    let prio = cfg.instances[0].priority;
                    cfg.instances = scale::instances(N, prio, ADVERT_INT);
                    Ok(())
                },
            )?;
            for (i, r) in c.routers.iter().enumerate() {
                scale::add_vlans(&c.lab.net, r, i, N)?;
            }
            let vips: Vec<IpAddr> = c
                .router("r1")
                .config()
                .context("r1 has no config")?
                .instances
                .iter()
                .flat_map(|i| i.vip_addrs())
                .collect();
            ensure!(vips.len() == N, "{} VIPs configured", vips.len());
            // r2's (priority 100) Master_Down_Interval at advert_int 0.1.
            let mdi = ADVERT_INT * 3 + ADVERT_INT * (256 - 100) / 256;

            c.start(&["r1"])?;
            wait_all(
                c.router("r1"),
                &vips,
                true,
                mdi * 4 + Duration::from_secs(30),
            )?;
            c.start(&["r2"])?;
            c.router("r2")
                .wait_datapath_settled(Duration::from_secs(30))?;
            std::thread::sleep(mdi * 2);
            let backups = in_state(c.router("r2"), "BACKUP")?;
            ensure!(backups == N, "r2 has {backups} of {N} instances in BACKUP");

            // r1 dies: every VIP moves to r2 once; r1's warden removes its own.
            let killed = c.router_mut("r1").kill9()?;
            wait_all(
                c.router("r2"),
                &vips,
                true,
                mdi * 3 + Duration::from_secs(20),
            )?;
            let all_moved = Instant::now();
            wait_all(c.router("r1"), &vips, false, Duration::from_secs(10))
                .context("the warden of the killed r1 left VIPs behind")?;
            let last_add = vips
                .iter()
                .filter_map(|v| c.router("r2").watch.added_at(*v))
                .max()
                .unwrap_or(killed.mono_ns);
            println!(
                "kill -9 r1: all {N} VIPs on r2 {:.1} ms after the kill (Master_Down_Interval {:.1} ms; \
                 seen {:.1} ms after the last add)",
                (last_add - killed.mono_ns) as f64 / 1e6,
                mdi.as_secs_f64() * 1e3,
                all_moved.elapsed().as_secs_f64() * 1e3
            );
            check_moves(c.router("r2"), &vips, killed.mono_ns, (1, 0))?;
            check_moves(c.router("r1"), &vips, killed.mono_ns, (0, 1))?;

            // r1 comes back and preempts: every VIP moves back once.
            let back = c.router_mut("r1").start()?;
            wait_all(
                c.router("r1"),
                &vips,
                true,
                mdi * 4 + Duration::from_secs(30),
            )?;
            wait_all(c.router("r2"), &vips, false, Duration::from_secs(10))?;
            std::thread::sleep(mdi * 2);
            check_moves(c.router("r1"), &vips, back.mono_ns, (1, 0))?;
            check_moves(c.router("r2"), &vips, back.mono_ns, (0, 1))?;
            let masters = in_state(c.router("r1"), "MASTER")?;
            ensure!(masters == N, "r1 has {masters} of {N} instances in MASTER");
            c.finish()
        },
    )
}
