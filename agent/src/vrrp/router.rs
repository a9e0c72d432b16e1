//! One VRRP instance: the RFC 3768 / RFC 9568 state machine with keepalived's
//! extensions. Sans-IO: see the module docs for the rules and their tests.

use std::cmp::Ordering;
use std::net::IpAddr;

use crate::packet::{Advert, Auth, Version};

use super::config::{
    ConfigError, ConfigWarning, Family, NS_PER_CS, PRIORITY_OWNER, PRIORITY_STOP, RouterConfig,
    master_down_ns, skew_ns,
};
use super::track;
use super::tracked::{TrackState, TrackerId};
use super::types::{
    Action, AdvertMeta, DiscardReason, Event, Input, QuietMaster, Reason, ReceivedAdvert, State,
    TimerKind, Transition,
};

/// The advert timer may be handled up to 1/8 of the advert interval early
/// ([`Router::advert_early_ns`]).
pub const ADVERT_EARLY_DIVISOR: u64 = 8;

/// A VRRP router (one keepalived `vrrp_instance`).
#[derive(Clone, Debug)]
pub struct Router {
    cfg: RouterConfig,
    warnings: Vec<ConfigWarning>,
    state: State,
    /// Base priority; differs from the configured one after an owner conflict.
    base_priority: u8,
    /// Effective priority (base plus tracking weights).
    priority: u8,
    trackers: Vec<(super::config::TrackerConfig, TrackState)>,
    own_fault: bool,
    group_fault: bool,
    sync_member: bool,
    want_master: bool,
    /// Master_Adver_Interval: ours, or (VRRPv3 Backup) the master's.
    master_adver_int_cs: u16,
    timers: [Option<u64>; TimerKind::COUNT],
    /// What the armed down timer counts from (kernel receive time).
    down_base_ns: u64,
    /// The armed down timer is Skew_Time only (priority-0 advert seen).
    down_skew_only: bool,
    last_advert_ts_ns: Option<u64>,
    master_addr: Option<IpAddr>,
    master_priority: Option<u8>,
    preempt_delay_expired: bool,
    last_transition: Option<Transition>,
    /// When the last re-announce for a lower-priority advert went out: one
    /// per advert interval at most, so a router that keeps believing it is
    /// master (a one-way partition) cannot make this one flood the segment.
    last_lower_prio_garp_ns: Option<u64>,
    /// VIPs re-announced after a claim, and when: at most one per advert
    /// interval each, so two confused masters cannot start a storm.
    reannounced: Vec<(IpAddr, u64)>,
    /// Re-announces whose interval has not been checked for later claims
    /// yet (see [`TimerKind::ClaimCheck`]).
    claim_checks: Vec<(IpAddr, u64)>,
}

impl Router {
    /// Validates and normalizes `cfg` (see [`RouterConfig::normalize`]).
    pub fn new(mut cfg: RouterConfig) -> Result<Self, ConfigError> {
        let warnings = cfg.normalize();
        cfg.validate()?;
        let trackers: Vec<_> = cfg.trackers.iter().map(|t| (*t, t.initial)).collect();
        let base_priority = cfg.priority;
        let (priority, own_fault) = track::effective(base_priority, &trackers);
        Ok(Self {
            master_adver_int_cs: cfg.advert_int_cs,
            cfg,
            warnings,
            state: State::Initialize,
            base_priority,
            priority,
            trackers,
            own_fault,
            group_fault: false,
            sync_member: false,
            want_master: false,
            timers: [None; TimerKind::COUNT],
            down_base_ns: 0,
            down_skew_only: false,
            last_advert_ts_ns: None,
            master_addr: None,
            master_priority: None,
            preempt_delay_expired: false,
            last_transition: None,
            last_lower_prio_garp_ns: None,
            reannounced: Vec::new(),
            claim_checks: Vec::new(),
        })
    }

    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Adjustments [`RouterConfig::normalize`] made to the configuration.
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Effective priority.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn base_priority(&self) -> u8 {
        self.base_priority
    }

    /// Master_Adver_Interval in centiseconds.
    pub fn master_adver_int_cs(&self) -> u16 {
        self.master_adver_int_cs
    }

    /// Current deadline of a timer, if armed.
    pub fn deadline(&self, kind: TimerKind) -> Option<u64> {
        self.timers[kind.index()]
    }

    pub fn last_transition(&self) -> Option<&Transition> {
        self.last_transition.as_ref()
    }

