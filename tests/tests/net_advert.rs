//! VRRP adverts through `datapath::send`: multicast and unicast, IPv4 and
//! IPv6, arrive on other hosts with TTL / hop limit 255 and bytes that
//! decode; the sending socket joins the group and queues nothing.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use xvrrpd::{
    datapath::send::{AdvertDest, AdvertSender, AdvertTxError, VRRP_GROUP_V4, VRRP_GROUP_V6},
    packet::{Advert, Auth, V3Ipv4Checksum, Version, decode, encode},
};
use xvrrpd_common::ChecksumForm;
use xvrrpd_tests::Lab;

const A_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test literal is an address")
}

fn advert(version: Version, vrid: u8, addrs: &[&str]) -> Advert {
    Advert {
        version,
        vrid,
        priority: 150,
        interval_cs: 100,
        addrs: addrs.iter().map(|a| ip(a)).collect(),
        auth: if version == Version::V2 {
            Auth::pass("secret")
        } else {
            Auth::None
        },
    }
}

/// A received VRRP packet, taken apart.
#[derive(Debug)]
struct Seen {
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    tos: u8,
    df: bool,
    msg: Vec<u8>,
}

fn is_vrrp(f: &[u8]) -> bool {
    f.len() > 34
        && ((f[12..14] == [0x08, 0x00] && f[23] == 112)
            || (f[12..14] == [0x86, 0xdd] && f.len() > 54 && f[20] == 112))
}

fn parse(f: &[u8]) -> Result<Seen> {
    let mut dst_mac = [0u8; 6];
    dst_mac.copy_from_slice(&f[0..6]);
    let l3 = &f[14..];
    if f[12..14] == [0x08, 0x00] {
        let ihl = usize::from(l3[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([l3[2], l3[3]]));
        let o = |i: usize| Ipv4Addr::new(l3[i], l3[i + 1], l3[i + 2], l3[i + 3]);
        Ok(Seen {
            dst_mac,
            src: IpAddr::V4(o(12)),
            dst: IpAddr::V4(o(16)),
            ttl: l3[8],
            tos: l3[1],
            df: l3[6] & 0x40 != 0,
            msg: l3.get(ihl..total).context("short IPv4 packet")?.to_vec(),
        })
    } else {
        let plen = usize::from(u16::from_be_bytes([l3[4], l3[5]]));
        let a = |i: usize| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&l3[i..i + 16]);
            Ipv6Addr::from(o)
        };
        Ok(Seen {
            dst_mac,
            src: IpAddr::V6(a(8)),
            dst: IpAddr::V6(a(24)),
            ttl: l3[7],
            tos: ((u16::from_be_bytes([l3[0], l3[1]]) >> 4) & 0xff) as u8,
            df: false,
            msg: l3.get(40..40 + plen).context("short IPv6 packet")?.to_vec(),
        })
    }
}

/// Checks a caught packet and decodes its advert.
fn check(frame: &[u8], src: IpAddr, dst: IpAddr, want: &Advert) -> Result<ChecksumForm> {
    let s = parse(frame)?;
    ensure!(
        s.src == src && s.dst == dst,
        "{} -> {}, expected {src} -> {dst}",
        s.src,
        s.dst
    );
    ensure!(s.ttl == 255, "TTL / hop limit {}", s.ttl);
    ensure!(s.tos == 0xc0, "TOS / traffic class {:#x}", s.tos);
    ensure!(!s.df, "DF set (keepalived sends without)");
    if let Some(m) = xvrrpd::packet::frame::multicast_mac(dst) {
        ensure!(s.dst_mac == m, "destination MAC {:02x?}", s.dst_mac);
    }
    let (got, form) =
        decode(&s.msg, s.src, s.dst).map_err(|e| anyhow::anyhow!("{e}: {:02x?}", s.msg))?;
    ensure!(&got == want, "decoded {got:?}, sent {want:?}");
    Ok(form)
}

