//! Backups that start beside a running master leave it alone: through
//! their start, the raw-socket datapath they begin with, and the switch to
//! eBPF, none of them ever advertises (it would if it missed the master's
//! adverts for a down interval) and the VIP stays on the master only.
//!
//! Three xvrrpd routers on a bridge, VRRPv3 at 10 ms, VIP 192.0.2.100/24:
//! r2 (200) is master; r1 (150) and r3 (100) start and stop together,
//! several times, as a cluster being rolled does.

use std::time::Duration;

use anyhow::Result;
use xvrrpd_tests::{
    analysis::{adverts, check_sole_advertiser},
    clock::{Stamp, ms},
    kconf::{Daemon, Instance},
    retry::lab_test,
    scenario::Cluster,
};

const CYCLES: usize = 4;

#[test]
fn backups_starting_beside_a_master_never_take_over() -> Result<()> {
    lab_test("backups_starting_beside_a_master_never_take_over", || {
        let d = Daemon::Xvrrpd;
        let mut c = Cluster::new(
            "startup",
            Instance::new("VI_1", 51, &["192.0.2.100/24"]),
            &[("r1", d, 150), ("r2", d, 200), ("r3", d, 100)],
            false,
            |_, _| Ok(()),
        )?;
        c.start(&["r2"])?;
        c.expect_master("r2", Duration::from_secs(10))?;
        let since = c.lab.mark("backups start and stop");
        for cycle in 0..CYCLES {
            c.start(&["r1", "r3"])?;
            for r in ["r1", "r3"] {
                c.router(r)
                    .wait_state("VI_1", "BACKUP", Duration::from_secs(5))?;
                c.router(r).wait_datapath_settled(Duration::from_secs(10))?;
            }
            // A few down intervals with the eBPF datapath in charge.
            std::thread::sleep(Duration::from_nanos(3 * c.mdi_ns("r1")));
            for r in ["r1", "r3"] {
                c.router_mut(r).sigterm()?;
            }
            println!("cycle {cycle} done");
        }
        let now = Stamp::now();
        let ads = adverts(&c.wire()?, 51, false);
        let r2 = c.router("r2").mac;
        // For the log: the master's own rhythm while the others load their
        // programs (a stall there is what the assertions below would catch
        // as a takeover).
        let mine: Vec<u64> = ads
            .iter()
            .filter(|a| a.mac == r2 && a.t_ns >= since.rt_ns && a.t_ns <= now.rt_ns)
            .map(|a| a.t_ns)
            .collect();
        let worst = mine.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        println!(
            "r2 sent {} adverts while r1 and r3 started {CYCLES} times; its longest gap {}",
            mine.len(),
            ms(worst as i128)
        );
        check_sole_advertiser(&ads, r2, since.rt_ns, now.rt_ns, c.lab.origin.rt_ns)?;
        c.check_holders("r2", since.mono_ns, now.mono_ns, &[])?;
        c.finish()
    })
}