    /// The master as last heard (address, priority).
    pub fn master(&self) -> (Option<IpAddr>, Option<u8>) {
        (self.master_addr, self.master_priority)
    }

    /// In Fault because of its own trackers (not because of its sync group).
    /// The last reported state of tracked object `id`.
    pub fn tracker_state(&self, id: TrackerId) -> Option<TrackState> {
        self.trackers
            .iter()
            .find(|(t, _)| t.id == id)
            .map(|(_, s)| *s)
    }

    pub fn own_fault(&self) -> bool {
        self.own_fault
    }

    /// Skew_Time for the current effective priority and Master_Adver_Interval.
    pub fn skew_ns(&self) -> u64 {
        skew_ns(self.cfg.version, self.priority, self.master_adver_int_cs)
    }

    /// Master_Down_Interval for the current effective priority and interval.
    pub fn master_down_ns(&self) -> u64 {
        master_down_ns(
            self.cfg.version,
            self.priority,
            self.master_adver_int_cs,
            self.cfg.down_timer_adverts,
        )
    }

    fn advert_int_ns(&self) -> u64 {
        u64::from(self.cfg.advert_int_cs) * NS_PER_CS
    }

    fn gratuitous_spacing_ns(&self) -> u64 {
        match self.cfg.family {
            Family::V4 => self.cfg.garp.interval_ns,
            Family::V6 => self.cfg.garp.na_interval_ns,
        }
    }

    /// Handles one input; returns the actions in execution order.
    pub fn handle(&mut self, now_ns: u64, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        self.handle_into(now_ns, input, &mut out);
        out
    }

    /// Like [`Router::handle`], appending to a caller-owned buffer so a busy
    /// caller allocates nothing per event.
    pub fn handle_into(&mut self, now_ns: u64, input: Input, out: &mut Vec<Action>) {
        match input {
            Input::Startup => self.startup(now_ns, out),
            Input::Advert(ReceivedAdvert { meta, advert }) => {
                self.on_advert(now_ns, meta, &advert, out)
            }
            Input::TimerFired(kind) => self.on_timer(now_ns, kind, out),
            Input::Track { id, state } => self.on_track(now_ns, id, state, out),
            Input::Shutdown => self.shutdown(now_ns, out),
            Input::Reload(cfg) => self.reload(now_ns, *cfg, out),
            Input::Heard { at_ns } => self.on_heard(now_ns, at_ns, out),
            Input::Conflict { addr, mac, at_ns } => {
                // The kernel's receive time, as for adverts (0 or a time
                // after `now`: unknown): the kernel limits its reports on
                // the same clock, so a late reader does not suppress one.
                let at = if at_ns == 0 || at_ns > now_ns {
                    now_ns
                } else {
                    at_ns
                };
                self.on_conflict(at, addr, mac, out)
            }
        }
    }

    /// A claim of one of our VIPs by another MAC, received at `now`. As
    /// Master: announce that VIP at once, unless a claim received less than
    /// one advert interval earlier made us announce it. Otherwise the VIP
    /// is not ours to defend.
    fn on_conflict(&mut self, now: u64, addr: IpAddr, mac: [u8; 6], out: &mut Vec<Action>) {
        if self.state != State::Master {
            return;
        }
        let interval = self.advert_int_ns();
        let last = self.reannounced.iter_mut().find(|(a, _)| *a == addr);
        let reannounced = match last {
            Some((_, at)) if now.saturating_sub(*at) < interval => false,
            Some((_, at)) => {
                *at = now;
                true
            }
            None => {
                self.reannounced.push((addr, now));
                true
            }
        };
        if reannounced {
            out.push(Action::Reannounce { addr });
            // A claim inside the interval that follows is not answered at
            // once; look for one when it ends, so the last announcement on
            // the segment is ours.
            self.claim_checks.retain(|(a, _)| *a != addr);
            self.claim_checks.push((addr, now));
            self.arm_claim_check(out);
        }
        out.push(Action::Event(Event::VipClaimed {
            addr,
            mac,
            reannounced,
        }));
    }

    /// Arms the claim check for the earliest pending re-announce.
    fn arm_claim_check(&mut self, out: &mut Vec<Action>) {
        let interval = self.advert_int_ns();
        match self.claim_checks.iter().map(|(_, at)| *at).min() {
            Some(first) => self.arm(TimerKind::ClaimCheck, first.saturating_add(interval), out),
            None => self.cancel(TimerKind::ClaimCheck, out),
        }
    }

