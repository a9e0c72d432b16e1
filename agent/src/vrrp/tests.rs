//! One test per rule; the table in the module docs lists them.

use std::net::IpAddr;

use super::*;
use crate::packet::{Advert, Auth, Version};

const S: u64 = NS_PER_S;
const MS: u64 = 1_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn cfg(version: Version, prio: u8) -> RouterConfig {
    let mut c = RouterConfig::new(
        "vi",
        51,
        version,
        prio,
        ip("192.0.2.10"),
        vec![ip("192.0.2.100")],
    );
    c.garp = GarpConfig::default();
    c
}

fn cfg6(prio: u8) -> RouterConfig {
    RouterConfig::new(
        "vi6",
        51,
        Version::V3,
        prio,
        ip("fe80::10"),
        vec![ip("fe80::100"), ip("2001:db8::100")],
    )
}

fn router(c: RouterConfig) -> Router {
    Router::new(c).expect("valid config")
}

/// A router started at t=0 (Backup unless owner).
fn started(c: RouterConfig) -> Router {
    let mut r = router(c);
    r.handle(0, Input::Startup);
    r
}

/// A router that became master through its down timer at `master_down`.
fn master(c: RouterConfig) -> (Router, u64) {
    let mut r = started(c);
    let t = r.deadline(TimerKind::MasterDown).expect("down timer armed");
    r.handle(t, Input::TimerFired(TimerKind::MasterDown));
    assert_eq!(r.state(), State::Master);
    (r, t)
}

fn advert_for(r: &Router, prio: u8) -> Advert {
    let c = r.config();
    Advert {
        version: c.version,
        vrid: c.vrid,
        priority: prio,
        interval_cs: c.advert_int_cs,
        addrs: c.vips.clone(),
        auth: c.auth,
    }
}

fn meta(ts: u64, src: &str) -> AdvertMeta {
    AdvertMeta {
        ts_ns: ts,
        src: ip(src),
        ttl: 255,
        unicast: false,
    }
}

fn rx(r: &mut Router, now: u64, ts: u64, src: &str, prio: u8) -> Vec<Action> {
    let advert = advert_for(r, prio);
    r.handle(
        now,
        Input::Advert(ReceivedAdvert {
            meta: meta(ts, src),
            advert,
        }),
    )
}

fn rx_adv(r: &mut Router, now: u64, m: AdvertMeta, advert: Advert) -> Vec<Action> {
    r.handle(now, Input::Advert(ReceivedAdvert { meta: m, advert }))
}

fn armed(actions: &[Action], kind: TimerKind) -> Option<u64> {
    actions.iter().rev().find_map(|a| match a {
        Action::ArmTimer { kind: k, at_ns } if *k == kind => Some(*at_ns),
        _ => None,
    })
}

fn adverts_sent(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendAdvert { priority, .. } => Some(*priority),
            _ => None,
        })
        .collect()
}

fn has(actions: &[Action], want: &Action) -> bool {
    actions.contains(want)
}

fn discarded(actions: &[Action]) -> Option<DiscardReason> {
    actions.iter().find_map(|a| match a {
        Action::Discarded(d) => Some(*d),
        _ => None,
    })
}

fn transition(actions: &[Action]) -> Option<&Transition> {
    actions.iter().find_map(|a| match a {
        Action::Transition(t) => Some(t),
        _ => None,
    })
}

fn tracker(
    id: u32,
    kind: TrackerKind,
    weight: i32,
    reverse: bool,
    initial: TrackState,
) -> TrackerConfig {
    TrackerConfig {
        id: TrackerId(id),
        kind,
        weight,
        reverse,
        initial,
    }
}

mod timers {
    use super::*;

