//! Decide, then execute: inputs go through the instance's state machine (or
//! its sync group's), and the actions that come out are carried out in the
//! order they were emitted — adverts first.

use std::{collections::HashMap, net::IpAddr, rc::Rc, time::Duration};

use tracing::{debug, error, info, warn};
use xvrrpd_common::{GUARD_FLAG_NO_ACCEPT, GUARD_FLAG_SHARED_MAC};

use super::{
    daemon::{Daemon, Guard, Instance, InstanceId, Unit},
    effects::{Effect, RouteBatch},
    plan,
    route_plan::{PlannedRoute, PlannedRule},
};
use crate::{
    clock::monotonic_ns,
    control::events::EventKind,
    datapath::{Received, event::mac_string, send::AdvertSender},
    net::{
        addr::AddrInfo,
        link::NetEvent,
        route_watch::{RouteOrRule, RouteWatcher},
    },
    notify::{NotifyState, Subject},
    packet::V3Ipv4Checksum,
    tracker::TrackerEvent,
    vrrp::{Action, Input, State, SyncAction, TimerKind, TrackState, TrackerId},
};

/// How early the loop wakes for a master-down deadline and spins to it:
/// waking a sleeping thread on a virtual machine takes 100–500 µs. Only the
/// down timer gets it — in steady state an advert re-arms it long before,
/// so the spin happens on failures only and costs no CPU otherwise.
pub(super) const MASTER_DOWN_SPIN_LEAD_NS: u64 = 600_000;

pub(super) fn spin_lead(kind: TimerKind) -> u64 {
    match kind {
        TimerKind::MasterDown => MASTER_DOWN_SPIN_LEAD_NS,
        _ => 0,
    }
}

/// A sync group's state change, notified once its members' actions ran:
/// (group name, from, to).
pub(super) type GroupNotify = (String, State, State);

/// Actions decided in one turn of the loop, not yet executed.
#[derive(Default)]
pub(super) struct Decided {
    pub(super) actions: Vec<(InstanceId, Action)>,
    pub(super) group_notifies: Vec<GroupNotify>,
}

pub(super) fn notify_state(s: State) -> NotifyState {
    match s {
        State::Master => NotifyState::Master,
        State::Backup => NotifyState::Backup,
        State::Fault => NotifyState::Fault,
        State::Initialize => NotifyState::Stop,
    }
}

impl Daemon {
    /// Feeds one input to the instance's router (or group) and runs the actions.
    pub(super) fn feed(&mut self, inst: InstanceId, now: u64, input: Input) {
        let mut decided = Decided::default();
        self.decide(inst, now, input, &mut decided);
        self.execute(decided);
    }

    /// Runs `input` through the instance's state machine (or its sync
    /// group's); the actions and group notifies are appended, not executed.
    pub(super) fn decide(&mut self, inst: InstanceId, now: u64, input: Input, out: &mut Decided) {
        let Some(i) = self.instances.get(inst) else {
            return;
        };
        // The adverts the kernel kept came first: the state machine hears of
        // them before anything else happens to the instance.
        if i.quiet.is_some()
            && !matches!(input, Input::Heard { .. })
            && let Some(at_ns) = self.absorb_heard(inst)
        {
            self.decide(inst, now, Input::Heard { at_ns }, out);
        }
        let Some(i) = self.instances.get(inst) else {
            return;
        };
        let (unit, member) = (i.unit, i.member);
        if matches!(input, Input::Reload(_)) {
            // Adverts are checked against the new configuration again.
            self.instances[inst].fingerprint = None;
        }
        match self.units.get(unit) {
            Some(Unit::Group(_)) => {
                for n in 0..self.instances.len() {
                    if self.instances[n].unit == unit {
                        self.quiet_touched(n);
                    }
                }
            }
            _ => self.quiet_touched(inst),
        }
        match self.units.get_mut(unit) {
            Some(Unit::Single(r)) => {
                out.actions
                    .extend(r.handle(now, input).into_iter().map(|a| (inst, a)));
            }
            Some(Unit::Group(g)) => {
                let name = g.name().to_string();
                for sa in g.handle(now, member, input) {
                    self.collect_sync_action(unit, &name, sa, out);
                }
            }
            None => {}
        }
    }

    fn collect_sync_action(&self, unit: usize, group: &str, sa: SyncAction, out: &mut Decided) {
        match sa {
            SyncAction::Member { index, action } => {
                if let Some(id) = self.instance_at(unit, index) {
                    out.actions.push((id, action));
                }
            }
            SyncAction::GroupNotify { from, to } => {
                out.group_notifies.push((group.to_string(), from, to))
            }
        }
    }

    /// Starts a unit's state machine(s).
    pub(super) fn start_unit(&mut self, unit: usize) {
        let now = monotonic_ns();
        let mut out = Decided::default();
        match self.units.get_mut(unit) {
            Some(Unit::Single(r)) => {
                let actions = r.handle(now, Input::Startup);
                if let Some(inst) = self.instances.iter().position(|i| i.unit == unit) {
                    out.actions.extend(actions.into_iter().map(|a| (inst, a)));
                }
            }
            Some(Unit::Group(g)) => {
                let name = g.name().to_string();
                let mut sa = Vec::new();
                g.startup(now, &mut sa);
                for a in sa {
                    self.collect_sync_action(unit, &name, a, &mut out);
                }
            }
            None => {}
        }
        self.execute(out);
    }

