//! Rules 22–37: the Master state, stepping down and shutdown (RFC 9568 §6.4.3).

use super::*;

#[test]
fn rfc9568_6_4_3_master_advert_timer_sends_and_rearms() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let d = r.deadline(TimerKind::Advert).expect("armed");
    assert_eq!(d, t0 + S);
    // Handled 2 ms late: the next deadline keeps the cadence.
    let a = r.handle(d + 2 * MS, Input::TimerFired(TimerKind::Advert));
    assert_eq!(adverts_sent(&a), vec![100]);
    assert_eq!(armed(&a, TimerKind::Advert), Some(d + S));
    // More than an interval late: restart from now.
    let d2 = d + S;
    let a = r.handle(d2 + 3 * S, Input::TimerFired(TimerKind::Advert));
    assert_eq!(armed(&a, TimerKind::Advert), Some(d2 + 4 * S));
}

#[test]
fn advert_timer_handled_early_within_an_eighth_of_the_interval_joins_the_batch() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let d = r.deadline(TimerKind::Advert).expect("armed");
    assert_eq!(r.advert_early_ns(), S / 8);
    // More than 1/8 interval early: a stale fire, nothing happens.
    assert!(
        r.handle(d - S / 8 - 1, Input::TimerFired(TimerKind::Advert))
            .is_empty()
    );
    // Within it: sent now, the cadence moves to now.
    let now = d - S / 10;
    let a = r.handle(now, Input::TimerFired(TimerKind::Advert));
    assert_eq!(adverts_sent(&a), vec![100]);
    assert_eq!(armed(&a, TimerKind::Advert), Some(now + S));
    assert!(
        now + S > t0 + S,
        "the next advert is still an interval away"
    );
}

#[test]
fn rfc9568_6_4_3_master_priority_zero_sends_advert() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let now = t0 + S / 2;
    let a = rx(&mut r, now, now, "192.0.2.20", 0);
    assert_eq!(adverts_sent(&a), vec![100]);
    assert_eq!(armed(&a, TimerKind::Advert), Some(now + S));
    assert_eq!(r.state(), State::Master);
}

#[test]
fn rfc9568_6_4_3_master_higher_priority_goes_backup() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let now = t0 + S / 2;
    let a = rx(&mut r, now + 100, now, "192.0.2.20", 150);
    assert_eq!(r.state(), State::Backup);
    assert!(adverts_sent(&a).is_empty());
    assert!(has(&a, &Action::RemoveVips));
    assert!(has(&a, &Action::CancelTimer(TimerKind::Advert)));
    assert!(has(
        &a,
        &Action::Notify {
            from: State::Master,
            to: State::Backup
        }
    ));
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(now + r.master_down_ns())
    );
    assert_eq!(
        transition(&a).map(|t| t.reason),
        Some(Reason::HigherPriority)
    );
}

#[test]
fn rfc9568_6_4_3_master_equal_priority_greater_address_goes_backup() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let a = rx(&mut r, t0 + 1, t0 + 1, "192.0.2.11", 100);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(
        transition(&a).map(|t| t.reason),
        Some(Reason::EqualPriorityGreaterAddress)
    );
}

#[test]
fn rfc9568_6_4_3_master_equal_priority_smaller_address_stays() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let a = rx(&mut r, t0 + 1, t0 + 1, "192.0.2.9", 100);
    assert_eq!(r.state(), State::Master);
    assert_eq!(adverts_sent(&a), vec![100]);
}

#[test]
fn rfc9568_6_4_3_address_compare_is_unsigned_network_order() {
    // 192.0.2.10 vs 10.0.0.1: as signed 32-bit ints 192.x is negative; the
    // unsigned network-order compare makes ours greater, so we stay master.
    let (mut r, t0) = master(cfg(Version::V3, 100));
    rx(&mut r, t0 + 1, t0 + 1, "10.0.0.1", 100);
    assert_eq!(r.state(), State::Master);
    // IPv6: the first differing byte decides.
    let (mut r, t0) = master(cfg6(100));
    rx(&mut r, t0 + 1, t0 + 1, "fe80::1:0", 100);
    assert_eq!(r.state(), State::Backup);
}

#[test]
fn rfc9568_6_4_3_master_lower_priority_sends_advert() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let adv_deadline = r.deadline(TimerKind::Advert);
    let a = rx(&mut r, t0 + 1, t0 + 1, "192.0.2.20", 50);
    assert_eq!(r.state(), State::Master);
    assert_eq!(adverts_sent(&a), vec![100]);
    // Unlike the priority-0 case, the advert timer is not reset.
    assert_eq!(r.deadline(TimerKind::Advert), adv_deadline);
    assert!(has(
        &a,
        &Action::Event(Event::MasterRxLowerPriority {
            from: ip("192.0.2.20"),
            priority: 50
        })
    ));
}

#[test]
fn keepalived_lower_prio_no_advert_suppresses_advert() {
    let mut c = cfg(Version::V3, 100);
    c.lower_prio_no_advert = true;
    let (mut r, t0) = master(c);
    let a = rx(&mut r, t0 + 1, t0 + 1, "192.0.2.20", 50);
    assert!(adverts_sent(&a).is_empty());
    assert_eq!(r.state(), State::Master);
}

