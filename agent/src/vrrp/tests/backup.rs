//! Rules 11–21: the Backup state, its down timer and preemption (RFC 9568 §6.4.2).

use super::*;

#[test]
fn rfc9568_6_4_2_down_timer_expiry_becomes_master() {
    let mut r = started(cfg(Version::V3, 100));
    let t = r.deadline(TimerKind::MasterDown).expect("armed");
    let a = r.handle(t, Input::TimerFired(TimerKind::MasterDown));
    assert_eq!(r.state(), State::Master);
    let pos = |want: &Action| a.iter().position(|x| x == want).expect("action present");
    let adv = a
        .iter()
        .position(|x| matches!(x, Action::SendAdvert { priority: 100, .. }))
        .expect("advert");
    let tr = a
        .iter()
        .position(|x| matches!(x, Action::Transition(_)))
        .expect("transition");
    // Transition record first, then advert, VIPs, GARP, notify.
    assert!(tr < adv);
    assert!(adv < pos(&Action::AddVips));
    assert!(
        pos(&Action::AddVips)
            < pos(&Action::SendGratuitous {
                count: 5,
                spacing_ns: 0
            })
    );
    assert!(
        pos(&Action::SendGratuitous {
            count: 5,
            spacing_ns: 0
        }) < pos(&Action::Notify {
            from: State::Backup,
            to: State::Master
        })
    );
    let t_rec = transition(&a).expect("transition");
    assert_eq!(t_rec.reason, Reason::MasterDown);
    assert_eq!(t_rec.deadline_ns, Some(t));
    assert_eq!(t_rec.fired_at_ns, Some(t));
    assert_eq!(armed(&a, TimerKind::Advert), Some(t + S));
}

#[test]
fn backup_on_priority_zero_arms_skew_timer() {
    let mut r = started(cfg(Version::V3, 100));
    let a = rx(&mut r, 2 * S, 2 * S - 500, "192.0.2.20", 0);
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(2 * S - 500 + r.skew_ns())
    );
    assert_eq!(r.state(), State::Backup);
    // The take-over it leads to records the master as leaving.
    assert_eq!(r.master(), (Some(ip("192.0.2.20")), Some(0)));
    let t = r.deadline(TimerKind::MasterDown).expect("armed");
    let a = r.handle(t, Input::TimerFired(TimerKind::MasterDown));
    assert_eq!(transition(&a).and_then(|t| t.master_priority), Some(0));
}

#[test]
fn rfc9568_6_4_2_backup_higher_priority_resets_down_timer() {
    let mut r = started(cfg(Version::V3, 100));
    for prio in [100, 200] {
        let a = rx(&mut r, 2 * S, 2 * S, "192.0.2.20", prio);
        assert_eq!(
            armed(&a, TimerKind::MasterDown),
            Some(2 * S + r.master_down_ns())
        );
        assert_eq!(r.master(), (Some(ip("192.0.2.20")), Some(prio)));
    }
}

#[test]
fn down_timer_is_armed_from_kernel_timestamp() {
    let mut r = started(cfg(Version::V3, 100));
    // Userspace handles the advert 3 ms after the kernel saw it.
    let a = rx(&mut r, 2 * S + 3 * MS, 2 * S, "192.0.2.20", 200);
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(2 * S + r.master_down_ns())
    );
    // An unknown (0) or future timestamp falls back to now.
    let a = rx(&mut r, 3 * S, 0, "192.0.2.20", 200);
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(3 * S + r.master_down_ns())
    );
    let a = rx(&mut r, 4 * S, 5 * S, "192.0.2.20", 200);
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(4 * S + r.master_down_ns())
    );
}

#[test]
fn rfc9568_6_4_2_backup_adopts_master_interval() {
    let mut r = started(cfg(Version::V3, 100));
    let mut adv = advert_for(&r, 200);
    adv.interval_cs = 5;
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(discarded(&a), None);
    assert_eq!(r.master_adver_int_cs(), 5);
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(S + master_down_ns(Version::V3, 100, 5, 3))
    );
}

#[test]
fn rfc9568_6_4_2_backup_discards_lower_priority_when_preempting() {
    let mut r = started(cfg(Version::V3, 100));
    let before = r.deadline(TimerKind::MasterDown);
    let a = rx(&mut r, S, S, "192.0.2.20", 50);
    assert_eq!(discarded(&a), Some(DiscardReason::LowerPriority));
    assert_eq!(armed(&a, TimerKind::MasterDown), None);
    assert_eq!(r.deadline(TimerKind::MasterDown), before);
}

#[test]
fn keepalived_nopreempt_accepts_lower_priority_master() {
    let mut c = cfg(Version::V3, 100);
    c.nopreempt = true;
    let mut r = started(c);
    let a = rx(&mut r, S, S, "192.0.2.20", 50);
    assert_eq!(discarded(&a), None);
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(S + r.master_down_ns())
    );
}

#[test]
fn rfc9568_6_4_2_backup_never_breaks_ties_on_address() {
    let mut r = started(cfg(Version::V3, 100));
    for src in ["192.0.2.1", "192.0.2.200"] {
        let a = rx(&mut r, S, S, src, 100);
        assert_eq!(discarded(&a), None);
        assert_eq!(
            armed(&a, TimerKind::MasterDown),
            Some(S + r.master_down_ns())
        );
        assert_eq!(r.state(), State::Backup);
    }
}