    #[test]
    fn rfc3768_6_1_v2_skew_is_fraction_of_a_second() {
        assert_eq!(skew_ns(Version::V2, 100, 100), 156 * S / 256);
        assert_eq!(skew_ns(Version::V2, 255, 500), 3_906_250);
        // Independent of the interval in VRRPv2.
        assert_eq!(
            skew_ns(Version::V2, 100, 300),
            skew_ns(Version::V2, 100, 100)
        );
    }

    #[test]
    fn rfc9568_6_1_v3_skew_scales_with_interval_in_ns() {
        // DESIGN: priority 254, 10 ms interval → 78.125 µs.
        assert_eq!(skew_ns(Version::V3, 254, 1), 78_125);
        assert_eq!(skew_ns(Version::V3, 100, 100), 156 * S / 256);
        assert_eq!(skew_ns(Version::V3, 1, 200), 255 * 2 * S / 256);
    }

    #[test]
    fn rfc9568_6_1_master_down_is_three_intervals_plus_skew() {
        assert_eq!(
            master_down_ns(Version::V3, 100, 100, 3),
            3 * S + skew_ns(Version::V3, 100, 100)
        );
        assert_eq!(
            master_down_ns(Version::V2, 200, 200, 3),
            6 * S + skew_ns(Version::V2, 200, 200)
        );
        let r = started(cfg(Version::V3, 100));
        assert_eq!(
            r.deadline(TimerKind::MasterDown),
            Some(3 * S + 156 * S / 256)
        );
    }

    #[test]
    fn master_down_interval_is_exact_nanoseconds() {
        assert_eq!(master_down_ns(Version::V3, 254, 1, 3), 30 * MS + 78_125);
        // (3·256 + 1)·10 ms / 256 = 30.0390625 ms: no ms or µs rounding.
        assert_eq!(master_down_ns(Version::V3, 255, 1, 3), 30_039_062);
    }

    #[test]
    fn keepalived_down_timer_adverts_replaces_three() {
        let mut c = cfg(Version::V3, 100);
        c.advert_int_cs = 10;
        c.down_timer_adverts = 5;
        let r = started(c);
        assert_eq!(
            r.deadline(TimerKind::MasterDown),
            Some(500 * MS + skew_ns(Version::V3, 100, 10))
        );
    }

    #[test]
    fn keepalived_skew_uses_effective_priority() {
        let mut c = cfg(Version::V3, 100);
        c.trackers = vec![tracker(1, TrackerKind::Binary, 50, false, TrackState::Up)];
        let r = started(c);
        assert_eq!(r.priority(), 150);
        assert_eq!(r.skew_ns(), skew_ns(Version::V3, 150, 100));
        assert_eq!(
            r.deadline(TimerKind::MasterDown),
            Some(3 * S + 106 * S / 256)
        );
    }
}

// ----- startup -----

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

// ----- backup -----

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

// ----- master -----

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

// ----- receive checks -----

#[test]
fn rfc3768_7_1_interval_mismatch_discarded() {
    let mut r = started(cfg(Version::V2, 100));
    let mut adv = advert_for(&r, 200);
    adv.interval_cs = 200;
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(
        discarded(&a),
        Some(DiscardReason::IntervalMismatch {
            ours_cs: 100,
            theirs_cs: 200
        })
    );
    assert_eq!(r.master_adver_int_cs(), 100);
}

#[test]
fn rfc3768_7_1_auth_type_mismatch_discarded() {
    let mut c = cfg(Version::V2, 100);
    c.auth = Auth::pass("secret");
    let mut r = started(c);
    let mut adv = advert_for(&r, 200);
    adv.auth = Auth::None;
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(
        discarded(&a),
        Some(DiscardReason::AuthTypeMismatch { ours: 1, theirs: 0 })
    );
}

#[test]
fn keepalived_auth_pass_mismatch_discarded() {
    let mut c = cfg(Version::V2, 100);
    c.auth = Auth::pass("secret");
    let mut r = started(c);
    let mut adv = advert_for(&r, 200);
    adv.auth = Auth::pass("secreT");
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(discarded(&a), Some(DiscardReason::AuthPassMismatch));
    let a = rx(&mut r, S, S, "192.0.2.20", 200);
    assert_eq!(discarded(&a), None);
}