#[test]
fn keepalived_lower_priority_advert_reannounces_vips() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let a = rx(&mut r, t0 + 1, t0 + 1, "192.0.2.20", 50);
    assert!(has(
        &a,
        &Action::SendGratuitous {
            count: 5,
            spacing_ns: 0
        }
    ));
    let at = armed(&a, TimerKind::GarpLowerPrio).expect("delayed batch");
    assert_eq!(at, t0 + 1 + 5 * S);
    let a = r.handle(at, Input::TimerFired(TimerKind::GarpLowerPrio));
    assert_eq!(
        a,
        vec![Action::SendGratuitous {
            count: 5,
            spacing_ns: 0
        }]
    );
}

#[test]
fn lower_priority_reannounce_at_most_once_per_interval() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let interval = u64::from(r.config().advert_int_cs) * 10_000_000;
    let batches = |a: &[Action]| {
        a.iter()
            .filter(|x| matches!(x, Action::SendGratuitous { .. }))
            .count()
    };
    let a = rx(&mut r, t0 + 1, t0 + 1, "192.0.2.20", 50);
    assert_eq!(batches(&a), 1);
    // The other router keeps advertising within the same interval: adverts
    // are answered, the VIPs not announced again.
    let a = rx(
        &mut r,
        t0 + interval / 2,
        t0 + interval / 2,
        "192.0.2.20",
        50,
    );
    assert_eq!(batches(&a), 0);
    assert_eq!(adverts_sent(&a), vec![100]);
    let a = rx(
        &mut r,
        t0 + 1 + interval,
        t0 + 1 + interval,
        "192.0.2.20",
        50,
    );
    assert_eq!(batches(&a), 1);
}

#[test]
fn keepalived_higher_prio_send_advert_sends_before_backup() {
    let mut c = cfg(Version::V3, 100);
    c.higher_prio_send_advert = true;
    let (mut r, t0) = master(c);
    let a = rx(&mut r, t0 + 1, t0 + 1, "192.0.2.20", 150);
    assert_eq!(adverts_sent(&a), vec![100]);
    assert_eq!(r.state(), State::Backup);
    let adv = a
        .iter()
        .position(|x| matches!(x, Action::SendAdvert { .. }));
    let rm = a.iter().position(|x| *x == Action::RemoveVips);
    assert!(adv < rm);
}

#[test]
fn rfc9568_6_4_3_master_adopts_interval_when_stepping_down() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let mut adv = advert_for(&r, 150);
    adv.interval_cs = 20;
    let a = rx_adv(&mut r, t0 + 1, meta(t0 + 1, "192.0.2.20"), adv);
    assert_eq!(r.master_adver_int_cs(), 20);
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(t0 + 1 + master_down_ns(Version::V3, 100, 20, 3))
    );
}

#[test]
fn keepalived_two_owners_one_drops_to_254() {
    let mut r = started(cfg(Version::V3, 255));
    assert_eq!(r.state(), State::Master);
    let a = rx(&mut r, S / 2, S / 2, "192.0.2.1", 255);
    assert!(has(
        &a,
        &Action::Event(Event::OwnerConflict {
            other: ip("192.0.2.1")
        })
    ));
    assert!(has(
        &a,
        &Action::Event(Event::PriorityChanged { from: 255, to: 254 })
    ));
    assert_eq!(r.priority(), 254);
    assert_eq!(r.base_priority(), 254);
    // 255 > 254 now: this one steps down, the other keeps the VIPs.
    assert_eq!(r.state(), State::Backup);
}

#[test]
fn keepalived_owner_priority_ignores_weights() {
    let mut c = cfg(Version::V3, 255);
    c.trackers = vec![tracker(1, TrackerKind::Binary, -50, false, TrackState::Up)];
    let mut r = started(c);
    let a = r.handle(
        S,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Down,
        },
    );
    assert_eq!(r.priority(), 255);
    assert!(a.is_empty());
}

#[test]
fn keepalived_owner_leaving_fault_becomes_master() {
    let mut c = cfg(Version::V3, 255);
    c.trackers = vec![tracker(1, TrackerKind::Binary, 0, false, TrackState::Up)];
    let mut r = started(c);
    r.handle(
        S,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Down,
        },
    );
    assert_eq!(r.state(), State::Fault);
    let a = r.handle(
        2 * S,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Up,
        },
    );
    assert_eq!(r.state(), State::Master);
    assert!(has(&a, &Action::AddVips));
}

#[test]
fn rfc9568_6_4_3_shutdown_as_master_sends_priority_zero() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let a = r.handle(t0 + 1, Input::Shutdown);
    assert_eq!(adverts_sent(&a), vec![0]);
    assert!(has(&a, &Action::RemoveVips));
    assert!(has(&a, &Action::CancelTimer(TimerKind::Advert)));
    assert!(has(
        &a,
        &Action::Notify {
            from: State::Master,
            to: State::Initialize
        }
    ));
    assert_eq!(r.state(), State::Initialize);
    for k in TimerKind::ALL {
        assert_eq!(r.deadline(k), None);
    }
}

#[test]
fn rfc9568_6_4_2_shutdown_as_backup_only_notifies() {
    let mut r = started(cfg(Version::V3, 100));
    let a = r.handle(S, Input::Shutdown);
    assert!(adverts_sent(&a).is_empty());
    assert!(!has(&a, &Action::RemoveVips));
    assert!(has(&a, &Action::CancelTimer(TimerKind::MasterDown)));
    assert!(has(
        &a,
        &Action::Notify {
            from: State::Backup,
            to: State::Initialize
        }
    ));
}