    /// Runs actions in order. Adverts, timers and notifies happen here;
    /// VIP and GARP/NA effects go to the instance's queue, whose reports
    /// complete the timeline and release the transition's log line.
    pub(super) fn execute(&mut self, decided: Decided) {
        // Adverts first: taking over is announced on the wire before the
        // bookkeeping of the transition (record, metrics, log) that the
        // state machine lists ahead of it. Nothing below depends on them.
        let adverts: Vec<(InstanceId, u8, u16)> = decided
            .actions
            .iter()
            .filter_map(|(inst, action)| match action {
                Action::SendAdvert {
                    priority,
                    interval_cs,
                } => Some((*inst, *priority, *interval_cs)),
                _ => None,
            })
            .collect();
        if !adverts.is_empty() {
            self.send_adverts(&adverts);
        }
        for (inst, action) in decided.actions {
            self.execute_one(inst, action);
        }
        for inst in 0..self.instances.len() {
            if matches!(self.instances[inst].pending_log, Some((_, 0))) {
                self.flush_log(inst);
            }
        }
        // After the effects are queued: a take-over's GARPs do not wait
        // for the map updates.
        self.sync_guards();
        self.sync_quiet();
        for (inst, input) in std::mem::take(&mut self.rechecked_claims) {
            self.feed(inst, monotonic_ns(), input);
        }
        for (name, _from, to) in decided.group_notifies {
            info!("sync group {name}: now {}", to.keepalived_name());
            self.notifier
                .state_change(Subject::Group, &name, notify_state(to), 0);
        }
    }

    fn execute_one(&mut self, inst: InstanceId, action: Action) {
        match action {
            Action::Transition(t) => {
                if t.from == State::Master || t.to == State::Master {
                    self.guards_dirty = true;
                }
                if t.from == State::Master && t.to != State::Master {
                    self.forget_farewell(inst);
                }
                self.flush_log(inst);
                self.record_transition(inst, &t);
                if let Some(i) = self.instances.get_mut(inst) {
                    i.metrics.transition(&t);
                    i.pending_log = Some((t.at_ns, 0));
                    if let Some(q) = &i.effects {
                        q.new_transition();
                    }
                }
            }
            Action::SendAdvert { .. } | Action::SyncWantMaster => {}
            Action::AddVips => {
                if let Some(vips) = self.instances.get(inst).map(|i| i.all_vips()) {
                    self.push_effect(inst, Effect::AddVips(vips));
                }
                // After the VIPs: a route may take one as its source.
                if let Some(batch) = self.route_batch(inst) {
                    self.push_effect(inst, Effect::Routes { add: true, batch });
                }
            }
            Action::RemoveVips => {
                // Before the VIPs, in keepalived's order.
                if let Some(batch) = self.route_batch(inst) {
                    self.push_effect(inst, Effect::Routes { add: false, batch });
                }
                if let Some(vips) = self.instances.get(inst).map(|i| i.all_vips()) {
                    self.push_effect(inst, Effect::RemoveVips(vips));
                }
            }
            Action::UpdateVips { added, removed } => {
                self.guards_dirty = true;
                if let Some(i) = self.instances.get(inst) {
                    let add = i
                        .plan
                        .vips
                        .iter()
                        .filter(|v| added.contains(&v.addr))
                        .cloned()
                        .collect();
                    let remove = removed.iter().map(|a| (i.plan.ifindex, *a)).collect();
                    self.push_effect(inst, Effect::UpdateVips { add, remove });
                }
            }
            Action::SendGratuitous { count, spacing_ns } => {
                let addrs = self
                    .instances
                    .get(inst)
                    .map(|i| i.all_vips())
                    .unwrap_or_default();
                let addrs = addrs.into_iter().map(|v| v.addr);
                if let Some(effect) = self.gratuitous(inst, addrs, count, spacing_ns) {
                    self.push_effect(inst, effect);
                }
            }
            Action::SendGratuitousExtraIf => {
                let addrs = self
                    .instances
                    .get(inst)
                    .map(|i| i.plan.garp_extra_if.clone())
                    .unwrap_or_default();
                if let Some(effect) = self.gratuitous(inst, addrs, 1, 0) {
                    self.push_untimed(inst, effect);
                }
            }
            Action::Reannounce { addr } => self.reannounce(inst, addr),
            Action::CheckClaims { since } => self.check_claims(inst, since),
            Action::Notify { from, to } => {
                let prio = self.router(inst).map(|r| r.priority()).unwrap_or(0);
                let name = self.name(inst).to_string();
                match self.instances.get(inst) {
                    // keepalived: a deleted instance notifies FAULT (not
                    // again from FAULT), or DELETED with `notify_deleted`.
                    Some(i) if i.deleted && to == State::Initialize => {
                        if i.plan.notify_deleted {
                            self.notifier.deleted(&name, NotifyState::Deleted, prio);
                        } else if from != State::Fault {
                            self.notifier.deleted(&name, NotifyState::Fault, prio);
                        }
                    }
                    _ => {
                        self.notifier
                            .state_change(Subject::Instance, &name, notify_state(to), prio)
                    }
                }
            }
            Action::ArmTimer {
                kind: TimerKind::MasterDown,
                at_ns,
            } => self.arm_down_timer(inst, at_ns, false),
            Action::ArmTimer {
                kind: TimerKind::Advert,
                at_ns,
            } => {
                // Adverts falling due together go out in one wake-up.
                let early = self.router(inst).map_or(0, |r| r.advert_early_ns());
                if let Err(e) = self
                    .timers
                    .arm_within((inst, TimerKind::Advert), at_ns, early)
                {
                    error!("{}: arming Advert: {e}", self.name(inst));
                }
            }
            Action::ArmTimer { kind, at_ns } => {
                if let Err(e) = self.timers.arm_early((inst, kind), at_ns, spin_lead(kind)) {
                    error!("{}: arming {kind:?}: {e}", self.name(inst));
                }
            }
            Action::CancelTimer(kind) => {
                let _ = self.timers.cancel((inst, kind));
            }
            Action::Discarded(reason) => {
                debug!("{}: advert discarded: {reason:?}", self.name(inst));
                if let Some(i) = self.instances.get_mut(inst) {
                    *i.counters
                        .discarded
                        .entry(reason.label().to_string())
                        .or_default() += 1;
                    i.metrics.discarded(&reason);
                }
            }
            Action::Event(ev) => self.on_router_event(inst, ev),
            Action::ReloadRejected(e) => error!(
                "{}: reload refused, keeping the running configuration: {e}",
                self.name(inst)
            ),
        }
    }