    // ----- timers -----

    fn arm(&mut self, kind: TimerKind, at_ns: u64, out: &mut Vec<Action>) {
        self.timers[kind.index()] = Some(at_ns);
        out.push(Action::ArmTimer { kind, at_ns });
    }

    fn cancel(&mut self, kind: TimerKind, out: &mut Vec<Action>) {
        if self.timers[kind.index()].take().is_some() {
            out.push(Action::CancelTimer(kind));
        }
    }

    fn cancel_all(&mut self, out: &mut Vec<Action>) {
        for kind in TimerKind::ALL {
            self.cancel(kind, out);
        }
    }

    fn arm_down_timer(&mut self, base_ns: u64, skew_only: bool, out: &mut Vec<Action>) {
        self.down_base_ns = base_ns;
        self.down_skew_only = skew_only;
        let len = if skew_only {
            self.skew_ns()
        } else {
            self.master_down_ns()
        };
        self.arm(TimerKind::MasterDown, base_ns.saturating_add(len), out);
    }

    // ----- transitions -----

    fn record(
        &mut self,
        now: u64,
        to: State,
        reason: Reason,
        deadline: Option<u64>,
        out: &mut Vec<Action>,
    ) -> State {
        let from = self.state;
        let t = Transition {
            from,
            to,
            reason,
            at_ns: now,
            last_advert_ts_ns: self.last_advert_ts_ns,
            deadline_ns: deadline,
            fired_at_ns: deadline.map(|_| now),
            priority: self.priority,
            master_addr: self.master_addr,
            master_priority: self.master_priority,
        };
        self.state = to;
        self.last_transition = Some(t.clone());
        out.push(Action::Transition(t));
        from
    }

    /// Backup (or Initialize/Fault for the owner) → Master. The advert goes
    /// first so the old master drops the VIPs before our GARPs (keepalived
    /// does the same).
    fn become_master(
        &mut self,
        now: u64,
        reason: Reason,
        deadline: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        let from = self.record(now, State::Master, reason, deadline, out);
        self.cancel(TimerKind::MasterDown, out);
        self.cancel(TimerKind::PreemptDelay, out);
        self.want_master = false;
        self.preempt_delay_expired = false;
        self.master_adver_int_cs = self.cfg.advert_int_cs;
        self.master_addr = Some(self.cfg.primary_addr);
        self.master_priority = Some(self.priority);
        self.reannounced.clear();
        self.claim_checks.clear();
        out.push(Action::SendAdvert {
            priority: self.priority,
            interval_cs: self.cfg.advert_int_cs,
        });
        out.push(Action::AddVips);
        if self.cfg.garp.master_repeat > 0 {
            out.push(Action::SendGratuitous {
                count: self.cfg.garp.master_repeat,
                spacing_ns: self.gratuitous_spacing_ns(),
            });
        }
        self.arm(
            TimerKind::Advert,
            now.saturating_add(self.advert_int_ns()),
            out,
        );
        if self.cfg.garp.master_delay_ns > 0 && self.cfg.garp.master_repeat > 0 {
            let at = now.saturating_add(self.cfg.garp.master_delay_ns);
            self.arm(TimerKind::GarpDelay, at, out);
        }
        if self.cfg.garp.master_refresh_ns > 0 {
            let at = now.saturating_add(self.cfg.garp.master_refresh_ns);
            self.arm(TimerKind::GarpRefresh, at, out);
        }
        if self.cfg.garp.extra_if_ns > 0 {
            // keepalived: first after the second batch's delay plus one period.
            let at = now
                .saturating_add(self.cfg.garp.master_delay_ns)
                .saturating_add(self.cfg.garp.extra_if_ns);
            self.arm(TimerKind::GarpExtraIf, at, out);
        }
        out.push(Action::Notify {
            from,
            to: State::Master,
        });
    }

    /// Master → Backup: VIPs go, the down timer counts from `base_ns`.
    fn leave_master_to_backup(
        &mut self,
        now: u64,
        reason: Reason,
        base_ns: u64,
        out: &mut Vec<Action>,
    ) {
        let from = self.record(now, State::Backup, reason, None, out);
        self.cancel_all(out);
        self.preempt_delay_expired = false;
        self.want_master = false;
        out.push(Action::RemoveVips);
        out.push(Action::Notify {
            from,
            to: State::Backup,
        });
        self.arm_down_timer(base_ns, false, out);
    }

