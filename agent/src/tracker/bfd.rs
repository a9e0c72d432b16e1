//! `bfd_instance`: BFD sessions to neighbours over UDP (RFC 5881 single
//! hop on port 3784, RFC 5883 multihop on 4784), one task for all of them
//! as keepalived has one BFD process. The protocol itself is
//! [`crate::bfd`]; this module owns the sockets, the clock and the
//! demultiplexing, and turns each session's Up and Down into a tracker
//! event that `track_bfd` weighs.

use std::{
    io::{self, IoSliceMut},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    num::NonZeroU32,
    os::fd::AsRawFd,
    time::Duration,
};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, oneshot},
};
use tracing::{debug, info, warn};

use super::{TrackerEvent, TrackerHandle};
use crate::{
    bfd::{
        packet::{CONTROL_PORT, ControlPacket, Diag, MULTIHOP_PORT, SessionState},
        session::{Action, Session, SessionConfig},
    },
    clock::monotonic_ns,
    reactor::register_fd,
    vrrp::{TrackState, TrackerId},
};

/// RFC 5881 §4: source ports of control packets.
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// A received TTL is not checked with this `max_hops` (keepalived's rule).
const MAX_HOPS_UNCHECKED: i32 = 255;

/// One `bfd_instance` as the tracker runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdSessionConfig {
    pub id: TrackerId,
    pub name: String,
    pub neighbor: IpAddr,
    pub source: Option<IpAddr>,
    pub session: SessionConfig,
    /// Sent TTL / hop limit.
    pub ttl: u8,
    /// A received TTL more than this below `ttl` is dropped (255: never).
    pub max_hops: i32,
    pub multihop: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BfdError {
    #[error(
        "listening on UDP port {port} ({family}): {source} (does another BFD daemon, \
         keepalived's for one, run in this network namespace?)"
    )]
    Listen {
        port: u16,
        family: &'static str,
        source: io::Error,
    },
    #[error("bfd_instance {name}: opening its socket to {neighbor}: {source}")]
    Sender {
        name: String,
        neighbor: IpAddr,
        source: io::Error,
    },
    #[error("no random discriminator: {0}")]
    Random(io::Error),
}

/// A listening socket: which port, which family.
struct Listener {
    fd: AsyncFd<Socket>,
    multihop: bool,
}

/// A session with its socket and where it sends.
struct Peer {
    cfg: BfdSessionConfig,
    session: Session,
    socket: Socket,
    to: SocketAddr,
}

/// Starts the sessions of `cfgs`; each reports Down until it comes up.
pub fn spawn(
    cfgs: Vec<BfdSessionConfig>,
    tx: mpsc::Sender<TrackerEvent>,
) -> Result<TrackerHandle, BfdError> {
    let mut listeners = Vec::new();
    for (v4, multihop) in [(true, false), (false, false), (true, true), (false, true)] {
        let wanted = cfgs
            .iter()
            .any(|c| c.neighbor.is_ipv4() == v4 && c.multihop == multihop);
        if wanted {
            listeners.push(listen(v4, multihop)?);
        }
    }
    let now = monotonic_ns();
    let mut peers = Vec::new();
    for cfg in cfgs {
        let disc = random_discriminator(&peers)?;
        let socket = sender(&cfg).map_err(|source| BfdError::Sender {
            name: cfg.name.clone(),
            neighbor: cfg.neighbor,
            source,
        })?;
        let port = if cfg.multihop {
            MULTIHOP_PORT
        } else {
            CONTROL_PORT
        };
        peers.push(Peer {
            to: SocketAddr::new(cfg.neighbor, port),
            session: Session::new(cfg.session, disc, now),
            socket,
            cfg,
        });
    }
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(peers, listeners, tx, stop_rx));
    Ok(TrackerHandle::new(stop_tx, task))
}

