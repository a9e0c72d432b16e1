//! A client that pings a VIP every millisecond and records who answers.
//!
//! Inside a lab host it sends ICMP (or ICMPv6) echo requests on a raw
//! socket and reads the replies on an AF_PACKET socket, which shows the
//! Ethernet source of each reply: the router that answered. The payload
//! carries a 64-bit sequence number and the send time, so nothing wraps.
//! It runs for a bounded time and count, whatever the test does.

use std::{
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    clock::{Stamp, mono_ns},
    lab::Host,
    pcap::{Mac, WireKind, decode_frame},
};

/// One echo reply.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub seq: u64,
    /// When the reply was read.
    pub at: Stamp,
    /// The Ethernet source of the reply: the router that answered.
    pub src_mac: Mac,
    pub rtt_ns: u64,
}

/// A run of consecutive replies from one router.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub mac: Mac,
    pub first: Stamp,
    pub last: Stamp,
    pub count: usize,
}

/// The longest run of lost probes in a window.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    /// From the first lost probe's send time to the next answered probe's.
    pub gap_ns: u64,
    /// The last reply before the lost probes (None: none in the window).
    pub before: Option<Reply>,
    /// The reply that ended the outage (None: none until the window's end).
    pub after: Option<Reply>,
    /// How many probes in a row got no reply.
    pub lost: u64,
}

/// What a [`Prober`] saw.
#[derive(Clone, Debug, Default)]
pub struct ProbeLog {
    pub target: Option<IpAddr>,
    pub interval: Duration,
    pub sent: Vec<(u64, Stamp)>,
    pub replies: Vec<Reply>,
    /// Probes the kernel refused to send (e.g. neighbour unresolved).
    pub send_errors: u64,
    pub last_send_error: Option<String>,
}

impl ProbeLog {
    /// Replies whose time (CLOCK_REALTIME) is in `[from_rt, to_rt]`.
    pub fn replies_between(&self, from_rt: u64, to_rt: u64) -> impl Iterator<Item = &Reply> {
        self.replies
            .iter()
            .filter(move |r| r.at.rt_ns >= from_rt && r.at.rt_ns <= to_rt)
    }

    /// The longest run of consecutive probes sent in `[from_rt, to_rt]`
    /// that got no reply: the outage is from the first lost probe's send
    /// time to the send time of the next answered one (or the window's
    /// end). Probes count by what was sent, so a prober thread that was
    /// not scheduled for a while does not show as an outage.
    pub fn outage(&self, from_rt: u64, to_rt: u64) -> Outage {
        let answered: std::collections::HashMap<u64, &Reply> =
            self.replies.iter().map(|r| (r.seq, r)).collect();
        let sent: Vec<&(u64, Stamp)> = self
            .sent
            .iter()
            .filter(|(_, at)| at.rt_ns >= from_rt && at.rt_ns <= to_rt)
            .collect();
        let mut best = Outage {
            gap_ns: 0,
            before: None,
            after: None,
            lost: 0,
        };
        let mut last_answered: Option<Reply> = None;
        let mut run_start: Option<(u64, Option<Reply>)> = None;
        let mut lost = 0;
        for (seq, at) in &sent {
            match answered.get(seq) {
                Some(r) => {
                    if let Some((t0, before)) = run_start.take() {
                        let gap = at.rt_ns - t0;
                        if gap > best.gap_ns {
                            best = Outage {
                                gap_ns: gap,
                                before,
                                after: Some(**r),
                                lost,
                            };
                        }
                    }
                    lost = 0;
                    last_answered = Some(**r);
                }
                None => {
                    if run_start.is_none() {
                        run_start = Some((at.rt_ns, last_answered));
                    }
                    lost += 1;
                }
            }
        }
        if let Some((t0, before)) = run_start {
            // Probes sent in the last few ms may still be in flight.
            let end = sent.last().map(|(_, a)| a.rt_ns).unwrap_or(to_rt);
            let gap = end.saturating_sub(t0);
            if gap > best.gap_ns && gap > 5_000_000 {
                best = Outage {
                    gap_ns: gap,
                    before,
                    after: None,
                    lost,
                };
            }
        }
        best
    }

