//! Absolute CLOCK_MONOTONIC timers on one `timerfd`.
//!
//! tokio's timer wheel rounds to milliseconds; VRRP deadlines are computed to
//! the nanosecond from kernel receive timestamps, so the event loop sleeps on
//! a `timerfd` armed with `TFD_TIMER_ABSTIME` at the earliest deadline.

use std::{
    collections::{BTreeSet, HashMap},
    hash::Hash,
    io,
    os::fd::{AsFd, AsRawFd, RawFd},
};

use nix::sys::{
    time::TimeSpec,
    timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags},
};
use tokio::io::unix::AsyncFd;

struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A set of keyed one-shot deadlines (nanoseconds of CLOCK_MONOTONIC).
pub struct Timers<K> {
    fd: AsyncFd<Fd>,
    deadline_of: HashMap<K, u64>,
    queue: BTreeSet<(u64, K)>,
    armed_at: Option<u64>,
}

impl<K: Copy + Ord + Hash> Timers<K> {
    /// Must be called inside a tokio runtime.
    pub fn new() -> io::Result<Self> {
        let tfd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the AsyncFd owns the TimerFd, so the fd outlives the registration.
        let fd = unsafe { AsyncFd::register(Fd(tfd)) }.map_err(io::Error::from)?;
        Ok(Self {
            fd,
            deadline_of: HashMap::new(),
            queue: BTreeSet::new(),
            armed_at: None,
        })
    }

    /// Sets (or moves) the deadline of `key`.
    pub fn arm(&mut self, key: K, at_ns: u64) -> io::Result<()> {
        if let Some(old) = self.deadline_of.insert(key, at_ns) {
            self.queue.remove(&(old, key));
        }
        self.queue.insert((at_ns, key));
        self.rearm()
    }

    pub fn cancel(&mut self, key: K) -> io::Result<()> {
        if let Some(old) = self.deadline_of.remove(&key) {
            self.queue.remove(&(old, key));
            self.rearm()?;
        }
        Ok(())
    }

    pub fn deadline(&self, key: K) -> Option<u64> {
        self.deadline_of.get(&key).copied()
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.queue.first().map(|(t, _)| *t)
    }

    fn rearm(&mut self) -> io::Result<()> {
        let next = self.next_deadline();
        if next == self.armed_at {
            return Ok(());
        }
        match next {
            // A deadline of 0 would disarm the timerfd: 1 ns is already past.
            Some(at) => self.fd.get_ref().0.set(
                Expiration::OneShot(TimeSpec::from_duration(std::time::Duration::from_nanos(
                    at.max(1),
                ))),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            )?,
            None => self.fd.get_ref().0.unset()?,
        }
        self.armed_at = next;
        Ok(())
    }

    /// Waits until the earliest deadline has passed (forever when none is set).
    pub async fn expired(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = [0u8; 8];
            // SAFETY: reading the 8-byte expiration count into a local buffer.
            let n =
                unsafe { libc::read(guard.get_inner().as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
            if n == 8 {
                self.armed_at = None;
                return Ok(());
            }
            guard.clear_ready();
        }
    }

    /// Removes and returns every timer due at `now_ns`, earliest first.
    pub fn pop_due(&mut self, now_ns: u64, out: &mut Vec<(K, u64)>) -> io::Result<()> {
        while let Some(&(at, key)) = self.queue.first() {
            if at > now_ns {
                break;
            }
            self.queue.pop_first();
            self.deadline_of.remove(&key);
            out.push((key, at));
        }
        self.armed_at = None;
        self.rearm()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::rawsock::monotonic_ns;

    #[tokio::test]
    async fn fires_in_deadline_order_and_not_early() {
        let mut t: Timers<u8> = Timers::new().expect("timerfd");
        let now = monotonic_ns();
        t.arm(1, now + 3_000_000).expect("arm");
        t.arm(2, now + 1_000_000).expect("arm");
        t.arm(3, now + 2_000_000).expect("arm");
        t.cancel(3).expect("cancel");
        let mut fired = Vec::new();
        while fired.len() < 2 {
            tokio::time::timeout(std::time::Duration::from_secs(2), t.expired())
                .await
                .expect("a timer fires within 2 s")
                .expect("timerfd read");
            let at = monotonic_ns();
            let before = fired.len();
            t.pop_due(at, &mut fired).expect("pop");
            for (_, deadline) in &fired[before..] {
                assert!(at >= *deadline, "woke {} ns early", deadline - at);
            }
        }
        assert_eq!(
            fired.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            vec![2, 1]
        );
    }

    #[tokio::test]
    async fn moving_a_deadline_replaces_it() {
        let mut t: Timers<u8> = Timers::new().expect("timerfd");
        let now = monotonic_ns();
        t.arm(1, now + 50_000_000).expect("arm");
        t.arm(1, now + 1_000_000).expect("re-arm");
        assert_eq!(t.deadline(1), Some(now + 1_000_000));
        tokio::time::timeout(std::time::Duration::from_secs(1), t.expired())
            .await
            .expect("fires at the moved deadline")
            .expect("read");
        let mut fired = Vec::new();
        t.pop_due(monotonic_ns(), &mut fired).expect("pop");
        assert_eq!(fired.len(), 1);
        assert_eq!(t.next_deadline(), None);
    }
}
