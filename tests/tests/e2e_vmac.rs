//! `use_vmac` on a pair: the master's VIP sits on a private macvlan with
//! the RFC virtual MAC (00:00:5e:00:01:VRID), its adverts and GARPs leave
//! from that MAC, and the client's neighbour entry for the VIP names the
//! virtual MAC before and after kill -9, SIGTERM and a preemption — while
//! the client's pings keep being answered. The base interface answers no
//! ARP for the VIP. `XVRRPD_LAB_DAEMON=keepalived`: the same file under
//! Debian's keepalived; `interop_*`: one of each, in both roles. Also: a
//! VIP on another interface is announced from that interface.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use xvrrpd_tests::{
    kconf::{Daemon, Instance},
    pcap::{Mac, WireKind},
    retry::lab_test,
    scenario::Cluster,
    vrrp_lab::{scenario_daemon, xvrrpd_only},
};

const VRID: u8 = 47;
const VMAC: Mac = Mac([0, 0, 0x5e, 0, 1, VRID]);
const VIP: &str = "192.0.2.147";
const VMAC6: Mac = Mac([0, 0, 0x5e, 0, 2, VRID]);
const VIP6: &str = "2001:db8::147";

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(());
        }
        ensure!(Instant::now() < end, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The client pings the VIP and, when `master` runs xvrrpd, its neighbour
/// entry for the VIP must name the virtual MAC. keepalived 2.2.7 leaves
/// `arp_announce` alone, so its master's own ARP requests (answering the
/// client) name the VIP from the base's MAC and rewrite the client's
/// entry: there only reachability is checked, and the entry printed.
fn client_reaches_vmac(c: &Cluster, master: &str, when: &str, v: Variant) -> Result<()> {
    let (vip, vmac) = (v.vip(), v.vmac());
    let strict = c.router(master).daemon == Daemon::Xvrrpd;
    let mut last = String::new();
    // The first ping after a take-over may race the GARP: a few tries.
    for _ in 0..20 {
        let out = c
            .client
            .cmd("ping")
            .args(["-c", "1", "-W", "1", vip])
            .output()?;
        let neigh = c.client_neighbour(vip)?;
        if out.status.success() && (!strict || neigh == vmac.to_string()) {
            if !strict {
                println!("{when}: keepalived master; the client's entry for {vip} is {neigh}");
            }
            return Ok(());
        }
        last = format!(
            "ping {}, neighbour entry {neigh:?}",
            if out.status.success() {
                "answered"
            } else {
                "unanswered"
            }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut hosts = String::new();
    for r in ["r1", "r2"] {
        for args in [
            &["ip", "-br", "addr"][..],
            &[
                "sysctl",
                "net.ipv4.conf.eth0.arp_ignore",
                "net.ipv4.conf.eth0.arp_announce",
            ],
        ] {
            if let Ok(out) = c.router(r).host.exec(args) {
                hosts.push_str(&format!("\n{r}: {}", String::from_utf8_lossy(&out.stdout)));
            }
        }
    }
    bail!("{when}: the client should reach {vip} at {vmac}: {last}{hosts}")
}

/// eth0's ARP settings on `router`.
fn arp_settings(c: &Cluster, router: &str) -> Result<String> {
    let out = c.router(router).host.exec(&[
        "sysctl",
        "-n",
        "net.ipv4.conf.eth0.arp_ignore",
        "net.ipv4.conf.eth0.arp_filter",
        "net.ipv4.conf.eth0.arp_announce",
    ])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" "))
}

/// `ip -d link` of the router's VMAC (empty without one).
fn vmac_link(c: &Cluster, router: &str) -> Result<String> {
    let out = c
        .router(router)
        .host
        .exec(&["ip", "-d", "-o", "link", "show"])?;
    let name = format!(": vrrp.{VRID}@");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_default()
        .to_string())
}

