//! Steady-state CPU: a master and a backup of each daemon running 1 or 100
//! instances at `advert_int 0.01`, measured from /proc over a window.

use std::time::Duration;

use anyhow::{Context, Result};
use xvrrpd_tests::{
    clock::Stamp,
    kconf::{Daemon, Instance},
};

use crate::{
    lab::{BenchLab, FifoWindow, fifo_window, pause},
    procstat::CpuMark,
};

/// One window of one daemon.
#[derive(Clone, Debug)]
pub struct CpuWindow {
    pub instances: usize,
    pub daemon: Daemon,
    /// % of one core.
    pub master_pct: f64,
    pub backup_pct: f64,
    /// The kernel's part of each.
    pub master_sys_pct: f64,
    pub backup_sys_pct: f64,
    pub secs: f64,
    /// Notify FIFO lines of either router during the window.
    pub transitions: usize,
    /// Times the backup became master during the window.
    pub takeovers: usize,
    /// The FIFO lines of the window, (router, ms into the window, line);
    /// the first 50.
    pub lines: Vec<(String, f64, String)>,
}

/// `n` instances VI_1…VI_n, VRIDs 1…n, one VIP each (192.0.2.100 on), all
/// at `priority`.
pub fn instances(n: usize, priority: u8) -> Vec<Instance> {
    (1..=n)
        .map(|i| {
            let mut inst = Instance::new(
                &format!("VI_{i}"),
                i as u8,
                &[&format!("192.0.2.{}/24", 99 + i)],
            );
            inst.priority = priority;
            inst
        })
        .collect()
}

pub fn lab(n: usize, xvrrpd_args: &[String]) -> Result<BenchLab> {
    let template = instances(1, 100).remove(0);
    BenchLab::new(
        &format!("bench-cpu-{n}"),
        template,
        xvrrpd_args,
        move |_, cfg| {
            let prio = cfg.instances[0].priority;
            cfg.instances = instances(n, prio);
            Ok(())
        },
    )
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
            daemon: d,
            master_pct: h0.percent_to(&h1),
            backup_pct: l0.percent_to(&l1),
            master_sys_pct: h0.sys_percent_to(&h1),
            backup_sys_pct: l0.sys_percent_to(&l1),
            secs: (t1.mono_ns - t0.mono_ns) as f64 / 1e9,
            transitions,
            takeovers,
            lines,
        })
    })();
    bl.stop_pair(d);
    res
}
