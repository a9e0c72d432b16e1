//! `vrrp_script`: runs a checked script every `interval` and reports OK/FAIL
//! changes with keepalived's rise/fall counting.
//!
//! As keepalived (`vrrp_script_thread`): the first run is at start, later
//! runs every `interval` from the previous start; a run is skipped (and
//! logged) while the previous one is still running; the timeout defaults to
//! the interval.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{TrackerEvent, TrackerHandle, wait_slot};
use crate::clock::monotonic_ns;
use crate::script::exec::{self, RunLimits, ScriptOutcome};
use crate::script::security::CheckedScript;
use crate::vrrp::{TrackState, TrackerId};

/// Where a script starts before its first result (keepalived's init_state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InitState {
    /// No result yet: the first result, whichever, is reported.
    Init,
    /// `init_fail`: assumed failed until `rise` successes.
    Failed,
    Done,
}

/// keepalived's rise/fall counter (`vscript->result`), pure.
///
/// `result` runs from 0 to `rise + fall - 1`; the script is OK when
/// `result >= rise`. Successes climb one at a time to `rise`, then jump to the
/// top; failures step down from the top to `rise`, then drop to 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    result: u32,
    init: InitState,
}

impl RiseFall {
    /// `rise` and `fall` below 1 are taken as 1 (keepalived's defaults).
    pub fn new(rise: u32, fall: u32, init_fail: bool) -> Self {
        let rise = rise.max(1);
        let fall = fall.max(1);
        if init_fail {
            Self {
                rise,
                fall,
                result: 0,
                init: InitState::Failed,
            }
        } else {
            // One success is enough to come up.
            Self {
                rise,
                fall,
                result: rise - 1,
                init: InitState::Init,
            }
        }
    }

    /// The state before any result: unknown, or FAIL with `init_fail`.
    pub fn initial_state(&self) -> Option<TrackState> {
        match self.init {
            InitState::Failed => Some(TrackState::Down),
            InitState::Init | InitState::Done => None,
        }
    }

    /// Current state, None while no result has been seen (and no init_fail).
    pub fn state(&self) -> Option<TrackState> {
        match self.init {
            InitState::Init => None,
            _ if self.result >= self.rise => Some(TrackState::Up),
            _ => Some(TrackState::Down),
        }
    }

    /// Feeds one result; returns the new state when it is to be reported.
    pub fn record(&mut self, success: bool) -> Option<TrackState> {
        let top = self.rise + self.fall - 1;
        let mut report = None;
        if success {
            if self.result < self.rise - 1 {
                self.result += 1;
            } else if self.result != top {
                if self.result < self.rise {
                    report = Some(TrackState::Up);
                }
                self.result = top;
            }
        } else if self.result > self.rise {
            self.result -= 1;
        } else {
            if self.result == self.rise || self.init == InitState::Init {
                report = Some(TrackState::Down);
            }
            self.result = 0;
        }
        self.init = InitState::Done;
        report
    }
}

/// One `vrrp_script`, mapped by the runtime from the config.
#[derive(Clone, Debug)]
pub struct ScriptTrackerConfig {
    pub id: TrackerId,
    /// The vrrp_script name, for logs.
    pub name: String,
    pub script: CheckedScript,
    /// keepalived: default 1 s, minimum 1 s.
    pub interval: Duration,
    /// None: the interval.
    pub timeout: Option<Duration>,
    pub rise: u32,
    pub fall: u32,
    pub init_fail: bool,
    /// SIGTERM → SIGKILL delay for a timed-out run.
    pub kill_grace: Duration,
}

impl ScriptTrackerConfig {
    /// keepalived's defaults around a checked script.
    pub fn new(id: TrackerId, name: impl Into<String>, script: CheckedScript) -> Self {
        Self {
            id,
            name: name.into(),
            script,
            interval: Duration::from_secs(1),
            timeout: None,
            rise: 1,
            fall: 1,
            init_fail: false,
            kill_grace: exec::DEFAULT_KILL_GRACE,
        }
    }

    /// State to assume before the first result.
    pub fn initial_state(&self) -> Option<TrackState> {
        RiseFall::new(self.rise, self.fall, self.init_fail).initial_state()
    }
}

/// Starts the tracker task. Events go to `tx`; the task ends when `tx`'s
/// receiver is dropped or the handle is shut down.
pub fn spawn(cfg: ScriptTrackerConfig, tx: mpsc::Sender<TrackerEvent>) -> TrackerHandle {
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run_tracker(cfg, tx, stop_rx));
    TrackerHandle::new(stop_tx, task)
}

