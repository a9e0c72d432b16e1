//! The eBPF programs on crafted frames through `BPF_PROG_TEST_RUN`: every
//! case of the shared table, on XDP and on TC, checking verdict, counters and
//! the delivered event against the Rust validator; and the conflict guard's
//! claims of guarded VIPs in ARP and neighbour advertisements.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use xvrrpd::clock::monotonic_ns;
use xvrrpd::datapath::{
    ebpf::{EbpfDatapath, EventRing, VmacFilter},
    event::decode_claim,
    guard_key,
    spec::{self, Expect, SPEC_IFINDEX},
    validate::classify_frame,
};
use xvrrpd::net::gratuitous::{garp_frame, unsolicited_na_frame};
use xvrrpd_common::{
    AdvertEvent, COUNTER_COUNT, ClaimEvent, Counter, FAMILY_IPV4, FAMILY_IPV6,
    GUARD_FLAG_NO_ACCEPT, GUARD_FLAG_SHARED_MAC, GuardValue, IfacePolicy, VmacBase, VridKey,
};
use xvrrpd_tests::require_root;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (−1): the frame goes on to the hook's next program, so
/// tcx links and clsact filters after xvrrpd's still see it.
const TC_ACT_UNSPEC: u32 = u32::MAX;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Prog {
    Xdp,
    Tc,
}

fn loaded() -> (EbpfDatapath, EventRing) {
    require_root();
    let mut dp = EbpfDatapath::load(true).expect("load the eBPF datapath");
    for (k, v) in spec::vrids() {
        dp.set_vrid(k, v).expect("fill the VRID map");
    }
    let ring = dp.take_events().expect("ring buffer");
    (dp, ring)
}

fn run(dp: &mut EbpfDatapath, prog: Prog, frame: &[u8]) -> u32 {
    match prog {
        Prog::Xdp => dp.test_run_xdp(frame, 1),
        Prog::Tc => dp.test_run_tc(frame, 1),
    }
    .expect("BPF_PROG_TEST_RUN")
    .0
}

fn pass_code(prog: Prog, pass: bool) -> u32 {
    match (prog, pass) {
        (Prog::Xdp, true) => XDP_PASS,
        (Prog::Xdp, false) => XDP_DROP,
        (Prog::Tc, true) => TC_ACT_UNSPEC,
        (Prog::Tc, false) => TC_ACT_SHOT,
    }
}

fn strip_ts(mut ev: AdvertEvent) -> Vec<u8> {
    ev.ts_ns = 0;
    bytemuck::bytes_of(&ev).to_vec()
}

fn every_case_matches_the_spec(prog: Prog) {
    let (mut dp, mut ring) = loaded();
    let vrids: HashMap<_, _> = spec::vrids();
    let mut events = Vec::new();
    let cases = spec::cases();
    for case in &cases {
        let before = dp.counters().expect("counters");
        let t0 = monotonic_ns();
        if prog == Prog::Tc && !case.skb_test_run {
            let refused = dp.test_run_tc(&case.frame, 1);
            assert!(
                refused.is_err(),
                "{}: the kernel now builds this skb; drop the exception",
                case.name
            );
            continue;
        }
        let verdict = run(&mut dp, prog, &case.frame);
        let t1 = monotonic_ns();
        let after = dp.counters().expect("counters");
        events.clear();
        ring.drain(&mut events);
        let delta: Vec<(Counter, u64)> = Counter::ALL
            .iter()
            .map(|c| (*c, after[*c as usize] - before[*c as usize]))
            .filter(|(_, d)| *d != 0)
            .collect();
        let name = case.name;
        match case.expect {
            Expect::NotVrrp => {
                assert_eq!(verdict, pass_code(prog, true), "{name}: verdict");
                assert!(
                    delta.is_empty(),
                    "{name}: non-VRRP must not be counted, got {delta:?}"
                );
                assert!(events.is_empty(), "{name}: no event for non-VRRP");
            }
            Expect::Counted(Counter::Accepted) => {
                assert_eq!(
                    verdict,
                    pass_code(prog, false),
                    "{name}: delivered adverts are consumed"
                );
                assert_eq!(delta, vec![(Counter::Accepted, 1)], "{name}: counters");
                assert_eq!(events.len(), 1, "{name}: exactly one event");
                let ev = events[0];
                let advert = case.advert.as_ref().expect("accepted case has an advert");
                if let Err(e) = spec::check_event(&ev, advert, SPEC_IFINDEX) {
                    panic!("{name}: {e}");
                }
                assert!(
                    t0 <= ev.ts_ns && ev.ts_ns <= t1,
                    "{name}: timestamp not from CLOCK_MONOTONIC"
                );
                let rust = classify_frame(&case.frame, SPEC_IFINDEX, 0, &vrids)
                    .expect("VRRP")
                    .expect("accepted by the Rust validator");
                assert_eq!(
                    strip_ts(ev),
                    strip_ts(rust),
                    "{name}: kernel and Rust events differ"
                );
            }
            Expect::Counted(c) => {
                // Default policy: unknown VRIDs go on to the stack, invalid adverts are dropped.
                let pass = c == Counter::UnknownVrid;
                assert_eq!(verdict, pass_code(prog, pass), "{name}: verdict");
                let mut want = vec![(c, 1)];
                if pass {
                    want.push((Counter::Passed, 1));
                    want.sort_by_key(|(c, _)| *c as u32);
                }
                assert_eq!(delta, want, "{name}: counters");
                assert!(
                    events.is_empty(),
                    "{name}: rejected adverts never reach the agent"
                );
            }
        }
    }
}

#[test]
fn xdp_classifies_every_case_of_the_spec() {
    every_case_matches_the_spec(Prog::Xdp);
}

#[test]
fn tc_classifies_every_case_of_the_spec() {
    every_case_matches_the_spec(Prog::Tc);
}

