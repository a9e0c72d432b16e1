//! CPU time and wake-ups (context switches) of a daemon from /proc, and
//! the CPU hog of `--load`.
//!
//! CPU time comes two ways: the scheduler's run time of each thread
//! (`/proc/PID/task/TID/schedstat`, nanoseconds: the figure the targets
//! use), and utime+stime (`/proc/PID/stat`, sampled at the tick: 1 % of a
//! core over 10 s is 10 samples at USER_HZ 100, too coarse for a daemon
//! that runs 20 µs a hundred times a second, and the only split into user
//! and kernel time).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use xvrrpd_tests::clock::Stamp;

/// One look at a process group: CPU ticks and the context switches of
/// each of its threads.
struct GroupSample {
    /// utime and stime in clock ticks, summed over the processes.
    user: u64,
    sys: u64,
    /// Thread id → (thread name, voluntary + nonvoluntary context switches).
    switches: HashMap<u32, (String, u64)>,
    /// Thread id → ns on a CPU.
    run_ns: HashMap<u32, u64>,
}

/// Every live process in process group `pgid`: /proc/PID/stat adds up all
/// threads of a process, so its (utime, stime) are the daemon with all its
/// threads and, for keepalived, its VRRP child too; and the context
/// switches of each thread from `/proc/PID/task/*/status`.
fn group_sample(pgid: i32) -> Result<GroupSample> {
    let mut out = GroupSample {
        user: 0,
        sys: 0,
        switches: HashMap::new(),
        run_ns: HashMap::new(),
    };
    let mut found = 0;
    for e in std::fs::read_dir("/proc")?.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime …; comm may hold spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 13 || f[2].parse::<i32>().ok() != Some(pgid) {
            continue;
        }
        let utime: u64 = f[11].parse().unwrap_or(0);
        let stime: u64 = f[12].parse().unwrap_or(0);
        out.user += utime;
        out.sys += stime;
        found += 1;
        thread_switches(&e.path(), &mut out.switches, &mut out.run_ns);
    }
    if found == 0 {
        bail!("no process in group {pgid}");
    }
    Ok(out)
}

/// Adds the context switches and the run time of every thread of process
/// `dir` (`/proc/PID`) to `into` and `run_ns`, by thread id.
fn thread_switches(
    dir: &std::path::Path,
    into: &mut HashMap<u32, (String, u64)>,
    run_ns: &mut HashMap<u32, u64>,
) {
    let Ok(tasks) = std::fs::read_dir(dir.join("task")) else {
        return;
    };
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // The thread may be gone by now: then it is not counted.
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        let n: u64 = status
            .lines()
            .filter_map(|l| {
                l.strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum();
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        into.insert(tid, (name, n));
        // "run-ns wait-ns timeslices"
        if let Some(ns) = std::fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            run_ns.insert(tid, ns);
        }
    }
}

/// Clock ticks per second.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// A CPU reading of one daemon, with the context switches of its threads.
#[derive(Clone, Debug)]
pub struct CpuMark {
    pub user: u64,
    pub sys: u64,
    /// Thread id → (thread name, voluntary + nonvoluntary context
    /// switches), for every thread of every process of the group.
    pub switches: HashMap<u32, (String, u64)>,
    /// Thread id → ns on a CPU.
    pub run_ns: HashMap<u32, u64>,
    pub at: Stamp,
}

impl CpuMark {
    pub fn take(pgid: i32) -> Result<CpuMark> {
        let s = group_sample(pgid)?;
        Ok(CpuMark {
            user: s.user,
            sys: s.sys,
            switches: s.switches,
            run_ns: s.run_ns,
            at: Stamp::now(),
        })
    }

    fn wall_secs(&self, later: &CpuMark) -> f64 {
        (later.at.mono_ns.saturating_sub(self.at.mono_ns)) as f64 / 1e9
    }

    fn pct(&self, later: &CpuMark, ticks: u64) -> f64 {
        let wall = self.wall_secs(later);
        if wall <= 0.0 {
            return 0.0;
        }
        ticks as f64 / clk_tck() / wall * 100.0
    }

    /// Nanoseconds on a CPU between `self` and `later`, every thread: as
    /// for context switches, a thread that started meanwhile counts whole,
    /// one that ended meanwhile is lost.
    fn run_ns_to(&self, later: &CpuMark) -> u64 {
        later
            .run_ns
            .iter()
            .map(|(tid, n)| n.saturating_sub(self.run_ns.get(tid).copied().unwrap_or(0)))
            .sum()
    }

    /// Percent of one core from the scheduler's run time between `self`
    /// and `later`.
    pub fn run_percent_to(&self, later: &CpuMark) -> f64 {
        let wall = self.wall_secs(later);
        if wall <= 0.0 {
            return 0.0;
        }
        self.run_ns_to(later) as f64 / 1e9 / wall * 100.0
    }

