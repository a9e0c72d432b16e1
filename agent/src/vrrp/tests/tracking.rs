//! Rules 50–58: trackers, weights and the effective priority.

use super::*;

#[test]
fn keepalived_track_positive_weight_adds_when_up() {
    let mut c = cfg(Version::V3, 100);
    c.trackers = vec![tracker(1, TrackerKind::Binary, 20, false, TrackState::Down)];
    let mut r = started(c);
    assert_eq!(r.priority(), 100);
    let a = r.handle(
        S,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Up,
        },
    );
    assert_eq!(r.priority(), 120);
    assert!(has(
        &a,
        &Action::Event(Event::PriorityChanged { from: 100, to: 120 })
    ));
}

#[test]
fn keepalived_track_negative_weight_subtracts_when_down() {
    let mut c = cfg(Version::V3, 100);
    c.trackers = vec![tracker(1, TrackerKind::Binary, -30, false, TrackState::Up)];
    let mut r = started(c);
    assert_eq!(r.priority(), 100);
    r.handle(
        S,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Down,
        },
    );
    assert_eq!(r.priority(), 70);
}

#[test]
fn keepalived_track_reverse_flips_direction() {
    // weight 20 reverse: up lowers by 20.
    let t = tracker(1, TrackerKind::Binary, 20, true, TrackState::Up);
    assert_eq!(contribution(&t, TrackState::Up), Contribution::Weight(-20));
    assert_eq!(contribution(&t, TrackState::Down), Contribution::Weight(0));
    // weight -20 reverse: down raises by 20.
    let t = tracker(1, TrackerKind::Binary, -20, true, TrackState::Up);
    assert_eq!(contribution(&t, TrackState::Down), Contribution::Weight(20));
    // weight 0 reverse: up is the failure.
    let t = tracker(1, TrackerKind::Binary, 0, true, TrackState::Up);
    assert_eq!(contribution(&t, TrackState::Up), Contribution::Fault);
    assert_eq!(contribution(&t, TrackState::Down), Contribution::Weight(0));
}

#[test]
fn keepalived_track_priority_clamped_1_to_254() {
    let up = |w| tracker(1, TrackerKind::Binary, w, false, TrackState::Up);
    let down = |w| tracker(2, TrackerKind::Binary, w, false, TrackState::Down);
    assert_eq!(effective(200, &[(up(100), TrackState::Up)]), (254, false));
    assert_eq!(effective(10, &[(down(-100), TrackState::Down)]), (1, false));
    assert_eq!(
        effective(255, &[(down(-100), TrackState::Down)]),
        (255, false)
    );
}

#[test]
fn keepalived_weight_zero_failure_master_enters_fault() {
    let mut c = cfg(Version::V3, 100);
    c.trackers = vec![tracker(1, TrackerKind::Binary, 0, false, TrackState::Up)];
    let (mut r, t0) = master(c);
    let a = r.handle(
        t0 + 1,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Down,
        },
    );
    assert_eq!(r.state(), State::Fault);
    assert_eq!(adverts_sent(&a), vec![0]);
    assert!(has(&a, &Action::RemoveVips));
    assert!(has(
        &a,
        &Action::Notify {
            from: State::Master,
            to: State::Fault
        }
    ));
    assert_eq!(r.deadline(TimerKind::Advert), None);
}

#[test]
fn keepalived_fault_cleared_returns_to_backup() {
    let mut c = cfg(Version::V3, 100);
    c.trackers = vec![tracker(1, TrackerKind::Binary, 0, false, TrackState::Down)];
    let mut r = started(c);
    assert_eq!(r.state(), State::Fault);
    let a = r.handle(
        5 * S,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Up,
        },
    );
    assert_eq!(r.state(), State::Backup);
    assert!(has(
        &a,
        &Action::Notify {
            from: State::Fault,
            to: State::Backup
        }
    ));
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(5 * S + r.master_down_ns())
    );
}

#[test]
fn keepalived_track_file_value_times_weight() {
    let t = tracker(1, TrackerKind::Value, 10, false, TrackState::Value(0));
    assert_eq!(
        contribution(&t, TrackState::Value(3)),
        Contribution::Weight(30)
    );
    assert_eq!(
        contribution(&t, TrackState::Value(-5)),
        Contribution::Weight(-50)
    );
    assert_eq!(
        contribution(&t, TrackState::Value(100)),
        Contribution::Weight(253)
    );
    assert_eq!(
        contribution(&t, TrackState::Value(-100)),
        Contribution::Fault
    );
    let rev = tracker(1, TrackerKind::Value, 10, true, TrackState::Value(0));
    assert_eq!(
        contribution(&rev, TrackState::Value(3)),
        Contribution::Weight(-30)
    );
}

#[test]
fn keepalived_track_file_weight_zero_nonzero_faults() {
    let t = tracker(1, TrackerKind::Value, 0, false, TrackState::Value(0));
    assert_eq!(contribution(&t, TrackState::Value(1)), Contribution::Fault);
    assert_eq!(
        contribution(&t, TrackState::Value(0)),
        Contribution::Weight(0)
    );
    let rev = tracker(1, TrackerKind::Value, 0, true, TrackState::Value(0));
    assert_eq!(
        contribution(&rev, TrackState::Value(0)),
        Contribution::Fault
    );
}

#[test]
fn keepalived_backup_priority_rise_shortens_down_timer() {
    let mut c = cfg(Version::V3, 100);
    c.trackers = vec![tracker(
        1,
        TrackerKind::Binary,
        100,
        false,
        TrackState::Down,
    )];
    let mut r = started(c);
    rx(&mut r, S, S, "192.0.2.20", 250);
    let a = r.handle(
        S + 10,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Up,
        },
    );
    assert_eq!(r.priority(), 200);
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(S + r.master_down_ns())
    );
    // A fall leaves the deadline alone until the next advert.
    let before = r.deadline(TimerKind::MasterDown);
    let a = r.handle(
        S + 20,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Down,
        },
    );
    assert_eq!(armed(&a, TimerKind::MasterDown), None);
    assert_eq!(r.deadline(TimerKind::MasterDown), before);
}
