//! A configuration change as one transaction.
//!
//! 1. [`diff`] compares what runs with the new plan — pure, no I/O: which
//!    instances and sync groups continue, which leave, which are new, which
//!    need a new advert socket or datapath entry, which trackers restart.
//! 2. [`Daemon::prepare`] acquires everything the new configuration needs —
//!    every state machine and sync group built, every advert socket opened,
//!    the notify FIFOs opened, the datapath entries written (and written
//!    back if a later one fails) — while what runs is untouched. Any
//!    failure refuses the configuration and says what and why.
//! 3. [`Daemon::apply`] cannot fail: instances that leave hand over as on
//!    SIGTERM, the others move to their new places with their state, timers,
//!    sockets and history; new ones start.
//!
//! The first configuration goes through the same steps from nothing.

use std::{collections::HashMap, net::IpAddr, rc::Rc, time::Duration};

use anyhow::Result;
use tracing::{error, info, warn};
use xvrrpd_common::VridKey;

use super::{
    daemon::{Daemon, Instance, InstanceId, Unit, open_sender, register_notifies},
    dispatch::{notify_state, spin_lead},
    effects::{Effect, RouteBatch},
    plan::{self, InstancePlan, NewConfig, Plan, PreparedConfig},
    trackers::{self, TrackerChanges},
};
use crate::{
    clock::monotonic_ns,
    control::systemd,
    datapath::{
        VridSpec,
        send::{AdvertSender, Outlet},
    },
    net::{addr::Vip, gratuitous::GratuitousSender},
    notify::{Notifier, NotifierOptions, Subject},
    vrrp::{Input, Router, RouterConfig, State, SyncGroup, TimerKind, TrackState},
};

/// A running instance as [`diff`] sees it.
pub(super) struct RunningInstance<'a> {
    pub(super) plan: &'a InstancePlan,
    pub(super) unit: usize,
    /// The source of its advert socket, when it has one.
    pub(super) sending_from: Option<IpAddr>,
}

/// What changes, decided before anything is touched.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ReloadPlan {
    /// For each instance of the new plan, the running instance it continues.
    pub(super) continues: Vec<Option<InstanceId>>,
    /// Running instances that are no longer configured.
    pub(super) leaving: Vec<InstanceId>,
    /// For each sync group of the new plan, the running unit it continues.
    pub(super) groups_continue: Vec<Option<usize>>,
    /// New-plan instances that continue with another state-machine
    /// configuration: they are told in place.
    pub(super) changed: Vec<usize>,
    /// New-plan instances that need an advert socket of their own.
    pub(super) new_sockets: Vec<usize>,
    /// New-plan instances whose datapath entry is new or different.
    pub(super) datapath: Vec<usize>,
    /// Continuing new-plan instances whose `virtual_ipaddress_excluded`
    /// changed (the state machine never sees those): (instance, to add, to
    /// remove), applied when it is master.
    pub(super) excluded: Vec<(usize, Vec<Vip>, Vec<Vip>)>,
}

/// Equal but for the trackers' assumed initial states, which only matter
/// before a tracker's first report.
fn same_router_config(a: &RouterConfig, b: &RouterConfig) -> bool {
    let strip = |c: &RouterConfig| {
        let mut c = c.clone();
        for t in &mut c.trackers {
            t.initial = TrackState::Up;
        }
        c
    };
    strip(a) == strip(b)
}

/// The members of sync group `name` in `plan`, by instance name.
fn group_members<'a>(plan: &'a Plan, name: &str) -> Option<Vec<&'a str>> {
    plan.groups.iter().find(|g| g.name == name).map(|g| {
        g.members
            .iter()
            .filter_map(|&i| plan.instances.get(i).map(|p| p.name.as_str()))
            .collect()
    })
}

fn same_spec(a: &VridSpec, b: &VridSpec) -> bool {
    a.ifname == b.ifname && a.key == b.key && a.cfg == b.cfg && a.group == b.group
}

