//! The datapath without eBPF: raw `IPPROTO_VRRP` sockets with kernel receive
//! timestamps, validated by the same rules as the kernel program
//! ([`super::validate`]) and turned into the same [`AdvertEvent`]s.
//!
//! Used when eBPF cannot load (no CAP_BPF, old kernel, a build without the
//! object) or when asked with `--no-ebpf`. Junk costs a wakeup here, which the
//! eBPF path avoids; everything else behaves the same.

use std::{
    collections::HashMap,
    io::{self, IoSliceMut},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use nix::sys::{
    socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt},
    time::TimeSpec,
};
use xvrrpd_common::{AdvertEvent, COUNTER_COUNT, Counter, IPPROTO_VRRP, VridConfig, VridKey};

use super::validate::{IpView, classify_ip, classify_ipv4_packet};
use crate::clock::{monotonic_ns, realtime_ns};

pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// One raw socket per address family, shared by every interface.
pub struct RawReceiver {
    v4: OwnedFd,
    v6: OwnedFd,
    vrids: HashMap<VridKey, VridConfig>,
    /// VMAC ifindex → its base's.
    vmacs: HashMap<u32, u32>,
    counters: [u64; COUNTER_COUNT as usize],
    buf: Vec<u8>,
}

/// Receive buffer of each raw socket (the kernel doubles it for overhead).
const RCVBUF: usize = 4 << 20;

fn raw_socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::c_int::from(IPPROTO_VRRP),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt_raw<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points at a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Joins `group` on `ifindex` so the kernel (and the NIC filter) deliver it.
pub fn join_group(fd: RawFd, ifindex: u32, group: IpAddr) -> io::Result<()> {
    let res = match group {
        IpAddr::V4(g) => {
            let mreq = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(g.octets()),
                },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: ifindex as libc::c_int,
            };
            setsockopt_raw(fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)
        }
        IpAddr::V6(g) => {
            let mreq = libc::ipv6_mreq {
                ipv6mr_multiaddr: libc::in6_addr {
                    s6_addr: g.octets(),
                },
                ipv6mr_interface: ifindex,
            };
            setsockopt_raw(fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq)
        }
    };
    match res {
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => Ok(()),
        other => other,
    }
}

fn realtime_to_monotonic(ts: &TimeSpec) -> u64 {
    // The socket stamps CLOCK_REALTIME; shift by the current offset between
    // the clocks (read back to back) to get CLOCK_MONOTONIC.
    let real = ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128;
    let (mono_now, real_now) = (monotonic_ns() as i128, realtime_ns() as i128);
    (real - real_now + mono_now).max(0) as u64
}

impl RawReceiver {
    /// Opens both sockets. Needs CAP_NET_RAW.
    pub fn open() -> io::Result<Self> {
        let v4 = raw_socket(libc::AF_INET)?;
        let v6 = raw_socket(libc::AF_INET6)?;
        setsockopt(&v4, sockopt::Ipv4PacketInfo, &true)?;
        setsockopt(&v4, sockopt::ReceiveTimestampns, &true)?;
        setsockopt(&v6, sockopt::Ipv6RecvPacketInfo, &true)?;
        setsockopt(&v6, sockopt::Ipv6RecvHopLimit, &true)?;
        setsockopt(&v6, sockopt::ReceiveTimestampns, &true)?;
        // A master batches its adverts: a thousand instances arrive within a
        // millisecond, more than the default buffer holds.
        for fd in [&v4, &v6] {
            if setsockopt(fd, sockopt::RcvBufForce, &RCVBUF).is_err() {
                setsockopt(fd, sockopt::RcvBuf, &RCVBUF)?;
            }
        }
        Ok(Self {
            v4,
            v6,
            vrids: HashMap::new(),
            vmacs: HashMap::new(),
            counters: [0; COUNTER_COUNT as usize],
            buf: vec![0; 65536],
        })
    }

