//! Which processes a tracker counts: keepalived's name and parameter
//! matching, what is read of a process in /proc, and the per-pid counts the
//! monitor keeps up to date (full /proc scan, fork, exec, comm change, exit).

use std::collections::HashMap;

use super::{Cause, ProcessTrackerConfig, Quorum};

/// How parameters are compared (`param_match`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamMatch {
    /// Parameters are not looked at.
    None,
    /// Exactly the configured parameters (none if none are configured).
    Exact,
    /// The last configured parameter may be a prefix of the actual one.
    Initial,
    /// The configured parameters are the first ones; more may follow.
    Partial,
}

/// Which processes a tracker counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessMatch {
    process: Vec<u8>,
    /// Configured parameters, each followed by a NUL as in /proc/PID/cmdline.
    params: Option<Vec<u8>>,
    param_match: ParamMatch,
    full_command: bool,
}

impl ProcessMatch {
    /// From the `process NAME [PARAM…]`, `param_match [initial|partial]` and
    /// `full_command` keywords. `param_match` is `Some(ParamMatch::Exact)`
    /// for a bare `param_match`.
    pub fn new(
        process: &str,
        params: &[String],
        param_match: Option<ParamMatch>,
        full_command: bool,
    ) -> Self {
        let params_bytes = (!params.is_empty()).then(|| {
            let mut v = Vec::new();
            for p in params {
                v.extend_from_slice(p.as_bytes());
                v.push(0);
            }
            v
        });
        let param_match = match param_match {
            Some(m) => m,
            None if params_bytes.is_some() => ParamMatch::Exact,
            None => ParamMatch::None,
        };
        Self {
            process: process.as_bytes().to_vec(),
            full_command: full_command || params_bytes.is_some() || param_match != ParamMatch::None,
            params: params_bytes,
            param_match,
        }
    }

    pub fn full_command(&self) -> bool {
        self.full_command
    }

    /// `cmdline` is /proc/PID/cmdline (NUL separated, NUL terminated).
    pub fn matches(&self, comm: Option<&[u8]>, cmdline: Option<&[u8]>) -> bool {
        if !self.full_command {
            return comm.is_some_and(|c| c == self.process.as_slice());
        }
        let Some(cmdline) = cmdline else {
            return false;
        };
        let argv0_len = cmdline
            .iter()
            .position(|c| *c == 0)
            .unwrap_or(cmdline.len());
        if cmdline[..argv0_len] != *self.process {
            return false;
        }
        if self.param_match == ParamMatch::None {
            return true;
        }
        let actual = cmdline.get(argv0_len + 1..).unwrap_or(&[]);
        self.check_params(actual)
    }

    /// keepalived's `check_params()`.
    fn check_params(&self, actual: &[u8]) -> bool {
        let want = self.params.as_deref();
        let want_len = want.map_or(0, <[u8]>::len);
        if self.param_match == ParamMatch::Exact && want.is_none() && actual.is_empty() {
            return true;
        }
        if actual.len() < want_len {
            return false;
        }
        let Some(want) = want else {
            return self.param_match != ParamMatch::Exact;
        };
        match self.param_match {
            ParamMatch::Exact => actual == want,
            ParamMatch::Partial => actual[..want_len] == *want,
            ParamMatch::Initial => want_len == 1 || actual[..want_len - 1] == want[..want_len - 1],
            ParamMatch::None => true,
        }
    }
}

/// What is known of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub comm: Option<Vec<u8>>,
    pub cmdline: Option<Vec<u8>>,
}

/// Reads what the trackers need of `pid`; None if it is gone or a zombie.
pub(super) fn read_proc(pid: i32, need_comm: bool, need_cmdline: bool) -> Option<ProcInfo> {
    let mut info = ProcInfo::default();
    if need_comm {
        let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        let open = stat.iter().position(|c| *c == b'(')?;
        let close = stat.iter().rposition(|c| *c == b')')?;
        if stat.get(close + 2) == Some(&b'Z') {
            return None;
        }
        info.comm = Some(stat.get(open + 1..close)?.to_vec());
    }
    if need_cmdline {
        info.cmdline = Some(std::fs::read(format!("/proc/{pid}/cmdline")).ok()?);
    }
    Some(info)
}