fn case(name: &str) -> Vec<u8> {
    spec::cases()
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.frame)
        .unwrap_or_else(|| panic!("no case {name}"))
}

#[test]
fn interface_policy_controls_drop_and_pass() {
    let (mut dp, mut ring) = loaded();
    let unknown = case("unknown_vrid");
    let invalid = case("bad_checksum_v3_ipv4");
    let valid = case("v3_ipv4_pseudo_header_checksum");
    assert_eq!(run(&mut dp, Prog::Xdp, &unknown), XDP_PASS);
    assert_eq!(run(&mut dp, Prog::Xdp, &invalid), XDP_DROP);
    assert_eq!(run(&mut dp, Prog::Xdp, &valid), XDP_DROP);
    let policy = IfacePolicy {
        drop_invalid: 0,
        drop_unknown_vrid: 1,
        drop_delivered: 0,
        _pad: [0; 5],
    };
    dp.set_policy(SPEC_IFINDEX, policy).expect("set policy");
    let before = dp.counters().expect("counters");
    assert_eq!(run(&mut dp, Prog::Xdp, &unknown), XDP_DROP);
    assert_eq!(run(&mut dp, Prog::Xdp, &invalid), XDP_PASS);
    assert_eq!(run(&mut dp, Prog::Xdp, &valid), XDP_PASS);
    let after = dp.counters().expect("counters");
    assert_eq!(
        after[Counter::Passed as usize] - before[Counter::Passed as usize],
        1
    );
    let mut events = Vec::new();
    ring.drain(&mut events);
    assert_eq!(
        events.len(),
        2,
        "valid adverts are delivered under both policies"
    );
}

#[test]
fn full_ring_buffer_is_counted_and_passed() {
    let (dp, mut ring) = loaded();
    let valid = case("v3_ipv4_pseudo_header_checksum");
    // 4 MiB holds ~12,000 events.
    let runs = 20_000u32;
    let (verdict, _) = dp.test_run_xdp(&valid, runs).expect("test run");
    // The last run found the ring full: the advert goes on to the stack.
    assert_eq!(verdict, XDP_PASS);
    let c = dp.counters().expect("counters");
    let (acc, full) = (
        c[Counter::Accepted as usize],
        c[Counter::RingbufFull as usize],
    );
    assert_eq!(acc + full, u64::from(runs));
    assert!(full > 0 && acc > 100, "accepted {acc}, ringbuf_full {full}");
    let mut events = Vec::new();
    ring.drain(&mut events);
    assert_eq!(
        events.len() as u64,
        acc,
        "every accepted advert is in the ring"
    );
}

// ----- conflict guard: claims of guarded VIPs in ARP and NA -----

const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const THEIRS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

/// The datapath with `VIP4` and `VIP6` guarded on the test-run interface.
fn guarded(min_interval_ns: u64) -> (EbpfDatapath, EventRing) {
    guarded_with(min_interval_ns, 0)
}

fn guarded_with(min_interval_ns: u64, flags: u8) -> (EbpfDatapath, EventRing) {
    let (mut dp, ring) = loaded();
    for addr in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let value = GuardValue {
            mac: OURS,
            vrid: FENCE_VRID,
            family: if addr.is_ipv4() {
                FAMILY_IPV4
            } else {
                FAMILY_IPV6
            },
            min_interval_ns,
            last_report_ns: 0,
            last_claim_ns: 0,
            last_claim_mac: [0; 6],
            flags,
            _pad2: 0,
        };
        dp.set_guard(guard_key(SPEC_IFINDEX, addr), value)
            .expect("guard");
    }
    (dp, ring)
}

/// Runs `frame` on `prog`: it must pass; returns the claims it reported
/// and the (reported, limited) counter deltas.
fn claims(
    dp: &mut EbpfDatapath,
    ring: &mut EventRing,
    prog: Prog,
    frame: &[u8],
) -> (Vec<ClaimEvent>, u64, u64) {
    let before = dp.counters().expect("counters");
    assert_eq!(
        run(dp, prog, frame),
        pass_code(prog, true),
        "ARP and NA always go on to the stack"
    );
    let after = dp.counters().expect("counters");
    let mut adverts = Vec::new();
    ring.drain(&mut adverts);
    assert!(adverts.is_empty(), "a claim is not an advert");
    let mut out = Vec::new();
    ring.take_claims(&mut out);
    let d = |c: Counter| after[c as usize] - before[c as usize];
    (out, d(Counter::ClaimReported), d(Counter::ClaimLimited))
}

fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr) -> Vec<u8> {
    let mut f = garp_frame(sha, spa).to_vec();
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f
}

fn vlan_tagged(frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
    f.extend_from_slice(&frame[12..]);
    f
}

