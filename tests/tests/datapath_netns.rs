//! The datapath on a real link: attached to a veth in its own namespace,
//! adverts and junk injected from another host on the bridge. Every attach
//! mode (XDP native, XDP generic, TC) and the raw-socket fallback.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use xvrrpd::datapath::{
    AdvertEvent, Datapath, DatapathKind, DatapathOptions, VridSpec,
    ebpf::{AttachMode, AttachPreference},
    spec::{self, Expect},
};
use xvrrpd_common::{COUNTER_COUNT, Counter, FAMILY_IPV4};
use xvrrpd_tests::{Lab, frame_injector};

struct Outcome {
    kind: DatapathKind,
    attachments: Vec<(String, AttachMode)>,
    events: Vec<AdvertEvent>,
    before: [u64; COUNTER_COUNT as usize],
    after: [u64; COUNTER_COUNT as usize],
    ifindex: u32,
}

/// Which cases travel a real link as built: tagged frames reach the stack of
/// an untagged interface only through XDP/TC, so the raw-socket path is
/// checked on the untagged ones.
fn on_wire(case: &spec::Case, raw: bool) -> bool {
    let unicast = case.name.contains("unicast");
    let tagged = case.name.contains("vlan") || case.name.contains("qinq");
    // Frames the IP layer discards before any socket sees them.
    let ip_layer_drops = case.name.contains("fragment") || case.name.contains("beyond_frame");
    !unicast && !(raw && (tagged || ip_layer_drops))
}

fn run_case_set(opts: DatapathOptions) -> Result<Outcome> {
    let mut lab = Lab::new()?;
    let tx = lab.add_host("tx", &["192.0.2.11/24"])?;
    let rx = lab.add_host("rx", &["192.0.2.12/24"])?;
    let ifindex = rx.ifindex()?;
    let raw = opts.no_ebpf;
    let specs: Vec<VridSpec> = spec::vrids_on(ifindex)
        .into_iter()
        .map(|(key, cfg)| VridSpec {
            ifname: "eth0".into(),
            key,
            cfg,
            vmac_ifindex: None,
            group: if key.family == FAMILY_IPV4 {
                IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18))
            } else {
                IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12))
            },
        })
        .collect();
    let cases: Vec<spec::Case> = spec::cases()
        .into_iter()
        .filter(|c| on_wire(c, raw))
        .collect();
    let accepted = cases
        .iter()
        .filter(|c| c.expect == Expect::Counted(Counter::Accepted))
        .count();

    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = rx.spawn_in(move || -> Result<Outcome> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let mut dp = Datapath::open(&specs, opts).context("open the datapath")?;
            let before = dp.counters();
            let _ = ready_tx.send(());
            let mut events = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while events.len() < accepted {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let _ = tokio::time::timeout(left, dp.recv_events(&mut events)).await;
            }
            // Junk sent after the last valid advert still has to be counted.
            tokio::time::sleep(Duration::from_millis(200)).await;
            dp.drain_events(&mut events)?;
            Ok(Outcome {
                kind: dp.kind(),
                attachments: dp.attachments(),
                events,
                before,
                after: dp.counters(),
                ifindex,
            })
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the receiver did not come up")?;
    let inject = frame_injector(&tx, "eth0")?;
    for case in &cases {
        inject.send(&case.frame)?;
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
    check_against_spec(&out, &cases, raw);
    Ok(out)
}

fn check_against_spec(out: &Outcome, cases: &[spec::Case], raw: bool) {
    let want: Vec<&spec::Case> = cases
        .iter()
        .filter(|c| c.expect == Expect::Counted(Counter::Accepted))
        .collect();
    assert_eq!(
        out.events.len(),
        want.len(),
        "{:?}: delivered events vs accepted cases",
        out.kind
    );
    for (ev, case) in out.events.iter().zip(&want) {
        let advert = case.advert.as_ref().expect("accepted case has an advert");
        if let Err(e) = spec::check_event(ev, advert, out.ifindex) {
            panic!("{:?} {}: {e}", out.kind, case.name);
        }
    }
    let delta = |c: Counter| out.after[c as usize] - out.before[c as usize];
    assert_eq!(
        delta(Counter::Accepted),
        want.len() as u64,
        "accepted counter"
    );
    let mut expected: HashMap<u32, u64> = HashMap::new();
    for c in cases {
        if let Expect::Counted(k) = c.expect
            && k != Counter::Accepted
        {
            *expected.entry(k as u32).or_default() += 1;
        }
    }
    for c in Counter::ALL {
        if matches!(
            c,
            Counter::Accepted | Counter::Passed | Counter::RingbufFull
        ) {
            continue;
        }
        let want = expected.get(&(c as u32)).copied().unwrap_or(0);
        if raw {
            // The stack may drop some junk before the socket: never more than expected.
            assert!(delta(c) <= want, "raw {}: {} > {want}", c.name(), delta(c));
        } else {
            assert_eq!(delta(c), want, "eBPF counter {}", c.name());
        }
    }
    if raw {
        for c in [
            Counter::BadChecksum,
            Counter::BadTtl,
            Counter::UnknownVrid,
            Counter::BadAuth,
        ] {
            assert!(delta(c) > 0, "raw socket path did not count {}", c.name());
        }
    }
}

fn attach_only(mode: AttachMode) {
    let out = run_case_set(DatapathOptions {
        attach: AttachPreference::Only(mode),
        ..DatapathOptions::default()
    })
    .expect("lab run");
    assert_eq!(out.kind, DatapathKind::Ebpf);
    assert_eq!(out.attachments, vec![("eth0".to_string(), mode)]);
}

#[test]
fn xdp_native_on_veth_delivers_adverts_and_counts_junk() {
    attach_only(AttachMode::XdpNative);
}

#[test]
fn xdp_generic_delivers_adverts_and_counts_junk() {
    attach_only(AttachMode::XdpGeneric);
}

#[test]
fn tc_ingress_delivers_adverts_and_counts_junk() {
    attach_only(AttachMode::Tc);
}

/// `--attach auto` takes a tcx link where the kernel has tcx, and generic
/// XDP on a veth before (see `ebpf::auto_order`: the driver is read from
/// the interface).
#[test]
fn auto_attach_takes_tcx_or_generic_xdp_on_veth() {
    let out = run_case_set(DatapathOptions::default()).expect("lab run");
    let want = if xvrrpd::datapath::ebpf::tcx_available() {
        AttachMode::Tc
    } else {
        AttachMode::XdpGeneric
    };
    assert_eq!(out.attachments, vec![("eth0".to_string(), want)]);
}

#[test]
fn raw_socket_fallback_delivers_the_same_events() {
    let out = run_case_set(DatapathOptions {
        no_ebpf: true,
        ..DatapathOptions::default()
    })
    .expect("lab run");
    assert_eq!(out.kind, DatapathKind::RawSocket);
    assert!(out.attachments.is_empty());
}
