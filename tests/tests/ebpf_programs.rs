//! The eBPF programs on crafted frames through `BPF_PROG_TEST_RUN`: every
//! case of the shared table, on XDP and on TC, checking verdict, counters and
//! the delivered event against the Rust validator.

use std::collections::HashMap;

use xvrrpd::clock::monotonic_ns;
use xvrrpd::datapath::{
    ebpf::{EbpfDatapath, EventRing},
    spec::{self, Expect, SPEC_IFINDEX},
    validate::classify_frame,
};
use xvrrpd_common::{AdvertEvent, Counter, IfacePolicy};
use xvrrpd_tests::require_root;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Prog {
    Xdp,
    Tc,
}

fn loaded() -> (EbpfDatapath, EventRing) {
    require_root();
    let mut dp = EbpfDatapath::load().expect("load the eBPF datapath");
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
        (Prog::Tc, true) => TC_ACT_OK,
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
    let runs = 2000u32;
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
