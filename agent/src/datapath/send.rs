//! The raw IP sockets VRRP adverts leave through: the sending half of the
//! datapath.
//!
//! One [`AdvertSender`] per interface, family, source and destination set.
//! The socket is set up the way keepalived's is, so peers cannot tell the
//! difference:
//!
//! * IPv4: `SOCK_RAW`/112, TTL and multicast TTL 255, TOS 0xc0, no DF bit
//!   (the kernel numbers the IP IDs), bound to the source address;
//! * IPv6: `SOCK_RAW`/112, unicast and multicast hop limit 255, traffic
//!   class 0xc0, bound to the source (a link-local address with the
//!   interface as scope). `IPV6_CHECKSUM` stays off: VRRPv3 carries its own
//!   checksum, computed with the pseudo-header by [`crate::packet::encode`];
//! * both: `SO_BINDTODEVICE`, multicast interface = the interface,
//!   multicast loop off, priority TC_PRIO_CONTROL.
//!
//! Reception is the eBPF datapath's job, so the socket must never queue
//! input: a classic BPF "drop all" filter is attached before anything else.
//! The socket still joins the VRRP group on the interface, because a real
//! NIC's multicast filter only lets through groups someone joined, and XDP
//! sits behind that filter.
//!
//! Instances with the same interface, source and destinations share one
//! socket ([`SenderPool`]); the adverts falling due together leave in one
//! `sendmmsg(2)` ([`AdvertSender::send_many`]). Sending never blocks: a full
//! socket buffer drops the advert (the next interval sends another) and is
//! reported.

use std::{
    cell::RefCell,
    collections::HashMap,
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd,
    rc::{Rc, Weak},
};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockFilter, Socket, Type};
use thiserror::Error;
use xvrrpd_common::{IPPROTO_VRRP, MAX_MESSAGE_LEN, VRRP_TTL};

use crate::{
    packet::{Advert, Auth, V3Ipv4Checksum, Version, checksum},
    vrrp::RouterConfig,
};

/// The VRRP IPv4 multicast group (RFC 9568 §5.1.1.2).
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The VRRP IPv6 multicast group (RFC 9568 §5.1.2.2).
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// DSCP CS6 ("internetwork control"), as keepalived marks adverts.
const TOS_CONTROL: u32 = 0xc0;
/// TC_PRIO_CONTROL: first out of the qdisc when the link is busy.
const PRIO_CONTROL: u32 = 7;
const CHECKSUM_AT: usize = 6;

/// Where adverts go.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AdvertDest {
    /// A multicast group: [`VRRP_GROUP_V4`] / [`VRRP_GROUP_V6`] or a
    /// configured one.
    Multicast(IpAddr),
    /// keepalived's `unicast_peer` list.
    Unicast(Vec<IpAddr>),
}

impl AdvertDest {
    /// The standard VRRP group of a family.
    pub fn vrrp_group(ipv6: bool) -> Self {
        AdvertDest::Multicast(if ipv6 {
            IpAddr::V6(VRRP_GROUP_V6)
        } else {
            IpAddr::V4(VRRP_GROUP_V4)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdvertTxError {
    #[error(
        "invalid advert destination: {0}; fix the unicast_peer / multicast group configuration"
    )]
    InvalidDest(String),
    #[error(
        "cannot set up the advert socket on ifindex {ifindex} ({step}): {reason} (xvrrpd needs CAP_NET_RAW and the interface must exist)"
    )]
    Open {
        ifindex: u32,
        step: &'static str,
        reason: String,
    },
    #[error(
        "advert source {src} is not usable on ifindex {ifindex} yet: it must be an address of this host (for IPv6 link-local: one whose DAD has finished; disable DAD or wait for the address event); check unicast_src_ip"
    )]
    SourceNotReady { src: IpAddr, ifindex: u32 },
    #[error(
        "advert bytes do not verify for source {src} and destination {dest}: encode them with AdvertSender::source() and AdvertSender::encode_destination()"
    )]
    BadChecksum { src: IpAddr, dest: IpAddr },
    #[error("an advert of {0} bytes is not a VRRP message (8 to {MAX_MESSAGE_LEN} bytes)")]
    BadLength(usize),
    #[error("the advert socket on ifindex {ifindex} is full: this advert to {dest} was dropped")]
    WouldBlock { ifindex: u32, dest: IpAddr },
    #[error(
        "sending the advert to {dest} on ifindex {ifindex} failed: {reason} ({sent} of {total} destinations sent; is the link up?)"
    )]
    Send {
        dest: IpAddr,
        ifindex: u32,
        reason: String,
        sent: usize,
        total: usize,
    },
}

