//! Steady-state CPU and wake-ups: a master and a backup of each daemon
//! running N VRRPv3 instances at one `advert_int` (the cases of
//! `--cpu-cases`), measured from /proc over a window. More than 250
//! instances go on VLAN sub-interfaces of the routers' `eth0`
//! ([`xvrrpd_tests::scale`]).

use std::time::Duration;

use anyhow::{Context, Result};
use xvrrpd_tests::{clock::Stamp, kconf::Daemon, scale};

use crate::{
    lab::{BenchLab, FifoWindow, fifo_window, pause},
    opts::CpuCase,
    procstat::CpuMark,
};

/// One window of one daemon.
#[derive(Clone, Debug)]
pub struct CpuWindow {
    pub instances: usize,
    pub advert_int: Duration,
    pub daemon: Daemon,
    /// % of one core: the scheduler's run time of every thread.
    pub master_pct: f64,
    pub backup_pct: f64,
    /// % of one core: utime+stime, sampled at the tick.
    pub master_tick_pct: f64,
    pub backup_tick_pct: f64,
    /// The kernel's part of those (stime).
    pub master_sys_pct: f64,
    pub backup_sys_pct: f64,
    /// Context switches (voluntary + nonvoluntary) per second, summed over
    /// every thread of every process of the daemon's group.
    pub master_wakeups_per_s: f64,
    pub backup_wakeups_per_s: f64,
    /// The same by thread name, busiest first.
    pub master_wakeups_by_thread: Vec<(String, f64)>,
    pub backup_wakeups_by_thread: Vec<(String, f64)>,
    pub secs: f64,
    /// Notify FIFO lines of either router during the window.
    pub transitions: usize,
    /// Times the backup became master during the window.
    pub takeovers: usize,
    /// The FIFO lines of the window, (router, ms into the window, line);
    /// the first 50.
    pub lines: Vec<(String, f64, String)>,
}

impl CpuWindow {
    pub fn case(&self) -> CpuCase {
        CpuCase {
            instances: self.instances,
            advert_int: self.advert_int,
        }
    }
}

/// The lab of one case: every router runs the case's instances at its
/// priority, on VLANs when there are more than 250 (made once the lab's
/// routers exist, before any daemon starts); also says how the VLANs
/// were made.
pub fn lab(case: CpuCase, xvrrpd_args: &[String]) -> Result<(BenchLab, scale::VlanKind)> {
    let n = case.instances;
    let template = scale::instances(1, 100, case.advert_int).remove(0);
    let mut bl = BenchLab::new(
        &format!("bench-cpu-{n}-{}ms", case.advert_int.as_millis()),
        template,
        xvrrpd_args,
        move |_, cfg| {
            let prio = cfg.instances[0].priority;
            cfg.instances = scale::instances(n, prio, case.advert_int);
            Ok(())
        },
    )?;
    // The bridge capture wakes tcpdump for every advert, and the kernel
    // charges that wake-up to the sender: a fifth of a master's CPU at
    // 10,000 adverts/s, the same for both daemons, and no part of either.
    // Nothing here reads the wire.
    bl.c.capture.stop().context("stopping the bridge capture")?;
    let mut kind = scale::VlanKind::None;
    // A router's place in the cluster is its index (its addresses).
    for (i, r) in bl.c.routers.iter().enumerate() {
        kind = scale::add_vlans(&bl.c.lab.net, r, i, n)?;
    }
    Ok((bl, kind))
}

/// Starts `d`'s pair, lets it settle, measures both routers over `secs`.
pub fn measure(bl: &mut BenchLab, d: Daemon, secs: f64, settle: Duration) -> Result<CpuWindow> {
    bl.start_pair(d)?;
    let res = (|| -> Result<CpuWindow> {
        pause(settle);
        let p = bl.pair(d);
        let (hi, lo) = (bl.c.router(&p.hi), bl.c.router(&p.lo));
        let hpid = hi.pid().context("master not running")? as i32;
        let lpid = lo.pid().context("backup not running")? as i32;
        let t0 = Stamp::now();
        let (h0, l0) = (CpuMark::take(hpid)?, CpuMark::take(lpid)?);
        pause(Duration::from_secs_f64(secs));
        let (h1, l1) = (CpuMark::take(hpid)?, CpuMark::take(lpid)?);
        let t1 = Stamp::now();
        let FifoWindow {
            transitions,
            takeovers,
            lines,
        } = fifo_window(hi, lo, t0, t1);
        Ok(CpuWindow {
            instances: bl.vips.len(),
            advert_int: bl.c.inst.advert_int,
            daemon: d,
            master_pct: h0.run_percent_to(&h1),
            backup_pct: l0.run_percent_to(&l1),
            master_tick_pct: h0.percent_to(&h1),
            backup_tick_pct: l0.percent_to(&l1),
            master_sys_pct: h0.sys_percent_to(&h1),
            backup_sys_pct: l0.sys_percent_to(&l1),
            master_wakeups_per_s: h0.wakeups_per_s_to(&h1),
            backup_wakeups_per_s: l0.wakeups_per_s_to(&l1),
            master_wakeups_by_thread: h0.wakeups_by_thread_to(&h1),
            backup_wakeups_by_thread: l0.wakeups_by_thread_to(&l1),
            secs: (t1.mono_ns - t0.mono_ns) as f64 / 1e9,
            transitions,
            takeovers,
            lines,
        })
    })();
    bl.stop_pair(d);
    res
}
