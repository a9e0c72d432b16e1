//! Rules 1–6: Skew_Time and Master_Down_Interval (RFC 3768 §6.1, RFC 9568 §6.1).

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
