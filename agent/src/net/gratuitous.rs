//! Gratuitous ARP and unsolicited neighbour advertisements for VIPs.
//!
//! Both go out as complete Ethernet frames on one AF_PACKET socket per
//! interface, as keepalived sends them:
//!
//! * ARP: a request with sender = target = VIP, to ff:ff:ff:ff:ff:ff, from
//!   the interface MAC, target hardware address broadcast.
//! * NA (RFC 4861 §7.2.6): ICMPv6 type 136 from the VIP to ff02::1, hop
//!   limit 255, Override set, Router set when the interface forwards IPv6
//!   (a host that sees R=0 for its gateway drops it from its router list),
//!   and a target link-layer address option.
//!
//! Why a packet socket for NA rather than a raw ICMPv6 socket: the NA must
//! come from the VIP itself (as the kernel's own unsolicited NA does). A raw
//! ICMPv6 socket only sends from addresses the kernel considers usable (not
//! tentative), its packets pass ip6tables OUTPUT where a host firewall may
//! drop them, and it buys nothing here. A full frame depends on nothing but
//! the link, and one socket and one code path serve both families, as in
//! keepalived.
//!
//! The socket is opened with protocol 0, so the kernel never queues received
//! frames on it.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use thiserror::Error;
use tokio::{io::unix::AsyncFd, time::Instant};

use crate::packet::{
    checksum,
    frame::{ETH_P_ARP, ETH_P_IPV6},
};

/// Ethernet header + ARP for IPv4 over Ethernet.
pub const GARP_FRAME_LEN: usize = 14 + 28;
/// Ethernet + IPv6 header + NA (24) + target link-layer address option (8).
pub const NA_FRAME_LEN: usize = 14 + 40 + 32;

const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// ff02::1 maps to 33:33:00:00:00:01 (RFC 2464 §7).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ARPOP_REQUEST: u16 = 1;
const ARPHRD_ETHER: u16 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_OPT_TARGET_LINKADDR: u8 = 2;
const NA_FLAG_ROUTER: u8 = 0x80;
const NA_FLAG_OVERRIDE: u8 = 0x20;

/// The gratuitous ARP keepalived sends for `vip` from `mac`.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mut f = [0u8; GARP_FRAME_LEN];
    f[0..6].copy_from_slice(&BROADCAST_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    let a = &mut f[14..];
    a[0..2].copy_from_slice(&ARPHRD_ETHER.to_be_bytes());
    a[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
    a[4] = 6;
    a[5] = 4;
    a[6..8].copy_from_slice(&ARPOP_REQUEST.to_be_bytes());
    a[8..14].copy_from_slice(&mac);
    a[14..18].copy_from_slice(&vip.octets());
    a[18..24].copy_from_slice(&BROADCAST_MAC);
    a[24..28].copy_from_slice(&vip.octets());
    f
}

/// An unsolicited neighbour advertisement for `vip` from `mac`.
pub fn unsolicited_na_frame(mac: [u8; 6], vip: Ipv6Addr, router: bool) -> [u8; NA_FRAME_LEN] {
    let mut f = [0u8; NA_FRAME_LEN];
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let ip = &mut f[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = IPPROTO_ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&vip.octets());
    ip[24..40].copy_from_slice(&ALL_NODES.octets());
    let icmp = &mut f[54..];
    icmp[0] = ND_NEIGHBOR_ADVERT;
    icmp[4] = NA_FLAG_OVERRIDE | if router { NA_FLAG_ROUTER } else { 0 };
    icmp[8..24].copy_from_slice(&vip.octets());
    icmp[24] = ND_OPT_TARGET_LINKADDR;
    icmp[25] = 1; // in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let pseudo = checksum::sum(&vip.octets())
        + checksum::sum(&ALL_NODES.octets())
        + 32
        + u32::from(IPPROTO_ICMPV6);
    let c = checksum::compute(icmp, pseudo);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GratuitousError {
    #[error(
        "cannot open a packet socket on ifindex {ifindex}: {reason} (xvrrpd needs CAP_NET_RAW and the interface must exist)"
    )]
    Open { ifindex: u32, reason: String },
    #[error(
        "ifindex {ifindex} is not an Ethernet link (hardware type {hatype}, address length {halen}): gratuitous ARP and NA need a 6-byte MAC"
    )]
    NotEthernet {
        ifindex: u32,
        hatype: u16,
        halen: u8,
    },
    #[error(
        "sending the {what} for {addr} on ifindex {ifindex} failed: {reason}; {sent} of {total} frames went out (is the link up?)"
    )]
    Send {
        what: &'static str,
        addr: IpAddr,
        ifindex: u32,
        reason: String,
        sent: usize,
        total: usize,
    },
}