async fn run_tracker(
    cfg: ScriptTrackerConfig,
    tx: mpsc::Sender<TrackerEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    let interval = cfg.interval.max(Duration::from_millis(1));
    let limits = RunLimits {
        timeout: Some(cfg.timeout.unwrap_or(interval)),
        kill_grace: cfg.kill_grace,
    };
    let mut counter = RiseFall::new(cfg.rise, cfg.fall, cfg.init_fail);
    let mut last_status: Option<i32> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running: Option<
        std::pin::Pin<Box<dyn std::future::Future<Output = ScriptOutcome> + Send>>,
    > = None;

    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {
                if running.is_some() {
                    tracing::info!(
                        "Track script {} is already running, expect idle - skipping run",
                        cfg.name
                    );
                    continue;
                }
                let script = cfg.script.clone();
                running = Some(Box::pin(async move { exec::run(&script, &[], limits).await }));
            }
            outcome = wait_slot(&mut running) => {
                running = None;
                let success = outcome_success(&cfg.name, &outcome, &mut last_status);
                if let Some(state) = counter.record(success) {
                    log_change(&cfg.name, state, &outcome);
                    let ev = TrackerEvent { id: cfg.id, state, at_ns: monotonic_ns() };
                    if tx.send(ev).await.is_err() {
                        break;
                    }
                }
            }
            _ = tx.closed() => break,
        }
    }
    // Dropping `running` kills the script's process group.
}

fn outcome_success(name: &str, outcome: &ScriptOutcome, last_status: &mut Option<i32>) -> bool {
    match outcome {
        ScriptOutcome::Exited(code) => {
            if *last_status != Some(*code) {
                tracing::info!("Script `{name}` now returning {code}");
            }
            *last_status = Some(*code);
        }
        ScriptOutcome::SpawnFailed(e) => {
            tracing::warn!("Error exec-ing track script {name}: {e}");
        }
        ScriptOutcome::Signaled(_) | ScriptOutcome::TimedOut => {}
    }
    outcome.success()
}

fn log_change(name: &str, state: TrackState, outcome: &ScriptOutcome) {
    match (state, outcome) {
        (TrackState::Up, _) => tracing::info!("VRRP_Script({name}) succeeded"),
        (_, ScriptOutcome::TimedOut) => tracing::info!("VRRP_Script({name}) timed_out"),
        (_, ScriptOutcome::Exited(code)) => {
            tracing::info!("VRRP_Script({name}) failed (exited with status {code})")
        }
        (_, ScriptOutcome::Signaled(sig)) => {
            tracing::info!("VRRP_Script({name}) failed (due to signal {sig})")
        }
        (_, ScriptOutcome::SpawnFailed(_)) => tracing::info!("VRRP_Script({name}) failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TrackState::{Down, Up};

    fn feed(rf: &mut RiseFall, results: &[bool]) -> Vec<Option<TrackState>> {
        results.iter().map(|r| rf.record(*r)).collect()
    }

    #[test]
    fn first_result_is_reported_from_init() {
        let mut rf = RiseFall::new(3, 3, false);
        assert_eq!(rf.initial_state(), None);
        assert_eq!(rf.state(), None);
        assert_eq!(rf.record(true), Some(Up));
        let mut rf = RiseFall::new(3, 3, false);
        assert_eq!(rf.record(false), Some(Down));
        assert_eq!(rf.state(), Some(Down));
    }

    #[test]
    fn rise_needs_consecutive_successes_after_failure() {
        let mut rf = RiseFall::new(3, 2, false);
        assert_eq!(rf.record(false), Some(Down));
        assert_eq!(feed(&mut rf, &[true, true]), [None, None]);
        // A failure in between restarts the count.
        assert_eq!(rf.record(false), None);
        assert_eq!(feed(&mut rf, &[true, true, true]), [None, None, Some(Up)]);
        assert_eq!(rf.record(true), None);
    }

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut rf = RiseFall::new(2, 3, false);
        assert_eq!(rf.record(true), Some(Up));
        assert_eq!(feed(&mut rf, &[false, false]), [None, None]);
        // A success in between puts it back to the top.
        assert_eq!(rf.record(true), None);
        assert_eq!(
            feed(&mut rf, &[false, false, false]),
            [None, None, Some(Down)]
        );
        assert_eq!(rf.record(false), None);
        assert_eq!(rf.state(), Some(Down));
    }

    #[test]
    fn init_fail_starts_failed_and_needs_rise() {
        let mut rf = RiseFall::new(2, 1, true);
        assert_eq!(rf.initial_state(), Some(Down));
        assert_eq!(rf.state(), Some(Down));
        // Failures while already failed are not changes.
        assert_eq!(rf.record(false), None);
        assert_eq!(feed(&mut rf, &[true, true]), [None, Some(Up)]);
        assert_eq!(rf.record(false), Some(Down));
    }

    #[test]
    fn rise_and_fall_of_one_flip_every_change() {
        let mut rf = RiseFall::new(1, 1, false);
        assert_eq!(
            feed(&mut rf, &[true, true, false, false, true, false]),
            [Some(Up), None, Some(Down), None, Some(Up), Some(Down)]
        );
    }

    #[test]
    fn zero_rise_fall_treated_as_one() {
        let mut rf = RiseFall::new(0, 0, false);
        assert_eq!(feed(&mut rf, &[false, true]), [Some(Down), Some(Up)]);
    }

    #[test]
    fn only_changes_are_reported_over_long_runs() {
        // Property: the reported sequence alternates and agrees with state().
        let mut rf = RiseFall::new(2, 3, false);
        let mut last = None;
        for i in 0..200u32 {
            let r = (i * 7 + i / 5) % 3 != 0;
            if let Some(s) = rf.record(r) {
                assert_ne!(Some(s), last);
                last = Some(s);
            }
            assert_eq!(rf.state(), last);
        }
    }
}
