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

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

use super::{TrackerEvent, TrackerHandle};
use crate::clock::monotonic_ns;
use crate::reactor::register_fd;
use crate::vrrp::{TrackState, TrackerId};

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

/// What is known of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub comm: Option<Vec<u8>>,
    pub cmdline: Option<Vec<u8>>,
}

/// Reads what the trackers need of `pid`; None if it is gone or a zombie.
fn read_proc(pid: i32, need_comm: bool, need_cmdline: bool) -> Option<ProcInfo> {
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
struct Core {
    cfgs: Vec<ProcessTrackerConfig>,
    quorums: Vec<Quorum>,
    /// pid → indices of the trackers counting it.
    pids: HashMap<i32, Vec<usize>>,
    need_comm: bool,
    need_cmdline: bool,
}

impl Core {
    fn new(cfgs: Vec<ProcessTrackerConfig>) -> Self {
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
    fn rescan(&mut self, now: u64, initial: bool) -> Vec<(usize, bool)> {
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

    fn on_fork(&mut self, parent: i32, child: i32, now: u64) -> Vec<(usize, bool)> {
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
    fn recheck(
        &mut self,
        pid: i32,
        info: Option<ProcInfo>,
        comm_only: bool,
        now: u64,
    ) -> Vec<(usize, bool)> {
        let now_matching = info.map(|i| self.matching(&i)).unwrap_or_default();
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

    fn on_exit(&mut self, pid: i32, now: u64) -> Vec<(usize, bool)> {
        let Some(idxs) = self.pids.remove(&pid) else {
            return Vec::new();
        };
        idxs.into_iter()
            .filter_map(|i| self.adjust(i, false, Cause::Exit, now))
            .collect()
    }

    fn on_timer(&mut self, now: u64) -> Vec<(usize, bool)> {
        self.quorums
            .iter_mut()
            .enumerate()
            .filter_map(|(i, q)| q.on_timer(now).map(|s| (i, s)))
            .collect()
    }

    fn next_deadline(&self) -> Option<u64> {
        self.quorums.iter().filter_map(Quorum::deadline).min()
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
            _ = sleep_opt(timer_at) => core.on_timer(monotonic_ns()),
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
                    tracing::info!("track_process: process events lost; rescanning in 1 s");
                    rescan_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
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

/// A process event of interest (thread events already filtered out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    Fork { parent: i32, child: i32 },
    Exec { pid: i32 },
    Comm { pid: i32, comm: Vec<u8> },
    Exit { pid: i32 },
}

const NETLINK_CONNECTOR: libc::c_int = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_COMM: u32 = 0x0000_0200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

struct Connector {
    fd: AsyncFd<OwnedFd>,
}

impl Connector {
    fn open() -> std::io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = CN_IDX_PROC;
        // SAFETY: `sa` is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let msg = listen_message();
        // SAFETY: `msg` is a valid buffer of the length passed.
        let rc = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            fd: register_fd(fd, tokio::io::Interest::READABLE)?,
        })
    }
}

fn listen_message() -> Vec<u8> {
    let total = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    m
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
}

fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(i32::from_ne_bytes)
}

/// Parses one datagram from the connector into the events we use.
pub fn parse_datagram(buf: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let Some(len) = u32_at(buf, off).map(|l| l as usize) else {
            break;
        };
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        let msg_type = buf
            .get(off + 4..off + 6)
            .and_then(|s| s.try_into().ok())
            .map(u16::from_ne_bytes)
            .unwrap_or(0);
        let msg = &buf[off..off + len];
        off += (len + 3) & !3;
        if msg_type == libc::NLMSG_ERROR as u16 || msg_type == libc::NLMSG_NOOP as u16 {
            continue;
        }
        let cn = NLMSG_HDRLEN;
        if u32_at(msg, cn) != Some(CN_IDX_PROC)
            || u32_at(msg, cn + 4) != Some(CN_VAL_PROC)
            || u32_at(msg, cn + 12) != Some(0)
        {
            continue;
        }
        let ev = cn + CN_MSG_LEN;
        let data = ev + 16; // what, cpu, timestamp_ns
        let Some(what) = u32_at(msg, ev) else {
            continue;
        };
        match what {
            PROC_EVENT_FORK => {
                // parent_pid, parent_tgid, child_pid, child_tgid
                if let (Some(ptgid), Some(cpid), Some(ctgid)) = (
                    i32_at(msg, data + 4),
                    i32_at(msg, data + 8),
                    i32_at(msg, data + 12),
                ) && cpid == ctgid
                {
                    out.push(ProcEvent::Fork {
                        parent: ptgid,
                        child: ctgid,
                    });
                }
            }
            PROC_EVENT_EXEC => {
                if let (Some(pid), Some(tgid)) = (i32_at(msg, data), i32_at(msg, data + 4))
                    && pid == tgid
                {
                    out.push(ProcEvent::Exec { pid: tgid });
                }
            }
            PROC_EVENT_COMM => {
                if let (Some(pid), Some(tgid), Some(raw)) = (
                    i32_at(msg, data),
                    i32_at(msg, data + 4),
                    msg.get(data + 8..data + 24),
                ) && pid == tgid
                {
                    let end = raw.iter().position(|c| *c == 0).unwrap_or(raw.len());
                    out.push(ProcEvent::Comm {
                        pid: tgid,
                        comm: raw[..end].to_vec(),
                    });
                }
            }
            PROC_EVENT_EXIT => {
                if let (Some(pid), Some(tgid)) = (i32_at(msg, data), i32_at(msg, data + 4))
                    && pid == tgid
                {
                    out.push(ProcEvent::Exit { pid: tgid });
                }
            }
            _ => {}
        }
    }
    out
}

/// Waits for and drains the connector; never resolves without one.
async fn recv_events(conn: Option<&Connector>, buf: &mut [u8]) -> std::io::Result<Vec<ProcEvent>> {
    let Some(conn) = conn else {
        return std::future::pending().await;
    };
    let mut out = Vec::new();
    loop {
        let mut guard = conn.fd.readable().await?;
        loop {
            match recv_kernel(conn.fd.get_ref().as_raw_fd(), buf) {
                Ok(Some(n)) => out.extend(parse_datagram(&buf[..n])),
                Ok(None) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
}

/// One datagram; `Ok(None)` for one not sent by the kernel.
fn recv_kernel(fd: RawFd, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut alen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: buffer and address are valid for the lengths passed.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut addr as *mut libc::sockaddr_nl).cast(),
            &mut alen,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if addr.nl_pid != 0 {
        return Ok(None);
    }
    Ok(Some(usize::try_from(n).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(q: u32, qmax: u32, fork_ms: u64, term_ms: u64) -> ProcessTrackerConfig {
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

    fn datagram(what: u32, data: &[i32]) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&what.to_ne_bytes());
        payload.extend_from_slice(&0u32.to_ne_bytes());
        payload.extend_from_slice(&0u64.to_ne_bytes());
        for d in data {
            payload.extend_from_slice(&d.to_ne_bytes());
        }
        let total = NLMSG_HDRLEN + CN_MSG_LEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&(payload.len() as u16).to_ne_bytes());
        m.extend_from_slice(&[0; 2]);
        m.extend_from_slice(&payload);
        m
    }

    #[test]
    fn parses_connector_events_and_skips_threads() {
        assert_eq!(
            parse_datagram(&datagram(PROC_EVENT_FORK, &[10, 10, 11, 11])),
            [ProcEvent::Fork {
                parent: 10,
                child: 11
            }]
        );
        assert!(parse_datagram(&datagram(PROC_EVENT_FORK, &[10, 10, 12, 11])).is_empty());
        assert_eq!(
            parse_datagram(&datagram(PROC_EVENT_EXEC, &[7, 7])),
            [ProcEvent::Exec { pid: 7 }]
        );
        assert_eq!(
            parse_datagram(&datagram(PROC_EVENT_EXIT, &[7, 7, 0, 17])),
            [ProcEvent::Exit { pid: 7 }]
        );
        assert!(parse_datagram(&datagram(PROC_EVENT_EXIT, &[8, 7, 0, 17])).is_empty());
        let mut comm = datagram(PROC_EVENT_COMM, &[5, 5]);
        let mut name = *b"worker\0\0\0\0\0\0\0\0\0\0";
        name[6] = 0;
        comm.extend_from_slice(&name);
        let len = comm.len() as u32;
        comm[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(
            parse_datagram(&comm),
            [ProcEvent::Comm {
                pid: 5,
                comm: b"worker".to_vec()
            }]
        );
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
}
