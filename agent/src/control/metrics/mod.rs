//! Prometheus metrics: a registry with typed handles the runtime updates, and
//! a small HTTP endpoint that serves `GET /metrics`.
//!
//! Usage from the runtime:
//!
//! ```text
//! let metrics = Metrics::new();
//! // once per instance (again after a reload changed its identity):
//! let m = metrics.instance(InstanceLabels::new("VI_1", "eth0", 51, Family::V4));
//! m.set_state(State::Backup);
//! m.set_priorities(base, effective);
//! // per action of the state machine:
//! m.advert_sent();  m.advert_received();  m.discarded(&reason);
//! m.transition(&transition);                       // Action::Transition
//! m.failover_vips_added(deadline_ns, vips_done_ns); // after AddVips
//! m.failover_first_garp(deadline_ns, first_garp_ns);
//! // every few seconds, or before each scrape:
//! metrics.set_datapath(DatapathSnapshot::of(&datapath));
//! // with --metrics-listen ADDR, inside the tokio runtime:
//! let server = serve(addr, metrics.clone())?;
//! ```
//!
//! The exposition is OpenMetrics text (what `prometheus-client` encodes;
//! Prometheus scrapes it natively). States are exported the way
//! node_exporter exports systemd unit states: one series per state, 1 for
//! the current one and 0 for the others, so `xvrrpd_instance_state{state="MASTER"} == 1`
//! selects the masters and a change shows in `changes()`.
//!
//! This file owns the registry, the metric families and the handles
//! ([`Metrics`], [`InstanceMetrics`]); `http` owns the endpoint.

use std::{
    collections::BTreeMap,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError, atomic::AtomicU64},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family as MetricFamily,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::{Metric, Registry, Unit},
};
use thiserror::Error;
use xvrrpd_common::{COUNTER_COUNT, Counter as DpCounter};

use crate::{
    clock,
    datapath::{Datapath, DatapathKind, ebpf::AttachMode},
    vrrp::{DiscardReason, Family, State, Transition},
};

mod http;
#[cfg(test)]
mod tests;

pub use http::{MetricsServer, ServeOptions, serve, serve_with};

/// `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric family xvrrpd exports (the names after `# TYPE`; counters
/// get the `_total` suffix on their samples). A test keeps this list exact,
/// so docs and dashboards can rely on it.
pub const METRIC_NAMES: &[&str] = &[
    "xvrrpd_build_info",
    "xvrrpd_reloads",
    "xvrrpd_instance_state",
    "xvrrpd_instance_effective_priority",
    "xvrrpd_instance_base_priority",
    "xvrrpd_instance_transitions",
    "xvrrpd_instance_adverts_sent",
    "xvrrpd_instance_vips_restored",
    "xvrrpd_instance_adverts_received",
    "xvrrpd_instance_adverts_discarded",
    "xvrrpd_instance_vip_claims",
    "xvrrpd_instance_last_transition_timestamp_seconds",
    "xvrrpd_master_down_timer_lateness_seconds",
    "xvrrpd_master_down_advert_to_deadline_seconds",
    "xvrrpd_failover_vips_added_seconds",
    "xvrrpd_failover_first_garp_seconds",
    "xvrrpd_datapath_packets",
    "xvrrpd_datapath_mode",
    "xvrrpd_datapath_attachment",
];

/// Every state an instance can be in, with the word used as label value.
const STATES: [State; 4] = [
    State::Initialize,
    State::Backup,
    State::Master,
    State::Fault,
];

/// Upper bounds for how late a timer was handled after its deadline: a
/// healthy host stays in the tens of microseconds; milliseconds mean a
/// starved process.
const LATENESS_BUCKETS: [f64; 16] = [
    5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3,
    100e-3, 250e-3, 1.0,
];

