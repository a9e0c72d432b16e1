//! Instances with many VIPs: adverts with more addresses than the
//! datapath's record carries (64 IPv4 / 16 IPv6) are still valid adverts,
//! so backups stay backups — no dual master — and failover and preemption
//! work, on the eBPF datapath and on the raw-socket fallback.

use std::time::Duration;

use anyhow::{Result, ensure};
use xvrrpd_tests::{
    kconf::{Daemon, Instance},
    retry::lab_test,
    scenario::Cluster,
};

/// `n` VIPs: the first in the lab's subnet (the client probes it), the
/// others /32s of 198.18.0.0/15 (or /128s of 2001:db8:1::/64).
fn vips(n: usize, v6: bool) -> Vec<String> {
    (0..n)
        .map(|i| match (i, v6) {
            (0, false) => "192.0.2.100/24".to_string(),
            (0, true) => "2001:db8::100/64".to_string(),
            (i, false) => format!("198.18.{}.{}/32", i / 250, 1 + i % 250),
            (i, true) => format!("2001:db8:1::{:x}/128", i),
        })
        .collect()
}

/// A pair whose instance holds `n` VIPs: r1 takes them, r2 stays backup
/// (checked on the wire, the hosts and the client), r1 crashes, r2 takes
/// over, r1 comes back and preempts.
fn crash_and_back(test: &str, n: usize, v6: bool, extra_args: &[&str]) -> Result<()> {
    let list = vips(n, v6);
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    let mut c = Cluster::new(
        test,
        Instance::new("VI_1", 51, &refs),
        &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
        false,
        |_, _| Ok(()),
    )?;
    for r in &mut c.routers {
        r.extra_args = extra_args.iter().map(|a| a.to_string()).collect();
    }
    c.start_all()?;
    c.expect_master("r1", Duration::from_secs(10))?;
    let rep = c.router("r2").status()?;
    let discarded = &rep.instances[0].counters.discarded;
    ensure!(
        discarded.is_empty(),
        "r2 discarded r1's adverts of {n} addresses: {discarded:?}"
    );
    for step in [c.crash("r1", "r2")?, c.rejoin("r1", "r2")?] {
        println!("{}", step.summary());
    }
    let last = list.last().map(String::as_str).unwrap_or_default();
    let last = last.split('/').next().unwrap_or_default().parse()?;
    ensure!(
        c.router("r1").wait_vip(last, true, Duration::from_secs(2)),
        "r1 is master again but does not hold its last VIP {last}"
    );
    ensure!(
        c.router("r2").wait_vip(last, false, Duration::from_secs(2)),
        "r2 is backup again but still holds {last}"
    );
    c.finish()
}

#[test]
fn two_hundred_ipv4_vips_on_the_ebpf_datapath() -> Result<()> {
    lab_test("two_hundred_ipv4_vips_on_the_ebpf_datapath", || {
        crash_and_back("vips200-ebpf", 200, false, &[])
    })
}

#[test]
fn two_hundred_ipv4_vips_on_raw_sockets() -> Result<()> {
    lab_test("two_hundred_ipv4_vips_on_raw_sockets", || {
        crash_and_back("vips200-raw", 200, false, &["--no-ebpf"])
    })
}

#[test]
fn forty_ipv6_vips_on_the_ebpf_datapath() -> Result<()> {
    lab_test("forty_ipv6_vips_on_the_ebpf_datapath", || {
        crash_and_back("vips40v6-ebpf", 40, true, &[])
    })
}

#[test]
fn forty_ipv6_vips_on_raw_sockets() -> Result<()> {
    lab_test("forty_ipv6_vips_on_raw_sockets", || {
        crash_and_back("vips40v6-raw", 40, true, &["--no-ebpf"])
    })
}
