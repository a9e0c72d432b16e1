//! The bench's lab: one [`Cluster`] with a keepalived pair and an xvrrpd
//! pair on the same bridge, with the same config; only one pair runs at a
//! time, so the two daemons are measured interleaved on the same segment
//! without disturbing each other.
//!
//! ```text
//!   k1 keepalived prio 150 ─┐
//!   k2 keepalived prio 100 ─┤
//!   x1 xvrrpd     prio 150 ─┼─ br0 (tcpdump, VRRP + ARP only) ─ client (1 ms prober)
//!   x2 xvrrpd     prio 100 ─┘
//! ```

use std::{
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use xvrrpd_tests::{
    clock::Stamp,
    kconf::{Daemon, Instance, RouterConfig},
    lab::{Host, wait_until},
    pcap::{Mac, decode_frame},
    prober::{ProbeConfig, Prober},
    router::{LinkSide, RouterNode},
    scenario::Cluster,
    wire::BridgeCapture,
};

use xvrrpd_tests::bench::{router_filter, with_rt_threads};

pub const HI_PRIO: u8 = 150;
pub const LO_PRIO: u8 = 100;

/// The two routers of one daemon.
#[derive(Clone, Debug)]
pub struct Pair {
    pub daemon: Daemon,
    pub hi: String,
    pub lo: String,
}

pub struct BenchLab {
    pub c: Cluster,
    pub pairs: [Pair; 2],
    /// Every VIP of the routers' config (one per instance).
    pub vips: Vec<IpAddr>,
    watch: Option<AdvertWatch>,
    /// The host-stall canary of the failover trials (None elsewhere).
    pub canary: Option<xvrrpd_tests::stall::StallMonitor>,
}

impl BenchLab {
    /// Builds the lab for `inst` (the template every router runs at its
    /// priority); `edit` may rewrite each router's config.
    pub fn new(
        name: &str,
        inst: Instance,
        xvrrpd_args: &[String],
        edit: impl FnMut(&RouterNode, &mut RouterConfig) -> Result<()>,
    ) -> Result<BenchLab> {
        let specs = [
            ("k1", Daemon::Keepalived, HI_PRIO),
            ("k2", Daemon::Keepalived, LO_PRIO),
            ("x1", Daemon::Xvrrpd, HI_PRIO),
            ("x2", Daemon::Xvrrpd, LO_PRIO),
        ];
        let mut c = Cluster::new(name, inst, &specs, false, edit)?;
        for r in c.routers.iter_mut().filter(|r| r.daemon == Daemon::Xvrrpd) {
            r.extra_args = xvrrpd_args.to_vec();
        }
        let macs: Vec<Mac> = c.routers.iter().map(|r| r.mac).collect();
        // The cluster's own capture keeps pings too; at 1 kHz that is work
        // for tcpdump on a 2-core host. Replace it with a narrower one.
        let path = c.lab.dir.join("bench.pcap");
        c.capture = BridgeCapture::start(&c.lab.net, &path, &router_filter(&macs))?;
        let vips = c.routers[0]
            .config()
            .map(|cfg| {
                cfg.instances
                    .iter()
                    .flat_map(|i| i.vip_addrs())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let pairs = [
            Pair {
                daemon: Daemon::Keepalived,
                hi: "k1".into(),
                lo: "k2".into(),
            },
            Pair {
                daemon: Daemon::Xvrrpd,
                hi: "x1".into(),
                lo: "x2".into(),
            },
        ];
        Ok(BenchLab {
            c,
            pairs,
            vips,
            watch: None,
            canary: None,
        })
    }

    pub fn pair(&self, d: Daemon) -> Pair {
        self.pairs
            .iter()
            .find(|p| p.daemon == d)
            .cloned()
            .expect("both daemons have a pair")
    }

    /// `Master_Down_Interval` of a router (ns).
    pub fn mdi(&self, name: &str) -> u64 {
        self.c.mdi_ns(name)
    }

    /// Starts `d`'s pair (the higher priority first) and waits until the
    /// higher one holds every VIP and says MASTER and the lower one holds
    /// none and says BACKUP.
    pub fn start_pair(&mut self, d: Daemon) -> Result<()> {
        let p = self.pair(d);
        self.c.router_mut(&p.hi).start()?;
        self.c.router_mut(&p.lo).start()?;
        // Four times the backup's Master_Down_Interval, plus start-up:
        // 10 s, and 10 ms more per VIP to add (1000 instances: 20 s).
        let timeout = Duration::from_nanos(self.mdi(&p.lo) * 4)
            + Duration::from_secs(10)
            + Duration::from_millis(10) * self.vips.len() as u32;
        self.wait_settled(&p, timeout)
            .with_context(|| format!("starting the {d} pair"))
    }

    /// Waits until `p.hi` holds every VIP, `p.lo` none, and their states
    /// say so (the first instance's).
    pub fn wait_settled(&self, p: &Pair, timeout: Duration) -> Result<()> {
        let hi = self.c.router(&p.hi);
        let lo = self.c.router(&p.lo);
        let ok = wait_until(timeout, Duration::from_millis(5), || {
            vips_held(hi, &self.vips).len() == self.vips.len()
                && vips_held(lo, &self.vips).is_empty()
        });
        if !ok {
            let held_hi = vips_held(hi, &self.vips).len();
            let held_lo = vips_held(lo, &self.vips).len();
            bail!(
                "{} holds {held_hi} of {} VIPs and {} holds {held_lo} after {timeout:?}; \
                 {} log:\n{}\n{} log:\n{}",
                p.hi,
                self.vips.len(),
                p.lo,
                p.hi,
                hi.log_tail(8),
                p.lo,
                lo.log_tail(8)
            );
        }
        let inst = self.c.inst.name.clone();
        for (r, want) in [(hi, "MASTER"), (lo, "BACKUP")] {
            let mut last = None;
            if !wait_until(Duration::from_secs(3), Duration::from_millis(5), || {
                last = daemon_state(r, &inst);
                last.as_deref() == Some(want)
            }) {
                bail!(
                    "{} ({}): instance {inst} is {last:?}, not {want}; log {}",
                    r.name,
                    r.daemon,
                    r.log_path.display()
                );
            }
        }
        Ok(())
    }

    /// Stops `d`'s pair (SIGTERM, SIGKILL if that fails) and puts the
    /// hosts back as they were: links up, no VIP left anywhere.
    pub fn stop_pair(&mut self, d: Daemon) {
        let p = self.pair(d);
        for name in [&p.lo, &p.hi] {
            let r = self.c.router_mut(name);
            if r.is_running() && r.sigterm().is_err() {
                r.kill_quietly();
            }
            r.kill_quietly();
        }
        for name in [&p.hi, &p.lo] {
            let r = self.c.router(name);
            let _ = r.link_up(LinkSide::Switch);
            let _ = r.link_up(LinkSide::Host);
            for v in vips_held(r, &self.vips) {
                let _ = remove_vip(r, v);
            }
        }
    }

    /// Starts a 1 ms prober of the first VIP from the client. Its thread
    /// runs on SCHED_RR 1: the client stands for another machine, which
    /// the `--load` hog on this one should not slow down.
    pub fn probe(&self, max: Duration) -> Result<Prober> {
        let cfg = ProbeConfig {
            interval: Duration::from_millis(1),
            max_duration: max,
            max_count: max.as_millis() as u64 + 10,
        };
        let client = self.c.client.clone();
        let vip = self.c.vip;
        with_rt_threads(1, move || Prober::start(&client, vip, cfg))
    }

    /// The first VIP's advert watch on the client (opened on first use).
    pub fn advert_watch(&mut self) -> Result<&AdvertWatch> {
        if self.watch.is_none() {
            self.watch = Some(AdvertWatch::open(&self.c.client)?);
        }
        Ok(self.watch.as_ref().expect("just opened"))
    }
}

/// The states a notify FIFO line can put an instance in. keepalived also
/// writes events that are not states (`MASTER_RX_LOWER_PRI` when a master
/// hears a lower priority): those are skipped.
pub const FIFO_STATES: [&str; 4] = ["MASTER", "BACKUP", "FAULT", "STOP"];

/// An instance's state: xvrrpd's status report, or keepalived's last
/// notify FIFO line that names a state.
pub fn daemon_state(r: &RouterNode, inst: &str) -> Option<String> {
    match r.daemon {
        Daemon::Xvrrpd => r.state(inst),
        Daemon::Keepalived => r
            .fifo_lines()
            .into_iter()
            .rev()
            .find(|l| {
                l.subject == "INSTANCE" && l.name == inst && FIFO_STATES.contains(&l.state.as_str())
            })
            .map(|l| l.state),
    }
}

/// What a pair's notify FIFOs said over `[from, to]`.
pub struct FifoWindow {
    /// INSTANCE lines of either router (state changes).
    pub transitions: usize,
    /// Times the backup `lo` became master.
    pub takeovers: usize,
    /// The first 50 lines: (router, ms after `from`, line).
    pub lines: Vec<(String, f64, String)>,
}

pub fn fifo_window(hi: &RouterNode, lo: &RouterNode, from: Stamp, to: Stamp) -> FifoWindow {
    let inside = |l: &xvrrpd_tests::router::FifoLine| l.at >= from && l.at <= to;
    let transitions = [hi, lo]
        .iter()
        .flat_map(|r| r.fifo_lines())
        .filter(|l| l.subject == "INSTANCE" && inside(l))
        .count();
    let takeovers = lo
        .fifo_lines()
        .iter()
        .filter(|l| l.subject == "INSTANCE" && l.state == "MASTER" && inside(l))
        .count();
    let window_ms = (to.mono_ns - from.mono_ns) as f64 / 1e6;
    let mut lines: Vec<(String, f64, String)> = [hi, lo]
        .iter()
        .flat_map(|r| {
            fifo_since(r, from)
                .into_iter()
                .filter(|(ms, _)| *ms <= window_ms)
                .map(|(ms, l)| (r.name.clone(), ms, l))
        })
        .collect();
    lines.sort_by(|a, b| a.1.total_cmp(&b.1));
    lines.truncate(50);
    FifoWindow {
        transitions,
        takeovers,
        lines,
    }
}

/// Notify FIFO lines of a router at or after `from`: (ms after `from`,
/// the line).
pub fn fifo_since(r: &RouterNode, from: Stamp) -> Vec<(f64, String)> {
    r.fifo_lines()
        .into_iter()
        .filter(|l| l.at >= from)
        .map(|l| ((l.at.mono_ns - from.mono_ns) as f64 / 1e6, l.raw))
        .collect()
}

/// Those of `vips` a router holds now, in their order. One pass over its
/// address watch (which sees every interface of the namespace, VLANs
/// too), rather than one per VIP: with 1000 VIPs that matters.
pub fn vips_held(r: &RouterNode, vips: &[IpAddr]) -> Vec<IpAddr> {
    let mut held = std::collections::HashSet::new();
    for e in r.watch.events() {
        if e.added {
            held.insert(e.addr);
        } else {
            held.remove(&e.addr);
        }
    }
    vips.iter().copied().filter(|v| held.contains(v)).collect()
}

/// Removes `vip` (with its instance's prefix) from the interface of its
/// instance (`eth0` when no instance has it).
pub fn remove_vip(r: &RouterNode, vip: IpAddr) -> Result<()> {
    let text = vip.to_string();
    let (cidr, ifname) = r
        .config()
        .and_then(|c| {
            c.instances.iter().find_map(|i| {
                i.vips
                    .iter()
                    .find(|v| v.split('/').next() == Some(text.as_str()))
                    .map(|v| (v.clone(), i.interface.clone()))
            })
        })
        .unwrap_or_else(|| (text.clone(), r.host.ifname.clone()));
    r.host.exec(&["ip", "addr", "del", &cidr, "dev", &ifname])?;
    Ok(())
}

/// An AF_PACKET socket on the client, to catch the master's adverts as
/// they pass and time an injection from one.
pub struct AdvertWatch {
    fd: OwnedFd,
}

impl AdvertWatch {
    fn open(host: &Host) -> Result<AdvertWatch> {
        let ifname = host.ifname.clone();
        host.run_in(move || {
            let cname = std::ffi::CString::new(ifname.clone())?;
            // SAFETY: plain libc calls; the descriptor is owned at once.
            let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
            if ifindex == 0 {
                bail!("no interface {ifname}");
            }
            let proto = (libc::ETH_P_IP as u16).to_be();
            // SAFETY: as above.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    i32::from(proto),
                )
            };
            if raw < 0 {
                return Err(std::io::Error::last_os_error()).context("packet socket");
            }
            // SAFETY: fresh descriptor.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            // SAFETY: sll is a valid sockaddr_ll of the size passed.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error()).context("binding the packet socket");
            }
            Ok(AdvertWatch { fd })
        })
    }

    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: buf is valid for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        (n > 0).then_some(n as usize)
    }

    /// Waits for the next advert of `vrid` from `mac` (older frames queued
    /// on the socket are dropped first) and returns when it was read.
    pub fn next_from(&self, mac: Mac, vrid: u8, timeout: Duration) -> Result<Stamp> {
        let mut buf = vec![0u8; 2048];
        // Drop what is queued (bounded).
        for _ in 0..100_000 {
            if self.recv(&mut buf).is_none() {
                break;
            }
        }
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let left = end.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, 1000) as i32;
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
                continue;
            }
            for _ in 0..1000 {
                let Some(n) = self.recv(&mut buf) else { break };
                let at = Stamp::now();
                let ev = decode_frame(at.rt_ns, &buf[..n]);
                if ev.src_mac == mac
                    && let Some(a) = ev.advert()
                    && a.vrid == vrid
                    && a.priority > 0
                {
                    return Ok(at);
                }
            }
        }
        bail!("no advert of VRID {vrid} from {mac} within {timeout:?}")
    }
}

/// Sleeps until `cond` holds or `timeout` passes (1 ms steps); the result
/// says which.
pub fn poll_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_until(timeout, Duration::from_millis(1), cond)
}

/// Sleeps for `d` (a thin wrapper to keep call sites short).
pub fn pause(d: Duration) {
    thread::sleep(d);
}