    /// The longest gap between two replies anywhere around `around_rt`
    /// (± `span`).
    pub fn outage_around(&self, around_rt: u64, span: Duration) -> Outage {
        let s = span.as_nanos() as u64;
        self.outage(around_rt.saturating_sub(s), around_rt + s)
    }

    /// Who answered, as runs of consecutive replies from one MAC.
    pub fn answered_by(&self) -> Vec<Run> {
        runs(self.replies.iter())
    }

    /// As [`answered_by`](Self::answered_by), in a window (CLOCK_REALTIME).
    pub fn answered_by_between(&self, from_rt: u64, to_rt: u64) -> Vec<Run> {
        runs(self.replies_between(from_rt, to_rt))
    }

    /// A short text of the runs, for failure messages.
    pub fn describe_runs(runs: &[Run], origin_rt: u64) -> String {
        runs.iter()
            .map(|r| {
                format!(
                    "{} ×{} [{:+.1} ms … {:+.1} ms]",
                    r.mac,
                    r.count,
                    (r.first.rt_ns as f64 - origin_rt as f64) / 1e6,
                    (r.last.rt_ns as f64 - origin_rt as f64) / 1e6
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn runs<'a>(it: impl Iterator<Item = &'a Reply>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for r in it {
        match out.last_mut() {
            Some(run) if run.mac == r.src_mac => {
                run.last = r.at;
                run.count += 1;
            }
            _ => out.push(Run {
                mac: r.src_mac,
                first: r.at,
                last: r.at,
                count: 1,
            }),
        }
    }
    out
}

/// Pings a target from a lab host until stopped, `max_duration` passes or
/// `max_count` probes are sent.
pub struct Prober {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<ProbeLog>>,
    handle: Option<thread::JoinHandle<Result<()>>>,
}

/// Bounds and pace of a [`Prober`].
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    pub interval: Duration,
    pub max_duration: Duration,
    pub max_count: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_millis(1),
            max_duration: Duration::from_secs(90),
            max_count: 90_000,
        }
    }
}

const PROBE_MAGIC: &[u8; 8] = b"xvrrplab";

impl Prober {
    /// Starts probing `target` from `host`'s `eth0`. Returns once both
    /// sockets are open.
    pub fn start(host: &Host, target: IpAddr, cfg: ProbeConfig) -> Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let ifname = host.ifname.clone();
        let log = Arc::new(Mutex::new(ProbeLog {
            target: Some(target),
            interval: cfg.interval,
            ..ProbeLog::default()
        }));
        let shared = log.clone();
        let handle = host.spawn_in(move || {
            crate::clock::realtime_thread();
            probe_loop(&ifname, target, cfg, &flag, &shared, ready_tx)
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(()) => Ok(Prober {
                stop,
                log,
                handle: Some(handle),
            }),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                match handle.join() {
                    Ok(Err(e)) => Err(e.context("the prober did not start")),
                    _ => bail!("the prober did not start"),
                }
            }
        }
    }

    /// Whether the probing thread still runs.
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// A line on the prober's health, for failure messages.
    pub fn health(&self, from_rt: u64, to_rt: u64) -> String {
        let l = self.log.lock().unwrap();
        let in_window = l
            .sent
            .iter()
            .filter(|(_, at)| at.rt_ns >= from_rt && at.rt_ns <= to_rt)
            .count();
        format!(
            "prober {}: {} probes sent ({} in the window), {} replies, {} send errors{}",
            if self.is_running() {
                "running"
            } else {
                "stopped"
            },
            l.sent.len(),
            in_window,
            l.replies.len(),
            l.send_errors,
            l.last_send_error
                .as_ref()
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default()
        )
    }

    /// What was seen so far (the prober keeps running).
    pub fn snapshot(&self) -> ProbeLog {
        self.log.lock().unwrap().clone()
    }

