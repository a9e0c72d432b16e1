//! The failover trials: crash (the host gone), kill -9 of the daemon alone,
//! SIGTERM and link down of the master, each followed by the master's return
//! (restart or link up) and preemption.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use xvrrpd::vrrp::State;
use xvrrpd_tests::{
    analysis::{self, adverts, first_advert_from},
    clock::Stamp,
    kconf::Daemon,
    pcap::Mac,
    prober::{ProbeLog, Prober},
    router::LinkSide,
};

use crate::{
    lab::{BenchLab, Pair, pause, poll_until, remove_vip},
    stats::Rng,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The host's link taken down at the bridge and SIGKILL to the daemon's
    /// whole process group right after (the host is gone, as after a power
    /// loss); before the restart the leftover VIP is removed (a rebooted
    /// host has none) and the link comes back.
    Crash,
    /// SIGTERM: a priority-0 advert, VIPs removed, exit.
    Sigterm,
    /// SIGKILL to the daemon's process group, the host left running (a
    /// crash of the daemon, the OOM killer): whatever survives it acts
    /// (xvrrpd's warden says the dead master's farewell); then a restart.
    Kill9,
    /// The bridge port of the master goes down (carrier lost); the daemon
    /// lives on and goes FAULT; then the link comes back.
    LinkDown,
}

impl Failure {
    pub const ALL: [Failure; 4] = [
        Failure::Crash,
        Failure::Kill9,
        Failure::Sigterm,
        Failure::LinkDown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Failure::Crash => "crash",
            Failure::Kill9 => "daemon-kill9",
            Failure::Sigterm => "sigterm",
            Failure::LinkDown => "link-down",
        }
    }
}

/// What one failure and the return after it measured (ns).
#[derive(Clone, Debug, Default)]
pub struct StepResult {
    /// Fraction of the advert interval after the master's advert at which
    /// the failure was injected.
    pub phase: f64,
    /// new master's first advert − old master's last advert.
    pub gap_ns: u64,
    /// What the protocol says the gap is.
    pub theory_ns: u64,
    /// gap − theory.
    pub detection_error_ns: i64,
    /// Whether the old master's last advert had priority 0.
    pub last_was_p0: bool,
    /// The client's longest run without replies around the failure.
    pub outage_ns: Option<u64>,
    /// GARP after the new master's first advert.
    pub garp_after_ns: Option<u64>,
    /// Restart (exec of the daemon) → its first advert on the wire.
    pub restart_to_advert_ns: Option<u64>,
    /// `restart_to_advert_ns` − the restarted router's Master_Down_Interval
    /// (it starts as backup and must wait that long before it preempts).
    pub restart_over_mdi_ns: Option<i64>,
    /// The client's longest run without replies while the master came back
    /// and preempted.
    pub preempt_gap_ns: Option<u64>,
    /// Restart → the lab saw the daemon up (xvrrpd: its control socket
    /// answers; keepalived: its VRRP child wrote its pid file).
    pub restart_up_ns: Option<u64>,
    /// xvrrpd: restart → its instance entered BACKUP (down timer armed),
    /// from its status report.
    pub restart_backup_ns: Option<u64>,
    /// xvrrpd: the new master's own record of the takeover.
    pub xvrrpd_takeover: Option<Timeline>,
    /// The canary thread's worst wake-up lateness between the old master's
    /// last advert and the new master's first (0: never above 200 µs): a
    /// host stall, whatever the daemon does.
    pub host_stall_ns: u64,
}

/// Where an xvrrpd takeover's detection error goes, from the new master's
/// status report set against the bridge capture (ns).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timeline {
    /// Kernel receive stamp of the old master's last advert at the backup
    /// − its time on the bridge capture.
    pub rx_stamp_after_wire: i64,
    /// The down timer's deadline − that receive stamp − the theory
    /// (should be 0).
    pub deadline_error: i64,
    /// When the timer was handled − its deadline.
    pub timer_late: i64,
    /// The new master's first advert on the bridge − when the timer was
    /// handled.
    pub fired_to_wire: i64,
    /// VIPs in place − timer handled.
    pub fired_to_vips: Option<i64>,
    /// First GARP sent (as the daemon records it) − timer handled.
    pub fired_to_garp: Option<i64>,
}

