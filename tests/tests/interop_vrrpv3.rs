//! xvrrpd and keepalived 2.2.7 on one segment, VRRPv3 at `advert_int 0.01`
//! (issue #6): over IPv4 with keepalived's checksum (pseudo-header
//! included), over IPv4 with xvrrpd's `v3_checksum_as_v2`, over IPv6, and
//! with unicast peers. Each run: election, a crash of the master (the other
//! daemon detects it within `Master_Down_Interval`), preemption back,
//! SIGTERM (hand-over within `Skew_Time`), preemption back; after each
//! step's bound only one router advertises, holds the VIP and answers the
//! client.
//!
//! keepalived 2.2.7 has no `v3_checksum_as_v2`: it always sends the
//! pseudo-header form and drops adverts without it (shown by
//! `keepalived_drops_vrrpv3_ipv4_adverts_without_the_pseudo_header`). So
//! that option is tested one way: keepalived master, xvrrpd backup with the
//! option, which must accept keepalived's form while sending its own.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::Result;
use xvrrpd_tests::{
    analysis::adverts,
    craft::vrrp_v3_ipv4_frame,
    frame_injector,
    kconf::{Daemon, Instance, RouterConfig},
    pcap::{ChecksumKind, Mac},
    retry::lab_test,
    scenario::interop_cycle,
    vrrp_lab::VrrpLab,
};

fn v3_ipv4() -> Instance {
    Instance::new("VI_1", 31, &["192.0.2.100/24"])
}

/// Every advert of `vrid` on the wire from `mac` has checksum `want`.
fn check_checksums(
    c: &xvrrpd_tests::scenario::Cluster,
    vrid: u8,
    v6: bool,
    name: &str,
    want: ChecksumKind,
) -> Result<()> {
    let ads = adverts(&c.wire()?, vrid, v6);
    let mac = c.router(name).mac;
    let mine: Vec<_> = ads.iter().filter(|a| a.mac == mac).collect();
    assert!(!mine.is_empty(), "no adverts from {name} captured");
    for a in mine {
        assert_eq!(
            a.checksum,
            want,
            "{name} ({}) sent an advert with checksum {:?}, expected {want:?}",
            c.router(name).daemon,
            a.checksum
        );
    }
    Ok(())
}

#[test]
fn v3_ipv4_xvrrpd_master_keepalived_backup() -> Result<()> {
    lab_test("v3_ipv4_xvrrpd_master_keepalived_backup", || {
        let (mut c, _) = interop_cycle(
            "v3-x-k",
            v3_ipv4(),
            false,
            Daemon::Xvrrpd,
            Daemon::Keepalived,
            |_, _| Ok(()),
        )?;
        check_checksums(&c, 31, false, "r1", ChecksumKind::PseudoHeader)?;
        check_checksums(&c, 31, false, "r2", ChecksumKind::PseudoHeader)?;
        c.finish()
    })
}

#[test]
fn v3_ipv4_keepalived_master_xvrrpd_backup() -> Result<()> {
    lab_test("v3_ipv4_keepalived_master_xvrrpd_backup", || {
        let (mut c, _) = interop_cycle(
            "v3-k-x",
            v3_ipv4(),
            false,
            Daemon::Keepalived,
            Daemon::Xvrrpd,
            |_, _| Ok(()),
        )?;
        check_checksums(&c, 31, false, "r1", ChecksumKind::PseudoHeader)?;
        check_checksums(&c, 31, false, "r2", ChecksumKind::PseudoHeader)?;
        c.finish()
    })
}

#[test]
fn v3_ipv4_checksum_as_v2_xvrrpd_accepts_keepalived_form() -> Result<()> {
    lab_test(
        "v3_ipv4_checksum_as_v2_xvrrpd_accepts_keepalived_form",
        || {
            assert!(
                Daemon::for_scenarios() == Daemon::Xvrrpd,
                "v3_checksum_as_v2 is an xvrrpd option: this test cannot run with keepalived standing \
         in for xvrrpd (XVRRPD_LAB_DAEMON=keepalived)"
            );
            let set = |r: &xvrrpd_tests::router::RouterNode, cfg: &mut RouterConfig| {
                if r.daemon == Daemon::Xvrrpd {
                    cfg.global.v3_checksum_as_v2 = true;
                }
                Ok(())
            };
            let (mut c, _) = interop_cycle(
                "v3csum-k-x",
                v3_ipv4(),
                false,
                Daemon::Keepalived,
                Daemon::Xvrrpd,
                set,
            )?;
            check_checksums(&c, 31, false, "r1", ChecksumKind::PseudoHeader)?;
            check_checksums(&c, 31, false, "r2", ChecksumKind::MessageOnly)?;
            c.finish()
        },
    )
}

#[test]
fn v3_ipv6_xvrrpd_master_keepalived_backup() -> Result<()> {
    lab_test("v3_ipv6_xvrrpd_master_keepalived_backup", || {
        let inst = Instance::new("VI_6", 61, &["2001:db8::100/64"]);
        let (mut c, _) = interop_cycle(
            "v3v6-x-k",
            inst,
            false,
            Daemon::Xvrrpd,
            Daemon::Keepalived,
            |_, _| Ok(()),
        )?;
        check_checksums(&c, 61, true, "r1", ChecksumKind::PseudoHeader)?;
        c.finish()
    })
}

