//! Host effects of one instance, run in order off the event loop.
//!
//! Adding or removing VIPs takes the kernel's RTNL lock and, with many
//! addresses or a busy kernel, milliseconds. The event loop must not wait for
//! that: another instance's down timer or this instance's next advert is due
//! meanwhile. So each instance has a queue: the loop pushes its VIP and
//! GARP/NA effects in the order the state machine emitted them, a task runs
//! them one after the other, and reports back when each is done for the
//! transition's timeline.
//!
//! The netlink work itself runs on a thread of its own ([`VipWorker`]): a
//! thousand instances taking over together add a thousand addresses, over a
//! second of kernel time, and on the loop's thread that second would delay
//! the adverts and down timers of every instance.

use std::{cell::Cell, net::IpAddr, rc::Rc, time::Duration};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::{
    clock::monotonic_ns,
    control::privileges::{self, Plan},
    net::{
        addr::{AddOutcome, AddrError, AddrInfo, RemoveOutcome, Vip, VipManager},
        gratuitous::GratuitousSender,
        route::{Outcome, RouteError, RouteManager, RouteSpec, RuleSpec},
    },
};

use super::route_plan::{PlannedRoute, PlannedRule};

/// One request to the VIP thread, with where its answer goes.
enum VipJob {
    Add(
        Vec<Vip>,
        oneshot::Sender<Vec<Result<AddOutcome, AddrError>>>,
    ),
    Remove(
        Vec<Vip>,
        oneshot::Sender<Vec<Result<RemoveOutcome, AddrError>>>,
    ),
    ListMarked(oneshot::Sender<Result<Vec<AddrInfo>, AddrError>>),
    /// Routes and rules: installed (true) or removed, each with its outcome.
    Routes(bool, RouteBatch, oneshot::Sender<RouteResults>),
    /// A previous run's marked routes and rules removed.
    RemoveStaleRoutes(oneshot::Sender<Result<StaleRoutes, RouteError>>),
    DropCapabilities(Plan, std::sync::mpsc::SyncSender<Result<(), String>>),
}

/// Routes and rules to install or remove together.
#[derive(Clone, Debug, Default)]
pub struct RouteBatch {
    pub routes: Vec<PlannedRoute>,
    pub rules: Vec<PlannedRule>,
}

impl RouteBatch {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.rules.is_empty()
    }
}

/// What a previous run left: its routes and rules.
pub type StaleRoutes = (Vec<RouteSpec>, Vec<RuleSpec>);

/// One outcome per route, then per rule, of a [`RouteBatch`].
pub type RouteResults = (
    Vec<Result<Outcome, RouteError>>,
    Vec<Result<Outcome, RouteError>>,
);

/// The VIP thread: adds, removes and lists VIPs for every effect queue, one
/// request after the other (the kernel serialises them anyway), on the
/// normal scheduler. Cheap to clone.
#[derive(Clone)]
pub struct VipWorker {
    tx: mpsc::UnboundedSender<VipJob>,
}