#[test]
fn rfc9568_7_1_ttl_not_255_discarded() {
    let mut r = started(cfg(Version::V3, 100));
    let mut m = meta(S, "192.0.2.20");
    m.ttl = 254;
    let adv = advert_for(&r, 200);
    let a = rx_adv(&mut r, S, m, adv);
    assert_eq!(discarded(&a), Some(DiscardReason::BadTtl(254)));
}

#[test]
fn keepalived_unicast_skips_ttl_check() {
    let mut c = cfg(Version::V3, 100);
    c.unicast_peers = vec![ip("192.0.2.20")];
    let mut r = started(c);
    let mut m = meta(S, "192.0.2.20");
    m.ttl = 63;
    m.unicast = true;
    let adv = advert_for(&r, 200);
    let a = rx_adv(&mut r, S, m, adv);
    assert_eq!(discarded(&a), None);
}

#[test]
fn rfc9568_7_1_wrong_vrid_discarded() {
    let mut r = started(cfg(Version::V3, 100));
    let mut adv = advert_for(&r, 200);
    adv.vrid = 52;
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(discarded(&a), Some(DiscardReason::WrongVrid));
}

#[test]
fn rfc9568_7_1_wrong_version_discarded() {
    let mut r = started(cfg(Version::V3, 100));
    let mut adv = advert_for(&r, 200);
    adv.version = Version::V2;
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(discarded(&a), Some(DiscardReason::WrongVersion));
}

#[test]
fn keepalived_address_list_mismatch_discarded() {
    let mut r = started(cfg(Version::V3, 100));
    let mut adv = advert_for(&r, 200);
    adv.addrs = vec![ip("192.0.2.100"), ip("192.0.2.101")];
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv.clone());
    assert_eq!(
        discarded(&a),
        Some(DiscardReason::AddressCountMismatch { ours: 1, theirs: 2 })
    );
    adv.addrs = vec![ip("192.0.2.101")];
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(discarded(&a), Some(DiscardReason::AddressListMismatch));
}

#[test]
fn keepalived_skip_check_adv_addr_for_known_master() {
    let mut c = cfg(Version::V3, 100);
    c.skip_check_adv_addr = true;
    let mut r = started(c);
    let mut odd = advert_for(&r, 200);
    odd.addrs = vec![ip("192.0.2.101")];
    // Unknown master: checked.
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), odd.clone());
    assert_eq!(discarded(&a), Some(DiscardReason::AddressListMismatch));
    // Known master: skipped.
    rx(&mut r, S, S, "192.0.2.20", 200);
    let a = rx_adv(&mut r, 2 * S, meta(2 * S, "192.0.2.20"), odd);
    assert_eq!(discarded(&a), None);
}

#[test]
fn keepalived_check_unicast_src_rejects_strangers() {
    let mut c = cfg(Version::V3, 100);
    c.unicast_peers = vec![ip("192.0.2.20")];
    c.check_unicast_src = true;
    let mut r = started(c);
    let mut m = meta(S, "192.0.2.21");
    m.unicast = true;
    let adv = advert_for(&r, 200);
    let a = rx_adv(&mut r, S, m, adv);
    assert_eq!(discarded(&a), Some(DiscardReason::UnicastSourceNotPeer));
}

#[test]
fn keepalived_unicast_multicast_mismatch_discarded() {
    let mut r = started(cfg(Version::V3, 100));
    let mut m = meta(S, "192.0.2.20");
    m.unicast = true;
    let adv = advert_for(&r, 200);
    let a = rx_adv(&mut r, S, m, adv);
    assert_eq!(discarded(&a), Some(DiscardReason::UnicastMismatch));
    let mut c = cfg(Version::V3, 100);
    c.unicast_peers = vec![ip("192.0.2.20")];
    let mut r = started(c);
    let a = rx(&mut r, S, S, "192.0.2.20", 200);
    assert_eq!(discarded(&a), Some(DiscardReason::UnicastMismatch));
}

