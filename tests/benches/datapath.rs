//! `cargo xtask bench datapath`: the eBPF program's cost per packet through
//! `BPF_PROG_TEST_RUN`, and kernel-timestamp → userspace latency over 10,000
//! adverts from a second namespace for both ring-buffer readers.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use xvrrpd::{
    clock::monotonic_ns,
    datapath::{
        Datapath, DatapathOptions, VridSpec,
        ebpf::{AttachPreference, EbpfDatapath},
        spec,
    },
    packet::{Advert, Auth, V3Ipv4Checksum, Version, encode, frame::VrrpFrame},
};
use xvrrpd_common::{FAMILY_IPV4, VRID_FLAG_CHECK_TTL, VridConfig, VridKey};
use xvrrpd_tests::{Lab, frame_injector, require_root};

const ADVERTS: usize = 10_000;

fn frame_of(name: &str) -> Result<Vec<u8>> {
    spec::cases()
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.frame)
        .with_context(|| format!("no spec case {name}"))
}

/// Median over rounds of the kernel's own per-run time.
fn per_packet(
    dp: &mut EbpfDatapath,
    prog: Option<&'static str>,
    frame: &[u8],
    repeat: u32,
    rounds: usize,
    mut between: impl FnMut(),
) -> Result<f64> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (_, d) = match prog {
            None => dp.test_run_xdp(frame, repeat)?,
            Some(name) => dp.test_run_reference(name, frame, repeat)?,
        };
        samples.push(d.as_nanos() as f64);
        between();
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

fn program_cost() -> Result<()> {
    let mut dp = EbpfDatapath::load(true)?;
    for (k, v) in spec::vrids() {
        dp.set_vrid(k, v)?;
    }
    let mut ring = dp.take_events()?;
    let mut sink = Vec::new();
    let tcp = frame_of("ipv4_tcp")?;
    // References measured the same way: the test-run loop itself costs
    // nanoseconds per packet, so the interesting figure is the difference.
    let mut refs = Vec::new();
    for (kind, prog) in [
        ("reference-xdp-pass", "xvrrpd_bench_pass"),
        ("reference-count-and-pass", "xvrrpd_bench_count"),
    ] {
        let ns = per_packet(&mut dp, Some(prog), &tcp, 2_000_000, 7, || {})?;
        println!("datapath: kind={kind} ns_per_pkt={ns:.1}");
        refs.push(ns);
    }
    for (kind, case, repeat, rounds) in [
        ("ipv4-tcp", "ipv4_tcp", 2_000_000, 7),
        ("ipv6-udp", "ipv6_udp", 2_000_000, 7),
        ("vrrp-bad-checksum", "bad_checksum_v3_ipv4", 500_000, 7),
        // Below the ring's capacity so every run takes the delivery path.
        ("vrrp-v3-valid", "v3_ipv4_pseudo_header_checksum", 700, 300),
    ] {
        let frame = frame_of(case)?;
        let ns = per_packet(&mut dp, None, &frame, repeat, rounds, || {
            sink.clear();
            ring.drain(&mut sink);
        })?;
        println!("datapath: kind={kind} ns_per_pkt={ns:.1}");
        println!(
            "datapath:   {kind}: {:+.1} ns over the bare XDP_PASS program; ratio to count-and-pass {:.2}",
            ns - refs[0],
            ns / refs[1]
        );
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn report(reader: &str, mut lat: Vec<u64>) {
    lat.sort_unstable();
    println!(
        "datapath: latency reader={reader} adverts={} p50_us={:.1} p99_us={:.1} max_us={:.1}",
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
}

fn advert_frame() -> Result<Vec<u8>> {
    let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
    let dst = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
    let advert = Advert {
        version: Version::V3,
        vrid: 10,
        priority: 100,
        interval_cs: 1,
        addrs: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))],
        auth: Auth::None,
    };
    let msg = encode(&advert, src, dst, V3Ipv4Checksum::PseudoHeader)?;
    Ok(VrrpFrame::new(src, dst, 10).build(&msg))
}

fn vrid_cfg() -> VridConfig {
    VridConfig {
        flags: VRID_FLAG_CHECK_TTL,
        auth_type: 0,
        v2_interval_s: 0,
        _pad: [0; 5],
        auth_data: [0; 8],
    }
}

/// Sends `ADVERTS` adverts 200 µs apart (2 s, bounded) from `tx`.
fn send_adverts(tx: &xvrrpd_tests::Host) -> Result<()> {
    let inject = frame_injector(tx, "eth0")?;
    let frame = advert_frame()?;
    let start = Instant::now();
    for i in 0..ADVERTS {
        let due = start + Duration::from_micros(200 * i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        inject.send(&frame)?;
    }
    Ok(())
}

/// The agent's own path: `Datapath` on tokio's `AsyncFd`.
fn latency_asyncfd() -> Result<Vec<u64>> {
    let mut lab = Lab::new()?;
    let tx = lab.add_host("tx", &["192.0.2.11/24"])?;
    let rx = lab.add_host("rx", &["192.0.2.12/24"])?;
    let ifindex = rx.ifindex()?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = rx.spawn_in(move || -> Result<Vec<u64>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let spec = VridSpec {
                ifname: "eth0".into(),
                key: VridKey::new(ifindex, FAMILY_IPV4, 10),
                cfg: vrid_cfg(),
                group: IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
                vmac_ifindex: None,
            };
            let opts = DatapathOptions::default();
            let mut dp = Datapath::open(&[spec], opts)?;
            let _ = ready_tx.send(());
            let mut lat = Vec::with_capacity(ADVERTS);
            let mut events = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(15);
            while lat.len() < ADVERTS && Instant::now() < deadline {
                events.clear();
                if tokio::time::timeout(Duration::from_secs(1), dp.recv_events(&mut events))
                    .await
                    .is_err()
                {
                    continue;
                }
                let now = monotonic_ns();
                lat.extend(events.iter().map(|e| now.saturating_sub(e.ts_ns)));
            }
            Ok(lat)
        })
    });
    ready_rx.recv_timeout(Duration::from_secs(10))?;
    send_adverts(&tx)?;
    receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))?
}

/// A dedicated thread blocking in poll(2) on the ring buffer.
fn latency_thread() -> Result<Vec<u64>> {
    let mut lab = Lab::new()?;
    let tx = lab.add_host("tx", &["192.0.2.11/24"])?;
    let rx = lab.add_host("rx", &["192.0.2.12/24"])?;
    let ifindex = rx.ifindex()?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = rx.spawn_in(move || -> Result<Vec<u64>> {
        let mut dp = EbpfDatapath::load(true)?;
        dp.attach("eth0", AttachPreference::Auto)?;
        dp.set_vrid(VridKey::new(ifindex, FAMILY_IPV4, 10), vrid_cfg())?;
        let mut ring = dp.take_events()?;
        let _ = ready_tx.send(());
        let mut lat = Vec::with_capacity(ADVERTS);
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while lat.len() < ADVERTS && Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd: ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 1000) };
            events.clear();
            ring.drain(&mut events);
            let now = monotonic_ns();
            lat.extend(events.iter().map(|e| now.saturating_sub(e.ts_ns)));
        }
        Ok(lat)
    });
    ready_rx.recv_timeout(Duration::from_secs(10))?;
    send_adverts(&tx)?;
    receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))?
}

fn main() -> Result<()> {
    require_root();
    program_cost()?;
    report("asyncfd", latency_asyncfd()?);
    report("thread", latency_thread()?);
    Ok(())
}
