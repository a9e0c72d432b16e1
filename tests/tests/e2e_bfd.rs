//! `bfd_instance` and `track_bfd` against Debian's keepalived 2.2.7, whose
//! BFD (RFC 5880 asynchronous mode, RFC 5881 single hop) is the reference:
//! each side runs its session against the other's, and the tracking
//! instance follows it: FAULT within the detection time of the peer's
//! crash or stop (both end silently), back when the peer returns.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use xvrrpd_tests::{
    kconf::{Daemon, Global, Instance, RouterConfig},
    retry::lab_test,
    router::RouterNode,
    scenario::router_cidrs,
    vrrp_lab::VrrpLab,
};

const VIP: &str = "192.0.2.100/24";
/// The BFD peer: no VRRP of its own.
const PEER: &str = "192.0.2.60";

/// A `bfd_instance` block toward `neighbor`: 10 ms both ways, multiplier 5
/// (a 50 ms detection time).
fn bfd_block(name: &str, neighbor: &str, source: &str) -> String {
    format!(
        "bfd_instance {name} {{\n    neighbor_ip {neighbor}\n    source_ip {source}\n    \
         min_rx 10\n    min_tx 10\n    multiplier 5\n}}"
    )
}

/// r1 (priority 150) tracks the session `B` (weight 0: FAULT while it is
/// down), r2 (100) tracks nothing; `peer` runs the other end.
fn lab(test: &str, routers: Daemon, peer: Daemon) -> Result<(VrrpLab, [RouterNode; 3])> {
    let mut lab = VrrpLab::new(test)?;
    let [a, b] = router_cidrs(0);
    let mut r1 = lab.add_router("r1", routers, &[&a, &b])?;
    let [a, b] = router_cidrs(1);
    let mut r2 = lab.add_router("r2", routers, &[&a, &b])?;
    let mut nb = lab.add_router("nb", peer, &[&format!("{PEER}/24")])?;
    let r1_addr = r1.addr(false).to_string();
    let plain = Instance::new("VI_B", 61, &[VIP]);
    let mut vi = plain.with_priority(150);
    vi.extra.push("track_bfd {\n        B\n    }".into());
    r1.write_config(&RouterConfig {
        global: Global {
            top: vec![bfd_block("B", PEER, &r1_addr)],
            ..Global::default()
        },
        ..RouterConfig::single(vi)
    })?;
    r2.write_config(&RouterConfig::single(plain.with_priority(100)))?;
    nb.write_config_text(&format!(
        "global_defs {{\n    router_id nb\n}}\n{}\n",
        bfd_block("R1", &r1_addr, PEER)
    ))?;
    Ok((lab, [r1, r2, nb]))
}

/// How long after `from` r1 left MASTER for FAULT (polled every 2 ms).
fn fault_after(r1: &RouterNode, from: Instant, limit: Duration) -> Result<Duration> {
    let seen = xvrrpd_tests::wait_until(limit, Duration::from_millis(2), || {
        r1.state("VI_B").as_deref() == Some("FAULT")
    });
    ensure!(
        seen,
        "r1 still {:?} {limit:?} after its BFD peer went; r1's log:\n{}",
        r1.state("VI_B"),
        r1.log_tail(30)
    );
    Ok(from.elapsed())
}

fn run(test: &str, routers: Daemon, peer: Daemon) -> Result<()> {
    let (_lab, [mut r1, mut r2, mut nb]) = lab(test, routers, peer)?;
    // Without its session r1 stays in FAULT: r2 is master.
    r1.start()?;
    r2.start()?;
    r2.wait_state("VI_B", "MASTER", Duration::from_secs(10))
        .context("r2 while r1's BFD peer is not running")?;
    ensure!(
        r1.state("VI_B").as_deref() == Some("FAULT"),
        "r1 is {:?} with its BFD session down, not FAULT",
        r1.state("VI_B")
    );

    // The peer starts: the session comes up, r1 preempts.
    nb.start()?;
    r1.wait_state("VI_B", "MASTER", Duration::from_secs(10))
        .context("r1 once its BFD session is up")?;
    r2.wait_state("VI_B", "BACKUP", Duration::from_secs(5))?;

    // The peer crashes: down after the detection time (50 ms), r2 takes over.
    let t = Instant::now();
    nb.kill9()?;
    let took = fault_after(&r1, t, Duration::from_secs(2))?;
    println!(
        "{test}: r1 in FAULT {:.1} ms after kill -9 of its BFD peer",
        took.as_secs_f64() * 1e3
    );
    ensure!(
        took >= Duration::from_millis(40),
        "r1 went to FAULT {took:?} after the crash: before the 50 ms detection time"
    );
    r2.wait_state("VI_B", "MASTER", Duration::from_secs(5))
        .context("r2 after r1's BFD session went down")?;

    // Back: up again, r1 preempts.
    nb.start()?;
    r1.wait_state("VI_B", "MASTER", Duration::from_secs(10))
        .context("r1 once its BFD peer is back")?;

    // A clean stop is as silent as keepalived's: detected the same way.
    let t = Instant::now();
    nb.sigterm()?;
    let took = fault_after(&r1, t, Duration::from_secs(2))?;
    println!(
        "{test}: r1 in FAULT {:.1} ms after its BFD peer's SIGTERM",
        took.as_secs_f64() * 1e3
    );
    ensure!(
        took >= Duration::from_millis(40),
        "r1 went to FAULT {took:?} after the stop: before the 50 ms detection time"
    );
    r2.wait_state("VI_B", "MASTER", Duration::from_secs(5))?;
    r1.sigterm()?;
    r2.sigterm()?;
    Ok(())
}

/// xvrrpd tracks a session with keepalived's BFD.
#[test]
fn xvrrpd_tracks_a_keepalived_bfd_peer() -> Result<()> {
    lab_test("xvrrpd_tracks_a_keepalived_bfd_peer", || {
        run("bfd-xv-ka", Daemon::Xvrrpd, Daemon::Keepalived)
    })
}

/// keepalived tracks a session with xvrrpd's BFD.
#[test]
fn keepalived_tracks_an_xvrrpd_bfd_peer() -> Result<()> {
    lab_test("keepalived_tracks_an_xvrrpd_bfd_peer", || {
        run("bfd-ka-xv", Daemon::Keepalived, Daemon::Xvrrpd)
    })
}
