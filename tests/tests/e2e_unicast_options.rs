//! keepalived's unicast and advert options on the wire and in the state
//! machine: `mcast_dst_ip`, `unicast_ttl`, `unicast_fault_no_peer`,
//! `track_src_ip`, `old_unicast_checksum` and unicast without `interface`. The routers run xvrrpd (`XVRRPD_LAB_DAEMON=keepalived`:
//! the same checks against keepalived, which they are written from, but
//! for `track_src_ip`, where keepalived 2.2.7 departs from its manual).

use std::{process::Command, time::Duration};

use anyhow::{Context, Result, ensure};
use xvrrpd_tests::{
    analysis::{adverts, check_sole_advertiser},
    clock::Stamp,
    kconf::{Daemon, Instance},
    pcap::ChecksumKind,
    retry::lab_test,
    scenario::Cluster,
    vrrp_lab::scenario_daemon,
};

const VIP: &str = "192.0.2.100/24";

fn ip(ns: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(["-n", ns]).args(args).output()?;
    ensure!(
        out.status.success(),
        "ip -n {ns} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn mcast_dst_ip_sends_and_hears_on_the_instance_group() -> Result<()> {
    lab_test("mcast_dst_ip", || {
        let d = scenario_daemon();
        let mut inst = Instance::new("VI_G", 52, &[VIP]);
        inst.extra.push("mcast_dst_ip 224.0.0.99".into());
        let mut c = Cluster::new(
            "mcastdst",
            inst,
            &[("r1", d, 150), ("r2", d, 100)],
            false,
            |_, _| Ok(()),
        )?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        // The backup hears the master on the group: it takes over on a crash
        // within the bound, which it could not if it missed the adverts.
        println!("{}", c.crash("r1", "r2")?.summary());
        let events = c.wire()?;
        let ads: Vec<_> = events.iter().filter_map(|e| e.advert()).collect();
        ensure!(!ads.is_empty(), "no adverts captured");
        for a in &ads {
            ensure!(
                a.dst.to_string() == "224.0.0.99",
                "an advert from {} went to {}, not to mcast_dst_ip 224.0.0.99",
                a.src,
                a.dst
            );
        }
        c.finish()
    })
}

#[test]
fn unicast_ttl_sets_the_ttl_of_unicast_adverts() -> Result<()> {
    lab_test("unicast_ttl", || {
        let d = scenario_daemon();
        let mut inst = Instance::new("VI_T", 53, &[VIP]);
        inst.extra.push("unicast_ttl 7".into());
        let mut c = Cluster::new(
            "unicastttl",
            inst,
            &[("r1", d, 150), ("r2", d, 100)],
            true,
            |_, _| Ok(()),
        )?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        println!("{}", c.crash("r1", "r2")?.summary());
        let events = c.wire()?;
        let ads: Vec<_> = events.iter().filter_map(|e| e.advert()).collect();
        ensure!(!ads.is_empty(), "no adverts captured");
        for a in &ads {
            ensure!(
                a.ttl == 7,
                "a unicast advert from {} to {} left with TTL {}, not unicast_ttl 7",
                a.src,
                a.dst,
                a.ttl
            );
        }
        c.finish()
    })
}

#[test]
fn unicast_fault_no_peer_without_peers_is_fault_and_silent() -> Result<()> {
    lab_test("unicast_fault_no_peer", || {
        let d = scenario_daemon();
        let mut inst = Instance::new("VI_F", 54, &[VIP]);
        inst.extra.push("unicast_fault_no_peer".into());
        let mut c = Cluster::new("nopeer", inst, &[("r1", d, 150)], false, |_, _| Ok(()))?;
        c.start_all()?;
        let r1 = c.router("r1");
        r1.wait_state("VI_F", "FAULT", Duration::from_secs(10))?;
        // Settled in FAULT: it never advertises, never holds the VIP.
        std::thread::sleep(Duration::from_millis(500));
        let vip = VIP.split('/').next().context("VIP")?.parse()?;
        ensure!(!r1.has_vip(vip), "r1 holds the VIP in FAULT");
        let events = c.wire()?;
        let sent = events.iter().filter(|e| e.advert().is_some()).count();
        ensure!(sent == 0, "r1 sent {sent} adverts with no peer");
        c.finish()
    })
}

/// xvrrpd only: keepalived 2.2.7 does not do what its manual says here.
/// It reacts only to the loss of an interface's last IPv4 address, and
/// then steps down for an instant (BACKUP, a priority-0 advert) and is
/// master again at its next down timer, advertising from no address (seen
/// in the lab); it never stays in FAULT. xvrrpd stays in FAULT while the
/// configured source is on no interface, whichever address it is.
#[test]
fn track_src_ip_faults_while_the_configured_source_is_gone() -> Result<()> {
    lab_test("track_src_ip", || {
        let d = Daemon::Xvrrpd;
        // r1 advertises from a second address of its own that the test
        // removes (its first stays, and with it the VIP's subnet).
        const SRC: &str = "192.0.2.201";
        let inst = Instance::new("VI_S", 55, &[VIP]);
        let mut c = Cluster::new(
            "tracksrc",
            inst,
            &[("r1", d, 150), ("r2", d, 100)],
            true,
            |r, cfg| {
                let i = &mut cfg.instances[0];
                if r.name == "r1" {
                    i.unicast_src = Some(SRC.into());
                    i.extra.push("track_src_ip".into());
                } else {
                    i.unicast_peers = vec![SRC.into()];
                }
                Ok(())
            },
        )?;
        let ns1 = c.router("r1").host.ns.clone();
        let cidr = format!("{SRC}/24");
        ip(&ns1, &["addr", "add", &cidr, "dev", "eth0"])?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        ip(&ns1, &["addr", "del", &cidr, "dev", "eth0"])?;
        c.router("r1")
            .wait_state("VI_S", "FAULT", Duration::from_secs(5))
            .context("r1 after its source address went")?;
        c.router("r2")
            .wait_state("VI_S", "MASTER", Duration::from_secs(5))
            .context("r2 after r1's fault")?;
        // Still FAULT a while later: not a blip.
        std::thread::sleep(Duration::from_millis(300));
        c.router("r1")
            .wait_state("VI_S", "FAULT", Duration::from_millis(100))?;
        ip(&ns1, &["addr", "add", &cidr, "dev", "eth0"])?;
        c.router("r1")
            .wait_state("VI_S", "MASTER", Duration::from_secs(10))
            .context("r1 once its source address is back (it preempts)")?;
        c.router("r2")
            .wait_state("VI_S", "BACKUP", Duration::from_secs(5))?;
        c.finish()
    })
}

/// Only r1 advertises `vrid` for `mdis` of r2's down intervals from now:
/// r2 hears it.
fn r1_alone_for(c: &Cluster, vrid: u8, mdis: u64) -> Result<()> {
    let since = c.lab.mark("steady");
    std::thread::sleep(Duration::from_nanos(mdis * c.mdi_ns("r2")));
    let now = Stamp::now();
    let ads = adverts(&c.wire()?, vrid, false);
    check_sole_advertiser(
        &ads,
        c.router("r1").mac,
        since.rt_ns,
        now.rt_ns,
        c.lab.origin.rt_ns,
    )
}

/// The checksum forms of `r`'s adverts on the wire so far, counted.
fn checksum_forms(c: &Cluster, r: &str) -> Result<Vec<(ChecksumKind, usize)>> {
    let mac = c.router(r).mac;
    let mut forms: Vec<(ChecksumKind, usize)> = Vec::new();
    for e in c.wire()? {
        let Some(a) = e.advert() else { continue };
        if e.src_mac != mac {
            continue;
        }
        match forms.iter_mut().find(|(k, _)| *k == a.checksum) {
            Some((_, n)) => *n += 1,
            None => forms.push((a.checksum, 1)),
        }
    }
    Ok(forms)
}

/// `old_unicast_checksum` on both sides, xvrrpd master and keepalived
/// 2.2.7 backup: xvrrpd's adverts carry the 1.3.5 checksum (the group in
/// the pseudo-header), keepalived hears them and stays backup, and takes
/// over when xvrrpd dies.
#[test]
fn old_unicast_checksum_is_sent_and_a_keepalived_configured_for_it_hears_it() -> Result<()> {
    lab_test("old_unicast_checksum_sent", || {
        let mut inst = Instance::new("VI_O", 54, &[VIP]);
        inst.extra.push("old_unicast_checksum".into());
        let mut c = Cluster::new(
            "oldcsum",
            inst,
            &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Keepalived, 100)],
            true,
            |_, _| Ok(()),
        )?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        // keepalived would take over after its down interval (3.6 s) if it
        // refused r1's adverts.
        r1_alone_for(&c, 54, 2)?;
        let forms = checksum_forms(&c, "r1")?;
        ensure!(
            forms.len() == 1 && forms[0].0 == ChecksumKind::OldUnicast,
            "xvrrpd's adverts with old_unicast_checksum: {forms:?}"
        );
        println!("xvrrpd's adverts: {forms:?}; keepalived stayed backup");
        println!("{}", c.crash("r1", "r2")?.summary());
        c.finish()
    })
}

