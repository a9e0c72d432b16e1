//! Effective priority from tracked objects, with keepalived's semantics
//! (vrrp_track.c).
//!
//! Binary objects (interface, script, process): weight `w` with multiplier
//! `m` (−1 with `reverse`). Up and `w > 0` adds `w·m`; down and `w < 0`
//! adds `w·m`; otherwise nothing. Weight 0: failure (up with `reverse`)
//! puts the instance in FAULT.
//!
//! File objects: status = value·w·m clamped to −254..253; −254 means FAULT.
//! Weight 0: a non-zero value (zero with `reverse`) means FAULT.
//!
//! Effective priority = base + Σ contributions, clamped to 1..254; an
//! address owner (base 255) never moves.

use super::config::{PRIORITY_OWNER, TrackerConfig, TrackerKind};
use super::tracked::TrackState;

/// What one tracked object currently does to the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contribution {
    Fault,
    Weight(i32),
}

pub fn contribution(cfg: &TrackerConfig, state: TrackState) -> Contribution {
    let m: i64 = if cfg.reverse { -1 } else { 1 };
    let w = i64::from(cfg.weight);
    match cfg.kind {
        TrackerKind::Binary => {
            // A file-style value reported for a binary tracker: non-zero is up.
            let up = match state {
                TrackState::Up => true,
                TrackState::Down => false,
                TrackState::Value(v) => v != 0,
            };
            if w == 0 {
                if up == cfg.reverse {
                    Contribution::Fault
                } else {
                    Contribution::Weight(0)
                }
            } else if (up && w > 0) || (!up && w < 0) {
                Contribution::Weight((w * m) as i32)
            } else {
                Contribution::Weight(0)
            }
        }
        TrackerKind::Value => {
            let v = match state {
                TrackState::Up => 0,
                TrackState::Down => 1,
                TrackState::Value(v) => v,
            };
            if w == 0 {
                if (v != 0) != cfg.reverse {
                    Contribution::Fault
                } else {
                    Contribution::Weight(0)
                }
            } else {
                let status = v.saturating_mul(w).saturating_mul(m).clamp(-254, 253);
                if status == -254 {
                    Contribution::Fault
                } else {
                    Contribution::Weight(status as i32)
                }
            }
        }
    }
}

/// `(effective priority, fault)` for a base priority and tracker states.
pub fn effective(base: u8, trackers: &[(TrackerConfig, TrackState)]) -> (u8, bool) {
    let mut total = i64::from(base);
    let mut fault = false;
    for (cfg, state) in trackers {
        match contribution(cfg, *state) {
            Contribution::Fault => fault = true,
            Contribution::Weight(w) => total += i64::from(w),
        }
    }
    let prio = if base == PRIORITY_OWNER {
        PRIORITY_OWNER
    } else {
        total.clamp(1, i64::from(PRIORITY_OWNER) - 1) as u8
    };
    (prio, fault)
}
