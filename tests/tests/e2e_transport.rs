//! The same failovers over other transports (issue #5): unicast peers,
//! and VRRPv3 over IPv6 with an IPv6 VIP. Three routers run the real xvrrpd
//! (`XVRRPD_LAB_DAEMON=keepalived`: the same scenarios with keepalived).

use std::{net::IpAddr, time::Duration};

use anyhow::Result;
use xvrrpd_tests::{
    analysis::adverts, kconf::Instance, pcap::ChecksumKind, retry::lab_test, scenario::Cluster,
    vrrp_lab::scenario_daemon,
};

/// Election, kill -9 and rejoin, SIGTERM and rejoin; prints the figures.
fn failover_cycle(c: &mut Cluster) -> Result<()> {
    c.start_all()?;
    c.expect_master("r1", Duration::from_secs(10))?;
    for step in [
        c.crash("r1", "r2")?,
        c.rejoin("r1", "r2")?,
        c.terminate("r1", "r2")?,
        c.rejoin("r1", "r2")?,
    ] {
        println!("{}", step.summary());
    }
    Ok(())
}

#[test]
fn unicast_peers() -> Result<()> {
    lab_test("unicast_peers", || {
        let d = scenario_daemon();
        let mut c = Cluster::new(
            "unicast",
            Instance::new("VI_1", 51, &["192.0.2.100/24"]),
            &[("r1", d, 150), ("r2", d, 100), ("r3", d, 50)],
            true,
            |_, _| Ok(()),
        )?;
        failover_cycle(&mut c)?;
        // Every advert went to a peer's own address, never to 224.0.0.18.
        let events = c.wire()?;
        let ads: Vec<_> = events
            .iter()
            .filter_map(|e| e.advert().map(|a| (e.src_mac, a)))
            .collect();
        assert!(!ads.is_empty(), "no adverts captured");
        let peers: Vec<IpAddr> = c.routers.iter().map(|r| r.addr(false)).collect();
        for (mac, a) in &ads {
            assert!(
                peers.contains(&a.dst) && a.dst != a.src,
                "an advert from {mac} went to {}, not to a unicast peer",
                a.dst
            );
        }
        // r1 sends one copy to each of its two peers per interval.
        let r1 = c.router("r1").mac;
        for peer in [c.router("r2").addr(false), c.router("r3").addr(false)] {
            assert!(
                ads.iter().any(|(m, a)| *m == r1 && a.dst == peer),
                "r1 never sent an advert to its peer {peer}"
            );
        }
        c.finish()
    })
}

#[test]
fn vrrpv3_over_ipv6_with_an_ipv6_vip() -> Result<()> {
    lab_test("vrrpv3_over_ipv6_with_an_ipv6_vip", || {
        let d = scenario_daemon();
        let mut c = Cluster::new(
            "ipv6",
            Instance::new("VI_6", 61, &["2001:db8::100/64"]),
            &[("r1", d, 150), ("r2", d, 100), ("r3", d, 50)],
            false,
            |_, _| Ok(()),
        )?;
        failover_cycle(&mut c)?;
        let events = c.wire()?;
        let ads = adverts(&events, 61, true);
        assert!(!ads.is_empty(), "no VRRPv3/IPv6 adverts captured");
        for a in &ads {
            let IpAddr::V6(src) = a.src else {
                unreachable!()
            };
            assert!(
                src.is_unicast_link_local(),
                "an IPv6 advert from {} has a source {src} that is not link-local",
                a.mac
            );
            assert_eq!(
                a.checksum,
                ChecksumKind::PseudoHeader,
                "an IPv6 advert from {} has a bad checksum",
                a.mac
            );
        }
        let dsts: std::collections::BTreeSet<String> = events
            .iter()
            .filter_map(|e| e.advert().map(|a| a.dst.to_string()))
            .collect();
        assert_eq!(
            dsts.into_iter().collect::<Vec<_>>(),
            vec!["ff02::12".to_string()],
            "IPv6 adverts go to ff02::12"
        );
        c.finish()
    })
}
