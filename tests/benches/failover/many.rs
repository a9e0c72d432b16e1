//! Many instances fail over together and back (`--only scale`): a master
//! and a backup of each daemon running N VRRPv3 instances with one VIP
//! each (the cases of `--scale-cases`, on VLANs past 250 as in the CPU
//! section). The master's host goes away (its bridge port down, then
//! SIGKILL); how long until the backup holds every VIP, and the backup's
//! CPU time for it. The master comes back and preempts; how long until
//! every VIP is back. Every VIP should move exactly once each way.

use std::{collections::HashSet, net::IpAddr, time::Duration};

use anyhow::{Context, Result, bail};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use xvrrpd_tests::{
    addr_watch,
    kconf::Daemon,
    lab::wait_until,
    router::{LinkSide, RouterNode},
};

use crate::{
    lab::{BenchLab, pause, vips_held},
    opts::CpuCase,
    procstat::CpuMark,
    stats::{Summary, summarize},
};

/// One daemon's run of one case.
#[derive(Clone, Debug)]
pub struct MassFailover {
    pub instances: usize,
    pub advert_int: Duration,
    pub daemon: Daemon,
    /// The backup's Master_Down_Interval.
    pub mdi_ns: u64,
    /// From the master's host going away to the backup's first / last VIP
    /// added (its address watch).
    pub first_vip_ns: u64,
    pub all_vips_ns: u64,
    /// The backup's CPU time (run time of every thread) from the master's
    /// host going away until it held every VIP.
    pub takeover_cpu_ms: f64,
    /// From the master's restart until it holds every VIP again and the
    /// backup none.
    pub back_ns: u64,
    /// VIPs not added to the backup and removed from it exactly once over
    /// the whole run.
    pub not_moved_once: usize,
    /// xvrrpd's own timeline of its takeovers (its status), in ms: each
    /// down timer handled after its deadline, and its VIPs reported added
    /// after that.
    pub timer_late_ms: Option<Summary>,
    pub vips_after_ms: Option<Summary>,
}

/// From xvrrpd's status: how late each takeover since `since_ns` handled
/// its down timer, and how long its VIPs took after that.
fn takeover_timelines(r: &RouterNode, since_ns: u64) -> Result<(Vec<f64>, Vec<f64>)> {
    let ms = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e6;
    let (mut late, mut vips) = (Vec::new(), Vec::new());
    for i in r.status()?.instances {
        for t in i.transitions.iter().filter(|t| t.at_ns > since_ns) {
            if let (Some(d), Some(f)) = (t.deadline_ns, t.fired_at_ns) {
                late.push(ms(d, f));
                if let Some(v) = t.vips_done_ns {
                    vips.push(ms(f, v));
                }
            }
        }
    }
    Ok((late, vips))
}

impl MassFailover {
    pub fn case(&self) -> CpuCase {
        CpuCase {
            instances: self.instances,
            advert_int: self.advert_int,
        }
    }
}

/// The latest add (`added`) or removal of any of `vips` on `r` after
/// `since_ns`, and the earliest.
fn span(r: &RouterNode, vips: &[IpAddr], since_ns: u64, added: bool) -> Option<(u64, u64)> {
    let wanted: HashSet<IpAddr> = vips.iter().copied().collect();
    let times: Vec<u64> = r
        .watch
        .events()
        .into_iter()
        .filter(|e| !e.initial && e.added == added && e.at.mono_ns > since_ns)
        .filter(|e| wanted.contains(&e.addr))
        .map(|e| e.at.mono_ns)
        .collect();
    Some((*times.iter().min()?, *times.iter().max()?))
}

/// Removes every one of `vips` that `r` holds, in one `ip -batch` (a
/// killed keepalived leaves its VIPs behind; a rebooted host has none).
fn remove_leftovers(r: &RouterNode, vips: &[IpAddr]) -> Result<()> {
    let held: HashSet<IpAddr> = vips_held(r, vips).into_iter().collect();
    if held.is_empty() {
        return Ok(());
    }
    let cfg = r.config().context("no config")?;
    let mut lines = String::new();
    for i in &cfg.instances {
        for (cidr, addr) in i.vips.iter().zip(i.vip_addrs()) {
            if held.contains(&addr) {
                lines.push_str(&format!("addr del {cidr} dev {}\n", i.interface));
            }
        }
    }
    let path = r.dir.join("leftover-vips.batch");
    std::fs::write(&path, lines)?;
    let path_text = path.to_string_lossy().to_string();
    r.host.exec(&["ip", "-force", "-batch", &path_text])?;
    Ok(())
}

