//! State-change notifications: `notify_master|backup|fault|stop|deleted`,
//! the generic `notify` script, `notify_master_rx_lower_pri`, and the notify
//! FIFOs, with keepalived's arguments and line format (vrrp_notify.c).
//!
//! For each transition, in keepalived's order: the state's own script, then
//! the generic `notify` script with four more arguments
//! (`INSTANCE|GROUP`, name, `MASTER|BACKUP|FAULT|STOP|DELETED`, priority;
//! priority is 0 for a group), then the FIFO line
//! `INSTANCE "VI_1" MASTER 100`.
//!
//! keepalived forks notify scripts and never waits for them, so a quick
//! BACKUP→MASTER→BACKUP can run its scripts out of order. Here every
//! instance or group has its own queue: its scripts run one after another in
//! the order of the transitions, while different instances do not wait for
//! each other, and the caller never waits at all.

pub mod fifo;

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::script::exec::{self, RunLimits};
use crate::script::security::CheckedScript;

pub use fifo::{FifoConfig, FifoError, NotifyFifo};

/// Transitions kept waiting behind a slow script before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 1024;

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Instance,
    Group,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Instance => "INSTANCE",
            Subject::Group => "GROUP",
        }
    }
}

/// Target state of a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyState {
    Master,
    Backup,
    Fault,
    Stop,
    /// Instance removed by a reload (with `notify_deleted`).
    Deleted,
}

impl NotifyState {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyState::Master => "MASTER",
            NotifyState::Backup => "BACKUP",
            NotifyState::Fault => "FAULT",
            NotifyState::Stop => "STOP",
            NotifyState::Deleted => "DELETED",
        }
    }
}

/// What a FIFO line reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FifoEvent {
    State(NotifyState),
    /// A master received an advert with a lower priority.
    MasterRxLowerPri,
    /// Priority changed while master (`notify_priority_changes`).
    MasterPriority,
    /// Priority changed while backup (`notify_priority_changes`).
    BackupPriority,
}

impl FifoEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            FifoEvent::State(s) => s.as_str(),
            FifoEvent::MasterRxLowerPri => "MASTER_RX_LOWER_PRI",
            FifoEvent::MasterPriority => "MASTER_PRIORITY",
            FifoEvent::BackupPriority => "BACKUP_PRIORITY",
        }
    }
}

/// One FIFO line, keepalived's `"%s \"%s\" %s %d\n"`.
pub fn fifo_line(subject: Subject, name: &str, event: FifoEvent, priority: u8) -> String {
    format!(
        "{} \"{}\" {} {}\n",
        subject.as_str(),
        name,
        event.as_str(),
        priority
    )
}

/// The four arguments appended to the generic `notify` script.
pub fn notify_args(
    subject: Subject,
    name: &str,
    state: NotifyState,
    priority: u8,
) -> [OsString; 4] {
    [
        subject.as_str().into(),
        name.into(),
        state.as_str().into(),
        priority.to_string().into(),
    ]
}

/// The scripts of one instance or sync group (all already checked).
#[derive(Clone, Debug, Default)]
pub struct NotifyScripts {
    pub master: Option<CheckedScript>,
    pub backup: Option<CheckedScript>,
    pub fault: Option<CheckedScript>,
    pub stop: Option<CheckedScript>,
    pub deleted: Option<CheckedScript>,
    /// The generic `notify` script.
    pub notify: Option<CheckedScript>,
    pub master_rx_lower_pri: Option<CheckedScript>,
}

impl NotifyScripts {
    fn for_state(&self, state: NotifyState) -> Option<&CheckedScript> {
        match state {
            NotifyState::Master => self.master.as_ref(),
            NotifyState::Backup => self.backup.as_ref(),
            NotifyState::Fault => self.fault.as_ref(),
            NotifyState::Stop => self.stop.as_ref(),
            NotifyState::Deleted => self.deleted.as_ref(),
        }
    }
}

/// Settings for [`Notifier`].
#[derive(Clone, Copy, Debug)]
pub struct NotifierOptions {
    /// Per instance/group backlog of transitions.
    pub queue: usize,
    /// keepalived never times notify scripts out (None). Since scripts here
    /// run in order, a hung one delays the next ones of the same instance:
    /// set a limit to have it killed instead.
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        Self {
            queue: DEFAULT_QUEUE,
            timeout: None,
            kill_grace: exec::DEFAULT_KILL_GRACE,
        }
    }
}

/// Scripts to run for one transition, in order.
type Job = Vec<(CheckedScript, Vec<OsString>)>;

struct Target {
    scripts: Arc<NotifyScripts>,
    jobs: mpsc::Sender<Job>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs notifications; owned by the runtime's event loop.
pub struct Notifier {
    targets: HashMap<(Subject, String), Target>,
    fifos: Vec<NotifyFifo>,
    opts: NotifierOptions,
}

impl Notifier {
    /// `fifos`: the global `notify_fifo` and `vrrp_notify_fifo`, if set; every
    /// line goes to each.
    pub fn new(fifos: Vec<NotifyFifo>, opts: NotifierOptions) -> Self {
        Self {
            targets: HashMap::new(),
            fifos,
            opts,
        }
    }

    /// Registers an instance or group and its scripts (starts its queue).
    pub fn add(&mut self, subject: Subject, name: &str, scripts: NotifyScripts) {
        let (tx, rx) = mpsc::channel(self.opts.queue.max(1));
        let limits = RunLimits {
            timeout: self.opts.timeout,
            kill_grace: self.opts.kill_grace,
        };
        let task = tokio::spawn(run_queue(rx, limits));
        let old = self.targets.insert(
            (subject, name.to_owned()),
            Target {
                scripts: Arc::new(scripts),
                jobs: tx,
                task,
            },
        );
        if let Some(old) = old {
            // Replaced by a reload: let queued work finish in the background.
            drop(old.jobs);
        }
    }