#[test]
fn multicast_adverts_arrive_with_ttl_255_and_decode() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let b = lab.add_host("b", &["192.0.2.12/24", "2001:db8::12/64"])?;
    let ifindex = a.ifindex()?;
    let v2 = advert(Version::V2, 7, &["192.0.2.100", "192.0.2.101"]);
    let v3 = advert(Version::V3, 8, &["192.0.2.102"]);
    let v6 = advert(Version::V3, 9, &["fe80::9", "2001:db8::109"]);
    let capture = b.capture(Duration::from_secs(5), 3, is_vrrp)?;
    a.block_on_in({
        let (v2, v3, v6) = (v2.clone(), v3.clone(), v6.clone());
        move || async move {
            let s4 = AdvertSender::open(ifindex, ip("192.0.2.11"), AdvertDest::vrrp_group(false))?;
            let s6 = AdvertSender::open(ifindex, IpAddr::V6(A_LL), AdvertDest::vrrp_group(true))?;
            for (s, adv) in [(&s4, &v2), (&s4, &v3), (&s6, &v6)] {
                let msg = encode(
                    adv,
                    s.source(),
                    s.encode_destination(),
                    V3Ipv4Checksum::PseudoHeader,
                )?;
                let n = s.send(&msg)?;
                ensure!(n == 1, "sent to {n} destinations");
            }
            Ok(())
        }
    })?;
    let frames = capture.wait()?;
    ensure!(frames.len() == 3, "caught {} of 3 adverts", frames.len());
    let g4 = IpAddr::V4(VRRP_GROUP_V4);
    ensure!(check(&frames[0], ip("192.0.2.11"), g4, &v2)? == ChecksumForm::V2Message);
    ensure!(check(&frames[1], ip("192.0.2.11"), g4, &v3)? == ChecksumForm::V3PseudoHeader);
    ensure!(
        check(&frames[2], IpAddr::V6(A_LL), IpAddr::V6(VRRP_GROUP_V6), &v6)?
            == ChecksumForm::V3PseudoHeader
    );
    Ok(())
}

#[test]
fn unicast_adverts_reach_every_peer_with_its_own_checksum() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let b = lab.add_host("b", &["192.0.2.12/24", "2001:db8::12/64"])?;
    let c = lab.add_host("c", &["192.0.2.13/24", "2001:db8::13/64"])?;
    let ifindex = a.ifindex()?;
    let v3 = advert(Version::V3, 10, &["192.0.2.110"]);
    let plain = advert(Version::V3, 11, &["192.0.2.111"]);
    let v6 = advert(Version::V3, 12, &["fe80::12"]);
    // Unicast frames go to each peer's MAC: b and c each catch their own.
    let cap_b = b.capture(Duration::from_secs(5), 3, is_vrrp)?;
    let cap_c = c.capture(Duration::from_secs(5), 3, is_vrrp)?;
    a.block_on_in({
        let (v3, plain, v6) = (v3.clone(), plain.clone(), v6.clone());
        move || async move {
            let s4 = AdvertSender::open(
                ifindex,
                ip("192.0.2.11"),
                AdvertDest::Unicast(vec![ip("192.0.2.12"), ip("192.0.2.13")]),
            )?;
            let s6 = AdvertSender::open(
                ifindex,
                ip("2001:db8::11"),
                AdvertDest::Unicast(vec![ip("2001:db8::12"), ip("2001:db8::13")]),
            )?;
            let m = encode(
                &v3,
                s4.source(),
                s4.encode_destination(),
                V3Ipv4Checksum::PseudoHeader,
            )?;
            ensure!(s4.send(&m)? == 2);
            let m = encode(
                &plain,
                s4.source(),
                s4.encode_destination(),
                V3Ipv4Checksum::Plain,
            )?;
            ensure!(s4.send(&m)? == 2);
            let m = encode(
                &v6,
                s6.source(),
                s6.encode_destination(),
                V3Ipv4Checksum::PseudoHeader,
            )?;
            ensure!(s6.send(&m)? == 2);
            Ok(())
        }
    })?;
    for (peer, cap, v6peer) in [
        ("192.0.2.12", cap_b, "2001:db8::12"),
        ("192.0.2.13", cap_c, "2001:db8::13"),
    ] {
        let frames = cap.wait()?;
        ensure!(
            frames.len() == 3,
            "{peer} caught {} of 3 adverts",
            frames.len()
        );
        ensure!(
            check(&frames[0], ip("192.0.2.11"), ip(peer), &v3)? == ChecksumForm::V3PseudoHeader
        );
        ensure!(check(&frames[1], ip("192.0.2.11"), ip(peer), &plain)? == ChecksumForm::V3Plain);
        ensure!(
            check(&frames[2], ip("2001:db8::11"), ip(v6peer), &v6)? == ChecksumForm::V3PseudoHeader
        );
    }
    Ok(())
}