    fn enter_fault(&mut self, now: u64, reason: Reason, out: &mut Vec<Action>) {
        if self.state == State::Fault {
            return;
        }
        let from = self.record(now, State::Fault, reason, None, out);
        self.cancel_all(out);
        self.want_master = false;
        self.preempt_delay_expired = false;
        if from == State::Master {
            // keepalived tells the others to take over at once.
            out.push(Action::SendAdvert {
                priority: PRIORITY_STOP,
                interval_cs: self.cfg.advert_int_cs,
            });
            out.push(Action::RemoveVips);
        }
        out.push(Action::Notify {
            from,
            to: State::Fault,
        });
    }

    fn leave_fault(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.state != State::Fault || self.own_fault || self.group_fault {
            return;
        }
        self.master_adver_int_cs = self.cfg.advert_int_cs;
        self.last_advert_ts_ns = None;
        self.master_addr = None;
        self.master_priority = None;
        if self.base_priority == PRIORITY_OWNER && !self.sync_member {
            self.become_master(now, Reason::Owner, None, out);
            return;
        }
        let from = self.record(now, State::Backup, Reason::FaultCleared, None, out);
        out.push(Action::Notify {
            from,
            to: State::Backup,
        });
        self.arm_down_timer(now, false, out);
    }

    // ----- inputs -----

    fn startup(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        if self.own_fault || self.group_fault {
            self.enter_fault(now, Reason::Fault, out);
        } else if self.base_priority == PRIORITY_OWNER && !self.sync_member {
            self.become_master(now, Reason::Owner, None, out);
        } else {
            let from = self.record(now, State::Backup, Reason::Startup, None, out);
            out.push(Action::Notify {
                from,
                to: State::Backup,
            });
            self.arm_down_timer(now, false, out);
            if self.base_priority == PRIORITY_OWNER {
                // An owner in a sync group wants master at once; the group decides.
                self.want_master = true;
                out.push(Action::SyncWantMaster);
            }
        }
    }

    /// How early the advert timer may be handled: the runtime sends the
    /// adverts of instances falling due together in one wake-up. An advert
    /// a little early only makes a backup's down timer safer.
    pub fn advert_early_ns(&self) -> u64 {
        self.advert_int_ns() / ADVERT_EARLY_DIVISOR
    }

    fn on_timer(&mut self, now: u64, kind: TimerKind, out: &mut Vec<Action>) {
        let Some(deadline) = self.timers[kind.index()] else {
            return;
        };
        let early = match kind {
            TimerKind::Advert => self.advert_early_ns(),
            _ => 0,
        };
        if now.saturating_add(early) < deadline {
            return;
        }
        self.timers[kind.index()] = None;
        match (self.state, kind) {
            (State::Master, TimerKind::Advert) => {
                out.push(Action::SendAdvert {
                    priority: self.priority,
                    interval_cs: self.cfg.advert_int_cs,
                });
                let int = self.advert_int_ns();
                // Keep the cadence; if we were late by a whole interval, restart
                // it. Sent early: the cadence moves to now, beside the adverts
                // it went out with.
                let mut next = deadline.saturating_add(int);
                if next <= now || now < deadline {
                    next = now.saturating_add(int);
                }
                self.arm(TimerKind::Advert, next, out);
            }
            (State::Backup, TimerKind::MasterDown) => {
                if self.sync_member {
                    self.want_master = true;
                    out.push(Action::SyncWantMaster);
                    self.arm_down_timer(now, false, out);
                } else {
                    self.become_master(now, Reason::MasterDown, Some(deadline), out);
                }
            }
            (State::Backup, TimerKind::PreemptDelay) => self.preempt_delay_expired = true,
            (State::Master, TimerKind::GarpDelay) => out.push(Action::SendGratuitous {
                count: self.cfg.garp.master_repeat,
                spacing_ns: self.gratuitous_spacing_ns(),
            }),
            (State::Master, TimerKind::GarpRefresh) => {
                if self.cfg.garp.master_refresh_repeat > 0 {
                    out.push(Action::SendGratuitous {
                        count: self.cfg.garp.master_refresh_repeat,
                        spacing_ns: self.gratuitous_spacing_ns(),
                    });
                }
                let at = now.saturating_add(self.cfg.garp.master_refresh_ns);
                self.arm(TimerKind::GarpRefresh, at, out);
            }
            (State::Master, TimerKind::GarpExtraIf) => {
                out.push(Action::SendGratuitousExtraIf);
                let at = now.saturating_add(self.cfg.garp.extra_if_ns);
                self.arm(TimerKind::GarpExtraIf, at, out);
            }
            (State::Master, TimerKind::GarpLowerPrio) => out.push(Action::SendGratuitous {
                count: self.cfg.garp.lower_prio_repeat,
                spacing_ns: self.gratuitous_spacing_ns(),
            }),
            (State::Master, TimerKind::ClaimCheck) => {
                let interval = self.advert_int_ns();
                let (due, later): (Vec<_>, Vec<_>) = self
                    .claim_checks
                    .drain(..)
                    .partition(|(_, at)| at.saturating_add(interval) <= now);
                self.claim_checks = later;
                if !due.is_empty() {
                    out.push(Action::CheckClaims { since: due });
                }
                self.arm_claim_check(out);
            }
            (_, TimerKind::ClaimCheck) => self.claim_checks.clear(),
            _ => {}
        }
    }