#[test]
fn keepalived_fault_ignores_adverts() {
    let mut r = router(cfg(Version::V3, 100));
    let a = rx(&mut r, S, S, "192.0.2.20", 200);
    assert_eq!(discarded(&a), Some(DiscardReason::NotRunning));
    let mut c = cfg(Version::V3, 100);
    c.trackers = vec![tracker(1, TrackerKind::Binary, 0, false, TrackState::Down)];
    let mut r = started(c);
    let a = rx(&mut r, S, S, "192.0.2.20", 0);
    assert_eq!(discarded(&a), Some(DiscardReason::NotRunning));
    assert_eq!(r.state(), State::Fault);
}

// ----- tracking -----

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

// ----- configuration -----

#[test]
fn keepalived_nopreempt_needs_state_backup() {
    let mut c = cfg(Version::V3, 100);
    c.nopreempt = true;
    c.initial_state = InitialState::Master;
    let r = router(c);
    assert!(!r.config().nopreempt);
    assert!(
        r.warnings()
            .contains(&ConfigWarning::NopreemptWithStateMaster)
    );
}

#[test]
fn keepalived_nopreempt_reset_for_owner() {
    let mut c = cfg(Version::V3, 255);
    c.nopreempt = true;
    let r = router(c);
    assert!(!r.config().nopreempt);
    assert!(r.warnings().contains(&ConfigWarning::NopreemptWithOwner));
}

#[test]
fn keepalived_strict_forbids_auth() {
    let mut c = cfg(Version::V2, 100);
    c.strict = true;
    c.auth = Auth::pass("x");
    assert_eq!(Router::new(c).err(), Some(ConfigError::StrictAuth));
}

#[test]
fn keepalived_strict_forbids_unicast() {
    let mut c = cfg(Version::V3, 100);
    c.strict = true;
    c.unicast_peers = vec![ip("192.0.2.20")];
    assert_eq!(Router::new(c).err(), Some(ConfigError::StrictUnicast));
}

#[test]
fn keepalived_strict_forces_rfc_master_behaviour() {
    let mut c = cfg(Version::V3, 100);
    c.strict = true;
    c.higher_prio_send_advert = true;
    let r = router(c);
    assert!(r.config().lower_prio_no_advert);
    assert!(!r.config().higher_prio_send_advert);
    assert_eq!(r.config().garp.lower_prio_repeat, 0);
    let (mut r, t0) = master(r.config().clone());
    let a = rx(&mut r, t0 + 1, t0 + 1, "192.0.2.20", 50);
    assert!(adverts_sent(&a).is_empty());
    assert!(!a.iter().any(|x| matches!(x, Action::SendGratuitous { .. })));
}

#[test]
fn keepalived_strict_disables_preempt_delay() {
    let mut c = cfg(Version::V3, 100);
    c.strict = true;
    c.preempt_delay_ns = S;
    let r = router(c);
    assert_eq!(r.config().preempt_delay_ns, 0);
    assert!(r.warnings().contains(&ConfigWarning::StrictPreemptDelay));
}

#[test]
fn invalid_configurations_are_refused() {
    let mut c = cfg6(100);
    c.version = Version::V2;
    c.advert_int_cs = 100;
    assert_eq!(Router::new(c).err(), Some(ConfigError::V2OverIpv6));
    let mut c = cfg(Version::V3, 100);
    c.vrid = 0;
    assert_eq!(Router::new(c).err(), Some(ConfigError::ZeroVrid));
    let mut c = cfg(Version::V3, 100);
    c.vips.clear();
    assert_eq!(Router::new(c).err(), Some(ConfigError::NoVips));
    let mut c = cfg(Version::V2, 100);
    c.advert_int_cs = 50;
    assert_eq!(Router::new(c).err(), Some(ConfigError::BadInterval(50)));
    let mut c = cfg(Version::V3, 100);
    c.vips.push(ip("2001:db8::1"));
    assert!(matches!(
        Router::new(c).err(),
        Some(ConfigError::WrongFamily(_))
    ));
    let mut c = cfg(Version::V3, 100);
    c.priority = 0;
    assert_eq!(Router::new(c).err(), Some(ConfigError::ZeroPriority));
}

