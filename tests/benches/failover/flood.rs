//! Junk floods from the client: frames a VRRP router must drop, sent at a
//! paced, bounded rate while a pair runs; what it costs the daemons and
//! whether the master keeps advertising on time.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use xvrrpd::packet::{Advert, Auth, V3Ipv4Checksum, Version, checksum, encode, frame::VrrpFrame};
use xvrrpd_tests::{
    FrameInjector,
    analysis::adverts,
    clock::Stamp,
    frame_injector,
    kconf::{Daemon, Instance},
};

use crate::{
    lab::{BenchLab, FifoWindow, fifo_window, pause},
    procstat::CpuMark,
};

pub const VRID: u8 = 51;
pub const VIP: &str = "192.0.2.100";
pub const PASSWORD: &str = "bench1";
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Junk {
    /// A valid advert for a VRID nobody runs.
    WrongVrid,
    /// The right VRID, priority 254, a wrong checksum.
    BadChecksum,
    /// The right VRID, priority 254, valid but TTL 64.
    BadTtl,
    /// VRRPv2, the right VRID, priority 254, the wrong password.
    BadAuth,
    /// The right VRID, priority 254, cut inside its address (checksum
    /// computed over what is there, so only the length is wrong).
    Truncated,
}

impl Junk {
    pub const ALL: [Junk; 5] = [
        Junk::WrongVrid,
        Junk::BadChecksum,
        Junk::BadTtl,
        Junk::BadAuth,
        Junk::Truncated,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Junk::WrongVrid => "wrong-vrid",
            Junk::BadChecksum => "bad-checksum",
            Junk::BadTtl => "bad-ttl",
            Junk::BadAuth => "bad-auth",
            Junk::Truncated => "truncated",
        }
    }

    /// Whether the pair under attack runs VRRPv2 with a password.
    pub fn needs_v2(self) -> bool {
        self == Junk::BadAuth
    }
}

/// The instance the floods attack: VRRPv3 `advert_int 0.01`, or VRRPv2
/// `advert_int 1` with `auth_pass` for the bad-auth flood.
pub fn instance(v2_auth: bool) -> Instance {
    // (VRRPv3 advert_int 0.01 unless v2_auth.)
    let mut inst = Instance::new("VI_1", VRID, &[&format!("{VIP}/24")]);
    if v2_auth {
        inst.version = 2;
        inst.advert_int = Duration::from_secs(1);
        inst.auth_pass = Some(PASSWORD.into());
    }
    inst
}

/// The frame of a junk kind.
pub fn frame(kind: Junk) -> Result<Vec<u8>> {
    let src = IpAddr::V4(CLIENT_IP);
    let dst = IpAddr::V4(GROUP);
    let vip: IpAddr = VIP.parse()?;
    let v3 = |vrid: u8| Advert {
        version: Version::V3,
        vrid,
        priority: 254,
        interval_cs: 1,
        addrs: vec![vip],
        auth: Auth::None,
    };
    let enc = |a: &Advert| encode(a, src, dst, V3Ipv4Checksum::PseudoHeader);
    Ok(match kind {
        Junk::WrongVrid => VrrpFrame::new(src, dst, VRID + 1).build(&enc(&v3(VRID + 1))?),
        Junk::BadChecksum => {
            let mut m = enc(&v3(VRID))?;
            m[6] ^= 0x5a;
            m[7] ^= 0xa5;
            VrrpFrame::new(src, dst, VRID).build(&m)
        }
        Junk::BadTtl => {
            let mut f = VrrpFrame::new(src, dst, VRID);
            f.ttl = 64;
            f.build(&enc(&v3(VRID))?)
        }
        Junk::BadAuth => {
            let a = Advert {
                version: Version::V2,
                vrid: VRID,
                priority: 254,
                interval_cs: 100,
                addrs: vec![vip],
                auth: Auth::pass("wrong"),
            };
            VrrpFrame::new(src, dst, VRID).build(&enc(&a)?)
        }
        Junk::Truncated => {
            let mut m = enc(&v3(VRID))?;
            m.truncate(10);
            m[6] = 0;
            m[7] = 0;
            let c = checksum::compute(&m, checksum::pseudo_header_sum(src, dst, m.len()));
            m[6..8].copy_from_slice(&c.to_be_bytes());
            VrrpFrame::new(src, dst, VRID).build(&m)
        }
    })
}

/// What a paced flood did.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub frames: u64,
    pub errors: u64,
    pub secs: f64,
}

/// Sends `frame` at `rate` per second for `secs` seconds: in 1 ms ticks,
/// each sending what is due; bounded by count and by time (`secs` + 2 s).
pub fn flood(inj: &FrameInjector, frame: &[u8], rate: u64, secs: f64) -> Sent {
    let total = (rate as f64 * secs).round() as u64;
    let start = Instant::now();
    let hard_end = start + Duration::from_secs_f64(secs + 2.0);
    let (mut sent, mut errors) = (0u64, 0u64);
    while sent < total && Instant::now() < hard_end {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            if inj.send(frame).is_err() {
                errors += 1;
            }
            sent += 1;
        }
        if sent >= total {
            break;
        }
        // Sleep until the next frame is due, 1 ms at most.
        let next = Duration::from_secs_f64((sent + 1) as f64 / rate as f64);
        let wait = next.saturating_sub(start.elapsed());
        pause(wait.min(Duration::from_millis(1)));
    }
    Sent {
        frames: sent,
        errors,
        secs: start.elapsed().as_secs_f64(),
    }
}