fn guard_claims_match(prog: Prog) {
    let (mut dp, mut ring) = guarded(0);
    let t0 = monotonic_ns();
    // Gratuitous ARP, ARP reply, tagged GARP and NA from a foreign MAC: one claim each.
    let foreign = [
        (garp_frame(THEIRS, VIP4).to_vec(), IpAddr::V4(VIP4)),
        (arp(2, THEIRS, VIP4), IpAddr::V4(VIP4)),
        (vlan_tagged(&garp_frame(THEIRS, VIP4)), IpAddr::V4(VIP4)),
        (
            unsolicited_na_frame(THEIRS, VIP6, false).to_vec(),
            IpAddr::V6(VIP6),
        ),
    ];
    for (frame, addr) in &foreign {
        let (got, reported, limited) = claims(&mut dp, &mut ring, prog, frame);
        assert_eq!((reported, limited), (1, 0), "{addr}: counters");
        assert_eq!(got.len(), 1, "{addr}: one claim");
        let c = decode_claim(&got[0]);
        assert_eq!((c.addr, c.mac, c.ifindex), (*addr, THEIRS, SPEC_IFINDEX));
        assert!(t0 <= c.ts_ns && c.ts_ns <= monotonic_ns(), "kernel clock");
    }
    // Our own announcements, unguarded addresses, a host asking for the
    // VIP, and an NA the stack would refuse (hop limit 64): nothing.
    let mut na_hop64 = unsolicited_na_frame(THEIRS, VIP6, false).to_vec();
    na_hop64[14 + 7] = 64;
    let mut query = arp(1, THEIRS, Ipv4Addr::new(192, 0, 2, 7)).to_vec();
    query[38..42].copy_from_slice(&VIP4.octets());
    let quiet = [
        ("own GARP", garp_frame(OURS, VIP4).to_vec()),
        ("own NA", unsolicited_na_frame(OURS, VIP6, false).to_vec()),
        (
            "unguarded GARP",
            garp_frame(THEIRS, Ipv4Addr::new(192, 0, 2, 200)).to_vec(),
        ),
        (
            "unguarded NA",
            unsolicited_na_frame(THEIRS, "2001:db8::200".parse().expect("addr"), false).to_vec(),
        ),
        ("ARP request for the VIP", query),
        ("NA with hop limit 64", na_hop64),
    ];
    for (what, frame) in &quiet {
        let (got, reported, limited) = claims(&mut dp, &mut ring, prog, frame);
        assert!(got.is_empty(), "{what}: no claim");
        assert_eq!((reported, limited), (0, 0), "{what}: not counted");
    }
}

#[test]
fn xdp_reports_foreign_claims_of_guarded_vips_only() {
    guard_claims_match(Prog::Xdp);
}

#[test]
fn tc_reports_foreign_claims_of_guarded_vips_only() {
    guard_claims_match(Prog::Tc);
}

#[test]
fn claims_are_rate_limited_per_vip_in_the_kernel() {
    let interval = 50_000_000;
    let (mut dp, mut ring) = guarded(interval);
    let garp = garp_frame(THEIRS, VIP4);
    let na = unsolicited_na_frame(THEIRS, VIP6, false);
    let t0 = monotonic_ns();
    let (got, reported, _) = claims(&mut dp, &mut ring, Prog::Xdp, &garp);
    assert_eq!((got.len(), reported), (1, 1), "first claim reported");
    // A flood within the interval: counted, not reported.
    let before = dp.counters().expect("counters");
    let (verdict, _) = dp.test_run_xdp(&garp, 1000).expect("test run");
    assert_eq!(verdict, XDP_PASS);
    let after = dp.counters().expect("counters");
    let mut adverts = Vec::new();
    ring.drain(&mut adverts);
    let mut flood = Vec::new();
    ring.take_claims(&mut flood);
    let limited = after[Counter::ClaimLimited as usize] - before[Counter::ClaimLimited as usize];
    if monotonic_ns() - t0 < interval {
        assert!(flood.is_empty(), "flood within the interval: no claim");
        assert_eq!(limited, 1000);
    }
    // Unreported claims still leave their time and claimant, for the
    // agent's check at the end of the interval.
    let g = dp
        .guard_entry(&guard_key(SPEC_IFINDEX, IpAddr::V4(VIP4)))
        .expect("guard map")
        .expect("guarded");
    assert!(g.last_claim_ns > g.last_report_ns, "{g:?}");
    assert_eq!(g.last_claim_mac, THEIRS);
    // The other VIP has its own budget.
    let (got, reported, _) = claims(&mut dp, &mut ring, Prog::Xdp, &na);
    assert_eq!((got.len(), reported), (1, 1), "other VIP reported");
    // After the interval the VIP is reported again.
    std::thread::sleep(std::time::Duration::from_nanos(interval));
    let (got, reported, _) = claims(&mut dp, &mut ring, Prog::Xdp, &garp);
    assert_eq!(
        (got.len(), reported),
        (1, 1),
        "reported again after the interval"
    );
}

#[test]
fn the_claims_of_an_unguarded_vip_stop() {
    let (mut dp, mut ring) = guarded(0);
    let garp = garp_frame(THEIRS, VIP4);
    assert_eq!(claims(&mut dp, &mut ring, Prog::Xdp, &garp).0.len(), 1);
    dp.remove_guard(&guard_key(SPEC_IFINDEX, IpAddr::V4(VIP4)))
        .expect("unguard");
    assert!(claims(&mut dp, &mut ring, Prog::Xdp, &garp).0.is_empty());
}

// ----- fence: a dead agent's VIPs point at the router that took over -----

/// The VRID of the spec's valid adverts (both families).
const FENCE_VRID: u8 = 10;
const CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x33];
const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9);
const XDP_TX: u32 = 3;

fn echo4(dst: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&OURS);
    f.extend_from_slice(&CLIENT);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0, 0, 84, 0, 1, 0x40, 0, 64, 1, 0, 0]);
    f.extend_from_slice(&CLIENT4.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    f.resize(14 + 84, 0xa5);
    f
}

fn echo6(dst: Ipv6Addr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&OURS);
    f.extend_from_slice(&CLIENT);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 64, 58, 64]);
    f.extend_from_slice(&CLIENT6.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
    f.resize(14 + 40 + 64, 0xa5);
    f
}

fn who_has(target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&CLIENT);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT);
    f.extend_from_slice(&CLIENT4.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, 0);
    f
}

fn solicit(target: Ipv6Addr) -> Vec<u8> {
    let mut f = vec![0x33, 0x33, 0xff, 0, 1, 0];
    f.extend_from_slice(&CLIENT);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, 255]);
    f.extend_from_slice(&CLIENT6.octets());
    f.extend_from_slice(&"ff02::1:ff00:100".parse::<Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&target.octets());
    f.extend_from_slice(&[1, 1]);
    f.extend_from_slice(&CLIENT);
    f
}

