//! Link and address state from netlink notifications (never polling), and
//! look-ups of interfaces and advert source addresses.
//!
//! [`LinkWatcher`] subscribes to RTNLGRP_LINK (and the IPv4/IPv6 address
//! groups) before it dumps the tables, so no change can fall between the
//! dump and the notifications. It keeps the state and reports only real
//! changes. When the kernel drops notifications (receive buffer overrun) it
//! dumps again and reports the difference, so the runtime never acts on a
//! stale view.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use netlink_packet_core::NlasIterator;
use thiserror::Error;

use super::{
    addr::{AddrInfo, is_ipv6_link_local},
    nl::{
        self, NLM_F_DUMP_INTR, NlError, NlSocket, RTM_DELADDR, RTM_DELLINK, RTM_GETADDR,
        RTM_GETLINK, RTM_GETQDISC, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWQDISC, RTNLGRP_IPV4_IFADDR,
        RTNLGRP_IPV6_IFADDR, RTNLGRP_LINK, Recv,
    },
};

const IFF_UP: u32 = 1 << 0;
const IFF_RUNNING: u32 = 1 << 6;
const IFF_NOARP: u32 = 1 << 7;
const IFF_LOWER_UP: u32 = 1 << 16;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFINFOMSG_LEN: usize = 16;
/// Notifications arrive in bursts (a bond failing over, 100 VIPs added);
/// a large buffer makes overruns rare, and they are recovered anyway.
const WATCH_RCVBUF: usize = 4 << 20;
const QUERY_RCVBUF: usize = 1 << 20;

/// The state of one link, as reported by the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    pub ifindex: u32,
    pub name: String,
    /// Operationally up: administratively up and running (`IFF_UP` and
    /// `IFF_RUNNING`, which follows RFC 2863 oper state).
    pub up: bool,
    /// `IFF_UP`: set up by the administrator.
    pub admin_up: bool,
    /// `IFF_LOWER_UP`: the driver sees a carrier.
    pub carrier: bool,
    /// The hardware address, when it is a 6-byte Ethernet MAC.
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// All `IFF_*` flags.
    pub flags: u32,
}

impl LinkEvent {
    /// `IFF_NOARP`: no ARP / neighbour discovery on this link, so no
    /// gratuitous ARP or NA either.
    pub fn noarp(&self) -> bool {
        self.flags & IFF_NOARP != 0
    }

    /// Parses an `ifinfomsg` payload; `None` for other families (bridge
    /// port messages carry `AF_BRIDGE` and partial data).
    pub(crate) fn parse(payload: &[u8]) -> Option<LinkEvent> {
        let h = payload.get(..IFINFOMSG_LEN)?;
        if h[0] != libc::AF_UNSPEC as u8 {
            return None;
        }
        let ifindex = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
        let flags = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        let mut name = None;
        let mut mac = None;
        let mut mtu = None;
        for nla in NlasIterator::new(&payload[IFINFOMSG_LEN..]) {
            let Ok(nla) = nla else { break };
            let v = nla.value();
            match nla.kind() {
                IFLA_IFNAME => name = Some(nl::nla_string(v)),
                IFLA_ADDRESS => mac = <[u8; 6]>::try_from(v).ok(),
                IFLA_MTU if v.len() == 4 => {
                    mtu = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
                }
                _ => {}
            }
        }
        Some(LinkEvent {
            ifindex,
            name: name.unwrap_or_default(),
            up: flags & IFF_UP != 0 && flags & IFF_RUNNING != 0,
            admin_up: flags & IFF_UP != 0,
            carrier: flags & IFF_LOWER_UP != 0,
            mac,
            mtu,
            flags,
        })
    }
}

/// One change seen by [`LinkWatcher`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetEvent {
    /// A link appeared, or its name, up state, MAC, MTU or flags changed.
    Link(LinkEvent),
    /// A link was deleted (or moved to another namespace).
    LinkRemoved { ifindex: u32, name: String },
    /// An address appeared, or its flags changed (e.g. IPv6 DAD finished).
    Addr(AddrInfo),
    /// An address went away.
    AddrRemoved(AddrInfo),
    /// A full dump has been applied: the state is complete. Sent once after
    /// start and again after each recovery from an overrun.
    Synced,
}

