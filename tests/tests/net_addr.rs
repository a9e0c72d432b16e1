//! VIPs through rtnetlink: every attribute, the marker, idempotence, stale
//! cleanup after a "kill -9", and the cost of adding 100 VIPs.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use xvrrpd::net::addr::{
    AddOutcome, FALLBACK_MARK_MIN, Marker, MarkerMode, RemoveOutcome, Scope, Vip, VipManager,
    XVRRPD_IFA_PROTO, ipv4_broadcast,
};
use xvrrpd_tests::{Host, Lab};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test literal is an address")
}

fn addr_show(host: &Host) -> Result<String> {
    let out = host.exec(&["ip", "-d", "addr", "show", "dev", &host.ifname])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `ip addr` block (address line and lifetime line) for `addr`.
fn addr_block(text: &str, addr: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let i = lines.iter().position(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|w| w.split('/').next() == Some(addr))
    })?;
    Some(format!("{}\n{}", lines[i], lines.get(i + 1).unwrap_or(&"")))
}

#[test]
fn vips_with_every_attribute_are_added_marked_and_removed() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let ifindex = a.ifindex()?;
    // DAD on, as on a real host: the IPv6 VIP must still be usable at once.
    a.exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=1"])?;

    let mut v4 = Vip::new(ifindex, ip("192.0.2.100"), 24);
    v4.broadcast = Some(ipv4_broadcast(Ipv4Addr::new(192, 0, 2, 100), 24));
    v4.label = Some("eth0:vip".into());
    v4.preferred_lft = Some(0);
    let mut v4link = Vip::host(ifindex, ip("198.51.100.7"));
    v4link.scope = Scope::Link;
    v4link.flags.noprefixroute = true;
    let mut v6 = Vip::new(ifindex, ip("2001:db8::100"), 64);
    v6.preferred_lft = Some(0);
    v6.flags.noprefixroute = true;
    let vips = vec![v4.clone(), v4link.clone(), v6.clone()];

    let (added, again, marked) = a.block_on_in({
        let vips = vips.clone();
        move || async move {
            let m = VipManager::with_marker_mode(MarkerMode::IfaProto)?;
            let added = m.add_vips(&vips).await;
            let again = m.add_vips(&vips).await;
            Ok((added, again, m.list_marked().await?))
        }
    })?;
    for r in &added {
        ensure!(matches!(r, Ok(AddOutcome::Added)), "first add: {r:?}");
    }
    for r in &again {
        ensure!(
            matches!(r, Ok(AddOutcome::AlreadyPresent)),
            "second add: {r:?}"
        );
    }

    let text = addr_show(&a)?;
    let b4 = addr_block(&text, "192.0.2.100").context(format!("192.0.2.100 missing:\n{text}"))?;
    for want in [
        "192.0.2.100/24",
        "brd 192.0.2.255",
        "scope global",
        "eth0:vip",
        // preferred_lft 0 with an infinite valid lifetime: the kernel shows
        // the address as deprecated and both lifetimes as forever.
        "deprecated",
        "valid_lft forever",
    ] {
        ensure!(b4.contains(want), "`{want}` not in:\n{b4}");
    }
    let bl = addr_block(&text, "198.51.100.7").context(format!("198.51.100.7 missing:\n{text}"))?;
    for want in ["198.51.100.7/32", "scope link", "noprefixroute"] {
        ensure!(bl.contains(want), "`{want}` not in:\n{bl}");
    }
    let b6 =
        addr_block(&text, "2001:db8::100").context(format!("2001:db8::100 missing:\n{text}"))?;
    for want in [
        "2001:db8::100/64",
        "nodad",
        "noprefixroute",
        "preferred_lft 0sec",
    ] {
        ensure!(b6.contains(want), "`{want}` not in:\n{b6}");
    }
    ensure!(!b6.contains("tentative"), "nodad VIP is tentative:\n{b6}");

    // The mark, as the kernel reports it.
    let mut got: Vec<_> = marked.iter().map(|m| m.key()).collect();
    got.sort();
    let mut want: Vec<_> = vips.iter().map(Vip::key).collect();
    want.sort();
    ensure!(got == want, "marked {got:?}, expected {want:?}");
    for m in &marked {
        ensure!(
            m.proto == Some(XVRRPD_IFA_PROTO),
            "{m:?} lacks IFA_PROTO 112"
        );
        ensure!(m.marker() == Some(Marker::IfaProto));
    }
    // The host's own addresses are not marked.
    ensure!(!marked.iter().any(|m| m.addr == ip("192.0.2.11")));

    let (removed, gone) = a.block_on_in({
        let vips = vips.clone();
        move || async move {
            let m = VipManager::new()?;
            Ok((m.remove_vips(&vips).await, m.remove_vips(&vips).await))
        }
    })?;
    for r in &removed {
        ensure!(
            matches!(r, Ok(RemoveOutcome::Removed)),
            "first remove: {r:?}"
        );
    }
    for r in &gone {
        ensure!(
            matches!(r, Ok(RemoveOutcome::NotPresent)),
            "second remove: {r:?}"
        );
    }
    let text = addr_show(&a)?;
    for gone in ["192.0.2.100", "198.51.100.7", "2001:db8::100"] {
        ensure!(
            addr_block(&text, gone).is_none(),
            "{gone} still there:\n{text}"
        );
    }
    ensure!(
        a.has_addr("192.0.2.11")?,
        "the host's own address went away"
    );
    Ok(())
}