fn ones_complement(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for c in chunks {
        for pair in c.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The guarded datapath with both VIPs' instance lease at `lease_ns`.
fn fenced_setup(lease_ns: u64) -> (EbpfDatapath, EventRing) {
    let (mut dp, ring) = guarded(0);
    for family in [FAMILY_IPV4, FAMILY_IPV6] {
        dp.set_lease(VridKey::new(SPEC_IFINDEX, family, FENCE_VRID), lease_ns)
            .expect("lease");
    }
    (dp, ring)
}

fn counter_delta(dp: &EbpfDatapath, before: &[u64], c: Counter) -> u64 {
    dp.counters().expect("counters")[c as usize] - before[c as usize]
}

fn run_out(dp: &mut EbpfDatapath, prog: Prog, frame: &[u8]) -> (u32, Vec<u8>) {
    match prog {
        Prog::Xdp => dp.test_run_xdp_out(frame),
        Prog::Tc => dp.test_run_tc_out(frame),
    }
    .expect("BPF_PROG_TEST_RUN")
}

/// What the fence's answer returns: `XDP_TX`, or TC's redirect (to the
/// interface the frame came in on).
fn answer_code(prog: Prog) -> u32 {
    match prog {
        Prog::Xdp => XDP_TX,
        Prog::Tc => TC_ACT_REDIRECT,
    }
}

#[test]
fn xdp_fences_a_dead_agents_vips_and_answers_for_the_owner() {
    fences_and_answers(Prog::Xdp);
}

#[test]
fn tc_fences_a_dead_agents_vips_and_answers_for_the_owner() {
    fences_and_answers(Prog::Tc);
}

/// A lapsed lease and another router's advert fence the VIPs; packets for
/// them are answered with the owner's announcement.
fn fences_and_answers(prog: Prog) {
    let (mut dp, mut ring) = fenced_setup(1);
    let (pass, drop) = (pass_code(prog, true), pass_code(prog, false));
    let before = dp.counters().expect("counters");
    // No other router has advertised yet: nothing is fenced.
    assert_eq!(run(&mut dp, prog, &echo4(VIP4)), pass);
    assert_eq!(run(&mut dp, prog, &who_has(VIP4)), pass);
    for name in ["v3_ipv4_pseudo_header_checksum", "v3_ipv6_valid"] {
        let advert = case(name);
        assert_eq!(run(&mut dp, prog, &advert), drop, "{name}");
    }
    assert_eq!(counter_delta(&dp, &before, Counter::FenceEngaged), 2);
    let owner: [u8; 6] = case("v3_ipv4_pseudo_header_checksum")[6..12]
        .try_into()
        .unwrap();

    // ARP and ND questions for the VIPs get no answer from this host.
    assert_eq!(run(&mut dp, prog, &who_has(VIP4)), drop);
    assert_eq!(run(&mut dp, prog, &solicit(VIP6)), drop);
    // Another address is not fenced.
    let other = Ipv4Addr::new(192, 0, 2, 101);
    assert_eq!(run(&mut dp, prog, &who_has(other)), pass);
    assert_eq!(run(&mut dp, prog, &echo4(other)), pass);

    // A packet for the IPv4 VIP comes back as a gratuitous ARP naming the owner.
    let (verdict, out) = run_out(&mut dp, prog, &echo4(VIP4));
    assert_eq!(verdict, answer_code(prog));
    assert_eq!(out.len(), 60, "{out:02x?}");
    assert_eq!(&out[0..6], &CLIENT, "back to its sender");
    assert_eq!(
        &out[6..12],
        &OURS,
        "from our MAC (the bridge must not learn the owner here)"
    );
    assert_eq!(&out[12..22], &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    assert_eq!(&out[22..28], &owner, "sender hardware address: the owner");
    assert_eq!(&out[28..32], &VIP4.octets());
    assert_eq!(&out[38..42], &VIP4.octets(), "gratuitous: target = sender");
    assert!(out[42..].iter().all(|b| *b == 0), "padding is zeroed");

    // A packet for the IPv6 VIP comes back as an unsolicited NA, override set.
    let (verdict, out) = run_out(&mut dp, prog, &echo6(VIP6));
    assert_eq!(verdict, answer_code(prog));
    assert_eq!(out.len(), 14 + 72);
    assert_eq!(&out[0..6], &CLIENT);
    assert_eq!(&out[6..12], &OURS);
    let ip = &out[14..];
    assert_eq!(&ip[..8], &[0x60, 0, 0, 0, 0, 32, 58, 255]);
    assert_eq!(&ip[8..24], &VIP6.octets());
    assert_eq!(&ip[24..40], &CLIENT6.octets());
    let icmp = &ip[40..];
    assert_eq!(&icmp[..2], &[136, 0]);
    assert_eq!(&icmp[4..8], &[0x20, 0, 0, 0], "override, not solicited");
    assert_eq!(&icmp[8..24], &VIP6.octets());
    assert_eq!(&icmp[24..26], &[2, 1]);
    let owner6: [u8; 6] = case("v3_ipv6_valid")[6..12].try_into().unwrap();
    assert_eq!(&icmp[26..32], &owner6);
    let pseudo_tail = [0, 0, 0, 32, 0, 0, 0, 58];
    assert_eq!(
        ones_complement(&[&ip[8..40], &pseudo_tail, icmp]),
        0xffff,
        "ICMPv6 checksum"
    );
    assert_eq!(counter_delta(&dp, &before, Counter::FenceRedirected), 2);
    assert_eq!(counter_delta(&dp, &before, Counter::FenceDropped), 2);
    let mut events = Vec::new();
    ring.drain(&mut events);
    assert_eq!(events.len(), 2, "the adverts still reach the agent");
}

/// A VIP on a VMAC: every router has that MAC, so the fence drops what
/// comes for it and answers nothing (an answer from the VMAC would move it
/// to this host in the switch).
#[test]
fn a_vmac_vip_is_fenced_without_an_answer() {
    for prog in [Prog::Xdp, Prog::Tc] {
        let (mut dp, _ring) = guarded_with(0, GUARD_FLAG_SHARED_MAC);
        for family in [FAMILY_IPV4, FAMILY_IPV6] {
            dp.set_lease(VridKey::new(SPEC_IFINDEX, family, FENCE_VRID), 1)
                .expect("lease");
        }
        let drop = pass_code(prog, false);
        for name in ["v3_ipv4_pseudo_header_checksum", "v3_ipv6_valid"] {
            assert_eq!(run(&mut dp, prog, &case(name)), drop, "{name}");
        }
        let before = dp.counters().expect("counters");
        for frame in [echo4(VIP4), echo6(VIP6), who_has(VIP4), solicit(VIP6)] {
            assert_eq!(run(&mut dp, prog, &frame), drop, "{prog:?}");
        }
        assert_eq!(counter_delta(&dp, &before, Counter::FenceRedirected), 0);
        assert_eq!(counter_delta(&dp, &before, Counter::FenceDropped), 4);
    }
}

/// Non-accept mode (RFC 9568 §6.4.3): while the gate is on, packets to a
/// VIP flagged so are dropped and counted; ARP and neighbour discovery for
/// it, other addresses, and everything once the gate is off, pass. A fence
/// still answers first.
#[test]
fn a_non_accept_master_takes_no_packet_for_its_vips() {
    for prog in [Prog::Xdp, Prog::Tc] {
        let (mut dp, _ring) = guarded_with(0, GUARD_FLAG_NO_ACCEPT);
        let (pass, drop) = (pass_code(prog, true), pass_code(prog, false));
        for family in [FAMILY_IPV4, FAMILY_IPV6] {
            dp.set_lease(
                VridKey::new(SPEC_IFINDEX, family, FENCE_VRID),
                monotonic_ns() + 60_000_000_000,
            )
            .expect("lease");
        }
        // The gate is off: nothing is looked up.
        assert_eq!(run(&mut dp, prog, &echo4(VIP4)), pass, "{prog:?}");
        dp.set_no_accept(true).expect("gate");
        let before = dp.counters().expect("counters");
        assert_eq!(run(&mut dp, prog, &echo4(VIP4)), drop, "{prog:?}");
        assert_eq!(run(&mut dp, prog, &echo6(VIP6)), drop, "{prog:?}");
        assert_eq!(run(&mut dp, prog, &vlan_tagged(&echo4(VIP4))), drop);
        assert_eq!(counter_delta(&dp, &before, Counter::NotAccepted), 3);
        // Neighbour discovery and ARP still answer for the VIPs.
        assert_eq!(run(&mut dp, prog, &who_has(VIP4)), pass);
        assert_eq!(run(&mut dp, prog, &solicit(VIP6)), pass);
        // Another address is not the instance's.
        assert_eq!(
            run(&mut dp, prog, &echo4(Ipv4Addr::new(192, 0, 2, 101))),
            pass
        );
        dp.set_no_accept(false).expect("gate");
        assert_eq!(run(&mut dp, prog, &echo4(VIP4)), pass);

        // The agent died: once another router owns the VRID, the fence
        // answers for it even with the gate on.
        dp.set_no_accept(true).expect("gate");
        dp.set_lease(VridKey::new(SPEC_IFINDEX, FAMILY_IPV4, FENCE_VRID), 1)
            .expect("lease");
        assert_eq!(
            run(&mut dp, prog, &case("v3_ipv4_pseudo_header_checksum")),
            drop
        );
        assert_eq!(run(&mut dp, prog, &echo4(VIP4)), answer_code(prog));
    }
}

#[test]
fn a_live_lease_or_a_silent_owner_fences_nothing() {
    // The agent renewed its lease: another router's advert changes nothing.
    let (dp, _ring) = fenced_setup(monotonic_ns() + 60_000_000_000);
    let before = dp.counters().expect("counters");
    dp.test_run_xdp(&case("v3_ipv4_pseudo_header_checksum"), 1)
        .unwrap();
    assert_eq!(counter_delta(&dp, &before, Counter::FenceEngaged), 0);
    assert_eq!(dp.test_run_xdp(&who_has(VIP4), 1).unwrap().0, XDP_PASS);
    assert_eq!(dp.test_run_xdp(&echo4(VIP4), 1).unwrap().0, XDP_PASS);

    // Lapsed lease, owner seen, then the owner falls silent: after four of
    // its advert intervals (10 ms each here) this host serves again.
    let (mut dp, _ring) = fenced_setup(1);
    dp.test_run_xdp(&case("v3_ipv4_pseudo_header_checksum"), 1)
        .unwrap();
    assert_eq!(dp.test_run_xdp(&who_has(VIP4), 1).unwrap().0, XDP_DROP);
    std::thread::sleep(std::time::Duration::from_millis(60));
    assert_eq!(dp.test_run_xdp(&who_has(VIP4), 1).unwrap().0, XDP_PASS);
    assert_eq!(dp.test_run_xdp(&echo4(VIP4), 1).unwrap().0, XDP_PASS);

    // The agent comes back and renews: the fence lifts at once.
    dp.test_run_xdp(&case("v3_ipv4_pseudo_header_checksum"), 1)
        .unwrap();
    assert_eq!(dp.test_run_xdp(&echo4(VIP4), 1).unwrap().0, XDP_TX);
    dp.set_lease(
        VridKey::new(SPEC_IFINDEX, FAMILY_IPV4, FENCE_VRID),
        monotonic_ns() + 60_000_000_000,
    )
    .unwrap();
    assert_eq!(dp.test_run_xdp(&echo4(VIP4), 1).unwrap().0, XDP_PASS);
}

/// The shared table's accepted adverts, each made the healthy master's
/// advert in turn: its repeat only updates the kernel's record; every other
/// accepted advert for the same VRID wakes the agent unless it matches in
/// every compared field; a change of priority wakes it; without an entry
/// everything is delivered again.
#[test]
fn a_repeat_of_the_accepted_advert_is_timed_not_delivered() {
    use xvrrpd_common::QuietAdvert;
    let (mut dp, mut ring) = loaded();
    let cases: Vec<_> = spec::cases()
        .into_iter()
        .filter(|c| c.expect == Expect::Counted(Counter::Accepted))
        .collect();
    let mut events = Vec::new();
    let mut deliver = |dp: &mut EbpfDatapath,
                       frame: &[u8]|
     -> (u32, Vec<AdvertEvent>, [u64; COUNTER_COUNT as usize]) {
        let before = dp.counters().expect("counters");
        let verdict = dp.test_run_xdp(frame, 1).expect("BPF_PROG_TEST_RUN").0;
        let after = dp.counters().expect("counters");
        events.clear();
        ring.drain(&mut events);
        let mut delta = [0u64; COUNTER_COUNT as usize];
        for c in Counter::ALL {
            delta[c as usize] = after[c as usize] - before[c as usize];
        }
        (verdict, events.clone(), delta)
    };
    let compared = |q: &QuietAdvert| {
        let mut q = *q;
        q.down_ns = 0;
        q
    };
    for master in &cases {
        let (_, evs, _) = deliver(&mut dp, &master.frame);
        let ev = *evs
            .first()
            .unwrap_or_else(|| panic!("{}: no event", master.name));
        let key = VridKey::new(ev.ifindex, ev.family, ev.vrid);
        let mut fp = QuietAdvert::of_event(&ev);
        fp.down_ns = 30_000_000;
        dp.set_quiet(key, Some(fp)).expect("QUIET");
        let before = dp.heard(&key).expect("HEARD").unwrap_or_default();
        let t0 = monotonic_ns();
        let (verdict, evs, delta) = deliver(&mut dp, &master.frame);
        let t1 = monotonic_ns();
        let name = master.name;
        assert_eq!(verdict, XDP_DROP, "{name}: a kept advert is consumed");
        assert!(evs.is_empty(), "{name}: its repeat woke the agent");
        assert_eq!(delta[Counter::Heard as usize], 1, "{name}: heard counter");
        assert_eq!(
            delta[Counter::Accepted as usize],
            0,
            "{name}: accepted counter"
        );
        let heard = dp.heard(&key).expect("HEARD").expect("an entry");
        assert!(
            t0 <= heard.last_ns && heard.last_ns <= t1,
            "{name}: heard at {} outside [{t0}, {t1}]",
            heard.last_ns
        );
        assert_eq!(heard.count, before.count + 1, "{name}: heard count");
        for other in cases.iter().filter(|c| c.name != name) {
            let (_, evs, delta) = deliver(&mut dp, &other.frame);
            let Some(ev) = evs.first() else {
                assert_eq!(
                    delta[Counter::Heard as usize],
                    1,
                    "{name} kept, {}: neither delivered nor kept",
                    other.name
                );
                continue;
            };
            let other_key = VridKey::new(ev.ifindex, ev.family, ev.vrid);
            assert!(
                other_key != key || compared(&QuietAdvert::of_event(ev)) != compared(&fp),
                "{name} kept: {} matches it in every field but was delivered",
                other.name
            );
        }
        // Same master, another priority: the state machine must see it.
        let mut frame = master.frame.clone();
        let changed = spec::with_priority(&mut frame, 99);
        if changed {
            let (_, evs, _) = deliver(&mut dp, &frame);
            assert_eq!(evs.len(), 1, "{name}: a new priority was not delivered");
            assert_eq!(evs[0].priority, 99, "{name}: delivered priority");
        }
        dp.set_quiet(key, None).expect("QUIET");
        let (_, evs, _) = deliver(&mut dp, &master.frame);
        assert_eq!(
            evs.len(),
            1,
            "{name}: without an entry, every advert is delivered"
        );
    }
}

/// Delivers the table's VRRPv3 advert once and makes it the healthy
/// master's advert (`down_ns` for the kernel's timer); returns the case and
/// its VRID key.
fn keep_first_advert(
    dp: &mut EbpfDatapath,
    ring: &mut EventRing,
    down_ns: u64,
) -> (spec::Case, VridKey) {
    let case = spec::cases()
        .into_iter()
        .find(|c| c.name == "v3_ipv4_pseudo_header_checksum")
        .expect("the table's VRRPv3 advert");
    let mut events = Vec::new();
    dp.test_run_xdp(&case.frame, 1).expect("run");
    ring.drain(&mut events);
    let ev = events.pop().expect("the first advert is delivered");
    let key = VridKey::new(ev.ifindex, ev.family, ev.vrid);
    let mut fp = xvrrpd_common::QuietAdvert::of_event(&ev);
    fp.down_ns = down_ns;
    dp.set_quiet(key, Some(fp)).expect("QUIET");
    (case, key)
}

/// The kernel's down timer: each kept advert re-arms it; when one runs out
/// the agent gets a `DownEvent` a spin lead before the deadline, counted
/// as `down_expired`; with the VRID no longer kept, it stays silent.
#[test]
fn a_kept_advert_arms_the_kernel_down_timer_and_its_expiry_is_reported() {
    use std::time::Duration;
    use xvrrpd_common::DOWN_TIMER_LEAD_NS;
    let (mut dp, mut ring) = loaded();
    assert!(dp.kernel_timers(), "this kernel has BPF timers (≥ 5.15)");
    let down_ns = 20_000_000;
    let (case, key) = keep_first_advert(&mut dp, &mut ring, down_ns);
    let downs = |ring: &mut EventRing| {
        let mut ads = Vec::new();
        ring.drain(&mut ads);
        let mut d = Vec::new();
        ring.take_downs(&mut d);
        (ads, d)
    };
    // Kept adverts every 5 ms for 40 ms: the timer keeps moving.
    for _ in 0..8 {
        dp.test_run_xdp(&case.frame, 1).expect("run");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (ads, d) = downs(&mut ring);
    assert!(ads.is_empty(), "kept adverts were delivered: {}", ads.len());
    assert!(
        d.is_empty(),
        "the timer ran out while adverts kept coming: {d:?}"
    );
    let expired0 = dp.counters().expect("counters")[Counter::DownExpired as usize];
    // Silence: it runs out once, a spin lead before the deadline.
    std::thread::sleep(Duration::from_millis(60));
    let (_, d) = downs(&mut ring);
    assert_eq!(d.len(), 1, "one expiry after the adverts stopped: {d:?}");
    let heard = dp.heard(&key).expect("HEARD").expect("an entry");
    let down = d[0];
    assert_eq!(down.key, key);
    assert_eq!(down.last_ns, heard.last_ns, "the last kept advert's time");
    assert_eq!(down.deadline_ns, heard.last_ns + down_ns);
    let early = down.deadline_ns as i128 - down.fired_ns as i128;
    assert!(
        early > 0 && early <= DOWN_TIMER_LEAD_NS as i128,
        "fired {early} ns before the deadline (lead {DOWN_TIMER_LEAD_NS} ns)"
    );
    let expired = dp.counters().expect("counters")[Counter::DownExpired as usize];
    assert_eq!(expired - expired0, 1, "down_expired counter");
    // No longer kept: a pending timer reports nothing.
    dp.test_run_xdp(&case.frame, 1).expect("run");
    dp.set_quiet(key, None).expect("QUIET");
    std::thread::sleep(Duration::from_millis(60));
    let (_, d) = downs(&mut ring);
    assert!(
        d.is_empty(),
        "a timer of a VRID no longer kept reported: {d:?}"
    );
}

/// Without BPF timers (`load(false)`, the programs for older kernels) a
/// kept advert is still timed, and no timer runs.
#[test]
fn the_plain_programs_keep_adverts_without_a_kernel_timer() {
    use std::time::Duration;
    require_root();
    let mut dp = EbpfDatapath::load(false).expect("load the plain programs");
    for (k, v) in spec::vrids() {
        dp.set_vrid(k, v).expect("fill the VRID map");
    }
    let mut ring = dp.take_events().expect("ring buffer");
    assert!(!dp.kernel_timers());
    let (case, key) = keep_first_advert(&mut dp, &mut ring, 5_000_000);
    let mut events = Vec::new();
    dp.test_run_xdp(&case.frame, 1).expect("run");
    std::thread::sleep(Duration::from_millis(20));
    ring.drain(&mut events);
    let mut d = Vec::new();
    ring.take_downs(&mut d);
    assert!(events.is_empty() && d.is_empty(), "{events:?} {d:?}");
    assert_eq!(dp.heard(&key).expect("HEARD").map(|h| h.count), Some(1));
}

/// The leases of one wake-up's adverts go to the kernel in one batch, and
/// each reads back as written.
#[test]
fn leases_are_renewed_in_one_batch() {
    let (mut dp, _ring) = loaded();
    let leases: Vec<(VridKey, u64)> = (1..=200u8)
        .map(|vrid| {
            (
                VridKey::new(SPEC_IFINDEX, FAMILY_IPV4, vrid),
                1_000 + u64::from(vrid),
            )
        })
        .collect();
    dp.set_leases(&leases).expect("batch update");
    for (k, v) in &leases {
        assert_eq!(dp.lease(k).expect("LEASES"), Some(*v), "{k:?}");
    }
}

/// 250 VRIDs kept at once: one kernel timer watches them all (a burst of
/// per-VRID timers is what the kernel refuses to allocate), each deadline
/// is reported once when its master goes quiet, and a reported VRID is no
/// longer watched until its next kept advert.
#[test]
fn one_kernel_timer_watches_every_kept_vrid_and_reports_each_once() {
    use std::{net::IpAddr, time::Duration};
    use xvrrpd::packet::{Advert, Auth, V3Ipv4Checksum, Version, encode, frame::VrrpFrame};
    use xvrrpd_common::{QuietAdvert, VRID_FLAG_CHECK_TTL, VridConfig};
    require_root();
    let mut dp = EbpfDatapath::load(true).expect("load the eBPF datapath");
    let cfg = VridConfig {
        flags: VRID_FLAG_CHECK_TTL,
        auth_type: 0,
        v2_interval_s: 0,
        _pad: [0; 5],
        auth_data: [0; 8],
    };
    let (src, dst): (IpAddr, IpAddr) = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
        IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
    );
    let mut frames = Vec::new();
    for vrid in 1..=250u8 {
        dp.set_vrid(VridKey::new(SPEC_IFINDEX, FAMILY_IPV4, vrid), cfg)
            .expect("VRIDS");
        let advert = Advert {
            version: Version::V3,
            vrid,
            priority: 150,
            interval_cs: 10,
            addrs: vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, vrid))],
            auth: Auth::None,
        };
        let msg = encode(&advert, src, dst, V3Ipv4Checksum::PseudoHeader).expect("encode");
        frames.push(VrrpFrame::new(src, dst, vrid).build(&msg));
    }
    let mut ring = dp.take_events().expect("ring buffer");
    let mut events = Vec::new();
    for f in &frames {
        dp.test_run_xdp(f, 1).expect("run");
    }
    ring.drain(&mut events);
    assert_eq!(events.len(), 250, "every first advert is delivered");
    for ev in &events {
        let mut fp = QuietAdvert::of_event(ev);
        fp.down_ns = 200_000_000;
        dp.set_quiet(VridKey::new(ev.ifindex, ev.family, ev.vrid), Some(fp))
            .expect("QUIET");
    }
    for _ in 0..3 {
        for f in &frames {
            dp.test_run_xdp(f, 1).expect("run");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for vrid in 1..=250u8 {
        let key = VridKey::new(SPEC_IFINDEX, FAMILY_IPV4, vrid);
        let heard = dp.heard(&key).expect("HEARD").expect("an entry");
        assert_eq!(heard.count, 3, "vrid {vrid}: kept adverts");
        assert_eq!(
            heard.timed, 1,
            "vrid {vrid}: the kernel's timer does not watch it"
        );
    }
    std::thread::sleep(Duration::from_millis(400));
    events.clear();
    ring.drain(&mut events);
    assert!(events.is_empty(), "kept adverts were delivered");
    let mut downs = Vec::new();
    ring.take_downs(&mut downs);
    for vrid in 1..=250u8 {
        let key = VridKey::new(SPEC_IFINDEX, FAMILY_IPV4, vrid);
        let reports = downs.iter().filter(|d| d.key == key).count();
        assert_eq!(reports, 1, "vrid {vrid}: reported {reports} times");
        let heard = dp.heard(&key).expect("HEARD").expect("an entry");
        assert_eq!(
            heard.timed, 0,
            "vrid {vrid}: still watched after its report"
        );
    }
    // The next kept advert watches the VRID again.
    dp.test_run_xdp(&frames[0], 1).expect("run");
    let key = VridKey::new(SPEC_IFINDEX, FAMILY_IPV4, 1);
    assert_eq!(dp.heard(&key).expect("HEARD").expect("an entry").timed, 1);
}

const VMAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x02, 0x2f];
const BASE: VmacBase = VmacBase {
    ifindex: 77,
    mac: [0x02, 0, 0, 0, 0, 0x02],
    _pad: [0; 2],
};

/// An IPv6 frame from the VMAC: `next` after the fixed header, `l4` after it.
fn from_vmac6(next: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0x33, 0x33, 0, 0, 0, 0x16];
    f.extend_from_slice(&VMAC);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, 1]);
    f.extend_from_slice(&[0; 16]);
    f.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16]);
    f.extend_from_slice(l4);
    f
}

