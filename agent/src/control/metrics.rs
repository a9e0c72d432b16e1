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

use std::{
    collections::BTreeMap,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError, atomic::AtomicU64},
    time::Duration,
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
    registry::{Registry, Unit},
};
use thiserror::Error;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinHandle,
};
use xvrrpd_common::{COUNTER_COUNT, Counter as DpCounter};

use crate::{
    clock,
    datapath::{Datapath, DatapathKind, ebpf::AttachMode},
    vrrp::{DiscardReason, Family, State, Transition},
};

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
    "xvrrpd_instance_adverts_received",
    "xvrrpd_instance_adverts_discarded",
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
    discarded: MetricFamily<ReasonLabels, Counter>,
    last_transition: MetricFamily<InstanceLabels, F64Gauge>,
    timer_lateness: HistogramFamily,
    advert_to_deadline: HistogramFamily,
    failover_vips: HistogramFamily,
    failover_garp: HistogramFamily,
    datapath: Arc<Mutex<Option<DatapathSnapshot>>>,
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

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
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
        let state = MetricFamily::default();
        registry.register(
            "xvrrpd_instance_state",
            "1 for the state the instance is in, 0 for the others \
             (state: STOP, BACKUP, MASTER, FAULT)",
            state.clone(),
        );
        let effective_priority = MetricFamily::default();
        registry.register(
            "xvrrpd_instance_effective_priority",
            "Priority advertised now: the configured one plus tracking weights",
            effective_priority.clone(),
        );
        let base_priority = MetricFamily::default();
        registry.register(
            "xvrrpd_instance_base_priority",
            "Priority as configured",
            base_priority.clone(),
        );
        let transitions = MetricFamily::default();
        registry.register(
            "xvrrpd_instance_transitions",
            "State changes by previous and new state",
            transitions.clone(),
        );
        let adverts_sent = MetricFamily::default();
        registry.register(
            "xvrrpd_instance_adverts_sent",
            "VRRP adverts sent",
            adverts_sent.clone(),
        );
        let adverts_received = MetricFamily::default();
        registry.register(
            "xvrrpd_instance_adverts_received",
            "VRRP adverts received for this instance (before the state machine's checks)",
            adverts_received.clone(),
        );
        let discarded = MetricFamily::default();
        registry.register(
            "xvrrpd_instance_adverts_discarded",
            "Received adverts the state machine did not act on, by reason",
            discarded.clone(),
        );
        let last_transition = MetricFamily::default();
        registry.register_with_unit(
            "xvrrpd_instance_last_transition_timestamp",
            "Wall-clock time (Unix epoch, CLOCK_REALTIME) of the last state change",
            Unit::Seconds,
            last_transition.clone(),
        );
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
        let datapath = Arc::new(Mutex::new(None));
        registry.register_collector(Box::new(DatapathCollector {
            snapshot: Arc::clone(&datapath),
        }));
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
                discarded,
                last_transition,
                timer_lateness,
                advert_to_deadline,
                failover_vips,
                failover_garp,
                datapath,
            }),
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

/// Limits of the HTTP endpoint.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// Whole request head (request line and headers).
    pub max_request_bytes: usize,
    /// From accept to the response written.
    pub timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_request_bytes: 8 * 1024,
            timeout: Duration::from_secs(5),
            max_connections: 8,
        }
    }
}

/// The running endpoint. Dropping it leaves the server running; call
/// [`MetricsServer::shutdown`] to stop it.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shutdown(self) {
        self.task.abort();
    }

    pub fn into_join_handle(self) -> JoinHandle<()> {
        self.task
    }
}

/// Serves `GET /metrics` on `addr` with the default limits. Binds before
/// returning, so a busy port is an error here, not a log line later. Call
/// from within the tokio runtime.
pub fn serve(addr: SocketAddr, metrics: Metrics) -> Result<MetricsServer, MetricsError> {
    serve_with(addr, metrics, ServeOptions::default())
}

pub fn serve_with(
    addr: SocketAddr,
    metrics: Metrics,
    opts: ServeOptions,
) -> Result<MetricsServer, MetricsError> {
    let rt = tokio::runtime::Handle::try_current().map_err(|_| MetricsError::NoRuntime)?;
    let std_listener =
        std::net::TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
    std_listener.set_nonblocking(true)?;
    let _guard = rt.enter();
    let listener = TcpListener::from_std(std_listener)?;
    let local_addr = listener.local_addr()?;
    let task = rt.spawn(accept_loop(listener, metrics, opts));
    Ok(MetricsServer { local_addr, task })
}

