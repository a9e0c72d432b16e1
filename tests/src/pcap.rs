//! A reader for classic pcap files (what `tcpdump -w` writes) and a decoder
//! for the frames a VRRP lab cares about: adverts, gratuitous ARP,
//! neighbour advertisements and ICMP echoes.
//!
//! Only Ethernet (link type 1) is decoded; both byte orders and both
//! timestamp precisions (µs magic `a1b2c3d4`, ns magic `a1b23c4d`) are read.
//! A record cut short at the end of the file (a capture still being
//! written) is left out and counted in [`Pcap::truncated_tail`].

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{Context, Result, bail};

/// An Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Mac {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        if parts.len() != 6 {
            bail!("not a MAC address: {s:?}");
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            m[i] =
                u8::from_str_radix(p, 16).with_context(|| format!("not a MAC address: {s:?}"))?;
        }
        Ok(Mac(m))
    }
}

/// One captured frame.
#[derive(Clone, Debug)]
pub struct Record {
    /// CLOCK_REALTIME of capture, ns since the epoch.
    pub t_ns: u64,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// The records of a pcap file.
#[derive(Clone, Debug, Default)]
pub struct Pcap {
    pub linktype: u32,
    pub records: Vec<Record>,
    /// Bytes at the end that did not make a whole record.
    pub truncated_tail: usize,
}

impl Pcap {
    pub fn read(path: &Path) -> Result<Pcap> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Pcap::parse(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn parse(b: &[u8]) -> Result<Pcap> {
        if b.len() < 24 {
            bail!("{} bytes: shorter than a pcap header", b.len());
        }
        let magic_le = u32::from_le_bytes(b[0..4].try_into().unwrap());
        let (le, nano) = match magic_le {
            0xa1b2_c3d4 => (true, false),
            0xa1b2_3c4d => (true, true),
            0xd4c3_b2a1 => (false, false),
            0x4d3c_b2a1 => (false, true),
            m => bail!("not a classic pcap file (magic {m:#010x}); pcapng is not read"),
        };
        let u32_at = |o: usize| -> u32 {
            let a: [u8; 4] = b[o..o + 4].try_into().unwrap();
            if le {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }
        };
        let linktype = u32_at(20) & 0x0fff_ffff;
        let mut records = Vec::new();
        let mut off = 24;
        while off + 16 <= b.len() {
            let sec = u64::from(u32_at(off));
            let frac = u64::from(u32_at(off + 4));
            let incl = u32_at(off + 8) as usize;
            let orig_len = u32_at(off + 12);
            if incl > 262_144 {
                bail!("record at byte {off} claims {incl} bytes: corrupt file");
            }
            if off + 16 + incl > b.len() {
                break;
            }
            let t_ns = sec * 1_000_000_000 + if nano { frac } else { frac * 1000 };
            records.push(Record {
                t_ns,
                orig_len,
                data: b[off + 16..off + 16 + incl].to_vec(),
            });
            off += 16 + incl;
        }
        Ok(Pcap {
            linktype,
            records,
            truncated_tail: b.len() - off,
        })
    }

    /// Every record decoded (Ethernet only).
    pub fn events(&self) -> Result<Vec<WireEvent>> {
        if self.linktype != 1 {
            bail!("link type {} is not Ethernet", self.linktype);
        }
        Ok(self
            .records
            .iter()
            .map(|r| decode_frame(r.t_ns, &r.data))
            .collect())
    }
}

/// How a VRRP advert's checksum was computed, found by trying each way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumKind {
    /// Over the VRRP message only (VRRPv2; VRRPv3/IPv4 per RFC 9568's text,
    /// xvrrpd's `v3_checksum_as_v2`).
    MessageOnly,
    /// With the IP pseudo-header (VRRPv3/IPv6; keepalived's VRRPv3/IPv4).
    PseudoHeader,
    /// VRRPv3/IPv4 unicast with 224.0.0.18 in the pseudo-header in place
    /// of the peer (keepalived 1.3.5 and before, `old_unicast_checksum`).
    OldUnicast,
    /// Neither matches.
    Bad,
}

/// A decoded VRRP advertisement.
#[derive(Clone, Debug, PartialEq)]
pub struct Advert {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    pub version: u8,
    /// 1 = advertisement.
    pub kind: u8,
    pub vrid: u8,
    pub priority: u8,
    /// The interval in centiseconds (VRRPv2's seconds × 100).
    pub interval_cs: u32,
    /// VRRPv2 authentication type (0 none, 1 simple text, 2 AH).
    pub auth_type: u8,
    /// VRRPv2 authentication data (8 bytes) when present.
    pub auth_data: Option<[u8; 8]>,
    pub addrs: Vec<IpAddr>,
    pub checksum: ChecksumKind,
}

/// What a frame carried.
#[derive(Clone, Debug, PartialEq)]
pub enum WireKind {
    Advert(Advert),
    /// ARP with sender IP = target IP (request or reply).
    Garp {
        ip: Ipv4Addr,
        sender_mac: Mac,
        op: u16,
    },
    /// Any other ARP.
    Arp {
        op: u16,
        sender_ip: Ipv4Addr,
        sender_mac: Mac,
        target_ip: Ipv4Addr,
    },
    /// ICMPv6 neighbour advertisement.
    Na {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        target: Ipv6Addr,
        solicited: bool,
        override_flag: bool,
        /// The target link-layer address option.
        tlla: Option<Mac>,
    },
    /// ICMPv6 neighbour solicitation.
    Ns {
        src: Ipv6Addr,
        target: Ipv6Addr,
    },
    EchoRequest {
        src: IpAddr,
        dst: IpAddr,
        id: u16,
        seq: u16,
    },
    EchoReply {
        src: IpAddr,
        dst: IpAddr,
        id: u16,
        seq: u16,
    },
    Other {
        ethertype: u16,
    },
    /// Too short or malformed for its headers.
    Malformed,
}

/// One frame on the wire, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct WireEvent {
    /// CLOCK_REALTIME, ns since the epoch.
    pub t_ns: u64,
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub kind: WireKind,
}