/// Starts `d`'s pair, lets it settle, takes the master's host away and
/// brings it back; always stops the pair.
pub fn measure(bl: &mut BenchLab, d: Daemon, settle: Duration) -> Result<MassFailover> {
    bl.start_pair(d)?;
    let res = (|| -> Result<MassFailover> {
        pause(settle);
        let p = bl.pair(d);
        let n = bl.vips.len();
        let mdi_ns = bl.mdi(&p.lo);
        let lo_pid = bl.c.router(&p.lo).pid().context("backup not running")? as i32;
        let cpu0 = CpuMark::take(lo_pid)?;

        // The master's host goes away: its port first, then its daemon.
        let hi = bl.c.router_mut(&p.hi);
        let pgid = hi.pid().context("master not running")? as i32;
        let gone = hi.link_down(LinkSide::Switch)?;
        killpg(Pid::from_raw(pgid), Signal::SIGKILL).context("killpg")?;
        hi.kill9()?;

        let timeout = Duration::from_nanos(mdi_ns * 3) + Duration::from_secs(20);
        let (lo, vips) = (bl.c.router(&p.lo), &bl.vips);
        if !wait_until(timeout, Duration::from_millis(2), || {
            vips_held(lo, vips).len() == n
        }) {
            bail!(
                "{}: {} of {n} VIPs after {timeout:?}",
                p.lo,
                vips_held(lo, vips).len()
            );
        }
        let cpu1 = CpuMark::take(lo_pid)?;
        let (first, last) =
            span(lo, vips, gone.mono_ns, true).context("no VIP added on the backup")?;

        // The master's host comes back and preempts.
        pause(Duration::from_nanos(mdi_ns * 2));
        // Read after the pause: the daemon records a transition's effects
        // as their reports come in.
        let (late, vips_after) = match d {
            Daemon::Xvrrpd => takeover_timelines(bl.c.router(&p.lo), gone.mono_ns)?,
            Daemon::Keepalived => (Vec::new(), Vec::new()),
        };
        remove_leftovers(bl.c.router(&p.hi), &bl.vips)?;
        bl.c.router(&p.hi).link_up(LinkSide::Switch)?;
        let back = bl.c.router_mut(&p.hi).start()?;
        let timeout = Duration::from_nanos(mdi_ns * 4) + Duration::from_secs(30);
        let (hi, lo, vips) = (bl.c.router(&p.hi), bl.c.router(&p.lo), &bl.vips);
        if !wait_until(timeout, Duration::from_millis(2), || {
            vips_held(hi, vips).len() == n && vips_held(lo, vips).is_empty()
        }) {
            bail!(
                "after the restart: {} holds {} of {n} VIPs, {} still {}, after {timeout:?}",
                p.hi,
                vips_held(hi, vips).len(),
                p.lo,
                vips_held(lo, vips).len()
            );
        }
        let back_done = [
            span(hi, vips, back.mono_ns, true).map(|s| s.1),
            span(lo, vips, back.mono_ns, false).map(|s| s.1),
        ]
        .into_iter()
        .flatten()
        .max()
        .context("nothing moved back")?;
        // Late extra moves show up after a while.
        pause(Duration::from_nanos(mdi_ns * 2));
        lo.watch.check_complete()?;
        let m = addr_watch::moves(&lo.watch.events(), gone.mono_ns);
        let not_moved_once = vips
            .iter()
            .filter(|v| m.get(v).copied().unwrap_or_default() != (1, 1))
            .count();
        Ok(MassFailover {
            instances: n,
            advert_int: bl.c.inst.advert_int,
            daemon: d,
            mdi_ns,
            first_vip_ns: first - gone.mono_ns,
            all_vips_ns: last - gone.mono_ns,
            takeover_cpu_ms: cpu0.run_ms_to(&cpu1),
            back_ns: back_done.saturating_sub(back.mono_ns),
            not_moved_once,
            timer_late_ms: summarize(&late),
            vips_after_ms: summarize(&vips_after),
        })
    })();
    bl.stop_pair(d);
    res
}

/// How a run reads in the progress log.
pub fn line(m: &MassFailover) -> String {
    let ms = |v: Option<Summary>| match v {
        Some(s) => format!("median {:.2} ms, max {:.2} ms", s.median, s.max),
        None => "n/a".into(),
    };
    let timeline = match m.daemon {
        Daemon::Xvrrpd => format!(
            "; down timers handled after their deadlines: {}; VIPs added after that: {}",
            ms(m.timer_late_ms),
            ms(m.vips_after_ms)
        ),
        Daemon::Keepalived => String::new(),
    };
    format!(
        "{}: all {} VIPs on the backup {:.1} ms after the master's host went away (first {:.1} ms; \
         Master_Down_Interval {:.1} ms), backup CPU {:.1} ms; all back {:.1} ms after the restart; \
         {} VIP(s) not moved exactly once{timeline}",
        m.daemon,
        m.instances,
        m.all_vips_ns as f64 / 1e6,
        m.first_vip_ns as f64 / 1e6,
        m.mdi_ns as f64 / 1e6,
        m.takeover_cpu_ms,
        m.back_ns as f64 / 1e6,
        m.not_moved_once
    )
}