/// Compares what runs (`running`, configured by `old`) with `new`. An
/// instance continues when its name, interface, family and VRID are the
/// same and it stays in the same sync group with the same members.
pub(super) fn diff(running: &[RunningInstance], old: &Plan, new: &Plan) -> ReloadPlan {
    let mut d = ReloadPlan::default();
    for (n, ip) in new.instances.iter().enumerate() {
        let continues = running.iter().position(|r| {
            r.plan.identity() == ip.identity()
                && r.plan.sync_group == ip.sync_group
                && ip
                    .sync_group
                    .as_deref()
                    .is_none_or(|g| group_members(old, g) == group_members(new, g))
        });
        match continues {
            Some(o) => {
                let r = &running[o];
                if !same_router_config(&r.plan.router, &ip.router) {
                    d.changed.push(n);
                }
                let add: Vec<Vip> = ip
                    .excluded
                    .iter()
                    .filter(|v| !r.plan.excluded.contains(v))
                    .cloned()
                    .collect();
                let remove: Vec<Vip> = r
                    .plan
                    .excluded
                    .iter()
                    .filter(|v| !ip.excluded.contains(v))
                    .cloned()
                    .collect();
                if !add.is_empty() || !remove.is_empty() {
                    d.excluded.push((n, add, remove));
                }
                if r.sending_from != Some(ip.source)
                    || r.plan.dest != ip.dest
                    || r.plan.unicast_ttl != ip.unicast_ttl
                {
                    d.new_sockets.push(n);
                }
            }
            None => d.new_sockets.push(n),
        }
        let current = running.iter().find(|r| r.plan.vrid.key == ip.vrid.key);
        if current.is_none_or(|r| !same_spec(&r.plan.vrid, &ip.vrid)) {
            d.datapath.push(n);
        }
        d.continues.push(continues);
    }
    d.leaving = (0..running.len())
        .filter(|o| !d.continues.contains(&Some(*o)))
        .collect();
    d.groups_continue = new
        .groups
        .iter()
        .map(|g| {
            g.members
                .first()
                .and_then(|&m| d.continues.get(m).copied().flatten())
                .map(|o| running[o].unit)
        })
        .collect();
    d
}

/// The state machines and sockets `prepare` acquired for what is new.
struct Acquired {
    /// Per new-plan instance that does not continue and is in no new
    /// group: its state machine.
    singles: Vec<Option<Router>>,
    /// Per new-plan group that does not continue.
    groups: Vec<Option<SyncGroup>>,
    /// Per new-plan instance in `diff.new_sockets`: its socket (none while
    /// its interface has no source address).
    sockets: HashMap<usize, Option<std::rc::Rc<AdvertSender>>>,
}

/// Everything a new configuration needs, acquired; nothing running changed.
pub(super) struct Prepared {
    new: NewConfig,
    diff: ReloadPlan,
    acquired: Acquired,
    garp: Vec<(u32, Rc<GratuitousSender>)>,
    notifier: Notifier,
    trackers: TrackerChanges,
}

/// The notifier with the configured FIFOs and every notify script of `plan`.
fn notifier_for(config: &crate::config::Config, plan: &Plan) -> Result<Notifier> {
    let g = &config.global_defs;
    let mut fifos = Vec::new();
    for (fifo, script, kind) in [
        (&g.notify_fifo, &g.notify_fifo_script, ""),
        (&g.vrrp_notify_fifo, &g.vrrp_notify_fifo_script, "vrrp_"),
    ] {
        let Some(f) = fifo else { continue };
        let checked = match script {
            Some(s) => {
                let cmd = crate::script::ScriptCommand::from_argv(s.argv.iter());
                Some(
                    crate::script::security::check_notify_script(
                        &cmd,
                        &plan.default_run_as,
                        plan.script_security,
                    )
                    .map_err(|e| anyhow::anyhow!("{kind}notify_fifo_script: {e}"))?,
                )
            }
            None => None,
        };
        let cfg = crate::notify::fifo::FifoConfig {
            path: f.path.clone().into(),
            kind: kind.to_string(),
            owner_uid: plan.default_run_as.uid,
            owner_gid: plan.default_run_as.gid,
            script: checked,
            queue: 1024,
        };
        fifos.push(
            crate::notify::fifo::NotifyFifo::open(cfg)
                .map_err(|e| anyhow::anyhow!("{kind}notify_fifo {}: {e}", f.path))?,
        );
    }
    let mut notifier = Notifier::new(fifos, NotifierOptions::default());
    register_notifies(&mut notifier, plan);
    Ok(notifier)
}