/// All trackers' counts and which pids they include.
pub(super) struct Core {
    pub(super) cfgs: Vec<ProcessTrackerConfig>,
    pub(super) quorums: Vec<Quorum>,
    /// pid → indices of the trackers counting it.
    pids: HashMap<i32, Vec<usize>>,
    pub(super) need_comm: bool,
    pub(super) need_cmdline: bool,
}

impl Core {
    pub(super) fn new(cfgs: Vec<ProcessTrackerConfig>) -> Self {
        let need_cmdline = cfgs.iter().any(|c| c.matcher.full_command());
        let need_comm = cfgs.iter().any(|c| !c.matcher.full_command());
        let quorums = cfgs.iter().map(|c| Quorum::new(c, 0)).collect();
        Self {
            cfgs,
            quorums,
            pids: HashMap::new(),
            need_comm,
            need_cmdline,
        }
    }

    fn matching(&self, info: &ProcInfo) -> Vec<usize> {
        self.cfgs
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.matcher
                    .matches(info.comm.as_deref(), info.cmdline.as_deref())
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Recounts from a full /proc scan. The first scan sets the initial
    /// states without reporting; later ones report like keepalived's
    /// reinitialisation (gains at once, losses after terminate_delay).
    pub(super) fn rescan(&mut self, now: u64, initial: bool) -> Vec<(usize, bool)> {
        let mut pids: HashMap<i32, Vec<usize>> = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for ent in dir.flatten() {
                let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let Some(info) = read_proc(pid, self.need_comm, self.need_cmdline) else {
                    continue;
                };
                let m = self.matching(&info);
                if !m.is_empty() {
                    pids.insert(pid, m);
                }
            }
        }
        let mut counts = vec![0u32; self.cfgs.len()];
        for idxs in pids.values() {
            for &i in idxs {
                counts[i] += 1;
            }
        }
        self.pids = pids;
        let mut out = Vec::new();
        for (i, count) in counts.into_iter().enumerate() {
            if initial {
                self.quorums[i] = Quorum::new(&self.cfgs[i], count);
                continue;
            }
            let old = self.quorums[i].count();
            if count == old {
                continue;
            }
            let cause = if count < old {
                Cause::Exit
            } else {
                Cause::Immediate
            };
            if let Some(s) = self.quorums[i].set_count(count, cause, now) {
                out.push((i, s));
            }
        }
        out
    }

    fn adjust(&mut self, i: usize, up: bool, cause: Cause, now: u64) -> Option<(usize, bool)> {
        let c = self.quorums[i].count();
        let c = if up {
            c.saturating_add(1)
        } else {
            c.saturating_sub(1)
        };
        self.quorums[i].set_count(c, cause, now).map(|s| (i, s))
    }

    pub(super) fn on_fork(&mut self, parent: i32, child: i32, now: u64) -> Vec<(usize, bool)> {
        let Some(parents) = self.pids.get(&parent).cloned() else {
            return Vec::new();
        };
        let entry = self.pids.entry(child).or_default();
        let added: Vec<usize> = parents.into_iter().filter(|i| !entry.contains(i)).collect();
        entry.extend(&added);
        added
            .into_iter()
            .filter_map(|i| self.adjust(i, true, Cause::Fork, now))
            .collect()
    }

    /// exec or comm change: `comm_only` leaves full-command trackers alone
    /// (a comm event says nothing about the command line).
    pub(super) fn recheck(
        &mut self,
        pid: i32,
        info: Option<ProcInfo>,
        comm_only: bool,
        now: u64,
    ) -> Vec<(usize, bool)> {
        // Gone before its exec or comm event was read (the kernel sends
        // the exec event after the new name shows): its exit event counts
        // the loss, after terminate_delay, not this one at once.
        let Some(info) = info else {
            return Vec::new();
        };
        let now_matching = self.matching(&info);
        let had = self.pids.get(&pid).cloned().unwrap_or_default();
        let mut out = Vec::new();
        for i in 0..self.cfgs.len() {
            if comm_only && self.cfgs[i].matcher.full_command() {
                continue;
            }
            let was = had.contains(&i);
            let is = now_matching.contains(&i);
            if was == is {
                continue;
            }
            let entry = self.pids.entry(pid).or_default();
            if is {
                entry.push(i);
            } else {
                entry.retain(|x| *x != i);
            }
            out.extend(self.adjust(i, is, Cause::Immediate, now));
        }
        if self.pids.get(&pid).is_some_and(Vec::is_empty) {
            self.pids.remove(&pid);
        }
        out
    }