// ----- gratuitous ARP / NA -----

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

// ----- reload -----

#[test]
fn reload_as_master_keeps_state_without_regarp() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let mut c = r.config().clone();
    c.priority = 120;
    let a = r.handle(t0 + 1, Input::Reload(Box::new(c)));
    assert_eq!(r.state(), State::Master);
    assert_eq!(r.priority(), 120);
    assert!(!a.iter().any(|x| matches!(
        x,
        Action::SendGratuitous { .. }
            | Action::AddVips
            | Action::RemoveVips
            | Action::Transition(_)
    )));
}

#[test]
fn reload_changed_vips_updates_only_difference() {
    let mut c = cfg(Version::V3, 100);
    c.vips = vec![ip("192.0.2.100"), ip("192.0.2.101")];
    let (mut r, t0) = master(c.clone());
    c.vips = vec![ip("192.0.2.101"), ip("192.0.2.102")];
    let a = r.handle(t0 + 1, Input::Reload(Box::new(c)));
    assert_eq!(
        a,
        vec![Action::UpdateVips {
            added: vec![ip("192.0.2.102")],
            removed: vec![ip("192.0.2.100")]
        }]
    );
}

#[test]
fn reload_invalid_config_is_rejected() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let mut c = r.config().clone();
    c.vips.clear();
    let a = r.handle(t0 + 1, Input::Reload(Box::new(c)));
    assert_eq!(a, vec![Action::ReloadRejected(ConfigError::NoVips)]);
    assert_eq!(r.config().vips.len(), 1);
    assert_eq!(r.state(), State::Master);
}

#[test]
fn reload_priority_change_rearms_down_timer() {
    let mut r = started(cfg(Version::V3, 100));
    rx(&mut r, S, S, "192.0.2.20", 250);
    let mut c = r.config().clone();
    c.priority = 200;
    let a = r.handle(S + 5, Input::Reload(Box::new(c)));
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(S + r.master_down_ns())
    );
    assert_eq!(r.state(), State::Backup);
}

// ----- sync groups -----

fn group(prios: &[u8]) -> SyncGroup {
    let members = prios
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut c = cfg(Version::V3, *p);
            c.name = format!("m{i}");
            c.vrid = 10 + i as u8;
            c.trackers = vec![tracker(1, TrackerKind::Binary, 0, false, TrackState::Up)];
            router(c)
        })
        .collect();
    SyncGroup::new("g", members).expect("members")
}

fn member_actions(out: &[SyncAction], index: usize) -> Vec<Action> {
    out.iter()
        .filter_map(|a| match a {
            SyncAction::Member { index: i, action } if *i == index => Some(action.clone()),
            _ => None,
        })
        .collect()
}

/// Starts the group and lets every member's down timer run out.
fn group_master(prios: &[u8]) -> (SyncGroup, u64) {
    let mut g = group(prios);
    let mut out = Vec::new();
    g.startup(0, &mut out);
    let mut t = 0;
    for i in 0..prios.len() {
        let d = g
            .member(i)
            .and_then(|m| m.deadline(TimerKind::MasterDown))
            .expect("armed");
        t = t.max(d);
        g.handle_into(d, i, Input::TimerFired(TimerKind::MasterDown), &mut out);
    }
    assert_eq!(g.state(), State::Master);
    (g, t)
}

