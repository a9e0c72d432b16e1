//! The event loop. One task owns everything: the datapath, the timers, the
//! state machines and the host effects; inputs come in through `select!`,
//! actions go out in the order the state machines emit them.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{debug, error, info, warn};
use xvrrpd_common::{AdvertEvent, Counter, EVENT_FLAG_UNICAST, FAMILY_IPV4, VridKey};

use super::{
    effects::{Done, Effect, EffectQueue, Report},
    plan::{self, InstancePlan, Plan, TrackerIds},
    timers::Timers,
};
use crate::{
    clock::monotonic_ns,
    control::{
        metrics::{DatapathSnapshot, InstanceLabels, InstanceMetrics, Metrics, MetricsServer},
        socket::{self, Request},
        status::{self, InstanceCounters, StatusReport, TransitionRecord},
        systemd,
    },
    datapath::{Datapath, DatapathOptions, PreparedEbpf},
    net::{
        addr::{Vip, VipManager},
        advert_tx::AdvertSender,
        gratuitous::GratuitousSender,
        link::{LinkWatcher, NetEvent, Watch},
    },
    notify::{Notifier, NotifierOptions, NotifyState, Subject},
    packet::{self, Advert, Auth, Version},
    tracker::{self, TrackerEvent, TrackerHandle},
    vrrp::{
        Action, AdvertMeta, Input, ReceivedAdvert, Router, State, SyncAction, SyncGroup, TimerKind,
        TrackState, TrackerId, Transition,
    },
};

/// How early the loop wakes for a master-down deadline and spins to it:
/// waking a sleeping thread on a virtual machine takes 100–500 µs. Only the
/// down timer gets it — in steady state an advert re-arms it long before,
/// so the spin happens on failures only and costs no CPU otherwise.
const MASTER_DOWN_SPIN_LEAD_NS: u64 = 600_000;
/// Upper bound of one spin, whatever the timers say.
const MAX_SPIN_NS: u64 = 2 * MASTER_DOWN_SPIN_LEAD_NS;

fn spin_lead(kind: TimerKind) -> u64 {
    match kind {
        TimerKind::MasterDown => MASTER_DOWN_SPIN_LEAD_NS,
        _ => 0,
    }
}

/// Transitions kept per instance for status.
const HISTORY: usize = 16;

type InstanceId = usize;

enum Unit {
    Single(Box<Router>),
    Group(Box<SyncGroup>),
}

/// Runtime state of one instance.
struct Instance {
    plan: InstancePlan,
    unit: usize,
    member: usize,
    /// None while the interface has no usable source address.
    sender: Option<AdvertSender>,
    counters: InstanceCounters,
    history: VecDeque<TransitionRecord>,
    /// Encoded advert for (priority, interval) — re-encoded only on change.
    advert_cache: Option<((u8, u16), Vec<u8>)>,
    metrics: InstanceMetrics,
    /// VIP and GARP/NA effects, run in order off the loop.
    effects: Option<EffectQueue>,
    /// The last transition's log line waits for its effects: (its at_ns,
    /// effects still running).
    pending_log: Option<(u64, usize)>,
}

pub struct DaemonOptions {
    pub config: PathBuf,
    pub datapath: DatapathOptions,
    pub control_socket: PathBuf,
    pub metrics_listen: Option<std::net::SocketAddr>,
}

pub struct Daemon {
    opts: DaemonOptions,
    plan: Plan,
    ids: TrackerIds,
    units: Vec<Unit>,
    instances: Vec<Instance>,
    by_vrid: HashMap<VridKey, InstanceId>,
    datapath: Datapath,
    timers: Timers<(InstanceId, TimerKind)>,
    vips: Rc<VipManager>,
    garp: HashMap<u32, Rc<GratuitousSender>>,
    link: LinkWatcher,
    tracker_tx: mpsc::Sender<TrackerEvent>,
    tracker_rx: mpsc::Receiver<TrackerEvent>,
    trackers: Vec<(TrackerId, TrackerHandle)>,
    notifier: Notifier,
    control_rx: mpsc::Receiver<Request>,
    _control: tokio::task::JoinHandle<()>,
    started: Instant,
    reloads: u64,
    metrics: Metrics,
    _metrics_server: Option<MetricsServer>,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports_rx: mpsc::UnboundedReceiver<Report>,
    ebpf_loading: Option<EbpfLoading>,
    pending_reload: Option<tokio::sync::oneshot::Receiver<PreparedReload>>,
}

/// The eBPF programs being verified on a thread of their own.
type EbpfLoading = (
    tokio::sync::oneshot::Receiver<Result<Box<PreparedEbpf>, String>>,
    std::thread::JoinHandle<()>,
);

async fn ebpf_loaded(loading: &mut Option<EbpfLoading>) -> Result<Box<PreparedEbpf>, String> {
    match loading {
        Some((rx, _)) => rx
            .await
            .unwrap_or_else(|_| Err("the eBPF loader thread stopped".to_string())),
        None => std::future::pending().await,
    }
}

/// A configuration read and planned for a reload, or why it cannot be.
type PreparedReload = Result<Box<(crate::config::Loaded, Plan, TrackerIds)>, String>;

async fn prepared_reload(
    pending: &mut Option<tokio::sync::oneshot::Receiver<PreparedReload>>,
) -> PreparedReload {
    match pending {
        Some(rx) => rx
            .await
            .unwrap_or_else(|_| Err("the reload task stopped".to_string())),
        None => std::future::pending().await,
    }
}

/// What a reload hands from the old instance set to the new one.
#[derive(Default)]
struct Carried {
    singles: HashMap<String, Box<Router>>,
    groups: HashMap<String, Box<SyncGroup>>,
    instances: HashMap<String, Instance>,
}

/// What woke the loop.
enum Wake {
    Adverts(std::io::Result<usize>),
    Timers(std::io::Result<()>),
    Net(Result<NetEvent, crate::net::link::LinkError>),
    Tracker(Option<TrackerEvent>),
    Control(Option<Request>),
    Terminate(&'static str),
    Reload,
    Reloaded(PreparedReload),
    EbpfLoaded(Result<Box<PreparedEbpf>, String>),
    Housekeeping,
    Effect(Option<Report>),
}

fn notify_state(s: State) -> NotifyState {
    match s {
        State::Master => NotifyState::Master,
        State::Backup => NotifyState::Backup,
        State::Fault => NotifyState::Fault,
        State::Initialize => NotifyState::Stop,
    }
}

fn family_word(f: crate::vrrp::Family) -> &'static str {
    match f {
        crate::vrrp::Family::V4 => "ipv4",
        crate::vrrp::Family::V6 => "ipv6",
    }
}

fn us(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{} µs", ns / 1000)
    }
}

