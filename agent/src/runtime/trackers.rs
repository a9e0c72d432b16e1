//! The running health checks (`vrrp_script`, `track_file`,
//! `vrrp_track_process`, `bfd_instance`): which to keep, stop and start when the
//! configuration changes, and their events' channel.
//!
//! A tracker keeps running across a reload only when everything it was
//! configured with is the same; anything else (a new path, a new interval)
//! restarts it.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use super::plan::{FilePlan, Plan, ProcessPlan, ScriptPlan};
use crate::{
    clock::monotonic_ns,
    script::CheckedScript,
    tracker::{
        self, TrackerEvent, TrackerHandle,
        bfd::BfdSessionConfig,
        file::{FileTracker, FileTrackerConfig, InitFile},
        process::{MonitorOptions, ParamMatch, ProcessMatch, ProcessMonitor, ProcessTrackerConfig},
        script::ScriptTrackerConfig,
    },
    vrrp::{TrackState, TrackerId},
};

/// What a configuration change does to the trackers, decided before
/// anything runs.
#[derive(Default)]
pub(super) struct TrackerChanges {
    /// Running trackers that stay as they are.
    keep: Vec<TrackerId>,
    scripts: Vec<(TrackerId, ScriptTrackerConfig)>,
    files: Vec<(FilePlan, FileTrackerConfig)>,
    /// One monitor for every `vrrp_track_process`, as keepalived has one
    /// connector socket; it is kept under the first one's id.
    processes: Option<(TrackerId, Vec<ProcessTrackerConfig>)>,
    /// One task for every BFD session, kept under the first one's id: any
    /// change restarts them all (their sessions start Down again).
    bfds: Option<(TrackerId, Vec<BfdSessionConfig>)>,
}

/// Decides which trackers of `new` keep running from `old`, and makes the
/// configuration of every one that starts.
pub(super) fn changes(old: &Plan, new: &Plan) -> TrackerChanges {
    let mut c = TrackerChanges::default();
    for (sp, checked) in &new.scripts {
        if old.scripts.iter().any(|(o, oc)| o == sp && oc == checked) {
            c.keep.push(sp.id);
        } else {
            c.scripts.push((sp.id, script_config(sp, checked.clone())));
        }
    }
    for fp in &new.files {
        if old.files.contains(fp) {
            c.keep.push(fp.id);
        } else {
            c.files.push((fp.clone(), file_config(fp)));
        }
    }
    if let Some(first) = new.processes.first() {
        if old.processes == new.processes {
            c.keep.push(first.id);
        } else {
            c.processes = Some((first.id, new.processes.iter().map(process_config).collect()));
        }
    }
    if let Some(first) = new.bfds.first() {
        if old.bfds == new.bfds {
            c.keep.push(first.id);
        } else {
            c.bfds = Some((first.id, new.bfds.clone()));
        }
    }
    c
}

fn script_config(sp: &ScriptPlan, checked: CheckedScript) -> ScriptTrackerConfig {
    let mut cfg = ScriptTrackerConfig::new(sp.id, sp.name.clone(), checked);
    cfg.interval = sp.interval;
    cfg.timeout = sp.timeout;
    cfg.rise = sp.rise;
    cfg.fall = sp.fall;
    cfg.init_fail = sp.init_fail;
    cfg
}

fn file_config(fp: &FilePlan) -> FileTrackerConfig {
    FileTrackerConfig {
        id: fp.id,
        name: fp.name.clone(),
        path: fp.path.clone(),
        init: None,
    }
}

fn process_config(p: &ProcessPlan) -> ProcessTrackerConfig {
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
}

/// The running trackers and the channel their events come in on.
pub(super) struct Trackers {
    tx: mpsc::Sender<TrackerEvent>,
    rx: mpsc::Receiver<TrackerEvent>,
    running: Vec<(TrackerId, TrackerHandle)>,
}