async fn accept_loop(listener: TcpListener, metrics: Metrics, opts: ServeOptions) {
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(opts.timeout, handle(stream, &metrics, opts)).await;
        });
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics, opts: ServeOptions) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_len = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > opts.max_request_bytes {
            return respond(&mut stream, "431 Request Header Fields Too Large", "", b"").await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_len > opts.max_request_bytes {
        return respond(&mut stream, "431 Request Header Fields Too Large", "", b"").await;
    }
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let mut words = head.lines().next().unwrap_or("").split_ascii_whitespace();
    let (method, target, version) = (words.next(), words.next(), words.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return respond(&mut stream, "400 Bad Request", "", b"").await;
    };
    if !version.starts_with("HTTP/1.") {
        return respond(&mut stream, "505 HTTP Version Not Supported", "", b"").await;
    }
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => match metrics.encode() {
            Ok(body) => {
                // HEAD: the same head (Content-Length included), no body.
                let head = method == "HEAD";
                respond_with(&mut stream, "200 OK", CONTENT_TYPE, body.as_bytes(), !head).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: encoding failed");
                respond(&mut stream, "500 Internal Server Error", "", b"").await
            }
        },
        ("GET" | "HEAD", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain; charset=utf-8",
                b"metrics are at /metrics\n",
            )
            .await
        }
        _ => respond(&mut stream, "405 Method Not Allowed", "", b"").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    respond_with(stream, status, content_type, body, true).await
}