/// What [`LinkWatcher`] follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    Links,
    LinksAndAddresses,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    #[error(
        "no interface named {0:?} in this network namespace: check `interface` in the configuration"
    )]
    NoSuchName(String),
    #[error(
        "no interface with index {0}: it was removed or renumbered; it must exist again before use"
    )]
    NoSuchIndex(u32),
    #[error("link state: {0}")]
    Netlink(#[from] NlError),
    #[error("route lookup: {0}")]
    NoRoute(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Links(u32),
    Addrs(u32),
}

/// Follows links (and addresses) through netlink notifications.
pub struct LinkWatcher {
    sock: NlSocket,
    watch: Watch,
    links: BTreeMap<u32, LinkEvent>,
    /// Per link, in the kernel's order (the first IPv4 primary is the
    /// advert source keepalived would pick).
    addrs: BTreeMap<u32, Vec<AddrInfo>>,
    queue: VecDeque<NetEvent>,
    phase: Phase,
    redump: bool,
    interrupted: bool,
    seen_links: HashSet<u32>,
    seen_addrs: HashSet<(u32, IpAddr, u8)>,
    overruns: u64,
}

impl LinkWatcher {
    /// Subscribes; the first [`next`](Self::next) calls return the current
    /// state (one `Link` per link, then `Addr`s, then `Synced`). Call inside
    /// a tokio runtime.
    pub fn new(watch: Watch) -> Result<Self, LinkError> {
        Self::with_receive_buffer(watch, WATCH_RCVBUF)
    }

    /// Like [`new`](Self::new) with a chosen socket receive buffer in bytes
    /// (keepalived's `vrrp_netlink_monitor_rcv_bufs`). Smaller buffers
    /// overrun sooner; overruns are repaired by a new dump either way.
    pub fn with_receive_buffer(watch: Watch, bytes: usize) -> Result<Self, LinkError> {
        let groups: &[u32] = match watch {
            Watch::Links => &[RTNLGRP_LINK],
            Watch::LinksAndAddresses => &[RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR],
        };
        Ok(LinkWatcher {
            sock: NlSocket::open(groups, bytes)?,
            watch,
            links: BTreeMap::new(),
            addrs: BTreeMap::new(),
            queue: VecDeque::new(),
            phase: Phase::Idle,
            redump: true,
            interrupted: false,
            seen_links: HashSet::new(),
            seen_addrs: HashSet::new(),
            overruns: 0,
        })
    }

    /// The next change. Cancel-safe (use it in `select!`): nothing read is
    /// lost when the future is dropped. An error is transient; call again.
    pub async fn next(&mut self) -> Result<NetEvent, LinkError> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Ok(e);
            }
            if self.phase == Phase::Idle && self.redump {
                self.redump = false;
                self.interrupted = false;
                self.seen_links.clear();
                let seq = self.sock.start_dump(RTM_GETLINK, &[0u8; IFINFOMSG_LEN])?;
                self.phase = Phase::Links(seq);
            }
            match self.sock.recv().await? {
                Recv::Overrun => {
                    self.overruns += 1;
                    self.redump = true;
                }
                Recv::Datagram(len) => self.handle_datagram(len)?,
            }
        }
    }

    /// How many times the kernel dropped notifications (each was repaired
    /// by a new dump).
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// The last known state of a link.
    pub fn link(&self, ifindex: u32) -> Option<&LinkEvent> {
        self.links.get(&ifindex)
    }

    /// Every known link.
    pub fn links(&self) -> impl Iterator<Item = &LinkEvent> {
        self.links.values()
    }

    /// The addresses of a link, in the kernel's order (needs
    /// [`Watch::LinksAndAddresses`]).
    pub fn addrs(&self, ifindex: u32) -> &[AddrInfo] {
        self.addrs.get(&ifindex).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether any link has the address `a`.
    pub fn has_addr(&self, a: IpAddr) -> bool {
        self.addrs.values().flatten().any(|x| x.addr == a)
    }

    /// The advert source keepalived would pick on this link.
    pub fn primary_ipv4(&self, ifindex: u32) -> Option<Ipv4Addr> {
        primary_ipv4(self.addrs(ifindex))
    }

    /// A usable (DAD finished) IPv6 link-local address of this link.
    pub fn ipv6_link_local(&self, ifindex: u32) -> Option<Ipv6Addr> {
        ipv6_link_local(self.addrs(ifindex))
    }

    fn handle_datagram(&mut self, len: usize) -> Result<(), LinkError> {
        enum Item {
            NewLink(u32, LinkEvent),
            DelLink(LinkEvent),
            NewAddr(u32, AddrInfo),
            DelAddr(AddrInfo),
            Done(u32),
            Failed(u32, NlError),
            Interrupted,
        }
        let mut items = Vec::new();
        for m in self.sock.messages(len) {
            match m {
                nl::Msg::Data {
                    seq,
                    kind,
                    flags,
                    payload,
                } => {
                    if flags & NLM_F_DUMP_INTR != 0 {
                        items.push(Item::Interrupted);
                    }
                    match kind {
                        RTM_NEWLINK => {
                            items.extend(LinkEvent::parse(payload).map(|l| Item::NewLink(seq, l)))
                        }
                        RTM_DELLINK => items.extend(LinkEvent::parse(payload).map(Item::DelLink)),
                        RTM_NEWADDR => {
                            items.extend(AddrInfo::parse(payload).map(|a| Item::NewAddr(seq, a)))
                        }
                        RTM_DELADDR => items.extend(AddrInfo::parse(payload).map(Item::DelAddr)),
                        _ => {}
                    }
                }
                nl::Msg::Done { seq } => items.push(Item::Done(seq)),
                nl::Msg::Ack {
                    seq,
                    errno,
                    message,
                } if errno != 0 => {
                    items.push(Item::Failed(seq, NlError::Kernel { errno, message }));
                }
                nl::Msg::Ack { .. } => {}
            }
        }
        let mut failure = None;
        for item in items {
            match item {
                Item::NewLink(seq, l) => {
                    if self.phase == Phase::Links(seq) {
                        self.seen_links.insert(l.ifindex);
                    }
                    self.apply_link(l);
                }
                Item::DelLink(l) => self.remove_link(l.ifindex, l.name),
                Item::NewAddr(seq, a) => {
                    if self.watch == Watch::Links {
                        continue;
                    }
                    if self.phase == Phase::Addrs(seq) {
                        self.seen_addrs.insert((a.ifindex, a.addr, a.prefix_len));
                    }
                    self.apply_addr(a);
                }
                Item::DelAddr(a) => {
                    if self.watch == Watch::LinksAndAddresses {
                        self.remove_addr(&a);
                    }
                }
                Item::Interrupted => self.interrupted = true,
                Item::Done(seq) => self.dump_done(seq)?,
                Item::Failed(seq, e) => {
                    if matches!(self.phase, Phase::Links(s) | Phase::Addrs(s) if s == seq) {
                        self.phase = Phase::Idle;
                        self.redump = true;
                        failure.get_or_insert(e);
                    }
                }
            }
        }
        // Reported after the rest of the datagram is applied, so nothing in
        // it is lost; the dump is retried on the next call.
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    fn dump_done(&mut self, seq: u32) -> Result<(), LinkError> {
        match self.phase {
            Phase::Links(s) if s == seq => {
                let gone: Vec<(u32, String)> = self
                    .links
                    .values()
                    .filter(|l| !self.seen_links.contains(&l.ifindex))
                    .map(|l| (l.ifindex, l.name.clone()))
                    .collect();
                for (ifindex, name) in gone {
                    self.remove_link(ifindex, name);
                }
                if self.watch == Watch::LinksAndAddresses {
                    self.seen_addrs.clear();
                    self.phase = Phase::Addrs(self.sock.start_dump(RTM_GETADDR, &[0u8; 8])?);
                } else {
                    self.finish_dump();
                }
            }
            Phase::Addrs(s) if s == seq => {
                let gone: Vec<AddrInfo> = self
                    .addrs
                    .values()
                    .flatten()
                    .filter(|a| !self.seen_addrs.contains(&(a.ifindex, a.addr, a.prefix_len)))
                    .cloned()
                    .collect();
                for a in gone {
                    self.remove_addr(&a);
                }
                self.finish_dump();
            }
            _ => {}
        }
        Ok(())
    }

    fn finish_dump(&mut self) {
        self.phase = Phase::Idle;
        // A table that changed while it was dumped is dumped again before
        // the state is called complete.
        if self.interrupted {
            self.redump = true;
        } else {
            self.queue.push_back(NetEvent::Synced);
        }
    }

    fn apply_link(&mut self, l: LinkEvent) {
        if self.links.get(&l.ifindex) != Some(&l) {
            self.links.insert(l.ifindex, l.clone());
            self.queue.push_back(NetEvent::Link(l));
        }
    }

    fn remove_link(&mut self, ifindex: u32, name: String) {
        if self.links.remove(&ifindex).is_some() {
            // The kernel reports the addresses' removal too; drop any it
            // did not so the state stays true.
            for a in self.addrs.remove(&ifindex).unwrap_or_default() {
                self.queue.push_back(NetEvent::AddrRemoved(a));
            }
            self.queue
                .push_back(NetEvent::LinkRemoved { ifindex, name });
        }
    }

    fn apply_addr(&mut self, a: AddrInfo) {
        let list = self.addrs.entry(a.ifindex).or_default();
        match list
            .iter_mut()
            .find(|x| x.addr == a.addr && x.prefix_len == a.prefix_len)
        {
            Some(old) => {
                // Lifetimes count down on every dump: not a change.
                let changed = old.flags != a.flags
                    || old.label != a.label
                    || old.peer != a.peer
                    || old.scope != a.scope
                    || old.proto != a.proto
                    || old.preferred_lft.is_some_and(|p| p > 0)
                        != a.preferred_lft.is_some_and(|p| p > 0);
                *old = a.clone();
                if changed {
                    self.queue.push_back(NetEvent::Addr(a));
                }
            }
            None => {
                list.push(a.clone());
                self.queue.push_back(NetEvent::Addr(a));
            }
        }
    }

    fn remove_addr(&mut self, a: &AddrInfo) {
        if let Some(list) = self.addrs.get_mut(&a.ifindex)
            && let Some(i) = list
                .iter()
                .position(|x| x.addr == a.addr && x.prefix_len == a.prefix_len)
        {
            let old = list.remove(i);
            self.queue.push_back(NetEvent::AddrRemoved(old));
        }
    }
}

/// The first primary IPv4 address that xvrrpd did not add: the advert
/// source keepalived would pick.
pub fn primary_ipv4(addrs: &[AddrInfo]) -> Option<Ipv4Addr> {
    addrs.iter().find_map(|a| match a.addr {
        IpAddr::V4(v4) if !a.is_secondary() && !a.is_marked() => Some(v4),
        _ => None,
    })
}

/// The first IPv6 link-local address whose DAD has finished.
pub fn ipv6_link_local(addrs: &[AddrInfo]) -> Option<Ipv6Addr> {
    addrs.iter().find_map(|a| match a.addr {
        IpAddr::V6(v6) if is_ipv6_link_local(&v6) && !a.is_tentative() => Some(v6),
        _ => None,
    })
}

/// The index of the interface called `name` in this network namespace.
pub fn ifindex_by_name(name: &str) -> Result<u32, LinkError> {
    nix::net::if_::if_nametoindex(name).map_err(|_| LinkError::NoSuchName(name.to_owned()))
}

/// The name of interface `ifindex` in this network namespace.
pub fn ifname_by_index(ifindex: u32) -> Result<String, LinkError> {
    let name =
        nix::net::if_::if_indextoname(ifindex).map_err(|_| LinkError::NoSuchIndex(ifindex))?;
    Ok(name.to_string_lossy().into_owned())
}

/// The driver behind `ifname` (`veth`, `virtio_net`, `mlx5_core`, …), as
/// `ethtool -i` names it; `None` when the interface does not say.
pub fn driver(ifname: &str) -> Option<String> {
    // struct ethtool_drvinfo (include/uapi/linux/ethtool.h): no crate
    // offers this ioctl, and ethtool's netlink API has no driver name.
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    if ifname.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: all-zero is a valid value of both plain C structs.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    // SAFETY: as above.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: a datagram socket we close below, used only for this ioctl.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: SIOCETHTOOL with a valid ifreq whose data points at `info`,
    // which outlives the call.
    let r = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut req) };
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    if r < 0 {
        return None;
    }
    let len = info.driver.iter().position(|b| *b == 0).unwrap_or(32);
    let name = String::from_utf8_lossy(&info.driver[..len]).into_owned();
    (!name.is_empty()).then_some(name)
}