/// Last advert → deadline: the master-down interval actually armed, from a
/// few ms (priority-0 skew at a 10 ms interval) to keepalived's default 3 s+.
const INTERVAL_BUCKETS: [f64; 14] = [
    1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1, 0.25, 0.5, 1.0, 2.5, 3.5, 5.0, 10.0,
];

/// Deadline → VIPs in place / first GARP: netlink and packet-socket work,
/// tens of µs per address, longer with many VIPs or a busy host.
const FAILOVER_BUCKETS: [f64; 16] = [
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
    500e-3, 1.0, 5.0,
];

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("encoding the metrics failed (a label value the encoder cannot write?)")]
    Encode(#[from] std::fmt::Error),
    #[error(
        "cannot listen for metrics on {addr}: {source} (is another process using the port? \
         pick another --metrics-listen address)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("setting up the metrics listener: {0}")]
    Io(#[from] io::Error),
    #[error("the metrics server must be started inside the tokio runtime")]
    NoRuntime,
}

/// The labels that identify one VRRP instance in every per-instance series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub instance: String,
    pub interface: String,
    pub vrid: u8,
    /// `ipv4` or `ipv6` (as in the status report).
    pub family: String,
}

impl InstanceLabels {
    pub fn new(
        instance: impl Into<String>,
        interface: impl Into<String>,
        vrid: u8,
        family: Family,
    ) -> Self {
        Self {
            instance: instance.into(),
            interface: interface.into(),
            vrid,
            family: family_label(family).to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    #[prometheus(flatten)]
    instance: InstanceLabels,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    #[prometheus(flatten)]
    instance: InstanceLabels,
    from: &'static str,
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    #[prometheus(flatten)]
    instance: InstanceLabels,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    #[prometheus(flatten)]
    instance: InstanceLabels,
    outcome: &'static str,
}

/// `outcome` values of `xvrrpd_instance_vip_claims`.
const CLAIM_OUTCOMES: [&str; 2] = ["reannounced", "suppressed"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type HistogramFamily = MetricFamily<InstanceLabels, Histogram, fn() -> Histogram>;
type F64Gauge = Gauge<f64, AtomicU64>;

fn lateness_histogram() -> Histogram {
    Histogram::new(LATENESS_BUCKETS)
}
fn interval_histogram() -> Histogram {
    Histogram::new(INTERVAL_BUCKETS)
}
/// A metric family registered under `name` with `help`.
fn family<S, M>(registry: &mut Registry, name: &str, help: &str) -> MetricFamily<S, M>
where
    MetricFamily<S, M>: Metric + Clone + Default,
{
    let f = MetricFamily::default();
    registry.register(name, help, f.clone());
    f
}

fn failover_histogram() -> Histogram {
    Histogram::new(FAILOVER_BUCKETS)
}

struct Inner {
    registry: Registry,
    reloads: Counter,
    state: MetricFamily<StateLabels, Gauge>,
    effective_priority: MetricFamily<InstanceLabels, Gauge>,
    base_priority: MetricFamily<InstanceLabels, Gauge>,
    transitions: MetricFamily<TransitionLabels, Counter>,
    adverts_sent: MetricFamily<InstanceLabels, Counter>,
    adverts_received: MetricFamily<InstanceLabels, Counter>,
    vips_restored: MetricFamily<InstanceLabels, Counter>,
    discarded: MetricFamily<ReasonLabels, Counter>,
    vip_claims: MetricFamily<OutcomeLabels, Counter>,
    last_transition: MetricFamily<InstanceLabels, F64Gauge>,
    timer_lateness: HistogramFamily,
    advert_to_deadline: HistogramFamily,
    failover_vips: HistogramFamily,
    failover_garp: HistogramFamily,
    datapath: Arc<Mutex<Option<DatapathSnapshot>>>,
    /// Asks the event loop for fresh datapath figures before a scrape.
    refresher: Mutex<Option<tokio::sync::mpsc::Sender<crate::control::socket::Request>>>,
    /// The event stream the HTTP `/events` follows.
    events: Mutex<Option<crate::control::events::EventBus>>,
}

/// The registry and its metric families. Cheap to clone (shared inside):
/// the runtime keeps one, the HTTP server another.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers the daemon-wide series (`xvrrpd_build_info`, `xvrrpd_reloads`);
/// returns the reload counter.
fn register_daemon_series(registry: &mut Registry) -> Counter {
    let build_info = MetricFamily::<VersionLabels, Gauge>::default();
    build_info
        .get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
    registry.register(
        "xvrrpd_build_info",
        "Always 1; the version label says which xvrrpd runs",
        build_info,
    );
    let reloads = Counter::default();
    registry.register(
        "xvrrpd_reloads",
        "Configuration reloads (SIGHUP) applied",
        reloads.clone(),
    );
    reloads
}

/// The per-instance gauges and counters.
struct InstanceFamilies {
    state: MetricFamily<StateLabels, Gauge>,
    effective_priority: MetricFamily<InstanceLabels, Gauge>,
    base_priority: MetricFamily<InstanceLabels, Gauge>,
    transitions: MetricFamily<TransitionLabels, Counter>,
    adverts_sent: MetricFamily<InstanceLabels, Counter>,
    adverts_received: MetricFamily<InstanceLabels, Counter>,
    vips_restored: MetricFamily<InstanceLabels, Counter>,
    discarded: MetricFamily<ReasonLabels, Counter>,
    vip_claims: MetricFamily<OutcomeLabels, Counter>,
    last_transition: MetricFamily<InstanceLabels, F64Gauge>,
}

impl InstanceFamilies {
    /// Registers the `xvrrpd_instance_*` families.
    fn register(registry: &mut Registry) -> Self {
        let state = family(
            registry,
            "xvrrpd_instance_state",
            "1 for the state the instance is in, 0 for the others \
             (state: STOP, BACKUP, MASTER, FAULT)",
        );
        let effective_priority = family(
            registry,
            "xvrrpd_instance_effective_priority",
            "Priority advertised now: the configured one plus tracking weights",
        );
        let base_priority = family(
            registry,
            "xvrrpd_instance_base_priority",
            "Priority as configured",
        );
        let transitions = family(
            registry,
            "xvrrpd_instance_transitions",
            "State changes by previous and new state",
        );
        let adverts_sent = family(
            registry,
            "xvrrpd_instance_adverts_sent",
            "VRRP adverts sent",
        );
        let adverts_received = family(
            registry,
            "xvrrpd_instance_adverts_received",
            "VRRP adverts received for this instance (before the state machine's checks)",
        );
        let vips_restored = family(
            registry,
            "xvrrpd_instance_vips_restored",
            "VIPs someone else deleted while the instance was master, added back",
        );
        let discarded = family(
            registry,
            "xvrrpd_instance_adverts_discarded",
            "Received adverts the state machine did not act on, by reason",
        );
        let vip_claims = family(
            registry,
            "xvrrpd_instance_vip_claims",
            "Claims of one of the instance's VIPs by another MAC seen as master, by outcome \
             (reannounced, or suppressed: already re-announced within the advert interval)",
        );
        let last_transition = MetricFamily::default();
        registry.register_with_unit(
            "xvrrpd_instance_last_transition_timestamp",
            "Wall-clock time (Unix epoch, CLOCK_REALTIME) of the last state change",
            Unit::Seconds,
            last_transition.clone(),
        );
        Self {
            state,
            effective_priority,
            base_priority,
            transitions,
            adverts_sent,
            adverts_received,
            vips_restored,
            discarded,
            vip_claims,
            last_transition,
        }
    }
}

/// The failover timing histograms.
struct FailoverHistograms {
    timer_lateness: HistogramFamily,
    advert_to_deadline: HistogramFamily,
    failover_vips: HistogramFamily,
    failover_garp: HistogramFamily,
}

impl FailoverHistograms {
    /// Registers the `xvrrpd_master_down_*` and `xvrrpd_failover_*` histograms.
    fn register(registry: &mut Registry) -> Self {
        let timer_lateness = HistogramFamily::new_with_constructor(lateness_histogram);
        registry.register_with_unit(
            "xvrrpd_master_down_timer_lateness",
            "Detection error of the agent: time from a timer's deadline to the moment the \
             agent handled it, for transitions a timer caused",
            Unit::Seconds,
            timer_lateness.clone(),
        );
        let advert_to_deadline = HistogramFamily::new_with_constructor(interval_histogram);
        registry.register_with_unit(
            "xvrrpd_master_down_advert_to_deadline",
            "Kernel receive time of the master's last advert to the deadline that fired: \
             the master-down interval as armed (skew only after a priority-0 advert)",
            Unit::Seconds,
            advert_to_deadline.clone(),
        );
        let failover_vips = HistogramFamily::new_with_constructor(failover_histogram);
        registry.register_with_unit(
            "xvrrpd_failover_vips_added",
            "Taking over: master-down deadline to every VIP added",
            Unit::Seconds,
            failover_vips.clone(),
        );
        let failover_garp = HistogramFamily::new_with_constructor(failover_histogram);
        registry.register_with_unit(
            "xvrrpd_failover_first_garp",
            "Taking over: master-down deadline to the first gratuitous ARP / NA sent",
            Unit::Seconds,
            failover_garp.clone(),
        );
        Self {
            timer_lateness,
            advert_to_deadline,
            failover_vips,
            failover_garp,
        }
    }
}

/// Registers the collector of the `xvrrpd_datapath_*` series; returns the
/// slot the runtime fills with snapshots.
fn register_datapath(registry: &mut Registry) -> Arc<Mutex<Option<DatapathSnapshot>>> {
    let datapath = Arc::new(Mutex::new(None));
    registry.register_collector(Box::new(DatapathCollector {
        snapshot: Arc::clone(&datapath),
    }));
    datapath
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reloads = register_daemon_series(&mut registry);
        let InstanceFamilies {
            state,
            effective_priority,
            base_priority,
            transitions,
            adverts_sent,
            adverts_received,
            vips_restored,
            discarded,
            vip_claims,
            last_transition,
        } = InstanceFamilies::register(&mut registry);
        let FailoverHistograms {
            timer_lateness,
            advert_to_deadline,
            failover_vips,
            failover_garp,
        } = FailoverHistograms::register(&mut registry);
        let datapath = register_datapath(&mut registry);
        Self {
            inner: Arc::new(Inner {
                registry,
                reloads,
                state,
                effective_priority,
                base_priority,
                transitions,
                adverts_sent,
                adverts_received,
                vips_restored,
                discarded,
                vip_claims,
                last_transition,
                timer_lateness,
                advert_to_deadline,
                failover_vips,
                failover_garp,
                datapath,
                refresher: Mutex::new(None),
                events: Mutex::new(None),
            }),
        }
    }

    /// Scrapes ask the loop behind `tx` for fresh datapath figures
    /// ([`crate::control::socket::Request::Refresh`]) instead of the loop
    /// copying them on a timer.
    pub fn set_refresher(&self, tx: tokio::sync::mpsc::Sender<crate::control::socket::Request>) {
        *self
            .inner
            .refresher
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    /// The daemon's event stream, for HTTP `/events`.
    pub fn set_events(&self, bus: crate::control::events::EventBus) {
        *self
            .inner
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(bus);
    }

    /// A follower of the event stream, when there is one.
    pub fn follow_events(&self) -> Option<crate::control::events::Follower> {
        self.inner
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(crate::control::events::EventBus::subscribe)
    }

    /// The status report, as `xvrrpd status --json` has it (asked of the
    /// loop, waiting at most 2 s); `None` without a loop to ask.
    pub async fn status(&self) -> Option<crate::control::status::StatusReport> {
        let tx = self
            .inner
            .refresher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        let (reply, wait) = tokio::sync::oneshot::channel();
        tx.try_send(crate::control::socket::Request::Status(reply))
            .ok()?;
        tokio::time::timeout(std::time::Duration::from_secs(2), wait)
            .await
            .ok()?
            .ok()
    }

    /// Has the loop refresh the datapath figures, waiting at most 250 ms:
    /// a busy loop leaves the last ones.
    pub async fn refresh(&self) {
        let tx = self
            .inner
            .refresher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(tx) = tx else {
            return;
        };
        let (done, wait) = tokio::sync::oneshot::channel();
        if tx
            .try_send(crate::control::socket::Request::Refresh(done))
            .is_ok()
        {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(250), wait).await;
        }
    }

    /// The handle for one instance; creates its series (state STOP,
    /// priorities 0, counters 0) so they exist before the first event.
    pub fn instance(&self, labels: InstanceLabels) -> InstanceMetrics {
        let i = &self.inner;
        let m = InstanceMetrics {
            metrics: self.clone(),
            effective_priority: i.effective_priority.get_or_create_owned(&labels),
            base_priority: i.base_priority.get_or_create_owned(&labels),
            adverts_sent: i.adverts_sent.get_or_create_owned(&labels),
            adverts_received: i.adverts_received.get_or_create_owned(&labels),
            vips_restored: i.vips_restored.get_or_create_owned(&labels),
            state: STATES.map(|s| {
                i.state.get_or_create_owned(&StateLabels {
                    instance: labels.clone(),
                    state: s.keepalived_name(),
                })
            }),
            labels,
        };
        // Every series of the instance exists from the start (at zero), so a
        // scrape always shows every family and rates work from the first
        // event on.
        for reason in DiscardReason::LABELS {
            let _ = i.discarded.get_or_create(&ReasonLabels {
                instance: m.labels.clone(),
                reason,
            });
        }
        for family in [
            &i.timer_lateness,
            &i.advert_to_deadline,
            &i.failover_vips,
            &i.failover_garp,
        ] {
            let _ = family.get_or_create(&m.labels);
        }
        for outcome in CLAIM_OUTCOMES {
            let _ = i.vip_claims.get_or_create(&OutcomeLabels {
                instance: m.labels.clone(),
                outcome,
            });
        }
        let _ = i.last_transition.get_or_create(&m.labels);
        m.set_state(State::Initialize);
        m
    }

    /// Removes every series of an instance (deleted or renamed by a reload).
    pub fn remove_instance(&self, labels: &InstanceLabels) {
        let i = &self.inner;
        i.effective_priority.remove(labels);
        i.base_priority.remove(labels);
        i.adverts_sent.remove(labels);
        i.adverts_received.remove(labels);
        i.vips_restored.remove(labels);
        i.last_transition.remove(labels);
        i.timer_lateness.remove(labels);
        i.advert_to_deadline.remove(labels);
        i.failover_vips.remove(labels);
        i.failover_garp.remove(labels);
        for s in STATES {
            i.state.remove(&StateLabels {
                instance: labels.clone(),
                state: s.keepalived_name(),
            });
            for t in STATES {
                i.transitions.remove(&TransitionLabels {
                    instance: labels.clone(),
                    from: s.keepalived_name(),
                    to: t.keepalived_name(),
                });
            }
        }
        for reason in DiscardReason::LABELS {
            i.discarded.remove(&ReasonLabels {
                instance: labels.clone(),
                reason,
            });
        }
        for outcome in CLAIM_OUTCOMES {
            i.vip_claims.remove(&OutcomeLabels {
                instance: labels.clone(),
                outcome,
            });
        }
    }

    /// A configuration reload was applied.
    pub fn reloaded(&self) {
        self.inner.reloads.inc();
    }

    /// Replaces what the datapath series report (read at each scrape).
    pub fn set_datapath(&self, snapshot: DatapathSnapshot) {
        *self
            .inner
            .datapath
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
    }

    /// The whole exposition, as served on `/metrics`.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut out = String::with_capacity(16 * 1024);
        text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }
}

/// One instance's series. Counters and gauges are resolved once here, so
/// the per-advert calls are a single atomic add.
#[derive(Clone, Debug)]
pub struct InstanceMetrics {
    metrics: Metrics,
    labels: InstanceLabels,
    effective_priority: Gauge,
    base_priority: Gauge,
    adverts_sent: Counter,
    adverts_received: Counter,
    vips_restored: Counter,
    /// Indexed like [`STATES`].
    state: [Gauge; 4],
}

impl InstanceMetrics {
    pub fn labels(&self) -> &InstanceLabels {
        &self.labels
    }