    fn on_router_event(&mut self, inst: InstanceId, ev: crate::vrrp::Event) {
        if let crate::vrrp::Event::VipClaimed {
            addr,
            mac,
            reannounced,
        } = ev
        {
            self.on_vip_claimed(inst, addr, mac, reannounced);
            return;
        }
        info!("{}: {ev:?}", self.name(inst));
        match ev {
            crate::vrrp::Event::PriorityChanged { to, .. } => {
                let Some(i) = self.instances.get(inst) else {
                    return;
                };
                i.metrics.set_effective_priority(to);
                if i.plan.notify_priority_changes {
                    // keepalived: MASTER_PRIORITY as master, BACKUP_PRIORITY
                    // in any other state.
                    let is_master = self
                        .router(inst)
                        .is_some_and(|r| r.state() == crate::vrrp::State::Master);
                    let name = i.plan.name.clone();
                    self.notifier.priority_change(&name, is_master, to);
                }
            }
            crate::vrrp::Event::MasterRxLowerPriority { .. } => {
                // keepalived reports its own effective priority here, not
                // the received one.
                let own = self.router(inst).map(|r| r.priority()).unwrap_or(0);
                let name = self.name(inst).to_string();
                self.notifier.master_rx_lower_pri(&name, own);
            }
            _ => {}
        }
    }

    /// The instance's `virtual_routes` and `virtual_rules`, if it has any.
    fn route_batch(&self, inst: InstanceId) -> Option<RouteBatch> {
        let i = self.instances.get(inst)?;
        let batch = RouteBatch {
            routes: i.plan.routes.clone(),
            rules: i.plan.rules.clone(),
        };
        (!batch.is_empty()).then_some(batch)
    }

    /// Someone else deleted a route or rule: a master instance (or the
    /// static configuration) that installed it, and tracks it, puts it back.
    pub(super) fn on_route_deleted(&mut self, deleted: RouteOrRule) {
        let matching = |routes: &[PlannedRoute], rules: &[PlannedRule]| match &deleted {
            RouteOrRule::Route(r) => RouteBatch {
                routes: routes
                    .iter()
                    .filter(|p| !p.no_track && p.spec.same_route(r))
                    .cloned()
                    .collect(),
                rules: Vec::new(),
            },
            RouteOrRule::Rule(r) => RouteBatch {
                routes: Vec::new(),
                rules: rules
                    .iter()
                    .filter(|p| !p.no_track && p.spec.same_rule(r))
                    .cloned()
                    .collect(),
            },
        };
        let statics = matching(&self.plan.static_routes, &self.plan.static_rules);
        self.put_back_static(statics);
        for inst in self.masters() {
            let plan = &self.instances[inst].plan;
            let batch = matching(&plan.routes, &plan.rules);
            if batch.is_empty() {
                continue;
            }
            warn!(
                "{}: {} deleted by someone else: adding it back",
                plan.name,
                describe_batch(&batch)
            );
            self.enqueue(inst, 0, Effect::Routes { add: true, batch });
        }
    }

    /// Deletions may have been missed: every tracked route and rule of the
    /// masters and of the static configuration is added again (what is
    /// there stays as it is).
    pub(super) fn reassert_routes(&mut self) {
        let tracked = |routes: &[PlannedRoute], rules: &[PlannedRule]| RouteBatch {
            routes: routes.iter().filter(|r| !r.no_track).cloned().collect(),
            rules: rules.iter().filter(|r| !r.no_track).cloned().collect(),
        };
        let statics = tracked(&self.plan.static_routes, &self.plan.static_rules);
        self.put_back_static(statics);
        for inst in self.masters() {
            let plan = &self.instances[inst].plan;
            let batch = tracked(&plan.routes, &plan.rules);
            if !batch.is_empty() {
                self.enqueue(inst, 0, Effect::Routes { add: true, batch });
            }
        }
    }