impl VipWorker {
    /// Starts the thread with its netlink socket; fails if the socket does.
    pub fn start() -> Result<Self, AddrError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<VipJob>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("vips".into())
            .spawn(move || {
                // Never above the event loop, even if the process was started
                // real-time.
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: sched_setscheduler on this thread with a valid param.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(AddrError::Netlink(crate::net::NlError::Open(
                            e.to_string(),
                        ))));
                        return;
                    }
                };
                rt.block_on(async move {
                    let vips = match VipManager::new() {
                        Ok(v) => v,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let routes = match RouteManager::new() {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = ready_tx.send(Err(AddrError::Netlink(
                                crate::net::NlError::Open(e.to_string()),
                            )));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    while let Some(job) = rx.recv().await {
                        match job {
                            VipJob::Add(list, reply) => {
                                let _ = reply.send(vips.add_vips(&list).await);
                            }
                            VipJob::Remove(list, reply) => {
                                let _ = reply.send(vips.remove_vips(&list).await);
                            }
                            VipJob::ListMarked(reply) => {
                                let _ = reply.send(vips.list_marked().await);
                            }
                            VipJob::Routes(add, batch, reply) => {
                                let routes_of: Vec<RouteSpec> =
                                    batch.routes.iter().map(|r| r.spec.clone()).collect();
                                let rules_of: Vec<RuleSpec> =
                                    batch.rules.iter().map(|r| r.spec.clone()).collect();
                                // keepalived's order: rules, then routes, on
                                // the way up; routes, then rules, down.
                                let results = if add {
                                    let l = routes.add_rules(&rules_of).await;
                                    (routes.add_routes(&routes_of).await, l)
                                } else {
                                    let r = routes.remove_routes(&routes_of).await;
                                    (r, routes.remove_rules(&rules_of).await)
                                };
                                let _ = reply.send(results);
                            }
                            VipJob::RemoveStaleRoutes(reply) => {
                                let _ = reply.send(routes.remove_stale_marked().await);
                            }
                            VipJob::DropCapabilities(plan, reply) => {
                                let r = privileges::drop_in_this_thread(&plan)
                                    .map(|_| ())
                                    .map_err(|e| e.to_string());
                                let _ = reply.send(r);
                            }
                        }
                    }
                });
            });
        if let Err(e) = spawned {
            return Err(AddrError::Netlink(crate::net::NlError::Open(e.to_string())));
        }
        ready_rx.recv().unwrap_or(Err(AddrError::WorkerGone))?;
        Ok(Self { tx })
    }

    pub async fn add_vips(&self, list: &[Vip]) -> Vec<Result<AddOutcome, AddrError>> {
        self.per_vip(list, |reply| VipJob::Add(list.to_vec(), reply))
            .await
    }

    pub async fn remove_vips(&self, list: &[Vip]) -> Vec<Result<RemoveOutcome, AddrError>> {
        self.per_vip(list, |reply| VipJob::Remove(list.to_vec(), reply))
            .await
    }

    /// Sends `job` and waits for its answer, one result per VIP of `list`;
    /// each is `WorkerGone` if the thread is.
    async fn per_vip<T>(
        &self,
        list: &[Vip],
        job: impl FnOnce(oneshot::Sender<Vec<Result<T, AddrError>>>) -> VipJob,
    ) -> Vec<Result<T, AddrError>> {
        let gone = || list.iter().map(|_| Err(AddrError::WorkerGone)).collect();
        let (reply, answer) = oneshot::channel();
        if self.tx.send(job(reply)).is_err() {
            return gone();
        }
        answer.await.unwrap_or_else(|_| gone())
    }

    pub async fn list_marked(&self) -> Result<Vec<AddrInfo>, AddrError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(VipJob::ListMarked(reply))
            .map_err(|_| AddrError::WorkerGone)?;
        answer.await.unwrap_or(Err(AddrError::WorkerGone))
    }

    /// Installs (`add`) or removes the routes and rules of `batch`; an
    /// outcome per route, then per rule.
    pub async fn routes(&self, add: bool, batch: RouteBatch) -> RouteResults {
        let gone = |b: &RouteBatch| {
            (
                b.routes
                    .iter()
                    .map(|_| Err(RouteError::WorkerGone))
                    .collect(),
                b.rules
                    .iter()
                    .map(|_| Err(RouteError::WorkerGone))
                    .collect(),
            )
        };
        let fallback = gone(&batch);
        let (reply, answer) = oneshot::channel();
        if self.tx.send(VipJob::Routes(add, batch, reply)).is_err() {
            return fallback;
        }
        answer.await.unwrap_or(fallback)
    }

    /// Removes the routes and rules a previous run left (marked).
    pub async fn remove_stale_routes(&self) -> Result<StaleRoutes, RouteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(VipJob::RemoveStaleRoutes(reply))
            .map_err(|_| RouteError::WorkerGone)?;
        answer.await.unwrap_or(Err(RouteError::WorkerGone))
    }

    /// Has the thread drop the capabilities `plan` does not keep, from its
    /// own sets, before the main thread drops them (capabilities are per
    /// thread). Waits at most two seconds.
    pub fn drop_capabilities(&self, plan: &Plan) -> Result<(), String> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.tx
            .send(VipJob::DropCapabilities(plan.clone(), reply))
            .map_err(|_| "the VIP thread stopped".to_string())?;
        answer
            .recv_timeout(Duration::from_secs(2))
            .map_err(|e| format!("the VIP thread did not answer: {e}"))?
    }
}

