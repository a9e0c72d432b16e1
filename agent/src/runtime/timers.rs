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
///
/// A deadline may ask to be woken `lead` early: waking a sleeping thread on
/// a virtual machine costs hundreds of microseconds, so for the deadlines
/// where microseconds count the loop wakes early and spins the rest
/// ([`Timers::spin_target`]) while still watching for adverts.
///
/// A deadline may also accept being handled up to `early` before it
/// ([`Timers::arm_within`]): when the loop wakes for another deadline it
/// takes this one along, so deadlines falling due together cost one
/// wake-up.
pub struct Timers<K> {
    fd: AsyncFd<Fd>,
    /// key → (wake, deadline, early)
    entries: HashMap<K, (u64, u64, u64)>,
    /// The largest `early` of any entry armed so far.
    max_early: u64,
    /// Ordered by wake time.
    queue: BTreeSet<(u64, K)>,
    armed_at: Option<u64>,
    /// Inside a batch ([`Timers::batch`]) the timerfd is set once, at its end.
    batching: bool,
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
            entries: HashMap::new(),
            max_early: 0,
            queue: BTreeSet::new(),
            armed_at: None,
            batching: false,
        })
    }

    /// Sets (or moves) the deadline of `key`.
    pub fn arm(&mut self, key: K, at_ns: u64) -> io::Result<()> {
        self.arm_early(key, at_ns, 0)
    }

    /// Sets the deadline of `key`, waking `lead_ns` before it.
    pub fn arm_early(&mut self, key: K, at_ns: u64, lead_ns: u64) -> io::Result<()> {
        self.insert(key, at_ns.saturating_sub(lead_ns), at_ns, 0)
    }

    /// Sets the deadline of `key`, which may be handled up to `early_ns`
    /// before it when the loop wakes for another deadline.
    pub fn arm_within(&mut self, key: K, at_ns: u64, early_ns: u64) -> io::Result<()> {
        self.max_early = self.max_early.max(early_ns);
        self.insert(key, at_ns, at_ns, early_ns)
    }

    fn insert(&mut self, key: K, wake: u64, at_ns: u64, early: u64) -> io::Result<()> {
        if let Some((old_wake, _, _)) = self.entries.insert(key, (wake, at_ns, early)) {
            self.queue.remove(&(old_wake, key));
        }
        self.queue.insert((wake, key));
        self.rearm()
    }

    pub fn cancel(&mut self, key: K) -> io::Result<()> {
        if let Some((wake, _, _)) = self.entries.remove(&key) {
            self.queue.remove(&(wake, key));
            self.rearm()?;
        }
        Ok(())
    }

    pub fn deadline(&self, key: K) -> Option<u64> {
        self.entries.get(&key).map(|(_, d, _)| *d)
    }

    /// When the timerfd must next wake the loop.
    pub fn next_deadline(&self) -> Option<u64> {
        self.queue.first().map(|(t, _)| *t)
    }

    /// Keys whose (early) wake-up has passed at `now_ns`, due or not.
    pub fn woken(&self, now_ns: u64) -> impl Iterator<Item = K> + '_ {
        self.queue
            .iter()
            .take_while(move |(wake, _)| *wake <= now_ns)
            .map(|(_, k)| *k)
    }

    /// Whether `key`'s (early) wake-up has passed at `now_ns`.
    pub fn woke(&self, key: K, now_ns: u64) -> bool {
        self.entries
            .get(&key)
            .is_some_and(|(wake, _, _)| *wake <= now_ns)
    }

    /// The nearest deadline whose early wake-up has passed but which is not
    /// due yet at `now_ns`: the loop spins until then.
    pub fn spin_target(&self, now_ns: u64) -> Option<u64> {
        self.queue
            .iter()
            .take_while(|(wake, _)| *wake <= now_ns)
            .filter_map(|(_, k)| self.entries.get(k).map(|(_, d, _)| *d))
            .filter(|d| *d > now_ns)
            .min()
    }

    /// Defers setting the timerfd until [`Timers::flush`]: one handled event
    /// usually moves several timers, and each set is a system call.
    pub fn batch(&mut self) {
        self.batching = true;
    }

    /// Ends a batch: sets the timerfd to the earliest wake-up.
    pub fn flush(&mut self) -> io::Result<()> {
        self.batching = false;
        self.rearm()
    }

    fn rearm(&mut self) -> io::Result<()> {
        if self.batching {
            return Ok(());
        }
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
        expiration(&self.fd).await?;
        self.armed_at = None;
        Ok(())
    }

    /// Removes and returns every timer due at `now_ns` (or early enough to
    /// be handled with them), earliest first.
    pub fn pop_due(&mut self, now_ns: u64, out: &mut Vec<(K, u64)>) -> io::Result<()> {
        let start = out.len();
        let horizon = now_ns.saturating_add(self.max_early);
        let due: Vec<(u64, K)> = self
            .queue
            .iter()
            .take_while(|(wake, _)| *wake <= horizon)
            .filter(|(_, k)| {
                self.entries
                    .get(k)
                    .is_some_and(|(_, d, early)| d.saturating_sub(*early) <= now_ns)
            })
            .copied()
            .collect();
        let any_due = due
            .iter()
            .any(|(_, k)| self.entries.get(k).is_some_and(|(_, d, _)| *d <= now_ns));
        if !any_due {
            // Only early ones: they wait for their own wake-up (or the
            // next that a due deadline brings).
            self.armed_at = None;
            return self.rearm();
        }
        for (wake, key) in due {
            self.queue.remove(&(wake, key));
            if let Some((_, deadline, _)) = self.entries.remove(&key) {
                out.push((key, deadline));
            }
        }
        out[start..].sort_by_key(|(_, d)| *d);
        self.armed_at = None;
        self.rearm()
    }
}