impl Trackers {
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::channel(1024);
        Self {
            tx,
            rx,
            running: Vec::new(),
        }
    }

    /// The next state change of any tracker (never ends: the sender is ours).
    pub(super) async fn next(&mut self) -> Option<TrackerEvent> {
        self.rx.recv().await
    }

    /// Stops the trackers `changes` does not keep and starts the new ones.
    /// A tracker that cannot start is reported and stays silent, as at
    /// start-up: its instances keep its configured initial state.
    pub(super) fn apply(&mut self, changes: TrackerChanges, reloading: bool) {
        for (id, h) in std::mem::take(&mut self.running) {
            if changes.keep.contains(&id) {
                self.running.push((id, h));
            } else {
                tokio::task::spawn_local(h.shutdown(Duration::from_secs(1)));
            }
        }
        for (id, cfg) in changes.scripts {
            let handle = tracker::script::spawn(cfg, self.tx.clone());
            self.running.push((id, handle));
        }
        for (fp, cfg) in changes.files {
            self.start_file(&fp, cfg, reloading);
        }
        if let Some((id, cfgs)) = changes.processes {
            match ProcessMonitor::spawn(cfgs, self.tx.clone(), MonitorOptions::default()) {
                Ok(m) => {
                    for (tid, state) in m.initial {
                        self.report(tid, state);
                    }
                    self.running.push((id, m.handle));
                }
                Err(e) => warn!("vrrp_track_process: {e}"),
            }
        }
        if let Some((id, cfgs)) = changes.bfds {
            match tracker::bfd::spawn(cfgs, self.tx.clone()) {
                Ok(handle) => self.running.push((id, handle)),
                Err(e) => warn!("bfd_instance: {e}: its track_bfd stays down"),
            }
        }
    }

    fn start_file(&mut self, fp: &FilePlan, cfg: FileTrackerConfig, reloading: bool) {
        if let Some((value, overwrite)) = fp.init
            && let Err(e) =
                tracker::file::init_file(&fp.path, InitFile { value, overwrite }, reloading)
        {
            warn!("track_file {}: {e}", fp.name);
        }
        match FileTracker::spawn(cfg, self.tx.clone()) {
            Ok(ft) => {
                // The file's value at start is this tracker's first report.
                self.report(fp.id, TrackState::Value(i64::from(ft.initial)));
                self.running.push((fp.id, ft.handle));
            }
            Err(e) => warn!("track_file {}: {e}", fp.name),
        }
    }

    fn report(&self, id: TrackerId, state: TrackState) {
        let _ = self.tx.try_send(TrackerEvent {
            id,
            state,
            at_ns: monotonic_ns(),
        });
    }

    pub(super) async fn stop_all(&mut self) {
        for (_, h) in self.running.drain(..) {
            h.shutdown(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn file(id: u32, path: &str) -> FilePlan {
        FilePlan {
            id: TrackerId(id),
            name: format!("f{id}"),
            path: PathBuf::from(path),
            init: None,
        }
    }

    fn plan_with_files(files: Vec<FilePlan>) -> Plan {
        let root = crate::script::RunAs {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
        };
        Plan {
            files,
            ..Plan::empty(root, false, std::time::Duration::ZERO)
        }
    }

    #[test]
    fn a_track_file_with_a_new_path_restarts() {
        let old = plan_with_files(vec![file(1, "/run/a"), file(2, "/run/b")]);
        let new = plan_with_files(vec![file(1, "/run/a"), file(2, "/run/c")]);
        let c = changes(&old, &new);
        assert_eq!(c.keep, vec![TrackerId(1)]);
        assert_eq!(c.files.len(), 1);
        assert_eq!(c.files[0].1.path, PathBuf::from("/run/c"));
    }

    #[test]
    fn bfd_sessions_run_on_unless_one_of_them_changes() {
        let mut old = plan_with_files(Vec::new());
        old.bfds = vec![
            tracker::bfd::example_config(5, "192.0.2.1"),
            tracker::bfd::example_config(6, "192.0.2.2"),
        ];
        let c = changes(&old, &old.clone());
        assert_eq!(c.keep, vec![TrackerId(5)]);
        assert!(c.bfds.is_none());
        let mut new = old.clone();
        new.bfds[1].session.detect_mult = 3;
        let c = changes(&old, &new);
        assert!(c.keep.is_empty());
        assert_eq!(
            c.bfds.map(|(id, cfgs)| (id, cfgs.len())),
            Some((TrackerId(5), 2))
        );
    }

    #[test]
    fn an_unchanged_configuration_keeps_everything() {
        let old = plan_with_files(vec![file(1, "/run/a")]);
        let c = changes(&old, &old.clone());
        assert_eq!(c.keep, vec![TrackerId(1)]);
        assert!(c.files.is_empty() && c.scripts.is_empty() && c.processes.is_none());
    }
}
