//! Rules 66–69 and 86: gratuitous ARP / unsolicited NA batches.

use super::*;

#[test]
fn keepalived_garp_master_delay_sends_second_batch() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let at = r.deadline(TimerKind::GarpDelay).expect("second batch");
    assert_eq!(at, t0 + 5 * S);
    let a = r.handle(at, Input::TimerFired(TimerKind::GarpDelay));
    assert_eq!(
        a,
        vec![Action::SendGratuitous {
            count: 5,
            spacing_ns: 0
        }]
    );
}

#[test]
fn keepalived_garp_master_refresh_repeats() {
    let mut c = cfg(Version::V3, 100);
    c.garp.master_refresh_ns = 60 * S;
    c.garp.master_refresh_repeat = 2;
    let (mut r, t0) = master(c);
    let at = r.deadline(TimerKind::GarpRefresh).expect("refresh");
    assert_eq!(at, t0 + 60 * S);
    let a = r.handle(at, Input::TimerFired(TimerKind::GarpRefresh));
    assert!(has(
        &a,
        &Action::SendGratuitous {
            count: 2,
            spacing_ns: 0
        }
    ));
    assert_eq!(armed(&a, TimerKind::GarpRefresh), Some(at + 60 * S));
}

#[test]
fn keepalived_min_garp_sends_one_message() {
    let mut c = cfg(Version::V3, 100);
    c.garp = GarpConfig::min_garp();
    let mut r = started(c);
    let t = r.deadline(TimerKind::MasterDown).expect("armed");
    let a = r.handle(t, Input::TimerFired(TimerKind::MasterDown));
    assert!(has(
        &a,
        &Action::SendGratuitous {
            count: 1,
            spacing_ns: 0
        }
    ));
    assert_eq!(r.deadline(TimerKind::GarpDelay), None);
    assert_eq!(r.deadline(TimerKind::GarpRefresh), None);
}

#[test]
fn keepalived_gratuitous_spacing_per_family() {
    let mut c = cfg(Version::V3, 255);
    c.garp.interval_ns = 2 * MS;
    c.garp.na_interval_ns = 3 * MS;
    let mut r = router(c);
    let a = r.handle(0, Input::Startup);
    assert!(has(
        &a,
        &Action::SendGratuitous {
            count: 5,
            spacing_ns: 2 * MS
        }
    ));
    let mut c = cfg6(255);
    c.garp.interval_ns = 2 * MS;
    c.garp.na_interval_ns = 3 * MS;
    let mut r = router(c);
    let a = r.handle(0, Input::Startup);
    assert!(has(
        &a,
        &Action::SendGratuitous {
            count: 5,
            spacing_ns: 3 * MS
        }
    ));
}

#[test]
fn conflict_master_reannounces_once_per_interval() {
    let vip = ip("192.0.2.100");
    let mac = [2, 0, 0, 0, 0, 0x66];
    let claim = |at_ns| Input::Conflict {
        addr: vip,
        mac,
        at_ns,
    };
    let claimed = |reannounced| {
        Action::Event(Event::VipClaimed {
            addr: vip,
            mac,
            reannounced,
        })
    };
    // Not master: the VIP is not ours to defend.
    let mut b = started(cfg(Version::V3, 100));
    assert_eq!(b.handle(MS, claim(MS)), vec![]);
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let interval = u64::from(r.config().advert_int_cs) * 10 * MS;
    let a = r.handle(t0 + MS, claim(t0 + MS));
    assert!(has(&a, &Action::Reannounce { addr: vip }) && has(&a, &claimed(true)));
    // A flood within the interval is counted, not answered.
    let a = r.handle(t0 + interval, claim(t0 + interval));
    assert_eq!(a, vec![claimed(false)]);
    let a = r.handle(t0 + MS + interval, claim(t0 + MS + interval));
    assert!(has(&a, &Action::Reannounce { addr: vip }) && has(&a, &claimed(true)));
    // The rule runs on the kernel's receive time, not on when it was read.
    let late = t0 + 3 * interval;
    let a = r.handle(late + 5 * MS, claim(late));
    assert!(has(&a, &Action::Reannounce { addr: vip }));
    let a = r.handle(late + interval + 5 * MS, claim(late + interval));
    assert!(has(&a, &Action::Reannounce { addr: vip }));
    // Another VIP has its own budget.
    let other = ip("192.0.2.101");
    let a = r.handle(
        late + interval + 5 * MS,
        Input::Conflict {
            addr: other,
            mac,
            at_ns: late + interval,
        },
    );
    assert!(has(&a, &Action::Reannounce { addr: other }));
}

#[test]
fn conflict_claims_inside_the_interval_are_checked_when_it_ends() {
    let vip = ip("192.0.2.100");
    let mac = [2, 0, 0, 0, 0, 0x66];
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let interval = u64::from(r.config().advert_int_cs) * 10 * MS;
    let t1 = t0 + MS;
    let a = r.handle(
        t1,
        Input::Conflict {
            addr: vip,
            mac,
            at_ns: t1,
        },
    );
    // The re-announce arms a check one interval later.
    assert!(has(
        &a,
        &Action::ArmTimer {
            kind: TimerKind::ClaimCheck,
            at_ns: t1 + interval
        }
    ));
    assert_eq!(r.deadline(TimerKind::ClaimCheck), Some(t1 + interval));
    // It asks the runtime whether the VIP was claimed since the re-announce.
    let a = r.handle(t1 + interval, Input::TimerFired(TimerKind::ClaimCheck));
    assert!(has(
        &a,
        &Action::CheckClaims {
            since: vec![(vip, t1)]
        }
    ));
    assert_eq!(r.deadline(TimerKind::ClaimCheck), None);
    // A claim found then is answered at once: its interval has ended.
    let now = t1 + interval + MS;
    let a = r.handle(
        now,
        Input::Conflict {
            addr: vip,
            mac,
            at_ns: 0,
        },
    );
    assert!(has(&a, &Action::Reannounce { addr: vip }));
    // Leaving MASTER drops pending checks: a later master starts clean.
    let a = r.handle(now + MS, Input::Shutdown);
    assert!(!has(
        &a,
        &Action::CheckClaims {
            since: vec![(vip, now)]
        }
    ));
    assert_eq!(r.deadline(TimerKind::ClaimCheck), None);
}

#[test]
fn keepalived_garp_extra_if_announces_other_interfaces_periodically() {
    let mut c = cfg(Version::V3, 100);
    c.garp.extra_if_ns = 100 * S;
    let (mut r, t0) = master(c);
    // The first after the second batch's delay plus one period.
    let at = r.deadline(TimerKind::GarpExtraIf).expect("armed as master");
    assert_eq!(at, t0 + 5 * S + 100 * S);
    let a = r.handle(at, Input::TimerFired(TimerKind::GarpExtraIf));
    assert!(has(&a, &Action::SendGratuitousExtraIf));
    assert_eq!(armed(&a, TimerKind::GarpExtraIf), Some(at + 100 * S));
    // Off by default.
    let (r, _) = master(cfg(Version::V3, 100));
    assert_eq!(r.deadline(TimerKind::GarpExtraIf), None);
}
