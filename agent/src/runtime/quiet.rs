//! A backup hearing a healthy master sleeps: the datapath keeps that
//! master's repeated adverts from the loop and only records when they came.
//!
//! After each turn, every instance the turn touched gets the kernel entry
//! its state machine allows ([`Router::quiet_master`](crate::vrrp::Router::quiet_master)):
//! the fingerprint of the last advert it accepted from that master, or
//! none. The time of the last kept advert goes back to the state machine
//! as [`Input::Heard`], which moves the deadline as that advert would have:
//!
//! - where the kernel runs the down timer (BPF timers), each kept advert
//!   re-arms it there, and the kernel reports one that runs out
//!   (`DownEvent`, shortly before the deadline); the loop's own timer for
//!   the instance is only a safety net, a Master_Down_Interval (at least a
//!   second) late, and when one comes due every kept instance is brought up
//!   to date at once: less than one wake-up per Master_Down_Interval for
//!   the whole host;
//! - elsewhere the loop's own timer comes due at the deadline (its early
//!   wake-up) and reads the time of the last kept advert first: one
//!   wake-up per Master_Down_Interval per instance, none per advert.

use tracing::{debug, error, warn};
use xvrrpd_common::{DownEvent, QuietAdvert};

use super::{
    daemon::{Daemon, InstanceId},
    dispatch::{Decided, spin_lead},
};
use crate::{
    clock::monotonic_ns,
    vrrp::{Input, TimerKind},
};

/// The shortest delay of the safety net behind the kernel's down timer.
const SAFETY_NET_MIN_NS: u64 = 1_000_000_000;

/// The fingerprint's source field for an address (IPv4 in the first four
/// bytes), as the datapath writes it.
fn src_bytes(addr: std::net::IpAddr) -> [u8; 16] {
    match addr {
        std::net::IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        std::net::IpAddr::V6(a) => a.octets(),
    }
}

impl Daemon {
    /// Marks `inst` for [`Daemon::sync_quiet`] at the end of the turn.
    pub(super) fn quiet_touched(&mut self, inst: InstanceId) {
        self.quiet_dirty.push(inst);
    }

    /// Brings the datapath's entry of each touched instance in step with its
    /// state machine.
    pub(super) fn sync_quiet(&mut self) {
        if !self.datapath.times_adverts() {
            self.quiet_dirty.clear();
            return;
        }
        let mut dirty = std::mem::take(&mut self.quiet_dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for inst in dirty {
            let want = self.quiet_wanted(inst);
            let Some(i) = self.instances.get(inst) else {
                continue;
            };
            let key = i.plan.vrid.key;
            if i.quiet == want.map(|a| (key, a)) {
                continue;
            }
            if i.quiet.is_some() {
                // What was kept so far still counts.
                self.absorb_heard(inst);
            }
            let Some(i) = self.instances.get_mut(inst) else {
                continue;
            };
            if let Some((old_key, _)) = i.quiet.filter(|(k, _)| *k != key)
                && let Err(e) = self.datapath.set_quiet(old_key, None)
            {
                warn!("{}: datapath: {e}", i.plan.name);
            }
            match self.datapath.set_quiet(key, want) {
                Ok(()) => {
                    i.quiet = want.map(|a| (key, a));
                    i.quiet_since = monotonic_ns();
                    if want.is_some() {
                        i.unquiet_for = None;
                    }
                }
                // Every advert keeps waking the loop: slower, still right.
                Err(e) => {
                    warn!(
                        "{}: datapath: keeping adverts in the kernel: {e}",
                        i.plan.name
                    );
                    i.quiet = None;
                }
            }
            // Who times the instance may have changed.
            if let Some(at) = self
                .router(inst)
                .and_then(|r| r.deadline(TimerKind::MasterDown))
            {
                self.arm_down_timer(inst, at, false);
            }
        }
    }

    /// Whether the kernel runs `inst`'s down timer: it keeps the master's
    /// adverts, has BPF timers, has kept one since the entry was written
    /// (the kernel's timer starts with the first kept advert: until then
    /// the loop's timer is the only one) and said its timer runs (starting
    /// one can fail for a while under a burst).
    fn kernel_timed(&self, inst: InstanceId) -> bool {
        self.datapath.kernel_timers()
            && self
                .instances
                .get(inst)
                .is_some_and(|i| i.quiet.is_some() && i.heard_timed && i.heard_last > i.quiet_since)
    }

    /// Who watches `inst`'s down timer, for the status report.
    pub(super) fn down_timer_owner(&self, inst: InstanceId) -> Option<&'static str> {
        self.router(inst)?.deadline(TimerKind::MasterDown)?;
        let kept = self.instances.get(inst)?.quiet.is_some();
        Some(match (kept, self.kernel_timed(inst)) {
            (_, true) => "kernel",
            (true, false) => "agent-kept",
            (false, false) => "agent",
        })
    }