/// A chore's wake-up on a `timerfd` of its own: one wake-up per period
/// (tokio's timer wheel wakes the thread several times on the way to a
/// deadline seconds away), and none when the chore rode along on another
/// wake-up within the period ([`Ticker::done`]).
pub struct Ticker {
    fd: AsyncFd<Fd>,
    period: std::time::Duration,
    last_ns: u64,
}

impl Ticker {
    /// Must be called inside a tokio runtime.
    pub fn new(period: std::time::Duration) -> io::Result<Self> {
        let tfd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the AsyncFd owns the TimerFd, so the fd outlives the registration.
        let fd = unsafe { AsyncFd::register(Fd(tfd)) }.map_err(io::Error::from)?;
        let mut t = Self {
            fd,
            period,
            last_ns: 0,
        };
        t.done(crate::clock::monotonic_ns())?;
        Ok(t)
    }

    /// Waits until a period has passed since the chore was last done.
    pub async fn tick(&mut self) -> io::Result<()> {
        expiration(&self.fd).await
    }

    /// Whether the chore is worth doing on a wake-up at `now_ns` it did not
    /// cause: half its period has passed.
    pub fn worth_doing(&self, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.last_ns) >= self.period.as_nanos() as u64 / 2
    }

    /// The chore was done at `now_ns`: the next tick is a period later.
    pub fn done(&mut self, now_ns: u64) -> io::Result<()> {
        self.last_ns = now_ns;
        self.fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(self.period)),
            TimerSetTimeFlags::empty(),
        )?;
        Ok(())
    }
}

/// Waits until the timerfd has expired (once or more) and reads it.
async fn expiration(fd: &AsyncFd<Fd>) -> io::Result<()> {
    loop {
        let mut guard = fd.readable().await?;
        let mut buf = [0u8; 8];
        // SAFETY: reading the 8-byte expiration count into a local buffer.
        let n = unsafe { libc::read(guard.get_inner().as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        // One read takes every expiration: the fd is drained either way, so
        // the readiness is cleared now rather than by a read that would only
        // return EAGAIN.
        guard.clear_ready();
        if n == 8 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::monotonic_ns;

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
    async fn an_early_wake_is_reported_as_a_spin_target_not_as_due() {
        let mut t: Timers<u8> = Timers::new().expect("timerfd");
        let now = monotonic_ns();
        t.arm_early(1, now + 5_000_000, 4_000_000).expect("arm");
        t.arm(2, now + 50_000_000).expect("arm");
        assert_eq!(
            t.next_deadline(),
            Some(now + 1_000_000),
            "wakes at deadline - lead"
        );
        tokio::time::timeout(std::time::Duration::from_secs(1), t.expired())
            .await
            .expect("the early wake-up fires")
            .expect("read");
        let woke = monotonic_ns();
        assert!(woke < now + 5_000_000, "woke after the deadline itself");
        let mut fired = Vec::new();
        t.pop_due(woke, &mut fired).expect("pop");
        assert!(fired.is_empty(), "nothing is due before its deadline");
        assert_eq!(t.spin_target(woke), Some(now + 5_000_000));
        t.pop_due(now + 5_000_000, &mut fired).expect("pop");
        assert_eq!(fired, vec![(1, now + 5_000_000)]);
        assert_eq!(t.spin_target(now + 5_000_000), None);
    }

    #[tokio::test]
    async fn deadlines_that_may_be_early_go_along_with_a_due_one() {
        let mut t: Timers<u8> = Timers::new().expect("timerfd");
        let now = monotonic_ns();
        t.arm_within(1, now + 1_000_000, 500_000).expect("arm");
        t.arm_within(2, now + 1_300_000, 500_000).expect("arm");
        t.arm_within(3, now + 1_600_000, 500_000).expect("arm");
        let mut fired = Vec::new();
        // Nothing is due yet: 2 could go early, but not alone.
        t.pop_due(now + 900_000, &mut fired).expect("pop");
        assert!(fired.is_empty(), "{fired:?}");
        // 1 is due: 2 (within 0.5 ms) goes along, 3 does not.
        t.pop_due(now + 1_000_000, &mut fired).expect("pop");
        assert_eq!(
            fired.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(t.next_deadline(), Some(now + 1_600_000));
    }

    #[tokio::test]
    async fn a_chore_done_along_the_way_moves_its_tick() {
        let period = std::time::Duration::from_millis(40);
        let mut t = Ticker::new(period).expect("timerfd");
        let start = monotonic_ns();
        assert!(!t.worth_doing(start), "just done");
        assert!(t.worth_doing(start + 20_000_000), "half a period later");
        for _ in 0..2 {
            tokio::time::timeout(std::time::Duration::from_secs(1), t.tick())
                .await
                .expect("ticks within a second")
                .expect("read");
            t.done(monotonic_ns()).expect("re-arm");
        }
        let took = monotonic_ns() - start;
        assert!(took >= 80_000_000, "2 ticks of 40 ms in {took} ns");
        // Done on another wake-up 30 ms on: no tick for a period from then.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let done_at = monotonic_ns();
        t.done(done_at).expect("re-arm");
        tokio::time::timeout(std::time::Duration::from_secs(1), t.tick())
            .await
            .expect("ticks within a second")
            .expect("read");
        let gap = monotonic_ns() - done_at;
        assert!(
            gap >= 40_000_000,
            "ticked {gap} ns after the chore was done"
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