impl WireEvent {
    pub fn advert(&self) -> Option<&Advert> {
        match &self.kind {
            WireKind::Advert(a) => Some(a),
            _ => None,
        }
    }

    /// A gratuitous ARP or an unsolicited NA announcing `ip`.
    pub fn announces(&self, ip: IpAddr) -> bool {
        match (&self.kind, ip) {
            (WireKind::Garp { ip: g, .. }, IpAddr::V4(v)) => *g == v,
            (
                WireKind::Na {
                    target, solicited, ..
                },
                IpAddr::V6(v),
            ) => *target == v && !solicited,
            _ => false,
        }
    }
}

fn ones_sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// True when `data` (checksum field included) sums to 0xffff with the
/// pseudo-header bytes `pseudo`.
fn checksum_ok(pseudo: &[u8], data: &[u8]) -> bool {
    fold(ones_sum(ones_sum(0, pseudo), data)) == 0xffff
}

fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.push(0);
    p.push(proto);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, proto]);
    p
}

fn mac_at(b: &[u8], o: usize) -> Mac {
    Mac(b[o..o + 6].try_into().unwrap())
}

fn v4_at(b: &[u8], o: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3])
}

fn v6_at(b: &[u8], o: usize) -> Ipv6Addr {
    let a: [u8; 16] = b[o..o + 16].try_into().unwrap();
    Ipv6Addr::from(a)
}

fn decode_vrrp(src: IpAddr, dst: IpAddr, ttl: u8, m: &[u8]) -> Option<Advert> {
    if m.len() < 8 {
        return None;
    }
    let version = m[0] >> 4;
    let count = usize::from(m[3]);
    let (interval_cs, auth_type, addr_off) = match version {
        2 => (u32::from(m[5]) * 100, m[4], 8),
        3 => (u32::from(u16::from_be_bytes([m[4], m[5]]) & 0x0fff), 0, 8),
        _ => return None,
    };
    let alen = if src.is_ipv4() { 4 } else { 16 };
    let mut addrs = Vec::new();
    for i in 0..count {
        let o = addr_off + i * alen;
        if o + alen > m.len() {
            break;
        }
        addrs.push(if alen == 4 {
            IpAddr::V4(v4_at(m, o))
        } else {
            IpAddr::V6(v6_at(m, o))
        });
    }
    let auth_data = if version == 2 {
        let o = addr_off + count * 4;
        m.get(o..o + 8).map(|s| s.try_into().unwrap())
    } else {
        None
    };
    let checksum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            if version == 3 && checksum_ok(&pseudo_v4(s, d, 112, m.len()), m) {
                ChecksumKind::PseudoHeader
            } else if checksum_ok(&[], m) {
                ChecksumKind::MessageOnly
            } else if version == 3
                && checksum_ok(&pseudo_v4(s, Ipv4Addr::new(224, 0, 0, 18), 112, m.len()), m)
            {
                ChecksumKind::OldUnicast
            } else {
                ChecksumKind::Bad
            }
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            if checksum_ok(&pseudo_v6(s, d, 112, m.len()), m) {
                ChecksumKind::PseudoHeader
            } else {
                ChecksumKind::Bad
            }
        }
        _ => ChecksumKind::Bad,
    };
    Some(Advert {
        src,
        dst,
        ttl,
        version,
        kind: m[0] & 0x0f,
        vrid: m[1],
        priority: m[2],
        interval_cs,
        auth_type,
        auth_data,
        addrs,
        checksum,
    })
}

