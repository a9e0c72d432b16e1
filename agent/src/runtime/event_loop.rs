//! The event loop: one task takes whatever happens — adverts, timers,
//! netlink, trackers, signals, control requests, effect reports — and hands
//! it to dispatch. Nothing here sleeps: a source that fails is retried later
//! from its own timer while every other source keeps running.

use std::time::Duration;

use anyhow::Result;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
    time::Instant,
};
use tracing::{debug, error, info, warn};

use super::{
    daemon::{Daemon, EbpfLoading},
    dispatch::{Decided, MASTER_DOWN_SPIN_LEAD_NS},
    effects::Report,
    plan::PreparedConfig,
    timers::Ticker,
};
use crate::{
    clock::monotonic_ns,
    control::{metrics::DatapathSnapshot, socket::Request, systemd},
    datapath::{PreparedEbpf, Received},
    net::{
        link::NetEvent,
        route_watch::{RouteOrRule, RouteWatcher},
    },
    tracker::TrackerEvent,
    vrrp::Input,
};

/// How often the loop refreshes the metrics' datapath snapshot (and pets
/// the systemd watchdog, at most half its timeout apart).
const HOUSEKEEPING: Duration = Duration::from_secs(10);

/// Housekeeping rides along on a wake-up only this far from the next
/// deadline.
const HOUSEKEEPING_CLEARANCE_NS: u64 = 5_000_000;

/// Upper bound of one spin to a down deadline, whatever the timers say.
const MAX_SPIN_NS: u64 = 2 * MASTER_DOWN_SPIN_LEAD_NS;

/// What woke the loop.
enum Wake {
    Adverts(std::io::Result<usize>),
    Timers(std::io::Result<()>),
    Net(Result<NetEvent, crate::net::link::LinkError>),
    Tracker(Option<TrackerEvent>),
    Control(Option<Request>),
    Terminate(&'static str),
    Reload,
    Reloaded(PreparedConfig),
    EbpfLoaded(Result<Box<PreparedEbpf>, String>),
    Housekeeping,
    Effect(Option<Report>),
    Retry(Source),
    RouteDeleted(Result<RouteOrRule, crate::net::NlError>),
}

/// A source of events that failed and waits for its retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Datapath,
    LinkWatch,
}

/// When a failed source is read again: 10 ms after the first error,
/// doubling to one second while it keeps failing.
#[derive(Default)]
struct Backoff {
    until: Option<Instant>,
    delay: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn ready(&self) -> bool {
        self.until.is_none()
    }

