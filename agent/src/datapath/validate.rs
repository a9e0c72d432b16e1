//! The kernel datapath's rules in Rust, for the raw-socket fallback.
//!
//! Mirrors `ebpf/src/parse.rs` check for check and in the same order, so a
//! packet gets the same verdict (and the same counter) on either path. The
//! table of crafted frames in `datapath::spec` (test tooling, feature
//! `testkit`) runs against both.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use xvrrpd_common::{
    AdvertEvent, ChecksumForm, Counter, EVENT_ADDR_BYTES, EVENT_FLAG_ADDRS_TRUNCATED,
    EVENT_FLAG_UNICAST, FAMILY_IPV4, FAMILY_IPV6, IPPROTO_VRRP, MAX_VRRP_PACKET,
    VRID_FLAG_CHECK_TTL, VRID_FLAG_OLD_CHECKSUM, VRRP_TTL, VridConfig, VridKey,
};

use crate::packet::{self, DecodeError, Version, frame};

/// Where the agent's configured VRIDs live (the eBPF map or a plain map).
pub trait VridTable {
    fn lookup(&self, key: &VridKey) -> Option<VridConfig>;
}

impl VridTable for HashMap<VridKey, VridConfig> {
    fn lookup(&self, key: &VridKey) -> Option<VridConfig> {
        self.get(key).copied()
    }
}

/// An IP packet carrying protocol 112, as seen after the IP header.
#[derive(Clone, Copy, Debug)]
pub struct IpView<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// The IP payload (the VRRP message, possibly truncated or padded).
    pub msg: &'a [u8],
}

/// Classifies an Ethernet frame: `None` for non-VRRP traffic, otherwise the
/// delivered event or the counter the drop is accounted to.
pub fn classify_frame(
    frame: &[u8],
    ifindex: u32,
    ts_ns: u64,
    vrids: &impl VridTable,
) -> Option<Result<AdvertEvent, Counter>> {
    let (ethertype, off) = l2(frame)?;
    let ip = match ethertype {
        frame::ETH_P_IP => ipv4(frame, off)?,
        frame::ETH_P_IPV6 => ipv6(frame, off)?,
        _ => return None,
    };
    Some(ip.and_then(|ip| classify_ip(&ip, ifindex, ts_ns, vrids)))
}

/// Classifies an IPv4 packet starting at its header (raw IPv4 sockets hand
/// the header over with the payload).
pub fn classify_ipv4_packet(
    packet: &[u8],
    ifindex: u32,
    ts_ns: u64,
    vrids: &impl VridTable,
) -> Option<Result<AdvertEvent, Counter>> {
    let ip = ipv4(packet, 0)?;
    Some(ip.and_then(|ip| classify_ip(&ip, ifindex, ts_ns, vrids)))
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// EtherType and L3 offset after up to two VLAN tags.
fn l2(f: &[u8]) -> Option<(u16, usize)> {
    let mut proto = be16(f, 12)?;
    let mut off = 14;
    if proto == frame::ETH_P_8021Q || proto == frame::ETH_P_8021AD {
        proto = be16(f, off + 2)?;
        off += 4;
        if proto == frame::ETH_P_8021Q {
            proto = be16(f, off + 2)?;
            off += 4;
        }
    }
    Some((proto, off))
}

fn ipv4(p: &[u8], off: usize) -> Option<Result<IpView<'_>, Counter>> {
    if *p.get(off + 9)? != IPPROTO_VRRP {
        return None;
    }
    let vihl = p[off];
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < 20 {
        return Some(Err(Counter::BadLength));
    }
    let total = usize::from(be16(p, off + 2)?);
    if be16(p, off + 6)? & 0x3fff != 0 {
        return Some(Err(Counter::Fragment));
    }
    if total < ihl || total > MAX_VRRP_PACKET || off + total > p.len() {
        return Some(Err(Counter::BadLength));
    }
    let a = off + 12;
    Some(Ok(IpView {
        src: IpAddr::V4(Ipv4Addr::new(p[a], p[a + 1], p[a + 2], p[a + 3])),
        dst: IpAddr::V4(Ipv4Addr::new(p[a + 4], p[a + 5], p[a + 6], p[a + 7])),
        ttl: p[off + 8],
        msg: &p[off + ihl..off + total],
    }))
}