    /// Puts `inst`'s down deadline `at` on the loop's timer: at the deadline
    /// itself (woken early to spin to it) unless the kernel times the
    /// instance and `imminent` is not set; then a Master_Down_Interval (at
    /// least a second) later, as a safety net the kernel's timer should
    /// never need.
    pub(super) fn arm_down_timer(&mut self, inst: InstanceId, at: u64, imminent: bool) {
        let lazy = !imminent && self.kernel_timed(inst);
        let (wake_at, lead) = match lazy {
            true => {
                let slack = self
                    .router(inst)
                    .map_or(0, |r| r.master_down_ns())
                    .max(SAFETY_NET_MIN_NS);
                (at.saturating_add(slack), 0)
            }
            false => (at, spin_lead(TimerKind::MasterDown)),
        };
        if let Some(i) = self.instances.get_mut(inst) {
            i.down_lazy = lazy;
        }
        if let Err(e) = self
            .timers
            .arm_early((inst, TimerKind::MasterDown), wake_at, lead)
        {
            error!("{}: arming MasterDown: {e}", self.name(inst));
        }
    }

    /// Down timers the kernel ran out: each instance hears of its last kept
    /// advert, then its deadline goes on the loop's timer exactly (it is a
    /// spin lead away) — the master may still be heard until then.
    pub(super) fn on_downs(&mut self) {
        let mut downs = Vec::new();
        self.datapath.take_downs(&mut downs);
        let mut expired = Vec::new();
        let mut decided = Decided::default();
        for DownEvent {
            key,
            last_ns,
            deadline_ns,
            fired_ns,
        } in downs
        {
            let Some(&inst) = self.by_vrid.get(&key) else {
                continue;
            };
            if self.instances.get(inst).is_none_or(|i| i.quiet.is_none()) {
                continue;
            }
            debug!(
                "{}: the kernel's down timer ran out {} ns before the deadline",
                self.name(inst),
                deadline_ns.saturating_sub(fired_ns)
            );
            // The last stretch is watched without the kernel keeping
            // adverts: a late one is delivered, and the spin to the deadline
            // needs no map lookups.
            let at_ns = self.unquiet(inst).unwrap_or(last_ns).max(last_ns);
            self.decide(inst, monotonic_ns(), Input::Heard { at_ns }, &mut decided);
            expired.push(inst);
        }
        self.execute(decided);
        for inst in expired {
            if let Some(at) = self
                .router(inst)
                .and_then(|r| r.deadline(TimerKind::MasterDown))
            {
                self.arm_down_timer(inst, at, true);
            }
        }
    }

    /// The entry the state machine allows for `inst`: its last accepted
    /// advert, when it came from the master a repeat of whose advert only
    /// re-arms the down timer.
    fn quiet_wanted(&self, inst: InstanceId) -> Option<QuietAdvert> {
        let r = self.router(inst)?;
        let unquiet_for = self.instances.get(inst)?.unquiet_for;
        if unquiet_for.is_some() && unquiet_for == r.deadline(TimerKind::MasterDown) {
            return None;
        }
        let q = r.quiet_master()?;
        let fp = self.instances.get(inst)?.fingerprint?;
        (fp.src == src_bytes(q.addr) && fp.priority == q.priority).then_some(QuietAdvert {
            down_ns: q.down_ns,
            ..fp
        })
    }