    /// A transition of `name` to `state`. Never waits. `priority` is the
    /// effective priority (0 for a group).
    pub fn state_change(&self, subject: Subject, name: &str, state: NotifyState, priority: u8) {
        self.announce(subject, name, state, priority, |s| s.for_state(state));
    }

    /// A reload removed the instance: keepalived runs its `notify_deleted`
    /// script (if any, never `notify_fault`), and the generic script and the
    /// FIFOs get `state` (FAULT, or DELETED with `notify_deleted`).
    pub fn deleted(&self, name: &str, state: NotifyState, priority: u8) {
        self.announce(Subject::Instance, name, state, priority, |s| {
            s.deleted.as_ref()
        });
    }

    /// The script `own` picks, then the generic one with `state`, then the
    /// FIFO line.
    fn announce(
        &self,
        subject: Subject,
        name: &str,
        state: NotifyState,
        priority: u8,
        own: impl Fn(&NotifyScripts) -> Option<&CheckedScript>,
    ) {
        if let Some(t) = self.targets.get(&(subject, name.to_owned())) {
            let mut job: Job = Vec::new();
            if let Some(s) = own(&t.scripts) {
                job.push((s.clone(), Vec::new()));
            }
            if let Some(g) = &t.scripts.notify {
                job.push((
                    g.clone(),
                    notify_args(subject, name, state, priority).to_vec(),
                ));
            }
            self.enqueue(t, name, job);
        }
        self.fifo(subject, name, FifoEvent::State(state), priority);
    }

    /// The FIFO line of a state the instance or group is already in
    /// (`fifo_write_vrrp_states_on_reload`): no script runs.
    pub fn restate(&self, subject: Subject, name: &str, state: NotifyState, priority: u8) {
        self.fifo(subject, name, FifoEvent::State(state), priority);
    }

    /// A master received a lower-priority advert.
    pub fn master_rx_lower_pri(&self, name: &str, priority: u8) {
        if let Some(t) = self.targets.get(&(Subject::Instance, name.to_owned()))
            && let Some(s) = &t.scripts.master_rx_lower_pri
        {
            self.enqueue(t, name, vec![(s.clone(), Vec::new())]);
        }
        self.fifo(
            Subject::Instance,
            name,
            FifoEvent::MasterRxLowerPri,
            priority,
        );
    }

    /// Effective priority changed (`notify_priority_changes`): FIFO only.
    pub fn priority_change(&self, name: &str, is_master: bool, priority: u8) {
        let ev = if is_master {
            FifoEvent::MasterPriority
        } else {
            FifoEvent::BackupPriority
        };
        self.fifo(Subject::Instance, name, ev, priority);
    }

    fn enqueue(&self, t: &Target, name: &str, job: Job) {
        if job.is_empty() {
            return;
        }
        if t.jobs.try_send(job).is_err() {
            tracing::warn!(
                "notify scripts for {name} are {} transitions behind - dropping this one",
                self.opts.queue
            );
        }
    }

    fn fifo(&self, subject: Subject, name: &str, ev: FifoEvent, priority: u8) {
        if self.fifos.is_empty() {
            return;
        }
        let line = fifo_line(subject, name, ev, priority);
        for f in &self.fifos {
            f.send_line(&line);
        }
    }

    /// Lets queued scripts (e.g. the STOP ones) run for up to `grace`, then
    /// kills what is left and closes the FIFOs.
    pub async fn shutdown(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let mut tasks = Vec::new();
        for (_, t) in self.targets {
            drop(t.jobs);
            tasks.push(t.task);
        }
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        for f in self.fifos {
            f.close(left).await;
        }
    }
}

async fn run_queue(mut rx: mpsc::Receiver<Job>, limits: RunLimits) {
    while let Some(job) = rx.recv().await {
        for (script, extra) in job {
            let outcome = exec::run(&script, &extra, limits).await;
            match outcome {
                exec::ScriptOutcome::Exited(_) => {}
                other => tracing::info!(
                    "notify script {} ended: {other:?}",
                    script.program.display()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_line_format() {
        assert_eq!(
            fifo_line(
                Subject::Instance,
                "VI_1",
                FifoEvent::State(NotifyState::Master),
                100
            ),
            "INSTANCE \"VI_1\" MASTER 100\n"
        );
        assert_eq!(
            fifo_line(Subject::Group, "G", FifoEvent::State(NotifyState::Fault), 0),
            "GROUP \"G\" FAULT 0\n"
        );
        assert_eq!(
            fifo_line(Subject::Instance, "VI_1", FifoEvent::MasterRxLowerPri, 254),
            "INSTANCE \"VI_1\" MASTER_RX_LOWER_PRI 254\n"
        );
        assert_eq!(FifoEvent::MasterPriority.as_str(), "MASTER_PRIORITY");
        assert_eq!(FifoEvent::BackupPriority.as_str(), "BACKUP_PRIORITY");
        assert_eq!(NotifyState::Stop.as_str(), "STOP");
        assert_eq!(NotifyState::Deleted.as_str(), "DELETED");
    }

    #[test]
    fn generic_notify_arguments() {
        let a = notify_args(Subject::Instance, "VI_1", NotifyState::Backup, 90);
        assert_eq!(a, ["INSTANCE", "VI_1", "BACKUP", "90"].map(OsString::from));
    }
}