    /// Sets the one-hot state series.
    pub fn set_state(&self, state: State) {
        for (s, g) in STATES.iter().zip(&self.state) {
            g.set(i64::from(*s == state));
        }
    }

    pub fn set_priorities(&self, base: u8, effective: u8) {
        self.base_priority.set(i64::from(base));
        self.effective_priority.set(i64::from(effective));
    }

    pub fn set_effective_priority(&self, effective: u8) {
        self.effective_priority.set(i64::from(effective));
    }

    pub fn advert_sent(&self) {
        self.adverts_sent.inc();
    }

    pub fn advert_received(&self) {
        self.adverts_received.inc();
    }

    /// Adverts the datapath kept from the loop (a healthy master's repeats).
    pub fn adverts_received(&self, n: u64) {
        self.adverts_received.inc_by(n);
    }

    /// A VIP someone else deleted was added back.
    pub fn vip_restored(&self) {
        self.vips_restored.inc();
    }

    /// A claim of a VIP by another MAC, answered or not.
    pub fn vip_claimed(&self, reannounced: bool) {
        let outcome = CLAIM_OUTCOMES[usize::from(!reannounced)];
        self.metrics
            .inner
            .vip_claims
            .get_or_create(&OutcomeLabels {
                instance: self.labels.clone(),
                outcome,
            })
            .inc();
    }