/// keepalived's default detection, in xvrrpd: a keepalived master that
/// sends the 1.3.5 checksum is heard (no `old_unicast_checksum` on the
/// xvrrpd side), and once xvrrpd takes over it sends that checksum too;
/// with `old_unicast_checksum never` the same adverts are refused.
#[test]
fn the_old_unicast_checksum_is_detected_unless_never() -> Result<()> {
    lab_test("old_unicast_checksum_detected", || {
        for never in [false, true] {
            let mut c = Cluster::new(
                if never {
                    "oldcsum-never"
                } else {
                    "oldcsum-detect"
                },
                Instance::new("VI_O", 55, &[VIP]),
                &[("r1", Daemon::Keepalived, 150), ("r2", Daemon::Xvrrpd, 100)],
                true,
                |r, cfg| {
                    let i = &mut cfg.instances[0];
                    match r.name.as_str() {
                        "r1" => i.extra.push("old_unicast_checksum".into()),
                        _ if never => i.extra.push("old_unicast_checksum never".into()),
                        _ => {}
                    }
                    Ok(())
                },
            )?;
            c.start(&["r1"])?;
            c.expect_master("r1", Duration::from_secs(10))?;
            c.start(&["r2"])?;
            if never {
                // It hears nothing it accepts: master after its down timer.
                c.router("r2")
                    .wait_state("VI_O", "MASTER", Duration::from_secs(3))?;
                let log = c.router("r2").log();
                ensure!(
                    !log.contains("keepalived 1.3.5"),
                    "with never, r2 still switched: {}",
                    c.router("r2").log_tail(20)
                );
                c.finish()?;
                continue;
            }
            c.router("r2")
                .wait_state("VI_O", "BACKUP", Duration::from_secs(5))?;
            r1_alone_for(&c, 55, 3)?;
            ensure!(
                c.router("r2")
                    .log()
                    .contains("uses the unicast VRRPv3 checksum of keepalived 1.3.5"),
                "r2 did not say it detected the old checksum: {}",
                c.router("r2").log_tail(20)
            );
            let shown = c.router("r2").status()?.instances[0]
                .advert_checksum
                .clone();
            ensure!(
                shown.as_deref() == Some("old-unicast"),
                "r2's status shows advert_checksum {shown:?} after the detection"
            );
            println!("{}", c.crash("r1", "r2")?.summary());
            let forms = checksum_forms(&c, "r2")?;
            ensure!(
                forms.len() == 1 && forms[0].0 == ChecksumKind::OldUnicast,
                "xvrrpd's adverts after it detected the old checksum: {forms:?}"
            );
            println!("xvrrpd's adverts as master: {forms:?}");
            c.finish()?;
        }
        Ok(())
    })
}