impl Daemon {
    /// SIGHUP: reads and plans the new configuration off the loop —
    /// parsing, script checks and interface queries take time the running
    /// instances' adverts cannot wait for.
    pub(super) fn start_reload(&mut self) {
        if self.pending_reload.is_some() {
            info!("SIGHUP: a reload is already being prepared");
            return;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let path = self.opts.config.clone();
        let mut ids = self.ids.clone();
        tokio::task::spawn_local(async move {
            let result = match crate::config::load(&path) {
                Err(e) => Err(e.to_string()),
                Ok(loaded) => {
                    for w in &loaded.warnings {
                        warn!("{w}");
                    }
                    match super::daemon::make_vmacs(&loaded.config).await {
                        Err(e) => Err(format!("{e:#}")),
                        Ok(made_vmacs) => match plan::build(&loaded.config, &mut ids).await {
                            Ok(plan) => Ok(Box::new(NewConfig {
                                config: loaded.config,
                                plan,
                                ids,
                                made_vmacs,
                            })),
                            Err(e) => {
                                super::daemon::remove_vmacs(&made_vmacs).await;
                                Err(e.to_string())
                            }
                        },
                    }
                }
            };
            let _ = tx.send(result);
        });
        self.pending_reload = Some(rx);
    }

    /// The new configuration is read: a bad one, or one whose resources
    /// cannot all be had, keeps the running configuration exactly as it is.
    pub(super) async fn reload(&mut self, prepared: PreparedConfig) {
        let mut made_vmacs = Vec::new();
        let result = prepared.and_then(|new| {
            for w in &new.plan.warnings {
                warn!("{w}");
            }
            made_vmacs = new.made_vmacs.clone();
            self.prepare(new)
        });
        let prepared = match result {
            Ok(p) => p,
            Err(e) => {
                super::daemon::remove_vmacs(&made_vmacs).await;
                error!("reload refused, keeping the running configuration:\n{e}");
                self.events
                    .publish(crate::control::events::EventKind::ReloadRefused { error: e });
                return;
            }
        };
        let vmacs_before: Vec<String> = self
            .instances
            .iter()
            .flat_map(|i| i.plan.vmacs().map(|m| m.spec.name.clone()))
            .collect();
        self.reloads += 1;
        super::apply_umask(&prepared.new.config.global_defs);
        let restate = prepared
            .new
            .config
            .global_defs
            .fifo_write_vrrp_states_on_reload;
        let continuing: Vec<String> = prepared
            .diff
            .continues
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(n, _)| prepared.new.plan.instances[n].name.clone())
            .collect();
        let d = &prepared.diff;
        let (kept, changed, left) = (
            d.continues.iter().flatten().count(),
            d.changed
                .iter()
                .chain(d.excluded.iter().map(|(n, _, _)| n))
                .collect::<std::collections::HashSet<_>>()
                .len(),
            d.leaving.len(),
        );
        let before = self.routes_now();
        let new_units = self.apply(prepared).await;
        for &unit in &new_units {
            self.start_unit(unit);
        }
        self.apply_route_changes(before).await;
        self.sync_route_watch();
        self.promote_secondaries().await;
        let vmacs_gone: Vec<String> = vmacs_before
            .into_iter()
            .filter(|n| {
                !self
                    .instances
                    .iter()
                    .any(|i| i.plan.vmacs().any(|m| m.spec.name == *n))
            })
            .collect();
        super::daemon::remove_vmacs(&vmacs_gone).await;
        self.sync_vmac_bases().await;
        self.forget_gone_vmacs();
        if restate {
            self.restate_on_fifo(&continuing);
        }
        // Instances moved, left or changed their VIPs.
        self.guards_dirty = true;
        self.sync_guards();
        let _ = systemd::ready_with_status(&format!("{} instance(s)", self.instances.len()));
        self.events
            .publish(crate::control::events::EventKind::Reloaded {
                kept,
                changed,
                left,
                new: new_units.len(),
            });
        info!(
            "reloaded {}: {kept} kept ({changed} changed), {left} left, {} new",
            self.opts.config.display(),
            new_units.len()
        );
    }

