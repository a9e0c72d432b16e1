//! The conflict guard end to end: a host on the LAN (the client namespace)
//! claims the master's VIP with gratuitous ARPs — or unsolicited neighbour
//! advertisements for an IPv6 VIP — from its own MAC; the master's datapath
//! reports the claim and the master re-announces the VIP, measured on the
//! bridge capture. Under a flood of claims the re-announces stay at one per
//! advert interval. On the raw-socket datapath claims are not watched (the
//! guard is eBPF-only): nothing is re-announced.
//!
//! Routers: r1 priority 150, r2 100; VRRPv3, 10 ms adverts, VIP
//! 192.0.2.100/24 (2001:db8::100/64 for NA), `garp_master_delay 0` so that
//! no second take-over batch falls into the measured windows.

use std::{net::IpAddr, thread, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use xvrrpd::net::gratuitous::{garp_frame, unsolicited_na_frame};
use xvrrpd_tests::{
    analysis::announcements,
    clock::rt_ns,
    frame_injector,
    kconf::{Daemon, Instance},
    pcap::{Mac, WireEvent},
    retry::lab_test,
    scenario::Cluster,
};

/// The claimant's MAC, not one of the lab's (those end in the host index).
const THEIRS: [u8; 6] = [0x02, 0, 0, 0, 0, 0xee];
const INTERVAL_NS: u64 = 10_000_000;
const V4_VIP: &str = "192.0.2.100/24";
const V6_VIP: &str = "2001:db8::100/64";

fn pair(test: &str, vip: &str, no_ebpf: bool) -> Result<Cluster> {
    let mut inst = Instance::new("VI_1", 51, &[vip]);
    inst.extra.push("garp_master_delay 0".into());
    let d = Daemon::Xvrrpd;
    let mut c = Cluster::new(
        test,
        inst,
        &[("r1", d, 150), ("r2", d, 100)],
        false,
        |_, _| Ok(()),
    )?;
    if no_ebpf {
        for r in &mut c.routers {
            r.extra_args.push("--no-ebpf".into());
        }
    }
    c.start_all()?;
    c.expect_master("r1", Duration::from_secs(10))?;
    c.router("r1")
        .wait_datapath_settled(Duration::from_secs(10))?;
    // The take-over batch is over before anything is measured.
    thread::sleep(Duration::from_millis(300));
    Ok(c)
}

/// A claim of the lab's VIP from the claimant's MAC: a gratuitous ARP, or
/// an unsolicited NA for an IPv6 VIP.
fn claim_frame(c: &Cluster) -> Vec<u8> {
    match c.vip {
        IpAddr::V4(v) => garp_frame(THEIRS, v).to_vec(),
        IpAddr::V6(v) => unsolicited_na_frame(THEIRS, v, false).to_vec(),
    }
}

/// Times (capture clock) of the claims the client sent in a window.
fn claims_on_wire(ev: &[WireEvent], vip: IpAddr, from: u64, to: u64) -> Vec<u64> {
    announcements(ev, vip, Mac(THEIRS), from, to)
}

fn counters(c: &Cluster) -> Result<(u64, u64, Option<String>)> {
    let report = c.router("r1").status()?;
    let i = report
        .instances
        .into_iter()
        .find(|i| i.name == "VI_1")
        .context("VI_1 in r1's status")?;
    Ok((
        i.counters.vip_claims,
        i.counters.vip_reannounced,
        i.counters.last_claimant,
    ))
}

/// Five claims 50 ms apart (further apart than the advert interval): the
/// master alone answers each, within 1 ms (median) on the wire; status and
/// log say who claimed the VIP.
fn claims_are_answered_within_a_millisecond(test: &str, vip: &str) -> Result<()> {
    let mut c = pair(test, vip, false)?;
    let frame = claim_frame(&c);
    let inj = frame_injector(&c.client, "eth0")?;
    let (r1, r2) = (c.router("r1").mac, c.router("r2").mac);
    let from = rt_ns();
    let claims = 5;
    for _ in 0..claims {
        inj.send(&frame)?;
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(100));
    let to = rt_ns();
    let ev = c.wire()?;
    let sent = claims_on_wire(&ev, c.vip, from, to);
    ensure!(sent.len() == claims, "capture saw {} claims", sent.len());
    let answers = announcements(&ev, c.vip, r1, from, to);
    let mut lat: Vec<u64> = Vec::new();
    for t in &sent {
        let a = answers
            .iter()
            .find(|a| **a >= *t)
            .with_context(|| format!("no re-announce after the claim at {t}"))?;
        lat.push(a - t);
    }
    println!("{}: claim → re-announce on the wire (ns): {lat:?}", c.vip);
    ensure!(
        answers.len() == claims,
        "r1 announced the VIP {} times for {claims} claims",
        answers.len()
    );
    lat.sort_unstable();
    let median = lat[lat.len() / 2];
    ensure!(
        median <= 1_000_000,
        "median claim → re-announce {median} ns (> 1 ms): {lat:?}"
    );
    ensure!(
        lat.iter().all(|l| *l <= INTERVAL_NS),
        "a re-announce took longer than one advert interval: {lat:?}"
    );
    ensure!(
        announcements(&ev, c.vip, r2, from, to).is_empty(),
        "the backup announced the VIP"
    );
    let (seen, reannounced, who) = counters(&c)?;
    ensure!(
        (seen, reannounced) == (claims as u64, claims as u64),
        "status counts {seen} claims, {reannounced} re-announces"
    );
    ensure!(
        who.as_deref() == Some("02:00:00:00:00:ee"),
        "claimant {who:?}"
    );
    let line = format!("VIP {} claimed by 02:00:00:00:00:ee", c.vip);
    ensure!(
        c.router("r1").log().contains(&line),
        "r1's log names the claimant"
    );
    ensure!(c.router("r1").has_vip(c.vip), "r1 kept the VIP");
    c.finish()
}

#[test]
fn a_foreign_garp_for_the_vip_is_answered_within_a_millisecond() -> Result<()> {
    lab_test(
        "a_foreign_garp_for_the_vip_is_answered_within_a_millisecond",
        || claims_are_answered_within_a_millisecond("claim", V4_VIP),
    )
}

#[test]
fn a_foreign_na_for_the_vip_is_answered_within_a_millisecond() -> Result<()> {
    lab_test(
        "a_foreign_na_for_the_vip_is_answered_within_a_millisecond",
        || claims_are_answered_within_a_millisecond("claim6", V6_VIP),
    )
}

#[test]
fn a_flood_of_foreign_garps_gets_one_reannounce_per_advert_interval() -> Result<()> {
    lab_test(
        "a_flood_of_foreign_garps_gets_one_reannounce_per_advert_interval",
        || {
            let mut c = pair("flood", V4_VIP, false)?;
            let inj = frame_injector(&c.client, "eth0")?;
            let r1 = c.router("r1").mac;
            let frame = claim_frame(&c);
            // 300 ms of claims, one every ~50 µs.
            let mono_from = xvrrpd_tests::clock::mono_ns();
            let from = rt_ns();
            let until = from + 300_000_000;
            let mut sent = 0u64;
            while rt_ns() < until {
                inj.send(&frame)?;
                sent += 1;
                let next = rt_ns() + 50_000;
                while rt_ns() < next {
                    std::hint::spin_loop();
                }
            }
            thread::sleep(Duration::from_millis(100));
            let ev = c.wire()?;
            let seen = claims_on_wire(&ev, c.vip, from, rt_ns());
            let (first, last) = match (seen.first(), seen.last()) {
                (Some(f), Some(l)) => (*f, *l),
                _ => bail!("the capture saw none of the {sent} claims"),
            };
            let answers = announcements(&ev, c.vip, r1, first, last + INTERVAL_NS);
            let window = last + INTERVAL_NS - first;
            let bound = window / INTERVAL_NS + 1;
            let gaps: Vec<u64> = answers.windows(2).map(|w| w[1] - w[0]).collect();
            let min_gap = gaps.iter().min().copied();
            println!(
                "flood: {} claims on the wire over {} ms; {} re-announces (bound {bound}); \
                 smallest gap {min_gap:?} ns",
                seen.len(),
                window / 1_000_000,
                answers.len()
            );
            ensure!(!answers.is_empty(), "the flood was never answered");
            ensure!(
                answers.len() as u64 <= bound,
                "{} re-announces in {window} ns: more than one per advert interval",
                answers.len()
            );
            // Wire timestamps jitter, and under the flood a re-announce can
            // leave the host up to a couple of milliseconds after its
            // decision (seen: 8.9 ms after the previous one on the wire, the
            // decisions 10.3 ms apart), later still when the host stalls
            // (seen: 7.1 ms with a 2.8 ms stall); the rule itself is exact
            // (unit test) and the count above bounds the rate.
            let stall = c
                .lab
                .stalls
                .worst_between(mono_from, xvrrpd_tests::clock::mono_ns());
            ensure!(
                min_gap.is_none_or(|g| g + stall >= INTERVAL_NS * 8 / 10),
                "two re-announces {min_gap:?} ns apart (worst host stall {stall} ns)"
            );
            let (claims, reannounced, _) = counters(&c)?;
            println!("status: {claims} claims reached r1, {reannounced} re-announced");
            ensure!(
                reannounced == answers.len() as u64,
                "status and wire disagree"
            );
            ensure!(c.router("r1").has_vip(c.vip), "r1 kept the VIP");
            c.finish()
        },
    )
}

#[test]
fn the_raw_socket_datapath_does_not_watch_claims() -> Result<()> {
    lab_test("the_raw_socket_datapath_does_not_watch_claims", || {
        let mut c = pair("claimraw", V4_VIP, true)?;
        let inj = frame_injector(&c.client, "eth0")?;
        let r1 = c.router("r1").mac;
        let frame = claim_frame(&c);
        let from = rt_ns();
        for _ in 0..3 {
            inj.send(&frame)?;
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_millis(100));
        let ev = c.wire()?;
        ensure!(
            claims_on_wire(&ev, c.vip, from, rt_ns()).len() == 3,
            "claims on the wire"
        );
        ensure!(
            announcements(&ev, c.vip, r1, from, rt_ns()).is_empty(),
            "no re-announce without eBPF"
        );
        ensure!(counters(&c)?.0 == 0, "no claim counted without eBPF");
        c.finish()
    })
}

/// Two claims 3 ms apart: the first is answered at once, the second falls
/// inside the interval and is answered when the interval ends, so the last
/// announcement on the segment is the owner's (a client that took the
/// second claim is moved back).
#[test]
fn a_claim_inside_the_interval_is_answered_when_it_ends() -> Result<()> {
    lab_test(
        "a_claim_inside_the_interval_is_answered_when_it_ends",
        || {
            let mut c = pair("last-word", V4_VIP, false)?;
            let inj = frame_injector(&c.client, "eth0")?;
            let r1 = c.router("r1").mac;
            let frame = claim_frame(&c);
            let from = rt_ns();
            inj.send(&frame)?;
            thread::sleep(Duration::from_millis(3));
            inj.send(&frame)?;
            thread::sleep(Duration::from_millis(100));
            let ev = c.wire()?;
            let seen = claims_on_wire(&ev, c.vip, from, rt_ns());
            ensure!(seen.len() == 2, "capture saw {} claims", seen.len());
            let answers = announcements(&ev, c.vip, r1, from, rt_ns());
            println!(
                "claims at +0 and +{:.3} ms; r1 announced at {:?} ms",
                (seen[1] - seen[0]) as f64 / 1e6,
                answers
                    .iter()
                    .map(|a| format!("{:+.3}", (*a as i128 - seen[0] as i128) as f64 / 1e6))
                    .collect::<Vec<_>>()
            );
            ensure!(
                answers.len() == 2,
                "r1 announced {} time(s), want 2 (one per claim, the second \
             when the interval ended)",
                answers.len()
            );
            ensure!(
                answers[1] > seen[1],
                "r1's last announcement came before the last claim"
            );
            let gap = answers[1] - answers[0];
            ensure!(
                (INTERVAL_NS * 9 / 10..=INTERVAL_NS * 3).contains(&gap),
                "second announcement {gap} ns after the first, want one interval"
            );
            c.finish()
        },
    )
}