/// How the pair runs.
#[derive(Clone, Copy, Default)]
struct Variant {
    /// `vmac_xmit_base`: adverts from the base's MAC, GARPs from the VMAC.
    xmit_base: bool,
    /// xvrrpd on raw sockets instead of eBPF.
    no_ebpf: bool,
    /// An IPv6 instance: the VMAC is 00:00:5e:00:02:VRID and the adverts
    /// leave from the base.
    ipv6: bool,
}

impl Variant {
    fn vip(&self) -> &'static str {
        if self.ipv6 { VIP6 } else { VIP }
    }

    fn vmac(&self) -> Mac {
        if self.ipv6 { VMAC6 } else { VMAC }
    }
}

fn pair(test: &str, d1: Daemon, d2: Daemon, v: Variant) -> Result<Cluster> {
    let prefix = if v.ipv6 { 64 } else { 24 };
    let mut inst = Instance::new("VI_VMAC", VRID, &[&format!("{}/{prefix}", v.vip())]);
    inst.extra.push("use_vmac".into());
    if v.xmit_base {
        inst.extra.push("vmac_xmit_base".into());
    }
    let mut c = Cluster::new(
        test,
        inst,
        &[("r1", d1, 150), ("r2", d2, 100)],
        false,
        |_, _| Ok(()),
    )?;
    if v.no_ebpf {
        for r in ["r1", "r2"] {
            c.router_mut(r).extra_args.push("--no-ebpf".into());
        }
    }
    Ok(c)
}

/// Everything on the wire from `r`'s address after `from_rt` for the VRID:
/// GARPs and ARP replies for the VIP carry the virtual MAC, and so do the
/// adverts (the base's MAC with `vmac_xmit_base`).
fn check_wire(c: &Cluster, master: &str, from_rt: u64, v: Variant) -> Result<()> {
    let (vip, vmac) = (v.vip(), v.vmac());
    // IPv6 adverts come from the base's link-local address (EUI-64).
    let src = if v.ipv6 {
        let m = c.router(master).mac.0;
        IpAddr::V6(std::net::Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 2,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ]))
    } else {
        c.router(master).addr(false)
    };
    // xvrrpd sends IPv6 adverts from the base (keepalived from the VMAC).
    let xvrrpd = c.router(master).daemon == Daemon::Xvrrpd;
    let advert_mac = if v.xmit_base || (v.ipv6 && xvrrpd) {
        c.router(master).mac
    } else {
        vmac
    };
    let events = c.wire()?;
    let mut adverts = 0;
    let mut announces = 0;
    for e in events.iter().filter(|e| e.t_ns >= from_rt) {
        match &e.kind {
            WireKind::Advert(a) if a.vrid == VRID && a.src == src => {
                ensure!(
                    e.src_mac == advert_mac,
                    "{master}'s advert left from {}, not {advert_mac}",
                    e.src_mac
                );
                adverts += 1;
            }
            WireKind::Garp { ip, sender_mac, .. } if ip.to_string() == vip => {
                ensure!(
                    *sender_mac == vmac && e.src_mac == vmac,
                    "a GARP for {vip} from {} (sender {sender_mac}), not {vmac}",
                    e.src_mac
                );
                announces += 1;
            }
            WireKind::Arp {
                op: 2,
                sender_ip,
                sender_mac,
                ..
            } if sender_ip.to_string() == vip => {
                ensure!(
                    *sender_mac == vmac,
                    "an ARP reply for {vip} names {sender_mac}, not {vmac}: the base answered"
                );
            }
            WireKind::Na { target, tlla, .. } if target.to_string() == vip => {
                ensure!(
                    *tlla == Some(vmac) && e.src_mac == vmac,
                    "an NA for {vip} from {} names {tlla:?}, not {vmac}",
                    e.src_mac
                );
                announces += 1;
            }
            _ => {}
        }
    }
    ensure!(adverts > 0, "no advert from {master} on the wire");
    ensure!(announces > 0, "no GARP/NA for {vip} on the wire");
    // Nothing but the master sends from the VMAC: the switch still sends
    // its traffic there after the others' delayed IGMP/MLD reports.
    if c.routers.iter().all(|r| r.daemon == Daemon::Xvrrpd) {
        let port = c.switch_port_of(&vmac.to_string())?;
        ensure!(
            port.as_deref() == Some(master),
            "the switch sends {vmac} to {port:?}, not to the master {master}"
        );
    }
    Ok(())
}