    fn masters(&self) -> Vec<InstanceId> {
        (0..self.instances.len())
            .filter(|&n| self.router(n).is_some_and(|r| r.state() == State::Master))
            .collect()
    }

    /// Static routes and rules belong to no instance: added off the loop on
    /// a task of their own.
    fn put_back_static(&self, batch: RouteBatch) {
        if batch.is_empty() {
            return;
        }
        warn!(
            "{} deleted by someone else: adding it back",
            describe_batch(&batch)
        );
        let vips = self.host.vips.clone();
        tokio::task::spawn_local(async move {
            let results = vips.routes(true, batch.clone()).await;
            super::daemon::log_route_results("static", true, &batch, results);
        });
    }

    /// Opens, re-filters or closes the watch on route and rule deletions
    /// as the plan needs it: only the protocols of tracked routes wake it.
    pub(super) fn sync_route_watch(&mut self) {
        let tracked_routes = self
            .plan
            .static_routes
            .iter()
            .chain(self.instances.iter().flat_map(|i| &i.plan.routes))
            .filter(|r| !r.no_track);
        let mut protocols: Vec<u8> = tracked_routes.map(|r| r.spec.protocol).collect();
        protocols.sort_unstable();
        protocols.dedup();
        let any_rule = self
            .plan
            .static_rules
            .iter()
            .chain(self.instances.iter().flat_map(|i| &i.plan.rules))
            .any(|r| !r.no_track);
        if protocols.is_empty() && !any_rule {
            self.route_watch = None;
            return;
        }
        if self
            .route_watch
            .as_ref()
            .is_some_and(|(_, p)| *p == protocols)
        {
            return;
        }
        match RouteWatcher::new(&protocols) {
            Ok(w) => self.route_watch = Some((w, protocols)),
            Err(e) => {
                warn!("cannot watch route deletions ({e}): routes deleted by others stay deleted")
            }
        }
    }

    /// Queues an effect for the instance's last transition.
    fn push_effect(&mut self, inst: InstanceId, effect: Effect) {
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        let at = i.history.back().map(|t| t.at_ns).unwrap_or(0);
        if let Some((pending_at, n)) = &mut i.pending_log
            && *pending_at == at
        {
            *n += 1;
        }
        self.enqueue(inst, at, effect);
    }

    /// Queues `effect` outside any transition (a reload's changes).
    pub(super) fn enqueue_effect(&mut self, inst: InstanceId, effect: Effect) {
        self.enqueue(inst, 0, effect);
    }

    /// Hands `effect` to the instance's queue, stamped with the transition
    /// at `at` (0: none); counted until its report comes back.
    fn enqueue(&mut self, inst: InstanceId, at: u64, effect: Effect) {
        if let Some(q) = self.instances.get(inst).and_then(|i| i.effects.as_ref()) {
            q.push(at, effect);
            self.effects_in_flight += 1;
        }
    }

    /// Sends the adverts of one turn: one `sendmmsg(2)` per shared socket,
    /// then one system call renewing every lease they vouch for.
    fn send_adverts(&mut self, adverts: &[(InstanceId, u8, u16)]) {
        /// (instance, priority, interval) of each advert.
        type Due = (InstanceId, u8, u16);
        let mut by_socket: Vec<(Rc<AdvertSender>, Vec<Due>)> = Vec::new();
        for &(inst, priority, interval_cs) in adverts {
            let Some(i) = self.instances.get_mut(inst) else {
                continue;
            };
            let router = match self.units.get(i.unit) {
                Some(Unit::Single(r)) => Some(r.config()),
                Some(Unit::Group(g)) => g.member(i.member).map(|r| r.config()),
                None => None,
            };
            let Some(router) = router else {
                continue;
            };
            match i.outlet.encoded(router, priority, interval_cs) {
                Ok(Some((sock, _))) => {
                    match by_socket.iter_mut().find(|(s, _)| Rc::ptr_eq(s, &sock)) {
                        Some((_, items)) => items.push((inst, priority, interval_cs)),
                        None => by_socket.push((sock, vec![(inst, priority, interval_cs)])),
                    }
                }
                Ok(None) => {}
                Err(e) => warn!("{}: sending advert: {e}", i.plan.name),
            }
        }
        let mut leases = Vec::new();
        // Masters whose farewell the warden must learn or forget.
        let mut farewells: Vec<(InstanceId, Option<u16>)> = Vec::new();
        for (sock, items) in by_socket {
            let msgs: Vec<&[u8]> = items
                .iter()
                .map(|&(inst, _, _)| {
                    self.instances
                        .get(inst)
                        .and_then(|i| i.outlet.last_encoded())
                        .unwrap_or_default()
                })
                .collect();
            let results = sock.send_many(&msgs);
            for ((inst, priority, interval_cs), r) in items.into_iter().zip(results) {
                let Some(i) = self.instances.get_mut(inst) else {
                    continue;
                };
                if let Err(e) = r {
                    warn!("{}: sending advert: {e}", i.plan.name);
                    continue;
                }
                i.counters.adverts_sent += 1;
                i.metrics.advert_sent();
                if priority == 0 {
                    i.counters.priority_zero_sent += 1;
                    if i.farewell_told.is_some() {
                        farewells.push((inst, None));
                    }
                } else if i.farewell_told != Some(i.outlet.generation()) {
                    farewells.push((inst, Some(interval_cs)));
                }
                // The adverts renew the lease the kernel fence checks: three
                // intervals, about when a backup would take over, renewed
                // once it has less than two left (every other advert).
                let now = monotonic_ns();
                let interval = u64::from(interval_cs) * 10_000_000;
                let until = match priority {
                    0 => 0,
                    _ => now + 3 * interval,
                };
                if until == 0 || i.lease_until < now + 2 * interval {
                    i.lease_until = until;
                    leases.push((i.plan.vrid.key, until));
                }
            }
        }
        if let Err(e) = self.datapath.renew_leases(&leases) {
            warn!("renewing the datapath leases: {e}");
        }
        for (inst, interval_cs) in farewells {
            match interval_cs {
                Some(interval_cs) => self.tell_farewell(inst, interval_cs),
                None => self.forget_farewell(inst),
            }
        }
    }