/// Sends gratuitous ARP / unsolicited NA on one interface.
pub struct GratuitousSender {
    fd: AsyncFd<Socket>,
    ifindex: u32,
    to_arp: SockAddr,
    to_ipv6: SockAddr,
    router: Option<bool>,
}

impl GratuitousSender {
    /// Opens the packet socket on `ifindex`. Call inside a tokio runtime.
    pub fn new(ifindex: u32) -> Result<Self, GratuitousError> {
        let open = |e: io::Error| GratuitousError::Open {
            ifindex,
            reason: e.to_string(),
        };
        // Protocol 0: the socket is on no receive list.
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0))).map_err(open)?;
        sock.bind(&link_addr(ifindex, 0, [0; 6])).map_err(open)?;
        sock.set_nonblocking(true).map_err(open)?;
        let s = GratuitousSender {
            fd: super::async_fd(sock).map_err(open)?,
            ifindex,
            to_arp: link_addr(ifindex, ETH_P_ARP, BROADCAST_MAC),
            to_ipv6: link_addr(ifindex, ETH_P_IPV6, ALL_NODES_MAC),
            router: None,
        };
        s.mac()?;
        Ok(s)
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface's MAC now (read on every batch: a bond or an
    /// administrator may change it).
    pub fn mac(&self) -> Result<[u8; 6], GratuitousError> {
        let addr = self
            .fd
            .get_ref()
            .local_addr()
            .map_err(|e| GratuitousError::Open {
                ifindex: self.ifindex,
                reason: e.to_string(),
            })?;
        // SAFETY: the socket is AF_PACKET, so its name is a sockaddr_ll;
        // the storage is larger than one and zero-filled past the length.
        let ll: libc::sockaddr_ll = unsafe { std::ptr::read_unaligned(addr.as_ptr().cast()) };
        if ll.sll_hatype != ARPHRD_ETHER || ll.sll_halen != 6 {
            return Err(GratuitousError::NotEthernet {
                ifindex: self.ifindex,
                hatype: ll.sll_hatype,
                halen: ll.sll_halen,
            });
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&ll.sll_addr[..6]);
        Ok(mac)
    }

    /// Fixes the NA Router flag (`Some`), or follows the interface's
    /// `net.ipv6.conf.<if>.forwarding` read at each batch (`None`, the
    /// default, as keepalived and the kernel do).
    pub fn set_router_flag(&mut self, router: Option<bool>) {
        self.router = router;
    }

    /// One gratuitous ARP per IPv4 and one NA per IPv6 address, back to
    /// back. Returns the number of frames sent. A failure does not stop the
    /// rest; the first one is returned.
    pub async fn send_for(&self, addrs: &[IpAddr]) -> Result<usize, GratuitousError> {
        self.send_spaced(addrs, Duration::ZERO, Duration::ZERO)
            .await
    }

    /// Like [`send_for`](Self::send_for), with at least `garp_interval`
    /// between two ARPs and `gna_interval` between two NAs on this
    /// interface (keepalived's `vrrp_garp_interval` / `vrrp_gna_interval`).
    pub async fn send_spaced(
        &self,
        addrs: &[IpAddr],
        garp_interval: Duration,
        gna_interval: Duration,
    ) -> Result<usize, GratuitousError> {
        let mac = self.mac()?;
        let router = addrs.iter().any(IpAddr::is_ipv6)
            && self.router.unwrap_or_else(|| ipv6_forwarding(self.ifindex));
        let mut sent = 0;
        let mut first_err = None;
        let mut last_arp: Option<Instant> = None;
        let mut last_na: Option<Instant> = None;
        let mut buf = [0u8; NA_FRAME_LEN];
        for addr in addrs {
            let (len, to, what, last, gap) = match addr {
                IpAddr::V4(v4) => {
                    buf[..GARP_FRAME_LEN].copy_from_slice(&garp_frame(mac, *v4));
                    (
                        GARP_FRAME_LEN,
                        &self.to_arp,
                        "gratuitous ARP",
                        &mut last_arp,
                        garp_interval,
                    )
                }
                IpAddr::V6(v6) => {
                    buf.copy_from_slice(&unsolicited_na_frame(mac, *v6, router));
                    (
                        NA_FRAME_LEN,
                        &self.to_ipv6,
                        "neighbour advertisement",
                        &mut last_na,
                        gna_interval,
                    )
                }
            };
            if let Some(t) = *last
                && !gap.is_zero()
            {
                tokio::time::sleep_until(t + gap).await;
            }
            match self.send_frame(&buf[..len], to).await {
                Ok(()) => sent += 1,
                Err(e) => {
                    first_err.get_or_insert((what, *addr, e.to_string()));
                }
            }
            *last = Some(Instant::now());
        }
        match first_err {
            None => Ok(sent),
            Some((what, addr, reason)) => Err(GratuitousError::Send {
                what,
                addr,
                ifindex: self.ifindex,
                reason,
                sent,
                total: addrs.len(),
            }),
        }
    }

    async fn send_frame(&self, frame: &[u8], to: &SockAddr) -> io::Result<()> {
        // Bounded: a socket that stays full for a second is reported.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match self.fd.get_ref().send_to(frame, to) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut guard = tokio::time::timeout_at(deadline, self.fd.writable())
                        .await
                        .map_err(|_| {
                            io::Error::new(
                                io::ErrorKind::TimedOut,
                                "socket send buffer stayed full",
                            )
                        })??;
                    guard.clear_ready();
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A `sockaddr_ll` for `ifindex`.
fn link_addr(ifindex: u32, protocol: u16, dst: [u8; 6]) -> SockAddr {
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = protocol.to_be();
    ll.sll_ifindex = ifindex as i32;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&dst);
    let mut storage = socket2::SockAddrStorage::zeroed();
    // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_ll,
    // and the length given is exactly sockaddr_ll's.
    unsafe {
        *storage.view_as::<libc::sockaddr_ll>() = ll;
        SockAddr::new(
            storage,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    }
}

/// Whether the interface forwards IPv6 (then NAs carry the Router flag).
fn ipv6_forwarding(ifindex: u32) -> bool {
    let Ok(name) = super::link::ifname_by_index(ifindex) else {
        return false;
    };
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{name}/forwarding"))
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    #[test]
    fn garp_is_keepalived_request_form() {
        let f = garp_frame(MAC, Ipv4Addr::new(192, 0, 2, 100));
        #[rustfmt::skip]
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst: broadcast
            0x02, 0, 0, 0, 0, 0x01,             // src: interface MAC
            0x08, 0x06,                         // ARP
            0x00, 0x01, 0x08, 0x00, 6, 4,       // Ethernet / IPv4
            0x00, 0x01,                         // request
            0x02, 0, 0, 0, 0, 0x01, 192, 0, 2, 100, // sender = VIP
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 192, 0, 2, 100, // target = VIP
        ];
        assert_eq!(f, want);
    }

    /// RFC 1071 sum written out independently of `packet::checksum`.
    fn naive_checksum(words: &[u8]) -> u16 {
        let mut s: u64 = 0;
        for c in words.chunks(2) {
            s += u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn na_fields_and_checksum() {
        let vip: Ipv6Addr = "2001:db8::100".parse().expect("literal");
        let f = unsolicited_na_frame(MAC, vip, false);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        let ip = &f[14..54];
        assert_eq!(ip[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 32, "payload length");
        assert_eq!((ip[6], ip[7]), (58, 255), "ICMPv6, hop limit 255");
        assert_eq!(&ip[8..24], &vip.octets(), "source = VIP");
        assert_eq!(&ip[24..40], &ALL_NODES.octets());
        let icmp = &f[54..];
        assert_eq!((icmp[0], icmp[1]), (136, 0));
        assert_eq!(icmp[4], 0x20, "Override only");
        assert_eq!(&icmp[8..24], &vip.octets(), "target = VIP");
        assert_eq!(&icmp[24..32], &[2, 1, 0x02, 0, 0, 0, 0, 0x01]);

        let mut pseudo = Vec::new();
        pseudo.extend(vip.octets());
        pseudo.extend(ALL_NODES.octets());
        pseudo.extend(32u32.to_be_bytes());
        pseudo.extend([0, 0, 0, 58]);
        let mut zeroed = icmp.to_vec();
        zeroed[2..4].copy_from_slice(&[0, 0]);
        pseudo.extend(zeroed);
        assert_eq!(
            u16::from_be_bytes([icmp[2], icmp[3]]),
            naive_checksum(&pseudo)
        );

        let r = unsolicited_na_frame(MAC, vip, true);
        assert_eq!(r[54 + 4], 0xa0, "Router and Override");
        assert_ne!(
            r[54 + 2..54 + 4],
            f[54 + 2..54 + 4],
            "checksum covers the flags"
        );
    }
}