fn run(test: &str, d1: Daemon, d2: Daemon, v: Variant) -> Result<()> {
    let mut c = pair(test, d1, d2, v)?;
    let vip: IpAddr = v.vip().parse()?;
    let r1_arp_before = arp_settings(&c, "r1")?;
    let t0 = c.lab.mark("start");
    c.start_all()?;
    c.router("r1")
        .wait_state("VI_VMAC", "MASTER", Duration::from_secs(10))?;
    ensure!(
        c.router("r1").wait_vip(vip, true, Duration::from_secs(5)),
        "r1 is MASTER without the VIP"
    );
    for r in ["r1", "r2"] {
        let link = vmac_link(&c, r)?;
        ensure!(
            link.contains(&v.vmac().to_string()) && link.contains("macvlan mode private"),
            "{r}: vrrp.{VRID} is not a private macvlan with {}: {link}",
            v.vmac()
        );
    }
    let addr =
        c.router("r1")
            .host
            .exec(&["ip", "-br", "addr", "show", "dev", &format!("vrrp.{VRID}")])?;
    ensure!(
        String::from_utf8_lossy(&addr.stdout).contains(v.vip()),
        "r1's VIP is not on vrrp.{VRID}: {}",
        String::from_utf8_lossy(&addr.stdout)
    );
    client_reaches_vmac(&c, "r1", "after the election", v)?;
    std::thread::sleep(Duration::from_millis(1500));
    check_wire(&c, "r1", t0.rt_ns, v)?;

    // SIGTERM: r1 goes, its VMAC with it (keepalived removes it too), and
    // its eth0 has its ARP settings back.
    let (t, status) = c.router_mut("r1").sigterm()?;
    ensure!(status.success(), "r1 exited with {status} on SIGTERM");
    c.router("r2")
        .wait_state("VI_VMAC", "MASTER", Duration::from_secs(10))
        .context("r2 after r1's SIGTERM")?;
    client_reaches_vmac(&c, "r2", "after SIGTERM of r1", v)?;
    std::thread::sleep(Duration::from_millis(1500));
    check_wire(&c, "r2", t.rt_ns, v)?;
    ensure!(
        vmac_link(&c, "r1")?.is_empty(),
        "r1 left vrrp.{VRID} behind after SIGTERM"
    );
    if xvrrpd_only(d1, "eth0's ARP settings restored at stop") {
        let after = arp_settings(&c, "r1")?;
        ensure!(
            after == r1_arp_before,
            "r1's eth0 arp_ignore/arp_filter/arp_announce: {after} after stop, {r1_arp_before} before start"
        );
    }

    // r1 back: it preempts; the client never sees another MAC.
    let t = c.router_mut("r1").start()?;
    c.router("r1")
        .wait_state("VI_VMAC", "MASTER", Duration::from_secs(10))
        .context("r1 preempting after its restart")?;
    wait_for("r2 without the VIP", Duration::from_secs(5), || {
        Ok(!c.router("r2").has_vip(vip))
    })?;
    client_reaches_vmac(&c, "r1", "after r1 preempted", v)?;
    std::thread::sleep(Duration::from_millis(1500));
    check_wire(&c, "r1", t.rt_ns, v)?;

    // The master's VMAC down: FAULT, r2 takes over; back up: r1 again.
    if xvrrpd_only(d1, "FAULT while the VMAC is down") {
        let vmac = format!("vrrp.{VRID}");
        c.router("r1")
            .host
            .exec(&["ip", "link", "set", "dev", &vmac, "down"])?;
        c.router("r1")
            .wait_state("VI_VMAC", "FAULT", Duration::from_secs(5))
            .context("r1 with its VMAC down")?;
        c.router("r2")
            .wait_state("VI_VMAC", "MASTER", Duration::from_secs(10))
            .context("r2 while r1's VMAC is down")?;
        client_reaches_vmac(&c, "r2", "with r1's VMAC down", v)?;
        c.router("r1")
            .host
            .exec(&["ip", "link", "set", "dev", &vmac, "up"])?;
        c.router("r1")
            .wait_state("VI_VMAC", "MASTER", Duration::from_secs(10))
            .context("r1 with its VMAC up again")?;
        client_reaches_vmac(&c, "r1", "with r1's VMAC up again", v)?;
    }

    // kill -9 of the master: r2 takes over with the same MAC.
    let t = c.router_mut("r1").kill9()?;
    c.router("r2")
        .wait_state("VI_VMAC", "MASTER", Duration::from_secs(10))
        .context("r2 after r1's kill -9")?;
    client_reaches_vmac(&c, "r2", "after kill -9 of r1", v)?;
    std::thread::sleep(Duration::from_millis(1500));
    check_wire(&c, "r2", t.rt_ns, v)?;
    c.finish()
}