/// The takeover as the new xvrrpd master recorded it.
fn takeover_timeline(
    bl: &BenchLab,
    new: &str,
    tk: &analysis::Takeover,
    theory_ns: u64,
    event: Stamp,
) -> Option<Timeline> {
    let rep = bl.c.router(new).status().ok()?;
    let st = rep
        .instances
        .into_iter()
        .find(|i| i.name == bl.c.inst.name)?;
    let t = st
        .transitions
        .iter()
        .rev()
        .find(|t| t.to == State::Master)?;
    let (last, deadline, fired) = (t.last_advert_ns?, t.deadline_ns?, t.fired_at_ns?);
    let rt = |mono: u64| event.mono_to_rt(mono) as i64;
    Some(Timeline {
        rx_stamp_after_wire: rt(last) - tk.old_last.t_ns as i64,
        deadline_error: deadline as i64 - last as i64 - theory_ns as i64,
        timer_late: fired as i64 - deadline as i64,
        fired_to_wire: tk.new_first.t_ns as i64 - rt(fired),
        fired_to_vips: t.vips_done_ns.map(|v| v as i64 - fired as i64),
        fired_to_garp: t.first_garp_ns.map(|v| v as i64 - fired as i64),
    })
}

/// Restart → the first transition to BACKUP after it, from xvrrpd's
/// status report.
fn restart_backup_at(bl: &BenchLab, name: &str, back: Stamp) -> Option<u64> {
    let rep = bl.c.router(name).status().ok()?;
    let st = rep
        .instances
        .into_iter()
        .find(|i| i.name == bl.c.inst.name)?;
    st.transitions
        .iter()
        .find(|t| t.to == State::Backup && t.at_ns >= back.mono_ns)
        .map(|t| t.at_ns - back.mono_ns)
}

/// Runs one failure of `pair`'s master and its return. The pair runs,
/// with its higher-priority router as master, before and after.
pub fn run_step(
    bl: &mut BenchLab,
    pair: &Pair,
    failure: Failure,
    rng: &mut Rng,
) -> Result<StepResult> {
    let interval = bl.c.inst.advert_int;
    let vrid = bl.c.inst.vrid;
    let vip = bl.c.vip;
    let (hi_mac, lo_mac) = (bl.c.router(&pair.hi).mac, bl.c.router(&pair.lo).mac);
    let mdi_lo = bl.mdi(&pair.lo);
    let mdi_hi = bl.mdi(&pair.hi);
    let skew_lo = bl.c.skew_ns(&pair.lo);
    // Long enough for the failure, the return and their margins.
    let max = Duration::from_nanos(mdi_lo * 3 + mdi_hi * 3) + Duration::from_secs(20);
    let prober = bl.probe(max)?;
    let step = Step {
        bl,
        pair,
        failure,
        prober: &prober,
        interval,
        vrid,
        vip,
        hi_mac,
        lo_mac,
        mdi_lo,
        mdi_hi,
        skew_lo,
    };
    let result = step.run(rng);
    let _ = prober.stop();
    result
}

/// One step under way: what its phases share.
struct Step<'a> {
    bl: &'a mut BenchLab,
    pair: &'a Pair,
    failure: Failure,
    prober: &'a Prober,
    interval: Duration,
    vrid: u8,
    vip: std::net::IpAddr,
    hi_mac: Mac,
    lo_mac: Mac,
    mdi_lo: u64,
    mdi_hi: u64,
    skew_lo: u64,
}

