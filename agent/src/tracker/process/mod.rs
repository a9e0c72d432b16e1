//! `vrrp_track_process`: counts running processes matching a name (or full
//! command line) and reports whether the count is within `quorum ..=
//! quorum_max`, with keepalived's `fork_delay` / `terminate_delay`.
//!
//! Like keepalived (core/track_process.c) it scans /proc once at start and
//! then follows the kernel's process-events connector (NETLINK_CONNECTOR,
//! CN_IDX_PROC): fork, exec, comm change and exit of each process, so nothing
//! is polled and a death is seen at once. When the connector cannot be used
//! (no CONFIG_PROC_EVENTS, no CAP_NET_ADMIN) it falls back to rescanning
//! /proc every `poll_interval`; a missed burst (ENOBUFS) triggers a rescan
//! after 1 s, as keepalived does.
//!
//! Matching follows keepalived: without `full_command` the process name
//! (/proc/PID/comm, at most 15 bytes) must equal `process` exactly; with it
//! (implied by parameters or `param_match`) `argv[0]` must equal `process` and
//! the parameters are compared per `param_match`. Zombies do not count.
//! Unlike keepalived, a pid is counted at most once per tracker (keepalived
//! can count a tracked child twice if it forks and then execs the same
//! program).
//!
//! This file owns the tracker configuration, the quorum rules and the
//! monitor task; `matching` owns process matching and the /proc scan,
//! `connector` the netlink process-events connector.

use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::{TrackerEvent, TrackerHandle};
use crate::clock::monotonic_ns;
use crate::vrrp::{TrackState, TrackerId};

mod connector;
mod matching;

use connector::{Connector, recv_events};
use matching::{Core, read_proc};

pub use connector::{ProcEvent, parse_datagram};
pub use matching::{ParamMatch, ProcInfo, ProcessMatch};

/// One `vrrp_track_process`, mapped by the runtime from the config.
#[derive(Clone, Debug)]
pub struct ProcessTrackerConfig {
    pub id: TrackerId,
    pub name: String,
    pub matcher: ProcessMatch,
    /// Minimum count for OK (keepalived default 1).
    pub quorum: u32,
    /// Maximum count for OK (keepalived default: unlimited).
    pub quorum_max: u32,
    pub fork_delay: Duration,
    pub terminate_delay: Duration,
}

impl ProcessTrackerConfig {
    pub fn new(id: TrackerId, name: impl Into<String>, matcher: ProcessMatch) -> Self {
        Self {
            id,
            name: name.into(),
            matcher,
            quorum: 1,
            quorum_max: u32::MAX,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
        }
    }
}

/// What changed a count, which decides the delay before it is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A tracked process forked: `fork_delay`.
    Fork,
    /// A tracked process exited: `terminate_delay`.
    Exit,
    /// exec, name change, or a rescan finding more: immediate.
    Immediate,
}

/// Quorum with delayed reporting, pure (time is an argument).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quorum {
    min: u32,
    max: u32,
    fork_delay_ns: u64,
    terminate_delay_ns: u64,
    count: u32,
    reported: bool,
    pending: Option<u64>,
}

impl Quorum {
    pub fn new(cfg: &ProcessTrackerConfig, initial_count: u32) -> Self {
        let mut q = Self {
            min: cfg.quorum,
            max: cfg.quorum_max,
            fork_delay_ns: u64::try_from(cfg.fork_delay.as_nanos()).unwrap_or(u64::MAX),
            terminate_delay_ns: u64::try_from(cfg.terminate_delay.as_nanos()).unwrap_or(u64::MAX),
            count: initial_count,
            reported: false,
            pending: None,
        };
        q.reported = q.in_quorum();
        q
    }

    pub fn in_quorum(&self) -> bool {
        self.count >= self.min && self.count <= self.max
    }

