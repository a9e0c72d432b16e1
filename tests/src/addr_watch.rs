//! Every address added to or removed from a lab host, timestamped as the
//! kernel reports it (rtnetlink address notifications).
//!
//! This is how the lab knows when a host holds a VIP, without polling:
//! a watcher subscribes, then dumps what is already there, and records
//! each change with a [`Stamp`]. It also keeps the `IFA_PROTO` byte of
//! each address (xvrrpd marks its VIPs with 112).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{clock::Stamp, lab::Host};

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_PROTO: u16 = 11;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
/// The longest a watcher runs, whatever the test does.
const MAX_LIFETIME: Duration = Duration::from_secs(600);

/// One address change on a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrEvent {
    pub at: Stamp,
    pub added: bool,
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// `IFA_PROTO` (kernel ≥ 5.18), when the kernel reported one.
    pub proto: Option<u8>,
    /// Part of the initial dump (present when the watch started).
    pub initial: bool,
}

#[derive(Default)]
struct Shared {
    events: Vec<AddrEvent>,
    /// The socket overran: changes were lost.
    overrun: bool,
    error: Option<String>,
}

/// A running address watch on one host; stops on drop.
pub struct AddrWatch {
    host: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Result<()>>>,
}

/// A time span during which a host held an address (CLOCK_MONOTONIC ns;
/// `to` None: still held when last looked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub from: u64,
    pub to: Option<u64>,
    /// The IFA_PROTO of the address while held.
    pub proto: Option<u8>,
}

impl AddrWatch {
    /// Starts watching `host`; returns after the initial dump is recorded.
    pub fn start(host: &Host) -> Result<AddrWatch> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (sh, st) = (shared.clone(), stop.clone());
        let handle = host.spawn_in(move || {
            crate::clock::realtime_thread();
            let r = watch_loop(&sh, &st, ready_tx);
            if let Err(e) = &r {
                sh.lock().unwrap().error = Some(format!("{e:#}"));
            }
            r
        });
        if ready_rx.recv_timeout(Duration::from_secs(5)).is_err() {
            stop.store(true, Ordering::Relaxed);
            let why = match handle.join() {
                Ok(Err(e)) => format!("{e:#}"),
                _ => "no answer to the dump".into(),
            };
            bail!("the address watch on {} did not start: {why}", host.ns);
        }
        Ok(AddrWatch {
            host: host.ns.clone(),
            shared,
            stop,
            handle: Some(handle),
        })
    }

    /// Every change so far, in order.
    pub fn events(&self) -> Vec<AddrEvent> {
        self.shared.lock().unwrap().events.clone()
    }

    /// Fails if the watch lost changes or stopped on an error.
    pub fn check_complete(&self) -> Result<()> {
        let s = self.shared.lock().unwrap();
        if s.overrun {
            bail!(
                "the address watch on {} overran: changes were lost",
                self.host
            );
        }
        if let Some(e) = &s.error {
            bail!("the address watch on {} failed: {e}", self.host);
        }
        Ok(())
    }

    /// Whether `addr` is on the host now (as last reported).
    pub fn holds(&self, addr: IpAddr) -> bool {
        self.held(addr).last().is_some_and(|h| h.to.is_none())
    }

    /// The spans during which the host held `addr`.
    pub fn held(&self, addr: IpAddr) -> Vec<Held> {
        held_spans(&self.events(), addr)
    }

    /// Waits until the host holds (or not) `addr`; true if it happened.
    pub fn wait(&self, addr: IpAddr, present: bool, timeout: Duration) -> bool {
        crate::lab::wait_until(timeout, Duration::from_millis(2), || {
            self.holds(addr) == present
        })
    }

    /// When `addr` was last added (CLOCK_MONOTONIC), if it is held.
    pub fn added_at(&self, addr: IpAddr) -> Option<u64> {
        self.held(addr)
            .last()
            .filter(|h| h.to.is_none())
            .map(|h| h.from)
    }
}

