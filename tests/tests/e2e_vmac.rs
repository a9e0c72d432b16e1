//! `use_vmac` on a pair: the master's VIP sits on a private macvlan with
//! the RFC virtual MAC (00:00:5e:00:01:VRID), its adverts and GARPs leave
//! from that MAC, and the client's neighbour entry for the VIP names the
//! virtual MAC before and after kill -9, SIGTERM and a preemption — while
//! the client's pings keep being answered. The base interface answers no
//! ARP for the VIP. `XVRRPD_LAB_DAEMON=keepalived`: the same file under
//! Debian's keepalived; `interop_*`: one of each, in both roles.

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
fn client_reaches_vmac(c: &Cluster, master: &str, when: &str) -> Result<()> {
    let strict = c.router(master).daemon == Daemon::Xvrrpd;
    let mut last = String::new();
    // The first ping after a take-over may race the GARP: a few tries.
    for _ in 0..20 {
        let out = c
            .client
            .cmd("ping")
            .args(["-c", "1", "-W", "1", VIP])
            .output()?;
        let neigh = c.client_neighbour(VIP)?;
        if out.status.success() && (!strict || neigh == VMAC.to_string()) {
            if !strict {
                println!("{when}: keepalived master; the client's entry for {VIP} is {neigh}");
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
    bail!("{when}: the client should reach {VIP} at {VMAC}: {last}{hosts}")
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
}

fn pair(test: &str, d1: Daemon, d2: Daemon, v: Variant) -> Result<Cluster> {
    let mut inst = Instance::new("VI_VMAC", VRID, &[&format!("{VIP}/24")]);
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
    let src = c.router(master).addr(false);
    let advert_mac = if v.xmit_base {
        c.router(master).mac
    } else {
        VMAC
    };
    let events = c.wire()?;
    let mut adverts = 0;
    let mut garps = 0;
    for e in events.iter().filter(|e| e.t_ns >= from_rt) {
        match &e.kind {
            WireKind::Advert(a) if a.vrid == VRID && a.src == src && a.priority > 0 => {
                ensure!(
                    e.src_mac == advert_mac,
                    "{master}'s advert left from {}, not {advert_mac}",
                    e.src_mac
                );
                adverts += 1;
            }
            WireKind::Garp { ip, sender_mac, .. } if IpAddr::V4(*ip).to_string() == VIP => {
                ensure!(
                    *sender_mac == VMAC && e.src_mac == VMAC,
                    "a GARP for {VIP} from {} (sender {sender_mac}), not {VMAC}",
                    e.src_mac
                );
                garps += 1;
            }
            WireKind::Arp {
                op: 2,
                sender_ip,
                sender_mac,
                ..
            } if sender_ip.to_string() == VIP => {
                ensure!(
                    *sender_mac == VMAC,
                    "an ARP reply for {VIP} names {sender_mac}, not {VMAC}: the base answered"
                );
            }
            _ => {}
        }
    }
    ensure!(adverts > 0, "no advert from {master} on the wire");
    ensure!(garps > 0, "no GARP for {VIP} on the wire");
    Ok(())
}

fn run(test: &str, d1: Daemon, d2: Daemon, v: Variant) -> Result<()> {
    let mut c = pair(test, d1, d2, v)?;
    let vip: IpAddr = VIP.parse()?;
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
            link.contains(&VMAC.to_string()) && link.contains("macvlan mode private"),
            "{r}: vrrp.{VRID} is not a private macvlan with {VMAC}: {link}"
        );
    }
    let addr =
        c.router("r1")
            .host
            .exec(&["ip", "-br", "addr", "show", "dev", &format!("vrrp.{VRID}")])?;
    ensure!(
        String::from_utf8_lossy(&addr.stdout).contains(VIP),
        "r1's VIP is not on vrrp.{VRID}: {}",
        String::from_utf8_lossy(&addr.stdout)
    );
    client_reaches_vmac(&c, "r1", "after the election")?;
    std::thread::sleep(Duration::from_millis(1500));
    check_wire(&c, "r1", t0.rt_ns, v)?;

    // SIGTERM: r1 goes, its VMAC with it (keepalived removes it too), and
    // its eth0 has its ARP settings back.
    let (t, status) = c.router_mut("r1").sigterm()?;
    ensure!(status.success(), "r1 exited with {status} on SIGTERM");
    c.router("r2")
        .wait_state("VI_VMAC", "MASTER", Duration::from_secs(10))
        .context("r2 after r1's SIGTERM")?;
    client_reaches_vmac(&c, "r2", "after SIGTERM of r1")?;
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
    client_reaches_vmac(&c, "r1", "after r1 preempted")?;
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
        client_reaches_vmac(&c, "r2", "with r1's VMAC down")?;
        c.router("r1")
            .host
            .exec(&["ip", "link", "set", "dev", &vmac, "up"])?;
        c.router("r1")
            .wait_state("VI_VMAC", "MASTER", Duration::from_secs(10))
            .context("r1 with its VMAC up again")?;
        client_reaches_vmac(&c, "r1", "with r1's VMAC up again")?;
    }

    // kill -9 of the master: r2 takes over with the same MAC.
    let t = c.router_mut("r1").kill9()?;
    c.router("r2")
        .wait_state("VI_VMAC", "MASTER", Duration::from_secs(10))
        .context("r2 after r1's kill -9")?;
    client_reaches_vmac(&c, "r2", "after kill -9 of r1")?;
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