#[test]
fn errors_name_the_address_and_the_cause() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24"])?;
    let (missing_link, invalid) = a.block_on_in(|| async {
        let m = VipManager::new()?;
        let missing_link = m.add_vip(&Vip::host(999_999, ip("192.0.2.200"))).await;
        let mut bad = Vip::host(1, ip("2001:db8::1"));
        bad.label = Some("lo:x".into());
        let invalid = m.add_vip(&bad).await;
        Ok((missing_link, invalid))
    })?;
    let e = missing_link
        .err()
        .context("adding on a missing link succeeded")?;
    let text = e.to_string();
    ensure!(
        text.contains("192.0.2.200") && text.contains("999999") && text.contains("No such device"),
        "unhelpful error: {text}"
    );
    let e = invalid.err().context("an IPv6 label was accepted")?;
    ensure!(e.to_string().contains("label"), "unhelpful error: {e}");
    Ok(())
}

#[test]
fn stale_cleanup_removes_only_marked_addresses() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let ifindex = a.ifindex()?;
    // Addresses someone else configured, one with the same prefix as a VIP.
    a.exec(&["ip", "addr", "add", "192.0.2.50/24", "dev", "eth0"])?;
    a.exec(&[
        "ip",
        "addr",
        "add",
        "2001:db8::50/64",
        "dev",
        "eth0",
        "nodad",
    ])?;

    // A first daemon adds VIPs and dies without removing them.
    let left_behind = vec![
        Vip::new(ifindex, ip("192.0.2.60"), 24),
        Vip::host(ifindex, ip("192.0.2.61")),
        Vip::new(ifindex, ip("2001:db8::60"), 64),
    ];
    a.block_on_in({
        let vips = left_behind.clone();
        move || async move {
            let m = VipManager::new()?;
            for r in m.add_vips(&vips).await {
                r?;
            }
            Ok(())
        }
    })?;

    // The next start keeps 192.0.2.61 (still configured) and removes the rest.
    let keep = left_behind[1].key();
    let report = a.block_on_in(move || async move {
        let m = VipManager::new()?;
        Ok(m.remove_stale_marked(&[keep]).await?)
    })?;
    ensure!(report.failed.is_empty(), "failures: {:?}", report.failed);
    let mut removed: Vec<_> = report.removed.iter().map(|r| r.addr).collect();
    removed.sort();
    ensure!(
        removed == vec![ip("192.0.2.60"), ip("2001:db8::60")],
        "removed {removed:?}"
    );
    ensure!(report.kept.len() == 1 && report.kept[0].addr == ip("192.0.2.61"));
    for (addr, present) in [
        ("192.0.2.11", true),
        ("2001:db8::11", true),
        ("192.0.2.50", true),
        ("2001:db8::50", true),
        ("192.0.2.61", true),
        ("192.0.2.60", false),
        ("2001:db8::60", false),
    ] {
        ensure!(
            a.has_addr(addr)? == present,
            "{addr} present should be {present}"
        );
    }
    Ok(())
}

