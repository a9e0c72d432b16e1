//! Gratuitous ARP and unsolicited NA: the frames arrive on another host
//! byte for byte, and its neighbour table follows them.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use xvrrpd::net::gratuitous::{GratuitousSender, garp_frame, unsolicited_na_frame};
use xvrrpd_tests::{Host, Lab, wait_until};

const A_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const FAKE_MAC: &str = "02:00:00:00:00:99";

/// Frames from host a: ARP, or ICMPv6 neighbour advertisements.
fn from_a_arp_or_na(f: &[u8]) -> bool {
    f.len() >= 14
        && f[6..12] == A_MAC
        && (f[12..14] == [0x08, 0x06]
            || (f[12..14] == [0x86, 0xdd] && f.len() > 54 && f[20] == 58 && f[54] == 136))
}

fn neigh(host: &Host, addr: &str) -> Result<String> {
    let out = host.exec(&["ip", "neigh", "show", addr, "dev", "eth0"])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn wait_neigh(host: &Host, addr: &str, want: &[&str]) -> Result<()> {
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        neigh(host, addr).is_ok_and(|n| want.iter().all(|w| n.contains(w)))
    });
    ensure!(
        ok,
        "neighbour entry for {addr} on {} should contain {want:?}, is {:?}",
        host.ns,
        neigh(host, addr)?
    );
    Ok(())
}

#[test]
fn garp_and_na_arrive_byte_exact_and_update_neighbours() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let b = lab.add_host("b", &["192.0.2.12/24", "2001:db8::12/64"])?;
    let ifindex = a.ifindex()?;
    let vip4 = Ipv4Addr::new(192, 0, 2, 100);
    let vip4_new = Ipv4Addr::new(192, 0, 2, 101);
    let vip6: Ipv6Addr = "2001:db8::100".parse()?;
    for v in ["192.0.2.100/24", "192.0.2.101/24"] {
        a.exec(&["ip", "addr", "add", v, "dev", "eth0"])?;
    }
    a.exec(&[
        "ip",
        "addr",
        "add",
        "2001:db8::100/64",
        "dev",
        "eth0",
        "nodad",
    ])?;

    // b believes the VIPs live elsewhere (a dead master's MAC).
    b.exec(&[
        "ip",
        "neigh",
        "add",
        "192.0.2.100",
        "lladdr",
        FAKE_MAC,
        "dev",
        "eth0",
        "nud",
        "stale",
    ])?;
    b.exec(&[
        "ip",
        "-6",
        "neigh",
        "add",
        "2001:db8::100",
        "lladdr",
        FAKE_MAC,
        "dev",
        "eth0",
        "nud",
        "stale",
    ])?;
    // With arp_accept, a gratuitous ARP also creates entries.
    b.exec(&["sysctl", "-qw", "net.ipv4.conf.eth0.arp_accept=1"])?;

    let capture = b.capture(Duration::from_secs(5), 3, from_a_arp_or_na)?;
    let addrs = vec![IpAddr::V4(vip4), IpAddr::V4(vip4_new), IpAddr::V6(vip6)];
    let sent = a.block_on_in(move || async move {
        let s = GratuitousSender::new(ifindex)?;
        ensure!(s.mac()? == A_MAC, "sender read MAC {:?}", s.mac()?);
        Ok(s.send_for(&addrs).await?)
    })?;
    ensure!(sent == 3, "sent {sent} frames");
    let frames = capture.wait()?;
    ensure!(
        frames.len() == 3,
        "b caught {} of 3 frames: {frames:02x?}",
        frames.len()
    );
    ensure!(
        frames[0] == garp_frame(A_MAC, vip4),
        "ARP bytes: {:02x?}",
        frames[0]
    );
    ensure!(
        frames[1] == garp_frame(A_MAC, vip4_new),
        "ARP bytes: {:02x?}",
        frames[1]
    );
    // a does not forward IPv6: no Router flag.
    ensure!(
        frames[2] == unsolicited_na_frame(A_MAC, vip6, false),
        "NA bytes: {:02x?}",
        frames[2]
    );

    wait_neigh(&b, "192.0.2.100", &["02:00:00:00:00:01"])?;
    wait_neigh(&b, "192.0.2.101", &["02:00:00:00:00:01"])?;
    // The kernel checks the ICMPv6 checksum and hop limit before it
    // accepts an NA: the update proves both.
    wait_neigh(&b, "2001:db8::100", &["02:00:00:00:00:01"])?;
    Ok(())
}

#[test]
fn na_from_a_forwarding_interface_carries_the_router_flag() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let b = lab.add_host("b", &["192.0.2.12/24", "2001:db8::12/64"])?;
    let ifindex = a.ifindex()?;
    a.exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.forwarding=1"])?;
    b.exec(&[
        "ip",
        "-6",
        "neigh",
        "add",
        "2001:db8::1",
        "lladdr",
        FAKE_MAC,
        "dev",
        "eth0",
        "nud",
        "stale",
    ])?;
    let vip6: Ipv6Addr = "2001:db8::1".parse()?;
    let capture = b.capture(Duration::from_secs(5), 1, from_a_arp_or_na)?;
    a.block_on_in(move || async move {
        Ok(GratuitousSender::new(ifindex)?
            .send_for(&[IpAddr::V6(vip6)])
            .await?)
    })?;
    let frames = capture.wait()?;
    ensure!(frames.len() == 1, "no NA caught");
    ensure!(
        frames[0] == unsolicited_na_frame(A_MAC, vip6, true),
        "NA bytes: {:02x?}",
        frames[0]
    );
    wait_neigh(&b, "2001:db8::1", &["02:00:00:00:00:01", "router"])?;
    Ok(())
}

#[test]
fn spacing_is_kept_and_mac_changes_are_followed() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24"])?;
    let b = lab.add_host("b", &["192.0.2.12/24"])?;
    let ifindex = a.ifindex()?;
    let new_mac = [2, 0, 0, 0, 0, 0x42];
    let capture = b.capture(Duration::from_secs(5), 3, move |f| {
        f.len() >= 14 && f[6..12] == new_mac && f[12..14] == [0x08, 0x06]
    })?;
    let a2 = a.clone();
    let elapsed = a.block_on_in(move || async move {
        let s = GratuitousSender::new(ifindex)?;
        // The MAC changes after the sender exists (a bond failing over).
        a2.exec(&["ip", "link", "set", "eth0", "address", "02:00:00:00:00:42"])?;
        let vips: Vec<IpAddr> = (100..103)
            .map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)))
            .collect();
        let t = Instant::now();
        s.send_spaced(&vips, Duration::from_millis(50), Duration::ZERO)
            .await?;
        Ok(t.elapsed())
    })?;
    ensure!(
        elapsed >= Duration::from_millis(100),
        "3 ARPs 50 ms apart took {elapsed:?}"
    );
    let frames = capture.wait()?;
    ensure!(
        frames.len() == 3,
        "caught {} ARPs from the new MAC",
        frames.len()
    );
    Ok(())
}