#[test]
fn v3_ipv6_keepalived_master_xvrrpd_backup() -> Result<()> {
    lab_test("v3_ipv6_keepalived_master_xvrrpd_backup", || {
        let inst = Instance::new("VI_6", 61, &["2001:db8::100/64"]);
        let (mut c, _) = interop_cycle(
            "v3v6-k-x",
            inst,
            false,
            Daemon::Keepalived,
            Daemon::Xvrrpd,
            |_, _| Ok(()),
        )?;
        check_checksums(&c, 61, true, "r2", ChecksumKind::PseudoHeader)?;
        c.finish()
    })
}

#[test]
fn v3_unicast_xvrrpd_master_keepalived_backup() -> Result<()> {
    lab_test("v3_unicast_xvrrpd_master_keepalived_backup", || {
        let (mut c, _) = interop_cycle(
            "v3uc-x-k",
            v3_ipv4(),
            true,
            Daemon::Xvrrpd,
            Daemon::Keepalived,
            |_, _| Ok(()),
        )?;
        c.finish()
    })
}

#[test]
fn v3_unicast_keepalived_master_xvrrpd_backup() -> Result<()> {
    lab_test("v3_unicast_keepalived_master_xvrrpd_backup", || {
        let (mut c, _) = interop_cycle(
            "v3uc-k-x",
            v3_ipv4(),
            true,
            Daemon::Keepalived,
            Daemon::Xvrrpd,
            |_, _| Ok(()),
        )?;
        c.finish()
    })
}

/// What keepalived 2.2.7 does with a VRRPv3/IPv4 advert whose checksum
/// leaves out the pseudo-header: it drops it (a higher-priority master in
/// that form does not make it a backup); the same advert with the
/// pseudo-header does.
#[test]
fn keepalived_drops_vrrpv3_ipv4_adverts_without_the_pseudo_header() -> Result<()> {
    lab_test(
        "keepalived_drops_vrrpv3_ipv4_adverts_without_the_pseudo_header",
        || {
            let mut lab = VrrpLab::new("ka-v3-checksum")?;
            let mut r1 = lab.add_router("r1", Daemon::Keepalived, &["192.0.2.11/24"])?;
            let fake = lab.add_client("fake", &["192.0.2.99/24"])?;
            r1.write_config(&RouterConfig::single(v3_ipv4()))?;
            let mut cap = lab.capture()?;
            r1.start()?;
            let vip = "192.0.2.100".parse().unwrap();
            assert!(
                r1.wait_vip(vip, true, Duration::from_secs(5)),
                "r1 did not become master alone"
            );
            let inj = frame_injector(&fake, "eth0")?;
            let fake_mac: Mac = String::from_utf8_lossy(
                &fake.exec(&["cat", "/sys/class/net/eth0/address"])?.stdout,
            )
            .trim()
            .parse()?;
            let send = |kind: ChecksumKind, n: usize| {
                for _ in 0..n {
                    let f = vrrp_v3_ipv4_frame(
                        fake_mac,
                        Ipv4Addr::new(192, 0, 2, 99),
                        31,
                        200,
                        1,
                        &[Ipv4Addr::new(192, 0, 2, 100)],
                        kind,
                    );
                    inj.send(&f)?;
                    std::thread::sleep(Duration::from_millis(10));
                }
                anyhow::Ok(())
            };
            // 300 ms of priority-200 adverts without the pseudo-header.
            send(ChecksumKind::MessageOnly, 30)?;
            assert_eq!(
                r1.fifo_state("VI_1").as_deref(),
                Some("MASTER"),
                "keepalived yielded to adverts without the pseudo-header"
            );
            assert!(r1.has_vip(vip), "keepalived dropped the VIP");
            // The same with the pseudo-header: keepalived yields.
            send(ChecksumKind::PseudoHeader, 20)?;
            assert_eq!(
                r1.fifo_state("VI_1").as_deref(),
                Some("BACKUP"),
                "keepalived did not yield to a higher-priority master"
            );
            assert!(
                r1.wait_vip(vip, false, Duration::from_secs(1)),
                "keepalived kept the VIP as backup"
            );
            // The capture shows both forms as sent.
            let log = cap.stop()?;
            let kinds: Vec<ChecksumKind> = adverts(&log.events, 31, false)
                .iter()
                .filter(|a| a.mac == fake_mac)
                .map(|a| a.checksum)
                .collect();
            assert_eq!(
                kinds
                    .iter()
                    .filter(|k| **k == ChecksumKind::MessageOnly)
                    .count(),
                30
            );
            assert_eq!(
                kinds
                    .iter()
                    .filter(|k| **k == ChecksumKind::PseudoHeader)
                    .count(),
                20
            );
            // And it says why, once per advert.
            let rejected = r1
                .log()
                .lines()
                .filter(|l| l.contains("(VI_1) Invalid VRRPv3 checksum"))
                .count();
            assert_eq!(
                rejected, 30,
                "keepalived's log should report each advert without the pseudo-header as an invalid checksum"
            );
            Ok(())
        },
    )
}
