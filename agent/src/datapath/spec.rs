//! One table of crafted frames and the verdict each must get. The Rust
//! validator runs it in plain unit tests; the eBPF programs run it through
//! `BPF_PROG_TEST_RUN` in the privileged suite. Both must agree with it.

use std::{collections::HashMap, net::IpAddr};

use xvrrpd_common::{
    Counter, FAMILY_IPV4, FAMILY_IPV6, IPPROTO_VRRP, VRID_FLAG_CHECK_TTL, VRID_FLAG_OLD_CHECKSUM,
    VridConfig, VridKey,
};

use crate::packet::{
    Advert, Auth, V3Ipv4Checksum, Version, encode,
    frame::{self, VrrpFrame},
};

/// The ifindex used by the table: `BPF_PROG_TEST_RUN` runs XDP and TC
/// programs as if received on the loopback device, which is always 1.
pub const SPEC_IFINDEX: u32 = 1;

/// What a frame must produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Not VRRP: passed untouched, nothing counted.
    NotVrrp,
    /// Counted under this counter (and delivered when `Accepted`).
    Counted(Counter),
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub expect: Expect,
    /// For accepted frames: the advert the event must describe.
    pub advert: Option<Advert>,
    /// Whether the kernel can build an skb from the frame for a TC test run
    /// (it refuses an IPv4 EtherType without a whole IPv4 header).
    pub skb_test_run: bool,
}