    /// RFC 9568 §7.1 receive checks that need the instance's configuration
    /// (the codec did version, type, length and checksum), in keepalived's
    /// order.
    fn check_advert(&self, meta: &AdvertMeta, adv: &Advert) -> Result<(), DiscardReason> {
        let cfg = &self.cfg;
        if adv.vrid != cfg.vrid {
            return Err(DiscardReason::WrongVrid);
        }
        if Family::of(&meta.src) != cfg.family
            || adv.addrs.iter().any(|a| Family::of(a) != cfg.family)
        {
            return Err(DiscardReason::WrongFamily);
        }
        let unicast_instance = !cfg.unicast_peers.is_empty();
        if !unicast_instance && cfg.check_ttl && meta.ttl != xvrrpd_common::VRRP_TTL {
            return Err(DiscardReason::BadTtl(meta.ttl));
        }
        if adv.version != cfg.version {
            return Err(DiscardReason::WrongVersion);
        }
        if cfg.version == Version::V2 {
            if adv.auth.type_code() != cfg.auth.type_code() {
                return Err(DiscardReason::AuthTypeMismatch {
                    ours: cfg.auth.type_code(),
                    theirs: adv.auth.type_code(),
                });
            }
            match (&cfg.auth, &adv.auth) {
                (Auth::Pass(ours), Auth::Pass(theirs)) if !constant_time_eq(ours, theirs) => {
                    return Err(DiscardReason::AuthPassMismatch);
                }
                (Auth::Ah(_), _) | (Auth::Other(..), _) => {
                    return Err(DiscardReason::AuthAhUnsupported);
                }
                _ => {}
            }
            if adv.interval_cs != cfg.advert_int_cs {
                return Err(DiscardReason::IntervalMismatch {
                    ours_cs: cfg.advert_int_cs,
                    theirs_cs: adv.interval_cs,
                });
            }
        }
        if meta.unicast != unicast_instance {
            return Err(DiscardReason::UnicastMismatch);
        }
        let known_master = self.state == State::Backup && self.master_addr == Some(meta.src);
        if !(cfg.skip_check_adv_addr && known_master) {
            let theirs = adv.addrs.len() + usize::from(meta.addrs_not_carried);
            if theirs != cfg.vips.len() {
                return Err(DiscardReason::AddressCountMismatch {
                    ours: cfg.vips.len(),
                    theirs,
                });
            }
            // With every address at hand, each of ours must be there; with
            // only the first ones (a large advert), each of those must be ours.
            let listed = if meta.addrs_not_carried == 0 {
                cfg.vips.iter().all(|v| adv.addrs.contains(v))
            } else {
                adv.addrs.iter().all(|a| cfg.vips.contains(a))
            };
            if !listed {
                return Err(DiscardReason::AddressListMismatch);
            }
        }
        if unicast_instance && cfg.check_unicast_src && !cfg.unicast_peers.contains(&meta.src) {
            return Err(DiscardReason::UnicastSourceNotPeer);
        }
        Ok(())
    }

    /// Handles a received advert by reference (a simulator delivers one
    /// advert to many routers without copying it).
    pub fn on_advert(&mut self, now: u64, meta: AdvertMeta, adv: &Advert, out: &mut Vec<Action>) {
        if matches!(self.state, State::Initialize | State::Fault) {
            out.push(Action::Discarded(DiscardReason::NotRunning));
            return;
        }
        if let Err(reason) = self.check_advert(&meta, adv) {
            out.push(Action::Discarded(reason));
            return;
        }
        let ts = if meta.ts_ns == 0 || meta.ts_ns > now {
            now
        } else {
            meta.ts_ns
        };
        match self.state {
            State::Backup => self.backup_rx(now, &meta, adv, ts, out),
            State::Master => self.master_rx(now, &meta, adv, ts, out),
            State::Initialize | State::Fault => {}
        }
    }