impl Step<'_> {
    fn run(mut self, rng: &mut Rng) -> Result<StepResult> {
        let mut out = StepResult::default();
        // The client must be talking to the master before the failure.
        let since = Stamp::now();
        if !self.client_answered(self.hi_mac, since.rt_ns, 20) {
            bail!(
                "the client's pings are not answered by {} before the failure",
                self.pair.hi
            );
        }
        // A random point of the advert cycle.
        out.phase = rng.unit();
        self.pause_until_phase(out.phase)?;
        let event = self.inject()?;
        self.wait_backup_serving(event)?;
        self.measure_takeover(event, &mut out)?;

        // The master comes back.
        let (back, up_at) = self.bring_back()?;
        self.wait_master_serving(back)?;
        self.measure_return(back, up_at, &mut out)?;
        let p = self.pair.clone();
        self.bl
            .wait_settled(&p, Duration::from_secs(3))
            .context("after the master came back")?;
        Ok(out)
    }

    /// Whether the client gets `n` replies from `mac` after `from_rt`
    /// within 3 s.
    fn client_answered(&self, mac: Mac, from_rt: u64, n: usize) -> bool {
        poll_until(Duration::from_secs(3), || {
            answered_by(&self.prober.snapshot(), mac, from_rt) >= n
        })
    }

    /// Waits for the master's next advert, then `phase` of an interval.
    fn pause_until_phase(&mut self, phase: f64) -> Result<()> {
        let seen = self.bl.advert_watch()?.next_from(
            self.hi_mac,
            self.vrid,
            self.interval * 3 + Duration::from_secs(1),
        )?;
        let wait = self.interval.mul_f64(phase);
        let elapsed = Stamp::now().mono_ns - seen.mono_ns;
        pause(wait.saturating_sub(Duration::from_nanos(elapsed)));
        Ok(())
    }

    /// Injects the failure into the master; when it took effect.
    fn inject(&mut self) -> Result<Stamp> {
        let pair = self.pair;
        Ok(match self.failure {
            Failure::Crash => {
                // The host goes away: its bridge port first (that is when the
                // client loses it), then SIGKILL to the daemon's group right
                // after, so whatever the daemon makes of the carrier loss in
                // between cannot reach the wire. Killing first would let the
                // dying process hold the RTNL lock (an exiting xvrrpd detaches
                // its XDP program) and delay the port going down by tens of ms,
                // during which the host would still answer.
                let r = self.bl.c.router_mut(&pair.hi);
                let pgid = r.pid().context("the master is not running")? as i32;
                let at = r.link_down(LinkSide::Switch)?;
                killpg(Pid::from_raw(pgid), Signal::SIGKILL).context("killpg")?;
                r.kill9()?;
                at
            }
            Failure::Kill9 => self.bl.c.router_mut(&pair.hi).kill9()?,
            Failure::Sigterm => {
                let (at, status) = self.bl.c.router_mut(&pair.hi).sigterm()?;
                if !status.success() {
                    bail!("{} exited with {status} on SIGTERM", pair.hi);
                }
                at
            }
            Failure::LinkDown => self.bl.c.router(&pair.hi).link_down(LinkSide::Switch)?,
        })
    }

    /// The backup takes the VIP and the client follows it.
    fn wait_backup_serving(&self, event: Stamp) -> Result<()> {
        let (pair, failure, vip) = (self.pair, self.failure, self.vip);
        let lo = self.bl.c.router(&pair.lo);
        let timeout = Duration::from_nanos(self.mdi_lo * 3) + Duration::from_secs(2);
        if !poll_until(timeout, || {
            lo.watch
                .held(vip)
                .iter()
                .any(|h| h.from >= event.mono_ns && h.to.is_none())
        }) {
            bail!(
                "{} did not take the VIP within {timeout:?} of the {}",
                pair.lo,
                failure.name()
            );
        }
        if !self.client_answered(self.lo_mac, event.rt_ns, 5) {
            bail!(
                "the client's pings are not answered by {} after the {}",
                pair.lo,
                failure.name()
            );
        }
        Ok(())
    }

    /// The takeover's figures from the capture, the daemon, the canary and
    /// the client.
    fn measure_takeover(&self, event: Stamp, out: &mut StepResult) -> Result<()> {
        let bl = &*self.bl;
        let tk = wait_takeover(bl, self.hi_mac, self.lo_mac, event.rt_ns)?;
        pause(Duration::from_millis(10));
        let now = Stamp::now();
        out.gap_ns = tk.gap_ns;
        out.last_was_p0 = tk.old_last.priority == 0;
        out.theory_ns = match self.failure {
            Failure::Sigterm | Failure::Kill9 if out.last_was_p0 => self.skew_lo,
            _ => self.mdi_lo,
        };
        out.detection_error_ns = tk.gap_ns as i64 - out.theory_ns as i64;
        out.garp_after_ns = tk.announce_ns.map(|a| a - tk.new_first.t_ns);
        if self.pair.daemon == Daemon::Xvrrpd {
            out.xvrrpd_takeover = takeover_timeline(bl, &self.pair.lo, &tk, out.theory_ns, event);
        }
        if let Some(c) = &bl.canary {
            out.host_stall_ns = c.worst_between(
                event.rt_to_mono(tk.old_last.t_ns),
                event.rt_to_mono(tk.new_first.t_ns),
            );
        }
        let log = self.prober.snapshot();
        out.outage_ns = Some(
            log.outage(event.rt_ns.saturating_sub(20_000_000), now.rt_ns)
                .gap_ns,
        );
        Ok(())
    }

    /// Restarts the old master (or brings its link back): when, and when
    /// a restarted daemon's start returned.
    fn bring_back(&mut self) -> Result<(Stamp, Option<Stamp>)> {
        let (pair, vip) = (self.pair, self.vip);
        let mut up_at = None;
        let back = match self.failure {
            Failure::Crash => {
                let r = self.bl.c.router(&pair.hi);
                if r.has_vip(vip) {
                    remove_vip(r, vip).context("removing the crashed host's leftover VIP")?;
                }
                r.link_up(LinkSide::Switch)?;
                let at = self.bl.c.router_mut(&pair.hi).start()?;
                up_at = Some(Stamp::now());
                at
            }
            Failure::Sigterm | Failure::Kill9 => {
                let at = self.bl.c.router_mut(&pair.hi).start()?;
                up_at = Some(Stamp::now());
                at
            }
            Failure::LinkDown => self.bl.c.router(&pair.hi).link_up(LinkSide::Switch)?,
        };
        Ok((back, up_at))
    }

    /// The old master takes the VIP back and the client follows it.
    fn wait_master_serving(&self, back: Stamp) -> Result<()> {
        let (pair, failure, vip) = (self.pair, self.failure, self.vip);
        let timeout = Duration::from_nanos(self.mdi_hi * 3) + Duration::from_secs(3);
        let (hi, lo) = (self.bl.c.router(&pair.hi), self.bl.c.router(&pair.lo));
        if !poll_until(timeout, || hi.has_vip(vip) && !lo.has_vip(vip)) {
            bail!(
                "{} did not take the VIP back from {} within {timeout:?} after the {}",
                pair.hi,
                pair.lo,
                if failure == Failure::LinkDown {
                    "link came back"
                } else {
                    "restart"
                }
            );
        }
        if !self.client_answered(self.hi_mac, back.rt_ns, 10) {
            bail!(
                "the client's pings are not answered by {} after it came back",
                pair.hi
            );
        }
        Ok(())
    }

    /// The return's figures: startup cost after a restart, preemption gap.
    fn measure_return(
        &self,
        back: Stamp,
        up_at: Option<Stamp>,
        out: &mut StepResult,
    ) -> Result<()> {
        let bl = &*self.bl;
        let first = wait_first_advert(bl, self.hi_mac, back.rt_ns)?;
        pause(Duration::from_millis(10));
        let now = Stamp::now();
        if self.failure != Failure::LinkDown {
            let d = first.saturating_sub(back.rt_ns);
            out.restart_to_advert_ns = Some(d);
            out.restart_over_mdi_ns = Some(d as i64 - self.mdi_hi as i64);
            out.restart_up_ns = up_at.map(|u| u.mono_ns.saturating_sub(back.mono_ns));
            if self.pair.daemon == Daemon::Xvrrpd {
                out.restart_backup_ns = restart_backup_at(bl, &self.pair.hi, back);
            }
        }
        out.preempt_gap_ns = Some(self.prober.snapshot().outage(back.rt_ns, now.rt_ns).gap_ns);
        Ok(())
    }
}

