//! Trackers: `vrrp_script`, `track_file`, `vrrp_track_process` and
//! `bfd_instance`, with keepalived's semantics.
//!
//! Trackers never touch VRRP state. Each runs as its own tokio task and sends
//! [`TrackerEvent`]s (state changes only) on a channel, in the state machine's
//! vocabulary ([`TrackerId`], [`TrackState`]); the runtime feeds them to the
//! pure state machine, which applies the instances' weights
//! ([`crate::vrrp::contribution`]).
//!
//! This module owns the trackers' tasks and their keepalived rules (rise and
//! fall, quorum and delays, strtol file values). Running a script, and
//! deciding whether it may run, belongs to [`crate::script`], which the
//! notify scripts share.
//!
//! Wiring, for the runtime:
//! 1. [`command::default_script_user`] once (global `script_user`,
//!    `enable_script_security`); [`RunAs::resolve`] for scripts with a `user`.
//! 2. [`ScriptCommand::parse`] then [`security::check_script`] (vrrp_script) or
//!    [`security::check_notify_script`] for each script; log the `Err`s and each
//!    script's `warnings`, then [`security::security_summary`] once.
//! 3. Start trackers with one `mpsc::Sender<TrackerEvent>`:
//!    [`script::spawn`], [`file::FileTracker::spawn`] (after
//!    [`file::init_file`]), [`process::ProcessMonitor::spawn`]. Their
//!    `initial_state()` / `initial` values seed the state machine; events
//!    report later changes.

pub mod bfd;
pub mod file;
pub mod process;
pub mod script;

use std::time::Duration;

#[cfg(doc)]
use crate::script::{RunAs, ScriptCommand, command, security};
use crate::vrrp::{TrackState, TrackerId};

/// One state change of one tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackerEvent {
    pub id: TrackerId,
    pub state: TrackState,
    /// CLOCK_MONOTONIC nanoseconds when the change was observed.
    pub at_ns: u64,
}

/// Handle to a tracker task. Dropping it aborts the task, which kills any
/// script it is running (its whole process group); [`TrackerHandle::shutdown`]
/// does the same and waits for it.
#[derive(Debug)]
pub struct TrackerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TrackerHandle {
    pub(crate) fn new(
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks the task to stop and waits (at most `grace`) for it to finish.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(grace, &mut task).await.is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }

    /// True once the task has ended (receiver gone, or an error it logged).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for TrackerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Awaits the future in `slot`, or never resolves when the slot is empty, so a
/// `select!` branch can wait on "the script currently running, if any".
pub(crate) async fn wait_slot<F: std::future::Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