    /// Stops probing and returns what was seen.
    pub fn stop(mut self) -> Result<ProbeLog> {
        self.stop.store(true, Ordering::Relaxed);
        let h = self.handle.take().expect("joined once");
        h.join()
            .map_err(|_| anyhow::anyhow!("the prober thread panicked"))??;
        Ok(self.snapshot())
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn cvt(rc: libc::c_int, what: &str) -> Result<libc::c_int> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_string());
    }
    Ok(rc)
}

fn checksum(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        acc += u32::from(w);
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn probe_loop(
    ifname: &str,
    target: IpAddr,
    cfg: ProbeConfig,
    stop: &AtomicBool,
    log: &Mutex<ProbeLog>,
    ready: std::sync::mpsc::Sender<()>,
) -> Result<()> {
    let sock = ProbeSockets::open(ifname, target)?;
    let _ = ready.send(());

    let start = Instant::now();
    let mut next = start;
    let mut seq: u64 = 0;
    let mut buf = vec![0u8; 2048];
    loop {
        if stop.load(Ordering::Relaxed)
            || start.elapsed() >= cfg.max_duration
            || seq >= cfg.max_count
        {
            break;
        }
        let now = Instant::now();
        if now >= next {
            sock.send_probe(seq, log);
            seq += 1;
            next += cfg.interval;
            if next + cfg.interval * 20 < now {
                // Far behind (the thread was not scheduled): do not burst.
                next = now + cfg.interval;
            }
        }
        // Wait for a reply until the next probe is due.
        if !sock.wait_readable(next) {
            continue;
        }
        sock.drain_replies(&mut buf, log);
    }
    Ok(())
}

/// The prober's two sockets and what every probe is addressed with: a raw
/// ICMP socket sends, an AF_PACKET socket on the interface reads replies
/// with their Ethernet source.
struct ProbeSockets {
    tx: OwnedFd,
    rx: OwnedFd,
    target: IpAddr,
    v6: bool,
    dst4: libc::sockaddr_in,
    dst6: libc::sockaddr_in6,
    /// The ICMP echo identifier of this prober.
    id: u16,
}

impl ProbeSockets {
    fn open(ifname: &str, target: IpAddr) -> Result<ProbeSockets> {
        let cname = std::ffi::CString::new(ifname)?;
        // SAFETY: plain libc calls on values owned here; descriptors are owned
        // by OwnedFd at once.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {ifname} in the prober's namespace");
        }
        let v6 = target.is_ipv6();
        let tx = open_icmp_tx(v6)?;
        let rx = open_packet_rx(ifindex)?;

        // Destination.
        let mut dst4: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut dst6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        match target {
            IpAddr::V4(a) => {
                dst4.sin_family = libc::AF_INET as u16;
                dst4.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
            }
            IpAddr::V6(a) => {
                dst6.sin6_family = libc::AF_INET6 as u16;
                dst6.sin6_addr.s6_addr = a.octets();
            }
        }
        let id: u16 = (std::process::id() as u16) ^ 0x5a5a;
        Ok(ProbeSockets {
            tx,
            rx,
            target,
            v6,
            dst4,
            dst6,
            id,
        })
    }

    /// Sends probe `seq` and records it (and a failed send) in `log`.
    #[inline]
    fn send_probe(&self, seq: u64, log: &Mutex<ProbeLog>) {
        let (v6, id) = (self.v6, self.id);
        let mut pkt = vec![0u8; 8 + 24];
        pkt[0] = if v6 { 128 } else { 8 };
        pkt[4..6].copy_from_slice(&id.to_be_bytes());
        pkt[6..8].copy_from_slice(&(seq as u16).to_be_bytes());
        pkt[8..16].copy_from_slice(PROBE_MAGIC);
        pkt[16..24].copy_from_slice(&seq.to_be_bytes());
        let at = Stamp::now();
        pkt[24..32].copy_from_slice(&at.mono_ns.to_be_bytes());
        if !v6 {
            let c = checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
        }
        // SAFETY: pkt and the destination are valid for the sizes given.
        let rc = unsafe {
            if v6 {
                libc::sendto(
                    self.tx.as_raw_fd(),
                    pkt.as_ptr().cast(),
                    pkt.len(),
                    libc::MSG_DONTWAIT,
                    (&self.dst6 as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as u32,
                )
            } else {
                libc::sendto(
                    self.tx.as_raw_fd(),
                    pkt.as_ptr().cast(),
                    pkt.len(),
                    libc::MSG_DONTWAIT,
                    (&self.dst4 as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            }
        };
        // A send can fail while the neighbour is unresolved (EAGAIN,
        // EHOSTUNREACH): that probe simply gets no reply.
        let mut l = log.lock().unwrap();
        if rc < 0 {
            l.send_errors += 1;
            l.last_send_error = Some(std::io::Error::last_os_error().to_string());
        }
        l.sent.push((seq, at));
    }

    /// Waits until a frame can be read or `next` is reached; whether one
    /// can be read.
    #[inline]
    fn wait_readable(&self, next: Instant) -> bool {
        let wait = next.saturating_duration_since(Instant::now());
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        let mut pfd = libc::pollfd {
            fd: self.rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; no signal mask.
        let n = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        n > 0
    }

    /// Drains the packet socket (bounded per round), logging this prober's
    /// echo replies.
    #[inline]
    fn drain_replies(&self, buf: &mut [u8], log: &Mutex<ProbeLog>) {
        for _ in 0..256 {
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut flen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: buffer and address are valid for the sizes given.
            let got = unsafe {
                libc::recvfrom(
                    self.rx.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut flen,
                )
            };
            if got <= 0 {
                break;
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let at = Stamp::now();
            let frame = &buf[..got as usize];
            let ev = decode_frame(at.rt_ns, frame);
            let WireKind::EchoReply {
                id: rid, src: rsrc, ..
            } = ev.kind
            else {
                continue;
            };
            if rid != self.id || rsrc != self.target {
                continue;
            }
            if let Some((rseq, sent_mono)) = payload(frame) {
                log.lock().unwrap().replies.push(Reply {
                    seq: rseq,
                    at,
                    src_mac: ev.src_mac,
                    rtt_ns: mono_ns().saturating_sub(sent_mono),
                });
            }
        }
    }
}

/// The raw ICMP (or ICMPv6) socket probes are sent on.
fn open_icmp_tx(v6: bool) -> Result<OwnedFd> {
    let (family, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    // SAFETY: plain libc call; the descriptor is owned by OwnedFd at once.
    let tx = unsafe {
        OwnedFd::from_raw_fd(cvt(
            libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto),
            "raw ICMP socket",
        )?)
    };
    // The sending socket also receives the replies: keep its queue tiny.
    let small: libc::c_int = 4096;
    // SAFETY: valid option value of the size given.
    unsafe {
        libc::setsockopt(
            tx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            4,
        );
    }
    Ok(tx)
}

/// A non-blocking AF_PACKET socket bound to `ifindex`, with a large queue.
fn open_packet_rx(ifindex: libc::c_uint) -> Result<OwnedFd> {
    let eth_all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain libc call; the descriptor is owned by OwnedFd at once.
    let rx = unsafe {
        OwnedFd::from_raw_fd(cvt(
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(eth_all),
            ),
            "packet socket",
        )?)
    };
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = eth_all;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll of the size passed.
    cvt(
        unsafe {
            libc::bind(
                rx.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        },
        "binding the packet socket",
    )?;
    let big: libc::c_int = 4 << 20;
    // SAFETY: valid option value.
    unsafe {
        libc::setsockopt(
            rx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&big as *const libc::c_int).cast(),
            4,
        );
    }
    Ok(rx)
}

/// The sequence number and send time carried in a reply's payload.
fn payload(frame: &[u8]) -> Option<(u64, u64)> {
    let pos = frame.windows(8).position(|w| w == PROBE_MAGIC)?;
    let p = frame.get(pos + 8..pos + 24)?;
    Some((
        u64::from_be_bytes(p[0..8].try_into().ok()?),
        u64::from_be_bytes(p[8..16].try_into().ok()?),
    ))
}