#[test]
fn vmac_keeps_the_clients_neighbour_entry_across_failovers() -> Result<()> {
    lab_test(
        "vmac_keeps_the_clients_neighbour_entry_across_failovers",
        || {
            let d = scenario_daemon();
            run("vmac", d, d, Variant::default())
        },
    )
}

#[test]
fn interop_vmac_keepalived_master_xvrrpd_backup() -> Result<()> {
    lab_test("interop_vmac_keepalived_master_xvrrpd_backup", || {
        run(
            "vmac-ka-xv",
            Daemon::Keepalived,
            Daemon::Xvrrpd,
            Variant::default(),
        )
    })
}

#[test]
fn interop_vmac_xvrrpd_master_keepalived_backup() -> Result<()> {
    lab_test("interop_vmac_xvrrpd_master_keepalived_backup", || {
        run(
            "vmac-xv-ka",
            Daemon::Xvrrpd,
            Daemon::Keepalived,
            Variant::default(),
        )
    })
}

#[test]
fn vmac_xmit_base_sends_adverts_from_the_base() -> Result<()> {
    lab_test("vmac_xmit_base_sends_adverts_from_the_base", || {
        let d = scenario_daemon();
        let v = Variant {
            xmit_base: true,
            ..Variant::default()
        };
        run("vmac-base", d, d, v)
    })
}

/// The raw-socket datapath hears the master through the macvlan.
#[test]
fn vmac_without_ebpf() -> Result<()> {
    lab_test("vmac_without_ebpf", || {
        if !xvrrpd_only(scenario_daemon(), "the raw-socket datapath with a VMAC") {
            return Ok(());
        }
        let v = Variant {
            no_ebpf: true,
            ..Variant::default()
        };
        run("vmac-raw", Daemon::Xvrrpd, Daemon::Xvrrpd, v)
    })
}

#[test]
fn vmac_ipv6() -> Result<()> {
    lab_test("vmac_ipv6", || {
        let d = scenario_daemon();
        let v = Variant {
            ipv6: true,
            ..Variant::default()
        };
        run("vmac6", d, d, v)
    })
}

#[test]
fn interop_vmac_ipv6_both_roles() -> Result<()> {
    lab_test("interop_vmac_ipv6_both_roles", || {
        let v = Variant {
            ipv6: true,
            ..Variant::default()
        };
        run("vmac6-ka-xv", Daemon::Keepalived, Daemon::Xvrrpd, v)?;
        run("vmac6-xv-ka", Daemon::Xvrrpd, Daemon::Keepalived, v)
    })
}

