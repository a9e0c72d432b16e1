//! A dead or hung agent's host lets go (eBPF datapath). The master's agent
//! is killed (-9) or stopped (SIGSTOP): its VIP stays in the address table,
//! but once the backup has taken over and advertises, the pinned kernel
//! half fences it: the dead host answers no ARP for the VIP, and a client
//! still sending to it is answered with a gratuitous ARP naming the new
//! owner, so it moves there at once. A restart releases what the dead run
//! left (VIPs, then the pinned links); a clean stop and `xvrrpd cleanup`
//! leave nothing behind.
//!
//! The routers attach XDP in generic mode here: on a veth, a native XDP
//! program's `XDP_TX` reaches the other end only when that end has an XDP
//! program too, which this lab's bridge ports do not (docs/datapath.md).
//!
//! On TC (not pinned: a stopped agent only) the answer leaves through the
//! interface's egress.
//!
//! The raw-socket fallback has no kernel half to outlive the process: with
//! it, a dead agent's host keeps the VIP until xvrrpd starts again.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context, Result, ensure};
use xvrrpd_tests::{
    clock::{Stamp, ms},
    kconf::{Daemon, Instance},
    lab::wait_until,
    pcap::WireKind,
    retry::lab_test,
    scenario::Cluster,
};

const VIP: &str = "192.0.2.100";

/// `attach`: `xdp-generic` (see above) or `tc`.
fn cluster(name: &str, attach: &str) -> Result<Cluster> {
    let mut c = Cluster::new(
        name,
        Instance::new("VI_1", 51, &["192.0.2.100/24"]),
        &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
        false,
        |_, _| Ok(()),
    )?;
    // XDP_TX on a veth in native mode reaches the bridge only when the
    // peer has an XDP program; generic XDP answers on any device.
    for r in ["r1", "r2"] {
        c.router_mut(r)
            .extra_args
            .extend(["--attach".to_string(), attach.to_string()]);
    }
    let started = Stamp::now();
    c.start_all()?;
    c.router("r1")
        .wait_datapath_settled(Duration::from_secs(5))?;
    println!(
        "{name}: first start, eBPF verified and settled within {}",
        ms(Stamp::now().rt_ns as i128 - started.rt_ns as i128)
    );
    c.expect_master("r1", Duration::from_secs(10))?;
    c.start_probe()?;
    // Let the take-over's GARP batches pass.
    std::thread::sleep(Duration::from_millis(300));
    Ok(c)
}

/// What xvrrpd pinned in the router's BPF filesystem (its daemon
/// directories, not the filesystem's own `*.debug` files).
fn pins(c: &Cluster, r: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(c.router(r).bpf_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

/// Command lines of running wardens.
fn wardens() -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(" warden "))
        .collect()
}

/// The inode of r's pinned XDP link (the same link across an adoption).
fn link_inode(c: &Cluster, r: &str) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let link = pins(c, r)
        .into_iter()
        .find(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("xdp-") || n.starts_with("tc-"))
        })
        .context("no pinned link")?;
    Ok(std::fs::metadata(link)?.ino())
}

/// Whether any xvrrpd program is on r's eth0: XDP, or a tcx link.
fn datapath_attached(c: &Cluster, r: &str) -> Result<bool> {
    if xdp_attached(c, r)? {
        return Ok(true);
    }
    let tcx = c.router(r).host.run_in(|| {
        use aya::programs::{SchedClassifier, TcAttachType};
        let (_, progs) = SchedClassifier::query_tcx("eth0", TcAttachType::Ingress)?;
        Ok(progs
            .iter()
            .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("xvrrpd")))
            .count())
    })?;
    Ok(tcx > 0)
}

fn xdp_attached(c: &Cluster, r: &str) -> Result<bool> {
    let out = c.router(r).host.exec(&["ip", "link", "show", "eth0"])?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("xdp"))
}