/// A listening socket on the control (or multihop) port of one family,
/// with the TTL and destination of each datagram.
fn listen(v4: bool, multihop: bool) -> Result<Listener, BfdError> {
    let port = if multihop {
        MULTIHOP_PORT
    } else {
        CONTROL_PORT
    };
    let family = if v4 { "IPv4" } else { "IPv6" };
    let err = |source| BfdError::Listen {
        port,
        family,
        source,
    };
    let (domain, any) = if v4 {
        (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    } else {
        (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    };
    let s = Socket::new(
        domain,
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )
    .map_err(err)?;
    let nix_err = |e: nix::errno::Errno| err(e.into());
    if v4 {
        setsockopt(&s, sockopt::Ipv4RecvTtl, &true).map_err(nix_err)?;
        setsockopt(&s, sockopt::Ipv4PacketInfo, &true).map_err(nix_err)?;
    } else {
        s.set_only_v6(true).map_err(err)?;
        setsockopt(&s, sockopt::Ipv6RecvHopLimit, &true).map_err(nix_err)?;
        setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true).map_err(nix_err)?;
    }
    s.bind(&SocketAddr::new(any, port).into()).map_err(err)?;
    let fd = register_fd(s, Interest::READABLE).map_err(err)?;
    Ok(Listener { fd, multihop })
}

/// The session's own socket: from its source address (or the route's),
/// from a port in RFC 5881's range, with its TTL.
fn sender(cfg: &BfdSessionConfig) -> io::Result<Socket> {
    let v4 = cfg.neighbor.is_ipv4();
    let domain = if v4 { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(
        domain,
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    if v4 {
        s.set_ttl_v4(u32::from(cfg.ttl))?;
    } else {
        s.set_unicast_hops_v6(u32::from(cfg.ttl))?;
    }
    let ip = cfg.source.unwrap_or(if v4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    });
    // Start somewhere in the range (sessions of several daemons spread),
    // then take the first free port.
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let start = random_u32().unwrap_or(0) % span;
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for i in 0..span {
        let port = SOURCE_PORTS.start() + ((start + i) % span) as u16;
        match s.bind(&SocketAddr::new(ip, port).into()) {
            Ok(()) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn random_u32() -> io::Result<u32> {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::from_ne_bytes(b))
}

/// A nonzero discriminator no other session of this daemon has.
fn random_discriminator(peers: &[Peer]) -> Result<NonZeroU32, BfdError> {
    loop {
        let v = random_u32().map_err(BfdError::Random)?;
        if let Some(d) = NonZeroU32::new(v)
            && !peers.iter().any(|p| p.session.local_disc() == d.get())
        {
            return Ok(d);
        }
    }
}

async fn run(
    mut peers: Vec<Peer>,
    listeners: Vec<Listener>,
    tx: mpsc::Sender<TrackerEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut actions = Vec::new();
    let mut buf = [0u8; 512];
    let slot = |i: usize| listeners.get(i);
    loop {
        let now = monotonic_ns();
        for p in &mut peers {
            p.session.poll(now, &mut actions);
            act(p, &mut actions, &tx, now);
        }
        let next = peers.iter().filter_map(|p| p.session.next_deadline()).min();
        let wait = next.map(|d| Duration::from_nanos(d.saturating_sub(monotonic_ns())));
        tokio::select! {
            // Silence, as keepalived stops: the neighbours detect it within
            // their detection time and their tracking reacts. An AdminDown
            // would keep them from reacting at all (RFC 5882 §3.2).
            _ = &mut stop => return,
            _ = sleep_for(wait) => {}
            r = readable(slot(0)) => receive(r, slot(0), &mut peers, &mut buf, &mut actions, &tx),
            r = readable(slot(1)) => receive(r, slot(1), &mut peers, &mut buf, &mut actions, &tx),
            r = readable(slot(2)) => receive(r, slot(2), &mut peers, &mut buf, &mut actions, &tx),
            r = readable(slot(3)) => receive(r, slot(3), &mut peers, &mut buf, &mut actions, &tx),
        }
    }
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Waits until `l` is readable; never resolves without a listener.
async fn readable(l: Option<&Listener>) -> io::Result<()> {
    match l {
        Some(l) => {
            let mut g = l.fd.readable().await?;
            g.clear_ready();
            Ok(())
        }
        None => std::future::pending().await,
    }
}

/// Reads what `l` has queued (bounded) and hands each packet to its session.
fn receive(
    ready: io::Result<()>,
    l: Option<&Listener>,
    peers: &mut [Peer],
    buf: &mut [u8],
    actions: &mut Vec<Action>,
    tx: &mpsc::Sender<TrackerEvent>,
) {
    let Some(l) = l else {
        return;
    };
    if let Err(e) = ready {
        warn!("BFD: waiting on a socket: {e}");
        return;
    }
    for _ in 0..256 {
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<SockaddrStorage>(
            l.fd.get_ref().as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN) => return,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                debug!("BFD: receiving: {e}");
                return;
            }
        };
        let len = msg.bytes;
        let (mut ttl, mut dst) = (None, None);
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::Ipv4Ttl(t) => ttl = Some(t),
                    ControlMessageOwned::Ipv6HopLimit(h) => ttl = Some(h),
                    ControlMessageOwned::Ipv4PacketInfo(pi) => {
                        dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr))));
                    }
                    ControlMessageOwned::Ipv6PacketInfo(pi) => {
                        dst = Some(IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
        }
        let src = msg.address.as_ref().and_then(|a| {
            a.as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        });
        let Some(src) = src else {
            continue;
        };
        let pkt = match ControlPacket::decode(&buf[..len]) {
            Ok(p) => p,
            Err(e) => {
                debug!("BFD: dropped a packet from {src}: {e}");
                continue;
            }
        };
        let now = monotonic_ns();
        let Some(p) = find_peer(peers, &pkt, src, dst, l.multihop) else {
            debug!(
                "BFD: dropped a packet from {src}: no session (your discriminator {:#x})",
                pkt.your_disc
            );
            continue;
        };
        if let Some(ttl) = ttl
            && p.cfg.max_hops != MAX_HOPS_UNCHECKED
            && ttl + p.cfg.max_hops < i32::from(p.cfg.ttl)
        {
            debug!(
                "bfd_instance {}: dropped a packet from {src} with TTL {ttl} (at least {} wanted)",
                p.cfg.name,
                i32::from(p.cfg.ttl) - p.cfg.max_hops
            );
            continue;
        }
        p.session.receive(&pkt, now, actions);
        act(p, actions, tx, now);
    }
}

