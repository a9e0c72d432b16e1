//! xvrrpd beside a load balancer's own XDP program on the same NIC, with
//! Debian's xdp-tools (`xdp-filter`, loaded by libxdp) and iproute2's
//! `ip link set dev X xdp obj …`:
//!
//! * the XDP program first: xvrrpd (default `--attach auto`) settles on TC,
//!   elects and fails over, and the XDP program goes on seeing traffic;
//! * xvrrpd first, with no options: on a kernel with tcx (6.6+) it takes a
//!   tcx link and the XDP hook stays free, so both loaders succeed
//!   afterwards, and both programs see their traffic.
//!
//! (Before 6.6 xvrrpd's default holds the XDP hook and a later XDP loader
//! is refused unless xvrrpd runs with `--attach tc`: docs/datapath.md,
//! "Sharing the NIC".)

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use xvrrpd_tests::{
    kconf::{Daemon, Instance},
    retry::lab_test,
    router::RouterNode,
    scenario::Cluster,
};

const FILTER_OBJ: &str = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_all.o";

/// `xdp-filter ARGS` in `r`'s namespace, libxdp's pins on `r`'s own BPF
/// filesystem (`ip netns exec` hides the host's), and its program lock
/// (`/run/xdp-filter.lck`, host-wide, never recovered once stale) on a
/// `/run` of its own, so no other run on this host can hold it.
fn xdp_filter(r: &RouterNode, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &r.host.ns, "unshare", "--mount", "sh", "-c",
        ])
        .arg(r#"mount -t tmpfs xdp-run /run && exec "$@""#)
        .args(["sh", "env"])
        .arg(format!("LIBXDP_BPFFS={}", r.bpf_dir().display()))
        .arg("xdp-filter")
        .args(args)
        .output()
        .context("running xdp-filter (Debian's xdp-tools; `cargo xtask setup` installs it)")?;
    if !out.status.success() {
        let pins = Command::new("find")
            .arg(r.bpf_dir())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        bail!(
            "xdp-filter {args:?} in {}: {}{}\n{}'s BPF filesystem holds:\n{pins}",
            r.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            r.name
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// xdp-filter's XDP_PASS packet count on `r`.
fn passed(r: &RouterNode) -> Result<u64> {
    let status = xdp_filter(r, &["status"])?;
    status
        .lines()
        .find(|l| l.trim_start().starts_with("XDP_PASS"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no XDP_PASS count in: {status}"))
}

fn attach_mode(r: &RouterNode) -> Result<String> {
    let s = r.status()?;
    Ok(s.daemon
        .attachments
        .iter()
        .map(|a| format!("{} {}", a.interface, a.mode))
        .collect::<Vec<_>>()
        .join(", "))
}

fn cluster(test: &str, extra_args: &[&str]) -> Result<Cluster> {
    ensure!(
        Path::new(FILTER_OBJ).exists(),
        "{FILTER_OBJ} is missing: install Debian's xdp-tools (`cargo xtask setup`)"
    );
    let mut c = Cluster::new(
        test,
        Instance::new("VI_X", 91, &["192.0.2.100/24"]),
        &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
        false,
        |_, _| Ok(()),
    )?;
    for r in &mut c.routers {
        r.extra_args
            .extend(extra_args.iter().map(|s| s.to_string()));
    }
    Ok(c)
}

#[test]
fn an_xdp_program_loaded_first_keeps_its_hook_and_xvrrpd_runs_beside_it() -> Result<()> {
    lab_test("an_xdp_program_loaded_first", || {
        let mut c = cluster("xdpfirst", &[])?;
        for r in &c.routers {
            xdp_filter(r, &["load", "eth0", "--mode", "skb"])?;
        }
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        for r in &c.routers {
            r.wait_datapath_settled(Duration::from_secs(10))?;
            let mode = attach_mode(r)?;
            ensure!(
                mode == "eth0 tc",
                "{}: attached as {mode}, not beside XDP on TC",
                r.name
            );
        }
        let before = passed(c.router("r2"))?;
        println!("{}", c.crash("r1", "r2")?.summary());
        let after = passed(c.router("r2"))?;
        ensure!(
            after > before,
            "r2's XDP program saw no traffic while xvrrpd ran ({before} → {after})"
        );
        c.finish()
    })
}

/// xvrrpd first, with no options: on a kernel with tcx it takes a tcx
/// link and the XDP loaders that come later succeed.
#[test]
fn xdp_loaders_that_come_after_xvrrpd_succeed() -> Result<()> {
    lab_test("xdp_loaders_that_come_after_xvrrpd_succeed", || {
        ensure!(
            xvrrpd::datapath::ebpf::tcx_available(),
            "this kernel has no tcx (6.6+): there xvrrpd's default is XDP and a later \
             XDP loader is refused (docs/datapath.md, \"Sharing the NIC\")"
        );
        let mut c = cluster("tcfirst", &[])?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        for r in &c.routers {
            r.wait_datapath_settled(Duration::from_secs(10))?;
            let mode = attach_mode(r)?;
            ensure!(mode == "eth0 tc", "{}: attached as {mode}, not tcx", r.name);
        }
        // libxdp's loader on r1, iproute2's on r2: both must succeed.
        xdp_filter(c.router("r1"), &["load", "eth0", "--mode", "skb"])?;
        let r2 = c.router("r2");
        let out = Command::new("ip")
            .args([
                "-n",
                &r2.host.ns,
                "link",
                "set",
                "dev",
                "eth0",
                "xdp",
                "obj",
            ])
            .arg(FILTER_OBJ)
            .args(["sec", "xdp"])
            .output()?;
        ensure!(
            out.status.success(),
            "ip link set xdp obj on r2: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let before = passed(c.router("r1"))?;
        std::thread::sleep(Duration::from_millis(300));
        ensure!(
            passed(c.router("r1"))? > before,
            "r1's XDP program sees no traffic"
        );
        // xvrrpd still sees its adverts behind both: r2 takes over on a crash.
        println!("{}", c.crash("r1", "r2")?.summary());
        c.finish()
    })
}

/// Frames xvrrpd's TC program does not consume go on along the hook: a
/// clsact filter after its tcx link (as a load balancer's or a traffic
/// shaper's would be) still sees them.
#[test]
fn tc_filters_after_xvrrpd_still_see_the_traffic_it_does_not_consume() -> Result<()> {
    lab_test("tc_filters_after_xvrrpd_still_see_the_traffic", || {
        ensure!(
            xvrrpd::datapath::ebpf::tcx_available(),
            "this kernel has no tcx (6.6+): xvrrpd's TC program is not a tcx link here"
        );
        let mut c = cluster("tcchain", &[])?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        for r in &c.routers {
            r.wait_datapath_settled(Duration::from_secs(10))?;
        }
        // On r2: a clsact filter behind xvrrpd's tcx link that mirrors
        // every frame it sees to a veth of its own (the kernel here has
        // u32 and mirred), whose transmit count says what it saw.
        let h = &c.router("r2").host;
        h.exec(&[
            "ip", "link", "add", "mir0", "type", "veth", "peer", "name", "mir1",
        ])?;
        for d in ["mir0", "mir1"] {
            h.exec(&["ip", "link", "set", d, "up"])?;
        }
        h.exec(&["tc", "qdisc", "add", "dev", "eth0", "clsact"])?;
        h.exec(&[
            "tc", "filter", "add", "dev", "eth0", "ingress", "pref", "1", "protocol", "all", "u32",
            "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", "mir0",
        ])?;
        let mirrored = || -> Result<u64> {
            let out = h.exec(&["cat", "/sys/class/net/mir0/statistics/tx_packets"])?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .context("mir0's tx_packets")
        };
        let before = mirrored()?;
        let r2_addr = c.router("r2").addr(false).to_string();
        c.router("r1")
            .host
            .exec(&["ping", "-c", "20", "-i", "0.01", "-W", "1", "-q", &r2_addr])?;
        let seen = mirrored()? - before;
        ensure!(
            seen >= 20,
            "the clsact filter behind xvrrpd's tcx link saw {seen} frames of 20 pings: \
             xvrrpd's program ended the hook's chain"
        );
        // xvrrpd still hears its master in front of it: r2 takes over.
        println!("{}", c.crash("r1", "r2")?.summary());
        c.finish()
    })
}