    /// The static routes, rules and addresses, and each instance's routes
    /// and rules, before a reload.
    fn routes_now(&self) -> RoutesBefore {
        RoutesBefore {
            statics: (
                RouteBatch {
                    routes: self.plan.static_routes.clone(),
                    rules: self.plan.static_rules.clone(),
                },
                self.plan.static_vips.clone(),
            ),
            instances: self
                .instances
                .iter()
                .map(|i| {
                    (
                        i.plan.name.clone(),
                        RouteBatch {
                            routes: i.plan.routes.clone(),
                            rules: i.plan.rules.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// What a reload changed in the routes and rules: a master that goes
    /// on removes the ones it no longer has and adds its new ones (through
    /// its effect queue); the static configuration does the same at once.
    async fn apply_route_changes(&mut self, before: RoutesBefore) {
        let (old_static, old_vips) = before.statics;
        let new_static = RouteBatch {
            routes: self.plan.static_routes.clone(),
            rules: self.plan.static_rules.clone(),
        };
        let (gone, added) = batch_diff(&old_static, &new_static);
        let vips = self.host.vips.clone();
        if !gone.is_empty() {
            let r = vips.routes(false, gone.clone()).await;
            super::daemon::log_route_results("static", false, &gone, r);
        }
        let old_keys: Vec<_> = old_vips.iter().map(|v| v.key()).collect();
        let new_vips = &self.plan.static_vips;
        let dropped: Vec<_> = old_vips
            .iter()
            .filter(|v| !new_vips.iter().any(|n| n.key() == v.key()))
            .cloned()
            .collect();
        let fresh: Vec<_> = new_vips
            .iter()
            .filter(|v| !old_keys.contains(&v.key()))
            .cloned()
            .collect();
        for (v, r) in dropped.iter().zip(vips.remove_vips(&dropped).await) {
            if let Err(e) = r {
                warn!("static_ipaddress {}: {e}", v.addr);
            }
        }
        for (v, r) in fresh.iter().zip(vips.add_vips(&fresh).await) {
            if let Err(e) = r {
                warn!("static_ipaddress {}: {e}", v.addr);
            }
        }
        if !added.is_empty() {
            let r = vips.routes(true, added.clone()).await;
            super::daemon::log_route_results("static", true, &added, r);
        }
        for (name, old) in before.instances {
            let Some(n) = self.instances.iter().position(|i| i.plan.name == name) else {
                continue;
            };
            if !self.router(n).is_some_and(|r| r.state() == State::Master) {
                continue;
            }
            let new = RouteBatch {
                routes: self.instances[n].plan.routes.clone(),
                rules: self.instances[n].plan.rules.clone(),
            };
            let (gone, added) = batch_diff(&old, &new);
            if !gone.is_empty() {
                self.enqueue_effect(
                    n,
                    Effect::Routes {
                        add: false,
                        batch: gone,
                    },
                );
            }
            if !added.is_empty() {
                self.enqueue_effect(
                    n,
                    Effect::Routes {
                        add: true,
                        batch: added,
                    },
                );
            }
        }
    }

    /// `fifo_write_vrrp_states_on_reload`: the FIFOs get the state of each
    /// sync group, then of each instance that went on through the reload
    /// (new ones announce themselves), as keepalived writes them.
    fn restate_on_fifo(&self, continuing: &[String]) {
        for unit in &self.units {
            if let Unit::Group(g) = unit {
                self.notifier
                    .restate(Subject::Group, g.name(), notify_state(g.state()), 0);
            }
        }
        for (n, i) in self.instances.iter().enumerate() {
            if !continuing.contains(&i.plan.name) {
                continue;
            }
            if let Some(r) = self.router(n) {
                self.notifier.restate(
                    Subject::Instance,
                    &i.plan.name,
                    notify_state(r.state()),
                    r.priority(),
                );
            }
        }
    }

    fn running_view(&self) -> Vec<RunningInstance<'_>> {
        self.instances
            .iter()
            .map(|i| RunningInstance {
                plan: &i.plan,
                unit: i.unit,
                sending_from: i.outlet.sender().map(AdvertSender::source),
            })
            .collect()
    }

    /// Step 2: everything `new` needs, or why it cannot run. What runs is
    /// left as it was either way (a datapath entry written here is written
    /// back when a later step fails).
    pub(super) fn prepare(&mut self, new: Box<NewConfig>) -> Result<Prepared, String> {
        let new = *new;
        if let Some(why) = self.opts.identity.reload_conflict(&new.config.global_defs) {
            return Err(why);
        }
        let diff = diff(&self.running_view(), &self.plan, &new.plan);
        let mut singles = Vec::new();
        for (n, ip) in new.plan.instances.iter().enumerate() {
            // Every state machine is built, the continuing ones too: a
            // configuration they would refuse is refused here, whole.
            let router =
                Router::new(ip.router.clone()).map_err(|e| format!("instance {}: {e}", ip.name))?;
            if diff.continues[n].is_none() {
                for w in router.warnings() {
                    warn!("{}: {w:?}", ip.name);
                }
            }
            singles.push(diff.continues[n].is_none().then_some(router));
        }
        let mut groups = Vec::new();
        for (g, gp) in new.plan.groups.iter().enumerate() {
            if diff.groups_continue[g].is_some() {
                groups.push(None);
                continue;
            }
            let members: Vec<Router> = gp
                .members
                .iter()
                .filter_map(|&i| singles.get_mut(i).and_then(Option::take))
                .collect();
            groups.push(Some(
                SyncGroup::new(gp.name.clone(), members).map_err(|e| e.to_string())?,
            ));
        }
        let mut sockets = HashMap::new();
        for &n in &diff.new_sockets {
            let sender =
                open_sender(&self.senders, &new.plan.instances[n]).map_err(|e| format!("{e:#}"))?;
            sockets.insert(n, sender);
        }
        let garp = self.gratuitous_senders(&new.plan);
        let notifier =
            notifier_for(&new.config, &new.plan).map_err(|e| format!("notify: {e:#}"))?;
        let trackers = trackers::changes(&self.plan, &new.plan);
        // Before the entries: their raw sockets join the group on the VMACs.
        self.attach_vmac_filters(&new.plan);
        // Last: the one step that changes something shared, undone on failure.
        self.write_datapath(&new.plan, &diff.datapath)?;
        Ok(Prepared {
            new,
            diff,
            acquired: Acquired {
                singles,
                groups,
                sockets,
            },
            garp,
            notifier,
            trackers,
        })
    }

    /// A GARP/NA sender for every interface that has none yet. Without one
    /// the VIPs still move (unannounced), as at start-up: say so.
    fn gratuitous_senders(&self, plan: &Plan) -> Vec<(u32, Rc<GratuitousSender>)> {
        let mut out: Vec<(u32, Rc<GratuitousSender>)> = Vec::new();
        for ip in &plan.instances {
            for ifindex in ip.announce_ifindexes() {
                if self.host.garp.contains_key(&ifindex) || out.iter().any(|(i, _)| *i == ifindex) {
                    continue;
                }
                match GratuitousSender::new(ifindex) {
                    Ok(g) => out.push((ifindex, Rc::new(g))),
                    Err(err) => warn!(
                        "{}: no gratuitous ARP/NA on interface {ifindex}: {err}",
                        ip.name
                    ),
                }
            }
        }
        out
    }

    /// Writes the datapath entries of `which`; on a failure writes back
    /// what was there before and says which entry could not be written.
    fn write_datapath(&mut self, plan: &Plan, which: &[usize]) -> Result<(), String> {
        let mut written: Vec<(VridKey, Option<VridSpec>)> = Vec::new();
        for &n in which {
            let ip = &plan.instances[n];
            let before = self
                .instances
                .iter()
                .find(|i| i.plan.vrid.key == ip.vrid.key)
                .map(|i| i.plan.vrid.clone());
            if let Err(e) = self.datapath.set_vrid(&ip.vrid) {
                for (key, before) in written.into_iter().rev() {
                    let undone = match &before {
                        Some(spec) => self.datapath.set_vrid(spec),
                        None => self.datapath.remove_vrid(&key),
                    };
                    if let Err(e) = undone {
                        error!(
                            "datapath: cannot restore the entry of VRID {}: {e}",
                            key.vrid
                        );
                    }
                }
                return Err(format!("instance {}: datapath: {e}", ip.name));
            }
            written.push((ip.vrid.key, before));
        }
        Ok(())
    }

    /// Step 3: makes `prepared` the running configuration; returns the
    /// units that are new (the caller starts them). Cannot fail.
    pub(super) async fn apply(&mut self, prepared: Prepared) -> Vec<usize> {
        let Prepared {
            new,
            diff,
            acquired,
            garp,
            notifier,
            trackers,
        } = prepared;
        self.leave(&diff, &new.plan).await;
        let timers = self.take_timers(&diff);
        let new_units = self.install(&new.plan, &diff, acquired);
        self.host.garp.extend(garp);
        let old_notifier = std::mem::replace(&mut self.notifier, notifier);
        tokio::task::spawn_local(old_notifier.shutdown(Duration::from_secs(2)));
        let reloading = self.reloads > 0;
        self.trackers.apply(trackers, reloading);
        self.plan = new.plan;
        self.ids = new.ids;
        for (n, kind, at) in timers {
            let _ = self.timers.arm_early((n, kind), at, spin_lead(kind));
        }
        let now = monotonic_ns();
        for &n in &diff.changed {
            let cfg = self.instances[n].plan.router.clone();
            self.feed(n, now, Input::Reload(Box::new(cfg)));
        }
        // Excluded addresses follow the VIPs: a master takes the new ones
        // and lets go of those no longer configured.
        for (n, add, remove) in &diff.excluded {
            if self.router(*n).is_some_and(|r| r.state() == State::Master) {
                let remove = remove.iter().map(|v| (v.ifindex, v.addr)).collect();
                self.enqueue_effect(
                    *n,
                    Effect::UpdateVips {
                        add: add.clone(),
                        remove,
                    },
                );
            }
        }
        self.publish_priorities();
        new_units
    }

    /// Cancels every timer; returns those of continuing instances with
    /// their new index, to be armed again once the instances moved.
    fn take_timers(&mut self, diff: &ReloadPlan) -> Vec<(usize, TimerKind, u64)> {
        let mut timers = Vec::new();
        for old in 0..self.instances.len() {
            for kind in TimerKind::ALL {
                if let Some(at) = self.timers.deadline((old, kind)) {
                    let _ = self.timers.cancel((old, kind));
                    if let Some(n) = diff.continues.iter().position(|c| *c == Some(old)) {
                        timers.push((n, kind, at));
                    }
                }
            }
        }
        timers
    }

    /// Puts the instances and units of `plan` in place: continuing ones
    /// moved with their state, new ones from what `prepare` acquired.
    /// Members of sync groups take the groups' places first, then single
    /// instances, in plan order. Returns the new units.
    fn install(&mut self, plan: &Plan, diff: &ReloadPlan, mut acquired: Acquired) -> Vec<usize> {
        let mut old_units: Vec<Option<Unit>> = std::mem::take(&mut self.units)
            .into_iter()
            .map(Some)
            .collect();
        let mut old_instances: Vec<Option<Instance>> = std::mem::take(&mut self.instances)
            .into_iter()
            .map(Some)
            .collect();
        let mut new_units = Vec::new();
        let mut place: HashMap<usize, (usize, usize)> = HashMap::new();
        for (g, gp) in plan.groups.iter().enumerate() {
            let unit = self.units.len();
            let group = match diff.groups_continue[g] {
                Some(old) => old_units.get_mut(old).and_then(Option::take),
                None => acquired.groups[g].take().map(|s| Unit::Group(Box::new(s))),
            };
            let Some(group) = group else { continue };
            if diff.groups_continue[g].is_none() {
                new_units.push(unit);
            }
            self.units.push(group);
            for (m, &i) in gp.members.iter().enumerate() {
                let member = diff.continues[i]
                    .and_then(|o| old_instances[o].as_ref())
                    .map_or(m, |o| o.member);
                place.insert(i, (unit, member));
            }
        }
        for (n, ip) in plan.instances.iter().enumerate() {
            let (unit, member) = match place.get(&n) {
                Some(&um) => um,
                None => {
                    let single = match diff.continues[n] {
                        Some(o) => old_instances[o]
                            .as_ref()
                            .and_then(|i| old_units.get_mut(i.unit))
                            .and_then(Option::take),
                        None => acquired.singles[n]
                            .take()
                            .map(|r| Unit::Single(Box::new(r))),
                    };
                    let Some(single) = single else { continue };
                    if diff.continues[n].is_none() {
                        new_units.push(self.units.len());
                    }
                    self.units.push(single);
                    (self.units.len() - 1, 0)
                }
            };
            let socket = acquired.sockets.remove(&n);
            let mut instance = match diff.continues[n].and_then(|o| old_instances[o].take()) {
                Some(mut old) => {
                    let sender = socket.unwrap_or_else(|| old.outlet.take_sender());
                    old.outlet = Outlet::new(sender, ip.checksum);
                    old.plan = ip.clone();
                    old.fingerprint = None;
                    old
                }
                None => Instance::start(
                    ip.clone(),
                    Outlet::new(socket.flatten(), ip.checksum),
                    &self.metrics,
                    &self.host,
                ),
            };
            instance.unit = unit;
            instance.member = member;
            self.instances.push(instance);
        }
        self.by_vrid = self
            .instances
            .iter()
            .enumerate()
            .map(|(n, i)| (i.plan.vrid.key, n))
            .collect();
        // A VRID a leaving instance handed over keeps no entry of its.
        for i in &self.instances {
            if i.quiet.is_none()
                && let Err(e) = self.datapath.set_quiet(i.plan.vrid.key, None)
            {
                warn!("reload: datapath: {e}");
            }
        }
        new_units
    }

    /// Instances no longer configured leave as on SIGTERM (priority 0, VIPs
    /// removed) and their datapath entries go, unless a new instance took
    /// the same one.
    async fn leave(&mut self, diff: &ReloadPlan, new: &Plan) {
        for &old in &diff.leaving {
            info!(
                "reload: {} is no longer configured: leaving",
                self.name(old)
            );
            self.instances[old].deleted = true;
            self.feed(old, monotonic_ns(), Input::Shutdown);
            let key = self.instances[old].plan.vrid.key;
            if !new.instances.iter().any(|i| i.vrid.key == key)
                && let Err(e) = self.datapath.remove_vrid(&key)
            {
                warn!("reload: datapath: {e}");
            }
        }
        let names: Vec<String> = diff
            .leaving
            .iter()
            .map(|&i| self.instances[i].plan.name.clone())
            .collect();
        self.finish_effects(|i| names.contains(&i.plan.name)).await;
    }

    /// Base and effective priority gauges from the state machines, which
    /// keep what trackers and owner conflicts made of the configured one.
    fn publish_priorities(&self) {
        for (n, i) in self.instances.iter().enumerate() {
            if let Some(r) = self.router(n) {
                i.metrics.set_priorities(r.base_priority(), r.priority());
            }
        }
    }
}

/// Routes and rules as they were before a reload.
struct RoutesBefore {
    statics: (RouteBatch, Vec<crate::net::addr::Vip>),
    instances: Vec<(String, RouteBatch)>,
}

/// What `old` has and `new` lacks, and the reverse.
fn batch_diff(old: &RouteBatch, new: &RouteBatch) -> (RouteBatch, RouteBatch) {
    let gone = RouteBatch {
        routes: old
            .routes
            .iter()
            .filter(|r| !new.routes.contains(r))
            .cloned()
            .collect(),
        rules: old
            .rules
            .iter()
            .filter(|r| !new.rules.contains(r))
            .cloned()
            .collect(),
    };
    let added = RouteBatch {
        routes: new
            .routes
            .iter()
            .filter(|r| !old.routes.contains(r))
            .cloned()
            .collect(),
        rules: new
            .rules
            .iter()
            .filter(|r| !old.rules.contains(r))
            .cloned()
            .collect(),
    };
    (gone, added)
}