/// How many replies from `mac` the client got after `from_rt`.
fn answered_by(log: &ProbeLog, mac: xvrrpd_tests::pcap::Mac, from_rt: u64) -> usize {
    log.replies
        .iter()
        .filter(|r| r.src_mac == mac && r.at.rt_ns >= from_rt)
        .count()
}

/// The takeover from `old` to `new` after `after_rt`, once the capture
/// has it (tcpdump writes packet by packet, a little behind).
fn wait_takeover(
    bl: &BenchLab,
    old: xvrrpd_tests::pcap::Mac,
    new: xvrrpd_tests::pcap::Mac,
    after_rt: u64,
) -> Result<analysis::Takeover> {
    let mut last_err = None;
    for _ in 0..50 {
        let events = bl.c.wire()?;
        match analysis::takeover(&events, bl.c.inst.vrid, bl.c.vip, old, new, after_rt) {
            Ok(tk) if tk.announce_ns.is_some() => return Ok(tk),
            Ok(_) => last_err = Some(anyhow::anyhow!("no GARP from the new master yet")),
            Err(e) => last_err = Some(e),
        }
        pause(Duration::from_millis(20));
    }
    Err(last_err
        .unwrap_or_else(|| anyhow::anyhow!("no takeover"))
        .context("finding the takeover in the bridge capture"))
}