/// RFC 5880 §6.3: by our discriminator once the neighbour knows it, else
/// by the addresses.
fn find_peer<'a>(
    peers: &'a mut [Peer],
    pkt: &ControlPacket,
    src: IpAddr,
    dst: Option<IpAddr>,
    multihop: bool,
) -> Option<&'a mut Peer> {
    peers.iter_mut().find(|p| {
        if pkt.your_disc != 0 {
            p.session.local_disc() == pkt.your_disc
        } else {
            p.cfg.multihop == multihop
                && p.cfg.neighbor == src
                && p.cfg.source.is_none_or(|s| Some(s) == dst)
        }
    })
}

/// Carries out a session's actions: packets to the neighbour, state
/// changes to the instances.
fn act(p: &mut Peer, actions: &mut Vec<Action>, tx: &mpsc::Sender<TrackerEvent>, now: u64) {
    for a in actions.drain(..) {
        match a {
            Action::Send(pkt) => {
                if let Err(e) = p.socket.send_to(&pkt.encode(), &p.to.into()) {
                    debug!("bfd_instance {}: sending to {}: {e}", p.cfg.name, p.to);
                }
            }
            Action::Up => {
                info!(
                    "bfd_instance {}: UP (neighbor {})",
                    p.cfg.name, p.cfg.neighbor
                );
                report(tx, p.cfg.id, TrackState::Up, now);
            }
            Action::Down(diag) => {
                let remote_admin = p.session.remote_state() == SessionState::AdminDown;
                match tracked_state(diag, remote_admin) {
                    Some(state) => {
                        info!(
                            "bfd_instance {}: DOWN (neighbor {}): {diag}",
                            p.cfg.name, p.cfg.neighbor
                        );
                        report(tx, p.cfg.id, state, now);
                    }
                    None => info!(
                        "bfd_instance {}: DOWN (neighbor {}): {diag}; the neighbor took the \
                         session down on purpose, not a failure: tracking unchanged",
                        p.cfg.name, p.cfg.neighbor
                    ),
                }
            }
        }
    }
}

