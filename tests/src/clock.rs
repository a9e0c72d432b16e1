//! Timestamps on both clocks the lab deals with.
//!
//! tcpdump stamps frames with CLOCK_REALTIME; xvrrpd's status report and
//! the lab's own watchers use CLOCK_MONOTONIC. Every event the harness
//! records carries both, read back to back, so it can be compared with
//! either kind of source without guessing an offset.

use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

/// One instant on CLOCK_REALTIME and CLOCK_MONOTONIC (nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// CLOCK_REALTIME, ns since the epoch (the capture's clock).
    pub rt_ns: u64,
    /// CLOCK_MONOTONIC, ns (the daemons' clock).
    pub mono_ns: u64,
}

fn read(clock: ClockId) -> u64 {
    let ts = clock_gettime(clock).expect("clock_gettime cannot fail for this clock");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// CLOCK_MONOTONIC now, in ns.
pub fn mono_ns() -> u64 {
    read(ClockId::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME now, in ns since the epoch.
pub fn rt_ns() -> u64 {
    read(ClockId::CLOCK_REALTIME)
}

impl Stamp {
    pub fn now() -> Self {
        // Monotonic between two realtime reads: the pair is within a
        // microsecond of each other.
        let a = rt_ns();
        let m = mono_ns();
        let b = rt_ns();
        Stamp {
            rt_ns: a + (b - a) / 2,
            mono_ns: m,
        }
    }

    /// CLOCK_REALTIME − CLOCK_MONOTONIC at this instant.
    pub fn offset(&self) -> i128 {
        self.rt_ns as i128 - self.mono_ns as i128
    }

    /// Converts a monotonic time to realtime with this stamp's offset.
    pub fn mono_to_rt(&self, mono: u64) -> u64 {
        (mono as i128 + self.offset()) as u64
    }

    /// Converts a realtime time to monotonic with this stamp's offset.
    pub fn rt_to_mono(&self, rt: u64) -> u64 {
        (rt as i128 - self.offset()).max(0) as u64
    }

    pub fn plus(&self, d: Duration) -> Stamp {
        let n = d.as_nanos() as u64;
        Stamp {
            rt_ns: self.rt_ns + n,
            mono_ns: self.mono_ns + n,
        }
    }
}

/// Formats a duration in nanoseconds as milliseconds with µs precision.
pub fn ms(ns: i128) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

/// Puts the calling thread in the SCHED_FIFO class (priority 10), so the
/// lab's recording threads (address watches, prober, FIFO readers) are
/// woken at once even when compilers keep every core busy. Those threads
/// block in poll/recv with timeouts, so they cannot starve anything.
/// Returns false if the kernel refused.
pub fn realtime_thread() -> bool {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: changes only the calling thread's scheduling; param is valid.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}
