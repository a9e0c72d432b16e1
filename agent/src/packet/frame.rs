//! Building Ethernet / IP frames around a VRRP message.
//!
//! Used to craft packets for the eBPF tests and benchmarks, for the junk
//! floods, and for anything that sends full frames on a packet socket.

use std::net::IpAddr;

use xvrrpd_common::{IPPROTO_VRRP, VRRP_TTL};

use super::checksum;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// The multicast MAC an IP multicast destination maps to (RFC 1112 / RFC 2464).
pub fn multicast_mac(dst: IpAddr) -> Option<[u8; 6]> {
    match dst {
        IpAddr::V4(a) if a.is_multicast() => {
            let o = a.octets();
            Some([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
        }
        IpAddr::V6(a) if a.is_multicast() => {
            let o = a.octets();
            Some([0x33, 0x33, o[12], o[13], o[14], o[15]])
        }
        _ => None,
    }
}

/// VRRP's virtual router MAC for `vrid` (RFC 9568 §7.3).
pub fn virtual_router_mac(ipv4: bool, vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if ipv4 { 0x01 } else { 0x02 }, vrid]
}

/// An IPv4 packet (20-byte header plus `options`, padded to 4 bytes).
pub fn ipv4_packet(
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    proto: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let opt_len = options.len().div_ceil(4) * 4;
    let ihl = 20 + opt_len;
    let total = ihl + payload.len();
    let mut p = Vec::with_capacity(total);
    p.push(0x40 | (ihl / 4) as u8);
    p.push(0xc0); // DSCP CS6, as keepalived sends
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]); // id, flags, fragment offset
    p.push(ttl);
    p.push(proto);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(options);
    p.resize(ihl, 0);
    let c = checksum::compute(&p, 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet with no extension headers.
pub fn ipv6_packet(
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
    next: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend_from_slice(&[0x6e, 0x00, 0x00, 0x00]); // version 6, traffic class CS6
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(next);
    p.push(hop_limit);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// An Ethernet frame; `vlans` are outermost first (an outer tag of a two-tag
/// stack uses 802.1ad).
pub fn ethernet(dst: [u8; 6], src: [u8; 6], vlans: &[u16], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * vlans.len() + l3.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for (i, vid) in vlans.iter().enumerate() {
        let tpid = if vlans.len() > 1 && i == 0 {
            ETH_P_8021AD
        } else {
            ETH_P_8021Q
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

/// A full VRRP frame as a router would send it: virtual MAC source, multicast
/// (or given unicast) destination.
#[derive(Clone, Debug)]
pub struct VrrpFrame {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub vlans: Vec<u16>,
    pub vrid: u8,
}

impl VrrpFrame {
    pub fn new(src: IpAddr, dst: IpAddr, vrid: u8) -> Self {
        Self {
            src,
            dst,
            ttl: VRRP_TTL,
            vlans: Vec::new(),
            vrid,
        }
    }

    /// Wraps a VRRP message (or any bytes, for junk) in IP and Ethernet.
    pub fn build(&self, message: &[u8]) -> Vec<u8> {
        let dst_mac = multicast_mac(self.dst).unwrap_or([0x02, 0, 0, 0, 0, 0x01]);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let l3 = ipv4_packet(s.octets(), d.octets(), self.ttl, IPPROTO_VRRP, &[], message);
                ethernet(
                    dst_mac,
                    virtual_router_mac(true, self.vrid),
                    &self.vlans,
                    ETH_P_IP,
                    &l3,
                )
            }
            (s, d) => {
                let l3 = ipv6_packet(v6(s), v6(d), self.ttl, IPPROTO_VRRP, message);
                ethernet(
                    dst_mac,
                    virtual_router_mac(false, self.vrid),
                    &self.vlans,
                    ETH_P_IPV6,
                    &l3,
                )
            }
        }
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}
