//! What the daemon holds while it runs, and how it starts and stops.
//!
//! The event loop ([`super::event_loop`]) takes what happens; dispatch
//! ([`super::dispatch`]) decides with the state machines and executes their
//! actions; [`super::reload`] swaps configurations as one transaction;
//! [`super::reports`] builds status and transition logs; [`super::trackers`]
//! starts and stops the health checks.

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};
use xvrrpd_common::{QuietAdvert, VridKey};

use super::{
    effects::{EffectQueue, Report, RouteBatch, VipWorker},
    plan::{self, InstancePlan, NewConfig, Plan, PreparedConfig, TrackerIds},
    timers::Timers,
    trackers::Trackers,
};
use crate::{
    control::{
        metrics::{DatapathSnapshot, InstanceLabels, InstanceMetrics, Metrics, MetricsServer},
        socket::{self, Request},
        status::{InstanceCounters, TransitionRecord},
        systemd,
    },
    datapath::{
        Datapath, DatapathOptions, PreparedEbpf,
        ebpf::VmacFilter,
        pin::PinDir,
        send::{AdvertSender, Outlet, SenderPool},
    },
    net::{
        addr::{Vip, VipManager},
        gratuitous::GratuitousSender,
        link::{LinkWatcher, Watch},
        route_watch::RouteWatcher,
    },
    notify::{Notifier, NotifierOptions, Subject},
    vrrp::{Input, Router, State, SyncGroup, TimerKind},
};

pub(super) type InstanceId = usize;

/// A state machine the loop feeds: one instance, or a sync group of them.
pub(super) enum Unit {
    Single(Box<Router>),
    Group(Box<SyncGroup>),
}

/// Runtime state of one instance.
pub(super) struct Instance {
    pub(super) plan: InstancePlan,
    pub(super) unit: usize,
    pub(super) member: usize,
    /// Its advert socket and encoded advert.
    pub(super) outlet: Outlet,
    pub(super) counters: InstanceCounters,
    pub(super) history: VecDeque<TransitionRecord>,
    pub(super) metrics: InstanceMetrics,
    /// VIP and GARP/NA effects, run in order off the loop.
    pub(super) effects: Option<EffectQueue>,
    /// The last transition's log line waits for its effects: (its at_ns,
    /// effects still running).
    pub(super) pending_log: Option<(u64, usize)>,
    /// The last advert the state machine accepted, as the datapath would
    /// compare a repeat of it (see `quiet`).
    pub(super) fingerprint: Option<QuietAdvert>,
    /// The datapath's entry keeping that master's repeats: (key, advert).
    pub(super) quiet: Option<(VridKey, QuietAdvert)>,
    /// The kernel's count of kept adverts already added to the counters.
    pub(super) heard_seen: u64,
    /// Its down timer is on the loop's timer as a safety net only (the
    /// kernel runs it; see `quiet`).
    pub(super) down_lazy: bool,
    /// Until when the datapath's lease (the fence's) vouches for it.
    pub(super) lease_until: u64,
    /// When its datapath entry was last written, and the receive time of
    /// the last advert the kernel kept, as last read (see `quiet`).
    pub(super) quiet_since: u64,
    pub(super) heard_last: u64,
    /// The kernel said its down timer runs (as last read).
    pub(super) heard_timed: bool,
    /// The down deadline whose approach made the datapath deliver the
    /// master's adverts again (see `quiet`): none are kept until it moves.
    pub(super) unquiet_for: Option<u64>,
    /// A reload removed it: its last notify is keepalived's for a deleted
    /// instance (FAULT, or DELETED with `notify_deleted`), not STOP.
    pub(super) deleted: bool,
    /// The outlet generation its farewell (priority-0 advert) was told to
    /// the warden from; `None` while it has none there.
    pub(super) farewell_told: Option<u64>,
}

impl Instance {
    /// A new instance of `plan`, its effects queue started.
    pub(super) fn start(
        plan: InstancePlan,
        outlet: Outlet,
        metrics: &Metrics,
        host: &HostEffects,
    ) -> Self {
        let labels = InstanceLabels::new(
            plan.name.clone(),
            plan.ifname.clone(),
            plan.router.vrid,
            plan.router.family,
        );
        let effects =
            EffectQueue::spawn(plan.name.clone(), host.vips.clone(), host.reports.clone());
        Self {
            metrics: metrics.instance(labels),
            plan,
            unit: 0,
            member: 0,
            outlet,
            counters: InstanceCounters::default(),
            history: VecDeque::new(),
            effects: Some(effects),
            pending_log: None,
            fingerprint: None,
            quiet: None,
            heard_seen: 0,
            down_lazy: false,
            lease_until: 0,
            quiet_since: 0,
            heard_last: 0,
            heard_timed: false,
            unquiet_for: None,
            deleted: false,
            farewell_told: None,
        }
    }