/// An MLD message of `kind` behind the hop-by-hop header with a router alert.
fn mld(kind: u8) -> Vec<u8> {
    let mut l4 = vec![58, 0, 5, 2, 0, 0, 1, 0];
    l4.extend_from_slice(&[kind, 0, 0, 0, 0, 0, 0, 1]);
    l4.extend_from_slice(&[4, 0, 0, 0]);
    l4.extend_from_slice(&[
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0x01, 0x47,
    ]);
    from_vmac6(0, &l4)
}

fn igmp_report() -> Vec<u8> {
    let mut f = vec![0x01, 0, 0x5e, 0, 0, 0x16];
    f.extend_from_slice(&VMAC);
    f.extend_from_slice(&[0x08, 0x00, 0x46, 0xc0, 0, 40, 0, 0, 0x40, 0, 1, 2, 0, 0]);
    f.extend_from_slice(&[192, 0, 2, 100, 224, 0, 0, 22, 0x94, 4, 0, 0]);
    f.extend_from_slice(&[0x22, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 239, 1, 2, 3]);
    f
}

/// The VMACs' egress program sends IGMP and MLD reports out of the base,
/// from the base's MAC, drops router solicitations, and leaves the rest
/// (adverts, NAs, data) alone; the reports of a VMAC the agent did not
/// register go on as they are.
#[test]
fn reports_leaving_a_vmac_go_out_of_its_base() {
    require_root();
    let mut dp = VmacFilter::load().expect("load the VMAC filter");
    let rs = from_vmac6(58, &[133, 0, 0, 0, 0, 0, 0, 0]);
    let na = unsolicited_na_frame(VMAC, VIP6, false);
    let reports = [mld(143), mld(131), mld(132), igmp_report()];

    // Not registered yet: everything goes on as it is.
    for f in reports.iter().chain([&rs]) {
        let (verdict, out) = dp.test_run(f).expect("BPF_PROG_TEST_RUN");
        if f == &rs {
            assert_eq!(verdict, TC_ACT_SHOT, "a router solicitation is never sent");
        } else {
            assert_eq!((verdict, out.as_slice()), (TC_ACT_UNSPEC, f.as_slice()));
        }
    }

    // The run's skb is on the loopback interface (ifindex 1).
    dp.bases()
        .expect("VMAC map")
        .insert(1, BASE, 0)
        .expect("register");
    for f in &reports {
        let (verdict, out) = dp.test_run(f).expect("BPF_PROG_TEST_RUN");
        assert_eq!(verdict, TC_ACT_REDIRECT, "{f:02x?}");
        assert_eq!(&out[6..12], &BASE.mac, "from the base's MAC");
        assert_eq!(
            (&out[..6], &out[12..]),
            (&f[..6], &f[12..]),
            "nothing else changes"
        );
    }
    let ping = echo6(VIP6);
    for f in [&na[..], &case("v3_ipv6_valid"), &case("v2_valid"), &ping] {
        let (verdict, out) = dp.test_run(f).expect("BPF_PROG_TEST_RUN");
        assert_eq!((verdict, out.as_slice()), (TC_ACT_UNSPEC, f), "{f:02x?}");
    }
    assert_eq!(dp.test_run(&rs).expect("run").0, TC_ACT_SHOT);
}