    /// Down timers whose (early) wake-up has come: the kernel's last kept
    /// advert of each such instance goes to its state machine first, so a
    /// master still heard moves the deadline instead of losing it.
    /// A safety-net wake-up (the kernel times the instance) brings every
    /// kept instance up to date, so the next one is about a
    /// Master_Down_Interval away for all of them together.
    pub(super) fn refresh_heard(&mut self, now: u64) {
        let mut woken: Vec<InstanceId> = self
            .timers
            .woken(now)
            .filter(|(_, kind)| *kind == TimerKind::MasterDown)
            .map(|(inst, _)| inst)
            .filter(|&inst| self.instances.get(inst).is_some_and(|i| i.quiet.is_some()))
            .collect();
        // Called on every turn of a spin: nothing to do is the common case.
        if woken.is_empty() {
            return;
        }
        if woken.iter().any(|&n| self.instances[n].down_lazy) {
            // Every safety net along, and still every woken exact timer.
            let mut listed = vec![false; self.instances.len()];
            for &n in &woken {
                listed[n] = true;
            }
            for (n, i) in self.instances.iter().enumerate() {
                if i.down_lazy && !listed[n] {
                    woken.push(n);
                }
            }
        }
        // All decided, then executed once: a thousand instances refreshed
        // together cost one pass, not one per instance.
        let mut decided = Decided::default();
        for &inst in &woken {
            if let Some(at_ns) = self.absorb_heard(inst) {
                self.decide(inst, monotonic_ns(), Input::Heard { at_ns }, &mut decided);
            }
        }
        self.execute(decided);
        // Exact timers still coming due once refreshed: the datapath
        // delivers the master's adverts again for the last stretch, so the
        // spin to the deadline reads the ring only (no lookup per instance
        // per spin). Only those just refreshed: one woken meanwhile has not
        // read the kernel's record yet.
        let now = monotonic_ns();
        let still: Vec<InstanceId> = woken
            .into_iter()
            .filter(|&inst| {
                self.timers.woke((inst, TimerKind::MasterDown), now)
                    && self
                        .instances
                        .get(inst)
                        .is_some_and(|i| i.quiet.is_some() && !i.down_lazy)
            })
            .collect();
        if still.is_empty() {
            return;
        }
        let mut decided = Decided::default();
        for inst in still {
            if let Some(at_ns) = self.unquiet(inst) {
                self.decide(inst, monotonic_ns(), Input::Heard { at_ns }, &mut decided);
            }
        }
        self.execute(decided);
    }

    /// The datapath stops keeping `inst`'s master's adverts until its down
    /// deadline moves (they reach the loop again); returns when the last
    /// kept one came, read after the entry is gone so none is lost between.
    fn unquiet(&mut self, inst: InstanceId) -> Option<u64> {
        let deadline = self
            .router(inst)
            .and_then(|r| r.deadline(TimerKind::MasterDown));
        let i = self.instances.get_mut(inst)?;
        if let Some((key, _)) = i.quiet {
            debug!(
                "{}: down deadline {} ns away: its master's adverts are delivered again",
                i.plan.name,
                deadline.map_or(0, |d| d.saturating_sub(monotonic_ns()))
            );
            match self.datapath.set_quiet(key, None) {
                Ok(()) => {
                    i.quiet = None;
                    i.unquiet_for = deadline;
                }
                // Still kept: the loop reads the kernel's record instead.
                Err(e) => warn!("{}: datapath: {e}", i.plan.name),
            }
        }
        self.absorb_heard(inst)
    }

    /// Adds what the kernel kept so far to every instance's counters (for a
    /// status report).
    pub(super) fn absorb_all_heard(&mut self) {
        for inst in 0..self.instances.len() {
            if self.instances[inst].quiet.is_some() {
                self.absorb_heard(inst);
            }
        }
    }

    /// Reads what the kernel kept for `inst`: its count joins the adverts
    /// received; returns when the last one came.
    pub(super) fn absorb_heard(&mut self, inst: InstanceId) -> Option<u64> {
        let key = self.instances.get(inst)?.plan.vrid.key;
        let heard = self.datapath.heard(&key)?;
        let i = self.instances.get_mut(inst)?;
        i.heard_last = i.heard_last.max(heard.last_ns);
        i.heard_timed = heard.timed != 0;
        // The kernel's count restarts with its entry (a removed VRID).
        let new = heard.count.checked_sub(i.heard_seen).unwrap_or(heard.count);
        i.heard_seen = heard.count;
        i.counters.adverts_received += new;
        i.metrics.adverts_received(new);
        Some(heard.last_ns)
    }
}