    /// Tells the warden the priority-0 advert that ends the instance's
    /// mastership, for it to send if the daemon dies as master.
    fn tell_farewell(&mut self, inst: InstanceId, interval_cs: u16) {
        // Not for the last advert of a master that let go in the same turn.
        let Some(router) = self.router(inst).filter(|r| r.state() == State::Master) else {
            return;
        };
        let Some(i) = self.instances.get(inst) else {
            return;
        };
        let farewell = match i
            .outlet
            .farewell(router.config(), interval_cs, i.plan.vrid.key)
        {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                warn!("{}: encoding its priority-0 advert: {e}", i.plan.name);
                return;
            }
        };
        let generation = i.outlet.generation();
        if let Some(w) = self.warden.as_mut() {
            w.tell(&i.plan.name, Some(&farewell));
        }
        if let Some(i) = self.instances.get_mut(inst) {
            i.farewell_told = Some(generation);
        }
    }

    /// The instance is no longer master (or said goodbye itself).
    pub(super) fn forget_farewell(&mut self, inst: InstanceId) {
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        if i.farewell_told.take().is_some()
            && let Some(w) = self.warden.as_mut()
        {
            w.tell(&i.plan.name, None);
        }
    }

    /// A GARP/NA batch for `addrs` of the instance (link-local IPv6
    /// addresses are not announced).
    fn gratuitous(
        &self,
        inst: InstanceId,
        addrs: impl IntoIterator<Item = IpAddr>,
        count: u32,
        spacing_ns: u64,
    ) -> Option<Effect> {
        let i = self.instances.get(inst)?;
        // Each address from its own interface (keepalived): a VIP with
        // `dev` elsewhere is announced there, not on the instance's.
        let mut batches: Vec<(Rc<crate::net::gratuitous::GratuitousSender>, Vec<IpAddr>)> =
            Vec::new();
        for a in addrs {
            if matches!(a, IpAddr::V6(v6) if crate::net::addr::is_ipv6_link_local(&v6)) {
                continue;
            }
            let Some(sender) = self.host.garp.get(&i.plan.vip_ifindex(a)) else {
                continue;
            };
            match batches.iter_mut().find(|(s, _)| Rc::ptr_eq(s, sender)) {
                Some((_, list)) => list.push(a),
                None => batches.push((sender.clone(), vec![a])),
            }
        }
        (!batches.is_empty()).then(|| Effect::Gratuitous {
            batches,
            count,
            spacing: Duration::from_nanos(spacing_ns),
        })
    }

    fn on_vip_claimed(&mut self, inst: InstanceId, addr: IpAddr, mac: [u8; 6], reannounced: bool) {
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        let claimant = mac_string(&mac);
        self.events.publish(EventKind::VipClaimed {
            instance: i.plan.name.clone(),
            vip: addr.to_string(),
            claimant: claimant.clone(),
        });
        i.counters.vip_claims += 1;
        i.metrics.vip_claimed(reannounced);
        if reannounced {
            i.counters.vip_reannounced += 1;
            warn!(
                "{}: VIP {addr} claimed by {claimant}: re-announcing it",
                i.plan.name
            );
        } else {
            // Already answered within this advert interval: a flood of
            // claims logs one line per interval, not one per claim.
            debug!(
                "{}: VIP {addr} claimed by {claimant} again within the advert interval",
                i.plan.name
            );
        }
        i.counters.last_claimant = Some(claimant);
    }

    /// One GARP/NA for `addr` at once, outside any transition's timeline
    /// (stamped 0: it matches no transition record).
    fn reannounce(&mut self, inst: InstanceId, addr: IpAddr) {
        if let Some(announce) = self.gratuitous(inst, [addr], 1, 0) {
            self.push_untimed(inst, announce);
        }
    }

    /// Claims the kernel saw after a VIP's re-announce but did not report
    /// (inside its report interval) go back to the state machine, after
    /// the current actions.
    fn check_claims(&mut self, inst: InstanceId, since: Vec<(IpAddr, u64)>) {
        let Some(ifindex) = self.instances.get(inst).map(|i| i.plan.ifindex) else {
            return;
        };
        for (addr, at) in since {
            if let Some((claimed, mac)) = self.datapath.last_claim(ifindex, addr)
                && claimed > at
            {
                // Answered now: its own time lies inside the interval
                // that just ended.
                let input = Input::Conflict {
                    addr,
                    mac,
                    at_ns: 0,
                };
                self.rechecked_claims.push((inst, input));
            }
        }
    }

    /// Queues an effect that belongs to no transition (a re-announce, a
    /// restored VIP): the last transition's timeline and log line are left
    /// alone.
    fn push_untimed(&mut self, inst: InstanceId, effect: Effect) {
        self.enqueue(inst, 0, effect);
    }

    /// Claims the datapath reported: each goes to the master instance
    /// guarding that address.
    fn on_claims(&mut self) {
        let mut claims = Vec::new();
        self.datapath.take_claims(&mut claims);
        for c in claims {
            let Some(inst) = self.guarded.get(&(c.ifindex, c.addr)).map(|g| g.inst) else {
                continue;
            };
            let input = Input::Conflict {
                addr: c.addr,
                mac: c.mac,
                at_ns: c.ts_ns,
            };
            self.feed(inst, monotonic_ns(), input);
        }
    }

    /// Brings the datapath's guard map to the VIPs of the instances in
    /// MASTER (IPv6 link-local ones aside, as for GARP/NA), when a
    /// transition, VIP update or reload may have changed them.
    pub(super) fn sync_guards(&mut self) {
        if !std::mem::take(&mut self.guards_dirty) {
            return;
        }
        let mut want: HashMap<(u32, IpAddr), Guard> = HashMap::new();
        // One MAC lookup (a system call) per interface, not per instance.
        let mut macs: HashMap<u32, Option<[u8; 6]>> = HashMap::new();
        for (inst, i) in self.instances.iter().enumerate() {
            let Some(router) = self.router(inst) else {
                continue;
            };
            if router.state() != State::Master {
                continue;
            }
            // The datapath sees claims on the instance's interface; its
            // VIPs are claimed with the MAC they are announced from.
            let announce = i.plan.announce_ifindex();
            let mac = *macs
                .entry(announce)
                .or_insert_with(|| self.host.garp.get(&announce).and_then(|s| s.mac().ok()));
            let Some(mac) = mac else {
                continue;
            };
            let shared_mac = i
                .plan
                .vmac
                .as_ref()
                .is_some_and(|m| !m.spec.kind.is_ipvlan());
            let cfg = router.config();
            // RFC 9568 §6.4.3; the owner always accepts.
            let no_accept = !cfg.accept && cfg.priority != crate::vrrp::PRIORITY_OWNER;
            let flags = if shared_mac { GUARD_FLAG_SHARED_MAC } else { 0 }
                | if no_accept { GUARD_FLAG_NO_ACCEPT } else { 0 };
            let interval_ns = u64::from(cfg.advert_int_cs) * 10_000_000;
            for v in i.all_vips() {
                if matches!(v.addr, IpAddr::V6(a) if crate::net::addr::is_ipv6_link_local(&a)) {
                    continue;
                }
                let guard = Guard {
                    inst,
                    owner: i.plan.vrid.key,
                    mac,
                    flags,
                    interval_ns,
                };
                want.insert((i.plan.ifindex, v.addr), guard);
            }
        }
        let stale: Vec<(u32, IpAddr)> = self
            .guarded
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for (ifindex, addr) in stale {
            self.guarded.remove(&(ifindex, addr));
            if let Err(e) = self.datapath.unguard(ifindex, addr) {
                warn!("conflict guard: releasing {addr}: {e}");
            }
        }
        for ((ifindex, addr), g) in want {
            let old = self.guarded.insert((ifindex, addr), g);
            // Only a new VIP, MAC or interval goes to the kernel (an update
            // keeps the kernel's last report time).
            if old.is_some_and(|o| {
                (o.owner, o.mac, o.flags, o.interval_ns) == (g.owner, g.mac, g.flags, g.interval_ns)
            }) {
                continue;
            }
            if let Err(e) =
                self.datapath
                    .guard(ifindex, addr, g.owner, (g.mac, g.flags), g.interval_ns)
            {
                warn!("conflict guard: guarding {addr}: {e}");
            }
        }
        self.sync_no_accept();
    }

    /// Non-accept mode's gate in the datapath: on while a guarded VIP is in
    /// that mode. The raw-socket datapath cannot drop their traffic: said
    /// once.
    fn sync_no_accept(&mut self) {
        let on = self
            .guarded
            .values()
            .any(|g| g.flags & GUARD_FLAG_NO_ACCEPT != 0);
        if self.no_accept_gate == Some(on) {
            return;
        }
        match self.datapath.set_no_accept(on) {
            Ok(true) => self.no_accept_gate = Some(on),
            Ok(false) => {
                if on && self.no_accept_gate.is_none() {
                    warn!(
                        "no_accept: the raw-socket datapath cannot drop packets sent to the \
                         VIPs; they are accepted until the eBPF datapath runs"
                    );
                }
                self.no_accept_gate = Some(false);
            }
            Err(e) => warn!("no_accept: {e}"),
        }
    }

    /// Valid adverts from the datapath, in arrival order: all decided, then
    /// executed together (as timers are), so a burst of adverts — a
    /// thousand instances preempted at once — costs one pass over the
    /// guards and the kernel entries, not one per advert.
    pub(super) fn on_adverts(&mut self, adverts: impl IntoIterator<Item = Received>) {
        let mut decided = Decided::default();
        for r in adverts {
            let Some(&inst) = self.by_vrid.get(&r.key) else {
                continue;
            };
            if let Some(i) = self.instances.get_mut(inst) {
                i.counters.adverts_received += 1;
                i.metrics.advert_received();
                if r.advert.advert.priority == 0 {
                    i.counters.priority_zero_received += 1;
                }
                if r.old_checksum {
                    adopt_old_checksum(i, r.advert.meta.src);
                }
            }
            let start = decided.actions.len();
            self.decide(inst, monotonic_ns(), Input::Advert(r.advert), &mut decided);
            let accepted = !decided.actions[start..]
                .iter()
                .any(|(n, a)| *n == inst && matches!(a, Action::Discarded(_)));
            if let Some(i) = self.instances.get_mut(inst) {
                i.fingerprint = accepted.then_some(r.fingerprint);
            }
        }
        // Even without actions: the touched instances' kernel entries.
        self.execute(decided);
        self.on_claims();
        self.on_downs();
    }

    /// Feeds a tracked object's new state to every instance that tracks it.
    fn track(&mut self, id: TrackerId, state: TrackState, at_ns: u64) {
        let targets: Vec<InstanceId> = self
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.plan.router.trackers.iter().any(|t| t.id == id))
            .map(|(n, _)| n)
            .collect();
        for inst in targets {
            self.feed(inst, at_ns, Input::Track { id, state });
        }
    }

    pub(super) fn on_tracker(&mut self, ev: TrackerEvent) {
        for i in &self.instances {
            if let Some((_, name, kind)) = i.plan.tracker_names.iter().find(|(id, ..)| *id == ev.id)
            {
                self.events.publish(EventKind::Tracker {
                    instance: i.plan.name.clone(),
                    tracker: format!("{kind} {name}"),
                    state: match ev.state {
                        TrackState::Up => "up".into(),
                        TrackState::Down => "down".into(),
                        TrackState::Value(v) => format!("value {v}"),
                    },
                });
            }
        }
        self.track(ev.id, ev.state, ev.at_ns.max(1));
    }

    pub(super) fn on_link(&mut self, ev: NetEvent) {
        let (ifindex, up) = match ev {
            NetEvent::Link(l) => (l.ifindex, l.up),
            NetEvent::LinkRemoved { ifindex, .. } => (ifindex, false),
            NetEvent::Addr(a) => {
                self.vip_appeared(&a);
                self.on_addresses(a.ifindex);
                return;
            }
            NetEvent::AddrRemoved(a) => {
                self.restore_vip(&a);
                self.on_addresses(a.ifindex);
                return;
            }
            NetEvent::Synced => return,
        };
        let state = if up { TrackState::Up } else { TrackState::Down };
        let ids: Vec<u32> = self
            .plan
            .interfaces
            .iter()
            .filter(|(_, idx)| **idx == ifindex)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.track(TrackerId(id), state, monotonic_ns());
        }
    }

    /// The masters that own `a`: instances in MASTER with it among their
    /// VIPs on its interface.
    fn owners(&self, a: &AddrInfo) -> Vec<InstanceId> {
        (0..self.instances.len())
            .filter(|&n| {
                let i = &self.instances[n];
                i.plan.ifindex == a.ifindex
                    && i.plan
                        .vips
                        .iter()
                        .chain(&i.plan.excluded)
                        .any(|v| v.addr == a.addr)
                    && self.router(n).is_some_and(|r| r.state() == State::Master)
            })
            .collect()
    }

    /// Someone else (a network manager, an admin) deleted a VIP a master
    /// holds: it is added back and announced at once, unless `no_track`.
    /// The daemon's own removals happen after its state left MASTER.
    fn restore_vip(&mut self, a: &AddrInfo) {
        for inst in self.owners(a) {
            let Some(i) = self.instances.get_mut(inst) else {
                continue;
            };
            if i.plan.no_track.contains(&a.addr) {
                continue;
            }
            let Some(vip) = i.all_vips().into_iter().find(|v| v.addr == a.addr) else {
                continue;
            };
            warn!(
                "{}: VIP {} was deleted by someone else on {}: adding it back",
                i.plan.name, a.addr, i.plan.ifname
            );
            i.counters.vips_restored += 1;
            i.metrics.vip_restored();
            self.events.publish(EventKind::VipRestored {
                instance: i.plan.name.clone(),
                vip: a.addr.to_string(),
            });
            self.push_untimed(inst, Effect::AddVips(vec![vip]));
            let garp = self.router(inst).map(|r| {
                let g = &r.config().garp;
                let spacing = if a.addr.is_ipv4() {
                    g.interval_ns
                } else {
                    g.na_interval_ns
                };
                (g.master_repeat.max(1), spacing)
            });
            if let Some((count, spacing_ns)) = garp
                && let Some(announce) = self.gratuitous(inst, [a.addr], count, spacing_ns)
            {
                self.push_untimed(inst, announce);
            }
        }
    }

    /// A VIP of an instance that is not master appeared on its interface:
    /// someone else added it. Reported; the address is not ours to remove.
    fn vip_appeared(&self, a: &AddrInfo) {
        for (n, i) in self.instances.iter().enumerate() {
            let ours = i.plan.ifindex == a.ifindex
                && i.plan
                    .vips
                    .iter()
                    .chain(&i.plan.excluded)
                    .any(|v| v.addr == a.addr);
            let state = self.router(n).map(|r| r.state());
            if ours && state.is_some_and(|s| s != State::Master) {
                warn!(
                    "{}: VIP {} appeared on {} while {}: another program added it",
                    i.plan.name,
                    a.addr,
                    i.plan.ifname,
                    state.map(State::keepalived_name).unwrap_or("?")
                );
            }
        }
    }

    /// An address came or went on `ifindex`: instances that take their
    /// source from the interface follow it (FAULT while there is none).
    fn on_addresses(&mut self, ifindex: u32) {
        let waiting: Vec<InstanceId> = (0..self.instances.len())
            .filter(|&i| {
                let p = &self.instances[i].plan;
                p.ifindex == ifindex && p.source_tracker.is_some()
            })
            .collect();
        for inst in waiting {
            self.follow_source(inst);
        }
        // `track_src_ip`: FAULT while the configured source is nowhere.
        let now = monotonic_ns();
        for inst in 0..self.instances.len() {
            let p = &self.instances[inst].plan;
            let Some(id) = p.src_ip_tracker else { continue };
            let present = self.link.has_addr(p.source);
            if present && self.instances[inst].outlet.sender().is_none() {
                match super::daemon::open_sender(&self.senders, &self.instances[inst].plan) {
                    Ok(Some(s)) => self.instances[inst].outlet.set_sender(Some(s)),
                    Ok(None) => continue,
                    Err(e) => {
                        debug!("{e:#}");
                        continue;
                    }
                }
            }
            let state = if present {
                TrackState::Up
            } else {
                TrackState::Down
            };
            self.feed(inst, now, Input::Track { id, state });
        }
    }

    fn follow_source(&mut self, inst: InstanceId) {
        let (family, current, tracker, ifindex) = {
            let p = &self.instances[inst].plan;
            (p.router.family, p.source, p.source_tracker, p.ifindex)
        };
        let Some(tracker) = tracker else { return };
        let found = plan::auto_source(family, self.link.addrs(ifindex));
        let has_sender = self.instances[inst].outlet.sender().is_some();
        let now = monotonic_ns();
        match found {
            Some(src) if src != current || !has_sender => {
                let mut ip = self.instances[inst].plan.clone();
                ip.source = src;
                ip.router.primary_addr = src;
                // Not yet usable (e.g. still tentative): the next address
                // event tries again.
                let sender = match super::daemon::open_sender(&self.senders, &ip) {
                    Ok(Some(s)) => s,
                    Ok(None) => return,
                    Err(e) => {
                        debug!("{e:#}");
                        return;
                    }
                };
                info!("{}: source address {src} on {}", ip.name, ip.ifname);
                let cfg = ip.router.clone();
                let i = &mut self.instances[inst];
                i.outlet.set_sender(Some(sender));
                i.plan = ip;
                self.feed(inst, now, Input::Reload(Box::new(cfg)));
                self.feed(
                    inst,
                    now,
                    Input::Track {
                        id: tracker,
                        state: TrackState::Up,
                    },
                );
            }
            None if has_sender => {
                let i = &mut self.instances[inst];
                warn!(
                    "{}: no source address left on {}",
                    i.plan.name, i.plan.ifname
                );
                i.outlet.set_sender(None);
                self.feed(
                    inst,
                    now,
                    Input::Track {
                        id: tracker,
                        state: TrackState::Down,
                    },
                );
            }
            _ => {}
        }
    }
}

/// The routes and rules of a batch as written, for logs.
fn describe_batch(batch: &RouteBatch) -> String {
    batch
        .routes
        .iter()
        .map(|r| format!("route `{}`", r.text))
        .chain(batch.rules.iter().map(|r| format!("rule `{}`", r.text)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// keepalived's detection: a peer that checksums unicast adverts as 1.3.5
/// did expects them so too, and from now on gets them so (until a restart
/// or reload, as with keepalived).
fn adopt_old_checksum(i: &mut Instance, peer: IpAddr) {
    if i.plan.detect_old_checksum && i.outlet.checksum() != V3Ipv4Checksum::OldUnicast {
        i.outlet.set_checksum(V3Ipv4Checksum::OldUnicast);
        info!(
            "{}: {peer} uses the unicast VRRPv3 checksum of keepalived 1.3.5 and before: \
             sending it too (old_unicast_checksum never keeps today's)",
            i.plan.name
        );
    }
}