    /// Every address the instance moves: VIPs and excluded ones.
    pub(super) fn all_vips(&self) -> Vec<Vip> {
        self.plan
            .vips
            .iter()
            .chain(&self.plan.excluded)
            .cloned()
            .collect()
    }
}

/// A VIP in the guard map: the master instance holding it, our MAC and the
/// report interval the kernel was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Guard {
    pub(super) inst: InstanceId,
    /// The instance's VRID key: its lease decides the kernel fence.
    pub(super) owner: VridKey,
    pub(super) mac: [u8; 6],
    /// `GUARD_FLAG_*` (see [`Datapath::guard`]).
    pub(super) flags: u8,
    pub(super) interval_ns: u64,
}

/// What effects on the host need: the VIP manager, a GARP/NA sender per
/// interface, and the channel effect reports come back on.
pub(super) struct HostEffects {
    /// The VIP thread every effect queue hands its netlink work to.
    pub(super) vips: VipWorker,
    pub(super) garp: HashMap<u32, Rc<GratuitousSender>>,
    pub(super) reports: mpsc::UnboundedSender<Report>,
}

pub struct DaemonOptions {
    pub config: PathBuf,
    pub datapath: DatapathOptions,
    pub control_socket: PathBuf,
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where the XDP links are pinned (`None`: not pinned).
    pub pins: Option<PinDir>,
    /// The namespace and instance name it started with: a reload may not
    /// change them.
    pub identity: super::DaemonIdentity,
}

/// The eBPF programs being verified on a thread of their own.
pub(super) type EbpfLoading = (
    oneshot::Receiver<Result<Box<PreparedEbpf>, String>>,
    std::thread::JoinHandle<()>,
);

pub struct Daemon {
    pub(super) opts: DaemonOptions,
    pub(super) plan: Plan,
    pub(super) ids: TrackerIds,
    pub(super) units: Vec<Unit>,
    pub(super) instances: Vec<Instance>,
    pub(super) by_vrid: HashMap<VridKey, InstanceId>,
    pub(super) datapath: Datapath,
    pub(super) timers: Timers<(InstanceId, TimerKind)>,
    pub(super) host: HostEffects,
    pub(super) link: LinkWatcher,
    pub(super) trackers: Trackers,
    pub(super) notifier: Notifier,
    /// None once the control socket's task has ended.
    pub(super) control_rx: Option<mpsc::Receiver<Request>>,
    pub(super) _control: tokio::task::JoinHandle<()>,
    pub(super) started: Instant,
    pub(super) reloads: u64,
    pub(super) metrics: Metrics,
    pub(super) _metrics_server: Option<MetricsServer>,
    pub(super) reports_rx: mpsc::UnboundedReceiver<Report>,
    /// Effects pushed to the queues and not reported done yet.
    pub(super) effects_in_flight: usize,
    pub(super) ebpf_loading: Option<EbpfLoading>,
    pub(super) pending_reload: Option<oneshot::Receiver<PreparedConfig>>,
    /// VIPs in the datapath's guard map, (ifindex, address) → the master
    /// instance holding them (see `dispatch::sync_guards`).
    pub(super) guarded: HashMap<(u32, std::net::IpAddr), Guard>,
    /// An instance entered or left MASTER, or instances moved: the guard
    /// map is brought up to date at the end of the turn.
    pub(super) guards_dirty: bool,
    /// If we die: says each master's farewell (priority 0) and, with a
    /// pinned eBPF datapath, removes our VIPs once another router owns them.
    pub(super) warden: Option<super::warden::Warden>,
    /// Claims found by a claim check, fed back after the turn's actions.
    pub(super) rechecked_claims: Vec<(InstanceId, Input)>,
    /// Instances whose datapath entry for a quiet master may be out of step
    /// (see `quiet`).
    pub(super) quiet_dirty: Vec<InstanceId>,
    /// Advert sockets, shared by instances with the same interface, source
    /// and destinations.
    pub(super) senders: SenderPool,
    /// Deletions of the routes and rules it installed (only while the
    /// configuration has some), and the protocols it filters on.
    pub(super) route_watch: Option<(RouteWatcher, Vec<u8>)>,
    /// Interfaces whose `promote_secondaries` xvrrpd turned on, to turn off
    /// again at stop (keepalived restores it too).
    pub(super) promoted: Vec<u32>,
    /// Bases of VMACs, with the ARP settings they had before xvrrpd set
    /// them, to put back when their last VMAC goes.
    pub(super) vmac_bases: HashMap<u32, crate::net::vmac::BaseArp>,
    /// The macvlan VMACs whose IGMP/MLD reports the datapath moves to their
    /// base, by ifindex (see [`Daemon::sync_vmac_reports`]).
    pub(super) vmac_reports: HashMap<u32, VmacReports>,
    /// The VMACs' report filter, loaded with the first VMAC.
    pub(super) vmac_filter: Option<VmacFilter>,
    pub(super) vmac_filter_failed: bool,
    /// Non-accept mode's gate as the datapath has it (`None`: never set).
    pub(super) no_accept_gate: Option<bool>,
    /// Transitions and notable events, to `xvrrpd events` and HTTP
    /// `/events` followers.
    pub(super) events: crate::control::events::EventBus,
}

