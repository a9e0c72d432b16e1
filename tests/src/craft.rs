//! Hand-made VRRP frames, for probing how a daemon treats a given form of
//! advert (sent with [`frame_injector`](crate::lab::frame_injector)).

use std::net::Ipv4Addr;

use crate::pcap::{ChecksumKind, Mac};

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn sum(acc: u32, data: &[u8]) -> u32 {
    data.chunks(2).fold(acc, |a, c| {
        a + u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
    })
}

/// A VRRPv3 advert over IPv4 to 224.0.0.18 (TTL 255) as an Ethernet frame,
/// its checksum computed the way `checksum` says (`Bad`: a wrong one).
pub fn vrrp_v3_ipv4_frame(
    src_mac: Mac,
    src: Ipv4Addr,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    vips: &[Ipv4Addr],
    checksum: ChecksumKind,
) -> Vec<u8> {
    let dst = Ipv4Addr::new(224, 0, 0, 18);
    let mut v = vec![
        0x31,
        vrid,
        priority,
        vips.len() as u8,
        (interval_cs >> 8) as u8 & 0x0f,
        interval_cs as u8,
        0,
        0,
    ];
    for a in vips {
        v.extend_from_slice(&a.octets());
    }
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 112]);
    pseudo.extend_from_slice(&(v.len() as u16).to_be_bytes());
    let c = match checksum {
        // Sent to the group, the old unicast form is the pseudo-header one.
        ChecksumKind::PseudoHeader | ChecksumKind::OldUnicast => !fold(sum(sum(0, &pseudo), &v)),
        ChecksumKind::MessageOnly => !fold(sum(0, &v)),
        ChecksumKind::Bad => !fold(sum(0, &v)) ^ 0x5a5a,
    };
    v[6..8].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0xc0, 0, 0, 0, 0, 0x40, 0, 255, 112, 0, 0];
    ip[2..4].copy_from_slice(&((20 + v.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let hc = !fold(sum(0, &ip));
    ip[10..12].copy_from_slice(&hc.to_be_bytes());
    let mut f = vec![0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&v);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::decode_frame;

    #[test]
    fn crafted_adverts_decode_with_the_checksum_asked_for() {
        for kind in [
            ChecksumKind::PseudoHeader,
            ChecksumKind::MessageOnly,
            ChecksumKind::Bad,
        ] {
            let f = vrrp_v3_ipv4_frame(
                Mac([2, 0, 0, 0, 0, 0x63]),
                Ipv4Addr::new(192, 0, 2, 99),
                51,
                200,
                1,
                &[Ipv4Addr::new(192, 0, 2, 100)],
                kind,
            );
            let ev = decode_frame(0, &f);
            let a = ev.advert().expect("an advert");
            assert_eq!(
                (a.vrid, a.priority, a.interval_cs, a.ttl),
                (51, 200, 1, 255)
            );
            assert_eq!(a.checksum, kind);
        }
    }
}
