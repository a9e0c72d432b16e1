//! Rules 7–10: startup into Master, Backup or Fault (RFC 9568 §6.4.1).

use super::*;

#[test]
fn rfc9568_6_4_1_owner_starts_as_master() {
    let mut r = router(cfg(Version::V3, 255));
    let a = r.handle(7, Input::Startup);
    assert_eq!(r.state(), State::Master);
    assert_eq!(adverts_sent(&a), vec![255]);
    assert!(has(&a, &Action::AddVips));
    assert!(has(
        &a,
        &Action::SendGratuitous {
            count: 5,
            spacing_ns: 0
        }
    ));
    assert_eq!(armed(&a, TimerKind::Advert), Some(7 + S));
    assert!(has(
        &a,
        &Action::Notify {
            from: State::Initialize,
            to: State::Master
        }
    ));
    assert_eq!(transition(&a).map(|t| t.reason), Some(Reason::Owner));
}

#[test]
fn rfc9568_6_4_1_non_owner_starts_as_backup_with_down_timer() {
    let mut r = router(cfg(Version::V3, 100));
    let a = r.handle(1000, Input::Startup);
    assert_eq!(r.state(), State::Backup);
    assert!(adverts_sent(&a).is_empty());
    assert!(!has(&a, &Action::AddVips));
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(1000 + r.master_down_ns())
    );
    assert!(has(
        &a,
        &Action::Notify {
            from: State::Initialize,
            to: State::Backup
        }
    ));
}

#[test]
fn keepalived_state_master_below_255_starts_in_backup() {
    let mut c = cfg(Version::V3, 254);
    c.initial_state = InitialState::Master;
    let r = started(c);
    assert_eq!(r.state(), State::Backup);
    assert!(r.deadline(TimerKind::MasterDown).is_some());
}

#[test]
fn keepalived_startup_with_failed_tracker_enters_fault() {
    let mut c = cfg(Version::V3, 100);
    c.trackers = vec![tracker(1, TrackerKind::Binary, 0, false, TrackState::Down)];
    let mut r = router(c);
    let a = r.handle(0, Input::Startup);
    assert_eq!(r.state(), State::Fault);
    assert!(has(
        &a,
        &Action::Notify {
            from: State::Initialize,
            to: State::Fault
        }
    ));
    assert!(r.deadline(TimerKind::MasterDown).is_none());
}