/// Sends pre-encoded VRRP messages from one source to one destination set.
pub struct AdvertSender {
    sock: Socket,
    ifindex: u32,
    join_ifindex: u32,
    source: IpAddr,
    dests: Vec<(IpAddr, SockAddr)>,
    multicast: bool,
    unicast_ttl: u8,
}

impl AdvertSender {
    /// Opens and configures the socket. `source` must be an address of this
    /// host on `ifindex` (the primary IPv4 address or `unicast_src_ip`; for
    /// IPv6 multicast, a link-local address). Does not need a runtime.
    pub fn open(ifindex: u32, source: IpAddr, dest: AdvertDest) -> Result<Self, AdvertTxError> {
        Self::open_with_ttl(ifindex, source, dest, VRRP_TTL)
    }

    /// [`AdvertSender::open`] with unicast adverts sent with `unicast_ttl`
    /// (keepalived's `unicast_ttl`, for peers behind routers); multicast
    /// always goes with 255.
    pub fn open_with_ttl(
        ifindex: u32,
        source: IpAddr,
        dest: AdvertDest,
        unicast_ttl: u8,
    ) -> Result<Self, AdvertTxError> {
        Self::open_on(ifindex, ifindex, source, dest, unicast_ttl)
    }

    /// [`AdvertSender::open_with_ttl`], sending on `ifindex` and joining the
    /// group on `join_ifindex`: with a VMAC the adverts leave from the
    /// macvlan, but the group is joined on its base, where they are
    /// received, so the membership report never carries the virtual MAC.
    pub fn open_on(
        ifindex: u32,
        join_ifindex: u32,
        source: IpAddr,
        dest: AdvertDest,
        unicast_ttl: u8,
    ) -> Result<Self, AdvertTxError> {
        let v6 = source.is_ipv6();
        let (targets, multicast) = match dest {
            AdvertDest::Multicast(g) => {
                if !g.is_multicast() || g.is_ipv6() != v6 {
                    return Err(AdvertTxError::InvalidDest(format!(
                        "{g} is not a multicast group of the source's family ({source})"
                    )));
                }
                (vec![g], true)
            }
            AdvertDest::Unicast(peers) => {
                if peers.is_empty() {
                    return Err(AdvertTxError::InvalidDest(
                        "the unicast peer list is empty".into(),
                    ));
                }
                if let Some(p) = peers
                    .iter()
                    .find(|p| p.is_ipv6() != v6 || p.is_multicast() || p.is_unspecified())
                {
                    return Err(AdvertTxError::InvalidDest(format!(
                        "peer {p} is not a unicast address of the source's family ({source})"
                    )));
                }
                (peers, false)
            }
        };
        if source.is_unspecified() || source.is_multicast() {
            return Err(AdvertTxError::InvalidDest(format!(
                "{source} cannot be a source"
            )));
        }
        let sock = open_socket(
            (ifindex, join_ifindex),
            source,
            &targets,
            multicast,
            unicast_ttl,
        )?;
        let dests = targets
            .into_iter()
            .map(|d| (d, sock_addr(d, ifindex)))
            .collect();
        Ok(AdvertSender {
            sock,
            ifindex,
            join_ifindex,
            source,
            dests,
            multicast,
            unicast_ttl,
        })
    }