async fn respond_with(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    send_body: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if status.starts_with("405") {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if send_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await?;
    // Read what the client still sends until it closes (bounded by the
    // caller's timeout): closing with unread input would reset the
    // connection and could destroy the response before the client reads it.
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeSet,
        io::{Read, Write},
        net::IpAddr,
    };

    use super::*;
    use crate::vrrp::Reason;

    fn labels() -> InstanceLabels {
        InstanceLabels::new("VI_1", "eth0", 51, Family::V4)
    }

    fn takeover() -> Transition {
        Transition {
            from: State::Backup,
            to: State::Master,
            reason: Reason::MasterDown,
            at_ns: 10_000_250_000,
            last_advert_ts_ns: Some(9_970_000_000),
            deadline_ns: Some(10_000_000_000),
            fired_at_ns: Some(10_000_250_000),
            priority: 100,
            master_addr: Some(IpAddr::from([10, 0, 0, 2])),
            master_priority: Some(150),
        }
    }

    /// Every family with a sample in it.
    fn populated() -> (Metrics, InstanceMetrics) {
        let metrics = Metrics::new();
        let m = metrics.instance(labels());
        m.set_priorities(100, 90);
        m.advert_sent();
        m.advert_received();
        m.advert_received();
        m.discarded(&DiscardReason::BadTtl(64));
        m.transition(&takeover());
        m.failover_vips_added(10_000_000_000, 10_000_400_000);
        m.failover_first_garp(10_000_000_000, 10_000_500_000);
        metrics.reloaded();
        let mut counters = [0u64; COUNTER_COUNT as usize];
        counters[DpCounter::Accepted as usize] = 7;
        counters[DpCounter::BadChecksum as usize] = 3;
        metrics.set_datapath(DatapathSnapshot {
            kind: DatapathKind::Ebpf,
            counters,
            attachments: vec![("eth0".into(), AttachMode::XdpNative)],
        });
        (metrics, m)
    }

    fn type_lines(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_string)
            .collect()
    }

    const SERIES: &str = r#"instance="VI_1",interface="eth0",vrid="51",family="ipv4""#;

    #[test]
    fn every_documented_metric_is_exported_and_nothing_else() {
        let (metrics, _m) = populated();
        let text = metrics.encode().expect("encodes");
        let exported = type_lines(&text);
        let documented: BTreeSet<String> = METRIC_NAMES.iter().map(|s| s.to_string()).collect();
        assert_eq!(exported, documented, "exposition:\n{text}");
        assert!(text.ends_with("# EOF\n"), "OpenMetrics needs the EOF line");
    }

    #[test]
    fn values_land_in_the_right_series() {
        let (metrics, _m) = populated();
        let text = metrics.encode().expect("encodes");
        for want in [
            format!("xvrrpd_instance_state{{{SERIES},state=\"MASTER\"}} 1"),
            format!("xvrrpd_instance_state{{{SERIES},state=\"BACKUP\"}} 0"),
            format!("xvrrpd_instance_state{{{SERIES},state=\"STOP\"}} 0"),
            format!("xvrrpd_instance_state{{{SERIES},state=\"FAULT\"}} 0"),
            format!("xvrrpd_instance_base_priority{{{SERIES}}} 100"),
            // The transition carries the effective priority at the time.
            format!("xvrrpd_instance_effective_priority{{{SERIES}}} 100"),
            format!("xvrrpd_instance_adverts_sent_total{{{SERIES}}} 1"),
            format!("xvrrpd_instance_adverts_received_total{{{SERIES}}} 2"),
            format!("xvrrpd_instance_adverts_discarded_total{{{SERIES},reason=\"bad_ttl\"}} 1"),
            format!(
                "xvrrpd_instance_transitions_total{{{SERIES},from=\"BACKUP\",to=\"MASTER\"}} 1"
            ),
            format!("xvrrpd_master_down_timer_lateness_seconds_count{{{SERIES}}} 1"),
            format!("xvrrpd_master_down_timer_lateness_seconds_sum{{{SERIES}}} 0.00025"),
            format!(
                "xvrrpd_master_down_timer_lateness_seconds_bucket{{le=\"0.00025\",{SERIES}}} 1"
            ),
            format!("xvrrpd_master_down_timer_lateness_seconds_bucket{{le=\"0.0001\",{SERIES}}} 0"),
            format!("xvrrpd_master_down_advert_to_deadline_seconds_sum{{{SERIES}}} 0.03"),
            format!("xvrrpd_failover_vips_added_seconds_sum{{{SERIES}}} 0.0004"),
            format!("xvrrpd_failover_first_garp_seconds_sum{{{SERIES}}} 0.0005"),
            "xvrrpd_reloads_total 1".to_string(),
            "xvrrpd_datapath_packets_total{reason=\"accepted\"} 7".to_string(),
            "xvrrpd_datapath_packets_total{reason=\"bad_checksum\"} 3".to_string(),
            "xvrrpd_datapath_packets_total{reason=\"fragment\"} 0".to_string(),
            "xvrrpd_datapath_mode{mode=\"ebpf\"} 1".to_string(),
            "xvrrpd_datapath_mode{mode=\"raw-socket\"} 0".to_string(),
            "xvrrpd_datapath_attachment{interface=\"eth0\",mode=\"xdp-native\"} 1".to_string(),
            format!(
                "xvrrpd_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(
                text.lines().any(|l| l == want),
                "missing line {want}\n{text}"
            );
        }
    }

    #[test]
    fn last_transition_is_wall_clock_time() {
        let metrics = Metrics::new();
        let m = metrics.instance(labels());
        let mut t = takeover();
        // One second ago on the monotonic clock.
        t.at_ns = clock::monotonic_ns() - 1_000_000_000;
        m.transition(&t);
        let text = metrics.encode().expect("encodes");
        let prefix = format!("xvrrpd_instance_last_transition_timestamp_seconds{{{SERIES}}} ");
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .expect("timestamp series present")
            .parse()
            .expect("a number");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        assert!(
            (now - 1.0 - value).abs() < 0.5,
            "stamp {value}, now {now}: should be about a second ago"
        );
    }

    #[test]
    fn a_fresh_instance_is_stopped_and_a_timerless_transition_observes_nothing() {
        let metrics = Metrics::new();
        let m = metrics.instance(labels());
        let text = metrics.encode().expect("encodes");
        assert!(text.contains(&format!(
            "xvrrpd_instance_state{{{SERIES},state=\"STOP\"}} 1"
        )));
        // No datapath snapshot yet: no datapath series at all.
        assert!(!text.contains("xvrrpd_datapath_mode"));
        m.transition(&Transition {
            from: State::Initialize,
            to: State::Backup,
            reason: Reason::Startup,
            at_ns: 5,
            last_advert_ts_ns: None,
            deadline_ns: None,
            fired_at_ns: None,
            priority: 100,
            master_addr: None,
            master_priority: None,
        });
        let text = metrics.encode().expect("encodes");
        // The series exists from the start, but nothing was observed.
        assert!(text.contains(&format!(
            "xvrrpd_master_down_timer_lateness_seconds_count{{{SERIES}}} 0"
        )));
        assert!(text.contains(&format!(
            "xvrrpd_instance_state{{{SERIES},state=\"BACKUP\"}} 1"
        )));
    }

    #[test]
    fn removing_an_instance_removes_all_its_series() {
        let (metrics, _m) = populated();
        let other = metrics.instance(InstanceLabels::new("VI_2", "eth1", 52, Family::V6));
        other.advert_sent();
        metrics.remove_instance(&labels());
        let text = metrics.encode().expect("encodes");
        assert!(!text.contains("instance=\"VI_1\""), "{text}");
        assert!(text.contains(
            r#"xvrrpd_instance_adverts_sent_total{instance="VI_2",interface="eth1",vrid="52",family="ipv6"} 1"#
        ));
    }

    #[test]
    fn every_discard_reason_has_a_listed_label() {
        let all = [
            DiscardReason::NotRunning,
            DiscardReason::WrongVrid,
            DiscardReason::WrongVersion,
            DiscardReason::WrongFamily,
            DiscardReason::BadTtl(1),
            DiscardReason::AuthTypeMismatch { ours: 0, theirs: 1 },
            DiscardReason::AuthPassMismatch,
            DiscardReason::AuthAhUnsupported,
            DiscardReason::IntervalMismatch {
                ours_cs: 100,
                theirs_cs: 200,
            },
            DiscardReason::UnicastMismatch,
            DiscardReason::AddressCountMismatch { ours: 1, theirs: 2 },
            DiscardReason::AddressListMismatch,
            DiscardReason::UnicastSourceNotPeer,
            DiscardReason::LowerPriority,
        ];
        let labels: BTreeSet<&str> = all.iter().map(DiscardReason::label).collect();
        let listed: BTreeSet<&str> = DiscardReason::LABELS.into_iter().collect();
        assert_eq!(labels, listed);
    }

    /// One request over a plain socket; returns the whole response.
    fn fetch(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics server");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set a read timeout");
        s.write_all(request).expect("send the request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read the response");
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_answers_metrics_404_405_and_bounds_requests() {
        let (metrics, _m) = populated();
        let server = serve_with(
            "127.0.0.1:0".parse().expect("an address"),
            metrics,
            ServeOptions {
                timeout: Duration::from_millis(300),
                ..ServeOptions::default()
            },
        )
        .expect("bind on loopback");
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let responses = tokio::task::spawn_blocking(move || {
            let ok = fetch(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            let query = fetch(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");
            let head = fetch(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
            let missing = fetch(addr, b"GET / HTTP/1.1\r\n\r\n");
            let post = fetch(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
            let garbage = fetch(addr, b"hello\r\n\r\n");
            let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
            huge.extend(std::iter::repeat_n(b'a', 20_000));
            let too_big = fetch(addr, &huge);
            // Says nothing: the server must hang up after its timeout.
            let started = std::time::Instant::now();
            let idle = fetch(addr, b"GET /metrics HTTP/1.1\r\n");
            (
                ok,
                query,
                head,
                missing,
                post,
                garbage,
                too_big,
                idle,
                started.elapsed(),
            )
        })
        .await
        .expect("client thread");
        let (ok, query, head, missing, post, garbage, too_big, idle, idle_took) = responses;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")));
        let body = ok.split_once("\r\n\r\n").expect("head and body").1;
        let len: usize = ok
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("content length")
            .parse()
            .expect("a number");
        assert_eq!(len, body.len());
        for name in METRIC_NAMES {
            assert!(body.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
        assert!(body.ends_with("# EOF\n"));
        assert!(query.starts_with("HTTP/1.1 200 OK\r\n"), "{query}");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        assert!(
            head.contains(&format!("Content-Length: {len}\r\n")),
            "HEAD announces the GET body's length: {head}"
        );
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        assert!(post.contains("Allow: GET, HEAD\r\n"));
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        assert!(too_big.starts_with("HTTP/1.1 431 "), "{too_big}");
        assert!(idle.is_empty(), "no answer to a half request: {idle}");
        assert!(
            idle_took < Duration::from_secs(3),
            "an idle client is dropped after the timeout, took {idle_took:?}"
        );
        server.shutdown();
    }

    #[tokio::test]
    async fn a_busy_port_is_reported_at_once() {
        let first =
            serve("127.0.0.1:0".parse().expect("an address"), Metrics::new()).expect("bind");
        let err = serve(first.local_addr(), Metrics::new()).expect_err("port is taken");
        assert!(matches!(err, MetricsError::Bind { .. }), "{err}");
        assert!(err.to_string().contains("--metrics-listen"));
        first.shutdown();
    }

    #[test]
    fn serving_outside_a_runtime_is_an_error_not_a_panic() {
        let err = serve("127.0.0.1:0".parse().expect("an address"), Metrics::new())
            .expect_err("no runtime");
        assert!(matches!(err, MetricsError::NoRuntime));
    }
}