/// With r1's agent gone (dead or stopped) and r2 master: r1 answers no
/// ARP for the VIP, and a client sent to r1 ends on r2 at once.
fn dead_host_lets_go(c: &mut Cluster, how: &str) -> Result<()> {
    let r1_mac = c.router("r1").mac;
    let r2_mac = c.router("r2").mac;
    let vip4: Ipv4Addr = VIP.parse()?;
    c.router("r2")
        .wait_state("VI_1", "MASTER", Duration::from_secs(2))
        .with_context(|| format!("r2 did not take over from the {how} r1"))?;
    ensure!(
        pins(c, "r1")
            .iter()
            .any(|p| p.contains("/xdp-") || p.contains("/tc-")),
        "r1's link is not pinned: {:?}",
        pins(c, "r1")
    );
    // r2's adverts reach r1's datapath: the fence is up.
    std::thread::sleep(Duration::from_millis(100));
    let from = c.lab.mark("client sent to r1");
    c.client
        .exec(&[
            "ip",
            "neigh",
            "replace",
            VIP,
            "lladdr",
            &r1_mac.to_string(),
            "dev",
            "eth0",
            "nud",
            "reachable",
        ])
        .context("pointing the client at r1")?;
    ensure!(
        wait_until(Duration::from_secs(1), Duration::from_millis(1), || {
            c.client_neighbour(VIP)
                .is_ok_and(|m| m == r2_mac.to_string())
        }),
        "the client sent to the {how} r1 still points at {} after 1 s, not r2 ({r2_mac})",
        c.client_neighbour(VIP)?
    );
    let moved = Stamp::now();
    let took = moved.rt_ns as i128 - from.rt_ns as i128;
    println!("{how} r1: client sent to it → on r2 within {}", ms(took));
    ensure!(
        took <= 200_000_000,
        "the client took {} to reach the owner",
        ms(took)
    );
    // Ask everyone for the VIP: only r2 may answer.
    c.client
        .exec(&["ip", "neigh", "del", VIP, "dev", "eth0"])
        .context("flushing the client's entry")?;
    std::thread::sleep(Duration::from_millis(300));
    let wire = c.wire()?;
    let arp_from_r1 = wire
        .iter()
        .filter(|e| e.t_ns >= from.rt_ns && e.src_mac == r1_mac)
        .filter(|e| {
            matches!(e.kind, WireKind::Arp { op: 2, sender_ip, .. } if sender_ip == vip4)
                || matches!(e.kind, WireKind::Garp { ip, sender_mac, .. }
                    if ip == vip4 && sender_mac == r1_mac)
        })
        .count();
    ensure!(
        arp_from_r1 == 0,
        "the {how} r1 claimed the VIP {arp_from_r1} time(s) after r2 took over"
    );
    let for_owner = wire
        .iter()
        .filter(|e| e.t_ns >= from.rt_ns && e.src_mac == r1_mac)
        .filter(|e| {
            matches!(e.kind, WireKind::Garp { ip, sender_mac, .. }
                if ip == vip4 && sender_mac == r2_mac)
        })
        .count();
    ensure!(
        for_owner >= 1,
        "r1's datapath did not answer the client with r2's address"
    );
    ensure!(
        c.client_neighbour(VIP)? == r2_mac.to_string(),
        "after asking again the client is on {}, not r2",
        c.client_neighbour(VIP)?
    );
    Ok(())
}

#[test]
fn a_killed_masters_host_lets_go_and_a_restart_clears_it() -> Result<()> {
    lab_test(
        "a_killed_masters_host_lets_go_and_a_restart_clears_it",
        || killed_master("dead-agent", "xdp-generic"),
    )
}

/// The same with the default attach: a pinned tcx link where the kernel
/// has tcx (6.6+), as on this suite's host.
#[test]
fn a_killed_masters_host_lets_go_on_a_pinned_tcx_link() -> Result<()> {
    lab_test("a_killed_masters_host_lets_go_on_a_pinned_tcx_link", || {
        ensure!(
            xvrrpd::datapath::ebpf::tcx_available(),
            "this kernel has no tcx (6.6+): the default attach is XDP here"
        );
        killed_master("dead-agent-tcx", "auto")
    })
}