/// One link's state, from a fresh dump.
pub async fn link_state(ifindex: u32) -> Result<LinkEvent, LinkError> {
    let mut sock = NlSocket::open(&[], QUERY_RCVBUF)?;
    let mut found = None;
    sock.dump(RTM_GETLINK, &[0u8; IFINFOMSG_LEN], |kind, payload| {
        if kind == RTM_NEWLINK
            && let Some(l) = LinkEvent::parse(payload)
            && l.ifindex == ifindex
        {
            found = Some(l);
        }
    })
    .await?;
    found.ok_or(LinkError::NoSuchIndex(ifindex))
}

/// The interfaces of this network namespace that have a `clsact` qdisc
/// (where TC filters can hang), from one dump.
pub async fn with_clsact() -> Result<Vec<u32>, LinkError> {
    use netlink_packet_core::Parseable;
    use netlink_packet_route::tc::{TcAttribute, TcMessage};
    // struct tcmsg: family, padding, ifindex, handle, parent, info.
    const TCMSG_LEN: usize = 20;
    let mut sock = NlSocket::open(&[], QUERY_RCVBUF)?;
    let mut found = Vec::new();
    sock.dump(RTM_GETQDISC, &[0u8; TCMSG_LEN], |kind, payload| {
        if kind == RTM_NEWQDISC
            && let Ok(m) = TcMessage::parse(payload)
            && m.attributes
                .iter()
                .any(|a| matches!(a, TcAttribute::Kind(k) if k == "clsact"))
            && let Ok(ifindex) = u32::try_from(m.header.index)
            && !found.contains(&ifindex)
        {
            found.push(ifindex);
        }
    })
    .await?;
    Ok(found)
}