fn ipv6(p: &[u8], off: usize) -> Option<Result<IpView<'_>, Counter>> {
    if *p.get(off + 6)? != IPPROTO_VRRP {
        return None;
    }
    let payload = usize::from(be16(p, off + 4)?);
    let ttl = *p.get(off + 7)?;
    if payload > MAX_VRRP_PACKET || off + 40 + payload > p.len() {
        return Some(Err(Counter::BadLength));
    }
    let addr = |at: usize| {
        let mut o = [0u8; 16];
        o.copy_from_slice(&p[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Some(Ok(IpView {
        src: addr(off + 8),
        dst: addr(off + 24),
        ttl,
        msg: &p[off + 40..off + 40 + payload],
    }))
}

fn counter_for(e: &DecodeError) -> Counter {
    match e {
        DecodeError::Truncated { .. } | DecodeError::TooLong(_) | DecodeError::MixedFamilies => {
            Counter::BadLength
        }
        DecodeError::BadVersion { .. } => Counter::BadVersion,
        DecodeError::BadType(_) => Counter::BadType,
        DecodeError::ZeroAddrCount => Counter::BadAddrCount,
        DecodeError::ZeroInterval => Counter::BadInterval,
        DecodeError::BadChecksum => Counter::BadChecksum,
    }
}

fn octets16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&v4.octets());
            o
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The checks after the IP header, in the kernel's order.
pub fn classify_ip(
    ip: &IpView<'_>,
    ifindex: u32,
    ts_ns: u64,
    vrids: &impl VridTable,
) -> Result<AdvertEvent, Counter> {
    let ipv4 = ip.src.is_ipv4();
    let family = if ipv4 { FAMILY_IPV4 } else { FAMILY_IPV6 };
    let header = packet::peek_header(ip.msg, ipv4).map_err(|e| counter_for(&e))?;
    let cfg = vrids
        .lookup(&VridKey::new(ifindex, family, header.vrid))
        .ok_or(Counter::UnknownVrid)?;
    if cfg.flags & VRID_FLAG_CHECK_TTL != 0 && ip.ttl != VRRP_TTL {
        return Err(Counter::BadTtl);
    }
    let (advert, form) = packet::decode(ip.msg, ip.src, ip.dst).map_err(|e| counter_for(&e))?;
    if form == ChecksumForm::V3OldUnicast && cfg.flags & VRID_FLAG_OLD_CHECKSUM == 0 {
        return Err(Counter::BadChecksum);
    }
    if advert.version == Version::V2 {
        if advert.auth.type_code() != cfg.auth_type {
            return Err(Counter::BadAuth);
        }
        if cfg.auth_type == packet::AUTH_PASS && advert.auth.data() != cfg.auth_data {
            return Err(Counter::BadAuth);
        }
        if cfg.v2_interval_s != 0 && advert.interval_cs != u16::from(cfg.v2_interval_s) * 100 {
            return Err(Counter::BadInterval);
        }
    }

    let mut ev = AdvertEvent::zeroed();
    ev.ts_ns = ts_ns;
    ev.ifindex = ifindex;
    ev.family = family;
    ev.version = advert.version.number();
    ev.vrid = advert.vrid;
    ev.priority = advert.priority;
    ev.interval_cs = advert.interval_cs;
    ev.addr_count = header.addr_count;
    ev.auth_type = advert.auth.type_code();
    ev.checksum_form = form as u8;
    ev.ttl = ip.ttl;
    ev.auth_data = advert.auth.data();
    ev.src = octets16(ip.src);
    ev.dst = octets16(ip.dst);
    let mut at = 0;
    for a in &advert.addrs {
        let bytes = octets16(*a);
        let len = if ipv4 { 4 } else { 16 };
        if at + len > EVENT_ADDR_BYTES {
            ev.flags |= EVENT_FLAG_ADDRS_TRUNCATED;
            break;
        }
        ev.addrs[at..at + len].copy_from_slice(&bytes[..len]);
        at += len;
    }
    ev.addr_bytes = at as u16;
    if !ip.dst.is_multicast() {
        ev.flags |= EVENT_FLAG_UNICAST;
    }
    Ok(ev)
}