    pub fn reported(&self) -> bool {
        self.reported
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn deadline(&self) -> Option<u64> {
        self.pending
    }

    /// Sets the count; returns the new state if it is to be reported now.
    pub fn set_count(&mut self, count: u32, cause: Cause, now_ns: u64) -> Option<bool> {
        self.count = count;
        let want = self.in_quorum();
        if want == self.reported {
            // Back where it was reported: a pending delay is cancelled.
            self.pending = None;
            return None;
        }
        let delay = match cause {
            Cause::Fork => self.fork_delay_ns,
            Cause::Exit => self.terminate_delay_ns,
            Cause::Immediate => 0,
        };
        if delay == 0 {
            self.pending = None;
            self.reported = want;
            return Some(want);
        }
        if self.pending.is_none() {
            self.pending = Some(now_ns.saturating_add(delay));
        }
        None
    }

    /// Called when the deadline may have passed.
    pub fn on_timer(&mut self, now_ns: u64) -> Option<bool> {
        match self.pending {
            Some(d) if d <= now_ns => {
                self.pending = None;
                let want = self.in_quorum();
                (want != self.reported).then(|| {
                    self.reported = want;
                    want
                })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ProcessMonitorError {
    #[error("no process trackers configured")]
    Empty,
}

/// How the monitor learns about processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorMode {
    Connector,
    Polling(Duration),
}

/// Options for [`ProcessMonitor::spawn`].
#[derive(Clone, Copy, Debug)]
pub struct MonitorOptions {
    /// Rescan interval when the connector cannot be used.
    pub poll_interval: Duration,
    /// Skip the connector (tests, or a kernel known to lack it).
    pub force_polling: bool,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            force_polling: false,
        }
    }
}

/// The running process monitor (one for all `vrrp_track_process` blocks,
/// like keepalived's single connector socket).
pub struct ProcessMonitor {
    pub handle: TrackerHandle,
    /// State of every tracker after the initial scan.
    pub initial: Vec<(TrackerId, TrackState)>,
    pub mode: MonitorMode,
}

impl ProcessMonitor {
    pub fn spawn(
        cfgs: Vec<ProcessTrackerConfig>,
        tx: mpsc::Sender<TrackerEvent>,
        opts: MonitorOptions,
    ) -> Result<Self, ProcessMonitorError> {
        if cfgs.is_empty() {
            return Err(ProcessMonitorError::Empty);
        }
        // Subscribe before scanning so nothing starting in between is missed.
        let connector = if opts.force_polling {
            None
        } else {
            match Connector::open() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::info!(
                        "track_process: process events connector unavailable ({e}); scanning /proc every {:?}",
                        opts.poll_interval
                    );
                    None
                }
            }
        };
        let mut core = Core::new(cfgs);
        core.rescan(monotonic_ns(), true);
        let initial = core
            .cfgs
            .iter()
            .zip(&core.quorums)
            .map(|(c, q)| {
                (
                    c.id,
                    if q.reported() {
                        TrackState::Up
                    } else {
                        TrackState::Down
                    },
                )
            })
            .collect();
        let mode = if connector.is_some() {
            MonitorMode::Connector
        } else {
            MonitorMode::Polling(opts.poll_interval)
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run_monitor(
            core,
            connector,
            opts.poll_interval,
            tx,
            stop_rx,
        ));
        Ok(Self {
            handle: TrackerHandle::new(stop_tx, task),
            initial,
            mode,
        })
    }
}

/// How long after an overflow of the connector the monitor rescans /proc:
/// long enough to let a fork storm pass, short next to any terminate_delay
/// worth setting.
const LOST_EVENTS_RESCAN: Duration = Duration::from_millis(100);