    /// Receives adverts for `key` on its interface (joins the multicast
    /// group). With a VMAC, a master's adverts (sent from the same virtual
    /// MAC) reach the IP layer on the macvlan only: the group is joined
    /// there too, and what arrives there counts as the base's. The kernel
    /// then reports that membership from the virtual MAC, which the eBPF
    /// datapath avoids.
    pub fn set_vrid(
        &mut self,
        key: VridKey,
        cfg: VridConfig,
        group: IpAddr,
        vmac_ifindex: Option<u32>,
    ) -> io::Result<()> {
        let fd = if group.is_ipv4() { &self.v4 } else { &self.v6 };
        join_group(fd.as_raw_fd(), key.ifindex, group)?;
        if let Some(vmac) = vmac_ifindex {
            join_group(fd.as_raw_fd(), vmac, group)?;
            self.vmacs.insert(vmac, key.ifindex);
        }
        self.vrids.insert(key, cfg);
        Ok(())
    }

    pub fn remove_vrid(&mut self, key: &VridKey) {
        self.vrids.remove(key);
    }

    pub fn fds(&self) -> [RawFd; 2] {
        [self.v4.as_raw_fd(), self.v6.as_raw_fd()]
    }

    pub fn counters(&self) -> [u64; COUNTER_COUNT as usize] {
        self.counters
    }

    fn count(&mut self, c: Counter) {
        self.counters[c as usize] += 1;
    }

    /// Reads every queued packet without blocking; valid adverts go to `out`.
    pub fn drain(&mut self, out: &mut Vec<AdvertEvent>) -> io::Result<usize> {
        let mut n = 0;
        n += self.drain_family(true, out)?;
        n += self.drain_family(false, out)?;
        Ok(n)
    }

    fn drain_family(&mut self, v4: bool, out: &mut Vec<AdvertEvent>) -> io::Result<usize> {
        let mut n = 0;
        // Bounded: a flood cannot keep one call here forever.
        for _ in 0..1024 {
            let fd = if v4 {
                self.v4.as_raw_fd()
            } else {
                self.v6.as_raw_fd()
            };
            let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, TimeSpec, libc::c_int);
            let mut iov = [IoSliceMut::new(&mut self.buf)];
            let msg = match recvmsg::<SockaddrStorage>(
                fd,
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(m) => m,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let len = msg.bytes;
            let (mut ifindex, mut ts, mut hop, mut dst6) = (0u32, None, 0u8, None);
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    match c {
                        ControlMessageOwned::ScmTimestampns(t) => {
                            ts = Some(realtime_to_monotonic(&t))
                        }
                        ControlMessageOwned::Ipv4PacketInfo(pi) => ifindex = pi.ipi_ifindex as u32,
                        ControlMessageOwned::Ipv6PacketInfo(pi) => {
                            ifindex = pi.ipi6_ifindex;
                            dst6 = Some(Ipv6Addr::from(pi.ipi6_addr.s6_addr));
                        }
                        ControlMessageOwned::Ipv6HopLimit(h) => hop = h.clamp(0, 255) as u8,
                        _ => {}
                    }
                }
            }
            let ifindex = self.vmacs.get(&ifindex).copied().unwrap_or(ifindex);
            let src6 = msg
                .address
                .as_ref()
                .and_then(|a| a.as_sockaddr_in6().map(|s| s.ip()));
            let ts = ts.unwrap_or_else(monotonic_ns);
            let data = &self.buf[..len];
            let verdict = if v4 {
                classify_ipv4_packet(data, ifindex, ts, &self.vrids)
            } else {
                match (src6, dst6) {
                    (Some(src), Some(dst)) => {
                        let view = IpView {
                            src: IpAddr::V6(src),
                            dst: IpAddr::V6(dst),
                            ttl: hop,
                            msg: data,
                        };
                        Some(classify_ip(&view, ifindex, ts, &self.vrids))
                    }
                    _ => Some(Err(Counter::BadLength)),
                }
            };
            match verdict {
                None => {}
                Some(Ok(ev)) => {
                    self.count(Counter::Accepted);
                    out.push(ev);
                    n += 1;
                }
                Some(Err(c)) => self.count(c),
            }
        }
        Ok(n)
    }
}
