//! The VRRP lab checked against keepalived on both sides: if these pass,
//! the harness (capture, prober, address watches, analysis) measures what
//! it claims, independently of xvrrpd.
//!
//! Two keepalived 2.2.7 routers and a client on one bridge: election,
//! kill -9 of the master (failover within `Master_Down_Interval`), the
//! restarted master removing its leftover VIP and preempting back, SIGTERM
//! (hand-over within `Skew_Time`), and preemption back again. The figures
//! are printed (`--nocapture`).

use xvrrpd_tests::{
    kconf::{Daemon, Instance},
    scenario::Cluster,
    vrrp_lab::OrFail,
};

use std::time::Duration;

fn baseline(test: &str, inst: Instance) {
    let mut c = Cluster::new(
        test,
        inst,
        &[
            ("r1", Daemon::Keepalived, 150),
            ("r2", Daemon::Keepalived, 100),
        ],
        false,
        |_, _| Ok(()),
    )
    .or_fail();
    c.start_all().or_fail();
    c.expect_master("r1", Duration::from_secs(10)).or_fail();
    let steps = [
        c.crash("r1", "r2").or_fail(),
        c.rejoin("r1", "r2").or_fail(),
        c.terminate("r1", "r2").or_fail(),
        c.rejoin("r1", "r2").or_fail(),
    ];
    c.finish().or_fail();
    for s in &steps {
        println!("{test}: {}", s.summary());
    }
}

#[test]
fn keepalived_pair_vrrpv3_ipv4_10ms() {
    baseline(
        "baseline-v3-ipv4",
        Instance::new("VI_1", 51, &["192.0.2.100/24"]),
    );
}