async fn run_monitor(
    mut core: Core,
    connector: Option<Connector>,
    poll: Duration,
    tx: mpsc::Sender<TrackerEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    let poll = poll.max(Duration::from_millis(10));
    let mut rescan_at: Option<tokio::time::Instant> = None;
    let mut poll_timer = tokio::time::interval(poll);
    poll_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let timer_at = core.next_deadline().map(|d| {
            let now = monotonic_ns();
            tokio::time::Instant::now() + Duration::from_nanos(d.saturating_sub(now))
        });
        let changes = tokio::select! {
            _ = &mut stop => return,
            _ = tx.closed() => return,
            _ = sleep_opt(timer_at) => {
                // Events were lost since the count was last exact: a delayed
                // loss is confirmed against /proc, not against a count that
                // may miss a restart.
                let mut out = Vec::new();
                if rescan_at.take().is_some() {
                    out.extend(core.rescan(monotonic_ns(), false));
                }
                out.extend(core.on_timer(monotonic_ns()));
                out
            }
            _ = sleep_opt(rescan_at) => {
                rescan_at = None;
                core.rescan(monotonic_ns(), false)
            }
            _ = poll_timer.tick(), if connector.is_none() => core.rescan(monotonic_ns(), false),
            r = recv_events(connector.as_ref(), &mut buf) => match r {
                Ok(events) => {
                    let now = monotonic_ns();
                    let mut out = Vec::new();
                    for ev in events {
                        out.extend(apply(&mut core, ev, now));
                    }
                    out
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // A storm overflowed the socket. Rescan soon, once for
                    // the whole storm; events still queued re-apply safely
                    // (they are checked against the pids the scan found).
                    if rescan_at.is_none() {
                        tracing::info!("track_process: process events lost; rescanning /proc");
                        rescan_at = Some(tokio::time::Instant::now() + LOST_EVENTS_RESCAN);
                    }
                    Vec::new()
                }
                Err(e) => {
                    tracing::warn!("process monitor netlink recv error: {e}");
                    Vec::new()
                }
            },
        };
        for (i, ok) in changes {
            let ev = TrackerEvent {
                id: core.cfgs[i].id,
                state: if ok { TrackState::Up } else { TrackState::Down },
                at_ns: monotonic_ns(),
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }
}

async fn sleep_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn apply(core: &mut Core, ev: ProcEvent, now: u64) -> Vec<(usize, bool)> {
    match ev {
        ProcEvent::Fork { parent, child } => core.on_fork(parent, child, now),
        ProcEvent::Exec { pid } => {
            let info = read_proc(pid, core.need_comm, core.need_cmdline);
            core.recheck(pid, info, false, now)
        }
        ProcEvent::Comm { pid, comm } => {
            let info = ProcInfo {
                comm: Some(comm),
                cmdline: None,
            };
            core.recheck(pid, Some(info), true, now)
        }
        ProcEvent::Exit { pid } => core.on_exit(pid, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn cfg(q: u32, qmax: u32, fork_ms: u64, term_ms: u64) -> ProcessTrackerConfig {
        let mut c =
            ProcessTrackerConfig::new(TrackerId(1), "p", ProcessMatch::new("x", &[], None, false));
        c.quorum = q;
        c.quorum_max = qmax;
        c.fork_delay = Duration::from_millis(fork_ms);
        c.terminate_delay = Duration::from_millis(term_ms);
        c
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn quorum_without_delays_reports_crossings_only() {
        let mut q = Quorum::new(&cfg(2, u32::MAX, 0, 0), 0);
        assert!(!q.reported());
        assert_eq!(q.set_count(1, Cause::Immediate, 0), None);
        assert_eq!(q.set_count(2, Cause::Fork, 0), Some(true));
        assert_eq!(q.set_count(3, Cause::Fork, 0), None);
        assert_eq!(q.set_count(2, Cause::Exit, 0), None);
        assert_eq!(q.set_count(1, Cause::Exit, 0), Some(false));
    }

    #[test]
    fn quorum_max_zero_means_must_not_run() {
        let mut q = Quorum::new(&cfg(0, 0, 0, 0), 0);
        assert!(q.reported());
        assert_eq!(q.set_count(1, Cause::Immediate, 0), Some(false));
        assert_eq!(q.set_count(0, Cause::Exit, 0), Some(true));
    }

    #[test]
    fn terminate_delay_hides_a_restart() {
        let mut q = Quorum::new(&cfg(1, u32::MAX, 0, 500), 1);
        assert_eq!(q.set_count(0, Cause::Exit, 0), None);
        assert_eq!(q.deadline(), Some(500 * MS));
        // Restarted (exec) before the delay: nothing reported, timer cancelled.
        assert_eq!(q.set_count(1, Cause::Immediate, 100 * MS), None);
        assert_eq!(q.deadline(), None);
        assert_eq!(q.on_timer(600 * MS), None);
    }

    #[test]
    fn terminate_delay_then_loss() {
        let mut q = Quorum::new(&cfg(1, u32::MAX, 0, 500), 1);
        assert_eq!(q.set_count(0, Cause::Exit, 0), None);
        assert_eq!(q.on_timer(499 * MS), None);
        assert_eq!(q.on_timer(500 * MS), Some(false));
        assert!(!q.reported());
    }

    #[test]
    fn fork_delay_applies_to_gain_by_fork_not_exec() {
        let mut q = Quorum::new(&cfg(2, u32::MAX, 300, 0), 1);
        assert_eq!(q.set_count(2, Cause::Fork, 0), None);
        assert_eq!(q.on_timer(300 * MS), Some(true));
        let mut q = Quorum::new(&cfg(2, u32::MAX, 300, 0), 1);
        assert_eq!(q.set_count(2, Cause::Immediate, 0), Some(true));
    }

    #[test]
    fn exceeding_quorum_max_by_fork_is_delayed() {
        let mut q = Quorum::new(&cfg(1, 1, 200, 0), 1);
        assert!(q.reported());
        assert_eq!(q.set_count(2, Cause::Fork, 0), None);
        // The forked child exec'd into something else: back to 1 in time.
        assert_eq!(q.set_count(1, Cause::Immediate, 50 * MS), None);
        assert_eq!(q.on_timer(200 * MS), None);
    }
}
