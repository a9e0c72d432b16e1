//! The owner keeps its VIPs and its clients: a VIP deleted under a master
//! by someone else (a network manager, an admin) comes back at once and is
//! announced (a `no_track` VIP is left as it is, as keepalived does), and
//! a split brain heals with the client's neighbour entry on the owner.

use std::{net::IpAddr, time::Duration};

use anyhow::{Context, Result, ensure};
use xvrrpd_tests::{
    analysis::announcements,
    clock::{Stamp, ms},
    kconf::{Daemon, Instance},
    lab::wait_until,
    retry::lab_test,
    scenario::Cluster,
};

const VIP: &str = "192.0.2.100";
const UNTRACKED: &str = "198.18.0.7";

#[test]
fn a_vip_deleted_under_a_master_comes_back_and_is_announced() -> Result<()> {
    lab_test(
        "a_vip_deleted_under_a_master_comes_back_and_is_announced",
        || {
            let mut c = Cluster::new(
                "vip-restore",
                Instance::new("VI_1", 51, &["192.0.2.100/24", "198.18.0.7/32 no_track"]),
                &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
                false,
                |_, _| Ok(()),
            )?;
            c.start_all()?;
            c.expect_master("r1", Duration::from_secs(10))?;
            // Let the take-over's GARP batches pass.
            std::thread::sleep(Duration::from_millis(300));
            let vip: IpAddr = VIP.parse()?;
            let deleted = Stamp::now();
            c.router("r1")
                .host
                .exec(&["ip", "addr", "del", "192.0.2.100/24", "dev", "eth0"])
                .context("deleting the VIP on r1")?;
            ensure!(
                c.router("r1").wait_vip(vip, true, Duration::from_secs(1)),
                "r1 did not add back the VIP deleted under it"
            );
            std::thread::sleep(Duration::from_millis(200));
            let r1 = c.router("r1");
            let events: Vec<_> = r1
                .watch
                .events()
                .into_iter()
                .filter(|e| e.addr == vip && e.at.mono_ns >= deleted.mono_ns)
                .collect();
            let gone = events
                .iter()
                .find(|e| !e.added)
                .context("no deletion seen")?;
            let back = events
                .iter()
                .find(|e| e.added && e.at.mono_ns >= gone.at.mono_ns)
                .context("no re-add seen")?;
            let gap = back.at.mono_ns - gone.at.mono_ns;
            println!("VIP deleted → added back: {}", ms(gap as i128));
            // 1 ms on an idle host; the address watch itself can lag on a loaded one.
            ensure!(
                gap <= 5_000_000,
                "the VIP came back after {}",
                ms(gap as i128)
            );
            let wire = c.wire()?;
            let announced = announcements(&wire, vip, r1.mac, gone.at.rt_ns, u64::MAX);
            ensure!(
                !announced.is_empty(),
                "r1 added the VIP back but did not announce it"
            );
            println!(
                "VIP deleted → first announcement: {}",
                ms(announced[0] as i128 - gone.at.rt_ns as i128)
            );
            let rep = r1.status()?;
            ensure!(
                rep.instances[0].counters.vips_restored == 1,
                "status counts {} restored VIPs, not 1",
                rep.instances[0].counters.vips_restored
            );
            // no_track: deleted, it stays deleted.
            let untracked: IpAddr = UNTRACKED.parse()?;
            r1.host
                .exec(&["ip", "addr", "del", "198.18.0.7/32", "dev", "eth0"])
                .context("deleting the no_track VIP on r1")?;
            std::thread::sleep(Duration::from_millis(300));
            ensure!(
                !r1.has_vip(untracked),
                "r1 added back a no_track VIP someone deleted"
            );
            ensure!(
                r1.state("VI_1").as_deref() == Some("MASTER"),
                "r1 left MASTER over a deleted VIP"
            );
            c.finish()
        },
    )
}

/// r1 and r2 stop hearing each other (isolated bridge ports) while the
/// client reaches both: r2 believes it is master and takes the client.
/// When the partition heals, r1 hears r2's lower priority and re-announces
/// (bounded: one batch per advert interval at most), r2 steps down and
/// never announces again, and the client's neighbour entry ends on r1.
#[test]
fn a_split_brain_heals_with_the_client_on_the_owner() -> Result<()> {
    lab_test("a_split_brain_heals_with_the_client_on_the_owner", || {
        let mut c = Cluster::new(
            "split-brain",
            Instance::new("VI_1", 51, &["192.0.2.100/24"]),
            &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
            false,
            |_, _| Ok(()),
        )?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        let (r1_mac, r2_mac) = (c.router("r1").mac, c.router("r2").mac);
        let mut ports = Vec::new();
        for r in ["r1", "r2"] {
            let host = &c.router(r).host;
            ports.push(
                c.lab
                    .net
                    .switch_port(host)
                    .context("a router's bridge port")?,
            );
        }
        let isolate = |on: &str| -> Result<()> {
            for p in &ports {
                let out = c
                    .lab
                    .net
                    .switch_cmd(&["bridge", "link", "set", "dev", p, "isolated", on])
                    .output()?;
                ensure!(out.status.success(), "isolating {p}: {out:?}");
            }
            Ok(())
        };
        isolate("on")?;
        c.lab.mark("r1 and r2 partitioned");
        c.router("r2")
            .wait_state("VI_1", "MASTER", Duration::from_secs(2))
            .context("r2 did not take over without r1's adverts")?;
        std::thread::sleep(Duration::from_millis(300));
        let during = c.client_neighbour(VIP)?;
        println!("during the partition the client is on {during} (r1 {r1_mac}, r2 {r2_mac})");
        isolate("off")?;
        let healed = c.lab.mark("partition healed");
        c.router("r2")
            .wait_state("VI_1", "BACKUP", Duration::from_secs(2))
            .context("r2 did not step down once it heard r1 again")?;
        ensure!(
            wait_until(Duration::from_secs(1), Duration::from_millis(5), || {
                c.client_neighbour(VIP)
                    .is_ok_and(|m| m == r1_mac.to_string())
            }),
            "after the partition healed the client's neighbour entry is not r1 ({r1_mac})"
        );
        let back = Stamp::now();
        println!(
            "partition healed → client on r1 within {}",
            ms(back.rt_ns as i128 - healed.rt_ns as i128)
        );
        // r2's delayed second batch would come 5 s after its take-over.
        std::thread::sleep(Duration::from_millis(5500));
        let wire = c.wire()?;
        let vip: IpAddr = VIP.parse()?;
        let late = announcements(&wire, vip, r2_mac, healed.rt_ns + 50_000_000, u64::MAX);
        ensure!(
            late.is_empty(),
            "r2 stepped down but announced the VIP {} more time(s)",
            late.len()
        );
        let reannounced = announcements(&wire, vip, r1_mac, healed.rt_ns, u64::MAX);
        ensure!(
            !reannounced.is_empty(),
            "r1 did not re-announce the VIP when it heard r2's lower priority"
        );
        c.finish()
    })
}