    /// An advert the state machine discarded (`Action::Discarded`).
    pub fn discarded(&self, reason: &DiscardReason) {
        self.discarded_by(reason.label());
    }

    /// An advert the runtime dropped before the state machine saw it, with a
    /// label of its own (`malformed`, …): keep the set small and fixed.
    pub fn discarded_by(&self, reason: &'static str) {
        self.metrics
            .inner
            .discarded
            .get_or_create(&ReasonLabels {
                instance: self.labels.clone(),
                reason,
            })
            .inc();
    }

    /// Records a state change (`Action::Transition`): counts it, moves the
    /// state series, stamps the wall-clock time and observes the timer's
    /// lateness and advert → deadline when a timer caused it.
    pub fn transition(&self, t: &Transition) {
        let i = &self.metrics.inner;
        i.transitions
            .get_or_create(&TransitionLabels {
                instance: self.labels.clone(),
                from: t.from.keepalived_name(),
                to: t.to.keepalived_name(),
            })
            .inc();
        self.set_state(t.to);
        self.set_effective_priority(t.priority);
        i.last_transition
            .get_or_create(&self.labels)
            .set(realtime_seconds_of_monotonic(t.at_ns));
        if let (Some(deadline), Some(fired)) = (t.deadline_ns, t.fired_at_ns) {
            i.timer_lateness
                .get_or_create(&self.labels)
                .observe(seconds_between(deadline, fired));
            if let Some(advert) = t.last_advert_ts_ns {
                i.advert_to_deadline
                    .get_or_create(&self.labels)
                    .observe(seconds_between(advert, deadline));
            }
        }
    }