    /// Where this socket's adverts go, as it was opened with.
    pub fn dest(&self) -> AdvertDest {
        if self.multicast {
            AdvertDest::Multicast(self.dests[0].0)
        } else {
            AdvertDest::Unicast(self.dests.iter().map(|(d, _)| *d).collect())
        }
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The source to encode adverts with.
    pub fn source(&self) -> IpAddr {
        self.source
    }

    /// The destination to encode adverts with (the group, or the first
    /// unicast peer; the sender fixes the checksum for the other peers).
    pub fn encode_destination(&self) -> IpAddr {
        self.dests[0].0
    }

    pub fn destinations(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.dests.iter().map(|(d, _)| *d)
    }

    pub fn is_multicast(&self) -> bool {
        self.multicast
    }

    /// Sends `msg` (from [`crate::packet::encode`] with [`source`] and
    /// [`encode_destination`]) to every destination; returns how many it
    /// reached. When the checksum covers the pseudo-header (VRRPv3), it is
    /// recomputed for each further unicast peer. Never blocks.
    ///
    /// [`source`]: Self::source
    /// [`encode_destination`]: Self::encode_destination
    pub fn send(&self, msg: &[u8]) -> Result<usize, AdvertTxError> {
        self.send_many(&[msg])
            .pop()
            .unwrap_or(Err(AdvertTxError::BadLength(0)))
    }

    /// [`AdvertSender::send`] for several messages (the adverts of the
    /// instances sharing this socket that fall due together), in one
    /// `sendmmsg(2)`: one result per message, in order.
    pub fn send_many(&self, msgs: &[&[u8]]) -> Vec<Result<usize, AdvertTxError>> {
        // Per message: its bytes for each destination (the first as
        // given, further unicast peers with their own checksum).
        let mut results: Vec<Result<usize, AdvertTxError>> = Vec::with_capacity(msgs.len());
        let mut copies: Vec<Vec<u8>> = Vec::new();
        // (message index, destination index, copy index or none)
        let mut plan: Vec<(usize, usize, Option<usize>)> = Vec::new();
        for (m, msg) in msgs.iter().enumerate() {
            match self.per_destination(msg, &mut copies) {
                Ok(first_copy) => {
                    for d in 0..self.dests.len() {
                        let copy = (d > 0).then_some(first_copy).flatten().map(|c| c + d - 1);
                        plan.push((m, d, copy));
                    }
                    results.push(Ok(0));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        let mut iovs: Vec<libc::iovec> = plan
            .iter()
            .map(|&(m, _, copy)| {
                let bytes: &[u8] = match copy {
                    Some(c) => &copies[c],
                    None => msgs[m],
                };
                libc::iovec {
                    iov_base: bytes.as_ptr() as *mut libc::c_void,
                    iov_len: bytes.len(),
                }
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = plan
            .iter()
            .zip(iovs.iter_mut())
            .map(|(&(_, d, _), iov)| {
                let addr = &self.dests[d].1;
                // SAFETY: an all-zero msghdr is valid (no control data).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = addr.len();
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let mut done = 0;
        while done < hdrs.len() {
            let left = &mut hdrs[done..];
            // SAFETY: every header points at an iovec, bytes and an address
            // that live until the call returns; the socket is ours.
            let n = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    left.as_mut_ptr(),
                    left.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                for &(m, _, _) in &plan[done..done + n as usize] {
                    if let Some(Ok(sent)) = results.get_mut(m) {
                        *sent += 1;
                    }
                }
                done += n as usize;
                continue;
            }
            // The first unsent one failed: it is reported and skipped.
            let err = io::Error::last_os_error();
            let (m, d, _) = plan[done];
            let dest = self.dests[d].0;
            if let Some(r) = results.get_mut(m) {
                let sent = *r.as_ref().unwrap_or(&0);
                if r.is_ok() {
                    *r = Err(if err.kind() == io::ErrorKind::WouldBlock {
                        AdvertTxError::WouldBlock {
                            ifindex: self.ifindex,
                            dest,
                        }
                    } else {
                        AdvertTxError::Send {
                            dest,
                            ifindex: self.ifindex,
                            reason: err.to_string(),
                            sent,
                            total: self.dests.len(),
                        }
                    });
                }
            }
            done += 1;
        }
        results
    }

    /// Checks `msg` against this socket's source and first destination and
    /// appends its bytes for every further destination to `copies` (a
    /// pseudo-header checksum differs per unicast peer); returns the index
    /// of the first copy, if any.
    fn per_destination(
        &self,
        msg: &[u8],
        copies: &mut Vec<Vec<u8>>,
    ) -> Result<Option<usize>, AdvertTxError> {
        let len = msg.len();
        if !(8..=MAX_MESSAGE_LEN).contains(&len) {
            return Err(AdvertTxError::BadLength(len));
        }
        let first = self.encode_destination();
        let v3 = msg[0] >> 4 == 3;
        let pseudo =
            v3 && checksum::verifies(msg, checksum::pseudo_header_sum(self.source, first, len));
        // IPv6 has no message-only form; the old unicast form (the group in
        // the pseudo-header) is the same for every peer, as the plain one.
        let same_for_all = !pseudo
            && self.source.is_ipv4()
            && (checksum::verifies(msg, 0)
                || checksum::verifies(
                    msg,
                    checksum::pseudo_header_sum(
                        self.source,
                        crate::packet::old_unicast_checksum_group(),
                        len,
                    ),
                ));
        if !pseudo && !same_for_all {
            return Err(AdvertTxError::BadChecksum {
                src: self.source,
                dest: first,
            });
        }
        if self.dests.len() < 2 {
            return Ok(None);
        }
        let at = copies.len();
        for (dest, _) in &self.dests[1..] {
            let mut b = msg.to_vec();
            if pseudo {
                b[CHECKSUM_AT..CHECKSUM_AT + 2].fill(0);
                let c = checksum::compute(&b, checksum::pseudo_header_sum(self.source, *dest, len));
                b[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&c.to_be_bytes());
            }
            copies.push(b);
        }
        Ok(Some(at))
    }
}

fn sock_addr(ip: IpAddr, ifindex: u32) -> SockAddr {
    match ip {
        IpAddr::V4(a) => SockAddr::from(SocketAddrV4::new(a, 0)),
        IpAddr::V6(a) => {
            // Link-scoped destinations (ff02::12, fe80::/10 peers) need the
            // interface as their scope.
            let link_scoped =
                a.segments()[0] & 0xffc0 == 0xfe80 || a.segments()[0] & 0xff0f == 0xff02;
            SockAddr::from(SocketAddrV6::new(
                a,
                0,
                0,
                if link_scoped { ifindex } else { 0 },
            ))
        }
    }
}

fn open_socket(
    (ifindex, join_ifindex): (u32, u32),
    source: IpAddr,
    targets: &[IpAddr],
    multicast: bool,
    unicast_ttl: u8,
) -> Result<Socket, AdvertTxError> {
    let v6 = source.is_ipv6();
    let err = |step: &'static str| {
        move |e: io::Error| AdvertTxError::Open {
            ifindex,
            step,
            reason: e.to_string(),
        }
    };
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let sock = Socket::new(
        domain,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )
    .map_err(err("socket"))?;
    // First, so nothing is ever queued: `ret 0` drops every packet.
    sock.attach_filter(&[SockFilter::new(0x06, 0, 0, 0)])
        .map_err(err("SO_ATTACH_FILTER"))?;
    sock.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
    // Packets that arrived before the filter was attached.
    let mut drain = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    for _ in 0..1024 {
        if sock.recv(&mut drain).is_err() {
            break;
        }
    }
    let name = crate::net::link::ifname_by_index(ifindex).map_err(|e| AdvertTxError::Open {
        ifindex,
        step: "interface name",
        reason: e.to_string(),
    })?;
    sock.bind_device(Some(name.as_bytes()))
        .map_err(err("SO_BINDTODEVICE"))?;
    let ttl = u32::from(VRRP_TTL);
    let unicast = u32::from(unicast_ttl);
    if v6 {
        sock.set_unicast_hops_v6(unicast)
            .map_err(err("IPV6_UNICAST_HOPS"))?;
        sock.set_multicast_hops_v6(ttl)
            .map_err(err("IPV6_MULTICAST_HOPS"))?;
        sock.set_multicast_if_v6(ifindex)
            .map_err(err("IPV6_MULTICAST_IF"))?;
        sock.set_multicast_loop_v6(false)
            .map_err(err("IPV6_MULTICAST_LOOP"))?;
        sock.set_tclass_v6(TOS_CONTROL)
            .map_err(err("IPV6_TCLASS"))?;
        // Off is the default for a non-ICMPv6 raw socket; say so anyway so
        // the kernel never overwrites the VRRP checksum.
        setsockopt_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, -1)
            .map_err(err("IPV6_CHECKSUM"))?;
        let _ = sock.set_multicast_all_v6(false);
    } else {
        sock.set_ttl_v4(unicast).map_err(err("IP_TTL"))?;
        sock.set_multicast_ttl_v4(ttl)
            .map_err(err("IP_MULTICAST_TTL"))?;
        set_multicast_if_v4_index(&sock, ifindex).map_err(err("IP_MULTICAST_IF"))?;
        sock.set_multicast_loop_v4(false)
            .map_err(err("IP_MULTICAST_LOOP"))?;
        sock.set_tos_v4(TOS_CONTROL).map_err(err("IP_TOS"))?;
        // No DF bit and kernel-numbered IDs, like keepalived's adverts.
        setsockopt_int(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )
        .map_err(err("IP_MTU_DISCOVER"))?;
        let _ = sock.set_multicast_all_v4(false);
    }
    // Needs CAP_NET_ADMIN; without it adverts keep the TOS-derived priority.
    let _ = sock.set_priority(PRIO_CONTROL);
    let bind_to = match source {
        IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, 0)),
        IpAddr::V6(a) => {
            let scope = if a.segments()[0] & 0xffc0 == 0xfe80 {
                ifindex
            } else {
                0
            };
            SocketAddr::V6(SocketAddrV6::new(a, 0, 0, scope))
        }
    };
    sock.bind(&bind_to.into()).map_err(|e| {
        if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
            AdvertTxError::SourceNotReady {
                src: source,
                ifindex,
            }
        } else {
            err("bind to the source")(e)
        }
    })?;
    if multicast {
        for g in targets {
            match g {
                IpAddr::V4(g) => {
                    sock.join_multicast_v4_n(g, &InterfaceIndexOrAddress::Index(join_ifindex))
                }
                IpAddr::V6(g) => sock.join_multicast_v6(g, join_ifindex),
            }
            .map_err(err("joining the multicast group"))?;
        }
    }
    Ok(sock)
}

fn setsockopt_int(
    sock: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a valid int and its size to a socket this code owns.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// IP_MULTICAST_IF by interface index (`ip_mreqn`), which works whatever
/// addresses the interface has.
fn set_multicast_if_v4_index(sock: &Socket, ifindex: u32) -> io::Result<()> {
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as libc::c_int,
    };
    // SAFETY: passes a valid ip_mreqn and its size to a socket this code owns.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreq as *const libc::ip_mreqn).cast(),
            size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Why an advert did not leave.
#[derive(Debug, Error)]
pub enum OutletError {
    #[error("cannot encode the advert: {0}")]
    Encode(#[from] crate::packet::EncodeError),
    #[error(transparent)]
    Send(#[from] AdvertTxError),
}

/// Advert sockets shared by the instances with the same interface, source
/// and destinations: their adverts of one wake-up leave in one
/// `sendmmsg(2)` ([`AdvertSender::send_many`]). A socket lives as long as
/// an instance uses it.
#[derive(Default)]
pub struct SenderPool {
    open: RefCell<HashMap<SenderKey, Weak<AdvertSender>>>,
}

/// Interfaces (sending, joining), source, destinations and unicast TTL.
type SenderKey = ((u32, u32), IpAddr, AdvertDest, u8);

impl SenderPool {
    /// The socket for `ifindex`, `source`, `dest` and unicast TTL: the one
    /// instances already share, or a new one ([`AdvertSender::open_with_ttl`]).
    pub fn get(
        &self,
        ifindex: u32,
        source: IpAddr,
        dest: AdvertDest,
        unicast_ttl: u8,
    ) -> Result<Rc<AdvertSender>, AdvertTxError> {
        self.get_on((ifindex, ifindex), source, dest, unicast_ttl)
    }

    /// [`SenderPool::get`] for a socket that sends on one interface and
    /// joins the group on another ([`AdvertSender::open_on`]).
    pub fn get_on(
        &self,
        ifindexes: (u32, u32),
        source: IpAddr,
        dest: AdvertDest,
        unicast_ttl: u8,
    ) -> Result<Rc<AdvertSender>, AdvertTxError> {
        let mut open = self.open.borrow_mut();
        open.retain(|_, s| s.strong_count() > 0);
        let key = (ifindexes, source, dest, unicast_ttl);
        if let Some(s) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(s);
        }
        let s = Rc::new(AdvertSender::open_on(
            key.0.0,
            key.0.1,
            key.1,
            key.2.clone(),
            key.3,
        )?);
        open.insert(key, Rc::downgrade(&s));
        Ok(s)
    }
}

/// An encoded advert and the socket it leaves through.
pub type Encoded<'a> = (Rc<AdvertSender>, &'a [u8]);

/// A master's priority-0 advert and where it goes, self-contained, so that
/// another process (the warden) can send it for a daemon that died without
/// its shutdown: the backup then takes over after its Skew_Time instead of
/// a whole Master_Down_Interval.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Farewell {
    pub ifindex: u32,
    pub join_ifindex: u32,
    pub source: IpAddr,
    pub dest: AdvertDest,
    pub unicast_ttl: u8,
    /// The VRRP message, encoded for `source` and the first destination.
    pub message: Vec<u8>,
    /// The instance's datapath entry (ifindex, family, VRID): its fence
    /// lease ends with the farewell, as with the daemon's own.
    pub vrid: (u32, u8, u8),
    /// The advert interval the master sent at, centiseconds.
    pub interval_cs: u16,
}

impl Farewell {
    /// The instance's datapath key.
    pub fn vrid_key(&self) -> xvrrpd_common::VridKey {
        let (ifindex, family, vrid) = self.vrid;
        xvrrpd_common::VridKey::new(ifindex, family, vrid)
    }

    /// Its socket, set up as the daemon's was: the one `pool` already holds
    /// for the same interface, source and destinations, or a new one.
    pub fn open(&self, pool: &SenderPool) -> Result<Rc<AdvertSender>, AdvertTxError> {
        pool.get_on(
            (self.ifindex, self.join_ifindex),
            self.source,
            self.dest.clone(),
            self.unicast_ttl,
        )
    }

    /// Sends the farewells through `pool`'s sockets (opened beforehand, so
    /// that sending is all that is left to do; opened now otherwise): one
    /// result per farewell, in order.
    pub fn send_all(
        farewells: &[&Farewell],
        pool: &SenderPool,
    ) -> Vec<Result<usize, AdvertTxError>> {
        farewells
            .iter()
            .map(|f| f.open(pool).and_then(|s| s.send(&f.message)))
            .collect()
    }
}

/// Outlet generations, unique in the process: an outlet made anew (a
/// reload) never repeats one an earlier outlet had.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// One instance's way out: its socket (none while the interface has no
/// source address) and its encoded advert, encoded again only when the
/// priority or the interval changes.
pub struct Outlet {
    sender: Option<Rc<AdvertSender>>,
    checksum: V3Ipv4Checksum,
    cached: Option<((u8, u16), Vec<u8>)>,
    /// Changes with the socket or the encoding (see [`Outlet::generation`]).
    generation: u64,
}

impl Outlet {
    pub fn new(sender: Option<Rc<AdvertSender>>, checksum: V3Ipv4Checksum) -> Self {
        Self {
            sender,
            checksum,
            cached: None,
            generation: next_generation(),
        }
    }

    /// Changes whenever the socket or the encoded advert does: what was
    /// made from the outlet at one generation holds until the next.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn sender(&self) -> Option<&AdvertSender> {
        self.sender.as_deref()
    }

    /// The socket, for an outlet with another configuration.
    pub fn take_sender(&mut self) -> Option<Rc<AdvertSender>> {
        self.cached = None;
        self.generation = next_generation();
        self.sender.take()
    }

    /// A new socket (or none): the cached bytes carried the old source.
    pub fn set_sender(&mut self, sender: Option<Rc<AdvertSender>>) {
        self.sender = sender;
        self.cached = None;
        self.generation = next_generation();
    }

    /// The checksum its adverts are encoded with.
    pub fn checksum(&self) -> V3Ipv4Checksum {
        self.checksum
    }

    /// Encodes from now on with `checksum` (a peer's advert showed which
    /// one it expects).
    pub fn set_checksum(&mut self, checksum: V3Ipv4Checksum) {
        if self.checksum != checksum {
            self.checksum = checksum;
            self.cached = None;
            self.generation = next_generation();
        }
    }

    /// The bytes [`Outlet::encoded`] made last.
    pub fn last_encoded(&self) -> Option<&[u8]> {
        self.cached.as_ref().map(|(_, b)| b.as_slice())
    }

    /// The priority-0 advert `router` would send at `interval_cs`, with
    /// its socket's addresses ([`Farewell`]); `None` without a socket.
    pub fn farewell(
        &self,
        router: &RouterConfig,
        interval_cs: u16,
        vrid: xvrrpd_common::VridKey,
    ) -> Result<Option<Farewell>, OutletError> {
        let Some(sender) = self.sender.as_deref() else {
            return Ok(None);
        };
        let message = crate::packet::encode(
            &Self::advert(router, 0, interval_cs),
            sender.source(),
            sender.encode_destination(),
            self.checksum,
        )?;
        Ok(Some(Farewell {
            ifindex: sender.ifindex,
            join_ifindex: sender.join_ifindex,
            source: sender.source,
            dest: sender.dest(),
            unicast_ttl: sender.unicast_ttl,
            message,
            vrid: (vrid.ifindex, vrid.family, vrid.vrid),
            interval_cs,
        }))
    }

    fn advert(router: &RouterConfig, priority: u8, interval_cs: u16) -> Advert {
        Advert {
            version: router.version,
            vrid: router.vrid,
            priority,
            interval_cs,
            addrs: router.vips.clone(),
            auth: match router.version {
                Version::V2 => router.auth,
                Version::V3 => Auth::None,
            },
        }
    }

    /// The advert `router` describes with `priority` and `interval_cs`, and
    /// the socket it goes out on (shared: see [`SenderPool`]); `None` when
    /// there is no socket to send it on.
    pub fn encoded(
        &mut self,
        router: &RouterConfig,
        priority: u8,
        interval_cs: u16,
    ) -> Result<Option<Encoded<'_>>, OutletError> {
        let Some(sender) = self.sender.clone() else {
            return Ok(None);
        };
        let key = (priority, interval_cs);
        if self.cached.as_ref().is_none_or(|(k, _)| *k != key) {
            let advert = Self::advert(router, priority, interval_cs);
            let bytes = crate::packet::encode(
                &advert,
                sender.source(),
                sender.encode_destination(),
                self.checksum,
            )?;
            self.cached = Some((key, bytes));
            self.generation = next_generation();
        }
        let bytes = self.cached.as_ref().map_or(&[][..], |(_, b)| b.as_slice());
        Ok(Some((sender, bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_checked_before_any_socket_is_opened() {
        let v4: IpAddr = "192.0.2.11".parse().expect("literal");
        let v6: IpAddr = "fe80::1".parse().expect("literal");
        for (src, dest) in [
            (
                v4,
                AdvertDest::Multicast("192.0.2.12".parse().expect("literal")),
            ),
            (v4, AdvertDest::Multicast(IpAddr::V6(VRRP_GROUP_V6))),
            (v6, AdvertDest::vrrp_group(false)),
            (v4, AdvertDest::Unicast(vec![])),
            (v4, AdvertDest::Unicast(vec![v6])),
            (v4, AdvertDest::Unicast(vec![IpAddr::V4(VRRP_GROUP_V4)])),
        ] {
            assert!(
                matches!(
                    AdvertSender::open(1, src, dest.clone()),
                    Err(AdvertTxError::InvalidDest(_))
                ),
                "{src} -> {dest:?} accepted"
            );
        }
    }

    #[test]
    fn link_scoped_destinations_carry_the_interface() {
        let a = sock_addr(IpAddr::V6(VRRP_GROUP_V6), 7);
        assert_eq!(a.as_socket_ipv6().map(|s| s.scope_id()), Some(7));
        let g = sock_addr("2001:db8::12".parse().expect("literal"), 7);
        assert_eq!(g.as_socket_ipv6().map(|s| s.scope_id()), Some(0));
    }
}
