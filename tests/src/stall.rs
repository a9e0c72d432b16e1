//! Host-stall monitor: a real-time thread that asks to wake every
//! millisecond and records every wake-up that comes late.
//!
//! The labs run every router on one machine. When that machine stalls as
//! a whole (its vCPUs descheduled by the hypervisor, or both cores held by
//! non-preemptible kernel work), every router stops at once: the master's
//! adverts stop *and* the backups' timers fire late, so a backup can take
//! over although no daemon did anything wrong. Run above the daemons'
//! real-time priority (xvrrpd's event loop is SCHED_RR 10), the monitor is
//! late only when nothing in user space could have run: a daemon that
//! spins cannot delay it. [`crate::retry`] uses it to tell such a stall
//! from a fault of the daemon under test.

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::clock::mono_ns;

/// The process-wide monitor of the labs runs above the daemons' real-time
/// priority (xvrrpd's event loop is SCHED_RR 10): a daemon cannot delay
/// it, only the host.
pub const HOST_MONITOR_PRIORITY: i32 = 50;

/// Wake-ups later than this are recorded.
const RECORD_FROM_NS: u64 = 200_000;
/// The monitor keeps at most this many late wake-ups.
const MAX_RECORDS: usize = 100_000;

/// A late wake-up: the monitor was due at `due_mono` (CLOCK_MONOTONIC) and
/// ran `late_ns` after it, so the host ran nothing of ours over
/// `[due_mono, due_mono + late_ns]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    pub due_mono: u64,
    pub late_ns: u64,
}

impl Stall {
    pub fn end_mono(&self) -> u64 {
        self.due_mono + self.late_ns
    }
}

/// Where and how long the whole host must have stalled to explain a
/// failure: at least `min`, overlapping `[from_mono, to_mono]`
/// (CLOCK_MONOTONIC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StallWindow {
    pub from_mono: u64,
    pub to_mono: u64,
    pub min: Duration,
}

impl StallWindow {
    /// The longest of `stalls` that explains the failure.
    pub fn longest_explaining(&self, stalls: &[Stall]) -> Option<Stall> {
        stalls
            .iter()
            .filter(|s| s.late_ns >= self.min.as_nanos() as u64)
            .filter(|s| s.due_mono <= self.to_mono && s.end_mono() >= self.from_mono)
            .max_by_key(|s| s.late_ns)
            .copied()
    }
}

/// See the module documentation. Stops when dropped.
pub struct StallMonitor {
    stop: Arc<AtomicBool>,
    late: Arc<Mutex<Vec<Stall>>>,
    handle: Option<thread::JoinHandle<()>>,
    rt: bool,
}

impl StallMonitor {
    /// Starts the monitor on SCHED_RR `priority` (falls back to the normal
    /// scheduler, see [`StallMonitor::realtime`]); it runs at most `max`.
    pub fn start(priority: i32, max: Duration) -> StallMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let late = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), late.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = thread::Builder::new()
            .name("stall-monitor".into())
            .spawn(move || {
                let rr = libc::sched_param {
                    sched_priority: priority,
                };
                // SAFETY: plain libc calls on this thread with valid arguments.
                let rt = unsafe {
                    libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0, 0, 0);
                    libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &rr)
                        == 0
                };
                let _ = tx.send(rt);
                watch(&s, &l, max);
            })
            .ok();
        let rt = handle.is_some() && rx.recv().unwrap_or(false);
        StallMonitor {
            stop,
            late,
            handle,
            rt,
        }
    }

    /// Whether the monitor runs real-time (without it, its own lateness
    /// also counts ordinary scheduling delays).
    pub fn realtime(&self) -> bool {
        self.rt
    }

    /// The worst lateness (ns) of wake-ups due in `[from, to]`
    /// (CLOCK_MONOTONIC); 0 when none was later than 200 µs.
    pub fn worst_between(&self, from: u64, to: u64) -> u64 {
        self.records()
            .iter()
            .filter(|s| s.due_mono >= from && s.due_mono <= to)
            .map(|s| s.late_ns)
            .max()
            .unwrap_or(0)
    }

    /// Every stall of at least `min` due from `since` (CLOCK_MONOTONIC) on,
    /// in order.
    pub fn at_least(&self, min: Duration, since: u64) -> Vec<Stall> {
        self.records()
            .into_iter()
            .filter(|s| s.late_ns >= min.as_nanos() as u64 && s.due_mono >= since)
            .collect()
    }

    /// Every late wake-up recorded so far, in order.
    pub fn records(&self) -> Vec<Stall> {
        self.late.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The monitor of this process's labs, started with the first of them; it
/// runs until the process exits.
pub fn host() -> &'static StallMonitor {
    static HOST: OnceLock<StallMonitor> = OnceLock::new();
    HOST.get_or_init(|| StallMonitor::start(HOST_MONITOR_PRIORITY, Duration::from_secs(24 * 3600)))
}

fn watch(stop: &AtomicBool, late: &Mutex<Vec<Stall>>, max: Duration) {
    let end = Instant::now() + max;
    let mut next = mono_ns() + 1_000_000;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let ts = libc::timespec {
            tv_sec: (next / 1_000_000_000) as libc::time_t,
            tv_nsec: (next % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: a valid timespec; no remainder needed with TIMER_ABSTIME.
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            );
        }
        let now = mono_ns();
        let late_ns = now.saturating_sub(next);
        if late_ns > RECORD_FROM_NS {
            let mut v = late.lock().unwrap_or_else(|p| p.into_inner());
            if v.len() < MAX_RECORDS {
                v.push(Stall {
                    due_mono: next,
                    late_ns,
                });
            }
        }
        next = now + 1_000_000;
    }
}

impl Drop for StallMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_and_threshold() {
        let m = StallMonitor::start(0, Duration::ZERO);
        m.late.lock().unwrap().extend([
            Stall {
                due_mono: 1_000,
                late_ns: 300_000,
            },
            Stall {
                due_mono: 10_000_000,
                late_ns: 40_000_000,
            },
        ]);
        let longest = |from_mono, to_mono| {
            StallWindow {
                from_mono,
                to_mono,
                min: Duration::from_millis(5),
            }
            .longest_explaining(&m.records())
        };
        assert_eq!(
            longest(45_000_000, 60_000_000),
            Some(Stall {
                due_mono: 10_000_000,
                late_ns: 40_000_000
            })
        );
        assert_eq!(longest(51_000_000, 60_000_000), None);
        assert_eq!(longest(0, 2_000), None);
        assert_eq!(m.worst_between(0, 20_000_000), 40_000_000);
        assert_eq!(m.at_least(Duration::from_micros(250), 0).len(), 2);
        assert_eq!(m.at_least(Duration::from_micros(250), 5_000).len(), 1);
    }
}
