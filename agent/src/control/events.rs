//! The daemon's event stream: state transitions (with their timelines) and
//! notable events, to every follower (`xvrrpd events`, HTTP `/events`).
//! Bounded: the loop publishes without ever waiting; a follower that falls
//! [`CAPACITY`] events behind is told how many it missed and cut off.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::status::TransitionRecord;

/// Events kept for a follower that has not read them yet.
pub const CAPACITY: usize = 1024;

/// A write to a follower that takes longer than this cuts it off: a
/// follower that stopped reading holds nothing of the daemon's.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// What happened.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A state change, once its timeline is complete (VIPs, first GARP).
    Transition {
        instance: String,
        transition: TransitionRecord,
    },
    /// Another MAC claimed a VIP this master holds.
    VipClaimed {
        instance: String,
        vip: String,
        claimant: String,
    },
    /// A VIP someone deleted under a master was added back.
    VipRestored { instance: String, vip: String },
    /// A tracked object changed: `up`, `down`, or a tracked file's value.
    Tracker {
        instance: String,
        tracker: String,
        state: String,
    },
    /// A new configuration runs.
    Reloaded {
        kept: usize,
        changed: usize,
        left: usize,
        new: usize,
    },
    /// A new configuration was refused; the running one goes on.
    ReloadRefused { error: String },
    /// To a follower only: it missed this many events and is cut off.
    Dropped { missed: u64 },
}

/// One event, numbered in publication order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub seq: u64,
    /// Wall clock, milliseconds since the epoch.
    pub time_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// One line for people.
    pub fn human(&self) -> String {
        let secs = self.time_ms / 1000;
        let clock = format!(
            "{:02}:{:02}:{:02}.{:03}",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            self.time_ms % 1000
        );
        let what = match &self.kind {
            EventKind::Transition {
                instance,
                transition,
            } => transition.log_line(instance),
            EventKind::VipClaimed {
                instance,
                vip,
                claimant,
            } => format!("{instance}: VIP {vip} claimed by {claimant}"),
            EventKind::VipRestored { instance, vip } => {
                format!("{instance}: VIP {vip} was deleted; added back")
            }
            EventKind::Tracker {
                instance,
                tracker,
                state,
            } => format!("{instance}: {tracker} {state}"),
            EventKind::Reloaded {
                kept,
                changed,
                left,
                new,
            } => format!("reloaded: {kept} kept ({changed} changed), {left} left, {new} new"),
            EventKind::ReloadRefused { error } => {
                format!("reload refused: {}", error.lines().next().unwrap_or(""))
            }
            EventKind::Dropped { missed } => {
                format!("missed {missed} event(s) while not reading: cut off")
            }
        };
        format!("{clock} UTC {what}")
    }
}

/// Where the loop publishes; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    seq: Arc<AtomicU64>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self {
            tx,
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Never waits: with no follower the event is gone, and a slow one
    /// loses its oldest.
    pub fn publish(&self, kind: EventKind) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            time_ms,
            kind,
        };
        let _ = self.tx.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> Follower {
        Follower {
            rx: self.tx.subscribe(),
        }
    }

    /// Followers now.
    pub fn followers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// One follower's view of the stream.
pub struct Follower {
    rx: broadcast::Receiver<Arc<Event>>,
}

impl Follower {
    /// The next event; after falling behind, one `Dropped` event and then
    /// `None` (the follower is cut off), and `None` when the daemon stops.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        match self.rx.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                self.rx = self.rx.resubscribe();
                // Closed below: the next call sees the fresh receiver, but
                // this follower is done.
                Some(Arc::new(Event {
                    seq: 0,
                    time_ms: 0,
                    kind: EventKind::Dropped { missed },
                }))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Writes a follower's stream as lines (JSON, or [`Event::human`]) until
/// it falls behind, stops reading for [`WRITE_TIMEOUT`], or goes away.
pub async fn stream_lines<W: tokio::io::AsyncWrite + Unpin>(
    mut follower: Follower,
    out: &mut W,
    json: bool,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    loop {
        let Some(event) = follower.next().await else {
            return Ok(());
        };
        let mut line = if json {
            serde_json::to_string(&*event).map_err(std::io::Error::other)?
        } else {
            event.human()
        };
        line.push('\n');
        match tokio::time::timeout(WRITE_TIMEOUT, out.write_all(line.as_bytes())).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the follower stopped reading",
                ));
            }
        }
        if matches!(event.kind, EventKind::Dropped { .. }) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reloaded(n: usize) -> EventKind {
        EventKind::Reloaded {
            kept: n,
            changed: 0,
            left: 0,
            new: 0,
        }
    }

    #[tokio::test]
    async fn followers_get_every_event_in_order() {
        let bus = EventBus::new();
        let (mut a, mut b) = (bus.subscribe(), bus.subscribe());
        for n in 0..3 {
            bus.publish(reloaded(n));
        }
        for f in [&mut a, &mut b] {
            for n in 0..3 {
                let e = f.next().await.expect("event");
                assert_eq!(e.kind, reloaded(n));
                assert_eq!(e.seq, n as u64 + 1);
            }
        }
    }

    #[tokio::test]
    async fn a_follower_that_falls_behind_is_told_and_cut_off() {
        let bus = EventBus::new();
        let f = bus.subscribe();
        // Never waits, however far behind the follower is.
        for n in 0..CAPACITY + 10 {
            bus.publish(reloaded(n));
        }
        let mut out = Vec::new();
        stream_lines(f, &mut out, true).await.expect("streams");
        let text = String::from_utf8(out).expect("utf-8");
        let last = text.lines().last().expect("a line");
        let e: Event = serde_json::from_str(last).expect("json");
        assert_eq!(e.kind, EventKind::Dropped { missed: 10 });
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn json_names_the_event() {
        let e = Event {
            seq: 7,
            time_ms: 1_000,
            kind: EventKind::VipRestored {
                instance: "VI_1".into(),
                vip: "192.0.2.1".into(),
            },
        };
        let v: serde_json::Value = serde_json::to_value(&e).expect("json");
        assert_eq!(v["event"], "vip_restored");
        assert_eq!(v["instance"], "VI_1");
        assert_eq!(v["seq"], 7);
        assert!(
            e.human()
                .ends_with("VI_1: VIP 192.0.2.1 was deleted; added back")
        );
    }
}
