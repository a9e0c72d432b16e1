//! The VRRP lab checked against keepalived on both sides: if these pass,
//! the harness (capture, prober, address watches, analysis) measures what
//! it claims, independently of xvrrpd.
//!
//! Two keepalived 2.2.7 routers (r1 150, r2 100) and a client on one
//! bridge, VRRPv3 at 10 ms: election, then three rounds of kill -9 of the
//! master (failover within `Master_Down_Interval`) with the restarted
//! master removing its leftover VIP and preempting back, SIGTERM (hand-over
//! within `Skew_Time`) and preemption back, and the master's link lost and
//! back. The figures are printed (`--nocapture`): keepalived's detection
//! error against theory and the client's outage for each kind of event.

use std::time::Duration;

use anyhow::Result;
use xvrrpd_tests::{
    clock::ms,
    kconf::{Daemon, Instance},
    retry::lab_test,
    router::LinkSide,
    scenario::{Cluster, Failover},
};

const ROUNDS: usize = 3;

fn stats(label: &str, xs: &[i128]) {
    let mut v = xs.to_vec();
    v.sort();
    println!(
        "  {label:<34} min {:>10}  median {:>10}  max {:>10}  (n={})",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        v.len()
    );
}

#[test]
fn keepalived_pair_vrrpv3_ipv4_10ms() -> Result<()> {
    lab_test("keepalived_pair_vrrpv3_ipv4_10ms", || {
        let mut c = Cluster::new(
            "baseline-v3-ipv4",
            Instance::new("VI_1", 51, &["192.0.2.100/24"]),
            &[
                ("r1", Daemon::Keepalived, 150),
                ("r2", Daemon::Keepalived, 100),
            ],
            false,
            |_, _| Ok(()),
        )?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        let mut crashes: Vec<Failover> = Vec::new();
        let mut terms: Vec<Failover> = Vec::new();
        let mut links: Vec<Failover> = Vec::new();
        let mut rejoins: Vec<Failover> = Vec::new();
        for _ in 0..ROUNDS {
            crashes.push(c.crash("r1", "r2")?);
            rejoins.push(c.rejoin("r1", "r2")?);
            terms.push(c.terminate("r1", "r2")?);
            rejoins.push(c.rejoin("r1", "r2")?);
            links.push(c.link_fail("r1", "r2", LinkSide::Switch)?);
            rejoins.push(c.link_restore("r1", "r2", LinkSide::Switch)?);
        }
        c.finish()?;
        for f in crashes.iter().chain(&terms).chain(&links).chain(&rejoins) {
            println!("{}", f.summary());
        }
        let err =
            |fs: &[Failover]| -> Vec<i128> { fs.iter().filter_map(|f| f.error_ns()).collect() };
        let out = |fs: &[Failover]| -> Vec<i128> {
            fs.iter()
                .map(|f| f.outage.map(|o| o.gap_ns as i128).unwrap_or(0))
                .collect()
        };
        println!(
            "keepalived 2.2.7, VRRPv3 10 ms, r2 priority 100 (down interval {}, skew {}):",
            ms(c.mdi_ns("r2") as i128),
            ms(c.skew_ns("r2") as i128)
        );
        stats("kill -9: detection − theory", &err(&crashes));
        stats("kill -9: client outage", &out(&crashes));
        stats("SIGTERM: hand-over − skew", &err(&terms));
        stats("SIGTERM: client outage", &out(&terms));
        stats("link down: detection − theory", &err(&links));
        stats("link down: client outage", &out(&links));
        stats("preemption back: client outage", &out(&rejoins));
        Ok(())
    })
}