#[test]
fn keepalived_sync_group_master_only_when_all_can() {
    let mut g = group(&[100, 100]);
    let mut out = Vec::new();
    g.startup(0, &mut out);
    let d0 = g
        .member(0)
        .and_then(|m| m.deadline(TimerKind::MasterDown))
        .expect("armed");
    // Member 0 times out; member 1 still hears a master: both stay Backup.
    let peer = advert_for(g.member(1).expect("m1"), 200);
    g.handle(
        d0 - 1,
        1,
        Input::Advert(ReceivedAdvert {
            meta: meta(d0 - 1, "192.0.2.20"),
            advert: peer,
        }),
    );
    let out = g.handle(d0, 0, Input::TimerFired(TimerKind::MasterDown));
    assert_eq!(g.member(0).map(Router::state), Some(State::Backup));
    assert!(g.member(0).is_some_and(Router::wants_master));
    assert!(!out.iter().any(|a| matches!(
        a,
        SyncAction::Member {
            action: Action::SyncWantMaster,
            ..
        }
    )));
    // Member 1 times out too: both become master together.
    let d1 = g
        .member(1)
        .and_then(|m| m.deadline(TimerKind::MasterDown))
        .expect("armed");
    let out = g.handle(d1, 1, Input::TimerFired(TimerKind::MasterDown));
    assert_eq!(g.state(), State::Master);
    assert!(member_actions(&out, 0).contains(&Action::AddVips));
    assert!(member_actions(&out, 1).contains(&Action::AddVips));
}

#[test]
fn keepalived_sync_group_fault_propagates() {
    let (mut g, t) = group_master(&[100, 100, 100]);
    let out = g.handle(
        t + 1,
        1,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Down,
        },
    );
    assert_eq!(g.state(), State::Fault);
    for i in 0..3 {
        assert_eq!(g.member(i).map(Router::state), Some(State::Fault));
        let a = member_actions(&out, i);
        assert_eq!(adverts_sent(&a), vec![0]);
        assert!(a.contains(&Action::RemoveVips));
    }
}

#[test]
fn keepalived_sync_group_recovers_together() {
    let (mut g, t) = group_master(&[100, 100]);
    g.handle(
        t + 1,
        0,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Down,
        },
    );
    assert_eq!(g.member(1).map(Router::state), Some(State::Fault));
    g.handle(
        t + 2,
        0,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Up,
        },
    );
    assert_eq!(g.state(), State::Backup);
    for i in 0..2 {
        assert_eq!(g.member(i).map(Router::state), Some(State::Backup));
        assert!(
            g.member(i)
                .and_then(|m| m.deadline(TimerKind::MasterDown))
                .is_some()
        );
    }
}

#[test]
fn keepalived_sync_group_backup_propagates() {
    let (mut g, t) = group_master(&[100, 100]);
    let better = advert_for(g.member(0).expect("m0"), 200);
    let out = g.handle(
        t + 1,
        0,
        Input::Advert(ReceivedAdvert {
            meta: meta(t + 1, "192.0.2.20"),
            advert: better,
        }),
    );
    assert_eq!(g.member(0).map(Router::state), Some(State::Backup));
    assert_eq!(g.member(1).map(Router::state), Some(State::Backup));
    assert!(member_actions(&out, 1).contains(&Action::RemoveVips));
    assert_eq!(g.state(), State::Backup);
}

#[test]
fn keepalived_sync_group_notifies() {
    let mut g = group(&[100, 100]);
    let mut out = Vec::new();
    g.startup(0, &mut out);
    assert!(out.contains(&SyncAction::GroupNotify {
        from: State::Initialize,
        to: State::Backup
    }));
    let (mut g, t) = group_master(&[100, 100]);
    let out = g.handle(
        t + 1,
        0,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Down,
        },
    );
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, SyncAction::GroupNotify { .. }))
            .count(),
        1
    );
    assert!(out.contains(&SyncAction::GroupNotify {
        from: State::Master,
        to: State::Fault
    }));
}