impl Daemon {
    /// Builds everything from the configuration; nothing runs yet.
    pub async fn new(opts: DaemonOptions, config: &crate::config::Config) -> Result<Self> {
        let mut ids = TrackerIds::default();
        let made_vmacs = make_vmacs(config).await?;
        let plan = match plan::build(config, &mut ids).await {
            Ok(p) => p,
            Err(e) => {
                remove_vmacs(&made_vmacs).await;
                return Err(e.into());
            }
        };
        for w in &plan.warnings {
            warn!("{w}");
        }
        // keepalived runs it before anything of VRRP starts, and waits.
        if let Some((script, timeout)) = &plan.startup_script {
            run_daemon_script("startup_script", script, *timeout).await;
        }
        remove_leftovers(&VipManager::new().context("opening rtnetlink for VIPs")?).await;
        let vips = VipWorker::start().context("starting the VIP thread")?;
        remove_stale_routes(&vips).await;
        set_static(&vips, &plan, true).await;
        // After the VIPs: the previous run's fence guards them until then.
        remove_leftover_tc_filters().await;
        let (datapath, ebpf_loading) = open_datapath(&plan, opts.datapath, opts.pins.as_ref())?;
        let link = LinkWatcher::new(Watch::LinksAndAddresses)
            .context("watching links and addresses over netlink")?;
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::channel(16);
        let metrics = Metrics::new();
        metrics.set_refresher(control_tx.clone());
        let events = crate::control::events::EventBus::new();
        metrics.set_events(events.clone());
        let control = socket::serve(&opts.control_socket, control_tx, events.clone())?;
        let metrics_server = match opts.metrics_listen {
            Some(addr) => {
                let srv = crate::control::metrics::serve(addr, metrics.clone())?;
                info!("metrics on http://{}/metrics", srv.local_addr());
                Some(srv)
            }
            None => None,
        };
        let mut d = Daemon {
            opts,
            plan: plan.nothing_running(),
            ids,
            units: Vec::new(),
            instances: Vec::new(),
            by_vrid: HashMap::new(),
            datapath,
            timers: Timers::new().context("creating the timerfd")?,
            host: HostEffects {
                vips,
                garp: HashMap::new(),
                reports: reports_tx,
            },
            link,
            trackers: Trackers::new(),
            notifier: Notifier::new(Vec::new(), NotifierOptions::default()),
            control_rx: Some(control_rx),
            _control: control,
            started: Instant::now(),
            reloads: 0,
            metrics,
            _metrics_server: metrics_server,
            reports_rx,
            effects_in_flight: 0,
            ebpf_loading,
            pending_reload: None,
            guarded: HashMap::new(),
            guards_dirty: false,
            warden: None,
            rechecked_claims: Vec::new(),
            quiet_dirty: Vec::new(),
            senders: SenderPool::default(),
            route_watch: None,
            promoted: Vec::new(),
            vmac_bases: HashMap::new(),
            vmac_reports: HashMap::new(),
            vmac_filter: None,
            vmac_filter_failed: false,
            no_accept_gate: None,
            events,
        };
        // The first configuration is a reload of an empty one: the same
        // validation, the same resources, nothing running to keep.
        let prepared = d
            .prepare(Box::new(NewConfig {
                config: config.clone(),
                plan,
                ids: d.ids.clone(),
                made_vmacs,
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        d.apply(prepared).await;
        d.sync_route_watch();
        d.promote_secondaries().await;
        d.sync_vmac_bases().await;
        d.forget_gone_vmacs();
        Ok(d)
    }

    pub(super) fn name(&self, inst: InstanceId) -> &str {
        self.instances
            .get(inst)
            .map(|i| i.plan.name.as_str())
            .unwrap_or("?")
    }

    pub(super) fn router(&self, inst: InstanceId) -> Option<&Router> {
        let i = self.instances.get(inst)?;
        match self.units.get(i.unit)? {
            Unit::Single(r) => Some(r),
            Unit::Group(g) => g.member(i.member),
        }
    }

    /// The instance that is `member` of `unit`.
    pub(super) fn instance_at(&self, unit: usize, member: usize) -> Option<InstanceId> {
        self.instances
            .iter()
            .position(|i| i.unit == unit && i.member == member)
    }

    /// The eBPF programs are verified: attach them and leave the raw
    /// sockets (or stay on them, saying why).
    pub(super) fn on_ebpf_loaded(&mut self, r: Result<Box<PreparedEbpf>, String>) {
        if let Some((_, loader)) = self.ebpf_loading.take() {
            let _ = loader.join();
        }
        let specs: Vec<_> = self.instances.iter().map(|i| i.plan.vrid.clone()).collect();
        let mut queued = Vec::new();
        let result = r.and_then(|prepared| {
            self.datapath
                .upgrade(*prepared, &specs, &mut queued)
                .map_err(|e| e.to_string())
        });
        let retired = match result {
            Ok(retired) => {
                for (ifname, mode) in self.datapath.attachments() {
                    info!("datapath: eBPF attached to {ifname} as {mode}");
                }
                retired
            }
            Err(e) => {
                warn!("datapath: staying on raw sockets: {e}");
                self.datapath.fallback_reason = Some(e);
                None
            }
        };
        // Guards set while on raw sockets went nowhere: set them all again.
        self.guarded.clear();
        self.guards_dirty = true;
        self.on_adverts(queued);
        self.sync_guards();
        self.datapath_settled();
        // After the drop: the closing thread inherits only what is kept.
        if let Some(retired) = retired {
            retired.close_in_background();
        }
    }

    /// Starts the warden, before any instance runs: a master that dies
    /// while its eBPF datapath still loads has a farewell to say too. It
    /// gets the pin directory the datapath will use (it reads the pins only
    /// after the daemon died) and keeps the capabilities it starts with.
    pub(super) fn start_warden(&mut self) {
        let pins = (!self.opts.datapath.no_ebpf)
            .then_some(self.opts.pins.as_ref())
            .flatten();
        match super::warden::spawn(pins) {
            Ok(w) => self.warden = Some(w),
            Err(e) => warn!(
                "no warden ({e}): if xvrrpd dies, its backups wait a whole \
                 Master_Down_Interval, and its VIPs stay until it starts again"
            ),
        }
    }

    /// The datapath is final: drop what only loading eBPF needed, tell
    /// systemd we are ready.
    pub(super) fn datapath_settled(&mut self) {
        // Capabilities are per thread: this runs once the loader thread is
        // gone and before any other thread starts; the VIP thread drops its
        // own first.
        let plan = crate::control::privileges::Plan::for_this_kernel();
        let dropped = self
            .host
            .vips
            .drop_capabilities(&plan)
            .map_err(|e| format!("the VIP thread: {e}"))
            .and_then(|()| crate::control::privileges::drop_with(&plan).map_err(|e| e.to_string()));
        match dropped {
            Ok(report) => info!("{report}"),
            Err(e) => warn!("keeping capabilities: {e}"),
        }
        self.metrics
            .set_datapath(DatapathSnapshot::of(&self.datapath));
        let _ = systemd::ready_with_status(&format!(
            "{} instance(s), datapath {:?}",
            self.instances.len(),
            self.datapath.kind()
        ));
    }

    /// How long to stay after a master hands over: three of its advert
    /// intervals, at most one second; nothing when no instance is master.
    pub(super) fn handover_linger(&self) -> Duration {
        let max_cs = (0..self.instances.len())
            .filter_map(|i| self.router(i))
            .filter(|r| r.state() == State::Master)
            .map(|r| r.master_adver_int_cs())
            .max()
            .unwrap_or(0);
        Duration::from_millis(u64::from(max_cs) * 30).min(Duration::from_secs(1))
    }

    /// SIGTERM: masters send priority 0 and drop their VIPs; then exit.
    pub(super) async fn shutdown(&mut self) {
        for inst in 0..self.instances.len() {
            self.feed(inst, crate::clock::monotonic_ns(), Input::Shutdown);
        }
        // The VIPs are gone before we go.
        self.finish_effects(|_| true).await;
        self.trackers.stop_all().await;
        let notifier = std::mem::replace(
            &mut self.notifier,
            Notifier::new(Vec::new(), NotifierOptions::default()),
        );
        notifier.shutdown(Duration::from_secs(2)).await;
        if let Some(w) = self.warden.take() {
            w.stop();
        }
        set_static(&self.host.vips, &self.plan, false).await;
        // After the VIPs, which were on them; keepalived removes them too.
        let vmacs: Vec<String> = self
            .instances
            .iter()
            .flat_map(|i| i.plan.vmacs().map(|m| m.spec.name.clone()))
            .collect();
        remove_vmacs(&vmacs).await;
        for (base, before) in std::mem::take(&mut self.vmac_bases) {
            if let Err(e) = crate::net::vmac::release_base(base, before).await {
                warn!("restoring arp_ignore/arp_filter/arp_announce on interface {base}: {e}");
            }
        }
        for ifindex in std::mem::take(&mut self.promoted) {
            if let Err(e) = crate::net::devconf::set_promote_secondaries(ifindex, false).await {
                warn!("restoring promote_secondaries on interface {ifindex}: {e}");
            }
        }
        self.datapath.release_pins();
        if let Some((script, timeout)) = &self.plan.shutdown_script {
            run_daemon_script("shutdown_script", script, *timeout).await;
        }
    }

    /// `promote_secondaries`: turned on where an instance asks for it and
    /// it is off (then turned off again at stop).
    pub(super) async fn promote_secondaries(&mut self) {
        let mut wanted: Vec<(u32, String)> = self
            .instances
            .iter()
            .filter(|i| i.plan.promote_secondaries)
            .map(|i| (i.plan.ifindex, i.plan.ifname.clone()))
            .collect();
        wanted.dedup();
        for (ifindex, ifname) in wanted {
            if self.promoted.contains(&ifindex) {
                continue;
            }
            match crate::net::devconf::promote_secondaries(ifindex).await {
                Ok(true) => {}
                Ok(false) => {
                    match crate::net::devconf::set_promote_secondaries(ifindex, true).await {
                        Ok(()) => {
                            info!("{ifname}: promote_secondaries set");
                            self.promoted.push(ifindex);
                        }
                        Err(e) => warn!("{ifname}: setting promote_secondaries: {e}"),
                    }
                }
                Err(e) => warn!("{ifname}: reading promote_secondaries: {e}"),
            }
        }
    }

    /// Runs every queued effect to its end (shutdown, removed instances).
    pub(super) async fn finish_effects(&mut self, which: impl Fn(&Instance) -> bool) {
        let queues: Vec<EffectQueue> = self
            .instances
            .iter_mut()
            .filter(|i| which(i))
            .filter_map(|i| i.effects.take())
            .collect();
        for q in queues {
            q.finish().await;
        }
        while let Ok(r) = self.reports_rx.try_recv() {
            self.on_report(r);
        }
    }
}

/// Routes and rules a dead xvrrpd left (they carry its protocol marker).
async fn remove_stale_routes(vips: &VipWorker) {
    match vips.remove_stale_routes().await {
        Ok((routes, rules)) if !routes.is_empty() || !rules.is_empty() => warn!(
            "removed {} route(s) and {} rule(s) a previous run left",
            routes.len(),
            rules.len()
        ),
        Ok(_) => {}
        Err(e) => warn!("could not look for routes a previous run left: {e}"),
    }
}

/// `static_ipaddress`, `static_rules` and `static_routes`: set at start
/// (`up`), removed at stop, in keepalived's order.
pub(super) async fn set_static(vips: &VipWorker, plan: &plan::Plan, up: bool) {
    let batch = RouteBatch {
        routes: plan.static_routes.clone(),
        rules: plan.static_rules.clone(),
    };
    if !up && !batch.is_empty() {
        log_route_results(
            "static",
            false,
            &batch,
            vips.routes(false, batch.clone()).await,
        );
    }
    if !plan.static_vips.is_empty() {
        let results = if up {
            vips.add_vips(&plan.static_vips)
                .await
                .into_iter()
                .map(|r| r.map(|_| ()))
                .collect::<Vec<_>>()
        } else {
            vips.remove_vips(&plan.static_vips)
                .await
                .into_iter()
                .map(|r| r.map(|_| ()))
                .collect()
        };
        for (v, r) in plan.static_vips.iter().zip(results) {
            if let Err(e) = r {
                warn!("static_ipaddress {}: {e}", v.addr);
            }
        }
    }
    if up && !batch.is_empty() {
        log_route_results(
            "static",
            true,
            &batch,
            vips.routes(true, batch.clone()).await,
        );
    }
}

/// Logs the routes and rules of `batch` that could not be installed or
/// removed.
pub(super) fn log_route_results(
    owner: &str,
    add: bool,
    batch: &RouteBatch,
    (routes, rules): super::effects::RouteResults,
) {
    let verb = if add { "adding" } else { "removing" };
    for (r, res) in batch.routes.iter().zip(routes) {
        if let Err(e) = res {
            error!("{owner}: {verb} route `{}`: {e}", r.text);
        }
    }
    for (r, res) in batch.rules.iter().zip(rules) {
        if let Err(e) = res {
            error!("{owner}: {verb} rule `{}`: {e}", r.text);
        }
    }
}

/// Runs keepalived's `startup_script` / `shutdown_script` to its end, or
/// kills its process group at `timeout`; how it ended is logged, and never
/// stops the daemon (keepalived goes on either way).
async fn run_daemon_script(what: &str, script: &crate::script::CheckedScript, timeout: Duration) {
    use crate::script::{ScriptOutcome, exec};
    let limits = exec::RunLimits {
        timeout: Some(timeout),
        kill_grace: exec::DEFAULT_KILL_GRACE,
    };
    info!("running {what} {}", script.program.display());
    match exec::run(script, &[], limits).await {
        ScriptOutcome::Exited(0) => info!("{what} succeeded"),
        ScriptOutcome::Exited(code) => warn!("{what} failed, status {code}"),
        ScriptOutcome::Signaled(sig) => warn!("{what} was killed by signal {sig}"),
        ScriptOutcome::TimedOut => {
            warn!("{what} ran past its timeout of {timeout:?} and was killed")
        }
        ScriptOutcome::SpawnFailed(e) => warn!("{what} could not start: {e}"),
    }
}

/// Addresses a dead xvrrpd left behind (kill -9): the VIP must never stay
/// on two hosts.
async fn remove_leftovers(vips: &VipManager) {
    match vips.remove_stale_marked(&[]).await {
        Ok(c) if !c.removed.is_empty() => warn!(
            "removed {} address(es) left by a previous xvrrpd: {}",
            c.removed.len(),
            c.removed
                .iter()
                .map(|a| a.addr.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Ok(_) => {}
        Err(e) => warn!("could not look for addresses left by a previous xvrrpd: {e}"),
    }
}

/// clsact filters a dead xvrrpd left: they would go on consuming adverts.
async fn remove_leftover_tc_filters() {
    let cleaned = crate::datapath::ebpf::remove_leftover_tc_filters().await;
    if !cleaned.is_empty() {
        warn!(
            "removed the TC filter(s) a previous xvrrpd left on {}",
            cleaned.join(", ")
        );
    }
}

/// Clears what a previous run pinned (its links detach) and makes the
/// directory for this run; `None`, with the reason logged, when pinning is
/// off or impossible: the datapath then lives as long as the process.
fn usable_pins(pins: Option<&PinDir>) -> Option<PinDir> {
    let pins = pins?;
    match pins.clear() {
        Ok(0) => {}
        Ok(n) => warn!(
            "released the {n} datapath object(s) (links, program, maps) another xvrrpd \
             binary left pinned in {}",
            pins.path().display()
        ),
        Err(e) => warn!("could not clear {}: {e}", pins.path().display()),
    }
    match pins.create() {
        Ok(()) => Some(pins.clone()),
        Err(e) => {
            warn!(
                "datapath links not pinned: {e}; if xvrrpd dies, this host keeps answering for \
                 its VIPs until it starts again"
            );
            None
        }
    }
}

/// Verifying the eBPF programs takes ~100 ms: the instances start at once
/// on raw sockets and move to eBPF when a loader thread has it ready.
fn open_datapath(
    plan: &Plan,
    opts: DatapathOptions,
    pins: Option<&PinDir>,
) -> Result<(Datapath, Option<EbpfLoading>)> {
    // What a previous run of this binary left pinned runs on: adopt it.
    if let Some(p) = pins
        && !opts.no_ebpf
    {
        let ifnames: Vec<String> = plan.instances.iter().map(|i| i.ifname.clone()).collect();
        match Datapath::adopt(p, opts, &ifnames) {
            Ok(Some(dp)) => {
                info!(
                    "datapath: adopted the eBPF datapath the previous run left in {} \
                     (no verification)",
                    p.path().display()
                );
                super::warden::end_previous(p);
                return Ok((dp, None));
            }
            Ok(None) => {}
            Err(e) => warn!(
                "datapath: cannot adopt what {} holds: {e}",
                p.path().display()
            ),
        }
    }
    let pins = usable_pins(pins);
    // The receivers open empty: the first configuration's `prepare` writes
    // every instance's entry, as a reload does. The loader attaches to the
    // interfaces the plan names.
    if opts.no_ebpf || !crate::datapath::ebpf::object_embedded() {
        let dp = Datapath::open(&[], opts).context("opening the datapath")?;
        if let Some(why) = &dp.fallback_reason {
            warn!("datapath: raw sockets ({why})");
        }
        return Ok((dp, None));
    }
    let (tx, rx) = oneshot::channel();
    let loader_specs: Vec<_> = plan.instances.iter().map(|i| i.vrid.clone()).collect();
    let loader = std::thread::Builder::new()
        .name("ebpf-load".into())
        .spawn(move || {
            // Verification is ~100 ms of kernel work: never above the event
            // loop, even if the process was started real-time.
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: sched_setscheduler on this thread with a valid param.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
            let r = Datapath::prepare_ebpf(&loader_specs, opts, pins);
            // Capabilities are per thread, and a joined thread can still be
            // listed while it exits, holding its own: the main thread's drop
            // would then refuse. Loading is done, so it drops them first.
            let plan = crate::control::privileges::Plan::for_this_kernel();
            if let Err(e) = crate::control::privileges::drop_in_this_thread(&plan) {
                tracing::debug!("the eBPF loader thread keeps its capabilities: {e}");
            }
            let _ = tx.send(r.map(Box::new).map_err(|e| e.to_string()));
        })
        .context("starting the eBPF loader thread")?;
    let dp = Datapath::open_raw(&[], opts, "the eBPF datapath is loading".into())
        .context("opening the datapath")?;
    Ok((dp, Some((rx, loader))))
}

/// Makes the VMACs the configuration needs, or takes over those a previous
/// run left; returns the ones made now. On a failure, removes them again.
pub(super) async fn make_vmacs(config: &crate::config::Config) -> Result<Vec<String>> {
    let specs = plan::vmac_specs(config)?;
    let mut made = Vec::new();
    for (instance, spec, _) in &specs {
        let what = if spec.kind.is_ipvlan() {
            "ipvlan"
        } else {
            "VMAC"
        };
        match crate::net::vmac::ensure(spec).await {
            Ok((_, true)) => {
                info!("{instance}: {what} {} made", spec.name);
                made.push(spec.name.clone());
            }
            Ok((_, false)) => info!("{instance}: {what} {} taken over", spec.name),
            Err(e) => {
                remove_vmacs(&made).await;
                let keyword = if spec.kind.is_ipvlan() {
                    "use_ipvlan"
                } else {
                    "use_vmac"
                };
                return Err(e).with_context(|| format!("instance {instance}: {keyword}"));
            }
        }
    }
    Ok(made)
}

pub(super) async fn remove_vmacs(names: &[String]) {
    for name in names {
        if let Err(e) = crate::net::vmac::remove(name).await {
            warn!("{e}");
        }
    }
}

impl Daemon {
    /// The bases of the running VMACs neither answer ARP for the VIPs on
    /// them nor name a VIP in their own requests ([`crate::net::vmac::
    /// claim_base`]); a base with no VMAC left gets its settings back.
    pub(super) async fn sync_vmac_bases(&mut self) {
        // ARP is IPv4's: a VMAC with no IPv4 address on it (an IPv6
        // instance's, or `use_vmac_addr`'s for IPv6) leaves its base alone.
        let bases: std::collections::BTreeSet<u32> = self
            .instances
            .iter()
            .flat_map(|i| {
                let own = i
                    .plan
                    .vmac
                    .iter()
                    .filter(|m| !m.spec.kind.is_ipvlan())
                    .filter(|_| i.plan.router.family == crate::vrrp::Family::V4);
                let for_v4 = i.plan.addr_vmacs.iter().filter(|m| {
                    i.plan
                        .vips
                        .iter()
                        .chain(&i.plan.excluded)
                        .any(|v| v.ifindex == m.ifindex && v.addr.is_ipv4())
                });
                own.chain(for_v4).map(|m| m.spec.base)
            })
            .collect();
        for &base in &bases {
            if self.vmac_bases.contains_key(&base) {
                continue;
            }
            match crate::net::vmac::claim_base(base).await {
                Ok(before) => {
                    self.vmac_bases.insert(base, before);
                }
                Err(e) => {
                    warn!("setting arp_ignore/arp_filter/arp_announce on interface {base}: {e}")
                }
            }
        }
        let gone: Vec<u32> = self
            .vmac_bases
            .keys()
            .filter(|b| !bases.contains(b))
            .copied()
            .collect();
        for base in gone {
            if let Some(before) = self.vmac_bases.remove(&base)
                && let Err(e) = crate::net::vmac::release_base(base, before).await
            {
                warn!("restoring arp_ignore/arp_filter/arp_announce on interface {base}: {e}");
            }
        }
    }
}

/// A VMAC whose reports go out of its base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct VmacReports {
    name: String,
    base: u32,
}

impl Daemon {
    /// Keeps the VMACs' IGMP/MLD reports off the virtual MAC, as keepalived's
    /// firewall rules do (see [`VmacFilter`]): a router that is not master
    /// reports the group of a VIP it just removed from its VMAC, and the
    /// start-up raw sockets' VRRP group, and every switch would then send
    /// the VMAC's traffic to it. Runs before the configuration's datapath
    /// entries are written, which is when those sockets join.
    pub(super) fn attach_vmac_filters(&mut self, plan: &Plan) {
        if self.opts.datapath.no_ebpf {
            return;
        }
        for m in plan.instances.iter().flat_map(|i| i.vmacs()) {
            let Some(mac) = m.base_mac else {
                continue;
            };
            let want = VmacReports {
                name: m.spec.name.clone(),
                base: m.spec.base,
            };
            if self.vmac_reports.get(&m.ifindex) == Some(&want) {
                continue;
            }
            if self.vmac_filter.is_none() && !self.vmac_filter_failed {
                match VmacFilter::load() {
                    Ok(f) => self.vmac_filter = Some(f),
                    Err(e) => {
                        self.vmac_filter_failed = true;
                        warn!(
                            "VMACs: their IGMP/MLD reports stay on the virtual MAC ({e}): a \
                             snooping switch may send a VIP's traffic to a backup"
                        );
                    }
                }
            }
            let Some(filter) = self.vmac_filter.as_mut() else {
                return;
            };
            let base = xvrrpd_common::VmacBase {
                ifindex: m.spec.base,
                mac,
                _pad: [0; 2],
            };
            match filter.attach(&m.spec.name, m.ifindex, base) {
                Ok(()) => {
                    self.vmac_reports.insert(m.ifindex, want);
                }
                Err(e) => warn!(
                    "{}: its IGMP/MLD reports stay on the virtual MAC ({e})",
                    m.spec.name
                ),
            }
        }
    }

    /// Forgets the VMACs no instance has any more (they are gone).
    pub(super) fn forget_gone_vmacs(&mut self) {
        let gone: Vec<u32> = self
            .vmac_reports
            .keys()
            .filter(|k| {
                !self
                    .instances
                    .iter()
                    .flat_map(|i| i.plan.vmacs())
                    .any(|m| m.ifindex == **k)
            })
            .copied()
            .collect();
        for vmac in gone {
            self.vmac_reports.remove(&vmac);
            if let Some(f) = self.vmac_filter.as_mut()
                && let Err(e) = f.forget(vmac)
            {
                debug!("VMAC filter: forgetting interface {vmac}: {e}");
            }
        }
    }
}

/// The advert socket of an instance; none while it has no source address.
pub(super) fn open_sender(
    pool: &SenderPool,
    ip: &InstancePlan,
) -> Result<Option<Rc<AdvertSender>>> {
    if ip.source.is_unspecified() {
        warn!(
            "{}: no {} address on {} yet: FAULT until one appears",
            ip.name,
            match ip.router.family {
                crate::vrrp::Family::V4 => "IPv4",
                crate::vrrp::Family::V6 => "IPv6 link-local",
            },
            ip.ifname
        );
        return Ok(None);
    }
    match pool.get_on(
        (ip.advert_ifindex, ip.ifindex),
        ip.source,
        ip.dest.clone(),
        ip.unicast_ttl,
    ) {
        Ok(s) => Ok(Some(s)),
        // `track_src_ip`: FAULT until the address is back (its tracker).
        Err(crate::datapath::send::AdvertTxError::SourceNotReady { .. })
            if ip.src_ip_tracker.is_some() =>
        {
            warn!(
                "{}: source address {} is on no interface: FAULT until it appears",
                ip.name, ip.source
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("instance {}: advert socket", ip.name)),
    }
}

/// Subjects notify scripts are registered for, in the order keepalived runs them.
pub(super) fn register_notifies(notifier: &mut Notifier, plan: &Plan) {
    for gp in &plan.groups {
        notifier.add(Subject::Group, &gp.name, gp.notify.clone());
    }
    for ip in &plan.instances {
        notifier.add(Subject::Instance, &ip.name, ip.notify.clone());
    }
}