/// Where the kernel routes to `dst` (in `vrf`'s table when given, as `ip
/// route get DST vrf VRF` asks): the interface the packets leave by.
pub async fn route_to(dst: IpAddr, vrf: Option<u32>) -> Result<u32, LinkError> {
    use netlink_packet_core::{Emitable, Parseable};
    use netlink_packet_route::{
        AddressFamily,
        route::{RouteAddress, RouteAttribute, RouteMessage},
    };
    let mut m = RouteMessage::default();
    let (family, bits) = match dst {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    m.header.address_family = family;
    m.header.destination_prefix_length = bits;
    m.attributes.push(RouteAttribute::Destination(match dst {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }));
    if let Some(vrf) = vrf {
        m.attributes.push(RouteAttribute::Oif(vrf));
    }
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf);
    let mut sock = NlSocket::open(&[], QUERY_RCVBUF)?;
    let answer = sock.get(super::nl::RTM_GETROUTE, &buf).await?;
    let reply = RouteMessage::parse(answer.as_slice()).map_err(|e| {
        LinkError::NoRoute(format!("{dst}: the kernel's answer did not parse ({e})"))
    })?;
    reply
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        })
        .ok_or_else(|| LinkError::NoRoute(format!("{dst}: the route names no interface")))
}

/// The addresses of one link, from a fresh dump, in the kernel's order.
/// Use [`primary_ipv4`] and [`ipv6_link_local`] on the result to pick an
/// advert source.
pub async fn interface_addrs(ifindex: u32) -> Result<Vec<AddrInfo>, LinkError> {
    let mut sock = NlSocket::open(&[], QUERY_RCVBUF)?;
    Ok(super::addr::dump_addrs(&mut sock, ifindex).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifinfo(family: u8, index: u32, flags: u32, name: &str, mac: &[u8]) -> Vec<u8> {
        let mut p = vec![family, 0, 1, 0];
        p.extend(index.to_ne_bytes());
        p.extend(flags.to_ne_bytes());
        p.extend(0u32.to_ne_bytes());
        let mut nla = |kind: u16, v: &[u8]| {
            p.extend(((4 + v.len()) as u16).to_ne_bytes());
            p.extend(kind.to_ne_bytes());
            p.extend(v);
            while !p.len().is_multiple_of(4) {
                p.push(0);
            }
        };
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        nla(IFLA_IFNAME, &n);
        nla(IFLA_ADDRESS, mac);
        nla(IFLA_MTU, &1500u32.to_ne_bytes());
        p
    }

    #[test]
    fn link_messages_parse_up_state_and_mac() {
        let mac = [2, 0, 0, 0, 0, 1];
        let l = LinkEvent::parse(&ifinfo(
            0,
            7,
            IFF_UP | IFF_RUNNING | IFF_LOWER_UP,
            "eth0",
            &mac,
        ))
        .expect("parses");
        assert_eq!(
            (l.ifindex, l.name.as_str(), l.up, l.admin_up),
            (7, "eth0", true, true)
        );
        assert_eq!(l.mac, Some(mac));
        assert_eq!(l.mtu, Some(1500));
        let l = LinkEvent::parse(&ifinfo(0, 7, IFF_UP, "eth0", &mac)).expect("parses");
        assert!(!l.up && l.admin_up && !l.carrier);
        // A tunnel's 4-byte hardware address is no MAC.
        let l = LinkEvent::parse(&ifinfo(0, 8, IFF_UP, "gre1", &[1, 2, 3, 4])).expect("parses");
        assert_eq!(l.mac, None);
    }

    #[test]
    fn bridge_port_messages_are_ignored() {
        assert!(
            LinkEvent::parse(&ifinfo(libc::AF_BRIDGE as u8, 7, IFF_UP, "eth0", &[0; 6])).is_none()
        );
        assert!(LinkEvent::parse(&[0; 8]).is_none());
    }

    fn addr(a: &str, flags: u32, proto: Option<u8>) -> AddrInfo {
        AddrInfo {
            ifindex: 2,
            addr: a.parse().expect("literal"),
            prefix_len: 24,
            peer: None,
            label: None,
            scope: super::super::addr::Scope::Global,
            flags,
            proto,
            valid_lft: None,
            preferred_lft: None,
        }
    }

    #[test]
    fn source_selection_skips_vips_secondaries_and_tentative() {
        let list = vec![
            addr(
                "198.51.100.7",
                0,
                Some(super::super::addr::XVRRPD_IFA_PROTO),
            ),
            addr("192.0.2.100", 0x01, None),
            addr("192.0.2.11", 0, None),
            addr("fe80::1", 0x40, None),
            addr("fe80::2", 0, None),
        ];
        assert_eq!(primary_ipv4(&list), Some(Ipv4Addr::new(192, 0, 2, 11)));
        assert_eq!(
            ipv6_link_local(&list),
            Some("fe80::2".parse().expect("literal"))
        );
    }
}