/// One flood against one daemon.
#[derive(Clone, Debug)]
pub struct FloodResult {
    pub kind: Junk,
    pub rate: u64,
    pub daemon: Daemon,
    pub sent: Sent,
    /// % of one core, master and backup.
    pub master_cpu: f64,
    pub backup_cpu: f64,
    pub adverts_sent: u64,
    pub adverts_expected: f64,
    /// The master's longest time without an advert (window edges count).
    pub longest_silence_ns: u64,
    /// Times the backup became master during the window (from its notify
    /// FIFO; at least 1 if it advertised with priority > 0).
    pub false_failovers: usize,
    pub backup_adverts: usize,
    /// Notify FIFO lines of either router in the window.
    pub transitions: usize,
    /// The first 50 of them: (router, ms into the window, line).
    pub lines: Vec<(String, f64, String)>,
    /// Bytes the daemons wrote to their logs during the window.
    pub log_bytes: u64,
}

/// Starts `d`'s pair, floods it with `kind` at `rate` for `secs`, measures,
/// stops the pair.
pub fn run(bl: &mut BenchLab, d: Daemon, kind: Junk, rate: u64, secs: f64) -> Result<FloodResult> {
    let frame = frame(kind)?;
    let inj = frame_injector(&bl.c.client, "eth0")?;
    bl.start_pair(d)?;
    let res = (|| -> Result<FloodResult> {
        let interval = bl.c.inst.advert_int;
        pause(interval + Duration::from_millis(300));
        let p = bl.pair(d);
        let (hi, lo) = (bl.c.router(&p.hi), bl.c.router(&p.lo));
        let hpid = hi.pid().context("master not running")? as i32;
        let lpid = lo.pid().context("backup not running")? as i32;
        let log_size = |r: &xvrrpd_tests::router::RouterNode| {
            std::fs::metadata(&r.log_path).map(|m| m.len()).unwrap_or(0)
        };
        let (hlog0, llog0) = (log_size(hi), log_size(lo));
        let logs0 = hlog0 + llog0;
        let t0 = Stamp::now();
        let (h0, l0) = (CpuMark::take(hpid)?, CpuMark::take(lpid)?);
        let sent = flood(&inj, &frame, rate, secs);
        let (h1, l1) = (CpuMark::take(hpid)?, CpuMark::take(lpid)?);
        let t1 = Stamp::now();
        let logs1 = log_size(hi) + log_size(lo);
        for (r, from) in [(hi, hlog0), (lo, llog0)] {
            save_log_window(
                r,
                from,
                &format!("flood-{}-{rate}-{}-{}", kind.name(), d.name(), r.name),
            );
        }
        // Let the capture catch up, and a late failover show.
        let after = (interval * 4).clamp(Duration::from_millis(100), Duration::from_millis(1200));
        pause(after);
        let events = bl.c.wire()?;
        let ads = adverts(&events, bl.c.inst.vrid, false);
        let mine: Vec<u64> = ads
            .iter()
            .filter(|a| {
                a.mac == hi.mac && a.priority > 0 && a.t_ns >= t0.rt_ns && a.t_ns <= t1.rt_ns
            })
            .map(|a| a.t_ns)
            .collect();
        let mut edges = vec![t0.rt_ns];
        edges.extend(&mine);
        edges.push(t1.rt_ns);
        let longest_silence_ns = edges.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        let settle_end = t1.rt_ns + after.as_nanos() as u64;
        let backup_adverts = ads
            .iter()
            .filter(|a| {
                a.mac == lo.mac && a.priority > 0 && a.t_ns >= t0.rt_ns && a.t_ns <= settle_end
            })
            .count();
        // Transitions until now: a failover late in the settle counts too.
        let FifoWindow {
            transitions,
            takeovers: backup_took_over,
            lines,
        } = fifo_window(hi, lo, t0, Stamp::now());
        let window = (t1.rt_ns - t0.rt_ns) as f64 / 1e9;
        Ok(FloodResult {
            kind,
            rate,
            daemon: d,
            sent,
            master_cpu: h0.run_percent_to(&h1),
            backup_cpu: l0.run_percent_to(&l1),
            adverts_sent: mine.len() as u64,
            adverts_expected: window / interval.as_secs_f64(),
            longest_silence_ns,
            false_failovers: backup_took_over.max(usize::from(backup_adverts > 0)),
            backup_adverts,
            transitions,
            lines,
            log_bytes: logs1.saturating_sub(logs0),
        })
    })();
    bl.stop_pair(d);
    res
}

/// Keeps what a router's daemon logged from byte `from` on (64 KiB at
/// most: the start of it) in `target/bench/logs/<name>.log`.
fn save_log_window(r: &xvrrpd_tests::router::RouterNode, from: u64, name: &str) {
    let Ok(bytes) = std::fs::read(&r.log_path) else {
        return;
    };
    let start = (from as usize).min(bytes.len());
    let end = (start + 64 * 1024).min(bytes.len());
    let dir = xvrrpd_tests::bench::out_dir().join("logs");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{name}.log")), &bytes[start..end]);
    }
}