fn ip(s: &str) -> IpAddr {
    // The table only holds literal, valid addresses.
    s.parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

const SRC4: &str = "192.0.2.11";
const SRC6: &str = "fe80::11";
const MCAST4: &str = "224.0.0.18";
const MCAST6: &str = "ff02::12";
pub const PASSWORD: &str = "s3cret";

/// VRIDs the table configures on [`SPEC_IFINDEX`].
pub fn vrids() -> HashMap<VridKey, VridConfig> {
    vrids_on(SPEC_IFINDEX)
}

/// The same VRIDs on another interface (for tests on a real link).
pub fn vrids_on(ifindex: u32) -> HashMap<VridKey, VridConfig> {
    let base = VridConfig {
        flags: VRID_FLAG_CHECK_TTL,
        auth_type: 0,
        v2_interval_s: 0,
        _pad: [0; 5],
        auth_data: [0; 8],
    };
    let mut pass = base;
    pass.auth_type = crate::packet::AUTH_PASS;
    pass.auth_data = Auth::pass(PASSWORD).data();
    let mut v2_int = base;
    v2_int.v2_interval_s = 1;
    let mut no_ttl = base;
    no_ttl.flags = 0;
    let mut old_checksum = base;
    old_checksum.flags |= VRID_FLAG_OLD_CHECKSUM;
    let mut m = HashMap::new();
    m.insert(VridKey::new(ifindex, FAMILY_IPV4, 10), base);
    m.insert(VridKey::new(ifindex, FAMILY_IPV4, 11), pass);
    m.insert(VridKey::new(ifindex, FAMILY_IPV4, 12), v2_int);
    m.insert(VridKey::new(ifindex, FAMILY_IPV4, 13), no_ttl);
    m.insert(VridKey::new(ifindex, FAMILY_IPV4, 14), old_checksum);
    m.insert(VridKey::new(ifindex, FAMILY_IPV6, 10), base);
    m
}

fn advert(version: Version, vrid: u8, addrs: &[&str]) -> Advert {
    Advert {
        version,
        vrid,
        priority: 150,
        interval_cs: if version == Version::V2 { 100 } else { 1 },
        addrs: addrs.iter().map(|a| ip(a)).collect(),
        auth: Auth::None,
    }
}

fn encoded(a: &Advert, src: &str, dst: &str, form: V3Ipv4Checksum) -> Vec<u8> {
    // Every advert in the table is encodable by construction.
    encode(a, ip(src), ip(dst), form).unwrap_or_default()
}

fn accepted(name: &'static str, frame: Vec<u8>, a: Advert) -> Case {
    Case {
        name,
        frame,
        expect: Expect::Counted(Counter::Accepted),
        advert: Some(a),
        skb_test_run: true,
    }
}

fn rejected(name: &'static str, frame: Vec<u8>, c: Counter) -> Case {
    Case {
        name,
        frame,
        expect: Expect::Counted(c),
        advert: None,
        skb_test_run: true,
    }
}

/// Recomputes the VRRP checksum after a test mutated the message.
fn refix(msg: &mut [u8], src: &str, dst: &str, pseudo: bool) {
    use crate::packet::checksum;
    msg[6] = 0;
    msg[7] = 0;
    let extra = if pseudo {
        checksum::pseudo_header_sum(ip(src), ip(dst), msg.len())
    } else {
        0
    };
    let c = checksum::compute(msg, extra);
    msg[6..8].copy_from_slice(&c.to_be_bytes());
}

/// The whole table.
pub fn cases() -> Vec<Case> {
    let f4 = VrrpFrame::new(ip(SRC4), ip(MCAST4), 10);
    let f6 = VrrpFrame::new(ip(SRC6), ip(MCAST6), 10);
    let ps = V3Ipv4Checksum::PseudoHeader;
    let v3 = advert(Version::V3, 10, &["192.0.2.100"]);
    let v3_bytes = encoded(&v3, SRC4, MCAST4, ps);
    let v2 = advert(Version::V2, 10, &["192.0.2.100", "192.0.2.101"]);
    let v2_bytes = encoded(&v2, SRC4, MCAST4, ps);
    let mut out = Vec::new();

    out.push(accepted("v2_valid", f4.build(&v2_bytes), v2.clone()));
    let mut v2p = advert(Version::V2, 11, &["192.0.2.100"]);
    v2p.auth = Auth::pass(PASSWORD);
    out.push(accepted(
        "v2_auth_pass_valid",
        f4.build(&encoded(&v2p, SRC4, MCAST4, ps)),
        v2p.clone(),
    ));
    let mut wrong = v2p.clone();
    wrong.auth = Auth::pass("wrong");
    out.push(rejected(
        "v2_auth_pass_wrong",
        f4.build(&encoded(&wrong, SRC4, MCAST4, ps)),
        Counter::BadAuth,
    ));
    let mut none = v2p.clone();
    none.auth = Auth::None;
    out.push(rejected(
        "v2_auth_type_mismatch",
        f4.build(&encoded(&none, SRC4, MCAST4, ps)),
        Counter::BadAuth,
    ));
    let mut v2i = advert(Version::V2, 12, &["192.0.2.100"]);
    out.push(accepted(
        "v2_interval_matches",
        f4.build(&encoded(&v2i, SRC4, MCAST4, ps)),
        v2i.clone(),
    ));
    v2i.interval_cs = 200;
    out.push(rejected(
        "v2_interval_mismatch",
        f4.build(&encoded(&v2i, SRC4, MCAST4, ps)),
        Counter::BadInterval,
    ));

    out.push(accepted(
        "v3_ipv4_pseudo_header_checksum",
        f4.build(&v3_bytes),
        v3.clone(),
    ));
    let plain = encoded(&v3, SRC4, MCAST4, V3Ipv4Checksum::Plain);
    out.push(accepted(
        "v3_ipv4_plain_checksum",
        f4.build(&plain),
        v3.clone(),
    ));
    let v6 = advert(Version::V3, 10, &["fe80::100", "2001:db8::100"]);
    out.push(accepted(
        "v3_ipv6_valid",
        f6.build(&encoded(&v6, SRC6, MCAST6, ps)),
        v6.clone(),
    ));

    let mut vlan = f4.clone();
    vlan.vlans = vec![100];
    out.push(accepted(
        "v3_ipv4_vlan_tagged",
        vlan.build(&v3_bytes),
        v3.clone(),
    ));
    let mut qinq = f4.clone();
    qinq.vlans = vec![200, 100];
    out.push(accepted("v3_ipv4_qinq", qinq.build(&v3_bytes), v3.clone()));
    let mut vlan6 = f6.clone();
    vlan6.vlans = vec![7];
    out.push(accepted(
        "v3_ipv6_vlan_tagged",
        vlan6.build(&encoded(&v6, SRC6, MCAST6, ps)),
        v6.clone(),
    ));

    // IPv4 header with options (IHL 6): the VRRP message starts later.
    let l3 = frame::ipv4_packet(
        [192, 0, 2, 11],
        [224, 0, 0, 18],
        255,
        IPPROTO_VRRP,
        &[1, 1, 1, 1],
        &v3_bytes,
    );
    let opt = frame::ethernet(
        [1, 0, 0x5e, 0, 0, 18],
        [0, 0, 0x5e, 0, 1, 10],
        &[],
        frame::ETH_P_IP,
        &l3,
    );
    out.push(accepted("v3_ipv4_header_options", opt, v3.clone()));

    let mut uni = VrrpFrame::new(ip(SRC4), ip("192.0.2.12"), 13);
    uni.ttl = 64;
    let v3u = advert(Version::V3, 13, &["192.0.2.100"]);
    out.push(accepted(
        "v3_unicast_ttl_not_checked_when_disabled",
        uni.build(&encoded(&v3u, SRC4, "192.0.2.12", ps)),
        v3u,
    ));

    // keepalived 1.3.5's unicast checksum (the group in the pseudo-header):
    // only where the instance accepts it (`old_unicast_checksum`, or its
    // detection, which keepalived does by default).
    for (name, vrid, expect) in [
        ("v3_old_unicast_checksum_where_accepted", 14, None),
        (
            "v3_old_unicast_checksum_elsewhere",
            10,
            Some(Counter::BadChecksum),
        ),
    ] {
        let a = advert(Version::V3, vrid, &["192.0.2.100"]);
        let f = VrrpFrame::new(ip(SRC4), ip("192.0.2.12"), vrid);
        let bytes = f.build(&encoded(&a, SRC4, "192.0.2.12", V3Ipv4Checksum::OldUnicast));
        out.push(match expect {
            None => accepted(name, bytes, a),
            Some(c) => rejected(name, bytes, c),
        });
    }

    let many: Vec<String> = (0..70).map(|i| format!("198.51.100.{i}")).collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let big = advert(Version::V3, 10, &many_refs);
    out.push(accepted(
        "v3_many_addresses_truncated_in_event",
        f4.build(&encoded(&big, SRC4, MCAST4, ps)),
        big.clone(),
    ));

    let mut ttl = f4.clone();
    ttl.ttl = 254;
    out.push(rejected("ttl_254", ttl.build(&v3_bytes), Counter::BadTtl));
    let mut hop = f6.clone();
    hop.ttl = 1;
    out.push(rejected(
        "ipv6_hop_limit_1",
        hop.build(&encoded(&v6, SRC6, MCAST6, ps)),
        Counter::BadTtl,
    ));

    let mut b = v3_bytes.clone();
    b[0] = 0x11;
    out.push(rejected("version_1", f4.build(&b), Counter::BadVersion));
    let mut b = v3_bytes.clone();
    b[0] = 0x41;
    out.push(rejected("version_4", f4.build(&b), Counter::BadVersion));
    let v2_6 = {
        let mut m = encoded(&v6, SRC6, MCAST6, ps);
        m[0] = 0x21;
        m
    };
    out.push(rejected(
        "v2_over_ipv6",
        f6.build(&v2_6),
        Counter::BadVersion,
    ));
    let mut b = v3_bytes.clone();
    b[0] = 0x32;
    out.push(rejected("type_2", f4.build(&b), Counter::BadType));

    out.push(rejected(
        "vrrp_shorter_than_header",
        f4.build(&v3_bytes[..6]),
        Counter::BadLength,
    ));
    let mut b = v3_bytes.clone();
    b[3] = 3; // claims three addresses, carries one
    refix(&mut b, SRC4, MCAST4, true);
    out.push(rejected(
        "count_exceeds_message",
        f4.build(&b),
        Counter::BadLength,
    ));
    let mut short = f4.build(&v3_bytes);
    short.truncate(short.len() - 2); // IP total length now exceeds the frame
    out.push(rejected(
        "ip_total_length_beyond_frame",
        short,
        Counter::BadLength,
    ));
    let mut b = v3_bytes.clone();
    b[3] = 0;
    refix(&mut b, SRC4, MCAST4, true);
    out.push(rejected(
        "address_count_zero",
        f4.build(&b[..8]),
        Counter::BadAddrCount,
    ));
    let mut b = v3_bytes.clone();
    b[4] = 0;
    b[5] = 0;
    refix(&mut b, SRC4, MCAST4, true);
    out.push(rejected(
        "v3_interval_zero",
        f4.build(&b),
        Counter::BadInterval,
    ));
    let mut b = v3_bytes.clone();
    b[7] ^= 0x5a;
    out.push(rejected(
        "bad_checksum_v3_ipv4",
        f4.build(&b),
        Counter::BadChecksum,
    ));
    let mut b = v2_bytes.clone();
    b[2] = 1; // priority changed, checksum not
    out.push(rejected(
        "bad_checksum_v2",
        f4.build(&b),
        Counter::BadChecksum,
    ));
    let mut b = encoded(&v6, SRC6, MCAST6, ps);
    b[9] ^= 1;
    out.push(rejected(
        "bad_checksum_v3_ipv6",
        f6.build(&b),
        Counter::BadChecksum,
    ));
    // IPv6 never accepts the plain form.
    let mut b = encoded(&v6, SRC6, MCAST6, ps);
    refix(&mut b, SRC6, MCAST6, false);
    out.push(rejected(
        "ipv6_without_pseudo_header",
        f6.build(&b),
        Counter::BadChecksum,
    ));

    let other = advert(Version::V3, 99, &["192.0.2.100"]);
    out.push(rejected(
        "unknown_vrid",
        f4.build(&encoded(&other, SRC4, MCAST4, ps)),
        Counter::UnknownVrid,
    ));
    let mut frag = f4.build(&v3_bytes);
    frag[14 + 6] = 0x20; // more fragments
    out.push(rejected("ipv4_fragment", frag, Counter::Fragment));

    let tcp = frame::ipv4_packet([192, 0, 2, 1], [192, 0, 2, 2], 64, 6, &[], &[0u8; 20]);
    out.push(Case {
        name: "ipv4_tcp",
        frame: frame::ethernet(
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            &[],
            frame::ETH_P_IP,
            &tcp,
        ),
        expect: Expect::NotVrrp,
        advert: None,
        skb_test_run: true,
    });
    let udp = frame::ipv6_packet(
        octets6("2001:db8::1"),
        octets6("2001:db8::2"),
        64,
        17,
        &[0u8; 16],
    );
    out.push(Case {
        name: "ipv6_udp",
        frame: frame::ethernet(
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            &[],
            frame::ETH_P_IPV6,
            &udp,
        ),
        expect: Expect::NotVrrp,
        advert: None,
        skb_test_run: true,
    });
    out.push(Case {
        name: "arp",
        frame: frame::ethernet(
            [0xff; 6],
            [2, 0, 0, 0, 0, 1],
            &[],
            frame::ETH_P_ARP,
            &[0u8; 28],
        ),
        expect: Expect::NotVrrp,
        advert: None,
        skb_test_run: true,
    });
    out.push(Case {
        name: "runt_ipv4_header",
        frame: frame::ethernet(
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            &[],
            frame::ETH_P_IP,
            &[0x45, 0, 0],
        ),
        expect: Expect::NotVrrp,
        advert: None,
        skb_test_run: false,
    });
    out
}

fn octets6(s: &str) -> [u8; 16] {
    match ip(s) {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// Checks an event against the advert a case expects; `Err` says which field differs.
pub fn check_event(
    ev: &xvrrpd_common::AdvertEvent,
    a: &Advert,
    ifindex: u32,
) -> Result<(), String> {
    let ipv4 = a.addrs.first().is_some_and(IpAddr::is_ipv4);
    let checks = [
        (
            "family",
            u32::from(ev.family),
            u32::from(if ipv4 { FAMILY_IPV4 } else { FAMILY_IPV6 }),
        ),
        (
            "version",
            u32::from(ev.version),
            u32::from(a.version.number()),
        ),
        ("vrid", u32::from(ev.vrid), u32::from(a.vrid)),
        ("priority", u32::from(ev.priority), u32::from(a.priority)),
        (
            "interval_cs",
            u32::from(ev.interval_cs),
            u32::from(a.interval_cs),
        ),
        ("addr_count", u32::from(ev.addr_count), a.addrs.len() as u32),
        (
            "auth_type",
            u32::from(ev.auth_type),
            u32::from(a.auth.type_code()),
        ),
        ("ifindex", ev.ifindex, ifindex),
    ];
    for (name, got, want) in checks {
        if got != want {
            return Err(format!("{name}: got {got}, want {want}"));
        }
    }
    if ev.auth_data != a.auth.data() {
        return Err("auth_data differs".into());
    }
    let got = crate::packet::parse_addrs(&ev.addrs[..usize::from(ev.addr_bytes)], ipv4);
    let room = if ipv4 { 64 } else { 16 };
    let want: Vec<IpAddr> = a.addrs.iter().take(room).copied().collect();
    if got != want {
        return Err(format!("addresses: got {got:?}, want {want:?}"));
    }
    let truncated = ev.flags & xvrrpd_common::EVENT_FLAG_ADDRS_TRUNCATED != 0;
    if truncated != (a.addrs.len() > room) {
        return Err(format!("truncation flag {truncated} is wrong"));
    }
    Ok(())
}

/// Sets the priority of the VRRP advert in `frame` (Ethernet, up to two
/// VLAN tags, IPv4 or IPv6) and updates its checksum in place (RFC 1624),
/// whichever form it used. `false` if `frame` holds no such advert.
pub fn with_priority(frame: &mut [u8], priority: u8) -> bool {
    let mut off = 12;
    let ethertype =
        |f: &[u8], at: usize| f.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let mut proto = ethertype(frame, off);
    while matches!(proto, Some(0x8100 | 0x88a8)) {
        off += 4;
        proto = ethertype(frame, off);
    }
    let l3 = off + 2;
    let vrrp = match proto {
        Some(0x0800) => match frame.get(l3) {
            Some(v) => l3 + usize::from(v & 0x0f) * 4,
            None => return false,
        },
        Some(0x86dd) => l3 + 40,
        _ => return false,
    };
    let Some(msg) = frame.get_mut(vrrp..vrrp + 8) else {
        return false;
    };
    let old = u16::from_be_bytes([msg[2], msg[3]]);
    msg[2] = priority;
    let new = u16::from_be_bytes([msg[2], msg[3]]);
    let check = u16::from_be_bytes([msg[6], msg[7]]);
    let mut sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    msg[6..8].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::validate::classify_frame;

    #[test]
    fn rust_validator_agrees_with_every_case() {
        let vrids = vrids();
        let cases = cases();
        assert!(cases.len() >= 30, "the table shrank to {}", cases.len());
        for case in cases {
            let got = classify_frame(&case.frame, SPEC_IFINDEX, 7, &vrids);
            match (case.expect, got) {
                (Expect::NotVrrp, None) => {}
                (Expect::Counted(Counter::Accepted), Some(Ok(ev))) => {
                    let a = case
                        .advert
                        .as_ref()
                        .expect("accepted cases carry their advert");
                    if let Err(e) = check_event(&ev, a, SPEC_IFINDEX) {
                        panic!("{}: {e}", case.name);
                    }
                    assert_eq!(ev.ts_ns, 7, "{}", case.name);
                }
                (Expect::Counted(c), Some(Err(got))) if got == c => {}
                (want, got) => panic!("{}: want {want:?}, got {got:?}", case.name),
            }
        }
    }

    #[test]
    fn checksum_form_is_reported() {
        let vrids = vrids();
        let forms: Vec<(&str, u8)> = cases()
            .iter()
            .filter_map(|c| {
                classify_frame(&c.frame, SPEC_IFINDEX, 0, &vrids)
                    .and_then(Result::ok)
                    .map(|ev| (c.name, ev.checksum_form))
            })
            .collect();
        let form = |n: &str| forms.iter().find(|(name, _)| *name == n).map(|(_, f)| *f);
        use xvrrpd_common::ChecksumForm as F;
        assert_eq!(form("v2_valid"), Some(F::V2Message as u8));
        assert_eq!(
            form("v3_ipv4_pseudo_header_checksum"),
            Some(F::V3PseudoHeader as u8)
        );
        assert_eq!(form("v3_ipv4_plain_checksum"), Some(F::V3Plain as u8));
        assert_eq!(
            form("v3_old_unicast_checksum_where_accepted"),
            Some(F::V3OldUnicast as u8)
        );
        assert_eq!(form("v3_ipv6_valid"), Some(F::V3PseudoHeader as u8));
    }
}