    /// The master whose repeated advert would only re-arm the down timer:
    /// in Backup, having accepted its advert (priority > 0) under a rule that
    /// holds while nothing changes — its priority at least ours, or
    /// `nopreempt` without a preemption delay. The runtime lets the
    /// datapath keep such repeats from the agent, timing them
    /// ([`Input::Heard`]). `None` in every other case: each advert must be
    /// seen.
    pub fn quiet_master(&self) -> Option<QuietMaster> {
        if self.state != State::Backup
            || self.down_skew_only
            || self.timers[TimerKind::MasterDown.index()].is_none()
        {
            return None;
        }
        let (addr, priority) = (self.master_addr?, self.master_priority?);
        let holds =
            priority >= self.priority || (self.cfg.nopreempt && self.cfg.preempt_delay_ns == 0);
        (priority != PRIORITY_STOP && holds).then(|| QuietMaster {
            addr,
            priority,
            down_ns: self.master_down_ns(),
        })
    }

    /// The accepted master advertised the same advert again at `at`: the
    /// Backup rule for a repeat of that advert, without its checks (the
    /// datapath compared it with the accepted one). Stale or older news, or
    /// any state but Backup, changes nothing.
    fn on_heard(&mut self, now: u64, at: u64, out: &mut Vec<Action>) {
        let ts = if at == 0 || at > now { now } else { at };
        if self.state != State::Backup
            || self.down_skew_only
            || self.last_advert_ts_ns.is_some_and(|last| last >= ts)
        {
            return;
        }
        let Some(priority) = self.master_priority.filter(|p| *p != PRIORITY_STOP) else {
            return;
        };
        let delay = self.cfg.preempt_delay_ns;
        let held_by_delay = delay > 0 && !self.preempt_delay_expired;
        if !(self.cfg.nopreempt || priority >= self.priority || held_by_delay) {
            // A lower-priority master: its adverts no longer hold us back.
            return;
        }
        self.last_advert_ts_ns = Some(ts);
        self.want_master = false;
        self.arm_down_timer(ts, false, out);
    }

    /// RFC 9568 §6.4.2 (Backup) with keepalived's `nopreempt` and
    /// `preempt_delay`.
    fn backup_rx(
        &mut self,
        now: u64,
        meta: &AdvertMeta,
        adv: &Advert,
        ts: u64,
        out: &mut Vec<Action>,
    ) {
        self.last_advert_ts_ns = Some(ts);
        if adv.priority == PRIORITY_STOP {
            // Status and the transition record say the master was leaving.
            self.master_addr = Some(meta.src);
            self.master_priority = Some(PRIORITY_STOP);
            self.arm_down_timer(ts, true, out);
            return;
        }
        let delay = self.cfg.preempt_delay_ns;
        let held_by_delay = delay > 0 && !self.preempt_delay_expired;
        if self.cfg.nopreempt || adv.priority >= self.priority || held_by_delay {
            if self.cfg.version == Version::V3 {
                self.master_adver_int_cs = adv.interval_cs;
            }
            self.master_addr = Some(meta.src);
            self.master_priority = Some(adv.priority);
            self.want_master = false;
            self.arm_down_timer(ts, false, out);
            if delay > 0 {
                if adv.priority >= self.priority {
                    self.cancel(TimerKind::PreemptDelay, out);
                    self.preempt_delay_expired = false;
                } else if self.deadline(TimerKind::PreemptDelay).is_none() {
                    self.arm(TimerKind::PreemptDelay, now.saturating_add(delay), out);
                }
            }
        } else {
            // Let the down timer run out: we preempt the lower-priority master.
            self.master_addr = Some(meta.src);
            self.master_priority = Some(adv.priority);
            out.push(Action::Discarded(DiscardReason::LowerPriority));
        }
    }