/// Decodes one Ethernet frame captured at `t_ns`.
pub fn decode_frame(t_ns: u64, f: &[u8]) -> WireEvent {
    let malformed = |src_mac, dst_mac| WireEvent {
        t_ns,
        src_mac,
        dst_mac,
        kind: WireKind::Malformed,
    };
    if f.len() < 14 {
        return malformed(Mac::default(), Mac::default());
    }
    let dst_mac = mac_at(f, 0);
    let src_mac = mac_at(f, 6);
    let mut ethertype = u16::from_be_bytes([f[12], f[13]]);
    let mut l3 = 14;
    if ethertype == 0x8100 && f.len() >= 18 {
        ethertype = u16::from_be_bytes([f[16], f[17]]);
        l3 = 18;
    }
    let p = &f[l3..];
    let kind = match ethertype {
        0x0800 => decode_ipv4(p),
        0x86dd => decode_ipv6(p),
        0x0806 => decode_arp(p),
        other => Some(WireKind::Other { ethertype: other }),
    };
    match kind {
        Some(kind) => WireEvent {
            t_ns,
            src_mac,
            dst_mac,
            kind,
        },
        None => malformed(src_mac, dst_mac),
    }
}

fn decode_ipv4(p: &[u8]) -> Option<WireKind> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if ihl < 20 || p.len() < ihl || total < ihl {
        return None;
    }
    let end = total.min(p.len());
    let ttl = p[8];
    let proto = p[9];
    let src = v4_at(p, 12);
    let dst = v4_at(p, 16);
    let l4 = &p[ihl..end];
    match proto {
        112 => decode_vrrp(IpAddr::V4(src), IpAddr::V4(dst), ttl, l4).map(WireKind::Advert),
        1 if l4.len() >= 8 => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            let seq = u16::from_be_bytes([l4[6], l4[7]]);
            let (src, dst) = (IpAddr::V4(src), IpAddr::V4(dst));
            Some(match l4[0] {
                8 => WireKind::EchoRequest { src, dst, id, seq },
                0 => WireKind::EchoReply { src, dst, id, seq },
                _ => WireKind::Other { ethertype: 0x0800 },
            })
        }
        _ => Some(WireKind::Other { ethertype: 0x0800 }),
    }
}

fn decode_ipv6(p: &[u8]) -> Option<WireKind> {
    if p.len() < 40 || p[0] >> 4 != 6 {
        return None;
    }
    let plen = usize::from(u16::from_be_bytes([p[4], p[5]]));
    let nh = p[6];
    let hop = p[7];
    let src = v6_at(p, 8);
    let dst = v6_at(p, 24);
    let l4 = &p[40..(40 + plen).min(p.len())];
    match nh {
        112 => decode_vrrp(IpAddr::V6(src), IpAddr::V6(dst), hop, l4).map(WireKind::Advert),
        58 if l4.len() >= 8 => {
            let (s, d) = (IpAddr::V6(src), IpAddr::V6(dst));
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            let seq = u16::from_be_bytes([l4[6], l4[7]]);
            Some(match l4[0] {
                128 => WireKind::EchoRequest {
                    src: s,
                    dst: d,
                    id,
                    seq,
                },
                129 => WireKind::EchoReply {
                    src: s,
                    dst: d,
                    id,
                    seq,
                },
                135 if l4.len() >= 24 => WireKind::Ns {
                    src,
                    target: v6_at(l4, 8),
                },
                136 if l4.len() >= 24 => {
                    let flags = l4[4];
                    let mut tlla = None;
                    let mut o = 24;
                    while o + 2 <= l4.len() {
                        let len = usize::from(l4[o + 1]) * 8;
                        if len == 0 || o + len > l4.len() {
                            break;
                        }
                        if l4[o] == 2 && len >= 8 {
                            tlla = Some(mac_at(l4, o + 2));
                        }
                        o += len;
                    }
                    WireKind::Na {
                        src,
                        dst,
                        target: v6_at(l4, 8),
                        solicited: flags & 0x40 != 0,
                        override_flag: flags & 0x20 != 0,
                        tlla,
                    }
                }
                _ => WireKind::Other { ethertype: 0x86dd },
            })
        }
        _ => Some(WireKind::Other { ethertype: 0x86dd }),
    }
}