fn killed_master(name: &str, attach: &str) -> Result<()> {
    let mut c = cluster(name, attach)?;
    let killed = c.router_mut("r1").kill9()?;
    c.lab.mark("r1 killed");
    // The warden takes the address away once r2 owns it.
    let vip = VIP.parse()?;
    c.router("r2")
        .wait_state("VI_1", "MASTER", Duration::from_secs(2))?;
    ensure!(
        c.router("r1").wait_vip(vip, false, Duration::from_secs(1)),
        "the killed r1 still holds the VIP 1 s after r2 took over"
    );
    let change = |r: &str, added: bool| {
        c.router(r)
            .watch
            .events()
            .into_iter()
            .find(|e| e.addr == vip && e.added == added && e.at.mono_ns >= killed.mono_ns)
            .map(|e| e.at.mono_ns)
    };
    let (Some(owned), Some(gone)) = (change("r2", true), change("r1", false)) else {
        anyhow::bail!("no VIP add on r2 / removal on r1 seen after the kill");
    };
    let gap = gone as i128 - owned as i128;
    println!(
        "killed r1: VIP removed by the warden {} after r2 added it",
        ms(gap)
    );
    ensure!(
        gap <= 200_000_000,
        "the warden removed the VIP {} after r2 owned it",
        ms(gap)
    );
    dead_host_lets_go(&mut c, "killed")?;

    // A restart adopts the pinned datapath as it runs (no
    // verification, no raw-socket phase), ends the old warden and
    // takes the VIP back (r1 has the higher priority).
    let link_before = link_inode(&c, "r1")?;
    let restarted = c.router_mut("r1").start()?;
    c.router("r1")
        .wait_datapath_settled(Duration::from_secs(5))?;
    let settled = Stamp::now();
    c.expect_master("r1", Duration::from_secs(5))?;
    ensure!(
        c.router("r1").log().contains("adopted the eBPF datapath"),
        "r1's restart did not adopt the pinned datapath"
    );
    ensure!(
        link_inode(&c, "r1")? == link_before,
        "the restart replaced the pinned link instead of adopting it"
    );
    println!(
        "killed r1 restarted: datapath adopted and settled within {}",
        ms(settled.rt_ns as i128 - restarted.rt_ns as i128)
    );
    let pin_dir = c.router("r1").bpf_dir().display().to_string();
    ensure!(
        wait_until(Duration::from_secs(1), Duration::from_millis(10), || {
            wardens().iter().filter(|w| w.contains(&pin_dir)).count() == 1
        }),
        "after the restart the wardens are {:?}",
        wardens()
    );

    // A clean stop leaves nothing: no pin, no XDP, no VIP.
    let (_, st) = c.router_mut("r1").sigterm()?;
    ensure!(st.success(), "r1 exited {st} on SIGTERM");
    ensure!(
        pins(&c, "r1").is_empty(),
        "left pinned: {:?}",
        pins(&c, "r1")
    );
    ensure!(
        !datapath_attached(&c, "r1")?,
        "the datapath is still attached after a clean stop"
    );
    ensure!(
        !c.router("r1").has_vip(VIP.parse()?),
        "VIP left after a clean stop"
    );

    // `xvrrpd cleanup` after a crash does the same.
    c.router_mut("r1").start()?;
    c.expect_master("r1", Duration::from_secs(5))?;
    c.router("r1")
        .wait_datapath_settled(Duration::from_secs(5))?;
    c.router_mut("r1").kill9()?;
    ensure!(
        datapath_attached(&c, "r1")?,
        "the killed r1's datapath is not pinned"
    );
    let out = cleanup(&c, "r1")?;
    ensure!(out.status.success(), "xvrrpd cleanup failed: {out:?}");
    let pin_dir = c.router("r1").bpf_dir().display().to_string();
    ensure!(
        pins(&c, "r1").is_empty(),
        "cleanup left {:?}",
        pins(&c, "r1")
    );
    ensure!(
        !datapath_attached(&c, "r1")?,
        "the datapath is still attached after cleanup"
    );
    ensure!(
        !c.router("r1").has_vip(VIP.parse()?),
        "VIP left after cleanup"
    );
    ensure!(
        wait_until(Duration::from_secs(1), Duration::from_millis(10), || {
            !wardens().iter().any(|w| w.contains(&pin_dir))
        }),
        "a warden still runs after cleanup: {:?}",
        wardens()
    );
    c.router_mut("r1").start()?;
    c.finish()
}

#[test]
fn a_hung_masters_host_lets_go_and_takes_over_again_when_it_resumes() -> Result<()> {
    lab_test(
        "a_hung_masters_host_lets_go_and_takes_over_again_when_it_resumes",
        || hung_master("hung-agent", "xdp-generic"),
    )
}

/// The same on TC: the answer leaves through the interface's egress.
#[test]
fn a_hung_masters_host_lets_go_on_tc_too() -> Result<()> {
    lab_test("a_hung_masters_host_lets_go_on_tc_too", || {
        hung_master("hung-agent-tc", "tc")
    })
}

fn hung_master(name: &str, attach: &str) -> Result<()> {
    let mut c = cluster(name, attach)?;
    c.router("r1").sigstop()?;
    c.lab.mark("r1 stopped");
    let result = dead_host_lets_go(&mut c, "stopped");
    c.router("r1").sigcont()?;
    result?;
    c.lab.mark("r1 resumed");
    // r1 renews its lease, hears r2's lower priority and preempts.
    c.expect_master("r1", Duration::from_secs(5))?;
    c.router("r2")
        .wait_state("VI_1", "BACKUP", Duration::from_secs(2))?;
    let r1_mac = c.router("r1").mac.to_string();
    ensure!(
        wait_until(Duration::from_secs(2), Duration::from_millis(5), || {
            c.client_neighbour(VIP).is_ok_and(|m| m == r1_mac)
        }),
        "after r1 resumed the client stays on {}",
        c.client_neighbour(VIP)?
    );
    c.finish()
}