    /// Taking over: every VIP is in place. `deadline_ns` is the transition's
    /// `deadline_ns` (call only when it has one); CLOCK_MONOTONIC ns.
    pub fn failover_vips_added(&self, deadline_ns: u64, done_ns: u64) {
        self.metrics
            .inner
            .failover_vips
            .get_or_create(&self.labels)
            .observe(seconds_between(deadline_ns, done_ns));
    }

    /// Taking over: the first gratuitous ARP / unsolicited NA left.
    pub fn failover_first_garp(&self, deadline_ns: u64, sent_ns: u64) {
        self.metrics
            .inner
            .failover_garp
            .get_or_create(&self.labels)
            .observe(seconds_between(deadline_ns, sent_ns));
    }
}

fn seconds_between(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e9
}

/// Converts a CLOCK_MONOTONIC instant to Unix time in seconds with the
/// current offset between the two clocks.
fn realtime_seconds_of_monotonic(mono_ns: u64) -> f64 {
    let now_mono = clock::monotonic_ns();
    let now_real = clock::realtime_ns();
    let age = now_mono.saturating_sub(mono_ns);
    now_real.saturating_sub(age) as f64 / 1e9
}

fn family_label(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// What the datapath series show: the runtime copies it from the
/// [`Datapath`] now and then (the kernel counters are read on its thread,
/// never by the HTTP server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatapathSnapshot {
    pub kind: DatapathKind,
    /// Indexed by [`xvrrpd_common::Counter`].
    pub counters: [u64; COUNTER_COUNT as usize],
    pub attachments: Vec<(String, AttachMode)>,
}

impl DatapathSnapshot {
    pub fn of(dp: &Datapath) -> Self {
        Self {
            kind: dp.kind(),
            counters: dp.counters(),
            attachments: dp.attachments(),
        }
    }
}

fn kind_label(k: DatapathKind) -> &'static str {
    match k {
        DatapathKind::Ebpf => "ebpf",
        DatapathKind::RawSocket => "raw-socket",
    }
}