    /// Milliseconds of run time between `self` and `later`.
    pub fn run_ms_to(&self, later: &CpuMark) -> f64 {
        self.run_ns_to(later) as f64 / 1e6
    }

    /// Percent of one core (user + system, tick-sampled) between `self`
    /// and `later`.
    pub fn percent_to(&self, later: &CpuMark) -> f64 {
        let t = (later.user + later.sys).saturating_sub(self.user + self.sys);
        self.pct(later, t)
    }

    /// The system (kernel) part of [`percent_to`](Self::percent_to).
    pub fn sys_percent_to(&self, later: &CpuMark) -> f64 {
        self.pct(later, later.sys.saturating_sub(self.sys))
    }

    /// Context switches between `self` and `later` by thread: the
    /// difference for a thread seen at both ends, all of a thread's count
    /// when it started meanwhile; a thread that ended meanwhile is not
    /// seen at the end, so its switches are lost.
    fn switch_deltas<'a>(&'a self, later: &'a CpuMark) -> impl Iterator<Item = (&'a str, u64)> {
        later.switches.iter().map(|(tid, (name, n))| {
            let before = self.switches.get(tid).map(|(_, b)| *b).unwrap_or(0);
            (name.as_str(), n.saturating_sub(before))
        })
    }

    /// Wake-ups per second between `self` and `later`: the context
    /// switches of every thread of the group over the wall time.
    pub fn wakeups_per_s_to(&self, later: &CpuMark) -> f64 {
        let wall = self.wall_secs(later);
        if wall <= 0.0 {
            return 0.0;
        }
        self.switch_deltas(later).map(|(_, n)| n).sum::<u64>() as f64 / wall
    }

    /// [`wakeups_per_s_to`](Self::wakeups_per_s_to) by thread name (threads
    /// of one name added up), busiest first.
    pub fn wakeups_by_thread_to(&self, later: &CpuMark) -> Vec<(String, f64)> {
        let wall = self.wall_secs(later);
        let mut by: Vec<(String, u64)> = Vec::new();
        for (name, n) in self.switch_deltas(later) {
            match by.iter_mut().find(|(m, _)| m == name) {
                Some((_, t)) => *t += n,
                None => by.push((name.to_string(), n)),
            }
        }
        by.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        by.into_iter()
            .map(|(name, n)| (name, if wall > 0.0 { n as f64 / wall } else { 0.0 }))
            .collect()
    }
}

/// Busy-loop threads at normal priority, one per core, until dropped or
/// their deadline passes.
pub struct Hog {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<u64>>,
}

impl Hog {
    pub fn start(threads: usize, max: Duration) -> Hog {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || {
                    let end = Instant::now() + max;
                    let mut spins: u64 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            spins = std::hint::black_box(spins.wrapping_add(1));
                        }
                        if Instant::now() >= end {
                            break;
                        }
                    }
                    spins
                })
            })
            .collect();
        Hog { stop, threads }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Wake-up lateness of a timer on this host, as xvrrpd's event loop sees
/// it: a thread on SCHED_RR 10 with 1 ns timer slack waits in poll(2) on
/// an absolute CLOCK_MONOTONIC timerfd, `samples` times `period` apart.
/// Returns the lateness of each wake-up (ns), sorted.
pub fn timer_lateness(samples: usize, period: Duration) -> Result<Vec<u64>> {
    let h = thread::spawn(move || -> Result<Vec<u64>> {
        let rr = libc::sched_param { sched_priority: 10 };
        // SAFETY: plain libc calls on this thread and a descriptor it owns.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &rr);
            libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0, 0, 0);
        }
        // SAFETY: as above.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
        if fd < 0 {
            bail!("timerfd_create: {}", std::io::Error::last_os_error());
        }
        let mut late = Vec::with_capacity(samples);
        let mut next = xvrrpd_tests::clock::mono_ns() + period.as_nanos() as u64;
        for _ in 0..samples {
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: (next / 1_000_000_000) as libc::time_t,
                    tv_nsec: (next % 1_000_000_000) as libc::c_long,
                },
            };
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let mut buf = [0u8; 8];
            // SAFETY: valid descriptor, spec, pollfd and buffer.
            unsafe {
                libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut());
                libc::poll(&mut pfd, 1, 1000);
                libc::read(fd, buf.as_mut_ptr().cast(), 8);
            }
            let now = xvrrpd_tests::clock::mono_ns();
            late.push(now.saturating_sub(next));
            next = now + period.as_nanos() as u64;
        }
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
        late.sort_unstable();
        Ok(late)
    });
    h.join()
        .map_err(|_| anyhow::anyhow!("the timer probe thread panicked"))?
}
