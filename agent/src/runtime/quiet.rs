//! A backup hearing a healthy master sleeps: the datapath keeps that
//! master's repeated adverts from the loop and only records when they came.
//!
//! After each turn, every instance the turn touched gets the kernel entry
//! its state machine allows ([`Router::quiet_master`](crate::vrrp::Router::quiet_master)):
//! the fingerprint of the last advert it accepted from that master, or
//! none. When an instance's down timer comes due (or its early wake-up
//! does), the time of the last kept advert goes back to the state machine
//! as [`Input::Heard`], which moves the deadline as that advert would have.

use tracing::warn;
use xvrrpd_common::QuietAdvert;

use super::daemon::{Daemon, InstanceId};
use crate::{
    clock::monotonic_ns,
    vrrp::{Input, TimerKind},
};

/// The fingerprint's source field for an address (IPv4 in the first four
/// bytes), as the datapath writes it.
fn src_bytes(addr: std::net::IpAddr) -> [u8; 16] {
    match addr {
        std::net::IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        std::net::IpAddr::V6(a) => a.octets(),
    }
}

impl Daemon {
    /// Marks `inst` for [`Daemon::sync_quiet`] at the end of the turn.
    pub(super) fn quiet_touched(&mut self, inst: InstanceId) {
        if !self.quiet_dirty.contains(&inst) {
            self.quiet_dirty.push(inst);
        }
    }

    /// Brings the datapath's entry of each touched instance in step with its
    /// state machine.
    pub(super) fn sync_quiet(&mut self) {
        if !self.datapath.times_adverts() {
            self.quiet_dirty.clear();
            return;
        }
        for inst in std::mem::take(&mut self.quiet_dirty) {
            let want = self.quiet_wanted(inst);
            let Some(i) = self.instances.get(inst) else {
                continue;
            };
            let key = i.plan.vrid.key;
            if i.quiet == want.map(|a| (key, a)) {
                continue;
            }
            if i.quiet.is_some() {
                // What was kept so far still counts.
                self.absorb_heard(inst);
            }
            let Some(i) = self.instances.get_mut(inst) else {
                continue;
            };
            if let Some((old_key, _)) = i.quiet.filter(|(k, _)| *k != key)
                && let Err(e) = self.datapath.set_quiet(old_key, None)
            {
                warn!("{}: datapath: {e}", i.plan.name);
            }
            match self.datapath.set_quiet(key, want) {
                Ok(()) => i.quiet = want.map(|a| (key, a)),
                // Every advert keeps waking the loop: slower, still right.
                Err(e) => {
                    warn!(
                        "{}: datapath: keeping adverts in the kernel: {e}",
                        i.plan.name
                    );
                    i.quiet = None;
                }
            }
        }
    }

    /// The entry the state machine allows for `inst`: its last accepted
    /// advert, when it came from the master a repeat of whose advert only
    /// re-arms the down timer.
    fn quiet_wanted(&self, inst: InstanceId) -> Option<QuietAdvert> {
        let q = self.router(inst)?.quiet_master()?;
        let fp = self.instances.get(inst)?.fingerprint?;
        (fp.src == src_bytes(q.addr) && fp.priority == q.priority).then_some(QuietAdvert {
            down_ns: q.down_ns,
            ..fp
        })
    }

    /// Down timers whose (early) wake-up has come: the kernel's last kept
    /// advert of each such instance goes to its state machine first, so a
    /// master still heard moves the deadline instead of losing it.
    pub(super) fn refresh_heard(&mut self, now: u64) {
        let woken: Vec<InstanceId> = self
            .timers
            .woken(now)
            .filter(|(_, kind)| *kind == TimerKind::MasterDown)
            .map(|(inst, _)| inst)
            .filter(|&inst| self.instances.get(inst).is_some_and(|i| i.quiet.is_some()))
            .collect();
        for inst in woken {
            if let Some(at_ns) = self.absorb_heard(inst) {
                self.feed(inst, monotonic_ns(), Input::Heard { at_ns });
            }
        }
    }

    /// Adds what the kernel kept so far to every instance's counters (for a
    /// status report).
    pub(super) fn absorb_all_heard(&mut self) {
        for inst in 0..self.instances.len() {
            if self.instances[inst].quiet.is_some() {
                self.absorb_heard(inst);
            }
        }
    }

    /// Reads what the kernel kept for `inst`: its count joins the adverts
    /// received; returns when the last one came.
    pub(super) fn absorb_heard(&mut self, inst: InstanceId) -> Option<u64> {
        let key = self.instances.get(inst)?.plan.vrid.key;
        let heard = self.datapath.heard(&key)?;
        let i = self.instances.get_mut(inst)?;
        // The kernel's count restarts with its entry (a removed VRID).
        let new = heard.count.checked_sub(i.heard_seen).unwrap_or(heard.count);
        i.heard_seen = heard.count;
        i.counters.adverts_received += new;
        i.metrics.adverts_received(new);
        Some(heard.last_ns)
    }
}