#[test]
fn misencoded_adverts_and_missing_sources_are_refused() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let ifindex = a.ifindex()?;
    let (bad_sum, not_local) = a.block_on_in(move || async move {
        let s = AdvertSender::open(ifindex, ip("192.0.2.11"), AdvertDest::vrrp_group(false))?;
        // Encoded for another source: the pseudo-header does not match.
        let adv = advert(Version::V3, 1, &["192.0.2.100"]);
        let msg = encode(
            &adv,
            ip("192.0.2.99"),
            s.encode_destination(),
            V3Ipv4Checksum::PseudoHeader,
        )?;
        let bad_sum = s.send(&msg).err();
        let not_local =
            AdvertSender::open(ifindex, ip("192.0.2.99"), AdvertDest::vrrp_group(false)).err();
        Ok((bad_sum, not_local))
    })?;
    ensure!(
        matches!(bad_sum, Some(AdvertTxError::BadChecksum { .. })),
        "{bad_sum:?}"
    );
    match not_local {
        Some(e @ AdvertTxError::SourceNotReady { .. }) => {
            ensure!(e.to_string().contains("192.0.2.99"), "{e}");
        }
        other => bail!("a source that is not local was accepted: {other:?}"),
    }
    Ok(())
}

#[test]
fn the_sender_joins_the_groups_and_queues_nothing() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let b = lab.add_host("b", &["192.0.2.12/24", "2001:db8::12/64"])?;
    let a_ifindex = a.ifindex()?;
    let b_ifindex = b.ifindex()?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // a holds its senders open while b sends 5 adverts to the group and 5
    // to a itself (a raw socket bound to an address only sees packets to it).
    let holder = a.spawn_in(move || -> Result<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _guard = rt.enter();
        let _s4 = AdvertSender::open(a_ifindex, ip("192.0.2.11"), AdvertDest::vrrp_group(false))?;
        let _s6 = AdvertSender::open(a_ifindex, IpAddr::V6(A_LL), AdvertDest::vrrp_group(true))?;
        let _u4 = AdvertSender::open(
            a_ifindex,
            ip("192.0.2.11"),
            AdvertDest::Unicast(vec![ip("192.0.2.12")]),
        )?;
        // A control socket without the filter: proves the adverts arrived.
        // SAFETY: plain socket(2) call; the descriptor is owned right away.
        let control = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, 112) };
        ensure!(
            control >= 0,
            "control socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `control` is a fresh descriptor nothing else owns.
        let _control =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(control) };
        let _ = ready_tx.send(());
        done_rx
            .recv_timeout(Duration::from_secs(20))
            .context("the test did not finish sending")?;
        // This thread's namespace, not the process's.
        Ok(std::fs::read_to_string("/proc/thread-self/net/raw")?)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("a's senders did not open")?;
    let maddr = String::from_utf8_lossy(&a.exec(&["ip", "maddr", "show", "dev", "eth0"])?.stdout)
        .into_owned();
    let sent = b.block_on_in(move || async move {
        let s = AdvertSender::open(b_ifindex, ip("192.0.2.12"), AdvertDest::vrrp_group(false))?;
        let msg = encode(
            &advert(Version::V3, 5, &["192.0.2.105"]),
            s.source(),
            s.encode_destination(),
            V3Ipv4Checksum::PseudoHeader,
        )?;
        let u = AdvertSender::open(
            b_ifindex,
            ip("192.0.2.12"),
            AdvertDest::Unicast(vec![ip("192.0.2.11")]),
        )?;
        let umsg = encode(
            &advert(Version::V3, 5, &["192.0.2.105"]),
            u.source(),
            u.encode_destination(),
            V3Ipv4Checksum::PseudoHeader,
        )?;
        let mut n = 0;
        for _ in 0..5 {
            n += s.send(&msg)?;
            n += u.send(&umsg)?;
        }
        // Let the frames cross the bridge before a looks at its socket.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(n)
    });
    let _ = done_tx.send(());
    let raw = holder
        .join()
        .map_err(|_| anyhow::anyhow!("holder thread panicked"))??;
    ensure!(sent? == 10);
    ensure!(
        maddr.contains("224.0.0.18"),
        "224.0.0.18 not joined:\n{maddr}"
    );
    ensure!(maddr.contains("ff02::12"), "ff02::12 not joined:\n{maddr}");
    // /proc/net/raw: "sl local rem st tx_queue:rx_queue ..."; the local
    // port is the protocol, 0x70 = 112.
    let lines: Vec<&str> = raw
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|x| x.ends_with(":0070"))
        })
        .collect();
    ensure!(
        lines.len() == 3,
        "expected a's 2 IPv4 VRRP sockets and the control in:\n{raw}"
    );
    for line in &lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let rx_queue = f
            .get(4)
            .and_then(|q| q.split(':').nth(1))
            .context("tx:rx column")?;
        let rx_queue = u64::from_str_radix(rx_queue, 16)?;
        if f[1] == "00000000:0070" {
            ensure!(
                rx_queue > 0,
                "the control socket got nothing: adverts did not arrive: {line}"
            );
        } else {
            ensure!(rx_queue == 0, "a sender queued input: {line}");
        }
    }
    Ok(())
}