#[test]
fn keepalived_preempt_delay_holds_then_preempts() {
    let mut c = cfg(Version::V3, 100);
    c.preempt_delay_ns = 10 * S;
    let mut r = started(c);
    // A lower-priority master is accepted while the delay runs.
    let a = rx(&mut r, S, S, "192.0.2.20", 50);
    assert_eq!(discarded(&a), None);
    assert_eq!(armed(&a, TimerKind::PreemptDelay), Some(11 * S));
    let a = rx(&mut r, 2 * S, 2 * S, "192.0.2.20", 50);
    assert_eq!(armed(&a, TimerKind::PreemptDelay), None, "not restarted");
    r.handle(11 * S, Input::TimerFired(TimerKind::PreemptDelay));
    // After the delay it is discarded and the down timer runs out.
    let a = rx(&mut r, 12 * S, 12 * S, "192.0.2.20", 50);
    assert_eq!(discarded(&a), Some(DiscardReason::LowerPriority));
    let t = r.deadline(TimerKind::MasterDown).expect("armed");
    r.handle(t, Input::TimerFired(TimerKind::MasterDown));
    assert_eq!(r.state(), State::Master);
}

#[test]
fn keepalived_preempt_delay_cancelled_by_better_master() {
    let mut c = cfg(Version::V3, 100);
    c.preempt_delay_ns = 10 * S;
    let mut r = started(c);
    rx(&mut r, S, S, "192.0.2.20", 50);
    assert!(r.deadline(TimerKind::PreemptDelay).is_some());
    let a = rx(&mut r, 2 * S, 2 * S, "192.0.2.30", 150);
    assert!(has(&a, &Action::CancelTimer(TimerKind::PreemptDelay)));
    assert!(r.deadline(TimerKind::PreemptDelay).is_none());
}

#[test]
fn stale_timer_fire_is_ignored() {
    let mut r = started(cfg(Version::V3, 100));
    let first = r.deadline(TimerKind::MasterDown).expect("armed");
    rx(&mut r, S, S, "192.0.2.20", 200);
    // The old deadline fires after the re-arm: nothing happens.
    assert!(
        r.handle(first, Input::TimerFired(TimerKind::MasterDown))
            .is_empty()
    );
    assert_eq!(r.state(), State::Backup);
    // A timer that was never armed: nothing either.
    assert!(
        r.handle(first, Input::TimerFired(TimerKind::GarpRefresh))
            .is_empty()
    );
}

#[test]
fn quiet_master_only_while_a_repeat_only_rearms_the_down_timer() {
    let mut r = started(cfg(Version::V3, 100));
    assert_eq!(r.quiet_master(), None, "no master heard yet");
    rx(&mut r, 2 * S, 2 * S, "192.0.2.20", 200);
    let q = r.quiet_master().expect("a higher-priority master");
    assert_eq!((q.addr, q.priority), (ip("192.0.2.20"), 200));
    assert_eq!(q.down_ns, r.master_down_ns());
    rx(&mut r, 3 * S, 3 * S, "192.0.2.20", 100);
    assert!(
        r.quiet_master().is_some(),
        "equal priority holds us back too"
    );
    rx(&mut r, 4 * S, 4 * S, "192.0.2.20", 0);
    assert_eq!(r.quiet_master(), None, "priority 0 arms the skew timer");
    rx(&mut r, 4 * S + MS, 4 * S + MS, "192.0.2.20", 50);
    assert_eq!(
        r.quiet_master(),
        None,
        "a lower-priority master is preempted"
    );

    let mut c = cfg(Version::V3, 100);
    c.nopreempt = true;
    let mut r = started(c);
    rx(&mut r, 2 * S, 2 * S, "192.0.2.20", 50);
    assert!(r.quiet_master().is_some(), "nopreempt keeps a lower master");

    let mut c = cfg(Version::V3, 100);
    c.preempt_delay_ns = 5 * S;
    let mut r = started(c);
    rx(&mut r, 2 * S, 2 * S, "192.0.2.20", 50);
    assert_eq!(r.quiet_master(), None, "preempt_delay ends in a preemption");

    let (m, _) = master(cfg(Version::V3, 100));
    assert_eq!(m.quiet_master(), None, "a master sees every advert");
}

#[test]
fn heard_master_rearms_down_timer_like_its_advert() {
    let mut r = started(cfg(Version::V3, 100));
    rx(&mut r, 2 * S, 2 * S, "192.0.2.20", 200);
    let a = r.handle(
        2 * S + 20 * MS,
        Input::Heard {
            at_ns: 2 * S + 10 * MS,
        },
    );
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(2 * S + 10 * MS + r.master_down_ns())
    );
    let a = r.handle(
        2 * S + 30 * MS,
        Input::Heard {
            at_ns: 2 * S + 5 * MS,
        },
    );
    assert!(a.is_empty(), "older news changes nothing: {a:?}");

    // Our priority rose above the master's: its repeats no longer hold us.
    let mut c = cfg(Version::V3, 100);
    c.nopreempt = false;
    let mut r = started(c);
    rx(&mut r, 2 * S, 2 * S, "192.0.2.20", 100);
    r.handle(
        2 * S + MS,
        Input::Reload(Box::new({
            let mut c = r.config().clone();
            c.priority = 150;
            c
        })),
    );
    let deadline = r.deadline(TimerKind::MasterDown).expect("armed");
    let a = r.handle(
        2 * S + 10 * MS,
        Input::Heard {
            at_ns: 2 * S + 9 * MS,
        },
    );
    assert_eq!(armed(&a, TimerKind::MasterDown), None, "{a:?}");
    assert_eq!(r.deadline(TimerKind::MasterDown), Some(deadline));

    let (mut m, t) = master(cfg(Version::V3, 100));
    assert!(m.handle(t + MS, Input::Heard { at_ns: t }).is_empty());
}