/// (adds, removes) per address among `events` after `since_ns`
/// (CLOCK_MONOTONIC), the initial listing left out.
pub fn moves(
    events: &[AddrEvent],
    since_ns: u64,
) -> std::collections::HashMap<IpAddr, (usize, usize)> {
    let mut m: std::collections::HashMap<IpAddr, (usize, usize)> = Default::default();
    for e in events
        .iter()
        .filter(|e| !e.initial && e.at.mono_ns > since_ns)
    {
        let slot = m.entry(e.addr).or_default();
        if e.added {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
    }
    m
}

/// Spans of presence of `addr` in an event list.
pub fn held_spans(events: &[AddrEvent], addr: IpAddr) -> Vec<Held> {
    let mut out: Vec<Held> = Vec::new();
    for e in events.iter().filter(|e| e.addr == addr) {
        let open = out.last().is_some_and(|h| h.to.is_none());
        match (e.added, open) {
            (true, false) => out.push(Held {
                from: e.at.mono_ns,
                to: None,
                proto: e.proto,
            }),
            (true, true) => {
                // A flags update of an address already there.
                if let Some(h) = out.last_mut() {
                    h.proto = e.proto.or(h.proto);
                }
            }
            (false, true) => {
                if let Some(h) = out.last_mut() {
                    h.to = Some(e.at.mono_ns);
                }
            }
            (false, false) => {}
        }
    }
    out
}

impl Drop for AddrWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn nla_align(n: usize) -> usize {
    (n + 3) & !3
}

fn parse_addr_msg(msg_type: u16, body: &[u8], initial: bool, out: &mut Vec<AddrEvent>) {
    if body.len() < 8 {
        return;
    }
    let family = i32::from(body[0]);
    let prefix_len = body[1];
    let ifindex = u32::from_ne_bytes(body[4..8].try_into().unwrap());
    let mut local = None;
    let mut address = None;
    let mut proto = None;
    let mut o = 8;
    while o + 4 <= body.len() {
        let len = usize::from(u16::from_ne_bytes([body[o], body[o + 1]]));
        let ty = u16::from_ne_bytes([body[o + 2], body[o + 3]]) & 0x3fff;
        if len < 4 || o + len > body.len() {
            break;
        }
        let v = &body[o + 4..o + len];
        let ip = match (family, v.len()) {
            (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
            (libc::AF_INET6, 16) => {
                let a: [u8; 16] = v.try_into().unwrap();
                Some(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => None,
        };
        match ty {
            IFA_LOCAL => local = ip,
            IFA_ADDRESS => address = ip,
            IFA_PROTO if !v.is_empty() => proto = Some(v[0]),
            _ => {}
        }
        o += nla_align(len);
    }
    if let Some(addr) = local.or(address) {
        out.push(AddrEvent {
            at: Stamp::now(),
            added: msg_type == RTM_NEWADDR,
            ifindex,
            addr,
            prefix_len,
            proto,
            initial,
        });
    }
}

fn watch_loop(
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
    ready: std::sync::mpsc::Sender<()>,
) -> Result<()> {
    let fd = open_netlink()?;
    request_dump(&fd)?;
    let started = Instant::now();
    let mut dumping = true;
    let mut ready = Some(ready);
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFETIME {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) => {
                    shared.lock().unwrap().overrun = true;
                    continue;
                }
                _ => return Err(e).context("reading netlink"),
            }
        }
        let mut got = Vec::new();
        parse_batch(&buf[..n as usize], &mut dumping, &mut got)?;
        if !got.is_empty() {
            shared.lock().unwrap().events.extend(got);
        }
        if !dumping && let Some(r) = ready.take() {
            let _ = r.send(());
        }
    }
    Ok(())
}

/// A netlink socket subscribed to IPv4 and IPv6 address changes, with a
/// large queue and a 50 ms read timeout so the loop sees `stop` in time.
fn open_netlink() -> Result<OwnedFd> {
    // SAFETY: plain socket calls; the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("netlink socket");
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let big: libc::c_int = 4 << 20;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: valid option values of the sizes given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&big as *const libc::c_int).cast(),
            4,
        );
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    // SAFETY: sa is a valid sockaddr_nl.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error()).context("binding the netlink socket");
    }
    Ok(fd)
}

/// Asks for every address already there (sequence number 1), after the
/// subscription so that no change falls between the dump and the watch.
fn request_dump(fd: &OwnedFd) -> Result<()> {
    // Dump request: nlmsghdr + ifaddrmsg (AF_UNSPEC).
    let mut req = [0u8; 24];
    req[0..4].copy_from_slice(&24u32.to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETADDR.to_ne_bytes());
    req[6..8].copy_from_slice(&(0x1u16 | 0x300).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: req is a valid buffer.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error()).context("sending the address dump request");
    }
    Ok(())
}

/// Parses one read's netlink messages into `got`; clears `dumping` at the
/// end of the initial dump.
fn parse_batch(data: &[u8], dumping: &mut bool, got: &mut Vec<AddrEvent>) -> Result<()> {
    let mut o = 0;
    while o + 16 <= data.len() {
        let len = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes([data[o + 4], data[o + 5]]);
        let seq = u32::from_ne_bytes(data[o + 8..o + 12].try_into().unwrap());
        if len < 16 || o + len > data.len() {
            break;
        }
        let body = &data[o + 16..o + len];
        match ty {
            RTM_NEWADDR | RTM_DELADDR => {
                parse_addr_msg(ty, body, *dumping && seq == 1, got);
            }
            NLMSG_DONE if *dumping && seq == 1 => {
                *dumping = false;
            }
            NLMSG_ERROR if seq == 1 => {
                let code = body
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                    .unwrap_or(0);
                if code != 0 {
                    bail!("the address dump failed: errno {}", -code);
                }
            }
            _ => {}
        }
        o += nla_align(len);
    }
    Ok(())
}