    fn failed(&mut self) -> Duration {
        self.delay = (self.delay * 2).clamp(Self::FIRST, Self::MAX);
        self.until = Some(Instant::now() + self.delay);
        self.delay
    }

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    async fn expired(&self) {
        match self.until {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    }
}

async fn ebpf_loaded(loading: &mut Option<EbpfLoading>) -> Result<Box<PreparedEbpf>, String> {
    match loading {
        Some((rx, _)) => rx
            .await
            .unwrap_or_else(|_| Err("the eBPF loader thread stopped".to_string())),
        None => std::future::pending().await,
    }
}

async fn prepared_reload(
    pending: &mut Option<oneshot::Receiver<PreparedConfig>>,
) -> PreparedConfig {
    match pending {
        Some(rx) => rx
            .await
            .unwrap_or_else(|_| Err("the reload task stopped".to_string())),
        None => std::future::pending().await,
    }
}

/// The next deletion of a route or rule; pending while none is watched.
async fn route_deletion(
    watch: &mut Option<(RouteWatcher, Vec<u8>)>,
) -> Result<RouteOrRule, crate::net::NlError> {
    match watch {
        Some((w, _)) => w.next().await,
        None => std::future::pending().await,
    }
}

/// The next control request; pending forever once the socket's task ended.
async fn control_request(rx: &mut Option<mpsc::Receiver<Request>>) -> Option<Request> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// Runs until SIGTERM/SIGINT.
    pub async fn run(mut self) -> Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        if !self.plan.startup_delay.is_zero() {
            info!("waiting vrrp_startup_delay {:?}", self.plan.startup_delay);
            tokio::time::sleep(self.plan.startup_delay).await;
        }
        self.start_warden();
        for unit in 0..self.units.len() {
            self.start_unit(unit);
        }
        info!(
            "xvrrpd {} running {} instance(s) from {}",
            env!("CARGO_PKG_VERSION"),
            self.instances.len(),
            self.opts.config.display()
        );
        if self.ebpf_loading.is_none() {
            self.datapath_settled();
        }
        // Housekeeping: the datapath snapshot for metrics and the systemd
        // watchdog, sent from the loop itself so a stuck loop stops petting
        // it. It rides along on other wake-ups once half its period has
        // passed, and only wakes the loop itself when nothing else did for
        // a period: a backup hearing healthy masters wakes for little else.
        let period = systemd::watchdog_interval()
            .unwrap_or(HOUSEKEEPING)
            .min(HOUSEKEEPING);
        let mut housekeeping = Ticker::new(period)?;
        let mut adverts: Vec<Received> = Vec::with_capacity(64);
        let (mut datapath_retry, mut link_retry) = (Backoff::default(), Backoff::default());
        loop {
            adverts.clear();
            let mut chore_due = false;
            let wake = tokio::select! {
                biased;
                _ = term.recv() => Wake::Terminate("SIGTERM"),
                _ = int.recv() => Wake::Terminate("SIGINT"),
                r = self.timers.expired() => Wake::Timers(r),
                r = self.datapath.recv(&mut adverts), if datapath_retry.ready() => Wake::Adverts(r),
                e = self.trackers.next() => Wake::Tracker(e),
                e = self.link.next(), if link_retry.ready() => Wake::Net(e),
                _ = hup.recv() => Wake::Reload,
                r = control_request(&mut self.control_rx) => Wake::Control(r),
                _ = housekeeping.tick() => Wake::Housekeeping,
                r = self.reports_rx.recv() => Wake::Effect(r),
                r = prepared_reload(&mut self.pending_reload) => Wake::Reloaded(r),
                r = ebpf_loaded(&mut self.ebpf_loading) => Wake::EbpfLoaded(r),
                _ = datapath_retry.expired() => Wake::Retry(Source::Datapath),
                _ = link_retry.expired() => Wake::Retry(Source::LinkWatch),
                r = route_deletion(&mut self.route_watch) => Wake::RouteDeleted(r),
            };
            // Every timer this event moves is set on the timerfd once, at the end.
            self.timers.batch();
            match wake {
                Wake::Effect(Some(r)) => {
                    self.on_report(r);
                    // A thousand take-overs report together: one wake-up.
                    while let Ok(r) = self.reports_rx.try_recv() {
                        self.on_report(r);
                    }
                }
                Wake::Effect(None) | Wake::Tracker(None) => {}
                // Done below, whatever the timers say.
                Wake::Housekeeping => chore_due = true,
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
                Wake::Timers(Ok(())) => self.on_timers(),
                Wake::Timers(Err(e)) => error!("timerfd: {e}"),
                Wake::Adverts(Ok(_)) => {
                    datapath_retry.succeeded();
                    self.on_adverts(adverts.drain(..));
                }
                Wake::Adverts(Err(e)) => {
                    let wait = datapath_retry.failed();
                    error!("datapath: {e} (reading again in {wait:?})");
                }
                Wake::Tracker(Some(ev)) => self.on_tracker(ev),
                Wake::Net(Ok(ev)) => {
                    link_retry.succeeded();
                    self.on_link(ev);
                }
                Wake::Net(Err(e)) => {
                    let wait = link_retry.failed();
                    warn!("link watch: {e} (reading again in {wait:?})");
                }
                Wake::Retry(Source::Datapath) => datapath_retry.until = None,
                Wake::Retry(Source::LinkWatch) => link_retry.until = None,
                Wake::RouteDeleted(Ok(deleted)) => self.on_route_deleted(deleted),
                Wake::RouteDeleted(Err(e)) => {
                    // Deletions may have been lost: put back whatever is missing.
                    warn!("route watch: {e}: checking every route and rule installed");
                    self.reassert_routes();
                }
                Wake::Reload => self.start_reload(),
                Wake::EbpfLoaded(r) => self.on_ebpf_loaded(r),
                Wake::Reloaded(prepared) => {
                    self.pending_reload = None;
                    self.reload(prepared).await;
                }
                Wake::Control(Some(Request::Status(reply))) => {
                    self.absorb_all_heard();
                    let _ = reply.send(self.status());
                }
                Wake::Control(Some(Request::Refresh(reply))) => {
                    self.absorb_all_heard();
                    self.metrics
                        .set_datapath(DatapathSnapshot::of(&self.datapath));
                    let _ = reply.send(());
                }
                Wake::Control(None) => {
                    error!("the control socket stopped: `xvrrpd status` cannot reach this daemon");
                    self.control_rx = None;
                }
            }
            let now = monotonic_ns();
            // Riding along, it keeps clear of a deadline about to come.
            let clear = self
                .timers
                .next_deadline()
                .is_none_or(|d| d > now + HOUSEKEEPING_CLEARANCE_NS);
            if chore_due || (clear && housekeeping.worth_doing(now)) {
                self.metrics
                    .set_datapath(DatapathSnapshot::of(&self.datapath));
                let _ = systemd::watchdog();
                if let Err(e) = housekeeping.done(now) {
                    error!("timerfd: {e}");
                }
            }
            if let Err(e) = self.timers.flush() {
                error!("timerfd: {e}");
            }
            // The effect queues (VIPs, GARP/NA) run on this thread too: while
            // something is always ready here (a thousand take-overs), they
            // would wait for the loop to run dry. Only then: a yield costs
            // the runtime a poll of its I/O driver.
            if self.effects_in_flight > 0 {
                tokio::task::yield_now().await;
            }
        }
        let _ = std::fs::remove_file(&self.opts.control_socket);
        Ok(())
    }

    /// Timers due now. Adverts already in the datapath go first: one that
    /// arrived before the deadline must win over the deadline.
    fn on_timers(&mut self) {
        let mut adverts = Vec::new();
        // Woken early for a down timer: spin to its deadline, still taking
        // adverts as they come (one re-arms the timer and ends the spin).
        let started = monotonic_ns();
        loop {
            if let Err(e) = self.datapath.drain(&mut adverts) {
                warn!("datapath: {e}");
            }
            self.on_adverts(adverts.drain(..));
            // Masters still heard in the kernel move their deadlines: no spin.
            self.refresh_heard(monotonic_ns());
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
        // The same `now` for the last refresh and for what is due: a down
        // timer that came due while others were refreshed is refreshed too.
        let now = monotonic_ns();
        self.refresh_heard(now);
        let mut due = Vec::new();
        if let Err(e) = self.timers.pop_due(now, &mut due) {
            error!("timers: {e}");
        }
        // Every due timer is decided before any is executed: the adverts
        // of all instances that take over together go out first, ahead of
        // the bookkeeping of each take-over.
        let mut decided = Decided::default();
        for ((inst, kind), deadline) in due {
            let now = monotonic_ns();
            debug!(
                "{}: {kind:?} timer handled {} ns after its deadline",
                self.name(inst),
                now.saturating_sub(deadline)
            );
            self.decide(inst, now, Input::TimerFired(kind), &mut decided);
        }
        self.execute(decided);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_source_waits_longer_each_time_and_is_read_again() {
        let mut b = Backoff::default();
        assert!(b.ready());
        assert_eq!(b.failed(), Duration::from_millis(10));
        assert!(!b.ready());
        assert_eq!(b.failed(), Duration::from_millis(20));
        for _ in 0..10 {
            b.failed();
        }
        assert_eq!(b.delay, Duration::from_secs(1));
        b.until = None;
        b.succeeded();
        assert!(b.ready());
        assert_eq!(b.failed(), Duration::from_millis(10));
    }
}