#[test]
fn lifetime_fallback_marks_and_cleans_up() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let ifindex = a.ifindex()?;
    let mut v4 = Vip::host(ifindex, ip("192.0.2.70"));
    v4.preferred_lft = Some(0);
    let vips = vec![v4, Vip::new(ifindex, ip("2001:db8::70"), 64)];
    let marked = a.block_on_in({
        let vips = vips.clone();
        move || async move {
            let m = VipManager::with_marker_mode(MarkerMode::Lifetime)?;
            for r in m.add_vips(&vips).await {
                r?;
            }
            Ok(m.list_marked().await?)
        }
    })?;
    ensure!(marked.len() == 2, "marked: {marked:?}");
    for m in &marked {
        ensure!(m.proto.is_none(), "fallback mode wrote IFA_PROTO: {m:?}");
        ensure!(m.marker() == Some(Marker::Lifetime), "{m:?}");
        ensure!(m.valid_lft.is_some_and(|v| v >= FALLBACK_MARK_MIN));
    }
    let text = addr_show(&a)?;
    let b = addr_block(&text, "2001:db8::70").context(format!("missing:\n{text}"))?;
    ensure!(
        b.contains("valid_lft 42949672"),
        "lifetime mark not visible:\n{b}"
    );
    let b = addr_block(&text, "192.0.2.70").context(format!("missing:\n{text}"))?;
    ensure!(b.contains("preferred_lft 0sec"), "preferred_lft lost:\n{b}");

    let report =
        a.block_on_in(|| async { Ok(VipManager::new()?.remove_stale_marked(&[]).await?) })?;
    ensure!(
        report.removed.len() == 2 && report.failed.is_empty(),
        "{report:?}"
    );
    ensure!(!a.has_addr("192.0.2.70")? && !a.has_addr("2001:db8::70")?);
    ensure!(a.has_addr("192.0.2.11")?, "own address removed");
    Ok(())
}

#[test]
fn hundred_vips_are_added_in_one_pipelined_batch() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("a", &["192.0.2.11/24", "2001:db8::11/64"])?;
    let ifindex = a.ifindex()?;
    let v4: Vec<Vip> = (1..=100)
        .map(|i| Vip::host(ifindex, IpAddr::V4(Ipv4Addr::new(198, 51, 100, i))))
        .collect();
    let v6: Vec<Vip> = (1..=100u16)
        .map(|i| Vip::host(ifindex, ip(&format!("2001:db8:1::{i:x}"))))
        .collect();

    let timings = a.block_on_in(move || async move {
        let m = VipManager::new()?;
        let mut timings = Vec::new();
        for (family, vips) in [("IPv4", &v4), ("IPv6", &v6)] {
            let t = Instant::now();
            let added = m.add_vips(vips).await;
            let batch_add = t.elapsed();
            for r in &added {
                if !matches!(r, Ok(AddOutcome::Added)) {
                    bail!("batch add: {r:?}");
                }
            }
            let count = m.list_marked().await?.len();
            if count != 100 {
                bail!("{count} marked {family} VIPs after adding 100");
            }
            let t = Instant::now();
            for r in m.remove_vips(vips).await {
                r?;
            }
            let batch_del = t.elapsed();
            // For comparison: one request and one await per VIP.
            let t = Instant::now();
            for v in vips.iter() {
                m.add_vip(v).await?;
            }
            let seq_add = t.elapsed();
            for r in m.remove_vips(vips).await {
                r?;
            }
            timings.push((family, batch_add, batch_del, seq_add));
        }
        Ok(timings)
    })?;
    for (family, batch_add, batch_del, seq_add) in &timings {
        eprintln!(
            "100 {family} VIPs: pipelined add {batch_add:?}, pipelined remove {batch_del:?}, one-by-one add {seq_add:?}"
        );
        ensure!(
            *batch_add < Duration::from_secs(2),
            "adding 100 {family} VIPs took {batch_add:?}"
        );
    }
    ensure!(!a.has_addr("198.51.100.1")?, "VIPs left after removal");
    Ok(())
}
