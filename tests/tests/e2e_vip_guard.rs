//! A VIP deleted under a master by someone else (a network manager, an
//! admin) comes back at once and is announced; a `no_track` VIP is left
//! as it is, as keepalived does.

use std::{net::IpAddr, time::Duration};

use anyhow::{Context, Result, ensure};
use xvrrpd_tests::{
    analysis::announcements,
    clock::{Stamp, ms},
    kconf::{Daemon, Instance},
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