/// Instances with the same interface, source and peers share one socket,
/// and their adverts of one wake-up leave in one `sendmmsg(2)`: every peer
/// gets each advert once, in order, with its own checksum; a misencoded one
/// among them is refused alone.
#[test]
fn adverts_sharing_a_socket_leave_together_each_once() -> Result<()> {
    use xvrrpd::datapath::send::SenderPool;
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24"])?;
    let b = lab.add_host("b", &["192.0.2.12/24"])?;
    let c = lab.add_host("c", &["192.0.2.13/24"])?;
    let ifindex = a.ifindex()?;
    let adverts: Vec<Advert> = (1..=5)
        .map(|vrid| advert(Version::V3, vrid, &[&format!("192.0.2.{}", 100 + vrid)]))
        .collect();
    let cap_b = b.capture(Duration::from_secs(5), 5, is_vrrp)?;
    let cap_c = c.capture(Duration::from_secs(5), 5, is_vrrp)?;
    a.block_on_in({
        let adverts = adverts.clone();
        move || async move {
            let pool = SenderPool::default();
            let peers = AdvertDest::Unicast(vec![ip("192.0.2.12"), ip("192.0.2.13")]);
            let s1 = pool.get(ifindex, ip("192.0.2.11"), peers.clone(), 255)?;
            let s2 = pool.get(ifindex, ip("192.0.2.11"), peers, 255)?;
            ensure!(std::rc::Rc::ptr_eq(&s1, &s2), "the socket is not shared");
            let mut msgs = Vec::new();
            for adv in &adverts {
                msgs.push(encode(
                    adv,
                    s1.source(),
                    s1.encode_destination(),
                    V3Ipv4Checksum::PseudoHeader,
                )?);
            }
            let mut bad = msgs[0].clone();
            bad[6] ^= 0xff;
            let mut refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            refs.insert(2, &bad);
            let results = s1.send_many(&refs);
            ensure!(results.len() == 6, "{} results", results.len());
            for (i, r) in results.iter().enumerate() {
                match (i, r) {
                    (2, Err(AdvertTxError::BadChecksum { .. })) => {}
                    (2, other) => bail!("the misencoded advert: {other:?}"),
                    (_, Ok(2)) => {}
                    (_, other) => bail!("advert {i}: {other:?}"),
                }
            }
            Ok(())
        }
    })?;
    for (peer, cap) in [("192.0.2.12", cap_b), ("192.0.2.13", cap_c)] {
        let frames = cap.wait()?;
        ensure!(
            frames.len() == 5,
            "{peer} caught {} of 5 adverts",
            frames.len()
        );
        for (f, adv) in frames.iter().zip(&adverts) {
            ensure!(check(f, ip("192.0.2.11"), ip(peer), adv)? == ChecksumForm::V3PseudoHeader);
        }
    }
    Ok(())
}
