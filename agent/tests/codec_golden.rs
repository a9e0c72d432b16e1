//! Adverts captured from a real keepalived 2.2.7 (see fixtures/capture.sh):
//! every field decodes as keepalived meant it, the checksum form is the one
//! keepalived uses, and `encode` reproduces keepalived's bytes exactly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xvrrpd::packet::{self, Advert, Auth, V3Ipv4Checksum, Version};
use xvrrpd_common::{ChecksumForm, IPPROTO_VRRP};

/// An IP packet from a fixture, split into the fields the tests need.
struct Captured {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    tos: u8,
    vrrp: Vec<u8>,
}

fn load(name: &str) -> Captured {
    let path = format!("{}/tests/fixtures/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture readable");
    let hex: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex fixture"))
        .collect();
    match bytes[0] >> 4 {
        4 => {
            let ihl = usize::from(bytes[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            assert_eq!(total, bytes.len(), "IPv4 total length");
            assert_eq!(bytes[9], IPPROTO_VRRP);
            let a = |o: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    bytes[o],
                    bytes[o + 1],
                    bytes[o + 2],
                    bytes[o + 3],
                ))
            };
            Captured {
                src: a(12),
                dst: a(16),
                ttl: bytes[8],
                tos: bytes[1],
                vrrp: bytes[ihl..].to_vec(),
            }
        }
        6 => {
            assert_eq!(bytes[6], IPPROTO_VRRP, "no extension headers");
            let plen = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
            assert_eq!(plen + 40, bytes.len(), "IPv6 payload length");
            let a = |o: usize| {
                let mut x = [0u8; 16];
                x.copy_from_slice(&bytes[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(x))
            };
            let tc = ((bytes[0] & 0x0f) << 4) | (bytes[1] >> 4);
            Captured {
                src: a(8),
                dst: a(24),
                ttl: bytes[7],
                tos: tc,
                vrrp: bytes[40..].to_vec(),
            }
        }
        v => panic!("IP version {v} in fixture {name}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Decodes, checks against `want`, and re-encodes to the same bytes.
fn check(name: &str, want: &Advert, form: ChecksumForm, src: &str, dst: &str) -> Captured {
    let c = load(name);
    assert_eq!(c.src, ip(src), "{name}: source");
    assert_eq!(c.dst, ip(dst), "{name}: destination");
    assert_eq!(c.ttl, 255, "{name}: TTL / hop limit");
    assert_eq!(c.tos, 0xc0, "{name}: keepalived sends DSCP CS6");
    let header = packet::peek_header(&c.vrrp, c.src.is_ipv4()).expect("header");
    assert_eq!(header.vrid, want.vrid);
    let (got, got_form) =
        packet::decode(&c.vrrp, c.src, c.dst).expect("keepalived's advert decodes");
    assert_eq!(&got, want, "{name}: fields");
    assert_eq!(got_form, form, "{name}: checksum form");
    let mode = match form {
        ChecksumForm::V3Plain => V3Ipv4Checksum::Plain,
        _ => V3Ipv4Checksum::PseudoHeader,
    };
    let ours = packet::encode(want, c.src, c.dst, mode).expect("encode");
    assert_eq!(
        ours, c.vrrp,
        "{name}: our encoding differs from keepalived's"
    );
    c
}

#[test]
fn keepalived_v2_no_auth() {
    let c = check(
        "keepalived-v2-noauth",
        &Advert {
            version: Version::V2,
            vrid: 10,
            priority: 100,
            interval_cs: 100,
            addrs: vec![ip("192.0.2.100")],
            auth: Auth::None,
        },
        ChecksumForm::V2Message,
        "192.0.2.10",
        "224.0.0.18",
    );
    assert_eq!(&c.vrrp[6..8], &[0xb8, 0x8e], "checksum as captured");
    assert_eq!(
        c.vrrp.len(),
        8 + 4 + 8,
        "v2 carries 8 auth bytes even without auth"
    );
}

#[test]
fn keepalived_v2_auth_pass() {
    let c = check(
        "keepalived-v2-pass",
        &Advert {
            version: Version::V2,
            vrid: 11,
            priority: 150,
            interval_cs: 200,
            addrs: vec![ip("192.0.2.101"), ip("192.0.2.102")],
            auth: Auth::pass("s3cret"),
        },
        ChecksumForm::V2Message,
        "192.0.2.10",
        "224.0.0.18",
    );
    assert_eq!(c.vrrp[4], 1, "auth type PASS");
    assert_eq!(&c.vrrp[16..24], b"s3cret\0\0", "zero-padded password");
}

fn v3_ipv4(priority: u8) -> Advert {
    Advert {
        version: Version::V3,
        vrid: 12,
        priority,
        interval_cs: 50,
        addrs: vec![ip("192.0.2.103"), ip("192.0.2.104"), ip("192.0.2.105")],
        auth: Auth::None,
    }
}

#[test]
fn keepalived_v3_ipv4_uses_pseudo_header_checksum() {
    let c = check(
        "keepalived-v3-ipv4",
        &v3_ipv4(200),
        ChecksumForm::V3PseudoHeader,
        "192.0.2.10",
        "224.0.0.18",
    );
    // The message alone does not verify: the pseudo-header is in the sum.
    assert!(!packet::checksum::verifies(&c.vrrp, 0));
    assert_eq!(&c.vrrp[4..6], &[0x00, 0x32], "reserved bits zero, 50 cs");
}

#[test]
fn keepalived_v3_ipv4_priority_zero_on_shutdown() {
    check(
        "keepalived-v3-ipv4-prio0",
        &v3_ipv4(0),
        ChecksumForm::V3PseudoHeader,
        "192.0.2.10",
        "224.0.0.18",
    );
}

#[test]
fn v3_ipv4_message_only_checksum_derived_from_keepalived_capture() {
    // keepalived 2.2.7 cannot send this form (`v3_checksum_as_v2` came in
    // 2.2.8): take its advert and recompute the checksum over the message
    // alone, as RFC 9568 and `v3_checksum_as_v2` do.
    let c = load("keepalived-v3-ipv4");
    let mut plain = c.vrrp.clone();
    plain[6..8].copy_from_slice(&[0, 0]);
    let sum = packet::checksum::compute(&plain, 0);
    plain[6..8].copy_from_slice(&sum.to_be_bytes());
    let (adv, form) = packet::decode(&plain, c.src, c.dst).expect("message-only form accepted");
    assert_eq!(adv, v3_ipv4(200));
    assert_eq!(form, ChecksumForm::V3Plain);
    let ours = packet::encode(&adv, c.src, c.dst, V3Ipv4Checksum::Plain).expect("encode");
    assert_eq!(ours, plain);
}

#[test]
fn keepalived_v3_ipv6() {
    let c = check(
        "keepalived-v3-ipv6",
        &Advert {
            version: Version::V3,
            vrid: 13,
            priority: 254,
            interval_cs: 25,
            addrs: vec![ip("fe80::13"), ip("2001:db8::103")],
            auth: Auth::None,
        },
        ChecksumForm::V3PseudoHeader,
        "fe80::ff:fe00:a",
        "ff02::12",
    );
    // The IPv6 pseudo-header binds the source address.
    assert!(packet::decode(&c.vrrp, ip("fe80::ff:fe00:b"), c.dst).is_err());
}