fn mode_label(m: AttachMode) -> &'static str {
    match m {
        AttachMode::XdpNative => "xdp-native",
        AttachMode::XdpGeneric => "xdp-generic",
        AttachMode::Tc => "tc",
    }
}

/// Encodes the datapath series from the last snapshot at each scrape.
#[derive(Debug)]
struct DatapathCollector {
    snapshot: Arc<Mutex<Option<DatapathSnapshot>>>,
}

impl Collector for DatapathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(snap) = self
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return Ok(());
        };
        {
            let mut m = encoder.encode_descriptor(
                "xvrrpd_datapath_packets",
                "VRRP packets the datapath classified, by outcome: accepted (delivered to the \
                 agent), passed (unknown VRID, left to the stack) or why it was dropped \
                 (kernel counters on the eBPF path)",
                None,
                MetricType::Counter,
            )?;
            for c in DpCounter::ALL {
                let labels = [("reason", c.name())];
                let v = snap.counters.get(c as usize).copied().unwrap_or(0);
                ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "xvrrpd_datapath_mode",
                "1 for how adverts are received (ebpf or raw-socket), 0 for the other",
                None,
                MetricType::Gauge,
            )?;
            for k in [DatapathKind::Ebpf, DatapathKind::RawSocket] {
                let labels = [("mode", kind_label(k))];
                ConstGauge::new(i64::from(k == snap.kind)).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "xvrrpd_datapath_attachment",
                "1 per interface the eBPF program is attached to, with how \
                 (xdp-native, xdp-generic, tc)",
                None,
                MetricType::Gauge,
            )?;
            // Sorted so scrapes are stable whatever order the attach ran in.
            let by_if: BTreeMap<&str, AttachMode> = snap
                .attachments
                .iter()
                .map(|(i, m)| (i.as_str(), *m))
                .collect();
            for (interface, mode) in by_if {
                let labels = [("interface", interface), ("mode", mode_label(mode))];
                ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