/// A VIP with `dev` on another interface is announced on that interface
/// (with its MAC), not on the instance's, and with `garp_extra_if all`
/// again periodically: keepalived does the same.
#[test]
fn vips_on_another_interface_are_announced_there() -> Result<()> {
    lab_test("vips_on_another_interface_are_announced_there", || {
        const OTHER: [u8; 4] = [198, 51, 100, 7];
        let d = scenario_daemon();
        let mut inst = Instance::new(
            "VI_DEV",
            VRID,
            &[&format!("{VIP}/24"), "198.51.100.7/24 dev lb0"],
        );
        // One GARP at take-over, one a second later, then one a second
        // (`garp_extra_if`), on lb0 only.
        inst.extra.extend(
            [
                "garp_master_repeat 1",
                "garp_master_delay 1",
                "garp_extra_if all 1",
            ]
            .map(String::from),
        );
        let mut c = Cluster::new(
            "garp-dev",
            inst,
            &[("r1", d, 150), ("r2", d, 100)],
            false,
            |_, _| Ok(()),
        )?;
        add_lb0(&c)?;
        // GARPs for the other VIP that reach lb0's peer in r1's namespace.
        let garps =
            c.router("r1")
                .host
                .capture(Duration::from_millis(5500), 100, |f: &[u8]| {
                    f.len() >= 42 && f[12..14] == [8, 6] && f[28..32] == OTHER
                })?;
        let t0 = c.lab.mark("start");
        c.start_all()?;
        c.router("r1")
            .wait_state("VI_DEV", "MASTER", Duration::from_secs(10))?;
        // Over ~5 s as master: 2 from the take-over, 3 or more periodic.
        let seen = garps.wait()?;
        ensure!(
            seen.len() >= 4,
            "{} GARP(s) for 198.51.100.7 left r1's lb0; garp_extra_if should add one a second",
            seen.len()
        );
        std::thread::sleep(Duration::from_millis(300));
        let on_eth0 = c
            .wire()?
            .into_iter()
            .filter(|e| e.t_ns >= t0.rt_ns)
            .filter(|e| matches!(&e.kind, WireKind::Garp { ip, .. } if ip.octets() == OTHER))
            .count();
        ensure!(
            on_eth0 == 0,
            "{on_eth0} GARP(s) for 198.51.100.7 went out on eth0, not on lb0"
        );
        c.finish()
    })
}

/// A second interface on each router, `lb0`, a veth whose peer `lb0p`
/// stays in the router's namespace (frames sent on it are seen there).
fn add_lb0(c: &Cluster) -> Result<()> {
    for r in &c.routers {
        r.host.exec(&[
            "ip", "link", "add", "lb0", "type", "veth", "peer", "name", "lb0p",
        ])?;
        r.host.exec(&["ip", "link", "set", "lb0", "up"])?;
        r.host.exec(&["ip", "link", "set", "lb0p", "up"])?;
    }
    Ok(())
}

/// `ip -o` lines of `router`'s links and addresses.
fn links_and_addrs(c: &Cluster, router: &str) -> Result<(String, String)> {
    let h = &c.router(router).host;
    let links = h.exec(&["ip", "-d", "-o", "link", "show"])?;
    let addrs = h.exec(&["ip", "-o", "addr", "show"])?;
    Ok((
        String::from_utf8_lossy(&links.stdout).into_owned(),
        String::from_utf8_lossy(&addrs.stdout).into_owned(),
    ))
}