/// A killed backup's warden says nothing: only a daemon that died as master
/// has a priority-0 advert to send. r1 stays master.
#[test]
fn a_killed_backup_sends_no_farewell() -> Result<()> {
    lab_test("a_killed_backup_sends_no_farewell", || {
        let mut c = cluster("farewell-backup", "auto")?;
        let r2_mac = c.router("r2").mac;
        let r2_pid = c.router("r2").pid().context("r2 is not running")?;
        ensure!(
            !xvrrpd_tests::router::wardens_of(r2_pid).is_empty(),
            "r2 runs without a warden"
        );
        let killed = c.router_mut("r2").kill9()?;
        c.lab.mark("r2 killed");
        // Its warden's own end: it had no VIP to guard.
        ensure!(
            wait_until(Duration::from_secs(2), Duration::from_millis(10), || {
                xvrrpd_tests::router::wardens_of(r2_pid).is_empty()
            }),
            "the killed backup's warden still runs 2 s later"
        );
        std::thread::sleep(Duration::from_millis(300));
        let from_r2: Vec<u8> = c
            .wire()?
            .iter()
            .filter(|e| e.t_ns >= killed.rt_ns && e.src_mac == r2_mac)
            .filter_map(|e| e.advert().map(|a| a.priority))
            .collect();
        ensure!(
            from_r2.is_empty(),
            "the killed backup r2 sent adverts of priority {from_r2:?}"
        );
        c.expect_master("r1", Duration::from_secs(2))?;
        c.finish()
    })
}

/// `xvrrpd cleanup` for `r`'s daemon, run in its namespace.
fn cleanup(c: &Cluster, r: &str) -> Result<std::process::Output> {
    let r = c.router(r);
    let bin = r.bin.display().to_string();
    let sock = r.control_socket.display().to_string();
    let pin_dir = r.bpf_dir().display().to_string();
    r.host.exec(&[
        &bin,
        "cleanup",
        "--control-socket",
        &sock,
        "--bpf-pin-dir",
        &pin_dir,
    ])
}

/// xvrrpd's clsact filters on `r`'s interface.
fn clsact_filters(c: &Cluster, r: &str) -> Result<usize> {
    let out = c
        .router(r)
        .host
        .exec(&["tc", "filter", "show", "dev", "eth0", "ingress"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("xvrrpd_tc"))
        .count())
}

/// Before 6.6 the TC program is a clsact filter (here with `--attach
/// tc-clsact`, which takes that path on any kernel). No pin holds it: a
/// killed agent's filter stays, and would go on consuming adverts for a
/// ring nobody reads. A restart removes it before attaching its own, and
/// so does `xvrrpd cleanup`; a clean stop leaves none.
#[test]
fn a_clsact_filter_a_killed_agent_left_goes_at_restart_and_cleanup() -> Result<()> {
    lab_test("a_clsact_filter_a_killed_agent_left_goes", || {
        let mut c = cluster("clsact-left", "tc-clsact")?;
        c.router("r2")
            .wait_datapath_settled(Duration::from_secs(5))?;
        for r in ["r1", "r2"] {
            let n = clsact_filters(&c, r)?;
            ensure!(n == 1, "{r}: {n} xvrrpd clsact filters after the start");
        }
        // The backup dies: its filter stays.
        c.router_mut("r2").kill9()?;
        let n = clsact_filters(&c, "r2")?;
        ensure!(n == 1, "r2: {n} xvrrpd clsact filters after kill -9");
        c.router_mut("r2").start()?;
        c.router("r2")
            .wait_datapath_settled(Duration::from_secs(5))?;
        let n = clsact_filters(&c, "r2")?;
        ensure!(
            n == 1,
            "r2: {n} xvrrpd clsact filters after the restart, not 1"
        );
        let log = c.router("r2").log();
        ensure!(
            log.contains("removed the TC filter(s) a previous xvrrpd left on eth0"),
            "r2's restart did not say it removed the old filter; log:\n{}",
            c.router("r2").log_tail(30)
        );
        // The new filter is the one that hears r1: r2 takes over from it.
        c.router("r2")
            .wait_state("VI_1", "BACKUP", Duration::from_secs(2))?;
        println!("{}", c.crash("r1", "r2")?.summary());
        // `xvrrpd cleanup` removes the dead r1's filter.
        ensure!(
            clsact_filters(&c, "r1")? == 1,
            "the killed r1's filter is gone already"
        );
        let out = cleanup(&c, "r1")?;
        let said = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && said.contains("removed a TC filter left on eth0"),
            "xvrrpd cleanup: {out:?}"
        );
        let n = clsact_filters(&c, "r1")?;
        ensure!(n == 0, "r1: {n} xvrrpd clsact filters after cleanup");
        c.finish()?;
        // A clean stop takes its own filter with it.
        c.router_mut("r2").sigterm()?;
        let n = clsact_filters(&c, "r2")?;
        ensure!(n == 0, "r2: {n} xvrrpd clsact filters after a clean stop");
        Ok(())
    })
}