    pub(super) fn on_exit(&mut self, pid: i32, now: u64) -> Vec<(usize, bool)> {
        let Some(idxs) = self.pids.remove(&pid) else {
            return Vec::new();
        };
        idxs.into_iter()
            .filter_map(|i| self.adjust(i, false, Cause::Exit, now))
            .collect()
    }

    pub(super) fn on_timer(&mut self, now: u64) -> Vec<(usize, bool)> {
        self.quorums
            .iter_mut()
            .enumerate()
            .filter_map(|(i, q)| q.on_timer(now).map(|s| (i, s)))
            .collect()
    }

    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.quorums.iter().filter_map(Quorum::deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::process::tests::cfg;

    #[test]
    fn comm_matching_is_exact() {
        let m = ProcessMatch::new("sshd", &[], None, false);
        assert!(!m.full_command());
        assert!(m.matches(Some(b"sshd"), None));
        assert!(!m.matches(Some(b"ssh"), None));
        assert!(!m.matches(Some(b"sshd2"), None));
    }

    #[test]
    fn params_imply_full_command_and_exact() {
        let m = ProcessMatch::new("/usr/bin/app", &["-c".into(), "conf".into()], None, false);
        assert!(m.full_command());
        assert!(m.matches(None, Some(b"/usr/bin/app\0-c\0conf\0")));
        assert!(!m.matches(None, Some(b"/usr/bin/app\0-c\0conf\0-v\0")));
        assert!(!m.matches(None, Some(b"/usr/bin/app\0-c\0")));
        assert!(!m.matches(None, Some(b"app\0-c\0conf\0")));
    }

    #[test]
    fn partial_and_initial() {
        let p = ProcessMatch::new("/a", &["-x".into()], Some(ParamMatch::Partial), false);
        assert!(p.matches(None, Some(b"/a\0-x\0more\0")));
        assert!(!p.matches(None, Some(b"/a\0-xy\0")));
        let i = ProcessMatch::new(
            "/a",
            &["-x".into(), "ab".into()],
            Some(ParamMatch::Initial),
            false,
        );
        assert!(i.matches(None, Some(b"/a\0-x\0abc\0")));
        assert!(i.matches(None, Some(b"/a\0-x\0ab\0")));
        assert!(!i.matches(None, Some(b"/a\0-x\0a\0")));
    }

    #[test]
    fn bare_param_match_means_no_params() {
        let m = ProcessMatch::new("/a", &[], Some(ParamMatch::Exact), false);
        assert!(m.full_command());
        assert!(m.matches(None, Some(b"/a\0")));
        assert!(!m.matches(None, Some(b"/a\0-x\0")));
        let any = ProcessMatch::new("/a", &[], None, true);
        assert!(any.matches(None, Some(b"/a\0-x\0")));
    }

    #[test]
    fn core_counts_fork_exec_exit() {
        let mut c = Core::new(vec![cfg(2, u32::MAX, 0, 0)]);
        c.pids.insert(100, vec![0]);
        c.quorums[0] = Quorum::new(&c.cfgs[0], 1);
        assert_eq!(c.on_fork(100, 101, 0), [(0, true)]);
        // Same child again (e.g. seen by a scan first): not counted twice.
        assert!(c.on_fork(100, 101, 0).is_empty());
        // The child execs into something that does not match.
        let other = ProcInfo {
            comm: Some(b"y".to_vec()),
            cmdline: None,
        };
        assert_eq!(c.recheck(101, Some(other), false, 0), [(0, false)]);
        assert!(c.on_exit(101, 0).is_empty());
        assert!(c.on_exit(100, 0).is_empty());
        assert_eq!(c.quorums[0].count(), 0);
    }

    /// A tracked process killed before its exec event is read: the event
    /// finds it gone, and the loss waits for terminate_delay as any exit.
    #[test]
    fn an_exec_event_of_a_dead_process_does_not_skip_terminate_delay() {
        let mut c = Core::new(vec![cfg(1, u32::MAX, 0, 800)]);
        c.pids.insert(100, vec![0]);
        c.quorums[0] = Quorum::new(&c.cfgs[0], 1);
        assert!(c.recheck(100, None, false, 0).is_empty());
        assert!(c.on_exit(100, 0).is_empty());
        assert_eq!(c.quorums[0].deadline(), Some(800_000_000));
        assert!(c.on_timer(799_999_999).is_empty());
        assert_eq!(c.on_timer(800_000_000), [(0, false)]);
    }
}