fn decode_arp(p: &[u8]) -> Option<WireKind> {
    // Ethernet/IPv4 ARP only.
    if p.len() < 28 || p[4] != 6 || p[5] != 4 {
        return None;
    }
    let op = u16::from_be_bytes([p[6], p[7]]);
    let sender_mac = mac_at(p, 8);
    let sender_ip = v4_at(p, 14);
    let target_ip = v4_at(p, 24);
    Some(if sender_ip == target_ip {
        WireKind::Garp {
            ip: sender_ip,
            sender_mac,
            op,
        }
    } else {
        WireKind::Arp {
            op,
            sender_ip,
            sender_mac,
            target_ip,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(src: [u8; 6], dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 255, proto, 0, 0];
        h[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(l4);
        h
    }

    fn with_checksum(mut m: Vec<u8>, pseudo: &[u8], at: usize) -> Vec<u8> {
        m[at] = 0;
        m[at + 1] = 0;
        let c = !fold(ones_sum(ones_sum(0, pseudo), &m));
        m[at..at + 2].copy_from_slice(&c.to_be_bytes());
        m
    }

    #[test]
    fn vrrp_v3_ipv4_checksum_forms_are_told_apart() {
        let (s, d) = (Ipv4Addr::new(192, 0, 2, 11), Ipv4Addr::new(224, 0, 0, 18));
        let body = vec![0x31, 51, 150, 1, 0x00, 0x01, 0, 0, 192, 0, 2, 100];
        let pseudo = pseudo_v4(s, d, 112, body.len());
        for (p, want) in [
            (&pseudo[..], ChecksumKind::PseudoHeader),
            (&[][..], ChecksumKind::MessageOnly),
        ] {
            let m = with_checksum(body.clone(), p, 6);
            let f = eth(
                [2, 0, 0, 0, 0, 1],
                [1, 0, 0x5e, 0, 0, 0x12],
                0x0800,
                &ipv4(s.octets(), d.octets(), 112, &m),
            );
            let ev = decode_frame(7, &f);
            let a = ev.advert().expect("an advert");
            assert_eq!(
                (a.version, a.vrid, a.priority, a.interval_cs),
                (3, 51, 150, 1)
            );
            assert_eq!(a.addrs, vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))]);
            assert_eq!(a.checksum, want);
            assert_eq!(ev.src_mac, Mac([2, 0, 0, 0, 0, 1]));
        }
        let mut bad = with_checksum(body, &[], 6);
        bad[2] = 149;
        let f = eth(
            [2, 0, 0, 0, 0, 1],
            [1, 0, 0x5e, 0, 0, 0x12],
            0x0800,
            &ipv4(s.octets(), d.octets(), 112, &bad),
        );
        assert_eq!(
            decode_frame(0, &f).advert().unwrap().checksum,
            ChecksumKind::Bad
        );
    }

    #[test]
    fn vrrp_v2_with_simple_password() {
        let mut body = vec![0x21, 7, 100, 1, 1, 1, 0, 0, 192, 0, 2, 100];
        body.extend_from_slice(b"secret\0\0");
        let m = with_checksum(body, &[], 6);
        let f = eth(
            [2, 0, 0, 0, 0, 2],
            [1, 0, 0x5e, 0, 0, 0x12],
            0x0800,
            &ipv4([192, 0, 2, 12], [224, 0, 0, 18], 112, &m),
        );
        let a = decode_frame(0, &f).advert().unwrap().clone();
        assert_eq!((a.version, a.interval_cs, a.auth_type), (2, 100, 1));
        assert_eq!(&a.auth_data.unwrap(), b"secret\0\0");
        assert_eq!(a.checksum, ChecksumKind::MessageOnly);
    }

    #[test]
    fn garp_and_plain_arp() {
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 192, 0, 2, 100]);
        arp.extend_from_slice(&[0xff; 6]);
        arp.extend_from_slice(&[192, 0, 2, 100]);
        let f = eth([2, 0, 0, 0, 0, 1], [0xff; 6], 0x0806, &arp);
        let ev = decode_frame(0, &f);
        assert!(ev.announces("192.0.2.100".parse().unwrap()));
        arp[27] = 50;
        let f = eth([2, 0, 0, 0, 0, 1], [0xff; 6], 0x0806, &arp);
        assert!(matches!(decode_frame(0, &f).kind, WireKind::Arp { .. }));
    }

    #[test]
    fn pcap_nanosecond_file_with_truncated_tail() {
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
        b.extend_from_slice(&[2, 0, 4, 0]);
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65535u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        for (sec, ns) in [(10u32, 5u32), (11, 999_999_999)] {
            b.extend_from_slice(&sec.to_le_bytes());
            b.extend_from_slice(&ns.to_le_bytes());
            b.extend_from_slice(&14u32.to_le_bytes());
            b.extend_from_slice(&14u32.to_le_bytes());
            b.extend_from_slice(&[0u8; 14]);
        }
        b.extend_from_slice(&[1, 2, 3]);
        let p = Pcap::parse(&b).unwrap();
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.records[0].t_ns, 10_000_000_005);
        assert_eq!(p.records[1].t_ns, 11_999_999_999);
        assert_eq!(p.truncated_tail, 3);
    }
}
