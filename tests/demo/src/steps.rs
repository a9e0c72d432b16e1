//! The demo's steps: a failure injected on the master (or its recovery),
//! the wait for the new master, and what the three witnesses say about it:
//!
//! * the new master's own record (`xvrrpd status --json`, its transition
//!   timeline in CLOCK_MONOTONIC ns);
//! * the wire (the bridge capture): the old master's last advert and the
//!   new master's first, against the protocol's bound;
//! * the client: its 1 ms pings to each VIP, the longest run without a reply.
//!
//! A step fails (and the demo stops) when the failover does not happen:
//! the expected router does not take both VIPs or say MASTER, another live
//! router still holds one or still advertises at the end of the step, or
//! the client is not answered by the new master within 15 s. A client that
//! needed more than a moment is a problem: reported, and the demo exits 1
//! at the end. Timing outside the protocol's bound, and hand-over overlaps
//! longer than 20 ms, are reported; they fail the demo only with `--strict`.

use std::{
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use xvrrpd::{control::status::TransitionRecord, vrrp::State};
use xvrrpd_tests::{
    addr_watch::Held,
    analysis::{
        AdvertSeen, adverts, announcements, first_advert_from, held_during, last_advert_with,
    },
    clock::Stamp,
    pcap::{Mac, WireEvent},
    prober::{Outage, ProbeLog},
    router::{LinkSide, RouterNode},
};

use crate::{
    lab::{ADVERT_INT, DemoLab, FAMILIES, Family, HEALTH_INTERVAL_S, HEALTH_WEIGHT, health_file},
    signals,
    term::{bold, cyan, dim, green, red, say, yellow},
};

/// How late after the bound a takeover may come and count as on time
/// (the lab's tolerance for xvrrpd), and how early.
const LATE_NS: i128 = 2_000_000;
const EARLY_NS: i128 = 500_000;
/// After the new master's first advert, the others have this long to stop
/// advertising and drop the VIPs, and the client to follow the GARP/NA.
const HANDOVER_GRACE_NS: u64 = 20_000_000;
const CLIENT_GRACE_NS: u64 = 50_000_000;
/// The last part of a step's window, in which everything must have settled.
const SETTLED_NS: u64 = 100_000_000;
/// How long the client gets to recover when it did not follow at once: a
/// wrong neighbour entry lasts until the new master's delayed GARP/NA batch
/// (`garp_master_delay`, 5 s) or the entry's own probes.
const CLIENT_RECOVERY: Duration = Duration::from_secs(8);

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inject {
    /// SIGKILL to the master's daemon.
    Kill9,
    /// SIGTERM to the master's daemon.
    Sigterm,
    /// The master's bridge port goes down (carrier lost).
    LinkDown,
    /// The master's health check starts failing.
    HealthFail,
    /// The stopped router's daemon starts again.
    Restart,
    /// The bridge port comes back.
    LinkUp,
    /// The health check passes again.
    HealthBack,
}

impl Inject {
    pub fn is_recovery(self) -> bool {
        matches!(self, Inject::Restart | Inject::LinkUp | Inject::HealthBack)
    }
}

/// One step: `inject` on `target`; `old` is master before, `new` after.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub inject: Inject,
    pub target: &'static str,
    pub old: &'static str,
    pub new: &'static str,
}

/// What one step measured for one family.
#[derive(Clone, Debug)]
pub struct FamilyResult {
    pub fam: Family,
    /// The new master's transition to MASTER.
    pub rec: Option<TransitionRecord>,
    /// What armed the down timer, and when (CLOCK_MONOTONIC).
    pub armed: Option<(String, u64)>,
    /// A failover: the old master's last (full-priority) advert → the new
    /// master's first, on the wire. A recovery: the event → the new
    /// master's first advert.
    pub wire_ns: Option<u64>,
    /// A recovery: the old master's last advert after the new one's first.
    pub handover_ns: Option<i128>,
    pub outage: Option<Outage>,
    /// After a restart: when the VIP its crash left was removed.
    pub leftover_removed_ns: Option<u64>,
    /// After a kill -9: how long after the new master added the VIP the
    /// dead daemon's warden removed it from the old master's host.
    pub released_after_ns: Option<i128>,
    /// Things worth saying (another router advertised as master meanwhile).
    pub notes: Vec<String>,
    /// Whether the client's pings were answered by the new master once it
    /// had taken over.
    pub client_followed: bool,
    /// Another router still advertising or holding the VIP past the grace.
    pub overlaps: Vec<String>,
    /// The new master's first advert on the wire (CLOCK_REALTIME).
    pub new_first_rt: u64,
}

/// What one step measured.
#[derive(Clone, Debug)]
pub struct StepResult {
    pub step: Step,
    pub title: String,
    pub bound_name: String,
    pub bound_ns: u64,
    pub fams: Vec<FamilyResult>,
    /// Timing outside the bound (reported; fatal with `--strict`).
    pub warnings: Vec<String>,
    /// What the client suffered that it should not have (the demo goes on,
    /// and exits 1 at the end).
    pub problems: Vec<String>,
}

impl StepResult {
    /// The latest timer, after its deadline, of both families.
    pub fn timer_late_ns(&self) -> Option<i128> {
        self.fams
            .iter()
            .filter_map(|f| {
                let r = f.rec.as_ref()?;
                Some(r.fired_at_ns? as i128 - r.deadline_ns? as i128)
            })
            .max()
    }
}