impl Daemon {
    /// Builds everything from the configuration; nothing runs yet.
    pub async fn new(opts: DaemonOptions, config: &crate::config::Config) -> Result<Self> {
        let mut ids = TrackerIds::default();
        let plan = plan::build(config, &mut ids).await?;
        for w in &plan.warnings {
            warn!("{w}");
        }
        let vips = Rc::new(VipManager::new().context("opening rtnetlink for VIPs")?);
        // Addresses a dead xvrrpd left behind (kill -9): the VIP must never
        // stay on two hosts.
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
        let specs: Vec<_> = plan.instances.iter().map(|i| i.vrid.clone()).collect();
        // Verifying the eBPF programs takes ~100 ms: the instances start at
        // once on raw sockets and move to eBPF when it is loaded.
        let (datapath, ebpf_loading) = if !opts.datapath.no_ebpf
            && crate::datapath::ebpf::object_embedded()
        {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let loader_specs = specs.clone();
            let attach = opts.datapath.attach;
            let loader = std::thread::Builder::new()
                .name("ebpf-load".into())
                .spawn(move || {
                    // Verification is ~100 ms of kernel work: never above the
                    // event loop, even if the process was started real-time.
                    let param = libc::sched_param { sched_priority: 0 };
                    // SAFETY: sched_setscheduler on this thread with a valid param.
                    unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
                    let r = Datapath::prepare_ebpf(&loader_specs, attach);
                    let _ = tx.send(r.map(Box::new).map_err(|e| e.to_string()));
                })
                .context("starting the eBPF loader thread")?;
            let dp =
                Datapath::open_raw(&specs, opts.datapath, "the eBPF datapath is loading".into())
                    .context("opening the datapath")?;
            (dp, Some((rx, loader)))
        } else {
            let dp = Datapath::open(&specs, opts.datapath).context("opening the datapath")?;
            if let Some(why) = &dp.fallback_reason {
                warn!("datapath: raw sockets ({why})");
            }
            (dp, None)
        };
        let link = LinkWatcher::new(Watch::LinksAndAddresses)
            .context("watching links and addresses over netlink")?;
        let (tracker_tx, tracker_rx) = mpsc::channel(1024);
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::channel(16);
        let control = socket::serve(&opts.control_socket, control_tx)?;
        let metrics = Metrics::new();
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
            plan: plan.clone(),
            ids,
            units: Vec::new(),
            instances: Vec::new(),
            by_vrid: HashMap::new(),
            datapath,
            timers: Timers::new().context("creating the timerfd")?,
            vips,
            garp: HashMap::new(),
            link,
            tracker_tx,
            tracker_rx,
            trackers: Vec::new(),
            notifier: Notifier::new(Vec::new(), NotifierOptions::default()),
            control_rx,
            _control: control,
            started: Instant::now(),
            reloads: 0,
            metrics,
            _metrics_server: metrics_server,
            reports_tx,
            reports_rx,
            ebpf_loading,
            pending_reload: None,
        };
        d.notifier = notifier_for(config, &plan)?;
        d.install(plan, Carried::default())?;
        Ok(d)
    }

    /// Creates routers, groups, senders and trackers for `plan`; what a
    /// reload carries over (running routers, groups, sockets, history) is
    /// reused instead of created.
    fn install(&mut self, plan: Plan, mut carry: Carried) -> Result<()> {
        let mut member_of: HashMap<usize, (usize, usize)> = HashMap::new();
        let mut routers: Vec<Option<Router>> = Vec::new();
        let mut kept_single: HashMap<usize, Box<Router>> = HashMap::new();
        for (n, ip) in plan.instances.iter().enumerate() {
            if let Some(r) = carry.singles.remove(&ip.name) {
                kept_single.insert(n, r);
                routers.push(None);
                continue;
            }
            let r = Router::new(ip.router.clone())
                .map_err(|e| anyhow::anyhow!("instance {}: {e}", ip.name))?;
            for w in r.warnings() {
                warn!("{}: {w:?}", ip.name);
            }
            routers.push(Some(r));
        }
        let mut units = Vec::new();
        for gp in &plan.groups {
            let unit = units.len();
            for (m, &i) in gp.members.iter().enumerate() {
                member_of.insert(i, (unit, m));
            }
            if let Some(g) = carry.groups.remove(&gp.name) {
                units.push(Unit::Group(g));
                continue;
            }
            let members: Vec<Router> = gp
                .members
                .iter()
                .filter_map(|&i| routers.get_mut(i).and_then(Option::take))
                .collect();
            units.push(Unit::Group(Box::new(
                SyncGroup::new(gp.name.clone(), members).map_err(|e| anyhow::anyhow!("{e}"))?,
            )));
            self.notifier
                .add(Subject::Group, &gp.name, gp.notify.clone());
        }
        let mut instances = Vec::new();
        let mut by_vrid = HashMap::new();
        for (i, ip) in plan.instances.iter().enumerate() {
            let (unit, member) = match member_of.get(&i) {
                Some(&um) => um,
                None => {
                    let r = match kept_single.remove(&i) {
                        Some(r) => r,
                        None => match routers.get_mut(i).and_then(Option::take) {
                            Some(r) => Box::new(r),
                            None => continue,
                        },
                    };
                    units.push(Unit::Single(r));
                    (units.len() - 1, 0)
                }
            };
            let old = carry.instances.remove(&ip.name);
            let reuse = old.as_ref().is_some_and(|o| {
                o.sender.as_ref().map(|s| s.source()) == Some(ip.source) && o.plan.dest == ip.dest
            });
            let sender = if reuse { None } else { Some(open_sender(ip)?) };
            if let std::collections::hash_map::Entry::Vacant(e) = self.garp.entry(ip.ifindex) {
                match GratuitousSender::new(ip.ifindex) {
                    Ok(g) => {
                        e.insert(Rc::new(g));
                    }
                    Err(err) => warn!("{}: no gratuitous ARP/NA on {}: {err}", ip.name, ip.ifname),
                }
            }
            self.notifier
                .add(Subject::Instance, &ip.name, ip.notify.clone());
            by_vrid.insert(ip.vrid.key, i);
            let labels = InstanceLabels::new(
                ip.name.clone(),
                ip.ifname.clone(),
                ip.router.vrid,
                ip.router.family,
            );
            let (sender, counters, history, metrics, effects) = match (old, sender) {
                (Some(o), None) => (o.sender, o.counters, o.history, o.metrics, o.effects),
                (Some(o), Some(s)) => (s, o.counters, o.history, o.metrics, o.effects),
                (None, s) => (
                    s.flatten(),
                    InstanceCounters::default(),
                    VecDeque::new(),
                    self.metrics.instance(labels),
                    None,
                ),
            };
            let effects = effects.or_else(|| {
                Some(EffectQueue::spawn(
                    ip.name.clone(),
                    self.vips.clone(),
                    self.reports_tx.clone(),
                ))
            });
            metrics.set_priorities(ip.router.priority, ip.router.priority);
            instances.push(Instance {
                plan: ip.clone(),
                unit,
                member,
                sender,
                counters,
                history,
                advert_cache: None,
                metrics,
                effects,
                pending_log: None,
            });
        }
        self.units = units;
        self.instances = instances;
        self.by_vrid = by_vrid;
        self.start_trackers(&plan)?;
        self.plan = plan;
        Ok(())
    }

    fn start_trackers(&mut self, plan: &Plan) -> Result<()> {
        for (sp, checked) in &plan.scripts {
            if self.trackers.iter().any(|(id, _)| *id == sp.id) {
                continue;
            }
            let mut cfg =
                tracker::script::ScriptTrackerConfig::new(sp.id, sp.name.clone(), checked.clone());
            cfg.interval = sp.interval;
            cfg.timeout = sp.timeout;
            cfg.rise = sp.rise;
            cfg.fall = sp.fall;
            cfg.init_fail = sp.init_fail;
            let handle = tracker::script::spawn(cfg, self.tracker_tx.clone());
            self.trackers.push((sp.id, handle));
        }
        self.start_process_monitor(plan);
        for fp in &plan.files {
            if self.trackers.iter().any(|(id, _)| *id == fp.id) {
                continue;
            }
            if let Some((value, overwrite)) = fp.init
                && let Err(e) = tracker::file::init_file(
                    &fp.path,
                    tracker::file::InitFile { value, overwrite },
                    self.reloads > 0,
                )
            {
                warn!("track_file {}: {e}", fp.name);
            }
            let cfg = tracker::file::FileTrackerConfig {
                id: fp.id,
                name: fp.name.clone(),
                path: fp.path.clone(),
                init: None,
            };
            match tracker::file::FileTracker::spawn(cfg, self.tracker_tx.clone()) {
                Ok(ft) => {
                    // The file's value at start is this tracker's first report.
                    let _ = self.tracker_tx.try_send(TrackerEvent {
                        id: fp.id,
                        state: TrackState::Value(i64::from(ft.initial)),
                        at_ns: monotonic_ns(),
                    });
                    self.trackers.push((fp.id, ft.handle));
                }
                Err(e) => warn!("track_file {}: {e}", fp.name),
            }
        }
        Ok(())
    }

    /// One monitor for every `vrrp_track_process`, as keepalived has one
    /// connector socket; restarted when the set changes.
    fn start_process_monitor(&mut self, plan: &Plan) {
        use tracker::process::{
            MonitorOptions, ParamMatch, ProcessMatch, ProcessMonitor, ProcessTrackerConfig,
        };
        // The monitor's handle is kept under the first process tracker's id.
        let Some(first) = plan.processes.first() else {
            return;
        };
        if self.trackers.iter().any(|(id, _)| *id == first.id) {
            return;
        }
        let cfgs: Vec<ProcessTrackerConfig> = plan
            .processes
            .iter()
            .map(|p| {
                let pm = match p.param_match.as_deref() {
                    Some("initial") => Some(ParamMatch::Initial),
                    Some("partial") => Some(ParamMatch::Partial),
                    _ => None,
                };
                let mut c = ProcessTrackerConfig::new(
                    p.id,
                    p.name.clone(),
                    ProcessMatch::new(&p.process, &p.params, pm, p.full_command),
                );
                c.quorum = p.quorum;
                c.quorum_max = p.quorum_max;
                c.fork_delay = p.fork_delay;
                c.terminate_delay = p.terminate_delay;
                c
            })
            .collect();
        match ProcessMonitor::spawn(cfgs, self.tracker_tx.clone(), MonitorOptions::default()) {
            Ok(m) => {
                for (id, state) in m.initial {
                    let _ = self.tracker_tx.try_send(TrackerEvent {
                        id,
                        state,
                        at_ns: monotonic_ns(),
                    });
                }
                self.trackers.push((first.id, m.handle));
            }
            Err(e) => warn!("vrrp_track_process: {e}"),
        }
    }

    /// Feeds one input to the instance's router (or group) and runs the actions.
    async fn feed(&mut self, inst: InstanceId, now: u64, input: Input) {
        let mut out: Vec<(InstanceId, Action)> = Vec::new();
        let mut group_notifies = Vec::new();
        self.decide(inst, now, input, &mut out, &mut group_notifies);
        self.execute(out).await;
        self.notify_groups(group_notifies);
    }

    /// Runs `input` through the instance's state machine (or its sync
    /// group's); the actions and group notifies are appended, not executed.
    fn decide(
        &mut self,
        inst: InstanceId,
        now: u64,
        input: Input,
        out: &mut Vec<(InstanceId, Action)>,
        group_notifies: &mut Vec<GroupNotify>,
    ) {
        let Some(i) = self.instances.get(inst) else {
            return;
        };
        let (unit, member) = (i.unit, i.member);
        match self.units.get_mut(unit) {
            Some(Unit::Single(r)) => {
                out.extend(r.handle(now, input).into_iter().map(|a| (inst, a)));
            }
            Some(Unit::Group(g)) => {
                for sa in g.handle(now, member, input) {
                    match sa {
                        SyncAction::Member { index, action } => {
                            if let Some(id) = instance_at(&self.instances, unit, index) {
                                out.push((id, action));
                            }
                        }
                        SyncAction::GroupNotify { from, to } => {
                            group_notifies.push((g.name().to_string(), from, to))
                        }
                    }
                }
            }
            None => {}
        }
    }

    fn notify_groups(&mut self, group_notifies: Vec<GroupNotify>) {
        for (name, _from, to) in group_notifies {
            info!("sync group {name}: now {}", to.keepalived_name());
            self.notifier
                .state_change(Subject::Group, &name, notify_state(to), 0);
        }
    }

    /// Runs actions in order. Adverts, timers and notifies happen here;
    /// VIP and GARP/NA effects go to the instance's queue, whose reports
    /// complete the timeline and release the transition's log line.
    async fn execute(&mut self, actions: Vec<(InstanceId, Action)>) {
        // Adverts first: taking over is announced on the wire before the
        // bookkeeping of the transition (record, metrics, log) that the
        // state machine lists ahead of it. Nothing below depends on them.
        for (inst, action) in &actions {
            if let Action::SendAdvert {
                priority,
                interval_cs,
            } = action
            {
                self.send_advert(*inst, *priority, *interval_cs);
            }
        }
        for (inst, action) in actions {
            match action {
                Action::Transition(t) => {
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
                Action::SendAdvert { .. } => {}
                Action::AddVips => {
                    let vips = self.all_vips(inst);
                    self.push_effect(inst, Effect::AddVips(vips));
                }
                Action::RemoveVips => {
                    let vips = self.all_vips(inst);
                    self.push_effect(inst, Effect::RemoveVips(vips));
                }
                Action::UpdateVips { added, removed } => {
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
                    if let Some(effect) = self.gratuitous(inst, count, spacing_ns) {
                        self.push_effect(inst, effect);
                    }
                }
                Action::Notify { from: _, to } => {
                    let prio = self.router(inst).map(|r| r.priority()).unwrap_or(0);
                    let name = self.name(inst).to_string();
                    self.notifier
                        .state_change(Subject::Instance, &name, notify_state(to), prio);
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
                    let key = format!("{reason:?}");
                    let key = key
                        .split([' ', '{', '('])
                        .next()
                        .unwrap_or("other")
                        .to_string();
                    debug!("{}: advert discarded: {reason:?}", self.name(inst));
                    if let Some(i) = self.instances.get_mut(inst) {
                        *i.counters.discarded.entry(key).or_default() += 1;
                        i.metrics.discarded(&reason);
                    }
                }
                Action::Event(ev) => {
                    info!("{}: {ev:?}", self.name(inst));
                    if let crate::vrrp::Event::PriorityChanged { to, .. } = ev
                        && let Some(i) = self.instances.get(inst)
                    {
                        i.metrics.set_effective_priority(to);
                    }
                    if let crate::vrrp::Event::MasterRxLowerPriority { .. } = ev {
                        // keepalived reports its own effective priority here,
                        // not the received one.
                        let own = self.router(inst).map(|r| r.priority()).unwrap_or(0);
                        let name = self.name(inst).to_string();
                        self.notifier.master_rx_lower_pri(&name, own);
                    }
                }
                Action::ReloadRejected(e) => {
                    error!(
                        "{}: reload refused, keeping the running configuration: {e}",
                        self.name(inst)
                    )
                }
                Action::SyncWantMaster => {}
            }
        }
        for inst in 0..self.instances.len() {
            if matches!(self.instances[inst].pending_log, Some((_, 0))) {
                self.flush_log(inst);
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
        if let Some(q) = &i.effects {
            q.push(at, effect);
        }
    }

    /// Logs the instance's pending transition line now.
    fn flush_log(&mut self, inst: InstanceId) {
        let Some((at, _)) = self
            .instances
            .get_mut(inst)
            .and_then(|i| i.pending_log.take())
        else {
            return;
        };
        if let Some(idx) = self.instances[inst]
            .history
            .iter()
            .rposition(|t| t.at_ns == at)
        {
            self.log_transition(inst, idx);
        }
    }

    /// An effect finished: its time goes into the transition's timeline.
    fn on_report(&mut self, r: Report) {
        let Some(inst) = self
            .instances
            .iter()
            .position(|i| i.plan.name == r.instance)
        else {
            return;
        };
        let i = &mut self.instances[inst];
        let Some(t) = i
            .history
            .iter_mut()
            .rev()
            .find(|t| t.at_ns == r.transition_at_ns)
        else {
            return;
        };
        match r.done {
            Done::Vips => {
                if t.vips_done_ns.is_none() {
                    t.vips_done_ns = Some(r.at_ns);
                    if t.to == "MASTER"
                        && let Some(d) = t.deadline_ns
                    {
                        i.metrics.failover_vips_added(d, r.at_ns);
                    }
                }
            }
            Done::Gratuitous(Some(first)) => {
                if t.first_garp_ns.is_none() {
                    t.first_garp_ns = Some(first);
                    if let Some(d) = t.deadline_ns {
                        i.metrics.failover_first_garp(d, first);
                    }
                }
            }
            Done::Gratuitous(None) => {}
        }
        if let Some((at, n)) = &mut i.pending_log
            && *at == r.transition_at_ns
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.flush_log(inst);
            }
        }
    }

    /// Runs every queued effect to its end (shutdown, removed instances).
    async fn finish_effects(&mut self, which: impl Fn(&Instance) -> bool) {
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

    fn name(&self, inst: InstanceId) -> &str {
        self.instances
            .get(inst)
            .map(|i| i.plan.name.as_str())
            .unwrap_or("?")
    }

    fn router(&self, inst: InstanceId) -> Option<&Router> {
        let i = self.instances.get(inst)?;
        match self.units.get(i.unit)? {
            Unit::Single(r) => Some(r),
            Unit::Group(g) => g.member(i.member),
        }
    }

    fn all_vips(&self, inst: InstanceId) -> Vec<Vip> {
        self.instances
            .get(inst)
            .map(|i| {
                i.plan
                    .vips
                    .iter()
                    .chain(&i.plan.excluded)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn record_transition(&mut self, inst: InstanceId, t: &Transition) -> usize {
        let Some(i) = self.instances.get_mut(inst) else {
            return 0;
        };
        i.counters.transitions += 1;
        if i.history.len() == HISTORY {
            i.history.pop_front();
        }
        i.history.push_back(TransitionRecord {
            from: t.from.keepalived_name().into(),
            to: t.to.keepalived_name().into(),
            reason: format!("{:?}", t.reason),
            at_ns: t.at_ns,
            last_advert_ns: t.last_advert_ts_ns,
            deadline_ns: t.deadline_ns,
            fired_at_ns: t.fired_at_ns,
            vips_done_ns: None,
            first_garp_ns: None,
            priority: t.priority,
            master_address: t.master_addr.map(|a| a.to_string()),
            master_priority: t.master_priority,
        });
        i.history.len() - 1
    }

    /// One line per transition: what happened, why, and how long each step took.
    fn log_transition(&self, inst: InstanceId, idx: usize) {
        let Some(t) = self.instances.get(inst).and_then(|i| i.history.get(idx)) else {
            return;
        };
        let mut line = format!("{}: {} → {}", self.name(inst), t.from, t.to);
        match (
            t.reason.as_str(),
            t.last_advert_ns,
            t.deadline_ns,
            t.fired_at_ns,
        ) {
            ("MasterDown", _, Some(deadline), Some(fired))
                if t.master_priority.is_some_and(|p| p < t.priority && p > 0) =>
            {
                line.push_str(&format!(
                    ": preempts {} (priority {} < {}) (deadline +{})",
                    t.master_address.as_deref().unwrap_or("the master"),
                    t.master_priority.unwrap_or(0),
                    t.priority,
                    us(fired.saturating_sub(deadline))
                ))
            }
            ("MasterDown", Some(last), Some(deadline), Some(fired))
                if t.master_priority == Some(0) =>
            {
                line.push_str(&format!(
                    ": {} left (priority 0) {} ago (deadline +{})",
                    t.master_address.as_deref().unwrap_or("the master"),
                    us(fired.saturating_sub(last)),
                    us(fired.saturating_sub(deadline))
                ))
            }
            ("MasterDown", Some(last), Some(deadline), Some(fired)) => line.push_str(&format!(
                ": no advert from {} for {} (deadline +{})",
                t.master_address.as_deref().unwrap_or("the master"),
                us(fired.saturating_sub(last)),
                us(fired.saturating_sub(deadline))
            )),
            (reason, ..) => line.push_str(&format!(": {reason}")),
        }
        if let Some(v) = t.vips_done_ns {
            let verb = if t.to == "MASTER" { "added" } else { "removed" };
            line.push_str(&format!(
                "; VIPs {verb} in {}",
                us(v.saturating_sub(t.at_ns))
            ));
        }
        if let Some(g) = t.first_garp_ns {
            line.push_str(&format!(
                "; GARP sent after {}",
                us(g.saturating_sub(t.at_ns))
            ));
        }
        info!("{line}");
    }

    fn send_advert(&mut self, inst: InstanceId, priority: u8, interval_cs: u16) {
        let Some(router_vips) = self.router(inst).map(|r| {
            let c = r.config();
            (c.version, c.vrid, c.auth, c.vips.clone())
        }) else {
            return;
        };
        let Some(i) = self.instances.get_mut(inst) else {
            return;
        };
        let key = (priority, interval_cs);
        if i.advert_cache.as_ref().is_none_or(|(k, _)| *k != key) {
            let (version, vrid, auth, vips) = router_vips;
            let advert = Advert {
                version,
                vrid,
                priority,
                interval_cs,
                addrs: vips,
                auth: if version == Version::V2 {
                    auth
                } else {
                    Auth::None
                },
            };
            let Some(sender) = &i.sender else {
                return;
            };
            match packet::encode(
                &advert,
                sender.source(),
                sender.encode_destination(),
                i.plan.checksum,
            ) {
                Ok(bytes) => i.advert_cache = Some((key, bytes)),
                Err(e) => {
                    error!("{}: cannot encode advert: {e}", i.plan.name);
                    return;
                }
            }
        }
        if let (Some((_, bytes)), Some(sender)) = (&i.advert_cache, &i.sender) {
            match sender.send(bytes) {
                Ok(_) => {
                    i.counters.adverts_sent += 1;
                    i.metrics.advert_sent();
                    if priority == 0 {
                        i.counters.priority_zero_sent += 1;
                    }
                }
                Err(e) => warn!("{}: sending advert: {e}", i.plan.name),
            }
        }
    }

    /// The GARP/NA batch for every VIP of the instance (link-local IPv6
    /// addresses are not announced).
    fn gratuitous(&self, inst: InstanceId, count: u32, spacing_ns: u64) -> Option<Effect> {
        let i = self.instances.get(inst)?;
        let sender = self.garp.get(&i.plan.ifindex)?.clone();
        let addrs: Vec<IpAddr> = i
            .plan
            .vips
            .iter()
            .chain(&i.plan.excluded)
            .map(|v| v.addr)
            .filter(|a| !matches!(a, IpAddr::V6(v6) if crate::net::addr::is_ipv6_link_local(v6)))
            .collect();
        Some(Effect::Gratuitous {
            sender,
            addrs,
            count,
            spacing: Duration::from_nanos(spacing_ns),
        })
    }

    /// Valid adverts from the datapath, in arrival order.
    async fn on_adverts(&mut self, events: &[AdvertEvent]) {
        for ev in events {
            let key = VridKey::new(ev.ifindex, ev.family, ev.vrid);
            let Some(&inst) = self.by_vrid.get(&key) else {
                continue;
            };
            let ipv4 = ev.family == FAMILY_IPV4;
            let src = if ipv4 {
                IpAddr::from([ev.src[0], ev.src[1], ev.src[2], ev.src[3]])
            } else {
                IpAddr::from(ev.src)
            };
            let version = if ev.version == 2 {
                Version::V2
            } else {
                Version::V3
            };
            let advert = Advert {
                version,
                vrid: ev.vrid,
                priority: ev.priority,
                interval_cs: ev.interval_cs,
                addrs: packet::parse_addrs(
                    &ev.addrs[..usize::from(ev.addr_bytes).min(ev.addrs.len())],
                    ipv4,
                ),
                auth: Auth::from_wire(ev.auth_type, ev.auth_data),
            };
            if let Some(i) = self.instances.get_mut(inst) {
                i.counters.adverts_received += 1;
                i.metrics.advert_received();
                if ev.priority == 0 {
                    i.counters.priority_zero_received += 1;
                }
            }
            let meta = AdvertMeta {
                ts_ns: ev.ts_ns,
                src,
                ttl: ev.ttl,
                unicast: ev.flags & EVENT_FLAG_UNICAST != 0,
            };
            let now = monotonic_ns();
            self.feed(inst, now, Input::Advert(ReceivedAdvert { meta, advert }))
                .await;
        }
    }

    /// Timers due now. Adverts already in the datapath go first: one that
    /// arrived before the deadline must win over the deadline.
    async fn on_timers(&mut self) {
        let mut evs = Vec::new();
        // Woken early for a down timer: spin to its deadline, still taking
        // adverts as they come (one re-arms the timer and ends the spin).
        let started = monotonic_ns();
        loop {
            evs.clear();
            if let Err(e) = self.datapath.drain(&mut evs) {
                warn!("datapath: {e}");
            }
            if !evs.is_empty() {
                self.on_adverts(&evs).await;
            }
            let now = monotonic_ns();
            match self.timers.spin_target(now) {
                Some(d) if now.saturating_sub(started) < MAX_SPIN_NS => {
                    let until = d.min(now + 20_000);
                    while monotonic_ns() < until {
                        std::hint::spin_loop();
                    }
                }
                _ => break,
            }
        }
        let mut due = Vec::new();
        if let Err(e) = self.timers.pop_due(monotonic_ns(), &mut due) {
            error!("timers: {e}");
        }
        // Every due timer is decided before any is executed: the adverts
        // of all instances that take over together go out first, ahead of
        // the bookkeeping of each take-over.
        let mut out = Vec::new();
        let mut group_notifies = Vec::new();
        for ((inst, kind), deadline) in due {
            let now = monotonic_ns();
            debug!(
                "{}: {kind:?} timer handled {} ns after its deadline",
                self.name(inst),
                now.saturating_sub(deadline)
            );
            self.decide(
                inst,
                now,
                Input::TimerFired(kind),
                &mut out,
                &mut group_notifies,
            );
        }
        self.execute(out).await;
        self.notify_groups(group_notifies);
    }

    async fn on_tracker(&mut self, ev: TrackerEvent) {
        let TrackerEvent { id, state, .. } = ev;
        let targets: Vec<InstanceId> = self
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.plan.router.trackers.iter().any(|t| t.id == id))
            .map(|(n, _)| n)
            .collect();
        for inst in targets {
            self.feed(inst, ev.at_ns.max(1), Input::Track { id, state })
                .await;
        }
    }

    /// An address came or went on `ifindex`: instances that take their
    /// source from the interface follow it (FAULT while there is none).
    async fn on_addresses(&mut self, ifindex: u32) {
        let waiting: Vec<InstanceId> = (0..self.instances.len())
            .filter(|&i| {
                let p = &self.instances[i].plan;
                p.ifindex == ifindex && p.source_tracker.is_some()
            })
            .collect();
        for inst in waiting {
            let (family, current, tracker) = {
                let p = &self.instances[inst].plan;
                (p.router.family, p.source, p.source_tracker)
            };
            let Some(tracker) = tracker else { continue };
            let found = plan::auto_source(family, self.link.addrs(ifindex));
            let now = monotonic_ns();
            match found {
                Some(src) if src != current || self.instances[inst].sender.is_none() => {
                    let mut ip = self.instances[inst].plan.clone();
                    ip.source = src;
                    ip.router.primary_addr = src;
                    // Not yet usable (e.g. still tentative): the next address
                    // event tries again.
                    let sender = match open_sender(&ip) {
                        Ok(Some(s)) => s,
                        Ok(None) => continue,
                        Err(e) => {
                            debug!("{e:#}");
                            continue;
                        }
                    };
                    info!("{}: source address {src} on {}", ip.name, ip.ifname);
                    let cfg = ip.router.clone();
                    if let Some(i) = self.instances.get_mut(inst) {
                        i.sender = Some(sender);
                        i.plan = ip;
                        i.advert_cache = None;
                    }
                    self.feed(inst, now, Input::Reload(Box::new(cfg))).await;
                    self.feed(
                        inst,
                        now,
                        Input::Track {
                            id: tracker,
                            state: TrackState::Up,
                        },
                    )
                    .await;
                }
                None if self.instances[inst].sender.is_some() => {
                    warn!(
                        "{}: no source address left on {}",
                        self.instances[inst].plan.name, self.instances[inst].plan.ifname
                    );
                    if let Some(i) = self.instances.get_mut(inst) {
                        i.sender = None;
                    }
                    self.feed(
                        inst,
                        now,
                        Input::Track {
                            id: tracker,
                            state: TrackState::Down,
                        },
                    )
                    .await;
                }
                _ => {}
            }
        }
    }

    async fn on_link(&mut self, ev: NetEvent) {
        let (ifindex, up) = match ev {
            NetEvent::Link(l) => (l.ifindex, l.up),
            NetEvent::LinkRemoved { ifindex, .. } => (ifindex, false),
            NetEvent::Addr(a) | NetEvent::AddrRemoved(a) => {
                self.on_addresses(a.ifindex).await;
                return;
            }
            NetEvent::Synced => return,
        };
        let ids: Vec<u32> = self
            .plan
            .interfaces
            .iter()
            .filter(|(_, idx)| **idx == ifindex)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let state = if up { TrackState::Up } else { TrackState::Down };
            let targets: Vec<InstanceId> = self
                .instances
                .iter()
                .enumerate()
                .filter(|(_, i)| i.plan.router.trackers.iter().any(|t| t.id.0 == id))
                .map(|(n, _)| n)
                .collect();
            for inst in targets {
                let now = monotonic_ns();
                self.feed(
                    inst,
                    now,
                    Input::Track {
                        id: TrackerId(id),
                        state,
                    },
                )
                .await;
            }
        }
    }

    async fn startup(&mut self) {
        for unit in 0..self.units.len() {
            self.start_unit(unit).await;
        }
    }

    async fn start_unit(&mut self, unit: usize) {
        let now = monotonic_ns();
        {
            let mut out = Vec::new();
            match self.units.get_mut(unit) {
                Some(Unit::Single(r)) => {
                    let inst = self.instances.iter().position(|i| i.unit == unit);
                    if let Some(inst) = inst {
                        out.extend(r.handle(now, Input::Startup).into_iter().map(|a| (inst, a)));
                    }
                }
                Some(Unit::Group(g)) => {
                    let mut sa = Vec::new();
                    g.startup(now, &mut sa);
                    for a in sa {
                        if let SyncAction::Member { index, action } = a
                            && let Some(id) = instance_at(&self.instances, unit, index)
                        {
                            out.push((id, action));
                        }
                    }
                }
                None => {}
            }
            self.execute(out).await;
        }
    }

    /// The eBPF programs are verified: attach them and leave the raw
    /// sockets (or stay on them, saying why).
    async fn on_ebpf_loaded(&mut self, r: Result<Box<PreparedEbpf>, String>) {
        if let Some((_, loader)) = self.ebpf_loading.take() {
            let _ = loader.join();
        }
        let specs: Vec<_> = self.plan.instances.iter().map(|i| i.vrid.clone()).collect();
        let mut queued = Vec::new();
        let result = r.and_then(|prepared| {
            self.datapath
                .upgrade(*prepared, &specs, &mut queued)
                .map_err(|e| e.to_string())
        });
        match result {
            Ok(()) => {
                for (ifname, mode) in self.datapath.attachments() {
                    info!("datapath: eBPF attached to {ifname} as {mode}");
                }
            }
            Err(e) => {
                warn!("datapath: staying on raw sockets: {e}");
                self.datapath.fallback_reason = Some(e);
            }
        }
        self.on_adverts(&queued).await;
        self.datapath_settled();
    }

    /// The datapath is final: drop what only loading eBPF needed, tell
    /// systemd we are ready.
    fn datapath_settled(&mut self) {
        // Capabilities are per thread: this runs once the loader thread is gone.
        match crate::control::privileges::drop_after_attach() {
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
    fn handover_linger(&self) -> Duration {
        let max_cs = (0..self.instances.len())
            .filter_map(|i| self.router(i))
            .filter(|r| r.state() == State::Master)
            .map(|r| r.master_adver_int_cs())
            .max()
            .unwrap_or(0);
        Duration::from_millis(u64::from(max_cs) * 30).min(Duration::from_secs(1))
    }

    /// SIGTERM: masters send priority 0 and drop their VIPs; then exit.
    async fn shutdown(&mut self) {
        for inst in 0..self.instances.len() {
            self.feed(inst, monotonic_ns(), Input::Shutdown).await;
        }
        // The VIPs are gone before we go.
        self.finish_effects(|_| true).await;
        for (_, h) in self.trackers.drain(..) {
            h.shutdown(Duration::from_secs(1)).await;
        }
    }

    /// SIGHUP: a bad file keeps the running configuration. Otherwise only
    /// the differences are applied: instances that stay keep their state
    /// machine, sockets and timers and get the new configuration in place (no
    /// flap, no GARP unless something they announce changed); removed ones
    /// leave as on SIGTERM; new ones start.
    /// Starts reading and planning the new configuration off the loop:
    /// parsing, script checks and interface queries take time the running
    /// instances' adverts cannot wait for.
    fn start_reload(&mut self) {
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
                Ok(loaded) => match plan::build(&loaded.config, &mut ids).await {
                    Ok(p) => Ok(Box::new((loaded, p, ids))),
                    Err(e) => Err(e.to_string()),
                },
            };
            let _ = tx.send(result);
        });
        self.pending_reload = Some(rx);
    }

    async fn reload(&mut self, prepared: PreparedReload) {
        let (loaded, new_plan, ids) = match prepared {
            Ok(p) => *p,
            Err(e) => {
                error!("reload refused, keeping the running configuration:\n{e}");
                return;
            }
        };
        for w in &loaded.warnings {
            warn!("{w}");
        }
        self.ids = ids;
        // Refuse what would not start before touching anything running.
        for ip in &new_plan.instances {
            if let Err(e) = Router::new(ip.router.clone()) {
                error!(
                    "reload refused, keeping the running configuration: instance {}: {e}",
                    ip.name
                );
                return;
            }
        }
        self.reloads += 1;
        let group_members = |plan: &Plan, name: &str| -> Option<Vec<String>> {
            plan.groups.iter().find(|g| g.name == name).map(|g| {
                g.members
                    .iter()
                    .filter_map(|&i| plan.instances.get(i).map(|p| p.name.clone()))
                    .collect()
            })
        };
        // An instance stays when its identity and its sync group (with the
        // same members) are unchanged.
        let stays = |old: &InstancePlan, new_plan: &Plan| -> bool {
            new_plan.instances.iter().any(|n| {
                n.identity() == old.identity()
                    && n.sync_group == old.sync_group
                    && match &old.sync_group {
                        None => true,
                        Some(g) => group_members(&self.plan, g) == group_members(new_plan, g),
                    }
            })
        };
        let leaving: Vec<InstanceId> = (0..self.instances.len())
            .filter(|&i| !stays(&self.instances[i].plan, &new_plan))
            .collect();
        for &inst in &leaving {
            info!(
                "reload: {} is no longer configured: leaving",
                self.name(inst)
            );
            self.feed(inst, monotonic_ns(), Input::Shutdown).await;
            let key = self.instances[inst].plan.vrid.key;
            if let Err(e) = self.datapath.remove_vrid(&key) {
                warn!("reload: datapath: {e}");
            }
        }
        let names: Vec<String> = leaving
            .iter()
            .map(|&i| self.instances[i].plan.name.clone())
            .collect();
        self.finish_effects(|i| names.contains(&i.plan.name)).await;
        // Timers of staying instances move to their new index.
        let mut pending = Vec::new();
        for inst in 0..self.instances.len() {
            for kind in TimerKind::ALL {
                if let Some(at) = self.timers.deadline((inst, kind)) {
                    let _ = self.timers.cancel((inst, kind));
                    if !leaving.contains(&inst) {
                        pending.push((self.instances[inst].plan.name.clone(), kind, at));
                    }
                }
            }
        }
        let mut carry = Carried::default();
        let old_plan = std::mem::replace(&mut self.plan, new_plan.clone());
        let mut units: Vec<Option<Unit>> = std::mem::take(&mut self.units)
            .into_iter()
            .map(Some)
            .collect();
        let mut changed = Vec::new();
        for (n, inst) in std::mem::take(&mut self.instances).into_iter().enumerate() {
            if leaving.contains(&n) {
                continue;
            }
            match units.get_mut(inst.unit).and_then(Option::take) {
                Some(Unit::Single(r)) => {
                    carry.singles.insert(inst.plan.name.clone(), r);
                }
                Some(Unit::Group(g)) => {
                    carry.groups.insert(g.name().to_string(), g);
                }
                None => {}
            }
            if let Some(np) = new_plan.instances.iter().find(|p| p.name == inst.plan.name)
                && !same_router_config(&np.router, &inst.plan.router)
            {
                changed.push(np.name.clone());
            }
            carry.instances.insert(inst.plan.name.clone(), inst);
        }
        let kept: Vec<String> = carry.instances.keys().cloned().collect();
        match notifier_for(&loaded.config, &new_plan) {
            Ok(n) => {
                let old = std::mem::replace(&mut self.notifier, n);
                tokio::task::spawn_local(old.shutdown(Duration::from_secs(2)));
            }
            Err(e) => error!("reload: notify: {e}"),
        }
        // Trackers no longer configured stop; new ones start.
        let wanted: Vec<TrackerId> = new_plan
            .scripts
            .iter()
            .map(|(s, _)| s.id)
            .chain(new_plan.files.iter().map(|f| f.id))
            .collect();
        let mut running = std::mem::take(&mut self.trackers);
        for (id, h) in std::mem::take(&mut running) {
            let same = |p: &Plan| {
                p.scripts
                    .iter()
                    .find(|(s, _)| s.id == id)
                    .map(|(s, _)| s.clone())
            };
            if wanted.contains(&id) && same(&old_plan) == same(&new_plan) {
                self.trackers.push((id, h));
            } else {
                tokio::task::spawn_local(h.shutdown(Duration::from_secs(1)));
            }
        }
        if let Err(e) = self.install(new_plan.clone(), carry) {
            error!("reload failed: {e}");
            return;
        }
        for ip in &new_plan.instances {
            if !kept.contains(&ip.name)
                && let Err(e) = self.datapath.set_vrid(&ip.vrid)
            {
                error!("reload: datapath for {}: {e}", ip.name);
            }
        }
        for (name, kind, at) in pending {
            if let Some(inst) = self.instances.iter().position(|i| i.plan.name == name) {
                let _ = self.timers.arm_early((inst, kind), at, spin_lead(kind));
            }
        }
        let now = monotonic_ns();
        for name in &changed {
            if let Some(inst) = self.instances.iter().position(|i| &i.plan.name == name) {
                let cfg = self.instances[inst].plan.router.clone();
                self.feed(inst, now, Input::Reload(Box::new(cfg))).await;
            }
        }
        // New instances (and members of new groups) start now.
        let mut started_units = Vec::new();
        for inst in 0..self.instances.len() {
            let i = &self.instances[inst];
            if kept.contains(&i.plan.name) || started_units.contains(&i.unit) {
                continue;
            }
            started_units.push(i.unit);
            self.start_unit(i.unit).await;
        }
        let _ = systemd::ready_with_status(&format!("{} instance(s)", self.instances.len()));
        info!(
            "reloaded {}: {} kept ({} changed), {} left, {} new",
            self.opts.config.display(),
            kept.len(),
            changed.len(),
            leaving.len(),
            started_units.len()
        );
    }

    fn status(&self) -> StatusReport {
        let counters = self.datapath.counters();
        let mut dp = std::collections::BTreeMap::new();
        for c in Counter::ALL {
            dp.insert(c.name().to_string(), counters[c as usize]);
        }
        let instances = self
            .instances
            .iter()
            .enumerate()
            .map(|(n, i)| {
                let r = self.router(n);
                let (master_addr, master_prio) = r.map(|r| r.master()).unwrap_or((None, None));
                let state = r.map(|r| r.state()).unwrap_or(State::Initialize);
                let (master_address, master_priority) = if state == State::Master {
                    (Some(i.plan.source.to_string()), r.map(|r| r.priority()))
                } else {
                    (master_addr.map(|a| a.to_string()), master_prio)
                };
                status::InstanceStatus {
                    name: i.plan.name.clone(),
                    state: state.keepalived_name().into(),
                    interface: i.plan.ifname.clone(),
                    vrid: i.plan.router.vrid,
                    family: family_word(i.plan.router.family).into(),
                    version: i.plan.router.version.number(),
                    base_priority: r.map(|r| r.base_priority()).unwrap_or(0),
                    effective_priority: r.map(|r| r.priority()).unwrap_or(0),
                    master_address,
                    master_priority,
                    advert_int_cs: r.map(|r| r.master_adver_int_cs()).unwrap_or(0),
                    master_down_interval_ns: r.map(|r| r.master_down_ns()).unwrap_or(0),
                    vips: i
                        .plan
                        .vips
                        .iter()
                        .map(|v| format!("{}/{}", v.addr, v.prefix_len))
                        .collect(),
                    trackers: i
                        .plan
                        .tracker_names
                        .iter()
                        .map(|(id, name, kind)| status::TrackerStatus {
                            name: name.clone(),
                            kind: (*kind).into(),
                            state: r
                                .and_then(|r| r.tracker_state(*id))
                                .map(|s| match s {
                                    TrackState::Up => "up".to_string(),
                                    TrackState::Down => "down".to_string(),
                                    TrackState::Value(v) => v.to_string(),
                                })
                                .unwrap_or_else(|| "unknown".into()),
                            weight: i
                                .plan
                                .router
                                .trackers
                                .iter()
                                .find(|t| t.id == *id)
                                .map(|t| t.weight)
                                .unwrap_or(0),
                            reverse: i
                                .plan
                                .router
                                .trackers
                                .iter()
                                .find(|t| t.id == *id)
                                .is_some_and(|t| t.reverse),
                        })
                        .collect(),
                    counters: i.counters.clone(),
                    transitions: i.history.iter().cloned().collect(),
                }
            })
            .collect();
        let sync_groups = self
            .units
            .iter()
            .enumerate()
            .filter_map(|(u, unit)| match unit {
                Unit::Group(g) => Some(status::SyncGroupStatus {
                    name: g.name().to_string(),
                    state: g.state().keepalived_name().into(),
                    members: self
                        .instances
                        .iter()
                        .filter(|i| i.unit == u)
                        .map(|i| i.plan.name.clone())
                        .collect(),
                }),
                Unit::Single(_) => None,
            })
            .collect();
        StatusReport {
            schema: status::SCHEMA_VERSION,
            daemon: status::DaemonStatus {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").into(),
                config_file: self.opts.config.display().to_string(),
                datapath: match self.datapath.kind() {
                    crate::datapath::DatapathKind::Ebpf => "ebpf".into(),
                    crate::datapath::DatapathKind::RawSocket => "raw-socket".into(),
                },
                datapath_fallback_reason: self.datapath.fallback_reason.clone(),
                attachments: self
                    .datapath
                    .attachments()
                    .into_iter()
                    .map(|(interface, mode)| status::Attachment {
                        interface,
                        mode: serde_json::to_value(mode)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                    })
                    .collect(),
                uptime_s: self.started.elapsed().as_secs_f64(),
                reloads: self.reloads,
            },
            instances,
            sync_groups,
            datapath_counters: dp,
        }
    }

    /// Runs until SIGTERM/SIGINT.
    pub async fn run(mut self) -> Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        if !self.plan.startup_delay.is_zero() {
            info!("waiting vrrp_startup_delay {:?}", self.plan.startup_delay);
            tokio::time::sleep(self.plan.startup_delay).await;
        }
        self.startup().await;
        info!(
            "xvrrpd {} running {} instance(s) from {}",
            env!("CARGO_PKG_VERSION"),
            self.instances.len(),
            self.opts.config.display()
        );
        if self.ebpf_loading.is_none() {
            self.datapath_settled();
        }
        // Housekeeping on tokio's timer (ms precision is plenty): the
        // datapath snapshot for metrics and the systemd watchdog, sent from
        // the loop itself so a stuck loop stops petting it.
        let period = systemd::watchdog_interval()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let mut housekeeping = tokio::time::interval(period);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events = Vec::with_capacity(64);
        loop {
            events.clear();
            let wake = tokio::select! {
                biased;
                _ = term.recv() => Wake::Terminate("SIGTERM"),
                _ = int.recv() => Wake::Terminate("SIGINT"),
                r = self.timers.expired() => Wake::Timers(r),
                r = self.datapath.recv(&mut events) => Wake::Adverts(r),
                e = self.tracker_rx.recv() => Wake::Tracker(e),
                e = self.link.next() => Wake::Net(e),
                _ = hup.recv() => Wake::Reload,
                r = self.control_rx.recv() => Wake::Control(r),
                _ = housekeeping.tick() => Wake::Housekeeping,
                r = self.reports_rx.recv() => Wake::Effect(r),
                r = prepared_reload(&mut self.pending_reload) => Wake::Reloaded(r),
                r = ebpf_loaded(&mut self.ebpf_loading) => Wake::EbpfLoaded(r),
            };
            // Every timer this event moves is set on the timerfd once, at the end.
            self.timers.batch();
            match wake {
                Wake::Effect(Some(r)) => self.on_report(r),
                Wake::Effect(None) => {}
                Wake::Housekeeping => {
                    self.metrics
                        .set_datapath(DatapathSnapshot::of(&self.datapath));
                    let _ = systemd::watchdog();
                }
                Wake::Terminate(sig) => {
                    info!("{sig}: leaving: masters hand over with priority 0");
                    let _ = systemd::stopping();
                    let linger = self.handover_linger();
                    self.shutdown().await;
                    // Stay attached while the successor takes over (within
                    // its skew, under one interval): tearing the datapath
                    // down takes the kernel's RTNL lock, and on a shared
                    // kernel (containers, labs) that would delay the new
                    // master adding its VIPs.
                    if !linger.is_zero() {
                        tokio::time::sleep(linger).await;
                    }
                    break;
                }
                Wake::Timers(Ok(())) => self.on_timers().await,
                Wake::Timers(Err(e)) => error!("timerfd: {e}"),
                Wake::Adverts(Ok(_)) => {
                    let evs = std::mem::take(&mut events);
                    self.on_adverts(&evs).await;
                    events = evs;
                }
                Wake::Adverts(Err(e)) => {
                    error!("datapath: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Wake::Tracker(Some(ev)) => self.on_tracker(ev).await,
                Wake::Tracker(None) => {}
                Wake::Net(Ok(ev)) => self.on_link(ev).await,
                Wake::Net(Err(e)) => {
                    warn!("link watch: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Wake::Reload => self.start_reload(),
                Wake::EbpfLoaded(r) => self.on_ebpf_loaded(r).await,
                Wake::Reloaded(prepared) => {
                    self.pending_reload = None;
                    self.reload(prepared).await;
                }
                Wake::Control(Some(Request::Status(reply))) => {
                    let _ = reply.send(self.status());
                }
                Wake::Control(None) => {}
            }
            if let Err(e) = self.timers.flush() {
                error!("timerfd: {e}");
            }
        }
        let notifier = std::mem::replace(
            &mut self.notifier,
            Notifier::new(Vec::new(), NotifierOptions::default()),
        );
        notifier.shutdown(Duration::from_secs(2)).await;
        let _ = std::fs::remove_file(&self.opts.control_socket);
        Ok(())
    }
}

/// A sync group's state change, notified once its members' actions ran:
/// (group name, from, to).
type GroupNotify = (String, State, State);

/// Equal but for the trackers' assumed initial states, which only matter
/// before a tracker's first report.
fn same_router_config(a: &crate::vrrp::RouterConfig, b: &crate::vrrp::RouterConfig) -> bool {
    let strip = |c: &crate::vrrp::RouterConfig| {
        let mut c = c.clone();
        for t in &mut c.trackers {
            t.initial = TrackState::Up;
        }
        c
    };
    strip(a) == strip(b)
}

/// The advert socket of an instance; none while it has no source address.
fn open_sender(ip: &InstancePlan) -> Result<Option<AdvertSender>> {
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
    AdvertSender::open(ip.ifindex, ip.source, ip.dest.clone())
        .map(Some)
        .with_context(|| format!("instance {}: advert socket", ip.name))
}

fn instance_at(instances: &[Instance], unit: usize, member: usize) -> Option<InstanceId> {
    instances
        .iter()
        .position(|i| i.unit == unit && i.member == member)
}

/// The notifier with the configured FIFOs.
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
                let cmd = crate::script::command::ScriptCommand::from_argv(s.argv.iter());
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
            path: PathBuf::from(&f.path),
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
    Ok(Notifier::new(fifos, NotifierOptions::default()))
}