pub enum Effect {
    AddVips(Vec<Vip>),
    RemoveVips(Vec<Vip>),
    /// Reload as master: VIPs to add, and (ifindex, address) to remove
    /// whatever prefix they were added with.
    UpdateVips {
        add: Vec<Vip>,
        remove: Vec<(u32, IpAddr)>,
    },
    /// `virtual_routes`/`virtual_rules` installed (`add`) or removed.
    Routes {
        add: bool,
        batch: RouteBatch,
    },
    /// A GARP/NA batch: `count` messages per address, `spacing` apart,
    /// each address from the interface it lives on.
    Gratuitous {
        batches: Vec<(Rc<GratuitousSender>, Vec<IpAddr>)>,
        count: u32,
        spacing: Duration,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    Vips,
    Routes,
    /// The first message of a batch left (None: nothing was sent).
    Gratuitous(Option<u64>),
}

/// One effect finished, for the transition stamped `transition_at_ns`.
#[derive(Clone, Debug)]
pub struct Report {
    pub instance: String,
    pub transition_at_ns: u64,
    pub done: Done,
    pub at_ns: u64,
}

/// The queue of one instance.
pub struct EffectQueue {
    tx: mpsc::UnboundedSender<(u64, Effect)>,
    task: tokio::task::JoinHandle<()>,
    /// Bumped on every transition: a GARP/NA batch still pacing stops when
    /// it changes (a router that left MASTER must not announce the VIPs).
    generation: Rc<Cell<u64>>,
}

impl EffectQueue {
    /// Starts the worker; must run inside a `LocalSet`.
    pub fn spawn(
        instance: String,
        vips: VipWorker,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Effect)>();
        let generation = Rc::new(Cell::new(0));
        let gen_worker = generation.clone();
        let task = tokio::task::spawn_local(async move {
            while let Some((transition_at_ns, effect)) = rx.recv().await {
                let done = run(&instance, &vips, effect, &gen_worker).await;
                let _ = reports.send(Report {
                    instance: instance.clone(),
                    transition_at_ns,
                    done,
                    at_ns: monotonic_ns(),
                });
            }
        });
        Self {
            tx,
            task,
            generation,
        }
    }

    /// The instance changed state: batches in flight stop.
    pub fn new_transition(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
    }

    pub fn push(&self, transition_at_ns: u64, effect: Effect) {
        let _ = self.tx.send((transition_at_ns, effect));
    }

    /// Runs what is queued, then stops.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn run(instance: &str, vips: &VipWorker, effect: Effect, generation: &Rc<Cell<u64>>) -> Done {
    match effect {
        Effect::AddVips(list) => {
            for (v, r) in list.iter().zip(vips.add_vips(&list).await) {
                if let Err(e) = r {
                    error!("{instance}: adding VIP {}: {e}", v.addr);
                }
            }
            Done::Vips
        }
        Effect::RemoveVips(list) => {
            for (v, r) in list.iter().zip(vips.remove_vips(&list).await) {
                if let Err(e) = r {
                    error!("{instance}: removing VIP {}: {e}", v.addr);
                }
            }
            Done::Vips
        }
        Effect::UpdateVips { add, remove } => {
            for (v, r) in add.iter().zip(vips.add_vips(&add).await) {
                if let Err(e) = r {
                    error!("{instance}: adding VIP {}: {e}", v.addr);
                }
            }
            // Removed by address, whatever prefix they carry now.
            if let Ok(all) = vips.list_marked().await {
                let exact: Vec<Vip> = all
                    .iter()
                    .filter(|a| {
                        remove
                            .iter()
                            .any(|(idx, addr)| *addr == a.addr && *idx == a.ifindex)
                    })
                    .map(|a| Vip::new(a.ifindex, a.addr, a.prefix_len))
                    .collect();
                for (v, r) in exact.iter().zip(vips.remove_vips(&exact).await) {
                    if let Err(e) = r {
                        error!("{instance}: removing VIP {}: {e}", v.addr);
                    }
                }
            }
            Done::Vips
        }
        Effect::Routes { add, batch } => {
            let (routes, rules) = vips.routes(add, batch.clone()).await;
            let verb = if add { "adding" } else { "removing" };
            for (r, res) in batch.routes.iter().zip(routes) {
                if let Err(e) = res {
                    error!("{instance}: {verb} route `{}`: {e}", r.text);
                }
            }
            for (r, res) in batch.rules.iter().zip(rules) {
                if let Err(e) = res {
                    error!("{instance}: {verb} rule `{}`: {e}", r.text);
                }
            }
            Done::Routes
        }
        Effect::Gratuitous {
            batches,
            count,
            spacing,
        } => {
            if batches.iter().all(|(_, a)| a.is_empty()) || count == 0 {
                return Done::Gratuitous(None);
            }
            let mut first = None;
            for (sender, addrs) in &batches {
                match sender.send_for(addrs).await {
                    Ok(_) => {
                        first.get_or_insert_with(monotonic_ns);
                    }
                    Err(e) => warn!("{instance}: gratuitous ARP/NA: {e}"),
                }
            }
            let Some(first) = first else {
                return Done::Gratuitous(None);
            };
            if count > 1 {
                // The rest of the batch is paced on its own, so a later
                // effect (say, giving the VIPs up again) never waits for it;
                // it stops as soon as the instance changes state.
                let spacing = spacing.max(Duration::from_nanos(1));
                let generation = generation.clone();
                let started = generation.get();
                tokio::task::spawn_local(async move {
                    for _ in 1..count {
                        tokio::time::sleep(spacing).await;
                        if generation.get() != started {
                            break;
                        }
                        for (sender, addrs) in &batches {
                            let _ = sender.send_for(addrs).await;
                        }
                    }
                });
            }
            Done::Gratuitous(Some(first))
        }
    }
}