/// `36.094 ms`.
pub fn ms(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

/// A signed offset: `+21 µs`, `-36.094 ms`.
pub fn rel(ns: i128) -> String {
    if ns.abs() < 1_000_000 {
        format!("{:+} µs", ns / 1000)
    } else {
        format!("{:+.3} ms", ns as f64 / 1e6)
    }
}

fn interval_text() -> String {
    format!("{} ms", ADVERT_INT.as_millis())
}

/// The title of a step, for the header and the summary.
pub fn title(s: &Step) -> String {
    match s.inject {
        Inject::Kill9 => format!("kill -9 {} (the master crashes)", s.target),
        Inject::Sigterm => format!("SIGTERM {} (the master shuts down)", s.target),
        Inject::LinkDown => format!("link down {} (its cable is pulled)", s.target),
        Inject::HealthFail => format!("health check fails on {}", s.target),
        Inject::Restart => format!("{} starts again", s.target),
        Inject::LinkUp => format!("link up {}", s.target),
        Inject::HealthBack => format!("health check passes again on {}", s.target),
    }
}

/// A short title for the summary table.
pub fn short_title(s: &Step) -> String {
    match s.inject {
        Inject::Kill9 => format!("kill -9 {}", s.target),
        Inject::Sigterm => format!("SIGTERM {}", s.target),
        Inject::LinkDown => format!("link down {}", s.target),
        Inject::HealthFail => format!("health fails {}", s.target),
        Inject::Restart => format!("↺ {} restarts", s.target),
        Inject::LinkUp => format!("↺ link up {}", s.target),
        Inject::HealthBack => format!("↺ health ok {}", s.target),
    }
}

/// Runs one step and prints what it measured.
pub fn run(lab: &mut DemoLab, step: Step, label: &str) -> Result<StepResult> {
    let t = title(&step);
    if step.inject.is_recovery() {
        say!("  {} {}", cyan("↺ recovery:"), bold(&t));
    } else {
        say!();
        let head = format!("━━ {label} · {t} ");
        let fill = 74usize.saturating_sub(head.chars().count());
        say!("{}", bold(&format!("{head}{}", "━".repeat(fill))));
    }
    let (bound_name, bound_ns, bound_text) = bound(lab, &step);
    let (event, had_leftover, timeout) = inject(lab, &step)?;
    let took = wait_takeover(lab, step.new, event, timeout)?;
    lab.wait_status(step.new, Duration::from_secs(2), |r| {
        r.instances.iter().all(|i| i.state == "MASTER")
    })
    .with_context(|| format!("{} holds the VIPs but does not say MASTER", step.new))?;
    if step.inject == Inject::LinkDown {
        lab.wait_status(step.target, Duration::from_secs(2), |r| {
            r.instances.iter().all(|i| i.state == "FAULT")
        })
        .context("the router whose link went down should be in FAULT")?;
    }
    say!(
        "  {} holds {} after {}",
        bold(step.new),
        FAMILIES
            .iter()
            .map(|f| f.vip().to_string())
            .collect::<Vec<_>>()
            .join(" and "),
        ms(took)
    );
    // Let the new state settle so the capture and the client show it.
    signals::pause(Duration::from_millis(300))?;
    let now = Stamp::now();
    let events = lab
        .capture
        .as_ref()
        .context("the capture is not running")?
        .snapshot()?
        .events;
    let logs = lab.probe_logs();
    let status = lab.router(step.new).status()?;
    let mut fams = Vec::new();
    for (i, f) in FAMILIES.iter().enumerate() {
        let mut fr = measure(
            lab,
            &step,
            *f,
            event,
            now,
            &events,
            logs.get(i),
            status
                .instances
                .iter()
                .find(|s| s.name == f.inst)
                .map(|s| s.transitions.as_slice())
                .unwrap_or_default(),
        )?;
        if step.inject == Inject::Kill9 {
            let added = lab
                .router(step.new)
                .watch
                .held(f.vip())
                .iter()
                .map(|h| h.from)
                .find(|t| *t >= event.mono_ns);
            let removed = lab
                .router(step.old)
                .watch
                .held(f.vip())
                .iter()
                .filter_map(|h| h.to)
                .find(|t| *t >= event.mono_ns);
            if let (Some(a), Some(r)) = (added, removed) {
                fr.released_after_ns = Some(r as i128 - a as i128);
            }
        }
        if step.inject == Inject::Restart && had_leftover[i] {
            let spans = lab.router(step.new).watch.held(f.vip());
            fr.leftover_removed_ns = spans
                .iter()
                .filter_map(|h| h.to)
                .find(|t| *t >= event.mono_ns)
                .map(|t| t - event.mono_ns);
            if fr.leftover_removed_ns.is_none() {
                bail!(
                    "{} restarted with the VIP {} its crash left behind and never removed it; \
                     spans {spans:?}",
                    step.new,
                    f.vip()
                );
            }
        }
        fams.push(fr);
    }
    let problems = follow_client(lab, &step, event, &mut fams)?;
    let mut res = StepResult {
        step,
        title: short_title(&step),
        bound_name,
        bound_ns,
        fams,
        warnings: Vec::new(),
        problems,
    };
    judge(&mut res);
    print(lab, &res, &bound_text);
    explain_held_up_timer(&res);
    Ok(res)
}

/// The protocol's bound for the step: (name, ns, explanation).
fn bound(lab: &DemoLab, s: &Step) -> (String, u64, String) {
    let p = lab.priority(s.new);
    let mdi = lab.mdi_ns(s.new);
    let mdi_text = format!(
        "Master_Down_Interval({}) = 3 × {i} + (256 − {p})/256 × {i} = {}",
        s.new,
        ms(mdi),
        i = interval_text()
    );
    match s.inject {
        Inject::LinkDown => (
            format!("Master_Down_Interval({})", s.new),
            mdi,
            format!("{mdi_text}\n           after the last advert it heard"),
        ),
        Inject::HealthFail => (
            format!("Master_Down_Interval({})", s.new),
            mdi,
            format!(
                "{mdi_text}\n           after {}'s last advert at priority ≥ {p} (it ignores lower ones and preempts)",
                s.old
            ),
        ),
        Inject::Sigterm | Inject::Kill9 => {
            let skew = lab.skew_ns(s.new);
            (
                format!("Skew_Time({})", s.new),
                skew,
                format!(
                    "Skew_Time({}) = (256 − {p})/256 × {} = {} after the priority-0 advert{}",
                    s.new,
                    interval_text(),
                    ms(skew),
                    if s.inject == Inject::Kill9 {
                        format!(" {}'s warden sent", s.old)
                    } else {
                        String::new()
                    }
                ),
            )
        }
        Inject::Restart | Inject::LinkUp | Inject::HealthBack => (
            format!("Master_Down_Interval({})", s.new),
            mdi,
            format!(
                "{mdi_text}\n           as a backup hearing only lower priorities, then it preempts"
            ),
        ),
    }
}

/// Does the step's action; returns the event's time, which VIPs the
/// target held before (a restart after a crash), and how long to wait for
/// the new master.
fn inject(lab: &mut DemoLab, s: &Step) -> Result<(Stamp, [bool; 2], Duration)> {
    let target = s.target;
    let held = |lab: &DemoLab| {
        let r = lab.router(target);
        [r.has_vip(FAMILIES[0].vip()), r.has_vip(FAMILIES[1].vip())]
    };
    let before = held(lab);
    let prio = lab.priority(target);
    let (event, timeout) = match s.inject {
        Inject::Kill9 => {
            say!(
                "  SIGKILL to {target}'s xvrrpd: it cannot say goodbye, but its warden (a small process \
                 beside it) at once sends"
            );
            say!(
                "  the priority-0 advert its shutdown would have: {} takes over after its skew time, \
                 not a whole down interval.",
                s.new
            );
            say!(
                "  The VIPs stay behind on {target}'s host until {} owns them: then its pinned datapath \
                 stops answering for them and its warden removes them.",
                s.new
            );
            (lab.router_mut(target).kill9()?, Duration::from_secs(3))
        }
        Inject::Sigterm => {
            say!(
                "  SIGTERM to {target}'s xvrrpd: it sends a priority-0 advert, removes its VIPs and exits."
            );
            let (at, st) = lab.router_mut(target).sigterm()?;
            if !st.success() {
                bail!("{target}'s xvrrpd exited with {st} on SIGTERM, not 0");
            }
            say!(
                "  {target}'s xvrrpd exited with status 0 after {}",
                ms(Stamp::now().mono_ns - at.mono_ns)
            );
            (at, Duration::from_secs(3))
        }
        Inject::LinkDown => {
            say!(
                "  {target}'s bridge port goes down: its eth0 loses carrier; xvrrpd goes FAULT and drops the VIPs."
            );
            (
                lab.router(target).link_down(LinkSide::Switch)?,
                Duration::from_secs(3),
            )
        }
        Inject::HealthFail => {
            let file = health_file(lab.router(target));
            say!("  rm {}:", file.display());
            say!(
                "  `{}` (run every {HEALTH_INTERVAL_S} s) starts failing,",
                crate::lab::HEALTH_SCRIPT
            );
            say!(
                "  so {target}'s priority drops {prio} {HEALTH_WEIGHT} = {} < {}'s {}.",
                i32::from(prio) + HEALTH_WEIGHT,
                s.new,
                lab.priority(s.new)
            );
            let at = Stamp::now();
            std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
            (
                at,
                Duration::from_secs(u64::from(HEALTH_INTERVAL_S) * 3 + 1),
            )
        }
        Inject::Restart => {
            say_wrapped(
                "  ",
                &format!(
                    "{target}'s xvrrpd starts{}; it comes up as a backup and, with the highest \
                     priority, preempts {}.",
                    if before.iter().any(|h| *h) {
                        " on a host that still holds the VIPs of its crash"
                    } else {
                        ""
                    },
                    s.old
                ),
            );
            (lab.router_mut(target).start()?, Duration::from_secs(5))
        }
        Inject::LinkUp => {
            say!(
                "  {target}'s bridge port comes back: it leaves FAULT as a backup and preempts {}.",
                s.old
            );
            (
                lab.router(target).link_up(LinkSide::Switch)?,
                Duration::from_secs(5),
            )
        }
        Inject::HealthBack => {
            let file = health_file(lab.router(target));
            say!("  touch {}:", file.display());
            say!(
                "  the check passes again, {target} is back at priority {prio} and preempts {}.",
                s.old
            );
            let at = Stamp::now();
            std::fs::write(&file, "ok\n").with_context(|| format!("writing {}", file.display()))?;
            (
                at,
                Duration::from_secs(u64::from(HEALTH_INTERVAL_S) * 3 + 1),
            )
        }
    };
    lab.lab.mark_at(&title(s), event);
    Ok((event, before, timeout))
}

/// Waits until `new` holds every VIP, each added after `event`; returns
/// the time from the event to the last of them.
fn wait_takeover(lab: &DemoLab, new: &str, event: Stamp, timeout: Duration) -> Result<u64> {
    let node = lab.router(new);
    let end = Instant::now() + timeout;
    loop {
        signals::check()?;
        let adds: Option<Vec<u64>> = FAMILIES
            .iter()
            .map(|f| {
                node.watch
                    .held(f.vip())
                    .iter()
                    .find(|h| h.from >= event.mono_ns && h.to.is_none())
                    .map(|h| h.from)
            })
            .collect();
        if let Some(adds) = adds {
            return Ok(adds.into_iter().max().unwrap_or(event.mono_ns) - event.mono_ns);
        }
        if Instant::now() >= end {
            bail!(
                "{new} did not take both VIPs within {timeout:?}:\n    {}",
                lab.state_report()
            );
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// The new master's transition to MASTER after the event and what armed
/// its timer.
fn transition(
    transitions: &[TransitionRecord],
    event: Stamp,
) -> (Option<TransitionRecord>, Option<(String, u64)>) {
    let Some(pos) = transitions
        .iter()
        .rposition(|t| t.to == State::Master && t.at_ns >= event.mono_ns)
    else {
        return (None, None);
    };
    let t = transitions[pos].clone();
    // A backup that preempts a lower priority waits from when it last had
    // a reason to wait (entering BACKUP, or the last advert it accepted).
    let entered = pos
        .checked_sub(1)
        .map(|p| &transitions[p])
        .filter(|p| p.to == State::Backup && p.at_ns >= event.mono_ns)
        .map(|p| p.at_ns);
    let preempting = t.master_priority.is_some_and(|p| p > 0 && p < t.priority);
    let armed = match (t.master_priority, t.last_advert_ns, entered) {
        (Some(0), Some(a), _) => Some(("priority-0 advert", a)),
        // Lower-priority adverts do not rearm a preempting backup's timer:
        // it runs from when the router became backup (or, after its
        // priority rose, from an advert no longer in the record).
        _ if preempting => entered.map(|e| ("became backup", e)),
        (_, Some(a), _) => Some(("last advert", a)),
        (_, None, Some(e)) => Some(("became backup", e)),
        (_, None, None) => None,
    };
    (Some(t), armed.map(|(what, at)| (what.to_string(), at)))
}

#[allow(clippy::too_many_arguments)]
fn measure(
    lab: &DemoLab,
    s: &Step,
    f: Family,
    event: Stamp,
    now: Stamp,
    events: &[WireEvent],
    probes: Option<&ProbeLog>,
    transitions: &[TransitionRecord],
) -> Result<FamilyResult> {
    let new = lab.router(s.new);
    let ads = adverts(events, f.vrid, f.v6());
    let Some(new_first) = first_advert_from(&ads, new.mac, event.rt_ns) else {
        bail!(
            "{}: no advert from {} on the wire after the event ({} adverts of VRID {} captured)",
            f.inst,
            s.new,
            ads.len(),
            f.vrid
        );
    };
    let m = FamilyCheck {
        lab,
        s,
        f,
        event,
        now,
        ads,
        new_first,
        transitions,
    };
    let (wire_ns, handover_ns, wire_armed) = m.wire_gap()?;
    let overlaps = m.overlaps()?;
    // The client follows (checked again, at length, by the caller if not).
    let (outage, client_followed) = match probes {
        Some(log) => {
            let runs = log.answered_by_between(new_first.t_ns + CLIENT_GRACE_NS, now.rt_ns);
            (
                Some(log.outage(event.rt_ns.saturating_sub(20_000_000), now.rt_ns)),
                !runs.is_empty() && runs.iter().all(|r| r.mac == new.mac),
            )
        }
        None => (None, true),
    };
    let (rec, armed) = transition(transitions, event);
    let armed = wire_armed.or(armed);
    let notes = m.third_router_notes();
    if rec.is_none() {
        bail!(
            "{}: {}'s status report has no transition to MASTER after the event",
            f.inst,
            s.new
        );
    }
    // The GARP/NA must be on the wire too.
    if announcements(events, f.vip(), new.mac, new_first.t_ns, now.rt_ns).is_empty() {
        bail!(
            "{}: {} became master but no gratuitous ARP / unsolicited NA for {} is on the wire",
            f.inst,
            s.new,
            f.vip()
        );
    }
    Ok(FamilyResult {
        fam: f,
        rec,
        armed,
        wire_ns,
        handover_ns,
        outage,
        leftover_removed_ns: None,
        released_after_ns: None,
        notes,
        client_followed,
        overlaps,
        new_first_rt: new_first.t_ns,
    })
}

/// What [`measure`]'s checks of one family share: the step, its window
/// (`event` to `now`) and the adverts of the family's VRID.
struct FamilyCheck<'a> {
    lab: &'a DemoLab,
    s: &'a Step,
    f: Family,
    event: Stamp,
    now: Stamp,
    ads: Vec<AdvertSeen>,
    /// The new master's first advert after the event.
    new_first: AdvertSeen,
    transitions: &'a [TransitionRecord],
}

/// A wire gap, a hand-over overlap, and what armed the timer as the wire
/// shows it.
type WireGap = (Option<u64>, Option<i128>, Option<(String, u64)>);

impl FamilyCheck<'_> {
    /// The take-over on the wire: from the old master's last advert (of the
    /// kind the failure makes) to the new one's first; for a recovery from
    /// the event, and how long the old master went on advertising.
    fn wire_gap(&self) -> Result<WireGap> {
        let (lab, s, f, event) = (self.lab, self.s, self.f, self.event);
        let (ads, new_first) = (&self.ads, self.new_first);
        let old = lab.router(s.old);
        let before_new = |pred: &dyn Fn(&AdvertSeen) -> bool| {
            ads.iter()
                .rev()
                .find(|a| a.mac == old.mac && a.t_ns < new_first.t_ns && pred(a))
                .copied()
        };
        let mut wire_armed = None;
        let (wire_ns, handover_ns) = match s.inject {
            Inject::LinkDown => {
                let last = before_new(&|_| true).with_context(|| {
                    format!("{}: no advert from {} before {}'s", f.inst, s.old, s.new)
                })?;
                (Some(new_first.t_ns - last.t_ns), None)
            }
            Inject::Sigterm | Inject::Kill9 => {
                let last = before_new(&|_| true).with_context(|| {
                    format!("{}: no advert from {} before {}'s", f.inst, s.old, s.new)
                })?;
                if last.priority != 0 {
                    bail!(
                        "{}: {}'s last advert before {} took over has priority {}, not 0: \
                         no priority-0 advert on {}",
                        f.inst,
                        s.old,
                        s.new,
                        last.priority,
                        if s.inject == Inject::Kill9 {
                            "kill -9 (from its warden)"
                        } else {
                            "SIGTERM"
                        }
                    );
                }
                (Some(new_first.t_ns - last.t_ns), None)
            }
            Inject::HealthFail => {
                let full = last_advert_with(ads, old.mac, lab.priority(s.old), new_first.t_ns)
                    .with_context(|| {
                        format!(
                            "{}: no advert from {} at priority {} before {}'s",
                            f.inst,
                            s.old,
                            lab.priority(s.old),
                            s.new
                        )
                    })?;
                wire_armed = Some((
                    format!("{}'s {} advert (wire)", s.old, full.priority),
                    event.rt_to_mono(full.t_ns),
                ));
                (Some(new_first.t_ns - full.t_ns), None)
            }
            Inject::Restart | Inject::LinkUp | Inject::HealthBack => {
                let old_last = ads
                    .iter()
                    .rev()
                    .find(|a| a.mac == old.mac && a.priority > 0 && a.t_ns <= self.now.rt_ns)
                    .map(|a| a.t_ns as i128 - new_first.t_ns as i128);
                (Some(new_first.t_ns.saturating_sub(event.rt_ns)), old_last)
            }
        };
        Ok((wire_ns, handover_ns, wire_armed))
    }

    /// Who holds and who advertises, from the hand-over on: the new master
    /// all along; any other router may overlap a little (measured, a
    /// warning past the grace) but must be done well before the window ends.
    fn overlaps(&self) -> Result<Vec<String>> {
        let mut overlaps = Vec::new();
        for r in &self.lab.routers {
            let spans = r.watch.held(self.f.vip());
            r.watch.check_complete()?;
            if r.name == self.s.new {
                self.check_new_master_keeps(&spans, &mut overlaps)?;
            } else {
                self.check_other_let_go(r, &spans, &mut overlaps)?;
            }
        }
        Ok(overlaps)
    }

    fn new_first_mono(&self) -> u64 {
        self.event.rt_to_mono(self.new_first.t_ns)
    }

    fn settled_mono(&self) -> u64 {
        self.now.mono_ns.saturating_sub(SETTLED_NS)
    }

    /// The new master holds the VIP from when it added it to the end.
    fn check_new_master_keeps(&self, spans: &[Held], overlaps: &mut Vec<String>) -> Result<()> {
        let (s, f) = (self.s, self.f);
        let new_first_mono = self.new_first_mono();
        if !spans
            .last()
            .is_some_and(|h| h.to.is_none() && h.from <= self.settled_mono())
        {
            bail!(
                "{} did not keep {} after taking over; spans {spans:?}",
                s.new,
                f.vip()
            );
        }
        // When the daemon says the VIP was in place (its own record:
        // the address watch reads notifications on a thread that may
        // be scheduled late on a busy host).
        if let Some(added) = transition(self.transitions, self.event)
            .0
            .and_then(|t| t.vips_done_ns)
            && added > new_first_mono
            && added - new_first_mono > HANDOVER_GRACE_NS
        {
            overlaps.push(format!(
                "{}: {} added {} only {} after its first advert",
                f.inst,
                s.new,
                f.vip(),
                ms(added - new_first_mono)
            ));
        }
        Ok(())
    }

    /// Any other router stops advertising as master and lets go of the
    /// VIP (a killed daemon's host excepted) before the window's end.
    fn check_other_let_go(
        &self,
        r: &RouterNode,
        spans: &[Held],
        overlaps: &mut Vec<String>,
    ) -> Result<()> {
        let (s, f, new_first) = (self.s, self.f, self.new_first);
        let new_first_mono = self.new_first_mono();
        let settled_rt = self.now.rt_ns.saturating_sub(SETTLED_NS);
        if let Some(last) = self
            .ads
            .iter()
            .rev()
            .find(|a| a.mac == r.mac && a.priority > 0 && a.t_ns > new_first.t_ns)
        {
            if last.t_ns >= settled_rt {
                bail!(
                    "{}: {} still advertises as master {} after {} took over",
                    f.inst,
                    r.name,
                    ms(last.t_ns - new_first.t_ns),
                    s.new
                );
            }
            let lag = last.t_ns - new_first.t_ns;
            if lag > HANDOVER_GRACE_NS {
                overlaps.push(format!(
                    "{}: {} advertised as master until {} after {}'s first advert",
                    f.inst,
                    r.name,
                    ms(lag),
                    s.new
                ));
            }
        }
        if r.pid().is_none() {
            // A killed daemon's host keeps its VIP; nobody removes it.
            return Ok(());
        }
        if let Some(h) = spans
            .iter()
            .find(|h| held_during(&[**h], new_first_mono, self.now.mono_ns))
        {
            match h.to {
                Some(to) if to < self.settled_mono() => {
                    let removed = self.vips_removed_at(r).unwrap_or(to);
                    let lag = removed.saturating_sub(new_first_mono);
                    if lag > HANDOVER_GRACE_NS {
                        overlaps.push(format!(
                            "{}: {} still held {} {} after {}'s first advert",
                            f.inst,
                            r.name,
                            f.vip(),
                            ms(lag),
                            s.new
                        ));
                    }
                }
                _ => bail!(
                    "{} still holds {} after {} took over; spans {spans:?}",
                    r.name,
                    f.vip(),
                    s.new
                ),
            }
        }
        Ok(())
    }

    /// The daemon's own record of when it let go: the VIPs removed on
    /// leaving MASTER after the event.
    fn vips_removed_at(&self, r: &RouterNode) -> Option<u64> {
        r.status()
            .ok()
            .and_then(|rep| {
                rep.instances
                    .into_iter()
                    .find(|i| i.name == self.f.inst)
                    .and_then(|i| {
                        i.transitions
                            .into_iter()
                            .rev()
                            .find(|t| t.from == State::Master && t.at_ns >= self.event.mono_ns)
                    })
            })
            .and_then(|t| t.vips_done_ns)
    }

    /// A third router that advertised as master in between.
    fn third_router_notes(&self) -> Vec<String> {
        let (s, f, event, new_first) = (self.s, self.f, self.event, self.new_first);
        let mut notes = Vec::new();
        for r in &self.lab.routers {
            if r.name == s.new || r.name == s.old {
                continue;
            }
            let theirs: Vec<&AdvertSeen> = self
                .ads
                .iter()
                .filter(|a| a.mac == r.mac && a.priority > 0 && a.t_ns >= event.rt_ns)
                .collect();
            if let (Some(first), Some(last)) = (theirs.first(), theirs.last()) {
                let upto = last.t_ns as i128 - new_first.t_ns as i128;
                notes.push(format!(
                    "{}: {} also advertised as master: {} advert(s) from {} after the event, {}",
                    f.inst,
                    r.name,
                    theirs.len(),
                    rel(first.t_ns as i128 - event.rt_ns as i128),
                    if upto < 0 {
                        format!("the last {} before {}'s first", ms((-upto) as u64), s.new)
                    } else {
                        format!("the last {} after {}'s first", ms(upto as u64), s.new)
                    }
                ));
            }
        }
        notes
    }
}

/// One event loop serves every instance: when one instance's VIP change
/// took long and the other's timer was late, say so (and, after SIGTERM,
/// why it happens in this lab).
fn explain_held_up_timer(res: &StepResult) {
    let slow = res.fams.iter().find_map(|f| {
        let r = f.rec.as_ref()?;
        let took = r.vips_done_ns?.checked_sub(r.fired_at_ns?)?;
        (took > LATE_NS as u64).then_some((f.fam.inst, took))
    });
    let late = res.fams.iter().find_map(|f| {
        let r = f.rec.as_ref()?;
        let late = r.fired_at_ns?.checked_sub(r.deadline_ns?)?;
        (late > LATE_NS as u64).then_some((f.fam.inst, late))
    });
    let (Some((slow_inst, took)), Some((late_inst, late))) = (slow, late) else {
        return;
    };
    if slow_inst == late_inst {
        return;
    }
    let mut text = format!(
        "{}'s netlink VIP add for {slow_inst} took {}, and its {late_inst} timer was handled {} \
         late: one event loop serves both instances.",
        res.step.new,
        ms(took),
        ms(late)
    );
    if res.step.inject == Inject::Sigterm {
        text.push_str(&format!(
            " In this lab every router shares one kernel: {}'s exit detaches its XDP program \
             under the rtnl lock that {}'s address change waits for (`--daemon-arg --no-ebpf` \
             runs this step without it).",
            res.step.old, res.step.new
        ));
    }
    say_wrapped(&format!("  {} ", yellow("why ")), &text);
}

/// Timing against the bound: warnings, not failures.
fn judge(res: &mut StepResult) {
    for f in &res.fams {
        res.warnings.extend(f.overlaps.iter().cloned());
        if let Some(r) = &f.rec
            && let (Some(d), Some(fired)) = (r.deadline_ns, r.fired_at_ns)
        {
            let late = fired as i128 - d as i128;
            if late > LATE_NS {
                res.warnings.push(format!(
                    "{}: {}'s down timer was handled {} after its deadline",
                    f.fam.inst,
                    res.step.new,
                    rel(late)
                ));
            }
        }
        if !res.step.inject.is_recovery()
            && let Some(w) = f.wire_ns
        {
            let err = w as i128 - res.bound_ns as i128;
            if !(-EARLY_NS..=LATE_NS).contains(&err) {
                res.warnings.push(format!(
                    "{}: take-over on the wire {} vs {} = {} ({})",
                    f.fam.inst,
                    ms(w),
                    res.bound_name,
                    ms(res.bound_ns),
                    rel(err)
                ));
            }
        }
    }
}

fn cell(v: Option<i128>) -> String {
    v.map(rel).unwrap_or_else(|| "-".into())
}

fn print(lab: &DemoLab, res: &StepResult, bound_text: &str) {
    let s = &res.step;
    for f in &res.fams {
        if let Some(l) = f.released_after_ns {
            say!(
                "  {}'s warden removed the {} VIP its dead daemon left {} after {} added it",
                s.old,
                f.fam.label,
                ms(l.max(0) as u64),
                s.new
            );
        }
        if let Some(l) = f.leftover_removed_ns {
            say!(
                "  {} removed the {} VIP its crash left behind {} after starting",
                s.new,
                f.fam.label,
                ms(l)
            );
        }
    }
    timeline_table(
        s.new,
        &res.fams
            .iter()
            .map(|f| (f.fam.inst, f.rec.clone(), f.armed.clone()))
            .collect::<Vec<_>>(),
    );
    say!("  {} {bound_text}", label("bound"));
    print_wire(lab, res);
    print_client(res);
    for n in res.fams.iter().flat_map(|f| &f.notes) {
        say_wrapped(&format!("  {} ", yellow("note")), n);
    }
    for w in &res.warnings {
        say_wrapped(&format!("  {}    ", yellow("!")), w);
    }
    for p in &res.problems {
        say_wrapped(&format!("  {}    ", red(&bold("✗"))), p);
    }
}

/// The `wire` line: the take-over gap of each family and how it compares
/// with the bound (a recovery: whether the old master fell silent).
fn print_wire(lab: &DemoLab, res: &StepResult) {
    let s = &res.step;
    let wire: Vec<String> = res
        .fams
        .iter()
        .filter_map(|f| {
            let w = f.wire_ns?;
            Some(if s.inject.is_recovery() {
                format!(
                    "{} {}{}",
                    f.fam.inst,
                    ms(w),
                    match f.handover_ns {
                        Some(h) if h > 0 => format!(" ({}'s last advert {} later)", s.old, rel(h)),
                        _ => String::new(),
                    }
                )
            } else {
                format!(
                    "{} {} ({})",
                    f.fam.inst,
                    ms(w),
                    rel(w as i128 - res.bound_ns as i128)
                )
            })
        })
        .collect();
    let what = match s.inject {
        Inject::LinkDown => format!("{}'s last advert → {}'s first:", s.old, s.new),
        Inject::Sigterm => format!("{}'s priority-0 advert → {}'s first:", s.old, s.new),
        Inject::Kill9 => format!(
            "the priority-0 advert of {}'s warden → {}'s first:",
            s.old, s.new
        ),
        Inject::HealthFail => format!(
            "{}'s last advert at priority {} → {}'s first:",
            s.old,
            lab.priority(s.old),
            s.new
        ),
        _ => format!("event → {}'s first advert:", s.new),
    };
    let silent = s.inject.is_recovery()
        && res
            .fams
            .iter()
            .all(|f| f.handover_ns.is_none_or(|h| h <= 0));
    let verdict = if s.inject.is_recovery() {
        if silent {
            format!("; {} silent from then on", s.old)
        } else {
            String::new()
        }
    } else if res.warnings.is_empty() {
        format!("  {}", green("✓\u{a0}within\u{a0}bound"))
    } else {
        format!("  {}", yellow("!\u{a0}outside\u{a0}bound"))
    };
    say_wrapped(
        &format!("  {} ", label("wire")),
        &format!("{what} {}{verdict}", wire.join(", ")),
    );
}

/// The `client` line: the longest gap without a reply, per family.
fn print_client(res: &StepResult) {
    let s = &res.step;
    let client: Vec<String> = res
        .fams
        .iter()
        .filter_map(|f| {
            let o = f.outage?;
            Some(if o.lost == 0 {
                format!("{} no ping lost", f.fam.label)
            } else {
                format!("{} {} ({} pings lost)", f.fam.label, ms(o.gap_ns), o.lost)
            })
        })
        .collect();
    if !client.is_empty() {
        say_wrapped(
            &format!("  {} ", label("client")),
            &format!(
                "{} answers now; longest gap without a reply: {}",
                s.new,
                client.join(", ")
            ),
        );
        if s.inject == Inject::Kill9
            && res
                .fams
                .iter()
                .any(|f| f.outage.is_some_and(|o| o.lost == 0))
        {
            say_wrapped(
                "           ",
                &dim(&format!(
                    "({}'s kernel kept answering on the VIPs the dead daemon left, until {}'s \
                     GARP/NA moved the client)",
                    s.old, s.new
                )),
            );
        }
    }
}

/// `bound   ` (dimmed, padded to the story's label column).
fn label(s: &str) -> String {
    dim(&format!("{s:<8}"))
}

/// Prints `text` after `lead`, wrapped at about 100 columns, the following
/// lines indented to the text.
pub fn say_wrapped(lead: &str, text: &str) {
    let indent = crate::term::plain(lead).chars().count();
    let width = 100usize.saturating_sub(indent).max(40);
    let mut line = String::new();
    let mut first = true;
    for word in text.split(' ') {
        let len = crate::term::plain(&line).chars().count();
        if len > 0 && len + 1 + crate::term::plain(word).chars().count() > width {
            if first {
                say!("{lead}{line}");
                first = false;
            } else {
                say!("{}{line}", " ".repeat(indent));
            }
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if first {
        say!("{lead}{line}");
    } else {
        say!("{}{line}", " ".repeat(indent));
    }
}

/// One instance's row: its name, its transition to MASTER, and what armed
/// the timer (and when).
type TimelineRow<'a> = (&'a str, Option<TransitionRecord>, Option<(String, u64)>);

/// The new master's transitions to MASTER, one row per instance, relative
/// to the down-timer deadline.
fn timeline_table(who: &str, rows: &[TimelineRow<'_>]) {
    say!(
        "  {} {}",
        label("timeline"),
        dim(&format!(
            "of {who} (xvrrpd status --json), relative to its down-timer deadline:"
        ))
    );
    say!(
        "           {:<34} {:<9} {:<12} {:<12} {}",
        "timer armed by",
        "deadline",
        "timer fired",
        "VIPs added",
        "first GARP/NA"
    );
    for (inst, rec, armed) in rows {
        let Some(r) = rec else { continue };
        let d = r.deadline_ns.map(|d| d as i128);
        let off = |t: Option<u64>| match (t, d) {
            (Some(t), Some(d)) => Some(t as i128 - d),
            _ => None,
        };
        let armed = match (armed, d) {
            (Some((what, t)), Some(d)) => format!("{what} {}", rel(*t as i128 - d)),
            _ => "-".into(),
        };
        say!(
            "    {:<6} {:<34} {:<9} {:<12} {:<12} {}",
            inst,
            armed,
            if d.is_some() { "0" } else { "-" },
            cell(off(r.fired_at_ns)),
            cell(off(r.vips_done_ns)),
            cell(off(r.first_garp_ns))
        );
    }
}

/// Waits (bounded) for the client to be answered by the new master, for
/// the families where it was not; measures the real outage and names the
/// router whose GARP/NA the client followed instead. Fails if the client
/// does not recover at all.
fn follow_client(
    lab: &DemoLab,
    s: &Step,
    event: Stamp,
    fams: &mut [FamilyResult],
) -> Result<Vec<String>> {
    let lagging: Vec<usize> = (0..fams.len())
        .filter(|i| !fams[*i].client_followed)
        .collect();
    if lagging.is_empty() {
        return Ok(Vec::new());
    }
    let new_mac = lab.router(s.new).mac;
    say!(
        "  {} the client's pings to {} are not answered by {}: waiting for it to recover (at most {} s)",
        red("…"),
        lagging
            .iter()
            .map(|i| fams[*i].fam.vip().to_string())
            .collect::<Vec<_>>()
            .join(" and "),
        s.new,
        CLIENT_RECOVERY.as_secs()
    );
    let ok = wait_client_recovered(lab, &lagging, new_mac)?;
    let now = Stamp::now();
    let events = lab
        .capture
        .as_ref()
        .context("the capture is not running")?
        .snapshot()?
        .events;
    let logs = lab.probe_logs();
    let mut problems = Vec::new();
    for i in lagging {
        let f = &mut fams[i];
        let vip = f.fam.vip();
        let outage = logs
            .get(i)
            .map(|l| l.outage(event.rt_ns.saturating_sub(20_000_000), now.rt_ns));
        f.outage = outage;
        let until = outage
            .and_then(|o| o.after)
            .map_or(now.rt_ns, |r| r.at.rt_ns);
        let why = why_client_lagged(lab, s, event, &events, vip, f.new_first_rt, until);
        let gap = outage
            .map(|o| format!("{} ({} pings lost)", ms(o.gap_ns), o.lost))
            .unwrap_or_else(|| "?".into());
        if !ok {
            bail!(
                "the client's pings to {vip} were still not answered by {} {} s after the take-over{why}; \
                 longest gap {gap}",
                s.new,
                CLIENT_RECOVERY.as_secs()
            );
        }
        problems.push(format!(
            "{}: the client lost {vip} for {gap} although {} had taken over{why}",
            f.fam.inst, s.new
        ));
    }
    Ok(problems)
}

/// Waits (at most [`CLIENT_RECOVERY`]) until the client is answered by
/// the new master for every lagging family; whether it was.
fn wait_client_recovered(lab: &DemoLab, lagging: &[usize], new_mac: Mac) -> Result<bool> {
    // Recovered: the last 50 replies came from the new master, the last
    // one within 20 ms.
    let end = Instant::now() + CLIENT_RECOVERY;
    let recovered = |lab: &DemoLab| {
        let logs = lab.probe_logs();
        let now = Stamp::now();
        lagging.iter().all(|i| {
            logs.get(*i).is_some_and(|l| {
                let tail = &l.replies[l.replies.len().saturating_sub(50)..];
                tail.len() == 50
                    && tail.iter().all(|r| r.src_mac == new_mac)
                    && tail
                        .last()
                        .is_some_and(|r| now.rt_ns.saturating_sub(r.at.rt_ns) < 20_000_000)
            })
        })
    };
    let mut ok = false;
    while Instant::now() < end {
        signals::check()?;
        if recovered(lab) {
            ok = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(ok)
}

/// Why the client did not follow the new master at once: the GARP/NA of
/// the take-over that came last (the client follows the last one), and
/// what ended the outage (until `until`).
fn why_client_lagged(
    lab: &DemoLab,
    s: &Step,
    event: Stamp,
    events: &[WireEvent],
    vip: IpAddr,
    new_first_rt: u64,
    until: u64,
) -> String {
    let burst_end = new_first_rt + 100_000_000;
    let sent_by = |from: u64, to: u64| {
        lab.routers
            .iter()
            .flat_map(|r| {
                announcements(events, vip, r.mac, from, to)
                    .into_iter()
                    .map(move |t| (t, r.name.as_str()))
            })
            .collect::<Vec<_>>()
    };
    let last = sent_by(event.rt_ns, burst_end)
        .into_iter()
        .max_by_key(|(t, _)| *t);
    let mended = sent_by(burst_end, until)
        .into_iter()
        .filter(|(_, who)| *who == s.new)
        .max_by_key(|(t, _)| *t);
    let mut why = match last {
        Some((t, who)) if who != s.new => {
            let m = event.rt_to_mono(t);
            let held = lab
                .router(who)
                .watch
                .held(vip)
                .iter()
                .any(|h| h.from <= m && h.to.is_none_or(|to| to >= m));
            format!(
                ": it followed {who}'s GARP/NA at {} (the last of the take-over){}",
                rel(t as i128 - event.rt_ns as i128),
                if held {
                    String::new()
                } else {
                    format!(", sent when {who} no longer held {vip}")
                }
            )
        }
        _ => String::new(),
    };
    if let Some((t, _)) = mended {
        why.push_str(&format!(
            "; {}'s next GARP/NA at {} set it right",
            s.new,
            rel(t as i128 - event.rt_ns as i128)
        ));
    }
    why
}

/// The election at start: `master` holds both VIPs, says MASTER, the
/// others BACKUP.
pub fn election(lab: &DemoLab, master: &str, started: Stamp) -> Result<()> {
    wait_takeover(lab, master, started, Duration::from_secs(10)).context("the initial election")?;
    let rep = lab.wait_status(master, Duration::from_secs(2), |r| {
        r.instances.iter().all(|i| i.state == "MASTER")
    })?;
    for r in &lab.routers {
        if r.name != master {
            lab.wait_status(&r.name, Duration::from_secs(2), |rep| {
                rep.instances.iter().all(|i| i.state == "BACKUP")
            })?;
        }
    }
    // xvrrpd starts on raw sockets and moves to eBPF once its programs are
    // verified (a few hundred ms here): show the datapath it settles on.
    let settled = lab.wait_status(master, Duration::from_secs(5), |r| {
        !r.daemon
            .datapath_fallback_reason
            .as_deref()
            .is_some_and(|why| why.contains("loading"))
    })?;
    let d = &settled.daemon;
    let attach = d
        .attachments
        .iter()
        .map(|a| format!("{} {}", a.interface, a.mode))
        .collect::<Vec<_>>()
        .join(", ");
    if d.datapath == "ebpf" {
        say!("  datapath: eBPF ({attach}), as on every router");
    } else {
        say!(
            "  {}",
            yellow(&format!(
                "datapath: {} — eBPF is not in use: {}",
                d.datapath,
                d.datapath_fallback_reason
                    .as_deref()
                    .unwrap_or("no reason given")
            ))
        );
    }
    say!(
        "  {master} is alone at first: no advert, so its down timer runs out and it becomes master"
    );
    let rows: Vec<_> = rep
        .instances
        .iter()
        .map(|i| {
            let pos = i.transitions.iter().rposition(|t| t.to == State::Master);
            let rec = pos.map(|p| i.transitions[p].clone());
            let armed = pos
                .and_then(|p| p.checked_sub(1))
                .map(|p| &i.transitions[p])
                .filter(|b| b.to == State::Backup)
                .map(|b| ("became backup".to_string(), b.at_ns));
            (i.name.as_str(), rec, armed)
        })
        .collect();
    timeline_table(master, &rows);
    say!(
        "  {} Master_Down_Interval({master}) = 3 × {i} + (256 − {p})/256 × {i} = {}",
        label("bound"),
        ms(lab.mdi_ns(master)),
        i = interval_text(),
        p = lab.priority(master)
    );
    Ok(())
}

/// The client's pings are answered by `master` (checked after the
/// election, once the probers run).
pub fn check_client_answered_by(lab: &DemoLab, master: &str, since: Stamp) -> Result<()> {
    let mac = lab.router(master).mac;
    let now = Stamp::now();
    for (f, log) in FAMILIES.iter().zip(lab.probe_logs()) {
        let runs = log.answered_by_between(since.rt_ns, now.rt_ns);
        if runs.is_empty() || runs.iter().any(|r| r.mac != mac) {
            bail!(
                "the client's pings to {} should be answered by {master}; answered by: {}",
                f.vip(),
                if runs.is_empty() {
                    "nobody".to_string()
                } else {
                    ProbeLog::describe_runs(&runs, lab.lab.origin.rt_ns)
                }
            );
        }
    }
    Ok(())
}