/// What a session going down means to `track_bfd`: nothing when the
/// neighbour set it AdminDown (RFC 5882 §3.2, as keepalived does), Down
/// otherwise.
fn tracked_state(diag: Diag, remote_admin_down: bool) -> Option<TrackState> {
    (!(remote_admin_down && diag == Diag::NeighborSignaledDown)).then_some(TrackState::Down)
}

fn report(tx: &mpsc::Sender<TrackerEvent>, id: TrackerId, state: TrackState, at_ns: u64) {
    if tx.try_send(TrackerEvent { id, state, at_ns }).is_err() {
        warn!("BFD: the tracker channel is full: a state change was lost");
    }
}

/// A 10 ms session to `neighbor`, for tests.
#[cfg(test)]
pub(crate) fn example_config(id: u32, neighbor: &str) -> BfdSessionConfig {
    BfdSessionConfig {
        id: TrackerId(id),
        name: format!("b{id}"),
        neighbor: neighbor.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        source: None,
        session: SessionConfig {
            desired_min_tx_us: 10_000,
            required_min_rx_us: 10_000,
            idle_tx_us: 1_000_000,
            detect_mult: 5,
            passive: false,
        },
        ttl: 255,
        max_hops: 0,
        multihop: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neighbor_taking_the_session_down_on_purpose_is_not_a_failure() {
        assert_eq!(tracked_state(Diag::NeighborSignaledDown, true), None);
        for diag in [Diag::ControlDetectionExpired, Diag::NeighborSignaledDown] {
            assert_eq!(tracked_state(diag, false), Some(TrackState::Down), "{diag}");
        }
        assert_eq!(
            tracked_state(Diag::ControlDetectionExpired, true),
            Some(TrackState::Down)
        );
    }

    #[test]
    fn packets_find_their_session_by_discriminator_then_by_address() {
        let cfg = |name: &str, neighbor: &str, source: Option<&str>| BfdSessionConfig {
            name: name.into(),
            source: source.map(|s| s.parse().unwrap()),
            ..example_config(1, neighbor)
        };
        let peer = |c: BfdSessionConfig, disc: u32| Peer {
            to: SocketAddr::new(c.neighbor, CONTROL_PORT),
            session: Session::new(c.session, NonZeroU32::new(disc).unwrap(), 0),
            socket: Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap(),
            cfg: c,
        };
        let mut peers = vec![
            peer(cfg("A", "192.0.2.1", Some("192.0.2.11")), 7),
            peer(cfg("B", "192.0.2.2", None), 8),
        ];
        let mut pkt = ControlPacket {
            diag: 0,
            state: SessionState::Down,
            poll: false,
            final_: false,
            cpi: false,
            demand: false,
            detect_mult: 5,
            my_disc: 99,
            your_disc: 0,
            desired_min_tx_us: 1_000_000,
            required_min_rx_us: 10_000,
            required_min_echo_rx_us: 0,
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let ours: IpAddr = "192.0.2.11".parse().unwrap();
        let other: IpAddr = "192.0.2.12".parse().unwrap();
        let name = |p: Option<&mut Peer>| p.map(|p| p.cfg.name.clone());
        assert_eq!(
            name(find_peer(&mut peers, &pkt, a, Some(ours), false)),
            Some("A".into())
        );
        // A's source is fixed: not to another of our addresses.
        assert_eq!(
            name(find_peer(&mut peers, &pkt, a, Some(other), false)),
            None
        );
        assert_eq!(
            name(find_peer(&mut peers, &pkt, b, Some(other), false)),
            Some("B".into())
        );
        // Single hop and multihop are apart.
        assert_eq!(
            name(find_peer(&mut peers, &pkt, b, Some(other), true)),
            None
        );
        // Once the neighbour knows our discriminator, that alone decides.
        pkt.your_disc = 8;
        assert_eq!(
            name(find_peer(&mut peers, &pkt, a, Some(ours), false)),
            Some("B".into())
        );
        pkt.your_disc = 5;
        assert_eq!(
            name(find_peer(&mut peers, &pkt, a, Some(ours), false)),
            None
        );
    }
}