    /// RFC 9568 §6.4.3 (Master) with keepalived's extensions.
    fn master_rx(
        &mut self,
        now: u64,
        meta: &AdvertMeta,
        adv: &Advert,
        ts: u64,
        out: &mut Vec<Action>,
    ) {
        // Unsigned comparison in network order: IpAddr's Ord within one family.
        let addr_cmp = meta.src.cmp(&self.cfg.primary_addr);
        let theirs = adv.priority;
        let higher = |mine: u8| theirs > mine || (theirs == mine && addr_cmp == Ordering::Greater);
        if theirs == PRIORITY_STOP || (self.cfg.higher_prio_send_advert && higher(self.priority)) {
            out.push(Action::SendAdvert {
                priority: self.priority,
                interval_cs: self.cfg.advert_int_cs,
            });
            if theirs == PRIORITY_STOP {
                let at = now.saturating_add(self.advert_int_ns());
                self.arm(TimerKind::Advert, at, out);
                return;
            }
        }
        if theirs == self.priority {
            if addr_cmp == Ordering::Equal {
                out.push(Action::Event(Event::OwnAddressSeen));
            } else if self.priority == PRIORITY_OWNER {
                // Two owners: keepalived lowers its own priority to 254.
                out.push(Action::Event(Event::OwnerConflict { other: meta.src }));
                self.base_priority = PRIORITY_OWNER - 1;
                let old = self.priority;
                let (p, _) = track::effective(self.base_priority, &self.trackers);
                self.priority = p;
                out.push(Action::Event(Event::PriorityChanged { from: old, to: p }));
            }
        }
        let mine = self.priority;
        if theirs < mine || (theirs == mine && addr_cmp == Ordering::Less) {
            if !self.cfg.lower_prio_no_advert {
                out.push(Action::SendAdvert {
                    priority: mine,
                    interval_cs: self.cfg.advert_int_cs,
                });
            }
            let due = self
                .last_lower_prio_garp_ns
                .is_none_or(|t| now.saturating_sub(t) >= self.advert_int_ns());
            if self.cfg.garp.lower_prio_repeat > 0 && due {
                self.last_lower_prio_garp_ns = Some(now);
                out.push(Action::SendGratuitous {
                    count: self.cfg.garp.lower_prio_repeat,
                    spacing_ns: self.gratuitous_spacing_ns(),
                });
                if self.cfg.garp.lower_prio_delay_ns > 0 {
                    let at = now.saturating_add(self.cfg.garp.lower_prio_delay_ns);
                    self.arm(TimerKind::GarpLowerPrio, at, out);
                }
            }
            out.push(Action::Event(Event::MasterRxLowerPriority {
                from: meta.src,
                priority: theirs,
            }));
            return;
        }
        if higher(mine) {
            if self.cfg.version == Version::V3 {
                self.master_adver_int_cs = adv.interval_cs;
            }
            self.last_advert_ts_ns = Some(ts);
            self.master_addr = Some(meta.src);
            self.master_priority = Some(theirs);
            let reason = if theirs > mine {
                Reason::HigherPriority
            } else {
                Reason::EqualPriorityGreaterAddress
            };
            self.leave_master_to_backup(now, reason, ts, out);
        }
    }

    fn on_track(&mut self, now: u64, id: TrackerId, state: TrackState, out: &mut Vec<Action>) {
        // Unknown ids are ignored: the runtime may report objects another
        // instance tracks.
        let Some(slot) = self.trackers.iter_mut().find(|(t, _)| t.id == id) else {
            return;
        };
        if slot.1 == state {
            return;
        }
        slot.1 = state;
        self.recompute(now, out);
    }

    /// Applies tracker states: priority change, then fault entry or exit.
    fn recompute(&mut self, now: u64, out: &mut Vec<Action>) {
        let (prio, fault) = track::effective(self.base_priority, &self.trackers);
        if prio != self.priority {
            let old = self.priority;
            self.priority = prio;
            out.push(Action::Event(Event::PriorityChanged {
                from: old,
                to: prio,
            }));
            // keepalived shortens a running down timer when priority rises
            // (its skew shrinks); a falling priority waits for the next advert.
            if self.state == State::Backup
                && prio > old
                && !self.down_skew_only
                && self.deadline(TimerKind::MasterDown).is_some()
            {
                self.arm_down_timer(self.down_base_ns, false, out);
            }
        }
        if fault != self.own_fault {
            self.own_fault = fault;
            if fault {
                if self.state != State::Initialize {
                    self.enter_fault(now, Reason::Fault, out);
                }
            } else {
                self.leave_fault(now, out);
            }
        }
    }