#[test]
fn a_unicast_instance_without_interface_runs_where_its_peers_are_routed() -> Result<()> {
    lab_test("unicast_no_interface", || {
        // xvrrpd only: keepalived 2.2.7 stops at "(VI_N) Unknown
        // interface!" (fixed in 2.2.8).
        let d = Daemon::Xvrrpd;
        let mut inst = Instance::new("VI_N", 55, &[VIP]);
        inst.interface = String::new();
        let mut c = Cluster::new(
            "unicastnoif",
            inst,
            &[("r1", d, 150), ("r2", d, 100)],
            true,
            |r, cfg| {
                // r2 leaves its source to its interface, as keepalived allows.
                if r.name == "r2" {
                    cfg.instances[0].unicast_src = None;
                }
                Ok(())
            },
        )?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        for r in ["r1", "r2"] {
            let st = c.router(r).status()?;
            let i = st.instances.first().context("no instance in status")?;
            ensure!(
                i.interface == "eth0",
                "{r}: the instance runs on {:?}, not on eth0 where its peer is routed",
                i.interface
            );
        }
        // Both hear each other there: the backup takes over on a crash
        // within the bound, from the right source.
        println!("{}", c.crash("r1", "r2")?.summary());
        let events = c.wire()?;
        let last = events
            .iter()
            .rev()
            .find_map(|e| e.advert())
            .context("no adverts captured")?;
        let r2 = c.router("r2").addr(false).to_string();
        ensure!(
            last.src.to_string() == r2,
            "the new master's adverts come from {}, not from {r2}, its interface.s address",
            last.src
        );
        c.finish()
    })
}

#[test]
fn peers_routed_through_two_interfaces_are_refused_with_the_reason() -> Result<()> {
    lab_test("unicast_no_interface_split", || {
        // xvrrpd only: keepalived runs such an instance unbound.
        let d = Daemon::Xvrrpd;
        let mut inst = Instance::new("VI_S", 56, &[VIP]);
        inst.interface = String::new();
        let c = Cluster::new(
            "unicastsplit",
            inst,
            &[("r1", d, 150), ("r2", d, 100)],
            true,
            |r, cfg| {
                if r.name == "r1" {
                    cfg.instances[0].unicast_peers.push("198.51.100.9".into());
                }
                Ok(())
            },
        )?;
        let ns = c.router("r1").host.ns.clone();
        ip(
            &ns,
            &[
                "link", "add", "side0", "type", "veth", "peer", "name", "side1",
            ],
        )?;
        ip(&ns, &["link", "set", "side1", "up"])?;
        ip(&ns, &["link", "set", "side0", "up"])?;
        ip(&ns, &["route", "add", "198.51.100.9/32", "dev", "side0"])?;
        let mut c = c;
        let refused = c.router_mut("r1").start();
        let Err(e) = refused else {
            anyhow::bail!("r1 started although its peers are routed through eth0 and side0");
        };
        let text = format!("{e:#}");
        ensure!(
            text.contains("routed through different interfaces")
                && text.contains("eth0")
                && text.contains("side0"),
            "r1 was refused, but without naming both interfaces: {text}"
        );
        c.finish()
    })
}