/// The first advert (priority > 0) from `mac` at or after `from_rt`.
fn wait_first_advert(bl: &BenchLab, mac: xvrrpd_tests::pcap::Mac, from_rt: u64) -> Result<u64> {
    for _ in 0..50 {
        let events = bl.c.wire()?;
        let ads = adverts(&events, bl.c.inst.vrid, bl.c.vip.is_ipv6());
        if let Some(a) = first_advert_from(&ads, mac, from_rt) {
            return Ok(a.t_ns);
        }
        pause(Duration::from_millis(20));
    }
    bail!("no advert from {mac} in the bridge capture after it came back")
}

/// Everything one daemon's trials of one config measured.
#[derive(Clone, Debug, Default)]
pub struct CaseResults {
    pub steps: Vec<(Failure, StepResult)>,
    /// (failure, error text) of steps that did not complete.
    pub failed: Vec<(Failure, String)>,
}

/// One trial: the pair starts, each failure runs once, the pair stops.
pub fn run_trial(
    bl: &mut BenchLab,
    d: Daemon,
    rng: &mut Rng,
    out: &mut CaseResults,
    progress: &dyn Fn(&str),
) {
    let pair = bl.pair(d);
    if let Err(e) = bl.start_pair(d) {
        for f in Failure::ALL {
            out.failed.push((f, format!("{e:#}")));
        }
        progress(&format!("{d}: the pair did not start: {e:#}"));
        bl.stop_pair(d);
        return;
    }
    for (i, f) in Failure::ALL.into_iter().enumerate() {
        match run_step(bl, &pair, f, rng) {
            Ok(s) => {
                progress(&format!(
                    "{d} {}: gap {:.3} ms (theory {:.3}, error {:+.1} µs{}), outage {}, preempt gap {}{}{}",
                    f.name(),
                    s.gap_ns as f64 / 1e6,
                    s.theory_ns as f64 / 1e6,
                    s.detection_error_ns as f64 / 1e3,
                    if s.host_stall_ns > 0 {
                        format!(
                            "; host stalled {:.1} ms meanwhile",
                            s.host_stall_ns as f64 / 1e6
                        )
                    } else {
                        String::new()
                    },
                    fmt_ms(s.outage_ns),
                    fmt_ms(s.preempt_gap_ns),
                    match s.restart_over_mdi_ns {
                        Some(o) => format!(", restart → advert − MDI {:+.3} ms", o as f64 / 1e6),
                        None => String::new(),
                    },
                    match s.xvrrpd_takeover {
                        Some(t) => format!(
                            " [rx stamp {:+.1} µs, deadline {:+.1} µs, timer late {:.1} µs, → wire {:.1} µs, → VIPs {}, → GARP {}]",
                            t.rx_stamp_after_wire as f64 / 1e3,
                            t.deadline_error as f64 / 1e3,
                            t.timer_late as f64 / 1e3,
                            t.fired_to_wire as f64 / 1e3,
                            t.fired_to_vips
                                .map(|v| format!("{:.1} µs", v as f64 / 1e3))
                                .unwrap_or_default(),
                            t.fired_to_garp
                                .map(|v| format!("{:.1} µs", v as f64 / 1e3))
                                .unwrap_or_default(),
                        ),
                        None => String::new(),
                    }
                ));
                out.steps.push((f, s));
            }
            Err(e) => {
                progress(&format!("{d} {}: FAILED: {e:#}", f.name()));
                out.failed.push((f, format!("{e:#}")));
                // The rest of this trial cannot trust the pair's state.
                for g in &Failure::ALL[i + 1..] {
                    out.failed
                        .push((*g, "not run: an earlier step of the trial failed".into()));
                }
                break;
            }
        }
    }
    bl.stop_pair(d);
}

fn fmt_ms(v: Option<u64>) -> String {
    match v {
        Some(ns) => format!("{:.1} ms", ns as f64 / 1e6),
        None => "-".into(),
    }
}