    fn shutdown(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.state == State::Initialize {
            return;
        }
        let from = self.record(now, State::Initialize, Reason::Shutdown, None, out);
        self.cancel_all(out);
        self.want_master = false;
        if from == State::Master {
            out.push(Action::SendAdvert {
                priority: PRIORITY_STOP,
                interval_cs: self.cfg.advert_int_cs,
            });
            out.push(Action::RemoveVips);
        }
        out.push(Action::Notify {
            from,
            to: State::Initialize,
        });
    }

    /// SIGHUP: new settings without a flap. A master stays master and does
    /// not re-announce unchanged VIPs.
    fn reload(&mut self, now: u64, mut cfg: RouterConfig, out: &mut Vec<Action>) {
        let warnings = cfg.normalize();
        if let Err(e) = cfg.validate() {
            out.push(Action::ReloadRejected(e));
            return;
        }
        let trackers = cfg
            .trackers
            .iter()
            .map(|t| {
                let state = self
                    .trackers
                    .iter()
                    .find(|(old, _)| old.id == t.id)
                    .map_or(t.initial, |(_, s)| *s);
                (*t, state)
            })
            .collect();
        let old_vips = std::mem::take(&mut self.cfg.vips);
        if self.state == State::Master && old_vips != cfg.vips {
            let added = cfg
                .vips
                .iter()
                .filter(|v| !old_vips.contains(v))
                .copied()
                .collect();
            let removed = old_vips
                .iter()
                .filter(|v| !cfg.vips.contains(v))
                .copied()
                .collect();
            out.push(Action::UpdateVips { added, removed });
        }
        self.base_priority = cfg.priority;
        self.trackers = trackers;
        self.warnings = warnings;
        if cfg.version == Version::V2 || self.state != State::Backup {
            self.master_adver_int_cs = cfg.advert_int_cs;
        }
        self.cfg = cfg;
        self.recompute(now, out);
        match self.state {
            State::Backup => {
                if self.base_priority == PRIORITY_OWNER && !self.sync_member {
                    self.become_master(now, Reason::Reload, None, out);
                } else if let Some(old) = self.deadline(TimerKind::MasterDown) {
                    let len = if self.down_skew_only {
                        self.skew_ns()
                    } else {
                        self.master_down_ns()
                    };
                    if self.down_base_ns.saturating_add(len) != old {
                        self.arm_down_timer(self.down_base_ns, self.down_skew_only, out);
                    }
                }
            }
            State::Master => {
                if self.cfg.garp.master_refresh_ns == 0 {
                    self.cancel(TimerKind::GarpRefresh, out);
                } else if self.deadline(TimerKind::GarpRefresh).is_none() {
                    let at = now.saturating_add(self.cfg.garp.master_refresh_ns);
                    self.arm(TimerKind::GarpRefresh, at, out);
                }
                if self.cfg.garp.extra_if_ns == 0 {
                    self.cancel(TimerKind::GarpExtraIf, out);
                } else if self.deadline(TimerKind::GarpExtraIf).is_none() {
                    let at = now.saturating_add(self.cfg.garp.extra_if_ns);
                    self.arm(TimerKind::GarpExtraIf, at, out);
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    // ----- sync-group hooks (used by `SyncGroup`) -----

    /// Marks the router as a sync-group member: it no longer promotes itself
    /// but reports [`Action::SyncWantMaster`].
    pub fn set_sync_member(&mut self, member: bool) {
        self.sync_member = member;
    }

    /// Its down timer expired (or it is the owner) and it waits for its group.
    pub fn wants_master(&self) -> bool {
        self.want_master
    }

    /// The group moves this member to Master.
    pub fn sync_force_master(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.state == State::Backup && !self.own_fault && !self.group_fault {
            self.become_master(now, Reason::SyncGroup, None, out);
        }
    }

    /// The group moves this member to Backup.
    pub fn sync_force_backup(&mut self, now: u64, out: &mut Vec<Action>) {
        self.want_master = false;
        if self.state == State::Master {
            self.leave_master_to_backup(now, Reason::SyncGroup, now, out);
        }
    }

    /// The group is (or no longer is) in Fault because of another member.
    pub fn set_group_fault(&mut self, now: u64, fault: bool, out: &mut Vec<Action>) {
        if self.group_fault == fault {
            return;
        }
        self.group_fault = fault;
        if fault {
            if self.state != State::Initialize {
                self.enter_fault(now, Reason::SyncGroup, out);
            }
        } else {
            self.leave_fault(now, out);
        }
    }
}

/// Password compare that does not stop at the first difference.
fn constant_time_eq(a: &[u8; 8], b: &[u8; 8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