/// `use_vmac_addr`: an address on another interface (lb0), and one of the
/// other family, each go on a VMAC of their own on their interface, with
/// the RFC MAC of their family, and move with the instance; the GARPs for
/// the one on lb0 leave from its virtual MAC. A clean stop removes them.
#[test]
fn use_vmac_addr_gives_other_addresses_vmacs_of_their_own() -> Result<()> {
    lab_test("use_vmac_addr", || {
        const OTHER: [u8; 4] = [198, 51, 100, 8];
        const OTHER_MAC: [u8; 6] = [0, 0, 0x5e, 0, 1, VRID];
        let mut inst = Instance::new(
            "VI_VA",
            VRID,
            &[&format!("{VIP}/24"), "198.51.100.8/24 dev lb0"],
        );
        inst.extra.extend(
            [
                "use_vmac_addr",
                "virtual_ipaddress_excluded {\n        2001:db8::148/64\n    }",
            ]
            .map(String::from),
        );
        let mut c = Cluster::new(
            "vmac-addr",
            inst,
            &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
            false,
            |_, _| Ok(()),
        )?;
        add_lb0(&c)?;
        let garps = c
            .router("r1")
            .host
            .capture(Duration::from_millis(3000), 4, |f: &[u8]| {
                f.len() >= 42 && f[12..14] == [8, 6] && f[28..32] == OTHER
            })?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        let on = |links: &str, name: &str, base: &str, mac: &str| {
            links
                .lines()
                .any(|l| l.contains(&format!(": {name}@{base}:")) && l.contains(mac))
        };
        let has = |addrs: &str, dev: &str, addr: &str| {
            addrs
                .lines()
                .any(|l| l.contains(&format!(": {dev} ")) && l.contains(addr))
        };
        let v4mac = format!("00:00:5e:00:01:{VRID:02x}");
        let v6mac = format!("00:00:5e:00:02:{VRID:02x}");
        for r in ["r1", "r2"] {
            let master = r == "r1";
            let mut last = (String::new(), String::new());
            let ok = xvrrpd_tests::lab::wait_until(
                Duration::from_secs(3),
                Duration::from_millis(20),
                || {
                    let Ok(now) = links_and_addrs(&c, r) else {
                        return false;
                    };
                    last = now;
                    let (l, a) = (&last.0, &last.1);
                    on(l, &format!("vrrp.{VRID}"), "lb0", &v4mac)
                        && on(l, &format!("vrrp1.{VRID}"), "eth0", &v6mac)
                        && has(a, &format!("vrrp.{VRID}"), "198.51.100.8/24") == master
                        && has(a, &format!("vrrp1.{VRID}"), "2001:db8::148/64") == master
                        && has(a, "eth0", &format!("{VIP}/24")) == master
                },
            );
            ensure!(
                ok,
                "{r} ({}): not the VMACs and addresses use_vmac_addr asks for:\n{}\n{}",
                if master { "master" } else { "backup" },
                last.0,
                last.1
            );
        }
        let seen = garps.wait()?;
        ensure!(!seen.is_empty(), "no GARP for 198.51.100.8 left r1's lb0");
        for f in &seen {
            ensure!(
                f[6..12] == OTHER_MAC && f[22..28] == OTHER_MAC,
                "a GARP for 198.51.100.8 left from {:02x?} (sender {:02x?}), not the VMAC",
                &f[6..12],
                &f[22..28]
            );
        }
        println!("{}", c.crash("r1", "r2")?.summary());
        let ok = xvrrpd_tests::lab::wait_until(
            Duration::from_secs(2),
            Duration::from_millis(20),
            || {
                links_and_addrs(&c, "r2")
                    .is_ok_and(|(_, a)| has(&a, &format!("vrrp.{VRID}"), "198.51.100.8/24"))
            },
        );
        ensure!(
            ok,
            "r2 took over but 198.51.100.8 is not on its vrrp.{VRID}"
        );
        // The dead r1's warden takes its addresses off its VMACs once r2
        // owns the VRID (the kernel fence says so on eth0).
        let mut left = String::new();
        let ok = xvrrpd_tests::lab::wait_until(
            Duration::from_secs(2),
            Duration::from_millis(20),
            || {
                let Ok((_, a)) = links_and_addrs(&c, "r1") else {
                    return false;
                };
                left = a
                    .lines()
                    .filter(|l| {
                        ["198.51.100.8/", "2001:db8::148/", &format!("{VIP}/")]
                            .iter()
                            .any(|x| l.contains(x))
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                left.is_empty()
            },
        );
        ensure!(ok, "the dead r1 still holds:\n{left}");
        c.finish()?;
        c.router_mut("r2").sigterm()?;
        let (links, _) = links_and_addrs(&c, "r2")?;
        ensure!(
            !links.contains(&format!(": vrrp.{VRID}@"))
                && !links.contains(&format!(": vrrp1.{VRID}@")),
            "r2's VMACs are still there after a clean stop:\n{links}"
        );
        Ok(())
    })
}
